//! End-to-end benchmark of the real `vecsync` binary (release build) against a private MariaDB,
//! memcached and the Weaviate test server.
//!
//!     cargo bench --bench pipeline -- [--products N] [--updates M] [--latency-samples K]
//!
//! Prints: inserts/s (new products, each embedded), updates/s for a price-only update storm,
//! embeddings per event in that storm and in the seed's 3-update storm, commit-to-visible
//! latency p50/p99 (client commit returned -> object readable in Weaviate), and vecsync's peak
//! RSS. `BENCH_SHORT=1` runs a small configuration for CI.

#[path = "../tests/integration/harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::stack::Stack;
use harness::wait_until;

struct Options {
    products: usize,
    updates: usize,
    latency_samples: usize,
}

fn options() -> Options {
    let short = std::env::var("BENCH_SHORT").is_ok_and(|v| v == "1");
    let mut o = if short {
        Options {
            products: 200,
            updates: 500,
            latency_samples: 20,
        }
    } else {
        Options {
            products: 2000,
            updates: 5000,
            latency_samples: 100,
        }
    };
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<usize>().ok())
    };
    if let Some(n) = value("--products") {
        o.products = n;
    }
    if let Some(n) = value("--updates") {
        o.updates = n;
    }
    if let Some(n) = value("--latency-samples") {
        o.latency_samples = n;
    }
    o
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
    wait_until("vecsync to catch up", Duration::from_secs(600), || {
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

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = options();
    let stack = Stack::start().await;
    let mut vecsync = stack.spawn_binary(&[]);
    wait_caught_up(&stack).await;
    let pid = vecsync.id();

    // 1. Inserts: every product is new, so every one is embedded.
    let started = Instant::now();
    for chunk_start in (0..o.products).step_by(100) {
        let rows: Vec<String> = (chunk_start..(chunk_start + 100).min(o.products))
            .map(|i| {
                format!(
                    "('B-{i}', 'Bench product {i}', 'A comfortable {} cotton shirt in size {} with {} buttons, item {i}.', {}.{:02})",
                    ["red", "blue", "green", "white", "black"][i % 5],
                    ["S", "M", "L", "XL"][i % 4],
                    i % 7 + 2,
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
    let insert_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        stack.weaviate.object_count("Product"),
        o.products + 2,
        "every product indexed"
    );

    // 2. A price-only update storm from a batch job: one transaction per update.
    let embedded_before = scrape(&stack, "vecsync_embeddings_computed_total").await;
    let started = Instant::now();
    let mut sql = String::new();
    for u in 0..o.updates {
        let i = u % o.products;
        sql.push_str(&format!(
            "UPDATE catalog.products SET price = {}.{:02} WHERE sku = 'B-{i}';\n",
            20 + u % 50,
            u % 100
        ));
        if sql.len() > 64 * 1024 {
            stack.db.exec(&sql).await;
            sql.clear();
        }
    }
    if !sql.is_empty() {
        stack.db.exec(&sql).await;
    }
    wait_caught_up(&stack).await;
    let update_secs = started.elapsed().as_secs_f64();
    let storm_embeddings =
        scrape(&stack, "vecsync_embeddings_computed_total").await - embedded_before;

    // 3. The seed's storm: one product's description three times in a row.
    let embedded_before = scrape(&stack, "vecsync_embeddings_computed_total").await;
    stack.db.exec(harness::stack::SEED_STORM_SQL).await;
    wait_caught_up(&stack).await;
    let seed_storm_embeddings =
        scrape(&stack, "vecsync_embeddings_computed_total").await - embedded_before;

    // 4. Commit-to-visible latency, one change at a time on an otherwise idle pipeline.
    let mut latencies = Vec::with_capacity(o.latency_samples);
    for k in 0..o.latency_samples {
        let sku = format!("L-{k}");
        let sql = format!(
            "INSERT INTO catalog.products (sku, name, description, price) VALUES ('{sku}', 'Latency {k}', 'a linen summer shirt number {k}', 1.00)"
        );
        stack.db.exec(&sql).await;
        let committed = Instant::now();
        // Poll every millisecond (the harness's backing-off poll would round the figure up to
        // its next poll); the store is read in-process, so a poll costs microseconds.
        while stack.object(&sku).is_none() {
            assert!(
                committed.elapsed() < Duration::from_secs(60),
                "{sku} never became visible"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(committed.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let rss = peak_rss_mib(pid);
    let _ = vecsync.kill();
    let _ = vecsync.wait();

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "vecsync pipeline benchmark ({cores} cores; products {}, updates {}, latency samples {})",
        o.products, o.updates, o.latency_samples
    );
    println!(
        "  inserts/s (each embedded)          {:>10.1}",
        o.products as f64 / insert_secs
    );
    println!(
        "  updates/s (price only)             {:>10.1}",
        o.updates as f64 / update_secs
    );
    println!(
        "  embeddings per event, price storm  {:>10.3}",
        storm_embeddings / o.updates as f64
    );
    println!(
        "  embeddings for the seed's 3 updates{:>10.0}",
        seed_storm_embeddings
    );
    println!(
        "  commit-to-visible p50 (ms)         {:>10.1}",
        percentile(&latencies, 50.0)
    );
    println!(
        "  commit-to-visible p99 (ms)         {:>10.1}",
        percentile(&latencies, 99.0)
    );
    println!("  vecsync peak RSS (MiB)             {:>10.1}", rss);
}
