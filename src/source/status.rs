//! [`SourceStatus`]: what the source is doing, for `/readyz`, the lag gauge and the logs.
//!
//! The source updates it as it connects, streams, hears heartbeats, fails and reconnects; the
//! pipeline reads it. It also drives two metrics: `vecsync_source_connected` (1 while a binlog
//! stream or a snapshot read is established, else 0) and `vecsync_source_reconnects_total`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::event::now_ms;
use crate::position::GtidPosition;
use crate::telemetry::{SOURCE_CONNECTED, SOURCE_RECONNECTS_TOTAL};

/// A cloneable handle on the source's state.
#[derive(Debug, Clone, Default)]
pub struct SourceStatus {
    inner: Arc<Mutex<SourceHealth>>,
}

/// A copy of the source's state at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceHealth {
    /// A binlog stream (or a snapshot read) is established.
    pub connected: bool,
    /// Since when `connected` has its value (or the source was created), milliseconds since the
    /// epoch.
    pub since_ms: i64,
    /// The server in use (URL without password), once one was reached.
    pub server: Option<String>,
    /// The last error while retrying (its message names no password); `None` once connected.
    pub last_error: Option<String>,
    /// Reconnects since the start.
    pub reconnects: u64,
    /// When the last packet of any kind (heartbeats included) arrived, milliseconds since the
    /// epoch.
    pub last_heard_ms: Option<i64>,
    /// The position after the newest complete transaction the source read.
    pub position: Option<GtidPosition>,
    /// The server's commit time of that transaction, milliseconds since the epoch.
    pub position_ts_ms: Option<i64>,
    /// Why commit positions are held behind `position` (a prepared XA transaction), if they are.
    pub held: Option<String>,
}

impl SourceStatus {
    /// A status that says "not connected yet", since now.
    pub fn new() -> Self {
        metrics::gauge!(SOURCE_CONNECTED).set(0.0);
        metrics::counter!(SOURCE_RECONNECTS_TOTAL).increment(0);
        let status = Self::default();
        status.lock().since_ms = now_ms();
        status
    }

    /// The state now.
    pub fn health(&self) -> SourceHealth {
        self.lock().clone()
    }

    /// Why the source cannot be called healthy, if it cannot: disconnected for longer than
    /// `grace` (with the last error), or its position held by a prepared XA transaction.
    pub fn problem(&self, grace: Duration) -> Option<String> {
        let h = self.health();
        if !h.connected {
            let down_ms = now_ms() - h.since_ms;
            if down_ms >= i64::try_from(grace.as_millis()).unwrap_or(i64::MAX) {
                return Some(match h.last_error {
                    Some(e) => format!("MariaDB source disconnected, retrying: {e}"),
                    None => "MariaDB source not connected yet".to_owned(),
                });
            }
        }
        h.held
    }

    pub(crate) fn connected(&self, server: &str) {
        let mut h = self.lock();
        if !h.connected {
            h.connected = true;
            h.since_ms = now_ms();
        }
        h.server = Some(server.to_owned());
        h.last_error = None;
        h.last_heard_ms = Some(now_ms());
        metrics::gauge!(SOURCE_CONNECTED).set(1.0);
    }

    pub(crate) fn disconnected(&self, error: &str) {
        let mut h = self.lock();
        if h.connected {
            h.connected = false;
            h.since_ms = now_ms();
        }
        h.last_error = Some(error.to_owned());
        metrics::gauge!(SOURCE_CONNECTED).set(0.0);
    }

    pub(crate) fn reconnecting(&self) {
        self.lock().reconnects += 1;
        metrics::counter!(SOURCE_RECONNECTS_TOTAL).increment(1);
    }

    pub(crate) fn heard(&self) {
        self.lock().last_heard_ms = Some(now_ms());
    }

    pub(crate) fn read_up_to(&self, position: &GtidPosition, ts_ms: i64) {
        let mut h = self.lock();
        h.position = Some(position.clone());
        h.position_ts_ms = Some(ts_ms);
    }

    pub(crate) fn held(&self, reason: Option<String>) {
        self.lock().held = reason;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SourceHealth> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_only_after_the_grace_period() {
        let status = SourceStatus::new();
        assert_eq!(
            status.problem(Duration::ZERO).as_deref(),
            Some("MariaDB source not connected yet")
        );
        status.connected("mysql://u@db:3306");
        assert_eq!(status.problem(Duration::ZERO), None);
        status.disconnected("cannot reach MariaDB at mysql://u@db:3306: refused");
        assert_eq!(status.problem(Duration::from_secs(60)), None, "grace");
        let problem = status.problem(Duration::ZERO).expect("down");
        assert!(problem.contains("refused"), "{problem}");
        status.reconnecting();
        status.connected("mysql://u@db:3306");
        let h = status.health();
        assert!(h.connected && h.last_error.is_none());
        assert_eq!(h.reconnects, 1);
        status.held(Some("XA".into()));
        assert_eq!(status.problem(Duration::ZERO).as_deref(), Some("XA"));
    }
}
