//! Starts the real servers the integration tests run against, and waits on conditions.
//!
//! Every test starts its own private servers on free loopback ports and removes them when it
//! ends, so tests never see each other's data.

#![allow(dead_code)] // each test uses only part of the harness

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a test waits for a condition before it fails.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// Poll `check` until it returns `Some`, failing the test with `what` after `deadline`.
///
/// This is the only way tests wait: never a bare sleep.
#[track_caller]
pub fn wait_until<T, F, Fut>(
    what: &str,
    deadline: Duration,
    mut check: F,
) -> impl Future<Output = T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let caller = std::panic::Location::caller();
    let what = what.to_owned();
    async move {
        let start = Instant::now();
        let mut delay = Duration::from_millis(5);
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if start.elapsed() > deadline {
                panic!("{caller}: timed out after {deadline:?} waiting for {what}");
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// A name no other test uses, for databases, tables and key prefixes.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

pub mod http_faults;
pub mod infinity;
pub mod mariadb;
pub mod memcached;
pub mod proxy;
pub mod replication;
pub mod source;
pub mod stack;

/// Peak resident memory (VmHWM) of process `pid` in MiB, NaN when the OS does not say (for the
/// benchmarks).
#[allow(dead_code)]
pub fn peak_rss_mib(pid: u32) -> f64 {
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
