//! What verify found, as a summary for a person and as JSON for a machine (stable field names:
//! add fields, never rename them).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::diff::Kind;

/// Examples kept per kind.
pub const EXAMPLES: usize = 5;

/// The outcome of one `vecsync verify`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// No drift (after `--repair`: none left), the fingerprint matches, nothing was rejected.
    pub in_sync: bool,
    /// Table rows read.
    pub rows: u64,
    /// Rows without a usable sku (NULL): the pipeline dead-letters them, they have no object.
    pub rows_without_sku: u64,
    /// Objects listed in the class.
    pub objects: u64,
    pub elapsed_ms: u64,
    /// Rows read per second over the whole run.
    pub rows_per_second: f64,
    /// What verify waited on before calling a difference drift.
    pub instance: String,
    /// Differences seen at first, before the re-check.
    pub suspects: u64,
    /// Suspects that were changes in flight (gone once the instance confirmed them).
    pub in_flight: u64,
    /// Drift per kind (every kind present, count 0 when none).
    pub drift: BTreeMap<&'static str, KindCount>,
    /// Rows that kept changing through every re-check round: neither drift nor in sync.
    pub unsettled: KindCount,
    pub fingerprint: FingerprintCheck,
    /// `--deep`: re-embedded samples.
    pub deep: Option<DeepCheck>,
    /// `--repair`: what was written.
    pub repair: Option<RepairReport>,
}

/// A count and up to [`EXAMPLES`] skus.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct KindCount {
    pub count: u64,
    pub examples: Vec<String>,
}

impl KindCount {
    pub fn add(&mut self, sku: &str) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(sku.to_owned());
        }
    }
}

/// The class's recorded embedding against the configured one.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FingerprintCheck {
    /// The configured embedder's fingerprint (short form) and description.
    pub configured: String,
    pub configured_description: String,
    /// What the class records, `None` when it records nothing.
    pub recorded: Option<String>,
    pub recorded_description: Option<String>,
    /// `None` when the class records nothing (vecsync run adopts such a class).
    pub matches: Option<bool>,
}

/// `--deep N`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeepCheck {
    /// The seed of the sample (`--seed` repeats it).
    pub seed: u64,
    pub sampled: u64,
    /// The lowest cosine seen.
    pub min_cosine: Option<f64>,
}

/// `--repair`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    /// Objects written (upserts).
    pub written: u64,
    /// Objects deleted.
    pub deleted: u64,
    /// Texts embedded for the writes.
    pub embedded: u64,
    /// Write rounds (a repair that raced a live change is checked and repaired again).
    pub rounds: u32,
    /// Objects Weaviate (or the embedder) refused: sku and message.
    pub rejected: Vec<Rejected>,
    /// Drift still found after the last round (all kinds together).
    pub remaining: KindCount,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    pub sku: String,
    pub message: String,
}

impl Report {
    /// A report with every drift kind at 0.
    pub fn new() -> Report {
        Report {
            drift: Kind::ALL
                .iter()
                .map(|k| (k.name(), KindCount::default()))
                .collect(),
            ..Report::default()
        }
    }

    pub fn add_drift(&mut self, kind: Kind, sku: &str) {
        self.drift.entry(kind.name()).or_default().add(sku);
    }

    pub fn drift_count(&self) -> u64 {
        self.drift.values().map(|k| k.count).sum()
    }

    /// Decide `in_sync` from what was found.
    pub fn finish(&mut self) {
        let drift_left = match &self.repair {
            Some(r) => r.remaining.count > 0 || !r.rejected.is_empty(),
            None => self.drift_count() > 0,
        };
        self.in_sync = !drift_left && self.fingerprint.matches != Some(false);
    }

    /// The summary a person reads.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let verdict = if self.in_sync {
            "in sync"
        } else {
            "DRIFT FOUND"
        };
        let _ = writeln!(
            s,
            "vecsync verify: {verdict}: {} rows, {} objects, {:.1} s ({:.0} rows/s)",
            self.rows,
            self.objects,
            self.elapsed_ms as f64 / 1000.0,
            self.rows_per_second
        );
        let _ = writeln!(s, "  confirmed by: {}", self.instance);
        let fp = &self.fingerprint;
        match (&fp.recorded, fp.matches) {
            (Some(_), Some(true)) => {
                let _ = writeln!(s, "  embedding: {} (recorded in the class)", fp.configured);
            }
            (Some(recorded), _) => {
                let _ = writeln!(
                    s,
                    "  embedding: MISMATCH: the class records {}, this configuration embeds with \
                     {} (rebuild with `vecsync run --reindex`)",
                    fp.recorded_description.as_deref().unwrap_or(recorded),
                    fp.configured_description
                );
            }
            (None, _) => {
                let _ = writeln!(
                    s,
                    "  embedding: the class records none (configured: {})",
                    fp.configured
                );
            }
        }
        for (name, kind) in &self.drift {
            if kind.count > 0 {
                let _ = writeln!(
                    s,
                    "  {name}: {} (e.g. {})",
                    kind.count,
                    kind.examples.join(", ")
                );
            }
        }
        if self.drift_count() == 0 {
            let _ = writeln!(s, "  no drift");
        }
        if self.in_flight > 0 {
            let _ = writeln!(
                s,
                "  {} differences were changes in flight (confirmed since)",
                self.in_flight
            );
        }
        if self.unsettled.count > 0 {
            let _ = writeln!(
                s,
                "  unsettled: {} rows kept changing while checked, not counted as drift (e.g. {})",
                self.unsettled.count,
                self.unsettled.examples.join(", ")
            );
        }
        if self.rows_without_sku > 0 {
            let _ = writeln!(
                s,
                "  {} rows have no sku and no object (the pipeline dead-letters them)",
                self.rows_without_sku
            );
        }
        if let Some(deep) = &self.deep {
            let _ = writeln!(
                s,
                "  deep: {} vectors re-embedded (seed {}, lowest cosine {})",
                deep.sampled,
                deep.seed,
                deep.min_cosine
                    .map_or_else(|| "-".to_owned(), |c| format!("{c:.6}"))
            );
        }
        if let Some(r) = &self.repair {
            let _ = writeln!(
                s,
                "  repair: {} written, {} deleted, {} embedded, {} rounds; {} left",
                r.written, r.deleted, r.embedded, r.rounds, r.remaining.count
            );
            for rej in r.rejected.iter().take(EXAMPLES) {
                let _ = writeln!(s, "  repair refused for {}: {}", rej.sku, rej.message);
            }
        }
        s
    }
}
