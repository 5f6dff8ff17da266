//! MariaDB's compressed binlog events (`log_bin_compress=ON`): row events and statements are
//! decompressed and decoded like plain ones, never skipped.

use mysql_async::prelude::Queryable;
use serde_json::json;
use vecsync::config::SnapshotMode;
use vecsync::event::Op;
use vecsync::position::GtidPosition;

use crate::harness::mariadb::MariaDb;
use crate::harness::source::{Running, config};
use crate::harness::unique_name;

#[tokio::test]
async fn compressed_row_and_query_events_are_decoded() {
    let server = MariaDb::start_with(&["log_bin_compress=ON", "log_bin_compress_min_len=10"]).await;
    let db = unique_name("zip");
    server
        .exec(&format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.products (id INT PRIMARY KEY, description TEXT)"
        ))
        .await;
    let start: GtidPosition = server.gtid_binlog_pos().await.parse().expect("position");
    let mut source = Running::start(
        config(&server, &db, "products", SnapshotMode::Never),
        Some(start),
    );

    let long = "compressible text ".repeat(200);
    server
        .exec(&format!(
            "INSERT INTO {db}.products VALUES (1, '{long}'), (2, 'short but over ten bytes')"
        ))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        serde_json::to_value(events[0].after.as_ref().expect("after")).expect("json"),
        json!({"id": 1, "description": long})
    );

    server
        .exec(&format!(
            "UPDATE {db}.products SET description = 'changed' WHERE id = 2;
             ALTER TABLE {db}.products ADD COLUMN colour VARCHAR(20) DEFAULT 'green';
             DELETE FROM {db}.products WHERE id = 1;
             TRUNCATE TABLE {db}.products"
        ))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(events[0].op, Op::Update);
    assert_eq!(
        events[0].after.as_ref().expect("after")["description"],
        "changed"
    );
    let (events, _) = source.transaction().await;
    assert_eq!(events[0].op, Op::Delete);
    assert_eq!(
        serde_json::to_value(events[0].before.as_ref().expect("before")).expect("json"),
        json!({"id": 1, "description": long, "colour": "green"}),
        "the compressed ALTER was seen"
    );
    let (events, _) = source.transaction().await;
    assert_eq!(
        events[0].op,
        Op::Truncate,
        "the compressed TRUNCATE was seen"
    );
    source.stop().await.expect("stop");

    // The events above really were the compressed kinds.
    let mut conn = server.conn().await;
    let binlog: Vec<mysql_async::Row> = conn.query("SHOW BINLOG EVENTS").await.expect("binlog");
    let kinds: std::collections::BTreeSet<String> =
        binlog.iter().filter_map(|r| r.get("Event_type")).collect();
    for kind in [
        "Query_compressed",
        "Write_rows_compressed_v1",
        "Update_rows_compressed_v1",
        "Delete_rows_compressed_v1",
    ] {
        assert!(kinds.contains(kind), "{kind} in {kinds:?}");
    }
    conn.disconnect().await.expect("disconnect");
}
