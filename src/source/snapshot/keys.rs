//! The chunking key: which index a snapshot pages through, the keyset SQL that reads "the next
//! rows after this key", and key values in a JSON form that binds back exactly.
//!
//! The key is the PRIMARY KEY, else the first UNIQUE index (in the table's definition order)
//! whose columns are all NOT NULL and indexed in full (no prefix). Single or composite; any type
//! the source decodes. Rows are read in the index's order, so the comparison the keyset uses must
//! be the index's: strings compare with the column's collation (a parameter takes the column's),
//! DECIMAL through a `CAST` to the column's own precision (a string parameter would compare as a
//! double), ENUM and SET by their numeric value (their sort order), BIT as an integer.
//!
//! # Key values
//! `last_key` is recorded in the checkpoint, so it must survive JSON and bind back to the very
//! value the row had, which the row's own JSON does not always allow (a zero date, FLOAT's
//! rounding). A key value is therefore encoded from the raw value the server sent: integers and
//! floating-point numbers as JSON numbers (a FLOAT as its exact double), temporal values as
//! `YYYY-MM-DD HH:MM:SS.ffffff` / `[-]H:MM:SS.ffffff` (zero dates included), binary strings as
//! base64, everything else as its text.

use std::collections::HashMap;

use base64::Engine as _;
use mysql_async::Value as Sql;
use serde_json::Value as Json;

use super::super::columns::{Charset, ColumnInfo};
use super::super::preflight::quote_ident;

/// How a key column's values are compared, encoded and bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Signed,
    /// Unsigned integers and YEAR.
    Unsigned,
    Float,
    Double,
    Decimal {
        precision: u32,
        scale: u32,
    },
    /// Text compared with its collation; also UUID and INET types, which read and bind as text.
    Text,
    Binary,
    /// DATE, DATETIME and TIMESTAMP (read in UTC).
    DateTime,
    Time,
    /// Members in order: the value binds as its 1-based index.
    Enum(Vec<String>),
    /// Members in order: the value binds as its bit mask.
    Set(Vec<String>),
    Bit,
}

/// One column of the chunking key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyColumn {
    pub name: String,
    /// Its position among the table's columns (`SELECT *` order).
    pub position: usize,
    pub kind: KeyKind,
}

/// The index a snapshot pages through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkKey {
    /// `PRIMARY` or the UNIQUE index's name.
    pub index: String,
    pub columns: Vec<KeyColumn>,
}

/// The table's chunking key, or why it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyChoice {
    Key(ChunkKey),
    /// The table cannot be read in chunks; the reason names what is missing.
    None(String),
}

/// One row of `SHOW INDEX`: one column of one index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexPart {
    pub index: String,
    pub seq: u32,
    pub column: String,
    pub unique: bool,
    pub nullable: bool,
    /// Only a prefix of the column is indexed (`Sub_part`).
    pub prefix: bool,
    /// `Index_type`: only BTREE indexes are read in order.
    pub index_type: String,
    /// MariaDB 10.6+ ignored indexes cannot be forced.
    pub ignored: bool,
}

/// DECIMAL precision and scale per column name, from information_schema.
pub(crate) type NumericSizes = HashMap<String, (u32, u32)>;

/// Pick the chunking key among `indexes` (in `SHOW INDEX` order) of a table with `columns`.
pub(crate) fn choose(
    indexes: &[IndexPart],
    columns: &[ColumnInfo],
    sizes: &NumericSizes,
) -> KeyChoice {
    // Group the parts by index, keeping the definition order.
    let mut order: Vec<&str> = Vec::new();
    let mut parts: HashMap<&str, Vec<&IndexPart>> = HashMap::new();
    for p in indexes {
        if !parts.contains_key(p.index.as_str()) {
            order.push(&p.index);
        }
        parts.entry(&p.index).or_default().push(p);
    }
    let mut reasons: Vec<String> = Vec::new();
    let primary_first = order
        .iter()
        .filter(|name| **name == "PRIMARY")
        .chain(order.iter().filter(|name| **name != "PRIMARY"));
    for name in primary_first {
        let mut cols = parts.get(name).cloned().unwrap_or_default();
        cols.sort_by_key(|p| p.seq);
        let Some(first) = cols.first() else { continue };
        if !first.unique {
            continue;
        }
        let label = if *name == "PRIMARY" {
            "the PRIMARY KEY".to_owned()
        } else {
            format!("UNIQUE index {}", quote_ident(name))
        };
        match key_of(name, &cols, columns, sizes) {
            Ok(key) => return KeyChoice::Key(key),
            Err(why) => reasons.push(format!("{label} {why}")),
        }
    }
    if reasons.is_empty() {
        KeyChoice::None("it has no PRIMARY KEY and no UNIQUE index".into())
    } else {
        KeyChoice::None(format!(
            "it has no PRIMARY KEY or UNIQUE index usable for paging: {}",
            reasons.join("; ")
        ))
    }
}

fn key_of(
    name: &str,
    parts: &[&IndexPart],
    columns: &[ColumnInfo],
    sizes: &NumericSizes,
) -> Result<ChunkKey, String> {
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        if p.ignored {
            return Err("is IGNORED".into());
        }
        if !p.index_type.eq_ignore_ascii_case("BTREE") {
            return Err(format!("is a {} index (not ordered)", p.index_type));
        }
        if p.prefix {
            return Err(format!(
                "indexes only a prefix of column {}",
                quote_ident(&p.column)
            ));
        }
        let Some((position, column)) = columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.name.eq_ignore_ascii_case(&p.column))
        else {
            return Err(format!(
                "names column {} that information_schema does not list",
                quote_ident(&p.column)
            ));
        };
        if p.nullable || column.nullable {
            return Err(format!("allows NULL in column {}", quote_ident(&p.column)));
        }
        let kind = kind_of(column, sizes).ok_or_else(|| {
            format!(
                "has column {} of type {}, which vecsync cannot page through",
                quote_ident(&p.column),
                column.data_type
            )
        })?;
        out.push(KeyColumn {
            name: column.name.clone(),
            position,
            kind,
        });
    }
    Ok(ChunkKey {
        index: name.to_owned(),
        columns: out,
    })
}

fn kind_of(column: &ColumnInfo, sizes: &NumericSizes) -> Option<KeyKind> {
    Some(match column.data_type.as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => {
            if column.unsigned {
                KeyKind::Unsigned
            } else {
                KeyKind::Signed
            }
        }
        "year" => KeyKind::Unsigned,
        "float" => KeyKind::Float,
        "double" | "real" | "double precision" => KeyKind::Double,
        "decimal" | "numeric" => {
            let (precision, scale) = sizes.get(&column.name).copied()?;
            KeyKind::Decimal { precision, scale }
        }
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => {
            if column.charset == Charset::Binary {
                KeyKind::Binary
            } else {
                KeyKind::Text
            }
        }
        "uuid" | "inet4" | "inet6" => KeyKind::Text,
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => KeyKind::Binary,
        "date" | "datetime" | "timestamp" => KeyKind::DateTime,
        "time" => KeyKind::Time,
        "enum" => KeyKind::Enum(column.enum_values.clone()),
        "set" => KeyKind::Set(column.set_values.clone()),
        "bit" => KeyKind::Bit,
        _ => return None,
    })
}

/// A key value that does not fit the key (a checkpoint from before an ALTER TABLE, say).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key column {column}: {reason}")]
pub(crate) struct KeyError {
    pub column: String,
    pub reason: String,
}

impl ChunkKey {
    pub(crate) fn names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// `ORDER BY` list: the index's columns, in order.
    pub(crate) fn order_by(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// "After the key `(?, ?, ...)`" in the form the range optimizer uses the index for:
    /// `a > ?`, or for composite keys `a >= ? AND (a > ? OR (a = ? AND b > ?) OR ...)`.
    /// Parameters in the order [`after_params`](Self::after_params) gives them.
    pub(crate) fn after_clause(&self) -> String {
        let col = |c: &KeyColumn| quote_ident(&c.name);
        let terms: Vec<String> = (0..self.columns.len())
            .map(|i| {
                let mut parts: Vec<String> = self.columns[..i]
                    .iter()
                    .map(|c| format!("{} = {}", col(c), placeholder(&c.kind)))
                    .collect();
                let last = &self.columns[i];
                parts.push(format!("{} > {}", col(last), placeholder(&last.kind)));
                if parts.len() == 1 {
                    parts.remove(0)
                } else {
                    format!("({})", parts.join(" AND "))
                }
            })
            .collect();
        match self.columns.first() {
            Some(first) if self.columns.len() > 1 => format!(
                "{} >= {} AND ({})",
                col(first),
                placeholder(&first.kind),
                terms.join(" OR ")
            ),
            _ => terms.join(" OR "),
        }
    }

    /// The parameters of [`after_clause`](Self::after_clause) for the key `after`.
    pub(crate) fn after_params(&self, after: &[Json]) -> Result<Vec<Sql>, KeyError> {
        if after.len() != self.columns.len() {
            return Err(KeyError {
                column: self.names().join(", "),
                reason: format!(
                    "the key has {} columns, the value {}",
                    self.columns.len(),
                    after.len()
                ),
            });
        }
        let bound: Vec<Sql> = self
            .columns
            .iter()
            .zip(after)
            .map(|(c, v)| {
                bind(&c.kind, v).map_err(|reason| KeyError {
                    column: c.name.clone(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        let mut params = Vec::new();
        if self.columns.len() > 1 {
            params.push(bound[0].clone());
        }
        for i in 0..bound.len() {
            params.extend(bound[..=i].iter().cloned());
        }
        Ok(params)
    }

    /// The key of a row read with `SELECT *` (raw values in column order).
    pub(crate) fn encode(&self, row: &[Option<Sql>]) -> Result<Vec<Json>, KeyError> {
        self.columns
            .iter()
            .map(|c| {
                let value = row.get(c.position).and_then(Option::as_ref);
                let value = value.ok_or_else(|| KeyError {
                    column: c.name.clone(),
                    reason: "missing from the row".into(),
                })?;
                encode(&c.kind, value).map_err(|reason| KeyError {
                    column: c.name.clone(),
                    reason,
                })
            })
            .collect()
    }
}

/// The parameter marker for a key column: DECIMAL compares exactly only with a DECIMAL.
fn placeholder(kind: &KeyKind) -> String {
    match kind {
        KeyKind::Decimal { precision, scale } => {
            format!("CAST(? AS DECIMAL({precision},{scale}))")
        }
        _ => "?".into(),
    }
}

/// The JSON form of a raw key value.
pub(crate) fn encode(kind: &KeyKind, value: &Sql) -> Result<Json, String> {
    let number = |f: f64| {
        serde_json::Number::from_f64(f)
            .map(Json::Number)
            .ok_or_else(|| format!("{f} is not a finite number"))
    };
    let text = |b: &[u8]| {
        String::from_utf8(b.to_vec())
            .map(Json::String)
            .map_err(|e| format!("not UTF-8: {e}"))
    };
    match (kind, value) {
        (_, Sql::NULL) => Err("NULL in a key column".into()),
        (_, Sql::Int(i)) => Ok(Json::from(*i)),
        (_, Sql::UInt(u)) => Ok(Json::from(*u)),
        (_, Sql::Float(f)) => number(f64::from(*f)),
        (_, Sql::Double(d)) => number(*d),
        (KeyKind::Binary, Sql::Bytes(b)) => Ok(Json::String(
            base64::engine::general_purpose::STANDARD.encode(b),
        )),
        (KeyKind::Bit, Sql::Bytes(b)) => {
            if b.len() > 8 {
                return Err("BIT value longer than 64 bits".into());
            }
            Ok(Json::from(
                b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)),
            ))
        }
        // The text protocol sends numbers as text; the binary one (used here) does not.
        (KeyKind::Signed, Sql::Bytes(b)) => parse::<i64>(b).map(Json::from),
        (KeyKind::Unsigned, Sql::Bytes(b)) => parse::<u64>(b).map(Json::from),
        (KeyKind::Float | KeyKind::Double, Sql::Bytes(b)) => parse::<f64>(b).and_then(number),
        (_, Sql::Bytes(b)) => text(b),
        (_, Sql::Date(y, mo, d, h, mi, s, us)) => Ok(Json::String(format!(
            "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"
        ))),
        (_, Sql::Time(negative, days, h, mi, s, us)) => Ok(Json::String(format!(
            "{}{}:{mi:02}:{s:02}.{us:06}",
            if *negative { "-" } else { "" },
            u64::from(*days) * 24 + u64::from(*h)
        ))),
    }
}

fn parse<T: std::str::FromStr>(b: &[u8]) -> Result<T, String> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{:?} is not a number", String::from_utf8_lossy(b)))
}

/// The SQL parameter for a key value in its JSON form.
pub(crate) fn bind(kind: &KeyKind, value: &Json) -> Result<Sql, String> {
    let text = || {
        value
            .as_str()
            .ok_or_else(|| format!("expected a string, got {value}"))
    };
    Ok(match kind {
        KeyKind::Signed => Sql::Int(
            value
                .as_i64()
                .ok_or_else(|| format!("expected an integer, got {value}"))?,
        ),
        KeyKind::Unsigned | KeyKind::Bit => Sql::UInt(
            value
                .as_u64()
                .ok_or_else(|| format!("expected an unsigned integer, got {value}"))?,
        ),
        KeyKind::Float | KeyKind::Double => Sql::Double(
            value
                .as_f64()
                .ok_or_else(|| format!("expected a number, got {value}"))?,
        ),
        KeyKind::Decimal { .. } => {
            let s = text()?;
            let ok = !s.is_empty()
                && s.trim_start_matches('-')
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.');
            if !ok {
                return Err(format!("{s:?} is not a decimal number"));
            }
            Sql::Bytes(s.as_bytes().to_vec())
        }
        KeyKind::Text => Sql::Bytes(text()?.as_bytes().to_vec()),
        KeyKind::Binary => Sql::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(text()?)
                .map_err(|e| format!("not base64: {e}"))?,
        ),
        KeyKind::DateTime => parse_datetime(text()?)?,
        KeyKind::Time => parse_time(text()?)?,
        KeyKind::Enum(members) => {
            let s = text()?;
            // '' is the error value, index 0.
            let index = if s.is_empty() {
                0
            } else {
                members
                    .iter()
                    .position(|m| m == s)
                    .map(|i| i as u64 + 1)
                    .ok_or_else(|| format!("{s:?} is not a member of the ENUM"))?
            };
            Sql::UInt(index)
        }
        KeyKind::Set(members) => {
            let s = text()?;
            let mut mask = 0u64;
            for name in s.split(',').filter(|n| !n.is_empty()) {
                let bit = members
                    .iter()
                    .position(|m| m == name)
                    .ok_or_else(|| format!("{name:?} is not a member of the SET"))?;
                mask |= 1u64 << bit.min(63);
            }
            Sql::UInt(mask)
        }
    })
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` (as [`encode`] writes it) to a DATETIME parameter.
fn parse_datetime(s: &str) -> Result<Sql, String> {
    let bad = || format!("{s:?} is not YYYY-MM-DD HH:MM:SS.ffffff");
    let (date, time) = s.split_once(' ').ok_or_else(bad)?;
    let mut d = date.split('-');
    let (Some(y), Some(mo), Some(day), None) = (d.next(), d.next(), d.next(), d.next()) else {
        return Err(bad());
    };
    let (hms, micros) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':');
    let (Some(h), Some(mi), Some(sec), None) = (t.next(), t.next(), t.next(), t.next()) else {
        return Err(bad());
    };
    let n = |p: &str| p.parse::<u32>().map_err(|_| bad());
    Ok(Sql::Date(
        u16::try_from(n(y)?).map_err(|_| bad())?,
        u8::try_from(n(mo)?).map_err(|_| bad())?,
        u8::try_from(n(day)?).map_err(|_| bad())?,
        u8::try_from(n(h)?).map_err(|_| bad())?,
        u8::try_from(n(mi)?).map_err(|_| bad())?,
        u8::try_from(n(sec)?).map_err(|_| bad())?,
        n(micros)?,
    ))
}

/// `[-]H:MM:SS.ffffff` (hours may exceed 24) to a TIME parameter.
fn parse_time(s: &str) -> Result<Sql, String> {
    let bad = || format!("{s:?} is not [-]H:MM:SS.ffffff");
    let (negative, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (hms, micros) = rest.split_once('.').unwrap_or((rest, "0"));
    let mut t = hms.split(':');
    let (Some(h), Some(mi), Some(sec), None) = (t.next(), t.next(), t.next(), t.next()) else {
        return Err(bad());
    };
    let n = |p: &str| p.parse::<u32>().map_err(|_| bad());
    let hours = n(h)?;
    Ok(Sql::Time(
        negative,
        hours / 24,
        u8::try_from(hours % 24).map_err(|_| bad())?,
        u8::try_from(n(mi)?).map_err(|_| bad())?,
        u8::try_from(n(sec)?).map_err(|_| bad())?,
        n(micros)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn column(name: &str, data_type: &str, nullable: bool) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            unsigned: false,
            charset: Charset::Utf8,
            enum_values: vec!["small".into(), "large".into()],
            set_values: vec!["red".into(), "green".into(), "blue".into()],
            nullable,
            data_type: data_type.into(),
            precision: 0,
        }
    }

    fn part(index: &str, seq: u32, col: &str, unique: bool) -> IndexPart {
        IndexPart {
            index: index.into(),
            seq,
            column: col.into(),
            unique,
            nullable: false,
            prefix: false,
            index_type: "BTREE".into(),
            ignored: false,
        }
    }

    fn key(kinds: &[(&str, KeyKind)]) -> ChunkKey {
        ChunkKey {
            index: "PRIMARY".into(),
            columns: kinds
                .iter()
                .enumerate()
                .map(|(i, (n, k))| KeyColumn {
                    name: (*n).into(),
                    position: i,
                    kind: k.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn primary_key_first_then_the_first_usable_unique_index() {
        let columns = [
            column("id", "int", false),
            column("sku", "varchar", false),
            column("ean", "varchar", true),
            column("n", "int", false),
        ];
        let sizes = NumericSizes::new();
        let indexes = [
            part("by_n", 1, "n", false),
            part("ean", 1, "ean", true),
            part("sku", 1, "sku", true),
            part("PRIMARY", 1, "id", true),
        ];
        let KeyChoice::Key(k) = choose(&indexes, &columns, &sizes) else {
            panic!("a key")
        };
        assert_eq!(
            (k.index.as_str(), k.names()),
            ("PRIMARY", vec!["id".into()])
        );

        // Without the primary key: `ean` allows NULL, so `sku`.
        let KeyChoice::Key(k) = choose(&indexes[..3], &columns, &sizes) else {
            panic!("a key")
        };
        assert_eq!(k.index, "sku");
        assert_eq!(k.columns[0].position, 1);

        // Only a nullable unique index: no key, and the reason says which column.
        let KeyChoice::None(why) = choose(&indexes[..2], &columns, &sizes) else {
            panic!("no key")
        };
        assert!(why.contains("allows NULL in column `ean`"), "{why}");
        let KeyChoice::None(why) = choose(&[], &columns, &sizes) else {
            panic!("no key")
        };
        assert!(why.contains("no PRIMARY KEY and no UNIQUE index"), "{why}");
    }

    #[test]
    fn composite_keys_keep_index_order_and_prefixes_are_refused() {
        let columns = [column("a", "varchar", false), column("b", "decimal", false)];
        let mut sizes = NumericSizes::new();
        sizes.insert("b".into(), (10, 2));
        let indexes = [part("PRIMARY", 2, "a", true), part("PRIMARY", 1, "b", true)];
        let KeyChoice::Key(k) = choose(&indexes, &columns, &sizes) else {
            panic!("a key")
        };
        assert_eq!(k.names(), ["b", "a"]);
        assert_eq!(
            k.columns[0].kind,
            KeyKind::Decimal {
                precision: 10,
                scale: 2
            }
        );
        let mut prefixed = indexes.clone();
        prefixed[0].prefix = true;
        let KeyChoice::None(why) = choose(&prefixed, &columns, &sizes) else {
            panic!("no key")
        };
        assert!(why.contains("prefix of column `a`"), "{why}");
    }

    #[test]
    fn keyset_clause_and_its_parameters() {
        let one = key(&[("id", KeyKind::Signed)]);
        assert_eq!(one.after_clause(), "`id` > ?");
        assert_eq!(
            one.after_params(&[json!(7)]).expect("params"),
            [Sql::Int(7)]
        );
        let three = key(&[
            ("a", KeyKind::Signed),
            (
                "b",
                KeyKind::Decimal {
                    precision: 5,
                    scale: 1,
                },
            ),
            ("c", KeyKind::Text),
        ]);
        assert_eq!(
            three.after_clause(),
            "`a` >= ? AND (`a` > ? OR (`a` = ? AND `b` > CAST(? AS DECIMAL(5,1))) OR \
             (`a` = ? AND `b` = CAST(? AS DECIMAL(5,1)) AND `c` > ?))"
        );
        let p = three
            .after_params(&[json!(1), json!("2.5"), json!("x")])
            .expect("params");
        let b = |s: &str| Sql::Bytes(s.as_bytes().to_vec());
        assert_eq!(
            p,
            [
                Sql::Int(1),
                Sql::Int(1),
                Sql::Int(1),
                b("2.5"),
                Sql::Int(1),
                b("2.5"),
                b("x")
            ]
        );
        assert!(three.after_params(&[json!(1)]).is_err(), "wrong width");
        assert!(
            three
                .after_params(&[json!("x"), json!("2.5"), json!("x")])
                .is_err()
        );
        assert_eq!(three.order_by(), "`a`, `b`, `c`");
    }

    #[test]
    fn key_values_round_trip_exactly() {
        let cases = [
            (KeyKind::Signed, Sql::Int(-5)),
            (KeyKind::Unsigned, Sql::UInt(u64::MAX)),
            (KeyKind::Double, Sql::Double(0.1)),
            (KeyKind::Text, Sql::Bytes("😀 b".as_bytes().to_vec())),
            (KeyKind::Binary, Sql::Bytes(vec![0, 255, 10])),
            (KeyKind::DateTime, Sql::Date(2024, 2, 29, 1, 2, 3, 120)),
            (KeyKind::DateTime, Sql::Date(0, 0, 0, 0, 0, 0, 0)),
            (KeyKind::Time, Sql::Time(true, 34, 22, 59, 59, 500_000)),
            (
                KeyKind::Decimal {
                    precision: 30,
                    scale: 10,
                },
                Sql::Bytes(b"-12345678901234567890.0123456789".to_vec()),
            ),
        ];
        for (kind, value) in cases {
            let json = encode(&kind, &value).expect("encode");
            let text = serde_json::to_string(&json).expect("to text");
            let back: Json = serde_json::from_str(&text).expect("from text");
            assert_eq!(bind(&kind, &back).expect("bind"), value, "{kind:?} {text}");
        }
        // FLOAT: the exact double of the f32, which is how MariaDB compares the column.
        let json = encode(&KeyKind::Float, &Sql::Float(19.99)).expect("encode");
        assert_eq!(
            bind(&KeyKind::Float, &json).expect("bind"),
            Sql::Double(f64::from(19.99f32))
        );
        // TIME beyond 24 h and zero dates survive; ENUM/SET/BIT bind as numbers.
        assert_eq!(
            encode(&KeyKind::Time, &Sql::Time(false, 34, 22, 0, 0, 0)).expect("time"),
            json!("838:00:00.000000")
        );
        let e = KeyKind::Enum(vec!["small".into(), "large".into()]);
        assert_eq!(bind(&e, &json!("large")).expect("enum"), Sql::UInt(2));
        assert!(bind(&e, &json!("huge")).is_err());
        let s = KeyKind::Set(vec!["red".into(), "green".into(), "blue".into()]);
        assert_eq!(bind(&s, &json!("red,blue")).expect("set"), Sql::UInt(0b101));
        assert_eq!(
            encode(&KeyKind::Bit, &Sql::Bytes(vec![1, 2])).expect("bit"),
            json!(258)
        );
        assert!(encode(&KeyKind::Signed, &Sql::NULL).is_err());
    }
}
