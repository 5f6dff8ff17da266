//! `vecsync verify [--repair] [--deep N]`: an index drifted on purpose is reported exactly and
//! repaired; a verify during a write load with the real binary running reports no drift; a
//! vector swapped for another product's is caught by `--deep`; a fingerprint mismatch is named.

use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use vecsync::sink::product_id;
use vecsync::verify::VerifyArgs;
use vecsync::verify::report::Report;

use crate::harness::stack::{Stack, assert_same_vector, model_dir, vector_of};
use crate::harness::{DEFAULT_DEADLINE, wait_until};

async fn products(stack: &Stack, n: usize) {
    let values: Vec<String> = (1..=n)
        .map(|i| format!("('P-{i}', 'Product {i}', 'A sturdy product number {i}.', {i}.50)"))
        .collect();
    stack
        .db
        .exec(&format!(
            "INSERT INTO catalog.products (sku, name, description, price) VALUES {}",
            values.join(",")
        ))
        .await;
}

/// `vecsync verify` flags pointing at this stack, then `extra`.
fn verify_args(stack: &Stack, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--mariadb-url",
        &stack.db.url(),
        "--weaviate-url",
        &stack.weaviate.url(),
        "--memcached",
        &stack.memcached.addr(),
        "--model",
        &model_dir().display().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// Run the real binary's `vecsync verify --json`: its exit code and report.
fn verify_binary(stack: &Stack, extra: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_vecsync"))
        .arg("verify")
        .arg("--json")
        .args(verify_args(stack, extra))
        .env_remove("VECSYNC_CHECKPOINT")
        .env_remove("VECSYNC_URL")
        .env("LOG_LEVEL", "warn")
        .stderr(Stdio::inherit())
        .output()
        .expect("run vecsync verify");
    let code = out.status.code().expect("an exit code");
    let text = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&text).unwrap_or(Value::Null);
    (code, report)
}

/// Run verify in this process.
async fn verify_in_process(stack: &Stack, extra: &[&str]) -> Report {
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        verify: VerifyArgs,
    }
    let mut argv = vec!["vecsync".to_owned()];
    argv.extend(verify_args(stack, extra));
    let options = Flags::try_parse_from(argv)
        .expect("flags parse")
        .verify
        .into_options()
        .expect("valid options");
    vecsync::verify::run(options).await.expect("verify runs")
}

/// The skus a report names for `kind`, sorted, and the count.
fn drift(report: &Value, kind: &str) -> (u64, Vec<String>) {
    let k = &report["drift"][kind];
    let mut skus: Vec<String> = k["examples"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    skus.sort();
    (k["count"].as_u64().expect("a count"), skus)
}

async fn weaviate(method: reqwest::Method, url: String, body: Option<Value>) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.expect("Weaviate answers");
    assert!(
        r.status().is_success(),
        "{}: {}",
        r.status(),
        r.text().await.unwrap_or_default()
    );
}

fn object_url(stack: &Stack, sku: &str) -> String {
    format!(
        "{}/v1/objects/Product/{}",
        stack.weaviate.url(),
        product_id(sku)
    )
}

/// Write (create or replace) object `id` with `properties` and `vector` (none: no vector).
async fn put(stack: &Stack, id: uuid::Uuid, properties: Value, vector: Option<Vec<f32>>) {
    let mut object = json!({"class": "Product", "id": id, "properties": properties});
    if let Some(v) = vector {
        object["vector"] = json!(v);
    }
    weaviate(
        reqwest::Method::POST,
        format!("{}/v1/batch/objects", stack.weaviate.url()),
        Some(json!({ "objects": [object] })),
    )
    .await;
}

/// Index `n` products with the pipeline, then stop it: nothing runs while verify checks.
async fn synced_stack(n: usize) -> Stack {
    let stack = Stack::start().await;
    products(&stack, n).await;
    let running = stack.run_in_process(&[]);
    stack.wait_in_sync().await;
    running.stop().await;
    stack
}

/// The index equals the table: the harness's row-by-row check, and every vector is a fresh
/// embedding of its description.
async fn assert_index_equals_table(stack: &Stack) {
    stack.wait_in_sync().await;
    let table = stack.table().await;
    let embedder = vecsync::embed::TextEmbedder::load_local(&model_dir())
        .await
        .expect("load the model");
    let with_text: Vec<(&String, &String)> = table
        .iter()
        .filter_map(|(sku, (_, d, _))| d.as_ref().filter(|d| !d.is_empty()).map(|d| (sku, d)))
        .collect();
    let fresh = embedder
        .embed(with_text.iter().map(|(_, d)| (*d).clone()).collect())
        .await
        .expect("embed");
    for ((sku, _), want) in with_text.iter().zip(fresh) {
        let obj = stack.object(sku).expect("the object exists");
        assert_same_vector(&vector_of(&obj), &want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifted_index_is_reported_exactly_and_repaired() {
    let stack = synced_stack(12).await;
    // Drift it directly in Weaviate: two objects deleted, two with stale properties, one
    // without its vector, an extra product object and an object vecsync's ids never make.
    for sku in ["P-3", "P-4"] {
        weaviate(reqwest::Method::DELETE, object_url(&stack, sku), None).await;
    }
    weaviate(
        reqwest::Method::PATCH,
        object_url(&stack, "P-5"),
        Some(json!({"class": "Product", "properties": {"price": 999.0}})),
    )
    .await;
    weaviate(
        reqwest::Method::PATCH,
        object_url(&stack, "P-7"),
        Some(json!({"class": "Product", "properties": {"description": "edited by hand"}})),
    )
    .await;
    let p6 = stack.object("P-6").expect("P-6");
    put(&stack, product_id("P-6"), p6["properties"].clone(), None).await;
    let p8 = stack.object("P-8").expect("P-8");
    let mut ghost = p8["properties"].clone();
    ghost["sku"] = json!("GHOST-1");
    put(&stack, product_id("GHOST-1"), ghost, Some(vector_of(&p8))).await;
    let mut alien = p8["properties"].clone();
    alien["sku"] = json!("ALIEN");
    put(&stack, uuid::Uuid::new_v4(), alien, Some(vector_of(&p8))).await;

    let (code, report) = verify_binary(&stack, &[]);
    assert_eq!(code, 1, "drift exits 1: {report:#}");
    assert_eq!(report["in_sync"], json!(false));
    assert_eq!(report["rows"], json!(14), "{report:#}"); // 12 + the seed's 2
    assert_eq!(
        drift(&report, "missing"),
        (2, vec!["P-3".into(), "P-4".into()])
    );
    assert_eq!(
        drift(&report, "stale"),
        (2, vec!["P-5".into(), "P-7".into()])
    );
    assert_eq!(drift(&report, "no_vector"), (1, vec!["P-6".into()]));
    assert_eq!(
        drift(&report, "extra"),
        (2, vec!["ALIEN".into(), "GHOST-1".into()])
    );
    assert_eq!(drift(&report, "wrong_dimension"), (0, vec![]));
    assert_eq!(drift(&report, "vector_mismatch"), (0, vec![]));
    assert_eq!(report["fingerprint"]["matches"], json!(true), "{report:#}");

    // A row written after vecsync stopped is a change its checkpoint never confirms: verify
    // waiting on that checkpoint gives up with exit 2 and says why.
    stack
        .db
        .exec("INSERT INTO catalog.products (sku, name, description, price) VALUES ('LATE-1', 'Late', 'Written while vecsync is stopped.', 1.00)")
        .await;
    let checkpoint = stack.checkpoint_path().display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_vecsync"))
        .arg("verify")
        .args(verify_args(
            &stack,
            &["--checkpoint", &checkpoint, "--settle-timeout", "1"],
        ))
        .env("LOG_LEVEL", "warn")
        .output()
        .expect("run vecsync verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("behind or stopped"), "{stderr}");

    let (code, report) = verify_binary(&stack, &["--repair"]);
    assert_eq!(code, 0, "everything repaired exits 0: {report:#}");
    assert_eq!(report["in_sync"], json!(true), "{report:#}");
    assert_eq!(report["repair"]["written"], json!(6), "{report:#}"); // 5 + LATE-1
    assert_eq!(report["repair"]["deleted"], json!(2), "{report:#}");
    assert_eq!(
        report["repair"]["remaining"]["count"],
        json!(0),
        "{report:#}"
    );

    let (code, report) = verify_binary(&stack, &[]);
    assert_eq!(code, 0, "a second verify finds nothing: {report:#}");
    assert_eq!(report["suspects"], json!(0), "{report:#}");
    assert_index_equals_table(&stack).await;
    assert!(
        stack
            .weaviate
            .object("Product", product_id("GHOST-1"))
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_catches_a_vector_of_another_product() {
    let stack = synced_stack(10).await;
    let p2 = stack.object("P-2").expect("P-2");
    let p9 = stack.object("P-9").expect("P-9");
    put(
        &stack,
        product_id("P-2"),
        p2["properties"].clone(),
        Some(vector_of(&p9)),
    )
    .await;

    let (code, report) = verify_binary(&stack, &[]);
    assert_eq!(
        code, 0,
        "without --deep the vector is not compared: {report:#}"
    );

    let (code, report) = verify_binary(&stack, &["--deep", "100", "--seed", "7"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(drift(&report, "vector_mismatch"), (1, vec!["P-2".into()]));
    assert_eq!(report["deep"]["seed"], json!(7));
    assert_eq!(report["deep"]["sampled"], json!(12), "{report:#}");

    let (code, report) = verify_binary(&stack, &["--deep", "100", "--repair"]);
    assert_eq!(code, 0, "{report:#}");
    let (code, report) = verify_binary(&stack, &["--deep", "100"]);
    assert_eq!(code, 0, "{report:#}");
    assert_index_equals_table(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fingerprint_mismatch_is_reported_and_not_repaired() {
    let stack = synced_stack(3).await;
    // Another template is another embedding identity.
    let other = ["--embed-template", "{name}: {description}"];
    let (code, report) = verify_binary(&stack, &other);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["fingerprint"]["matches"], json!(false), "{report:#}");
    assert_ne!(
        report["fingerprint"]["recorded"],
        report["fingerprint"]["configured"]
    );
    let out = Command::new(env!("CARGO_BIN_EXE_vecsync"))
        .arg("verify")
        .arg("--repair")
        .args(verify_args(&stack, &other))
        .env("LOG_LEVEL", "warn")
        .output()
        .expect("run vecsync verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--reindex"), "{stderr}");
    let (code, report) = verify_binary(&stack, &[]);
    assert_eq!(code, 0, "{report:#}");
}

/// `count` random inserts, updates, sku changes and deletes, one statement per transaction.
async fn write_load(
    stack: &Stack,
    rng: &mut StdRng,
    count: usize,
    next: &mut usize,
    live: &mut Vec<usize>,
) {
    let mut conn = stack.db.conn().await;
    for _ in 0..count {
        let roll = rng.random_range(0..100);
        let pick = (!live.is_empty()).then(|| rng.random_range(0..live.len()));
        let sql = match (roll, pick) {
            (0..=34, _) | (_, None) => {
                *next += 1;
                live.push(*next);
                format!(
                    "INSERT INTO catalog.products (sku, name, description, price) VALUES ('W-{n}', 'Load {n}', 'load product {n} colour {c}', {p}.25)",
                    n = *next,
                    c = rng.random_range(0..50),
                    p = rng.random_range(1..300)
                )
            }
            (35..=59, Some(i)) => format!(
                "UPDATE catalog.products SET description = 'changed {} for {}' WHERE sku = 'W-{}'",
                rng.random::<u32>(),
                live[i],
                live[i]
            ),
            (60..=74, Some(i)) => format!(
                "UPDATE catalog.products SET price = {}.75 WHERE sku = 'W-{}'",
                rng.random_range(1..300),
                live[i]
            ),
            (75..=87, Some(i)) => {
                *next += 1;
                let old = std::mem::replace(&mut live[i], *next);
                format!("UPDATE catalog.products SET sku = 'W-{next}' WHERE sku = 'W-{old}'")
            }
            (_, Some(i)) => {
                let gone = live.swap_remove(i);
                format!("DELETE FROM catalog.products WHERE sku = 'W-{gone}'")
            }
        };
        mysql_async::prelude::Queryable::query_drop(&mut conn, sql)
            .await
            .expect("write");
    }
    conn.disconnect().await.expect("disconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_during_a_write_load_reports_no_drift() {
    let seed: u64 = std::env::var("VECSYNC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!(
        "verify_during_a_write_load_reports_no_drift: seed {seed} (replay with VECSYNC_TEST_SEED={seed})"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let stack = Stack::start().await;
    let (mut next, mut live) = (0, Vec::new());
    write_load(&stack, &mut rng, 100, &mut next, &mut live).await;
    let vecsync = Running(stack.spawn_binary(&[]));
    stack.wait_in_sync().await;

    // A steady load the instance keeps up with on a shared 2-core machine (about 50 changes/s,
    // a third of them needing an embedding): the ticks pace the load, they synchronise nothing.
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = {
        let stop = stop.clone();
        let stack = &stack;
        async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(100));
            let mut rounds = 0u32;
            while !stop.is_cancelled() {
                ticks.tick().await;
                write_load(stack, &mut rng, 5, &mut next, &mut live).await;
                rounds += 1;
            }
            rounds
        }
    };
    let url = format!("http://127.0.0.1:{}", stack.metrics_port);
    let checks = async {
        let mut reports = Vec::new();
        for _ in 0..3 {
            reports.push(verify_in_process(&stack, &["--vecsync-url", &url]).await);
        }
        // Real drift under the same load (rows the writer never touches): reported exactly,
        // then repaired while the load goes on.
        weaviate(reqwest::Method::DELETE, object_url(&stack, "TS-001"), None).await;
        weaviate(
            reqwest::Method::PATCH,
            object_url(&stack, "JN-001"),
            Some(json!({"class": "Product", "properties": {"price": 1234.0}})),
        )
        .await;
        let drifted = verify_in_process(&stack, &["--vecsync-url", &url]).await;
        let repaired = verify_in_process(&stack, &["--vecsync-url", &url, "--repair"]).await;
        let after = verify_in_process(&stack, &["--vecsync-url", &url]).await;
        stop.cancel();
        (reports, drifted, repaired, after)
    };
    let ((reports, drifted, repaired, after), rounds) = tokio::join!(checks, writer);
    assert!(rounds > 0, "the writer ran");
    for report in reports.iter().chain([&after]) {
        assert!(
            report.in_sync && report.drift_count() == 0,
            "seed {seed}: no drift under load:\n{}",
            report.summary()
        );
        println!("{}", report.summary());
    }
    let summary = drifted.summary();
    assert!(!drifted.in_sync, "seed {seed}: {summary}");
    assert_eq!(drifted.drift_count(), 2, "seed {seed}: {summary}");
    assert_eq!(drifted.drift["missing"].examples, ["TS-001"], "{summary}");
    assert_eq!(drifted.drift["stale"].examples, ["JN-001"], "{summary}");
    assert!(repaired.in_sync, "seed {seed}: {}", repaired.summary());
    let repair = repaired.repair.as_ref().expect("a repair report");
    assert!(repair.written >= 2, "{}", repaired.summary());
    let in_flight: u64 = reports.iter().map(|r| r.in_flight).sum();
    println!("seed {seed}: {rounds} write rounds; {in_flight} differences were changes in flight");

    // Once the load stops and the instance caught up, the index equals the table.
    stack.wait_in_sync().await;
    let mut vecsync = vecsync;
    let status = Command::new("kill")
        .args(["-TERM", &vecsync.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let exit = wait_until("vecsync to exit", DEFAULT_DEADLINE, || {
        let status = vecsync.0.try_wait().expect("try_wait");
        async move { status }
    })
    .await;
    assert!(exit.success(), "{exit}");
}

/// The real binary, killed if the test fails before it stops it.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
