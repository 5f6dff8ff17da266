//! The BERT encoder run directly on tract-linalg's kernels: packed sequences, no padding.
//!
//! tract's graph for the same model (see [`super::bert`], still used for `onnx/model.onnx`)
//! spends most of the time outside its matrix products on this workload: a softmax over
//! 40-token rows pays a per-row set-up that costs more than the arithmetic, every operand is
//! re-laid out before each product, batches are padded to their longest text, and with the
//! token count unknown when the plan is optimised every dense layer runs a default kernel tile.
//! Here the texts of a batch are packed end to end as one `[tokens, hidden]` matrix: every dense
//! layer is one product over all tokens of the batch with the kernel chosen for its exact shape
//! (its bias, and the residual, added by the kernel as it stores), and attention runs per text
//! and head over that text's own tokens only, so no padding is ever computed.
//!
//! ```text
//! ids ─► word + type(0) + position ─► LayerNorm ─► h [T, H]          T = tokens of all texts
//! per layer:  qkv = h·Wqkvᵀ + b           one product, [T, 3H]; q pre-scaled by 1/√d
//!             per text, per head:  sᵀ = k·qᵀ [L, L] ─► softmax over keys ─► ctx = (e·v) / Σe
//!             h1 = LayerNorm(ctx·Woᵀ + b + h)
//!             h  = LayerNorm(GELU(h1·Wupᵀ + b)·Wdownᵀ + b + h1)
//! vector = mean of the text's rows of h
//! ```
//!
//! Arithmetic is f32 throughout, in PyTorch's order where it matters, so the vectors stay
//! within float rounding of sentence-transformers (the parity test holds it to the same bar as
//! the tract graph).

mod gemm;
mod ops;

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use self::gemm::{Buf, Epilogue, GemmError, Kernel, MatMut, MatRef, Packed, Scratch};
use self::ops::{Routines, layer_norm};
use super::EmbedError;
use super::model_dir::BertConfig;

/// A dense layer: weights packed once for the kernel chosen for their shape.
struct Dense {
    kernel: Kernel,
    weight: Packed,
    bias: Buf,
    out: usize,
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Layer {
    /// Query, key and value projections as one `[3H, H]` layer; the query rows carry the
    /// 1/√d score scale.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    up: Dense,
    down: Dense,
    output_norm: Norm,
}

/// The loaded encoder, shared by every worker thread (each brings its own [`EncoderState`]).
pub(crate) struct NativeEncoder {
    hidden: usize,
    heads: usize,
    head_dim: usize,
    intermediate: usize,
    eps: f32,
    vocab: usize,
    max_positions: usize,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    routines: Routines,
}

impl std::fmt::Debug for NativeEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kernels: Vec<&str> = self
            .layers
            .first()
            .map(|l| {
                [&l.qkv, &l.attention_out, &l.up, &l.down]
                    .iter()
                    .map(|d| d.kernel.name())
                    .collect()
            })
            .unwrap_or_default();
        f.debug_struct("NativeEncoder")
            .field("hidden", &self.hidden)
            .field("layers", &self.layers.len())
            .field("dense_kernels", &kernels)
            .field("routines", &self.routines)
            .finish_non_exhaustive()
    }
}

/// One worker's buffers, reused from batch to batch (they only grow).
pub(crate) struct EncoderState {
    scratch: Scratch,
    h: Buf,
    h1: Buf,
    qkv: Buf,
    ctx: Buf,
    up: Buf,
    gelu: Buf,
    scores: Buf,
    col_max: Vec<f32>,
    inv_sums: Buf,
    /// Attention kernels by (m, k, n): texts of the same length reuse the choice.
    kernels: HashMap<(usize, usize, usize), Kernel>,
}

impl NativeEncoder {
    /// Read `model.safetensors` and pack its dense layers for batches of about `batch_tokens`
    /// tokens (the kernels are chosen for that width).
    pub fn load(
        path: &Path,
        config: &BertConfig,
        batch_tokens: usize,
    ) -> Result<NativeEncoder, EmbedError> {
        let bytes = super::model_dir::read_model_file(path)?;
        let weights_error = |reason: String| EmbedError::Weights {
            path: path.to_path_buf(),
            reason,
        };
        let tensors = SafeTensors::deserialize(&bytes)
            .map_err(|e| weights_error(format!("not a safetensors file: {e}")))?;
        let graph_error = |e: GemmError| EmbedError::Graph {
            source_desc: "native encoder".to_owned(),
            reason: e.0,
        };
        let w = Weights::new(&tensors).map_err(weights_error)?;
        let h = config.hidden_size;
        let heads = config.num_attention_heads;
        let head_dim = h / heads;
        let inter = config.intermediate_size;
        let n = batch_tokens.max(1);
        let scale = 1.0 / (head_dim as f32).sqrt();

        let embedding_norm = w.norm("embeddings.LayerNorm", h).map_err(weights_error)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for layer in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{layer}");
            let a = format!("{p}.attention.self");
            let mut qkv_w = Vec::with_capacity(3 * h * h);
            let mut qkv_b = Vec::with_capacity(3 * h);
            for (part, s) in [("query", scale), ("key", 1.0), ("value", 1.0)] {
                let (wt, b) = w
                    .linear(&format!("{a}.{part}"), h, h)
                    .map_err(weights_error)?;
                qkv_w.extend(wt.iter().map(|v| v * s));
                qkv_b.extend(b.iter().map(|v| v * s));
            }
            let dense = |weight: &[f32], bias: &[f32], out: usize, inp: usize| {
                Dense::new(weight, bias, out, inp, n).map_err(graph_error)
            };
            let (ao_w, ao_b) = w
                .linear(&format!("{p}.attention.output.dense"), h, h)
                .map_err(weights_error)?;
            let (up_w, up_b) = w
                .linear(&format!("{p}.intermediate.dense"), inter, h)
                .map_err(weights_error)?;
            let (down_w, down_b) = w
                .linear(&format!("{p}.output.dense"), h, inter)
                .map_err(weights_error)?;
            layers.push(Layer {
                qkv: dense(&qkv_w, &qkv_b, 3 * h, h)?,
                attention_out: dense(&ao_w, &ao_b, h, h)?,
                attention_norm: w
                    .norm(&format!("{p}.attention.output.LayerNorm"), h)
                    .map_err(weights_error)?,
                up: dense(&up_w, &up_b, inter, h)?,
                down: dense(&down_w, &down_b, h, inter)?,
                output_norm: w
                    .norm(&format!("{p}.output.LayerNorm"), h)
                    .map_err(weights_error)?,
            });
        }
        let token_type = w
            .f32s("embeddings.token_type_embeddings.weight", None)
            .map_err(weights_error)?;
        let token_type = token_type
            .get(..h)
            .ok_or_else(|| weights_error("token_type_embeddings has no row 0".to_owned()))?
            .to_vec();
        Ok(NativeEncoder {
            hidden: h,
            heads,
            head_dim,
            intermediate: inter,
            eps: config.layer_norm_eps,
            vocab: config.vocab_size,
            max_positions: config.max_position_embeddings,
            word: w
                .f32s(
                    "embeddings.word_embeddings.weight",
                    Some(&[config.vocab_size, h]),
                )
                .map_err(weights_error)?,
            position: w
                .f32s(
                    "embeddings.position_embeddings.weight",
                    Some(&[config.max_position_embeddings, h]),
                )
                .map_err(weights_error)?,
            token_type,
            embedding_norm,
            layers,
            routines: Routines::new().map_err(graph_error)?,
        })
    }

    /// Fresh buffers for one worker thread.
    pub fn spawn_state(&self) -> Result<EncoderState, GemmError> {
        Ok(EncoderState {
            scratch: Scratch::new()?,
            h: Buf::zeros(0)?,
            h1: Buf::zeros(0)?,
            qkv: Buf::zeros(0)?,
            ctx: Buf::zeros(0)?,
            up: Buf::zeros(0)?,
            gelu: Buf::zeros(ops::GELU_CHUNK)?,
            scores: Buf::zeros(0)?,
            col_max: Vec::new(),
            inv_sums: Buf::zeros(0)?,
            kernels: HashMap::new(),
        })
    }

    /// The dense kernels, for the log (the same in every layer).
    pub fn kernel_names(&self) -> Vec<String> {
        self.layers
            .first()
            .map(|l| {
                [&l.qkv, &l.attention_out, &l.up, &l.down]
                    .iter()
                    .map(|d| d.kernel.name().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Mean-pooled (not normalised) hidden states of each text, given as token ids.
    pub fn embed(
        &self,
        state: &mut EncoderState,
        texts: &[&[i64]],
    ) -> Result<Vec<Vec<f32>>, GemmError> {
        let h = self.hidden;
        let total: usize = texts.iter().map(|t| t.len()).sum();
        if total == 0 {
            return Ok(texts.iter().map(|_| vec![0.0; h]).collect());
        }
        let longest = texts.iter().map(|t| t.len()).max().unwrap_or(0);
        let EncoderState {
            scratch,
            h: hidden,
            h1,
            qkv,
            ctx,
            up,
            gelu,
            scores,
            col_max,
            inv_sums,
            kernels,
        } = state;
        hidden.ensure_len(total * h)?;
        h1.ensure_len(total * h)?;
        qkv.ensure_len(total * 3 * h)?;
        ctx.ensure_len(total * h)?;
        up.ensure_len(total * self.intermediate)?;
        scores.ensure_len(longest * longest)?;
        col_max.resize(longest, 0.0);
        inv_sums.ensure_len(longest)?;

        self.embed_tokens(texts, &mut hidden.as_mut_slice()[..total * h])?;
        for layer in &self.layers {
            layer.qkv.apply(
                scratch,
                tokens(hidden, h, total),
                None,
                tokens_mut(qkv, 3 * h, total),
            )?;
            let mut start = 0;
            for text in texts {
                self.attention(
                    scratch,
                    kernels,
                    qkv,
                    scores,
                    col_max,
                    inv_sums,
                    ctx,
                    start,
                    text.len(),
                )?;
                start += text.len();
            }
            layer.attention_out.apply(
                scratch,
                tokens(ctx, h, total),
                Some(tokens(hidden, h, total)),
                tokens_mut(h1, h, total),
            )?;
            let n = &layer.attention_norm;
            layer_norm(
                &mut h1.as_mut_slice()[..total * h],
                h,
                &n.gamma,
                &n.beta,
                self.eps,
            );
            layer.up.apply(
                scratch,
                tokens(h1, h, total),
                None,
                tokens_mut(up, self.intermediate, total),
            )?;
            self.routines.gelu(
                &mut up.as_mut_slice()[..total * self.intermediate],
                gelu.as_mut_slice(),
            )?;
            layer.down.apply(
                scratch,
                tokens(up, self.intermediate, total),
                Some(tokens(h1, h, total)),
                tokens_mut(hidden, h, total),
            )?;
            let n = &layer.output_norm;
            layer_norm(
                &mut hidden.as_mut_slice()[..total * h],
                h,
                &n.gamma,
                &n.beta,
                self.eps,
            );
        }

        let rows = hidden.as_slice();
        let mut start = 0;
        Ok(texts
            .iter()
            .map(|text| {
                let rows = &rows[start * h..(start + text.len()) * h];
                start += text.len();
                let mask = vec![1i64; text.len()];
                super::pooling::mean_pool(rows, h, &mask)
            })
            .collect())
    }

    /// Word + token type 0 + position embeddings (PyTorch's order of addition), then LayerNorm.
    fn embed_tokens(&self, texts: &[&[i64]], out: &mut [f32]) -> Result<(), GemmError> {
        let h = self.hidden;
        let mut rows = out.chunks_exact_mut(h);
        for text in texts {
            if text.len() > self.max_positions {
                return Err(GemmError(format!(
                    "a text of {} tokens; the model takes at most {}",
                    text.len(),
                    self.max_positions
                )));
            }
            for (position, &id) in text.iter().enumerate() {
                let word = usize::try_from(id)
                    .ok()
                    .filter(|&id| id < self.vocab)
                    .ok_or_else(|| GemmError(format!("token id {id} is not in the vocabulary")))?;
                let row = rows
                    .next()
                    .ok_or_else(|| GemmError("token buffer too short".to_owned()))?;
                let w = &self.word[word * h..(word + 1) * h];
                let p = &self.position[position * h..(position + 1) * h];
                for (((x, w), t), p) in row.iter_mut().zip(w).zip(&self.token_type).zip(p) {
                    *x = (w + t) + p;
                }
            }
        }
        let n = &self.embedding_norm;
        layer_norm(out, h, &n.gamma, &n.beta, self.eps);
        Ok(())
    }

    /// Self-attention of the `len` tokens from `start` (one text), every head, into `ctx`.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        scratch: &mut Scratch,
        kernels: &mut HashMap<(usize, usize, usize), Kernel>,
        qkv: &Buf,
        scores: &mut Buf,
        col_max: &mut [f32],
        inv_sums: &mut Buf,
        ctx: &mut Buf,
        start: usize,
        len: usize,
    ) -> Result<(), GemmError> {
        if len == 0 {
            return Ok(());
        }
        let (h, d) = (self.hidden, self.head_dim);
        let row = 3 * h;
        let mut kernel = |m, k, n| -> Result<Kernel, GemmError> {
            if let Some(k) = kernels.get(&(m, k, n)) {
                return Ok(k.clone());
            }
            let chosen = Kernel::for_shape(m, k, n)?;
            kernels.insert((m, k, n), chosen.clone());
            Ok(chosen)
        };
        let scores_kernel = kernel(len, d, len)?;
        let values_kernel = kernel(len, len, d)?;
        for head in 0..self.heads {
            let column = start * row + head * d;
            // sᵀ[key][query] = k · q: keys as the left operand, queries transposed as the right.
            let keys = scores_kernel.pack_a(MatRef {
                buf: qkv,
                offset: column + h,
                rows: len,
                cols: d,
                row_stride: row,
                col_stride: 1,
            })?;
            let queries = scores_kernel.pack_b(MatRef {
                buf: qkv,
                offset: column,
                rows: d,
                cols: len,
                row_stride: 1,
                col_stride: row,
            })?;
            scores_kernel.run(
                scratch,
                &keys,
                &queries,
                &[],
                MatMut {
                    buf: scores,
                    offset: 0,
                    rows: len,
                    cols: len,
                    row_stride: len,
                    col_stride: 1,
                },
            )?;
            self.routines.softmax_keys(
                &mut scores.as_mut_slice()[..len * len],
                len,
                col_max,
                &mut inv_sums.as_mut_slice()[..len],
            )?;
            // ctx[query] = Σ_key e[key][query] · v[key] / Σ e: the exponentials read back
            // transposed as the left operand, the division as a per-row scale of the result.
            let weights = values_kernel.pack_a(MatRef {
                buf: scores,
                offset: 0,
                rows: len,
                cols: len,
                row_stride: 1,
                col_stride: len,
            })?;
            let values = values_kernel.pack_b(MatRef {
                buf: qkv,
                offset: column + 2 * h,
                rows: len,
                cols: d,
                row_stride: row,
                col_stride: 1,
            })?;
            values_kernel.run(
                scratch,
                &weights,
                &values,
                &[Epilogue::MulPerRow(inv_sums)],
                MatMut {
                    buf: ctx,
                    offset: start * h + head * d,
                    rows: len,
                    cols: d,
                    row_stride: h,
                    col_stride: 1,
                },
            )?;
        }
        Ok(())
    }
}

/// A token-major `[total, width]` buffer seen as the kernels' `width x total` operand.
fn tokens(buf: &Buf, width: usize, total: usize) -> MatRef<'_> {
    MatRef {
        buf,
        offset: 0,
        rows: width,
        cols: total,
        row_stride: 1,
        col_stride: width,
    }
}

/// The same as [`tokens`], as an output.
fn tokens_mut(buf: &mut Buf, width: usize, total: usize) -> MatMut<'_> {
    MatMut {
        buf,
        offset: 0,
        rows: width,
        cols: total,
        row_stride: 1,
        col_stride: width,
    }
}

impl Dense {
    /// Pack `weight` (`[out, inp]`, PyTorch's layout) for the kernel of an `n`-token product.
    fn new(
        weight: &[f32],
        bias: &[f32],
        out: usize,
        inp: usize,
        n: usize,
    ) -> Result<Dense, GemmError> {
        let kernel = Kernel::for_shape(out, inp, n)?;
        let w = Buf::from_slice(weight)?;
        let packed = kernel.pack_a(MatRef {
            buf: &w,
            offset: 0,
            rows: out,
            cols: inp,
            row_stride: inp,
            col_stride: 1,
        })?;
        Ok(Dense {
            kernel,
            weight: packed,
            bias: Buf::from_slice(bias)?,
            out,
        })
    }

    /// `out = W · x + b (+ residual)`, every matrix seen feature by token.
    fn apply(
        &self,
        scratch: &mut Scratch,
        x: MatRef<'_>,
        residual: Option<MatRef<'_>>,
        out: MatMut<'_>,
    ) -> Result<(), GemmError> {
        debug_assert_eq!(out.rows, self.out);
        let x = self.kernel.pack_b(x)?;
        let bias = Epilogue::AddPerRow(&self.bias);
        match residual {
            Some(r) => self.kernel.run(
                scratch,
                &self.weight,
                &x,
                &[bias, Epilogue::AddMatrix(r)],
                out,
            ),
            None => self.kernel.run(scratch, &self.weight, &x, &[bias], out),
        }
    }
}

/// Named f32 tensors of a checkpoint, whichever prefix it uses.
struct Weights<'a, 'data> {
    tensors: &'a SafeTensors<'data>,
    prefix: &'static str,
}

impl<'a, 'data> Weights<'a, 'data> {
    fn new(tensors: &'a SafeTensors<'data>) -> Result<Self, String> {
        // Checkpoints saved from BertModel have bare names, those saved from a task model
        // (BertForMaskedLM, ...) prefix them with "bert.".
        let prefix = ["", "bert."]
            .into_iter()
            .find(|p| {
                tensors
                    .tensor(&format!("{p}embeddings.word_embeddings.weight"))
                    .is_ok()
            })
            .ok_or_else(|| {
                "no tensor embeddings.word_embeddings.weight (nor bert.embeddings...): \
                 is this a BERT checkpoint?"
                    .to_owned()
            })?;
        Ok(Weights { tensors, prefix })
    }

    /// The f32 tensor `name`, checked to have `shape` when given.
    fn f32s(&self, name: &str, shape: Option<&[usize]>) -> Result<Vec<f32>, String> {
        let full = format!("{}{name}", self.prefix);
        let view = self
            .tensors
            .tensor(&full)
            .map_err(|e| format!("{full}: {e}"))?;
        if view.dtype() != Dtype::F32 || shape.is_some_and(|s| view.shape() != s) {
            return Err(format!(
                "{full}: expected f32 {shape:?} (from config.json), found {:?} {:?}",
                view.dtype(),
                view.shape()
            ));
        }
        Ok(view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// A PyTorch Linear layer: weight `[out, inp]` and bias `[out]`.
    fn linear(&self, layer: &str, out: usize, inp: usize) -> Result<(Vec<f32>, Vec<f32>), String> {
        Ok((
            self.f32s(&format!("{layer}.weight"), Some(&[out, inp]))?,
            self.f32s(&format!("{layer}.bias"), Some(&[out]))?,
        ))
    }

    fn norm(&self, layer: &str, width: usize) -> Result<Norm, String> {
        Ok(Norm {
            gamma: self.f32s(&format!("{layer}.weight"), Some(&[width]))?,
            beta: self.f32s(&format!("{layer}.bias"), Some(&[width]))?,
        })
    }
}
