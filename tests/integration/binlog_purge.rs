//! A checkpoint whose binlog the server no longer has: a definite error that says so and how to
//! recover, or, with `--snapshot when-needed`, a new snapshot. A position the server never had
//! is a definite error too.

use vecsync::config::SnapshotMode;
use vecsync::event::Op;
use vecsync::position::GtidPosition;
use vecsync::source::SourceError;

use crate::harness::mariadb::MariaDb;
use crate::harness::source::{Running, config};
use crate::harness::unique_name;

/// A server whose binlog no longer reaches back to the returned position.
async fn purged_past_a_checkpoint() -> (MariaDb, String, GtidPosition) {
    let server = MariaDb::start().await;
    let db = unique_name("purge");
    server
        .exec(&format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.products (id INT PRIMARY KEY, sku VARCHAR(20));
             INSERT INTO {db}.products VALUES (1, 'a')"
        ))
        .await;
    let checkpoint: GtidPosition = server.gtid_binlog_pos().await.parse().expect("position");
    server
        .exec(&format!(
            "INSERT INTO {db}.products VALUES (2, 'b'); UPDATE {db}.products SET sku = 'a2' WHERE id = 1"
        ))
        .await;
    server.purge_binary_logs().await;
    (server, db, checkpoint)
}

#[tokio::test]
async fn a_purged_checkpoint_is_a_definite_error_with_the_way_out() {
    let (server, db, checkpoint) = purged_past_a_checkpoint().await;
    for mode in [SnapshotMode::Initial, SnapshotMode::Never] {
        let source = Running::start(
            config(&server, &db, "products", mode),
            Some(checkpoint.clone()),
        );
        let err = source.error().await;
        assert!(matches!(err, SourceError::Purged { .. }), "{err:?}");
        assert!(!err.is_transient());
        let msg = err.to_string();
        for needle in [
            "purged",
            "--snapshot when-needed",
            "delete the checkpoint",
            &checkpoint.to_string(),
            &format!("{db}.products"),
        ] {
            assert!(msg.contains(needle), "message names {needle:?}: {msg}");
        }
    }
}

#[tokio::test]
async fn when_needed_takes_a_new_snapshot_and_streams_on() {
    let (server, db, checkpoint) = purged_past_a_checkpoint().await;
    let mut source = Running::start(
        config(&server, &db, "products", SnapshotMode::WhenNeeded),
        Some(checkpoint),
    );
    let (reads, commit) = source.transaction().await;
    let rows: Vec<_> = reads
        .iter()
        .map(|e| {
            assert_eq!(e.op, Op::Read);
            serde_json::to_value(e.after.as_ref().expect("after")).expect("json")
        })
        .collect();
    assert_eq!(
        rows,
        [
            serde_json::json!({"id": 1, "sku": "a2"}),
            serde_json::json!({"id": 2, "sku": "b"})
        ]
    );
    assert_eq!(commit.position.to_string(), server.gtid_binlog_pos().await);
    server
        .exec(&format!("DELETE FROM {db}.products WHERE id = 2"))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(events[0].op, Op::Delete);
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn a_position_the_server_never_had_is_refused() {
    let server = MariaDb::start().await;
    let db = unique_name("purge");
    server
        .exec(&format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.products (id INT PRIMARY KEY)"
        ))
        .await;
    let mut cfg = config(&server, &db, "products", SnapshotMode::Initial);
    cfg.start_gtid = Some("0-223344-999999".parse().expect("gtid"));
    let err = Running::start(cfg, None).error().await;
    assert!(matches!(err, SourceError::BadPosition { .. }), "{err:?}");
    assert!(err.to_string().contains("0-223344-999999"), "{err}");
    assert!(!err.is_transient());
}
