//! Snapshots: every row as an `r` event consistent with one binlog position, then streaming from
//! exactly there. Checked against the final table while another connection keeps writing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vecsync::config::SnapshotMode;
use vecsync::event::{Op, SourceMessage};
use vecsync::position::GtidPosition;

use crate::harness::mariadb::MariaDb;
use crate::harness::source::{Running, config};
use crate::harness::{DEFAULT_DEADLINE, unique_name, wait_until};

async fn position(server: &MariaDb) -> GtidPosition {
    server.gtid_binlog_pos().await.parse().expect("position")
}

#[tokio::test]
async fn reads_every_row_then_streams_from_the_snapshot_position() {
    let server = MariaDb::start().await;
    let db = unique_name("snap");
    server
        .exec(&format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.products (id INT PRIMARY KEY, sku VARCHAR(20));
             INSERT INTO {db}.products VALUES (1, 'a'), (2, 'b'), (3, 'c')"
        ))
        .await;
    let at = position(&server).await;
    let mut source = Running::start(
        config(&server, &db, "products", SnapshotMode::Initial),
        None,
    );
    let mut reads = Vec::new();
    let commit = loop {
        match source.next().await {
            SourceMessage::Event(e) => reads.push(e),
            SourceMessage::Commit(c) => break c,
            SourceMessage::Snapshot(s) => panic!("unexpected snapshot message {s:?}"),
        }
    };
    assert_eq!(
        commit.position, at,
        "the snapshot commits at its binlog position"
    );
    let rows: Vec<Value> = reads
        .iter()
        .map(|e| serde_json::to_value(e.after.as_ref().expect("after")).expect("json"))
        .collect();
    assert_eq!(
        rows,
        [
            json!({"id": 1, "sku": "a"}),
            json!({"id": 2, "sku": "b"}),
            json!({"id": 3, "sku": "c"})
        ]
    );
    assert!(reads.iter().all(|e| e.op == Op::Read && e.before.is_none()));
    let marks: Vec<_> = reads.iter().map(|e| e.source.snapshot.as_str()).collect();
    assert_eq!(marks, ["true", "true", "last"]);
    assert!(reads.iter().all(|e| e.source.gtid.is_none()
        && e.source.file.starts_with("mysql-bin.")
        && e.source.pos > 4
        && e.source.server_id == 223344));

    server
        .exec(&format!("INSERT INTO {db}.products VALUES (4, 'd')"))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(events[0].op, Op::Create);
    assert_eq!(events[0].after.as_ref().expect("after")["id"], 4);
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn empty_table_and_the_modes_that_skip_or_force_a_snapshot() {
    let server = MariaDb::start().await;
    let db = unique_name("snap");
    server
        .exec(&format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.products (id INT PRIMARY KEY);
             CREATE TABLE {db}.empty (id INT PRIMARY KEY);
             INSERT INTO {db}.products VALUES (1), (2)"
        ))
        .await;
    let at = position(&server).await;

    // An empty table: just the commit.
    let mut source = Running::start(config(&server, &db, "empty", SnapshotMode::Initial), None);
    match source.next().await {
        SourceMessage::Commit(c) => assert_eq!(c.position, at),
        other => panic!("expected only a commit, got {other:?}"),
    }
    source.stop().await.expect("stop");

    // never: no rows, a commit at the current position.
    let mut source = Running::start(config(&server, &db, "products", SnapshotMode::Never), None);
    match source.next().await {
        SourceMessage::Commit(c) => assert_eq!(c.position, at),
        other => panic!("expected only a commit, got {other:?}"),
    }
    source.stop().await.expect("stop");

    // initial with a checkpoint: no snapshot; always with a checkpoint: a snapshot.
    let mut source = Running::start(
        config(&server, &db, "products", SnapshotMode::Initial),
        Some(at.clone()),
    );
    server
        .exec(&format!("INSERT INTO {db}.products VALUES (3)"))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(
        events.iter().map(|e| e.op).collect::<Vec<_>>(),
        [Op::Create]
    );
    source.stop().await.expect("stop");
    let mut source = Running::start(
        config(&server, &db, "products", SnapshotMode::Always),
        Some(at),
    );
    let (events, _) = source.transaction().await;
    assert_eq!(
        events.iter().map(|e| e.op).collect::<Vec<_>>(),
        [Op::Read, Op::Read, Op::Read]
    );
    source.stop().await.expect("stop");
}

/// Random writes until `stop`: single-row inserts, updates and deletes, and small transactions.
async fn write_randomly(
    server_url: String,
    db: String,
    seed: u64,
    stop: CancellationToken,
    done: Arc<AtomicU64>,
) -> u64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut conn = mysql_async::Conn::from_url(server_url)
        .await
        .expect("writer connects");
    let mut next_id = 10_000;
    let mut ops = 0u64;
    while !stop.is_cancelled() || ops < 50 {
        let id = rng.random_range(1..=1_000);
        let sql = match rng.random_range(0..10) {
            0..=4 => format!(
                "UPDATE {db}.products SET price = price + 1, version = version + 1 WHERE id = {id}"
            ),
            5 | 6 => {
                next_id += 1;
                format!("INSERT INTO {db}.products VALUES ({next_id}, 'n{next_id}', 1.00, 0)")
            }
            7 => format!("DELETE FROM {db}.products WHERE id = {id}"),
            _ => {
                next_id += 1;
                format!(
                    "BEGIN; UPDATE {db}.products SET version = version + 1 WHERE id = {id};
                     INSERT INTO {db}.products VALUES ({next_id}, 't{next_id}', 2.50, 0);
                     DELETE FROM {db}.products WHERE id = {};
                     COMMIT",
                    rng.random_range(1..=1_000)
                )
            }
        };
        conn.query_drop(sql).await.expect("writer statement");
        ops += 1;
        done.store(ops, Ordering::SeqCst);
    }
    conn.disconnect().await.expect("disconnect");
    ops
}

/// Apply one change to `table`, checking it against the state it applies to: a row read or
/// inserted twice, or an update/delete whose before image we never had, means the snapshot and
/// the stream overlap or leave a gap.
fn apply(table: &mut BTreeMap<i64, Value>, e: &vecsync::event::ChangeEvent, streaming: bool) {
    let image = |r: &Option<vecsync::event::Row>| {
        serde_json::to_value(r.as_ref().expect("image")).expect("json")
    };
    let key = |v: &Value| v["id"].as_i64().expect("id");
    match e.op {
        Op::Read => {
            assert!(!streaming, "reads only before the snapshot commit");
            let row = image(&e.after);
            assert!(table.insert(key(&row), row).is_none(), "a row read twice");
        }
        Op::Create => {
            let row = image(&e.after);
            assert!(
                table.insert(key(&row), row).is_none(),
                "insert of a row the snapshot already had: applied twice"
            );
        }
        Op::Update => {
            let (b, a) = (image(&e.before), image(&e.after));
            assert_eq!(
                table.get(&key(&b)),
                Some(&b),
                "update from a state we never had"
            );
            table.insert(key(&a), a);
        }
        Op::Delete => {
            let b = image(&e.before);
            assert_eq!(
                table.remove(&key(&b)),
                Some(b),
                "delete of a row we did not have"
            );
        }
        Op::Truncate => panic!("no truncate here"),
    }
}

/// Apply messages until a commit (the first one, or the first covering `until`); returns that
/// commit's position.
async fn replay_until(
    source: &mut Running,
    table: &mut BTreeMap<i64, Value>,
    until: Option<&GtidPosition>,
) -> GtidPosition {
    loop {
        match source.next().await {
            SourceMessage::Event(e) => apply(table, &e, until.is_some()),
            SourceMessage::Commit(c) => match until {
                None => return c.position,
                Some(end) if c.position.covers(end) => return c.position,
                Some(_) => {}
            },
            SourceMessage::Snapshot(s) => panic!("unexpected snapshot message {s:?}"),
        }
    }
}

#[tokio::test]
async fn snapshot_under_concurrent_writes_matches_the_final_table() {
    let seed: u64 = std::env::var("VECSYNC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!(
        "snapshot_under_concurrent_writes seed: {seed} (replay with VECSYNC_TEST_SEED={seed})"
    );

    let server = MariaDb::start().await;
    let db = unique_name("snap");
    let values: Vec<String> = (1..=1_000)
        .map(|i| format!("({i}, 's{i}', {i}.25, 0)"))
        .collect();
    server
        .exec(&format!(
            "CREATE DATABASE {db};
             CREATE TABLE {db}.products (id INT PRIMARY KEY, sku VARCHAR(20), price DECIMAL(10,2), version INT);
             INSERT INTO {db}.products VALUES {}",
            values.join(",")
        ))
        .await;
    let before_writes = position(&server).await;

    let stop = CancellationToken::new();
    let done = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_randomly(
        server.url(),
        db.clone(),
        seed,
        stop.clone(),
        done.clone(),
    ));
    let mut source = Running::start(
        config(&server, &db, "products", SnapshotMode::Initial),
        None,
    );

    // Replay the stream onto a map, checking every change against the state it applies to.
    let mut table: BTreeMap<i64, Value> = BTreeMap::new();
    let first = match source.next().await {
        SourceMessage::Event(e) => e,
        other => panic!("expected the first snapshot row, got {other:?}"),
    };
    apply(&mut table, &first, false);
    // The snapshot is now mid-read and blocked on the full channel: let the writer change rows
    // it has not sent yet.
    let target = done.load(Ordering::SeqCst) + 200;
    wait_until("200 writes during the snapshot", DEFAULT_DEADLINE, || {
        let n = done.load(Ordering::SeqCst);
        async move { (n >= target).then_some(()) }
    })
    .await;
    let snapshot_at = replay_until(&mut source, &mut table, None).await;
    // Keep writing while streaming for a little longer, then stop the writer.
    stop.cancel();
    let ops = writer.await.expect("writer");
    println!("writer ran {ops} statements");
    let end = position(&server).await;
    replay_until(&mut source, &mut table, Some(&end)).await;
    // The 200 writes made while the snapshot was mid-read come after its position.
    assert!(
        snapshot_at.covers(&before_writes) && !snapshot_at.covers(&end),
        "the snapshot was taken during the writes: {before_writes} <= {snapshot_at} < {end}"
    );

    let mut conn = server.conn().await;
    let rows: Vec<(i64, String, String, i64)> = conn
        .query(format!(
            "SELECT id, sku, CAST(price AS CHAR), version FROM {db}.products ORDER BY id"
        ))
        .await
        .expect("final table");
    conn.disconnect().await.expect("disconnect");
    let expected: BTreeMap<i64, Value> = rows
        .into_iter()
        .map(|(id, sku, price, version)| {
            (
                id,
                json!({"id": id, "sku": sku, "price": price, "version": version}),
            )
        })
        .collect();
    assert_eq!(table.len(), expected.len(), "row count");
    assert!(table == expected, "replayed stream equals the final table");
    source.stop().await.expect("stop");
}
