//! The batch loop: collect source messages into batches, write them to Weaviate, then move the
//! checkpoint.
//!
//! # Resumption
//! The checkpoint moves to the last commit of a batch only after Weaviate confirmed every event
//! of the batch (written, or rejected for good and kept in the dead-letter file). Events after
//! that commit are written too but stay uncovered until their own commit is processed, so a
//! crash replays them: at-least-once, harmless because object ids are deterministic.
//!
//! # Error handling
//! Transient Weaviate failures are retried forever with capped backoff while the position is
//! held (`/readyz` says why); a definite failure stops the pipeline. Per-object rejections go to
//! the dead-letter file and the pipeline goes on.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::PipelineError;
use super::batch::{self, Planned};
use super::deadletter::DeadLetters;
use super::emit::EventWriter;
use super::vectors::{Need, Vectors};
use crate::backoff::{Attempts, Backoff};
use crate::budget::BytePermit;
use crate::checkpoint::Checkpoint;
use crate::event::{ChangeEvent, Commit, Op, SourceMessage, now_ms};
use crate::sink::{OpOutcome, SinkError, WeaviateSink, WriteOp};
use crate::source::Item;
use crate::telemetry::{
    BATCH_SIZE, BINLOG_LAG_SECONDS, COMMIT_TO_VISIBLE_SECONDS, DEAD_LETTERS_TOTAL, EVENTS_TOTAL,
    Health, REEMBEDS_SKIPPED_TOTAL,
};

/// Batching limits.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most change events per batch.
    pub max_events: usize,
    /// How long a batch waits for more after its first message.
    pub max_wait: Duration,
}

/// Writes batches to Weaviate and owns the checkpoint.
pub struct Worker {
    pub(super) sink: WeaviateSink,
    pub(super) vectors: Vectors,
    pub(super) checkpoint: Checkpoint,
    pub(super) dead_letters: DeadLetters,
    pub(super) emit: Option<EventWriter>,
    pub(super) health: Arc<Health>,
    pub(super) limits: BatchLimits,
    /// Skus whose last write was rejected: their stored object is stale, so they are never
    /// patched (which would keep a stale vector) until a full write succeeds.
    pub(super) stale: HashSet<String>,
    /// Whether the checkpoint was written in this run. The first write may jump (an explicit
    /// `--gtid`, or a new snapshot); after that it only moves forward.
    pub(super) jumped: bool,
}

impl Worker {
    /// Consume `rx` until it closes or `cancel` fires. On cancellation the in-flight batch is
    /// finished (within `drain_timeout`) and checkpointed before returning.
    pub async fn run(
        &mut self,
        rx: &mut mpsc::Receiver<Item>,
        cancel: &CancellationToken,
        drain_timeout: Duration,
    ) -> Result<(), PipelineError> {
        loop {
            let Some((batch, permits)) = self.collect(rx, cancel).await else {
                return Ok(());
            };
            // The batch's share of the memory budget is returned once it is confirmed.
            let _permits = permits;
            let work = self.process(batch, rx.is_empty());
            tokio::pin!(work);
            let drain_deadline = async {
                cancel.cancelled().await;
                tokio::time::sleep(drain_timeout).await;
            };
            tokio::select! {
                result = &mut work => result?,
                () = drain_deadline => {
                    tracing::warn!(
                        timeout_secs = drain_timeout.as_secs_f64(),
                        "shutdown: the in-flight batch did not finish in time; it will be replayed on the next start"
                    );
                    return Ok(());
                }
            }
            if cancel.is_cancelled() {
                return Ok(());
            }
        }
    }

    /// Wait for a first message, then take more until the batch is full or its wait is over.
    async fn collect(
        &self,
        rx: &mut mpsc::Receiver<Item>,
        cancel: &CancellationToken,
    ) -> Option<(Vec<SourceMessage>, BytePermit)> {
        let first = tokio::select! {
            biased;
            () = cancel.cancelled() => return None,
            m = rx.recv() => m?,
        };
        let (first, mut permits) = first.into_parts();
        let mut events = usize::from(matches!(first, SourceMessage::Event(_)));
        let mut batch = vec![first];
        let deadline = Instant::now() + self.limits.max_wait;
        while events < self.limits.max_events {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(item)) => {
                    let (m, permit) = item.into_parts();
                    permits.merge(permit);
                    events += usize::from(matches!(m, SourceMessage::Event(_)));
                    batch.push(m);
                }
                Ok(None) | Err(_) => break,
            }
        }
        Some((batch, permits))
    }

    /// Write one batch and move the checkpoint to its last commit.
    async fn process(
        &mut self,
        batch: Vec<SourceMessage>,
        caught_up: bool,
    ) -> Result<(), PipelineError> {
        let mut events: Vec<ChangeEvent> = Vec::new();
        let mut last_commit: Option<Commit> = None;
        let mut commit_times = Vec::new();
        let mut events_since_commit = 0usize;
        for message in batch {
            match message {
                SourceMessage::Event(e) => {
                    metrics::counter!(EVENTS_TOTAL, "op" => e.op.code()).increment(1);
                    events_since_commit += 1;
                    events.push(e);
                }
                SourceMessage::Commit(c) => {
                    if events_since_commit > 0 {
                        commit_times.push(c.ts_ms);
                    }
                    events_since_commit = 0;
                    last_commit = Some(c);
                }
                SourceMessage::Snapshot(_) => {
                    return Err(PipelineError::Internal(
                        "chunked snapshot messages reached a pipeline that cannot merge them"
                            .into(),
                    ));
                }
            }
        }
        if !events.is_empty() {
            metrics::histogram!(BATCH_SIZE).record(events.len() as f64);
        }
        if let Some(writer) = self.emit.as_mut() {
            writer.write(&events)?;
        }

        // Truncates order against every product: write what came before, then truncate.
        let mut start = 0;
        for (i, event) in events.iter().enumerate() {
            if event.op == Op::Truncate {
                self.apply_segment(&events[start..i]).await?;
                let deleted = self.retry(|| self.sink.truncate()).await?;
                self.stale.clear();
                tracing::info!(
                    deleted,
                    "table truncated; removed every object of the class"
                );
                start = i + 1;
            }
        }
        self.apply_segment(&events[start..]).await?;

        if let Some(commit) = last_commit {
            if self.jumped {
                self.checkpoint.store(&commit.position)?;
            } else {
                self.checkpoint.reset(&commit.position)?;
                self.jumped = true;
            }
            self.health.set_checkpoint(&commit.position);
            let now = now_ms();
            for ts in commit_times {
                metrics::histogram!(COMMIT_TO_VISIBLE_SECONDS)
                    .record((now - ts).max(0) as f64 / 1000.0);
            }
            let lag = if caught_up {
                0.0
            } else {
                (now - commit.ts_ms).max(0) as f64 / 1000.0
            };
            metrics::gauge!(BINLOG_LAG_SECONDS).set(lag);
        }
        Ok(())
    }

    /// Bring Weaviate to the state `events` (no truncates) end in.
    async fn apply_segment(&mut self, events: &[ChangeEvent]) -> Result<(), PipelineError> {
        if events.is_empty() {
            return Ok(());
        }
        let plan = batch::plan(events, &self.stale);
        metrics::counter!(REEMBEDS_SKIPPED_TOTAL).increment(plan.reembeds_skipped);
        let mut dead: Vec<(usize, String)> = plan
            .unplannable
            .iter()
            .map(|u| (u.event, u.reason.clone()))
            .collect();

        let missing = self.write_planned(plan.ops, &mut dead).await?;
        // A patch found no object (never written, or removed behind our back): write it whole.
        if !missing.is_empty() {
            tracing::debug!(
                count = missing.len(),
                "patched objects were missing; writing them with vectors"
            );
            let whole = missing.into_iter().map(Planned::into_full_write).collect();
            for gone in self.write_planned(whole, &mut dead).await? {
                dead.push((gone.event(), "Weaviate reported the object missing".into()));
            }
        }

        if !dead.is_empty() {
            for (event, error) in &dead {
                tracing::warn!(
                    error = %error,
                    sku = events.get(*event).and_then(sku_hint).unwrap_or_default(),
                    dead_letter = %self.dead_letters.path().display(),
                    "event rejected for good; kept in the dead-letter file"
                );
            }
            let entries: Vec<(&ChangeEvent, String)> = dead
                .into_iter()
                .filter_map(|(i, error)| events.get(i).map(|e| (e, error)))
                .collect();
            self.dead_letters.write(&entries)?;
            metrics::counter!(DEAD_LETTERS_TOTAL).increment(entries.len() as u64);
        }
        Ok(())
    }

    /// Embed what needs it, write `planned` in one call and record the outcomes: rejected
    /// objects go to `dead`, patches that found no object are returned.
    async fn write_planned(
        &mut self,
        planned: Vec<Planned>,
        dead: &mut Vec<(usize, String)>,
    ) -> Result<Vec<Planned>, PipelineError> {
        let needs: Vec<Need<'_>> = planned
            .iter()
            .filter_map(|p| match p {
                Planned::Upsert {
                    product,
                    embed: Some(text),
                    ..
                } => Some(Need {
                    sku: &product.sku,
                    text,
                }),
                _ => None,
            })
            .collect();
        let mut vectors = self.vectors.get(&needs).await?.into_iter();

        let mut ops: Vec<WriteOp> = Vec::with_capacity(planned.len());
        let mut origins: Vec<Planned> = Vec::with_capacity(planned.len());
        for p in planned {
            let op = match &p {
                Planned::Upsert { product, embed, .. } => {
                    let vector = match embed {
                        None => None,
                        Some(_) => match vectors.next() {
                            Some(Ok(v)) => Some(v),
                            Some(Err(reason)) => {
                                dead.push((
                                    p.event(),
                                    format!("cannot embed the description: {reason}"),
                                ));
                                continue;
                            }
                            None => {
                                dead.push((p.event(), "no vector was produced".into()));
                                continue;
                            }
                        },
                    };
                    WriteOp::Upsert {
                        product: product.clone(),
                        vector,
                    }
                }
                Planned::Patch { product, .. } => WriteOp::PatchProperties {
                    product: product.clone(),
                },
                Planned::Delete { sku, .. } => WriteOp::Delete { sku: sku.clone() },
            };
            ops.push(op);
            origins.push(p);
        }

        let outcomes = self.write(&ops).await?;
        let mut missing = Vec::new();
        for (outcome, p) in outcomes.into_iter().zip(origins) {
            match outcome {
                OpOutcome::Done => {
                    self.stale.remove(p.sku());
                }
                OpOutcome::Missing if matches!(p, Planned::Patch { .. }) => missing.push(p),
                OpOutcome::Missing => {
                    dead.push((p.event(), "Weaviate reported the object missing".into()));
                }
                OpOutcome::Rejected { message } => {
                    self.stale.insert(p.sku().to_owned());
                    dead.push((
                        p.event(),
                        format!("Weaviate rejected the object: {message}"),
                    ));
                }
            }
        }
        Ok(missing)
    }

    async fn write(&self, ops: &[WriteOp]) -> Result<Vec<OpOutcome>, PipelineError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        self.retry(|| self.sink.apply(ops)).await
    }

    /// Run a Weaviate call until it succeeds or fails for good; transient failures are retried
    /// forever with capped, jittered backoff (the source position is held meanwhile).
    async fn retry<'s, T, F, Fut>(&'s self, mut call: F) -> Result<T, PipelineError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SinkError>> + 's,
    {
        let mut attempts = Attempts::new(HOLD_BACKOFF);
        loop {
            match call().await {
                Ok(v) => {
                    if attempts.failures() > 0 {
                        tracing::info!(
                            attempts = attempts.failures() + 1,
                            "Weaviate is back; writing again"
                        );
                        self.health.set_ready();
                    }
                    return Ok(v);
                }
                Err(error) if error.is_transient() => {
                    let delay = attempts.fail(None);
                    self.health
                        .set_not_ready(format!("Weaviate unavailable: {error}"));
                    tracing::warn!(%error, attempt = attempts.failures(), retry_in_ms = delay.as_millis() as u64, "Weaviate write failed; retrying, binlog position held");
                    tokio::time::sleep(delay).await;
                }
                Err(error) => return Err(PipelineError::Sink(error)),
            }
        }
    }
}

/// The pipeline's outer retry while it holds the binlog position: 200 ms doubling to 30 s.
pub(super) const HOLD_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(200), Duration::from_secs(30));

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
