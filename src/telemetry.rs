//! Prometheus metrics, health endpoints and logging set-up.
//!
//! `GET /metrics` renders every `vecsync_*` metric; `GET /healthz` answers 200 while the process
//! runs; `GET /readyz` answers 200 once the pipeline streams (schema checked, binlog connected)
//! and 503 with the reason otherwise, e.g. during a Weaviate outage.
//!
//! The checkpoint GTID is exported as an info metric, `vecsync_checkpoint_info{gtid="..."} 1`,
//! rendered from the current value at scrape time so old positions never pile up as series.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::position::GtidPosition;

pub const EVENTS_TOTAL: &str = "vecsync_events_total";
pub const EMBEDDINGS_COMPUTED_TOTAL: &str = "vecsync_embeddings_computed_total";
pub const CACHE_HITS_TOTAL: &str = "vecsync_embedding_cache_hits_total";
pub const CACHE_MISSES_TOTAL: &str = "vecsync_embedding_cache_misses_total";
pub const CACHE_ERRORS_TOTAL: &str = "vecsync_embedding_cache_errors_total";
pub const REEMBEDS_SKIPPED_TOTAL: &str = "vecsync_reembeds_skipped_total";
pub const WEAVIATE_REQUESTS_TOTAL: &str = "vecsync_weaviate_requests_total";
pub const WEAVIATE_FAILURES_TOTAL: &str = "vecsync_weaviate_failures_total";
pub const DEAD_LETTERS_TOTAL: &str = "vecsync_dead_letters_total";
pub const BATCH_SIZE: &str = "vecsync_batch_size";
pub const BINLOG_LAG_SECONDS: &str = "vecsync_binlog_lag_seconds";
pub const COMMIT_TO_VISIBLE_SECONDS: &str = "vecsync_commit_to_visible_seconds";
pub const CHECKPOINT_SEQUENCE: &str = "vecsync_checkpoint_sequence";
pub const SOURCE_CONNECTED: &str = "vecsync_source_connected";
pub const SOURCE_RECONNECTS_TOTAL: &str = "vecsync_source_reconnects_total";

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot install the Prometheus recorder: {0}")]
    Recorder(String),
    #[error("cannot listen for metrics on {addr}: {source}; choose another --metrics-addr")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics server failed: {0}")]
    Serve(std::io::Error),
}

/// Install the global Prometheus recorder once per process and return its handle.
pub fn install_metrics() -> Result<PrometheusHandle, TelemetryError> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(BATCH_SIZE.into()),
            &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0],
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(COMMIT_TO_VISIBLE_SECONDS.into()),
                &[
                    0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
                ],
            )
        })
        .map_err(|e| TelemetryError::Recorder(e.to_string()))?;
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    // Another recorder may be installed already (tests running several pipelines in one
    // process): keep the first.
    if metrics::set_global_recorder(recorder).is_err() {
        return HANDLE.get().cloned().ok_or_else(|| {
            TelemetryError::Recorder("a foreign metrics recorder is installed".into())
        });
    }
    describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Describe every metric and make the counters appear at zero, so dashboards and alerts see them
/// before the first event.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        EVENTS_TOTAL,
        "Change events read, by Debezium op (c, u, d, r, t)."
    );
    describe_counter!(
        EMBEDDINGS_COMPUTED_TOTAL,
        "Texts actually run through the model."
    );
    describe_counter!(CACHE_HITS_TOTAL, "Embeddings found in Memcached.");
    describe_counter!(
        CACHE_MISSES_TOTAL,
        "Embeddings looked up in Memcached and not found."
    );
    describe_counter!(
        CACHE_ERRORS_TOTAL,
        "Memcached calls that failed (the cache then pauses)."
    );
    describe_counter!(
        REEMBEDS_SKIPPED_TOTAL,
        "Updates written without re-embedding: the description did not change."
    );
    describe_counter!(WEAVIATE_REQUESTS_TOTAL, "Weaviate write calls, by kind.");
    describe_counter!(
        WEAVIATE_FAILURES_TOTAL,
        "Weaviate calls that failed (each retry counts)."
    );
    describe_counter!(
        DEAD_LETTERS_TOTAL,
        "Events Weaviate rejected for good, written to the dead-letter file."
    );
    describe_histogram!(
        BATCH_SIZE,
        Unit::Count,
        "Change events per processed batch."
    );
    describe_gauge!(
        BINLOG_LAG_SECONDS,
        Unit::Seconds,
        "Now minus the commit time of the last checkpointed transaction; 0 when caught up."
    );
    describe_histogram!(
        COMMIT_TO_VISIBLE_SECONDS,
        Unit::Seconds,
        "From the MariaDB commit (1 s resolution) to Weaviate confirming the write."
    );
    describe_gauge!(
        CHECKPOINT_SEQUENCE,
        "Sequence number of the checkpoint GTID, per replication domain."
    );
    describe_gauge!(
        SOURCE_CONNECTED,
        "1 while the MariaDB source has a binlog stream (or a snapshot read) established, else 0."
    );
    describe_counter!(
        SOURCE_RECONNECTS_TOTAL,
        "Times the MariaDB source reconnected after a failure."
    );
    for counter in [
        EMBEDDINGS_COMPUTED_TOTAL,
        CACHE_HITS_TOTAL,
        CACHE_MISSES_TOTAL,
        CACHE_ERRORS_TOTAL,
        REEMBEDS_SKIPPED_TOTAL,
        WEAVIATE_FAILURES_TOTAL,
        DEAD_LETTERS_TOTAL,
    ] {
        metrics::counter!(counter).increment(0);
    }
    for op in ["c", "u", "d", "r", "t"] {
        metrics::counter!(EVENTS_TOTAL, "op" => op).increment(0);
    }
}

/// What `/readyz` and the checkpoint info metric report; shared between the pipeline and the
/// HTTP server.
#[derive(Debug)]
pub struct Health {
    state: Mutex<HealthState>,
}

#[derive(Debug)]
struct HealthState {
    not_ready: Option<String>,
    checkpoint: Option<GtidPosition>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            state: Mutex::new(HealthState {
                not_ready: Some("starting".into()),
                checkpoint: None,
            }),
        }
    }
}

impl Health {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn set_ready(&self) {
        self.lock().not_ready = None;
    }

    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.lock().not_ready = Some(reason.into());
    }

    /// `None` when ready, else why not.
    pub fn not_ready(&self) -> Option<String> {
        self.lock().not_ready.clone()
    }

    pub fn set_checkpoint(&self, position: &GtidPosition) {
        for gtid in position.iter() {
            metrics::gauge!(CHECKPOINT_SEQUENCE, "domain" => gtid.domain_id.to_string())
                .set(gtid.sequence as f64);
        }
        self.lock().checkpoint = Some(position.clone());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    health: Arc<Health>,
}

/// Bind the metrics address now (so a taken port fails start-up) and serve until `cancel`.
pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    health: Arc<Health>,
    cancel: CancellationToken,
) -> Result<
    (
        SocketAddr,
        tokio::task::JoinHandle<Result<(), TelemetryError>>,
    ),
    TelemetryError,
> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(AppState { metrics, health });
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await
            .map_err(TelemetryError::Serve)
    });
    Ok((bound, task))
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = state.metrics.render();
    if let Some(pos) = state.health.lock().checkpoint.clone() {
        body.push_str(
            "# HELP vecsync_checkpoint_info The GTID position stored in the checkpoint.\n",
        );
        body.push_str("# TYPE vecsync_checkpoint_info gauge\n");
        body.push_str(&format!("vecsync_checkpoint_info{{gtid=\"{pos}\"}} 1\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

async fn ready_handler(State(state): State<AppState>) -> impl IntoResponse {
    match state.health.not_ready() {
        None => (StatusCode::OK, "ready\n".to_string()),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

/// Log format for `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Start tracing: level from `LOG_LEVEL` (a tracing filter, e.g. `info` or `vecsync=debug`),
/// to stderr so stdout stays for command output.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
