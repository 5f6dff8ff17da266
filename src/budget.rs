//! The memory budget between the binlog and Weaviate, in bytes (`--max-buffer-mb`).
//!
//! Everything the source has read but the pipeline has not yet confirmed holds a share of one
//! budget: the events of the transaction being read (and of prepared XA transactions waiting for
//! their `XA COMMIT`), the messages in the channel, and the batches the pipeline is working on.
//! A message travels with its share ([`Budgeted`]); the share returns to the budget when the
//! [`BytePermit`] is dropped, which the pipeline does once the batch holding the message is
//! confirmed. When the budget is used up the source waits, so the binlog is read no faster than
//! Weaviate takes it, whatever the size of the rows.
//!
//! # Sizes
//! [`message_bytes`] estimates what a message occupies on the heap (strings, JSON maps and
//! their bookkeeping), not its serialized size. One message larger than the whole budget is
//! allowed through alone: it takes the whole budget.
//!
//! # Deadlock freedom
//! The source never waits for budget while it holds budget that only it can release: before
//! waiting it hands the buffered part of the current transaction to the pipeline (a transaction
//! larger than the budget is passed on in parts, its commit last). So the pipeline must release
//! permits when a batch is confirmed, without waiting for the transaction's commit.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::event::{ChangeEvent, Row, SnapshotMessage, Source, SourceMessage};
use crate::telemetry::BUFFER_BYTES;

/// `--max-buffer-mb`'s default.
pub const DEFAULT_MAX_BUFFER_MB: usize = 64;

/// The budget counts in units of this many bytes (a semaphore takes at most `u32::MAX` permits
/// at once).
const UNIT: usize = 1024;

/// A shared byte budget. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Budget {
    semaphore: Arc<Semaphore>,
    units: usize,
}

impl Budget {
    /// A budget of `bytes` (at least one unit).
    pub fn new(bytes: usize) -> Self {
        let units = bytes.div_ceil(UNIT).clamp(1, Semaphore::MAX_PERMITS);
        Self {
            semaphore: Arc::new(Semaphore::new(units)),
            units,
        }
    }

    /// A budget of `mb` MiB.
    pub fn from_mb(mb: usize) -> Self {
        Self::new(mb.saturating_mul(1024 * 1024))
    }

    /// The whole budget, in bytes.
    pub fn total(&self) -> usize {
        self.units * UNIT
    }

    /// Bytes not held by any permit right now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits() * UNIT
    }

    /// The units `bytes` need: at least one, at most the whole budget.
    fn units_for(&self, bytes: usize) -> u32 {
        let units = bytes.div_ceil(UNIT).clamp(1, self.units);
        u32::try_from(units).unwrap_or(u32::MAX)
    }

    /// A permit for `bytes` if the budget has room now.
    pub fn try_acquire(&self, bytes: usize) -> Option<BytePermit> {
        let units = self.units_for(bytes);
        self.semaphore
            .clone()
            .try_acquire_many_owned(units)
            .ok()
            .map(BytePermit::held)
    }

    /// A permit for `bytes`, waiting until the budget has room. A request larger than the whole
    /// budget waits for the whole budget.
    pub async fn acquire(&self, bytes: usize) -> BytePermit {
        let units = self.units_for(bytes);
        match self.semaphore.clone().acquire_many_owned(units).await {
            Ok(permit) => BytePermit::held(permit),
            // The semaphore is never closed; should it be, nothing is bounded any more, which
            // is better than a stuck source.
            Err(_) => BytePermit::none(),
        }
    }
}

/// A share of the [`Budget`]; returned to it when dropped. The bytes held by all permits are
/// the gauge `vecsync_buffer_bytes`.
#[derive(Debug, Default)]
pub struct BytePermit {
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for BytePermit {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            metrics::gauge!(BUFFER_BYTES).decrement((p.num_permits() * UNIT) as f64);
        }
    }
}

impl BytePermit {
    fn held(permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!(BUFFER_BYTES).increment((permit.num_permits() * UNIT) as f64);
        Self {
            permit: Some(permit),
        }
    }

    /// A permit that holds nothing (for messages made outside the budget, e.g. in tests).
    pub fn none() -> Self {
        Self { permit: None }
    }

    /// The bytes this permit holds.
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits() * UNIT)
    }

    /// Take over `other`'s share: one permit for both.
    pub fn merge(&mut self, mut other: BytePermit) {
        // The bytes move from one permit to the other: the gauge does not change.
        match (&mut self.permit, other.permit.take()) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

/// A message and the share of the budget it holds: the channel's item.
#[derive(Debug)]
pub struct Budgeted<T> {
    pub message: T,
    pub permit: BytePermit,
}

impl<T> Budgeted<T> {
    /// A message that holds no budget.
    pub fn unmetered(message: T) -> Self {
        Self {
            message,
            permit: BytePermit::none(),
        }
    }

    pub fn into_parts(self) -> (T, BytePermit) {
        (self.message, self.permit)
    }
}

impl From<SourceMessage> for Budgeted<SourceMessage> {
    fn from(message: SourceMessage) -> Self {
        Budgeted::unmetered(message)
    }
}

/// Bookkeeping of one JSON value besides its contents (the enum itself).
const VALUE_OVERHEAD: usize = std::mem::size_of::<serde_json::Value>();
/// Bookkeeping of one map entry (index map slot, hash table slot, key string header).
const ENTRY_OVERHEAD: usize = 64;

fn value_bytes(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    VALUE_OVERHEAD
        + match value {
            Value::String(s) => s.capacity(),
            Value::Array(a) => a.iter().map(value_bytes).sum::<usize>(),
            Value::Object(m) => row_bytes(m),
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        }
}

fn row_bytes(row: &Row) -> usize {
    row.iter()
        .map(|(k, v)| ENTRY_OVERHEAD + k.capacity() + value_bytes(v))
        .sum()
}

fn source_bytes(s: &Source) -> usize {
    s.connector.capacity()
        + s.db.capacity()
        + s.table.capacity()
        + s.gtid.as_ref().map_or(0, String::capacity)
        + s.file.capacity()
        + s.snapshot.capacity()
}

/// What `event` occupies on the heap, approximately.
pub fn event_bytes(event: &ChangeEvent) -> usize {
    std::mem::size_of::<ChangeEvent>()
        + event.before.as_ref().map_or(0, row_bytes)
        + event.after.as_ref().map_or(0, row_bytes)
        + source_bytes(&event.source)
}

/// What `message` occupies on the heap, approximately (see the module documentation).
pub fn message_bytes(message: &SourceMessage) -> usize {
    let own = std::mem::size_of::<SourceMessage>();
    own + match message {
        SourceMessage::Event(e) => event_bytes(e),
        SourceMessage::Commit(_) => 0,
        SourceMessage::Snapshot(SnapshotMessage::Chunk(c)) => {
            c.rows.iter().map(event_bytes).sum::<usize>()
                + c.last_key
                    .as_ref()
                    .map_or(0, |k| k.iter().map(value_bytes).sum())
        }
        SourceMessage::Snapshot(SnapshotMessage::Absent(a)) => {
            a.absent.iter().map(|s| s.capacity() + 24).sum()
        }
        SourceMessage::Snapshot(SnapshotMessage::Started(s)) => s.reason.capacity(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(description: &str) -> ChangeEvent {
        let mut after = Row::new();
        after.insert("sku".into(), json!("A-1"));
        after.insert("description".into(), json!(description));
        ChangeEvent {
            before: None,
            after: Some(after),
            source: Source {
                connector: "vecsync".into(),
                db: "catalog".into(),
                table: "products".into(),
                server_id: 1,
                gtid: Some("0-1-1".into()),
                file: "mysql-bin.000001".into(),
                pos: 4,
                row: 0,
                ts_ms: 0,
                snapshot: "false".into(),
            },
            op: crate::event::Op::Create,
            ts_ms: 0,
        }
    }

    #[test]
    fn sizes_follow_the_row_contents() {
        let small = event_bytes(&event("x"));
        let large = event_bytes(&event(&"y".repeat(60_000)));
        assert!(
            large - small >= 59_999 && large - small < 60_100,
            "{small} {large}"
        );
        assert!(small < 1024, "bookkeeping stays modest: {small}");
    }

    #[tokio::test]
    async fn permits_return_to_the_budget_when_dropped() {
        let budget = Budget::new(10 * UNIT);
        let a = budget.try_acquire(4 * UNIT).expect("room");
        let mut b = budget.try_acquire(6 * UNIT).expect("room");
        assert_eq!(budget.available(), 0);
        assert!(budget.try_acquire(1).is_none(), "full");
        b.merge(a);
        assert_eq!(b.bytes(), 10 * UNIT);
        drop(b);
        assert_eq!(budget.available(), 10 * UNIT);
    }

    #[tokio::test]
    async fn a_request_larger_than_the_budget_takes_all_of_it() {
        let budget = Budget::new(4 * UNIT);
        let all = budget.acquire(1 << 30).await;
        assert_eq!(all.bytes(), 4 * UNIT);
        assert!(budget.try_acquire(1).is_none());
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.acquire(UNIT).await.bytes() }
        });
        drop(all);
        assert_eq!(waiting.await.expect("task"), UNIT);
    }
}
