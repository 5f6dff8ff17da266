//! Runs a [`BinlogSource`] in the background and hands its messages to the test, with deadlines.
//!
//! By default the harness confirms every snapshot chunk as it receives it (as a pipeline that
//! wrote it would), so snapshots are never held up by credits; [`Running::start_manual`] leaves
//! confirming to the test.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vecsync::config::{SnapshotMode, TableRef};
use vecsync::event::{ChangeEvent, Commit, SnapshotMessage, SourceMessage};
use vecsync::position::GtidPosition;
use vecsync::source::{
    BinlogSource, Item, SnapshotControl, SourceConfig, SourceError, SourceStatus, Start,
};

use super::DEFAULT_DEADLINE;
use super::mariadb::MariaDb;

/// A source config for `db.table` on `server`, connecting as root, with a short heartbeat.
pub fn config(server: &MariaDb, db: &str, table: &str, snapshot: SnapshotMode) -> SourceConfig {
    let mut cfg = SourceConfig::new(
        server.url(),
        TableRef {
            db: db.to_owned(),
            table: table.to_owned(),
        },
    );
    cfg.snapshot = snapshot;
    cfg.heartbeat = Duration::from_secs(1);
    cfg
}

/// A running source and the receiving end of its channel. Messages are handed to the test
/// without their share of the memory budget (it returns to the budget on receipt).
pub struct Running {
    rx: mpsc::Receiver<Item>,
    cancel: CancellationToken,
    handle: Option<JoinHandle<Result<(), SourceError>>>,
    control: SnapshotControl,
    auto_confirm: bool,
    status: SourceStatus,
}

impl Running {
    /// Start `cfg` from `checkpoint` with a small channel (so back-pressure is exercised).
    pub fn start(cfg: SourceConfig, checkpoint: Option<GtidPosition>) -> Self {
        Self::start_from(
            cfg,
            Start {
                position: checkpoint,
                snapshot: None,
            },
        )
    }

    /// Start `cfg` from `start` (a position and maybe a snapshot in progress).
    pub fn start_from(cfg: SourceConfig, start: Start) -> Self {
        Self::launch(cfg, start, true)
    }

    /// Like [`start_from`](Self::start_from), but the test confirms chunks itself
    /// ([`control`](Self::control)).
    pub fn start_manual(cfg: SourceConfig, start: Start) -> Self {
        Self::launch(cfg, start, false)
    }

    fn launch(cfg: SourceConfig, start: Start, auto_confirm: bool) -> Self {
        init_tracing();
        let source = BinlogSource::new(cfg).expect("valid source config");
        let control = source.snapshot_control();
        let status = source.status();
        let (tx, rx) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(source.run(start, tx, cancel.clone()));
        Self {
            rx,
            cancel,
            handle: Some(handle),
            control,
            auto_confirm,
            status,
        }
    }

    /// The source's snapshot control (credits, absence checks).
    pub fn control(&self) -> &SnapshotControl {
        &self.control
    }

    /// Receive one message; chunks are confirmed on receipt unless the test does it.
    async fn recv(&mut self) -> Option<SourceMessage> {
        let m = self.rx.recv().await.map(|item| item.message);
        if let Some(SourceMessage::Snapshot(SnapshotMessage::Chunk(c))) = &m {
            if self.auto_confirm {
                self.control.chunk_confirmed(&c.snapshot_id, c.seq);
            }
        }
        m
    }

    /// The source's health handle.
    pub fn status(&self) -> &SourceStatus {
        &self.status
    }

    /// Wait until the source has a binlog stream (or snapshot read) established.
    pub async fn connected(&self) {
        super::wait_until("the source to connect", DEFAULT_DEADLINE, || {
            let up = self.status.health().connected;
            async move { up.then_some(()) }
        })
        .await;
    }

    /// The next message, failing the test after the default deadline.
    #[track_caller]
    pub fn next(&mut self) -> impl std::future::Future<Output = SourceMessage> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            match tokio::time::timeout(DEFAULT_DEADLINE, self.recv()).await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    let result = match self.handle.take() {
                        Some(h) => h.await.expect("source task"),
                        None => Ok(()),
                    };
                    panic!("{caller}: the source stopped: {result:?}")
                }
                Err(_) => {
                    panic!("{caller}: no message from the source within {DEFAULT_DEADLINE:?}")
                }
            }
        }
    }

    /// Wait for the commit a source sends first when it starts from the server's current
    /// position (`--snapshot never`, no checkpoint): from then on it sees every change.
    #[track_caller]
    pub fn started(&mut self) -> impl std::future::Future<Output = Commit> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            match self.next().await {
                SourceMessage::Commit(c) => c,
                other => panic!("{caller}: expected the starting commit, got {other:?}"),
            }
        }
    }

    /// The next transaction that has events: its events and its commit. Commits of
    /// transactions without events of the table are skipped. A whole snapshot counts as one
    /// transaction: its chunks' `r` events, and a commit at its last chunk's position.
    #[track_caller]
    pub fn transaction(
        &mut self,
    ) -> impl std::future::Future<Output = (Vec<ChangeEvent>, Commit)> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            let mut events = Vec::new();
            let mut in_snapshot = false;
            loop {
                match tokio::time::timeout(DEFAULT_DEADLINE, self.recv()).await {
                    Ok(Some(SourceMessage::Event(e))) => {
                        assert!(!in_snapshot, "{caller}: a stream event inside a snapshot");
                        events.push(e);
                    }
                    Ok(Some(SourceMessage::Commit(c))) if events.is_empty() || in_snapshot => {
                        let _ = c;
                    }
                    Ok(Some(SourceMessage::Commit(c))) => return (events, c),
                    Ok(Some(SourceMessage::Snapshot(SnapshotMessage::Started(_)))) => {
                        in_snapshot = true;
                    }
                    Ok(Some(SourceMessage::Snapshot(SnapshotMessage::Chunk(c)))) => {
                        events.extend(c.rows);
                        if c.last {
                            let commit = Commit {
                                position: c.position,
                                ts_ms: 0,
                                seen_ms: 0,
                            };
                            return (events, commit);
                        }
                    }
                    Ok(Some(SourceMessage::Snapshot(s))) => {
                        panic!("{caller}: unexpected snapshot message {s:?}")
                    }
                    Ok(None) => panic!("{caller}: the source stopped"),
                    Err(_) => panic!("{caller}: no transaction within {DEFAULT_DEADLINE:?}"),
                }
            }
        }
    }

    /// Commits until one at or past `position`; fails on any event in between.
    #[track_caller]
    pub fn commit_reaching(
        &mut self,
        position: &GtidPosition,
    ) -> impl std::future::Future<Output = Commit> + '_ {
        let caller = std::panic::Location::caller();
        let position = position.clone();
        async move {
            loop {
                match tokio::time::timeout(DEFAULT_DEADLINE, self.recv()).await {
                    Ok(Some(SourceMessage::Commit(c))) if c.position.covers(&position) => return c,
                    Ok(Some(SourceMessage::Commit(_))) => {}
                    Ok(Some(SourceMessage::Event(e))) => {
                        panic!("{caller}: unexpected event {e:?}")
                    }
                    Ok(Some(SourceMessage::Snapshot(s))) => {
                        panic!("{caller}: unexpected snapshot message {s:?}")
                    }
                    Ok(None) => panic!("{caller}: the source stopped"),
                    Err(_) => panic!(
                        "{caller}: no commit reaching {position} within {DEFAULT_DEADLINE:?}"
                    ),
                }
            }
        }
    }

    /// Cancel the source and wait for it to end; returns its result.
    /// Expect the snapshot of a one-row table (one `r` event), then run `insert` (one row) and
    /// expect it streamed as one `c` event; then stop cleanly.
    pub async fn expect_read_then_insert(mut self, server: &MariaDb, insert: &str) {
        use vecsync::event::Op;
        let (reads, _) = self.transaction().await;
        assert_eq!(reads.iter().map(|e| e.op).collect::<Vec<_>>(), [Op::Read]);
        server.exec(insert).await;
        let (events, _) = self.transaction().await;
        assert_eq!(
            events.iter().map(|e| e.op).collect::<Vec<_>>(),
            [Op::Create]
        );
        self.stop().await.expect("stop");
    }

    pub async fn stop(mut self) -> Result<(), SourceError> {
        self.cancel.cancel();
        match self.handle.take() {
            Some(h) => tokio::time::timeout(DEFAULT_DEADLINE, h)
                .await
                .expect("the source stops promptly when cancelled")
                .expect("source task"),
            None => Ok(()),
        }
    }

    /// Wait for the source to fail on its own; returns the error.
    pub async fn error(mut self) -> SourceError {
        let handle = self.handle.take().expect("running");
        // Keep draining so a full channel cannot hold the source up.
        let drain = async {
            while self.recv().await.is_some() {}
            std::future::pending::<()>().await;
        };
        let result = tokio::select! {
            r = tokio::time::timeout(DEFAULT_DEADLINE, handle) => r.expect("the source fails within the deadline").expect("source task"),
            () = drain => unreachable!(),
        };
        match result {
            Err(e) => e,
            Ok(()) => panic!("the source ended without an error"),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Source logs in the test output (shown for failing tests), once per test process.
pub fn init_tracing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "vecsync=debug".into()),
            )
            .with_test_writer()
            .try_init();
    });
}
