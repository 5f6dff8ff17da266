//! What each column of the watched table is: name, signedness, character set, ENUM/SET members,
//! nullability. Both the binlog decoder and the snapshot use it, so a value reads the same either
//! way.
//!
//! With `binlog_row_metadata=FULL` everything comes from the TABLE_MAP itself, which is always
//! right for the event it precedes, also across `ALTER TABLE` while streaming. Otherwise names,
//! and whatever MINIMAL does not carry, come from `information_schema.COLUMNS`, which describes
//! the table as it is *now*: correct while streaming live (vecsync re-reads it after DDL on the
//! table), but wrong for events older than a later ALTER. A column-count mismatch is detected and
//! reported; a same-count type change cannot be.

use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;

use super::table_map::{TableMap, Wire};

/// How a text column's bytes are encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Charset {
    /// `binary`: VARBINARY, BINARY, BLOB. Emitted as base64.
    Binary,
    /// utf8mb3, utf8mb4 and ascii: already UTF-8.
    Utf8,
    /// MariaDB's latin1, which is Windows-1252.
    Latin1,
    Ucs2,
    Utf16,
    Utf16Le,
    Utf32,
    /// A character set vecsync does not convert; values that are not valid UTF-8 stop the
    /// stream with an error naming the column.
    Other(String),
}

impl Charset {
    /// From a character set name (`information_schema`), `None` meaning binary.
    pub(crate) fn from_name(name: Option<&str>) -> Self {
        match name.map(str::to_ascii_lowercase).as_deref() {
            None | Some("binary") => Charset::Binary,
            Some("utf8" | "utf8mb3" | "utf8mb4" | "ascii") => Charset::Utf8,
            Some("latin1") => Charset::Latin1,
            Some("ucs2") => Charset::Ucs2,
            Some("utf16") => Charset::Utf16,
            Some("utf16le") => Charset::Utf16Le,
            Some("utf32") => Charset::Utf32,
            Some(other) => Charset::Other(other.to_owned()),
        }
    }
}

/// Collation id to character set, as the server defines them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Collations(HashMap<u16, Charset>);

impl Collations {
    /// Load the server's collation table. MariaDB 10.10+ lists the per-charset UCA-14.0.0
    /// collation ids only in COLLATION_CHARACTER_SET_APPLICABILITY, so both tables are read.
    pub(crate) async fn load(conn: &mut mysql_async::Conn) -> Result<Self, mysql_async::Error> {
        let mut map = HashMap::new();
        let rows: Vec<(u64, String)> = conn
            .query("SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL")
            .await?;
        for (id, cs) in rows {
            map.insert(id as u16, Charset::from_name(Some(&cs)));
        }
        // Older servers have no ID column there; that is fine.
        if let Ok(rows) = conn
            .query::<(u64, String), _>(
                "SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATION_CHARACTER_SET_APPLICABILITY WHERE ID IS NOT NULL",
            )
            .await
        {
            for (id, cs) in rows {
                map.entry(id as u16)
                    .or_insert_with(|| Charset::from_name(Some(&cs)));
            }
        }
        Ok(Self(map))
    }

    pub(crate) fn get(&self, id: u16) -> Charset {
        match id {
            63 => Charset::Binary,
            _ => self
                .0
                .get(&id)
                .cloned()
                .unwrap_or_else(|| Charset::Other(format!("collation {id}"))),
        }
    }
}

/// One column as the decoders need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnInfo {
    pub name: String,
    pub unsigned: bool,
    pub charset: Charset,
    pub enum_values: Vec<String>,
    pub set_values: Vec<String>,
    pub nullable: bool,
    /// The SQL type as `information_schema.COLUMNS.DATA_TYPE` names it (`int`, `varchar`,
    /// `timestamp`...), for the snapshot; empty when only the TABLE_MAP described the column.
    pub data_type: String,
    /// Fractional seconds digits of temporal columns, width of BIT columns.
    pub precision: u32,
}

/// Read the table's columns, in order, from `information_schema.COLUMNS`. An empty result means
/// the table does not exist (or the user cannot see it).
pub(crate) async fn load_schema(
    conn: &mut mysql_async::Conn,
    db: &str,
    table: &str,
) -> Result<Vec<ColumnInfo>, mysql_async::Error> {
    type ColumnRow = (
        String,
        String,
        String,
        Option<String>,
        String,
        Option<u64>,
        Option<u64>,
    );
    let rows: Vec<ColumnRow> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, IS_NULLABLE, \
             DATETIME_PRECISION, NUMERIC_PRECISION \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(name, data_type, column_type, charset, nullable, dt_precision, num_precision)| {
                let data_type = data_type.to_ascii_lowercase();
                let lower = column_type.to_ascii_lowercase();
                let members = if lower.starts_with("enum(") || lower.starts_with("set(") {
                    parse_members(&column_type)
                } else {
                    Vec::new()
                };
                let precision = match data_type.as_str() {
                    "bit" => num_precision.unwrap_or(1) as u32,
                    _ => dt_precision.unwrap_or(0) as u32,
                };
                ColumnInfo {
                    name,
                    unsigned: lower.contains("unsigned") || data_type == "year",
                    charset: Charset::from_name(charset.as_deref()),
                    enum_values: if data_type == "enum" {
                        members.clone()
                    } else {
                        Vec::new()
                    },
                    set_values: if data_type == "set" {
                        members
                    } else {
                        Vec::new()
                    },
                    nullable: nullable.eq_ignore_ascii_case("YES"),
                    data_type,
                    precision,
                }
            },
        )
        .collect())
}

/// The members of `enum('a','b''c')` / `set(...)` as written in `COLUMN_TYPE`.
pub(crate) fn parse_members(column_type: &str) -> Vec<String> {
    let Some(open) = column_type.find('(') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut chars = column_type[open + 1..].chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut member = String::new();
        while let Some(c) = chars.next() {
            match c {
                // A doubled quote is a quote inside the member.
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    member.push('\'');
                }
                '\'' => break,
                '\\' => {
                    if let Some(n) = chars.next() {
                        member.push(n);
                    }
                }
                c => member.push(c),
            }
        }
        out.push(member);
    }
    out
}

/// The watched table as one TABLE_MAP lays it out: storage per column plus what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableLayout {
    pub wire: Vec<Wire>,
    pub columns: Vec<ColumnInfo>,
}

/// Why a TABLE_MAP and the column descriptions at hand do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct LayoutMismatch(pub String);

/// Combine a TABLE_MAP with its optional metadata; where that is missing, fill in from
/// `schema` (information_schema). Returns whether `schema` was needed.
pub(crate) fn layout(
    tm: &TableMap,
    collations: &Collations,
    schema: Option<&[ColumnInfo]>,
) -> Result<TableLayout, LayoutMismatch> {
    let opt = &tm.optional;
    // MariaDB leaves out the lists that would be empty (no numeric column: no SIGNEDNESS).
    let self_described = opt.names.is_some()
        && (opt.unsigned.is_some() || !tm.columns.iter().any(|w| w.is_numeric()))
        && (opt.charsets.is_some() || !tm.columns.iter().any(|w| w.is_character()))
        && (opt.enum_values.is_some()
            || !tm.columns.iter().any(|w| matches!(w, Wire::Enum { .. })))
        && (opt.set_values.is_some() || !tm.columns.iter().any(|w| matches!(w, Wire::Set { .. })));
    let schema = if self_described {
        None
    } else {
        let s = schema.ok_or_else(|| {
            LayoutMismatch(
                "the TABLE_MAP lacks column metadata and information_schema was not read".into(),
            )
        })?;
        if s.len() != tm.columns.len() {
            return Err(LayoutMismatch(format!(
                "the binlog event has {} columns but information_schema lists {} for the table \
                 now: the table changed after this event was written. Set binlog_row_metadata=FULL \
                 so events describe their own columns, then re-snapshot (--snapshot always)",
                tm.columns.len(),
                s.len()
            )));
        }
        Some(s)
    };

    let mut unsigned = opt.unsigned.as_ref().map(|v| v.iter());
    let mut charsets = opt.charsets.as_ref().map(|v| v.iter());
    let mut enums = opt.enum_values.as_ref().map(|v| v.iter());
    let mut sets = opt.set_values.as_ref().map(|v| v.iter());
    let mut columns = Vec::with_capacity(tm.columns.len());
    for (i, &wire) in tm.columns.iter().enumerate() {
        let from_schema = schema.and_then(|s| s.get(i));
        let mut info = from_schema.cloned().unwrap_or_else(|| ColumnInfo {
            name: String::new(),
            unsigned: false,
            charset: Charset::Binary,
            enum_values: Vec::new(),
            set_values: Vec::new(),
            nullable: true,
            data_type: String::new(),
            precision: 0,
        });
        if let Some(names) = &opt.names {
            info.name.clone_from(&names[i]);
        }
        if wire.is_numeric() {
            if let Some(flag) = unsigned.as_mut().and_then(Iterator::next) {
                info.unsigned = *flag;
            }
        }
        if wire.is_character() {
            if let Some(id) = charsets.as_mut().and_then(Iterator::next) {
                info.charset = collations.get(*id);
            }
        }
        match wire {
            Wire::Enum { .. } => {
                if let Some(members) = enums.as_mut().and_then(Iterator::next) {
                    info.enum_values.clone_from(members);
                }
            }
            Wire::Set { .. } => {
                if let Some(members) = sets.as_mut().and_then(Iterator::next) {
                    info.set_values.clone_from(members);
                }
            }
            _ => {}
        }
        info.nullable = tm.nullable.get(i).copied().unwrap_or(true);
        if let Wire::Bit { bits } = wire {
            info.precision = u32::from(bits);
        }
        columns.push(info);
    }
    Ok(TableLayout {
        wire: tm.columns.clone(),
        columns,
    })
}

/// Layouts are rebuilt for every TABLE_MAP; most are identical to the previous one.
pub(crate) type SharedLayout = Arc<TableLayout>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::table_map::OptionalMetadata;

    #[test]
    fn parses_enum_and_set_members() {
        assert_eq!(parse_members("enum('a','b')"), ["a", "b"]);
        assert_eq!(parse_members("set('x,y','it''s','')"), ["x,y", "it's", ""]);
        assert_eq!(parse_members("enum('😀','日本')"), ["😀", "日本"]);
        assert!(parse_members("int(11)").is_empty());
    }

    #[test]
    fn charset_names() {
        assert_eq!(Charset::from_name(None), Charset::Binary);
        assert_eq!(Charset::from_name(Some("utf8mb4")), Charset::Utf8);
        assert_eq!(Charset::from_name(Some("utf8mb3")), Charset::Utf8);
        assert_eq!(Charset::from_name(Some("latin1")), Charset::Latin1);
        assert_eq!(
            Charset::from_name(Some("gbk")),
            Charset::Other("gbk".into())
        );
        let c = Collations::default();
        assert_eq!(c.get(63), Charset::Binary);
        assert_eq!(c.get(224), Charset::Other("collation 224".into()));
    }

    fn schema_col(name: &str, unsigned: bool) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            unsigned,
            charset: Charset::Utf8,
            enum_values: vec![],
            set_values: vec![],
            nullable: true,
            data_type: "int".into(),
            precision: 0,
        }
    }

    #[test]
    fn layout_uses_schema_when_the_table_map_is_bare_and_checks_the_width() {
        let tm = TableMap {
            table_id: 1,
            db: "d".into(),
            table: "t".into(),
            columns: vec![Wire::Int { bytes: 4 }, Wire::Int { bytes: 8 }],
            nullable: vec![false, true],
            optional: OptionalMetadata::default(),
        };
        let c = Collations::default();
        assert!(layout(&tm, &c, None).is_err(), "needs the schema");
        let schema = [schema_col("id", false), schema_col("n", true)];
        let l = layout(&tm, &c, Some(&schema)).expect("layout");
        assert_eq!(l.columns[1].name, "n");
        assert!(l.columns[1].unsigned);
        assert!(
            !l.columns[0].nullable,
            "nullability comes from the TABLE_MAP"
        );
        let err = layout(&tm, &c, Some(&schema[..1])).expect_err("width");
        assert!(err.0.contains("binlog_row_metadata=FULL"), "{err}");

        // FULL metadata for a table without numeric or text columns needs no schema.
        let dates = TableMap {
            columns: vec![Wire::Date],
            nullable: vec![true],
            optional: OptionalMetadata {
                names: Some(vec!["day".into()]),
                ..OptionalMetadata::default()
            },
            ..tm.clone()
        };
        let l = layout(&dates, &c, None).expect("self-described");
        assert_eq!(l.columns[0].name, "day");

        // MINIMAL metadata: signedness from the event wins over the schema.
        let mut minimal = tm.clone();
        minimal.optional.unsigned = Some(vec![false, false]);
        let l = layout(&minimal, &c, Some(&schema)).expect("layout");
        assert!(!l.columns[1].unsigned);
    }
}
