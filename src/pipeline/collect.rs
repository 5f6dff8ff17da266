//! The first stage: turn the source's messages into batches, and hold the snapshot backlog.
//!
//! # Batching without a fixed window
//! A batch is handed on when the next stage can take it and either no message arrived for
//! `idle` (1 ms by default), or its first message is `wait` old, or it is full. At a low write
//! rate a commit waits only the idle gap, so batching adds next to no latency; in a storm
//! messages keep coming, and while the next stage is busy they pile up in the open batch, so one
//! batch coalesces many commits. A batch that reaches `max_events` stops the reading, which holds
//! the source back.
//!
//! # The snapshot backlog
//! A snapshot chunk's rows are the table at the chunk's position, and the source sends the chunk
//! at exactly that point of the stream (see [`crate::event::SnapshotMessage`]). Rows of the
//! table arrive in whole chunks, so they are held here and handed on a few at a time, after the
//! live changes of each batch: live changes are never queued behind a big snapshot. A live
//! change to a product that still has a row waiting here supersedes that row (the change carries
//! the whole row, and it is newer); the same holds for stale-object deletes from an absence
//! check. A truncate supersedes everything waiting. A chunk is done once every row of it was
//! handed on or superseded; its completion travels with the batch that finished it, so the
//! checkpoint records it only when that batch is confirmed.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::budget::{Budgeted, BytePermit};
use crate::event::{ChangeEvent, Commit, Op, SnapshotMessage, SnapshotStarted, SourceMessage};
use crate::telemetry::EVENTS_TOTAL;

use super::plan::{sku_of, skus_touched};

/// Most snapshot rows in one batch: a batch of rows that all need embedding takes about a
/// second on two cores, so a live change waits at most about that long behind the snapshot.
pub const SNAPSHOT_ROWS_PER_BATCH: usize = 128;

/// When a batch goes on.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most changes in one batch.
    pub max_events: usize,
    /// Hand the batch on once no message arrived for this long.
    pub idle: Duration,
    /// ... or once its first message is this old.
    pub wait: Duration,
}

/// One change of a batch.
// Events are the common change and stale deletes the rare one: boxing every event would cost an
// allocation per row.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A row change (or a snapshot row, `op` `r`).
    Event(ChangeEvent),
    /// The object of this sku must go: the absence check found no row for it.
    Stale { sku: String },
}

/// What a batch does to the snapshot's progress once it is confirmed.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Started(SnapshotStarted),
    ChunkDone {
        snapshot_id: String,
        seq: u64,
        last_key: Option<Vec<serde_json::Value>>,
        rows: u64,
        last: bool,
    },
    AbsentDone {
        snapshot_id: String,
        request: u64,
    },
    /// The sweep of stale objects found nothing more: the snapshot is finished.
    SweepDone {
        snapshot_id: String,
    },
}

/// Changes handed to the next stage together.
#[derive(Debug, Default)]
pub struct Batch {
    /// 1, 2, 3, ... in stream order.
    pub seq: u64,
    /// The batch starts with this truncate (the last one it saw: whatever came before it in the
    /// batch is moot), then its changes apply.
    pub truncate: Option<ChangeEvent>,
    /// Live changes in stream order, then snapshot rows and stale deletes.
    pub changes: Vec<Change>,
    /// The last commit of the batch: where the checkpoint may move once it is confirmed.
    pub commit: Option<Commit>,
    /// When each commit that carried changes was read (for commit-to-visible).
    pub commits_seen_ms: Vec<i64>,
    pub effects: Vec<Effect>,
    /// Events a truncate in the same batch made moot: emitted (`--emit-events`), never written.
    pub moot: Vec<ChangeEvent>,
    /// Nothing else was waiting in the source's channel when the batch went on.
    pub caught_up: bool,
    /// The memory budget its messages hold (see [`crate::budget`]): returned when the batch is
    /// dropped, once confirmed.
    pub permits: BytePermit,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.truncate.is_none()
            && self.commit.is_none()
            && self.effects.is_empty()
    }
}

enum PendingKind {
    Chunk {
        seq: u64,
        last_key: Option<Vec<serde_json::Value>>,
        last: bool,
    },
    Absent {
        request: u64,
    },
}

/// A chunk (or an absence answer) not yet wholly handed on.
struct Pending {
    snapshot_id: String,
    kind: PendingKind,
    /// `None` once handed on or superseded.
    items: Vec<Option<Change>>,
    /// sku -> index in `items`, for the rows still waiting.
    index: HashMap<String, usize>,
    next: usize,
    rows: u64,
    /// The budget the chunk holds until it is done (it goes with the batch that finishes it).
    permit: BytePermit,
}

impl Pending {
    fn supersede(&mut self, sku: &str) {
        if let Some(i) = self.index.remove(sku) {
            self.items[i] = None;
        }
    }

    fn done(&self) -> bool {
        self.items[self.next..].iter().all(Option::is_none)
    }

    fn effect(&self) -> Effect {
        match &self.kind {
            PendingKind::Chunk {
                seq,
                last_key,
                last,
            } => Effect::ChunkDone {
                snapshot_id: self.snapshot_id.clone(),
                seq: *seq,
                last_key: last_key.clone(),
                rows: self.rows,
                last: *last,
            },
            PendingKind::Absent { request } => Effect::AbsentDone {
                snapshot_id: self.snapshot_id.clone(),
                request: *request,
            },
        }
    }
}

/// The collecting stage.
pub struct Collector {
    max_events: usize,
    idle: Duration,
    wait: Duration,
    next_seq: u64,
    open: Batch,
    /// Changes in `open` (snapshot rows are added at dispatch).
    open_events: usize,
    /// The open batch has events after its last commit.
    in_transaction: bool,
    /// When the open batch got its first and its last message.
    first_at: Option<Instant>,
    last_at: Option<Instant>,
    backlog: VecDeque<Pending>,
}

impl Collector {
    pub fn new(limits: BatchLimits) -> Self {
        Collector {
            max_events: limits.max_events.max(1),
            idle: limits.idle,
            wait: limits.wait.max(limits.idle),
            next_seq: 1,
            open: Batch::default(),
            open_events: 0,
            in_transaction: false,
            first_at: None,
            last_at: None,
            backlog: VecDeque::new(),
        }
    }

    /// When the open batch may go on (now or in the past: it may).
    fn due(&self) -> Option<Instant> {
        let (first, last) = (self.first_at?, self.last_at?);
        Some((last + self.idle).min(first + self.wait))
    }

    /// Run until the source's channel closes (everything left is handed on) or `cancel` fires
    /// (the open batch is dropped: nothing of it was confirmed, a restart replays it).
    /// `control` carries effects of the pipeline's own (the sweep's end) into the next batch.
    pub async fn run<M>(
        mut self,
        rx: &mut mpsc::Receiver<M>,
        mut control: mpsc::UnboundedReceiver<Effect>,
        tx: mpsc::Sender<Batch>,
        cancel: &CancellationToken,
    ) where
        M: Into<Budgeted<SourceMessage>>,
    {
        let mut closed = false;
        loop {
            if closed && self.open.is_empty() && self.backlog.is_empty() {
                return;
            }
            let due = self.due();
            let ripe = closed || due.is_none_or(|t| Instant::now() >= t);
            let dispatchable = self.dispatchable(ripe);
            let receivable = !closed && self.open_events < self.max_events;
            let settle_at = due.filter(|_| !ripe);
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                permit = tx.reserve(), if dispatchable => match permit {
                    Ok(permit) => {
                        let mut batch = self.take();
                        batch.caught_up = rx.is_empty();
                        permit.send(batch);
                    }
                    Err(_) => return, // the next stage stopped; its error is reported there
                },
                message = rx.recv(), if receivable => match message {
                    Some(m) => {
                        let (message, permit) = m.into().into_parts();
                        self.add_with(message, permit);
                    }
                    None => closed = true,
                },
                Some(effect) = control.recv() => self.open.effects.push(effect),
                () = sleep_until_opt(settle_at), if settle_at.is_some() => {}
            }
        }
    }

    /// Whether there is something to hand on now.
    fn dispatchable(&self, ripe: bool) -> bool {
        let open_ready = !self.open.is_empty() && (ripe || self.open_events >= self.max_events);
        open_ready || !self.backlog.is_empty()
    }

    /// Add one source message to the open batch or the backlog.
    pub fn add(&mut self, message: SourceMessage) {
        self.add_with(message, BytePermit::none());
    }

    /// [`Collector::add`] with the share of the memory budget the message holds: it stays with
    /// the message's batch (or snapshot chunk) until that is confirmed.
    pub fn add_with(&mut self, message: SourceMessage, permit: BytePermit) {
        let now = Instant::now();
        self.first_at.get_or_insert(now);
        self.last_at = Some(now);
        match message {
            SourceMessage::Event(event) => {
                self.open.permits.merge(permit);
                metrics::counter!(EVENTS_TOTAL, "op" => event.op.code()).increment(1);
                if event.op == Op::Truncate {
                    // Everything before it (in this batch and waiting) is moot.
                    // In stream order: an earlier truncate of the batch, then what followed it.
                    if let Some(earlier) = self.open.truncate.take() {
                        self.open.moot.push(earlier);
                    }
                    let moot = std::mem::take(&mut self.open.changes);
                    self.open
                        .moot
                        .extend(moot.into_iter().filter_map(|c| match c {
                            Change::Event(e) => Some(e),
                            Change::Stale { .. } => None,
                        }));
                    for pending in &mut self.backlog {
                        pending.items.iter_mut().for_each(|i| *i = None);
                        pending.index.clear();
                    }
                    self.open.truncate = Some(event);
                } else {
                    for sku in skus_touched(&event) {
                        for pending in &mut self.backlog {
                            pending.supersede(&sku);
                        }
                    }
                    self.open.changes.push(Change::Event(event));
                }
                self.open_events += 1;
                self.in_transaction = true;
            }
            SourceMessage::Commit(commit) => {
                self.open.permits.merge(permit);
                if self.in_transaction {
                    self.open.commits_seen_ms.push(commit.seen_ms);
                }
                self.open.commit = Some(commit);
                self.in_transaction = false;
            }
            SourceMessage::Snapshot(SnapshotMessage::Started(started)) => {
                self.open.permits.merge(permit);
                // A new snapshot replaces any other: its chunks re-read everything.
                self.backlog.retain(|p| p.snapshot_id == started.id);
                self.open.effects.push(Effect::Started(started));
            }
            SourceMessage::Snapshot(SnapshotMessage::Chunk(chunk)) => {
                let rows = chunk.rows.len() as u64;
                metrics::counter!(EVENTS_TOTAL, "op" => "r").increment(rows);
                let items: Vec<Change> = chunk.rows.into_iter().map(Change::Event).collect();
                self.push_pending(
                    chunk.snapshot_id,
                    PendingKind::Chunk {
                        seq: chunk.seq,
                        last_key: chunk.last_key,
                        last: chunk.last,
                    },
                    items,
                    rows,
                    permit,
                );
            }
            SourceMessage::Snapshot(SnapshotMessage::Absent(absence)) => {
                let items: Vec<Change> = absence
                    .absent
                    .into_iter()
                    .map(|sku| Change::Stale { sku })
                    .collect();
                self.push_pending(
                    absence.snapshot_id,
                    PendingKind::Absent {
                        request: absence.request,
                    },
                    items,
                    0,
                    permit,
                );
            }
        }
    }

    fn push_pending(
        &mut self,
        snapshot_id: String,
        kind: PendingKind,
        items: Vec<Change>,
        rows: u64,
        permit: BytePermit,
    ) {
        let mut index = HashMap::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(sku) = change_sku(item) {
                index.insert(sku, i);
            }
        }
        self.backlog.push_back(Pending {
            snapshot_id,
            kind,
            items: items.into_iter().map(Some).collect(),
            index,
            next: 0,
            rows,
            permit,
        });
    }

    /// Take the open batch, topped up with waiting snapshot rows.
    fn take(&mut self) -> Batch {
        let mut batch = std::mem::take(&mut self.open);
        batch.seq = self.next_seq;
        self.next_seq += 1;
        self.open_events = 0;
        self.in_transaction = false;
        self.first_at = None;
        self.last_at = None;
        let room = self
            .max_events
            .saturating_sub(batch.changes.len())
            .min(SNAPSHOT_ROWS_PER_BATCH);
        let mut taken = 0;
        while let Some(front) = self.backlog.front_mut() {
            while taken < room && front.next < front.items.len() {
                if let Some(change) = front.items[front.next].take() {
                    if let Some(sku) = change_sku(&change) {
                        front.index.remove(&sku);
                    }
                    batch.changes.push(change);
                    taken += 1;
                }
                front.next += 1;
            }
            if !front.done() {
                break;
            }
            batch.effects.push(front.effect());
            if let Some(done) = self.backlog.pop_front() {
                batch.permits.merge(done.permit);
            }
        }
        batch
    }
}

/// The product a snapshot row or stale delete is about.
fn change_sku(change: &Change) -> Option<String> {
    match change {
        Change::Event(e) => e.after.as_ref().and_then(|r| sku_of(r).ok()),
        Change::Stale { sku } => Some(sku.clone()),
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Absence, SnapshotChunk, Source};
    use crate::position::GtidPosition;
    use serde_json::json;

    fn event(op: Op, sku: &str, desc: &str) -> ChangeEvent {
        let row = match json!({"sku": sku, "description": desc}) {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let (before, after) = match op {
            Op::Delete => (Some(row), None),
            Op::Update => (Some(row.clone()), Some(row)),
            _ => (None, Some(row)),
        };
        ChangeEvent {
            before,
            after,
            source: Source {
                connector: "vecsync".into(),
                db: "catalog".into(),
                table: "products".into(),
                server_id: 1,
                gtid: None,
                file: String::new(),
                pos: 0,
                row: 0,
                ts_ms: 0,
                snapshot: "false".into(),
            },
            op,
            ts_ms: 0,
        }
    }

    fn chunk(seq: u64, skus: &[&str], last: bool) -> SourceMessage {
        SourceMessage::Snapshot(SnapshotMessage::Chunk(SnapshotChunk {
            snapshot_id: "s".into(),
            seq,
            position: GtidPosition::new(),
            rows: skus.iter().map(|s| event(Op::Read, s, "snap")).collect(),
            last_key: skus.last().map(|s| vec![json!(s)]),
            last,
        }))
    }

    fn collector(max: usize) -> Collector {
        Collector::new(BatchLimits {
            max_events: max,
            idle: Duration::from_millis(1),
            wait: Duration::from_millis(10),
        })
    }

    fn skus(batch: &Batch) -> Vec<String> {
        batch
            .changes
            .iter()
            .map(|c| match c {
                Change::Event(e) => format!(
                    "{}:{}",
                    e.op.code(),
                    e.after
                        .as_ref()
                        .or(e.before.as_ref())
                        .and_then(|r| r.get("sku"))
                        .and_then(|v| v.as_str())
                        .unwrap_or("?")
                ),
                Change::Stale { sku } => format!("stale:{sku}"),
            })
            .collect()
    }

    #[test]
    fn live_changes_come_first_and_supersede_waiting_snapshot_rows() {
        let mut c = collector(100);
        c.add(chunk(0, &["A", "B", "C"], false));
        // After the chunk in the stream: B's update is newer than its snapshot row.
        c.add(SourceMessage::Event(event(Op::Update, "B", "live")));
        let batch = c.take();
        assert_eq!(skus(&batch), ["u:B", "r:A", "r:C"]);
        assert!(matches!(
            &batch.effects[..],
            [Effect::ChunkDone {
                seq: 0,
                rows: 3,
                last: false,
                ..
            }]
        ));
    }

    #[test]
    fn snapshot_rows_are_handed_on_a_few_at_a_time_and_the_chunk_completes_last() {
        let mut c = collector(1000);
        let many: Vec<String> = (0..300).map(|i| format!("S{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        c.add(chunk(0, &refs, true));
        let first = c.take();
        assert_eq!(first.changes.len(), SNAPSHOT_ROWS_PER_BATCH);
        assert!(first.effects.is_empty(), "not done yet");
        // A live delete of a row still waiting supersedes it.
        c.add(SourceMessage::Event(event(Op::Delete, "S299", "")));
        let second = c.take();
        assert_eq!(second.changes.len(), 1 + SNAPSHOT_ROWS_PER_BATCH);
        let third = c.take();
        // 300 rows - 256 handed on - 1 superseded.
        assert_eq!(third.changes.len(), 43);
        assert!(matches!(
            &third.effects[..],
            [Effect::ChunkDone { last: true, .. }]
        ));
        assert!(c.backlog.is_empty());
    }

    #[test]
    fn a_truncate_supersedes_everything_before_it() {
        let mut c = collector(100);
        c.add(SourceMessage::Event(event(Op::Create, "X", "x")));
        c.add(chunk(0, &["A", "B"], false));
        c.add(SourceMessage::Event(event(Op::Truncate, "", "")));
        c.add(SourceMessage::Event(event(Op::Create, "Y", "y")));
        let batch = c.take();
        assert!(batch.truncate.is_some());
        assert_eq!(skus(&batch), ["c:Y"]);
        assert_eq!(
            batch.moot.len(),
            1,
            "the insert before the truncate is only emitted"
        );
        assert!(matches!(
            &batch.effects[..],
            [Effect::ChunkDone { seq: 0, .. }]
        ));
    }

    #[test]
    fn stale_deletes_are_superseded_by_a_later_insert() {
        let mut c = collector(100);
        c.add(SourceMessage::Snapshot(SnapshotMessage::Absent(Absence {
            snapshot_id: "s".into(),
            request: 7,
            position: GtidPosition::new(),
            column: "sku".into(),
            absent: vec!["GONE".into(), "BACK".into()],
        })));
        c.add(SourceMessage::Event(event(Op::Create, "BACK", "again")));
        let batch = c.take();
        assert_eq!(skus(&batch), ["c:BACK", "stale:GONE"]);
        assert!(matches!(
            &batch.effects[..],
            [Effect::AbsentDone { request: 7, .. }]
        ));
    }

    #[test]
    fn a_new_snapshot_drops_the_backlog_of_another() {
        let mut c = collector(100);
        c.add(chunk(0, &["A"], false));
        c.add(SourceMessage::Snapshot(SnapshotMessage::Started(
            SnapshotStarted {
                id: "t".into(),
                resumed: false,
                reason: "test".into(),
                estimated_rows: 0,
            },
        )));
        let batch = c.take();
        assert!(batch.changes.is_empty());
        assert!(matches!(&batch.effects[..], [Effect::Started(_)]));
    }

    #[tokio::test]
    async fn a_lone_commit_goes_on_at_once_and_a_storm_coalesces() {
        let (src_tx, mut src_rx) = mpsc::channel::<SourceMessage>(100);
        let (_control_tx, control_rx) = mpsc::unbounded_channel();
        let (tx, mut rx) = mpsc::channel(1);
        let cancel = CancellationToken::new();
        let c = collector(100);
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move { c.run(&mut src_rx, control_rx, tx, &cancel).await }
        });
        let commit = |n: u64| {
            SourceMessage::Commit(Commit {
                position: format!("0-1-{n}").parse().expect("gtid"),
                ts_ms: 0,
                seen_ms: 0,
            })
        };
        src_tx
            .send(SourceMessage::Event(event(Op::Create, "A", "a")))
            .await
            .expect("send");
        src_tx.send(commit(1)).await.expect("send");
        let first = rx.recv().await.expect("a batch");
        assert_eq!(first.changes.len(), 1);
        assert_eq!(first.seq, 1);
        // While nobody takes batches, a storm piles up in one.
        for n in 2..50 {
            src_tx
                .send(SourceMessage::Event(event(Op::Update, "A", "a")))
                .await
                .expect("send");
            src_tx.send(commit(n)).await.expect("send");
        }
        // A commit of the storm may have been handed on alone (the stage was free), but no
        // more than one batch waits in the channel: the rest is in the second.
        let mut total = 0;
        let mut batches = 0;
        while total < 48 {
            let b = rx.recv().await.expect("batch");
            total += b.changes.len();
            batches += 1;
        }
        assert!(batches <= 3, "{batches} batches for a storm of 48 commits");
        cancel.cancel();
        task.await.expect("collector");
    }
}
