//! Chunks merged into a live stream at their exact positions, checked with the snapshot model
//! (every step, then the final table row by row): concurrent inserts, updates, deletes and sku
//! changes on rows already copied and not yet copied; several replication domains; an ALTER
//! TABLE in the middle; absence checks racing inserts; the least-privilege user; a read-only
//! replica.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mysql_async::prelude::Queryable;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use vecsync::config::SnapshotMode;
use vecsync::event::{SnapshotMessage, SourceMessage};
use vecsync::position::GtidPosition;
use vecsync::source::{SourceConfig, SourceError, Start, TableReader};

use crate::harness::mariadb::MariaDb;
use crate::harness::source::{Running, config};
use crate::harness::{DEFAULT_DEADLINE, unique_name, wait_until};
use crate::snapshot_model::{Model, create_products, id_key, products_table, seed, write_randomly};

async fn position(server: &MariaDb) -> GtidPosition {
    server.gtid_binlog_pos().await.parse().expect("position")
}

async fn wait_for_writes(done: &Arc<AtomicU64>, more: u64) {
    let target = done.load(Ordering::SeqCst) + more;
    wait_until("the writer to make progress", DEFAULT_DEADLINE, || {
        let n = done.load(Ordering::SeqCst);
        async move { (n >= target).then_some(()) }
    })
    .await;
}

/// Run the snapshot to its last chunk, letting the writer make `writes_per_chunk` statements
/// before each chunk is confirmed (so the next one is read while rows change).
async fn snapshot_with_writes(
    source: &mut Running,
    model: &mut Model<i64>,
    done: &Arc<AtomicU64>,
    writes_per_chunk: u64,
) {
    while !model.seen.snapshot_done {
        let m = source.next().await;
        model.apply(&m);
        if let SourceMessage::Snapshot(SnapshotMessage::Chunk(c)) = &m {
            wait_for_writes(done, writes_per_chunk).await;
            source.control().chunk_confirmed(&c.snapshot_id, c.seq);
        }
    }
}

/// Apply messages until a commit covers `end`.
async fn until_commit(source: &mut Running, model: &mut Model<i64>, end: &GtidPosition) {
    while !model
        .seen
        .last_commit
        .as_ref()
        .is_some_and(|p| p.covers(end))
    {
        let m = source.next().await;
        model.apply(&m);
    }
}

fn assert_chunks_in_sequence(model: &Model<i64>) {
    let seqs: Vec<u64> = model.seen.chunks.iter().map(|c| c.0).collect();
    let want: Vec<u64> = (0..seqs.len() as u64).collect();
    assert_eq!(seqs, want, "each chunk once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_during_a_chunked_snapshot_match_the_table() {
    let seed = seed("concurrent_writes_during_a_chunked_snapshot");
    let server = MariaDb::start().await;
    let db = unique_name("merge");
    server.exec(&create_products(&db, 2_000)).await;

    let stop = CancellationToken::new();
    let done = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_randomly(
        server.url(),
        db.clone(),
        2_000,
        seed,
        1,
        stop.clone(),
        done.clone(),
    ));
    wait_for_writes(&done, 10).await;
    let mut cfg = config(&server, &db, "products", SnapshotMode::Initial);
    cfg.snapshot_chunk_rows = 40;
    let mut source = Running::start_manual(cfg, Start::default());
    let mut model = Model::new(id_key);
    snapshot_with_writes(&mut source, &mut model, &done, 3).await;
    stop.cancel();
    let ops = writer.await.expect("writer");
    let end = position(&server).await;
    until_commit(&mut source, &mut model, &end).await;

    println!(
        "writer ran {ops} statements; seen {:?}",
        model.seen.chunks.len()
    );
    assert_chunks_in_sequence(&model);
    assert!(model.seen.chunks.len() >= 50, "many chunks");
    assert!(
        model.seen.on_copied > 0 && model.seen.on_not_copied > 0,
        "changes streamed during the snapshot hit copied rows ({}) and rows not yet copied ({})",
        model.seen.on_copied,
        model.seen.on_not_copied
    );
    let mut conn = server.conn().await;
    let table = products_table(&mut conn, &db).await;
    conn.disconnect().await.expect("disconnect");
    assert_eq!(model.rows.len(), table.len(), "row count");
    assert!(
        model.rows == table,
        "the merged stream equals the final table"
    );
    source.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_replication_domains() {
    let seed = seed("several_replication_domains");
    let server = MariaDb::start().await;
    let db = unique_name("merge");
    server.exec(&create_products(&db, 1_000)).await;
    // Both domains have history before the checkpoint.
    server
        .exec(&format!(
            "SET SESSION gtid_domain_id = 1; UPDATE {db}.products SET version = 1 WHERE id = 1;
             SET SESSION gtid_domain_id = 2; UPDATE {db}.products SET version = 2 WHERE id = 2"
        ))
        .await;
    let checkpoint = position(&server).await;
    assert_eq!(checkpoint.iter().count(), 3, "{checkpoint}");

    let stop = CancellationToken::new();
    let done = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_randomly(
        server.url(),
        db.clone(),
        1_000,
        seed,
        3,
        stop.clone(),
        done.clone(),
    ));
    wait_for_writes(&done, 10).await;
    // A snapshot merged into a stream that resumes from a multi-domain checkpoint.
    let mut cfg = config(&server, &db, "products", SnapshotMode::Always);
    cfg.snapshot_chunk_rows = 25;
    let mut source = Running::start_manual(
        cfg,
        Start {
            position: Some(checkpoint),
            snapshot: None,
        },
    );
    let mut model = Model::new(id_key);
    snapshot_with_writes(&mut source, &mut model, &done, 3).await;
    stop.cancel();
    writer.await.expect("writer");
    let end = position(&server).await;
    until_commit(&mut source, &mut model, &end).await;

    assert_chunks_in_sequence(&model);
    let moved: Vec<u32> = (0..3)
        .filter(|d| {
            let positions = &model.seen.chunks;
            let first = positions
                .first()
                .and_then(|c| c.2.get(*d))
                .map(|g| g.sequence);
            let last = positions
                .last()
                .and_then(|c| c.2.get(*d))
                .map(|g| g.sequence);
            first.is_some() && first < last
        })
        .collect();
    assert_eq!(
        moved,
        [0, 1, 2],
        "chunks were read while every domain advanced"
    );
    assert!(model.seen.events_during_snapshot > 0);
    let mut conn = server.conn().await;
    let table = products_table(&mut conn, &db).await;
    conn.disconnect().await.expect("disconnect");
    assert!(
        model.rows == table,
        "the merged stream equals the final table"
    );
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn alter_table_add_column_in_the_middle_of_a_snapshot() {
    let server = MariaDb::start().await;
    let db = unique_name("merge");
    server.exec(&create_products(&db, 500)).await;
    let mut cfg = config(&server, &db, "products", SnapshotMode::Initial);
    cfg.snapshot_chunk_rows = 25;
    let mut source = Running::start_manual(cfg.clone(), Start::default());
    // Rows copied before the ALTER keep their old image; compare the columns all rows have.
    let mut model = Model::new(id_key).only_columns(&["id", "sku", "price", "version"]);
    let mut altered_at: Option<GtidPosition> = None;
    let (mut before, mut after) = (0, 0);
    while !model.seen.snapshot_done {
        let m = source.next().await;
        model.apply(&m);
        if let SourceMessage::Snapshot(SnapshotMessage::Chunk(c)) = &m {
            if c.seq == 5 {
                // Chunks 6 and 7 may be read before or after this; 8 on only after.
                server
                    .exec(&format!(
                        "ALTER TABLE {db}.products ADD COLUMN note VARCHAR(10) NOT NULL DEFAULT 'n'"
                    ))
                    .await;
                altered_at = Some(position(&server).await);
                server
                    .exec(&format!(
                        "UPDATE {db}.products SET version = version + 1, note = 'u' WHERE id IN (3, 300)"
                    ))
                    .await;
            }
            // A chunk read at or after the ALTER has the new column, one read before does not.
            let new = altered_at.as_ref().is_some_and(|at| c.position.covers(at));
            for row in &c.rows {
                let row = row.after.as_ref().expect("after");
                assert_eq!(
                    row.contains_key("note"),
                    new,
                    "chunk {} at {}: {row:?}",
                    c.seq,
                    c.position
                );
            }
            if new {
                after += 1;
            } else {
                before += 1;
            }
            source.control().chunk_confirmed(&c.snapshot_id, c.seq);
        }
    }
    let end = position(&server).await;
    until_commit(&mut source, &mut model, &end).await;
    assert!(
        before > 0 && after > 0,
        "chunks read before ({before}) and after ({after}) the ALTER"
    );
    assert_chunks_in_sequence(&model);
    let mut conn = server.conn().await;
    let table = products_table(&mut conn, &db).await;
    conn.disconnect().await.expect("disconnect");
    assert!(
        model.rows == table,
        "the merged stream equals the final table"
    );
    source.stop().await.expect("stop");

    // An ALTER that commits between a read's start and its SELECT: an instant one is read
    // through (the new column list is read again to decode it)...
    let mut reader = TableReader::connect(&cfg).await.expect("reader");
    reader.begin().await.expect("begin");
    server
        .exec(&format!(
            "ALTER TABLE {db}.products ADD COLUMN extra INT NOT NULL DEFAULT 7, ALGORITHM=INSTANT"
        ))
        .await;
    let (rows, _, _) = reader.chunk_in_read(None, 10).await.expect("instant ALTER");
    assert_eq!(rows[0].get("extra"), Some(&json!(7)));
    reader.end().await.expect("end");
    // ...one that rebuilds the table fails the read with 1412, and the next read works.
    reader.begin().await.expect("begin");
    server
        .exec(&format!(
            "ALTER TABLE {db}.products ADD COLUMN more INT NOT NULL DEFAULT 8, ALGORITHM=COPY"
        ))
        .await;
    let err = reader
        .chunk_in_read(None, 10)
        .await
        .expect_err("the table was rebuilt after the read began");
    assert!(
        matches!(&err, SourceError::Server { cause, .. }
            if matches!(cause.as_ref(), mysql_async::Error::Server(s) if s.code == 1412)),
        "{err:?}"
    );
    let chunk = reader.next_chunk(None, 10).await.expect("read again");
    assert_eq!(chunk.rows[0].get("more"), Some(&json!(8)));
    // ...and one that keeps the names but changes a type is noticed too.
    server
        .exec(&format!(
            "ALTER TABLE {db}.products ADD COLUMN at DATETIME NOT NULL DEFAULT '2024-01-02 03:04:05'"
        ))
        .await;
    let chunk = reader.next_chunk(None, 1).await.expect("read");
    assert_eq!(chunk.rows[0].get("at"), Some(&json!("2024-01-02T03:04:05")));
    server
        .exec(&format!(
            "ALTER TABLE {db}.products MODIFY at DATETIME(3) NOT NULL"
        ))
        .await;
    let chunk = reader.next_chunk(None, 1).await.expect("read");
    assert_eq!(
        chunk.rows[0].get("at"),
        Some(&json!("2024-01-02T03:04:05.000"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absence_checks_race_inserts_exactly() {
    let server = MariaDb::start().await;
    let db = unique_name("absent");
    server.exec(&create_products(&db, 200)).await;
    server
        .exec(&format!(
            "INSERT INTO {db}.products VALUES (1000, 'CASE', 1.00, 0), (1001, 'pad ', 1.00, 0)"
        ))
        .await;
    let mut source = Running::start(
        config(&server, &db, "products", SnapshotMode::Initial),
        None,
    );
    let mut model = Model::new(id_key);
    while !model.seen.snapshot_done {
        let m = source.next().await;
        model.apply(&m);
    }

    // Exact matching: a case-insensitive, PAD SPACE column finds 'CASE' for 'case' and 'pad '
    // for 'pad', but only the exact value keeps an object alive.
    source.control().check_absent(
        "s",
        1,
        "sku",
        vec![
            "case".into(),
            "CASE".into(),
            "pad".into(),
            "pad ".into(),
            "s7".into(),
            "gone".into(),
        ],
    );
    let answer = loop {
        let m = source.next().await;
        model.apply(&m);
        if let SourceMessage::Snapshot(SnapshotMessage::Absent(a)) = m {
            break a;
        }
    };
    assert_eq!((answer.request, answer.column.as_str()), (1, "sku"));
    assert_eq!(answer.absent, ["case", "pad", "gone"]);
    assert_eq!(answer.snapshot_id, "s");

    // A writer inserts a0, a1, ... one by one; absence checks keep asking about the next ones.
    // An answer merged at the wrong place would delete a row inserted after its read.
    let stop = CancellationToken::new();
    let inserted = Arc::new(AtomicU64::new(0));
    let writer = {
        let (url, db, stop, inserted) = (server.url(), db.clone(), stop.clone(), inserted.clone());
        tokio::spawn(async move {
            let mut conn = mysql_async::Conn::from_url(url).await.expect("writer");
            let mut i = 0u64;
            while !stop.is_cancelled() {
                conn.query_drop(format!(
                    "INSERT INTO {db}.products VALUES ({}, 'a{i}', 1.00, 0)",
                    10_000 + i
                ))
                .await
                .expect("insert");
                i += 1;
                inserted.store(i, Ordering::SeqCst);
            }
            conn.disconnect().await.expect("disconnect");
        })
    };
    let mut request = 1;
    let mut reported_then_inserted = 0;
    for _ in 0..40 {
        request += 1;
        let next = inserted.load(Ordering::SeqCst);
        let values: Vec<String> = (next..next + 5).map(|i| format!("a{i}")).collect();
        source.control().check_absent("s", request, "sku", values);
        loop {
            let m = source.next().await;
            model.apply(&m);
            if let SourceMessage::Snapshot(SnapshotMessage::Absent(a)) = &m {
                assert_eq!(a.request, request);
                reported_then_inserted += a.absent.len();
                break;
            }
        }
    }
    stop.cancel();
    writer.await.expect("writer");
    let end = position(&server).await;
    until_commit(&mut source, &mut model, &end).await;
    let mut conn = server.conn().await;
    let table = products_table(&mut conn, &db).await;
    conn.disconnect().await.expect("disconnect");
    assert!(
        reported_then_inserted > 0,
        "some values were absent when asked, inserted later"
    );
    assert!(
        model.rows == table,
        "no row inserted after a read was removed by its answer"
    );

    // A column the table does not have is an error, not "everything is absent".
    source
        .control()
        .check_absent("s", 99, "no_such_column", vec!["x".into()]);
    let err = source.error().await;
    assert!(err.to_string().contains("no_such_column"), "{err}");
}

/// `ro@%` with only REPLICATION SLAVE and SELECT on `db.products`; its source config.
async fn least_privilege(server: &MariaDb, grants_on: &MariaDb, db: &str) -> SourceConfig {
    grants_on
        .exec(&format!(
            "CREATE USER IF NOT EXISTS 'ro'@'%' IDENTIFIED BY 'ro-pass';
             GRANT REPLICATION SLAVE ON *.* TO 'ro'@'%';
             GRANT SELECT ON {db}.products TO 'ro'@'%'"
        ))
        .await;
    let mut cfg = config(server, db, "products", SnapshotMode::Initial);
    cfg.url = server.url_for("ro");
    cfg.password = Some(vecsync::config::Secret::new("ro-pass"));
    cfg.snapshot_chunk_rows = 30;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_privilege_user_snapshots_with_absence_checks() {
    let seed = seed("the_least_privilege_user_snapshots");
    let server = MariaDb::start().await;
    let db = unique_name("priv");
    server.exec(&create_products(&db, 600)).await;
    let cfg = least_privilege(&server, &server, &db).await;
    let stop = CancellationToken::new();
    let done = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_randomly(
        server.url(),
        db.clone(),
        600,
        seed,
        1,
        stop.clone(),
        done.clone(),
    ));
    let mut source = Running::start_manual(cfg, Start::default());
    let mut model = Model::new(id_key);
    snapshot_with_writes(&mut source, &mut model, &done, 2).await;
    source
        .control()
        .check_absent("x", 1, "sku", vec!["s1".into(), "nope".into()]);
    loop {
        let m = source.next().await;
        model.apply(&m);
        if matches!(m, SourceMessage::Snapshot(SnapshotMessage::Absent(_))) {
            break;
        }
    }
    stop.cancel();
    writer.await.expect("writer");
    let end = position(&server).await;
    until_commit(&mut source, &mut model, &end).await;
    let mut conn = server.conn().await;
    let table = products_table(&mut conn, &db).await;
    conn.disconnect().await.expect("disconnect");
    assert!(model.rows == table);
    assert!(model.seen.absences[0].1.contains(&"nope".to_owned()));
    source.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_replica_streams_its_own_binlog() {
    let seed = seed("a_read_only_replica");
    let primary = MariaDb::start().await;
    let replica =
        MariaDb::start_with(&["server-id=2", "log_slave_updates=ON", "read_only=ON"]).await;
    let db = unique_name("replica");
    primary.exec(&create_products(&db, 600)).await;
    // The user is created on the primary and replicated.
    let cfg = least_privilege(&replica, &primary, &db).await;
    replica
        .exec(&format!(
            "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, MASTER_USER = 'root',
                 MASTER_USE_GTID = slave_pos;
             START SLAVE",
            primary.port()
        ))
        .await;
    caught_up(&replica, &position(&primary).await).await;
    assert_eq!(
        replica.query_one("SELECT @@read_only").await.as_deref(),
        Some("1")
    );

    let stop = CancellationToken::new();
    let done = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_randomly(
        primary.url(),
        db.clone(),
        600,
        seed,
        1,
        stop.clone(),
        done.clone(),
    ));
    let mut source = Running::start_manual(cfg, Start::default());
    let mut model = Model::new(id_key);
    snapshot_with_writes(&mut source, &mut model, &done, 2).await;
    stop.cancel();
    writer.await.expect("writer");
    let end = position(&primary).await;
    caught_up(&replica, &end).await;
    until_commit(&mut source, &mut model, &end).await;
    assert!(model.seen.events_during_snapshot > 0);
    let mut conn = replica.conn().await;
    let table = products_table(&mut conn, &db).await;
    conn.disconnect().await.expect("disconnect");
    assert!(
        model.rows == table,
        "the merged stream equals the replica's table"
    );
    source.stop().await.expect("stop");
}

async fn caught_up(replica: &MariaDb, pos: &GtidPosition) {
    wait_until("the replica to catch up", DEFAULT_DEADLINE, || async {
        let at: GtidPosition = replica.gtid_binlog_pos().await.parse().ok()?;
        at.covers(pos).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_chunk_read_never_holds_the_stream_past_the_pause_limit() {
    let server = MariaDb::start().await;
    let db = unique_name("pause");
    server.exec(&create_products(&db, 200)).await;
    server
        .exec(&format!("CREATE TABLE {db}.other (id INT PRIMARY KEY)"))
        .await;
    let mut cfg = config(&server, &db, "products", SnapshotMode::Initial);
    cfg.snapshot_chunk_rows = 20;
    // Heartbeat 1 s: the stream may stop reading the binlog for at most 2 x 1 + 5 = 7 s.
    let limit = cfg.heartbeat * 2 + std::time::Duration::from_secs(5);
    let mut source = Running::start_manual(cfg, Start::default());
    let mut model = Model::new(id_key);
    let mut locker = server.conn().await;
    loop {
        let m = source.next().await;
        model.apply(&m);
        if let SourceMessage::Snapshot(SnapshotMessage::Chunk(c)) = &m {
            if c.seq == 2 {
                // Reads beyond the credits wait for this lock, for as long as it is held.
                locker
                    .query_drop(format!("LOCK TABLES {db}.products WRITE"))
                    .await
                    .expect("lock");
            }
            source.control().chunk_confirmed(&c.snapshot_id, c.seq);
            if c.seq == 2 {
                break;
            }
        }
    }
    wait_until(
        "a chunk read waiting for the lock",
        DEFAULT_DEADLINE,
        || async {
            server
                .query_one(
                    "SELECT ID FROM information_schema.PROCESSLIST \
                 WHERE INFO LIKE 'SELECT * FROM%FORCE INDEX%' AND STATE LIKE 'Waiting%'",
                )
                .await
        },
    )
    .await;
    // The stream reaches the stuck read's position and waits for its rows; a change committed
    // now is streamed once the wait is given up, while the lock is still held.
    server
        .exec(&format!("INSERT INTO {db}.other VALUES (1)"))
        .await;
    let x = position(&server).await;
    let asked = std::time::Instant::now();
    until_commit(&mut source, &mut model, &x).await;
    let waited = asked.elapsed();
    assert!(
        waited < limit + std::time::Duration::from_secs(5),
        "the stream resumed after {waited:?} (limit {limit:?})"
    );
    locker.query_drop("UNLOCK TABLES").await.expect("unlock");
    locker.disconnect().await.expect("disconnect");
    let before = model.seen.chunks.len();
    while !model.seen.snapshot_done {
        let m = source.next().await;
        model.apply(&m);
        if let SourceMessage::Snapshot(SnapshotMessage::Chunk(c)) = &m {
            source.control().chunk_confirmed(&c.snapshot_id, c.seq);
        }
    }
    let sizes: Vec<usize> = model.seen.chunks[before..].iter().map(|c| c.1).collect();
    assert!(
        sizes.iter().all(|n| *n < 20),
        "after a read too slow for the pause limit, chunks are smaller: {sizes:?}"
    );
    assert_chunks_in_sequence(&model);
    let end = position(&server).await;
    until_commit(&mut source, &mut model, &end).await;
    let mut conn = server.conn().await;
    assert!(model.rows == products_table(&mut conn, &db).await);
    conn.disconnect().await.expect("disconnect");
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn snapshot_metrics() {
    let metrics = vecsync::telemetry::install_metrics().expect("metrics");
    let server = MariaDb::start().await;
    let db = unique_name("metrics");
    server.exec(&create_products(&db, 100)).await;
    let mut cfg = config(&server, &db, "products", SnapshotMode::Initial);
    cfg.snapshot_chunk_rows = 30;
    let mut source = Running::start_manual(cfg, Start::default());
    let value = |name: &str| -> Option<f64> {
        metrics.render().lines().find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.parse().ok()).flatten()
        })
    };
    let mut model = Model::new(id_key);
    while !model.seen.snapshot_done {
        let m = source.next().await;
        model.apply(&m);
        if let SourceMessage::Snapshot(SnapshotMessage::Chunk(c)) = &m {
            if c.seq == 0 {
                assert_eq!(value("vecsync_snapshot_running"), Some(1.0));
                // Up to MAX_CHUNKS_AHEAD chunks may be out already.
                let rows = value("vecsync_snapshot_rows_total").unwrap_or(0.0);
                assert!((30.0..=90.0).contains(&rows), "{rows}");
                let remaining = value("vecsync_snapshot_remaining_rows").unwrap_or(-1.0);
                assert!((0.0..=70.0).contains(&remaining), "{remaining}");
            }
            source.control().chunk_confirmed(&c.snapshot_id, c.seq);
        }
    }
    assert_eq!(value("vecsync_snapshot_rows_total"), Some(100.0));
    assert_eq!(value("vecsync_snapshot_chunks_total"), Some(4.0));
    assert_eq!(value("vecsync_snapshot_running"), Some(0.0));
    assert_eq!(value("vecsync_snapshot_remaining_rows"), Some(0.0));
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn a_stream_position_missing_a_domain_still_places_chunks() {
    let server = MariaDb::start().await;
    let db = unique_name("domains");
    server.exec(&create_products(&db, 100)).await;
    server
        .exec(&format!(
            "SET SESSION gtid_domain_id = 1; UPDATE {db}.products SET version = 1 WHERE id = 1"
        ))
        .await;
    // Rotate: the domain's history is in the first file, the stream's domain 0 in the
    // second; MariaDB sends a domain the position omits from the start of its binlog.
    server.exec("FLUSH BINARY LOGS").await;
    server
        .exec(&format!(
            "UPDATE {db}.products SET version = 2 WHERE id = 2"
        ))
        .await;
    let full = position(&server).await;
    let only_domain_0: GtidPosition = full.iter().filter(|g| g.domain_id == 0).copied().collect();
    assert_ne!(only_domain_0, full);
    let mut cfg = config(&server, &db, "products", SnapshotMode::Always);
    cfg.snapshot_chunk_rows = 30;
    let mut source = Running::start_from(
        cfg,
        Start {
            position: Some(only_domain_0),
            snapshot: None,
        },
    );
    let mut model = Model::new(id_key);
    while !model.seen.snapshot_done {
        let m = source.next().await;
        model.apply(&m);
    }
    assert!(model.seen.chunks.iter().all(|c| c.2 == full));
    source.stop().await.expect("stop");
}
