//! Snapshots survive interruptions chunk by chunk: a source stopped after k confirmed chunks
//! continues after the last confirmed key (not from row 0) with the checkpoint's progress, and a
//! connection dropped in the middle of a chunk read retries that chunk only. Writes go on
//! throughout; the snapshot model checks every step and the final table.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mysql_async::prelude::Queryable;
use tokio_util::sync::CancellationToken;
use vecsync::checkpoint::SnapshotProgress;
use vecsync::config::SnapshotMode;
use vecsync::event::{SnapshotMessage, SourceMessage};
use vecsync::position::GtidPosition;
use vecsync::source::{MAX_CHUNKS_AHEAD, Start};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_snapshot_resumes_after_its_last_confirmed_chunk() {
    let seed = seed("a_stopped_snapshot_resumes");
    let server = MariaDb::start().await;
    let db = unique_name("resume");
    const ROWS: u32 = 3_000;
    const CHUNK: usize = 50;
    server.exec(&create_products(&db, ROWS)).await;
    let stop = CancellationToken::new();
    let done = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_randomly(
        server.url(),
        db.clone(),
        i64::from(ROWS),
        seed,
        1,
        stop.clone(),
        done.clone(),
    ));
    wait_for_writes(&done, 10).await;
    let mut cfg = config(&server, &db, "products", SnapshotMode::Initial);
    cfg.snapshot_chunk_rows = CHUNK;

    // First run: confirm 20 chunks, then die. What the "pipeline" recorded: the last commit it
    // handled and the progress of the last confirmed chunk.
    let mut first = Running::start_manual(cfg.clone(), Start::default());
    let mut model = Model::new(id_key);
    let (checkpoint, progress) = loop {
        let m = first.next().await;
        model.apply(&m);
        if let SourceMessage::Snapshot(SnapshotMessage::Chunk(c)) = &m {
            wait_for_writes(&done, 2).await;
            first.control().chunk_confirmed(&c.snapshot_id, c.seq);
            if c.seq == 19 {
                let progress = SnapshotProgress {
                    id: c.snapshot_id.clone(),
                    started_ms: 0,
                    after_key: c.last_key.clone(),
                    next_seq: c.seq + 1,
                    rows_done: model.seen.rows_read,
                    sweep: None,
                };
                let position = model
                    .seen
                    .last_commit
                    .clone()
                    .expect("a commit before chunk 19");
                break (position, progress);
            }
        }
    };
    let id = progress.id.clone();
    drop(first);
    // Writes go on while it is down.
    wait_for_writes(&done, 50).await;

    let mut second = Running::start_manual(
        cfg,
        Start {
            position: Some(checkpoint),
            snapshot: Some(progress),
        },
    );
    while !model.seen.snapshot_done {
        let m = second.next().await;
        model.apply(&m);
        if let SourceMessage::Snapshot(SnapshotMessage::Chunk(c)) = &m {
            wait_for_writes(&done, 2).await;
            second.control().chunk_confirmed(&c.snapshot_id, c.seq);
        }
    }
    stop.cancel();
    writer.await.expect("writer");
    let end = position(&server).await;
    while !model
        .seen
        .last_commit
        .as_ref()
        .is_some_and(|p| p.covers(&end))
    {
        let m = second.next().await;
        model.apply(&m);
    }

    assert_eq!(model.seen.started, [(id.clone(), false), (id, true)]);
    let seqs: Vec<u64> = model.seen.chunks.iter().map(|c| c.0).collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "numbering continues at 20"
    );
    let mut conn = server.conn().await;
    let table = products_table(&mut conn, &db).await;
    conn.disconnect().await.expect("disconnect");
    assert!(model.rows == table, "the index-to-be equals the table");
    // Rows read in total (the chunks received, plus what the first run may have read ahead and
    // never delivered) against the rows there were to read: each key once. Rows deleted after
    // they were copied count as read, so the final table size is not the yardstick.
    let read = model.seen.rows_read + (MAX_CHUNKS_AHEAD * CHUNK) as u64;
    let rows = model.read_keys.len() as u64;
    assert!(
        rows >= u64::from(ROWS) * 9 / 10,
        "{rows} distinct rows read"
    );
    assert!(
        read * 10 < rows * 11,
        "read {read} rows for {rows} distinct rows: the resumed snapshot did not start over"
    );
    second.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_chunk_retries_that_chunk() {
    let server = MariaDb::start().await;
    let db = unique_name("resume");
    server.exec(&create_products(&db, 400)).await;
    let mut cfg = config(&server, &db, "products", SnapshotMode::Initial);
    cfg.snapshot_chunk_rows = 20;
    let mut source = Running::start_manual(cfg, Start::default());
    let mut model = Model::new(id_key);
    let mut killed = false;
    while !model.seen.snapshot_done {
        let m = source.next().await;
        model.apply(&m);
        let SourceMessage::Snapshot(SnapshotMessage::Chunk(c)) = &m else {
            continue;
        };
        if c.seq == 5 && !killed {
            // The next chunk read waits for this lock; kill its connection while it waits.
            server
                .exec(&format!(
                    "UPDATE {db}.products SET version = 9 WHERE id IN (1, 399)"
                ))
                .await;
            let mut locker = server.conn().await;
            locker
                .query_drop(format!("LOCK TABLES {db}.products WRITE"))
                .await
                .expect("lock");
            source.control().chunk_confirmed(&c.snapshot_id, c.seq);
            let reader = wait_until("a chunk read waiting for the lock", DEFAULT_DEADLINE, || {
                let server = &server;
                async move {
                    server
                        .query_one(
                            "SELECT ID FROM information_schema.PROCESSLIST \
                             WHERE INFO LIKE 'SELECT * FROM%FORCE INDEX%' AND STATE LIKE 'Waiting%'",
                        )
                        .await
                }
            })
            .await;
            server.exec(&format!("KILL CONNECTION {reader}")).await;
            locker.query_drop("UNLOCK TABLES").await.expect("unlock");
            locker.disconnect().await.expect("disconnect");
            killed = true;
            continue;
        }
        source.control().chunk_confirmed(&c.snapshot_id, c.seq);
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
    assert!(killed);
    assert_eq!(
        model.seen.started.len(),
        1,
        "the snapshot did not start over"
    );
    let seqs: Vec<u64> = model.seen.chunks.iter().map(|c| c.0).collect();
    assert_eq!(seqs, (0..20).collect::<Vec<_>>(), "each chunk once");
    assert_eq!(model.seen.rows_read, 400);
    let mut conn = server.conn().await;
    let table = products_table(&mut conn, &db).await;
    conn.disconnect().await.expect("disconnect");
    assert!(model.rows == table);
    source.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_reconnecting_mid_snapshot_keeps_chunks_exact() {
    let seed = seed("the_stream_reconnecting_mid_snapshot");
    let server = MariaDb::start().await;
    let db = unique_name("resume");
    server.exec(&create_products(&db, 1_500)).await;
    let stop = CancellationToken::new();
    let done = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_randomly(
        server.url(),
        db.clone(),
        1_500,
        seed,
        1,
        stop.clone(),
        done.clone(),
    ));
    let mut cfg = config(&server, &db, "products", SnapshotMode::Initial);
    cfg.snapshot_chunk_rows = 30;
    let mut source = Running::start_manual(cfg, Start::default());
    let mut model = Model::new(id_key);
    let mut kills = 0;
    while !model.seen.snapshot_done {
        let m = source.next().await;
        model.apply(&m);
        if let SourceMessage::Snapshot(SnapshotMessage::Chunk(c)) = &m {
            if !stop.is_cancelled() {
                wait_for_writes(&done, 3).await;
            }
            if c.seq % 10 == 5 && kills < 3 {
                // Drop the replication connection while the next chunks are being read.
                let dump = server
                    .query_one(
                        "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'",
                    )
                    .await
                    .expect("the source's binlog dump thread");
                source.control().chunk_confirmed(&c.snapshot_id, c.seq);
                server.exec(&format!("KILL CONNECTION {dump}")).await;
                kills += 1;
                if kills == 3 {
                    // The writer appends rows past the table's end faster than a reconnecting
                    // snapshot reads 30-row chunks; a snapshot chasing the end never finishes
                    // (vecsync does not bound a snapshot at the largest key of its start yet).
                    // Three reconnects under writes are what this test is about.
                    stop.cancel();
                }
                continue;
            }
            source.control().chunk_confirmed(&c.snapshot_id, c.seq);
        }
    }
    stop.cancel();
    writer.await.expect("writer");
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
    assert!(kills >= 3, "{kills} reconnects during the snapshot");
    assert_eq!(model.seen.started.len(), 1);
    let seqs: Vec<u64> = model.seen.chunks.iter().map(|c| c.0).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    let mut conn = server.conn().await;
    let table = products_table(&mut conn, &db).await;
    conn.disconnect().await.expect("disconnect");
    assert!(model.rows == table);
    source.stop().await.expect("stop");
}
