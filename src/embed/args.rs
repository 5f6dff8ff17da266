//! The embedder flags, defined once and flattened into `run`, `embed` and `search` (and
//! `verify`): the in-process model directory, or a remote OpenAI-compatible server, and the text
//! template. [`EmbedderArgs::into_config`] validates them into an [`EmbedderConfig`], and
//! [`EmbedderConfig::open`] makes the [`TextEmbedder`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::fingerprint::Fingerprint;
use super::remote::{RemoteConfig, RemoteEmbedder};
use super::text_embedder::{EmbedCallError, TextEmbedder};
use super::{DEFAULT_MODEL_DIR, EmbedError};
use crate::secret::Secret;
use crate::template::{DEFAULT_TEMPLATE, Template, TemplateError};

/// Which embedder to use and what text to give it.
#[derive(Debug, Clone, Args)]
pub struct EmbedderArgs {
    /// Sentence-transformers model directory for in-process embedding (scripts/fetch-model puts
    /// it in models/). Not used with --embedder.
    #[arg(long, env = "VECSYNC_MODEL", default_value = DEFAULT_MODEL_DIR)]
    pub model: PathBuf,
    /// Embed with an OpenAI-compatible server instead of in-process: its API base, e.g.
    /// http://tei:8080/v1 (vecsync posts to {URL}/embeddings; TEI, vLLM, infinity, Ollama and
    /// OpenAI serve it).
    #[arg(long = "embedder", env = "VECSYNC_EMBEDDER", value_name = "URL")]
    pub embedder: Option<String>,
    /// The model name sent to the --embedder server.
    #[arg(
        long,
        env = "VECSYNC_EMBEDDER_MODEL",
        default_value = "all-MiniLM-L6-v2",
        value_name = "NAME"
    )]
    pub embedder_model: String,
    /// API key for the --embedder server, sent as Authorization: Bearer (prefer the
    /// environment variable).
    #[arg(long, env = "VECSYNC_EMBEDDER_API_KEY", hide_env_values = true)]
    pub embedder_api_key: Option<String>,
    /// Texts per request to the --embedder server.
    #[arg(long, env = "VECSYNC_EMBEDDER_BATCH", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=2048))]
    pub embedder_batch: u32,
    /// Requests to the --embedder server in flight at once (throughput scales with its replicas).
    #[arg(long, env = "VECSYNC_EMBEDDER_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub embedder_concurrency: u32,
    /// Limit of one request to the --embedder server, in seconds.
    #[arg(long, env = "VECSYNC_EMBEDDER_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub embedder_timeout_secs: u64,
    /// Limit of connecting to the --embedder server, in seconds.
    #[arg(long, env = "VECSYNC_EMBEDDER_CONNECT_TIMEOUT_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub embedder_connect_timeout_secs: u64,
    /// The text embedded for a row: {column} placeholders, {{ and }} for literal braces;
    /// missing or NULL columns render as empty. E.g. '{name}. {description}'.
    #[arg(long, env = "VECSYNC_EMBED_TEMPLATE", default_value = DEFAULT_TEMPLATE)]
    pub embed_template: String,
}

/// Why the embedder flags cannot work.
#[derive(Debug, thiserror::Error)]
pub enum EmbedderArgsError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("--embedder-model must not be empty")]
    EmptyModel,
}

/// Where the vectors come from.
#[derive(Debug, Clone)]
pub enum EmbedderSource {
    /// The in-process model in this directory.
    Local(PathBuf),
    /// An OpenAI-compatible server.
    Remote(RemoteConfig),
}

/// The embedder flags, validated.
#[derive(Debug, Clone)]
pub struct EmbedderConfig {
    pub source: EmbedderSource,
    pub template: Template,
}

impl Default for EmbedderConfig {
    /// The in-process model in [`DEFAULT_MODEL_DIR`] with the seed's template.
    fn default() -> Self {
        EmbedderConfig {
            source: EmbedderSource::Local(PathBuf::from(DEFAULT_MODEL_DIR)),
            template: Template::default(),
        }
    }
}

impl EmbedderArgs {
    pub fn into_config(self) -> Result<EmbedderConfig, EmbedderArgsError> {
        let template = Template::parse(&self.embed_template)?;
        let source = match self.embedder.filter(|u| !u.trim().is_empty()) {
            None => EmbedderSource::Local(self.model),
            Some(url) => {
                let model = self.embedder_model.trim();
                if model.is_empty() {
                    return Err(EmbedderArgsError::EmptyModel);
                }
                let mut remote = RemoteConfig::new(url.trim(), model);
                remote.api_key = self
                    .embedder_api_key
                    .filter(|k| !k.is_empty())
                    .map(Secret::new);
                remote.batch = self.embedder_batch as usize;
                remote.concurrency = self.embedder_concurrency as usize;
                remote.timeout = Duration::from_secs(self.embedder_timeout_secs);
                remote.connect_timeout = Duration::from_secs(self.embedder_connect_timeout_secs);
                EmbedderSource::Remote(remote)
            }
        };
        Ok(EmbedderConfig { source, template })
    }
}

/// Why the embedder cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot load the embedding model: {0}")]
    Model(#[from] EmbedError),
    #[error(transparent)]
    Remote(#[from] EmbedCallError),
}

impl EmbedderConfig {
    /// Whether the model runs in this process (on this machine's cores).
    pub fn is_local(&self) -> bool {
        matches!(self.source, EmbedderSource::Local(_))
    }

    /// Load the local model, or build the remote client (which contacts nobody yet: call
    /// [`TextEmbedder::probe`] next).
    pub async fn open(&self) -> Result<TextEmbedder, OpenError> {
        match &self.source {
            EmbedderSource::Local(dir) => Ok(TextEmbedder::load_local(dir).await?),
            EmbedderSource::Remote(remote) => {
                Ok(TextEmbedder::Remote(RemoteEmbedder::new(remote.clone())?))
            }
        }
    }

    /// The model directory, for the local model's identity (unused for a remote embedder).
    pub fn model_dir(&self) -> PathBuf {
        match &self.source {
            EmbedderSource::Local(dir) => dir.clone(),
            EmbedderSource::Remote(_) => PathBuf::new(),
        }
    }

    /// The fingerprint of `embedder` (opened from this config; a remote one probed) with this
    /// template. Hashes the model files: blocking, call it off the async threads or once.
    pub fn fingerprint(&self, embedder: &TextEmbedder) -> Result<Fingerprint, EmbedError> {
        let identity = embedder.identity(&self.model_dir())?;
        Ok(Fingerprint::new(identity, self.template.source()))
    }

    /// A short description for logs: the model directory or the server and model.
    pub fn describe(&self) -> String {
        match &self.source {
            EmbedderSource::Local(dir) => format!("in-process model {}", dir.display()),
            EmbedderSource::Remote(r) => format!(
                "remote model `{}` at {}",
                r.model,
                crate::config::redact_url(&r.url)
            ),
        }
    }
}

/// What `vecsync embed --info` prints: the embedding identity of the configured embedder.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EmbeddingInfo {
    /// The full fingerprint (sha256 hex).
    pub fingerprint: String,
    /// Its first 8 characters, as used in the Memcached key.
    pub short: String,
    /// Where the vectors come from, for people.
    pub embedder: String,
    pub dimension: usize,
    /// Whether the probe's vector is unit length (cosine and dot distances need it).
    pub normalized: bool,
    /// The model half of the fingerprint (file hashes, or the remote name and dimension).
    pub model: super::fingerprint::ModelIdentity,
    pub template: String,
}

/// Why `vecsync embed` failed on the configured embedder.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Embed(#[from] EmbedCallError),
    #[error(transparent)]
    Fingerprint(#[from] EmbedError),
    #[error(transparent)]
    Input(#[from] super::EmbedCommandError),
    #[error("cannot write the output")]
    Write(#[source] std::io::Error),
}

impl EmbedderConfig {
    /// Open and probe the embedder and compute its fingerprint (`vecsync embed --info`).
    pub async fn info(&self) -> Result<EmbeddingInfo, CommandError> {
        let embedder = self.open().await?;
        let probe = embedder.probe().await?;
        let fingerprint = {
            let (config, embedder) = (self.clone(), embedder.clone());
            tokio::task::spawn_blocking(move || config.fingerprint(&embedder))
                .await
                .map_err(|e| EmbedError::Internal(format!("the fingerprint task stopped: {e}")))??
        };
        Ok(EmbeddingInfo {
            fingerprint: fingerprint.as_str().to_owned(),
            short: fingerprint.short().to_owned(),
            embedder: self.describe(),
            dimension: probe.dimension,
            normalized: probe.is_normalized(),
            model: fingerprint.model().clone(),
            template: fingerprint.template().to_owned(),
        })
    }

    /// `vecsync embed` through this embedder: one `{"text", "vector"}` JSON line per input text,
    /// in input order (the in-process model also has [`super::run_command`], with `--bench`).
    pub async fn embed_command(
        &self,
        input: &super::EmbedInput,
        out: &mut dyn std::io::Write,
    ) -> Result<(), CommandError> {
        let texts = super::command::read_texts(input)?;
        let embedder = self.open().await?;
        let vectors = embedder.embed(texts.clone()).await?;
        let written = texts.iter().zip(&vectors).try_for_each(|(text, vector)| {
            super::command::write_json_line(
                out,
                &serde_json::json!({ "text": text, "vector": vector }),
            )
        });
        match written.and_then(|()| out.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other.map_err(CommandError::Write),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        embedder: EmbedderArgs,
    }

    fn parse(args: &[&str]) -> Result<EmbedderConfig, EmbedderArgsError> {
        let mut full = vec!["vecsync"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full)
            .expect("flags parse")
            .embedder
            .into_config()
    }

    #[test]
    fn defaults_are_the_local_model_and_the_seeds_text() {
        let c = parse(&[]).expect("valid");
        assert!(
            matches!(&c.source, EmbedderSource::Local(d) if d == std::path::Path::new(DEFAULT_MODEL_DIR))
        );
        assert!(c.template.is_default());
    }

    #[test]
    fn remote_flags_fill_the_remote_config() {
        let c = parse(&[
            "--embedder",
            "http://tei:8080/v1",
            "--embedder-model",
            "bge",
            "--embedder-api-key",
            "sk-1",
            "--embedder-batch",
            "8",
            "--embedder-concurrency",
            "4",
            "--embedder-timeout-secs",
            "9",
            "--embed-template",
            "{name}: {description}",
        ])
        .expect("valid");
        let EmbedderSource::Remote(r) = &c.source else {
            panic!("remote expected");
        };
        assert_eq!(r.url, "http://tei:8080/v1");
        assert_eq!(r.model, "bge");
        assert_eq!(r.api_key.as_ref().map(Secret::expose), Some("sk-1"));
        assert_eq!((r.batch, r.concurrency), (8, 4));
        assert_eq!(r.timeout, Duration::from_secs(9));
        assert_eq!(c.template.columns(), ["name", "description"]);
        assert!(!format!("{c:?}").contains("sk-1"), "the key never prints");
    }

    #[test]
    fn bad_values_name_the_flag() {
        let e = parse(&["--embed-template", "{name"]).expect_err("bad template");
        assert!(e.to_string().contains("--embed-template"), "{e}");
        let e = parse(&["--embedder", "http://h/v1", "--embedder-model", " "]).expect_err("empty");
        assert!(e.to_string().contains("--embedder-model"), "{e}");
        for flag in ["--embedder-batch", "--embedder-concurrency"] {
            assert!(
                Cli::try_parse_from(["vecsync", flag, "0"]).is_err(),
                "{flag} 0"
            );
        }
    }
}
