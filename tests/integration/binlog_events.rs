//! Event types: an event vecsync does not know stops it with a definite error naming the type,
//! the position and the server version (never a silent skip); an unknown event flagged
//! LOG_EVENT_IGNORABLE_F is skipped, as that flag promises; an INCIDENT (the primary lost
//! events) stops it. The fixture events are made by a proxy that rewrites the type byte of a
//! real event on its way from the server (checksums off, so the rewrite is not a corruption).

use std::sync::Arc;

use vecsync::config::SnapshotMode;
use vecsync::position::GtidPosition;
use vecsync::source::SourceError;

use crate::harness::mariadb::MariaDb;
use crate::harness::proxy::{ProxyOptions, Rewrite, SilentProxy, binlog_event};
use crate::harness::source::{Running, config};
use crate::harness::unique_name;

const XID: u8 = 16;
const ANNOTATE_ROWS: u8 = 160;
const LOG_EVENT_IGNORABLE_F: u16 = 0x80;

async fn server_with_table() -> (MariaDb, String, GtidPosition) {
    let server = MariaDb::start_with(&["binlog_checksum=NONE"]).await;
    let db = unique_name("events");
    server
        .exec(&format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.products (id INT PRIMARY KEY, sku VARCHAR(20))"
        ))
        .await;
    let at = server.gtid_binlog_pos().await.parse().expect("position");
    (server, db, at)
}

/// Rewrite the events of type `from` into type `to`, adding `flags` to their header flags.
fn retype(from: u8, to: u8, flags: u16) -> Rewrite {
    Arc::new(move |payload: &mut Vec<u8>| {
        if let Some((ty, header)) = binlog_event(payload) {
            if ty == from {
                header[4] = to;
                let old = u16::from_le_bytes([header[17], header[18]]);
                header[17..19].copy_from_slice(&(old | flags).to_le_bytes());
            }
        }
    })
}

async fn through(server: &MariaDb, rewrite: Rewrite) -> SilentProxy {
    SilentProxy::start_with(
        server.port(),
        ProxyOptions {
            rewrite: Some(rewrite),
            ..ProxyOptions::default()
        },
    )
    .await
}

#[tokio::test]
async fn an_unknown_event_type_stops_with_its_type_position_and_server_version() {
    let (server, db, start) = server_with_table().await;
    let proxy = through(&server, retype(XID, 200, 0)).await;
    let mut cfg = config(&server, &db, "products", SnapshotMode::Never);
    cfg.url = proxy.url("root");
    let source = Running::start(cfg, Some(start.clone()));
    server
        .exec(&format!("INSERT INTO {db}.products VALUES (1, 'a')"))
        .await;
    let err = source.error().await;
    assert!(!err.is_transient(), "definite: {err:?}");
    assert!(matches!(err, SourceError::UnknownEvent { .. }), "{err:?}");
    let msg = err.to_string();
    for needle in ["200", "mysql-bin.000001", &start.to_string(), "10.11"] {
        assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
    }
}

#[tokio::test]
async fn an_unknown_event_flagged_ignorable_is_skipped() {
    let (server, db, start) = server_with_table().await;
    let proxy = through(&server, retype(ANNOTATE_ROWS, 201, LOG_EVENT_IGNORABLE_F)).await;
    let mut cfg = config(&server, &db, "products", SnapshotMode::Never);
    cfg.url = proxy.url("root");
    let mut source = Running::start(cfg, Some(start));
    server
        .exec(&format!("INSERT INTO {db}.products VALUES (1, 'a')"))
        .await;
    let (events, _) = source.transaction().await;
    assert_eq!(events.len(), 1);
    source.stop().await.expect("stop");
}

#[tokio::test]
async fn an_incident_event_stops_replication() {
    let (server, db, start) = server_with_table().await;
    // An INCIDENT body: incident number 1 (LOST_EVENTS), then a length-prefixed message.
    let rewrite: Rewrite = Arc::new(|payload: &mut Vec<u8>| {
        if let Some((XID, header)) = binlog_event(payload) {
            header[4] = 26;
            let message = b"lost events";
            let mut body = vec![1u8, 0, message.len() as u8];
            body.extend_from_slice(message);
            payload.truncate(20);
            payload.extend_from_slice(&body);
            let size = (payload.len() - 1) as u32;
            payload[10..14].copy_from_slice(&size.to_le_bytes());
        }
    });
    let proxy = through(&server, rewrite).await;
    let mut cfg = config(&server, &db, "products", SnapshotMode::Never);
    cfg.url = proxy.url("root");
    let source = Running::start(cfg, Some(start));
    server
        .exec(&format!("INSERT INTO {db}.products VALUES (1, 'a')"))
        .await;
    let err = source.error().await;
    assert!(!err.is_transient(), "definite: {err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("INCIDENT") && msg.contains("lost events") && msg.contains("snapshot"),
        "{msg}"
    );
}
