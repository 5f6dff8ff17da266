//! Resumption: after a stop mid-stream the source resumes from the checkpoint (nothing missed,
//! nothing before it replayed), `--gtid` starts exactly after the given position, and a MariaDB
//! restart under a running source is ridden out.

use vecsync::config::SnapshotMode;
use vecsync::event::ChangeEvent;
use vecsync::position::GtidPosition;

use crate::harness::mariadb::MariaDb;
use crate::harness::source::{Running, config};
use crate::harness::unique_name;

async fn server_with_table() -> (MariaDb, String) {
    let server = MariaDb::start().await;
    let db = unique_name("restart");
    server
        .exec(&format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.products (id INT PRIMARY KEY, sku VARCHAR(20))"
        ))
        .await;
    (server, db)
}

async fn position(server: &MariaDb) -> GtidPosition {
    server.gtid_binlog_pos().await.parse().expect("position")
}

/// One transaction per id.
async fn insert(server: &MariaDb, db: &str, ids: std::ops::RangeInclusive<i64>) {
    for id in ids {
        server
            .exec(&format!("INSERT INTO {db}.products VALUES ({id}, 'p{id}')"))
            .await;
    }
}

fn id(e: &ChangeEvent) -> i64 {
    e.after.as_ref().expect("after")["id"].as_i64().expect("id")
}

#[tokio::test]
async fn resumes_from_the_checkpoint_after_a_stop_mid_stream() {
    let (server, db) = server_with_table().await;
    let start = position(&server).await;
    let mut first = Running::start(
        config(&server, &db, "products", SnapshotMode::Initial),
        Some(start),
    );
    insert(&server, &db, 1..=5).await;
    let mut checkpoint = None;
    for want in 1..=3 {
        let (events, commit) = first.transaction().await;
        assert_eq!(events.iter().map(id).collect::<Vec<_>>(), [want]);
        checkpoint = Some(commit.position);
    }
    // Stop without reading transactions 4 and 5 (they may sit in the channel): as if the
    // pipeline died before handling them.
    first.stop().await.expect("stop");
    insert(&server, &db, 6..=8).await;

    let mut second = Running::start(
        config(&server, &db, "products", SnapshotMode::Initial),
        checkpoint,
    );
    let mut seen = Vec::new();
    let mut last = None;
    while seen.len() < 5 {
        let (events, commit) = second.transaction().await;
        seen.extend(events.iter().map(id));
        last = Some(commit.position);
    }
    assert_eq!(
        seen,
        [4, 5, 6, 7, 8],
        "nothing missed, nothing replayed, in order"
    );
    assert_eq!(last, Some(position(&server).await));
    second.stop().await.expect("stop");
}

#[tokio::test]
async fn gtid_start_begins_exactly_after_the_given_position() {
    let (server, db) = server_with_table().await;
    insert(&server, &db, 1..=2).await;
    let after_two = position(&server).await;
    insert(&server, &db, 3..=4).await;
    let after_four = position(&server).await;
    insert(&server, &db, 5..=5).await;

    let mut cfg = config(&server, &db, "products", SnapshotMode::Initial);
    cfg.start_gtid = Some(after_two);
    // --gtid wins over the checkpoint, and no snapshot is taken.
    let mut source = Running::start(cfg, Some(after_four));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let (events, _) = source.transaction().await;
        assert!(events.iter().all(|e| e.source.snapshot == "false"));
        seen.extend(events.iter().map(id));
    }
    assert_eq!(seen, [3, 4, 5]);
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn rides_out_a_server_restart() {
    let (mut server, db) = server_with_table().await;
    let start = position(&server).await;
    let mut source = Running::start(
        config(&server, &db, "products", SnapshotMode::Initial),
        Some(start),
    );
    insert(&server, &db, 1..=1).await;
    let (events, _) = source.transaction().await;
    assert_eq!(events.iter().map(id).collect::<Vec<_>>(), [1]);

    server.kill9();
    server.restart().await;
    insert(&server, &db, 2..=3).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let (events, _) = source.transaction().await;
        seen.extend(events.iter().map(id));
    }
    assert_eq!(
        seen,
        [2, 3],
        "resumed after the last commit: no replay, no gap"
    );
    source.stop().await.expect("stop");
}
