//! Row images of WRITE/UPDATE/DELETE_ROWS events, decoded column by column into [`Cell`]s.
//!
//! The storage formats are MySQL's (shared by MariaDB): little-endian integers, the binary
//! DECIMAL format (decoded digit-exact, never through a float), the 5.6 temporal formats with
//! their fractional seconds, length-prefixed strings. Every read is bounds-checked: a short or
//! inconsistent image is an error naming the column, never a panic.

use super::columns::TableLayout;
use super::mariadb_events::{MalformedEvent, Reader};
use super::table_map::Wire;

/// A decoded column value, before it is turned into JSON.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    /// A DECIMAL in its exact text form (`-19.99`).
    Decimal(String),
    /// CHAR/VARCHAR/TEXT/BLOB/GEOMETRY bytes, in the column's character set.
    Bytes(Vec<u8>),
    Year(u16),
    Date {
        year: u16,
        month: u8,
        day: u8,
    },
    DateTime {
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
        micros: u32,
    },
    /// Seconds since the epoch (UTC) and microseconds.
    Timestamp {
        secs: u64,
        micros: u32,
    },
    Time {
        negative: bool,
        hours: u32,
        minutes: u8,
        seconds: u8,
        micros: u32,
    },
    /// 1-based ENUM member index (0 is MariaDB's "invalid value" empty string).
    Enum(u16),
    /// SET member bitmap, bit 0 = first member.
    Set(u64),
    /// BIT(n) value.
    Bit(u64),
}

/// Decode one row image: the NULL bitmap over the present columns, then their values.
/// Returns one entry per table column, `None` for columns the image does not contain.
pub(crate) fn decode_image(
    r: &mut Reader<'_>,
    layout: &TableLayout,
    present: &[bool],
) -> Result<Vec<Option<Cell>>, RowError> {
    let count = present.iter().filter(|p| **p).count();
    let nulls = r
        .bytes(count.div_ceil(8))
        .map_err(|e| RowError::new("(NULL bitmap)", e.reason))?;
    let mut out = Vec::with_capacity(layout.wire.len());
    let mut image_index = 0;
    for (i, &wire) in layout.wire.iter().enumerate() {
        if !present.get(i).copied().unwrap_or(false) {
            out.push(None);
            continue;
        }
        let is_null = nulls[image_index / 8] & (1 << (image_index % 8)) != 0;
        image_index += 1;
        let name = layout.columns.get(i).map_or("?", |c| c.name.as_str());
        let cell = if is_null {
            Cell::Null
        } else {
            let unsigned = layout.columns.get(i).is_some_and(|c| c.unsigned);
            decode_value(r, wire, unsigned).map_err(|e| RowError::new(name, e))?
        };
        out.push(Some(cell));
    }
    Ok(out)
}

/// A value that could not be decoded, with the column it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {reason}")]
pub struct RowError {
    pub column: String,
    pub reason: String,
}

impl RowError {
    pub(crate) fn new(column: &str, reason: impl Into<String>) -> Self {
        Self {
            column: column.to_owned(),
            reason: reason.into(),
        }
    }
}

impl From<MalformedEvent> for String {
    fn from(e: MalformedEvent) -> Self {
        e.reason
    }
}

/// Decode one non-NULL value stored as `wire`.
pub(crate) fn decode_value(r: &mut Reader<'_>, wire: Wire, unsigned: bool) -> Result<Cell, String> {
    Ok(match wire {
        Wire::Int { bytes } => {
            let n = usize::from(bytes);
            let raw = r.uint_le(n)?;
            if unsigned {
                Cell::UInt(raw)
            } else {
                // Sign-extend from the stored width.
                let shift = 64 - 8 * n as u32;
                Cell::Int(((raw << shift) as i64) >> shift)
            }
        }
        Wire::Float => Cell::Float(f32::from_bits(r.uint_le(4)? as u32)),
        Wire::Double => Cell::Double(f64::from_bits(r.uint_le(8)?)),
        Wire::Decimal { precision, scale } => Cell::Decimal(decimal(r, precision, scale)?),
        Wire::Year => match r.u8()? {
            0 => Cell::Year(0),
            y => Cell::Year(1900 + u16::from(y)),
        },
        Wire::Date => {
            let v = r.uint_le(3)?;
            Cell::Date {
                year: (v >> 9) as u16,
                month: ((v >> 5) & 15) as u8,
                day: (v & 31) as u8,
            }
        }
        Wire::Time2 { fsp } => time2(r, fsp)?,
        Wire::DateTime2 { fsp } => {
            let int_part = r.uint_be(5)? as i64 - 0x80_0000_0000;
            let micros = frac(r, fsp)?;
            if int_part < 0 {
                return Err("negative DATETIME".into());
            }
            let ymd = int_part >> 17;
            let ym = ymd >> 5;
            let hms = int_part % (1 << 17);
            Cell::DateTime {
                year: (ym / 13) as u16,
                month: (ym % 13) as u8,
                day: (ymd % (1 << 5)) as u8,
                hour: (hms >> 12) as u8,
                minute: ((hms >> 6) % (1 << 6)) as u8,
                second: (hms % (1 << 6)) as u8,
                micros,
            }
        }
        Wire::Timestamp2 { fsp } => {
            let secs = r.uint_be(4)?;
            let micros = frac(r, fsp)?;
            Cell::Timestamp { secs, micros }
        }
        Wire::Time => {
            let raw = r.uint_le(3)? as i64;
            let v = (raw << 40) >> 40; // sign-extend 24 bits
            let (negative, v) = (v < 0, v.unsigned_abs());
            Cell::Time {
                negative,
                hours: (v / 10000) as u32,
                minutes: ((v / 100) % 100) as u8,
                seconds: (v % 100) as u8,
                micros: 0,
            }
        }
        Wire::DateTime => {
            let v = r.uint_le(8)?;
            let (d, t) = (v / 1_000_000, v % 1_000_000);
            Cell::DateTime {
                year: (d / 10000) as u16,
                month: ((d / 100) % 100) as u8,
                day: (d % 100) as u8,
                hour: (t / 10000) as u8,
                minute: ((t / 100) % 100) as u8,
                second: (t % 100) as u8,
                micros: 0,
            }
        }
        Wire::Timestamp => Cell::Timestamp {
            secs: r.uint_le(4)?,
            micros: 0,
        },
        Wire::VarChar { max_len } | Wire::Char { max_len } => {
            let n = if max_len < 256 {
                r.u8()? as usize
            } else {
                r.uint_le(2)? as usize
            };
            Cell::Bytes(r.bytes(n)?.to_vec())
        }
        Wire::Blob { len_bytes } | Wire::Geometry { len_bytes } => {
            let n = usize::try_from(r.uint_le(usize::from(len_bytes))?)
                .map_err(|_| "length overflows".to_owned())?;
            Cell::Bytes(r.bytes(n)?.to_vec())
        }
        Wire::Enum { pack_len } => {
            if !(1..=2).contains(&pack_len) {
                return Err(format!("ENUM stored in {pack_len} bytes"));
            }
            Cell::Enum(r.uint_le(usize::from(pack_len))? as u16)
        }
        Wire::Set { pack_len } => {
            if !(1..=8).contains(&pack_len) {
                return Err(format!("SET stored in {pack_len} bytes"));
            }
            Cell::Set(r.uint_le(usize::from(pack_len))?)
        }
        Wire::Bit { bits } => {
            let n = usize::from(bits).div_ceil(8);
            if n > 8 {
                return Err(format!("BIT({bits})"));
            }
            Cell::Bit(r.uint_be(n)?)
        }
        Wire::Null => Cell::Null,
    })
}

/// Fractional seconds of the 5.6 temporal formats, in microseconds.
fn frac(r: &mut Reader<'_>, fsp: u8) -> Result<u32, String> {
    Ok(match fsp {
        0 => 0,
        1 | 2 => r.u8()? as u32 * 10_000,
        3 | 4 => r.uint_be(2)? as u32 * 100,
        _ => r.uint_be(3)? as u32,
    })
}

/// TIME(fsp) in the 5.6 format: a packed value offset to be non-negative, with a fractional part
/// that borrows from the integer part for negative times.
fn time2(r: &mut Reader<'_>, fsp: u8) -> Result<Cell, String> {
    const INT_OFS: i64 = 0x80_0000;
    let packed: i64 = match fsp {
        0 => (r.uint_be(3)? as i64 - INT_OFS) << 24,
        1 | 2 => {
            let mut int_part = r.uint_be(3)? as i64 - INT_OFS;
            let mut f = i64::from(r.u8()?);
            if int_part < 0 && f != 0 {
                int_part += 1;
                f -= 0x100;
            }
            (int_part << 24) + f * 10_000
        }
        3 | 4 => {
            let mut int_part = r.uint_be(3)? as i64 - INT_OFS;
            let mut f = r.uint_be(2)? as i64;
            if int_part < 0 && f != 0 {
                int_part += 1;
                f -= 0x10000;
            }
            (int_part << 24) + f * 100
        }
        _ => r.uint_be(6)? as i64 - 0x8000_0000_0000,
    };
    let negative = packed < 0;
    let p = packed.unsigned_abs();
    let hms = p >> 24;
    Ok(Cell::Time {
        negative,
        hours: ((hms >> 12) % (1 << 10)) as u32,
        minutes: ((hms >> 6) % (1 << 6)) as u8,
        seconds: (hms % (1 << 6)) as u8,
        micros: (p % (1 << 24)) as u32,
    })
}

/// Bytes used by 0..=9 leftover decimal digits.
const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/// MySQL's binary DECIMAL(precision, scale): groups of nine digits in four big-endian bytes,
/// a shorter group for leftover digits (leading on the integer side, trailing on the fraction
/// side), the sign in the top bit (flipped), every byte inverted for negative numbers.
pub(crate) fn decimal(r: &mut Reader<'_>, precision: u8, scale: u8) -> Result<String, String> {
    let (precision, scale) = (usize::from(precision), usize::from(scale));
    if scale > precision {
        return Err(format!("DECIMAL({precision},{scale})"));
    }
    let intg = precision - scale;
    let (intg_full, intg_left) = (intg / 9, intg % 9);
    let (frac_full, frac_left) = (scale / 9, scale % 9);
    let size = intg_full * 4 + DIG2BYTES[intg_left] + frac_full * 4 + DIG2BYTES[frac_left];
    let mut bytes = r.bytes(size)?.to_vec();
    if bytes.is_empty() {
        return Err("empty DECIMAL".into());
    }
    let negative = bytes[0] & 0x80 == 0;
    bytes[0] ^= 0x80;
    if negative {
        for b in &mut bytes {
            *b = !*b;
        }
    }
    let mut g = Reader::new(&bytes, "DECIMAL");
    let mut group = |len: usize, digits: usize, out: &mut String| -> Result<(), String> {
        if len == 0 {
            return Ok(());
        }
        let v = g.uint_be(len)?;
        if v >= 10u64.pow(digits as u32) {
            return Err(format!("digit group {v} exceeds {digits} digits"));
        }
        out.push_str(&format!("{v:0digits$}"));
        Ok(())
    };
    let mut int_digits = String::new();
    group(DIG2BYTES[intg_left], intg_left, &mut int_digits)?;
    for _ in 0..intg_full {
        group(4, 9, &mut int_digits)?;
    }
    let mut frac_digits = String::new();
    for _ in 0..frac_full {
        group(4, 9, &mut frac_digits)?;
    }
    group(DIG2BYTES[frac_left], frac_left, &mut frac_digits)?;

    let int_digits = int_digits.trim_start_matches('0');
    let int_digits = if int_digits.is_empty() {
        "0"
    } else {
        int_digits
    };
    let is_zero = int_digits == "0" && frac_digits.bytes().all(|b| b == b'0');
    let mut out = String::with_capacity(precision + 2);
    if negative && !is_zero {
        out.push('-');
    }
    out.push_str(int_digits);
    if scale > 0 {
        out.push('.');
        out.push_str(&frac_digits);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::columns::{Charset, ColumnInfo};

    fn dec(bytes: &[u8], p: u8, s: u8) -> String {
        decimal(&mut Reader::new(bytes, "T"), p, s).expect("decimal")
    }

    #[test]
    fn decimals_are_digit_exact() {
        // DECIMAL(10,2): 8 integer digits (4 bytes), 2 fraction digits (1 byte).
        // 19.99 = int 19, frac 99 => 80 00 00 13 63
        assert_eq!(dec(&[0x80, 0x00, 0x00, 0x13, 0x63], 10, 2), "19.99");
        assert_eq!(dec(&[0x80, 0x00, 0x00, 0x05, 0x00], 10, 2), "5.00");
        assert_eq!(dec(&[0x80, 0x00, 0x00, 0x00, 0x05], 10, 2), "0.05");
        // -19.99: every byte of the positive form inverted.
        assert_eq!(dec(&[0x7f, 0xff, 0xff, 0xec, 0x9c], 10, 2), "-19.99");
        // Zero never gets a sign.
        assert_eq!(dec(&[0x80, 0x00, 0x00, 0x00, 0x00], 10, 2), "0.00");
        // DECIMAL(65,30) max: 35 integer digits = 8 leftover (4 bytes) + 3 groups,
        // 30 fraction digits = 3 groups + 3 leftover (2 bytes).
        let mut max = vec![0x85, 0xf5, 0xe0, 0xff]; // 99999999 with the sign bit
        max.extend([0x3b, 0x9a, 0xc9, 0xff].repeat(3)); // 999999999
        max.extend([0x3b, 0x9a, 0xc9, 0xff].repeat(3));
        max.extend([0x03, 0xe7]);
        assert_eq!(
            dec(&max, 65, 30),
            format!("{}.{}", "9".repeat(35), "9".repeat(30))
        );
        // DECIMAL(4,0) has no point.
        assert_eq!(dec(&[0x84, 0xd2], 4, 0), "1234");
        assert!(
            decimal(&mut Reader::new(&[0x80, 0x00], "T"), 10, 2).is_err(),
            "short"
        );
        // A group above its digit count is corrupt, not silently wrong.
        assert!(
            decimal(
                &mut Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x63], "T"),
                10,
                2
            )
            .is_err()
        );
    }

    fn one(bytes: &[u8], wire: Wire, unsigned: bool) -> Cell {
        let mut r = Reader::new(bytes, "T");
        let c = decode_value(&mut r, wire, unsigned).expect("value");
        assert_eq!(r.remaining(), 0, "every byte consumed for {wire:?}");
        c
    }

    #[test]
    fn integers_honour_width_and_sign() {
        assert_eq!(one(&[0xff], Wire::Int { bytes: 1 }, false), Cell::Int(-1));
        assert_eq!(one(&[0xff], Wire::Int { bytes: 1 }, true), Cell::UInt(255));
        assert_eq!(
            one(&[0x00, 0x00, 0x80], Wire::Int { bytes: 3 }, false),
            Cell::Int(-8_388_608)
        );
        assert_eq!(
            one(&[0xff; 8], Wire::Int { bytes: 8 }, true),
            Cell::UInt(u64::MAX)
        );
        assert_eq!(
            one(&[0xff; 8], Wire::Int { bytes: 8 }, false),
            Cell::Int(-1)
        );
    }

    #[test]
    fn temporal_formats() {
        // TIME(3) '-12:34:56.500' as MariaDB stores it.
        let neg = one(
            &[0x7f, 0x37, 0x47, 0xec, 0x78],
            Wire::Time2 { fsp: 3 },
            false,
        );
        assert_eq!(
            neg,
            Cell::Time {
                negative: true,
                hours: 12,
                minutes: 34,
                seconds: 56,
                micros: 500_000
            }
        );
        // TIME(0) '838:59:59'.
        let hms: u64 = (838 << 12) | (59 << 6) | 59;
        let v = (hms + 0x80_0000).to_be_bytes();
        assert_eq!(
            one(&v[5..], Wire::Time2 { fsp: 0 }, false),
            Cell::Time {
                negative: false,
                hours: 838,
                minutes: 59,
                seconds: 59,
                micros: 0
            }
        );
        // DATETIME(6) '2024-02-29 23:59:58.123456'.
        let ym = 2024 * 13 + 2;
        let packed: u64 = (((ym << 5) | 29) << 17 | (23 << 12) | (59 << 6) | 58) + 0x80_0000_0000;
        let mut b = packed.to_be_bytes()[3..].to_vec();
        b.extend_from_slice(&123_456u32.to_be_bytes()[1..]);
        assert_eq!(
            one(&b, Wire::DateTime2 { fsp: 6 }, false),
            Cell::DateTime {
                year: 2024,
                month: 2,
                day: 29,
                hour: 23,
                minute: 59,
                second: 58,
                micros: 123_456
            }
        );
        // TIMESTAMP(2) 1700000000.12 and DATE 2024-07-01.
        let mut t = 1_700_000_000u32.to_be_bytes().to_vec();
        t.push(12);
        assert_eq!(
            one(&t, Wire::Timestamp2 { fsp: 2 }, false),
            Cell::Timestamp {
                secs: 1_700_000_000,
                micros: 120_000
            }
        );
        let d: u32 = (2024 << 9) | (7 << 5) | 1;
        assert_eq!(
            one(&d.to_le_bytes()[..3], Wire::Date, false),
            Cell::Date {
                year: 2024,
                month: 7,
                day: 1
            }
        );
        assert_eq!(one(&[124], Wire::Year, true), Cell::Year(2024));
        assert_eq!(one(&[0], Wire::Year, true), Cell::Year(0));
    }

    #[test]
    fn strings_enums_sets_bits() {
        assert_eq!(
            one(&[2, b'h', b'i'], Wire::VarChar { max_len: 200 }, false),
            Cell::Bytes(b"hi".to_vec())
        );
        assert_eq!(
            one(&[2, 0, b'h', b'i'], Wire::VarChar { max_len: 1000 }, false),
            Cell::Bytes(b"hi".to_vec())
        );
        assert_eq!(
            one(&[1, 0, 0, 0xff], Wire::Blob { len_bytes: 3 }, false),
            Cell::Bytes(vec![0xff])
        );
        assert_eq!(one(&[2], Wire::Enum { pack_len: 1 }, false), Cell::Enum(2));
        assert_eq!(one(&[5], Wire::Set { pack_len: 1 }, false), Cell::Set(5));
        assert_eq!(
            one(&[0x01, 0x02], Wire::Bit { bits: 9 }, false),
            Cell::Bit(0x102)
        );
        let mut r = Reader::new(&[5, b'a'], "T");
        assert!(decode_value(&mut r, Wire::VarChar { max_len: 10 }, false).is_err());
    }

    #[test]
    fn images_follow_the_null_bitmap_and_present_columns() {
        let col = |name: &str| ColumnInfo {
            name: name.into(),
            unsigned: false,
            charset: Charset::Utf8,
            enum_values: vec![],
            set_values: vec![],
            nullable: true,
            data_type: String::new(),
            precision: 0,
        };
        let layout = TableLayout {
            wire: vec![
                Wire::Int { bytes: 1 },
                Wire::VarChar { max_len: 10 },
                Wire::Int { bytes: 2 },
            ],
            columns: vec![col("a"), col("b"), col("c")],
        };
        // All present, b is NULL (bit 1).
        let data = [0b010, 7, 0x34, 0x12];
        let mut r = Reader::new(&data, "T");
        let row = decode_image(&mut r, &layout, &[true, true, true]).expect("row");
        assert_eq!(
            row,
            [
                Some(Cell::Int(7)),
                Some(Cell::Null),
                Some(Cell::Int(0x1234))
            ]
        );
        // Only a and c present: the bitmap covers two columns.
        let data = [0b00, 7, 0x34, 0x12];
        let mut r = Reader::new(&data, "T");
        let row = decode_image(&mut r, &layout, &[true, false, true]).expect("row");
        assert_eq!(row, [Some(Cell::Int(7)), None, Some(Cell::Int(0x1234))]);
        // A truncated image names the column.
        let mut r = Reader::new(&[0, 7, 0x34], "T");
        let err = decode_image(&mut r, &layout, &[true, true, true]).expect_err("short");
        assert_eq!(err.column, "b");
    }
}
