//! `vecsync run`'s flags and environment variables, validated into a [`Config`].
//!
//! Secrets (the MariaDB password, the Weaviate API key) live in [`Secret`], whose `Debug` and
//! `Display` print `***`, and URLs are logged through [`redact_url`], so neither reaches a log.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::embed::args::EmbedderArgsError;
use crate::embed::{EmbedderArgs, EmbedderConfig};
use crate::position::GtidPosition;
pub use crate::secret::Secret;
use crate::sink::ConsistencyLevel;

/// `url` with any password replaced by `***`, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// How to start when there is no usable position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotMode {
    /// Snapshot the table when there is no checkpoint, then stream.
    #[default]
    Initial,
    /// Like initial, and also re-snapshot when the checkpoint's binlog was purged.
    WhenNeeded,
    /// Snapshot on every start, then stream from the snapshot's position.
    Always,
    /// Never snapshot: with no checkpoint, start at the server's current position.
    Never,
}

/// MariaDB flags, shared by `vecsync run` and `vecsync verify`.
#[derive(Debug, Clone, Args)]
pub struct MariadbArgs {
    /// MariaDB to replicate from, as mysql://user@host:port (add ?require_ssl=true for TLS). For
    /// failover, list several servers in order of preference: comma-separated hosts in one URL
    /// (mysql://user@db1:3306,db2:3306) and/or the flag repeated; vecsync streams from the first
    /// reachable one that has its GTID position.
    #[arg(
        long,
        env = "MARIADB_URL",
        default_value = "mysql://vecsync@localhost:3306",
        action = clap::ArgAction::Append
    )]
    pub mariadb_url: Vec<String>,
    /// MariaDB password (prefer the environment variable or --mariadb-password-file over the flag).
    #[arg(long, env = "MARIADB_PASSWORD", hide_env_values = true)]
    pub mariadb_password: Option<String>,
    /// File whose first line is the MariaDB password (e.g. a Docker or Kubernetes secret).
    #[arg(
        long,
        env = "MARIADB_PASSWORD_FILE",
        conflicts_with = "mariadb_password"
    )]
    pub mariadb_password_file: Option<PathBuf>,
    /// CA certificate (PEM) to verify MariaDB's TLS certificate with; implies TLS.
    #[arg(long, env = "MARIADB_SSL_CA")]
    pub mariadb_ssl_ca: Option<PathBuf>,
    /// The table to replicate, as db.table.
    #[arg(long, env = "VECSYNC_TABLE", default_value = "catalog.products")]
    pub table: String,
}

/// Weaviate flags, shared by `vecsync run` and `vecsync verify`.
#[derive(Debug, Clone, Args)]
pub struct WeaviateArgs {
    /// Weaviate's REST endpoint.
    #[arg(long, env = "WEAVIATE_URL", default_value = "http://localhost:8080")]
    pub weaviate_url: String,
    /// Weaviate API key, sent as Authorization: Bearer.
    #[arg(long, env = "WEAVIATE_API_KEY", hide_env_values = true)]
    pub weaviate_api_key: Option<String>,
    /// File whose first line is the Weaviate API key (a Kubernetes secret, a systemd credential);
    /// an empty file means no key.
    #[arg(
        long,
        env = "WEAVIATE_API_KEY_FILE",
        conflicts_with = "weaviate_api_key"
    )]
    pub weaviate_api_key_file: Option<PathBuf>,
    /// Weaviate class the products are written to.
    #[arg(long, env = "VECSYNC_CLASS", default_value = "Product")]
    pub class: String,
    /// Weaviate consistency level for writes on a replicated cluster (ONE, QUORUM, ALL).
    #[arg(long, env = "WEAVIATE_CONSISTENCY_LEVEL")]
    pub consistency_level: Option<ConsistencyLevel>,
}

/// Embedding cache flags, shared by `vecsync run` and `vecsync verify`.
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// Memcached host:port for the embedding cache; "none" turns the cache off.
    #[arg(long, env = "MEMCACHED_SERVER", default_value = "localhost:11211")]
    pub memcached: String,
    /// How long a cached embedding lives, in seconds.
    #[arg(long, env = "VECSYNC_CACHE_TTL_SECS", default_value_t = 2)]
    pub cache_ttl_secs: u64,
}

/// Flags of `vecsync run`. Every flag also reads an environment variable where one is named.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub mariadb: MariadbArgs,
    /// Replica server id vecsync uses on the binlog connection; unique among the server's replicas.
    #[arg(long, env = "VECSYNC_SERVER_ID", default_value_t = 184054)]
    pub server_id: u32,

    #[command(flatten)]
    pub weaviate: WeaviateArgs,
    #[command(flatten)]
    pub cache: CacheArgs,

    /// The in-process model or a remote embedder, and the text template.
    #[command(flatten)]
    pub embedder: EmbedderArgs,

    /// Checkpoint file: the GTID position of the last transaction Weaviate confirmed.
    #[arg(long, env = "VECSYNC_CHECKPOINT", default_value = "vecsync.checkpoint")]
    pub checkpoint: PathBuf,
    /// Start streaming right after this MariaDB GTID position (e.g. 0-223344-17), ignoring the checkpoint.
    #[arg(long, env = "VECSYNC_GTID")]
    pub gtid: Option<GtidPosition>,
    /// When to read the whole table first: initial, when-needed, always or never.
    #[arg(long, env = "VECSYNC_SNAPSHOT", value_enum, default_value_t = SnapshotMode::Initial)]
    pub snapshot: SnapshotMode,
    /// Rows per snapshot chunk: each chunk is one short consistent read, merged into the stream.
    #[arg(long, env = "VECSYNC_SNAPSHOT_CHUNK_ROWS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub snapshot_chunk_rows: u32,

    /// Also write every change event as a Debezium-envelope JSON line to this file ("-" = stdout).
    #[arg(long, env = "VECSYNC_EMIT_EVENTS")]
    pub emit_events: Option<String>,
    /// File where events Weaviate rejects for good are kept (JSON lines with the event and the error).
    #[arg(
        long,
        env = "VECSYNC_DEAD_LETTER",
        default_value = "vecsync.deadletter.jsonl"
    )]
    pub dead_letter: PathBuf,

    /// Address for Prometheus /metrics, /healthz and /readyz.
    #[arg(long, env = "VECSYNC_METRICS_ADDR", default_value = "127.0.0.1:9187")]
    pub metrics_addr: SocketAddr,

    /// Most change events per batch (one model call and one Weaviate batch each).
    #[arg(long, env = "VECSYNC_BATCH_SIZE", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// While events keep coming, the longest a batch waits after its first one for more, in
    /// milliseconds (lets a storm coalesce).
    #[arg(long, env = "VECSYNC_BATCH_WAIT_MS", default_value_t = 10)]
    pub batch_wait_ms: u64,
    /// Memory for changes read from the binlog but not yet confirmed by Weaviate, in MiB: the
    /// transaction being read and every queued or in-flight batch together. A transaction larger
    /// than this is passed on in parts.
    #[arg(long, env = "VECSYNC_MAX_BUFFER_MB", default_value_t = crate::budget::DEFAULT_MAX_BUFFER_MB, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(16..=1_048_576))]
    pub max_buffer_mb: usize,
    /// A batch goes on as soon as no event arrived for this long, in milliseconds: at a low write
    /// rate a commit waits only this, not the whole --batch-wait-ms.
    #[arg(long, env = "VECSYNC_BATCH_IDLE_MS", default_value_t = 1)]
    pub batch_idle_ms: u64,
    /// On SIGTERM/SIGINT, how long to finish the in-flight batch before exiting anyway, in seconds.
    #[arg(long, env = "VECSYNC_SHUTDOWN_TIMEOUT_SECS", default_value_t = 20)]
    pub shutdown_timeout_secs: u64,

    /// Zero-downtime re-index into a new class, switched in by an alias (`--reindex`).
    #[command(flatten)]
    pub reindex: crate::pipeline::reindex::ReindexArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--table must be db.table, got {0:?}")]
    Table(String),
    #[error("cannot read the MariaDB password file {path}")]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the Weaviate API key file {path}")]
    ApiKeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--mariadb-url {url} is not a mysql:// URL: {reason}")]
    MariadbUrl { url: String, reason: String },
    #[error("--weaviate-url {0:?} must start with http:// or https://")]
    WeaviateUrl(String),
    #[error(
        "--class {0:?} is not a Weaviate class name (a capital letter, then letters, digits or _)"
    )]
    Class(String),
    #[error(transparent)]
    Embedder(#[from] EmbedderArgsError),
    #[error(transparent)]
    Reindex(#[from] crate::pipeline::reindex::ReindexArgsError),
}

/// A `db.table` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    pub db: String,
    pub table: String,
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.db, self.table)
    }
}

impl std::str::FromStr for TableRef {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('.') {
            Some((db, table)) if !db.is_empty() && !table.is_empty() && !table.contains('.') => {
                Ok(TableRef {
                    db: db.to_owned(),
                    table: table.to_owned(),
                })
            }
            _ => Err(ConfigError::Table(s.to_owned())),
        }
    }
}

/// Everything `vecsync run` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The MariaDB URL without password; see `mariadb_password`. It may list several hosts.
    pub mariadb_url: String,
    /// More MariaDB URLs (the flag repeated), without passwords, tried in order after the first.
    pub mariadb_failover_urls: Vec<String>,
    pub mariadb_password: Option<Secret>,
    pub mariadb_ssl_ca: Option<PathBuf>,
    pub table: TableRef,
    pub server_id: u32,
    pub weaviate_url: String,
    pub weaviate_api_key: Option<Secret>,
    pub class: String,
    pub consistency_level: Option<ConsistencyLevel>,
    pub memcached: Option<String>,
    pub cache_ttl: Duration,
    pub embedder: EmbedderConfig,
    pub checkpoint: PathBuf,
    pub gtid: Option<GtidPosition>,
    pub snapshot: SnapshotMode,
    pub snapshot_chunk_rows: usize,
    /// `--max-buffer-mb`, in bytes.
    pub max_buffer_bytes: usize,
    pub emit_events: Option<String>,
    pub dead_letter: PathBuf,
    pub metrics_addr: SocketAddr,
    pub batch_size: usize,
    pub batch_wait: Duration,
    pub batch_idle: Duration,
    pub shutdown_timeout: Duration,
    /// `--reindex` and its settings; `None`: a normal run.
    pub reindex: Option<crate::pipeline::reindex::ReindexConfig>,
}

/// The MariaDB settings, validated.
#[derive(Debug, Clone)]
pub struct MariadbSettings {
    /// The URL without password; see `password`. It may list several hosts.
    pub url: String,
    /// More URLs (the flag repeated), without passwords, tried in order after the first.
    pub failover_urls: Vec<String>,
    pub password: Option<Secret>,
    pub ssl_ca: Option<PathBuf>,
    pub table: TableRef,
}

impl MariadbArgs {
    /// Validate the flags. The password comes from the flag/environment, else the file, else
    /// from the URL itself (which is then stripped of it).
    pub fn into_settings(self) -> Result<MariadbSettings, ConfigError> {
        let table: TableRef = self.table.parse()?;
        let mut urls = Vec::new();
        let mut url_password: Option<Secret> = None;
        for url in &self.mariadb_url {
            let (stripped, password) = split_password(url)?;
            if let Some(p) = password {
                if url_password.as_ref().is_some_and(|q| q != &p) {
                    return Err(ConfigError::MariadbUrl {
                        url: redact_url(url),
                        reason: "the URLs carry different passwords; vecsync uses one password \
                                 for every server (pass it with MARIADB_PASSWORD)"
                            .into(),
                    });
                }
                url_password = Some(p);
            }
            urls.push(stripped);
        }
        let mut urls = urls.into_iter();
        let url = urls.next().unwrap_or_default();
        let failover_urls: Vec<String> = urls.collect();
        let password = match (self.mariadb_password, self.mariadb_password_file) {
            (Some(p), _) => Some(Secret::new(p)),
            (None, Some(path)) => Some(
                read_secret_file(&path)
                    .map_err(|source| ConfigError::PasswordFile { path, source })?,
            ),
            (None, None) => url_password,
        };
        Ok(MariadbSettings {
            url,
            failover_urls,
            password,
            ssl_ca: self.mariadb_ssl_ca,
            table,
        })
    }
}

/// The Weaviate settings, validated.
#[derive(Debug, Clone)]
pub struct WeaviateSettings {
    /// Without a trailing `/`.
    pub url: String,
    pub api_key: Option<Secret>,
    pub class: String,
    pub consistency_level: Option<ConsistencyLevel>,
}

impl WeaviateArgs {
    /// Validate the flags; an empty key (file) means no key.
    pub fn into_settings(self) -> Result<WeaviateSettings, ConfigError> {
        let api_key = match (self.weaviate_api_key, self.weaviate_api_key_file) {
            (Some(key), _) => Some(Secret::new(key)),
            (None, Some(path)) => Some(
                read_secret_file(&path)
                    .map_err(|source| ConfigError::ApiKeyFile { path, source })?,
            ),
            (None, None) => None,
        }
        .filter(|k| !k.expose().is_empty());
        if !(self.weaviate_url.starts_with("http://") || self.weaviate_url.starts_with("https://"))
        {
            return Err(ConfigError::WeaviateUrl(self.weaviate_url));
        }
        let class_ok = self
            .class
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase())
            && self
                .class
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !class_ok {
            return Err(ConfigError::Class(self.class));
        }
        Ok(WeaviateSettings {
            url: self.weaviate_url.trim_end_matches('/').to_owned(),
            api_key,
            class: self.class,
            consistency_level: self.consistency_level,
        })
    }
}

impl CacheArgs {
    /// The Memcached server, `None` when the cache is off.
    pub fn server(&self) -> Option<String> {
        match self.memcached.trim() {
            "" | "none" => None,
            s => Some(s.to_owned()),
        }
    }

    /// How long a cached embedding lives (at least a second).
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs.max(1))
    }
}

impl RunArgs {
    /// Validate the flags.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let mariadb = self.mariadb.into_settings()?;
        let weaviate = self.weaviate.into_settings()?;
        let embedder = self.embedder.into_config()?;
        let reindex = self.reindex.into_config()?;
        Ok(Config {
            mariadb_url: mariadb.url,
            mariadb_failover_urls: mariadb.failover_urls,
            mariadb_password: mariadb.password,
            mariadb_ssl_ca: mariadb.ssl_ca,
            table: mariadb.table,
            server_id: self.server_id,
            weaviate_url: weaviate.url,
            weaviate_api_key: weaviate.api_key,
            class: weaviate.class,
            consistency_level: weaviate.consistency_level,
            memcached: self.cache.server(),
            cache_ttl: self.cache.ttl(),
            embedder,
            checkpoint: self.checkpoint,
            gtid: self.gtid,
            snapshot: self.snapshot,
            snapshot_chunk_rows: self.snapshot_chunk_rows as usize,
            max_buffer_bytes: self.max_buffer_mb << 20,
            emit_events: self.emit_events,
            dead_letter: self.dead_letter,
            metrics_addr: self.metrics_addr,
            batch_size: self.batch_size as usize,
            batch_wait: Duration::from_millis(self.batch_wait_ms),
            batch_idle: Duration::from_millis(self.batch_idle_ms.min(self.batch_wait_ms)),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            reindex,
        })
    }
}

/// The first line of a secret file (a Docker or Kubernetes secret, a systemd credential): the
/// trailing newline editors and `echo` add is not part of the secret.
pub fn read_secret_file(path: &std::path::Path) -> std::io::Result<Secret> {
    let text = std::fs::read_to_string(path)?;
    Ok(Secret::new(text.lines().next().unwrap_or_default()))
}

/// Split `mysql://user:pass@host` into the URL without the password and the password.
fn split_password(url: &str) -> Result<(String, Option<Secret>), ConfigError> {
    let bad = |reason: &str| ConfigError::MariadbUrl {
        url: redact_url(url),
        reason: reason.to_owned(),
    };
    let Some(rest) = url.strip_prefix("mysql://") else {
        return Err(bad("it must start with mysql://"));
    };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return Ok((url.to_owned(), None));
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    match userinfo.split_once(':') {
        Some((user, password)) => Ok((
            format!("mysql://{user}@{host}{tail}"),
            Some(Secret::new(percent_decode(password))),
        )),
        None => Ok((url.to_owned(), None)),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> Config {
        let mut full = vec!["vecsync"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full)
            .expect("flags parse")
            .run
            .into_config()
            .expect("valid config")
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        let cfg = parse(&[
            "--mariadb-url",
            "mysql://u:hunter2@db:3306/x",
            "--weaviate-api-key",
            "k3y",
        ]);
        let debug = format!("{cfg:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("k3y"),
            "{debug}"
        );
        assert_eq!(cfg.mariadb_url, "mysql://u@db:3306/x");
        assert_eq!(
            cfg.mariadb_password.as_ref().map(Secret::expose),
            Some("hunter2")
        );
    }

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact_url("mysql://u:p%40ss@h:1/db?x=1"),
            "mysql://u:***@h:1/db?x=1"
        );
        assert_eq!(redact_url("mysql://u@h:1"), "mysql://u@h:1");
        assert_eq!(redact_url("http://h/a@b"), "http://h/a@b");
        assert_eq!(
            redact_url("mysql://u:p@ss@h1:1,h2:2/db"),
            "mysql://u:***@h1:1,h2:2/db"
        );
    }

    #[test]
    fn several_mariadb_servers() {
        let cfg = parse(&[
            "--mariadb-url",
            "mysql://u:pw@db1:3306,db2:3306",
            "--mariadb-url",
            "mysql://u@db3:3306",
        ]);
        assert_eq!(cfg.mariadb_url, "mysql://u@db1:3306,db2:3306");
        assert_eq!(cfg.mariadb_failover_urls, ["mysql://u@db3:3306"]);
        assert_eq!(
            cfg.mariadb_password.as_ref().map(Secret::expose),
            Some("pw")
        );
        let mut full = vec!["vecsync"];
        full.extend_from_slice(&[
            "--mariadb-url",
            "mysql://u:one@db1",
            "--mariadb-url",
            "mysql://u:two@db2",
        ]);
        let err = Cli::try_parse_from(full)
            .expect("parse")
            .run
            .into_config()
            .expect_err("two passwords");
        let msg = err.to_string();
        assert!(
            msg.contains("different passwords") && !msg.contains("two"),
            "{msg}"
        );
        assert_eq!(parse(&[]).max_buffer_bytes, 64 << 20);
        assert_eq!(parse(&["--max-buffer-mb", "64"]).max_buffer_bytes, 64 << 20);
    }

    #[test]
    fn password_sources_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\nignored\n").expect("write");
        let f = file.to_str().expect("utf8 path");
        let cfg = parse(&[
            "--mariadb-url",
            "mysql://u:in%40url@h",
            "--mariadb-password-file",
            f,
        ]);
        assert_eq!(
            cfg.mariadb_password.as_ref().map(Secret::expose),
            Some("from-file")
        );
        let cfg = parse(&["--mariadb-url", "mysql://u:in%40url@h"]);
        assert_eq!(
            cfg.mariadb_password.as_ref().map(Secret::expose),
            Some("in@url")
        );
    }

    #[test]
    fn api_key_from_a_file_and_an_empty_file_means_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("key");
        std::fs::write(&file, "k3y-from-file\n").expect("write");
        let f = file.to_str().expect("utf8 path");
        let cfg = parse(&["--weaviate-api-key-file", f]);
        assert_eq!(
            cfg.weaviate_api_key.as_ref().map(Secret::expose),
            Some("k3y-from-file")
        );
        std::fs::write(&file, "").expect("write");
        assert!(
            parse(&["--weaviate-api-key-file", f])
                .weaviate_api_key
                .is_none()
        );
        let missing = dir.path().join("missing");
        let err = Cli::try_parse_from([
            "vecsync",
            "--weaviate-api-key-file",
            missing.to_str().expect("utf8 path"),
        ])
        .expect("parse")
        .run
        .into_config()
        .expect_err("a missing key file is an error, not anonymous access");
        assert!(err.to_string().contains("Weaviate API key file"), "{err}");
    }

    #[test]
    fn an_unreadable_secret_file_names_its_cause_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        let missing = missing.to_str().expect("utf8 path");
        for flag in ["--mariadb-password-file", "--weaviate-api-key-file"] {
            let err = Cli::try_parse_from(["vecsync", flag, missing])
                .expect("parse")
                .run
                .into_config()
                .expect_err("a missing file is an error");
            // main prints the chain with {:#}: the io error is the source, so the message
            // itself must not repeat it.
            let chain = format!("{:#}", anyhow::Error::from(err));
            assert_eq!(chain.matches("No such file").count(), 1, "{chain}");
            assert!(chain.contains(missing), "{chain}");
        }
    }

    #[test]
    fn defaults_match_the_documentation() {
        let cfg = parse(&[]);
        assert_eq!(cfg.table.to_string(), "catalog.products");
        assert_eq!(cfg.server_id, 184054);
        assert_eq!(cfg.weaviate_url, "http://localhost:8080");
        assert_eq!(cfg.class, "Product");
        assert_eq!(cfg.memcached.as_deref(), Some("localhost:11211"));
        assert_eq!(cfg.cache_ttl, Duration::from_secs(2));
        assert_eq!(cfg.snapshot, SnapshotMode::Initial);
        assert_eq!(cfg.snapshot_chunk_rows, 1024);
        assert_eq!(cfg.metrics_addr.to_string(), "127.0.0.1:9187");
        assert!(parse(&["--memcached", "none"]).memcached.is_none());
    }

    #[test]
    fn rejects_bad_values_with_the_flag_named() {
        let bad = |args: &[&str]| {
            let mut full = vec!["vecsync"];
            full.extend_from_slice(args);
            Cli::try_parse_from(full)
                .expect("parse")
                .run
                .into_config()
                .expect_err("invalid")
                .to_string()
        };
        assert!(bad(&["--table", "products"]).contains("--table"));
        assert!(bad(&["--mariadb-url", "postgres://x"]).contains("mysql://"));
        assert!(bad(&["--weaviate-url", "localhost:8080"]).contains("--weaviate-url"));
        assert!(bad(&["--class", "product"]).contains("--class"));
        let gtid = Cli::try_parse_from(["vecsync", "--gtid", "zero"])
            .err()
            .map(|e| e.to_string());
        assert!(gtid.is_some_and(|e| e.contains("invalid MariaDB GTID")));
    }
}
