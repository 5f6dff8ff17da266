//! Chunked, resumable snapshots of the watched table, merged into the binlog stream at the exact
//! positions their rows were read at.
//!
//! ```text
//! keys      the chunking key (PRIMARY KEY, else a UNIQUE key over NOT NULL columns), keyset
//!           pagination SQL, key values encoded so they bind back exactly
//! chunks    TableReader: one short consistent read per chunk (START TRANSACTION WITH CONSISTENT
//!           SNAPSHOT + binlog_snapshot_file/position + BINLOG_GTID_POS) and absence reads
//! absence   "which of these values does no row have", batched
//! merge     the stream's hook: reads chunks between event groups and sends each where the
//!           stream reaches its read position; credits; retries; the keyless fallback
//! progress  progress bar, metrics, log lines
//! ```
//!
//! # Merging at exact positions
//! A chunk's rows are the table at the GTID position `P` of the consistent read that produced
//! them. The stream is only ever paused at an event-group boundary, at position `S`. The read's
//! consistent snapshot is taken while the stream is paused, so nothing after `S` has been sent;
//! `P` must cover `S` (a group the dump thread sent a moment before InnoDB made it visible can
//! make `P` lag: the chunk is then read again). Streaming resumes while the rows are read, and
//! the chunk is sent at the first group boundary whose position covers `P`: every group committed
//! before the read came before the chunk, every later group comes after it. Positions are
//! compared per replication domain. (A stream position that omits a domain is no problem:
//! MariaDB then sends that domain's groups from the start of its binlog, or refuses the position
//! if they were purged, so the stream has every domain by the time it reaches a read's
//! position.) The stream stops reading the binlog
//! only from the moment it reaches `P` until the rows are in, bounded by the heartbeat-silence
//! limit (a slower read is abandoned, the chunk size halved and the chunk read again).
//!
//! # Resumption
//! The pipeline records the last confirmed chunk's key and the next sequence number
//! ([`SnapshotProgress`](crate::checkpoint::SnapshotProgress)); a restarted source continues after
//! that key with that sequence number. Chunks sent but not confirmed are read again.
//!
//! # Error handling
//! A chunk read that fails transiently (connection lost, server restarting, error 1412 after a
//! concurrent `ALTER TABLE`) is retried with the crate's backoff, that chunk only; after an ALTER
//! the column list is read again. Definite errors (privileges, an unreadable value) stop the
//! source with the table and the position.

mod absence;
mod chunks;
mod keys;
mod merge;
mod progress;

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

pub use chunks::{ReadPoint, TableChunk, TableReader};
pub(crate) use merge::{Merge, MergeConfig};
pub use progress::{
    SNAPSHOT_CHUNKS_TOTAL, SNAPSHOT_REMAINING_ROWS, SNAPSHOT_ROWS_TOTAL, SNAPSHOT_RUNNING,
    describe_metrics,
};

/// Unconfirmed chunks (sent or being read) a snapshot may have at any time: what bounds the
/// snapshot's memory, whatever the table's size.
pub const MAX_CHUNKS_AHEAD: usize = 3;

/// Cloneable handle the pipeline uses to drive a running snapshot.
///
/// Get it from [`BinlogSource::snapshot_control`](crate::source::BinlogSource::snapshot_control)
/// before calling `run`.
#[derive(Debug, Clone, Default)]
pub struct SnapshotControl {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<ControlState>,
    /// Wakes the source when a credit returns or a request arrives (a stored permit means no
    /// wake-up is lost while the source is busy).
    notify: Notify,
}

#[derive(Debug, Default)]
struct ControlState {
    /// The snapshot the credits belong to.
    current: Option<String>,
    /// Sequence numbers sent (or being read) and not confirmed yet.
    outstanding: BTreeSet<u64>,
    absence: VecDeque<AbsenceRequest>,
    /// Why a new reconciling snapshot was asked for, if one was.
    reconcile: Option<String>,
}

/// One absence check the pipeline asked for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AbsenceRequest {
    pub snapshot_id: String,
    pub request: u64,
    pub column: String,
    pub values: Vec<String>,
}

impl SnapshotControl {
    /// The pipeline confirmed (wrote or superseded) every row of chunk `seq`: one more chunk may
    /// be read ahead. At most [`MAX_CHUNKS_AHEAD`] unconfirmed chunks exist at any time.
    pub fn chunk_confirmed(&self, snapshot_id: &str, seq: u64) {
        let mut state = self.lock();
        if state.current.as_deref() == Some(snapshot_id) {
            state.outstanding.remove(&seq);
        } else {
            tracing::debug!(
                snapshot_id,
                seq,
                "confirmation for a snapshot that is no longer running"
            );
        }
        drop(state);
        self.shared.notify.notify_one();
    }

    /// Ask which of `values` of `column` no row has; answered in the stream by
    /// [`SnapshotMessage::Absent`](crate::event::SnapshotMessage::Absent) at the position of the
    /// consistent read that decided it. Values are compared exactly (byte for byte, as the row's
    /// JSON has them), not by the column's collation. Ask a few thousand values at a time: one
    /// request is one consistent read.
    pub fn check_absent(&self, snapshot_id: &str, request: u64, column: &str, values: Vec<String>) {
        self.lock().absence.push_back(AbsenceRequest {
            snapshot_id: snapshot_id.to_owned(),
            request,
            column: column.to_owned(),
            values,
        });
        self.shared.notify.notify_one();
    }

    /// Start a new reconciling snapshot of the table (merged into the stream from its current
    /// position), replacing any snapshot in progress: for changes the binlog does not describe
    /// row by row (TRUNCATE PARTITION, a failover to a server whose history diverged). It begins
    /// at the stream's next group boundary with a new
    /// [`Started`](crate::event::SnapshotMessage::Started).
    pub fn start_reconciling_snapshot(&self, reason: impl Into<String>) {
        self.lock().reconcile = Some(reason.into());
        self.shared.notify.notify_one();
    }

    /// Chunks of `snapshot_id` not confirmed yet.
    pub(crate) fn outstanding(&self) -> usize {
        self.lock().outstanding.len()
    }

    /// A new snapshot owns the credits from now on.
    pub(crate) fn begin(&self, snapshot_id: &str) {
        let mut state = self.lock();
        state.current = Some(snapshot_id.to_owned());
        state.outstanding.clear();
    }

    /// The snapshot ended (or was abandoned): credits no longer count.
    pub(crate) fn end(&self) {
        let mut state = self.lock();
        state.current = None;
        state.outstanding.clear();
    }

    /// Chunk `seq` is being read or was sent: it holds a credit until confirmed.
    pub(crate) fn hold(&self, seq: u64) {
        self.lock().outstanding.insert(seq);
    }

    /// A chunk read that failed gives its credit back.
    pub(crate) fn release(&self, seq: u64) {
        self.lock().outstanding.remove(&seq);
    }

    pub(crate) fn next_absence(&self) -> Option<AbsenceRequest> {
        self.lock().absence.pop_front()
    }

    /// Put a request whose read failed back at the front, to be retried first.
    pub(crate) fn retry_absence(&self, request: AbsenceRequest) {
        self.lock().absence.push_front(request);
    }

    pub(crate) fn has_absence(&self) -> bool {
        !self.lock().absence.is_empty()
    }

    pub(crate) fn take_reconcile(&self) -> Option<String> {
        self.lock().reconcile.take()
    }

    /// Wake the source's stream loop at its next idle moment (more work is possible).
    pub(crate) fn wake_self(&self) {
        self.shared.notify.notify_one();
    }

    /// Resolves when something changed (a credit, a request); may resolve spuriously.
    pub(crate) async fn changed(&self) {
        self.shared.notify.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ControlState> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_belong_to_the_running_snapshot() {
        let control = SnapshotControl::default();
        control.begin("a");
        control.hold(0);
        control.hold(1);
        assert_eq!(control.outstanding(), 2);
        control.chunk_confirmed("old", 0);
        assert_eq!(control.outstanding(), 2, "another snapshot's confirmation");
        control.chunk_confirmed("a", 0);
        control.chunk_confirmed("a", 0);
        assert_eq!(control.outstanding(), 1);
        control.begin("b");
        assert_eq!(
            control.outstanding(),
            0,
            "a new snapshot starts with every credit"
        );
    }

    #[test]
    fn absence_requests_queue_in_order_and_retry_first() {
        let control = SnapshotControl::default();
        control.check_absent("a", 1, "sku", vec!["x".into()]);
        control.check_absent("a", 2, "sku", vec!["y".into()]);
        let first = control.next_absence().expect("first");
        assert_eq!(first.request, 1);
        control.retry_absence(first);
        assert_eq!(control.next_absence().map(|r| r.request), Some(1));
        assert_eq!(control.next_absence().map(|r| r.request), Some(2));
        assert!(!control.has_absence());
    }
}
