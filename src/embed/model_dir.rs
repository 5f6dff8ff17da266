//! Reads and checks a sentence-transformers model directory, as published on a model hub.
//!
//! The files that matter, and what vecsync takes from each:
//!
//! | file | used for |
//! |------|----------|
//! | `modules.json` | the pipeline: Transformer, then Pooling, then (optionally) Normalize |
//! | `sentence_bert_config.json` | `max_seq_length` (the truncation limit) and `do_lower_case` |
//! | `<pooling path>/config.json` | which pooling; only mean pooling is implemented |
//! | `config.json` | the BERT hyper-parameters |
//! | `tokenizer.json` | the WordPiece tokenizer |
//! | `onnx/model.onnx` (optional) | the transformer as ONNX; preferred when present |
//! | `model.safetensors` | the transformer weights, when there is no ONNX file |
//!
//! Anything the directory asks for that vecsync does not implement (another pooling mode, a
//! Dense module, another architecture) is refused here with a message, rather than producing
//! vectors that silently differ from sentence-transformers.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::EmbedError;

/// What a model directory says about how to embed, checked and ready to use.
#[derive(Debug, Clone)]
pub struct ModelDir {
    /// The directory itself.
    pub dir: PathBuf,
    /// sentence-transformers' truncation limit, in tokens, [CLS] and [SEP] included.
    pub max_seq_length: usize,
    /// Whether sentence-transformers lowercases texts before tokenizing (on top of the tokenizer).
    pub do_lower_case: bool,
    /// Whether modules.json ends with a Normalize module (L2 normalisation of the pooled vector).
    pub normalize: bool,
    /// The transformer's hyper-parameters.
    pub bert: BertConfig,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// `onnx/model.onnx`, when the directory has one.
    pub onnx: Option<PathBuf>,
    /// `model.safetensors` (only required when there is no ONNX file).
    pub safetensors: PathBuf,
}

/// The subset of Hugging Face's `config.json` that a BERT encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// Width of every hidden state (384 for all-MiniLM-L6-v2).
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer; `hidden_size` must be a multiple of it.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Epsilon of every LayerNorm.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f32,
    /// Rows of the position embedding table: the longest input the model can take.
    pub max_position_embeddings: usize,
    /// Rows of the word embedding table.
    pub vocab_size: usize,
    /// The feed-forward activation; only the exact (erf) GELU is implemented.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    /// Only absolute position embeddings are implemented.
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
    /// The architecture; only BERT is implemented.
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_layer_norm_eps() -> f32 {
    1e-12
}
fn default_hidden_act() -> String {
    "gelu".to_owned()
}
fn default_position_embedding_type() -> String {
    "absolute".to_owned()
}

#[derive(Debug, Deserialize)]
struct ModuleEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
    #[serde(default)]
    do_lower_case: bool,
}

#[derive(Debug, Deserialize)]
struct PoolingConfig {
    word_embedding_dimension: usize,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

impl ModelDir {
    /// Read and check every configuration file of the model directory `dir`.
    ///
    /// The weight files are only located here (and must exist); they are read by the loader.
    pub fn open(dir: &Path) -> Result<ModelDir, EmbedError> {
        require(dir, true)?;
        let modules_path = dir.join("modules.json");
        let modules: Vec<ModuleEntry> = read_json(&modules_path)?;
        let (pooling_path, normalize) = check_modules(&modules_path, &modules)?;

        let st_path = dir.join("sentence_bert_config.json");
        let st: SentenceBertConfig = read_json(&st_path)?;

        let bert_path = dir.join("config.json");
        let bert: BertConfig = read_json(&bert_path)?;
        check_bert(&bert_path, &bert)?;
        if st.max_seq_length == 0 || st.max_seq_length > bert.max_position_embeddings {
            return Err(EmbedError::BadConfig {
                path: st_path,
                reason: format!(
                    "max_seq_length {} must be between 1 and the model's max_position_embeddings {}",
                    st.max_seq_length, bert.max_position_embeddings
                ),
            });
        }

        let pooling_cfg_path = dir.join(&pooling_path).join("config.json");
        let pooling: PoolingConfig = read_json(&pooling_cfg_path)?;
        check_pooling(&pooling_cfg_path, &pooling, bert.hidden_size)?;

        let tokenizer = require_file(dir.join("tokenizer.json"))?;
        let onnx = Some(dir.join("onnx").join("model.onnx")).filter(|p| p.is_file());
        let safetensors = dir.join("model.safetensors");
        if onnx.is_none() {
            require_file(safetensors.clone())?;
        }
        Ok(ModelDir {
            dir: dir.to_path_buf(),
            max_seq_length: st.max_seq_length,
            do_lower_case: st.do_lower_case,
            normalize,
            bert,
            tokenizer,
            onnx,
            safetensors,
        })
    }
}

fn require_file(path: PathBuf) -> Result<PathBuf, EmbedError> {
    require(&path, false)?;
    Ok(path)
}

/// `path` is there as a directory (`dir`) or a file. "Not there" says to fetch the model; any
/// other failure (a directory the user may not enter) is reported as what it is.
fn require(path: &Path, dir: bool) -> Result<(), EmbedError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() == dir => Ok(()),
        Ok(_) => Err(EmbedError::MissingFile {
            path: path.to_path_buf(),
        }),
        Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(EmbedError::MissingFile {
                path: path.to_path_buf(),
            })
        }
        Err(source) => Err(EmbedError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Read a file of the model directory, telling "not there" (fetch the model) from other I/O
/// failures.
pub(crate) fn read_model_file(path: &Path) -> Result<Vec<u8>, EmbedError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            EmbedError::MissingFile {
                path: path.to_path_buf(),
            }
        } else {
            EmbedError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Read a JSON file, telling apart "not there" (fetch the model) from "not valid".
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EmbedError> {
    let bytes = read_model_file(path)?;
    serde_json::from_slice(&bytes).map_err(|e| EmbedError::BadConfig {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The module list must be Transformer, Pooling, then optionally Normalize: anything else
/// (Dense, another pooling layer, a CNN) would change the vectors in a way not implemented here.
/// Returns the Pooling module's folder and whether the vectors are normalised.
fn check_modules(path: &Path, modules: &[ModuleEntry]) -> Result<(String, bool), EmbedError> {
    let short: Vec<&str> = modules
        .iter()
        .map(|m| m.kind.rsplit('.').next().unwrap_or(&m.kind))
        .collect();
    let bad = |reason: String| EmbedError::BadConfig {
        path: path.to_path_buf(),
        reason,
    };
    match short.as_slice() {
        ["Transformer", "Pooling"] | ["Transformer", "Pooling", "Normalize"] => {
            Ok((modules[1].path.clone(), short.len() == 3))
        }
        _ => Err(bad(format!(
            "vecsync implements the module pipeline Transformer -> Pooling [-> Normalize], \
             this model has {short:?}"
        ))),
    }
}

fn check_bert(path: &Path, c: &BertConfig) -> Result<(), EmbedError> {
    let bad = |reason: String| {
        Err(EmbedError::BadConfig {
            path: path.to_path_buf(),
            reason,
        })
    };
    if let Some(t) = &c.model_type
        && t != "bert"
    {
        return bad(format!(
            "model_type {t:?} is not implemented; only \"bert\" is"
        ));
    }
    if c.hidden_act != "gelu" {
        return bad(format!(
            "hidden_act {:?} is not implemented; only \"gelu\" (exact, erf form) is",
            c.hidden_act
        ));
    }
    if c.position_embedding_type != "absolute" {
        return bad(format!(
            "position_embedding_type {:?} is not implemented; only \"absolute\" is",
            c.position_embedding_type
        ));
    }
    if c.num_attention_heads == 0
        || c.hidden_size == 0
        || c.hidden_size % c.num_attention_heads != 0
    {
        return bad(format!(
            "hidden_size {} is not a multiple of num_attention_heads {}",
            c.hidden_size, c.num_attention_heads
        ));
    }
    if !(c.layer_norm_eps.is_finite() && c.layer_norm_eps > 0.0) {
        return bad(format!(
            "layer_norm_eps {} must be a positive number",
            c.layer_norm_eps
        ));
    }
    Ok(())
}

fn check_pooling(path: &Path, p: &PoolingConfig, hidden_size: usize) -> Result<(), EmbedError> {
    let bad = |reason: String| {
        Err(EmbedError::BadConfig {
            path: path.to_path_buf(),
            reason,
        })
    };
    if p.word_embedding_dimension != hidden_size {
        return bad(format!(
            "word_embedding_dimension {} differs from the transformer's hidden_size {hidden_size}",
            p.word_embedding_dimension
        ));
    }
    let others = p.pooling_mode_cls_token
        || p.pooling_mode_max_tokens
        || p.pooling_mode_mean_sqrt_len_tokens
        || p.pooling_mode_weightedmean_tokens
        || p.pooling_mode_lasttoken;
    if !p.pooling_mode_mean_tokens || others {
        return bad("only mean pooling (pooling_mode_mean_tokens alone) is implemented".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("file has a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write fixture");
    }

    /// A model directory with the configuration files of all-MiniLM-L6-v2 and empty weights.
    fn minilm_like(dir: &Path) {
        write(
            dir,
            "modules.json",
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
                {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
                {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
        );
        write(
            dir,
            "sentence_bert_config.json",
            r#"{"max_seq_length": 256, "do_lower_case": false}"#,
        );
        write(
            dir,
            "1_Pooling/config.json",
            r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": false,
                "pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": false,
                "pooling_mode_mean_sqrt_len_tokens": false}"#,
        );
        write(
            dir,
            "config.json",
            r#"{"hidden_act": "gelu", "hidden_size": 384, "intermediate_size": 1536,
                "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert",
                "num_attention_heads": 12, "num_hidden_layers": 6, "type_vocab_size": 2,
                "vocab_size": 30522, "position_embedding_type": "absolute"}"#,
        );
        write(dir, "tokenizer.json", "{}");
        write(dir, "model.safetensors", "");
    }

    #[test]
    fn reads_the_minilm_configuration() {
        let tmp = tempfile::tempdir().expect("tempdir");
        minilm_like(tmp.path());
        let m = ModelDir::open(tmp.path()).expect("valid model dir");
        assert_eq!(m.max_seq_length, 256);
        assert!(!m.do_lower_case);
        assert!(m.normalize);
        assert_eq!(m.bert.hidden_size, 384);
        assert_eq!(m.bert.num_attention_heads, 12);
        assert_eq!(m.onnx, None);
    }

    #[test]
    fn missing_directory_and_files_point_at_fetch_model() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let err = ModelDir::open(&tmp.path().join("nope")).expect_err("no dir");
        assert!(matches!(err, EmbedError::MissingFile { .. }), "{err}");
        assert!(err.to_string().contains("scripts/fetch-model"), "{err}");

        minilm_like(tmp.path());
        std::fs::remove_file(tmp.path().join("model.safetensors")).expect("rm");
        let err = ModelDir::open(tmp.path()).expect_err("no weights");
        assert!(err.to_string().contains("model.safetensors"), "{err}");
        assert!(err.to_string().contains("scripts/fetch-model"), "{err}");
    }

    #[test]
    fn an_onnx_file_replaces_the_safetensors() {
        let tmp = tempfile::tempdir().expect("tempdir");
        minilm_like(tmp.path());
        std::fs::remove_file(tmp.path().join("model.safetensors")).expect("rm");
        write(tmp.path(), "onnx/model.onnx", "");
        let m = ModelDir::open(tmp.path()).expect("onnx is enough");
        assert_eq!(m.onnx, Some(tmp.path().join("onnx/model.onnx")));
    }

    #[test]
    fn refuses_what_is_not_implemented() {
        let tmp = tempfile::tempdir().expect("tempdir");
        minilm_like(tmp.path());
        write(
            tmp.path(),
            "1_Pooling/config.json",
            r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": true}"#,
        );
        let err = ModelDir::open(tmp.path()).expect_err("cls pooling");
        assert!(err.to_string().contains("mean pooling"), "{err}");

        minilm_like(tmp.path());
        write(
            tmp.path(),
            "modules.json",
            r#"[{"path":"","type":"sentence_transformers.models.Transformer"},
                {"path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
                {"path":"2_Dense","type":"sentence_transformers.models.Dense"}]"#,
        );
        let err = ModelDir::open(tmp.path()).expect_err("dense module");
        assert!(err.to_string().contains("Dense"), "{err}");

        minilm_like(tmp.path());
        write(
            tmp.path(),
            "sentence_bert_config.json",
            r#"{"max_seq_length": 1024}"#,
        );
        let err = ModelDir::open(tmp.path()).expect_err("too long");
        assert!(err.to_string().contains("max_position_embeddings"), "{err}");

        minilm_like(tmp.path());
        write(tmp.path(), "config.json", "{not json");
        let err = ModelDir::open(tmp.path()).expect_err("bad json");
        assert!(matches!(err, EmbedError::BadConfig { .. }), "{err}");
    }
}
