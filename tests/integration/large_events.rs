//! Large events: MariaDB's dump thread sends events up to 1 GiB whatever the session's
//! max_allowed_packet says, so the replication connection must take them: an 18 MB rows event on
//! another table, a 20 MB description. A stream that keeps failing at one place (here: a network
//! that cuts every connection before a large event is through) stops with a definite error that
//! names the position and the cause, instead of retrying forever. A transaction larger than the
//! memory budget passes in parts, never holding more than the budget.

use mysql_async::prelude::Queryable;
use tokio_util::sync::CancellationToken;
use vecsync::config::SnapshotMode;
use vecsync::event::{Op, SourceMessage};
use vecsync::position::GtidPosition;
use vecsync::source::{BinlogSource, Start};

use crate::harness::mariadb::MariaDb;
use crate::harness::proxy::{ProxyOptions, SilentProxy};
use crate::harness::source::{Running, config};
use crate::harness::unique_name;

const MB: usize = 1024 * 1024;

async fn with_tables(server: &MariaDb) -> (String, GtidPosition) {
    let db = unique_name("large");
    server
        .exec(&format!(
            "CREATE DATABASE {db};
             CREATE TABLE {db}.products (id INT PRIMARY KEY, sku VARCHAR(50), description LONGTEXT);
             CREATE TABLE {db}.files (id INT PRIMARY KEY, data LONGBLOB, note INT)"
        ))
        .await;
    let at = server.gtid_binlog_pos().await.parse().expect("position");
    (db, at)
}

#[tokio::test]
async fn an_18_mb_rows_event_on_another_table_passes() {
    let server = MariaDb::start().await;
    let (db, start) = with_tables(&server).await;
    let mut source = Running::start(
        config(&server, &db, "products", SnapshotMode::Never),
        Some(start),
    );
    // 9 MB fits the default 16 MiB max_allowed_packet; the UPDATE's event carries the row twice
    // (before and after image): 18 MB.
    server
        .exec(&format!(
            "INSERT INTO {db}.files VALUES (1, REPEAT('x', {}), 0);
             UPDATE {db}.files SET note = 1 WHERE id = 1;
             INSERT INTO {db}.products VALUES (1, 'after-the-big-one', 'small')",
            9 * MB
        ))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].op, Op::Create);
    assert_eq!(
        events[0].after.as_ref().expect("after")["sku"],
        "after-the-big-one"
    );
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn a_20_mb_description_passes() {
    // The test's own session needs room for the 20 MB INSERT; vecsync's sessions get the
    // default 16 MiB the server is set back to.
    let server = MariaDb::start_with(&["max_allowed_packet=64M"]).await;
    let (db, start) = with_tables(&server).await;
    let mut writer = server.conn().await;
    writer
        .query_drop("SET GLOBAL max_allowed_packet = 16777216")
        .await
        .expect("lower the global max_allowed_packet");
    let mut source = Running::start(
        config(&server, &db, "products", SnapshotMode::Never),
        Some(start),
    );
    let text = "a long description ".repeat(20 * MB / 19 + 1);
    writer
        .exec_drop(
            format!("INSERT INTO {db}.products VALUES (1, 'big', ?)"),
            (text.as_str(),),
        )
        .await
        .expect("insert the 20 MB description");
    let (events, _) = source.transaction().await;
    let after = events[0].after.as_ref().expect("after");
    assert_eq!(
        after["description"].as_str().map(str::len),
        Some(text.len()),
        "the whole description arrives"
    );
    // Its UPDATE is a 40 MB event (before and after image).
    writer
        .query_drop(format!(
            "UPDATE {db}.products SET sku = 'big2' WHERE id = 1"
        ))
        .await
        .expect("update");
    let (events, _) = source.transaction().await;
    assert_eq!(events[0].op, Op::Update);
    assert_eq!(events[0].after.as_ref().expect("after")["sku"], "big2");
    writer.disconnect().await.expect("disconnect");
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn failing_again_and_again_at_one_place_stops_with_the_position_and_the_cause() {
    let server = MariaDb::start().await;
    let (db, start) = with_tables(&server).await;
    // Every connection is closed after 1 MB from the server: a 2 MB event never gets through,
    // while connecting and the settings checks still work.
    let proxy = SilentProxy::start_with(
        server.port(),
        ProxyOptions {
            close_after_bytes: Some(MB),
            ..ProxyOptions::default()
        },
    )
    .await;
    let mut cfg = config(&server, &db, "products", SnapshotMode::Never);
    cfg.url = proxy.url("root");
    server
        .exec(&format!(
            "INSERT INTO {db}.files VALUES (1, REPEAT('x', {}), 0)",
            2 * MB
        ))
        .await;
    let err = Running::start(cfg, Some(start.clone())).error().await;
    assert!(!err.is_transient(), "definite: {err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&start.to_string()) && msg.contains("times in a row"),
        "names the position and says it kept failing there: {msg}"
    );
    assert!(
        msg.contains("lost the MariaDB connection"),
        "names the cause: {msg}"
    );
}

#[tokio::test]
async fn a_transaction_larger_than_the_budget_passes_in_parts() {
    let server = MariaDb::start().await;
    let (db, start) = with_tables(&server).await;
    let mut cfg = config(&server, &db, "products", SnapshotMode::Never);
    let budget = 2 * MB;
    cfg.max_buffer_bytes = budget;
    let source = BinlogSource::new(cfg).expect("source");
    // A roomy channel: only the budget holds the source back.
    let (tx, mut rx) = tokio::sync::mpsc::channel(10_000);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(source.run(
        Start {
            position: Some(start),
            snapshot: None,
        },
        tx,
        cancel.clone(),
    ));
    // 100 rows of 100 kB in one transaction: 10 MB, five times the budget.
    server
        .exec(&format!(
            "INSERT INTO {db}.products SELECT seq, CONCAT('sku-', seq), REPEAT('d', 100000)
             FROM {db}.seq_1_to_100"
        ))
        .await;
    let mut held = Vec::new();
    let mut seen = Vec::new();
    loop {
        let item = tokio::time::timeout(crate::harness::DEFAULT_DEADLINE, rx.recv())
            .await
            .expect("a message in time")
            .expect("the source runs");
        let held_bytes: usize = held
            .iter()
            .map(|i: &vecsync::budget::Budgeted<SourceMessage>| i.permit.bytes())
            .sum::<usize>()
            + item.permit.bytes();
        assert!(
            held_bytes <= budget,
            "{held_bytes} bytes held, budget {budget}"
        );
        match &item.message {
            SourceMessage::Event(e) => {
                assert!(item.permit.bytes() >= 100_000, "an event holds its size");
                seen.push(e.after.as_ref().expect("after")["id"].as_i64().expect("id"));
            }
            SourceMessage::Commit(_) if seen.is_empty() => continue,
            SourceMessage::Commit(_) => break,
            SourceMessage::Snapshot(s) => panic!("unexpected {s:?}"),
        }
        held.push(item);
        // Hold what fits, like a pipeline working on a batch, then confirm it all at once: the
        // source can only go on because it sent part of the transaction before its commit.
        if held_bytes + 200_000 > budget {
            held.clear();
        }
    }
    assert_eq!(
        seen,
        (1..=100).collect::<Vec<_>>(),
        "every row, in order, commit last"
    );
    cancel.cancel();
    task.await.expect("task").expect("clean stop");
}

#[tokio::test]
async fn a_pipeline_slower_than_the_servers_write_timeout_keeps_its_stream() {
    // The dump thread gives up on a replica that does not read for net_write_timeout seconds;
    // vecsync stops reading on purpose while the pipeline is busy (back-pressure).
    let server = MariaDb::start_with(&["net_write_timeout=2"]).await;
    let (db, start) = with_tables(&server).await;
    let mut cfg = config(&server, &db, "products", SnapshotMode::Never);
    cfg.max_buffer_bytes = 2 * MB;
    let source = BinlogSource::new(cfg).expect("source");
    let status = source.status();
    let (tx, mut rx) = tokio::sync::mpsc::channel(10_000);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(source.run(
        Start {
            position: Some(start),
            snapshot: None,
        },
        tx,
        cancel.clone(),
    ));
    // 10 MB in one transaction: far more than the budget, and than the socket buffers hold.
    server
        .exec(&format!(
            "INSERT INTO {db}.products SELECT seq, CONCAT('sku-', seq), REPEAT('d', 100000)
             FROM {db}.seq_1_to_100"
        ))
        .await;
    let mut held = Vec::new();
    let mut seen = 0;
    while seen < 100 {
        let item = tokio::time::timeout(crate::harness::DEFAULT_DEADLINE, rx.recv())
            .await
            .expect("a message in time")
            .expect("the source runs");
        if matches!(item.message, SourceMessage::Event(_)) {
            seen += 1;
        }
        held.push(item);
        if seen == 10 {
            // A slow batch: the budget stays used up for longer than net_write_timeout. (The
            // sleep is the fault being injected, not a way to wait for something.)
            tokio::time::sleep(std::time::Duration::from_secs(4)).await;
        }
        held.clear();
    }
    assert_eq!(
        status.health().reconnects,
        0,
        "the stream survived the wait"
    );
    cancel.cancel();
    task.await.expect("task").expect("clean stop");
}
