//! The embedding identity: which model and which text made a vector.
//!
//! Two vectors can only be compared when the same model embedded the same kind of text. The
//! [`Fingerprint`] names that pair: sha256 over a canonical JSON of
//!
//! - the model: for the in-process model, the sha256 of every file that decides its vectors
//!   (the weights actually loaded, `tokenizer.json`, `config.json`, `sentence_bert_config.json`
//!   for the truncation limit and lowercasing, `modules.json` for normalisation, and the pooling
//!   module's `config.json`); for a remote embedder, the model name and the vector dimension
//!   (all a client can see of a remote model);
//! - the text template (`--embed-template`, see [`crate::template`]).
//!
//! The model directory's path, the server's URL and the API key are deliberately left out: the
//! same files anywhere, or the same model behind another replica, embed alike.
//!
//! [`Fingerprint::short`] (8 hex characters) goes into the Memcached key, so two deployments
//! that share a Memcached can never swap vectors. The whole value serialises (serde) for the
//! checkpoint and the index metadata.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::EmbedError;
use super::model_dir::{ModelDir, read_model_file};

/// Bumped if the canonical form below ever changes, so old and new fingerprints cannot collide.
const SCHEME: &str = "vecsync-embedding-identity-v1";

/// The model half of the identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ModelIdentity {
    /// The in-process model: model-directory file (relative path) -> sha256 hex.
    Local { files: BTreeMap<String, String> },
    /// An OpenAI-compatible server: what vecsync asks for, and what it gets.
    Remote { model: String, dimension: usize },
}

impl ModelIdentity {
    /// Hash the files of the model directory that decide its vectors. Reads the weights (about
    /// 90 MB for all-MiniLM-L6-v2, a fraction of a second): call it once at start.
    pub fn of_model_dir(dir: &Path) -> Result<ModelIdentity, EmbedError> {
        let opened = ModelDir::open(dir)?;
        let weights = opened.onnx.as_ref().unwrap_or(&opened.safetensors);
        let mut paths = vec![
            weights.clone(),
            opened.tokenizer.clone(),
            dir.join("config.json"),
            dir.join("sentence_bert_config.json"),
            dir.join("modules.json"),
        ];
        paths.extend(pooling_config(dir)?);
        let mut files = BTreeMap::new();
        for path in paths {
            let bytes = read_model_file(&path)?;
            let name = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            files.insert(name, hex(&Sha256::digest(&bytes)));
        }
        Ok(ModelIdentity::Local { files })
    }
}

/// The pooling module's config file, as modules.json names it (`1_Pooling/config.json` in the
/// published model). ModelDir already checked that it exists and is valid.
fn pooling_config(dir: &Path) -> Result<Option<std::path::PathBuf>, EmbedError> {
    let path = dir.join("modules.json");
    let modules: Value =
        serde_json::from_slice(&read_model_file(&path)?).map_err(|e| EmbedError::BadConfig {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    let pooling = modules.as_array().and_then(|m| {
        m.iter().find(|entry| {
            entry
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("Pooling"))
        })
    });
    Ok(pooling
        .and_then(|p| p.get("path").and_then(Value::as_str))
        .map(|p| dir.join(p).join("config.json")))
}

/// A model plus a template, hashed. Equal fingerprints mean interchangeable vectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// sha256 hex of the canonical form of `model` and `template`.
    id: String,
    model: ModelIdentity,
    template: String,
}

impl Fingerprint {
    /// The fingerprint of `model` embedding texts made by `template` (its source text).
    pub fn new(model: ModelIdentity, template: &str) -> Fingerprint {
        let canonical = serde_json::json!({
            "scheme": SCHEME,
            "model": model,
            "template": template,
        });
        // serde_json writes the BTreeMap in key order and the json! object in insertion order
        // (preserve_order), so equal inputs always give equal bytes.
        let id = hex(&Sha256::digest(canonical.to_string().as_bytes()));
        Fingerprint {
            id,
            model,
            template: template.to_owned(),
        }
    }

    /// The full sha256 hex (64 characters).
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The first 8 hex characters: for keys, class names and messages.
    pub fn short(&self) -> &str {
        &self.id[..8]
    }

    pub fn model(&self) -> &ModelIdentity {
        &self.model
    }

    pub fn template(&self) -> &str {
        &self.template
    }

    /// Whether `id` is the hash of the rest (a fingerprint read back from a file or from
    /// Weaviate was not edited by hand or cut short).
    pub fn is_consistent(&self) -> bool {
        Fingerprint::new(self.model.clone(), &self.template).id == self.id
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(model: &str, dimension: usize) -> ModelIdentity {
        ModelIdentity::Remote {
            model: model.into(),
            dimension,
        }
    }

    #[test]
    fn same_inputs_same_fingerprint_and_every_input_counts() {
        let a = Fingerprint::new(remote("m", 384), "{description}");
        assert_eq!(a, Fingerprint::new(remote("m", 384), "{description}"));
        assert_eq!(a.as_str().len(), 64);
        assert_eq!(a.short(), &a.as_str()[..8]);
        assert_ne!(
            a.id,
            Fingerprint::new(remote("m2", 384), "{description}").id
        );
        assert_ne!(a.id, Fingerprint::new(remote("m", 768), "{description}").id);
        assert_ne!(a.id, Fingerprint::new(remote("m", 384), "{name}").id);
    }

    #[test]
    fn round_trips_through_json_and_detects_edits() {
        let fp = Fingerprint::new(remote("all-MiniLM-L6-v2", 384), "{name}. {description}");
        let json = serde_json::to_value(&fp).expect("serialize");
        assert_eq!(json["model"]["kind"], "remote");
        let back: Fingerprint = serde_json::from_value(json.clone()).expect("deserialize");
        assert_eq!(back, fp);
        assert!(back.is_consistent());
        let mut edited = json;
        edited["template"] = "{name}".into();
        let edited: Fingerprint = serde_json::from_value(edited).expect("deserialize");
        assert!(!edited.is_consistent());
    }

    #[test]
    fn a_missing_model_directory_says_how_to_fetch_it() {
        let e = ModelIdentity::of_model_dir(Path::new("/nonexistent/model")).expect_err("missing");
        assert!(e.to_string().contains("fetch-model"), "{e}");
    }
}
