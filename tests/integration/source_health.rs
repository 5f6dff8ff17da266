//! The source's health as the pipeline sees it ([`vecsync::source::SourceStatus`]): connected or
//! not and why, reconnects counted, the last packet heard; the metrics
//! `vecsync_source_connected` and `vecsync_source_reconnects_total`; and no password in any of
//! it.

use std::time::Duration;

use vecsync::config::SnapshotMode;
use vecsync::position::GtidPosition;

use crate::harness::mariadb::MariaDb;
use crate::harness::source::{Running, config};
use crate::harness::stack::metric;
use crate::harness::{DEFAULT_DEADLINE, free_port, unique_name, wait_until};

#[tokio::test]
async fn status_follows_mariadb_going_away_and_coming_back() {
    // Install this process's metrics recorder before the source records anything.
    let _ = metric("vecsync_source_connected", "");
    let mut server = MariaDb::start().await;
    let db = unique_name("health");
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
    let (_, commit) = source.transaction().await;
    let up = source.status().health();
    assert!(up.connected, "{up:?}");
    assert_eq!(up.server.as_deref(), Some(server.url().as_str()));
    assert_eq!(up.position.as_ref(), Some(&commit.position));
    assert!(up.last_heard_ms.is_some() && up.last_error.is_none());
    assert_eq!(source.status().problem(Duration::ZERO), None);
    assert_eq!(metric("vecsync_source_connected", ""), 1.0);

    server.kill9();
    let down = wait_until(
        "the source to notice MariaDB is gone",
        DEFAULT_DEADLINE,
        || {
            let h = source.status().health();
            async move { (!h.connected && h.reconnects >= 2).then_some(h) }
        },
    )
    .await;
    let error = down.last_error.expect("the reason");
    assert!(
        error.contains("cannot reach MariaDB") || error.contains("lost the MariaDB connection"),
        "{error}"
    );
    let problem = source
        .status()
        .problem(Duration::ZERO)
        .expect("unhealthy while down");
    assert!(problem.contains("MariaDB"), "{problem}");
    assert_eq!(metric("vecsync_source_connected", ""), 0.0);
    assert!(metric("vecsync_source_reconnects_total", "") >= 2.0);

    server.restart().await;
    server
        .exec(&format!("INSERT INTO {db}.products VALUES (2, 'b')"))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(events.len(), 1);
    let back = source.status().health();
    assert!(back.connected && back.last_error.is_none(), "{back:?}");
    assert!(back.reconnects >= down.reconnects);
    assert_eq!(metric("vecsync_source_connected", ""), 1.0);
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn no_password_in_the_status_or_the_errors() {
    let table = vecsync::config::TableRef {
        db: "catalog".into(),
        table: "products".into(),
    };
    let mut cfg = vecsync::source::SourceConfig::new(
        format!("mysql://root:hunter2@127.0.0.1:{}", free_port()),
        table,
    );
    cfg.max_reconnects = Some(2);
    let source = Running::start(cfg, None);
    let status = source.status().clone();
    let err = source.error().await;
    let printed = format!("{err} {err:?} {:?}", status.health());
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(printed.contains("root:***@127.0.0.1"), "{printed}");
}
