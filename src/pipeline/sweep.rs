//! The end of every snapshot: remove the objects whose product no longer exists.
//!
//! The class is listed page by page with Weaviate's cursor (in id order). For each page the
//! source is asked which of its skus no row has; it answers with a consistent read at a known
//! position, merged into the stream at that position exactly like a chunk
//! ([`crate::event::Absence`]), so a product inserted meanwhile is never deleted: its insert comes
//! after the read in the stream, and supersedes the delete. The page is listed before the read,
//! so an object written after the read is not on it. Objects whose id is not the product id of
//! their own sku (not written by vecsync's id rule) are not products of this table: they are
//! deleted directly, with a warning.
//!
//! # Resumption
//! The checkpoint records the last page whose absence check is confirmed; a restart lists again
//! after it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::sink::{WeaviateSink, product_id};
use crate::telemetry::{Health, STALE_DELETED_TOTAL};

use super::PipelineError;
use super::collect::Effect;
use super::hold::hold;

/// Objects listed per page of the sweep.
pub const SWEEP_PAGE: usize = 1000;

/// What the pipeline asks of a running snapshot in the source.
pub trait SnapshotLink: Send + Sync {
    /// Every row of chunk `seq` is confirmed: one more chunk may be read ahead.
    fn chunk_confirmed(&self, snapshot_id: &str, seq: u64);
    /// Which of `values` of `column` no row has? Answered in the stream.
    fn check_absent(&self, snapshot_id: &str, request: u64, column: &str, values: Vec<String>);
}

/// Shared between the sweeper and the stage that confirms batches.
#[derive(Debug)]
pub struct SweepState {
    /// request -> (snapshot id, last object id of its page).
    pages: Mutex<HashMap<u64, (String, String)>>,
    confirmed: watch::Sender<u64>,
}

impl Default for SweepState {
    fn default() -> Self {
        SweepState {
            pages: Mutex::new(HashMap::new()),
            confirmed: watch::channel(0).0,
        }
    }
}

impl SweepState {
    /// The last object id of the page request `request` checked.
    pub fn page(&self, snapshot_id: &str, request: u64) -> Option<String> {
        let pages = self.pages.lock().unwrap_or_else(|p| p.into_inner());
        pages
            .get(&request)
            .filter(|(id, _)| id == snapshot_id)
            .map(|(_, last)| last.clone())
    }

    /// The absence check `request` is confirmed.
    pub fn confirmed(&self, request: u64) {
        self.pages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&request);
        self.confirmed.send_modify(|c| *c = (*c).max(request));
    }
}

/// Runs one snapshot's sweep.
pub struct Sweeper {
    pub sink: WeaviateSink,
    pub link: Arc<dyn SnapshotLink>,
    pub health: Arc<Health>,
    pub state: Arc<SweepState>,
    /// Into the collector: the sweep's end becomes an effect of the next batch.
    pub control: mpsc::UnboundedSender<Effect>,
}

impl Sweeper {
    /// Sweep the class after `after` (a resumed sweep) until the end, or until `cancel` (a new
    /// snapshot replaced this one).
    pub async fn run(
        self,
        snapshot_id: String,
        after: Option<Uuid>,
        cancel: CancellationToken,
    ) -> Result<(), PipelineError> {
        tracing::info!(snapshot = %snapshot_id, "sweeping the class for objects whose row is gone");
        let mut after = after;
        let mut request = self.state.confirmed.borrow().to_owned();
        let mut confirmed = self.state.confirmed.subscribe();
        loop {
            let page = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                page = hold(&self.health, "weaviate", || self.sink.list_page(after, SWEEP_PAGE)) => page?,
            };
            let Some((last, _)) = page.last().cloned() else {
                tracing::info!(snapshot = %snapshot_id, "sweep done");
                let _ = self.control.send(Effect::SweepDone { snapshot_id });
                return Ok(());
            };
            let (products, foreign): (Vec<_>, Vec<_>) = page
                .into_iter()
                .partition(|(id, sku)| sku.as_deref().is_some_and(|s| product_id(s) == *id));
            if !foreign.is_empty() {
                let ids: Vec<Uuid> = foreign.iter().map(|(id, _)| *id).collect();
                tracing::warn!(
                    count = ids.len(),
                    first = %ids[0],
                    "objects that are not products of this table (no sku, or an id that is not the product id of their sku): deleting them"
                );
                tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    done = hold(&self.health, "weaviate", || self.sink.delete_ids(&ids)) => done?,
                }
                metrics::counter!(STALE_DELETED_TOTAL).increment(ids.len() as u64);
            }
            request += 1;
            self.state
                .pages
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(request, (snapshot_id.clone(), last.to_string()));
            let skus: Vec<String> = products.into_iter().filter_map(|(_, sku)| sku).collect();
            self.link.check_absent(&snapshot_id, request, "sku", skus);
            // Wait until the deletes this check produced are confirmed before the next page.
            loop {
                if *confirmed.borrow_and_update() >= request {
                    break;
                }
                tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    changed = confirmed.changed() => if changed.is_err() { return Ok(()) },
                }
            }
            after = Some(last);
        }
    }
}
