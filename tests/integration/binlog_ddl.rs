//! Schema changes while streaming: rows keep the right column names and types across ALTER TABLE
//! ADD/MODIFY/DROP COLUMN, whether the names travel in the binlog (binlog_row_metadata=FULL) or
//! come from information_schema.

use serde_json::{Value, json};
use vecsync::config::SnapshotMode;
use vecsync::position::GtidPosition;
use vecsync::source::SourceError;

use crate::harness::mariadb::MariaDb;
use crate::harness::source::{Running, config};
use crate::harness::unique_name;

fn after(e: &vecsync::event::ChangeEvent) -> Value {
    serde_json::to_value(e.after.as_ref().expect("after image")).expect("json")
}

async fn follows_schema_changes(server: MariaDb) {
    let db = unique_name("ddl");
    server
        .exec(&format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.products (id INT PRIMARY KEY, sku VARCHAR(20))"
        ))
        .await;
    let start: GtidPosition = server.gtid_binlog_pos().await.parse().expect("position");
    let mut source = Running::start(
        config(&server, &db, "products", SnapshotMode::Never),
        Some(start),
    );

    server
        .exec(&format!("INSERT INTO {db}.products VALUES (1, 'a')"))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(after(&events[0]), json!({"id": 1, "sku": "a"}));

    server
        .exec(&format!(
            "ALTER TABLE {db}.products ADD COLUMN colour VARCHAR(20) AFTER id;
             INSERT INTO {db}.products VALUES (2, 'red', 'b')"
        ))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(
        after(&events[0]),
        json!({"id": 2, "colour": "red", "sku": "b"})
    );
    let keys: Vec<_> = events[0]
        .after
        .as_ref()
        .expect("after")
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, ["id", "colour", "sku"], "table order");

    server
        .exec(&format!(
            "ALTER TABLE {db}.products MODIFY COLUMN id BIGINT UNSIGNED;
             INSERT INTO {db}.products VALUES (18446744073709551615, 'blue', 'c')"
        ))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(
        after(&events[0]),
        json!({"id": u64::MAX, "colour": "blue", "sku": "c"})
    );

    server
        .exec(&format!(
            "ALTER TABLE {db}.products DROP COLUMN colour;
             UPDATE {db}.products SET sku = 'a2' WHERE id = 1"
        ))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(
        serde_json::to_value(events[0].before.as_ref().expect("before")).expect("json"),
        json!({"id": 1, "sku": "a"})
    );
    assert_eq!(after(&events[0]), json!({"id": 1, "sku": "a2"}));
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn schema_changes_with_full_row_metadata() {
    follows_schema_changes(MariaDb::start().await).await;
}

#[tokio::test]
async fn schema_changes_with_names_from_information_schema() {
    follows_schema_changes(MariaDb::start_with(&["binlog_row_metadata=NO_LOG"]).await).await;
}

#[tokio::test]
async fn replaying_across_an_alter_without_full_metadata_fails_clearly() {
    let server = MariaDb::start_with(&["binlog_row_metadata=NO_LOG"]).await;
    let db = unique_name("ddl");
    server
        .exec(&format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.products (id INT PRIMARY KEY, sku VARCHAR(20))"
        ))
        .await;
    let start: GtidPosition = server.gtid_binlog_pos().await.parse().expect("position");
    // Written before the source runs: by the time it reads them, the table has three columns.
    server
        .exec(&format!(
            "INSERT INTO {db}.products VALUES (1, 'a');
             ALTER TABLE {db}.products ADD COLUMN colour VARCHAR(20)"
        ))
        .await;
    let source = Running::start(
        config(&server, &db, "products", SnapshotMode::Never),
        Some(start),
    );
    let err = source.error().await;
    assert!(matches!(err, SourceError::Event { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("binlog_row_metadata=FULL") && msg.contains(&db),
        "names the fix and the table: {msg}"
    );
    assert!(!err.is_transient());
}

/// A server with `db.products` (partitioned by id: p0 < 10, p1 the rest) and one row in each
/// partition; the position after it.
async fn partitioned(server: &MariaDb) -> (String, GtidPosition) {
    let db = unique_name("ddl");
    server
        .exec(&format!(
            "CREATE DATABASE {db};
             CREATE TABLE {db}.products (id INT PRIMARY KEY, sku VARCHAR(20))
               PARTITION BY RANGE (id) (PARTITION p0 VALUES LESS THAN (10),
                                        PARTITION p1 VALUES LESS THAN MAXVALUE);
             CREATE TABLE {db}.other (id INT PRIMARY KEY, sku VARCHAR(20));
             INSERT INTO {db}.products VALUES (1, 'a'), (20, 'b')"
        ))
        .await;
    let at = server.gtid_binlog_pos().await.parse().expect("position");
    (db, at)
}

/// The statement drops or moves the table's rows without row events: the source takes a
/// snapshot of the table (`r` events: the rows that are left) and streams on from it.
async fn reconciles_after(statement: &str, left: &[i64]) {
    let server = MariaDb::start().await;
    let (db, start) = partitioned(&server).await;
    let mut source = Running::start(
        config(&server, &db, "products", SnapshotMode::WhenNeeded),
        Some(start),
    );
    source.connected().await;
    server.exec(&statement.replace("{db}", &db)).await;
    let (events, _) = source.transaction().await;
    assert!(
        events.iter().all(|e| e.op == vecsync::event::Op::Read),
        "a snapshot: {events:?}"
    );
    let mut ids: Vec<i64> = events
        .iter()
        .map(|e| after(e)["id"].as_i64().expect("id"))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, left, "after {statement}");
    server
        .exec(&format!("INSERT INTO {db}.products VALUES (5, 'c')"))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(after(&events[0])["id"], 5, "streaming goes on");
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn truncate_partition_reconciles_the_table() {
    reconciles_after("ALTER TABLE {db}.products TRUNCATE PARTITION p1", &[1]).await;
}

#[tokio::test]
async fn exchange_partition_reconciles_the_table() {
    reconciles_after(
        "INSERT INTO {db}.other VALUES (7, 'x');
         ALTER TABLE {db}.products EXCHANGE PARTITION p0 WITH TABLE {db}.other",
        &[7, 20],
    )
    .await;
}

#[tokio::test]
async fn drop_partition_reconciles_the_table() {
    reconciles_after("ALTER TABLE {db}.products DROP PARTITION p0", &[20]).await;
}

/// The statement makes the table go away: the source stops, saying what happened and what to do.
async fn stops_after(statement: &str, needles: &[&str]) {
    let server = MariaDb::start().await;
    let (db, start) = partitioned(&server).await;
    let source = Running::start(
        config(&server, &db, "products", SnapshotMode::WhenNeeded),
        Some(start),
    );
    // Past the preflight (which would refuse a table that is already gone).
    source.connected().await;
    server.exec(&statement.replace("{db}", &db)).await;
    let err = source.error().await;
    assert!(!err.is_transient(), "definite: {err:?}");
    let msg = err.to_string();
    for n in needles.iter().chain(&[db.as_str()]) {
        assert!(msg.contains(n), "{n:?} missing from: {msg}");
    }
}

#[tokio::test]
async fn dropping_the_table_stops_with_what_to_do() {
    stops_after(
        "DROP TABLE {db}.products",
        &["dropped", "--snapshot always"],
    )
    .await;
}

#[tokio::test]
async fn dropping_the_database_stops_with_what_to_do() {
    stops_after("DROP DATABASE {db}", &["dropped", "--snapshot always"]).await;
}

#[tokio::test]
async fn renaming_the_table_away_stops_with_what_to_do() {
    stops_after(
        "RENAME TABLE {db}.products TO {db}.products_old",
        &["renamed", "products_old", "rename it back"],
    )
    .await;
    stops_after(
        "ALTER TABLE {db}.products RENAME TO {db}.products_old",
        &["renamed", "products_old", "rename it back"],
    )
    .await;
}

#[tokio::test]
async fn swapping_a_table_in_by_rename_reconciles() {
    reconciles_after(
        "INSERT INTO {db}.other VALUES (3, 'new');
         RENAME TABLE {db}.products TO {db}.products_old, {db}.other TO {db}.products",
        &[3],
    )
    .await;
}

#[tokio::test]
async fn create_or_replace_reconciles() {
    reconciles_after(
        "CREATE OR REPLACE TABLE {db}.products (id INT PRIMARY KEY, sku VARCHAR(20))
         SELECT 8 AS id, 'fresh' AS sku",
        &[8],
    )
    .await;
}

#[tokio::test]
async fn a_statement_logged_change_stops_without_showing_row_data() {
    let server = MariaDb::start().await;
    let (db, start) = partitioned(&server).await;
    let source = Running::start(
        config(&server, &db, "products", SnapshotMode::Never),
        Some(start),
    );
    server
        .exec(&format!(
            "SET SESSION binlog_format = 'STATEMENT';
             INSERT INTO {db}.products VALUES (30, 'secret-row-value')"
        ))
        .await;
    let err = source.error().await;
    let msg = err.to_string();
    assert!(msg.contains("binlog_format"), "{msg}");
    assert!(
        !msg.contains("secret-row-value"),
        "row data in the error: {msg}"
    );
}
