//! `vecsync verify [--repair] [--deep N] [--json]`: compare the table with the index, without
//! re-embedding, while `vecsync run` may be running; optionally write the fixes.
//!
//! What is compared, per row (read in key order, in short consistent reads at known GTID
//! positions, see [`check`]): the object of its sku must exist, hold the row's properties (sku,
//! name, description, price and the template's extra columns) and a vector of the embedder's
//! dimension when its text is not empty (the pipeline's own diff decides, see [`diff`]). The
//! class is listed for objects no row has. The class's recorded embedding fingerprint is compared
//! with the configured embedder's. `--deep N` re-embeds a random sample of N in-sync objects'
//! texts and compares the vectors by cosine.
//!
//! A difference caused by a change still in flight is not drift: see [`check`] for the rule,
//! and [`instance`] for how verify learns what the running instance has confirmed.
//!
//! # Error handling
//! Nothing here retries beyond what the Weaviate client does itself: an error stops verify
//! ([`VerifyError`], exit 2) with what went wrong; a running instance that does not confirm a
//! position within `--settle-timeout` is one.

pub mod check;
pub mod diff;
pub mod instance;
pub mod repair;
pub mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use uuid::Uuid;

use crate::checkpoint::CheckpointError;
use crate::config::{CacheArgs, ConfigError, MariadbArgs, WeaviateArgs};
use crate::dedup::{CacheConfig, EmbeddingCache};
use crate::embed::args::OpenError;
use crate::embed::{EmbedCallError, EmbedError, EmbedderArgs, EmbedderConfig, Fingerprint};
use crate::pipeline::identity::describe;
use crate::pipeline::text::{BadColumn, TextRule};
use crate::pipeline::vectors::{VectorError, Vectors};
use crate::sink::{SinkError, WeaviateConfig, WeaviateSink};
use crate::source::{SourceConfig, SourceError, TableReader};

use self::check::{Checker, Drift, Reservoir, Suspect};
use self::diff::{Kind, SAME_VECTOR, cosine, held_of};
use self::instance::Instance;
use self::report::{DeepCheck, FingerprintCheck, KindCount, RepairReport, Report};

/// Repair rounds: a repair that raced a live change is checked and written again, this often.
pub const REPAIR_ROUNDS: u32 = 3;

/// Flags of `vecsync verify`: the MariaDB, Weaviate, cache and embedder flags (and environment
/// variables) of `vecsync run`, and verify's own.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub mariadb: MariadbArgs,
    #[command(flatten)]
    pub weaviate: WeaviateArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// The embedder the index is built with (its dimension and fingerprint are checked).
    #[command(flatten)]
    pub embedder: EmbedderArgs,
    /// Write the fixes (through the pipeline's write path), then check the repaired objects.
    #[arg(long)]
    pub repair: bool,
    /// Also re-embed a random sample of N objects' texts and compare the vectors (cosine).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub deep: usize,
    /// The seed of the --deep sample (printed by every run with --deep), to repeat a sample.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the report as JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// The running `vecsync run`'s telemetry address (its --metrics-addr, e.g.
    /// http://127.0.0.1:9187): differences are re-checked once it confirmed them.
    #[arg(long, env = "VECSYNC_URL")]
    pub vecsync_url: Option<String>,
    /// The running `vecsync run`'s checkpoint file, to learn what it confirmed (used when
    /// --vecsync-url is not given). With neither, verify assumes no instance runs.
    #[arg(long, env = "VECSYNC_CHECKPOINT")]
    pub checkpoint: Option<PathBuf>,
    /// How long to wait for the running instance to confirm a position, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub settle_timeout: u64,
}

/// Everything `vecsync verify` needs, validated.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub source: SourceConfig,
    pub weaviate: crate::config::WeaviateSettings,
    pub memcached: Option<String>,
    pub cache_ttl: Duration,
    pub embedder: EmbedderConfig,
    pub repair: bool,
    pub deep: usize,
    pub seed: Option<u64>,
    pub instance: Instance,
    pub settle_timeout: Duration,
}

impl VerifyArgs {
    pub fn into_options(self) -> Result<VerifyOptions, VerifyError> {
        let mariadb = self.mariadb.into_settings()?;
        let mut source = SourceConfig::new(mariadb.url, mariadb.table);
        source.password = mariadb.password;
        source.ssl_ca = mariadb.ssl_ca;
        let instance = match (&self.vecsync_url, self.checkpoint) {
            (Some(url), _) => Instance::url(url)?,
            (None, Some(path)) => Instance::Checkpoint(path),
            (None, None) => Instance::None,
        };
        Ok(VerifyOptions {
            source,
            weaviate: self.weaviate.into_settings()?,
            memcached: self.cache.server(),
            cache_ttl: self.cache.ttl(),
            embedder: self
                .embedder
                .into_config()
                .map_err(|e| VerifyError::Settings(e.into()))?,
            repair: self.repair,
            deep: self.deep,
            seed: self.seed,
            instance,
            settle_timeout: Duration::from_secs(self.settle_timeout),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Settings(#[from] ConfigError),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    OpenEmbedder(#[from] OpenError),
    #[error(transparent)]
    Embedder(EmbedCallError),
    #[error("cannot load the embedding model: {}", crate::report::causes(.0))]
    Model(EmbedError),
    #[error(transparent)]
    Vectors(#[from] VectorError),
    #[error(transparent)]
    Template(#[from] BadColumn),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(
        "{instance} did not confirm position {target} within {timeout_secs} s (last: {last}): the \
         running vecsync instance is behind or stopped. Differences cannot be told from changes \
         in flight until it catches up: start it or let it catch up and run verify again, or \
         raise --settle-timeout"
    )]
    NotConfirmed {
        instance: String,
        target: String,
        timeout_secs: u64,
        last: String,
    },
    #[error("the table cannot be verified: it has no key to read it in chunks by ({0})")]
    NoKey(String),
    #[error(
        "--repair refused: the class records embedding {recorded}, this configuration embeds \
         with {configured}; repairing would mix two embeddings in one index. Rebuild it with \
         `vecsync run --reindex`, or verify with the embedder the index was built with"
    )]
    RepairRefused {
        recorded: String,
        configured: String,
    },
    #[error("internal task failed: {0}")]
    Task(tokio::task::JoinError),
}

impl From<EmbedError> for VerifyError {
    fn from(e: EmbedError) -> Self {
        VerifyError::Model(e)
    }
}

impl From<tokio::task::JoinError> for VerifyError {
    fn from(e: tokio::task::JoinError) -> Self {
        VerifyError::Task(e)
    }
}

/// Run `vecsync verify`: the report (its `in_sync` decides the exit code), or an error.
pub async fn run(options: VerifyOptions) -> Result<Report, VerifyError> {
    let mut report = Report::new();
    report.instance = options.instance.describe();
    let rule = TextRule::new(options.embedder.template.clone())?;
    let embedder = options.embedder.open().await?;
    let probe = embedder.probe().await.map_err(VerifyError::Embedder)?;
    let dimension = probe.dimension;
    let fingerprint = {
        let (config, embedder) = (options.embedder.clone(), embedder.clone());
        tokio::task::spawn_blocking(move || config.fingerprint(&embedder)).await??
    };
    let mut weaviate = WeaviateConfig::new(options.weaviate.url.clone());
    weaviate.schema = weaviate
        .schema
        .with_text_properties(rule.extra_properties());
    weaviate.api_key = options.weaviate.api_key.clone();
    weaviate.class = options.weaviate.class.clone();
    weaviate.consistency_level = options.weaviate.consistency_level;
    weaviate.vector_dimensions = dimension;
    let sink = WeaviateSink::new(weaviate)?;
    sink.ready().await?;
    report.fingerprint = check_fingerprint(&sink, &fingerprint).await?;
    if options.repair && report.fingerprint.matches == Some(false) {
        return Err(VerifyError::RepairRefused {
            recorded: report.fingerprint.recorded.clone().unwrap_or_default(),
            configured: report.fingerprint.configured_description.clone(),
        });
    }
    let reader = TableReader::connect(&options.source).await?;
    let mut checker = Checker {
        reader,
        sink: sink.clone(),
        rule: rule.clone(),
        dimension,
        instance: options.instance.clone(),
        settle_timeout: options.settle_timeout,
    };

    let started = Instant::now();
    let seed = options.seed.unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut reservoir = Reservoir {
        size: options.deep,
        rng: &mut rng,
        seen: 0,
        samples: Vec::new(),
    };
    let mut suspects = checker.scan_table(&mut report, &mut reservoir).await?;
    let samples = std::mem::take(&mut reservoir.samples);
    let (extra, foreign) = checker.scan_objects(&mut report).await?;
    suspects.extend(extra);
    let suspects = latest_per_sku(suspects);
    report.suspects = (suspects.len() + foreign.len()) as u64;
    let (mut drift, unsettled) = checker.settle(suspects, &mut report).await?;
    drift.extend(foreign);
    if options.deep > 0 {
        tracing::info!(
            seed,
            sample = options.deep,
            "deep check: re-embedding a sample"
        );
        let mut deep = DeepCheck {
            seed,
            ..DeepCheck::default()
        };
        drift.extend(checker.deep(samples, &embedder, &mut deep).await?);
        report.deep = Some(deep);
    }
    for d in &drift {
        report.add_drift(d.kind, &d.sku);
    }
    for s in &unsettled {
        report.unsettled.add(&s.sku);
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report.rows_per_second = report.rows as f64 / started.elapsed().as_secs_f64().max(1e-9);

    if options.repair && !drift.is_empty() {
        let cache = Arc::new(EmbeddingCache::new(CacheConfig {
            ttl: options.cache_ttl,
            ..CacheConfig::new(options.memcached.clone())
        }));
        let vectors = Vectors::new(embedder, cache, fingerprint.short());
        let mut repaired = RepairReport::default();
        let mut left = drift;
        while !left.is_empty() && repaired.rounds < REPAIR_ROUNDS {
            repaired.rounds += 1;
            repair::repair(&left, &sink, &vectors, &rule, &mut repaired).await?;
            left = recheck(&mut checker, left, &mut report).await?;
        }
        let mut remaining = KindCount::default();
        for d in &left {
            remaining.add(&d.sku);
        }
        repaired.remaining = remaining;
        report.repair = Some(repaired);
    } else if options.repair {
        report.repair = Some(RepairReport::default());
    }
    report.finish();
    Ok(report)
}

/// One suspect per sku: the one read last (a row deleted between the table scan and the class
/// listing is suspected twice, missing and then extra).
fn latest_per_sku(suspects: Vec<Suspect>) -> Vec<Suspect> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<Suspect> = suspects
        .into_iter()
        .rev()
        .filter(|s| seen.insert(s.sku.clone()))
        .collect();
    out.reverse();
    out
}

/// After a repair: which of `repaired` still differ. Rows are re-checked with the settle rule
/// (a repair that raced a live change is a suspect again); objects deleted by id and vectors
/// replaced after `--deep` are fetched again.
async fn recheck(
    checker: &mut Checker,
    repaired: Vec<Drift>,
    report: &mut Report,
) -> Result<Vec<Drift>, VerifyError> {
    let (direct, rows): (Vec<Drift>, Vec<Drift>) = repaired
        .into_iter()
        .partition(|d| d.foreign || d.kind == Kind::VectorMismatch);
    let suspects: Vec<Suspect> = rows
        .into_iter()
        .map(|d| Suspect {
            sku: d.sku,
            expected: d.expected,
            at: d.at,
            strikes: 0,
        })
        .collect();
    // Repaired objects that now agree are not "changes in flight".
    let in_flight = report.in_flight;
    let (mut left, unsettled) = checker.settle(suspects, report).await?;
    report.in_flight = in_flight;
    for s in &unsettled {
        report.unsettled.add(&s.sku);
    }
    let ids: Vec<Uuid> = direct.iter().map(|d| d.id).collect();
    let stored = checker.sink.fetch(&ids, true).await?;
    for d in direct {
        let still = match (stored.get(&d.id), &d.fresh) {
            (None, _) => false,
            (Some(_), None) => true, // a foreign object not deleted
            (Some(s), Some(fresh)) => held_of(s)
                .vector
                .is_none_or(|v| cosine(fresh, &v) < SAME_VECTOR),
        };
        if still {
            left.push(d);
        }
    }
    Ok(left)
}

/// The class's recorded embedding against `ours`. Reading only: verify never records one.
async fn check_fingerprint(
    sink: &WeaviateSink,
    ours: &Fingerprint,
) -> Result<FingerprintCheck, VerifyError> {
    let mut check = FingerprintCheck {
        configured: ours.short().to_owned(),
        configured_description: describe(ours),
        ..FingerprintCheck::default()
    };
    if let Some(text) = sink.embedding_record().await? {
        match serde_json::from_str::<Fingerprint>(&text) {
            Ok(recorded) if recorded.is_consistent() => {
                check.matches = Some(recorded.as_str() == ours.as_str());
                check.recorded = Some(recorded.short().to_owned());
                check.recorded_description = Some(describe(&recorded));
            }
            _ => {
                check.matches = Some(false);
                check.recorded = Some("unreadable".into());
                check.recorded_description =
                    Some("an unreadable record (the class description was edited)".into());
            }
        }
    }
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sku_suspected_twice_keeps_its_latest_read() {
        let at = |s: &str| s.parse().expect("gtid");
        let s = |sku: &str, pos: &str| Suspect {
            sku: sku.into(),
            expected: None,
            at: at(pos),
            strikes: 0,
        };
        let out = latest_per_sku(vec![s("A", "0-1-1"), s("B", "0-1-1"), s("A", "0-1-5")]);
        let got: Vec<(String, String)> = out
            .iter()
            .map(|s| (s.sku.clone(), s.at.to_string()))
            .collect();
        assert_eq!(
            got,
            [("B".into(), "0-1-1".into()), ("A".into(), "0-1-5".into())]
        );
    }

    #[test]
    fn errors_name_their_cause_once() {
        let e = VerifyError::NotConfirmed {
            instance: "running instance at http://127.0.0.1:9187".into(),
            target: "0-1-9".into(),
            timeout_secs: 60,
            last: "confirmed 0-1-5".into(),
        };
        let shown = format!("{:#}", anyhow::Error::from(e));
        assert!(shown.contains("behind or stopped"), "{shown}");
        assert_eq!(shown.matches("0-1-5").count(), 1, "{shown}");
    }
}
