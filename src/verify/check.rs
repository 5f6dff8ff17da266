//! The comparison itself: the table read in key order in short consistent reads, each chunk's
//! objects fetched in one request, the class listed for objects without a row, then every
//! difference re-checked until it is drift, a change that was in flight, or unsettled.
//!
//! # Changes in flight
//! Every row is read at a known GTID position P (the chunk's consistent read). A difference is
//! only a *suspect*; a round of re-checks then
//! 1. waits until the running instance confirmed the newest P of the suspects (every change up
//!    to P is in Weaviate),
//! 2. fetches their objects again,
//! 3. re-reads their rows in a new consistent read at P2 (after the fetch).
//!
//! A suspect whose object now agrees with the row at P2 was in flight. One whose row at P2 is
//! still the row at P while the object differs failed the round: no change to the row was
//! committed between P and P2 (as far as the row's state shows), and the object was fetched
//! after P was confirmed and before P2, so whatever the instance wrote, confirmed or not yet,
//! should be that row. The re-read comes after the fetch on purpose: read before it, a change
//! committed after P2 and written before the fetch would look like drift. A suspect is drift
//! after [`STRIKES`] failed rounds in a row (the next round waits for P2 to be confirmed): a
//! change that was undone before P2 (A, then B, then A again) can leave the object at B for a
//! moment, and the second round, after P2 is confirmed, sees A written. A row that changed
//! meanwhile becomes a suspect at P2 again with no strikes; after [`ROUNDS`] rounds it is
//! reported as unsettled. Objects without a row are the same rule with "no row" as the row's
//! state.

use std::collections::HashMap;
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use uuid::Uuid;

use crate::embed::TextEmbedder;
use crate::pipeline::plan::sku_of;
use crate::pipeline::reconcile::{Held, Vector};
use crate::pipeline::text::TextRule;
use crate::position::GtidPosition;
use crate::sink::{WeaviateSink, product_id};
use crate::source::TableReader;

use super::VerifyError;
use super::diff::{Expected, Kind, SAME_VECTOR, classify, cosine, held_of};
use super::instance::{Instance, join};
use super::report::{DeepCheck, Report};

/// Rows per chunk: one consistent read and one fetch (the fetch's own limit).
pub const CHUNK_ROWS: usize = crate::sink::fetch::FETCH_CHUNK;

/// Objects per page of the class listing.
pub const LIST_PAGE: usize = 1000;

/// Re-check rounds before a row that keeps changing is reported as unsettled.
pub const ROUNDS: u32 = 6;

/// Consecutive rounds that must find the same row and a differing object before it is drift.
pub const STRIKES: u32 = 2;

/// Texts re-embedded per call for `--deep`.
const DEEP_BATCH: usize = 256;

/// A difference not yet known to be drift.
#[derive(Debug, Clone)]
pub struct Suspect {
    pub sku: String,
    /// The row at `at`; `None`: no row has this sku.
    pub expected: Option<Expected>,
    pub at: GtidPosition,
    /// Re-check rounds in a row that found the same row and a differing object.
    pub strikes: u32,
}

/// A difference that is drift.
#[derive(Debug, Clone)]
pub struct Drift {
    pub sku: String,
    pub id: Uuid,
    pub kind: Kind,
    /// What the object must be (`None`: it must not exist).
    pub expected: Option<Expected>,
    pub held: Option<Held>,
    /// Where the row was read last.
    pub at: GtidPosition,
    /// `--deep`: the fresh embedding of the object's text.
    pub fresh: Option<Vector>,
    /// Not a product object of this table (no sku, or an id that is not the product id of its
    /// sku): deleted by id, never re-checked (vecsync never writes such an object).
    pub foreign: bool,
}

/// An object found in sync, kept for `--deep`.
#[derive(Debug, Clone)]
pub struct Sample {
    pub sku: String,
    pub text: String,
    pub vector: Vector,
}

/// Reads both sides. See the [module](self) documentation.
pub struct Checker {
    pub reader: TableReader,
    pub sink: WeaviateSink,
    pub rule: TextRule,
    pub dimension: usize,
    pub instance: Instance,
    pub settle_timeout: Duration,
}

/// The reservoir sample of `--deep`.
pub struct Reservoir<'r> {
    pub size: usize,
    pub rng: &'r mut StdRng,
    pub seen: u64,
    pub samples: Vec<Sample>,
}

impl Reservoir<'_> {
    fn offer(&mut self, sample: impl FnOnce() -> Sample) {
        if self.size == 0 {
            return;
        }
        self.seen += 1;
        if self.samples.len() < self.size {
            self.samples.push(sample());
        } else {
            let j = self.rng.random_range(0..self.seen);
            if let Ok(j) = usize::try_from(j)
                && j < self.size
            {
                self.samples[j] = sample();
            }
        }
    }
}

impl Checker {
    /// Read the whole table in key order; the suspects, and samples of in-sync objects.
    pub async fn scan_table(
        &mut self,
        report: &mut Report,
        reservoir: &mut Reservoir<'_>,
    ) -> Result<Vec<Suspect>, VerifyError> {
        if let Some(why) = self.reader.no_key_reason() {
            return Err(VerifyError::NoKey(why));
        }
        let mut suspects = Vec::new();
        let mut after: Option<Vec<serde_json::Value>> = None;
        loop {
            let chunk = self.reader.next_chunk(after.as_deref(), CHUNK_ROWS).await?;
            report.rows += chunk.rows.len() as u64;
            let mut expected = Vec::with_capacity(chunk.rows.len());
            for row in &chunk.rows {
                match sku_of(row) {
                    Ok(sku) => expected.push(Expected::of_row(&self.rule, sku.clone(), row)),
                    Err(_) => report.rows_without_sku += 1,
                }
            }
            let ids: Vec<Uuid> = expected
                .iter()
                .map(|e| product_id(&e.product.sku))
                .collect();
            let stored = self.sink.fetch(&ids, true).await?;
            for (e, id) in expected.into_iter().zip(&ids) {
                let held = stored.get(id).map(held_of);
                match classify(Some(&e), held.as_ref(), &self.rule, self.dimension) {
                    Some(_) => suspects.push(Suspect {
                        sku: e.product.sku.clone(),
                        expected: Some(e),
                        at: chunk.point.position.clone(),
                        strikes: 0,
                    }),
                    None => {
                        if let Some(vector) = held.and_then(|h| h.vector)
                            && !e.text.is_empty()
                        {
                            reservoir.offer(|| Sample {
                                sku: e.product.sku.clone(),
                                text: e.text.clone(),
                                vector,
                            });
                        }
                    }
                }
            }
            if chunk.last {
                return Ok(suspects);
            }
            after = chunk.last_key;
        }
    }

    /// List the class for objects no row has: suspects (checked at a consistent read's
    /// position), and foreign objects (drift at once).
    pub async fn scan_objects(
        &mut self,
        report: &mut Report,
    ) -> Result<(Vec<Suspect>, Vec<Drift>), VerifyError> {
        let mut suspects = Vec::new();
        let mut foreign = Vec::new();
        let mut after = None;
        loop {
            let page = self.sink.list_page(after, LIST_PAGE).await?;
            let Some((last, _)) = page.last().cloned() else {
                return Ok((suspects, foreign));
            };
            report.objects += page.len() as u64;
            let mut skus = Vec::with_capacity(page.len());
            for (id, sku) in page {
                match sku {
                    Some(sku) if product_id(&sku) == id => skus.push(sku),
                    sku => foreign.push(Drift {
                        sku: sku.unwrap_or_else(|| id.to_string()),
                        id,
                        kind: Kind::Extra,
                        expected: None,
                        held: None,
                        at: GtidPosition::new(),
                        fresh: None,
                        foreign: true,
                    }),
                }
            }
            let point = self.reader.begin().await?;
            let present = self.reader.present_in_read("sku", &skus).await?;
            self.reader.end().await?;
            let present: std::collections::HashSet<String> = present.into_iter().collect();
            for sku in skus {
                if !present.contains(&sku) {
                    suspects.push(Suspect {
                        sku,
                        expected: None,
                        at: point.position.clone(),
                        strikes: 0,
                    });
                }
            }
            after = Some(last);
        }
    }

    /// Re-check `suspects` (see the [module](self) documentation): the drift, and the suspects
    /// still unsettled after [`ROUNDS`] rounds. Counts the ones that were in flight.
    pub async fn settle(
        &mut self,
        suspects: Vec<Suspect>,
        report: &mut Report,
    ) -> Result<(Vec<Drift>, Vec<Suspect>), VerifyError> {
        let mut pending = suspects;
        let mut drift = Vec::new();
        for _ in 0..ROUNDS {
            if pending.is_empty() {
                break;
            }
            let target = join(pending.iter().map(|s| &s.at));
            self.instance
                .wait_covers(&target, self.settle_timeout)
                .await?;
            let ids: Vec<Uuid> = pending.iter().map(|s| product_id(&s.sku)).collect();
            let stored = self.sink.fetch(&ids, true).await?;
            let skus: Vec<String> = pending.iter().map(|s| s.sku.clone()).collect();
            let point = self.reader.begin().await?;
            let rows = self.reader.rows_in_read("sku", &skus).await?;
            self.reader.end().await?;
            let mut now: HashMap<String, Expected> = HashMap::with_capacity(rows.len());
            for row in &rows {
                if let Ok(sku) = sku_of(row) {
                    now.insert(sku.clone(), Expected::of_row(&self.rule, sku, row));
                }
            }
            let mut next = Vec::new();
            for (suspect, id) in pending.into_iter().zip(ids) {
                let row = now.remove(&suspect.sku);
                let held = stored.get(&id).map(held_of);
                match classify(row.as_ref(), held.as_ref(), &self.rule, self.dimension) {
                    None => report.in_flight += 1,
                    Some(kind) if row == suspect.expected && suspect.strikes + 1 >= STRIKES => {
                        drift.push(Drift {
                            sku: suspect.sku,
                            id,
                            kind,
                            expected: row,
                            held,
                            at: point.position.clone(),
                            fresh: None,
                            foreign: false,
                        })
                    }
                    Some(_) => {
                        let strikes = if row == suspect.expected {
                            suspect.strikes + 1
                        } else {
                            0
                        };
                        next.push(Suspect {
                            sku: suspect.sku,
                            expected: row,
                            at: point.position.clone(),
                            strikes,
                        })
                    }
                }
            }
            pending = next;
        }
        Ok((drift, pending))
    }

    /// `--deep`: re-embed the samples' texts and compare with their stored vectors; a mismatch
    /// is drift when the object still carries the same text and vector when fetched again.
    pub async fn deep(
        &mut self,
        samples: Vec<Sample>,
        embedder: &TextEmbedder,
        deep: &mut DeepCheck,
    ) -> Result<Vec<Drift>, VerifyError> {
        let mut mismatched: Vec<(Sample, Vector)> = Vec::new();
        for batch in samples.chunks(DEEP_BATCH) {
            let texts: Vec<String> = batch.iter().map(|s| s.text.clone()).collect();
            let fresh = embedder
                .embed_each(texts)
                .await
                .map_err(VerifyError::Embedder)?;
            for (sample, fresh) in batch.iter().zip(fresh) {
                let fresh = fresh.map_err(|reason| {
                    VerifyError::Embedder(crate::embed::EmbedCallError::Definite(format!(
                        "the text of {} cannot be embedded: {reason}",
                        sample.sku
                    )))
                })?;
                let c = cosine(&fresh, &sample.vector);
                deep.sampled += 1;
                deep.min_cosine = Some(deep.min_cosine.map_or(c, |m: f64| m.min(c)));
                if c < SAME_VECTOR {
                    mismatched.push((sample.clone(), fresh.into()));
                }
            }
        }
        if mismatched.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = mismatched.iter().map(|(s, _)| product_id(&s.sku)).collect();
        let stored = self.sink.fetch(&ids, true).await?;
        let mut drift = Vec::new();
        for ((sample, fresh), id) in mismatched.into_iter().zip(ids) {
            let Some(held) = stored.get(&id).map(held_of) else {
                continue; // deleted meanwhile: a change in flight
            };
            let same_text = self.rule.text(&held.product) == sample.text;
            let still_wrong = held
                .vector
                .as_ref()
                .is_some_and(|v| cosine(&fresh, v) < SAME_VECTOR);
            if same_text && still_wrong {
                drift.push(Drift {
                    sku: sample.sku,
                    id,
                    kind: Kind::VectorMismatch,
                    expected: Some(Expected {
                        product: held.product.clone(),
                        text: sample.text,
                    }),
                    held: Some(held),
                    at: GtidPosition::new(),
                    fresh: Some(fresh),
                    foreign: false,
                });
            }
        }
        Ok(drift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn sample_of(n: usize, size: usize, seed: u64) -> Vec<String> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut r = Reservoir {
            size,
            rng: &mut rng,
            seen: 0,
            samples: Vec::new(),
        };
        for i in 0..n {
            r.offer(|| Sample {
                sku: format!("S-{i}"),
                text: String::new(),
                vector: Vector::from(&[0.0f32][..]),
            });
        }
        r.samples.into_iter().map(|s| s.sku).collect()
    }

    #[test]
    fn the_deep_sample_is_repeatable_by_seed_and_bounded() {
        let seed = 7;
        println!("seed {seed}");
        let a = sample_of(1000, 10, seed);
        assert_eq!(a.len(), 10);
        assert_eq!(a, sample_of(1000, 10, seed), "same seed, same sample");
        assert_ne!(
            a,
            sample_of(1000, 10, seed + 1),
            "another seed, another sample"
        );
        assert_eq!(
            sample_of(3, 10, seed).len(),
            3,
            "fewer rows than N: all of them"
        );
        assert!(sample_of(100, 0, seed).is_empty());
        // Later rows are sampled too (not just the first N).
        assert!(
            a.iter()
                .any(|s| s[2..].parse::<usize>().is_ok_and(|i| i >= 10))
        );
    }
}
