//! Snapshot benchmark (issue 8) of the real `vecsync` binary against a private MariaDB, memcached
//! and the Weaviate test server, every figure from one run:
//!
//!     cargo bench --bench snapshot            (release build; BENCH_SHORT=1 for a small run)
//!
//! 1. initial snapshot of a table whose rows all have distinct descriptions into an empty
//!    index: rows/s, next to `vecsync embed --bench` on the same descriptions (run before and
//!    after it, averaged), and its share of it (target >= 90%: the snapshot is limited by the
//!    model, nothing else); also per CPU-second of each process, which a shared machine's load
//!    disturbs less than wall time;
//! 2. `--snapshot always` of an unchanged table into a complete index, without Memcached (so no
//!    cache hit can spare the model): embeddings (must be 0), objects written (must be 0), rows/s
//!    (target >= 5,000 rows/s);
//! 3. vecsync's peak RSS during a snapshot of a table with NULL descriptions, at two table sizes
//!    (target: no growth with the table's size).
//!
//! A snapshot's time runs from `/readyz` answering 200 (model loaded, Weaviate class checked;
//! the source may have read its first chunks meanwhile) to the checkpoint that records the end of
//! the snapshot's sweep (vecsync logs "sweep done", then stores it). The Weaviate test server runs in this process, on the same cores.

#[path = "../tests/integration/harness/mod.rs"]
mod harness;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use harness::stack::Stack;

struct Options {
    /// Rows of the initial snapshot (distinct descriptions: at most the catalog file's ~950).
    initial: usize,
    /// Rows of the unchanged table that is snapshotted again.
    unchanged: usize,
    /// Rows of the two NULL-description tables whose snapshots' peak RSS is compared.
    rss_small: usize,
    rss_large: usize,
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
            initial: 100,
            unchanged: 2_000,
            rss_small: 1_000,
            rss_large: 10_000,
            profile,
        }
    } else {
        Options {
            initial: 1_000,
            unchanged: 20_000,
            rss_small: 10_000,
            rss_large: 100_000,
            profile,
        }
    }
}

/// Up to `n` distinct catalog descriptions (about 44 tokens each), one per product: the
/// pipeline embeds a text once, so a repeated line would flatter it against `embed --bench`.
fn descriptions(n: usize) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/catalog-1000.txt");
    let text = std::fs::read_to_string(&path).expect("benches/catalog-1000.txt");
    let mut seen = std::collections::HashSet::new();
    text.lines()
        .filter(|l| seen.insert(*l))
        .take(n)
        .map(str::to_owned)
        .collect()
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// `vecsync embed --file F --bench`: (sentences per second, sentences per CPU-second) of the
/// model alone.
fn embed_bench(texts: &[String], dir: &Path) -> (f64, f64) {
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
    let rate = v["sentences_per_second"]
        .as_f64()
        .expect("embed --bench JSON has sentences_per_second");
    let per_cpu = v["cpu_seconds"]
        .as_f64()
        .map_or(f64::NAN, |cpu| texts.len() as f64 / cpu);
    (rate, per_cpu)
}

/// CPU seconds (user + system) `pid` used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name, which is in parentheses; utime and stime are the 12th and
    // 13th after it, in USER_HZ (100 on Linux).
    let Some(rest) = stat.rfind(')').and_then(|at| stat.get(at + 2..)) else {
        return f64::NAN;
    };
    let fields: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    if fields.len() == 2 {
        (fields[0] + fields[1]) / 100.0
    } else {
        f64::NAN
    }
}

async fn scrape(port: u16, name: &str) -> Option<f64> {
    let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                let metric = key.split('{').next()?;
                (metric == name).then(|| value.parse::<f64>().ok())?
            })
            .sum(),
    )
}

/// Poll `check` every few milliseconds (a timing loop: the harness's backing-off wait would
/// blur the figures) until it holds, failing after `limit`.
async fn poll<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `args` with `flag`'s value replaced (or the flag added).
fn set_flag(args: &mut Vec<String>, flag: &str, value: &str) {
    match args.iter().position(|a| a == flag) {
        Some(at) => args[at + 1] = value.to_owned(),
        None => args.extend([flag.to_owned(), value.to_owned()]),
    }
}

/// One `vecsync run`, killed if the bench fails before it stops it. Its log is read for the
/// sweep's end ("sweep done"); warnings and errors are passed on to stderr.
struct Run {
    child: Option<Child>,
    port: u16,
    checkpoint: PathBuf,
    sweep_done: Arc<AtomicBool>,
}

impl Run {
    fn spawn(args: Vec<String>, port: u16, checkpoint: PathBuf) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vecsync"))
            .arg("run")
            .args(args)
            .env("LOG_LEVEL", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vecsync");
        let sweep_done = Arc::new(AtomicBool::new(false));
        let stderr = child.stderr.take().expect("stderr");
        let done = sweep_done.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("sweep done") {
                    done.store(true, Ordering::SeqCst);
                }
                if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("{line}");
                }
            }
        });
        Run {
            child: Some(child),
            port,
            checkpoint,
            sweep_done,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    async fn wait_ready(&self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        let http = reqwest::Client::new();
        poll("vecsync to be ready", Duration::from_secs(600), || async {
            http.get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() == 200)
        })
        .await;
    }

    /// Wait until the snapshot's sweep ended and the checkpoint that records it is stored (the
    /// checkpoint holds the snapshot from the batch that started it until then).
    async fn wait_snapshot_done(&self) {
        poll(
            "the snapshot and its sweep to finish",
            Duration::from_secs(7200),
            || async {
                self.sweep_done.load(Ordering::SeqCst)
                    && vecsync::checkpoint::read(&self.checkpoint)
                        .ok()
                        .flatten()
                        .is_some_and(|c| c.snapshot.is_none())
            },
        )
        .await;
    }

    async fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(status.success(), "vecsync exited with {status}");
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "vecsync did not stop"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn insert(stack: &Stack, table: &str, rows: &[String]) {
    for part in rows.chunks(2_000) {
        stack
            .db
            .exec(&format!(
                "INSERT INTO {table} (sku, name, description, price) VALUES {}",
                part.join(",")
            ))
            .await;
    }
}

/// Snapshot `table` into `class` from scratch; (rows/s, peak RSS in MiB at the end).
async fn null_snapshot(stack: &Stack, table: &str, class: &str, rows: usize) -> (f64, f64) {
    stack
        .db
        .exec(&format!("CREATE TABLE {table} LIKE catalog.products"))
        .await;
    let values: Vec<String> = (0..rows)
        .map(|i| {
            format!(
                "('N-{i}', 'Null product {i}', NULL, {}.{:02})",
                i % 500,
                i % 100
            )
        })
        .collect();
    insert(stack, table, &values).await;
    let checkpoint = stack.dir.path().join(format!("{class}.checkpoint"));
    let mut args = stack.args(&[]);
    set_flag(&mut args, "--table", table);
    set_flag(&mut args, "--class", class);
    set_flag(&mut args, "--checkpoint", &checkpoint.display().to_string());
    let run = Run::spawn(args, stack.metrics_port, checkpoint);
    run.wait_ready().await;
    let started = Instant::now();
    run.wait_snapshot_done().await;
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    let rss = harness::peak_rss_mib(run.pid());
    assert_eq!(stack.weaviate.object_count(class), rows, "{class} complete");
    run.stop().await;
    (rate, rss)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = options();
    let texts = descriptions(o.initial);
    let initial = texts.len();
    let stack = Stack::start().await;
    // Only the benchmark's rows.
    stack.db.exec("DELETE FROM catalog.products").await;
    let row = |i: usize, text: usize| {
        format!(
            "('B-{i}', 'Bench product {i}', {}, {}.{:02})",
            sql_str(&texts[text % texts.len()]),
            10 + i % 90,
            i % 100
        )
    };

    // 1. The model alone on the descriptions, then the initial snapshot of the same rows.
    let (embed_before, embed_per_cpu) = embed_bench(&texts, stack.dir.path());
    let rows: Vec<String> = (0..initial).map(|i| row(i, i)).collect();
    insert(&stack, "catalog.products", &rows).await;
    let run = Run::spawn(stack.args(&[]), stack.metrics_port, stack.checkpoint_path());
    run.wait_ready().await;
    let started = Instant::now();
    let cpu_started = cpu_seconds(run.pid());
    run.wait_snapshot_done().await;
    let initial_rate = initial as f64 / started.elapsed().as_secs_f64();
    let initial_per_cpu = initial as f64 / (cpu_seconds(run.pid()) - cpu_started);
    let initial_embeddings = scrape(run.port, "vecsync_embeddings_computed_total")
        .await
        .unwrap_or(f64::NAN);
    assert_eq!(stack.weaviate.object_count("Product"), initial);
    run.stop().await;
    // Once more after the snapshot: on a shared machine the load moves between the two.
    let (embed_after, _) = embed_bench(&texts, stack.dir.path());
    let embed_rate = (embed_before + embed_after) / 2.0;

    // 2. Grow the table to `unchanged` rows, let vecsync index them, then snapshot the unchanged
    //    table again without the cache. The new rows reuse the descriptions, 20 rows in a row
    //    each, so a batch embeds each text once (the cache cannot help: its key has the sku).
    let rows: Vec<String> = (initial..o.unchanged)
        .map(|i| row(i, (i - initial) / 20))
        .collect();
    insert(&stack, "catalog.products", &rows).await;
    let run = Run::spawn(stack.args(&[]), stack.metrics_port, stack.checkpoint_path());
    let end: vecsync::position::GtidPosition =
        stack.db.gtid_binlog_pos().await.parse().expect("gtid");
    poll(
        "vecsync to index the grown table",
        Duration::from_secs(7200),
        || async {
            vecsync::checkpoint::read(&stack.checkpoint_path())
                .ok()
                .flatten()
                .is_some_and(|c| c.gtid.covers(&end))
        },
    )
    .await;
    assert_eq!(stack.weaviate.object_count("Product"), o.unchanged);
    run.stop().await;
    let seen = stack.weaviate.requests().len();
    let mut args = stack.args(&["--snapshot", "always"]);
    set_flag(&mut args, "--memcached", "none");
    let run = Run::spawn(args, stack.metrics_port, stack.checkpoint_path());
    run.wait_ready().await;
    let started = Instant::now();
    run.wait_snapshot_done().await;
    let resnapshot_rate = o.unchanged as f64 / started.elapsed().as_secs_f64();
    let resnapshot_rows = scrape(run.port, "vecsync_snapshot_rows_total")
        .await
        .unwrap_or(f64::NAN);
    let resnapshot_embeddings = scrape(run.port, "vecsync_embeddings_computed_total")
        .await
        .unwrap_or(f64::NAN);
    run.stop().await;
    let written: usize = stack.weaviate.requests()[seen..]
        .iter()
        .map(|r| match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/v1/batch/objects") => r
                .body
                .as_ref()
                .and_then(|b| b["objects"].as_array())
                .map_or(0, Vec::len),
            ("GET" | "HEAD", _) => 0,
            (_, p) if p.starts_with("/v1/objects") || p == "/v1/batch/objects" => 1,
            _ => 0,
        })
        .sum();

    // 3. Peak RSS of snapshots of NULL-description tables of two sizes.
    let (small_rate, small_rss) =
        null_snapshot(&stack, "catalog.rss_small", "RssSmall", o.rss_small).await;
    let (large_rate, large_rss) =
        null_snapshot(&stack, "catalog.rss_large", "RssLarge", o.rss_large).await;

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "vecsync snapshot benchmark ({cores} cores, {} build; descriptions ~44 tokens each)",
        o.profile
    );
    println!(
        "  vecsync embed --bench, same texts (sentences/s)   {embed_rate:>10.1}  (before {embed_before:.1}, after {embed_after:.1})"
    );
    println!("  initial snapshot, {initial:>6} rows, rows/s            {initial_rate:>10.1}");
    println!(
        "  initial snapshot / embed --bench (target >= 90%) {:>9.0} %",
        100.0 * initial_rate / embed_rate
    );
    println!(
        "  per CPU-second: snapshot rows / embed --bench    {:>9.0} %  ({initial_per_cpu:.1} / {embed_per_cpu:.1})",
        100.0 * initial_per_cpu / embed_per_cpu
    );
    println!("  embeddings in the initial snapshot               {initial_embeddings:>10.0}");
    println!(
        "  re-snapshot unchanged {:>6} rows, rows/s        {resnapshot_rate:>10.0}",
        o.unchanged
    );
    println!("  rows read by the re-snapshot                     {resnapshot_rows:>10.0}");
    println!("  embeddings in the re-snapshot (must be 0)        {resnapshot_embeddings:>10.0}");
    println!("  objects written by the re-snapshot (must be 0)   {written:>10}");
    println!(
        "  NULL-text snapshot {:>7} rows: peak RSS (MiB)   {small_rss:>10.1}  ({small_rate:.0} rows/s)",
        o.rss_small
    );
    println!(
        "  NULL-text snapshot {:>7} rows: peak RSS (MiB)   {large_rss:>10.1}  ({large_rate:.0} rows/s)",
        o.rss_large
    );
    assert_eq!(
        resnapshot_rows, o.unchanged as f64,
        "the re-snapshot read every row"
    );
    assert_eq!(resnapshot_embeddings, 0.0, "the re-snapshot ran the model");
    assert_eq!(written, 0, "the re-snapshot wrote objects");
}
