//! Watches the source's health for `/readyz` and the lag gauge.
//!
//! The lag the writer reports is measured on transactions as they are confirmed, so it cannot
//! see a source that delivers nothing: disconnected, reconnecting, or connected to a stream that
//! went silent. This watcher covers exactly that case. Every second it
//! - holds readiness (`/readyz` 503, component "source") with the source's own reason while it
//!   has been disconnected longer than the grace period, or its commits are held by a prepared
//!   XA transaction;
//! - while the source is disconnected, or has heard nothing (not even a heartbeat) for two
//!   heartbeat periods, sets `vecsync_binlog_lag_seconds` to the time since it last heard from
//!   the server: the index is at least that far behind, for all vecsync knows.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::event::now_ms;
use crate::source::{SourceHealth, SourceStatus};
use crate::telemetry::{BINLOG_LAG_SECONDS, Health};

/// How often the watcher looks.
const PERIOD: Duration = Duration::from_secs(1);

/// The component name of the source's held reason in `/readyz`.
pub const COMPONENT: &str = "source";

/// Watch `status` until `cancel` fires. `heartbeat` is the stream's heartbeat period: a
/// disconnection shorter than two periods (a reconnect) does not make vecsync unready.
pub async fn watch(
    status: SourceStatus,
    health: Arc<Health>,
    heartbeat: Duration,
    cancel: CancellationToken,
) {
    let grace = heartbeat * 2;
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        match status.problem(grace) {
            Some(reason) => health.set_held(COMPONENT, reason),
            None => health.clear_held(COMPONENT),
        }
        if let Some(lag) = blind_lag(&status.health(), grace, now_ms()) {
            metrics::gauge!(BINLOG_LAG_SECONDS).set(lag);
        }
    }
}

/// Seconds since the source last heard from the server, when it is disconnected or has been
/// silent for longer than `grace`; `None` while the stream is alive (the writer's figure holds).
fn blind_lag(h: &SourceHealth, grace: Duration, now_ms: i64) -> Option<f64> {
    let heard = h.last_heard_ms.unwrap_or(h.since_ms);
    let silent_ms = (now_ms - heard).max(0);
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    (!h.connected || silent_ms > grace_ms).then(|| silent_ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(connected: bool, since_ms: i64, heard: Option<i64>) -> SourceHealth {
        SourceHealth {
            connected,
            since_ms,
            last_heard_ms: heard,
            ..SourceHealth::default()
        }
    }

    #[test]
    fn alive_streams_leave_the_lag_to_the_writer() {
        let grace = Duration::from_secs(10);
        assert_eq!(
            blind_lag(&health(true, 0, Some(95_000)), grace, 100_000),
            None
        );
    }

    #[test]
    fn a_silent_or_lost_stream_reports_the_time_since_it_last_heard() {
        let grace = Duration::from_secs(10);
        assert_eq!(
            blind_lag(&health(true, 0, Some(80_000)), grace, 100_000),
            Some(20.0)
        );
        assert_eq!(
            blind_lag(&health(false, 90_000, Some(97_000)), grace, 100_000),
            Some(3.0)
        );
        // Never heard anything: since the source was created.
        assert_eq!(
            blind_lag(&health(false, 40_000, None), grace, 100_000),
            Some(60.0)
        );
    }
}
