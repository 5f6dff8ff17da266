//! The [`Embedder`]: a loaded model and its worker threads, shared by the pipeline, that turns
//! texts into vectors.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tract_onnx::prelude::TypedSimpleState;

use super::batching::{Batch, BatchLimits, pack_batches, plan_batches};
use super::model_dir::ModelDir;
use super::native::{EncoderState, NativeEncoder};
use super::pool::{Pool, Reply, Vectors, Work};
use super::pooling::{l2_normalize, mean_pool};
use super::runtime::{CompiledModel, MAX_BATCH_TEXTS, ModelDims, PaddedBatch};
use super::tokenize::TextTokenizer;
use super::{EmbedError, bert};

/// How an [`Embedder`] uses the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedOptions {
    /// Worker threads, kept for the life of the embedder; 0 means one per available core.
    pub threads: usize,
    /// Most texts in one batch (at most 4096).
    pub max_batch_texts: usize,
    /// Most tokens in one batch: real tokens for the native encoder, padded ones for the tract
    /// graph (bounds the memory of a batch of long texts).
    pub max_batch_tokens: usize,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        // Measured on the benchmark input (scripts/bench-embed, 2 cores): batches of about 384
        // tokens keep a worker's activations (384 x 1536 floats for the feed-forward layer,
        // 2.3 MB) close to its core's L2 cache.
        EmbedOptions {
            threads: 0,
            max_batch_texts: 32,
            max_batch_tokens: 384,
        }
    }
}

/// Which implementation runs the transformer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// vecsync's own encoder on tract-linalg's kernels (packed sequences, no padding), for a
    /// directory with `model.safetensors`; a directory with only `onnx/model.onnx` gets the
    /// tract graph.
    #[default]
    Native,
    /// tract's optimised graph, from `onnx/model.onnx` if present, else built from
    /// `model.safetensors` (the engine before the native one; kept for ONNX models and as a
    /// reference in benchmarks).
    Graph,
}

/// A sentence-transformers model loaded once, with worker threads that live as long as it
/// does. Share it in an `Arc`.
///
/// Produces the vectors `SentenceTransformer(dir).encode(texts)` produces, to within float
/// rounding: same tokenization and truncation, mean pooling over real tokens, L2 normalised
/// when the model's modules.json says so.
///
/// Dropping the last handle lets the workers finish what is queued, then joins them (which
/// can block for as long as a batch takes).
pub struct Embedder {
    pool: Pool<Model>,
}

// The pipeline shares one Embedder between tasks.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Embedder>();
};

impl std::fmt::Debug for Embedder {
    // The model is large and says little; show what the embedder does instead.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let model = self.pool.work();
        f.debug_struct("Embedder")
            .field("engine", &model.engine)
            .field("dimension", &model.dimension)
            .field("normalize", &model.normalize)
            .field("threads", &self.pool.threads())
            .field("limits", &model.limits)
            .finish_non_exhaustive()
    }
}

/// The transformer behind the embedder.
enum Backend {
    Native(NativeEncoder),
    Graph(CompiledModel),
}

enum WorkerState {
    Native(Box<EncoderState>),
    Graph(Box<TypedSimpleState>),
}

/// Everything a worker needs to turn texts into vectors.
struct Model {
    tokenizer: TextTokenizer,
    backend: Backend,
    engine: Engine,
    dimension: usize,
    intermediate: usize,
    layers: usize,
    normalize: bool,
    limits: BatchLimits,
}

impl Work for Model {
    type State = WorkerState;

    fn spawn_state(&self) -> Result<WorkerState, EmbedError> {
        match &self.backend {
            Backend::Native(encoder) => encoder
                .spawn_state()
                .map(|s| WorkerState::Native(Box::new(s)))
                .map_err(|e| EmbedError::Graph {
                    source_desc: "native encoder".to_owned(),
                    reason: e.0,
                }),
            Backend::Graph(model) => model.spawn_state().map(|s| WorkerState::Graph(Box::new(s))),
        }
    }

    fn plan(&self, texts: &[String]) -> Result<(Vec<Vec<i64>>, Vec<Batch>), EmbedError> {
        let tokens = texts
            .iter()
            .map(|t| self.tokenizer.encode(t))
            .collect::<Result<Vec<_>, _>>()?;
        let lengths: Vec<usize> = tokens.iter().map(Vec::len).collect();
        let batches = match self.backend {
            Backend::Native(_) => pack_batches(&lengths, self.limits),
            Backend::Graph(_) => plan_batches(&lengths, self.limits),
        };
        Ok((tokens, batches))
    }

    fn run(
        &self,
        state: &mut WorkerState,
        tokens: &[Vec<i64>],
        batch: &Batch,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let texts: Vec<&[i64]> = batch
            .indices
            .iter()
            .map(|&i| tokens[i].as_slice())
            .collect();
        let mut vectors = match (&self.backend, state) {
            (Backend::Native(encoder), WorkerState::Native(state)) => encoder
                .embed(state, &texts)
                .map_err(|e| EmbedError::Inference {
                    batch: texts.len(),
                    seq_len: batch.seq_len,
                    reason: e.0,
                })?,
            (Backend::Graph(model), WorkerState::Graph(state)) => {
                let padded = PaddedBatch::new(texts.iter().copied());
                let hidden = model.run(state, &padded)?;
                let per_text = padded.seq_len * self.dimension;
                (0..texts.len())
                    .map(|row| {
                        let mask = &padded.mask[row * padded.seq_len..(row + 1) * padded.seq_len];
                        let rows = &hidden[row * per_text..(row + 1) * per_text];
                        mean_pool(rows, self.dimension, mask)
                    })
                    .collect()
            }
            _ => {
                return Err(EmbedError::Internal(
                    "a worker's state is for another engine".to_owned(),
                ));
            }
        };
        if self.normalize {
            vectors.iter_mut().for_each(|v| l2_normalize(v));
        }
        Ok(vectors)
    }
}

impl Embedder {
    /// Load the model directory `model_dir` with default options (all cores).
    ///
    /// Takes a second or two: do it once at start-up.
    pub fn load(model_dir: &Path) -> Result<Embedder, EmbedError> {
        Self::load_with(model_dir, EmbedOptions::default())
    }

    /// Load the model directory `model_dir` with explicit options, on the native engine.
    pub fn load_with(model_dir: &Path, options: EmbedOptions) -> Result<Embedder, EmbedError> {
        Self::load_engine(model_dir, options, Engine::default())
    }

    /// Load the model directory `model_dir` with explicit options and engine.
    pub fn load_engine(
        model_dir: &Path,
        options: EmbedOptions,
        engine: Engine,
    ) -> Result<Embedder, EmbedError> {
        let started = Instant::now();
        let dir = ModelDir::open(model_dir)?;
        let tokenizer =
            TextTokenizer::from_file(&dir.tokenizer, dir.max_seq_length, dir.do_lower_case)?;
        let dimension = dir.bert.hidden_size;
        let dims = ModelDims {
            hidden_size: dimension,
            max_seq_length: dir.max_seq_length,
        };
        let max_batch_tokens = options.max_batch_tokens.max(1);
        // The native encoder reads model.safetensors; a directory with only an ONNX file
        // (ModelDir requires one or the other) runs as a graph.
        let native = engine == Engine::Native && dir.safetensors.is_file();
        let (backend, engine, graph) = if native {
            let encoder = NativeEncoder::load(&dir.safetensors, &dir.bert, max_batch_tokens)?;
            (
                Backend::Native(encoder),
                Engine::Native,
                "model.safetensors",
            )
        } else {
            let model = match &dir.onnx {
                Some(onnx) => CompiledModel::from_onnx_file(onnx, dims)?,
                None => {
                    let proto = bert::build_from_safetensors(&dir.safetensors, &dir.bert)?;
                    CompiledModel::from_proto(proto, dims)?
                }
            };
            let graph = if dir.onnx.is_some() {
                "onnx/model.onnx"
            } else {
                "model.safetensors"
            };
            (Backend::Graph(model), Engine::Graph, graph)
        };
        let threads = match options.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let kernels = match &backend {
            Backend::Native(encoder) => encoder.kernel_names().join(", "),
            Backend::Graph(_) => "chosen by tract".to_owned(),
        };
        let model = Model {
            tokenizer,
            backend,
            engine,
            dimension,
            intermediate: dir.bert.intermediate_size,
            layers: dir.bert.num_hidden_layers,
            normalize: dir.normalize,
            limits: BatchLimits {
                max_texts: options.max_batch_texts.clamp(1, MAX_BATCH_TEXTS),
                max_tokens: max_batch_tokens,
                min_batches: threads,
            },
        };
        let pool = Pool::start(model, threads)?;
        tracing::info!(
            model_dir = %model_dir.display(),
            graph,
            engine = ?engine,
            kernels,
            dimension,
            max_seq_length = dir.max_seq_length,
            threads,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedding model loaded"
        );
        Ok(Embedder { pool })
    }

    /// Length of every vector (384 for all-MiniLM-L6-v2).
    pub fn dimension(&self) -> usize {
        self.pool.work().dimension
    }

    /// The embedder's worker threads: the cores it keeps busy while it embeds.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// The engine running the transformer.
    pub fn engine(&self) -> Engine {
        self.pool.work().engine
    }

    /// Floating-point operations the transformer spends on one text of `tokens` tokens
    /// (multiply-adds count two): per layer, the four dense products over every token,
    /// `2·tokens·(4·hidden² + 2·hidden·intermediate)`, and attention's two products,
    /// `2·2·tokens²·hidden`. Embeddings, LayerNorm, GELU and softmax add well under 1%.
    pub fn flops(&self, tokens: usize) -> f64 {
        let m = self.pool.work();
        let (t, h, i) = (tokens as f64, m.dimension as f64, m.intermediate as f64);
        m.layers as f64 * (2.0 * t * (4.0 * h * h + 2.0 * h * i) + 4.0 * t * t * h)
    }

    /// Tokens the model sees for `text`: after truncation, [CLS] and [SEP] included.
    pub fn count_tokens(&self, text: &str) -> Result<usize, EmbedError> {
        Ok(self.pool.work().tokenizer.encode(text)?.len())
    }

    /// One vector per text, in input order. Blocks the calling thread until the worker
    /// threads are done (call [`Embedder::embed_owned`] from async code instead).
    ///
    /// Empty and whitespace-only texts get a vector too (that of "[CLS] [SEP]"), as with
    /// sentence-transformers; whether to skip them is the caller's decision.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let started = Instant::now();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.pool.submit(
            texts.iter().map(|t| (*t).to_owned()).collect(),
            Reply::Blocking(tx),
        );
        let vectors = rx.recv().map_err(|_| {
            EmbedError::Internal("the embedding threads dropped a call unanswered".to_owned())
        })?;
        tracing::debug!(
            texts = texts.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedded"
        );
        vectors
    }

    /// [`Embedder::embed`] for async code: the worker threads do the work, the returned future
    /// only waits for it, so no async thread blocks. The call is queued at once, not at the
    /// first poll.
    ///
    /// Cancellation-safe: dropping the future abandons the call, whose remaining batches are
    /// skipped. The future holds the embedder, so its threads outlive it.
    pub fn embed_owned(
        self: &Arc<Self>,
        texts: Vec<String>,
    ) -> impl Future<Output = Result<Vec<Vec<f32>>, EmbedError>> + Send + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel::<Vectors>();
        self.pool.submit(texts, Reply::Async(tx));
        let this = Arc::clone(self);
        async move {
            let result = rx.await;
            drop(this);
            result.unwrap_or_else(|_| {
                Err(EmbedError::Internal(
                    "the embedding threads dropped a call unanswered".to_owned(),
                ))
            })
        }
    }
}

/// Worker threads for an async runtime that shares the machine with an embedder of
/// `embed_threads` threads: the cores the embedder leaves, at least one.
///
/// The embedder keeps its threads busy while it embeds; the runtime's threads mostly wait on
/// the network and wake for short bursts, so on a small machine one or two are enough and
/// more only fight the model for the cores. (Blocking work, the fsyncs, goes to the runtime's
/// blocking pool, which is not counted here.)
pub fn runtime_worker_threads(cores: usize, embed_threads: usize) -> usize {
    cores.saturating_sub(embed_threads).max(1)
}
