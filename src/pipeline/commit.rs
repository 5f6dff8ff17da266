//! When the checkpoint may move, and what it records: the one place of that policy.
//!
//! # Rules
//! - The position moves only to the last commit of a batch Weaviate confirmed in full (written,
//!   or rejected for good and kept in the dead-letter file), never backwards.
//! - It may jump (move to a position that does not cover the stored one) only where a jump is
//!   deliberate: the first store of a run started with `--gtid` or without a checkpoint, and the
//!   first store after a snapshot started (a snapshot after a purged binlog or a diverged failover
//!   streams from a new position).
//! - A snapshot's progress moves with the batches that finished its chunks: the last confirmed
//!   chunk's key, then the sweep's last confirmed page. A finished sweep ends the snapshot.

use crate::checkpoint::{Checkpoint, CheckpointError, SnapshotProgress, SweepProgress};
use crate::event::{Commit, now_ms};
use crate::position::GtidPosition;

use super::collect::Effect;

/// What a confirmed batch changed, for the stages that react to it.
#[derive(Debug, Default, PartialEq)]
pub struct Confirmed {
    /// The new stored position, when it moved.
    pub position: Option<GtidPosition>,
    /// Chunks confirmed: (snapshot id, seq).
    pub chunks: Vec<(String, u64)>,
    /// Absence checks confirmed: (snapshot id, request).
    pub absences: Vec<(String, u64)>,
    /// Every chunk is confirmed: the sweep of this snapshot (id, resume after) must run.
    pub sweep: Option<(String, Option<String>)>,
    /// A new snapshot started: a sweep of another one must stop.
    pub started: Option<String>,
    /// The snapshot finished (its sweep is done).
    pub finished: Option<String>,
}

/// Owns the checkpoint and applies the rules above.
#[derive(Debug)]
pub struct CommitPolicy {
    checkpoint: Checkpoint,
    may_jump: bool,
    snapshot: Option<SnapshotProgress>,
}

impl CommitPolicy {
    /// `may_jump`: the run starts with `--gtid` or without a stored position.
    pub fn new(checkpoint: Checkpoint, may_jump: bool) -> Self {
        let snapshot = checkpoint.snapshot().cloned();
        CommitPolicy {
            checkpoint,
            may_jump,
            snapshot,
        }
    }

    pub fn position(&self) -> Option<&GtidPosition> {
        self.checkpoint.position()
    }

    pub fn snapshot(&self) -> Option<&SnapshotProgress> {
        self.snapshot.as_ref()
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    pub fn checkpoint_mut(&mut self) -> &mut Checkpoint {
        &mut self.checkpoint
    }

    /// A batch was confirmed: apply its commit and snapshot effects, and store the checkpoint
    /// when anything changed. `sweep_page` gives the last object id of a confirmed absence check.
    pub fn confirm(
        &mut self,
        commit: Option<&Commit>,
        effects: &[Effect],
        sweep_page: impl Fn(&str, u64) -> Option<String>,
    ) -> Result<Confirmed, CheckpointError> {
        let mut out = Confirmed::default();
        for effect in effects {
            self.apply(effect, &sweep_page, &mut out);
        }
        let target = commit
            .map(|c| c.position.clone())
            .or_else(|| self.checkpoint.position().cloned());
        let Some(target) = target else {
            // Nothing stored yet and no commit to store: keep the progress for the next store.
            return Ok(out);
        };
        let unchanged = self.checkpoint.position() == Some(&target)
            && self.checkpoint.snapshot() == self.snapshot.as_ref();
        if unchanged {
            return Ok(out);
        }
        let jump = self
            .checkpoint
            .position()
            .is_some_and(|stored| !target.covers(stored));
        if jump && self.may_jump {
            tracing::info!(
                from = %self.checkpoint.position().map(ToString::to_string).unwrap_or_default(),
                to = %target,
                "checkpoint jumps to the new stream position"
            );
            self.checkpoint.reset(&target, self.snapshot.as_ref())?;
        } else {
            self.checkpoint.store(&target, self.snapshot.as_ref())?;
        }
        if commit.is_some() {
            self.may_jump = false;
        }
        if self.checkpoint.position() == Some(&target) {
            out.position = Some(target);
        }
        Ok(out)
    }

    fn apply(
        &mut self,
        effect: &Effect,
        sweep_page: &impl Fn(&str, u64) -> Option<String>,
        out: &mut Confirmed,
    ) {
        match effect {
            Effect::Started(started) => {
                let same = self.snapshot.as_ref().is_some_and(|s| s.id == started.id);
                if !(started.resumed && same) {
                    self.snapshot = Some(SnapshotProgress {
                        id: started.id.clone(),
                        started_ms: now_ms(),
                        after_key: None,
                        next_seq: 0,
                        rows_done: 0,
                        sweep: None,
                    });
                }
                self.may_jump = true;
                out.started = Some(started.id.clone());
            }
            Effect::ChunkDone {
                snapshot_id,
                seq,
                last_key,
                rows,
                last,
            } => {
                let Some(progress) = self.snapshot.as_mut().filter(|s| s.id == *snapshot_id) else {
                    return; // a chunk of a snapshot that was replaced
                };
                if *seq >= progress.next_seq {
                    if last_key.is_some() {
                        progress.after_key = last_key.clone();
                    }
                    progress.next_seq = seq + 1;
                    progress.rows_done += rows;
                }
                out.chunks.push((snapshot_id.clone(), *seq));
                if *last && progress.sweep.is_none() {
                    progress.sweep = Some(SweepProgress { after_id: None });
                    out.sweep = Some((snapshot_id.clone(), None));
                }
            }
            Effect::AbsentDone {
                snapshot_id,
                request,
            } => {
                let Some(progress) = self.snapshot.as_mut().filter(|s| s.id == *snapshot_id) else {
                    return;
                };
                if let (Some(sweep), Some(after)) =
                    (progress.sweep.as_mut(), sweep_page(snapshot_id, *request))
                {
                    sweep.after_id = Some(after);
                }
                out.absences.push((snapshot_id.clone(), *request));
            }
            Effect::SweepDone { snapshot_id } => {
                if self.snapshot.as_ref().is_some_and(|s| s.id == *snapshot_id) {
                    self.snapshot = None;
                    out.finished = Some(snapshot_id.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SnapshotStarted;

    fn pos(s: &str) -> GtidPosition {
        s.parse().expect("position")
    }

    fn commit(p: &str) -> Commit {
        Commit {
            position: pos(p),
            ts_ms: 0,
            seen_ms: 0,
        }
    }

    fn policy(dir: &tempfile::TempDir, stored: Option<&str>, may_jump: bool) -> CommitPolicy {
        let mut cp = Checkpoint::open(dir.path().join("cp"), "catalog.products").expect("open");
        if let Some(p) = stored {
            cp.store(&pos(p), None).expect("store");
        }
        CommitPolicy::new(cp, may_jump)
    }

    fn none(_: &str, _: u64) -> Option<String> {
        None
    }

    #[test]
    fn moves_forward_with_commits_and_refuses_to_go_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = policy(&dir, Some("0-1-5"), false);
        let c = p
            .confirm(Some(&commit("0-1-7")), &[], none)
            .expect("forward");
        assert_eq!(c.position, Some(pos("0-1-7")));
        assert!(p.confirm(Some(&commit("0-1-6")), &[], none).is_err());
        // A batch without a commit leaves the position alone.
        let c = p.confirm(None, &[], none).expect("no commit");
        assert_eq!(c.position, None);
        assert_eq!(p.position(), Some(&pos("0-1-7")));
    }

    #[test]
    fn only_deliberate_jumps_are_allowed_and_only_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = policy(&dir, Some("0-1-50"), true);
        p.confirm(Some(&commit("0-1-3")), &[], none)
            .expect("--gtid jump");
        assert_eq!(p.position(), Some(&pos("0-1-3")));
        assert!(p.confirm(Some(&commit("0-1-2")), &[], none).is_err());
        // A snapshot start allows one more.
        let started = Effect::Started(SnapshotStarted {
            id: "s".into(),
            resumed: false,
            reason: "test".into(),
            estimated_rows: 0,
        });
        p.confirm(None, &[started], none).expect("started");
        p.confirm(Some(&commit("1-9-1")), &[], none)
            .expect("snapshot jump");
        assert_eq!(p.position(), Some(&pos("1-9-1")));
    }

    #[test]
    fn snapshot_progress_follows_confirmed_chunks_then_the_sweep() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = policy(&dir, Some("0-1-5"), false);
        let started = Effect::Started(SnapshotStarted {
            id: "s".into(),
            resumed: false,
            reason: "test".into(),
            estimated_rows: 10,
        });
        let chunk = |seq: u64, key: i64, last: bool| Effect::ChunkDone {
            snapshot_id: "s".into(),
            seq,
            last_key: Some(vec![serde_json::json!(key)]),
            rows: 5,
            last,
        };
        p.confirm(None, &[started, chunk(0, 5, false)], none)
            .expect("chunk 0");
        let stored = Checkpoint::open(dir.path().join("cp"), "catalog.products").expect("reopen");
        let s = stored.snapshot().expect("snapshot recorded");
        assert_eq!((s.next_seq, s.rows_done), (1, 5));
        assert_eq!(s.after_key, Some(vec![serde_json::json!(5)]));

        let c = p
            .confirm(Some(&commit("0-1-6")), &[chunk(1, 10, true)], none)
            .expect("last");
        assert_eq!(c.sweep, Some(("s".into(), None)));
        let page = |_: &str, r: u64| (r == 1).then(|| "id-9".to_owned());
        let done = Effect::AbsentDone {
            snapshot_id: "s".into(),
            request: 1,
        };
        p.confirm(None, &[done], page).expect("absence");
        assert_eq!(
            p.snapshot().and_then(|s| s.sweep.clone()),
            Some(SweepProgress {
                after_id: Some("id-9".into())
            })
        );
        let c = p
            .confirm(
                None,
                &[Effect::SweepDone {
                    snapshot_id: "s".into(),
                }],
                none,
            )
            .expect("finished");
        assert_eq!(c.finished.as_deref(), Some("s"));
        let stored = Checkpoint::open(dir.path().join("cp"), "catalog.products").expect("reopen");
        assert_eq!(stored.snapshot(), None);
        assert_eq!(stored.position(), Some(&pos("0-1-6")));
    }

    #[test]
    fn a_resumed_snapshot_keeps_its_progress() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = policy(&dir, Some("0-1-5"), false);
        let started = |resumed| {
            Effect::Started(SnapshotStarted {
                id: "s".into(),
                resumed,
                reason: "test".into(),
                estimated_rows: 10,
            })
        };
        let chunk = Effect::ChunkDone {
            snapshot_id: "s".into(),
            seq: 0,
            last_key: Some(vec![serde_json::json!(3)]),
            rows: 3,
            last: false,
        };
        p.confirm(None, &[started(false), chunk], none)
            .expect("chunk");
        p.confirm(None, &[started(true)], none).expect("resumed");
        assert_eq!(p.snapshot().map(|s| s.next_seq), Some(1));
        p.confirm(None, &[started(false)], none).expect("restarted");
        assert_eq!(p.snapshot().map(|s| s.next_seq), Some(0));
    }
}
