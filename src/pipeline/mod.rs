//! The sidecar: binlog source -> collect -> prepare (diff + embeddings) -> write -> checkpoint.
//!
//! [`run`] wires the parts together. The source runs in its own task and feeds a bounded
//! channel, so a slow Weaviate slows the binlog reader instead of growing memory. Three stages
//! run concurrently, each in its own task, joined by channels of one batch:
//!
//! - [`collect`]: source messages into batches, and the snapshot backlog;
//! - [`prepare`]: coalesce ([`plan`]), ask Weaviate what it holds ([`reconcile`]), get the
//!   vectors that are needed ([`vectors`]);
//! - [`write`]: write to Weaviate, dead letters, then the checkpoint ([`commit`]).
//!
//! While batch N is written, batch N+1 is embedded; [`inflight`] keeps them in order per object.
//!
//! # Shutdown
//! Cancelling the token stops the source and the collector; the batches already handed on are
//! finished and checkpointed (bounded by `--shutdown-timeout-secs`), and `run` returns `Ok`.

pub mod collect;
pub mod commit;
pub mod deadletter;
pub mod emit;
pub mod hold;
pub mod identity;
pub mod inflight;
pub mod plan;
pub mod prepare;
pub mod reconcile;
pub mod reindex;
pub mod source_watch;
pub mod sweep;
pub mod text;
pub mod vectors;
pub mod write;

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::collect::{BatchLimits, Collector};
use self::commit::CommitPolicy;
use self::deadletter::DeadLetters;
use self::emit::EventWriter;
use self::inflight::InFlight;
use self::prepare::Preparer;
use self::sweep::SweepState;
use self::text::TextRule;
use self::vectors::Vectors;
use self::write::Writer;
use crate::backoff::Attempts;
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::config::{Config, redact_url};
use crate::dedup::{CacheConfig, EmbeddingCache};
use crate::embed::args::OpenError;
use crate::embed::text_embedder::FitError;
use crate::embed::{EmbedCallError, EmbedError, Probe, TextEmbedder, check_fits};
use crate::sink::{SinkError, WeaviateConfig, WeaviateSink};
use crate::source::{BinlogSource, SourceConfig, SourceError};
use crate::telemetry::{self, Health, TelemetryError};

/// Messages buffered between the binlog reader and the collector: the back-pressure bound.
pub const CHANNEL_CAPACITY: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    DeadLetter(#[from] deadletter::DeadLetterError),
    #[error(transparent)]
    Emit(#[from] emit::EmitError),
    #[error("cannot load the embedding model: {}", crate::report::causes(.0))]
    Model(EmbedError),
    #[error(transparent)]
    OpenEmbedder(#[from] OpenError),
    #[error(transparent)]
    Embedder(#[from] EmbedCallError),
    #[error(transparent)]
    EmbedderDoesNotFit(#[from] FitError),
    #[error(transparent)]
    Vectors(#[from] vectors::VectorError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error("internal task failed: {0}")]
    Task(tokio::task::JoinError),
    #[error("internal error (a bug, please report it): {0}")]
    Internal(String),
    #[error(transparent)]
    Template(#[from] text::BadColumn),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(transparent)]
    Reindex(#[from] reindex::ReindexError),
}

// Causes are part of the message (see `crate::report`), never also a `source()`.
impl From<EmbedError> for PipelineError {
    fn from(e: EmbedError) -> Self {
        PipelineError::Model(e)
    }
}

impl From<tokio::task::JoinError> for PipelineError {
    fn from(e: tokio::task::JoinError) -> Self {
        PipelineError::Task(e)
    }
}

/// Run the sidecar until `cancel` fires (`Ok`) or a definite error stops it.
pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), PipelineError> {
    let metrics = telemetry::install_metrics()?;
    let health = Health::new();
    let http_cancel = CancellationToken::new();
    let (metrics_addr, http) = telemetry::serve(
        config.metrics_addr,
        metrics,
        health.clone(),
        http_cancel.clone(),
    )
    .await?;
    tracing::info!(
        table = %config.table,
        mariadb = %redact_url(&config.mariadb_url),
        weaviate = %redact_url(&config.weaviate_url),
        class = %config.class,
        embedder = %config.embedder.describe(),
        memcached = config.memcached.as_deref().unwrap_or("off"),
        metrics = %metrics_addr,
        "vecsync starting"
    );
    let result = match &config.reindex {
        Some(reindex) => reindex::run(&config, reindex, &health, &cancel).await,
        None => match reindex::refuse_if_in_progress(&config) {
            Ok(()) => replicate(&config, &health, &cancel).await,
            Err(e) => Err(e.into()),
        },
    };
    http_cancel.cancel();
    let _ = http.await;
    match &result {
        Ok(()) => tracing::info!("vecsync stopped"),
        Err(error) => tracing::error!(%error, "vecsync stopped on an error"),
    }
    result
}

async fn replicate(
    config: &Config,
    health: &Arc<Health>,
    cancel: &CancellationToken,
) -> Result<(), PipelineError> {
    replicate_with(config, health, cancel, None).await
}

/// [`replicate`] with the embedder already open and probed, when given (a re-index shares one
/// model between its pipelines and keeps it across the switch).
async fn replicate_with(
    config: &Config,
    health: &Arc<Health>,
    cancel: &CancellationToken,
    opened: Option<(TextEmbedder, Probe)>,
) -> Result<(), PipelineError> {
    let checkpoint = Checkpoint::open(&config.checkpoint, &config.table.to_string())?;
    match checkpoint.position() {
        Some(position) => {
            health.set_checkpoint(position);
            tracing::info!(%position, path = %config.checkpoint.display(), "checkpoint found");
        }
        None => {
            tracing::info!(path = %config.checkpoint.display(), snapshot = ?config.snapshot, "no checkpoint yet")
        }
    }

    // The source starts first so that a MariaDB problem (credentials, settings, purged binlog)
    // is reported at once, even while the model loads or Weaviate is still down. Until the
    // worker runs, the bounded channel holds it back.
    let source_settings = source_config(config);
    let heartbeat = source_settings.heartbeat;
    let source = BinlogSource::new(source_settings)?;
    let snapshot_control = source.snapshot_control();
    let watching = tokio::spawn(source_watch::watch(
        source.status(),
        health.clone(),
        heartbeat,
        cancel.child_token(),
    ));
    // Whatever way run ends, the watcher ends with it.
    let _watching = AbortOnDrop(watching);
    let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
    let source_cancel = cancel.child_token();
    let mut source_task = tokio::spawn(source.run(
        crate::source::Start {
            position: checkpoint.position().cloned(),
            snapshot: checkpoint.snapshot().cloned(),
        },
        tx,
        source_cancel.clone(),
    ));

    let rule = TextRule::new(config.embedder.template.clone())?;
    let setup = async {
        let (embedder, probe) = match opened {
            Some(opened) => opened,
            None => start_embedder(config, health).await?,
        };
        // The class is created with, or checked against, the probed dimension: a class whose
        // stored vectors have another length is refused by ensure_schema.
        // `--class` may be an alias: the class it points to is written and checked.
        let sink =
            reindex::through_alias(weaviate_config(config, probe.dimension, &rule), health).await?;
        wait_for_weaviate(&sink, health).await?;
        let distance = sink.class_distance().await?;
        check_fits(&probe, None, distance.as_deref())?;
        let fingerprint = {
            let (embedder_config, embedder) = (config.embedder.clone(), embedder.clone());
            tokio::task::spawn_blocking(move || embedder_config.fingerprint(&embedder)).await??
        };
        tracing::info!(
            embedder = %config.embedder.describe(),
            dimension = probe.dimension,
            fingerprint = %fingerprint,
            "embedder ready"
        );
        let record = identity::check(&sink, checkpoint.embedding(), &fingerprint).await?;
        Ok::<_, PipelineError>((embedder, sink, fingerprint, record))
    };
    let (embedder, sink, fingerprint, record) = tokio::select! {
        ready = setup => ready?,
        ended = &mut source_task => {
            ended??;
            return Ok(()); // the source stopped cleanly: cancelled during start-up
        }
        () = cancel.cancelled() => {
            source_cancel.cancel();
            source_task.await??;
            return Ok(());
        }
    };
    let mut checkpoint = checkpoint;
    checkpoint.set_embedding(record)?;
    health.set_ready();
    crate::notify::ready();

    let cache = Arc::new(EmbeddingCache::new(CacheConfig {
        ttl: config.cache_ttl,
        ..CacheConfig::new(config.memcached.clone())
    }));
    let emit = config
        .emit_events
        .as_deref()
        .map(EventWriter::open)
        .transpose()?
        .map(|w| Arc::new(Mutex::new(w)));
    let may_jump = config.gtid.is_some() || checkpoint.position().is_none();
    let inflight = Arc::new(InFlight::default());
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (batch_tx, batch_rx) = mpsc::channel(1);
    let (prepared_tx, prepared_rx) = mpsc::channel(1);

    let preparer = Preparer {
        sink: sink.clone(),
        vectors: Vectors::new(embedder, cache, fingerprint.short()),
        rule,
        inflight: inflight.clone(),
        health: health.clone(),
        emit,
    };
    let writer = Writer {
        sink,
        dead_letters: Arc::new(Mutex::new(DeadLetters::new(&config.dead_letter))),
        policy: Some(CommitPolicy::new(checkpoint, may_jump)),
        inflight,
        health: health.clone(),
        link: Some(Arc::new(snapshot_control)),
        sweep: Arc::new(SweepState::default()),
        control: control_tx,
        sweeping: None,
        sweep_failed: mpsc::unbounded_channel(),
    };
    let collector = Collector::new(BatchLimits {
        max_events: config.batch_size,
        idle: config.batch_idle,
        wait: config.batch_wait,
    });
    let collect_cancel = cancel.child_token();
    let collecting = {
        let cancel = collect_cancel.clone();
        async move { collector.run(&mut rx, control_rx, batch_tx, &cancel).await }
    };
    let mut preparing = tokio::spawn(preparer.run(batch_rx, prepared_tx));
    let mut writing = tokio::spawn(writer.run(prepared_rx));

    // The collector ends when the source's channel closes or on cancellation; the other stages
    // then finish what they were handed, within the drain limit after a cancellation.
    let drain_deadline = async {
        cancel.cancelled().await;
        tokio::time::sleep(config.shutdown_timeout).await;
    };
    tokio::pin!(drain_deadline);
    let stages = async {
        tokio::select! {
            () = collecting => {}
            // A stage that fails stops the collector too.
            r = &mut preparing => { collect_cancel.cancel(); return (Some(r), None); }
            r = &mut writing => { collect_cancel.cancel(); return (None, Some(r)); }
        }
        (None, None)
    };
    let (early_prepare, early_write) = stages.await;
    let finish = async {
        let prepared = match early_prepare {
            Some(r) => r,
            None => (&mut preparing).await,
        };
        let written = match early_write {
            Some(r) => r,
            None => (&mut writing).await,
        };
        (prepared, written)
    };
    let outcome = tokio::select! {
        r = finish => Some(r),
        () = &mut drain_deadline => None,
    };
    // Stop the source whatever ended the stages; a source failure is why the channel closed.
    source_cancel.cancel();
    let sourced = source_task.await?;
    match outcome {
        Some((prepared, written)) => {
            written??;
            prepared??;
        }
        None => {
            preparing.abort();
            writing.abort();
            tracing::warn!(
                timeout_secs = config.shutdown_timeout.as_secs_f64(),
                "shutdown: the batches in flight did not finish in time; they will be replayed on the next start"
            );
        }
    }
    sourced?;
    Ok(())
}

/// Open the embedder and probe it. A remote embedder that cannot be reached yet is waited for
/// (`/readyz` says why); a wrong model name, key or URL stops vecsync with the message.
async fn start_embedder(
    config: &Config,
    health: &Health,
) -> Result<(TextEmbedder, Probe), PipelineError> {
    let embedder = config.embedder.open().await?;
    let mut attempts = Attempts::new(hold::HOLD_BACKOFF);
    loop {
        match embedder.probe().await {
            Ok(probe) => return Ok((embedder, probe)),
            Err(error) if error.is_transient() => {
                let delay = attempts.fail(error.retry_after());
                health.set_not_ready(format!("waiting for the embedder: {error}"));
                tracing::warn!(%error, attempt = attempts.failures(), retry_in_ms = delay.as_millis() as u64, "embedder not ready; waiting");
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Wait until Weaviate answers and the class is usable. Transient failures (Weaviate still
/// starting) are retried forever; an incompatible class or a bad API key stops vecsync.
async fn wait_for_weaviate(sink: &WeaviateSink, health: &Health) -> Result<(), PipelineError> {
    let mut attempts = Attempts::new(hold::HOLD_BACKOFF);
    loop {
        let checked = match sink.ready().await {
            Ok(()) => sink.ensure_schema().await,
            Err(e) => Err(e),
        };
        match checked {
            Ok(status) => {
                tracing::info!(class = sink.class(), ?status, "Weaviate class ready");
                return Ok(());
            }
            Err(error) if error.is_transient() => {
                let delay = attempts.fail(None);
                health.set_not_ready(format!("waiting for Weaviate: {error}"));
                tracing::warn!(%error, attempt = attempts.failures(), retry_in_ms = delay.as_millis() as u64, "Weaviate not ready; waiting");
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

fn source_config(config: &Config) -> SourceConfig {
    let mut source = SourceConfig::new(config.mariadb_url.clone(), config.table.clone());
    source.password = config.mariadb_password.clone();
    source.ssl_ca = config.mariadb_ssl_ca.clone();
    source.server_id = config.server_id;
    source.snapshot = config.snapshot;
    source.start_gtid = config.gtid.clone();
    source.snapshot_chunk_rows = config.snapshot_chunk_rows;
    source.failover_urls = config.mariadb_failover_urls.clone();
    source.max_buffer_bytes = config.max_buffer_bytes;
    source
}

fn weaviate_config(config: &Config, dimension: usize, rule: &TextRule) -> WeaviateConfig {
    let mut weaviate = WeaviateConfig::new(config.weaviate_url.clone());
    weaviate.schema = weaviate
        .schema
        .with_text_properties(rule.extra_properties());
    weaviate.api_key = config.weaviate_api_key.clone();
    weaviate.class = config.class.clone();
    weaviate.consistency_level = config.consistency_level;
    weaviate.vector_dimensions = dimension;
    weaviate
}

/// Aborts a helper task when the function that spawned it returns, however it returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_printed_once() {
        let missing = EmbedError::MissingFile {
            path: "models/x/model.safetensors".into(),
        };
        let shown = format!("{:#}", anyhow::Error::from(PipelineError::from(missing)));
        assert_eq!(shown.matches("is missing").count(), 1, "{shown}");
        assert!(
            shown.starts_with("cannot load the embedding model: model file"),
            "{shown}"
        );

        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "Permission denied");
        let e = PipelineError::from(CheckpointError::Write {
            path: "/state/vecsync.checkpoint".into(),
            cause: io,
        });
        let shown = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(shown.matches("Permission denied").count(), 1, "{shown}");
    }
}
