//! Builds the BERT encoder as an ONNX graph from `model.safetensors` and `config.json`.
//!
//! The published all-MiniLM-L6-v2 ships PyTorch weights, and the ONNX file current PyTorch
//! exports for it builds its attention mask with a construction tract 0.23 cannot type. So the
//! encoder is assembled here, node by node, with tract-onnx's protobuf types, in the classic
//! form (additive attention mask, exact-length batches padded on the right):
//!
//! ```text
//! input_ids [B,S] ─► word + token_type(0) + position embeddings ─► LayerNorm ─► h [B·S, H]
//! per layer:  q,k,v = Gemm(h) ─► heads [B,n,S,d] ─► softmax(q·kᵀ/√d + mask) · v ─► Gemm ─► +h ─► LayerNorm
//!             ─► Gemm ─► GELU (erf) ─► Gemm ─► + ─► LayerNorm
//! last_hidden_state [B,S,H]      mask = (1 - attention_mask) · -10000 on padded keys
//! ```
//!
//! It matches sentence-transformers to about 4e-7 (the parity test). Three rewrites, exact in
//! real arithmetic, make it fast in tract, whose element-wise operations on same-shape tensors
//! are vectorised but whose broadcasting ones fall back to a slow generic loop:
//!
//! - hidden states stay flat as `[B·S, H]` between attention blocks, so every dense layer is
//!   one matrix product over all tokens of the batch (`Gemm` with the PyTorch `[out, in]`
//!   weight as is);
//! - the mask is not added to the `[B,n,S,S]` scores in every layer: each head's queries get
//!   an extra component 1 and its keys an extra component holding the mask value, so the
//!   score product itself adds it (the 1/√d scale is folded into the query weights);
//! - LayerNorm biases are not added: each is folded into the biases of the layers that
//!   consume that hidden state (see [`Hidden`]), and only the last one is added at the end.
//!
//! The graph has the same inputs and output as a Hugging Face ONNX export, so
//! [`super::runtime`] runs either.

use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto::Dimension, tensor_shape_proto::dimension,
    type_proto,
};

use super::EmbedError;
use super::model_dir::BertConfig;

/// Name of the token ids input, `[batch, sequence]` int64.
pub const INPUT_IDS: &str = "input_ids";
/// Name of the attention mask input, `[batch, sequence]` int64, 1 for tokens and 0 for padding.
pub const ATTENTION_MASK: &str = "attention_mask";
/// Name of the output, `[batch, sequence, hidden]` f32.
pub const LAST_HIDDEN_STATE: &str = "last_hidden_state";

/// Added to the attention scores of padding positions (BERT's classic additive mask): after
/// softmax their weight is exactly 0 in f32, so padding never leaks into real tokens.
const MASK_BIAS: f32 = -10000.0;

/// The ONNX opset the graph is written against (17 has LayerNormalization).
const OPSET: i64 = 17;

/// Read `model.safetensors` and build the encoder graph for `config`.
pub fn build_from_safetensors(path: &Path, config: &BertConfig) -> Result<ModelProto, EmbedError> {
    let bytes = super::model_dir::read_model_file(path)?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| EmbedError::Weights {
        path: path.to_path_buf(),
        reason: format!("not a safetensors file: {e}"),
    })?;
    build(&tensors, config).map_err(|reason| EmbedError::Weights {
        path: path.to_path_buf(),
        reason,
    })
}

/// Build the encoder graph from loaded weights; errors name the tensor at fault.
pub fn build(weights: &SafeTensors<'_>, config: &BertConfig) -> Result<ModelProto, String> {
    // Checkpoints saved from BertModel have bare names, those saved from a task model
    // (BertForMaskedLM, ...) prefix them with "bert.".
    let prefix = if weights.tensor("embeddings.word_embeddings.weight").is_ok() {
        ""
    } else if weights
        .tensor("bert.embeddings.word_embeddings.weight")
        .is_ok()
    {
        "bert."
    } else {
        return Err(
            "no tensor embeddings.word_embeddings.weight (nor bert.embeddings...): \
                    is this a BERT checkpoint?"
                .to_owned(),
        );
    };
    let mut g = GraphBuilder {
        weights,
        prefix,
        nodes: Vec::new(),
        initializers: Vec::new(),
    };
    let h = config.hidden_size;
    let heads = config.num_attention_heads;
    let head_dim = h / heads;

    // Shapes computed from the inputs, so the graph works for any batch and sequence length.
    let input_shape = g.node("Shape", &[INPUT_IDS], vec![]); // [B, S]
    let shape_part = |g: &mut GraphBuilder<'_, '_>, start: i64| {
        g.node(
            "Shape",
            &[INPUT_IDS],
            vec![attr_int("start", start), attr_int("end", start + 1)],
        )
    };
    let batch_size = shape_part(&mut g, 0); // [B]
    let seq_len = shape_part(&mut g, 1); // [S]
    let flat_hidden_shape = g.const_i64("flat_hidden_shape", &[-1, h as i64]);
    let heads_tail = g.const_i64("heads_tail", &[heads as i64, head_dim as i64]);
    let heads_shape = g.node(
        "Concat",
        &[&input_shape, &heads_tail],
        vec![attr_int("axis", 0)],
    );
    let hidden_tail = g.const_i64("hidden_tail", &[h as i64]);
    let out_shape = g.node(
        "Concat",
        &[&input_shape, &hidden_tail],
        vec![attr_int("axis", 0)],
    );

    // Embeddings: word + token type 0 + position, in PyTorch's order of addition. Positions
    // are gathered per token rather than broadcast over the batch: tract adds same-shape
    // tensors with a vectorised kernel, broadcast ones with a much slower generic loop.
    let word_table = g.weight("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
    let words = g.node(
        "Gather",
        &[&word_table, INPUT_IDS],
        vec![attr_int("axis", 0)],
    );
    let type_row = g.weight_row("embeddings.token_type_embeddings.weight", 0, h)?;
    let with_type = g.node("Add", &[&words, &type_row], vec![]);
    let pos_table = g.weight(
        "embeddings.position_embeddings.weight",
        &[config.max_position_embeddings, h],
    )?;
    let zero = g.const_i64("zero", &[0]);
    let zero_s = g.const_i64_scalar("zero_scalar", 0);
    let one_s = g.const_i64_scalar("one_scalar", 1);
    let seq_len_s = g.node("Squeeze", &[&seq_len, &zero], vec![]);
    let range = g.node("Range", &[&zero_s, &seq_len_s, &one_s], vec![]); // [S]
    let range = g.node("Unsqueeze", &[&range, &zero], vec![]); // [1, S]
    let position_ids = g.node("Expand", &[&range, &input_shape], vec![]); // [B, S]
    let positions = g.node(
        "Gather",
        &[&pos_table, &position_ids],
        vec![attr_int("axis", 0)],
    );
    let embedded = g.node("Add", &[&with_type, &positions], vec![]);
    let embedded = g.layer_norm(&embedded, "embeddings.LayerNorm", h, config.layer_norm_eps)?;
    let mut hidden = Hidden {
        name: g.node("Reshape", &[&embedded.name, &flat_hidden_shape], vec![]),
        beta: embedded.beta,
    };

    // The attention mask rides inside the score product: each head's queries get an extra
    // component 1 and its keys an extra component (1 - mask) * -10000, so q'.k' = q.k + bias.
    // That is exactly q.k for real tokens (their bias is 0) and drives padding to 0 weight
    // after softmax, without a broadcast add over [B, n, S, S] in every layer (slow in tract,
    // see above). The extra components come out of the query and key projections themselves
    // (an extra output row per head: zero weights, bias 1 for queries), and the key's mask
    // term is a same-shape add. The 1/sqrt(d) score scale is folded into the query weights.
    let mask = g.node(
        "Cast",
        &[ATTENTION_MASK],
        vec![attr_int("to", DataType::Float as i64)],
    );
    let one = g.const_f32("one", &[], &[1.0]);
    let inverted = g.node("Sub", &[&one, &mask], vec![]);
    let bias_value = g.const_f32("mask_bias_value", &[], &[MASK_BIAS]);
    let bias = g.node("Mul", &[&inverted, &bias_value], vec![]); // [B, S]
    let bias_axes = g.const_i64("bias_axes", &[2, 3]);
    let bias = g.node("Unsqueeze", &[&bias, &bias_axes], vec![]); // [B, S, 1, 1]
    let heads_one = g.const_i64("heads_one", &[heads as i64, 1]);
    let extra_shape = g.node(
        "Concat",
        &[&batch_size, &seq_len, &heads_one],
        vec![attr_int("axis", 0)],
    );
    let key_extra = g.node("Expand", &[&bias, &extra_shape], vec![]); // [B, S, n, 1]
    let pads = g.const_i64("key_mask_pads", &[0, 0, 0, head_dim as i64, 0, 0, 0, 0]);
    let key_mask = g.node("Pad", &[&key_extra, &pads], vec![]); // [B, S, n, d + 1]
    let flat_augmented = g.const_i64("flat_augmented", &[-1, (heads * (head_dim + 1)) as i64]);
    let key_mask = g.node("Reshape", &[&key_mask, &flat_augmented], vec![]); // [B·S, n(d + 1)]
    let augmented_heads_tail =
        g.const_i64("augmented_heads_tail", &[heads as i64, head_dim as i64 + 1]);
    let augmented_heads_shape = g.node(
        "Concat",
        &[&input_shape, &augmented_heads_tail],
        vec![attr_int("axis", 0)],
    );
    let scale = 1.0 / (head_dim as f32).sqrt();
    let inv_sqrt2 = g.const_f32("inv_sqrt2", &[], &[std::f32::consts::FRAC_1_SQRT_2]);
    let half = g.const_f32("half", &[], &[0.5]);

    for layer in 0..config.num_hidden_layers {
        let p = format!("encoder.layer.{layer}");
        let transpose = |g: &mut GraphBuilder<'_, '_>, x: &str, perm: &[i64]| {
            g.node("Transpose", &[x], vec![attr_ints("perm", perm)])
        };
        let attention = format!("{p}.attention.self");
        let q = g.dense_augmented(
            &hidden,
            &format!("{attention}.query"),
            heads,
            head_dim,
            scale,
            1.0,
        )?;
        let k = g.dense_augmented(
            &hidden,
            &format!("{attention}.key"),
            heads,
            head_dim,
            1.0,
            0.0,
        )?;
        let k = g.node("Add", &[&k, &key_mask], vec![]);
        let v = g.dense(&hidden, &format!("{attention}.value"), h, h, None)?;
        let q = g.node("Reshape", &[&q, &augmented_heads_shape], vec![]); // [B, S, n, d + 1]
        let q = transpose(&mut g, &q, &[0, 2, 1, 3]); // [B, n, S, d + 1]
        let k = g.node("Reshape", &[&k, &augmented_heads_shape], vec![]);
        let k = transpose(&mut g, &k, &[0, 2, 3, 1]); // [B, n, d + 1, S]
        let v = g.node("Reshape", &[&v, &heads_shape], vec![]); // [B, S, n, d]
        let v = transpose(&mut g, &v, &[0, 2, 1, 3]); // [B, n, S, d]
        let scores = g.node("MatMul", &[&q, &k], vec![]); // [B, n, S, S], masked
        let probs = g.node("Softmax", &[&scores], vec![attr_int("axis", -1)]);
        let context = g.node("MatMul", &[&probs, &v], vec![]); // [B, n, S, d]
        let context = transpose(&mut g, &context, &[0, 2, 1, 3]);
        let context = Hidden {
            name: g.node("Reshape", &[&context, &flat_hidden_shape], vec![]),
            beta: None,
        };
        // The residual's pending LayerNorm bias goes into this layer's bias.
        let attended = g.dense(
            &context,
            &format!("{p}.attention.output.dense"),
            h,
            h,
            hidden.beta.as_deref(),
        )?;
        let attended = g.node("Add", &[&attended, &hidden.name], vec![]);
        let attended = g.layer_norm(
            &attended,
            &format!("{p}.attention.output.LayerNorm"),
            h,
            config.layer_norm_eps,
        )?;

        let inter = config.intermediate_size;
        let up = g.dense(
            &attended,
            &format!("{p}.intermediate.dense"),
            inter,
            h,
            None,
        )?;
        // GELU, exact: x * 0.5 * (1 + erf(x / sqrt(2))), as transformers computes it.
        let scaled = g.node("Mul", &[&up, &inv_sqrt2], vec![]);
        let erf = g.node("Erf", &[&scaled], vec![]);
        let erf_plus_one = g.node("Add", &[&erf, &one], vec![]);
        let half_up = g.node("Mul", &[&up, &half], vec![]);
        let activated = Hidden {
            name: g.node("Mul", &[&half_up, &erf_plus_one], vec![]),
            beta: None,
        };
        let down = g.dense(
            &activated,
            &format!("{p}.output.dense"),
            h,
            inter,
            attended.beta.as_deref(),
        )?;
        let down = g.node("Add", &[&down, &attended.name], vec![]);
        hidden = g.layer_norm(
            &down,
            &format!("{p}.output.LayerNorm"),
            h,
            config.layer_norm_eps,
        )?;
    }
    // The last LayerNorm's bias is still pending: add it.
    let hidden = match &hidden.beta {
        Some(beta) => {
            let beta = g.const_f32("final_beta", &[1, h as i64], beta);
            g.node("Add", &[&hidden.name, &beta], vec![])
        }
        None => hidden.name,
    };
    // Named after the output, as in an exported model.
    let out = g.named_node(LAST_HIDDEN_STATE, "Reshape", &[&hidden, &out_shape], vec![]);

    let batch_seq = || vec![dim_param("batch"), dim_param("sequence")];
    let graph = GraphProto {
        name: "bert_encoder".to_owned(),
        node: g.nodes,
        initializer: g.initializers,
        input: vec![
            value_info(INPUT_IDS, DataType::Int64, batch_seq()),
            value_info(ATTENTION_MASK, DataType::Int64, batch_seq()),
        ],
        output: vec![value_info(
            &out,
            DataType::Float,
            vec![
                dim_param("batch"),
                dim_param("sequence"),
                dim_value(h as i64),
            ],
        )],
        ..GraphProto::default()
    };
    Ok(ModelProto {
        ir_version: 8,
        producer_name: "vecsync".to_owned(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        graph: Some(graph),
        ..ModelProto::default()
    })
}

/// A hidden state in the graph: the value named `name`, plus `beta` (a LayerNorm bias) when
/// that is still to be added.
///
/// tract fuses a LayerNorm's scale-then-bias into a chain of two broadcast operations that it
/// evaluates with a slow generic loop, while a lone scale gets its vectorised kernel. A bias
/// is linear, so instead of adding it the builder folds it into the biases of the layers that
/// consume the hidden state: a dense layer's (through `W · beta`) and the residual sum's.
struct Hidden {
    name: String,
    beta: Option<Vec<f32>>,
}

/// `bias += W · beta`, for `W` stored row-major `[bias.len(), beta.len()]`; accumulated in f64.
fn fold_input_bias(bias: &mut [f32], weight: &[f32], beta: &[f32]) {
    for (b, row) in bias.iter_mut().zip(weight.chunks_exact(beta.len())) {
        let dot: f64 = row
            .iter()
            .zip(beta)
            .map(|(w, x)| f64::from(*w) * f64::from(*x))
            .sum();
        *b = (f64::from(*b) + dot) as f32;
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Accumulates nodes and initializers; every value gets a fresh, readable name.
struct GraphBuilder<'w, 'data> {
    weights: &'w SafeTensors<'data>,
    prefix: &'static str,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl GraphBuilder<'_, '_> {
    /// Add a node with one output and return the output's name.
    fn node(&mut self, op_type: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> String {
        let name = format!("{}_{}", op_type.to_lowercase(), self.nodes.len());
        self.named_node(&name, op_type, inputs, attribute)
    }

    /// Add a node whose output is called `name`.
    fn named_node(
        &mut self,
        name: &str,
        op_type: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> String {
        let name = name.to_owned();
        self.nodes.push(NodeProto {
            name: name.clone(),
            op_type: op_type.to_owned(),
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![name.clone()],
            attribute,
            ..NodeProto::default()
        });
        name
    }

    /// The f32 tensor `name` of the checkpoint, checked to have `shape`, as an initializer.
    fn weight(&mut self, name: &str, shape: &[usize]) -> Result<String, String> {
        let data = self.tensor_bytes(name, shape)?.to_vec();
        Ok(self.initializer(name, shape, data))
    }

    /// Row `row` of the `[rows, width]` f32 tensor `name`, as a `[width]` initializer.
    fn weight_row(&mut self, name: &str, row: usize, width: usize) -> Result<String, String> {
        let full = format!("{}{name}", self.prefix);
        let view = self
            .weights
            .tensor(&full)
            .map_err(|e| format!("{full}: {e}"))?;
        if view.dtype() != Dtype::F32 || view.shape().len() != 2 || view.shape()[1] != width {
            return Err(format!(
                "{full}: expected f32 [_, {width}], found {:?} {:?}",
                view.dtype(),
                view.shape()
            ));
        }
        let start = row * width * 4;
        let data = view
            .data()
            .get(start..start + width * 4)
            .ok_or_else(|| format!("{full}: has no row {row}"))?
            .to_vec();
        Ok(self.initializer(&format!("{name}.row{row}"), &[width], data))
    }

    fn tensor_bytes(&self, name: &str, shape: &[usize]) -> Result<&[u8], String> {
        let full = format!("{}{name}", self.prefix);
        let view = self
            .weights
            .tensor(&full)
            .map_err(|e| format!("{full}: {e}"))?;
        if view.dtype() != Dtype::F32 || view.shape() != shape {
            return Err(format!(
                "{full}: expected f32 {shape:?} (from config.json), found {:?} {:?}",
                view.dtype(),
                view.shape()
            ));
        }
        Ok(view.data())
    }

    /// A PyTorch Linear layer over flat `[N, in]` hidden states: `x · Wᵀ + b`, plus `extra`
    /// (a pending LayerNorm bias of the residual this output is added to) when given.
    ///
    /// The pending bias of `x` itself is folded in as `W · beta`, since
    /// `(x + beta) · Wᵀ + b = x · Wᵀ + (W · beta + b)`.
    fn dense(
        &mut self,
        x: &Hidden,
        layer: &str,
        out: usize,
        inp: usize,
        extra: Option<&[f32]>,
    ) -> Result<String, String> {
        let w = self.weight(&format!("{layer}.weight"), &[out, inp])?;
        let bias_name = format!("{layer}.bias");
        let mut bias = f32_values(self.tensor_bytes(&bias_name, &[out])?);
        if let Some(beta) = &x.beta {
            let weight = f32_values(self.tensor_bytes(&format!("{layer}.weight"), &[out, inp])?);
            fold_input_bias(&mut bias, &weight, beta);
        }
        if let Some(extra) = extra {
            for (b, e) in bias.iter_mut().zip(extra) {
                *b += e;
            }
        }
        let b = self.initializer(&format!("{bias_name}.folded"), &[out], f32_bytes(&bias));
        Ok(self.node("Gemm", &[&x.name, &w, &b], vec![attr_int("transB", 1)]))
    }

    /// A square attention projection (`heads * head_dim` wide) with its output scaled by
    /// `scale` and one extra output per head, placed after that head's `head_dim` outputs, that
    /// ignores the input and equals `extra`: `[N, heads * head_dim] -> [N, heads * (head_dim + 1)]`.
    fn dense_augmented(
        &mut self,
        x: &Hidden,
        layer: &str,
        heads: usize,
        head_dim: usize,
        scale: f32,
        extra: f32,
    ) -> Result<String, String> {
        let width = heads * head_dim;
        let weight = f32_values(self.tensor_bytes(&format!("{layer}.weight"), &[width, width])?);
        let mut bias = f32_values(self.tensor_bytes(&format!("{layer}.bias"), &[width])?);
        if let Some(beta) = &x.beta {
            fold_input_bias(&mut bias, &weight, beta);
        }
        let mut w = Vec::with_capacity((width + heads) * width * 4);
        let mut b = Vec::with_capacity((width + heads) * 4);
        for head in 0..heads {
            for row in head * head_dim..(head + 1) * head_dim {
                for &v in &weight[row * width..(row + 1) * width] {
                    w.extend_from_slice(&(v * scale).to_le_bytes());
                }
                b.extend_from_slice(&(bias[row] * scale).to_le_bytes());
            }
            w.extend(std::iter::repeat_n(0u8, width * 4));
            b.extend_from_slice(&extra.to_le_bytes());
        }
        let out = width + heads;
        let w = self.initializer(&format!("{layer}.weight.augmented"), &[out, width], w);
        let b = self.initializer(&format!("{layer}.bias.augmented"), &[out], b);
        Ok(self.node("Gemm", &[&x.name, &w, &b], vec![attr_int("transB", 1)]))
    }

    /// LayerNorm over the last axis, with its bias left pending in the result (see [`Hidden`]).
    fn layer_norm(
        &mut self,
        x: &str,
        layer: &str,
        width: usize,
        eps: f32,
    ) -> Result<Hidden, String> {
        let gamma = self.weight(&format!("{layer}.weight"), &[width])?;
        let beta = f32_values(self.tensor_bytes(&format!("{layer}.bias"), &[width])?);
        let name = self.node(
            "LayerNormalization",
            &[x, &gamma],
            vec![attr_int("axis", -1), attr_float("epsilon", eps)],
        );
        Ok(Hidden {
            name,
            beta: Some(beta),
        })
    }

    fn initializer(&mut self, name: &str, shape: &[usize], raw_data: Vec<u8>) -> String {
        self.initializers.push(TensorProto {
            name: name.to_owned(),
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            raw_data,
            ..TensorProto::default()
        });
        name.to_owned()
    }

    fn const_f32(&mut self, name: &str, shape: &[i64], values: &[f32]) -> String {
        self.initializers.push(TensorProto {
            name: name.to_owned(),
            dims: shape.to_vec(),
            data_type: DataType::Float as i32,
            float_data: values.to_vec(),
            ..TensorProto::default()
        });
        name.to_owned()
    }

    fn const_i64_scalar(&mut self, name: &str, value: i64) -> String {
        self.initializers.push(TensorProto {
            name: name.to_owned(),
            dims: vec![],
            data_type: DataType::Int64 as i32,
            int64_data: vec![value],
            ..TensorProto::default()
        });
        name.to_owned()
    }

    fn const_i64(&mut self, name: &str, values: &[i64]) -> String {
        self.initializers.push(TensorProto {
            name: name.to_owned(),
            dims: vec![values.len() as i64],
            data_type: DataType::Int64 as i32,
            int64_data: values.to_vec(),
            ..TensorProto::default()
        });
        name.to_owned()
    }
}

/// Little-endian f32 bytes (as safetensors stores them) to values.
fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Int as i32,
        i,
        ..AttributeProto::default()
    }
}

fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..AttributeProto::default()
    }
}

fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Float as i32,
        f,
        ..AttributeProto::default()
    }
}

fn dim_param(name: &str) -> Dimension {
    Dimension {
        value: Some(dimension::Value::DimParam(name.to_owned())),
        ..Dimension::default()
    }
}

fn dim_value(v: i64) -> Dimension {
    Dimension {
        value: Some(dimension::Value::DimValue(v)),
        ..Dimension::default()
    }
}

fn value_info(name: &str, elem_type: DataType, dims: Vec<Dimension>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem_type as i32,
                shape: Some(TensorShapeProto { dim: dims }),
            })),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}
