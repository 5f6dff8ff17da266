//! The second stage: turn a batch into writes. Coalesce it, ask Weaviate what it holds for the
//! objects (one request), decide per object with the one diff ([`super::reconcile`]), and get the
//! vectors that are really needed (Memcached, then one model call).
//!
//! It runs while the third stage writes the previous batch, so the model and Weaviate work at
//! the same time. [`super::inflight`] keeps the two in order: an object written by a batch still
//! in flight is judged by what that batch leaves, not by a fetch that could predate it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use uuid::Uuid;

use crate::event::Commit;
use crate::sink::{WeaviateSink, WriteOp, product_id};
use crate::telemetry::{BATCH_SIZE, Health, REEMBEDS_SKIPPED_TOTAL, WRITES_SKIPPED_TOTAL};

use super::PipelineError;
use super::collect::{Batch, Change, Effect};
use super::emit::EventWriter;
use super::hold::hold;
use super::inflight::{InFlight, Known};
use super::plan::{Intent, coalesce};
use super::reconcile::{Decision, Held, decide};
use super::text::TextRule;
use super::vectors::{Need, Vectors};

/// A batch ready to be written.
#[derive(Debug, Default)]
pub struct Prepared {
    pub seq: u64,
    /// Truncate the class before the writes.
    pub truncate: bool,
    pub ops: Vec<WriteOp>,
    /// For each op, the change that decided it (an index into `changes`).
    pub origins: Vec<usize>,
    pub changes: Vec<Change>,
    /// Changes that cannot be written, with why: dead letters once the batch is confirmed.
    pub dead: Vec<(usize, String)>,
    pub commit: Option<Commit>,
    pub commits_seen_ms: Vec<i64>,
    pub effects: Vec<Effect>,
    pub caught_up: bool,
    /// The batch's share of the memory budget, returned when the writer drops it (confirmed).
    pub permits: crate::budget::BytePermit,
}

/// The preparing stage.
pub struct Preparer {
    pub sink: WeaviateSink,
    pub vectors: Vectors,
    pub rule: TextRule,
    pub inflight: Arc<InFlight>,
    pub health: Arc<Health>,
    pub emit: Option<Arc<Mutex<EventWriter>>>,
}

impl Preparer {
    /// Prepare batches until `rx` closes.
    pub async fn run(
        self,
        mut rx: mpsc::Receiver<Batch>,
        tx: mpsc::Sender<Prepared>,
    ) -> Result<(), PipelineError> {
        while let Some(batch) = rx.recv().await {
            let prepared = self.prepare(batch).await?;
            if tx.send(prepared).await.is_err() {
                break; // the writer stopped; its error is reported there
            }
        }
        Ok(())
    }

    async fn prepare(&self, batch: Batch) -> Result<Prepared, PipelineError> {
        let Batch {
            seq,
            truncate,
            changes,
            commit,
            commits_seen_ms,
            effects,
            moot,
            caught_up,
            permits,
        } = batch;
        if !changes.is_empty() || truncate.is_some() {
            metrics::histogram!(BATCH_SIZE).record(changes.len() as f64);
        }
        self.emit(moot.into_iter().chain(truncate.iter().cloned()), &changes)
            .await?;

        let coalesced = coalesce(&changes, &self.rule);
        let mut prepared = Prepared {
            seq,
            truncate: truncate.is_some(),
            dead: coalesced
                .unplannable
                .into_iter()
                .map(|u| (u.change, u.reason))
                .collect(),
            commit,
            commits_seen_ms,
            effects,
            caught_up,
            permits,
            ..Prepared::default()
        };
        if prepared.truncate {
            self.inflight.truncating(seq);
        }

        // What Weaviate holds, or will hold once the batches in flight are written.
        let mut held: HashMap<String, Option<Held>> = HashMap::new();
        let mut ask: Vec<Uuid> = Vec::new();
        for planned in &coalesced.intents {
            if !matches!(planned.intent, Intent::Write { .. }) {
                continue;
            }
            if prepared.truncate {
                held.insert(planned.sku.clone(), None);
                continue;
            }
            match self.inflight.lookup(&planned.sku) {
                Known::Pending(state) => {
                    held.insert(planned.sku.clone(), state);
                }
                Known::AskWeaviate => ask.push(product_id(&planned.sku)),
            }
        }
        if !ask.is_empty() {
            let mut stored = hold(&self.health, "weaviate", || self.sink.fetch(&ask, true)).await?;
            for planned in &coalesced.intents {
                if held.contains_key(&planned.sku) {
                    continue;
                }
                let state = stored.remove(&product_id(&planned.sku)).map(|s| Held {
                    product: s.product,
                    vector: s.vector.map(Into::into),
                });
                held.insert(planned.sku.clone(), state);
            }
        }

        // Decide, then embed what has no vector yet.
        let dimension = self.vectors.dimension();
        let mut decisions = Vec::with_capacity(coalesced.intents.len());
        let mut needs: Vec<Need<'_>> = Vec::new();
        for planned in &coalesced.intents {
            let decision = match &planned.intent {
                Intent::Delete { .. } => None,
                Intent::Write { product, text } => {
                    let state = held.get(&planned.sku).and_then(Option::as_ref);
                    let d = decide(product, text, state, &self.rule, dimension);
                    if d == Decision::Embed {
                        needs.push(Need {
                            sku: &planned.sku,
                            text,
                        });
                    }
                    Some(d)
                }
            };
            decisions.push(decision);
        }
        // A remote embedder that is down or rate-limiting holds the batch (and the position).
        let mut vectors = hold(&self.health, "embedder", || self.vectors.get(&needs))
            .await?
            .into_iter();

        let (mut skipped, mut reused) = (0u64, 0u64);
        for (planned, decision) in coalesced.intents.into_iter().zip(decisions) {
            let (op, after) = match (planned.intent, decision) {
                (Intent::Delete { sku }, _) => (WriteOp::Delete { sku }, None),
                (Intent::Write { .. }, Some(Decision::Skip)) => {
                    skipped += 1;
                    continue;
                }
                (Intent::Write { product, .. }, Some(Decision::WriteWithoutVector)) => {
                    let after = Held {
                        product: product.clone(),
                        vector: None,
                    };
                    let op = WriteOp::Upsert {
                        product,
                        vector: None,
                    };
                    (op, Some(after))
                }
                (Intent::Write { product, .. }, Some(Decision::WriteWithVector(v))) => {
                    reused += 1;
                    let op = WriteOp::Upsert {
                        product: product.clone(),
                        vector: Some(v.to_vec()),
                    };
                    (
                        op,
                        Some(Held {
                            product,
                            vector: Some(v),
                        }),
                    )
                }
                (Intent::Write { product, .. }, Some(Decision::Embed) | None) => {
                    match vectors.next() {
                        Some(Ok(v)) => {
                            let op = WriteOp::Upsert {
                                product: product.clone(),
                                vector: Some(v.to_vec()),
                            };
                            (
                                op,
                                Some(Held {
                                    product,
                                    vector: Some(v),
                                }),
                            )
                        }
                        Some(Err(reason)) => {
                            prepared
                                .dead
                                .push((planned.change, format!("cannot embed the text: {reason}")));
                            continue;
                        }
                        None => {
                            prepared
                                .dead
                                .push((planned.change, "no vector was produced (a bug)".into()));
                            continue;
                        }
                    }
                }
            };
            self.inflight.record(seq, planned.sku, after);
            prepared.ops.push(op);
            prepared.origins.push(planned.change);
        }
        metrics::counter!(WRITES_SKIPPED_TOTAL).increment(skipped);
        metrics::counter!(REEMBEDS_SKIPPED_TOTAL).increment(reused);
        prepared.changes = changes;
        Ok(prepared)
    }

    /// `--emit-events`: the batch's row changes as Debezium JSON lines, off the async threads.
    async fn emit(
        &self,
        truncate: impl Iterator<Item = crate::event::ChangeEvent>,
        changes: &[Change],
    ) -> Result<(), PipelineError> {
        let Some(writer) = self.emit.clone() else {
            return Ok(());
        };
        let events: Vec<_> = truncate
            .chain(changes.iter().filter_map(|c| match c {
                Change::Event(e) => Some(e.clone()),
                Change::Stale { .. } => None,
            }))
            .collect();
        if events.is_empty() {
            return Ok(());
        }
        tokio::task::spawn_blocking(move || {
            let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
            w.write(&events)
        })
        .await??;
        Ok(())
    }
}
