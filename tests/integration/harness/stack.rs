//! The whole stack for end-to-end tests: a private MariaDB with the seed's `catalog.products`,
//! a private memcached, the Weaviate test server, and vecsync itself, either in-process
//! (`vecsync::pipeline::run`) or as the real binary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use mysql_async::prelude::Queryable;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use vecsync::config::{Config, RunArgs};
use vecsync::sink::product_id;
use weaviate_test_server::TestServer;

use super::mariadb::MariaDb;
use super::memcached::Memcached;
use super::{DEFAULT_DEADLINE, free_port, wait_until};

/// The seed's table (and sample rows), from the file docker-compose.yml loads.
pub const CATALOG_SQL: &str = include_str!("../../../schema/catalog.sql");

/// The seed article's update storm: one product's description changed three times in a row,
/// each statement its own transaction.
pub const SEED_STORM_SQL: &str =
    "UPDATE catalog.products SET description = 'new description 1' WHERE sku = 'TS-001';
UPDATE catalog.products SET description = 'new description 2' WHERE sku = 'TS-001';
UPDATE catalog.products SET description = 'new description 3' WHERE sku = 'TS-001';";

/// The real model, fetched by scripts/fetch-model.
pub fn model_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").exists(),
        "the model is missing at {}: run scripts/fetch-model (scripts/test does)",
        dir.display()
    );
    dir
}

/// The catalog-like reference texts and their sentence-transformers vectors (the fixture's
/// first 19 lines are edge cases, which the embedding tests cover).
pub fn golden_descriptions() -> Vec<(String, Vec<f32>)> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/all-MiniLM-L6-v2.jsonl");
    let text = std::fs::read_to_string(&path).expect("read the golden vectors fixture");
    text.lines()
        .skip(19)
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("golden line is JSON");
            let vec = v["vector"]
                .as_array()
                .expect("vector")
                .iter()
                .map(|x| x.as_f64().expect("float") as f32)
                .collect();
            (v["text"].as_str().expect("text").to_owned(), vec)
        })
        .collect()
}

/// Assert `got` is the reference vector `want` (the parity bar of the embeddings issue).
#[track_caller]
pub fn assert_same_vector(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "vector length");
    let dot: f32 = got.iter().zip(want).map(|(a, b)| a * b).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let cos = dot / (norm(got) * norm(want));
    let max_diff = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        cos >= 0.99999 && max_diff <= 1e-4,
        "vector differs from the reference: cos {cos}, max |diff| {max_diff}"
    );
}

/// Every server vecsync talks to, private to one test.
pub struct Stack {
    pub db: MariaDb,
    pub memcached: Memcached,
    pub weaviate: TestServer,
    pub dir: tempfile::TempDir,
    pub metrics_port: u16,
}

impl Stack {
    /// Start the servers and create the seed's catalog (with its two sample rows).
    pub async fn start() -> Stack {
        Self::on(MariaDb::start().await).await
    }

    /// The stack around an already running MariaDB (a replication primary, say), where the
    /// seed's catalog is created.
    pub async fn on(db: MariaDb) -> Stack {
        db.exec(CATALOG_SQL).await;
        Stack {
            db,
            memcached: Memcached::start(),
            weaviate: TestServer::start()
                .await
                .expect("start the Weaviate test server"),
            dir: tempfile::tempdir().expect("tempdir"),
            metrics_port: free_port(),
        }
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.dir.path().join("vecsync.checkpoint")
    }

    pub fn dead_letter_path(&self) -> PathBuf {
        self.dir.path().join("dead.jsonl")
    }

    /// `vecsync run` flags pointing at this stack, then `extra`.
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "--mariadb-url",
            &self.db.url(),
            "--weaviate-url",
            &self.weaviate.url(),
            "--memcached",
            &self.memcached.addr(),
            "--model",
            &model_dir().display().to_string(),
            "--checkpoint",
            &self.checkpoint_path().display().to_string(),
            "--dead-letter",
            &self.dead_letter_path().display().to_string(),
            "--metrics-addr",
            &format!("127.0.0.1:{}", self.metrics_port),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    }

    pub fn config(&self, extra: &[&str]) -> Config {
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            run: RunArgs,
        }
        let mut argv = vec!["vecsync".to_owned()];
        argv.extend(self.args(extra));
        Flags::try_parse_from(argv)
            .expect("flags parse")
            .run
            .into_config()
            .expect("valid config")
    }

    /// Run the pipeline in this process until the returned handle is stopped.
    pub fn run_in_process(&self, extra: &[&str]) -> InProcess {
        let config = self.config(extra);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(vecsync::pipeline::run(config, cancel.clone()));
        InProcess { cancel, task }
    }

    /// Start the real binary with this stack's flags.
    pub fn spawn_binary(&self, extra: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_vecsync"))
            .arg("run")
            .args(self.args(extra))
            .env("LOG_LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the vecsync binary")
    }

    /// The stored Weaviate object of `sku` in class Product (properties and vector), if any.
    pub fn object(&self, sku: &str) -> Option<Value> {
        self.weaviate.object("Product", product_id(sku))
    }

    /// Wait until the object of `sku` satisfies `check` (given `None` when it does not exist).
    pub async fn wait_object<F>(&self, what: &str, sku: &str, check: F) -> Option<Value>
    where
        F: Fn(Option<&Value>) -> bool,
    {
        let sku = sku.to_owned();
        wait_until(what, DEFAULT_DEADLINE, || {
            let obj = self.object(&sku);
            let done = check(obj.as_ref());
            async move { done.then_some(obj) }
        })
        .await
    }

    /// The stored checkpoint position, if any.
    pub fn checkpoint(&self) -> Option<vecsync::position::GtidPosition> {
        vecsync::checkpoint::read(&self.checkpoint_path())
            .expect("readable checkpoint")
            .map(|c| c.gtid)
    }

    /// Wait until the checkpoint covers `position` (e.g. the server's `@@gtid_binlog_pos`).
    pub async fn wait_checkpoint_covers(&self, position: &str) {
        let want: vecsync::position::GtidPosition = position.parse().expect("gtid");
        wait_until(
            "the checkpoint to cover the last write",
            DEFAULT_DEADLINE,
            || {
                let ok = self.checkpoint().is_some_and(|c| c.covers(&want));
                async move { ok.then_some(()) }
            },
        )
        .await;
    }

    /// The dead-letter file's lines (none when it does not exist).
    pub fn dead_letters(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dead_letter_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("dead letter line is JSON"))
            .collect()
    }

    /// `GET /readyz` on the metrics port: status and body, when it answers.
    pub async fn readyz_body(&self) -> Option<(u16, String)> {
        let r = reqwest::get(format!("http://127.0.0.1:{}/readyz", self.metrics_port))
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.unwrap_or_default()))
    }

    /// `GET /readyz` on the metrics port: `Some(status)` when it answers.
    pub async fn readyz(&self) -> Option<u16> {
        reqwest::get(format!("http://127.0.0.1:{}/readyz", self.metrics_port))
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// The rows of catalog.products: sku -> (name, description, price as text).
    pub async fn table(&self) -> BTreeMap<String, (String, Option<String>, Option<String>)> {
        table_of(&self.db).await
    }

    /// Wait until Weaviate holds exactly the table's rows with the same properties, each with a
    /// vector when its description is not empty.
    pub async fn wait_in_sync(&self) {
        self.wait_in_sync_with(&self.db).await
    }

    /// [`Stack::wait_in_sync`] against the table on `db` (a promoted replica, say).
    pub async fn wait_in_sync_with(&self, db: &MariaDb) {
        let deadline = Duration::from_secs(90);
        wait_until(
            "Weaviate to match catalog.products row by row",
            deadline,
            || async {
                let table = table_of(db).await;
                if self.weaviate.object_count("Product") != table.len() {
                    return None;
                }
                for (sku, (name, description, price)) in &table {
                    let obj = self.object(sku)?;
                    let props = &obj["properties"];
                    let want_price = price.as_deref().map(|p| {
                        Value::Number(vecsync::sink::decimal_to_json_number(p).expect("decimal"))
                    });
                    if props["sku"] != Value::String(sku.clone())
                        || props["name"] != Value::String(name.clone())
                        || props.get("description").and_then(Value::as_str)
                            != description.as_deref()
                        || props.get("price").cloned().filter(|p| !p.is_null()) != want_price
                    {
                        return None;
                    }
                    let has_vector = obj
                        .get("vector")
                        .and_then(Value::as_array)
                        .is_some_and(|v| !v.is_empty());
                    if has_vector != description.as_deref().is_some_and(|d| !d.is_empty()) {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await
    }
}

/// The rows of catalog.products on `db`: sku -> (name, description, price as text).
pub async fn table_of(db: &MariaDb) -> BTreeMap<String, (String, Option<String>, Option<String>)> {
    let mut conn = db.conn().await;
    let rows: Vec<(String, String, Option<String>, Option<String>)> = conn
        .query("SELECT sku, name, description, CAST(price AS CHAR) FROM catalog.products")
        .await
        .expect("read the table");
    conn.disconnect().await.expect("disconnect");
    rows.into_iter()
        .map(|(s, n, d, p)| (s, (n, d, p)))
        .collect()
}

/// The vector of a stored object as `TestServer::object` shows it (empty without one).
pub fn vector_of(obj: &Value) -> Vec<f32> {
    obj["vector"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(Value::as_f64)
                .map(|x| x as f32)
                .collect()
        })
        .unwrap_or_default()
}

/// The pipeline running in this process.
pub struct InProcess {
    pub cancel: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), vecsync::pipeline::PipelineError>>,
}

impl InProcess {
    /// Cancel and wait for a clean stop.
    pub async fn stop(self) {
        self.cancel.cancel();
        let result = tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the pipeline stops within 60 s")
            .expect("the pipeline task does not panic");
        result.expect("the pipeline stops without an error");
    }
}

/// The current value of a counter or gauge in this process's metrics (summed over labels
/// matching `labels`, e.g. `op="u"`).
pub fn metric(name: &str, labels: &str) -> f64 {
    let handle = vecsync::telemetry::install_metrics().expect("metrics recorder");
    handle
        .render()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (metric, rest) = key.split_once('{').unwrap_or((key, ""));
            (metric == name && rest.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}
