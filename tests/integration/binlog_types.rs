//! Every column type a product catalog can use, written for real and read back from the binlog
//! and from a snapshot: both must give exactly the JSON a Debezium consumer expects (see
//! `src/source/values.rs` for the conventions). The expected values are written out by hand.

use serde_json::{Value, json};
use vecsync::config::SnapshotMode;
use vecsync::event::{ChangeEvent, Op};
use vecsync::position::GtidPosition;

use crate::harness::mariadb::MariaDb;
use crate::harness::source::{Running, config};
use crate::harness::unique_name;

const TABLE: &str = "CREATE TABLE {db}.items (
    id INT PRIMARY KEY,
    yr YEAR,
    ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
    mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
    bi BIGINT, biu BIGINT UNSIGNED,
    price DECIMAL(10,2), big DECIMAL(65,30), small DECIMAL(5,3),
    f FLOAT, d DOUBLE,
    vc VARCHAR(100), ch CHAR(10), tx TEXT, mt MEDIUMTEXT, lt LONGTEXT,
    lat VARCHAR(20) CHARACTER SET latin1,
    vb VARBINARY(20), bn BINARY(4), bl BLOB,
    dt DATE,
    dt0 DATETIME, dt1 DATETIME(1), dt2 DATETIME(2), dt3 DATETIME(3),
    dt4 DATETIME(4), dt5 DATETIME(5), dt6 DATETIME(6),
    ts0 TIMESTAMP NULL, ts1 TIMESTAMP(1) NULL, ts2 TIMESTAMP(2) NULL, ts3 TIMESTAMP(3) NULL,
    ts4 TIMESTAMP(4) NULL, ts5 TIMESTAMP(5) NULL, ts6 TIMESTAMP(6) NULL,
    tm0 TIME, tm3 TIME(3), tm6 TIME(6),
    en ENUM('small','medium','large'), st SET('red','green','blue'),
    js JSON, b1 BIT(1), b10 BIT(10), bo BOOLEAN
) DEFAULT CHARSET=utf8mb4";

const ROWS: &str = "SET time_zone = '+00:00';
INSERT INTO {db}.items VALUES (
    {id1}, 2024,
    -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
    -9223372036854775808, 18446744073709551615,
    19.99, 12345678901234567890123456789012345.123456789012345678901234567890, -12.345,
    19.99, 1234.5678901234,
    'héllo 😀 日本語', 'ab', 'text 😀', '中文 medium', 'long 🎉',
    'café',
    X'00FFFE80', 'ab', X'DEADBEEF',
    '2024-02-29',
    '2024-02-29 23:59:58.123456', '2024-02-29 23:59:58.123456', '2024-02-29 23:59:58.123456',
    '2024-02-29 23:59:58.123456', '2024-02-29 23:59:58.123456', '2024-02-29 23:59:58.123456',
    '2024-02-29 23:59:58.123456',
    '2024-02-29 23:59:58.123456', '2024-02-29 23:59:58.123456', '2024-02-29 23:59:58.123456',
    '2024-02-29 23:59:58.123456', '2024-02-29 23:59:58.123456', '2024-02-29 23:59:58.123456',
    '2024-02-29 23:59:58.123456',
    '-838:59:59', '-12:34:56.5', '00:00:00.000001',
    'medium', 'red,blue',
    '{\"a\": [1, 2]}', b'1', b'1000000001', TRUE
), (
    {id2}, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
), (
    {id3}, 0,
    127, 0, 32767, 0, 8388607, 0, 2147483647, 0,
    9223372036854775807, 9223372036854775808,
    -0.01, -0.000000000000000000000000000001, 0.5,
    -0.5, 1e-300,
    '', '', '', '', '',
    '',
    '', X'00000001', '',
    '1000-01-01',
    '9999-12-31 23:59:59', '9999-12-31 23:59:59.9', '9999-12-31 23:59:59.99',
    '9999-12-31 23:59:59.999', '9999-12-31 23:59:59.9999', '9999-12-31 23:59:59.99999',
    '9999-12-31 23:59:59.999999',
    '1970-01-01 00:00:01', '1970-01-01 00:00:01.1', '1999-12-31 23:59:59.99',
    '2000-01-01 00:00:00.000', '2038-01-19 03:14:07.9999', '2038-01-19 03:14:07.99999',
    '2038-01-19 03:14:07.999999',
    '838:59:59', '-00:00:00.001', '-01:00:00.000001',
    'small', '',
    '[]', b'0', b'0', FALSE
)";

/// The three rows, with ids `base + 1..=3`.
fn rows_sql(db: &str, base: i64) -> String {
    ROWS.replace("{db}", db)
        .replace("{id1}", &(base + 1).to_string())
        .replace("{id2}", &(base + 2).to_string())
        .replace("{id3}", &(base + 3).to_string())
}

fn expected(id: i64) -> Value {
    let ts = |frac: &str| json!(format!("2024-02-29T23:59:58{frac}Z"));
    let dt = |frac: &str| json!(format!("2024-02-29T23:59:58{frac}"));
    match id {
        1 => json!({
            "id": 1, "yr": 2024,
            "ti": -128, "tiu": 255, "si": -32768, "siu": 65535,
            "mi": -8388608, "miu": 16777215, "i": -2147483648i64, "iu": 4294967295u64,
            "bi": i64::MIN, "biu": u64::MAX,
            "price": "19.99",
            "big": "12345678901234567890123456789012345.123456789012345678901234567890",
            "small": "-12.345",
            "f": 19.99, "d": 1234.5678901234,
            "vc": "héllo 😀 日本語", "ch": "ab", "tx": "text 😀", "mt": "中文 medium", "lt": "long 🎉",
            "lat": "café",
            "vb": "AP/+gA==", "bn": "YWIAAA==", "bl": "3q2+7w==",
            "dt": "2024-02-29",
            "dt0": dt(""), "dt1": dt(".1"), "dt2": dt(".12"), "dt3": dt(".123"),
            "dt4": dt(".1234"), "dt5": dt(".12345"), "dt6": dt(".123456"),
            "ts0": ts(""), "ts1": ts(".1"), "ts2": ts(".12"), "ts3": ts(".123"),
            "ts4": ts(".1234"), "ts5": ts(".12345"), "ts6": ts(".123456"),
            "tm0": "-838:59:59", "tm3": "-12:34:56.500", "tm6": "00:00:00.000001",
            "en": "medium", "st": "red,blue",
            "js": "{\"a\": [1, 2]}", "b1": true, "b10": "AQI=", "bo": 1
        }),
        2 => {
            let mut row = serde_json::Map::new();
            for name in COLUMNS {
                row.insert((*name).to_owned(), Value::Null);
            }
            row.insert("id".into(), json!(2));
            Value::Object(row)
        }
        3 => json!({
            "id": 3, "yr": 0,
            "ti": 127, "tiu": 0, "si": 32767, "siu": 0,
            "mi": 8388607, "miu": 0, "i": 2147483647, "iu": 0,
            "bi": i64::MAX, "biu": 9223372036854775808u64,
            "price": "-0.01", "big": "-0.000000000000000000000000000001", "small": "0.500",
            "f": -0.5, "d": 1e-300,
            "vc": "", "ch": "", "tx": "", "mt": "", "lt": "",
            "lat": "",
            "vb": "", "bn": "AAAAAQ==", "bl": "",
            "dt": "1000-01-01",
            "dt0": "9999-12-31T23:59:59", "dt1": "9999-12-31T23:59:59.9",
            "dt2": "9999-12-31T23:59:59.99", "dt3": "9999-12-31T23:59:59.999",
            "dt4": "9999-12-31T23:59:59.9999", "dt5": "9999-12-31T23:59:59.99999",
            "dt6": "9999-12-31T23:59:59.999999",
            "ts0": "1970-01-01T00:00:01Z", "ts1": "1970-01-01T00:00:01.1Z",
            "ts2": "1999-12-31T23:59:59.99Z", "ts3": "2000-01-01T00:00:00.000Z",
            "ts4": "2038-01-19T03:14:07.9999Z", "ts5": "2038-01-19T03:14:07.99999Z",
            "ts6": "2038-01-19T03:14:07.999999Z",
            "tm0": "838:59:59", "tm3": "-00:00:00.001", "tm6": "-01:00:00.000001",
            "en": "small", "st": "",
            "js": "[]", "b1": false, "b10": "AAA=", "bo": 0
        }),
        _ => unreachable!(),
    }
}

const COLUMNS: &[&str] = &[
    "id", "yr", "ti", "tiu", "si", "siu", "mi", "miu", "i", "iu", "bi", "biu", "price", "big",
    "small", "f", "d", "vc", "ch", "tx", "mt", "lt", "lat", "vb", "bn", "bl", "dt", "dt0", "dt1",
    "dt2", "dt3", "dt4", "dt5", "dt6", "ts0", "ts1", "ts2", "ts3", "ts4", "ts5", "ts6", "tm0",
    "tm3", "tm6", "en", "st", "js", "b1", "b10", "bo",
];

fn row(e: &ChangeEvent) -> Value {
    serde_json::to_value(e.after.as_ref().or(e.before.as_ref()).expect("a row image"))
        .expect("json")
}

/// Compare column by column so a failure names the column.
#[track_caller]
fn assert_row(actual: &Value, expected: &Value, what: &str) {
    let (a, e) = (
        actual.as_object().expect("object"),
        expected.as_object().expect("object"),
    );
    for name in COLUMNS {
        assert_eq!(a.get(*name), e.get(*name), "{what}: column {name}");
    }
    let keys: Vec<_> = a.keys().map(String::as_str).collect();
    assert_eq!(keys, COLUMNS, "{what}: columns in table order");
}

async fn binlog_and_snapshot_agree(server: MariaDb) {
    let db = unique_name("types");
    server
        .exec(&format!(
            "CREATE DATABASE {db}; {}",
            TABLE.replace("{db}", &db)
        ))
        .await;
    let start: GtidPosition = server.gtid_binlog_pos().await.parse().expect("position");
    let mut stream = Running::start(
        config(&server, &db, "items", SnapshotMode::Never),
        Some(start),
    );
    server.exec(&rows_sql(&db, 0)).await;

    let (events, _) = stream.transaction().await;
    assert_eq!(events.len(), 3, "one event per inserted row");
    for (e, id) in events.iter().zip(1..) {
        assert_eq!(e.op, Op::Create);
        assert_row(
            &row(e),
            &expected(id),
            &format!("binlog insert of row {id}"),
        );
    }

    // Updates carry both images; deletes the before image.
    server
        .exec(&format!(
            "UPDATE {db}.items SET vc = 'changed' WHERE id = 1; DELETE FROM {db}.items WHERE id = 3"
        ))
        .await;
    let (events, _) = stream.transaction().await;
    assert_eq!(events[0].op, Op::Update);
    assert_row(
        &serde_json::to_value(events[0].before.as_ref().expect("before")).expect("json"),
        &expected(1),
        "update before",
    );
    let mut changed = expected(1);
    changed["vc"] = json!("changed");
    assert_row(&row(&events[0]), &changed, "update after");
    let (events, _) = stream.transaction().await;
    assert_eq!(events[0].op, Op::Delete);
    assert_row(&row(&events[0]), &expected(3), "delete before");
    stream.stop().await.expect("stop");

    // A snapshot reads the same values the same way.
    server.exec(&rows_sql(&db, 100)).await;
    let mut snap = Running::start(config(&server, &db, "items", SnapshotMode::Always), None);
    let (events, _) = snap.transaction().await;
    let mut by_id: Vec<(i64, Value)> = events
        .iter()
        .map(|e| {
            assert_eq!(e.op, Op::Read);
            let r = row(e);
            (r["id"].as_i64().expect("id"), r)
        })
        .collect();
    by_id.sort_by_key(|(id, _)| *id);
    let ids: Vec<_> = by_id.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [1, 2, 101, 102, 103]);
    assert_row(&by_id[0].1, &changed, "snapshot of row 1");
    assert_row(&by_id[1].1, &expected(2), "snapshot of row 2");
    for (i, id) in [(2, 1), (3, 2), (4, 3)] {
        let mut want = expected(id);
        want["id"] = json!(100 + id);
        assert_row(&by_id[i].1, &want, &format!("snapshot of row {}", 100 + id));
    }
    snap.stop().await.expect("stop");
}

#[tokio::test]
async fn every_type_with_full_row_metadata() {
    binlog_and_snapshot_agree(MariaDb::start().await).await;
}

#[tokio::test]
async fn every_type_with_minimal_row_metadata() {
    // Names come from information_schema; signedness and charsets from the event.
    binlog_and_snapshot_agree(MariaDb::start_with(&["binlog_row_metadata=MINIMAL"]).await).await;
}

#[tokio::test]
async fn every_type_without_row_metadata() {
    // Everything beyond storage types comes from information_schema.
    binlog_and_snapshot_agree(MariaDb::start_with(&["binlog_row_metadata=NO_LOG"]).await).await;
}
