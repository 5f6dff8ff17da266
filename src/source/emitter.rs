//! Handing messages to the pipeline: a bounded channel whose items carry their share of the
//! memory budget ([`crate::budget`]), a cancellation token (so a stopped pipeline never leaves
//! the source blocked), the prepared XA transactions whose commits are still to come (no commit
//! position may pass them), and the source's [`SourceStatus`].

use std::sync::Mutex;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::budget::{Budget, Budgeted, BytePermit};
use crate::event::{ChangeEvent, SourceMessage};
use crate::position::{Gtid, GtidPosition};

use super::error::SourceError;
use super::mariadb_events::Xid;
use super::status::SourceStatus;

/// Why a source loop ended early.
#[derive(Debug)]
pub(crate) enum Interrupt {
    /// Cancelled, or the receiver is gone: a clean stop.
    Stopped,
    /// The table changed in a way the binlog does not show row by row (the reason says how):
    /// it must be read again.
    Reconcile(String),
    Failed(SourceError),
}

impl From<SourceError> for Interrupt {
    fn from(e: SourceError) -> Self {
        Interrupt::Failed(e)
    }
}

/// The channel's item type.
pub type Item = Budgeted<SourceMessage>;

/// An `XA PREPARE`d group waiting for its `XA COMMIT` or `XA ROLLBACK`.
#[derive(Debug)]
pub(crate) struct PreparedGroup {
    pub xid: Xid,
    pub gtid: Gtid,
    /// The domain's GTID before this group: commit positions are held at it.
    pub before: Option<Gtid>,
    /// Where the group is in the binlog (`file:pos`), for messages.
    pub at: String,
    pub since_ms: i64,
    pub events: Vec<(ChangeEvent, BytePermit)>,
    pub bytes: usize,
    /// Whether the "still unresolved" warning was logged.
    pub warned: bool,
}

pub(crate) struct Emitter {
    tx: mpsc::Sender<Item>,
    cancel: CancellationToken,
    budget: Budget,
    status: SourceStatus,
    /// Oldest first. Kept across reconnects and snapshots: only a restart forgets them, and a
    /// restart reads them again because no commit position passed them.
    prepared: Mutex<Vec<PreparedGroup>>,
}

impl Emitter {
    pub(crate) fn new(
        tx: mpsc::Sender<Item>,
        cancel: CancellationToken,
        budget: Budget,
        status: SourceStatus,
    ) -> Self {
        Self {
            tx,
            cancel,
            budget,
            status,
            prepared: Mutex::new(Vec::new()),
        }
    }

    /// Send `msg`, waiting for room in the budget and the channel unless the source is
    /// cancelled. Commits are clamped so they never pass a prepared XA transaction, and take no
    /// budget (they are small, and must never wait behind the transaction they end).
    pub(crate) async fn send(&self, msg: SourceMessage) -> Result<(), Interrupt> {
        let msg = match msg {
            SourceMessage::Commit(mut c) => {
                c.position = self.clamp(&c.position);
                return self
                    .send_budgeted(Budgeted::unmetered(SourceMessage::Commit(c)))
                    .await;
            }
            other => other,
        };
        let bytes = crate::budget::message_bytes(&msg);
        let permit = self.reserve(bytes).await?;
        self.send_budgeted(Budgeted {
            message: msg,
            permit,
        })
        .await
    }

    /// Send a message that already holds its share of the budget.
    pub(crate) async fn send_budgeted(&self, item: Item) -> Result<(), Interrupt> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(Interrupt::Stopped),
            sent = self.tx.send(item) => sent.map_err(|_| Interrupt::Stopped),
        }
    }

    /// A share of the budget for `bytes`, waiting for it unless cancelled. Never more than what
    /// prepared XA transactions leave free, so the wait always ends once the pipeline confirms
    /// what it holds.
    pub(crate) async fn reserve(&self, bytes: usize) -> Result<BytePermit, Interrupt> {
        let bytes = bytes.min(self.reservable());
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(Interrupt::Stopped),
            permit = self.budget.acquire(bytes) => Ok(permit),
        }
    }

    /// A share of the budget for `bytes` if there is room now.
    pub(crate) fn try_reserve(&self, bytes: usize) -> Option<BytePermit> {
        self.budget.try_acquire(bytes.min(self.reservable()))
    }

    /// Prepared XA transactions hold at most half the budget (the stream checks), so this is
    /// at least half of it.
    fn reservable(&self) -> usize {
        self.budget
            .total()
            .saturating_sub(self.prepared_bytes())
            .max(1)
    }

    pub(crate) fn budget(&self) -> &Budget {
        &self.budget
    }

    pub(crate) fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }

    pub(crate) fn status(&self) -> &SourceStatus {
        &self.status
    }

    /// Bytes held by prepared XA transactions.
    pub(crate) fn prepared_bytes(&self) -> usize {
        self.lock().iter().map(|g| g.bytes).sum()
    }

    /// Hold `group` until its XA COMMIT or ROLLBACK.
    pub(crate) fn prepare(&self, group: PreparedGroup) {
        tracing::info!(
            xid = %group.xid,
            gtid = %group.gtid,
            at = %group.at,
            events = group.events.len(),
            "XA transaction prepared: its changes wait for XA COMMIT, and the position is held before it"
        );
        self.lock().push(group);
        self.update_held();
    }

    /// The prepared group `xid`, no longer held.
    pub(crate) fn resolve(&self, xid: &Xid) -> Option<PreparedGroup> {
        let found = {
            let mut prepared = self.lock();
            let i = prepared.iter().position(|g| &g.xid == xid)?;
            prepared.remove(i)
        };
        self.update_held();
        Some(found)
    }

    /// Warn once about each prepared group unresolved for longer than `after_ms`.
    pub(crate) fn warn_if_unresolved(&self, now_ms: i64, after_ms: i64) {
        for g in self.lock().iter_mut() {
            if !g.warned && now_ms - g.since_ms > after_ms {
                g.warned = true;
                tracing::warn!(
                    xid = %g.xid,
                    gtid = %g.gtid,
                    at = %g.at,
                    seconds = (now_ms - g.since_ms) / 1000,
                    "a prepared XA transaction is still unresolved; the checkpoint stays before it \
                     until XA COMMIT or XA ROLLBACK (XA RECOVER lists prepared transactions)"
                );
            }
        }
    }

    /// `position` held back, per domain, to just before the oldest unresolved prepare.
    pub(crate) fn clamp(&self, position: &GtidPosition) -> GtidPosition {
        let prepared = self.lock();
        if prepared.is_empty() {
            return position.clone();
        }
        let mut out = GtidPosition::new();
        for gtid in position.iter() {
            match prepared.iter().find(|g| g.gtid.domain_id == gtid.domain_id) {
                // A domain whose first transaction is the prepare is left out: resuming without
                // it starts at that domain's beginning.
                Some(held) => {
                    if let Some(before) = held.before {
                        out.advance(before);
                    }
                }
                None => out.advance(*gtid),
            }
        }
        out
    }

    fn update_held(&self) {
        let reason = self.lock().first().map(|g| {
            format!(
                "binlog position held before prepared XA transaction {} (GTID {}, {}) until its \
                 XA COMMIT or XA ROLLBACK",
                g.xid, g.gtid, g.at
            )
        });
        self.status.held(reason);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PreparedGroup>> {
        self.prepared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gtid(domain_id: u32, sequence: u64) -> Gtid {
        Gtid {
            domain_id,
            server_id: 1,
            sequence,
        }
    }

    #[tokio::test]
    async fn commits_never_pass_a_prepared_transaction() {
        let (tx, mut rx) = mpsc::channel(4);
        let emitter = Emitter::new(
            tx,
            CancellationToken::new(),
            Budget::new(1 << 20),
            SourceStatus::new(),
        );
        let group = |xid: &[u8], g: Gtid, before: Option<Gtid>| PreparedGroup {
            xid: Xid {
                format_id: 1,
                gtrid: xid.to_vec(),
                bqual: Vec::new(),
            },
            gtid: g,
            before,
            at: "mysql-bin.000001:4".into(),
            since_ms: 0,
            events: Vec::new(),
            bytes: 0,
            warned: false,
        };
        emitter.prepare(group(b"a", gtid(0, 6), Some(gtid(0, 5))));
        emitter.prepare(group(b"b", gtid(0, 8), Some(gtid(0, 7))));
        emitter.prepare(group(b"c", gtid(1, 1), None));
        let pos: GtidPosition = [gtid(0, 9), gtid(1, 3), gtid(2, 4)].into_iter().collect();
        assert_eq!(emitter.clamp(&pos).to_string(), "0-1-5,2-1-4");
        assert!(emitter.status().health().held.is_some());

        let a = emitter
            .resolve(&group(b"a", gtid(0, 6), None).xid)
            .expect("held");
        assert_eq!(a.gtid, gtid(0, 6));
        assert_eq!(emitter.clamp(&pos).to_string(), "0-1-7,2-1-4");
        emitter
            .send(SourceMessage::Commit(crate::event::Commit {
                position: pos.clone(),
                ts_ms: 0,
                seen_ms: 0,
            }))
            .await
            .expect("send");
        let Some(Budgeted {
            message: SourceMessage::Commit(c),
            ..
        }) = rx.recv().await
        else {
            panic!("a commit")
        };
        assert_eq!(c.position.to_string(), "0-1-7,2-1-4");
        emitter.resolve(&group(b"b", gtid(0, 8), None).xid);
        emitter.resolve(&group(b"c", gtid(1, 1), None).xid);
        assert_eq!(emitter.clamp(&pos), pos);
        assert!(emitter.status().health().held.is_none());
    }
}
