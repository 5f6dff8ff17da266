//! Snapshots, source side: the message protocol (`Started`, chunks, the last one marked, a
//! commit), the start rules, paging through keys of every type, composite keys (the index is
//! used), and the fallback for tables without a usable key.

use std::time::Instant;

use mysql_async::prelude::Queryable;
use serde_json::{Value, json};
use vecsync::config::SnapshotMode;
use vecsync::event::{Op, SnapshotChunk, SnapshotMessage, SnapshotStarted, SourceMessage};
use vecsync::position::GtidPosition;
use vecsync::source::{SourceConfig, Start, TableReader};

use crate::harness::mariadb::MariaDb;
use crate::harness::source::{Running, config};
use crate::harness::{DEFAULT_DEADLINE, unique_name};
use crate::snapshot_model::{Model, products_table};

async fn position(server: &MariaDb) -> GtidPosition {
    server.gtid_binlog_pos().await.parse().expect("position")
}

fn chunked(
    server: &MariaDb,
    db: &str,
    table: &str,
    mode: SnapshotMode,
    rows: usize,
) -> SourceConfig {
    let mut cfg = config(server, db, table, mode);
    cfg.snapshot_chunk_rows = rows;
    cfg
}

async fn started(source: &mut Running) -> SnapshotStarted {
    match source.next().await {
        SourceMessage::Snapshot(SnapshotMessage::Started(s)) => s,
        other => panic!("expected Started, got {other:?}"),
    }
}

async fn chunk(source: &mut Running) -> SnapshotChunk {
    loop {
        match source.next().await {
            SourceMessage::Snapshot(SnapshotMessage::Chunk(c)) => return c,
            SourceMessage::Commit(_) => {}
            other => panic!("expected a chunk, got {other:?}"),
        }
    }
}

fn rows(c: &SnapshotChunk) -> Vec<Value> {
    c.rows
        .iter()
        .map(|e| serde_json::to_value(e.after.as_ref().expect("after")).expect("json"))
        .collect()
}

#[tokio::test]
async fn first_chunk_then_the_stream_from_its_position() {
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
        chunked(&server, &db, "products", SnapshotMode::Initial, 2),
        None,
    );

    let s = started(&mut source).await;
    assert!(!s.resumed);
    assert_eq!(s.reason, "no checkpoint");
    let first = match source.next().await {
        SourceMessage::Snapshot(SnapshotMessage::Chunk(c)) => c,
        other => panic!("expected the first chunk, got {other:?}"),
    };
    assert_eq!(
        (first.seq, first.last, first.snapshot_id.as_str()),
        (0, false, s.id.as_str())
    );
    assert_eq!(first.position, at, "read at the server's position");
    assert_eq!(
        rows(&first),
        [json!({"id": 1, "sku": "a"}), json!({"id": 2, "sku": "b"})]
    );
    assert_eq!(first.last_key, Some(vec![json!(2)]));
    // The stream starts where the first chunk was read.
    match source.next().await {
        SourceMessage::Commit(c) => assert_eq!(c.position, at),
        other => panic!("expected the commit at the first chunk's position, got {other:?}"),
    }
    let second = chunk(&mut source).await;
    assert_eq!((second.seq, second.last), (1, true));
    assert_eq!(rows(&second), [json!({"id": 3, "sku": "c"})]);
    let marks: Vec<_> = first
        .rows
        .iter()
        .chain(&second.rows)
        .map(|e| e.source.snapshot.as_str())
        .collect();
    assert_eq!(marks, ["true", "true", "last"]);
    assert!(first.rows.iter().all(|e| e.op == Op::Read
        && e.before.is_none()
        && e.source.gtid.is_none()
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
async fn empty_table_and_the_start_rules() {
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

    // An empty table: Started, one empty last chunk, the commit.
    let mut source = Running::start(config(&server, &db, "empty", SnapshotMode::Initial), None);
    started(&mut source).await;
    let c = chunk(&mut source).await;
    assert!(
        c.rows.is_empty() && c.last && c.last_key.is_none() && c.seq == 0,
        "{c:?}"
    );
    match source.next().await {
        SourceMessage::Commit(commit) => assert_eq!(commit.position, at),
        other => panic!("expected the commit, got {other:?}"),
    }
    source.stop().await.expect("stop");

    // never: no snapshot, a commit at the current position.
    let mut source = Running::start(config(&server, &db, "products", SnapshotMode::Never), None);
    match source.next().await {
        SourceMessage::Commit(c) => assert_eq!(c.position, at),
        other => panic!("expected only a commit, got {other:?}"),
    }
    source.stop().await.expect("stop");

    // initial with a checkpoint: no snapshot.
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

    // always with a checkpoint: the stream goes on from the checkpoint (the insert after it is
    // streamed) and a snapshot is merged into it.
    let mut source = Running::start(
        config(&server, &db, "products", SnapshotMode::Always),
        Some(at),
    );
    let mut ops = Vec::new();
    let mut reason = None;
    let mut read = Vec::new();
    while read.len() < 3 || ops.is_empty() {
        match source.next().await {
            SourceMessage::Event(e) => ops.push(e.op),
            SourceMessage::Snapshot(SnapshotMessage::Started(s)) => reason = Some(s.reason),
            SourceMessage::Snapshot(SnapshotMessage::Chunk(c)) => {
                read.extend(rows(&c).into_iter().map(|r| r["id"].clone()))
            }
            SourceMessage::Commit(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        ops,
        [Op::Create],
        "the insert after the checkpoint is streamed"
    );
    assert_eq!(reason.as_deref(), Some("--snapshot always"));
    assert_eq!(read, [json!(1), json!(2), json!(3)]);
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn an_idle_stream_reads_chunks_back_to_back() {
    let server = MariaDb::start().await;
    let db = unique_name("snap");
    server
        .exec(&crate::snapshot_model::create_products(&db, 1_000))
        .await;
    let started_at = Instant::now();
    let mut source = Running::start(
        chunked(&server, &db, "products", SnapshotMode::Initial, 10),
        None,
    );
    let mut model = Model::new(crate::snapshot_model::id_key);
    while !model.seen.snapshot_done {
        let m = source.next().await;
        model.apply(&m);
    }
    // 100 chunks: one per heartbeat would take 100 s.
    assert_eq!(model.seen.chunks.len(), 100);
    assert!(
        started_at.elapsed() < DEFAULT_DEADLINE,
        "an idle stream does not wait for heartbeats between chunks: {:?}",
        started_at.elapsed()
    );
    let mut conn = server.conn().await;
    assert!(model.rows == products_table(&mut conn, &db).await);
    conn.disconnect().await.expect("disconnect");
    source.stop().await.expect("stop");
}

/// Every row of `db.t` read through `TableReader` `rows` at a time, in order, exactly once.
async fn page_through(server: &MariaDb, db: &str, table: &str, rows: usize) -> Vec<Value> {
    let cfg = config(server, db, table, SnapshotMode::Initial);
    let mut reader = TableReader::connect(&cfg).await.expect("reader");
    let mut after: Option<Vec<Value>> = None;
    let mut out = Vec::new();
    for _ in 0..1_000 {
        let chunk = reader
            .next_chunk(after.as_deref(), rows)
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"));
        assert!(chunk.rows.len() <= rows);
        out.extend(
            chunk
                .rows
                .iter()
                .map(|r| serde_json::to_value(r).expect("json")),
        );
        // The key goes through JSON text, as the checkpoint stores it.
        let text = serde_json::to_string(&chunk.last_key).expect("key to text");
        if chunk.last {
            return out;
        }
        after = serde_json::from_str(&text).expect("key from text");
        assert!(
            after.is_some(),
            "{table}: a chunk that is not the last has a key"
        );
    }
    panic!("{table}: paging did not end");
}

#[tokio::test]
async fn keys_of_every_type_page_exactly() {
    let server = MariaDb::start().await;
    let db = unique_name("keys");
    // (key column type, values in the column's order). Collations, signs, zero dates, FLOAT's
    // rounding, ENUM order (by member, not name) and binary bytes all matter.
    let cases: &[(&str, &[&str])] = &[
        (
            "BIGINT UNSIGNED",
            &["0", "1", "9223372036854775808", "18446744073709551615"],
        ),
        ("INT", &["-2147483648", "-1", "0", "7"]),
        (
            "DECIMAL(20,5)",
            &["-99999.5", "-0.00001", "0", "0.1", "123456789012345.12345"],
        ),
        ("FLOAT", &["-1.5", "0.1", "19.99", "3e30"]),
        ("DOUBLE", &["-1e300", "0.1", "0.30000000000000004", "1e300"]),
        (
            "VARCHAR(20) COLLATE utf8mb4_unicode_ci",
            &["'a'", "'B'", "'c d'", "'ä x'", "'zz'", "'😀'"],
        ),
        (
            "VARCHAR(20) COLLATE latin1_swedish_ci",
            &["'a'", "'B'", "'é'", "'z'"],
        ),
        (
            "VARBINARY(8)",
            &["x''", "x'00'", "x'0000'", "x'7f'", "x'ff'"],
        ),
        ("BINARY(3)", &["x'00'", "x'0001'", "x'ff'"]),
        ("DATE", &["'0000-00-00'", "'1970-01-01'", "'2024-02-29'"]),
        (
            "DATETIME(6)",
            &[
                "'0000-00-00 00:00:00'",
                "'1970-01-01 00:00:00.000001'",
                "'2024-02-29 12:00:00.5'",
            ],
        ),
        (
            "TIMESTAMP(3)",
            &["'1970-01-01 00:00:01'", "'2038-01-19 03:14:07.999'"],
        ),
        (
            "TIME(2)",
            &[
                "'-838:59:59'",
                "'-00:00:01.5'",
                "'00:00:00'",
                "'25:00:00.25'",
            ],
        ),
        ("YEAR", &["1901", "2024", "2155"]),
        (
            "ENUM('zeta','alpha','mid')",
            &["'zeta'", "'alpha'", "'mid'"],
        ),
        ("SET('b','a')", &["''", "'b'", "'a'", "'b,a'"]),
        ("BIT(12)", &["b'0'", "b'101'", "b'111111111111'"]),
    ];
    let mut setup = format!("CREATE DATABASE {db}; SET time_zone = '+00:00';");
    for (i, (ty, values)) in cases.iter().enumerate() {
        setup.push_str(&format!(
            "CREATE TABLE {db}.t{i} (k {ty} NOT NULL PRIMARY KEY, n INT);"
        ));
        for (n, v) in values.iter().enumerate() {
            setup.push_str(&format!("INSERT INTO {db}.t{i} VALUES ({v}, {n});"));
        }
    }
    server.exec(&setup).await;
    let mut conn = server.conn().await;
    for (i, (ty, values)) in cases.iter().enumerate() {
        // The order MariaDB itself gives the key.
        let want: Vec<i64> = conn
            .query(format!("SELECT n FROM {db}.t{i} ORDER BY k"))
            .await
            .expect("order");
        assert_eq!(want.len(), values.len(), "{ty}: every value inserted");
        for rows in [1, 2, values.len()] {
            let read = page_through(&server, &db, &format!("t{i}"), rows).await;
            let order: Vec<i64> = read.iter().map(|r| r["n"].as_i64().expect("n")).collect();
            assert_eq!(
                order, want,
                "{ty}, {rows} per chunk: every row once, in key order"
            );
        }
    }
    conn.disconnect().await.expect("disconnect");
}

#[tokio::test]
async fn a_composite_key_pages_through_its_index() {
    let server = MariaDb::start().await;
    let db = unique_name("keys");
    let mut values = Vec::new();
    for shop in 1..=6 {
        for s in ["a", "b", "c", "d", "e"] {
            values.push(format!("({shop}, '{s}{shop}', {shop})"));
        }
    }
    server
        .exec(&format!(
            "CREATE DATABASE {db};
             CREATE TABLE {db}.items (shop INT NOT NULL, sku VARCHAR(20) NOT NULL, n INT,
                 PRIMARY KEY (shop, sku), KEY by_n (n));
             INSERT INTO {db}.items VALUES {}",
            values.join(",")
        ))
        .await;
    let read = page_through(&server, &db, "items", 4).await;
    let keys: Vec<(i64, String)> = read
        .iter()
        .map(|r| {
            (
                r["shop"].as_i64().expect("shop"),
                r["sku"].as_str().expect("sku").to_owned(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(keys, sorted, "in key order, each once");
    assert_eq!(keys.len(), 30);

    // The keyset condition is a range on the primary key, not a scan.
    let cfg = config(&server, &db, "items", SnapshotMode::Initial);
    let mut reader = TableReader::connect(&cfg).await.expect("reader");
    assert_eq!(
        reader.key_columns(),
        Some(vec!["shop".into(), "sku".into()])
    );
    let sql = reader
        .chunk_sql(true, 1024)
        .await
        .expect("sql")
        .expect("a key");
    let mut conn = server.conn().await;
    let params: Vec<mysql_async::Value> = vec![3.into(), 3.into(), 3.into(), "c3".into()];
    let plan: Vec<mysql_async::Row> = conn
        .exec(format!("EXPLAIN {sql}"), params)
        .await
        .expect("explain");
    let row = plan.first().expect("a plan row");
    let access: Option<String> = row.get("type");
    let key: Option<String> = row.get("key");
    assert_eq!(
        (access.as_deref(), key.as_deref()),
        (Some("range"), Some("PRIMARY")),
        "{sql}"
    );
    conn.disconnect().await.expect("disconnect");
}

#[tokio::test]
async fn composite_key_snapshot_with_changes_between_chunks() {
    let server = MariaDb::start().await;
    let db = unique_name("keys");
    let mut values = Vec::new();
    for shop in 1..=10 {
        for s in 0..10 {
            values.push(format!("({shop}, 'k{s}', 0)"));
        }
    }
    server
        .exec(&format!(
            "CREATE DATABASE {db};
             CREATE TABLE {db}.items (shop INT NOT NULL, sku VARCHAR(20) NOT NULL, v INT,
                 PRIMARY KEY (shop, sku));
             INSERT INTO {db}.items VALUES {}",
            values.join(",")
        ))
        .await;
    fn key(row: &Value) -> (i64, String) {
        (
            row["shop"].as_i64().expect("shop"),
            row["sku"].as_str().expect("sku").to_owned(),
        )
    }
    let mut source = Running::start_manual(
        chunked(&server, &db, "items", SnapshotMode::Initial, 7),
        Start::default(),
    );
    let mut model = Model::new(key);
    let mut round = 0;
    while !model.seen.snapshot_done {
        let m = source.next().await;
        model.apply(&m);
        if let SourceMessage::Snapshot(SnapshotMessage::Chunk(c)) = &m {
            // Change rows before and after the chunk's range, then let the next one be read.
            round += 1;
            let shop = (round % 10) + 1;
            server
                .exec(&format!(
                    "UPDATE {db}.items SET v = v + 1 WHERE shop = {shop} AND sku IN ('k1', 'k8');
                     DELETE FROM {db}.items WHERE shop = {} AND sku = 'k{}';
                     INSERT IGNORE INTO {db}.items VALUES ({shop}, 'new{round}', 9), (11, 'z{round}', 1)",
                    11 - shop,
                    round % 10
                ))
                .await;
            source.control().chunk_confirmed(&c.snapshot_id, c.seq);
        }
    }
    let end = position(&server).await;
    while !model
        .seen
        .last_commit
        .as_ref()
        .is_some_and(|p| p.covers(&end))
    {
        let m = source.next().await;
        model.apply(&m);
    }
    let mut conn = server.conn().await;
    let table: Vec<(i64, String, i64)> = conn
        .query(format!("SELECT shop, sku, v FROM {db}.items"))
        .await
        .expect("table");
    conn.disconnect().await.expect("disconnect");
    let want: std::collections::BTreeMap<(i64, String), Value> = table
        .into_iter()
        .map(|(shop, sku, v)| {
            (
                (shop, sku.clone()),
                json!({"shop": shop, "sku": sku, "v": v}),
            )
        })
        .collect();
    assert!(model.rows == want, "the merged stream equals the table");
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn a_table_without_a_usable_key_is_read_in_one_consistent_read() {
    let server = MariaDb::start().await;
    let db = unique_name("nokey");
    server
        .exec(&format!(
            "CREATE DATABASE {db};
             CREATE TABLE {db}.products (sku VARCHAR(20), ean VARCHAR(20), UNIQUE KEY ean (ean));
             INSERT INTO {db}.products VALUES ('a', '1'), ('b', '2'), ('c', NULL), ('d', '4'), ('e', '5')"
        ))
        .await;
    let cfg = chunked(&server, &db, "products", SnapshotMode::Initial, 2);
    let reader = TableReader::connect(&cfg).await.expect("reader");
    assert_eq!(reader.key_columns(), None);
    let why = reader.no_key_reason().expect("a reason");
    assert!(why.contains("allows NULL in column `ean`"), "{why}");
    drop(reader);

    let at = position(&server).await;
    let mut source = Running::start(cfg.clone(), None);
    started(&mut source).await;
    let mut chunks = Vec::new();
    loop {
        let c = chunk(&mut source).await;
        let last = c.last;
        chunks.push(c);
        if last {
            break;
        }
    }
    assert_eq!(
        chunks.iter().map(|c| c.rows.len()).collect::<Vec<_>>(),
        [2, 2, 1],
        "sent in chunks of --snapshot-chunk-rows"
    );
    assert!(
        chunks
            .iter()
            .all(|c| c.position == at && c.last_key.is_none())
    );
    assert_eq!(chunks.iter().map(|c| c.seq).collect::<Vec<_>>(), [0, 1, 2]);
    match source.next().await {
        SourceMessage::Commit(c) => assert_eq!(c.position, at),
        other => panic!("expected the commit at the read's position, got {other:?}"),
    }
    server
        .exec(&format!("INSERT INTO {db}.products VALUES ('f', '6')"))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(events[0].op, Op::Create);
    source.stop().await.expect("stop");

    // With a checkpoint (`always`), the stream stops for the read and continues from its
    // position.
    let checkpoint = position(&server).await;
    server
        .exec(&format!("INSERT INTO {db}.products VALUES ('g', '7')"))
        .await;
    let mut source = Running::start(
        chunked(&server, &db, "products", SnapshotMode::Always, 100),
        Some(checkpoint),
    );
    let mut skus = Vec::new();
    let read_at = loop {
        match source.next().await {
            SourceMessage::Snapshot(SnapshotMessage::Chunk(c)) => {
                skus.extend(rows(&c).into_iter().map(|r| r["sku"].clone()));
                if c.last {
                    break c.position;
                }
            }
            SourceMessage::Snapshot(SnapshotMessage::Started(_)) | SourceMessage::Commit(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    skus.sort_by_key(|v| v.as_str().map(str::to_owned));
    assert_eq!(skus.len(), 7, "{skus:?}");
    assert!(read_at.covers(&position(&server).await));
    server
        .exec(&format!("DELETE FROM {db}.products WHERE sku = 'a'"))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(
        events.iter().map(|e| e.op).collect::<Vec<_>>(),
        [Op::Delete]
    );
    source.stop().await.expect("stop");
}

/// Commit something unrelated and wait until the source's stream has passed it: the source had
/// every chance to send more by then.
async fn stream_passes(
    server: &MariaDb,
    db: &str,
    source: &mut Running,
    seen: &mut Vec<SnapshotChunk>,
) {
    server
        .exec(&format!("INSERT INTO {db}.other VALUES ()"))
        .await;
    let at = position(server).await;
    loop {
        match source.next().await {
            SourceMessage::Commit(c) if c.position.covers(&at) => return,
            SourceMessage::Snapshot(SnapshotMessage::Chunk(c)) => seen.push(c),
            _ => {}
        }
    }
}

#[tokio::test]
async fn at_most_max_chunks_ahead_are_unconfirmed() {
    let server = MariaDb::start().await;
    let db = unique_name("credits");
    server
        .exec(&crate::snapshot_model::create_products(&db, 100))
        .await;
    server
        .exec(&format!(
            "CREATE TABLE {db}.other (id INT AUTO_INCREMENT PRIMARY KEY)"
        ))
        .await;
    let mut source = Running::start_manual(
        chunked(&server, &db, "products", SnapshotMode::Initial, 5),
        Start::default(),
    );
    let mut seen = Vec::new();
    let max = vecsync::source::MAX_CHUNKS_AHEAD;
    // Reads may be retried (a read can lag the stream's position by an instant): wait until
    // the credits are used up, then check that nothing more comes while the stream goes on.
    for want in max..max + 4 {
        for _ in 0..100 {
            if seen.len() >= want {
                break;
            }
            stream_passes(&server, &db, &mut source, &mut seen).await;
        }
        for _ in 0..3 {
            stream_passes(&server, &db, &mut source, &mut seen).await;
        }
        assert_eq!(seen.len(), want, "{} unconfirmed chunks at most", max);
        // Each confirmation lets exactly one more chunk be read.
        let c = &seen[want - max];
        source.control().chunk_confirmed(&c.snapshot_id, c.seq);
    }
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn a_reconciling_snapshot_can_start_while_streaming() {
    let server = MariaDb::start().await;
    let db = unique_name("reconcile");
    server
        .exec(&crate::snapshot_model::create_products(&db, 50))
        .await;
    let at = position(&server).await;
    let mut source = Running::start(
        chunked(&server, &db, "products", SnapshotMode::Initial, 20),
        Some(at),
    );
    source
        .control()
        .start_reconciling_snapshot("TRUNCATE PARTITION");
    let first = started(&mut source).await;
    assert_eq!(
        (first.reason.as_str(), first.resumed),
        ("TRUNCATE PARTITION", false)
    );
    let c = chunk(&mut source).await;
    assert_eq!((c.seq, c.snapshot_id.as_str()), (0, first.id.as_str()));
    // A second request replaces the running snapshot: a new id, numbered from 0 again.
    source
        .control()
        .start_reconciling_snapshot("diverged failover");
    let second = loop {
        match source.next().await {
            SourceMessage::Snapshot(SnapshotMessage::Started(s)) => break s,
            SourceMessage::Snapshot(SnapshotMessage::Chunk(c)) => {
                assert_eq!(c.snapshot_id, first.id)
            }
            _ => {}
        }
    };
    assert_ne!(second.id, first.id);
    let mut ids = Vec::new();
    loop {
        let c = chunk(&mut source).await;
        assert_eq!(c.snapshot_id, second.id);
        ids.extend(rows(&c).into_iter().map(|r| r["id"].as_i64().expect("id")));
        if c.last {
            break;
        }
    }
    assert_eq!(ids, (1..=50).collect::<Vec<_>>());
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn a_snapshot_with_only_its_sweep_left_reads_no_chunk() {
    let server = MariaDb::start().await;
    let db = unique_name("sweep");
    server
        .exec(&crate::snapshot_model::create_products(&db, 10))
        .await;
    let at = position(&server).await;
    let progress = vecsync::checkpoint::SnapshotProgress {
        id: "done-reading".into(),
        started_ms: 1,
        after_key: Some(vec![json!(10)]),
        next_seq: 1,
        rows_done: 10,
        sweep: Some(vecsync::checkpoint::SweepProgress { after_id: None }),
    };
    let mut source = Running::start_from(
        config(&server, &db, "products", SnapshotMode::Always),
        Start {
            position: Some(at),
            snapshot: Some(progress),
        },
    );
    let s = started(&mut source).await;
    assert_eq!((s.id.as_str(), s.resumed), ("done-reading", true));
    server
        .exec(&format!("DELETE FROM {db}.products WHERE id = 3"))
        .await;
    // The next thing is the stream, not a chunk.
    let (events, _) = source.transaction().await;
    assert_eq!(
        events.iter().map(|e| e.op).collect::<Vec<_>>(),
        [Op::Delete]
    );
    source.stop().await.expect("stop");
}

/// A measurement, not a timed test (ignored; run it on an idle machine):
/// `cargo nextest run --test integration --run-ignored only -E 'test(/source_snapshot_rate/)' --no-capture`.
/// How fast the source alone reads a 20,000-row table into the stream (chunks confirmed on
/// receipt, no Weaviate, no model): the ceiling the pipeline's snapshot rate can reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --run-ignored on an idle machine"]
async fn source_snapshot_rate() {
    let server = MariaDb::start().await;
    let db = unique_name("rate");
    server
        .exec(&crate::snapshot_model::create_products(&db, 20_000))
        .await;
    for rows in [1024, 256] {
        let started_at = Instant::now();
        let mut source = Running::start(
            chunked(&server, &db, "products", SnapshotMode::Initial, rows),
            None,
        );
        let mut read = 0;
        started(&mut source).await;
        loop {
            let c = chunk(&mut source).await;
            read += c.rows.len();
            if c.last {
                break;
            }
        }
        let secs = started_at.elapsed().as_secs_f64();
        println!(
            "source snapshot: {read} rows in chunks of {rows}: {secs:.3} s, {:.0} rows/s",
            read as f64 / secs
        );
        source.stop().await.expect("stop");
    }
}
