//! XA transactions: a prepared XA group is held until its `XA COMMIT` (its rows are sent then) or
//! `XA ROLLBACK` (they are dropped), and no commit position passes an unresolved prepare, so a
//! restart in between reads the prepared group again. `XA COMMIT ... ONE PHASE` is an ordinary
//! transaction.

use vecsync::config::SnapshotMode;
use vecsync::event::{ChangeEvent, Op, SourceMessage};
use vecsync::position::GtidPosition;

use crate::harness::mariadb::MariaDb;
use crate::harness::source::{Running, config};
use crate::harness::{DEFAULT_DEADLINE, unique_name, wait_until};
use mysql_async::prelude::Queryable;

async fn server_with_table() -> (MariaDb, String, GtidPosition) {
    let server = MariaDb::start().await;
    let db = unique_name("xa");
    server
        .exec(&format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.products (id INT PRIMARY KEY, sku VARCHAR(20));
             INSERT INTO {db}.products VALUES (1, 'kept')"
        ))
        .await;
    let at = server.gtid_binlog_pos().await.parse().expect("position");
    (server, db, at)
}

fn ops(events: &[ChangeEvent]) -> Vec<(Op, i64)> {
    events
        .iter()
        .map(|e| {
            let row = e.after.as_ref().or(e.before.as_ref()).expect("a row image");
            (e.op, row["id"].as_i64().expect("id"))
        })
        .collect()
}

/// Prepare an XA transaction `xid` running `sql` (it stays prepared: the session ends).
async fn prepare(server: &MariaDb, xid: &str, sql: &str) {
    server
        .exec(&format!(
            "XA START '{xid}'; {sql}; XA END '{xid}'; XA PREPARE '{xid}'"
        ))
        .await;
    // The ending session detaches the prepared transaction asynchronously: until then another
    // session's XA COMMIT/ROLLBACK answers "Unknown XID". Wait until XA RECOVER lists it.
    wait_until(
        &format!("XA transaction {xid} to be recoverable"),
        DEFAULT_DEADLINE,
        || async {
            let mut conn = server.conn().await;
            let rows: Vec<mysql_async::Row> = conn.query("XA RECOVER").await.expect("XA RECOVER");
            let _ = conn.disconnect().await;
            rows.iter()
                .any(|r| r.get::<String, _>(3).as_deref() == Some(xid))
                .then_some(())
        },
    )
    .await;
}

/// Read messages until the commit that covers `position`; returns the events seen and the last
/// commit's position.
async fn until(source: &mut Running, position: &GtidPosition) -> (Vec<ChangeEvent>, GtidPosition) {
    let mut events = Vec::new();
    loop {
        match source.next().await {
            SourceMessage::Event(e) => events.push(e),
            SourceMessage::Commit(c) if c.position.covers(position) => {
                return (events, c.position);
            }
            SourceMessage::Commit(_) => {}
            SourceMessage::Snapshot(s) => panic!("unexpected snapshot message {s:?}"),
        }
    }
}

#[tokio::test]
async fn a_rolled_back_prepare_sends_nothing() {
    let (server, db, start) = server_with_table().await;
    let mut source = Running::start(
        config(&server, &db, "products", SnapshotMode::Never),
        Some(start),
    );
    prepare(
        &server,
        "x1",
        &format!("DELETE FROM {db}.products WHERE id = 1"),
    )
    .await;
    server.exec("XA ROLLBACK 'x1'").await;
    server
        .exec(&format!("INSERT INTO {db}.products VALUES (2, 'marker')"))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(
        ops(&events),
        [(Op::Create, 2)],
        "the rolled-back delete never reaches the pipeline"
    );
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn a_prepare_is_held_until_its_commit_across_a_restart() {
    let (server, db, start) = server_with_table().await;
    let mut first = Running::start(
        config(&server, &db, "products", SnapshotMode::Never),
        Some(start),
    );
    let before_prepare: GtidPosition = server.gtid_binlog_pos().await.parse().expect("pos");
    prepare(
        &server,
        "x2",
        &format!("INSERT INTO {db}.products VALUES (2, 'xa')"),
    )
    .await;
    server
        .exec(&format!("INSERT INTO {db}.products VALUES (3, 'plain')"))
        .await;
    let now: GtidPosition = server.gtid_binlog_pos().await.parse().expect("pos");
    // The source reaches the end of the binlog: the plain insert arrives, the prepared row
    // does not, and no commit passes the prepare.
    let mut events = Vec::new();
    let mut last_commit = None;
    while events.is_empty() {
        let (e, c) = first.transaction().await;
        events = e;
        last_commit = Some(c.position);
    }
    assert_eq!(ops(&events), [(Op::Create, 3)]);
    let held = last_commit.expect("a commit");
    assert!(
        before_prepare.covers(&held),
        "commit {held} passes the unresolved prepare (binlog before it: {before_prepare}, now {now})"
    );
    first.stop().await.expect("stop");

    // Restart from the last commit position the source sent, then commit the XA transaction.
    let mut second = Running::start(
        config(&server, &db, "products", SnapshotMode::Never),
        Some(held),
    );
    server.exec("XA COMMIT 'x2'").await;
    let end: GtidPosition = server.gtid_binlog_pos().await.parse().expect("pos");
    let (events, last) = until(&mut second, &end).await;
    // The plain insert is replayed (at-least-once); the prepared row comes with its commit.
    assert_eq!(ops(&events), [(Op::Create, 3), (Op::Create, 2)]);
    assert_eq!(last, end, "once resolved, the position moves on");
    second.stop().await.expect("stop");
}

#[tokio::test]
async fn a_prepare_rolled_back_after_a_restart_sends_nothing() {
    let (server, db, start) = server_with_table().await;
    let mut first = Running::start(
        config(&server, &db, "products", SnapshotMode::Never),
        Some(start.clone()),
    );
    prepare(
        &server,
        "x3",
        &format!("DELETE FROM {db}.products WHERE id = 1"),
    )
    .await;
    // The prepared group's commit comes without its rows, at a position before it.
    let (events, held) = next_commit(&mut first).await;
    assert!(events.is_empty(), "nothing sent at XA PREPARE: {events:?}");
    assert_eq!(held, start);
    first.stop().await.expect("stop");

    let mut second = Running::start(
        config(&server, &db, "products", SnapshotMode::Never),
        Some(held),
    );
    server.exec("XA ROLLBACK 'x3'").await;
    server
        .exec(&format!("INSERT INTO {db}.products VALUES (4, 'marker')"))
        .await;
    let (events, _) = second.transaction().await;
    assert_eq!(ops(&events), [(Op::Create, 4)]);
    second.stop().await.expect("stop");
}

/// The events before the next commit, and that commit's position.
async fn next_commit(source: &mut Running) -> (Vec<ChangeEvent>, GtidPosition) {
    let mut events = Vec::new();
    loop {
        match source.next().await {
            SourceMessage::Event(e) => events.push(e),
            SourceMessage::Commit(c) => return (events, c.position),
            SourceMessage::Snapshot(s) => panic!("unexpected snapshot message {s:?}"),
        }
    }
}

#[tokio::test]
async fn xa_commit_one_phase_is_an_ordinary_transaction() {
    let (server, db, start) = server_with_table().await;
    let mut source = Running::start(
        config(&server, &db, "products", SnapshotMode::Never),
        Some(start),
    );
    server
        .exec(&format!(
            "XA START 'x4'; INSERT INTO {db}.products VALUES (5, 'one'); XA END 'x4';
             XA COMMIT 'x4' ONE PHASE"
        ))
        .await;
    let (events, commit) = source.transaction().await;
    assert_eq!(ops(&events), [(Op::Create, 5)]);
    assert_eq!(
        commit.position,
        server.gtid_binlog_pos().await.parse().expect("pos")
    );
    source.stop().await.expect("stop");
}
