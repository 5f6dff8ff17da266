//! The third stage: write a prepared batch to Weaviate, keep what Weaviate refused for good in
//! the dead-letter file, then confirm the batch (checkpoint, in-flight state, snapshot progress).
//!
//! Batches are written one at a time, in stream order: with the in-flight state that keeps a
//! later batch from overtaking an earlier write of the same object.
//!
//! # Error handling
//! Transient Weaviate failures hold the batch (retried with backoff, `/readyz` says why, the
//! position does not move). Only objects Weaviate refused for their own content, texts the model
//! cannot embed, and changes without a usable product are dead letters; the file is synced before
//! the checkpoint moves past them. Blocking file work (dead letters, checkpoint) runs off the
//! async threads.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::event::{ChangeEvent, now_ms};
use crate::sink::{OpOutcome, WeaviateSink, WriteOp};
use crate::telemetry::{
    BINLOG_LAG_SECONDS, COMMIT_TO_VISIBLE_SECONDS, DEAD_LETTERS_TOTAL, Health, STALE_DELETED_TOTAL,
};

use super::PipelineError;
use super::collect::{Change, Effect};
use super::commit::CommitPolicy;
use super::deadletter::DeadLetters;
use super::hold::hold;
use super::inflight::InFlight;
use super::prepare::Prepared;
use super::sweep::{SnapshotLink, SweepState, Sweeper};

/// The writing stage.
pub struct Writer {
    pub sink: WeaviateSink,
    pub dead_letters: Arc<Mutex<DeadLetters>>,
    /// Taken while a blocking store runs.
    pub policy: Option<CommitPolicy>,
    pub inflight: Arc<InFlight>,
    pub health: Arc<Health>,
    pub link: Option<Arc<dyn SnapshotLink>>,
    pub sweep: Arc<SweepState>,
    pub control: mpsc::UnboundedSender<Effect>,
    /// The running sweep, cancelled when another snapshot starts.
    pub sweeping: Option<(String, CancellationToken)>,
    /// A sweep that failed for good reports here, and stops the pipeline.
    pub sweep_failed: (
        mpsc::UnboundedSender<PipelineError>,
        mpsc::UnboundedReceiver<PipelineError>,
    ),
}

impl Writer {
    /// Write batches until `rx` closes; resume a sweep the checkpoint records as running.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Prepared>) -> Result<(), PipelineError> {
        let resume = self
            .policy
            .as_ref()
            .and_then(CommitPolicy::snapshot)
            .and_then(|s| s.sweep.as_ref().map(|w| (s.id.clone(), w.after_id.clone())));
        if let Some((id, after)) = resume {
            self.start_sweep(id, after);
        }
        loop {
            tokio::select! {
                prepared = rx.recv() => match prepared {
                    Some(p) => self.write(p).await?,
                    None => break,
                },
                Some(error) = self.sweep_failed.1.recv() => return Err(error),
            }
        }
        if let Some((_, cancel)) = self.sweeping.take() {
            cancel.cancel();
        }
        Ok(())
    }

    async fn write(&mut self, p: Prepared) -> Result<(), PipelineError> {
        if p.truncate {
            let deleted = hold(&self.health, "weaviate", || self.sink.truncate()).await?;
            tracing::info!(
                deleted,
                "table truncated; removed every object of the class"
            );
        }
        let outcomes = if p.ops.is_empty() {
            Vec::new()
        } else {
            hold(&self.health, "weaviate", || self.sink.apply(&p.ops)).await?
        };

        let mut dead = p.dead;
        let mut stale = 0u64;
        for ((outcome, op), &origin) in outcomes.iter().zip(&p.ops).zip(&p.origins) {
            match outcome {
                OpOutcome::Done => {
                    if matches!(op, WriteOp::Delete { .. })
                        && matches!(p.changes.get(origin), Some(Change::Stale { .. }))
                    {
                        stale += 1;
                    }
                }
                OpOutcome::Rejected { message } => {
                    dead.push((origin, format!("Weaviate rejected the object: {message}")));
                }
                OpOutcome::Missing => {
                    dead.push((
                        origin,
                        "Weaviate reported the object missing (a bug)".into(),
                    ));
                }
            }
        }
        metrics::counter!(STALE_DELETED_TOTAL).increment(stale);
        self.dead_letter(&p.changes, dead).await?;

        let sweep = self.sweep.clone();
        let mut policy = self
            .policy
            .take()
            .ok_or_else(|| PipelineError::Internal("the commit policy is gone".into()))?;
        let lag = p.commit.as_ref().map(|c| {
            if p.caught_up {
                0.0
            } else {
                (now_ms() - c.ts_ms).max(0) as f64 / 1000.0
            }
        });
        let (commit, effects) = (p.commit, p.effects);
        let (policy, confirmed) = tokio::task::spawn_blocking(move || {
            let confirmed = policy.confirm(commit.as_ref(), &effects, |id, request| {
                sweep.page(id, request)
            });
            (policy, confirmed)
        })
        .await?;
        self.policy = Some(policy);
        let confirmed = confirmed?;
        self.inflight.confirmed(p.seq);

        let now = now_ms();
        for seen in p.commits_seen_ms {
            metrics::histogram!(COMMIT_TO_VISIBLE_SECONDS)
                .record((now - seen).max(0) as f64 / 1000.0);
        }
        if let Some(lag) = lag {
            metrics::gauge!(BINLOG_LAG_SECONDS).set(lag);
        }
        if let Some(position) = &confirmed.position {
            self.health.set_checkpoint(position);
        }
        if let Some(link) = &self.link {
            for (id, seq) in &confirmed.chunks {
                link.chunk_confirmed(id, *seq);
            }
        }
        for (_, request) in &confirmed.absences {
            self.sweep.confirmed(*request);
        }
        if let Some(started) = &confirmed.started
            && self.sweeping.as_ref().is_some_and(|(id, _)| id != started)
            && let Some((_, cancel)) = self.sweeping.take()
        {
            cancel.cancel();
        }
        if let Some((id, after)) = confirmed.sweep {
            self.start_sweep(id, after);
        }
        if confirmed.finished.is_some() {
            self.sweeping = None;
        }
        Ok(())
    }

    /// Append dead letters and sync them, before the checkpoint moves past them.
    async fn dead_letter(
        &self,
        changes: &[Change],
        dead: Vec<(usize, String)>,
    ) -> Result<(), PipelineError> {
        let entries: Vec<(ChangeEvent, String)> = dead
            .into_iter()
            .filter_map(|(i, error)| match changes.get(i) {
                Some(Change::Event(e)) => Some((e.clone(), error)),
                _ => None,
            })
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        let path = {
            let letters = self.dead_letters.lock().unwrap_or_else(|p| p.into_inner());
            letters.path().to_owned()
        };
        for (event, error) in &entries {
            tracing::warn!(
                %error,
                sku = sku_hint(event).unwrap_or_default(),
                dead_letter = %path.display(),
                "change rejected for good; kept in the dead-letter file"
            );
        }
        let count = entries.len() as u64;
        let letters = self.dead_letters.clone();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<(&ChangeEvent, String)> =
                entries.iter().map(|(e, m)| (e, m.clone())).collect();
            letters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .write(&refs)
        })
        .await??;
        metrics::counter!(DEAD_LETTERS_TOTAL).increment(count);
        Ok(())
    }

    fn start_sweep(&mut self, snapshot_id: String, after: Option<String>) {
        let Some(link) = self.link.clone() else {
            tracing::error!(snapshot = %snapshot_id, "a snapshot needs its sweep but the source offers no snapshot control (a bug)");
            return;
        };
        if let Some((_, cancel)) = self.sweeping.take() {
            cancel.cancel();
        }
        let cancel = CancellationToken::new();
        let sweeper = Sweeper {
            sink: self.sink.clone(),
            link,
            health: self.health.clone(),
            state: self.sweep.clone(),
            control: self.control.clone(),
        };
        let after = after.and_then(|a| Uuid::parse_str(&a).ok());
        let id = snapshot_id.clone();
        let token = cancel.clone();
        let failed = self.sweep_failed.0.clone();
        tokio::spawn(async move {
            if let Err(error) = sweeper.run(id, after, token).await {
                let _ = failed.send(error);
            }
        });
        self.sweeping = Some((snapshot_id, cancel));
    }
}

fn sku_hint(event: &ChangeEvent) -> Option<String> {
    event
        .after
        .as_ref()
        .or(event.before.as_ref())
        .and_then(|r| r.get("sku"))
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string())
        })
}
