//! Inserts/s through the real `vecsync run` binary with the in-process model and with the remote
//! embedder (infinity-emb serving the same model on this machine) at several concurrencies, in
//! one run against one private MariaDB, memcached, Weaviate test server and infinity.
//!
//!     cargo bench --bench remote_embedder -- [--products N] [--concurrency 1,2,4] [--batch B]
//!
//! Every product is new and its text unique, so every one is embedded (no cache hits). On a
//! 2-core machine the in-process model wins (infinity and vecsync share the cores, and HTTP adds
//! work); the figures show what `--embedder-concurrency` buys against one server replica.
//! `BENCH_SHORT=1` runs a small configuration. Needs scripts/fetch-infinity.

#[path = "../tests/integration/harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::infinity::Infinity;
use harness::stack::Stack;
use harness::wait_until;

struct Options {
    products: usize,
    concurrency: Vec<usize>,
    batch: usize,
}

fn options() -> Options {
    let short = std::env::var("BENCH_SHORT").is_ok_and(|v| v == "1");
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    Options {
        products: value("--products")
            .and_then(|v| v.parse().ok())
            .unwrap_or(if short { 100 } else { 1000 }),
        concurrency: value("--concurrency")
            .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![1, 2, 4]),
        batch: value("--batch").and_then(|v| v.parse().ok()).unwrap_or(32),
    }
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

/// Start vecsync with `extra`, insert `products` new products named `{prefix}-{i}`, wait until
/// the checkpoint covers them, and return (inserts/s, embedder requests).
async fn phase(stack: &Stack, extra: &[&str], prefix: &str, products: usize) -> (f64, f64) {
    let mut vecsync = stack.spawn_binary(extra);
    wait_caught_up(stack).await;
    wait_until("vecsync to be ready", Duration::from_secs(300), || async {
        reqwest::get(format!("http://127.0.0.1:{}/readyz", stack.metrics_port))
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
    let requests_before = scrape(stack, "vecsync_embedder_requests_total").await;
    let before = stack.weaviate.object_count("Product");
    let started = Instant::now();
    for chunk_start in (0..products).step_by(100) {
        let rows: Vec<String> = (chunk_start..(chunk_start + 100).min(products))
            .map(|i| {
                format!(
                    "('{prefix}-{i}', 'Bench product {i}', 'A comfortable {} cotton shirt in size {} with {} buttons, {prefix} item {i}.', {}.{:02})",
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
    wait_caught_up(stack).await;
    let secs = started.elapsed().as_secs_f64();
    let requests = scrape(stack, "vecsync_embedder_requests_total").await - requests_before;
    assert_eq!(
        stack.weaviate.object_count("Product"),
        before + products,
        "every product indexed"
    );
    let _ = vecsync.kill();
    let _ = vecsync.wait();
    (products as f64 / secs, requests)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = options();
    let infinity = Infinity::start().await;
    let stack = Stack::start().await;
    let url = infinity.url();
    let batch = o.batch.to_string();

    let mut rows = Vec::new();
    let (local, _) = phase(&stack, &[], "LOCAL", o.products).await;
    rows.push(("in-process".to_owned(), local, 0.0));
    for c in &o.concurrency {
        let c_text = c.to_string();
        let (rate, requests) = phase(
            &stack,
            &[
                "--embedder",
                &url,
                "--embedder-batch",
                &batch,
                "--embedder-concurrency",
                &c_text,
            ],
            &format!("REMOTE{c}"),
            o.products,
        )
        .await;
        rows.push((format!("remote, concurrency {c}"), rate, requests));
    }

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "vecsync remote-embedder benchmark ({cores} cores; {} new products per row, infinity-emb on \
         this machine, --embedder-batch {})",
        o.products, o.batch
    );
    for (name, rate, requests) in rows {
        println!("  {name:<26} {rate:>8.1} inserts/s  {requests:>6.0} embedder requests");
    }
}
