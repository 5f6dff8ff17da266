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
