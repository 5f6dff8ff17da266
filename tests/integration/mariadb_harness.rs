//! The MariaDB harness itself: a private server with the repository's binlog settings, per-test
//! overrides, and a restart that keeps the data.

use crate::harness::mariadb::MariaDb;

#[tokio::test]
async fn starts_with_the_repository_binlog_settings() {
    let db = MariaDb::start().await;
    let settings = db
        .query_one(
            "SELECT CONCAT_WS(',', @@log_bin, @@binlog_format, @@binlog_row_image, \
             @@binlog_row_metadata, @@server_id, @@character_set_server)",
        )
        .await;
    assert_eq!(
        settings.as_deref(),
        Some("ON,ROW,FULL,FULL,223344,utf8mb4"),
        "custom.cnf's settings are in force"
    );
}

#[tokio::test]
async fn overrides_win_and_restart_keeps_data() {
    let mut db = MariaDb::start_with(&["binlog_format=STATEMENT"]).await;
    assert_eq!(
        db.query_one("SELECT @@binlog_format").await.as_deref(),
        Some("STATEMENT")
    );
    db.exec("CREATE DATABASE h; CREATE TABLE h.t (id INT PRIMARY KEY); INSERT INTO h.t VALUES (7)")
        .await;
    db.kill9();
    db.restart().await;
    assert_eq!(
        db.query_one("SELECT id FROM h.t").await.as_deref(),
        Some("7")
    );
}
