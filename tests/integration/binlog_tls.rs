//! The source over TLS: a user that MariaDB only admits with TLS can snapshot and stream.

use vecsync::config::{Secret, SnapshotMode, TableRef};
use vecsync::event::Op;
use vecsync::source::{BinlogSource, SourceConfig, SourceError};

use crate::harness::mariadb::MariaDb;
use crate::harness::source::Running;
use crate::harness::unique_name;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A MariaDB that speaks TLS with the fixture certificate, a one-row table, and a user that may
/// only connect over TLS.
async fn tls_server() -> (MariaDb, String) {
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
    (server, db)
}

#[tokio::test]
async fn streams_over_tls_and_plain_text_is_refused() {
    let (server, db) = tls_server().await;
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

    // TLS without checking the certificate (the next test checks it against the CA).
    let source = Running::start(config("&require_ssl=true&verify_ca=false"), None);
    source
        .expect_read_then_insert(
            &server,
            &format!("INSERT INTO {db}.products VALUES (2, 'b')"),
        )
        .await;
}

#[tokio::test]
async fn verifies_the_server_certificate_against_the_given_ca() {
    let (server, db) = tls_server().await;
    let config = |ca: Option<&str>| {
        let mut cfg = SourceConfig::new(
            format!(
                "mysql://secure@127.0.0.1:{}?prefer_socket=false",
                server.port()
            ),
            TableRef {
                db: db.clone(),
                table: "products".into(),
            },
        );
        cfg.password = Some(Secret::new("pw"));
        cfg.ssl_ca = ca.map(|c| fixture(c).into());
        cfg.max_reconnects = Some(0);
        cfg
    };

    // The CA that signed the server's certificate: TLS with full verification works.
    let mut source = Running::start(config(Some("ca-cert.pem")), None);
    let (reads, _) = source.transaction().await;
    assert_eq!(reads.iter().map(|e| e.op).collect::<Vec<_>>(), [Op::Read]);
    source.stop().await.expect("stop");

    // A CA that did not sign it: the connection is refused, not silently accepted.
    let wrong = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::copy(fixture("server-cert.pem"), wrong.path()).expect("copy");
    let mut cfg = config(None);
    cfg.ssl_ca = Some(wrong.path().to_path_buf());
    cfg.max_reconnects = None; // definite: it must stop without a reconnect limit
    let err = Running::start(cfg, None).error().await;
    assert!(matches!(err, SourceError::Tls { .. }), "{err:?}");
    assert!(
        !err.is_transient(),
        "a certificate that does not verify is not retried"
    );
    let text = err.to_string();
    assert!(
        text.contains("UnknownIssuer") && text.contains("--mariadb-ssl-ca"),
        "{text}"
    );

    // A CA file that does not exist is a configuration error up front.
    let mut cfg = config(None);
    cfg.ssl_ca = Some("/nonexistent/ca.pem".into());
    let err = BinlogSource::new(cfg).expect_err("missing CA file");
    assert!(err.to_string().contains("--mariadb-ssl-ca"), "{err}");
}
