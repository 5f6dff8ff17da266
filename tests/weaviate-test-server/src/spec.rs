//! Weaviate's own OpenAPI 2.0 spec (1.40.0-dev, BSD-3, see `tests/fixtures/weaviate/`), used to
//! check every request the test server receives and every response it sends.
//!
//! Weaviate serves its REST API through go-swagger: request bodies are decoded into generated Go
//! structs, then validated against the spec, and rejections are written by go-openapi's
//! `ServeError` as `{"code":N,"message":"..."}` (not the `{"error":[...]}` shape of Weaviate's
//! own handlers). The spec is checked here with the same semantics:
//!
//! - JSON `null` is accepted anywhere, because Go's decoder treats it as "absent";
//! - a `type: object` schema without properties is generated as `interface{}`, so any JSON value
//!   passes it (Weaviate's handler judges it later);
//! - a value of the wrong JSON type fails decoding: 400 `parsing body body from "" failed,
//!   because json: cannot unmarshal ...` (the Go wording is approximated);
//! - formats, enums and required fields fail validation: 422 with go-openapi's codes (601 invalid
//!   type/format, 602 required, 606 enum) and messages (`id in body must be of type uuid: "x"`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::Method;
use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, ValidationError, Validator};
use serde_json::{Map, Value, json};

const SPEC_TEXT: &str = include_str!("../../fixtures/weaviate/openapi-schema.json");

/// A request the real server would refuse before reaching Weaviate's handlers.
#[derive(Debug, Clone)]
pub(crate) struct Rejection {
    pub status: u16,
    pub body: Value,
}

impl Rejection {
    fn new(status: u16, code: u16, message: String) -> Self {
        Rejection {
            status,
            body: json!({ "code": code, "message": message }),
        }
    }
}

/// The parsed spec with its operations and a cache of compiled validators.
pub(crate) struct Spec {
    doc: Value,
    operations: Vec<Operation>,
    validators: Mutex<HashMap<String, Arc<Validator>>>,
}

/// One operation of the spec (a method on a path template).
pub(crate) struct Operation {
    pub id: String,
    method: Method,
    segments: Vec<Segment>,
    body: Option<BodyParam>,
    params: Vec<Value>,
    responses: Map<String, Value>,
}

struct BodyParam {
    name: String,
    required: bool,
    schema: Value,
}

enum Segment {
    Literal(String),
    Param(String),
}

/// The spec, parsed once per process.
pub(crate) fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec::parse(SPEC_TEXT))
}

impl Spec {
    fn parse(text: &str) -> Spec {
        // The embedded file is a fixture of this crate: failing here is a broken build.
        let mut doc: Value = serde_json::from_str(text).expect("embedded OpenAPI spec is JSON");
        if let Some(Value::Object(defs)) = doc.get_mut("definitions") {
            for schema in defs.values_mut() {
                go_semantics(schema);
            }
        }
        let shared_params = doc.get("parameters").cloned().unwrap_or(Value::Null);
        let mut operations = Vec::new();
        if let Some(Value::Object(paths)) = doc.get("paths") {
            for (template, item) in paths {
                let Some(item) = item.as_object() else {
                    continue;
                };
                for (method, op) in item {
                    let Ok(method) = method.to_ascii_uppercase().parse::<Method>() else {
                        continue;
                    };
                    operations.push(Operation::parse(template, method, op, &shared_params));
                }
            }
        }
        // Literal segments win over parameters (`/objects/validate` before `/objects/{id}`).
        operations.sort_by_key(|op| {
            std::cmp::Reverse(
                op.segments
                    .iter()
                    .filter(|s| matches!(s, Segment::Literal(_)))
                    .count(),
            )
        });
        Spec {
            doc,
            operations,
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// The operation serving `method path` (path without the `/v1` base), with its path
    /// parameters.
    pub(crate) fn find(
        &self,
        method: &Method,
        path: &str,
    ) -> Option<(&Operation, HashMap<String, String>)> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        'ops: for op in &self.operations {
            if op.method != *method || op.segments.len() != parts.len() {
                continue;
            }
            let mut params = HashMap::new();
            for (segment, part) in op.segments.iter().zip(&parts) {
                match segment {
                    Segment::Literal(l) if l == part => {}
                    Segment::Literal(_) => continue 'ops,
                    Segment::Param(name) if !part.is_empty() => {
                        params.insert(name.clone(), percent_decode(part));
                    }
                    Segment::Param(_) => continue 'ops,
                }
            }
            return Some((op, params));
        }
        None
    }

    /// Whether any operation exists on this path with another method (405 rather than 404).
    pub(crate) fn path_exists(&self, path: &str) -> bool {
        [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::HEAD,
        ]
        .iter()
        .any(|m| self.find(m, path).is_some())
    }

    fn validator(&self, key: &str, schema: &Value) -> Arc<Validator> {
        let mut cache = self.validators.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = cache.get(key) {
            return v.clone();
        }
        let mut schema = schema.clone();
        go_semantics(&mut schema);
        let root = json!({
            "definitions": self.doc.get("definitions").cloned().unwrap_or(Value::Null),
            "allOf": [schema],
        });
        let validator = jsonschema::options()
            .with_draft(Draft::Draft4)
            .should_validate_formats(true)
            .with_format("uuid", |s: &str| uuid::Uuid::parse_str(s).is_ok())
            .build(&root)
            .unwrap_or_else(|e| panic!("spec schema for {key} does not compile: {e}"));
        let validator = Arc::new(validator);
        cache.insert(key.to_owned(), validator.clone());
        validator
    }
}

impl Operation {
    fn parse(template: &str, method: Method, op: &Value, shared: &Value) -> Operation {
        let segments = template
            .trim_start_matches('/')
            .split('/')
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => Segment::Param(name.to_owned()),
                    None => Segment::Literal(s.to_owned()),
                },
            )
            .collect();
        let mut params = Vec::new();
        let mut body = None;
        for p in op
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let p = match p.get("$ref").and_then(Value::as_str) {
                Some(r) => shared
                    .get(r.trim_start_matches("#/parameters/"))
                    .cloned()
                    .unwrap_or(Value::Null),
                None => p.clone(),
            };
            if p.get("in").and_then(Value::as_str) == Some("body") {
                body = Some(BodyParam {
                    name: p["name"].as_str().unwrap_or("body").to_owned(),
                    required: p.get("required").and_then(Value::as_bool) == Some(true),
                    schema: p.get("schema").cloned().unwrap_or(json!({})),
                });
            } else {
                params.push(p);
            }
        }
        Operation {
            id: op
                .get("operationId")
                .and_then(Value::as_str)
                .unwrap_or(template)
                .to_owned(),
            method,
            segments,
            body,
            params,
            responses: op
                .get("responses")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// The names of the query parameters the spec declares for this operation.
    pub(crate) fn query_parameters(&self) -> Vec<&str> {
        self.params
            .iter()
            .filter(|p| p.get("in").and_then(Value::as_str) == Some("query"))
            .filter_map(|p| p.get("name").and_then(Value::as_str))
            .collect()
    }

    /// Check path and query parameters and the body as go-swagger does before Weaviate's handler
    /// runs. Returns the parsed body (`None` when the operation takes none or it was empty).
    pub(crate) fn check_request(
        &self,
        path_params: &HashMap<String, String>,
        query: &[(String, String)],
        body: &[u8],
    ) -> Result<Option<Value>, Rejection> {
        for p in &self.params {
            let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
            let location = p.get("in").and_then(Value::as_str).unwrap_or_default();
            let value = match location {
                "path" => path_params.get(name).cloned(),
                "query" => query
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone()),
                _ => None,
            };
            let Some(value) = value else { continue };
            let format = p.get("format").and_then(Value::as_str);
            let kind = p.get("type").and_then(Value::as_str);
            let bad_type = |t: &str| {
                Rejection::new(
                    422,
                    601,
                    format!("{name} in {location} must be of type {t}: {value:?}"),
                )
            };
            if format == Some("uuid") && uuid::Uuid::parse_str(&value).is_err() {
                return Err(bad_type("uuid"));
            }
            if kind == Some("integer") && value.parse::<i64>().is_err() {
                return Err(bad_type("int64"));
            }
            if kind == Some("boolean") && value.parse::<bool>().is_err() {
                return Err(bad_type("bool"));
            }
        }

        let Some(param) = &self.body else {
            return Ok(None);
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            if param.required {
                return Err(Rejection::new(
                    422,
                    602,
                    format!("{} in body is required", param.name),
                ));
            }
            return Ok(None);
        }
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            Rejection::new(
                400,
                400,
                format!("parsing {} body from \"\" failed, because {e}", param.name),
            )
        })?;
        let mut value = value;
        let validator = spec().validator(&format!("{}:request", self.id), &param.schema);
        let problem = with_compacted(&mut value, |v| {
            validator
                .iter_errors(v)
                .next()
                .map(|error| rejection(&param.name, &error))
        });
        match problem {
            Some(rejection) => Err(rejection),
            None => Ok(Some(value)),
        }
    }

    /// Check a response against the spec: its status must be declared, and a declared schema
    /// must match the body.
    pub(crate) fn check_response(
        &self,
        status: u16,
        body: Option<&mut Value>,
    ) -> Result<(), String> {
        let declared = self
            .responses
            .get(&status.to_string())
            .or_else(|| self.responses.get("default"))
            .ok_or_else(|| format!("{} does not declare status {status}", self.id))?;
        let Some(schema) = declared.get("schema") else {
            return Ok(());
        };
        let Some(body) = body else {
            // go-swagger's error responders (`NewXNotFound()`) may carry no payload: a declared
            // error schema does not make a body required.
            if status >= 400 {
                return Ok(());
            }
            return Err(format!(
                "{} {status} declares a body schema but the response has no body",
                self.id
            ));
        };
        let validator = spec().validator(&format!("{}:{status}", self.id), schema);
        with_compacted(body, |body| match validator.iter_errors(body).next() {
            None => Ok(()),
            Some(e) => Err(format!(
                "{} {status}: {e} at {}",
                self.id,
                e.instance_path()
            )),
        })
    }
}

/// Arrays of numbers longer than this are checked through representatives.
const LONG_ARRAY: usize = 8;

/// Run `check` on `value` with every long array of numbers (and nulls) cut down to one element
/// of each kind, then put the arrays back (in place: nothing large is copied).
///
/// Vectors dominate the cost of checking a body (a batch of 256 objects carries 98,304 floats,
/// and the batch answer echoes them). Weaviate's spec constrains neither the length of an array
/// (no `minItems`/`maxItems`/`uniqueItems`) nor the values of number array items (its only
/// `minimum`/`maximum` is on a scalar), so every element of such an array meets the same item
/// schema and only its JSON kind can matter (null, integral, fractional: an `integer` item
/// schema refuses only the last): keeping the first of each decides the whole array. An array holding anything else
/// (a string among numbers) is kept whole, so its error is still found. (An error inside a
/// shortened array would name the representative's index; none can occur with this spec.)
fn with_compacted<R>(value: &mut Value, check: impl FnOnce(&Value) -> R) -> R {
    /// For a long array of numbers and nulls only: its first null, integral and fractional
    /// element (what an item schema can tell apart), in one pass.
    fn representatives(items: &[Value]) -> Option<Vec<Value>> {
        if items.len() <= LONG_ARRAY {
            return None;
        }
        let (mut null, mut integral, mut fractional) = (None, None, None);
        for item in items {
            match item {
                Value::Number(n) if integral.is_none() || fractional.is_none() => {
                    // A cast instead of `fract()`: this runs for every float of every vector.
                    let is_integral =
                        !n.is_f64() || n.as_f64().is_some_and(|f| f == (f as i64) as f64);
                    if is_integral {
                        integral.get_or_insert(item);
                    } else {
                        fractional.get_or_insert(item);
                    }
                }
                Value::Number(_) => {}
                Value::Null => {
                    null.get_or_insert(item);
                }
                _ => return None,
            }
        }
        Some(
            [null, integral, fractional]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
        )
    }
    // One entry per array in pre-order: the original items of a shortened one.
    fn shrink(value: &mut Value, saved: &mut Vec<Option<Vec<Value>>>) {
        match value {
            Value::Array(items) => match representatives(items) {
                Some(short) => saved.push(Some(std::mem::replace(items, short))),
                None => {
                    saved.push(None);
                    items.iter_mut().for_each(|v| shrink(v, saved));
                }
            },
            Value::Object(map) => map.values_mut().for_each(|v| shrink(v, saved)),
            _ => {}
        }
    }
    fn restore(value: &mut Value, saved: &mut std::vec::IntoIter<Option<Vec<Value>>>) {
        match value {
            Value::Array(items) => match saved.next().flatten() {
                Some(original) => *items = original,
                None => items.iter_mut().for_each(|v| restore(v, saved)),
            },
            Value::Object(map) => map.values_mut().for_each(|v| restore(v, saved)),
            _ => {}
        }
    }
    let mut saved = Vec::new();
    shrink(value, &mut saved);
    if saved.iter().all(Option::is_none) {
        return check(value);
    }
    let result = check(value);
    restore(value, &mut saved.into_iter());
    result
}

/// Rewrite a spec schema to what go-swagger's generated code accepts (see the module docs).
fn go_semantics(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    for key in ["properties", "definitions", "patternProperties"] {
        if let Some(Value::Object(children)) = map.get_mut(key) {
            children.values_mut().for_each(go_semantics);
        }
    }
    for key in ["additionalProperties", "items", "not"] {
        match map.get_mut(key) {
            Some(v @ Value::Object(_)) => go_semantics(v),
            Some(Value::Array(items)) => items.iter_mut().for_each(go_semantics),
            _ => {}
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(items)) = map.get_mut(key) {
            items.iter_mut().for_each(go_semantics);
        }
    }
    if let Some(Value::String(kind)) = map.get("type").cloned() {
        let opaque = kind == "object"
            && !map.contains_key("properties")
            && !map.contains_key("additionalProperties")
            && !map.contains_key("allOf");
        if opaque {
            map.remove("type");
        } else {
            map.insert("type".into(), json!([kind, "null"]));
        }
    }
}

/// go-openapi's answer to the first validation error.
fn rejection(body_name: &str, error: &ValidationError<'_>) -> Rejection {
    let pointer = error.instance_path().to_string();
    let path = pointer
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".");
    let instance = error.instance();
    match error.kind() {
        ValidationErrorKind::Type { kind } => {
            let at = if path.is_empty() {
                String::new()
            } else {
                format!(" (field {path})")
            };
            Rejection::new(
                400,
                400,
                format!(
                    "parsing {body_name} body from \"\" failed, because json: cannot unmarshal \
                     {} into Go value of type {}{at}",
                    json_type(instance),
                    go_type(&format!("{kind:?}")),
                ),
            )
        }
        ValidationErrorKind::Format { format } => Rejection::new(
            422,
            601,
            format!(
                "{path} in body must be of type {format}: {:?}",
                instance.as_str().unwrap_or_default()
            ),
        ),
        ValidationErrorKind::Enum { options } => {
            let options: Vec<String> = options
                .as_array()
                .map(|o| {
                    o.iter()
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            Rejection::new(
                422,
                606,
                format!("{path} in body should be one of [{}]", options.join(" ")),
            )
        }
        ValidationErrorKind::Required { property } => {
            let property = property.as_str().unwrap_or_default();
            let full = if path.is_empty() {
                property.to_owned()
            } else {
                format!("{path}.{property}")
            };
            Rejection::new(422, 602, format!("{full} in body is required"))
        }
        _ => Rejection::new(422, 600, format!("{path} in body is invalid: {error}")),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A readable Go-ish name for the JSON-schema type(s) that were expected.
fn go_type(debug: &str) -> &'static str {
    let d = debug.to_ascii_lowercase();
    if d.contains("array") {
        "[]interface {}"
    } else if d.contains("object") {
        "struct"
    } else if d.contains("integer") {
        "int64"
    } else if d.contains("number") {
        "float64"
    } else if d.contains("boolean") {
        "bool"
    } else {
        "string"
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_operations_with_literals_before_parameters() {
        let s = spec();
        let (op, params) = s
            .find(
                &Method::PUT,
                "/objects/Product/fe45772b-8fae-53e0-b955-515010125b4c",
            )
            .expect("route");
        assert_eq!(op.id, "objects.class.put");
        assert_eq!(params["className"], "Product");
        let (op, _) = s.find(&Method::POST, "/objects/validate").expect("route");
        assert_eq!(op.id, "objects.validate");
        let (op, _) = s.find(&Method::DELETE, "/batch/objects").expect("route");
        assert_eq!(op.id, "batch.objects.delete");
        assert!(s.find(&Method::GET, "/nope").is_none());
    }

    #[test]
    fn uuid_format_is_a_422_with_go_openapi_shape() {
        let (op, params) = spec()
            .find(
                &Method::PUT,
                "/objects/Product/fe45772b-8fae-53e0-b955-515010125b4c",
            )
            .expect("route");
        let r = op
            .check_request(&params, &[], br#"{"class":"Product","id":"nope"}"#)
            .expect_err("invalid");
        assert_eq!(r.status, 422);
        assert_eq!(r.body["code"], 601);
        assert_eq!(
            r.body["message"],
            "id in body must be of type uuid: \"nope\""
        );
    }

    #[test]
    fn wrong_json_type_is_a_400_parse_error() {
        let (op, params) = spec().find(&Method::POST, "/batch/objects").expect("route");
        let r = op
            .check_request(&params, &[], br#"{"objects":[{"vector":"abc"}]}"#)
            .expect_err("invalid");
        assert_eq!(r.status, 400);
        assert!(
            r.body["message"]
                .as_str()
                .expect("message")
                .starts_with("parsing body body from \"\" failed"),
            "{}",
            r.body
        );
    }

    #[test]
    fn nulls_and_opaque_objects_pass_like_in_go() {
        let (op, params) = spec().find(&Method::POST, "/batch/objects").expect("route");
        let ok = op.check_request(
            &params,
            &[],
            br#"{"objects":[{"class":null,"properties":"anything","vector":[1,null]}]}"#,
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn missing_required_body_and_bad_enum() {
        let (op, params) = spec().find(&Method::POST, "/schema").expect("route");
        let r = op.check_request(&params, &[], b"").expect_err("required");
        assert_eq!((r.status, r.body["code"].as_u64()), (422, Some(602)));
        assert_eq!(r.body["message"], "objectClass in body is required");
        let r = op
            .check_request(
                &params,
                &[],
                br#"{"class":"A","properties":[{"name":"x","tokenization":"nope"}]}"#,
            )
            .expect_err("enum");
        assert_eq!((r.status, r.body["code"].as_u64()), (422, Some(606)));
        assert!(
            r.body["message"]
                .as_str()
                .expect("message")
                .starts_with("properties.0.tokenization in body should be one of [word"),
            "{}",
            r.body
        );
    }

    #[test]
    fn long_vectors_are_checked_through_representatives_without_missing_an_error() {
        let (op, params) = spec().find(&Method::POST, "/batch/objects").expect("route");
        let vector: Vec<Value> = (0..384).map(|i| json!(f64::from(i) * 0.5 - 7.0)).collect();
        let ok = json!({"objects": [{"class": "P", "vector": vector}]}).to_string();
        assert!(op.check_request(&params, &[], ok.as_bytes()).is_ok());
        let mut bad = vector.clone();
        bad[300] = json!("x");
        let bad = json!({"objects": [{"class": "P", "vector": bad}]}).to_string();
        let r = op
            .check_request(&params, &[], bad.as_bytes())
            .expect_err("a string in a vector");
        assert_eq!(r.status, 400, "{}", r.body);
        let mut value =
            json!({"v": vector, "short": [1, 2], "nested": [[1, 2, 3, 4, 5, 6, 7, 8, 9]]});
        let original = value.clone();
        let seen = with_compacted(&mut value, Value::clone);
        assert_eq!(seen["v"], json!([-7.0, -6.5]), "one of each kind");
        assert_eq!(seen["short"], json!([1, 2]));
        assert_eq!(seen["nested"], json!([[1]]));
        assert_eq!(value, original, "every array is put back");
    }

    #[test]
    fn responses_are_checked_against_declared_statuses_and_schemas() {
        let (op, _) = spec().find(&Method::GET, "/meta").expect("route");
        assert!(
            op.check_response(200, Some(&mut json!({"version":"1.39.0"})))
                .is_ok()
        );
        assert!(
            op.check_response(200, Some(&mut json!({"version": 139})))
                .is_err()
        );
        assert!(op.check_response(404, None).is_err(), "404 is not declared");
    }
}
