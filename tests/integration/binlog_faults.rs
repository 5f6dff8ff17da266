//! Faults on the way from the binlog: a corrupted event fails its CRC32 check (definite error),
//! a server without checksums still works, and a connection that silently stops delivering (the
//! stream, or the one that reads information_schema) is noticed and replaced without losing or
//! repeating a transaction: the stream within about twice the heartbeat period.

use vecsync::config::SnapshotMode;
use vecsync::position::GtidPosition;
use vecsync::source::SourceError;

use crate::harness::mariadb::MariaDb;
use crate::harness::proxy::SilentProxy;
use crate::harness::source::{Running, config};
use crate::harness::{DEFAULT_DEADLINE, unique_name, wait_until};

async fn with_table(server: &MariaDb) -> (String, GtidPosition) {
    let db = unique_name("fault");
    server
        .exec(&format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.products (id INT PRIMARY KEY, sku VARCHAR(50))"
        ))
        .await;
    let at = server.gtid_binlog_pos().await.parse().expect("position");
    (db, at)
}

fn ids(events: &[vecsync::event::ChangeEvent]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e.after.as_ref().expect("after")["id"].as_i64().expect("id"))
        .collect()
}

#[tokio::test]
async fn a_corrupted_event_fails_its_checksum() {
    let server = MariaDb::start().await;
    let (db, start) = with_table(&server).await;
    server
        .exec(&format!(
            "INSERT INTO {db}.products VALUES (1, 'CORRUPT-ME-PLEASE'); FLUSH BINARY LOGS"
        ))
        .await;
    // Flip one byte of the value inside the (closed) binlog file. The row event holds the last
    // copy of the text (the statement's annotation comes before it).
    let file = server.datadir().join("mysql-bin.000001");
    let mut bytes = std::fs::read(&file).expect("read binlog");
    let needle = b"CORRUPT-ME-PLEASE";
    let at = bytes
        .windows(needle.len())
        .rposition(|w| w == needle)
        .expect("value in the binlog");
    bytes[at] = b'X';
    std::fs::write(&file, bytes).expect("write binlog");

    let err = Running::start(
        config(&server, &db, "products", SnapshotMode::Never),
        Some(start),
    )
    .error()
    .await;
    assert!(matches!(err, SourceError::Event { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("CRC32 checksum mismatch") && msg.contains("mysql-bin.000001"),
        "{msg}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn streams_without_checksums_too() {
    let server = MariaDb::start_with(&["binlog_checksum=NONE"]).await;
    let (db, start) = with_table(&server).await;
    let mut source = Running::start(
        config(&server, &db, "products", SnapshotMode::Never),
        Some(start),
    );
    server
        .exec(&format!("INSERT INTO {db}.products VALUES (1, 'a')"))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(ids(&events), [1]);
    // The file name of the first (artificial) ROTATE is intact with and without checksums.
    assert_eq!(events[0].source.file, "mysql-bin.000001");
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn a_silently_dead_connection_is_replaced() {
    let server = MariaDb::start().await;
    let (db, start) = with_table(&server).await;
    let proxy = SilentProxy::start(server.port()).await;
    let mut cfg = config(&server, &db, "products", SnapshotMode::Never);
    // Through the proxy, and over TCP only (no switch to the server's unix socket).
    cfg.url = proxy.url("root");
    let mut source = Running::start(cfg, Some(start));
    server
        .exec(&format!("INSERT INTO {db}.products VALUES (1, 'a')"))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(ids(&events), [1]);
    assert_eq!(events[0].source.file, "mysql-bin.000001");

    proxy.cut().await;
    let cut_at = std::time::Instant::now();
    let before = proxy.accepted();
    server
        .exec(&format!("INSERT INTO {db}.products VALUES (2, 'b')"))
        .await;
    // No heartbeat arrives any more: the source gives the connection up and opens a new one.
    wait_until("the source to reconnect", DEFAULT_DEADLINE, || {
        let n = proxy.accepted();
        async move { (n > before).then_some(()) }
    })
    .await;
    // Heartbeats every second: silence for about two of them is enough (plus the first
    // reconnect's backoff and some slack for a loaded machine).
    let noticed = cut_at.elapsed();
    assert!(
        noticed < std::time::Duration::from_millis(4500),
        "a dead stream was noticed after {noticed:?}"
    );
    let (events, _) = source.transaction().await;
    assert_eq!(
        ids(&events),
        [2],
        "the transaction after the last commit, once"
    );
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn a_silent_metadata_query_is_abandoned_and_retried() {
    // Without full row metadata, column names come from information_schema, read on a second
    // connection: that is the one that goes silent here.
    let server = MariaDb::start_with(&["binlog_row_metadata=NO_LOG"]).await;
    let (db, start) = with_table(&server).await;
    let proxy = SilentProxy::start(server.port()).await;
    let mut cfg = config(&server, &db, "products", SnapshotMode::Never);
    cfg.url = proxy.url("root");
    cfg.read_timeout = std::time::Duration::from_secs(2);
    let mut source = Running::start(cfg, Some(start));
    server
        .exec(&format!("INSERT INTO {db}.products VALUES (1, 'a')"))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(ids(&events), [1]);

    // The newest connection is the metadata one (opened for the first TABLE_MAP). A schema
    // change makes the source read information_schema again, on that dead connection.
    proxy.cut_latest().await;
    let before = proxy.accepted();
    server
        .exec(&format!(
            "ALTER TABLE {db}.products ADD COLUMN colour VARCHAR(10);
             INSERT INTO {db}.products VALUES (2, 'b', 'red')"
        ))
        .await;
    wait_until("the source to reconnect", DEFAULT_DEADLINE, || {
        let n = proxy.accepted();
        async move { (n > before).then_some(()) }
    })
    .await;
    let (events, _) = source.transaction().await;
    assert_eq!(ids(&events), [2], "the row after the schema change, once");
    assert_eq!(events[0].after.as_ref().expect("after")["colour"], "red");
    source.stop().await.expect("stop");
}
