//! Change events with Debezium's semantics, and the stream the source hands to the pipeline.
//!
//! One [`ChangeEvent`] per row, as Debezium's MySQL/MariaDB connector emits them: `op` is `c`
//! (insert), `u` (update, with `before` and `after`), `d` (delete, with `before`), `r` (a row read
//! by a snapshot) or `t` (truncate). Row images are JSON objects keyed by column name, in the
//! JSON form Debezium produces with `decimal.handling.mode=string`: DECIMAL as an exact string,
//! temporal types as ISO-8601 strings, binary as base64, NULL as `null`.
//!
//! The source emits [`SourceMessage`]s: the events of a transaction in order, then a
//! [`SourceMessage::Commit`] carrying the position after that transaction. Only a commit may move
//! the checkpoint.

use serde::{Deserialize, Serialize};

use crate::position::GtidPosition;

/// A row image: column name to value, in table column order.
pub type Row = serde_json::Map<String, serde_json::Value>;

/// Debezium's operation codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "c")]
    Create,
    #[serde(rename = "u")]
    Update,
    #[serde(rename = "d")]
    Delete,
    #[serde(rename = "r")]
    Read,
    #[serde(rename = "t")]
    Truncate,
}

impl Op {
    /// The one-letter code (`c`, `u`, `d`, `r`, `t`), as used in metrics labels.
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }
}

/// Where an event came from (Debezium's `source` block).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Always `"vecsync"`.
    pub connector: String,
    pub db: String,
    pub table: String,
    /// Server id of the MariaDB server that wrote the event.
    pub server_id: u32,
    /// GTID of the transaction (`domain-server-sequence`), `None` for snapshot rows.
    pub gtid: Option<String>,
    /// Binlog file and position of the event (for snapshot rows: the snapshot's position).
    pub file: String,
    pub pos: u64,
    /// Row number within the rows event (Debezium's `row`).
    pub row: u32,
    /// Commit time on the server, milliseconds since the epoch (binlog timestamps have
    /// one-second resolution).
    pub ts_ms: i64,
    /// `"true"` for every snapshot row but the last, `"last"` for the last one, `"false"` when
    /// streaming (Debezium's values).
    pub snapshot: String,
}

/// One row change, in Debezium's envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub before: Option<Row>,
    pub after: Option<Row>,
    pub source: Source,
    pub op: Op,
    /// When vecsync produced the event, milliseconds since the epoch.
    pub ts_ms: i64,
}

/// The end of a transaction in the source stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// The position just after this transaction: resuming from it replays nothing before it.
    pub position: GtidPosition,
    /// Commit time on the server, milliseconds since the epoch (binlog timestamps have one-second
    /// resolution).
    pub ts_ms: i64,
    /// When vecsync read the commit from the binlog, milliseconds since the epoch: the start of
    /// the millisecond-resolution commit-to-visible measurement.
    pub seen_ms: i64,
}

/// What the source yields: the events of a transaction in order, then its commit.
///
/// Transactions that touch no row of the watched table still produce a `Commit` (possibly
/// throttled or coalesced by the source) so the checkpoint keeps up with the binlog and a
/// restart does not replay unrelated history.
// Events are the common message and commits the rare one: boxing every event to shrink the rare
// variant would cost an allocation per row.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum SourceMessage {
    Event(ChangeEvent),
    Commit(Commit),
    /// A reconciling snapshot's progress, merged into the stream at exact positions.
    Snapshot(SnapshotMessage),
}

/// What a running snapshot tells the pipeline, in stream order.
///
/// # Semantics
/// A [`SnapshotChunk`]'s rows are the table's state at the chunk's `position`, and the source sends
/// the chunk exactly where its stream reached that position: every change committed before it came
/// earlier, every later change comes after. A later change to one of its rows (which carries the
/// whole row) therefore supersedes that row. An [`Absence`] works the same way for rows that no
/// longer exist.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotMessage {
    /// A snapshot began, or resumed from the checkpoint.
    Started(SnapshotStarted),
    /// Rows of one chunk, in key order.
    Chunk(SnapshotChunk),
    /// The answer to an absence check the pipeline asked for (stale objects to remove).
    Absent(Absence),
}

/// A snapshot began or resumed.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotStarted {
    /// Names this snapshot in the checkpoint; a resumed snapshot keeps its id.
    pub id: String,
    /// True when it continues a snapshot recorded in the checkpoint.
    pub resumed: bool,
    /// Why it runs (`no checkpoint`, `--snapshot always`, `binlog purged`, ...), for logs.
    pub reason: String,
    /// information_schema's estimate of the table's rows.
    pub estimated_rows: u64,
}

/// One chunk of a snapshot: rows read in one consistent read at `position`.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotChunk {
    pub snapshot_id: String,
    /// 0, 1, 2, ... within the snapshot (a resumed snapshot continues the numbering).
    pub seq: u64,
    /// The GTID position the rows were read at.
    pub position: GtidPosition,
    /// `r` events, in key order.
    pub rows: Vec<ChangeEvent>,
    /// The key of the last row of this chunk (JSON values, one per key column), `None` for an
    /// empty chunk. Recorded in the checkpoint once the chunk is confirmed: a resumed snapshot
    /// reads after it. Treat it as opaque: it is encoded to bind back exactly (temporal values
    /// as `YYYY-MM-DD HH:MM:SS.ffffff`, binary as base64, FLOAT as its exact double), which is
    /// not always the row's own JSON.
    pub last_key: Option<Vec<serde_json::Value>>,
    /// True for the snapshot's last chunk.
    pub last: bool,
}

/// Of the values the pipeline asked about, those no row of the table has at `position`.
#[derive(Debug, Clone, PartialEq)]
pub struct Absence {
    pub snapshot_id: String,
    /// The number the pipeline gave the request.
    pub request: u64,
    /// The GTID position of the consistent read that decided absence.
    pub position: GtidPosition,
    /// The column asked about (e.g. `sku`).
    pub column: String,
    /// The absent values.
    pub absent: Vec<String>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serializes_as_a_debezium_envelope() {
        let mut after = Row::new();
        after.insert("id".into(), json!(1));
        after.insert("price".into(), json!("19.99"));
        let event = ChangeEvent {
            before: None,
            after: Some(after),
            source: Source {
                connector: "vecsync".into(),
                db: "catalog".into(),
                table: "products".into(),
                server_id: 223344,
                gtid: Some("0-223344-17".into()),
                file: "mysql-bin.000001".into(),
                pos: 1234,
                row: 0,
                ts_ms: 1_700_000_000_000,
                snapshot: "false".into(),
            },
            op: Op::Create,
            ts_ms: 1_700_000_000_123,
        };
        let v = serde_json::to_value(&event).expect("serialize");
        assert_eq!(v["op"], "c");
        assert_eq!(v["before"], serde_json::Value::Null);
        assert_eq!(v["after"]["price"], "19.99");
        assert_eq!(v["source"]["gtid"], "0-223344-17");
        let keys: Vec<_> = v.as_object().expect("object").keys().cloned().collect();
        assert_eq!(keys, ["before", "after", "source", "op", "ts_ms"]);
        let back: ChangeEvent = serde_json::from_value(v).expect("deserialize");
        assert_eq!(back, event);
    }

    #[test]
    fn op_codes() {
        let codes: Vec<_> = [Op::Create, Op::Update, Op::Delete, Op::Read, Op::Truncate]
            .iter()
            .map(|o| o.code())
            .collect();
        assert_eq!(codes, ["c", "u", "d", "r", "t"]);
    }
}
