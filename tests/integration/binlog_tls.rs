//! The source over TLS: a user that MariaDB only admits with TLS can snapshot and stream.

use vecsync::config::{Secret, SnapshotMode, TableRef};
use vecsync::event::Op;
use vecsync::source::{SourceConfig, SourceError};

use crate::harness::mariadb::MariaDb;
use crate::harness::source::Running;
use crate::harness::unique_name;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn streams_over_tls_and_plain_text_is_refused() {
    let server = MariaDb::start_with(&[
        &format!("ssl_cert={}", fixture("server-cert.pem")),
        &format!("ssl_key={}", fixture("server-key.pem")),
    ])
    .await;
    let db = unique_name("tls");
    server
        .exec(&format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.products (id INT PRIMARY KEY, sku VARCHAR(20));
             INSERT INTO {db}.products VALUES (1, 'a');
             CREATE USER 'secure'@'%' IDENTIFIED BY 'pw' REQUIRE SSL;
             GRANT REPLICATION SLAVE ON *.* TO 'secure'@'%';
             GRANT SELECT ON {db}.products TO 'secure'@'%'"
        ))
        .await;
    let config = |options: &str| {
        let mut cfg = SourceConfig::new(
            format!(
                "mysql://secure@127.0.0.1:{}?prefer_socket=false{options}",
                server.port()
            ),
            TableRef {
                db: db.clone(),
                table: "products".into(),
            },
        );
        cfg.password = Some(Secret::new("pw"));
        cfg.snapshot = SnapshotMode::Initial;
        cfg
    };

    let err = Running::start(config(""), None).error().await;
    assert!(matches!(err, SourceError::AccessDenied { .. }), "{err:?}");

    // The test certificate is self-signed, hence no CA check here.
    let mut source = Running::start(config("&require_ssl=true&verify_ca=false"), None);
    let (reads, _) = source.transaction().await;
    assert_eq!(reads.iter().map(|e| e.op).collect::<Vec<_>>(), [Op::Read]);
    server
        .exec(&format!("INSERT INTO {db}.products VALUES (2, 'b')"))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(
        events.iter().map(|e| e.op).collect::<Vec<_>>(),
        [Op::Create]
    );
    source.stop().await.expect("stop");
}
