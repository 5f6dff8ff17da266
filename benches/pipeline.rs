//! End-to-end benchmark of the real `vecsync` binary against a private MariaDB, memcached and the
//! Weaviate test server, every figure from one run:
//!
//!     cargo bench --bench pipeline            (release build; BENCH_SHORT=1 for a small run)
//!
//! 1. `vecsync embed --bench` on the very descriptions the inserts use (the model alone);
//! 2. inserts/s end to end (every product new, so every one embedded; 100 rows a transaction),
//!    and its share of (1): the pipeline should be limited by the model, nothing else;
//! 3. a price-only update storm (every product updated 10 times, 1 transaction per round):
//!    rows/s, embeddings (0), and every stored vector bit-for-bit unchanged afterwards;
//! 4. a description storm (each of 100 products gets 3 new descriptions in a row, one
//!    transaction each): embeddings per distinct text written (at most 1: no text twice);
//! 5. commit-to-visible latency at 20 single-row commits/s, measured by a client that polls
//!    Weaviate (commit returned -> object readable), p50 and p99;
//! 6. vecsync's peak RSS.
//!
//! The Weaviate test server runs in this process, on the same 2 cores.

#[path = "../tests/integration/harness/mod.rs"]
mod harness;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::stack::Stack;
use harness::wait_until;
use vecsync::sink::product_id;

struct Options {
    products: usize,
    storm_rounds: usize,
    description_storm: usize,
    latency_samples: usize,
    profile: &'static str,
}

fn options() -> Options {
    let short = std::env::var("BENCH_SHORT").is_ok_and(|v| v == "1");
    // The bench's own build profile is the binary's (cargo bench builds both).
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    if short {
        Options {
            products: 200,
            storm_rounds: 3,
            description_storm: 20,
            latency_samples: 20,
            profile,
        }
    } else {
        Options {
            products: 1000,
            storm_rounds: 10,
            description_storm: 100,
            latency_samples: 200,
            profile,
        }
    }
}

/// The catalog descriptions (about 44 tokens each), one per product.
fn descriptions(n: usize) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/catalog-1000.txt");
    let text = std::fs::read_to_string(&path).expect("benches/catalog-1000.txt");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        n <= lines.len(),
        "at most {} distinct descriptions",
        lines.len()
    );
    lines[..n].iter().map(|s| (*s).to_owned()).collect()
}

async fn scrape(stack: &Stack, name: &str) -> f64 {
    let Ok(resp) = reqwest::get(format!("http://127.0.0.1:{}/metrics", stack.metrics_port)).await
    else {
        return f64::NAN;
    };
    let body = resp.text().await.unwrap_or_default();
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let metric = key.split('{').next()?;
            (metric == name).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

async fn wait_caught_up(stack: &Stack) {
    let want: vecsync::position::GtidPosition =
        stack.db.gtid_binlog_pos().await.parse().expect("gtid");
    let path = stack.checkpoint_path();
    wait_until("vecsync to catch up", Duration::from_secs(1800), || {
        let done = vecsync::checkpoint::read(&path)
            .ok()
            .flatten()
            .is_some_and(|c| c.gtid.covers(&want));
        async move { done.then_some(()) }
    })
    .await;
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// `vecsync embed --file F --bench`: sentences per second of the model alone.
fn embed_bench(texts: &[String], dir: &Path) -> f64 {
    let file: PathBuf = dir.join("bench-texts.txt");
    std::fs::write(&file, texts.join("\n")).expect("write the bench texts");
    let out = Command::new(env!("CARGO_BIN_EXE_vecsync"))
        .args(["embed", "--bench", "--file"])
        .arg(&file)
        .arg("--model")
        .arg(harness::stack::model_dir())
        .output()
        .expect("run vecsync embed --bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("embed --bench JSON");
    v["sentences_per_second"]
        .as_f64()
        .expect("embed --bench JSON has sentences_per_second")
}

/// Every product's stored vector, by sku.
fn vectors(stack: &Stack, skus: &[String]) -> HashMap<String, Vec<u32>> {
    skus.iter()
        .filter_map(|sku| {
            let obj = stack.weaviate.object("Product", product_id(sku))?;
            let bits = obj["vector"]
                .as_array()?
                .iter()
                .filter_map(|x| x.as_f64().map(|f| (f as f32).to_bits()))
                .collect();
            Some((sku.clone(), bits))
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = options();
    let texts = descriptions(o.products);
    let stack = Stack::start().await;

    // 1. The model alone, on the descriptions the inserts will use.
    let embed_rate = embed_bench(&texts, stack.dir.path());

    let mut vecsync = stack.spawn_binary(&[]);
    wait_caught_up(&stack).await;
    let pid = vecsync.id();

    // 2. Inserts: every product is new, so every one is embedded.
    let started = Instant::now();
    for chunk_start in (0..o.products).step_by(100) {
        let rows: Vec<String> = (chunk_start..(chunk_start + 100).min(o.products))
            .map(|i| {
                format!(
                    "('B-{i}', 'Bench product {i}', {}, {}.{:02})",
                    sql_str(&texts[i]),
                    10 + i % 90,
                    i % 100
                )
            })
            .collect();
        stack
            .db
            .exec(&format!(
                "INSERT INTO catalog.products (sku, name, description, price) VALUES {}",
                rows.join(",")
            ))
            .await;
    }
    wait_caught_up(&stack).await;
    let insert_rate = o.products as f64 / started.elapsed().as_secs_f64();
    assert_eq!(
        stack.weaviate.object_count("Product"),
        o.products + 2,
        "every product indexed"
    );

    // 3. A price-only storm: every product's price, `storm_rounds` times, a transaction each.
    let skus: Vec<String> = (0..o.products).map(|i| format!("B-{i}")).collect();
    let vectors_before = vectors(&stack, &skus);
    let embedded_before = scrape(&stack, "vecsync_embeddings_computed_total").await;
    let started = Instant::now();
    for _ in 0..o.storm_rounds {
        stack
            .db
            .exec("UPDATE catalog.products SET price = price + 0.01 WHERE sku LIKE 'B-%'")
            .await;
    }
    wait_caught_up(&stack).await;
    let storm_rows = (o.products * o.storm_rounds) as f64;
    let storm_rate = storm_rows / started.elapsed().as_secs_f64();
    let storm_embeddings =
        scrape(&stack, "vecsync_embeddings_computed_total").await - embedded_before;
    let unchanged = vectors_before == vectors(&stack, &skus);

    // 4. A description storm: 3 new descriptions in a row for each of some products.
    let embedded_before = scrape(&stack, "vecsync_embeddings_computed_total").await;
    let mut sql = String::new();
    for round in 0..3 {
        for (i, text) in texts.iter().enumerate().take(o.description_storm) {
            sql.push_str(&format!(
                "UPDATE catalog.products SET description = {} WHERE sku = 'B-{i}';\n",
                sql_str(&format!("{text} Revision {round}."))
            ));
        }
    }
    stack.db.exec(&sql).await;
    wait_caught_up(&stack).await;
    let distinct_texts = (3 * o.description_storm) as f64;
    let per_text = (scrape(&stack, "vecsync_embeddings_computed_total").await - embedded_before)
        / distinct_texts;

    // 5. Commit-to-visible at 20 single-row commits per second.
    let mut latencies = Vec::with_capacity(o.latency_samples);
    let mut conn = stack.db.conn().await;
    let mut next = Instant::now();
    for k in 0..o.latency_samples {
        tokio::time::sleep_until(next.into()).await;
        next += Duration::from_millis(50);
        let sku = format!("L-{k}");
        use mysql_async::prelude::Queryable;
        conn.query_drop(format!(
            "INSERT INTO catalog.products (sku, name, description, price) VALUES ('{sku}', 'Latency {k}', 'a linen summer shirt number {k}', 1.00)"
        ))
        .await
        .expect("insert");
        let committed = Instant::now();
        // Poll every half millisecond; the store is read in-process, so a poll costs
        // microseconds. The next commit waits for this one to be visible (at 20/s there is room).
        while stack.weaviate.object("Product", product_id(&sku)).is_none() {
            assert!(
                committed.elapsed() < Duration::from_secs(60),
                "{sku} never became visible"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        latencies.push(committed.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let rss = harness::peak_rss_mib(pid);
    let _ = vecsync.kill();
    let _ = vecsync.wait();

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "vecsync pipeline benchmark ({cores} cores, {} build; {} products, ~44 tokens each)",
        o.profile, o.products
    );
    println!("  vecsync embed --bench, same texts (sentences/s)   {embed_rate:>10.1}");
    println!("  inserts/s end to end (each embedded)             {insert_rate:>10.1}");
    println!(
        "  inserts / embed --bench                          {:>9.0} %",
        100.0 * insert_rate / embed_rate
    );
    println!(
        "  price-only storm ({} rows x {} rounds), rows/s    {storm_rate:>10.0}",
        o.products, o.storm_rounds
    );
    println!("  embeddings in the price storm                    {storm_embeddings:>10.0}");
    println!(
        "  every vector unchanged after the price storm     {:>10}",
        if unchanged { "yes" } else { "NO" }
    );
    println!("  description storm: embeddings per distinct text  {per_text:>10.3}");
    println!(
        "  commit-to-visible p50 at 20 commits/s (ms)       {:>10.1}",
        percentile(&latencies, 50.0)
    );
    println!(
        "  commit-to-visible p99 at 20 commits/s (ms)       {:>10.1}",
        percentile(&latencies, 99.0)
    );
    println!("  vecsync peak RSS (MiB)                           {rss:>10.1}");
    assert!(unchanged, "a price-only storm changed stored vectors");
    assert_eq!(storm_embeddings, 0.0, "a price-only storm ran the model");
}
