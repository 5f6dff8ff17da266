//! Holding the position: retry a call that failed transiently until it succeeds, with the crate's
//! backoff, while `/readyz` says what is held and why.
//!
//! The binlog position does not move while a batch is held, so nothing is lost: the source is
//! held back by the bounded channel, and a restart resumes from the checkpoint. A definite error
//! is returned at once for the pipeline to stop with.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use crate::backoff::{Attempts, Backoff};
use crate::telemetry::Health;

/// 200 ms doubling to 30 s between attempts while holding.
pub const HOLD_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));

/// An error that says whether retrying can help.
pub trait Transient: Display {
    fn is_transient(&self) -> bool;
}

impl Transient for crate::sink::SinkError {
    fn is_transient(&self) -> bool {
        crate::sink::SinkError::is_transient(self)
    }
}

/// Run `call` until it succeeds or fails definitely. While it fails transiently, `component`
/// (`"weaviate"`, `"embedder"`) is reported not ready with the error, and cleared again on success.
pub async fn hold<T, E, F, Fut>(
    health: &Health,
    component: &'static str,
    mut call: F,
) -> Result<T, E>
where
    E: Transient,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempts = Attempts::new(HOLD_BACKOFF);
    loop {
        match call().await {
            Ok(v) => {
                if attempts.failures() > 0 {
                    tracing::info!(
                        component,
                        attempts = attempts.failures() + 1,
                        "available again; the pipeline moves on"
                    );
                    health.clear_held(component);
                }
                return Ok(v);
            }
            Err(error) if error.is_transient() => {
                let delay = attempts.fail(None);
                health.set_held(component, format!("{component} unavailable: {error}"));
                tracing::warn!(
                    component,
                    %error,
                    attempt = attempts.failures(),
                    retry_in_ms = delay.as_millis() as u64,
                    "call failed; retrying, binlog position held"
                );
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error),
        }
    }
}
