//! Benchmark of `vecsync verify` (the real binary) on a complete index: rows/s.
//!
//!     cargo bench --bench verify              (release build; BENCH_SHORT=1 for a small run)
//!
//! A private MariaDB holds 20,000 products (2,000 with BENCH_SHORT=1); the Weaviate test server
//! (in this process, on the same cores) holds exactly their objects, written directly with
//! arbitrary unit vectors of the model's dimension (verify without --deep compares properties
//! and vector lengths, not the vectors' values, so the index does not need 20,000 embeddings to
//! be complete). The class and its embedding record come from a short `vecsync run` first.
//! Then `vecsync verify --json` runs with no instance to wait for, and its own figures are
//! printed: rows/s over the comparison (the model load before it excluded) and wall time.

#[path = "../tests/integration/harness/mod.rs"]
mod harness;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use harness::stack::{Stack, model_dir};
use serde_json::json;
use vecsync::sink::product_id;

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let short = std::env::var("BENCH_SHORT").is_ok_and(|v| v == "1");
    let rows = if short { 2_000 } else { 20_000 };
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/catalog-1000.txt");
    let catalog = std::fs::read_to_string(&path).expect("benches/catalog-1000.txt");
    let lines: Vec<&str> = catalog.lines().collect();

    let stack = Stack::start().await;
    // The class, its embedding record and the seed's two objects, by the pipeline itself.
    let running = stack.run_in_process(&[]);
    stack.wait_in_sync().await;
    running.stop().await;

    let http = reqwest::Client::new();
    let dimension = 384;
    for start in (0..rows).step_by(1000) {
        let end = (start + 1000).min(rows);
        let mut values = Vec::with_capacity(end - start);
        let mut objects = Vec::with_capacity(end - start);
        for i in start..end {
            let sku = format!("V-{i}");
            let description = format!("{} #{i}", lines[i % lines.len()]);
            let price = format!("{}.{:02}", 10 + i % 90, i % 100);
            values.push(format!(
                "('{sku}', 'Verify product {i}', {}, {price})",
                sql_str(&description)
            ));
            let mut vector = vec![0.0f32; dimension];
            vector[i % dimension] = 1.0;
            objects.push(json!({
                "class": "Product",
                "id": product_id(&sku),
                "properties": {
                    "sku": sku,
                    "name": format!("Verify product {i}"),
                    "description": description,
                    "price": price.parse::<f64>().expect("price"),
                },
                "vector": vector,
            }));
        }
        stack
            .db
            .exec(&format!(
                "INSERT INTO catalog.products (sku, name, description, price) VALUES {}",
                values.join(",")
            ))
            .await;
        for batch in objects.chunks(250) {
            let r = http
                .post(format!("{}/v1/batch/objects", stack.weaviate.url()))
                .json(&json!({ "objects": batch }))
                .send()
                .await
                .expect("batch write");
            assert!(r.status().is_success(), "batch write: {}", r.status());
        }
    }
    assert_eq!(stack.weaviate.object_count("Product"), rows + 2);

    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_vecsync"))
        .args(["verify", "--json"])
        .args(["--mariadb-url", &stack.db.url()])
        .args(["--weaviate-url", &stack.weaviate.url()])
        .args(["--memcached", &stack.memcached.addr()])
        .arg("--model")
        .arg(model_dir())
        .env_remove("VECSYNC_CHECKPOINT")
        .env_remove("VECSYNC_URL")
        .output()
        .expect("run vecsync verify");
    let wall = started.elapsed().as_secs_f64();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "in sync: {report:#}");
    assert_eq!(report["suspects"], json!(0), "{report:#}");

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("vecsync verify benchmark ({cores} cores, {profile} build; {rows} rows + 2, in sync)");
    println!(
        "  verify rows/s (comparison, model load excluded)  {:>10.0}",
        report["rows_per_second"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "  comparison time (s)                              {:>10.2}",
        report["elapsed_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0
    );
    println!("  whole command, wall (s)                          {wall:>10.2}");
}
