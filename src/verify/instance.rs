//! How far the running `vecsync run` has confirmed: its `/wait` endpoint (`--vecsync-url`), its
//! checkpoint file (`--checkpoint`), or nothing (no instance runs: every change is confirmed).
//!
//! verify waits here until the instance confirmed the position a suspect was read at, so a change
//! still travelling through the pipeline is not taken for drift.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::backoff::{Attempts, Backoff};
use crate::position::GtidPosition;

use super::VerifyError;

/// How often the checkpoint file is read while waiting (it is a small local file).
const CHECKPOINT_POLL: Duration = Duration::from_millis(50);

/// The longest single `/wait` request; the instance caps it too.
const WAIT_REQUEST: Duration = Duration::from_secs(2);

/// Retrying an instance that does not answer (restarting, not up yet).
const RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

/// The running instance verify coordinates with.
#[derive(Debug, Clone)]
pub enum Instance {
    /// None runs: the index is complete as far as it will ever be.
    None,
    /// Its telemetry address, e.g. `http://127.0.0.1:9187`.
    Url { http: reqwest::Client, base: String },
    /// Its checkpoint file.
    Checkpoint(PathBuf),
}

impl Instance {
    pub fn url(base: &str) -> Result<Instance, VerifyError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(WAIT_REQUEST + Duration::from_secs(5))
            .build()
            .map_err(|e| VerifyError::Config(format!("cannot build the HTTP client: {e}")))?;
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(VerifyError::Config(format!(
                "--vecsync-url {base:?} must start with http:// or https:// (the running \
                 instance's --metrics-addr)"
            )));
        }
        Ok(Instance::Url {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// In words, for the report.
    pub fn describe(&self) -> String {
        match self {
            Instance::None => {
                "none given (--vecsync-url/--checkpoint): assuming no vecsync instance runs".into()
            }
            Instance::Url { base, .. } => format!("running instance at {base}"),
            Instance::Checkpoint(path) => format!("checkpoint {}", path.display()),
        }
    }

    /// Wait until the instance confirmed `target`, at most `timeout`.
    pub async fn wait_covers(
        &self,
        target: &GtidPosition,
        timeout: Duration,
    ) -> Result<(), VerifyError> {
        if target.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        let behind = |last: Option<String>| VerifyError::NotConfirmed {
            instance: self.describe(),
            target: target.to_string(),
            timeout_secs: timeout.as_secs(),
            last: last.unwrap_or_else(|| "nothing".into()),
        };
        match self {
            Instance::None => Ok(()),
            Instance::Checkpoint(path) => loop {
                let stored = crate::checkpoint::read(path)?;
                let position = stored.map(|c| c.gtid);
                if position.as_ref().is_some_and(|p| p.covers(target)) {
                    return Ok(());
                }
                if start.elapsed() >= timeout {
                    return Err(behind(position.map(|p| format!("confirmed {p}"))));
                }
                tokio::time::sleep(CHECKPOINT_POLL).await;
            },
            Instance::Url { http, base } => {
                let mut attempts = Attempts::new(RETRY);
                let mut last = None;
                loop {
                    let left = timeout.saturating_sub(start.elapsed());
                    if left.is_zero() {
                        return Err(behind(last));
                    }
                    let wait_ms = left.min(WAIT_REQUEST).as_millis().max(1) as u64;
                    let answer = http
                        .get(format!("{base}/wait"))
                        .query(&[
                            ("gtid", target.to_string()),
                            ("timeout_ms", wait_ms.to_string()),
                        ])
                        .send()
                        .await;
                    match answer {
                        Ok(r) if r.status() == StatusCode::OK => return Ok(()),
                        Ok(r) if r.status() == StatusCode::REQUEST_TIMEOUT => {
                            attempts.reset();
                            let body: serde_json::Value = r.json().await.unwrap_or_default();
                            last = Some(match body.get("gtid").and_then(|g| g.as_str()) {
                                Some(g) => format!("confirmed {g}"),
                                None => "no position confirmed yet".into(),
                            });
                        }
                        Ok(r) => {
                            let status = r.status();
                            let body = r.text().await.unwrap_or_default();
                            return Err(VerifyError::Config(format!(
                                "{base}/wait answered {status}: {body} (is --vecsync-url the \
                                 instance's --metrics-addr?)"
                            )));
                        }
                        Err(e) => {
                            last = Some(format!("not reachable: {}", crate::report::causes(&e)));
                            let delay = attempts.fail(None).min(left);
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
            }
        }
    }
}

/// The smallest position covering all of `positions` (per domain, the newest GTID).
pub fn join<'a>(positions: impl IntoIterator<Item = &'a GtidPosition>) -> GtidPosition {
    let mut out = GtidPosition::new();
    for p in positions {
        for gtid in p.iter() {
            let newer = out
                .get(gtid.domain_id)
                .is_none_or(|have| have.sequence < gtid.sequence);
            if newer {
                out.advance(*gtid);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_takes_the_newest_per_domain() {
        let a: GtidPosition = "0-1-5,1-2-9".parse().expect("gtid");
        let b: GtidPosition = "0-1-7,2-3-1".parse().expect("gtid");
        let j = join([&a, &b]);
        assert_eq!(j.to_string(), "0-1-7,1-2-9,2-3-1");
        assert!(j.covers(&a) && j.covers(&b));
        assert!(join([]).is_empty());
    }
}
