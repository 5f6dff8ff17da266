//! Every row operation through the binlog: insert, update, delete, truncate; transactions stay
//! together and in order; rollbacks produce nothing; other tables only move the position.

use serde_json::json;
use vecsync::config::SnapshotMode;
use vecsync::event::Op;
use vecsync::position::GtidPosition;

use crate::harness::mariadb::MariaDb;
use crate::harness::source::{Running, config};
use crate::harness::unique_name;

async fn server_with_table() -> (MariaDb, String) {
    let db = MariaDb::start().await;
    let name = unique_name("shop");
    db.exec(&format!(
        "CREATE DATABASE {name}; CREATE TABLE {name}.products (
            id INT PRIMARY KEY, sku VARCHAR(50) NOT NULL, price DECIMAL(10,2)
        ); CREATE TABLE {name}.other (id INT PRIMARY KEY)"
    ))
    .await;
    (db, name)
}

fn pos(s: &str) -> GtidPosition {
    s.parse().expect("position")
}

#[tokio::test]
async fn insert_update_delete_arrive_as_c_u_d_with_commits() {
    let (db, name) = server_with_table().await;
    let mut source = Running::start(config(&db, &name, "products", SnapshotMode::Never), None);
    let start = source.started().await;
    assert_eq!(start.position, pos(&db.gtid_binlog_pos().await));
    db.exec(&format!(
        "INSERT INTO {name}.products VALUES (1, 'TS-001', 19.99)"
    ))
    .await;
    let after_insert = pos(&db.gtid_binlog_pos().await);
    let (events, commit) = source.transaction().await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.op, Op::Create);
    assert_eq!(e.before, None);
    assert_eq!(
        serde_json::to_value(&e.after).expect("json"),
        json!({"id": 1, "sku": "TS-001", "price": "19.99"})
    );
    assert_eq!(e.source.db, name);
    assert_eq!(e.source.table, "products");
    assert_eq!(e.source.server_id, 223344);
    assert_eq!(e.source.snapshot, "false");
    assert!(e.source.file.starts_with("mysql-bin."), "{}", e.source.file);
    assert!(e.source.pos > 4);
    assert!(e.source.ts_ms > 1_600_000_000_000);
    let gtid = after_insert.iter().next().expect("one domain").to_string();
    assert_eq!(e.source.gtid.as_deref(), Some(gtid.as_str()));
    assert_eq!(commit.position, after_insert);

    db.exec(&format!(
        "UPDATE {name}.products SET price = 17.50 WHERE id = 1"
    ))
    .await;
    let (events, commit) = source.transaction().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].op, Op::Update);
    assert_eq!(
        serde_json::to_value(&events[0].before).expect("json"),
        json!({"id": 1, "sku": "TS-001", "price": "19.99"})
    );
    assert_eq!(
        serde_json::to_value(&events[0].after).expect("json"),
        json!({"id": 1, "sku": "TS-001", "price": "17.50"})
    );
    assert_eq!(commit.position, pos(&db.gtid_binlog_pos().await));

    db.exec(&format!("DELETE FROM {name}.products WHERE id = 1"))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].op, Op::Delete);
    assert_eq!(events[0].after, None);
    assert_eq!(
        serde_json::to_value(&events[0].before).expect("json"),
        json!({"id": 1, "sku": "TS-001", "price": "17.50"})
    );
    source.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_transaction_keeps_its_rows_together_and_in_order() {
    let (db, name) = server_with_table().await;
    let mut source = Running::start(config(&db, &name, "products", SnapshotMode::Never), None);
    source.started().await;
    db.exec(&format!(
        "BEGIN;
         INSERT INTO {name}.products VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3);
         INSERT INTO {name}.other VALUES (1);
         UPDATE {name}.products SET price = price * 10 WHERE id IN (1, 3);
         DELETE FROM {name}.products WHERE id = 2;
         COMMIT"
    ))
    .await;
    let (events, commit) = source.transaction().await;
    let summary: Vec<(Op, i64)> = events
        .iter()
        .map(|e| {
            let row = e.after.as_ref().or(e.before.as_ref()).expect("a row");
            (e.op, row["id"].as_i64().expect("id"))
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Op::Create, 1),
            (Op::Create, 2),
            (Op::Create, 3),
            (Op::Update, 1),
            (Op::Update, 3),
            (Op::Delete, 2)
        ]
    );
    // One GTID for the whole transaction; the row index counts within each rows event.
    let gtids: std::collections::BTreeSet<_> =
        events.iter().map(|e| e.source.gtid.clone()).collect();
    assert_eq!(gtids.len(), 1);
    assert_eq!(
        events.iter().map(|e| e.source.row).collect::<Vec<_>>(),
        [0, 1, 2, 0, 1, 0]
    );
    assert_eq!(events[4].after.as_ref().expect("after")["price"], "30.00");
    assert_eq!(commit.position, pos(&db.gtid_binlog_pos().await));
    source.stop().await.expect("clean stop");
}

#[tokio::test]
async fn rolled_back_work_produces_nothing() {
    let (db, name) = server_with_table().await;
    let mut source = Running::start(config(&db, &name, "products", SnapshotMode::Never), None);
    source.started().await;
    let mut conn = db.conn().await;
    use mysql_async::prelude::Queryable;
    conn.query_drop(format!(
        "BEGIN; INSERT INTO {name}.products VALUES (1, 'gone', 1); ROLLBACK"
    ))
    .await
    .expect("rollback");
    // A savepoint rolled back inside a committed transaction: only the kept row arrives.
    conn.query_drop(format!(
        "BEGIN; INSERT INTO {name}.products VALUES (2, 'kept', 2); SAVEPOINT s;
         INSERT INTO {name}.products VALUES (3, 'undone', 3); ROLLBACK TO SAVEPOINT s; COMMIT"
    ))
    .await
    .expect("savepoint");
    // A rolled-back transaction that also changed a non-transactional (MyISAM) table: MariaDB
    // binlogs the MyISAM change on its own, the InnoDB row not at all.
    conn.query_drop(format!(
        "CREATE TABLE {name}.notes (id INT PRIMARY KEY) ENGINE=MyISAM;
         BEGIN; INSERT INTO {name}.products VALUES (4, 'rolled back', 4);
         INSERT INTO {name}.notes VALUES (1); ROLLBACK;
         INSERT INTO {name}.products VALUES (5, 'marker', 5)"
    ))
    .await
    .expect("mixed-engine rollback");
    let (events, _) = source.transaction().await;
    let skus: Vec<_> = events
        .iter()
        .map(|e| e.after.as_ref().expect("after")["sku"].clone())
        .collect();
    assert_eq!(skus, [json!("kept")]);
    let (events, _) = source.transaction().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].after.as_ref().expect("after")["sku"], "marker");
    conn.disconnect().await.expect("disconnect");
    source.stop().await.expect("clean stop");
}

#[tokio::test]
async fn other_tables_only_advance_the_position() {
    let (db, name) = server_with_table().await;
    let mut source = Running::start(config(&db, &name, "products", SnapshotMode::Never), None);
    source.started().await;
    let other_db = unique_name("elsewhere");
    db.exec(&format!(
        "INSERT INTO {name}.other VALUES (1); CREATE DATABASE {other_db};
         CREATE TABLE {other_db}.products (id INT PRIMARY KEY, sku VARCHAR(5));
         INSERT INTO {other_db}.products VALUES (1, 'x');
         INSERT INTO {name}.other VALUES (2)"
    ))
    .await;
    // The last transaction's commit is delivered once the stream goes idle, with no events
    // before it: a table of the same name in another database is not ours.
    let target = pos(&db.gtid_binlog_pos().await);
    let commit = source.commit_reaching(&target).await;
    assert_eq!(commit.position, target);
    source.stop().await.expect("clean stop");
}

#[tokio::test]
async fn truncate_is_a_t_event() {
    let (db, name) = server_with_table().await;
    db.exec(&format!(
        "INSERT INTO {name}.products VALUES (1, 'a', 1), (2, 'b', 2)"
    ))
    .await;
    let mut source = Running::start(config(&db, &name, "products", SnapshotMode::Never), None);
    source.started().await;
    db.exec(&format!(
        "TRUNCATE TABLE {name}.products; TRUNCATE TABLE {name}.other"
    ))
    .await;
    let (events, commit) = source.transaction().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].op, Op::Truncate);
    assert_eq!((&events[0].before, &events[0].after), (&None, &None));
    assert_eq!(events[0].source.table, "products");
    // TRUNCATE of the other table comes after, without an event of ours.
    let end = pos(&db.gtid_binlog_pos().await);
    assert_ne!(commit.position, end);
    source.commit_reaching(&end).await;
    source.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_large_transaction_arrives_whole_and_in_order() {
    let (db, name) = server_with_table().await;
    let mut source = Running::start(config(&db, &name, "products", SnapshotMode::Never), None);
    source.started().await;
    // One statement, one transaction, more rows than the source buffers before sending.
    db.exec(&format!(
        "INSERT INTO {name}.products SELECT seq, CONCAT('s', seq), seq / 100 FROM {name}.seq_1_to_25000"
    ))
    .await;
    let (events, commit) = source.transaction().await;
    assert_eq!(events.len(), 25_000);
    let ids: Vec<i64> = events
        .iter()
        .map(|e| e.after.as_ref().expect("after")["id"].as_i64().expect("id"))
        .collect();
    assert!(
        ids.iter().copied().eq(1..=25_000),
        "every row once, in order"
    );
    assert_eq!(
        events[24_999].after.as_ref().expect("after")["price"],
        "250.00"
    );
    assert_eq!(commit.position, pos(&db.gtid_binlog_pos().await));
    source.stop().await.expect("clean stop");
}
