//! Writing answers as JSON the way Weaviate's Go encoder writes them where it matters: object
//! vectors are `[]float32` in Weaviate, so their numbers come out in float32's shortest form
//! (`0.1`, not `0.10000000149011612`). That is also the bulk of a batch answer or of a fetch of
//! 256 vectors, so writing them as f32 is faster and the answer about half the size.
//!
//! A vector is an array under the key `vector` of a REST object (an object with `class` and
//! `id`) or of a GraphQL `_additional`. Everything else, properties included (a `number`
//! property is a float64 in Weaviate), is written by serde_json unchanged.

use std::io::Write;

use serde_json::{Map, Value};

/// Serialize `value` (see the module docs).
pub(crate) fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    write(&mut out, value, false);
    out
}

fn write(out: &mut Vec<u8>, value: &Value, vector_holder: bool) {
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item, false);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(out, map, vector_holder),
        scalar => {
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>, additional: bool) {
    let holds_vector = additional || (map.contains_key("class") && map.contains_key("id"));
    out.push(b'{');
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        match value {
            Value::Array(items) if holds_vector && key == "vector" => write_f32s(out, items),
            value => write(out, value, key == "_additional"),
        }
    }
    out.push(b'}');
}

fn write_f32s(out: &mut Vec<u8>, items: &[Value]) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match item.as_f64() {
            // Writing into a Vec cannot fail.
            Some(f) => {
                let _ = serde_json::to_writer(&mut *out, &(f as f32));
            }
            None => {
                let _ = out.write_all(b"null");
            }
        }
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vectors_as_float32_everything_else_unchanged() {
        let v = f64::from(0.1f32);
        let answer = json!([{
            "class": "P", "id": "x", "vector": [v, 1.0, null],
            "properties": {"price": v, "vector": [v]}
        }, {
            "_additional": {"vector": [v], "distance": v},
            "vector": [v]
        }]);
        let text = String::from_utf8(to_vec(&answer)).expect("utf8");
        assert_eq!(
            text,
            format!(
                r#"[{{"class":"P","id":"x","vector":[0.1,1.0,null],"properties":{{"price":{v},"vector":[{v}]}}}},{{"_additional":{{"vector":[0.1],"distance":{v}}},"vector":[{v}]}}]"#
            )
        );
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed[0]["properties"], answer[0]["properties"]);
    }
}
