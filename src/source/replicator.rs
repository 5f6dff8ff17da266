//! [`BinlogSource`]: decides where to start (explicit GTID, checkpoint, snapshot), picks the
//! server to stream from, runs the snapshot and the stream, and reconnects after transient
//! failures.
//!
//! # Start rules
//! 1. `start_gtid` (`--gtid`) given: stream from exactly after it; no snapshot, and a snapshot
//!    recorded in the checkpoint is dropped.
//! 2. Else a checkpoint position with a snapshot in progress: stream from the position and
//!    continue the snapshot after its last confirmed chunk, whatever `--snapshot` says.
//! 3. Else a checkpoint position: stream from it; `--snapshot always` also starts a snapshot,
//!    merged into the stream.
//! 4. Else no position: `initial`/`when-needed`/`always` read the first chunk and stream from its
//!    position, the rest of the snapshot merged into the stream; `never` sends a [`Commit`] at the
//!    server's current `@@gtid_binlog_pos` and streams from there.
//!
//! `when-needed` also starts a new snapshot when the position's binlog was purged (the stream
//! then starts at its first chunk's position), and [`SnapshotControl::start_reconciling_snapshot`]
//! starts one from within the stream. Every snapshot begins with
//! [`SnapshotMessage::Started`](crate::event::SnapshotMessage::Started); its chunks follow, the
//! last with `last: true` (an empty table: one empty chunk), then a [`Commit`].
//!
//! # Servers and failover
//! The source may know several servers (a primary and its replicas, in order of preference).
//! On every (re)connect it streams from the first one that is reachable and has its GTID
//! position in its binlog: after a primary dies and a replica (with `log_slave_updates=ON`) is
//! promoted, the stream continues on it from the same GTID position, each replication domain
//! where it was. A server that has moved on without the position (it never received
//! transactions vecsync saw: MariaDB answers "diverged") is a definite error, or with
//! `--snapshot when-needed` a reason to re-read the table from it. A server that is only behind
//! (a lagging replica) is skipped, and retried while no server has the position. Each server's
//! settings are checked ([`Preflight`]) the first time it is used.
//!
//! # Error handling
//! Transient errors (connection lost, server restarting, silence past the heartbeat) reconnect
//! with exponential backoff and resume from the last complete transaction. Definite errors end
//! [`BinlogSource::run`]. A purged position is definite, except with `when-needed`, which takes a
//! new snapshot and continues from it. A stream that connects but fails at the same position
//! several times in a row without completing a transaction is stopped with
//! [`SourceError::Stuck`]: retrying would loop forever.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::budget::{Budget, DEFAULT_MAX_BUFFER_MB};
use crate::checkpoint::SnapshotProgress;
use crate::config::{Secret, SnapshotMode, TableRef, redact_url};
use crate::event::{Commit, SourceMessage, now_ms};
use crate::position::GtidPosition;

use super::binlog::{self, StreamContext, StreamState};

use super::columns::Collations;
use super::connection::{self, DEFAULT_READ_TIMEOUT, Endpoint, timed};
use super::emitter::{Emitter, Interrupt, Item};
use super::error::SourceError;
use super::preflight::{self, Preflight};
use super::snapshot::{Merge, MergeConfig, SnapshotControl};
use super::status::SourceStatus;

/// The replica server id vecsync uses by default (Debezium's in the seed).
pub const DEFAULT_SERVER_ID: u32 = 184_054;

/// Everything the source needs. Its `Debug` prints URLs without passwords.
#[derive(Clone)]
pub struct SourceConfig {
    /// `mysql://user@host:port`; a password in it works but `password` is preferred. Several
    /// hosts may be listed (`mysql://user@db1:3306,db2:3306`): they are tried in order.
    pub url: String,
    /// More servers to try, in order, after `url`'s (each may list several hosts too).
    pub failover_urls: Vec<String>,
    /// The password, kept out of URLs and logs.
    pub password: Option<Secret>,
    /// CA certificate (PEM) to verify the server's TLS certificate with; turns TLS on.
    pub ssl_ca: Option<std::path::PathBuf>,
    /// The table to replicate.
    pub table: TableRef,
    /// Replica server id on the binlog connection; unique among the server's replicas.
    pub server_id: u32,
    /// How often the server sends a heartbeat on an idle stream. Silence for twice this counts
    /// as a dead connection.
    pub heartbeat: Duration,
    /// How long any query may wait for its answer before its connection is given up.
    pub read_timeout: Duration,
    /// The memory budget of buffered and in-flight changes (`--max-buffer-mb`), in bytes.
    pub max_buffer_bytes: usize,
    pub snapshot: SnapshotMode,
    /// `--gtid`: stream from exactly after this position, ignoring the checkpoint.
    pub start_gtid: Option<GtidPosition>,
    /// Reconnect attempts after transient errors before giving up (`None`: forever). The count
    /// restarts whenever the stream makes progress.
    pub max_reconnects: Option<u32>,
    /// Rows per snapshot chunk (`--snapshot-chunk-rows`).
    pub snapshot_chunk_rows: usize,
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted: Vec<String> = self.failover_urls.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("SourceConfig")
            .field("url", &redact_url(&self.url))
            .field("failover_urls", &redacted)
            .field("password", &self.password)
            .field("ssl_ca", &self.ssl_ca)
            .field("table", &self.table)
            .field("server_id", &self.server_id)
            .field("heartbeat", &self.heartbeat)
            .field("read_timeout", &self.read_timeout)
            .field("max_buffer_bytes", &self.max_buffer_bytes)
            .field("snapshot", &self.snapshot)
            .field("start_gtid", &self.start_gtid)
            .field("max_reconnects", &self.max_reconnects)
            .field("snapshot_chunk_rows", &self.snapshot_chunk_rows)
            .finish()
    }
}

impl SourceConfig {
    /// Defaults for everything but where to connect and what to replicate.
    pub fn new(url: impl Into<String>, table: TableRef) -> Self {
        Self {
            url: url.into(),
            failover_urls: Vec::new(),
            password: None,
            ssl_ca: None,
            table,
            server_id: DEFAULT_SERVER_ID,
            heartbeat: Duration::from_secs(5),
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_buffer_bytes: DEFAULT_MAX_BUFFER_MB << 20,
            snapshot: SnapshotMode::Initial,
            start_gtid: None,
            max_reconnects: None,
            snapshot_chunk_rows: 1024,
        }
    }
}

/// Where [`BinlogSource::run`] starts: what the checkpoint holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Start {
    /// The stream position of the last fully handled transaction, if any.
    pub position: Option<GtidPosition>,
    /// A snapshot in progress, continued after its last confirmed chunk (needs `position`).
    pub snapshot: Option<SnapshotProgress>,
}

/// Streams one table of a MariaDB server as [`SourceMessage`]s.
#[derive(Debug)]
pub struct BinlogSource {
    config: SourceConfig,
    /// Every server, in order of preference.
    endpoints: Vec<Endpoint>,
    status: SourceStatus,
    control: SnapshotControl,
}

/// What to do next.
#[derive(Debug, Clone)]
enum Plan {
    /// No position: read the snapshot's first chunk, stream from its position.
    Snapshot,
    /// The table has no chunking key: read it in one consistent read, stream from there.
    Fallback,
    Stream(GtidPosition),
    /// Stream from the server's current position (mode `never`, no checkpoint).
    Current,
}

/// Failures in a row at one position before a transient error is given up on.
const SAME_PLACE_FAILURES: u32 = 5;

/// What the source learnt about one server the first time it used it.
#[derive(Debug, Clone)]
struct Checked {
    version: String,
}

impl BinlogSource {
    pub fn new(config: SourceConfig) -> Result<Self, SourceError> {
        let mut urls = vec![config.url.clone()];
        urls.extend(config.failover_urls.iter().cloned());
        let endpoints = connection::endpoints(
            &urls,
            config.password.as_ref(),
            config.ssl_ca.as_deref(),
            config.read_timeout,
        )?;
        Ok(Self {
            config,
            endpoints,
            status: SourceStatus::new(),
            control: SnapshotControl::default(),
        })
    }

    /// The handle the pipeline drives snapshots with (credits, absence checks). Take it before
    /// [`run`](Self::run); it stays valid for the whole run.
    pub fn snapshot_control(&self) -> SnapshotControl {
        self.control.clone()
    }

    /// The source's health, for `/readyz` and the lag gauge; live while [`run`](Self::run) runs.
    pub fn status(&self) -> SourceStatus {
        self.status.clone()
    }

    /// Check the server's settings and the user's privileges, as [`run`](Self::run) does first:
    /// MariaDB, `log_bin=ON`, `binlog_format=ROW`, `binlog_row_image=FULL`, REPLICATION SLAVE and
    /// SELECT on the table (on the first reachable server). Problems that do not stop
    /// replication are in [`Preflight::warnings`].
    pub async fn preflight(&self) -> Result<Preflight, SourceError> {
        let mut last = None;
        for endpoint in &self.endpoints {
            match self.check(endpoint).await {
                Err(e @ SourceError::Connect { .. }) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| SourceError::Unsupported("no MariaDB server given".into())))
    }

    async fn check(&self, endpoint: &Endpoint) -> Result<Preflight, SourceError> {
        let mut conn = endpoint.connect().await?;
        let result = preflight::check(&mut conn, &self.config.table, endpoint.read_timeout).await;
        let _ = conn.disconnect().await;
        result
    }

    /// The `@@gtid_binlog_pos` of the first reachable server: the position after its newest
    /// transaction.
    pub async fn server_position(&self) -> Result<GtidPosition, SourceError> {
        let mut last = None;
        for endpoint in &self.endpoints {
            match self.position_of(endpoint).await {
                Err(e @ SourceError::Connect { .. }) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| SourceError::Unsupported("no MariaDB server given".into())))
    }

    async fn position_of(&self, endpoint: &Endpoint) -> Result<GtidPosition, SourceError> {
        let mut conn = endpoint.connect().await?;
        let text: Option<String> = timed(
            endpoint.read_timeout,
            conn.query_first("SELECT @@gtid_binlog_pos"),
        )
        .await
        .map_err(|e| SourceError::Connection {
            doing: "reading @@gtid_binlog_pos",
            table: self.config.table.to_string(),
            position: String::new(),
            cause: Box::new(e),
        })?;
        let _ = conn.disconnect().await;
        text.unwrap_or_default().parse().map_err(|e| {
            SourceError::Unsupported(format!(
                "the server's @@gtid_binlog_pos does not parse: {e}"
            ))
        })
    }

    /// Run until `cancel` fires or the receiver of `tx` is dropped (`Ok`), or a definite error.
    ///
    /// `start` is what the checkpoint holds (see the start rules in the module documentation).
    /// The messages are each transaction's events followed by its
    /// [`Commit`](crate::event::Commit), and snapshot messages merged in at their positions,
    /// each carrying its share of the memory budget: drop it once the message is handled.
    /// When `start_gtid` is set, or a snapshot starts without a position, the commits may be
    /// behind the stored checkpoint: the caller should `reset` the checkpoint, not `store` it.
    pub async fn run(
        self,
        start: Start,
        tx: mpsc::Sender<Item>,
        cancel: CancellationToken,
    ) -> Result<(), SourceError> {
        let budget = Budget::new(self.config.max_buffer_bytes);
        let emitter = Emitter::new(tx, cancel.clone(), budget, self.status.clone());
        let result = match self.run_inner(start, &emitter).await {
            Ok(()) | Err(Interrupt::Stopped) => Ok(()),
            Err(Interrupt::Failed(e)) => Err(e),
            // The stream asks for a reconcile only through the loop, which turns it into a plan.
            Err(Interrupt::Reconcile(reason)) => Err(SourceError::Unsupported(format!(
                "a reconcile escaped the source's loop: {reason}"
            ))),
        };
        if let Err(e) = &result {
            self.status.disconnected(&e.to_string());
        }
        result
    }

    async fn run_inner(&self, start: Start, emitter: &Emitter) -> Result<(), Interrupt> {
        let table = &self.config.table;
        for endpoint in &self.endpoints {
            if let Some(warning) = endpoint.plain_text_warning() {
                tracing::warn!(%table, "{warning}");
            }
        }
        let mut checked: Vec<Option<Checked>> = vec![None; self.endpoints.len()];
        let collations = self.prepare(emitter, &mut checked).await?;

        let silence_limit = self.config.heartbeat * 2 + Duration::from_secs(5);
        let mut merge = Merge::new(
            self.control.clone(),
            self.endpoints[0].clone(),
            MergeConfig {
                table: table.clone(),
                chunk_rows: self.config.snapshot_chunk_rows,
                pause_limit: silence_limit,
                max_failures: self.config.max_reconnects,
            },
        );
        let mut plan = self.start_plan(start, &mut merge);
        let mut state = StreamState::default();
        let mut attempt = 0u32;
        let mut same_place = 0u32;
        let mut last_failed_at: Option<GtidPosition> = None;
        loop {
            let outcome = match &plan {
                Plan::Snapshot | Plan::Fallback => {
                    let fallback = matches!(plan, Plan::Fallback);
                    let read = self.read_before_stream(&mut merge, fallback, &state, emitter);
                    let read = tokio::select! {
                        biased;
                        () = emitter.cancel().cancelled() => Err(Interrupt::Stopped),
                        r = read => r,
                    };
                    read.map(|position| {
                        plan = Plan::Stream(position);
                        attempt = 0;
                    })
                }
                Plan::Current => match self.server_position().await {
                    Ok(p) => {
                        tracing::info!(%table, position = %p, "no checkpoint and --snapshot never: starting at the server's current position");
                        // Everything before this position is deliberately skipped: say so with a
                        // commit, so the checkpoint holds it and a restart does not skip what
                        // happens meanwhile.
                        let start = Commit {
                            position: p.clone(),
                            ts_ms: now_ms(),
                            seen_ms: now_ms(),
                        };
                        plan = Plan::Stream(p);
                        emitter.send(SourceMessage::Commit(start)).await
                    }
                    Err(e) => Err(e.into()),
                },
                Plan::Stream(position) => {
                    state.position = position.clone();
                    let r = self
                        .stream_any(&mut state, &mut checked, &collations, &mut merge, emitter)
                        .await;
                    plan = if merge.wants_fallback() {
                        Plan::Fallback
                    } else {
                        Plan::Stream(state.position.clone())
                    };
                    if state.progressed {
                        attempt = 0;
                    }
                    r
                }
            };
            let error = match outcome {
                Ok(()) => continue,
                Err(Interrupt::Stopped) => return Err(Interrupt::Stopped),
                Err(Interrupt::Reconcile(reason)) => {
                    plan = self.reconcile(reason, &state.position, &mut merge)?;
                    continue;
                }
                Err(Interrupt::Failed(e)) => e,
            };
            self.status.disconnected(&error.to_string());
            let may_snapshot = self.config.snapshot == SnapshotMode::WhenNeeded
                && self.config.start_gtid.is_none();
            if error.is_purged() && may_snapshot {
                tracing::warn!(%table, %error, "binlog purged; taking a new snapshot (--snapshot when-needed)");
                merge.begin("the binlog of the position was purged (--snapshot when-needed)");
                plan = Plan::Snapshot;
                continue;
            }
            if error.is_diverged() && may_snapshot {
                tracing::warn!(%table, %error, "the server diverged from vecsync's position; reconciling the table with it (--snapshot when-needed)");
                plan = self.reconcile(
                    "the server does not have vecsync's position (diverged after a failover)"
                        .into(),
                    &state.position,
                    &mut merge,
                )?;
                continue;
            }
            if !error.is_transient() {
                return Err(error.into());
            }
            // Connected and failed at the same place again: likely not the network.
            let counts = !matches!(
                error,
                SourceError::Connect { .. }
                    | SourceError::Behind { .. }
                    | SourceError::NoServer { .. }
            );
            if counts && last_failed_at.as_ref() == Some(&state.position) && !state.progressed {
                same_place += 1;
            } else {
                same_place = 0;
            }
            last_failed_at = Some(state.position.clone());
            if same_place >= SAME_PLACE_FAILURES {
                return Err(SourceError::Stuck {
                    table: table.to_string(),
                    position: state.position.to_string(),
                    file: state.file.clone(),
                    failures: same_place + 1,
                    cause: error.to_string(),
                }
                .into());
            }
            attempt += 1;
            if self.config.max_reconnects.is_some_and(|max| attempt > max) {
                return Err(error.into());
            }
            let delay = backoff(attempt);
            tracing::warn!(%table, %error, attempt, delay_ms = delay.as_millis() as u64, "MariaDB source failed; reconnecting");
            self.status.reconnecting();
            tokio::select! {
                () = emitter.cancel().cancelled() => return Err(Interrupt::Stopped),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Where to start (see the module's start rules); begins or resumes the snapshot to merge.
    fn start_plan(&self, start: Start, merge: &mut Merge) -> Plan {
        let table = &self.config.table;
        let Start { position, snapshot } = start;
        if let Some(gtid) = &self.config.start_gtid {
            if let Some(s) = snapshot {
                tracing::warn!(%table, snapshot_id = %s.id, "--gtid given: the snapshot in progress in the checkpoint is dropped");
            }
            return Plan::Stream(gtid.clone());
        }
        match (position, snapshot) {
            (Some(position), Some(progress)) => {
                if self.config.snapshot == SnapshotMode::Never {
                    tracing::info!(%table, "continuing the snapshot in progress (--snapshot never only skips new ones)");
                }
                merge.resume(progress);
                Plan::Stream(position)
            }
            (Some(position), None) => {
                if self.config.snapshot == SnapshotMode::Always {
                    merge.begin("--snapshot always");
                }
                Plan::Stream(position)
            }
            (None, progress) => {
                if let Some(p) = progress {
                    // Without the stream position its rows were merged at, the snapshot's
                    // chunks cannot be continued: changes since then would be lost.
                    tracing::warn!(%table, snapshot_id = %p.id, "the checkpoint has a snapshot in progress but no stream position; starting over");
                }
                match self.config.snapshot {
                    SnapshotMode::Never => Plan::Current,
                    SnapshotMode::Always => {
                        merge.begin("--snapshot always");
                        Plan::Snapshot
                    }
                    SnapshotMode::Initial | SnapshotMode::WhenNeeded => {
                        merge.begin("no checkpoint");
                        Plan::Snapshot
                    }
                }
            }
        }
    }

    /// The one place that decides what happens when the table's rows must be read again (they
    /// changed without row events, or the server cannot stream from the position): a new
    /// reconciling snapshot, read from the server's current position on (the stream restarts at
    /// its first chunk, so the statement that caused it is covered by the read), unless
    /// `--snapshot never` forbids it.
    fn reconcile(
        &self,
        reason: String,
        position: &GtidPosition,
        merge: &mut Merge,
    ) -> Result<Plan, Interrupt> {
        match self.config.snapshot {
            SnapshotMode::Never => Err(SourceError::NeedsSnapshot {
                table: self.config.table.to_string(),
                position: position.to_string(),
                reason,
            }
            .into()),
            SnapshotMode::Initial | SnapshotMode::WhenNeeded | SnapshotMode::Always => {
                tracing::warn!(table = %self.config.table, %reason, "re-reading the table");
                merge.begin(reason);
                Ok(Plan::Snapshot)
            }
        }
    }

    /// Read the snapshot's first chunk (or, for a keyless table, all of it) from the first
    /// reachable server; the stream then starts at the read's position.
    async fn read_before_stream(
        &self,
        merge: &mut Merge,
        fallback: bool,
        state: &StreamState,
        emitter: &Emitter,
    ) -> Result<GtidPosition, Interrupt> {
        let mut last = None;
        for endpoint in &self.endpoints {
            merge.use_endpoint(endpoint);
            let read = if fallback {
                merge.fallback(emitter, Some(&state.position)).await
            } else {
                merge.before_stream(emitter).await
            };
            match read {
                Err(Interrupt::Failed(e @ SourceError::Connect { .. })) => last = Some(e),
                other => return other,
            }
        }
        Err(last
            .unwrap_or_else(|| SourceError::Unsupported("no MariaDB server given".into()))
            .into())
    }

    /// Stream from the first server that is reachable and has the position.
    async fn stream_any(
        &self,
        state: &mut StreamState,
        checked: &mut [Option<Checked>],
        collations: &Collations,
        merge: &mut Merge,
        emitter: &Emitter,
    ) -> Result<(), Interrupt> {
        let table = &self.config.table;
        let mut refusals: Vec<(String, SourceError)> = Vec::new();
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let version = match &checked[i] {
                Some(c) => c.version.clone(),
                None => match self.check(endpoint).await {
                    Ok(pre) => {
                        for w in &pre.warnings {
                            tracing::warn!(%table, server = %endpoint.url, "{w}");
                        }
                        tracing::info!(%table, server = %endpoint.url, version = %pre.server_version, "MariaDB preflight passed");
                        checked[i] = Some(Checked {
                            version: pre.server_version.clone(),
                        });
                        pre.server_version
                    }
                    Err(e) if self.endpoints.len() == 1 => return Err(e.into()),
                    Err(e) => {
                        tracing::warn!(%table, server = %endpoint.url, error = %e, "cannot use this MariaDB server; trying the next one");
                        refusals.push((endpoint.url.clone(), e));
                        continue;
                    }
                },
            };
            let ctx = StreamContext {
                table,
                replica_server_id: self.config.server_id,
                heartbeat: self.config.heartbeat,
                endpoint,
                server_version: &version,
                collations,
                emitter,
            };
            // Snapshot reads go to the server the stream reads: their positions are its.
            merge.use_endpoint(endpoint);
            match binlog::stream(&ctx, state, merge).await {
                Err(Interrupt::Failed(e)) if e.try_another_server() && !state.progressed => {
                    if self.endpoints.len() > 1 {
                        tracing::warn!(%table, server = %endpoint.url, error = %e, "this MariaDB server cannot stream from the position; trying the next one");
                    }
                    refusals.push((endpoint.url.clone(), e));
                }
                other => return other,
            }
        }
        Err(self.no_server(state, refusals).into())
    }

    /// Why no server could stream. One server: its error (a position it is behind is simply
    /// not its own). Several: a divergence (definite) wins; then, while a server is unreachable,
    /// a transient [`SourceError::NoServer`] (it may come back with the position); then a purge;
    /// then the first server's error.
    fn no_server(
        &self,
        state: &StreamState,
        mut refusals: Vec<(String, SourceError)>,
    ) -> SourceError {
        if refusals.len() == 1 {
            return match refusals.pop().map(|(_, e)| e) {
                Some(SourceError::Behind {
                    table,
                    position,
                    message,
                    ..
                }) => SourceError::BadPosition {
                    table,
                    position,
                    message,
                },
                Some(e) => e,
                None => SourceError::Unsupported("no MariaDB server given".into()),
            };
        }
        if let Some(i) = refusals.iter().position(|(_, e)| e.is_diverged()) {
            return refusals.swap_remove(i).1;
        }
        if refusals.iter().any(|(_, e)| e.is_transient()) {
            return SourceError::NoServer {
                table: self.config.table.to_string(),
                position: state.position.to_string(),
                tried: refusals
                    .iter()
                    .map(|(url, e)| format!("{url}: {e}"))
                    .collect(),
            };
        }
        if let Some(i) = refusals.iter().position(|(_, e)| e.is_purged()) {
            return refusals.swap_remove(i).1;
        }
        match refusals.into_iter().next() {
            Some((_, e)) => e,
            None => SourceError::Unsupported("no MariaDB server given".into()),
        }
    }

    /// Preflight and the server's collation table on the first reachable server, retrying while
    /// none is reachable.
    async fn prepare(
        &self,
        emitter: &Emitter,
        checked: &mut [Option<Checked>],
    ) -> Result<Collations, Interrupt> {
        let table = &self.config.table;
        let mut attempt = 0;
        loop {
            let mut result = Err(SourceError::Unsupported("no MariaDB server given".into()));
            for (i, endpoint) in self.endpoints.iter().enumerate() {
                result = async {
                    let mut conn = endpoint.connect().await?;
                    let pre = preflight::check(&mut conn, table, endpoint.read_timeout).await?;
                    let collations = timed(endpoint.read_timeout, Collations::load(&mut conn))
                        .await
                        .map_err(|e| SourceError::Connection {
                            doing: "reading the server's collations",
                            table: table.to_string(),
                            position: String::new(),
                            cause: Box::new(e),
                        })?;
                    let _ = conn.disconnect().await;
                    Ok::<_, SourceError>((pre, collations))
                }
                .await
                .map(|(pre, collations)| {
                    for w in &pre.warnings {
                        tracing::warn!(%table, server = %endpoint.url, "{w}");
                    }
                    tracing::info!(%table, server = %endpoint.url, version = %pre.server_version, "MariaDB preflight passed");
                    checked[i] = Some(Checked {
                        version: pre.server_version,
                    });
                    collations
                });
                if !matches!(result, Err(SourceError::Connect { .. })) {
                    break;
                }
            }
            match result {
                Ok(r) => return Ok(r),
                Err(e) if e.is_transient() => {
                    self.status.disconnected(&e.to_string());
                    attempt += 1;
                    if self.config.max_reconnects.is_some_and(|max| attempt > max) {
                        return Err(e.into());
                    }
                    let delay = backoff(attempt);
                    tracing::warn!(%table, error = %e, attempt, "cannot reach MariaDB yet; retrying");
                    self.status.reconnecting();
                    tokio::select! {
                        () = emitter.cancel().cancelled() => return Err(Interrupt::Stopped),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// MariaDB reconnects: 250 ms doubling to at most 30 s.
const RECONNECT_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(250), Duration::from_secs(30));

fn backoff(attempt: u32) -> Duration {
    RECONNECT_BACKOFF.delay(attempt, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_password() {
        let table = TableRef {
            db: "c".into(),
            table: "p".into(),
        };
        let mut cfg = SourceConfig::new("mysql://u:hunter2@db1,db2", table);
        cfg.failover_urls = vec!["mysql://u:hunter3@db3".into()];
        cfg.password = Some(Secret::new("hunter4"));
        let source = BinlogSource::new(cfg).expect("source");
        let printed = format!("{source:?}");
        assert!(!printed.contains("hunter"), "{printed}");
        assert!(printed.contains("db3"), "{printed}");
    }
}
