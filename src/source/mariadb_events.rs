//! Byte-level decoding of the binlog events vecsync reads itself rather than through
//! `mysql_common`: MariaDB's own events (GTID 162 with its XA id, GTID_LIST 163, the compressed
//! events 165-171), ROTATE, QUERY (and EXECUTE_LOAD_QUERY), XA_PREPARE, INCIDENT and the row
//! events' bodies, plus the CRC32 checksum check.
//!
//! `mysql_async` hands MariaDB's events 160-171 over as raw bytes (its parser only knows MySQL's
//! types), so these decoders are small and tested on their own. Every function takes the event
//! data without the 19-byte header and without the trailing checksum.
//!
//! # Which events exist
//! [`kind_of`] sorts every type code into what the source does with it. The list is MariaDB's
//! `Log_event_type` as of 10.6 to 11.8 (`sql/log_event.h`); anything else (MySQL-only types,
//! pre-5.0 formats, events of newer servers such as 12.3's PARTIAL_ROW_DATA) is unknown and
//! stops replication, unless its header carries `LOG_EVENT_IGNORABLE_F`, whose contract is that
//! a reader that does not know the event may skip it.

use std::borrow::Cow;
use std::io::Read;

use crate::position::Gtid;

/// Binlog event type codes vecsync acts on.
pub(crate) mod event_type {
    pub const QUERY: u8 = 2;
    pub const STOP: u8 = 3;
    pub const ROTATE: u8 = 4;
    pub const INTVAR: u8 = 5;
    pub const APPEND_BLOCK: u8 = 9;
    pub const DELETE_FILE: u8 = 11;
    pub const RAND: u8 = 13;
    pub const USER_VAR: u8 = 14;
    pub const FORMAT_DESCRIPTION: u8 = 15;
    pub const XID: u8 = 16;
    pub const BEGIN_LOAD_QUERY: u8 = 17;
    pub const EXECUTE_LOAD_QUERY: u8 = 18;
    pub const TABLE_MAP: u8 = 19;
    pub const WRITE_ROWS_V1: u8 = 23;
    pub const UPDATE_ROWS_V1: u8 = 24;
    pub const DELETE_ROWS_V1: u8 = 25;
    pub const INCIDENT: u8 = 26;
    pub const HEARTBEAT: u8 = 27;
    pub const IGNORABLE: u8 = 28;
    pub const ROWS_QUERY: u8 = 29;
    pub const WRITE_ROWS_V2: u8 = 30;
    pub const UPDATE_ROWS_V2: u8 = 31;
    pub const DELETE_ROWS_V2: u8 = 32;
    /// MariaDB 10.5+: the end of an `XA PREPARE` event group.
    pub const XA_PREPARE: u8 = 38;
    pub const ANNOTATE_ROWS: u8 = 160;
    pub const BINLOG_CHECKPOINT: u8 = 161;
    pub const GTID: u8 = 162;
    pub const GTID_LIST: u8 = 163;
    pub const START_ENCRYPTION: u8 = 164;
    pub const QUERY_COMPRESSED: u8 = 165;
    pub const WRITE_ROWS_COMPRESSED_V1: u8 = 166;
    pub const UPDATE_ROWS_COMPRESSED_V1: u8 = 167;
    pub const DELETE_ROWS_COMPRESSED_V1: u8 = 168;
    pub const WRITE_ROWS_COMPRESSED_V2: u8 = 169;
    pub const UPDATE_ROWS_COMPRESSED_V2: u8 = 170;
    pub const DELETE_ROWS_COMPRESSED_V2: u8 = 171;
}

/// Header flag of events the server made up (the first ROTATE of a stream, for example).
pub(crate) const LOG_EVENT_ARTIFICIAL_F: u16 = 0x20;
/// Header flag of events a reader may skip when it does not know their type.
pub(crate) const LOG_EVENT_IGNORABLE_F: u16 = 0x80;

/// GTID event flag: the group is one statement with no BEGIN/COMMIT around it (DDL).
const FL_STANDALONE: u8 = 0x01;
/// GTID event flag: a commit id (8 bytes) follows the flags.
const FL_GROUP_COMMIT_ID: u8 = 0x02;
/// GTID event flags: the group is an `XA PREPARE`d transaction, or its `XA COMMIT`/`ROLLBACK`;
/// the XA id follows.
const FL_PREPARED_XA: u8 = 0x40;
const FL_COMPLETED_XA: u8 = 0x80;

/// What the source does with an event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// Decoded and acted on.
    Handled,
    /// Known, and carries nothing the source needs: statement-based context (INTVAR, RAND,
    /// USER_VAR; the QUERY after them is what matters), LOAD DATA file blocks (the
    /// EXECUTE_LOAD_QUERY after them is what matters), a server's STOP marker, and types whose
    /// definition says they may be ignored.
    Ignored,
    /// The server recorded that events are missing.
    Incident,
    /// Not an event of the supported MariaDB versions.
    Unknown,
}

/// What to do with events of type `ty` (see the module documentation).
pub(crate) fn kind_of(ty: u8) -> EventKind {
    use event_type::*;
    match ty {
        QUERY | ROTATE | FORMAT_DESCRIPTION | XID | TABLE_MAP | HEARTBEAT | XA_PREPARE
        | EXECUTE_LOAD_QUERY | GTID | GTID_LIST | QUERY_COMPRESSED => EventKind::Handled,
        t if rows_event_kind(t).is_some() => EventKind::Handled,
        STOP | INTVAR | APPEND_BLOCK | DELETE_FILE | RAND | USER_VAR | BEGIN_LOAD_QUERY
        | IGNORABLE | ROWS_QUERY | ANNOTATE_ROWS | BINLOG_CHECKPOINT | START_ENCRYPTION => {
            EventKind::Ignored
        }
        INCIDENT => EventKind::Incident,
        _ => EventKind::Unknown,
    }
}

/// The name of an event type vecsync does not decode, when it has one (for error messages).
pub(crate) fn unknown_type_name(ty: u8) -> Option<&'static str> {
    Some(match ty {
        0 => "UNKNOWN_EVENT",
        1 => "START_EVENT_V3 (MySQL 4)",
        6 => "LOAD_EVENT (MySQL 4)",
        7 => "SLAVE_EVENT",
        8 => "CREATE_FILE_EVENT (MySQL 4)",
        10 => "EXEC_LOAD_EVENT (MySQL 4)",
        12 => "NEW_LOAD_EVENT (MySQL 4)",
        20..=22 => "PRE_GA rows event (MySQL 5.1 betas)",
        33 => "GTID_LOG_EVENT (MySQL)",
        34 => "ANONYMOUS_GTID_LOG_EVENT (MySQL)",
        35 => "PREVIOUS_GTIDS_LOG_EVENT (MySQL)",
        36 => "TRANSACTION_CONTEXT_EVENT (MySQL)",
        37 => "VIEW_CHANGE_EVENT (MySQL)",
        39 => "PARTIAL_UPDATE_ROWS_EVENT (MySQL)",
        40 => "TRANSACTION_PAYLOAD_EVENT (MySQL)",
        41 => "HEARTBEAT_LOG_EVENT_V2 (MySQL)",
        172 => "PARTIAL_ROW_DATA_EVENT (MariaDB 12.3+)",
        _ => return None,
    })
}

/// An XA transaction id (`formatID`, `gtrid`, `bqual`), as the binlog carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Xid {
    pub format_id: u32,
    pub gtrid: Vec<u8>,
    pub bqual: Vec<u8>,
}

impl std::fmt::Display for Xid {
    /// As `XA RECOVER FORMAT='SQL'` and the binlog print it: `X'..',X'..',format`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        write!(
            f,
            "X'{}',X'{}',{}",
            hex(&self.gtrid),
            hex(&self.bqual),
            self.format_id
        )
    }
}

/// An event that is shorter than its format requires, or otherwise malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {event} event: {reason}")]
pub struct MalformedEvent {
    pub event: &'static str,
    pub reason: String,
}

fn malformed(event: &'static str, reason: impl Into<String>) -> MalformedEvent {
    MalformedEvent {
        event,
        reason: reason.into(),
    }
}

/// A cursor over event bytes that fails instead of panicking on short input.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    event: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], event: &'static str) -> Self {
        Self { buf, event }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], MalformedEvent> {
        if self.buf.len() < n {
            return Err(malformed(
                self.event,
                format!("needs {n} more bytes, {} left", self.buf.len()),
            ));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, MalformedEvent> {
        Ok(self.bytes(1)?[0])
    }

    /// Little-endian unsigned integer of `n` (1..=8) bytes.
    pub(crate) fn uint_le(&mut self, n: usize) -> Result<u64, MalformedEvent> {
        let b = self.bytes(n)?;
        Ok(b.iter()
            .rev()
            .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte)))
    }

    /// Big-endian unsigned integer of `n` (1..=8) bytes.
    pub(crate) fn uint_be(&mut self, n: usize) -> Result<u64, MalformedEvent> {
        let b = self.bytes(n)?;
        Ok(b.iter()
            .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte)))
    }

    /// MySQL's length-encoded integer.
    pub(crate) fn lenenc(&mut self) -> Result<u64, MalformedEvent> {
        match self.u8()? {
            n @ 0..=0xfa => Ok(u64::from(n)),
            0xfc => self.uint_le(2),
            0xfd => self.uint_le(3),
            0xfe => self.uint_le(8),
            b => Err(malformed(
                self.event,
                format!("invalid length-encoded integer prefix {b:#x}"),
            )),
        }
    }
}

/// What an event group is, as far as XA goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum XaRole {
    /// An ordinary group.
    None,
    /// The group of an `XA PREPARE`: its rows count only once `XA COMMIT` says so.
    Prepare(Xid),
    /// The group of `XA COMMIT` or `XA ROLLBACK` of a prepared transaction.
    Complete(Xid),
}

/// A MariaDB GTID event (162): the start of an event group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GtidEvent {
    pub gtid: Gtid,
    /// The group is a single statement (DDL) with no BEGIN/COMMIT: it ends after its one QUERY.
    pub standalone: bool,
    pub xa: XaRole,
}

/// Decode a GTID event. The server id comes from the event header.
pub(crate) fn parse_gtid(data: &[u8], server_id: u32) -> Result<GtidEvent, MalformedEvent> {
    let mut r = Reader::new(data, "GTID");
    let sequence = r.uint_le(8)?;
    let domain_id = u32::try_from(r.uint_le(4)?).unwrap_or(u32::MAX);
    let flags = r.u8()?;
    if flags & FL_GROUP_COMMIT_ID != 0 {
        r.uint_le(8)?;
    }
    let xa = if flags & (FL_PREPARED_XA | FL_COMPLETED_XA) != 0 {
        let format_id = u32::try_from(r.uint_le(4)?).unwrap_or(u32::MAX);
        let gtrid_len = r.u8()? as usize;
        let bqual_len = r.u8()? as usize;
        let xid = Xid {
            format_id,
            gtrid: r.bytes(gtrid_len)?.to_vec(),
            bqual: r.bytes(bqual_len)?.to_vec(),
        };
        if flags & FL_PREPARED_XA != 0 {
            XaRole::Prepare(xid)
        } else {
            XaRole::Complete(xid)
        }
    } else {
        XaRole::None
    };
    Ok(GtidEvent {
        gtid: Gtid {
            domain_id,
            server_id,
            sequence,
        },
        standalone: flags & FL_STANDALONE != 0,
        xa,
    })
}

/// Decode an XA_PREPARE event (38): whether it is a one-phase commit (MySQL writes those; MariaDB
/// logs `XA COMMIT ... ONE PHASE` as an ordinary transaction).
pub(crate) fn parse_xa_prepare(data: &[u8]) -> Result<bool, MalformedEvent> {
    Ok(Reader::new(data, "XA_PREPARE").u8()? != 0)
}

/// Decode an INCIDENT event (26): its number and message.
pub(crate) fn parse_incident(data: &[u8]) -> Result<(u16, String), MalformedEvent> {
    let mut r = Reader::new(data, "INCIDENT");
    let number = u16::try_from(r.uint_le(2)?).unwrap_or(u16::MAX);
    let message = match r.u8() {
        Ok(len) => String::from_utf8_lossy(r.bytes(len as usize)?).into_owned(),
        Err(_) => String::new(),
    };
    Ok((number, message))
}

/// Decode a GTID_LIST event (163): the binlog state at the start of a binlog file.
pub(crate) fn parse_gtid_list(data: &[u8]) -> Result<Vec<Gtid>, MalformedEvent> {
    let mut r = Reader::new(data, "GTID_LIST");
    // The top 4 bits are flags; the count is the low 28.
    let count = (r.uint_le(4)? & 0x0fff_ffff) as usize;
    if count.saturating_mul(16) > r.remaining() {
        return Err(malformed(
            "GTID_LIST",
            format!("{count} GTIDs announced, {} bytes left", r.remaining()),
        ));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let domain_id = u32::try_from(r.uint_le(4)?).unwrap_or(u32::MAX);
        let server_id = u32::try_from(r.uint_le(4)?).unwrap_or(u32::MAX);
        let sequence = r.uint_le(8)?;
        out.push(Gtid {
            domain_id,
            server_id,
            sequence,
        });
    }
    Ok(out)
}

/// Decode a ROTATE event: the next binlog file and position.
pub(crate) fn parse_rotate(data: &[u8]) -> Result<(String, u64), MalformedEvent> {
    let mut r = Reader::new(data, "ROTATE");
    let pos = r.uint_le(8)?;
    let name = String::from_utf8_lossy(r.rest()).into_owned();
    Ok((name, pos))
}

/// Verify a CRC32 the event parser did not strip: the very first (artificial) ROTATE of a stream
/// arrives before any FORMAT_DESCRIPTION, so nothing told the parser that events carry checksums.
/// Returns the data without its checksum when the last four bytes are the CRC32 of the event.
pub(crate) fn strip_unparsed_checksum<'a>(header: &[u8; 19], data: &'a [u8]) -> &'a [u8] {
    if data.len() < 4 {
        return data;
    }
    let (body, crc) = data.split_at(data.len() - 4);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(body);
    if hasher.finalize().to_le_bytes() == crc {
        body
    } else {
        data
    }
}

/// A QUERY event's default database and statement text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryEvent<'a> {
    pub schema: String,
    pub query: Cow<'a, [u8]>,
}

impl QueryEvent<'_> {
    pub(crate) fn query_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.query)
    }
}

/// How a QUERY-like event is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryLayout {
    Plain,
    /// QUERY_COMPRESSED (165): the statement is compressed.
    Compressed,
    /// EXECUTE_LOAD_QUERY (18): 13 more post-header bytes (file id, file name positions,
    /// duplicate handling) before the status variables.
    ExecuteLoad,
}

/// Decode a QUERY event (2), a QUERY_COMPRESSED event (165) or an EXECUTE_LOAD_QUERY event (18,
/// a statement-logged `LOAD DATA`).
pub(crate) fn parse_query(
    data: &[u8],
    layout: QueryLayout,
) -> Result<QueryEvent<'_>, MalformedEvent> {
    let mut r = Reader::new(data, "QUERY");
    let _thread_id = r.uint_le(4)?;
    let _exec_time = r.uint_le(4)?;
    let schema_len = r.u8()? as usize;
    let _error_code = r.uint_le(2)?;
    let status_len = r.uint_le(2)? as usize;
    if layout == QueryLayout::ExecuteLoad {
        r.bytes(13)?;
    }
    r.bytes(status_len)?;
    let schema = String::from_utf8_lossy(r.bytes(schema_len)?).into_owned();
    r.u8()?; // the schema's terminating NUL
    let rest = r.rest();
    let query = if layout == QueryLayout::Compressed {
        Cow::Owned(decompress(rest, "QUERY_COMPRESSED")?)
    } else {
        Cow::Borrowed(rest)
    };
    Ok(QueryEvent { schema, query })
}

/// What a rows event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowsKind {
    Write,
    Update,
    Delete,
}

/// The part of a WRITE/UPDATE/DELETE_ROWS event (v1, v2 or MariaDB-compressed) vecsync needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowsEvent<'a> {
    pub kind: RowsKind,
    pub table_id: u64,
    /// Number of columns in the table (as the TABLE_MAP says).
    pub width: usize,
    /// Columns present in the before image (UPDATE, DELETE) or the only image (WRITE).
    pub present: Vec<bool>,
    /// Columns present in the after image (UPDATE only).
    pub present_after: Option<Vec<bool>>,
    /// The row images, back to back.
    pub rows: Cow<'a, [u8]>,
}

/// The kind of rows event `event_type` is, and whether its rows are compressed.
pub(crate) fn rows_event_kind(event_type: u8) -> Option<(RowsKind, bool)> {
    use event_type::*;
    Some(match event_type {
        WRITE_ROWS_V1 | WRITE_ROWS_V2 => (RowsKind::Write, false),
        UPDATE_ROWS_V1 | UPDATE_ROWS_V2 => (RowsKind::Update, false),
        DELETE_ROWS_V1 | DELETE_ROWS_V2 => (RowsKind::Delete, false),
        WRITE_ROWS_COMPRESSED_V1 | WRITE_ROWS_COMPRESSED_V2 => (RowsKind::Write, true),
        UPDATE_ROWS_COMPRESSED_V1 | UPDATE_ROWS_COMPRESSED_V2 => (RowsKind::Update, true),
        DELETE_ROWS_COMPRESSED_V1 | DELETE_ROWS_COMPRESSED_V2 => (RowsKind::Delete, true),
        _ => return None,
    })
}

fn is_v2(event_type: u8) -> bool {
    use event_type::*;
    matches!(
        event_type,
        WRITE_ROWS_V2
            | UPDATE_ROWS_V2
            | DELETE_ROWS_V2
            | WRITE_ROWS_COMPRESSED_V2
            | UPDATE_ROWS_COMPRESSED_V2
            | DELETE_ROWS_COMPRESSED_V2
    )
}

/// Just the table id of a rows event, to skip other tables' rows without decoding them.
pub(crate) fn rows_table_id(data: &[u8]) -> Result<u64, MalformedEvent> {
    Reader::new(data, "ROWS").uint_le(6)
}

/// Decode a rows event's post-header and column bitmaps; the row images stay raw (and are
/// decompressed for MariaDB's compressed variants).
pub(crate) fn parse_rows(event_type: u8, data: &[u8]) -> Result<RowsEvent<'_>, MalformedEvent> {
    let (kind, compressed) = rows_event_kind(event_type).ok_or_else(|| {
        malformed(
            "ROWS",
            format!("event type {event_type} is not a rows event"),
        )
    })?;
    let mut r = Reader::new(data, "ROWS");
    let table_id = r.uint_le(6)?;
    let _flags = r.uint_le(2)?;
    if is_v2(event_type) {
        // The extra-data length counts its own two bytes.
        let extra = r.uint_le(2)? as usize;
        r.bytes(extra.saturating_sub(2))?;
    }
    let width = usize::try_from(r.lenenc()?).map_err(|_| malformed("ROWS", "column count"))?;
    let bitmap = |r: &mut Reader<'_>| -> Result<Vec<bool>, MalformedEvent> {
        let bytes = r.bytes(width.div_ceil(8))?;
        Ok((0..width)
            .map(|i| bytes[i / 8] & (1 << (i % 8)) != 0)
            .collect())
    };
    let present = bitmap(&mut r)?;
    let present_after = if kind == RowsKind::Update {
        Some(bitmap(&mut r)?)
    } else {
        None
    };
    let rest = r.rest();
    let rows = if compressed {
        Cow::Owned(decompress(rest, "ROWS_COMPRESSED")?)
    } else {
        Cow::Borrowed(rest)
    };
    Ok(RowsEvent {
        kind,
        table_id,
        width,
        present,
        present_after,
        rows,
    })
}

/// Undo MariaDB's binlog compression (`log_bin_compress=ON`): one header byte `0x80 | algorithm
/// << 4 | n`, the uncompressed length in `n` big-endian bytes, then a zlib stream.
pub(crate) fn decompress(buf: &[u8], event: &'static str) -> Result<Vec<u8>, MalformedEvent> {
    inflate(buf, event).map_err(|e| MalformedEvent {
        reason: format!(
            "{} (the server compresses events because log_bin_compress=ON; \
             SET GLOBAL log_bin_compress=OFF stops new ones)",
            e.reason
        ),
        ..e
    })
}

fn inflate(buf: &[u8], event: &'static str) -> Result<Vec<u8>, MalformedEvent> {
    let mut r = Reader::new(buf, event);
    let head = r.u8()?;
    if head & 0x80 == 0 {
        return Err(malformed(event, "no compression header"));
    }
    let algorithm = (head >> 4) & 0x07;
    if algorithm != 0 {
        return Err(malformed(
            event,
            format!("compression algorithm {algorithm} is unknown (only zlib, 0, exists)"),
        ));
    }
    let len_bytes = (head & 0x07) as usize;
    if !(1..=4).contains(&len_bytes) {
        return Err(malformed(
            event,
            format!("length field of {len_bytes} bytes"),
        ));
    }
    let len = r.uint_be(len_bytes)? as usize;
    let mut out = Vec::with_capacity(len);
    flate2::read::ZlibDecoder::new(r.rest())
        .take(len as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| malformed(event, format!("zlib: {e}")))?;
    if out.len() != len {
        return Err(malformed(
            event,
            format!("decompressed to {} bytes, header said {len}", out.len()),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).expect("compress");
        enc.finish().expect("finish")
    }

    #[test]
    fn decodes_a_gtid_event_as_mariadb_writes_it() {
        // Bytes of `GTID 0-223344-3` (a BEGIN group) captured from MariaDB 10.11; the server id
        // travels in the event header.
        let data = [
            0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0c, 0, 0, 0, 0, 0, 0,
        ];
        let ev = parse_gtid(&data, 223344).expect("gtid");
        assert_eq!(ev.gtid.to_string(), "0-223344-3");
        assert!(!ev.standalone);
        // A DDL group in domain 7 with a large sequence number: FL_STANDALONE | FL_DDL.
        let mut ddl = Vec::new();
        ddl.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        ddl.extend_from_slice(&7u32.to_le_bytes());
        ddl.push(0x29);
        let ev = parse_gtid(&ddl, 1).expect("gtid");
        assert_eq!(
            ev.gtid.to_string(),
            format!("7-1-{}", 0x0102_0304_0506_0708u64)
        );
        assert!(ev.standalone);
        assert!(parse_gtid(&ddl[..12], 1).is_err(), "no flags byte");
    }

    #[test]
    fn decodes_gtid_lists() {
        // `[0-223344-6,7-223344-1]` as captured (domain 7 first, as the server wrote it).
        let data = [
            0x02, 0, 0, 0, 0x07, 0, 0, 0, 0x70, 0x68, 0x03, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0x70, 0x68, 0x03, 0, 0x06, 0, 0, 0, 0, 0, 0, 0,
        ];
        let list = parse_gtid_list(&data).expect("list");
        let text: Vec<_> = list.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["7-223344-1", "0-223344-6"]);
        // The empty list of a fresh server carries two bytes of padding.
        assert_eq!(parse_gtid_list(&[0, 0, 0, 0, 0, 0]).expect("empty"), []);
        // Flags in the top bits do not change the count.
        let mut flagged = data;
        flagged[3] = 0x10;
        assert_eq!(parse_gtid_list(&flagged).expect("flagged").len(), 2);
        assert!(parse_gtid_list(&data[..20]).is_err(), "truncated");
    }

    #[test]
    fn rotate_keeps_the_name_and_strips_only_a_real_checksum() {
        let mut header = [0u8; 19];
        header[4] = event_type::ROTATE;
        let mut data = 4u64.to_le_bytes().to_vec();
        data.extend_from_slice(b"mysql-bin.000002");
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header);
        hasher.update(&data);
        let mut with_crc = data.clone();
        with_crc.extend_from_slice(&hasher.finalize().to_le_bytes());

        let (name, pos) =
            parse_rotate(strip_unparsed_checksum(&header, &with_crc)).expect("rotate");
        assert_eq!((name.as_str(), pos), ("mysql-bin.000002", 4));
        // Without a checksum nothing is cut off.
        let (name, _) = parse_rotate(strip_unparsed_checksum(&header, &data)).expect("rotate");
        assert_eq!(name, "mysql-bin.000002");
    }

    fn query_event(schema: &str, query: &[u8]) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&5u32.to_le_bytes()); // thread id
        d.extend_from_slice(&0u32.to_le_bytes()); // exec time
        d.push(schema.len() as u8);
        d.extend_from_slice(&0u16.to_le_bytes()); // error code
        d.extend_from_slice(&3u16.to_le_bytes()); // status vars length
        d.extend_from_slice(&[1, 2, 3]);
        d.extend_from_slice(schema.as_bytes());
        d.push(0);
        d.extend_from_slice(query);
        d
    }

    #[test]
    fn decodes_plain_and_compressed_queries() {
        let plain = query_event("catalog", b"TRUNCATE products");
        let q = parse_query(&plain, QueryLayout::Plain).expect("query");
        assert_eq!(q.schema, "catalog");
        assert_eq!(q.query_text(), "TRUNCATE products");

        let text = b"ALTER TABLE products ADD COLUMN colour VARCHAR(20)".repeat(3);
        let mut payload = vec![0x81, text.len() as u8];
        payload.extend_from_slice(&zlib(&text));
        let packed = query_event("", &payload);
        let q = parse_query(&packed, QueryLayout::Compressed).expect("compressed");
        assert_eq!(q.schema, "");
        assert_eq!(q.query.as_ref(), text.as_slice());
    }

    #[test]
    fn decodes_xa_gtid_events() {
        // `XA START X'7831',X'',1 GTID 0-1-4` as MariaDB 10.11 wrote it: FL_PREPARED_XA, format
        // id 1, gtrid "x1", no bqual.
        let mut data = Vec::new();
        data.extend_from_slice(&4u64.to_le_bytes());
        data.extend_from_slice(&0u32.to_le_bytes());
        data.push(0x40);
        data.extend_from_slice(&1u32.to_le_bytes());
        data.extend_from_slice(&[2, 0, b'x', b'1']);
        let ev = parse_gtid(&data, 1).expect("gtid");
        let XaRole::Prepare(xid) = &ev.xa else {
            panic!("a prepare: {ev:?}")
        };
        assert_eq!(xid.to_string(), "X'7831',X'',1");
        assert!(!ev.standalone);
        // Its XA COMMIT: standalone, FL_COMPLETED_XA, a commit id before the XA id.
        let mut data = Vec::new();
        data.extend_from_slice(&5u64.to_le_bytes());
        data.extend_from_slice(&0u32.to_le_bytes());
        data.push(0x80 | 0x02 | 0x01);
        data.extend_from_slice(&99u64.to_le_bytes());
        data.extend_from_slice(&1u32.to_le_bytes());
        data.extend_from_slice(&[2, 1, b'x', b'1', b'q']);
        let ev = parse_gtid(&data, 1).expect("gtid");
        assert!(ev.standalone);
        assert_eq!(
            ev.xa,
            XaRole::Complete(Xid {
                format_id: 1,
                gtrid: b"x1".to_vec(),
                bqual: b"q".to_vec()
            })
        );
        assert!(
            parse_gtid(&data[..data.len() - 1], 1).is_err(),
            "short XA id"
        );
    }

    #[test]
    fn sorts_every_event_type() {
        use event_type::*;
        for ty in [
            QUERY,
            XID,
            TABLE_MAP,
            GTID,
            XA_PREPARE,
            WRITE_ROWS_V1,
            DELETE_ROWS_COMPRESSED_V2,
        ] {
            assert_eq!(kind_of(ty), EventKind::Handled, "{ty}");
        }
        for ty in [
            INTVAR,
            RAND,
            USER_VAR,
            STOP,
            ANNOTATE_ROWS,
            BINLOG_CHECKPOINT,
            BEGIN_LOAD_QUERY,
        ] {
            assert_eq!(kind_of(ty), EventKind::Ignored, "{ty}");
        }
        assert_eq!(kind_of(INCIDENT), EventKind::Incident);
        for ty in [0, 1, 33, 40, 172, 200, 255] {
            assert_eq!(kind_of(ty), EventKind::Unknown, "{ty}");
        }
        assert_eq!(
            unknown_type_name(172),
            Some("PARTIAL_ROW_DATA_EVENT (MariaDB 12.3+)")
        );
        assert_eq!(unknown_type_name(200), None);
    }

    #[test]
    fn decodes_incidents_and_load_queries() {
        let (number, message) = parse_incident(&[1, 0, 3, b'a', b'b', b'c']).expect("incident");
        assert_eq!((number, message.as_str()), (1, "abc"));
        assert_eq!(parse_incident(&[2, 0]).expect("no message").1, "");
        // EXECUTE_LOAD_QUERY: the query post-header, 13 more bytes, then as QUERY.
        let mut d = Vec::new();
        d.extend_from_slice(&5u32.to_le_bytes());
        d.extend_from_slice(&0u32.to_le_bytes());
        d.push(7);
        d.extend_from_slice(&0u16.to_le_bytes());
        d.extend_from_slice(&0u16.to_le_bytes());
        d.extend_from_slice(&[0; 13]);
        d.extend_from_slice(b"catalog\0LOAD DATA INFILE 'f' INTO TABLE products");
        let q = parse_query(&d, QueryLayout::ExecuteLoad).expect("load query");
        assert_eq!(q.schema, "catalog");
        assert!(q.query_text().starts_with("LOAD DATA"));
        assert!(parse_xa_prepare(&[1, 0, 0, 0, 0]).expect("xa"));
    }

    #[test]
    fn decompress_checks_header_and_length() {
        let text = vec![b'x'; 70_000];
        let z = zlib(&text);
        // 70 000 needs three length bytes.
        let mut ok = vec![0x83, 0x01, 0x11, 0x70];
        ok.extend_from_slice(&z);
        assert_eq!(decompress(&ok, "T").expect("decompress"), text);

        let mut wrong_len = vec![0x83, 0x01, 0x11, 0x71];
        wrong_len.extend_from_slice(&z);
        assert!(decompress(&wrong_len, "T").is_err());
        let mut other_alg = vec![0x93, 0x01, 0x11, 0x70];
        other_alg.extend_from_slice(&z);
        assert!(decompress(&other_alg, "T").is_err());
        assert!(decompress(&[0x01, 0x00], "T").is_err(), "no header bit");
        let err = decompress(&[0x81, 0x05, 0x78], "T").expect_err("broken zlib");
        assert!(err.reason.contains("log_bin_compress"), "{err}");
    }

    #[test]
    fn parses_rows_event_bodies() {
        // UPDATE_ROWS_V1 on table 18, 3 columns, all present before and after.
        let mut d = vec![18, 0, 0, 0, 0, 0, 1, 0, 3, 0b111, 0b101];
        d.extend_from_slice(b"rowdata");
        let ev = parse_rows(event_type::UPDATE_ROWS_V1, &d).expect("rows");
        assert_eq!(ev.kind, RowsKind::Update);
        assert_eq!((ev.table_id, ev.width), (18, 3));
        assert_eq!(ev.present, [true, true, true]);
        assert_eq!(ev.present_after.as_deref(), Some(&[true, false, true][..]));
        assert_eq!(ev.rows.as_ref(), b"rowdata");
        assert_eq!(rows_table_id(&d).expect("id"), 18);

        // WRITE_ROWS_V2 with two bytes of extra data beyond its length field.
        let d2 = [9, 0, 0, 0, 0, 0, 1, 0, 4, 0, 0xaa, 0xbb, 2, 0b11, b'z'];
        let ev = parse_rows(event_type::WRITE_ROWS_V2, &d2).expect("v2");
        assert_eq!(
            (ev.kind, ev.width, ev.rows.as_ref()),
            (RowsKind::Write, 2, &b"z"[..])
        );
        assert!(ev.present_after.is_none());

        // The compressed variant inflates the row images only.
        let mut dc = vec![18, 0, 0, 0, 0, 0, 1, 0, 3, 0b111];
        dc.extend_from_slice(&[0x81, 7]);
        dc.extend_from_slice(&zlib(b"rowdata"));
        let ev = parse_rows(event_type::DELETE_ROWS_COMPRESSED_V1, &dc).expect("compressed");
        assert_eq!(
            (ev.kind, ev.rows.as_ref()),
            (RowsKind::Delete, &b"rowdata"[..])
        );

        assert!(
            parse_rows(event_type::UPDATE_ROWS_V1, &d[..10]).is_err(),
            "truncated bitmap"
        );
        assert!(parse_rows(event_type::QUERY, &d).is_err());
    }
}
