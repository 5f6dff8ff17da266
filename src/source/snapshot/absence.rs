//! Absence checks: of the values the pipeline holds objects for, which does no row have?
//!
//! The pipeline asks about values in the form its objects carry them, which is the row's JSON
//! (text as is, binary columns as base64, numbers as their decimal text). The read is
//! `SELECT col ... WHERE col IN (...)` in batches, inside one consistent read, and a value counts
//! as present only when a returned value is exactly equal to it: `IN` compares with the column's
//! collation (`'abc'` finds `'ABC '` in a case-insensitive PAD SPACE column), but an object id is
//! derived from the exact bytes, so only an exact match keeps an object alive.

use base64::Engine as _;
use serde_json::Value as Json;

use super::super::columns::{Charset, ColumnInfo};

/// Values per `IN (...)` list: one statement stays small, a request of thousands is a few.
pub(crate) const BATCH: usize = 500;

/// The `IN` parameters for `values` of `column`, in batches. A value that cannot be in the
/// column at all (not base64 for a binary column) is left out: it is absent.
pub(crate) fn batches(column: &ColumnInfo, values: &[String]) -> Vec<Vec<mysql_async::Value>> {
    let binary = column.charset == Charset::Binary
        && matches!(
            column.data_type.as_str(),
            "binary"
                | "varbinary"
                | "tinyblob"
                | "blob"
                | "mediumblob"
                | "longblob"
                | "char"
                | "varchar"
        );
    let params: Vec<mysql_async::Value> = values
        .iter()
        .filter_map(|v| {
            if binary {
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .ok()
                    .map(mysql_async::Value::Bytes)
            } else {
                Some(mysql_async::Value::Bytes(v.as_bytes().to_vec()))
            }
        })
        .collect();
    params.chunks(BATCH).map(<[_]>::to_vec).collect()
}

/// A value's text as the pipeline compares it: strings as they are, anything else as JSON.
pub(crate) fn as_text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `asked` minus `present`, in the order asked, each once.
pub(crate) fn absent(asked: &[String], present: &[String]) -> Vec<String> {
    let present: std::collections::HashSet<&str> = present.iter().map(String::as_str).collect();
    let mut seen = std::collections::HashSet::new();
    asked
        .iter()
        .filter(|v| !present.contains(v.as_str()) && seen.insert(v.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn column(data_type: &str, charset: Charset) -> ColumnInfo {
        ColumnInfo {
            name: "sku".into(),
            unsigned: false,
            charset,
            enum_values: vec![],
            set_values: vec![],
            nullable: false,
            data_type: data_type.into(),
            precision: 0,
        }
    }

    #[test]
    fn batches_and_binary_values() {
        let values: Vec<String> = (0..1_201).map(|i| format!("s{i}")).collect();
        let b = batches(&column("varchar", Charset::Utf8), &values);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [500, 500, 201]);
        let b = batches(
            &column("varbinary", Charset::Binary),
            &["/wD+".into(), "not base64!".into()],
        );
        assert_eq!(b, [vec![mysql_async::Value::Bytes(vec![0xff, 0, 0xfe])]]);
    }

    #[test]
    fn exact_matches_only() {
        assert_eq!(as_text(&json!("ABC ")), "ABC ");
        assert_eq!(as_text(&json!(17)), "17");
        let asked = [
            "abc".to_owned(),
            "x".to_owned(),
            "abc".to_owned(),
            "y".to_owned(),
        ];
        assert_eq!(absent(&asked, &["x".into()]), ["abc", "y"]);
    }
}
