//! TABLE_MAP events: how the row images that follow are laid out on the wire.
//!
//! A TABLE_MAP precedes every rows event and names the table, each column's storage type and
//! type metadata (lengths, precision, fractional digits), which columns may be NULL and, with
//! `binlog_row_metadata=MINIMAL|FULL`, optional metadata: signedness and character sets (MINIMAL),
//! plus column names and ENUM/SET member names (FULL). Parsed here byte by byte so an unexpected
//! layout is an error, never a panic or a silently shifted column.

use super::mariadb_events::{MalformedEvent, Reader};

/// Storage type codes as they appear in TABLE_MAP (`enum_field_types`).
pub(crate) mod wire_type {
    pub const DECIMAL: u8 = 0;
    pub const TINY: u8 = 1;
    pub const SHORT: u8 = 2;
    pub const LONG: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const NULL: u8 = 6;
    pub const TIMESTAMP: u8 = 7;
    pub const LONGLONG: u8 = 8;
    pub const INT24: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const DATETIME: u8 = 12;
    pub const YEAR: u8 = 13;
    pub const NEWDATE: u8 = 14;
    pub const VARCHAR: u8 = 15;
    pub const BIT: u8 = 16;
    pub const TIMESTAMP2: u8 = 17;
    pub const DATETIME2: u8 = 18;
    pub const TIME2: u8 = 19;
    pub const JSON: u8 = 245;
    pub const NEWDECIMAL: u8 = 246;
    pub const ENUM: u8 = 247;
    pub const SET: u8 = 248;
    pub const TINY_BLOB: u8 = 249;
    pub const MEDIUM_BLOB: u8 = 250;
    pub const LONG_BLOB: u8 = 251;
    pub const BLOB: u8 = 252;
    pub const VAR_STRING: u8 = 253;
    pub const STRING: u8 = 254;
    pub const GEOMETRY: u8 = 255;
}

/// How one column's value is stored in a row image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// TINYINT (1), SMALLINT (2), MEDIUMINT (3), INT (4), BIGINT (8): little-endian.
    Int {
        bytes: u8,
    },
    Float,
    Double,
    /// Binary DECIMAL with its precision and scale.
    Decimal {
        precision: u8,
        scale: u8,
    },
    Year,
    Date,
    /// MySQL 5.6+ temporal formats with fractional digits (`fsp`, 0-6).
    Time2 {
        fsp: u8,
    },
    DateTime2 {
        fsp: u8,
    },
    Timestamp2 {
        fsp: u8,
    },
    /// Pre-5.6 formats without fractional seconds.
    Time,
    DateTime,
    Timestamp,
    /// VARCHAR/VARBINARY with their maximum length in bytes.
    VarChar {
        max_len: u16,
    },
    /// CHAR/BINARY with their maximum length in bytes.
    Char {
        max_len: u16,
    },
    /// TEXT/BLOB (and MariaDB's JSON, a LONGTEXT) with the size of their length prefix.
    Blob {
        len_bytes: u8,
    },
    Geometry {
        len_bytes: u8,
    },
    Enum {
        pack_len: u8,
    },
    Set {
        pack_len: u8,
    },
    Bit {
        bits: u16,
    },
    Null,
}

impl Wire {
    /// Columns MariaDB counts in the SIGNEDNESS optional metadata (YEAR included).
    pub(crate) fn is_numeric(self) -> bool {
        matches!(
            self,
            Wire::Int { .. } | Wire::Float | Wire::Double | Wire::Decimal { .. } | Wire::Year
        )
    }

    /// Columns MariaDB counts in the DEFAULT_CHARSET/COLUMN_CHARSET optional metadata.
    pub(crate) fn is_character(self) -> bool {
        matches!(
            self,
            Wire::VarChar { .. } | Wire::Char { .. } | Wire::Blob { .. }
        )
    }
}

/// Optional metadata (`binlog_row_metadata`). Each list is in column order over the columns it
/// applies to, as MariaDB writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OptionalMetadata {
    /// One flag per numeric column: true when UNSIGNED.
    pub unsigned: Option<Vec<bool>>,
    /// One collation id per character column.
    pub charsets: Option<Vec<u16>>,
    /// Every column's name (FULL only).
    pub names: Option<Vec<String>>,
    /// Member names of each ENUM column (FULL only).
    pub enum_values: Option<Vec<Vec<String>>>,
    /// Member names of each SET column (FULL only).
    pub set_values: Option<Vec<Vec<String>>>,
}

/// A decoded TABLE_MAP event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableMap {
    pub table_id: u64,
    pub db: String,
    pub table: String,
    pub columns: Vec<Wire>,
    pub nullable: Vec<bool>,
    pub optional: OptionalMetadata,
}

/// Optional metadata field types.
mod field {
    pub const SIGNEDNESS: u8 = 1;
    pub const DEFAULT_CHARSET: u8 = 2;
    pub const COLUMN_CHARSET: u8 = 3;
    pub const COLUMN_NAME: u8 = 4;
    pub const SET_STR_VALUE: u8 = 5;
    pub const ENUM_STR_VALUE: u8 = 6;
}

/// Only the database and table name, to skip other tables cheaply.
pub(crate) fn parse_names(data: &[u8]) -> Result<(&[u8], &[u8]), MalformedEvent> {
    let mut r = Reader::new(data, "TABLE_MAP");
    r.bytes(8)?;
    let db_len = r.u8()? as usize;
    let db = r.bytes(db_len)?;
    r.u8()?;
    let table_len = r.u8()? as usize;
    let table = r.bytes(table_len)?;
    Ok((db, table))
}

/// Decode a TABLE_MAP event (6-byte table ids, as every MariaDB writes them).
pub(crate) fn parse_table_map(data: &[u8]) -> Result<TableMap, MalformedEvent> {
    let mut r = Reader::new(data, "TABLE_MAP");
    let table_id = r.uint_le(6)?;
    let _flags = r.uint_le(2)?;
    let db_len = r.u8()? as usize;
    let db = String::from_utf8_lossy(r.bytes(db_len)?).into_owned();
    r.u8()?;
    let table_len = r.u8()? as usize;
    let table = String::from_utf8_lossy(r.bytes(table_len)?).into_owned();
    r.u8()?;
    let count = usize::try_from(r.lenenc()?).map_err(|_| bad("column count"))?;
    if count > r.remaining() {
        return Err(bad(format!("{count} columns announced")));
    }
    let types = r.bytes(count)?.to_vec();
    let meta_len = usize::try_from(r.lenenc()?).map_err(|_| bad("metadata length"))?;
    let mut meta = Reader::new(r.bytes(meta_len)?, "TABLE_MAP");
    let mut columns = Vec::with_capacity(count);
    for (i, &t) in types.iter().enumerate() {
        columns.push(wire(t, &mut meta).map_err(|e| bad(format!("column {}: {e}", i + 1)))?);
    }
    if meta.remaining() != 0 {
        return Err(bad(format!(
            "{} metadata bytes left over",
            meta.remaining()
        )));
    }
    let null_bits = r.bytes(count.div_ceil(8))?;
    let nullable = (0..count)
        .map(|i| null_bits[i / 8] & (1 << (i % 8)) != 0)
        .collect();
    let optional = parse_optional(r.rest(), &columns)?;
    Ok(TableMap {
        table_id,
        db,
        table,
        columns,
        nullable,
        optional,
    })
}

fn bad(reason: impl Into<String>) -> MalformedEvent {
    MalformedEvent {
        event: "TABLE_MAP",
        reason: reason.into(),
    }
}

fn wire(t: u8, meta: &mut Reader<'_>) -> Result<Wire, String> {
    use wire_type::*;
    let e = |e: MalformedEvent| e.reason;
    Ok(match t {
        TINY => Wire::Int { bytes: 1 },
        SHORT => Wire::Int { bytes: 2 },
        INT24 => Wire::Int { bytes: 3 },
        LONG => Wire::Int { bytes: 4 },
        LONGLONG => Wire::Int { bytes: 8 },
        FLOAT => {
            meta.u8().map_err(e)?;
            Wire::Float
        }
        DOUBLE => {
            meta.u8().map_err(e)?;
            Wire::Double
        }
        NEWDECIMAL => {
            let precision = meta.u8().map_err(e)?;
            let scale = meta.u8().map_err(e)?;
            if precision == 0 || precision > 65 || scale > 38 || scale > precision {
                return Err(format!("DECIMAL({precision},{scale}) is not a valid type"));
            }
            Wire::Decimal { precision, scale }
        }
        YEAR => Wire::Year,
        DATE | NEWDATE => Wire::Date,
        TIME => Wire::Time,
        DATETIME => Wire::DateTime,
        TIMESTAMP => Wire::Timestamp,
        TIME2 | DATETIME2 | TIMESTAMP2 => {
            let fsp = meta.u8().map_err(e)?;
            if fsp > 6 {
                return Err(format!("{fsp} fractional digits"));
            }
            match t {
                TIME2 => Wire::Time2 { fsp },
                DATETIME2 => Wire::DateTime2 { fsp },
                _ => Wire::Timestamp2 { fsp },
            }
        }
        VARCHAR | VAR_STRING => Wire::VarChar {
            max_len: meta.uint_le(2).map_err(e)? as u16,
        },
        BLOB | TINY_BLOB | MEDIUM_BLOB | LONG_BLOB | GEOMETRY | JSON => {
            let len_bytes = meta.u8().map_err(e)?;
            if !(1..=4).contains(&len_bytes) {
                return Err(format!("a {len_bytes}-byte length prefix"));
            }
            match t {
                GEOMETRY => Wire::Geometry { len_bytes },
                JSON => return Err("MySQL's binary JSON is not MariaDB's (unsupported)".into()),
                _ => Wire::Blob { len_bytes },
            }
        }
        STRING | ENUM | SET => {
            let b0 = meta.u8().map_err(e)?;
            let b1 = meta.u8().map_err(e)?;
            match b0 {
                ENUM => Wire::Enum { pack_len: b1 },
                SET => Wire::Set { pack_len: b1 },
                _ => {
                    // CHAR longer than 255 bytes keeps the high length bits in the type byte
                    // (bits 4-5, inverted).
                    let max_len = if b0 & 0x30 != 0x30 {
                        u16::from(b1) | (u16::from((b0 & 0x30) ^ 0x30) << 4)
                    } else {
                        u16::from(b1)
                    };
                    Wire::Char { max_len }
                }
            }
        }
        BIT => {
            let bits = meta.u8().map_err(e)?;
            let bytes = meta.u8().map_err(e)?;
            Wire::Bit {
                bits: u16::from(bytes) * 8 + u16::from(bits),
            }
        }
        NULL => Wire::Null,
        DECIMAL => return Err("pre-5.0 DECIMAL storage is unsupported".into()),
        other => return Err(format!("unknown storage type {other}")),
    })
}

fn parse_optional(data: &[u8], columns: &[Wire]) -> Result<OptionalMetadata, MalformedEvent> {
    let numeric = columns.iter().filter(|w| w.is_numeric()).count();
    let character = columns.iter().filter(|w| w.is_character()).count();
    let mut out = OptionalMetadata::default();
    let mut r = Reader::new(data, "TABLE_MAP optional metadata");
    while r.remaining() > 0 {
        let kind = r.u8()?;
        let len = usize::try_from(r.lenenc()?).map_err(|_| bad("field length"))?;
        let mut v = Reader::new(r.bytes(len)?, "TABLE_MAP optional metadata");
        match kind {
            field::SIGNEDNESS => {
                let bits = v.bytes(numeric.div_ceil(8))?;
                // Most significant bit first.
                out.unsigned = Some(
                    (0..numeric)
                        .map(|i| bits[i / 8] & (0x80 >> (i % 8)) != 0)
                        .collect(),
                );
            }
            field::DEFAULT_CHARSET => {
                let default = v.lenenc()? as u16;
                let mut charsets = vec![default; character];
                while v.remaining() > 0 {
                    let index = v.lenenc()? as usize;
                    let collation = v.lenenc()? as u16;
                    *charsets
                        .get_mut(index)
                        .ok_or_else(|| bad(format!("charset for character column {index}")))? =
                        collation;
                }
                out.charsets = Some(charsets);
            }
            field::COLUMN_CHARSET => {
                let mut charsets = Vec::with_capacity(character);
                while v.remaining() > 0 {
                    charsets.push(v.lenenc()? as u16);
                }
                out.charsets = Some(charsets);
            }
            field::COLUMN_NAME => {
                let mut names = Vec::with_capacity(columns.len());
                while v.remaining() > 0 {
                    let n = v.lenenc()? as usize;
                    names.push(String::from_utf8_lossy(v.bytes(n)?).into_owned());
                }
                out.names = Some(names);
            }
            field::SET_STR_VALUE | field::ENUM_STR_VALUE => {
                let mut all = Vec::new();
                while v.remaining() > 0 {
                    let count = v.lenenc()? as usize;
                    let mut members = Vec::with_capacity(count.min(v.remaining()));
                    for _ in 0..count {
                        let n = v.lenenc()? as usize;
                        members.push(String::from_utf8_lossy(v.bytes(n)?).into_owned());
                    }
                    all.push(members);
                }
                if kind == field::SET_STR_VALUE {
                    out.set_values = Some(all);
                } else {
                    out.enum_values = Some(all);
                }
            }
            // Geometry subtypes, primary keys, ENUM/SET charsets: not needed to decode rows.
            _ => {}
        }
    }
    // A list that does not match the columns it describes is worse than none: drop it so the
    // caller falls back to information_schema instead of mislabelling columns.
    if out.unsigned.as_ref().is_some_and(|u| u.len() != numeric) {
        out.unsigned = None;
    }
    if out.charsets.as_ref().is_some_and(|c| c.len() != character) {
        out.charsets = None;
    }
    if out.names.as_ref().is_some_and(|n| n.len() != columns.len()) {
        out.names = None;
    }
    let enums = columns
        .iter()
        .filter(|w| matches!(w, Wire::Enum { .. }))
        .count();
    let sets = columns
        .iter()
        .filter(|w| matches!(w, Wire::Set { .. }))
        .count();
    if out.enum_values.as_ref().is_some_and(|e| e.len() != enums) {
        out.enum_values = None;
    }
    if out.set_values.as_ref().is_some_and(|s| s.len() != sets) {
        out.set_values = None;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TABLE_MAP MariaDB 10.11 wrote for
    /// `products (id INT PRIMARY KEY, y YEAR, u BIGINT UNSIGNED, sku VARCHAR(50) NOT NULL,
    /// price DECIMAL(10,2), e ENUM('a','b'), s SET('x','y','z'), b BIT(3), t TIME(3), c CHAR(4),
    /// bn BINARY(4))` with `binlog_row_metadata=FULL` (header and checksum removed).
    const CAPTURED: &[u8] = &[
        0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x07, b'c', b'a', b't', b'a', b'l', b'o',
        b'g', 0x00, 0x08, b'p', b'r', b'o', b'd', b'u', b'c', b't', b's', 0x00, 0x0b, 0x03, 0x0d,
        0x08, 0x0f, 0xf6, 0xfe, 0xfe, 0x10, 0x13, 0xfe, 0xfe, 0x0f, 0xc8, 0x00, 0x0a, 0x02, 0xf7,
        0x01, 0xf8, 0x01, 0x03, 0x00, 0x03, 0xfe, 0x10, 0xfe, 0x04, 0xf6, 0x07, 0x01, 0x01, 0x60,
        0x02, 0x03, 0xe0, 0x02, 0x3f, 0x04, 0x1e, 0x02, b'i', b'd', 0x01, b'y', 0x01, b'u', 0x03,
        b's', b'k', b'u', 0x05, b'p', b'r', b'i', b'c', b'e', 0x01, b'e', 0x01, b's', 0x01, b'b',
        0x01, b't', 0x01, b'c', 0x02, b'b', b'n', 0x0a, 0x01, 0xe0, 0x05, 0x07, 0x03, 0x01, b'x',
        0x01, b'y', 0x01, b'z', 0x06, 0x05, 0x02, 0x01, b'a', 0x01, b'b', 0x08, 0x01, 0x00,
    ];

    #[test]
    fn decodes_a_captured_full_metadata_table_map() {
        let tm = parse_table_map(CAPTURED).expect("table map");
        assert_eq!(
            (tm.table_id, tm.db.as_str(), tm.table.as_str()),
            (18, "catalog", "products")
        );
        assert_eq!(
            tm.columns,
            [
                Wire::Int { bytes: 4 },
                Wire::Year,
                Wire::Int { bytes: 8 },
                Wire::VarChar { max_len: 200 },
                Wire::Decimal {
                    precision: 10,
                    scale: 2
                },
                Wire::Enum { pack_len: 1 },
                Wire::Set { pack_len: 1 },
                Wire::Bit { bits: 3 },
                Wire::Time2 { fsp: 3 },
                Wire::Char { max_len: 16 },
                Wire::Char { max_len: 4 },
            ]
        );
        // id and sku are NOT NULL.
        assert_eq!(
            tm.nullable,
            [
                false, true, true, false, true, true, true, true, true, true, true
            ]
        );
        let names = tm.optional.names.as_deref().expect("names");
        assert_eq!(
            names,
            [
                "id", "y", "u", "sku", "price", "e", "s", "b", "t", "c", "bn"
            ]
        );
        // Numeric columns are id, y (YEAR counts, and is unsigned), u and price.
        assert_eq!(
            tm.optional.unsigned.as_deref(),
            Some(&[false, true, true, false][..])
        );
        // Character columns sku, c, bn: utf8mb4_unicode_ci (224) except binary (63).
        assert_eq!(tm.optional.charsets.as_deref(), Some(&[224, 224, 63][..]));
        assert_eq!(
            tm.optional.enum_values,
            Some(vec![vec!["a".to_owned(), "b".to_owned()]])
        );
        assert_eq!(
            tm.optional.set_values,
            Some(vec![vec!["x".to_owned(), "y".to_owned(), "z".to_owned()]])
        );
        let (db, table) = parse_names(CAPTURED).expect("names");
        assert_eq!((db, table), (&b"catalog"[..], &b"products"[..]));
    }

    #[test]
    fn without_optional_metadata_nothing_is_guessed() {
        // Same event cut right after the NULL bitmap (binlog_row_metadata=NO_LOG).
        let cut = &CAPTURED[..57];
        let tm = parse_table_map(cut).expect("table map");
        assert_eq!(tm.columns.len(), 11);
        assert_eq!(tm.optional, OptionalMetadata::default());
    }

    #[test]
    fn rejects_truncated_or_inconsistent_maps() {
        for len in [5, 20, 30, 40, 56] {
            assert!(parse_table_map(&CAPTURED[..len]).is_err(), "cut at {len}");
        }
        let mut bad_type = CAPTURED.to_vec();
        bad_type[28] = 0x80; // an unknown storage type for the first column
        let err = parse_table_map(&bad_type).expect_err("unknown type");
        assert!(err.reason.contains("column 1"), "{err}");
    }

    #[test]
    fn long_char_lengths_use_the_type_byte() {
        // CHAR(255) in utf8mb4 = 1020 bytes: 0x03fc, high bits stored inverted in b0.
        let mut meta = Reader::new(&[0xce, 0xfc], "T");
        assert_eq!(
            wire(wire_type::STRING, &mut meta),
            Ok(Wire::Char { max_len: 1020 })
        );
    }
}
