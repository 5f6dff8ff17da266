//! [`BinlogSource`]: decides where to start (explicit GTID, checkpoint, snapshot), runs the
//! snapshot and the stream, and reconnects after transient failures.
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
//! # Error handling
//! Transient errors (connection lost, server restarting, silence past the heartbeat) reconnect
//! with exponential backoff and resume from the last complete transaction. Definite errors end
//! [`BinlogSource::run`]. A purged position is definite, except with `when-needed`, which takes a
//! new snapshot and continues from it. A stream that connects but fails at the same position
//! several times in a row is treated as definite: retrying would loop forever.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::checkpoint::SnapshotProgress;
use crate::config::{Secret, SnapshotMode, TableRef};
use crate::event::{Commit, SourceMessage, now_ms};
use crate::position::GtidPosition;

use super::binlog::{self, StreamContext, StreamState};

use super::columns::Collations;
use super::connection::Endpoint;
use super::emitter::{Emitter, Interrupt};
use super::error::SourceError;
use super::preflight::{self, Preflight};
use super::snapshot::{Merge, MergeConfig, SnapshotControl};

/// The replica server id vecsync uses by default (Debezium's in the seed).
pub const DEFAULT_SERVER_ID: u32 = 184_054;

/// Everything the source needs.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// `mysql://user@host:port`; a password in it works but `password` is preferred.
    pub url: String,
    /// The password, kept out of URLs and logs.
    pub password: Option<Secret>,
    /// CA certificate (PEM) to verify the server's TLS certificate with; turns TLS on.
    pub ssl_ca: Option<std::path::PathBuf>,
    /// The table to replicate.
    pub table: TableRef,
    /// Replica server id on the binlog connection; unique among the server's replicas.
    pub server_id: u32,
    /// How often the server sends a heartbeat on an idle stream. Silence for twice this plus
    /// 5 s counts as a dead connection.
    pub heartbeat: Duration,
    pub snapshot: SnapshotMode,
    /// `--gtid`: stream from exactly after this position, ignoring the checkpoint.
    pub start_gtid: Option<GtidPosition>,
    /// Reconnect attempts after transient errors before giving up (`None`: forever). The count
    /// restarts whenever the stream makes progress.
    pub max_reconnects: Option<u32>,
    /// Rows per snapshot chunk (`--snapshot-chunk-rows`).
    pub snapshot_chunk_rows: usize,
}

impl SourceConfig {
    /// Defaults for everything but where to connect and what to replicate.
    pub fn new(url: impl Into<String>, table: TableRef) -> Self {
        Self {
            url: url.into(),
            password: None,
            ssl_ca: None,
            table,
            server_id: DEFAULT_SERVER_ID,
            heartbeat: Duration::from_secs(5),
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
    endpoint: Endpoint,
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

impl BinlogSource {
    pub fn new(config: SourceConfig) -> Result<Self, SourceError> {
        let endpoint = Endpoint::new(
            &config.url,
            config.password.as_ref(),
            config.ssl_ca.as_deref(),
        )?;
        Ok(Self {
            config,
            endpoint,
            control: SnapshotControl::default(),
        })
    }

    /// The handle the pipeline drives snapshots with (credits, absence checks). Take it before
    /// [`run`](Self::run); it stays valid for the whole run.
    pub fn snapshot_control(&self) -> SnapshotControl {
        self.control.clone()
    }

    /// Check the server's settings and the user's privileges, as [`run`](Self::run) does first:
    /// MariaDB, `log_bin=ON`, `binlog_format=ROW`, `binlog_row_image=FULL`, REPLICATION SLAVE and
    /// SELECT on the table. Problems that do not stop replication are in [`Preflight::warnings`].
    pub async fn preflight(&self) -> Result<Preflight, SourceError> {
        let mut conn = self.endpoint.connect().await?;
        let result = preflight::check(&mut conn, &self.config.table).await;
        let _ = conn.disconnect().await;
        result
    }

    /// The server's `@@gtid_binlog_pos`: the position after the newest transaction.
    pub async fn server_position(&self) -> Result<GtidPosition, SourceError> {
        let mut conn = self.endpoint.connect().await?;
        let text: Option<String> =
            conn.query_first("SELECT @@gtid_binlog_pos")
                .await
                .map_err(|e| SourceError::Connection {
                    doing: "reading @@gtid_binlog_pos",
                    table: self.config.table.to_string(),
                    position: String::new(),
                    source: Box::new(e),
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
    /// [`Commit`](crate::event::Commit), and snapshot messages merged in at their positions.
    /// When `start_gtid` is set, or a snapshot starts without a position, the commits may be
    /// behind the stored checkpoint: the caller should `reset` the checkpoint, not `store` it.
    pub async fn run(
        self,
        start: Start,
        tx: mpsc::Sender<SourceMessage>,
        cancel: CancellationToken,
    ) -> Result<(), SourceError> {
        let emitter = Emitter::new(tx, cancel.clone());
        match self.run_inner(start, &emitter).await {
            Ok(()) | Err(Interrupt::Stopped) => Ok(()),
            Err(Interrupt::Failed(e)) => Err(e),
        }
    }

    async fn run_inner(&self, start: Start, emitter: &Emitter) -> Result<(), Interrupt> {
        let table = &self.config.table;
        let (preflight, collations) = self.prepare(emitter).await?;
        for w in &preflight.warnings {
            tracing::warn!(%table, "{w}");
        }
        tracing::info!(%table, server = %preflight.server_version, "MariaDB preflight passed");

        let silence_limit = self.config.heartbeat * 2 + Duration::from_secs(5);
        let mut merge = Merge::new(
            self.control.clone(),
            self.endpoint.clone(),
            MergeConfig {
                table: table.clone(),
                chunk_rows: self.config.snapshot_chunk_rows,
                pause_limit: silence_limit,
                max_failures: self.config.max_reconnects,
            },
        );
        let mut plan = self.start_plan(start, &mut merge);
        let ctx = StreamContext {
            table,
            replica_server_id: self.config.server_id,
            heartbeat: self.config.heartbeat,
            endpoint: &self.endpoint,
            collations: &collations,
            emitter,
            snapshot: &self.control,
        };
        let mut state = StreamState::default();
        let mut attempt = 0u32;
        let mut same_place = 0u32;
        let mut last_failed_at: Option<GtidPosition> = None;
        loop {
            let outcome = match &plan {
                Plan::Snapshot | Plan::Fallback => {
                    let fallback = matches!(plan, Plan::Fallback);
                    let read = async {
                        if fallback {
                            merge.fallback(emitter, Some(&state.position)).await
                        } else {
                            merge.before_stream(emitter).await
                        }
                    };
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
                    let r = binlog::stream(&ctx, &mut state, &mut merge).await;
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
                Err(Interrupt::Failed(e)) => e,
            };
            if error.is_purged()
                && self.config.snapshot == SnapshotMode::WhenNeeded
                && self.config.start_gtid.is_none()
            {
                tracing::warn!(%table, %error, "binlog purged; taking a new snapshot (--snapshot when-needed)");
                merge.begin("the binlog of the position was purged (--snapshot when-needed)");
                plan = Plan::Snapshot;
                continue;
            }
            if !error.is_transient() {
                return Err(error.into());
            }
            // Connected and failed at the same place again: likely not the network.
            let connected = !matches!(error, SourceError::Connect { .. });
            if connected && last_failed_at.as_ref() == Some(&state.position) && !state.progressed {
                same_place += 1;
            } else {
                same_place = 0;
            }
            last_failed_at = Some(state.position.clone());
            if same_place >= SAME_PLACE_FAILURES {
                return Err(SourceError::Event {
                    table: table.to_string(),
                    position: state.position.to_string(),
                    file: state.file.clone(),
                    pos: 0,
                    reason: format!(
                        "the stream failed {} times in a row at this position: {error}",
                        same_place + 1
                    ),
                }
                .into());
            }
            attempt += 1;
            if self.config.max_reconnects.is_some_and(|max| attempt > max) {
                return Err(error.into());
            }
            let delay = backoff(attempt);
            tracing::warn!(%table, %error, attempt, delay_ms = delay.as_millis() as u64, "MariaDB source failed; reconnecting");
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

    /// Preflight and the server's collation table, retrying while the server is unreachable.
    async fn prepare(&self, emitter: &Emitter) -> Result<(Preflight, Collations), Interrupt> {
        let mut attempt = 0;
        loop {
            let result = async {
                let mut conn = self.endpoint.connect().await?;
                let pre = preflight::check(&mut conn, &self.config.table).await?;
                let collations =
                    Collations::load(&mut conn)
                        .await
                        .map_err(|e| SourceError::Connection {
                            doing: "reading the server's collations",
                            table: self.config.table.to_string(),
                            position: String::new(),
                            source: Box::new(e),
                        })?;
                let _ = conn.disconnect().await;
                Ok::<_, SourceError>((pre, collations))
            }
            .await;
            match result {
                Ok(r) => return Ok(r),
                Err(e) if e.is_transient() => {
                    attempt += 1;
                    if self.config.max_reconnects.is_some_and(|max| attempt > max) {
                        return Err(e.into());
                    }
                    let delay = backoff(attempt);
                    tracing::warn!(table = %self.config.table, error = %e, attempt, "cannot reach MariaDB yet; retrying");
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
