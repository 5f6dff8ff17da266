//! Memory benchmark of the real `vecsync` binary (release build): the peak RSS while it indexes
//! one large UPDATE, the case the byte budget (`--max-buffer-mb`) exists for.
//!
//!     cargo bench --bench memory -- [--rows N] [--kb K] [--max-buffer-mb M]
//!
//! A private MariaDB gets `catalog.products` with N rows (default 10,000); one statement gives
//! every row a distinct description of K kB (default 60); vecsync starts (`--snapshot never`);
//! then ONE transaction updates every description again to another distinct K kB text, so each
//! row event carries 2 x K kB (before and after image) and every row must be embedded. Prints
//! vecsync's peak RSS (VmHWM) before the update and after it is fully indexed.
//! `BENCH_SHORT=1` runs 1,000 rows. The disk needs room for about 3 x N x K kB of binlog.

#[path = "../tests/integration/harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::stack::Stack;
use harness::wait_until;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// SQL for a distinct description of about `kb` kB for row `id`, different for each `round`.
fn description(round: u32, kb: usize) -> String {
    // ~20 bytes per repetition.
    let reps = kb * 1024 / 20;
    format!(
        "LEFT(REPEAT(CONCAT('r{round} item ', id, ' shade ', MOD(id * {m}, 977), ' '), {reps}), {len})",
        m = 7 + round,
        len = kb * 1000
    )
}

async fn wait_caught_up(stack: &Stack, limit: Duration) {
    let want: vecsync::position::GtidPosition =
        stack.db.gtid_binlog_pos().await.parse().expect("gtid");
    let path = stack.checkpoint_path();
    wait_until("vecsync to catch up", limit, || {
        let done = vecsync::checkpoint::read(&path)
            .ok()
            .flatten()
            .is_some_and(|c| c.gtid.covers(&want));
        async move { done.then_some(()) }
    })
    .await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let short = std::env::var("BENCH_SHORT").is_ok_and(|v| v == "1");
    let rows: usize = arg("--rows")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if short { 1_000 } else { 10_000 });
    let kb: usize = arg("--kb").and_then(|v| v.parse().ok()).unwrap_or(60);
    let budget = arg("--max-buffer-mb");

    let stack = Stack::start().await;
    stack
        .db
        .exec(&format!(
            "INSERT INTO catalog.products (sku, name, description, price)
             SELECT CONCAT('M-', seq), CONCAT('Memory product ', seq), 'short', 10.00
             FROM catalog.seq_1_to_{rows};
             UPDATE catalog.products SET description = {}",
            description(1, kb)
        ))
        .await;

    let mut extra = vec!["--snapshot", "never"];
    if let Some(mb) = budget.as_deref() {
        extra.extend(["--max-buffer-mb", mb]);
    }
    let mut vecsync = stack.spawn_binary(&extra);
    let pid = vecsync.id();
    wait_caught_up(&stack, Duration::from_secs(120)).await;
    let before = harness::peak_rss_mib(pid);

    let started = Instant::now();
    stack
        .db
        .exec(&format!(
            "UPDATE catalog.products SET description = {}",
            description(2, kb)
        ))
        .await;
    wait_caught_up(&stack, Duration::from_secs(3600)).await;
    let secs = started.elapsed().as_secs_f64();
    let peak = harness::peak_rss_mib(pid);
    let _ = vecsync.kill();
    let _ = vecsync.wait();

    println!(
        "vecsync memory benchmark: one UPDATE of {rows} rows, {kb} kB descriptions (events of {} MB in all), --max-buffer-mb {}",
        rows * kb * 2 / 1000,
        budget.as_deref().unwrap_or("256 (default)")
    );
    println!("  peak RSS before the update (MiB)   {before:>10.1}");
    println!("  peak RSS after indexing it (MiB)   {peak:>10.1}");
    println!("  indexing time (s)                  {secs:>10.1}");
}
