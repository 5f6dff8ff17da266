//! Compiles a transformer graph with tract and runs padded batches through it.
//!
//! The graph comes either from `onnx/model.onnx` or from [`super::bert`]; both take int64
//! `input_ids` and `attention_mask` of shape `[batch, sequence]` (an exported model may also
//! take `token_type_ids`, fed as zeros) and produce `last_hidden_state` `[batch, sequence,
//! hidden]`. The plan is optimised once with batch and sequence left symbolic, so one compiled
//! plan, and one copy of the packed weights, serves every batch shape. (A plan made for one
//! concrete shape measured no faster on an 8 x 44 batch, 105 against 101 ms, and would need a
//! compile and ~40 MB of packed weights per shape.) Plans are immutable and shared between
//! threads; each worker runs them through its own [`TypedSimpleState`].

use std::path::Path;
use std::sync::Arc;

use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use super::EmbedError;
use super::bert::{ATTENTION_MASK, INPUT_IDS, LAST_HIDDEN_STATE};

/// Most texts in one batch; the compiled plan assumes it.
pub(crate) const MAX_BATCH_TEXTS: usize = 4096;

/// The sizes a plan is compiled for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ModelDims {
    /// Width of the output hidden states.
    pub hidden_size: usize,
    /// Longest input, in tokens.
    pub max_seq_length: usize,
}

/// What the runner feeds to each model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputRole {
    InputIds,
    AttentionMask,
    TokenTypeIds,
}

/// A compiled transformer, ready to run from any number of threads.
#[derive(Debug, Clone)]
pub(crate) struct CompiledModel {
    plan: Arc<TypedSimplePlan>,
    inputs: Vec<InputRole>,
    hidden_size: usize,
}

/// One batch of token ids, padded on the right to a common length.
#[derive(Debug, Clone)]
pub(crate) struct PaddedBatch {
    /// Texts in the batch.
    pub batch: usize,
    /// Tokens per text after padding.
    pub seq_len: usize,
    /// `batch * seq_len` token ids, row-major; padding is token 0.
    pub ids: Vec<i64>,
    /// `batch * seq_len` mask values: 1 for a token, 0 for padding.
    pub mask: Vec<i64>,
}

impl PaddedBatch {
    /// Pad `texts` (token ids) to the longest of them.
    pub fn new<'a>(texts: impl IntoIterator<Item = &'a [i64]> + Clone) -> PaddedBatch {
        let seq_len = texts
            .clone()
            .into_iter()
            .map(<[i64]>::len)
            .max()
            .unwrap_or(0);
        let mut ids = Vec::new();
        let mut mask = Vec::new();
        let mut batch = 0;
        for t in texts {
            batch += 1;
            ids.extend_from_slice(t);
            ids.resize(batch * seq_len, 0);
            mask.resize(mask.len() + t.len(), 1);
            mask.resize(batch * seq_len, 0);
        }
        PaddedBatch {
            batch,
            seq_len,
            ids,
            mask,
        }
    }
}

impl CompiledModel {
    /// Load and compile an ONNX file exported from a Hugging Face BERT model.
    pub fn from_onnx_file(path: &Path, dims: ModelDims) -> Result<CompiledModel, EmbedError> {
        let desc = path.display().to_string();
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| graph_error(&desc, e))?;
        Self::compile(model, &desc, dims)
    }

    /// Compile a graph assembled in memory (see [`super::bert`]); the protobuf copy of the
    /// weights is dropped as soon as tract has its own, to keep the loading peak low.
    pub fn from_proto(proto: ModelProto, dims: ModelDims) -> Result<CompiledModel, EmbedError> {
        let desc = "BERT graph built from model.safetensors";
        let model = tract_onnx::onnx()
            .model_for_proto_model(&proto)
            .map_err(|e| graph_error(desc, e))?;
        drop(proto);
        Self::compile(model, desc, dims)
    }

    fn compile(
        mut model: InferenceModel,
        desc: &str,
        dims: ModelDims,
    ) -> Result<CompiledModel, EmbedError> {
        let ModelDims {
            hidden_size,
            max_seq_length,
        } = dims;
        let batch = model.sym("batch");
        let sequence = model.sym("sequence");
        // Bounds on the symbols let tract prove tensors are large enough for its vectorised
        // element-wise kernels. The embedder never exceeds them: batches hold at most
        // MAX_BATCH_TEXTS texts, and texts are truncated at max_seq_length.
        for assertion in [
            "batch >= 1".to_owned(),
            format!("batch <= {MAX_BATCH_TEXTS}"),
            "sequence >= 1".to_owned(),
            format!("sequence <= {max_seq_length}"),
        ] {
            model
                .symbols
                .add_assertion(assertion)
                .map_err(|e| graph_error(desc, e))?;
        }
        let mut inputs = Vec::new();
        for ix in 0..model.inputs.len() {
            let outlet = model.inputs[ix];
            let name = model.node(outlet.node).name.clone();
            let role = match name.as_str() {
                INPUT_IDS => InputRole::InputIds,
                ATTENTION_MASK => InputRole::AttentionMask,
                "token_type_ids" => InputRole::TokenTypeIds,
                other => {
                    return Err(EmbedError::Graph {
                        source_desc: desc.to_owned(),
                        reason: format!(
                            "unexpected model input {other:?}; expected input_ids, \
                             attention_mask and optionally token_type_ids"
                        ),
                    });
                }
            };
            inputs.push(role);
            // Whatever the file declares, the runner feeds int64 [batch, sequence].
            let fact = i64::fact([TDim::from(batch.clone()), TDim::from(sequence.clone())]);
            model
                .set_input_fact(ix, fact.into())
                .map_err(|e| graph_error(desc, e))?;
        }
        if !inputs.contains(&InputRole::InputIds) || !inputs.contains(&InputRole::AttentionMask) {
            return Err(EmbedError::Graph {
                source_desc: desc.to_owned(),
                reason: "the model must take input_ids and attention_mask".to_owned(),
            });
        }
        // Keep only the token embeddings; an export may also output a pooled vector.
        let outputs = model.outputs.clone();
        let output = outputs
            .iter()
            .copied()
            .find(|o| model.outlet_label(*o) == Some(LAST_HIDDEN_STATE))
            .or_else(|| outputs.first().copied())
            .ok_or_else(|| EmbedError::Graph {
                source_desc: desc.to_owned(),
                reason: "the model has no output".to_owned(),
            })?;
        model
            .select_output_outlets(&[output])
            .map_err(|e| graph_error(desc, e))?;

        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| graph_error(desc, e))?;
        Ok(CompiledModel {
            plan,
            inputs,
            hidden_size,
        })
    }

    /// Fresh per-thread execution state for the shared plan.
    pub fn spawn_state(&self) -> Result<TypedSimpleState, EmbedError> {
        self.plan
            .spawn()
            .map_err(|e| graph_error("a worker's execution state", e))
    }

    /// Run one batch; returns the hidden states, `batch * seq_len * hidden` f32, row-major.
    pub fn run(
        &self,
        state: &mut TypedSimpleState,
        batch: &PaddedBatch,
    ) -> Result<Vec<f32>, EmbedError> {
        let failed = |e: TractError| EmbedError::Inference {
            batch: batch.batch,
            seq_len: batch.seq_len,
            reason: format!("{e:#}"),
        };
        let shape = [batch.batch, batch.seq_len];
        let mut feed = TVec::new();
        for role in &self.inputs {
            let t = match role {
                InputRole::InputIds => Tensor::from_shape(&shape, &batch.ids),
                InputRole::AttentionMask => Tensor::from_shape(&shape, &batch.mask),
                InputRole::TokenTypeIds => Ok(Tensor::zero::<i64>(&shape).map_err(failed)?),
            }
            .map_err(failed)?;
            feed.push(t.into_tvalue());
        }
        let outputs = state.run(feed).map_err(failed)?;
        let out = outputs
            .into_iter()
            .next()
            .ok_or_else(|| EmbedError::Inference {
                batch: batch.batch,
                seq_len: batch.seq_len,
                reason: "the model produced no output".to_owned(),
            })?;
        let expected = [batch.batch, batch.seq_len, self.hidden_size];
        if out.shape() != expected {
            return Err(EmbedError::Inference {
                batch: batch.batch,
                seq_len: batch.seq_len,
                reason: format!("output shape {:?}, expected {expected:?}", out.shape()),
            });
        }
        let view = out.to_plain_array_view::<f32>().map_err(failed)?;
        Ok(view.iter().copied().collect())
    }
}

fn graph_error(desc: &str, e: TractError) -> EmbedError {
    EmbedError::Graph {
        source_desc: desc.to_owned(),
        reason: format!("{e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_goes_right_with_a_zero_mask() {
        let a: &[i64] = &[101, 7, 102];
        let b: &[i64] = &[101, 102];
        let p = PaddedBatch::new([a, b]);
        assert_eq!((p.batch, p.seq_len), (2, 3));
        assert_eq!(p.ids, vec![101, 7, 102, 101, 102, 0]);
        assert_eq!(p.mask, vec![1, 1, 1, 1, 1, 0]);
    }
}
