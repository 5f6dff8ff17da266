//! `where` filters of batch deletes: the operators vecsync and its tests use (`And`, `Or`,
//! `Equal`, `NotEqual`, `Like`, comparisons, `IsNull`, `ContainsAny`), with Weaviate's checks on
//! paths and value types. Path `["id"]` is the object id, as in Weaviate.

use serde_json::{Map, Value};
use uuid::Uuid;

/// A filter checked against a class, ready to match objects.
pub(crate) struct Filter<'a> {
    clause: &'a Value,
    class: &'a Value,
}

impl<'a> Filter<'a> {
    /// Check a filter against the class, with Weaviate's messages for a bad one.
    pub(crate) fn parse(clause: &'a Value, class: &'a Value) -> Result<Self, String> {
        validate(clause, class)?;
        Ok(Filter { clause, class })
    }

    /// Whether the object with this id and these properties matches.
    pub(crate) fn matches(&self, id: &Uuid, properties: &Map<String, Value>) -> bool {
        eval(self.clause, self.class, id, properties)
    }
}

const VALUE_KEYS: &[(&str, &str)] = &[
    ("valueText", "text"),
    ("valueString", "string"),
    ("valueInt", "int"),
    ("valueNumber", "number"),
    ("valueBoolean", "boolean"),
    ("valueDate", "date"),
    ("valueTextArray", "text"),
    ("valueIntArray", "int"),
    ("valueNumberArray", "number"),
    ("valueBooleanArray", "boolean"),
];

fn operator(clause: &Value) -> &str {
    clause
        .get("operator")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn value_of(clause: &Value) -> Option<(&'static str, &'static str, &Value)> {
    VALUE_KEYS
        .iter()
        .find_map(|(k, t)| clause.get(*k).filter(|v| !v.is_null()).map(|v| (*k, *t, v)))
}

fn property<'c>(class: &'c Value, name: &str) -> Option<&'c Value> {
    class["properties"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
}

fn validate(clause: &Value, class: &Value) -> Result<(), String> {
    let op = operator(clause);
    match op {
        "And" | "Or" | "Not" => {
            let operands = clause
                .get("operands")
                .and_then(Value::as_array)
                .filter(|o| !o.is_empty())
                .ok_or_else(|| {
                    format!("failed to parse where filter: operator {op} requires operands")
                })?;
            return operands.iter().try_for_each(|o| validate(o, class));
        }
        "" => return Err("failed to parse where filter: operator is required".into()),
        _ => {}
    }
    let path: Vec<&str> = clause
        .get("path")
        .and_then(Value::as_array)
        .map(|p| p.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let [prop] = path.as_slice() else {
        return Err(format!(
            "failed to parse where filter: invalid path {path:?}: only single properties are supported here"
        ));
    };
    if op == "IsNull" {
        return Ok(());
    }
    let (key, value_type, _) = value_of(clause).ok_or_else(|| {
        "failed to parse where filter: got no value, need one of valueText, valueInt, ..."
            .to_owned()
    })?;
    if matches!(*prop, "id" | "_id") {
        if value_type != "text" {
            return Err(
                "invalid where filter: using [\"_id\"] to filter by uuid: must use \"valueText\" to specify the id"
                    .into(),
            );
        }
        return Ok(());
    }
    let class_name = class["class"].as_str().unwrap_or_default();
    let p = property(class, prop).ok_or_else(|| {
        format!("invalid where filter: no such prop with name '{prop}' found in class '{class_name}' in the schema. Check your schema files for which properties in this class are available")
    })?;
    let data_type = p["dataType"][0].as_str().unwrap_or_default();
    let base = data_type.trim_end_matches("[]");
    let compatible = base == value_type || (base == "text" && value_type == "string");
    if !compatible {
        return Err(format!(
            "invalid where filter: data type filter cannot use \"{key}\" on type \"{data_type}\", use \"value{}\" instead",
            capitalize(base)
        ));
    }
    Ok(())
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

fn eval(clause: &Value, class: &Value, id: &Uuid, props: &Map<String, Value>) -> bool {
    let operands = || clause["operands"].as_array().into_iter().flatten();
    match operator(clause) {
        "And" => return operands().all(|o| eval(o, class, id, props)),
        "Or" => return operands().any(|o| eval(o, class, id, props)),
        "Not" => return !operands().all(|o| eval(o, class, id, props)),
        _ => {}
    }
    let prop = clause["path"][0].as_str().unwrap_or_default();
    let id_text = id.to_string();
    let (actual, tokenization) = if matches!(prop, "id" | "_id") {
        (Some(Value::String(id_text)), "field")
    } else {
        let tok = property(class, prop)
            .and_then(|p| p["tokenization"].as_str())
            .unwrap_or("field");
        (props.get(prop).cloned(), tok)
    };
    let op = operator(clause);
    if op == "IsNull" {
        let want = clause["valueBoolean"].as_bool().unwrap_or(true);
        return actual.is_none() == want;
    }
    let Some(actual) = actual else { return false };
    let Some((_, _, wanted)) = value_of(clause) else {
        return false;
    };
    match (op, &actual, wanted) {
        ("Equal", Value::String(a), Value::String(w)) => text_contains(a, w, tokenization),
        ("NotEqual", Value::String(a), Value::String(w)) => !text_contains(a, w, tokenization),
        ("Like", Value::String(a), Value::String(w)) => tokens(a, tokenization)
            .iter()
            .any(|t| wildcard(&tokens(w, tokenization).join(" "), t)),
        ("ContainsAny", Value::String(a), Value::Array(ws)) => ws
            .iter()
            .filter_map(Value::as_str)
            .any(|w| text_contains(a, w, tokenization)),
        (op, Value::Number(a), Value::Number(w)) => {
            let (a, w) = (
                a.as_f64().unwrap_or(f64::NAN),
                w.as_f64().unwrap_or(f64::NAN),
            );
            match op {
                "Equal" => a == w,
                "NotEqual" => a != w,
                "GreaterThan" => a > w,
                "GreaterThanEqual" => a >= w,
                "LessThan" => a < w,
                "LessThanEqual" => a <= w,
                _ => false,
            }
        }
        ("Equal", a, w) => a == w,
        ("NotEqual", a, w) => a != w,
        _ => false,
    }
}

/// Split text the way the property's tokenization indexes it.
fn tokens(text: &str, tokenization: &str) -> Vec<String> {
    match tokenization {
        "field" => vec![text.trim().to_owned()],
        "whitespace" => text.split_whitespace().map(str::to_owned).collect(),
        "lowercase" => text.split_whitespace().map(|t| t.to_lowercase()).collect(),
        // `word` and anything else: alphanumeric runs, lower-cased (wildcards kept for Like).
        _ => text
            .split(|c: char| !(c.is_alphanumeric() || c == '*' || c == '?'))
            .filter(|t| !t.is_empty())
            .map(|t| t.to_lowercase())
            .collect(),
    }
}

/// Equal on text: every token of the filter value is among the value's tokens.
fn text_contains(actual: &str, wanted: &str, tokenization: &str) -> bool {
    let have = tokens(actual, tokenization);
    let want = tokens(wanted, tokenization);
    !want.is_empty() && want.iter().all(|w| have.contains(w))
}

/// `*` any run, `?` one character.
fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class() -> Value {
        json!({"class":"Product","properties":[
            {"name":"sku","dataType":["text"],"tokenization":"whitespace"},
            {"name":"price","dataType":["number"]}]})
    }

    #[test]
    fn like_star_on_id_matches_everything() {
        let c = class();
        let where_ = json!({"path":["id"],"operator":"Like","valueText":"*"});
        let f = Filter::parse(&where_, &c).expect("valid");
        assert!(f.matches(&Uuid::new_v4(), &Map::new()));
    }

    #[test]
    fn equal_and_comparisons() {
        let c = class();
        let props = json!({"sku":"TS-001","price":19.99});
        let props = props.as_object().expect("object");
        let id = Uuid::new_v4();
        let eq = json!({"path":["sku"],"operator":"Equal","valueText":"TS-001"});
        assert!(Filter::parse(&eq, &c).expect("valid").matches(&id, props));
        let ne = json!({"path":["sku"],"operator":"Equal","valueText":"TS-002"});
        assert!(!Filter::parse(&ne, &c).expect("valid").matches(&id, props));
        let gt = json!({"operator":"And","operands":[
            {"path":["price"],"operator":"GreaterThan","valueNumber":10},
            {"path":["sku"],"operator":"Like","valueText":"TS-*"}]});
        assert!(Filter::parse(&gt, &c).expect("valid").matches(&id, props));
    }

    #[test]
    fn wrong_value_type_and_unknown_property_are_refused() {
        let c = class();
        let e = Filter::parse(&json!({"path":["sku"],"operator":"Equal","valueInt":3}), &c)
            .err()
            .expect("invalid");
        assert!(e.contains("use \"valueText\" instead"), "{e}");
        assert!(
            Filter::parse(
                &json!({"path":["nope"],"operator":"Equal","valueText":"x"}),
                &c
            )
            .is_err()
        );
        assert!(
            Filter::parse(&json!({"path":["id"],"operator":"Equal","valueInt":1}), &c).is_err()
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*", ""));
        assert!(wildcard("a*c", "abbbc"));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("a?c", "abbc"));
    }
}
