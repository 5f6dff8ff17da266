//! Zero-downtime re-index (`vecsync run --reindex`): build a new index with a new embedding in a
//! new class while the old one keeps serving, then switch the alias readers search.
//!
//! `--class` (`Product`) names what readers search: a plain class (the seed's index) or an alias
//! of a concrete class. With `--reindex` the process runs two pipelines, each with its own binlog
//! connection and checkpoint:
//!
//! - **serving**: keeps the current class up to date with the PREVIOUS embedding, which must be
//!   reconstructible: the class records the fingerprint with its template text
//!   ([`crate::embed::Fingerprint`] in the class description), so the same model with the
//!   recorded template gives it back, or `--previous-model` / `--previous-embedder` name the model
//!   when it changed. A previous embedding whose fingerprint is not the recorded one is refused.
//! - **building**: writes the new class (`<class>_<fingerprint8>` or `--target-class`) with the
//!   new embedding, from a reconciling snapshot plus the stream, checkpoint `<checkpoint>.reindex`.
//!
//! Once the building pipeline has caught up (its snapshot and sweep are done, and its confirmed
//! position covers the serving pipeline's), the serving pipeline is drained and stopped, the
//! alias is switched (`PUT /v1/aliases/{alias}`, one atomic step; for the seed's plain class the
//! one-time migration: delete the class, then create the alias at once, the only moment searches
//! fail), the old class is dropped with `--drop-old` (else kept and logged), the building
//! pipeline is drained, its checkpoint replaces the main one (atomic rename), and the process
//! continues as the normal single pipeline on the new class.
//!
//! # Resumption
//! A crash while building resumes both pipelines on the next start with the same flags (each from
//! its checkpoint; the building snapshot after its last confirmed chunk). A crash after the switch
//! and before the rename is completed at the next start: the alias already points to the target
//! (or, mid-migration, neither the class nor the alias exists but the target and
//! `<checkpoint>.reindex` do, and the alias is created), so only the rest is done. A normal start
//! (without `--reindex`) refuses while `<checkpoint>.reindex` exists.
//!
//! # Error handling
//! Transient Weaviate failures are waited for with the crate's backoff (`/readyz` says why); a
//! definite error of either pipeline stops both.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::PipelineError;
use super::hold::{HOLD_BACKOFF, hold};
use super::identity::describe;
use crate::backoff::Attempts;
use crate::checkpoint::CheckpointData;
use crate::config::{Config, SnapshotMode};
use crate::embed::{
    EmbedderConfig, EmbedderSource, Fingerprint, Probe, RemoteConfig, TextEmbedder,
};
use crate::secret::Secret;
use crate::sink::schema::validate_class_name;
use crate::sink::{SinkError, WeaviateConfig, WeaviateSink};
use crate::telemetry::Health;
use crate::template::{Template, TemplateError};

/// 1 while a re-index runs (building or switching), 0 once the switch is done.
pub const REINDEX_IN_PROGRESS: &str = "vecsync_reindex_in_progress";
/// Rows of the table the building pipeline's snapshot has written so far.
pub const REINDEX_SNAPSHOT_ROWS: &str = "vecsync_reindex_snapshot_rows";
/// 1 once the new class has caught up (snapshot done, stream caught up).
pub const REINDEX_CAUGHT_UP: &str = "vecsync_reindex_caught_up";
/// How long searches of the alias name could fail during the switch (0 for an alias switch).
pub const REINDEX_SWITCH_GAP_SECONDS: &str = "vecsync_reindex_switch_gap_seconds";

/// How often the building pipeline's progress is looked at.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// The `--reindex` flags of `vecsync run`.
#[derive(Debug, Clone, Default, Args)]
pub struct ReindexArgs {
    /// Build a new index with this run's embedding (model, embedder, template) into a new class
    /// while the current one keeps serving, then switch the alias `--class` to it.
    #[arg(long, env = "VECSYNC_REINDEX")]
    pub reindex: bool,
    /// The class the re-index builds (default: `<class>_<fingerprint8>`).
    #[arg(long, env = "VECSYNC_TARGET_CLASS", requires = "reindex")]
    pub target_class: Option<String>,
    /// Delete the old class after the switch (default: keep it, e.g. to switch back by hand).
    #[arg(long, env = "VECSYNC_DROP_OLD", requires = "reindex")]
    pub drop_old: bool,
    /// The in-process model that built the current index, when this run uses another model.
    #[arg(
        long,
        env = "VECSYNC_PREVIOUS_MODEL",
        requires = "reindex",
        conflicts_with = "previous_embedder"
    )]
    pub previous_model: Option<PathBuf>,
    /// The OpenAI-compatible server whose model built the current index (API base), when this
    /// run uses another model.
    #[arg(
        long,
        env = "VECSYNC_PREVIOUS_EMBEDDER",
        value_name = "URL",
        requires = "reindex"
    )]
    pub previous_embedder: Option<String>,
    /// The model name sent to --previous-embedder.
    #[arg(
        long,
        env = "VECSYNC_PREVIOUS_EMBEDDER_MODEL",
        value_name = "NAME",
        default_value = "all-MiniLM-L6-v2"
    )]
    pub previous_embedder_model: String,
    /// API key for --previous-embedder (prefer the environment variable).
    #[arg(
        long,
        env = "VECSYNC_PREVIOUS_EMBEDDER_API_KEY",
        hide_env_values = true,
        requires = "previous_embedder"
    )]
    pub previous_embedder_api_key: Option<String>,
    /// Replica server id of the building pipeline's binlog connection (default: --server-id + 1);
    /// unique among the server's replicas.
    #[arg(long, env = "VECSYNC_REINDEX_SERVER_ID", requires = "reindex")]
    pub reindex_server_id: Option<u32>,
}

/// Why the `--reindex` flags cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ReindexArgsError {
    #[error("--target-class: {0}")]
    TargetClass(String),
    #[error("--previous-embedder-model must not be empty")]
    EmptyModel,
}

/// Where the previous embedding's vectors come from, when not from this run's model.
#[derive(Debug, Clone)]
pub struct ReindexConfig {
    pub target_class: Option<String>,
    pub drop_old: bool,
    /// `None`: this run's model (or embedder) with the recorded template.
    pub previous: Option<EmbedderSource>,
    pub server_id: Option<u32>,
}

impl ReindexArgs {
    /// `None` without `--reindex`.
    pub fn into_config(self) -> Result<Option<ReindexConfig>, ReindexArgsError> {
        if !self.reindex {
            return Ok(None);
        }
        if let Some(class) = &self.target_class {
            validate_class_name(class).map_err(ReindexArgsError::TargetClass)?;
        }
        let previous = match (self.previous_model, self.previous_embedder) {
            (Some(dir), _) => Some(EmbedderSource::Local(dir)),
            (None, Some(url)) => {
                let model = self.previous_embedder_model.trim();
                if model.is_empty() {
                    return Err(ReindexArgsError::EmptyModel);
                }
                let mut remote = RemoteConfig::new(url.trim(), model);
                remote.api_key = self
                    .previous_embedder_api_key
                    .filter(|k| !k.is_empty())
                    .map(Secret::new);
                Some(EmbedderSource::Remote(remote))
            }
            (None, None) => None,
        };
        Ok(Some(ReindexConfig {
            target_class: self.target_class,
            drop_old: self.drop_old,
            previous,
            server_id: self.reindex_server_id,
        }))
    }
}

/// A re-index that cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ReindexError {
    #[error(
        "nothing to re-index: Weaviate has neither a class nor an alias `{name}`; start without \
         --reindex to build the index"
    )]
    NothingToReindex { name: String },
    #[error(
        "the re-index target `{target}` is the class that serves `{name}` now; choose another \
         --target-class"
    )]
    TargetIsServing { name: String, target: String },
    #[error(
        "Weaviate class `{class}` has no embedding record, so the embedding that keeps it up to \
         date during the re-index is unknown: start once without --reindex with the configuration \
         that built it (vecsync records it), then restart with --reindex"
    )]
    NoRecord { class: String },
    #[error(
        "the embedding record of Weaviate class `{class}` cannot be read ({reason}); restore the \
         class description"
    )]
    BadRecord { class: String, reason: String },
    #[error("the template recorded in Weaviate class `{class}` does not parse: {cause}")]
    RecordedTemplate { class: String, cause: TemplateError },
    #[error(
        "Weaviate class `{class}` was built with embedding {recorded}, but the previous embedding \
         vecsync would keep it up to date with during the re-index is {previous}; name the model \
         that built it with --previous-model DIR or --previous-embedder URL \
         --previous-embedder-model NAME"
    )]
    PreviousMismatch {
        class: String,
        recorded: String,
        previous: String,
    },
    #[error(
        "a re-index is in progress ({path} exists): restart with --reindex and the same flags to \
         continue it, or remove that file (and the class it builds) to abandon it"
    )]
    InProgress { path: PathBuf },
    #[error(
        "`{name}` became an alias while the re-index built its class (another process changed \
         Weaviate); nothing was switched: restart with --reindex to continue from there"
    )]
    Changed { name: String },
    #[error("cannot move the re-index checkpoint {from} to {to}: {cause}")]
    Promote {
        from: PathBuf,
        to: PathBuf,
        cause: std::io::Error,
    },
}

/// The building pipeline's checkpoint: `<checkpoint>.reindex`.
pub fn reindex_checkpoint(main: &Path) -> PathBuf {
    let mut name = main.as_os_str().to_owned();
    name.push(".reindex");
    PathBuf::from(name)
}

/// Refuse a normal start while a re-index is in progress (its checkpoint exists).
pub fn refuse_if_in_progress(config: &Config) -> Result<(), ReindexError> {
    let path = reindex_checkpoint(&config.checkpoint);
    if path.exists() {
        return Err(ReindexError::InProgress { path });
    }
    Ok(())
}

/// The sink for `cfg.class`, or for the class the alias of that name points to: vecsync writes
/// and checks the schema by the concrete name (schema calls do not take aliases). Waits while
/// Weaviate cannot be reached.
pub async fn through_alias(
    mut cfg: WeaviateConfig,
    health: &Health,
) -> Result<WeaviateSink, PipelineError> {
    let sink = WeaviateSink::new(cfg.clone())?;
    let name = cfg.class.clone();
    let target = match until_weaviate(health, || sink.alias_target(&name)).await {
        // An API key without the right to read aliases (RBAC): fine for a plain class; were the
        // name an alias, the schema check that follows would fail with Weaviate's message.
        Err(SinkError::Status { status, .. }) if status == reqwest::StatusCode::FORBIDDEN => {
            tracing::warn!(class = %name, "the Weaviate API key may not read aliases; taking `{name}` for a class");
            None
        }
        other => other?,
    };
    match target {
        None => Ok(sink),
        Some(class) => {
            tracing::info!(alias = %name, class = %class, "`{name}` is an alias: writing its class `{class}`");
            cfg.class = class;
            Ok(WeaviateSink::new(cfg)?)
        }
    }
}

/// Retry `call` while it fails transiently (Weaviate starting or unreachable), `/readyz` saying
/// why; a definite error is returned.
async fn until_weaviate<T, F, Fut>(health: &Health, mut call: F) -> Result<T, SinkError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SinkError>>,
{
    let mut attempts = Attempts::new(HOLD_BACKOFF);
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(error) if error.is_transient() => {
                let delay = attempts.fail(None);
                health.set_not_ready(format!("waiting for Weaviate: {error}"));
                tracing::warn!(%error, attempt = attempts.failures(), retry_in_ms = delay.as_millis() as u64, "Weaviate not ready; waiting");
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error),
        }
    }
}

fn describe_metrics() {
    metrics::describe_gauge!(
        REINDEX_IN_PROGRESS,
        "1 while a re-index builds its new class or switches to it, 0 after the switch."
    );
    metrics::describe_gauge!(
        REINDEX_SNAPSHOT_ROWS,
        "Rows the re-index's snapshot has written into the new class."
    );
    metrics::describe_gauge!(
        REINDEX_CAUGHT_UP,
        "1 once the re-index's new class has caught up with the stream (the switch follows)."
    );
    metrics::describe_gauge!(
        REINDEX_SWITCH_GAP_SECONDS,
        "How long searches of the alias name could fail at the switch: 0 for an alias switch, \
         the delete-then-create time for the one-time migration from a plain class."
    );
}

/// What `--class` names in Weaviate now.
#[derive(Debug, Clone, PartialEq)]
enum Serving {
    /// An alias of this class.
    Alias(String),
    /// A plain class of that name (the seed's index).
    Plain,
    /// Neither.
    Nothing,
}

/// A sink for schema and alias calls on `class` (it writes no vectors, so its dimension does not
/// matter).
fn admin_sink(config: &Config, class: &str) -> Result<WeaviateSink, SinkError> {
    let mut cfg = WeaviateConfig::new(config.weaviate_url.clone());
    cfg.api_key = config.weaviate_api_key.clone();
    cfg.class = class.to_owned();
    cfg.vector_dimensions = 1;
    WeaviateSink::new(cfg)
}

/// An embedder, open and probed, with its fingerprint.
type Opened = (TextEmbedder, Probe, Fingerprint);

/// Open and probe `embedder` (a remote one is waited for while it cannot be reached) and
/// compute its fingerprint.
async fn open(
    config: &Config,
    embedder: &EmbedderConfig,
    health: &Arc<Health>,
) -> Result<Opened, PipelineError> {
    let mut probing = config.clone();
    probing.embedder = embedder.clone();
    let (opened, probe) = super::start_embedder(&probing, health).await?;
    let fingerprint = {
        let (embedder, opened) = (embedder.clone(), opened.clone());
        tokio::task::spawn_blocking(move || embedder.fingerprint(&opened)).await??
    };
    Ok((opened, probe, fingerprint))
}

/// Run a re-index, then go on as the normal pipeline on the new class until `cancel`.
pub async fn run(
    config: &Config,
    rc: &ReindexConfig,
    health: &Arc<Health>,
    cancel: &CancellationToken,
) -> Result<(), PipelineError> {
    describe_metrics();
    let name = config.class.clone();
    let building_checkpoint = reindex_checkpoint(&config.checkpoint);
    let admin = admin_sink(config, &name)?;
    let start = tokio::select! {
        start = plan(config, rc, &admin, health) => start?,
        () = cancel.cancelled() => return Ok(()),
    };
    let (serving, serving_class, previous, target, new) = match start {
        Start::Switched(new) => return normal(config, health, cancel, new).await,
        Start::Build {
            serving,
            serving_class,
            previous,
            target,
            new,
        } => (serving, serving_class, previous, target, new),
    };
    metrics::gauge!(REINDEX_IN_PROGRESS).set(1.0);
    metrics::gauge!(REINDEX_CAUGHT_UP).set(0.0);
    tracing::info!(
        alias = %name,
        serving = %serving_class,
        previous = %describe(&previous.1.2),
        target = %target,
        embedding = %describe(&new.2),
        checkpoint = %building_checkpoint.display(),
        "re-index: the current class keeps serving with its embedding while the new class is built"
    );

    let mut serving_config = config.clone();
    serving_config.reindex = None;
    serving_config.class = serving_class.clone();
    serving_config.embedder = previous.0;
    let serving_embedder = Some((previous.1.0, previous.1.1));
    let building_config = building(config, rc, &target, &building_checkpoint);

    let serving_cancel = cancel.child_token();
    let building_cancel = cancel.child_token();
    let building_health = Health::detached();
    let mut serving_task = {
        let (cfg, h, c) = (
            serving_config.clone(),
            health.clone(),
            serving_cancel.clone(),
        );
        tokio::spawn(async move { super::replicate_with(&cfg, &h, &c, serving_embedder).await })
    };
    let mut building_task = {
        let (cfg, h, c) = (
            building_config.clone(),
            building_health.clone(),
            building_cancel.clone(),
        );
        let opened = Some((new.0.clone(), new.1.clone()));
        tokio::spawn(async move { super::replicate_with(&cfg, &h, &c, opened).await })
    };

    // Until the new class has caught up: a pipeline that stops (an error, or the cancellation)
    // stops the other.
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let mut last_logged = Instant::now();
    let watched = loop {
        tokio::select! {
            ended = &mut serving_task => break Watch::ServingEnded(ended),
            ended = &mut building_task => break Watch::BuildingEnded(ended),
            _ = tick.tick() => {
                let path = building_checkpoint.clone();
                let data = match tokio::task::spawn_blocking(move || crate::checkpoint::read(&path)).await {
                    Ok(Ok(data)) => data,
                    Ok(Err(e)) => break Watch::Failed(e.into()),
                    Err(e) => break Watch::Failed(e.into()),
                };
                let progress = Progress::of(data.as_ref(), health.checkpoint().as_ref(), &building_health);
                health.set_note("reindex", progress.describe(&serving_class, &target));
                metrics::gauge!(REINDEX_SNAPSHOT_ROWS).set(progress.rows as f64);
                if last_logged.elapsed() >= Duration::from_secs(10) {
                    tracing::info!(target = %target, "{}", progress.describe(&serving_class, &target));
                    last_logged = Instant::now();
                }
                if progress.caught_up {
                    break Watch::CaughtUp;
                }
            }
        }
    };
    let unexpected = |which: &str| {
        PipelineError::Internal(format!(
            "the {which} pipeline of the re-index stopped before the switch without an error"
        ))
    };
    match watched {
        Watch::CaughtUp => {}
        Watch::ServingEnded(ended) => {
            building_cancel.cancel();
            let other = building_task.await;
            ended??;
            other??;
            return if cancel.is_cancelled() {
                Ok(())
            } else {
                Err(unexpected("serving"))
            };
        }
        Watch::BuildingEnded(ended) => {
            serving_cancel.cancel();
            let other = serving_task.await;
            ended??;
            other??;
            return if cancel.is_cancelled() {
                Ok(())
            } else {
                Err(unexpected("building"))
            };
        }
        Watch::Failed(error) => {
            serving_cancel.cancel();
            building_cancel.cancel();
            let _ = serving_task.await;
            let _ = building_task.await;
            return Err(error);
        }
    }

    metrics::gauge!(REINDEX_CAUGHT_UP).set(1.0);
    tracing::info!(serving = %serving_class, target = %target, "re-index caught up: stopping the serving pipeline and switching");
    health.set_note(
        "reindex",
        format!("re-index: switching `{name}` from `{serving_class}` to `{target}`"),
    );
    serving_cancel.cancel();
    if let Err(error) = serving_task.await.unwrap_or_else(|e| Err(e.into())) {
        building_cancel.cancel();
        let _ = building_task.await;
        return Err(error);
    }

    let switched: Result<(), PipelineError> = match serving {
        Serving::Alias(_) => hold(health, "weaviate", || admin.switch_alias(&name, &target))
            .await
            .map_err(PipelineError::from)
            .map(|()| {
                metrics::gauge!(REINDEX_SWITCH_GAP_SECONDS).set(0.0);
                tracing::info!(alias = %name, from = %serving_class, to = %target, "alias switched");
            }),
        _ => {
            // The one-time migration: a class and an alias cannot share a name, so the plain
            // class goes first and the alias follows at once.
            // Deleting by a name that became an alias meanwhile could drop the class it points
            // to: look again right before.
            let gap = async {
                if until_weaviate(health, || admin.alias_target(&name))
                    .await?
                    .is_some()
                {
                    return Err(ReindexError::Changed { name: name.clone() }.into());
                }
                let started = Instant::now();
                hold(health, "weaviate", || admin.delete_class(&name)).await?;
                hold(health, "weaviate", || admin.create_alias(&name, &target)).await?;
                Ok::<_, PipelineError>(started.elapsed())
            }
            .await;
            gap.map(|gap| {
                metrics::gauge!(REINDEX_SWITCH_GAP_SECONDS).set(gap.as_secs_f64());
                tracing::info!(
                    alias = %name,
                    to = %target,
                    gap_ms = gap.as_secs_f64() * 1000.0,
                    "migrated: the plain class `{name}` (built with the previous embedding) is \
                     deleted and `{name}` is now an alias of `{target}`; searches of `{name}` \
                     could fail only during the gap"
                );
            })
        }
    };
    if let Err(error) = switched {
        building_cancel.cancel();
        let _ = building_task.await;
        return Err(error);
    }

    // The new class keeps streaming until here; drain it, then hand its checkpoint over.
    building_cancel.cancel();
    building_task.await??;
    finish(config, rc, &admin, health, &target).await?;
    if cancel.is_cancelled() {
        return Ok(());
    }
    normal(config, health, cancel, new).await
}

/// How watching the two pipelines ended.
enum Watch {
    CaughtUp,
    ServingEnded(Result<Result<(), PipelineError>, tokio::task::JoinError>),
    BuildingEnded(Result<Result<(), PipelineError>, tokio::task::JoinError>),
    Failed(PipelineError),
}

/// What the start finds.
// One value per start: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Start {
    /// The switch is done (and finished): run normally, with this embedder.
    Switched(Opened),
    /// Build `target` while `serving_class` serves with `previous`.
    Build {
        serving: Serving,
        serving_class: String,
        previous: (EmbedderConfig, Opened),
        target: String,
        new: Opened,
    },
}

/// Look at Weaviate and the checkpoints: a re-index to start or resume, or one whose switch
/// happened already (then it is finished here).
async fn plan(
    config: &Config,
    rc: &ReindexConfig,
    admin: &WeaviateSink,
    health: &Arc<Health>,
) -> Result<Start, PipelineError> {
    let name = config.class.clone();
    let building_checkpoint = reindex_checkpoint(&config.checkpoint);
    let new = open(config, &config.embedder, health).await?;
    let target = rc
        .target_class
        .clone()
        .unwrap_or_else(|| format!("{name}_{}", new.2.short()));
    validate_class_name(&target).map_err(SinkError::Config)?;

    let serving = until_weaviate(health, || async {
        if let Some(class) = admin.alias_target(&name).await? {
            return Ok(Serving::Alias(class));
        }
        if admin.class_exists(&name).await? {
            return Ok(Serving::Plain);
        }
        Ok(Serving::Nothing)
    })
    .await?;
    let serving_class = match &serving {
        Serving::Alias(class) if *class == target => {
            // The switch happened (now or before a crash): finish what is left, then run.
            tracing::info!(alias = %name, class = %target, "the alias points to the re-index target already");
            finish(config, rc, admin, health, &target).await?;
            return Ok(Start::Switched(new));
        }
        Serving::Nothing => {
            let resumable = building_checkpoint.exists()
                && until_weaviate(health, || admin.class_exists(&target)).await?;
            if !resumable {
                return Err(ReindexError::NothingToReindex { name }.into());
            }
            // A crash between deleting the plain class and creating the alias.
            tracing::warn!(alias = %name, class = %target, "completing an interrupted migration: creating the alias");
            hold(health, "weaviate", || admin.create_alias(&name, &target)).await?;
            finish(config, rc, admin, health, &target).await?;
            return Ok(Start::Switched(new));
        }
        Serving::Alias(class) => class.clone(),
        Serving::Plain => name.clone(),
    };
    if serving_class == target {
        return Err(ReindexError::TargetIsServing { name, target }.into());
    }
    let previous = previous_embedding(config, rc, &serving_class, &new, health).await?;
    Ok(Start::Build {
        serving,
        serving_class,
        previous,
        target,
        new,
    })
}

/// The building pipeline's configuration: the new class, its own checkpoint, binlog connection
/// and dead-letter file; always a snapshot (resumed from its checkpoint), never `--gtid`.
fn building(config: &Config, rc: &ReindexConfig, target: &str, checkpoint: &Path) -> Config {
    let mut c = config.clone();
    c.reindex = None;
    c.class = target.to_owned();
    c.checkpoint = checkpoint.to_owned();
    c.gtid = None;
    c.snapshot = match config.snapshot {
        SnapshotMode::WhenNeeded => SnapshotMode::WhenNeeded,
        _ => SnapshotMode::Initial,
    };
    c.server_id = rc
        .server_id
        .unwrap_or_else(|| config.server_id.wrapping_add(1));
    let mut dead = config.dead_letter.as_os_str().to_owned();
    dead.push(".reindex");
    c.dead_letter = PathBuf::from(dead);
    // Events are emitted once, by the serving pipeline.
    c.emit_events = None;
    c
}

/// The embedding that built `class`, rebuilt from its record: this run's model (or
/// `--previous-*`) with the recorded template; refused unless its fingerprint is the recorded
/// one.
async fn previous_embedding(
    config: &Config,
    rc: &ReindexConfig,
    class: &str,
    new: &Opened,
    health: &Arc<Health>,
) -> Result<(EmbedderConfig, Opened), PipelineError> {
    let sink = admin_sink(config, class)?;
    let text = until_weaviate(health, || sink.embedding_record())
        .await?
        .ok_or_else(|| ReindexError::NoRecord {
            class: class.to_owned(),
        })?;
    let recorded: Fingerprint =
        serde_json::from_str(&text).map_err(|e| ReindexError::BadRecord {
            class: class.to_owned(),
            reason: e.to_string(),
        })?;
    if !recorded.is_consistent() {
        return Err(ReindexError::BadRecord {
            class: class.to_owned(),
            reason: "its id is not the hash of its model and template".into(),
        }
        .into());
    }
    let template =
        Template::parse(recorded.template()).map_err(|cause| ReindexError::RecordedTemplate {
            class: class.to_owned(),
            cause,
        })?;
    let opened = match &rc.previous {
        // This run's model with the recorded template: the same embedder (one model in memory
        // for both pipelines), another fingerprint.
        None => {
            let (embedder, probe, fp) = new;
            let previous = Fingerprint::new(fp.model().clone(), template.source());
            (embedder.clone(), probe.clone(), previous)
        }
        Some(source) => {
            let previous = EmbedderConfig {
                source: source.clone(),
                template: template.clone(),
            };
            open(config, &previous, health).await?
        }
    };
    if opened.2.as_str() != recorded.as_str() {
        return Err(ReindexError::PreviousMismatch {
            class: class.to_owned(),
            recorded: describe(&recorded),
            previous: describe(&opened.2),
        }
        .into());
    }
    let source = rc
        .previous
        .clone()
        .unwrap_or_else(|| config.embedder.source.clone());
    Ok((EmbedderConfig { source, template }, opened))
}

/// After the switch: drop the old class when asked, and make the building checkpoint the main
/// one. Idempotent, so a restart after a crash completes it.
async fn finish(
    config: &Config,
    rc: &ReindexConfig,
    admin: &WeaviateSink,
    health: &Arc<Health>,
    target: &str,
) -> Result<(), PipelineError> {
    let name = &config.class;
    let building_checkpoint = reindex_checkpoint(&config.checkpoint);
    // The main checkpoint names the class the serving pipeline wrote: the old one.
    let main = config.checkpoint.clone();
    let old = tokio::task::spawn_blocking(move || crate::checkpoint::read(&main))
        .await??
        .and_then(|d| d.embedding)
        .map(|e| e.class)
        .filter(|old| old != name && old != target);
    if let Some(old) = old {
        let exists = until_weaviate(health, || admin.class_exists(&old)).await?;
        if exists && rc.drop_old {
            hold(health, "weaviate", || admin.delete_class(&old)).await?;
            tracing::info!(class = %old, "--drop-old: deleted the old class");
        } else if exists {
            tracing::info!(class = %old, "the old class is kept (delete it with --drop-old next time, or by hand)");
        }
    }
    if building_checkpoint.exists() {
        let (from, to) = (building_checkpoint.clone(), config.checkpoint.clone());
        tokio::task::spawn_blocking(move || promote(&from, &to)).await??;
        tracing::info!(checkpoint = %config.checkpoint.display(), "the re-index checkpoint is now the main checkpoint");
    }
    metrics::gauge!(REINDEX_IN_PROGRESS).set(0.0);
    health.clear_note("reindex");
    Ok(())
}

/// Rename `from` over `to` and sync the directory: the main checkpoint is either the old one or
/// the new one.
fn promote(from: &Path, to: &Path) -> Result<(), ReindexError> {
    let failed = |cause| ReindexError::Promote {
        from: from.to_owned(),
        to: to.to_owned(),
        cause,
    };
    std::fs::rename(from, to).map_err(failed)?;
    let dir = match to.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::File::open(&dir)
        .and_then(|f| f.sync_all())
        .map_err(failed)
}

/// The normal single pipeline, on the class the alias points to now.
async fn normal(
    config: &Config,
    health: &Arc<Health>,
    cancel: &CancellationToken,
    (embedder, probe, _): Opened,
) -> Result<(), PipelineError> {
    let mut c = config.clone();
    c.reindex = None;
    super::replicate_with(&c, health, cancel, Some((embedder, probe))).await
}

/// How far the building pipeline is.
#[derive(Debug, Default, PartialEq)]
struct Progress {
    rows: u64,
    snapshot_done: bool,
    position: Option<String>,
    waiting_for: Option<String>,
    held: Option<String>,
    caught_up: bool,
}

impl Progress {
    /// From the building checkpoint, the serving pipeline's confirmed position, and the building
    /// pipeline's health.
    fn of(
        building: Option<&CheckpointData>,
        serving: Option<&crate::position::GtidPosition>,
        building_health: &Health,
    ) -> Progress {
        let rows = building
            .and_then(|d| d.snapshot.as_ref())
            .map_or(0, |s| s.rows_done);
        // The first stored checkpoint of a building run carries its snapshot's progress, so a
        // checkpoint without one means the snapshot and its sweep are done.
        let snapshot_done = building.is_some_and(|d| d.snapshot.is_none());
        let held = building_health.not_ready();
        let covers = match (building, serving) {
            (Some(d), Some(s)) => d.gtid.covers(s),
            _ => false,
        };
        Progress {
            rows,
            snapshot_done,
            position: building.map(|d| d.gtid.to_string()),
            waiting_for: serving.map(ToString::to_string),
            caught_up: snapshot_done && covers && held.is_none(),
            held,
        }
    }

    fn describe(&self, serving: &str, target: &str) -> String {
        let mut s = format!("re-index: `{serving}` serves while `{target}` is built: ");
        if self.snapshot_done {
            s.push_str("snapshot done");
        } else {
            s.push_str(&format!("snapshot {} rows", self.rows));
        }
        if let Some(p) = &self.position {
            s.push_str(&format!(", at {p}"));
        }
        if let Some(w) = &self.waiting_for {
            s.push_str(&format!(", serving at {w}"));
        }
        if let Some(h) = &self.held {
            s.push_str(&format!(", held: {h}"));
        }
        if self.caught_up {
            s.push_str(", caught up");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::SnapshotProgress;

    fn data(gtid: &str, snapshot: Option<u64>) -> CheckpointData {
        CheckpointData {
            version: 2,
            gtid: gtid.parse().expect("gtid"),
            table: "catalog.products".into(),
            updated_at_ms: 0,
            snapshot: snapshot.map(|rows| SnapshotProgress {
                id: "s".into(),
                started_ms: 0,
                after_key: None,
                next_seq: 1,
                rows_done: rows,
                sweep: None,
            }),
            embedding: None,
        }
    }

    #[test]
    fn caught_up_only_with_the_snapshot_done_and_the_serving_position_covered() {
        let health = Health::detached();
        health.set_ready();
        let serving: crate::position::GtidPosition = "0-1-10".parse().expect("gtid");
        let cases = [
            (None, false),
            (Some(data("0-1-12", Some(100))), false),
            (Some(data("0-1-9", None)), false),
            (Some(data("0-1-10", None)), true),
            (Some(data("0-1-11", None)), true),
        ];
        for (building, want) in cases {
            let p = Progress::of(building.as_ref(), Some(&serving), &health);
            assert_eq!(p.caught_up, want, "{building:?}");
        }
        // Not while the building pipeline is held, nor before the serving one has a position.
        let done = data("0-1-11", None);
        assert!(!Progress::of(Some(&done), None, &health).caught_up);
        health.set_held("weaviate", "down");
        let p = Progress::of(Some(&done), Some(&serving), &health);
        assert!(!p.caught_up);
        assert!(p.describe("Product", "Product_x").contains("held: "));
    }

    fn flags(args: &[&str]) -> Result<Config, String> {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            run: crate::config::RunArgs,
        }
        let mut full = vec!["vecsync"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full)
            .map_err(|e| e.to_string())?
            .run
            .into_config()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_building_pipeline_has_its_own_checkpoint_connection_and_dead_letters() {
        assert_eq!(
            reindex_checkpoint(Path::new("/state/vecsync.checkpoint")),
            PathBuf::from("/state/vecsync.checkpoint.reindex")
        );
        let config = flags(&[
            "--reindex",
            "--checkpoint",
            "/state/cp",
            "--dead-letter",
            "/state/dead.jsonl",
            "--server-id",
            "7",
            "--gtid",
            "0-1-5",
            "--snapshot",
            "never",
            "--emit-events",
            "-",
        ])
        .expect("valid");
        let rc = config.reindex.clone().expect("--reindex");
        let b = building(
            &config,
            &rc,
            "Product_abc",
            &reindex_checkpoint(&config.checkpoint),
        );
        assert_eq!(b.class, "Product_abc");
        assert_eq!(b.checkpoint, PathBuf::from("/state/cp.reindex"));
        assert_eq!(b.dead_letter, PathBuf::from("/state/dead.jsonl.reindex"));
        assert_eq!(b.server_id, 8);
        // The new class is always built from a snapshot, and events are emitted once.
        assert_eq!((b.gtid, b.snapshot), (None, SnapshotMode::Initial));
        assert!(b.emit_events.is_none() && b.reindex.is_none());
    }

    #[test]
    fn reindex_flags_are_checked_and_need_reindex() {
        assert!(flags(&[]).expect("valid").reindex.is_none());
        let e = flags(&["--reindex", "--target-class", "product_new"]).expect_err("bad");
        assert!(e.contains("--target-class"), "{e}");
        for lone in [
            &["--drop-old"][..],
            &["--previous-model", "m"],
            &["--target-class", "Product_x"],
        ] {
            assert!(flags(lone).is_err(), "{lone:?} without --reindex");
        }
        let c = flags(&[
            "--reindex",
            "--previous-embedder",
            "http://tei:8080/v1",
            "--previous-embedder-model",
            "bge",
            "--previous-embedder-api-key",
            "sk-9",
        ])
        .expect("valid");
        let Some(EmbedderSource::Remote(r)) = c.reindex.as_ref().and_then(|r| r.previous.clone())
        else {
            panic!("a remote previous embedder");
        };
        assert_eq!(
            (r.url.as_str(), r.model.as_str()),
            ("http://tei:8080/v1", "bge")
        );
        assert!(!format!("{c:?}").contains("sk-9"), "the key never prints");
        assert!(
            flags(&[
                "--reindex",
                "--previous-model",
                "m",
                "--previous-embedder",
                "http://x/v1"
            ])
            .is_err()
        );
    }
}
