//! [`Merge`]: the binlog stream's snapshot hook. Between event groups it reads chunks (and
//! absence checks) on a second connection and sends each one where the stream reaches the
//! position it was read at; before any stream exists (no usable position) it reads the first
//! chunk, whose position the stream then starts from; for a table without a chunking key it runs
//! the one-read fallback.
//!
//! # One read, step by step
//! 1. At a group boundary (stream position `S`), with a credit free (or an absence check
//!    queued), a read task takes the [`TableReader`] and starts a consistent read. The stream
//!    waits for the read's position `P` only (a few round trips).
//! 2. `P` must cover `S`. If it does not (the dump thread sent a group an instant before InnoDB
//!    made it visible), the read is discarded when it ends and done again.
//! 3. The stream goes on while the rows are read. At the first boundary where the stream's
//!    position covers `P`, it stops reading the binlog until the rows are in (at most
//!    `pause_limit` after it stopped), then the chunk is sent: the lazily held commit of the
//!    groups before it first, then the chunk.
//! 4. A read slower than `pause_limit` is abandoned and done again with half the rows; a failed
//!    read is retried with the crate's backoff. Only that read: the snapshot goes on from its
//!    last chunk.
//!
//! At most one read is in flight. A read starts only when fewer than
//! [`MAX_CHUNKS_AHEAD`](super::MAX_CHUNKS_AHEAD) chunks are unconfirmed, so memory stays flat.

use std::time::Duration;

use serde_json::Value as Json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backoff::{Attempts, Backoff};
use crate::checkpoint::SnapshotProgress;
use crate::config::TableRef;
use crate::event::{
    Absence, ChangeEvent, Commit, Op, Row, SnapshotChunk, SnapshotMessage, SnapshotStarted, Source,
    SourceMessage, now_ms,
};
use crate::position::GtidPosition;

use super::super::connection::Endpoint;
use super::super::emitter::{Emitter, Interrupt};
use super::super::error::SourceError;
use super::chunks::{ReadPoint, TableReader, is_table_changed};
use super::keys::KeyChoice;
use super::progress::Progress;
use super::{AbsenceRequest, MAX_CHUNKS_AHEAD, SnapshotControl, absence};

/// Snapshot reads retry with the same policy as MariaDB reconnects.
const READ_BACKOFF: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));

/// A read whose rows are ready but whose position the stream has not reached for this long is
/// reported (once): the stream may be missing a replication domain.
const STUCK_WARNING: Duration = Duration::from_secs(60);

/// What the merge needs to know.
#[derive(Debug, Clone)]
pub(crate) struct MergeConfig {
    pub table: TableRef,
    pub chunk_rows: usize,
    /// The longest the stream may stop reading the binlog for one read.
    pub pause_limit: Duration,
    /// Failed reads in a row before the source gives up (`None`: never).
    pub max_failures: Option<u32>,
}

/// The snapshot hook of the binlog stream. See the [module](self) documentation.
pub(crate) struct Merge {
    control: SnapshotControl,
    endpoint: Endpoint,
    config: MergeConfig,
    /// `None` while a read task holds it (or after a read was abandoned).
    reader: Option<TableReader>,
    active: Option<Active>,
    read: Option<InFlight>,
    attempts: Attempts,
    /// No read starts before this (backoff after a failure).
    retry_at: Option<Instant>,
    /// Rows per chunk; halved when a read takes too long.
    chunk_rows: usize,
    /// The table has no chunking key: the stream must stop for the one-read fallback.
    fallback: bool,
}

/// The running snapshot.
struct Active {
    id: String,
    reason: String,
    resumed: bool,
    after_key: Option<Vec<Json>>,
    next_seq: u64,
    rows_done: u64,
    started_sent: bool,
    /// Every chunk is sent (a resumed snapshot that only has its sweep left): after `Started`
    /// there is nothing to read.
    chunks_done: bool,
    /// The key columns `after_key` belongs to, once a chunk told.
    key: Option<Vec<String>>,
    progress: Option<Progress>,
}

/// What a read is for.
#[derive(Debug, Clone)]
enum Job {
    Chunk {
        snapshot_id: String,
        seq: u64,
        after: Option<Vec<Json>>,
    },
    Absence(AbsenceRequest),
}

/// What a read produced.
enum Output {
    Chunk {
        rows: Vec<Row>,
        last_key: Option<Vec<Json>>,
        last: bool,
        key: Vec<String>,
    },
    Absence {
        present: Vec<String>,
    },
    /// The table has no chunking key (nothing was read).
    NoKey(String),
    /// The key to read after does not fit the table's key (altered since it was recorded).
    KeyMismatch(String),
}

type ReadResult = (TableReader, Result<Output, SourceError>);

/// A read that took its consistent snapshot and is reading (or has read) its rows.
struct InFlight {
    job: Job,
    point: ReadPoint,
    /// The read's position does not cover the stream's: its result is discarded.
    stale: bool,
    handle: JoinHandle<ReadResult>,
    since: Instant,
    warned: bool,
}

impl Merge {
    pub(crate) fn new(control: SnapshotControl, endpoint: Endpoint, config: MergeConfig) -> Self {
        let chunk_rows = config.chunk_rows.max(1);
        Self {
            control,
            endpoint,
            config,
            reader: None,
            active: None,
            read: None,
            attempts: Attempts::new(READ_BACKOFF),
            retry_at: None,
            chunk_rows,
            fallback: false,
        }
    }

    /// How long the server lets a read wait for a metadata lock (an ALTER in progress). Longer
    /// than the pause limit, so the stream's own limit decides (and a read that slow is read
    /// again with fewer rows); the server's limit only ends a query the stream gave up on.
    fn lock_wait(&self) -> Duration {
        self.config.pause_limit * 2
    }

    /// Start a new snapshot (replacing any running one).
    pub(crate) fn begin(&mut self, reason: impl Into<String>) {
        self.abandon();
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.control.begin(&id);
        self.active = Some(Active {
            id,
            reason: reason.into(),
            resumed: false,
            after_key: None,
            next_seq: 0,
            rows_done: 0,
            started_sent: false,
            chunks_done: false,
            key: None,
            progress: None,
        });
    }

    /// Continue the snapshot recorded in the checkpoint.
    pub(crate) fn resume(&mut self, progress: SnapshotProgress) {
        self.abandon();
        self.control.begin(&progress.id);
        self.active = Some(Active {
            id: progress.id,
            reason: "resuming the snapshot recorded in the checkpoint".into(),
            resumed: true,
            after_key: progress.after_key,
            next_seq: progress.next_seq,
            rows_done: progress.rows_done,
            started_sent: false,
            chunks_done: progress.sweep.is_some(),
            key: None,
            progress: None,
        });
    }

    /// Read from `endpoint` from now on (the stream moved to it: a read's position only means
    /// something on the server the stream reads). A read in flight on another server is
    /// dropped and its job read again.
    pub(crate) fn use_endpoint(&mut self, endpoint: &Endpoint) {
        if self.endpoint.url == endpoint.url {
            return;
        }
        tracing::info!(table = %self.config.table, server = %endpoint.url, "snapshot reads follow the stream to another server");
        self.endpoint = endpoint.clone();
        self.reader = None;
        if let Some(read) = self.read.take() {
            read.handle.abort();
            self.release(read.job);
        }
    }

    /// Drop the running snapshot and any read in flight.
    pub(crate) fn abandon(&mut self) {
        if let Some(read) = self.read.take() {
            // The reader goes with the task; a new one connects when needed.
            read.handle.abort();
            if let Job::Absence(request) = read.job {
                self.control.retry_absence(request);
            }
        }
        if let Some(active) = self.active.take() {
            if let Some(p) = active.progress {
                p.finish();
            }
            tracing::info!(table = %self.config.table, snapshot_id = %active.id, "snapshot abandoned");
        }
        self.control.end();
        self.fallback = false;
    }

    /// The table has no chunking key: the stream must stop so [`fallback`](Self::fallback) can
    /// read it in one consistent read.
    pub(crate) fn wants_fallback(&self) -> bool {
        self.fallback
    }

    /// Resolves when the stream should come to [`at_boundary`](Self::at_boundary) although no
    /// event arrived: a credit came back, a request was queued, a retry is due.
    pub(crate) async fn wake(&self) {
        match self.retry_at {
            Some(at) => {
                tokio::select! {
                    () = self.control.changed() => {}
                    () = tokio::time::sleep_until(at) => {}
                }
            }
            None => self.control.changed().await,
        }
    }

    /// The stream is between two event groups at `stream`. Sends what is due, starts the next
    /// read; `pending` (the stream's lazily held commit) is sent before anything the merge
    /// sends.
    pub(crate) async fn at_boundary(
        &mut self,
        stream: &GtidPosition,
        pending: &mut Option<Commit>,
        emitter: &Emitter,
    ) -> Result<(), Interrupt> {
        if let Some(reason) = self.control.take_reconcile() {
            tracing::info!(table = %self.config.table, %reason, "starting a reconciling snapshot");
            self.begin(reason);
        }
        if self.fallback {
            return Ok(());
        }
        self.send_started(emitter).await?;
        let mut paused: Option<Instant> = None;
        if !self
            .deliver_due(stream, pending, emitter, &mut paused)
            .await?
        {
            return Ok(());
        }
        if let Some(at) = self.retry_at {
            if Instant::now() < at {
                return Ok(());
            }
            self.retry_at = None;
        }
        let Some(job) = self.next_job() else {
            return Ok(());
        };
        let started = *paused.get_or_insert_with(Instant::now);
        self.start_read(job, stream, started + self.config.pause_limit, emitter)
            .await?;
        // Idle at the read's position: the rows go out now.
        self.deliver_due(stream, pending, emitter, &mut paused)
            .await?;
        if self.read.is_none() && self.next_job_possible() {
            // More to read: come back as soon as the binlog has nothing waiting.
            self.control.wake_self();
        }
        Ok(())
    }

    /// Send the read in flight if the stream reached its position. True when no read is in
    /// flight afterwards (a new one may start).
    async fn deliver_due(
        &mut self,
        stream: &GtidPosition,
        pending: &mut Option<Commit>,
        emitter: &Emitter,
        paused: &mut Option<Instant>,
    ) -> Result<bool, Interrupt> {
        let Some(read) = &mut self.read else {
            return Ok(true);
        };
        if read.stale {
            if !read.handle.is_finished() {
                return Ok(false);
            }
            let read = self.read.take().ok_or(Interrupt::Stopped)?;
            let (reader, _) = self.join(read.handle, emitter).await?;
            self.reader = reader;
            self.release(read.job);
            let delay = self.attempts.fail(None);
            let attempt = self.attempts.failures();
            // Once is a race with InnoDB making a commit visible; again and again means the
            // reads and the stream do not see the same binlog.
            if attempt >= 3 {
                tracing::warn!(table = %self.config.table, read_at = %read.point.position, %stream, attempt, "a snapshot read's position keeps lagging the stream's (are they on different servers?); reading again");
            } else {
                tracing::debug!(table = %self.config.table, read_at = %read.point.position, %stream, "a read's position lags the stream; reading again");
            }
            if self.config.max_failures.is_some_and(|max| attempt > max) {
                return Err(SourceError::Unsupported(format!(
                    "{}: snapshot reads at {} do not cover the stream's position {stream}: the \
                     reads and the stream see different binlogs",
                    self.config.table, read.point.position
                ))
                .into());
            }
            if attempt < 3 {
                // The stream was not paused for it: reading again at once costs one read.
                self.control.wake_self();
            } else {
                self.retry_at = Some(Instant::now() + delay);
            }
            return Ok(true);
        }
        if !stream.covers(&read.point.position) {
            if !read.warned && read.handle.is_finished() && read.since.elapsed() > STUCK_WARNING {
                read.warned = true;
                tracing::warn!(
                    table = %self.config.table,
                    read_at = %read.point.position,
                    %stream,
                    "a snapshot chunk has waited a minute for the stream to reach the position it \
                     was read at (the stream is far behind, or it does not stream the binlog the \
                     reads see)"
                );
            }
            return Ok(false);
        }
        let Some(read) = self.read.take() else {
            return Ok(true);
        };
        if let Some(commit) = pending.take() {
            emitter.send(SourceMessage::Commit(commit)).await?;
        }
        let deadline = *paused.get_or_insert_with(Instant::now) + self.config.pause_limit;
        let InFlight {
            job,
            point,
            mut handle,
            ..
        } = read;
        let joined = tokio::select! {
            biased;
            () = emitter.cancel().cancelled() => {
                handle.abort();
                return Err(Interrupt::Stopped);
            }
            j = tokio::time::timeout_at(deadline, &mut handle) => j,
        };
        match joined {
            Err(_) => {
                // The reader (and its connection, mid-query) goes with the aborted task.
                handle.abort();
                self.too_slow(job)?;
                Ok(true)
            }
            Ok(Err(e)) => Err(task_failed(&self.config.table, e).into()),
            Ok(Ok((reader, result))) => {
                self.reader = Some(reader);
                match result {
                    Ok(output) => self.deliver(job, point, output, stream, emitter).await?,
                    Err(e) => self.failed(job, e)?,
                }
                Ok(true)
            }
        }
    }

    /// Start `job`: hand the reader to a task and wait (until `deadline`) for the read's position.
    async fn start_read(
        &mut self,
        job: Job,
        stream: &GtidPosition,
        deadline: Instant,
        emitter: &Emitter,
    ) -> Result<(), Interrupt> {
        let reader = self.reader.take().unwrap_or_else(|| {
            TableReader::new(
                self.endpoint.clone(),
                self.config.table.clone(),
                self.lock_wait(),
            )
        });
        if let Job::Chunk { seq, .. } = &job {
            self.control.hold(*seq);
        }
        let (point_tx, point_rx) = oneshot::channel();
        let handle = tokio::spawn(read(reader, job.clone(), self.chunk_rows, point_tx));
        let point = tokio::select! {
            biased;
            () = emitter.cancel().cancelled() => {
                handle.abort();
                return Err(Interrupt::Stopped);
            }
            p = tokio::time::timeout_at(deadline, point_rx) => p,
        };
        match point {
            Ok(Ok(point)) => {
                let stale = !point.position.covers(stream);
                self.read = Some(InFlight {
                    job,
                    point,
                    stale,
                    handle,
                    since: Instant::now(),
                    warned: false,
                });
                Ok(())
            }
            // The task ended before its consistent read began: an error, or no key.
            Ok(Err(_)) => {
                let (reader, result) = self.join(handle, emitter).await?;
                self.reader = reader;
                match result {
                    Some(Ok(Output::NoKey(why))) => {
                        self.release(job);
                        self.no_key(&why);
                        Ok(())
                    }
                    Some(Ok(Output::KeyMismatch(why))) => {
                        self.release(job);
                        self.key_mismatch(&why);
                        Ok(())
                    }
                    Some(Ok(_)) => Err(task_failed_msg(
                        &self.config.table,
                        "a read ended without a position",
                    )
                    .into()),
                    Some(Err(e)) => self.failed(job, e),
                    None => self.failed(job, timed_out(&self.config.table)),
                }
            }
            Err(_) => {
                handle.abort();
                self.too_slow(job)
            }
        }
    }

    /// Wait for a read task that is ending anyway; its reader and result (`None`: it panicked
    /// or was aborted, and the reader is gone).
    async fn join(
        &self,
        handle: JoinHandle<ReadResult>,
        emitter: &Emitter,
    ) -> Result<(Option<TableReader>, Option<Result<Output, SourceError>>), Interrupt> {
        let joined = tokio::select! {
            biased;
            () = emitter.cancel().cancelled() => return Err(Interrupt::Stopped),
            j = handle => j,
        };
        match joined {
            Ok((reader, result)) => Ok((Some(reader), Some(result))),
            Err(e) if e.is_cancelled() => Ok((None, None)),
            Err(e) => Err(task_failed(&self.config.table, e).into()),
        }
    }

    /// Send what a read produced, at the stream's position `stream` (which covers the read's).
    async fn deliver(
        &mut self,
        job: Job,
        point: ReadPoint,
        output: Output,
        stream: &GtidPosition,
        emitter: &Emitter,
    ) -> Result<(), Interrupt> {
        match (job, output) {
            (
                Job::Chunk {
                    snapshot_id, seq, ..
                },
                Output::Chunk {
                    rows,
                    last_key,
                    last,
                    key,
                },
            ) => {
                let Some(active) = self.active.as_mut().filter(|a| a.id == snapshot_id) else {
                    return Ok(()); // abandoned meanwhile
                };
                if active.key.as_ref().is_some_and(|k| *k != key) {
                    tracing::warn!(
                        table = %self.config.table,
                        old = ?active.key,
                        new = ?key,
                        "the table's chunking key changed (ALTER TABLE); the snapshot reads it \
                         again from the start"
                    );
                    active.after_key = None;
                    active.key = Some(key);
                    self.control.release(seq);
                    self.control.wake_self();
                    return Ok(());
                }
                active.key = Some(key);
                self.attempts.reset();
                let n = rows.len() as u64;
                let chunk = chunk_message(
                    &self.config.table,
                    &snapshot_id,
                    seq,
                    &point,
                    rows,
                    last_key.clone(),
                    last,
                );
                emitter
                    .send(SourceMessage::Snapshot(SnapshotMessage::Chunk(chunk)))
                    .await?;
                if last_key.is_some() {
                    active.after_key = last_key;
                }
                active.next_seq = seq + 1;
                active.rows_done += n;
                if let Some(p) = active.progress.as_mut() {
                    p.chunk(n);
                }
                if last {
                    self.finish(emitter, Some(stream)).await?;
                }
                Ok(())
            }
            (Job::Absence(request), Output::Absence { present }) => {
                self.attempts.reset();
                let absent = absence::absent(&request.values, &present);
                tracing::debug!(table = %self.config.table, request = request.request, asked = request.values.len(), absent = absent.len(), position = %point.position, "absence check answered");
                emitter
                    .send(SourceMessage::Snapshot(SnapshotMessage::Absent(Absence {
                        snapshot_id: request.snapshot_id,
                        request: request.request,
                        position: point.position,
                        column: request.column,
                        absent,
                    })))
                    .await
            }
            (job, Output::NoKey(why)) => {
                self.release(job);
                self.no_key(&why);
                Ok(())
            }
            (job, Output::KeyMismatch(why)) => {
                self.release(job);
                self.key_mismatch(&why);
                Ok(())
            }
            (job, _) => {
                self.release(job);
                Err(task_failed_msg(
                    &self.config.table,
                    "a read produced the wrong kind of result",
                )
                .into())
            }
        }
    }

    /// The last chunk is sent: the snapshot is done. A commit at the stream's position follows
    /// it, so the checkpoint can move past the snapshot even when no other change comes.
    async fn finish(
        &mut self,
        emitter: &Emitter,
        stream: Option<&GtidPosition>,
    ) -> Result<(), Interrupt> {
        if let Some(active) = self.active.take() {
            tracing::info!(
                table = %self.config.table,
                snapshot_id = %active.id,
                rows = active.rows_done,
                chunks = active.next_seq,
                "snapshot read every chunk"
            );
            if let Some(p) = active.progress {
                p.finish();
            }
        }
        if let Some(position) = stream {
            emitter
                .send(SourceMessage::Commit(Commit {
                    position: position.clone(),
                    ts_ms: now_ms(),
                    seen_ms: now_ms(),
                }))
                .await?;
        }
        Ok(())
    }

    /// `Started` for the running snapshot, once, with information_schema's estimate.
    async fn send_started(&mut self, emitter: &Emitter) -> Result<(), Interrupt> {
        let Some(active) = self.active.as_ref() else {
            return Ok(());
        };
        if active.started_sent {
            return Ok(());
        }
        let estimate = match self.reader.as_mut() {
            Some(reader) => tokio::time::timeout(self.config.pause_limit, reader.estimated_rows())
                .await
                .ok()
                .and_then(Result::ok),
            None => {
                let mut reader = TableReader::new(
                    self.endpoint.clone(),
                    self.config.table.clone(),
                    self.lock_wait(),
                );
                let e = tokio::time::timeout(self.config.pause_limit, reader.estimated_rows())
                    .await
                    .ok()
                    .and_then(Result::ok);
                self.reader = Some(reader);
                e
            }
        };
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        let estimated_rows = estimate.unwrap_or(0);
        tracing::info!(
            table = %self.config.table,
            snapshot_id = %active.id,
            resumed = active.resumed,
            reason = %active.reason,
            after_key = ?active.after_key,
            next_seq = active.next_seq,
            estimated_rows,
            chunk_rows = self.chunk_rows,
            "snapshot started"
        );
        emitter
            .send(SourceMessage::Snapshot(SnapshotMessage::Started(
                SnapshotStarted {
                    id: active.id.clone(),
                    resumed: active.resumed,
                    reason: active.reason.clone(),
                    estimated_rows,
                },
            )))
            .await?;
        active.started_sent = true;
        if active.chunks_done {
            // Only the sweep is left, and the pipeline drives it.
            self.active = None;
            self.control.end();
        } else {
            active.progress = Some(Progress::start(
                self.config.table.to_string(),
                estimated_rows,
                active.rows_done,
            ));
        }
        Ok(())
    }

    /// The next read to start: an absence check first, else a chunk if a credit is free.
    fn next_job(&mut self) -> Option<Job> {
        if let Some(request) = self.control.next_absence() {
            return Some(Job::Absence(request));
        }
        let active = self.active.as_ref()?;
        if !active.started_sent
            || active.chunks_done
            || self.control.outstanding() >= MAX_CHUNKS_AHEAD
        {
            return None;
        }
        Some(Job::Chunk {
            snapshot_id: active.id.clone(),
            seq: active.next_seq,
            after: active.after_key.clone(),
        })
    }

    fn next_job_possible(&self) -> bool {
        self.control.has_absence()
            || self.active.as_ref().is_some_and(|a| {
                a.started_sent && !a.chunks_done && self.control.outstanding() < MAX_CHUNKS_AHEAD
            })
    }

    /// A read did not finish within the pause limit: fewer rows next time, and read again.
    fn too_slow(&mut self, job: Job) -> Result<(), Interrupt> {
        if matches!(job, Job::Chunk { .. }) && self.chunk_rows > 1 {
            self.chunk_rows = (self.chunk_rows / 2).max(1);
            tracing::warn!(
                table = %self.config.table,
                limit_ms = self.config.pause_limit.as_millis() as u64,
                chunk_rows = self.chunk_rows,
                "a snapshot chunk took longer to read than the stream may wait; reading fewer \
                 rows per chunk from now on"
            );
        }
        self.failed(job, timed_out(&self.config.table))
    }

    /// A read failed: give its credit back (or requeue the request), then retry after a backoff
    /// if the error is transient, or stop.
    fn failed(&mut self, job: Job, error: SourceError) -> Result<(), Interrupt> {
        self.release(job);
        if !(error.is_transient() || is_table_changed(&error)) {
            return Err(error.into());
        }
        let delay = self.attempts.fail(None);
        let attempt = self.attempts.failures();
        if self.config.max_failures.is_some_and(|max| attempt > max) {
            return Err(error.into());
        }
        tracing::warn!(
            table = %self.config.table,
            %error,
            attempt,
            delay_ms = delay.as_millis() as u64,
            "snapshot read failed; retrying that read"
        );
        self.retry_at = Some(Instant::now() + delay);
        Ok(())
    }

    fn release(&self, job: Job) {
        match job {
            Job::Chunk { seq, .. } => self.control.release(seq),
            Job::Absence(request) => self.control.retry_absence(request),
        }
    }

    /// The table has no chunking key: stop the stream for the fallback (which warns why).
    fn no_key(&mut self, why: &str) {
        if self.active.is_some() {
            tracing::debug!(table = %self.config.table, reason = %why, "no chunking key; the stream stops for the one-read fallback");
            self.fallback = true;
        }
    }

    fn key_mismatch(&mut self, why: &str) {
        if let Some(active) = self.active.as_mut() {
            tracing::warn!(table = %self.config.table, reason = %why, "the snapshot's last key does not fit the table's key any more (ALTER TABLE?); reading the table again from the start");
            active.after_key = None;
            active.key = None;
        }
        self.control.wake_self();
    }

    /// No usable position yet: read the first chunk (the stream starts at its position), or
    /// the whole table if it has no chunking key. Returns where the stream starts.
    pub(crate) async fn before_stream(
        &mut self,
        emitter: &Emitter,
    ) -> Result<GtidPosition, Interrupt> {
        if self.active.is_none() {
            self.begin("no position to stream from");
        }
        self.send_started(emitter).await?;
        let mut reader = self.reader.take().unwrap_or_else(|| {
            TableReader::new(
                self.endpoint.clone(),
                self.config.table.clone(),
                self.lock_wait(),
            )
        });
        let schema = match reader.schema().await {
            Ok(s) => s,
            Err(e) => {
                self.reader = Some(reader);
                return Err(e.into());
            }
        };
        self.reader = Some(reader);
        if let KeyChoice::None(_) = schema.key {
            return self.fallback(emitter, None).await;
        }
        let (id, seq, after) = match &self.active {
            Some(a) => (a.id.clone(), a.next_seq, a.after_key.clone()),
            None => return Err(task_failed_msg(&self.config.table, "no snapshot to start").into()),
        };
        let mut reader = self.reader.take().ok_or(Interrupt::Stopped)?;
        let read = reader.next_chunk(after.as_deref(), self.chunk_rows).await;
        let key = reader.key_columns().unwrap_or_default();
        self.reader = Some(reader);
        let chunk = read?;
        self.control.hold(seq);
        let position = chunk.point.position.clone();
        let last = chunk.last;
        let output = Output::Chunk {
            rows: chunk.rows,
            last_key: chunk.last_key,
            last: chunk.last,
            key,
        };
        let job = Job::Chunk {
            snapshot_id: id,
            seq,
            after,
        };
        // The stream starts at the chunk's position: a commit there says so. (After the last
        // chunk, `deliver` sends it.)
        self.deliver(job, chunk.point, output, &position, emitter)
            .await?;
        if !last {
            emitter
                .send(SourceMessage::Commit(Commit {
                    position: position.clone(),
                    ts_ms: now_ms(),
                    seen_ms: now_ms(),
                }))
                .await?;
        }
        Ok(position)
    }

    /// The table has no chunking key: read it in one consistent read, sent as chunks that all
    /// carry the read's position, then a commit there. The stream (stopped meanwhile) starts
    /// from that position; rows deleted before it are the sweep's to remove.
    /// `stream`: where the stopped stream was, which the read's position must cover (the
    /// stream continues from the read's position).
    pub(crate) async fn fallback(
        &mut self,
        emitter: &Emitter,
        stream: Option<&GtidPosition>,
    ) -> Result<GtidPosition, Interrupt> {
        self.fallback = false;
        if self.active.is_none() {
            self.begin("no position to stream from");
        }
        self.send_started(emitter).await?;
        let mut reader = self.reader.take().unwrap_or_else(|| {
            TableReader::new(
                self.endpoint.clone(),
                self.config.table.clone(),
                self.lock_wait(),
            )
        });
        let result = self.read_everything(&mut reader, emitter, stream).await;
        self.reader = Some(reader);
        let position = result?;
        emitter
            .send(SourceMessage::Commit(Commit {
                position: position.clone(),
                ts_ms: now_ms(),
                seen_ms: now_ms(),
            }))
            .await?;
        Ok(position)
    }

    async fn read_everything(
        &mut self,
        reader: &mut TableReader,
        emitter: &Emitter,
        stream: Option<&GtidPosition>,
    ) -> Result<GtidPosition, Interrupt> {
        let table = self.config.table.clone();
        let why = match reader.schema().await?.key.clone() {
            KeyChoice::None(why) => why,
            KeyChoice::Key(_) => "a chunking key appeared".into(),
        };
        tracing::warn!(
            %table,
            "{table} cannot be read in chunks: {why}. The snapshot is one consistent read of the \
             whole table instead: the server keeps its undo history for as long as it runs, \
             streaming waits until it ends, and an interruption starts it over. Give the table a \
             primary key (ALTER TABLE {table} ADD PRIMARY KEY (...)) or make a UNIQUE index's \
             columns NOT NULL"
        );
        let (id, mut seq) = match &self.active {
            Some(a) => (a.id.clone(), a.next_seq),
            None => return Err(task_failed_msg(&table, "no snapshot to run").into()),
        };
        if let Some(a) = self.active.as_mut() {
            // A keyless table has no key to resume after.
            a.after_key = None;
        }
        let mut lagging = Attempts::new(READ_BACKOFF);
        let point = loop {
            let point = reader.begin().await?;
            match stream {
                Some(s) if !point.position.covers(s) => {
                    // A commit the stream saw is not visible to reads yet: an instant.
                    reader.end().await?;
                    let delay = lagging.fail(None);
                    if lagging.failures() > 5 {
                        return Err(SourceError::Unsupported(format!(
                            "{table}: the read at {} does not cover the stream's position {s}: \
                             the reads and the stream see different binlogs",
                            point.position
                        ))
                        .into());
                    }
                    tokio::time::sleep(delay).await;
                }
                _ => break point,
            }
        };
        let rows_per_chunk = self.chunk_rows;
        let mut buffered: Vec<Row> = Vec::with_capacity(rows_per_chunk);
        {
            let mut scan = reader.scan_all().await?;
            loop {
                let row = scan.next_row().await?;
                let end = row.is_none();
                if let Some(row) = row {
                    buffered.push(row);
                }
                // One row of look-ahead, so the last chunk can say so.
                if (buffered.len() > rows_per_chunk) || end {
                    let take = if end { buffered.len() } else { rows_per_chunk };
                    let rows: Vec<Row> = buffered.drain(..take).collect();
                    self.wait_for_credit(emitter).await?;
                    self.control.hold(seq);
                    let n = rows.len() as u64;
                    let chunk = chunk_message(&table, &id, seq, &point, rows, None, end);
                    emitter
                        .send(SourceMessage::Snapshot(SnapshotMessage::Chunk(chunk)))
                        .await?;
                    seq += 1;
                    if let Some(a) = self.active.as_mut() {
                        a.next_seq = seq;
                        a.rows_done += n;
                        if let Some(p) = a.progress.as_mut() {
                            p.chunk(n);
                        }
                    }
                }
                if end {
                    break;
                }
            }
        }
        reader.end().await?;
        self.finish(emitter, None).await?;
        Ok(point.position)
    }

    async fn wait_for_credit(&self, emitter: &Emitter) -> Result<(), Interrupt> {
        while self.control.outstanding() >= MAX_CHUNKS_AHEAD {
            tokio::select! {
                biased;
                () = emitter.cancel().cancelled() => return Err(Interrupt::Stopped),
                () = self.control.changed() => {}
            }
        }
        Ok(())
    }
}

/// The read task: take the consistent snapshot, report its position, read, end the read.
async fn read(
    mut reader: TableReader,
    job: Job,
    chunk_rows: usize,
    point_tx: oneshot::Sender<ReadPoint>,
) -> ReadResult {
    let result = async {
        let schema = reader.schema().await?;
        if let Job::Chunk { after, .. } = &job {
            match &schema.key {
                KeyChoice::None(why) => return Ok(Output::NoKey(why.clone())),
                KeyChoice::Key(key) => {
                    if let Some(after) = after {
                        if let Err(e) = key.after_params(after) {
                            return Ok(Output::KeyMismatch(e.to_string()));
                        }
                    }
                }
            }
        }
        let point = reader.begin().await?;
        // The stream waits for this before it goes on; if it gave up waiting, read anyway:
        // the result is discarded when the read ends.
        let _ = point_tx.send(point);
        let output = match job {
            Job::Chunk { after, .. } => {
                let (rows, last_key, last) =
                    reader.chunk_in_read(after.as_deref(), chunk_rows).await?;
                Output::Chunk {
                    rows,
                    last_key,
                    last,
                    key: reader.key_columns().unwrap_or_default(),
                }
            }
            Job::Absence(request) => Output::Absence {
                present: reader
                    .present_in_read(&request.column, &request.values)
                    .await?,
            },
        };
        reader.end().await?;
        Ok(output)
    }
    .await;
    (reader, result)
}

/// The chunk's rows as `r` events at the read's position.
fn chunk_message(
    table: &TableRef,
    snapshot_id: &str,
    seq: u64,
    point: &ReadPoint,
    rows: Vec<Row>,
    last_key: Option<Vec<Json>>,
    last: bool,
) -> SnapshotChunk {
    let read_ms = now_ms();
    let count = rows.len();
    let rows = rows
        .into_iter()
        .enumerate()
        .map(|(i, after)| ChangeEvent {
            before: None,
            after: Some(after),
            source: Source {
                connector: "vecsync".into(),
                db: table.db.clone(),
                table: table.table.clone(),
                server_id: point.server_id,
                gtid: None,
                file: point.file.clone(),
                pos: point.offset,
                row: u32::try_from(i).unwrap_or(u32::MAX),
                ts_ms: read_ms,
                snapshot: if last && i + 1 == count {
                    "last".into()
                } else {
                    "true".into()
                },
            },
            op: Op::Read,
            ts_ms: read_ms,
        })
        .collect();
    SnapshotChunk {
        snapshot_id: snapshot_id.to_owned(),
        seq,
        position: point.position.clone(),
        rows,
        last_key,
        last,
    }
}

fn timed_out(table: &TableRef) -> SourceError {
    SourceError::Connection {
        doing: "reading a snapshot chunk within the stream's pause limit",
        table: table.to_string(),
        position: String::new(),
        cause: Box::new(mysql_async::Error::Io(mysql_async::IoError::Io(
            std::io::Error::new(std::io::ErrorKind::TimedOut, "the read took too long"),
        ))),
    }
}

fn task_failed(table: &TableRef, e: tokio::task::JoinError) -> SourceError {
    task_failed_msg(table, &format!("a snapshot read task failed: {e}"))
}

fn task_failed_msg(table: &TableRef, what: &str) -> SourceError {
    SourceError::Unsupported(format!(
        "{table}: {what} (a bug in vecsync; please report it)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(s: &str) -> GtidPosition {
        s.parse().expect("position")
    }

    #[test]
    fn chunk_rows_mark_the_very_last_row() {
        let point = ReadPoint {
            position: pos("0-1-5"),
            file: "mysql-bin.000001".into(),
            offset: 400,
            server_id: 9,
        };
        let table = TableRef {
            db: "d".into(),
            table: "t".into(),
        };
        let row = |i: i64| {
            let mut r = Row::new();
            r.insert("id".into(), Json::from(i));
            r
        };
        let c = chunk_message(&table, "s", 3, &point, vec![row(1), row(2)], None, true);
        let marks: Vec<_> = c.rows.iter().map(|e| e.source.snapshot.as_str()).collect();
        assert_eq!(marks, ["true", "last"]);
        assert!(c.rows.iter().all(|e| e.op == Op::Read
            && e.source.pos == 400
            && e.source.server_id == 9
            && e.source.gtid.is_none()));
        let c = chunk_message(&table, "s", 3, &point, vec![row(1)], None, false);
        assert_eq!(c.rows[0].source.snapshot, "true");
    }
}
