//! Prometheus metrics, health endpoints and logging set-up.
//!
//! `GET /metrics` renders every `vecsync_*` metric; `GET /healthz` answers 200 while the process
//! runs; `GET /readyz` answers 200 once the pipeline streams (schema checked, binlog connected)
//! and 503 with the reasons otherwise, e.g. during a Weaviate outage. `GET /position` tells the
//! confirmed GTID position and `GET /wait?gtid=...&timeout_ms=...` waits for it
//! (read-your-writes).
//!
//! The checkpoint GTID is exported as an info metric, `vecsync_checkpoint_info{gtid="..."} 1`,
//! rendered from the current value at scrape time so old positions never pile up as series.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;
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
pub const EMBEDDER_REQUESTS_TOTAL: &str = "vecsync_embedder_requests_total";
pub const EMBEDDER_FAILURES_TOTAL: &str = "vecsync_embedder_failures_total";
pub const SOURCE_CONNECTED: &str = "vecsync_source_connected";
pub const BUFFER_BYTES: &str = "vecsync_buffer_bytes";
pub const SOURCE_RECONNECTS_TOTAL: &str = "vecsync_source_reconnects_total";
pub const WRITES_SKIPPED_TOTAL: &str = "vecsync_writes_skipped_total";
pub const STALE_DELETED_TOTAL: &str = "vecsync_stale_objects_deleted_total";
pub const READY: &str = "vecsync_ready";

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot install the Prometheus recorder: {0}")]
    Recorder(String),
    #[error("cannot listen for metrics on {addr}: {cause}; choose another --metrics-addr")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
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
                    0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0,
                    10.0, 30.0, 60.0,
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
    describe_counter!(
        EMBEDDER_REQUESTS_TOTAL,
        "Requests to the remote embedder (--embedder), retries included."
    );
    describe_counter!(
        EMBEDDER_FAILURES_TOTAL,
        "Remote embedder requests that failed: no answer, or an error status."
    );
    describe_counter!(
        WRITES_SKIPPED_TOTAL,
        "Objects not written because Weaviate already held them exactly."
    );
    describe_counter!(
        STALE_DELETED_TOTAL,
        "Objects removed because their row no longer exists (the snapshot's sweep)."
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
        "From vecsync reading a transaction's commit in the binlog to Weaviate confirming its writes."
    );
    describe_gauge!(
        READY,
        "1 while /readyz answers 200; 0 while starting or holding the position (the reason is on /readyz)."
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
    describe_gauge!(
        BUFFER_BYTES,
        Unit::Bytes,
        "Binlog data read but not yet confirmed by Weaviate (bounded by --max-buffer-mb)."
    );
    metrics::gauge!(BUFFER_BYTES).increment(0.0);
    for counter in [
        EMBEDDINGS_COMPUTED_TOTAL,
        CACHE_HITS_TOTAL,
        CACHE_MISSES_TOTAL,
        CACHE_ERRORS_TOTAL,
        REEMBEDS_SKIPPED_TOTAL,
        WEAVIATE_FAILURES_TOTAL,
        DEAD_LETTERS_TOTAL,
        EMBEDDER_REQUESTS_TOTAL,
        EMBEDDER_FAILURES_TOTAL,
        WRITES_SKIPPED_TOTAL,
        STALE_DELETED_TOTAL,
    ] {
        metrics::counter!(counter).increment(0);
    }
    for op in ["c", "u", "d", "r", "t"] {
        metrics::counter!(EVENTS_TOTAL, "op" => op).increment(0);
    }
    crate::source::snapshot::describe_metrics();
}

/// What `/readyz`, `/position`, `/wait` and the checkpoint info metric report; shared between
/// the pipeline and the HTTP server.
///
/// Readiness has one reason per component: `start` while vecsync starts, and one for each part
/// that holds the position (`weaviate`, `embedder`, `source`). `/readyz` answers 503 with every
/// reason while any is set.
#[derive(Debug)]
pub struct Health {
    state: Mutex<HealthState>,
    confirmed: watch::Sender<Option<GtidPosition>>,
    /// Whether this health is the process's and drives `vecsync_ready` (a re-index's second
    /// pipeline has a health of its own that does not).
    export: bool,
}

#[derive(Debug)]
struct HealthState {
    held: BTreeMap<&'static str, String>,
    checkpoint: Option<GtidPosition>,
    /// Shown on `/readyz` without changing its status (a re-index's progress).
    notes: BTreeMap<&'static str, String>,
}

impl Default for Health {
    fn default() -> Self {
        let mut held = BTreeMap::new();
        held.insert("start", "starting".to_owned());
        Self {
            state: Mutex::new(HealthState {
                held,
                checkpoint: None,
                notes: BTreeMap::new(),
            }),
            confirmed: watch::channel(None).0,
            export: true,
        }
    }
}

impl Health {
    pub fn new() -> Arc<Self> {
        metrics::gauge!(READY).set(0.0);
        Arc::new(Self::default())
    }

    /// A health of a pipeline that is not the one `/readyz` reports (a re-index's building
    /// pipeline): it leaves `vecsync_ready` alone.
    pub fn detached() -> Arc<Self> {
        Arc::new(Self {
            export: false,
            ..Self::default()
        })
    }

    /// Show `text` on `/readyz` under `key`, whatever its status.
    pub fn set_note(&self, key: &'static str, text: impl Into<String>) {
        self.lock().notes.insert(key, text.into());
    }

    pub fn clear_note(&self, key: &'static str) {
        self.lock().notes.remove(key);
    }

    /// The notes, in key order.
    pub fn notes(&self) -> Vec<String> {
        self.lock().notes.values().cloned().collect()
    }

    /// Start-up is over (other components may still hold).
    pub fn set_ready(&self) {
        self.clear_held("start");
    }

    /// Still starting, and why.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.set_held("start", reason);
    }

    /// `component` holds the position, for `reason`.
    pub fn set_held(&self, component: &'static str, reason: impl Into<String>) {
        let mut state = self.lock();
        state.held.insert(component, reason.into());
        if self.export {
            export_ready(&state);
        }
    }

    /// `component` no longer holds anything.
    pub fn clear_held(&self, component: &'static str) {
        let mut state = self.lock();
        state.held.remove(component);
        if self.export {
            export_ready(&state);
        }
    }

    /// `None` when ready, else every reason why not.
    pub fn not_ready(&self) -> Option<String> {
        let state = self.lock();
        if state.held.is_empty() {
            return None;
        }
        Some(state.held.values().cloned().collect::<Vec<_>>().join("; "))
    }

    /// The checkpoint moved: metrics, `/position` and `/wait` see it.
    pub fn set_checkpoint(&self, position: &GtidPosition) {
        for gtid in position.iter().filter(|_| self.export) {
            metrics::gauge!(CHECKPOINT_SEQUENCE, "domain" => gtid.domain_id.to_string())
                .set(gtid.sequence as f64);
        }
        self.lock().checkpoint = Some(position.clone());
        self.confirmed.send_replace(Some(position.clone()));
    }

    /// The confirmed position: every change up to it is in Weaviate.
    pub fn checkpoint(&self) -> Option<GtidPosition> {
        self.lock().checkpoint.clone()
    }

    /// Wait until the confirmed position covers `target`, at most `timeout`; the confirmed
    /// position at the end, and whether it covers.
    pub async fn wait_for(
        &self,
        target: &GtidPosition,
        timeout: Duration,
    ) -> (Option<GtidPosition>, bool) {
        let mut rx = self.confirmed.subscribe();
        let reached = tokio::time::timeout(
            timeout,
            rx.wait_for(|p| p.as_ref().is_some_and(|p| p.covers(target))),
        )
        .await;
        let now = self.checkpoint();
        let covered = matches!(reached, Ok(Ok(_)));
        (now, covered)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `vecsync_ready` as well as `/readyz`: the "not ready for N minutes" alert needs a series, and a
/// sidecar has no readiness probe (it would take MariaDB out of its Service).
fn export_ready(state: &HealthState) {
    metrics::gauge!(READY).set(if state.held.is_empty() { 1.0 } else { 0.0 });
}

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    health: Arc<Health>,
}

/// The longest `/wait` a client may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);

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
        .map_err(|cause| TelemetryError::Bind { addr, cause })?;
    let bound = listener
        .local_addr()
        .map_err(|cause| TelemetryError::Bind { addr, cause })?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .route("/position", get(position_handler))
        .route("/wait", get(wait_handler))
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
    if let Some(pos) = state.health.checkpoint() {
        body.push_str(
            "# HELP vecsync_checkpoint_info The GTID position stored in the checkpoint.\n",
        );
        body.push_str("# TYPE vecsync_checkpoint_info gauge\n");
        body.push_str(&format!("vecsync_checkpoint_info{{gtid=\"{pos}\"}} 1\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

async fn ready_handler(State(state): State<AppState>) -> impl IntoResponse {
    let (status, mut body) = match state.health.not_ready() {
        None => (StatusCode::OK, "ready\n".to_string()),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    };
    for note in state.health.notes() {
        body.push_str(&note);
        body.push('\n');
    }
    (status, body)
}

/// `GET /position`: `{"gtid": "0-1-5"}`, every change up to it is in Weaviate.
async fn position_handler(State(state): State<AppState>) -> impl IntoResponse {
    let gtid = state.health.checkpoint().map(|p| p.to_string());
    let status = if gtid.is_some() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(serde_json::json!({ "gtid": gtid })))
}

#[derive(serde::Deserialize)]
struct WaitQuery {
    gtid: Option<String>,
    timeout_ms: Option<u64>,
}

/// `GET /wait?gtid=0-1-5&timeout_ms=500`: 200 as soon as the index is confirmed up to that
/// position (per replication domain), 408 when the timeout passes first, 400 for a bad request.
async fn wait_handler(
    State(state): State<AppState>,
    Query(query): Query<WaitQuery>,
) -> impl IntoResponse {
    let Some(text) = query.gtid else {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "gtid is required, e.g. /wait?gtid=0-1-42"})),
        );
    };
    let target: GtidPosition = match text.parse() {
        Ok(p) => p,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": e.to_string()})),
            );
        }
    };
    let timeout = Duration::from_millis(query.timeout_ms.unwrap_or(1000)).min(MAX_WAIT);
    let (now, covered) = state.health.wait_for(&target, timeout).await;
    let status = if covered {
        StatusCode::OK
    } else {
        StatusCode::REQUEST_TIMEOUT
    };
    let body = serde_json::json!({
        "gtid": now.map(|p| p.to_string()),
        "waited_for": target.to_string(),
    });
    (status, Json(body))
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
