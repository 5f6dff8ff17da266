//! The checks made before streaming: each wrong setting or missing privilege is refused with a
//! message naming it, its value and the fix; bad credentials and an unreachable server are told
//! apart; a least-privilege user (REPLICATION SLAVE + SELECT on the table) is enough.

use vecsync::config::{Secret, SnapshotMode, TableRef};
use vecsync::source::{BinlogSource, SourceConfig, SourceError};

use crate::harness::mariadb::MariaDb;
use crate::harness::source::{Running, config};
use crate::harness::{free_port, unique_name};

async fn with_table(server: &MariaDb) -> String {
    let db = unique_name("pre");
    server
        .exec(&format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.products (id INT PRIMARY KEY, sku VARCHAR(20));
             CREATE TABLE {db}.secret (id INT PRIMARY KEY)"
        ))
        .await;
    db
}

async fn preflight(cfg: SourceConfig) -> Result<vecsync::source::Preflight, SourceError> {
    BinlogSource::new(cfg).expect("config").preflight().await
}

#[track_caller]
fn assert_mentions(err: &SourceError, needles: &[&str]) {
    let msg = err.to_string();
    for n in needles {
        assert!(msg.contains(n), "{n:?} missing from: {msg}");
    }
    assert!(!err.is_transient(), "definite: {err:?}");
}

#[tokio::test]
async fn binary_log_off_is_refused() {
    let server = MariaDb::start_with(&["skip-log-bin"]).await;
    let db = with_table(&server).await;
    let err = preflight(config(&server, &db, "products", SnapshotMode::Initial))
        .await
        .expect_err("log_bin is off");
    assert!(
        matches!(
            err,
            SourceError::Setting {
                setting: "log_bin",
                ..
            }
        ),
        "{err:?}"
    );
    assert_mentions(&err, &["log_bin", "OFF", "log-bin=mysql-bin", "restart"]);
    // run() refuses too, without streaming anything.
    let err = Running::start(
        config(&server, &db, "products", SnapshotMode::Initial),
        None,
    )
    .error()
    .await;
    assert!(
        matches!(
            err,
            SourceError::Setting {
                setting: "log_bin",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn wrong_binlog_format_or_row_image_is_refused() {
    let server = MariaDb::start().await;
    let db = with_table(&server).await;
    let cfg = config(&server, &db, "products", SnapshotMode::Initial);
    for (set, setting, value, fix) in [
        (
            "binlog_format = 'STATEMENT'",
            "binlog_format",
            "STATEMENT",
            "binlog_format=ROW",
        ),
        (
            "binlog_format = 'MIXED'",
            "binlog_format",
            "MIXED",
            "binlog_format=ROW",
        ),
        (
            "binlog_row_image = 'MINIMAL'",
            "binlog_row_image",
            "MINIMAL",
            "binlog_row_image=FULL",
        ),
        (
            "binlog_row_image = 'NOBLOB'",
            "binlog_row_image",
            "NOBLOB",
            "binlog_row_image=FULL",
        ),
    ] {
        server
            .exec(&format!(
                "SET GLOBAL binlog_format = 'ROW'; SET GLOBAL binlog_row_image = 'FULL'; SET GLOBAL {set}"
            ))
            .await;
        let err = preflight(cfg.clone()).await.expect_err(set);
        assert!(
            matches!(&err, SourceError::Setting { setting: s, .. } if *s == setting),
            "{err:?}"
        );
        assert_mentions(&err, &[setting, value, fix]);
    }
    server
        .exec("SET GLOBAL binlog_format = 'ROW'; SET GLOBAL binlog_row_image = 'FULL'")
        .await;
    let ok = preflight(cfg).await.expect("settings fixed");
    assert!(ok.row_metadata_full && ok.warnings.is_empty(), "{ok:?}");
    assert_eq!(ok.server_id, 223344);
}

#[tokio::test]
async fn row_metadata_other_than_full_is_only_a_warning() {
    let server = MariaDb::start_with(&["binlog_row_metadata=MINIMAL"]).await;
    let db = with_table(&server).await;
    let ok = preflight(config(&server, &db, "products", SnapshotMode::Initial))
        .await
        .expect("passes");
    assert!(!ok.row_metadata_full);
    assert!(
        ok.warnings
            .iter()
            .any(|w| w.contains("binlog_row_metadata") && w.contains("MINIMAL")),
        "{:?}",
        ok.warnings
    );
}

fn as_user(server: &MariaDb, db: &str, user: &str, password: &str) -> SourceConfig {
    let mut cfg = SourceConfig::new(
        server.url_for(user),
        TableRef {
            db: db.to_owned(),
            table: "products".to_owned(),
        },
    );
    cfg.password = Some(Secret::new(password));
    cfg.heartbeat = std::time::Duration::from_secs(1);
    cfg
}

#[tokio::test]
async fn missing_privileges_and_bad_credentials_are_named() {
    let server = MariaDb::start().await;
    let db = with_table(&server).await;
    server
        .exec(&format!(
            "CREATE USER 'reader'@'%' IDENTIFIED BY 'pw1';
             GRANT SELECT ON {db}.* TO 'reader'@'%';
             CREATE USER 'blind'@'%' IDENTIFIED BY 'pw2';
             GRANT REPLICATION SLAVE ON *.* TO 'blind'@'%';
             GRANT SELECT ON {db}.secret TO 'blind'@'%'"
        ))
        .await;

    let err = preflight(as_user(&server, &db, "reader", "pw1"))
        .await
        .expect_err("no REPLICATION SLAVE");
    assert!(
        matches!(
            err,
            SourceError::Privilege {
                privilege: "REPLICATION SLAVE",
                ..
            }
        ),
        "{err:?}"
    );
    assert_mentions(
        &err,
        &["reader", "GRANT REPLICATION SLAVE ON *.* TO 'reader'@'%'"],
    );

    let err = preflight(as_user(&server, &db, "blind", "pw2"))
        .await
        .expect_err("no SELECT on the table");
    assert!(
        matches!(
            err,
            SourceError::Privilege {
                privilege: "SELECT",
                ..
            }
        ),
        "{err:?}"
    );
    assert_mentions(
        &err,
        &[&format!("GRANT SELECT ON `{db}`.`products` TO 'blind'@'%'")],
    );

    let err = preflight(as_user(&server, &db, "reader", "wrong-password"))
        .await
        .expect_err("bad password");
    assert!(matches!(err, SourceError::AccessDenied { .. }), "{err:?}");
    assert_mentions(&err, &["reader", "password"]);
    assert!(
        !err.to_string().contains("wrong-password"),
        "never prints the password"
    );

    let mut missing = config(&server, &db, "products", SnapshotMode::Initial);
    missing.table.table = "nope".into();
    let err = preflight(missing).await.expect_err("no such table");
    assert!(matches!(err, SourceError::NoTable { .. }), "{err:?}");
    assert_mentions(&err, &[&format!("{db}.nope")]);
}

#[tokio::test]
async fn an_unreachable_server_is_transient() {
    let cfg = SourceConfig::new(
        format!("mysql://root@127.0.0.1:{}", free_port()),
        TableRef {
            db: "catalog".into(),
            table: "products".into(),
        },
    );
    let err = preflight(cfg).await.expect_err("nothing listens");
    assert!(matches!(err, SourceError::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn least_privilege_user_snapshots_and_streams() {
    let server = MariaDb::start().await;
    let db = with_table(&server).await;
    server
        .exec(&format!(
            "INSERT INTO {db}.products VALUES (1, 'a');
             CREATE USER 'vecsync'@'%' IDENTIFIED BY 'pw';
             GRANT REPLICATION SLAVE ON *.* TO 'vecsync'@'%';
             GRANT SELECT ON {db}.products TO 'vecsync'@'%'"
        ))
        .await;
    let source = Running::start(as_user(&server, &db, "vecsync", "pw"), None);
    source
        .expect_read_then_insert(
            &server,
            &format!("INSERT INTO {db}.products VALUES (2, 'b')"),
        )
        .await;
}

#[tokio::test]
async fn a_cascading_foreign_key_is_named_in_a_warning() {
    let server = MariaDb::start().await;
    let db = unique_name("pre");
    server
        .exec(&format!(
            "CREATE DATABASE {db};
             CREATE TABLE {db}.brands (id INT PRIMARY KEY);
             CREATE TABLE {db}.products (id INT PRIMARY KEY, brand INT, shelf INT,
               CONSTRAINT products_brand FOREIGN KEY (brand) REFERENCES {db}.brands (id)
                 ON DELETE CASCADE,
               CONSTRAINT products_shelf FOREIGN KEY (shelf) REFERENCES {db}.brands (id)
                 ON UPDATE SET NULL);
             CREATE TABLE {db}.plain (id INT PRIMARY KEY, brand INT,
               FOREIGN KEY (brand) REFERENCES {db}.brands (id))"
        ))
        .await;
    let found = preflight(config(&server, &db, "products", SnapshotMode::Initial))
        .await
        .expect("passes, with warnings");
    let cascade: Vec<&String> = found
        .warnings
        .iter()
        .filter(|w| w.contains("foreign key"))
        .collect();
    assert_eq!(cascade.len(), 2, "{:?}", found.warnings);
    assert!(
        cascade[0].contains("products_brand")
            && cascade[0].contains("ON DELETE CASCADE")
            && cascade[0].contains("brands"),
        "{cascade:?}"
    );
    assert!(
        cascade[1].contains("products_shelf") && cascade[1].contains("ON UPDATE SET NULL"),
        "{cascade:?}"
    );
    // A foreign key without cascading actions changes nothing behind the binlog's back.
    let plain = preflight(config(&server, &db, "plain", SnapshotMode::Initial))
        .await
        .expect("passes");
    assert!(
        !plain.warnings.iter().any(|w| w.contains("foreign key")),
        "{:?}",
        plain.warnings
    );
}
