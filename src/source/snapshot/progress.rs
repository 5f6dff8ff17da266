//! How far a snapshot got: a progress bar on a terminal (rows, rate, ETA from
//! information_schema's row estimate), Prometheus metrics, and a log line every
//! [`LOG_EVERY_CHUNKS`] chunks when stderr is not a terminal.

use std::io::IsTerminal;
use std::time::Instant;

/// 1 while a snapshot is reading the table, else 0.
pub const SNAPSHOT_RUNNING: &str = "vecsync_snapshot_running";
/// Rows read by snapshots (chunks sent into the stream).
pub const SNAPSHOT_ROWS_TOTAL: &str = "vecsync_snapshot_rows_total";
/// Chunks sent into the stream.
pub const SNAPSHOT_CHUNKS_TOTAL: &str = "vecsync_snapshot_chunks_total";
/// information_schema's row estimate minus the rows read so far.
pub const SNAPSHOT_REMAINING_ROWS: &str = "vecsync_snapshot_remaining_rows";

/// A log line per this many chunks (without a terminal).
pub const LOG_EVERY_CHUNKS: u64 = 100;

/// Describe the snapshot metrics and make them appear at zero.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        SNAPSHOT_RUNNING,
        "1 while a snapshot reads the table, else 0."
    );
    describe_counter!(SNAPSHOT_ROWS_TOTAL, "Rows read by snapshots.");
    describe_counter!(
        SNAPSHOT_CHUNKS_TOTAL,
        "Snapshot chunks merged into the stream."
    );
    describe_gauge!(
        SNAPSHOT_REMAINING_ROWS,
        "Rows the running snapshot has still to read (from information_schema's estimate)."
    );
    metrics::gauge!(SNAPSHOT_RUNNING).set(0.0);
    metrics::counter!(SNAPSHOT_ROWS_TOTAL).increment(0);
    metrics::counter!(SNAPSHOT_CHUNKS_TOTAL).increment(0);
    metrics::gauge!(SNAPSHOT_REMAINING_ROWS).set(0.0);
}

/// The progress of one running snapshot.
#[derive(Debug)]
pub(crate) struct Progress {
    table: String,
    estimate: u64,
    rows: u64,
    /// Rows read by this process (a resumed snapshot's earlier rows are not part of its rate).
    rows_here: u64,
    chunks: u64,
    started: Instant,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub(crate) fn start(table: String, estimate: u64, rows_done: u64) -> Self {
        metrics::gauge!(SNAPSHOT_RUNNING).set(1.0);
        metrics::gauge!(SNAPSHOT_REMAINING_ROWS).set(estimate.saturating_sub(rows_done) as f64);
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(estimate.max(rows_done));
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "snapshot {bar:40} {pos}/~{len} rows {per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar.set_position(rows_done);
            bar.reset_eta();
            bar
        });
        Self {
            table,
            estimate,
            rows: rows_done,
            rows_here: 0,
            chunks: 0,
            started: Instant::now(),
            bar,
        }
    }

    /// A chunk of `rows` rows was sent.
    pub(crate) fn chunk(&mut self, rows: u64) {
        self.rows += rows;
        self.rows_here += rows;
        self.chunks += 1;
        metrics::counter!(SNAPSHOT_ROWS_TOTAL).increment(rows);
        metrics::counter!(SNAPSHOT_CHUNKS_TOTAL).increment(1);
        metrics::gauge!(SNAPSHOT_REMAINING_ROWS)
            .set(self.estimate.saturating_sub(self.rows) as f64);
        match &self.bar {
            Some(bar) => {
                if self.rows > bar.length().unwrap_or(0) {
                    bar.set_length(self.rows);
                }
                bar.set_position(self.rows);
            }
            None if self.chunks % LOG_EVERY_CHUNKS == 0 => {
                let secs = self.started.elapsed().as_secs_f64().max(0.001);
                let rate = self.rows_here as f64 / secs;
                let remaining = self.estimate.saturating_sub(self.rows);
                tracing::info!(
                    table = %self.table,
                    rows = self.rows,
                    chunks = self.chunks,
                    rows_per_sec = rate.round() as u64,
                    estimated_remaining = remaining,
                    eta_secs = (remaining as f64 / rate.max(0.001)).round() as u64,
                    "snapshot progress"
                );
            }
            None => {}
        }
    }

    /// The snapshot read its last chunk, or was abandoned.
    pub(crate) fn finish(self) {
        metrics::gauge!(SNAPSHOT_RUNNING).set(0.0);
        metrics::gauge!(SNAPSHOT_REMAINING_ROWS).set(0.0);
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
