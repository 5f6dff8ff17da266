//! The [`Embedder`]: a loaded model, shared by the pipeline, that turns texts into vectors.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::batching::{BatchLimits, plan_batches, restore_order};
use super::model_dir::ModelDir;
use super::pooling::{l2_normalize, mean_pool};
use super::runtime::{CompiledModel, MAX_BATCH_TEXTS, ModelDims, PaddedBatch};
use super::tokenize::TextTokenizer;
use super::{EmbedError, bert};

/// How an [`Embedder`] uses the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedOptions {
    /// Worker threads per [`Embedder::embed`] call; 0 means one per available core.
    pub threads: usize,
    /// Most texts in one batch (at most 4096).
    pub max_batch_texts: usize,
    /// Most padded tokens in one batch (bounds the memory of a batch of long texts).
    pub max_batch_tokens: usize,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        // Measured on the benchmark input (scripts/bench-embed, 2 cores): batches of about 384
        // padded tokens keep a worker's activations (384 x 1536 floats for the feed-forward
        // layer, 2.3 MB) close to its core's L2 cache and were about 8% faster than padding
        // 32 texts together (8192 tokens at most); 256 to 512 tokens performed alike.
        EmbedOptions {
            threads: 0,
            max_batch_texts: 32,
            max_batch_tokens: 384,
        }
    }
}

/// A sentence-transformers model loaded once, usable from many threads (share it in an `Arc`).
///
/// Produces the vectors `SentenceTransformer(dir).encode(texts)` produces, to within float
/// rounding: same tokenization and truncation, mean pooling over real tokens, L2 normalised
/// when the model's modules.json says so.
pub struct Embedder {
    tokenizer: TextTokenizer,
    model: CompiledModel,
    dimension: usize,
    normalize: bool,
    threads: usize,
    limits: BatchLimits,
}

// The pipeline shares one Embedder between tasks.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Embedder>();
};

impl std::fmt::Debug for Embedder {
    // The compiled plan is large and says little; show what the embedder does instead.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dimension", &self.dimension)
            .field("normalize", &self.normalize)
            .field("threads", &self.threads)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Load the model directory `model_dir` with default options (all cores).
    ///
    /// Uses `onnx/model.onnx` when present, else builds the BERT graph from
    /// `model.safetensors`. Takes a second or two: do it once at start-up.
    pub fn load(model_dir: &Path) -> Result<Embedder, EmbedError> {
        Self::load_with(model_dir, EmbedOptions::default())
    }

    /// Load the model directory `model_dir` with explicit options.
    pub fn load_with(model_dir: &Path, options: EmbedOptions) -> Result<Embedder, EmbedError> {
        let started = Instant::now();
        let dir = ModelDir::open(model_dir)?;
        let tokenizer =
            TextTokenizer::from_file(&dir.tokenizer, dir.max_seq_length, dir.do_lower_case)?;
        let dimension = dir.bert.hidden_size;
        let dims = ModelDims {
            hidden_size: dimension,
            max_seq_length: dir.max_seq_length,
        };
        let model = match &dir.onnx {
            Some(onnx) => CompiledModel::from_onnx_file(onnx, dims)?,
            None => {
                let proto = bert::build_from_safetensors(&dir.safetensors, &dir.bert)?;
                CompiledModel::from_proto(proto, dims)?
            }
        };
        let threads = match options.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        tracing::info!(
            model_dir = %model_dir.display(),
            graph = if dir.onnx.is_some() { "onnx/model.onnx" } else { "model.safetensors" },
            dimension,
            max_seq_length = dir.max_seq_length,
            threads,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedding model loaded"
        );
        Ok(Embedder {
            tokenizer,
            model,
            dimension,
            normalize: dir.normalize,
            threads,
            limits: BatchLimits {
                max_texts: options.max_batch_texts.clamp(1, MAX_BATCH_TEXTS),
                max_tokens: options.max_batch_tokens.max(1),
                min_batches: threads,
            },
        })
    }

    /// Length of every vector (384 for all-MiniLM-L6-v2).
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// Worker threads an [`Embedder::embed`] call uses.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Tokens the model sees for `text`: after truncation, [CLS] and [SEP] included.
    pub fn count_tokens(&self, text: &str) -> Result<usize, EmbedError> {
        Ok(self.tokenizer.encode(text)?.len())
    }

    /// One vector per text, in input order. Blocks the calling thread (call it from
    /// `spawn_blocking` in async code) and uses up to [`Embedder::threads`] cores.
    ///
    /// Empty and whitespace-only texts get a vector too (that of "[CLS] [SEP]"), as with
    /// sentence-transformers; whether to skip them is the caller's decision.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let started = Instant::now();
        let tokens = texts
            .iter()
            .map(|t| self.tokenizer.encode(t))
            .collect::<Result<Vec<_>, _>>()?;
        let lengths: Vec<usize> = tokens.iter().map(Vec::len).collect();
        let batches = plan_batches(&lengths, self.limits);
        let workers = self.threads.min(batches.len());

        // Workers take the next batch as they free up; batches come longest first. A failing
        // worker moves the cursor past the end, so the others stop after their current batch.
        let next = AtomicUsize::new(0);
        let work = || -> Result<Vec<(usize, Vec<f32>)>, EmbedError> {
            let mut state = self.model.spawn_state()?;
            let mut done = Vec::new();
            loop {
                let Some(batch) = batches.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return Ok(done);
                };
                let padded = PaddedBatch::new(batch.indices.iter().map(|&i| tokens[i].as_slice()));
                let hidden = self.model.run(&mut state, &padded).inspect_err(|_| {
                    next.store(batches.len(), Ordering::Relaxed);
                })?;
                let per_text = padded.seq_len * self.dimension;
                for (row, &i) in batch.indices.iter().enumerate() {
                    let mask = &padded.mask[row * padded.seq_len..(row + 1) * padded.seq_len];
                    let rows = &hidden[row * per_text..(row + 1) * per_text];
                    let mut v = mean_pool(rows, self.dimension, mask);
                    if self.normalize {
                        l2_normalize(&mut v);
                    }
                    done.push((i, v));
                }
            }
        };
        let results: Vec<(usize, Vec<f32>)> = if workers <= 1 {
            work()?
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..workers).map(|_| s.spawn(work)).collect();
                let mut all = Vec::with_capacity(texts.len());
                for h in handles {
                    let part = h.join().map_err(|panic| {
                        let msg = panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "unknown panic".to_owned());
                        EmbedError::Internal(format!("a worker thread panicked: {msg}"))
                    })??;
                    all.extend(part);
                }
                Ok::<_, EmbedError>(all)
            })?
        };
        let vectors = restore_order(texts.len(), results).ok_or_else(|| {
            EmbedError::Internal("batches did not cover every text exactly once".to_owned())
        })?;
        tracing::debug!(
            texts = texts.len(),
            tokens = lengths.iter().sum::<usize>(),
            batches = batches.len(),
            workers,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedded"
        );
        Ok(vectors)
    }
}
