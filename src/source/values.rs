//! Column values in the JSON form of change events, the same whether a value came from the binlog
//! or from a snapshot's `SELECT`.
//!
//! Debezium's JSON conventions (with `decimal.handling.mode=string`), made concrete:
//!
//! | column type | JSON |
//! |---|---|
//! | TINYINT..BIGINT, BOOLEAN | number (BIGINT UNSIGNED up to 18446744073709551615, exact) |
//! | FLOAT | number, the shortest decimal that reads back as the same `f32` |
//! | DOUBLE | number |
//! | DECIMAL | string, digit-exact (`"19.99"`) |
//! | CHAR, VARCHAR, TEXT (also MariaDB's JSON, a LONGTEXT) | string |
//! | BINARY, VARBINARY, BLOB, GEOMETRY | base64 string (BINARY(n) zero-padded to n bytes) |
//! | DATE | `"2024-07-01"` |
//! | DATETIME(fsp) | `"2024-07-01T12:34:56.123"`: exactly fsp fraction digits, no zone |
//! | TIMESTAMP(fsp) | `"2024-07-01T10:34:56.123Z"`: UTC, exactly fsp fraction digits |
//! | TIME(fsp) | `"-12:34:56.5"`: hours may exceed 24 (`"838:59:59"`) |
//! | YEAR | number |
//! | ENUM | the member's name; SET: names joined by `,` |
//! | BIT(1) | boolean; BIT(n>1): base64 of the value's bytes, least significant first |
//!
//! Zero dates (`0000-00-00`, or a zero month/day) become `null` in a nullable column and the
//! epoch (`1970-01-01...`) in a NOT NULL one, as Debezium does.

use base64::Engine as _;
use serde_json::Value;

use super::columns::{Charset, ColumnInfo};
use super::rows::{Cell, RowError};
use super::table_map::Wire;

/// The JSON value of a binlog cell of `column`, stored as `wire`.
pub(crate) fn cell_to_json(cell: Cell, wire: Wire, column: &ColumnInfo) -> Result<Value, RowError> {
    let err = |reason: String| RowError::new(&column.name, reason);
    Ok(match cell {
        Cell::Null => Value::Null,
        Cell::Int(v) => Value::from(v),
        Cell::UInt(v) => Value::from(v),
        Cell::Float(v) => float32(v),
        Cell::Double(v) => float64(v),
        Cell::Decimal(s) => Value::String(s),
        Cell::Year(y) => Value::from(y),
        Cell::Bytes(bytes) => match wire {
            Wire::Char { max_len } if column.charset == Charset::Binary => {
                // The binlog drops BINARY(n)'s trailing zero bytes; SELECT returns all n.
                let mut padded = bytes;
                if padded.len() < usize::from(max_len) {
                    padded.resize(usize::from(max_len), 0);
                }
                binary(&padded)
            }
            Wire::Char { .. } => {
                let text = text(&bytes, &column.charset).map_err(err)?;
                // CHAR's trailing spaces are padding: SELECT does not return them either.
                Value::String(text.trim_end_matches(' ').to_owned())
            }
            Wire::Geometry { .. } => binary(&bytes),
            _ if column.charset == Charset::Binary => binary(&bytes),
            _ => Value::String(text(&bytes, &column.charset).map_err(err)?),
        },
        Cell::Date { year, month, day } => date(year, month, day, column.nullable),
        Cell::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        } => datetime(
            [
                year,
                month.into(),
                day.into(),
                hour.into(),
                minute.into(),
                second.into(),
            ],
            micros,
            fsp_of(wire),
            column.nullable,
            "",
        ),
        Cell::Timestamp { secs, micros } => {
            timestamp_secs(secs, micros, fsp_of(wire), column.nullable)
        }
        Cell::Time {
            negative,
            hours,
            minutes,
            seconds,
            micros,
        } => time(negative, hours, minutes, seconds, micros, fsp_of(wire)),
        Cell::Enum(0) => Value::String(String::new()),
        Cell::Enum(i) => Value::String(
            column
                .enum_values
                .get(usize::from(i) - 1)
                .cloned()
                .ok_or_else(|| {
                    err(format!(
                        "ENUM index {i} but the column has {} members",
                        column.enum_values.len()
                    ))
                })?,
        ),
        Cell::Set(bits) => {
            let mut names = Vec::new();
            for i in 0..64 {
                if bits & (1 << i) != 0 {
                    names.push(
                        column
                            .set_values
                            .get(i)
                            .map(String::as_str)
                            .ok_or_else(|| {
                                err(format!(
                                    "SET member {} but the column has {}",
                                    i + 1,
                                    column.set_values.len()
                                ))
                            })?,
                    );
                }
            }
            Value::String(names.join(","))
        }
        Cell::Bit(v) => bit(
            v,
            u32::from(match wire {
                Wire::Bit { bits } => bits,
                _ => 64,
            }),
        ),
    })
}

fn fsp_of(wire: Wire) -> u8 {
    match wire {
        Wire::Time2 { fsp } | Wire::DateTime2 { fsp } | Wire::Timestamp2 { fsp } => fsp,
        _ => 0,
    }
}

/// The JSON value of a snapshot column read with the binary protocol (session time zone UTC).
pub(crate) fn sql_to_json(
    value: mysql_async::Value,
    column: &ColumnInfo,
) -> Result<Value, RowError> {
    use mysql_async::Value as V;
    let err = |reason: String| RowError::new(&column.name, reason);
    let fsp = column.precision.min(6) as u8;
    let ty = column.data_type.as_str();
    Ok(match value {
        V::NULL => Value::Null,
        V::Int(v) => Value::from(v),
        V::UInt(v) => Value::from(v),
        V::Float(v) => float32(v),
        V::Double(v) => float64(v),
        V::Date(year, month, day, hour, minute, second, micros) => match ty {
            "date" => date(year, month, day, column.nullable),
            // TIMESTAMP is stored in UTC; DATETIME has no zone.
            _ => datetime(
                [
                    year,
                    month.into(),
                    day.into(),
                    hour.into(),
                    minute.into(),
                    second.into(),
                ],
                micros,
                fsp,
                column.nullable,
                if ty == "timestamp" { "Z" } else { "" },
            ),
        },
        V::Time(negative, days, hours, minutes, seconds, micros) => time(
            negative,
            days * 24 + u32::from(hours),
            minutes,
            seconds,
            micros,
            fsp,
        ),
        V::Bytes(bytes) => match ty {
            "decimal" | "enum" | "set" => {
                Value::String(String::from_utf8(bytes).map_err(|e| err(format!("not UTF-8: {e}")))?)
            }
            "bit" => {
                let v = bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
                bit(v, column.precision)
            }
            "year" => Value::from(
                std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|s| s.parse::<u16>().ok())
                    .ok_or_else(|| err("YEAR is not a number".into()))?,
            ),
            _ if column.charset == Charset::Binary => binary(&bytes),
            // The server converted text to the connection's utf8mb4.
            _ => {
                Value::String(String::from_utf8(bytes).map_err(|e| err(format!("not UTF-8: {e}")))?)
            }
        },
    })
}

fn float32(v: f32) -> Value {
    // `f32 as f64` would print 19.99f32 as 19.989999771118164; going through the shortest
    // round-trip text keeps what MariaDB shows.
    format!("{v}")
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn float64(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

fn binary(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn bit(v: u64, bits: u32) -> Value {
    if bits <= 1 {
        return Value::Bool(v != 0);
    }
    let n = bits.div_ceil(8) as usize;
    binary(&v.to_le_bytes()[..n.min(8)])
}

/// Text in `charset` as a Rust string; bytes that are not valid in it are an error.
pub(crate) fn text(bytes: &[u8], charset: &Charset) -> Result<String, String> {
    let utf16 = |units: Vec<u16>| {
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|e| format!("invalid UTF-16: {e}"))
    };
    let pairs = |bytes: &[u8]| -> Result<(), String> {
        if bytes.len() % 2 == 0 {
            Ok(())
        } else {
            Err("odd number of bytes for a 2-byte character set".into())
        }
    };
    match charset {
        Charset::Binary | Charset::Utf8 => {
            String::from_utf8(bytes.to_vec()).map_err(|e| format!("not valid UTF-8: {e}"))
        }
        Charset::Latin1 => Ok(bytes.iter().map(|&b| cp1252(b)).collect()),
        Charset::Ucs2 | Charset::Utf16 => {
            pairs(bytes)?;
            utf16(
                bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect(),
            )
        }
        Charset::Utf16Le => {
            pairs(bytes)?;
            utf16(
                bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            )
        }
        Charset::Utf32 => {
            if bytes.len() % 4 != 0 {
                return Err("UTF-32 length is not a multiple of 4".into());
            }
            bytes
                .chunks_exact(4)
                .map(|c| {
                    char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .ok_or_else(|| "invalid UTF-32 code point".to_owned())
                })
                .collect()
        }
        Charset::Other(name) => String::from_utf8(bytes.to_vec()).map_err(|_| {
            format!(
                "character set {name} is not supported; convert the column to utf8mb4 \
                 (ALTER TABLE ... CONVERT TO CHARACTER SET utf8mb4)"
            )
        }),
    }
}

/// MariaDB's latin1 is Windows-1252, with the five undefined bytes mapped to C1 controls.
fn cp1252(b: u8) -> char {
    const HIGH: [u16; 32] = [
        0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
        0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
    ];
    match b {
        0x80..=0x9F => char::from_u32(u32::from(HIGH[usize::from(b - 0x80)])).unwrap_or('\u{FFFD}'),
        _ => char::from(b),
    }
}

fn fraction(micros: u32, fsp: u8) -> String {
    if fsp == 0 {
        return String::new();
    }
    let digits = format!("{:06}", micros.min(999_999));
    format!(".{}", &digits[..usize::from(fsp.min(6))])
}

fn date(year: u16, month: u8, day: u8, nullable: bool) -> Value {
    if month == 0 || day == 0 {
        return if nullable {
            Value::Null
        } else {
            Value::String("1970-01-01".into())
        };
    }
    Value::String(format!("{year:04}-{month:02}-{day:02}"))
}

/// `[year, month, day, hour, minute, second]`.
fn datetime(p: [u16; 6], micros: u32, fsp: u8, nullable: bool, zone: &str) -> Value {
    let [year, month, day, hour, minute, second] = p;
    if month == 0 || day == 0 {
        return if nullable {
            Value::Null
        } else {
            Value::String(format!("1970-01-01T00:00:00{}{zone}", fraction(0, fsp)))
        };
    }
    Value::String(format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{}{zone}",
        fraction(micros, fsp)
    ))
}

fn timestamp_secs(secs: u64, micros: u32, fsp: u8, nullable: bool) -> Value {
    if secs == 0 && micros == 0 {
        // TIMESTAMP's zero value '0000-00-00 00:00:00' is stored as 0.
        return datetime([0; 6], 0, fsp, nullable, "Z");
    }
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    datetime(
        [
            y as u16,
            m.into(),
            d.into(),
            (rem / 3600) as u16,
            ((rem / 60) % 60) as u16,
            (rem % 60) as u16,
        ],
        micros,
        fsp,
        nullable,
        "Z",
    )
}

fn time(negative: bool, hours: u32, minutes: u8, seconds: u8, micros: u32, fsp: u8) -> Value {
    let zero = hours == 0 && minutes == 0 && seconds == 0 && micros == 0;
    Value::String(format!(
        "{}{hours:02}:{minutes:02}:{seconds:02}{}",
        if negative && !zero { "-" } else { "" },
        fraction(micros, fsp)
    ))
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn col(nullable: bool) -> ColumnInfo {
        ColumnInfo {
            name: "c".into(),
            unsigned: false,
            charset: Charset::Utf8,
            enum_values: vec!["small".into(), "large".into()],
            set_values: vec!["red".into(), "green".into(), "blue".into()],
            nullable,
            data_type: String::new(),
            precision: 0,
        }
    }

    fn j(cell: Cell, wire: Wire) -> Value {
        cell_to_json(cell, wire, &col(true)).expect("json")
    }

    #[test]
    fn numbers() {
        assert_eq!(
            j(Cell::UInt(u64::MAX), Wire::Int { bytes: 8 }).to_string(),
            "18446744073709551615"
        );
        assert_eq!(j(Cell::Int(-5), Wire::Int { bytes: 1 }), json!(-5));
        assert_eq!(j(Cell::Float(19.99), Wire::Float).to_string(), "19.99");
        assert_eq!(j(Cell::Double(0.1), Wire::Double).to_string(), "0.1");
        assert_eq!(
            j(
                Cell::Decimal("19.99".into()),
                Wire::Decimal {
                    precision: 10,
                    scale: 2
                }
            ),
            json!("19.99")
        );
    }

    #[test]
    fn temporal_values_keep_their_precision() {
        let dt = Cell::DateTime {
            year: 2024,
            month: 2,
            day: 29,
            hour: 1,
            minute: 2,
            second: 3,
            micros: 120_000,
        };
        assert_eq!(
            j(dt.clone(), Wire::DateTime2 { fsp: 0 }),
            json!("2024-02-29T01:02:03")
        );
        assert_eq!(
            j(dt.clone(), Wire::DateTime2 { fsp: 2 }),
            json!("2024-02-29T01:02:03.12")
        );
        assert_eq!(
            j(dt, Wire::DateTime2 { fsp: 6 }),
            json!("2024-02-29T01:02:03.120000")
        );
        // 2023-11-14T22:13:20Z
        assert_eq!(
            j(
                Cell::Timestamp {
                    secs: 1_700_000_000,
                    micros: 5
                },
                Wire::Timestamp2 { fsp: 6 }
            ),
            json!("2023-11-14T22:13:20.000005Z")
        );
        assert_eq!(
            j(
                Cell::Timestamp {
                    secs: 951_782_400,
                    micros: 0
                },
                Wire::Timestamp2 { fsp: 0 }
            ),
            json!("2000-02-29T00:00:00Z")
        );
        let t = Cell::Time {
            negative: true,
            hours: 838,
            minutes: 59,
            seconds: 59,
            micros: 500_000,
        };
        assert_eq!(j(t, Wire::Time2 { fsp: 1 }), json!("-838:59:59.5"));
        assert_eq!(
            j(
                Cell::Date {
                    year: 2024,
                    month: 7,
                    day: 1
                },
                Wire::Date
            ),
            json!("2024-07-01")
        );
    }

    #[test]
    fn zero_dates_follow_nullability() {
        let zero = Cell::Date {
            year: 0,
            month: 0,
            day: 0,
        };
        assert_eq!(j(zero.clone(), Wire::Date), Value::Null);
        assert_eq!(
            cell_to_json(zero, Wire::Date, &col(false)).expect("json"),
            json!("1970-01-01")
        );
        let ts0 = Cell::Timestamp { secs: 0, micros: 0 };
        assert_eq!(
            cell_to_json(ts0, Wire::Timestamp2 { fsp: 3 }, &col(false)).expect("json"),
            json!("1970-01-01T00:00:00.000Z")
        );
    }

    #[test]
    fn strings_binary_enum_set_bit() {
        assert_eq!(
            j(
                Cell::Bytes("😀 日本".as_bytes().to_vec()),
                Wire::VarChar { max_len: 400 }
            ),
            json!("😀 日本")
        );
        let mut bin = col(true);
        bin.charset = Charset::Binary;
        let v = cell_to_json(
            Cell::Bytes(vec![0xff, 0x00, 0xfe]),
            Wire::Blob { len_bytes: 2 },
            &bin,
        )
        .expect("json");
        assert_eq!(v, json!("/wD+"));
        let v = cell_to_json(Cell::Bytes(b"ab".to_vec()), Wire::Char { max_len: 4 }, &bin)
            .expect("json");
        assert_eq!(v, json!("YWIAAA=="), "BINARY(4) padded with zero bytes");
        assert_eq!(
            j(Cell::Bytes(b"ab  ".to_vec()), Wire::Char { max_len: 16 }),
            json!("ab")
        );
        assert_eq!(j(Cell::Enum(2), Wire::Enum { pack_len: 1 }), json!("large"));
        assert_eq!(j(Cell::Enum(0), Wire::Enum { pack_len: 1 }), json!(""));
        assert!(cell_to_json(Cell::Enum(3), Wire::Enum { pack_len: 1 }, &col(true)).is_err());
        assert_eq!(
            j(Cell::Set(0b101), Wire::Set { pack_len: 1 }),
            json!("red,blue")
        );
        assert_eq!(j(Cell::Set(0), Wire::Set { pack_len: 1 }), json!(""));
        assert_eq!(j(Cell::Bit(1), Wire::Bit { bits: 1 }), json!(true));
        assert_eq!(j(Cell::Bit(0x0102), Wire::Bit { bits: 10 }), json!("AgE="));
        // Invalid UTF-8 in a text column is an error, not mojibake.
        assert!(
            cell_to_json(
                Cell::Bytes(vec![0xff]),
                Wire::VarChar { max_len: 10 },
                &col(true)
            )
            .is_err()
        );
    }

    #[test]
    fn character_sets() {
        assert_eq!(
            text(&[0x63, 0x61, 0x66, 0xe9, 0x80], &Charset::Latin1).expect("latin1"),
            "café€"
        );
        assert_eq!(
            text(&[0xd8, 0x3d, 0xde, 0x00], &Charset::Utf16).expect("utf16"),
            "😀"
        );
        assert_eq!(
            text(&[0x3d, 0xd8, 0x00, 0xde], &Charset::Utf16Le).expect("utf16le"),
            "😀"
        );
        assert_eq!(
            text(&[0, 1, 0xf6, 0], &Charset::Utf32).expect("utf32"),
            "😀"
        );
        assert!(
            text(&[0xd8, 0x3d], &Charset::Utf16).is_err(),
            "lone surrogate"
        );
        assert!(text(&[0xb0, 0xa1], &Charset::Other("gbk".into())).is_err());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(24_855), (2038, 1, 19));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
