//! Refusing to mix embeddings: the index records which embedding (model + text template) built
//! it, in the checkpoint and in the Weaviate class, and vecsync stops when its own differs.
//!
//! A class without a record is adopted: the record is written (a class vecsync just created, or
//! the seed's index, which the same model built from the same text). A class with another record
//! is a definite error naming both fingerprints and the way out (`--reindex`).

use crate::checkpoint::EmbeddingRecord;
use crate::embed::{Fingerprint, ModelIdentity};
use crate::sink::{SinkError, WeaviateSink};

/// A mismatch between the index and the configuration.
#[derive(Debug, thiserror::Error)]
#[error(
    "{place} was built with embedding {recorded}; this configuration embeds with {ours}. vecsync \
     never mixes vectors of two embeddings in one index: restart with --reindex to build a new \
     index with this configuration while the old one keeps serving (see the README), or go back \
     to the previous model and --embed-template"
)]
pub struct Mismatch {
    place: String,
    recorded: String,
    ours: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
    #[error(
        "the embedding record of Weaviate class `{class}` cannot be read ({reason}); it was edited \
         by hand: restore the class description, or rebuild the index with --reindex"
    )]
    Unreadable { class: String, reason: String },
    #[error(transparent)]
    Weaviate(#[from] SinkError),
}

/// `fp` in words: its short id, the model and the template.
pub fn describe(fp: &Fingerprint) -> String {
    let model = match fp.model() {
        ModelIdentity::Local { files } => {
            let weights = files
                .iter()
                .find(|(name, _)| name.ends_with(".safetensors") || name.ends_with(".onnx"))
                .map(|(name, sha)| format!("{name} sha256 {}", &sha[..sha.len().min(12)]))
                .unwrap_or_else(|| "its files".into());
            format!("the in-process model ({weights})")
        }
        ModelIdentity::Remote { model, dimension } => {
            format!("remote model `{model}` ({dimension} dimensions)")
        }
    };
    format!("{} ({model}, template {:?})", fp.short(), fp.template())
}

/// Check `fp` against what the checkpoint and the class recorded, and record it where it is
/// missing. Returns the record to keep in the checkpoint.
pub async fn check(
    sink: &WeaviateSink,
    in_checkpoint: Option<&EmbeddingRecord>,
    fp: &Fingerprint,
) -> Result<EmbeddingRecord, IdentityError> {
    let class = sink.class().to_owned();
    if let Some(record) = in_checkpoint
        && record.class == class
        && record.fingerprint != fp.as_str()
    {
        return Err(Mismatch {
            place: format!("the index in this checkpoint (class `{class}`)"),
            recorded: record.fingerprint.chars().take(8).collect(),
            ours: describe(fp),
        }
        .into());
    }
    match sink.embedding_record().await? {
        Some(text) => {
            let recorded: Fingerprint =
                serde_json::from_str(&text).map_err(|e| IdentityError::Unreadable {
                    class: class.clone(),
                    reason: e.to_string(),
                })?;
            if !recorded.is_consistent() {
                return Err(IdentityError::Unreadable {
                    class,
                    reason: "its id is not the hash of its model and template".into(),
                });
            }
            if recorded.as_str() != fp.as_str() {
                return Err(Mismatch {
                    place: format!("Weaviate class `{class}`"),
                    recorded: describe(&recorded),
                    ours: describe(fp),
                }
                .into());
            }
        }
        None => {
            if sink.has_objects().await? {
                tracing::warn!(
                    class = %class,
                    embedding = %describe(fp),
                    "the class holds objects but no embedding record (the seed's index, or one \
                     built by an older vecsync): adopting it as built with this embedding; \
                     `vecsync verify --deep N` compares stored vectors with fresh ones"
                );
            }
            // Serializing plain data cannot fail.
            let text = serde_json::to_string(fp).unwrap_or_default();
            sink.set_embedding_record(&text).await?;
            tracing::info!(class = %class, embedding = %describe(fp), "recorded the index's embedding in the class");
        }
    }
    Ok(EmbeddingRecord {
        fingerprint: fp.as_str().to_owned(),
        class,
    })
}
