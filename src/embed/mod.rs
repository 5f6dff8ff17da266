//! Sentence embeddings in-process: the same vectors as sentence-transformers all-MiniLM-L6-v2.
//!
//! A sentence-transformers model directory (as published, see [`model_dir`]) is read once by
//! [`Embedder::load`]: the WordPiece tokenizer from `tokenizer.json` with sentence-transformers'
//! own truncation limit, and the transformer: by default vecsync's own BERT encoder on
//! tract-linalg's kernels, read from `model.safetensors` + `config.json` (`native`: texts
//! packed end to end, no padding), or tract's optimised graph for a directory that only has
//! `onnx/model.onnx` ([`bert`] builds the same graph from safetensors, [`Engine::Graph`]).
//! Texts are cut into batches ([`batching`]) that worker threads, started with the model and
//! kept for the life of the [`Embedder`], take from one queue (`pool`); the hidden states are
//! mean-pooled over the real tokens and L2-normalised ([`pooling`]).
//!
//! # Error handling
//! Every [`EmbedError`] is definite: a missing or malformed model file, or a failure inside
//! the inference engine. Retrying the same call gives the same error, so callers stop and show
//! the message, which says what to fix.

pub mod args;
pub mod batching;
pub mod bert;
pub mod command;
mod embedder;
pub mod fingerprint;
pub mod model_dir;
mod native;
mod pool;
pub mod pooling;
pub mod remote;
mod runtime;
pub mod text_embedder;
pub mod tokenize;

use std::path::PathBuf;

pub use command::{EmbedCommand, EmbedCommandError, EmbedInput, run_command};
pub use embedder::{EmbedOptions, Embedder, Engine, runtime_worker_threads};
pub use model_dir::ModelDir;

pub use args::{EmbedderArgs, EmbedderConfig, EmbedderSource};
pub use fingerprint::{Fingerprint, ModelIdentity};
pub use remote::{RemoteConfig, RemoteEmbedder};
pub use text_embedder::{EmbedCallError, Probe, TextEmbedder, TextOutcome, check_fits};

/// The model directory used when nothing else is configured, relative to the working directory.
pub const DEFAULT_MODEL_DIR: &str = "models/all-MiniLM-L6-v2";

/// What the operator should do when the model files are not there.
pub const FETCH_HINT: &str = "run scripts/fetch-model to download all-MiniLM-L6-v2 into \
     models/all-MiniLM-L6-v2, or point --model / VECSYNC_MODEL at a sentence-transformers model directory";

/// Why a model could not be loaded or a text could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A file the model directory must contain is not there.
    #[error("model file {} is missing; {FETCH_HINT}", path.display())]
    MissingFile {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// A model file exists but could not be read.
    #[error("cannot read model file {}", path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file is malformed or asks for something vecsync does not implement.
    #[error("model configuration {}: {reason}", path.display())]
    BadConfig {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `tokenizer.json` could not be loaded, or a text could not be tokenized.
    #[error("tokenizer: {reason}")]
    Tokenizer {
        /// The tokenizer's own message.
        reason: String,
    },
    /// The weights in `model.safetensors` are missing a tensor or have the wrong shape or type.
    #[error("model weights {}: {reason}", path.display())]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What is wrong with them.
        reason: String,
    },
    /// tract could not type or optimise the model graph.
    #[error("cannot prepare the model graph ({source_desc}): {reason}")]
    Graph {
        /// Where the graph came from (an ONNX file, or built from safetensors).
        source_desc: String,
        /// tract's message, with its context chain.
        reason: String,
    },
    /// Running the model failed.
    #[error("inference failed on a batch of {batch} texts of {seq_len} tokens: {reason}")]
    Inference {
        /// Texts in the failed batch.
        batch: usize,
        /// Padded sequence length of the batch.
        seq_len: usize,
        /// tract's message, with its context chain.
        reason: String,
    },
    /// A bug in vecsync (a worker thread panicked, a text got no vector), reported as an error
    /// rather than a crash.
    #[error("internal error in the embedder (a bug, please report it): {0}")]
    Internal(String),
}
