//! "What does Weaviate hold for these objects?": one request for many ids, and the cursor listing
//! of a whole class.
//!
//! Both feed the one diff of the pipeline (`pipeline::reconcile`): the snapshot skipping rows
//! Weaviate already holds, updates that keep their vector written in bulk with the stored vector,
//! `vecsync verify`, and the stale-object sweep.
//!
//! # Fetching by id
//! REST has no filtered listing, so this is GraphQL (CONTRACT.md, "Fetching many objects by id
//! in one request"): `Get { Class(where: {path: ["id"], operator: ContainsAny, valueText: [...]},
//! limit: n) { props _additional { id vector } } }`, lowercase canonical UUIDs, at most
//! [`FETCH_CHUNK`] ids per request. Missing ids are simply absent from the answer.
//!
//! # Exact vectors
//! A vector fetched here may be written back as the stored vector of an unchanged text, and
//! Weaviate skips the vector-index work only when it is exactly equal. Weaviate prints `float32`s
//! in their shortest round-trip form; each one is parsed here straight to `f32` (correctly rounded
//! by `str::parse`), never through an `f64`, so the bits come back unchanged.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::error::SinkError;
use super::product::{Product, StoredProduct};
use super::weaviate::{Call, WeaviateSink};

/// Most ids in one GraphQL request (Weaviate has no limit on the values; its
/// `QUERY_MAXIMUM_RESULTS` caps the answer at 10,000 by default).
pub const FETCH_CHUNK: usize = 1000;

impl WeaviateSink {
    /// The stored objects among `ids`, with their vectors when `vectors` is true. One GraphQL
    /// request per [`FETCH_CHUNK`] ids.
    pub async fn fetch(
        &self,
        ids: &[Uuid],
        vectors: bool,
    ) -> Result<HashMap<Uuid, StoredProduct>, SinkError> {
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(FETCH_CHUNK) {
            let body = fetch_request(self.class(), &self.property_names(), chunk, vectors);
            let call = Call::new(Method::POST, "graphql".into()).json(&body);
            let answer = self.send(&call).await?;
            if answer.status != StatusCode::OK {
                return Err(self.status_error(&call, &answer));
            }
            for stored in parse_fetch_response(self.class(), &answer.body)? {
                found.insert(stored.id, stored);
            }
        }
        Ok(found)
    }

    /// One page of the class in id order, after `after` (Weaviate's cursor listing:
    /// `GET /v1/objects?class=C&limit=N&after=ID`): each object's id and `sku` property. An empty
    /// page means the end.
    pub async fn list_page(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<(Uuid, Option<String>)>, SinkError> {
        let mut call = Call::new(Method::GET, "objects".into())
            .query("class", self.class().to_owned())
            .query("limit", limit.max(1).to_string());
        if let Some(after) = after {
            call = call.query("after", after.to_string());
        }
        let answer = self.send(&call).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !answer.status.is_success() {
            return Err(self.status_error(&call, &answer));
        }
        let body = self.parse_json(&call, &answer)?;
        let unexpected = |detail: String| SinkError::UnexpectedResponse {
            what: call.what(),
            detail,
        };
        let objects = match body.get("objects") {
            Some(Value::Array(objects)) => objects.as_slice(),
            Some(Value::Null) | None => &[],
            Some(other) => return Err(unexpected(format!("objects is not a list: {other}"))),
        };
        objects
            .iter()
            .map(|o| {
                let id = o
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .ok_or_else(|| unexpected(format!("object without a valid id: {o}")))?;
                let sku = o
                    .pointer("/properties/sku")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                Ok((id, sku))
            })
            .collect()
    }
}

/// The GraphQL body that fetches `ids` of `class` with `properties`.
fn fetch_request(class: &str, properties: &[String], ids: &[Uuid], vectors: bool) -> Value {
    let mut list = String::with_capacity(ids.len() * 39);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        list.push('"');
        // Hyphenated lowercase: the id is compared as text.
        list.push_str(&id.hyphenated().to_string());
        list.push('"');
    }
    let additional = if vectors { "id vector" } else { "id" };
    // `class` and the property names are checked against Weaviate's name rules when the sink is
    // built, and UUIDs are hex and hyphens: nothing here can break out of the query.
    let query = format!(
        "{{ Get {{ {class}(where: {{path: [\"id\"], operator: ContainsAny, valueText: [{list}]}}, \
         limit: {limit}) {{ {props} _additional {{ {additional} }} }} }} }}",
        limit = ids.len().max(1),
        props = properties.join(" "),
    );
    json!({ "query": query })
}

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow, default)]
    data: Option<Data<'a>>,
    #[serde(default)]
    errors: Option<Vec<GraphQlError>>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(rename = "Get", borrow)]
    get: HashMap<String, Option<Vec<Item<'a>>>>,
}

#[derive(Deserialize)]
struct GraphQlError {
    #[serde(default)]
    message: String,
}

/// One object of the answer: its properties, and `_additional` with the vector left as raw text.
struct Item<'a> {
    properties: Map<String, Value>,
    id: Option<Uuid>,
    vector: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Item<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        #[derive(Deserialize)]
        struct Additional<'a> {
            #[serde(default)]
            id: Option<Uuid>,
            #[serde(borrow, default)]
            vector: Option<&'a RawValue>,
        }
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Item<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of a GraphQL Get answer")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Item<'a>, M::Error> {
                let mut item = Item {
                    properties: Map::new(),
                    id: None,
                    vector: None,
                };
                while let Some(key) = map.next_key::<String>()? {
                    if key == "_additional" {
                        let extra: Additional<'a> = map.next_value()?;
                        item.id = extra.id;
                        item.vector = extra.vector;
                    } else {
                        item.properties.insert(key, map.next_value()?);
                    }
                }
                Ok(item)
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// The stored objects in a GraphQL fetch answer.
fn parse_fetch_response(class: &str, body: &[u8]) -> Result<Vec<StoredProduct>, SinkError> {
    let unexpected = |detail: String| SinkError::UnexpectedResponse {
        what: "POST /v1/graphql (fetch by id)".into(),
        detail,
    };
    let answer: Answer<'_> = serde_json::from_slice(body)
        .map_err(|e| unexpected(format!("not a GraphQL answer: {e}")))?;
    if let Some(errors) = answer.errors.filter(|e| !e.is_empty()) {
        let messages: Vec<String> = errors.into_iter().map(|e| e.message).collect();
        return Err(SinkError::GraphQl(messages.join("; ")));
    }
    let items = answer
        .data
        .and_then(|mut d| d.get.remove(class))
        .flatten()
        .unwrap_or_default();
    items
        .into_iter()
        .map(|item| {
            let id = item
                .id
                .ok_or_else(|| unexpected("an object without _additional.id".into()))?;
            let product = Product::from_properties(&Value::Object(item.properties))
                .map_err(|e| unexpected(format!("object {id}: {e}")))?;
            let vector = match item.vector {
                None => None,
                Some(raw) => parse_vector(raw.get())
                    .map_err(|e| unexpected(format!("object {id}: vector {e}")))?,
            };
            Ok(StoredProduct {
                id,
                product,
                vector,
            })
        })
        .collect()
}

/// A JSON array of numbers as exact `f32`s; `null` or `[]` is no vector.
pub(crate) fn parse_vector(text: &str) -> Result<Option<Vec<f32>>, String> {
    let text = text.trim();
    if text == "null" {
        return Ok(None);
    }
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| format!("is not a list: {}", snippet(text)))?
        .trim();
    if inner.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(inner.len() / 10);
    for part in inner.split(',') {
        let part = part.trim();
        let value: f32 = part
            .parse()
            .map_err(|_| format!("has a non-number {}", snippet(part)))?;
        if !value.is_finite() {
            return Err(format!("has a non-finite number {}", snippet(part)));
        }
        out.push(value);
    }
    Ok(Some(out))
}

fn snippet(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lists_every_id_and_the_properties() {
        let a = Uuid::parse_str("fe45772b-8fae-53e0-b955-515010125b4c").expect("uuid");
        let b = Uuid::parse_str("C1F1203A-0B6A-5256-BEA3-D770A2E910DE").expect("uuid");
        let body = fetch_request("Product", &["sku".into(), "price".into()], &[a, b], true);
        let q = body["query"].as_str().expect("query");
        assert!(
            q.contains(
                r#"Product(where: {path: ["id"], operator: ContainsAny, valueText: ["fe45772b-8fae-53e0-b955-515010125b4c","c1f1203a-0b6a-5256-bea3-d770a2e910de"]}, limit: 2)"#
            ),
            "{q}"
        );
        assert!(q.contains("{ sku price _additional { id vector } }"), "{q}");
        let q = fetch_request("Product", &["sku".into()], &[a], false)["query"].to_string();
        assert!(q.contains("_additional { id }"), "{q}");
    }

    #[test]
    fn vectors_come_back_bit_exact() {
        // Random f32s, printed the way Weaviate (Go, float32 shortest form) and serde_json print
        // them, must parse back to the same bits.
        let seed = 0x00c0_ffee_u64;
        println!("seed {seed}");
        let mut x = seed;
        let mut values = Vec::new();
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let bits = (x >> 32) as u32;
            let v = f32::from_bits(bits);
            if v.is_finite() {
                values.push(v);
            }
        }
        values.extend([
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
            f32::MAX,
            1e-45,
            0.1,
            -0.333_333_34,
        ]);
        let text = serde_json::to_string(&values).expect("serialize");
        let back = parse_vector(&text).expect("parse").expect("a vector");
        assert_eq!(back.len(), values.len());
        for (a, b) in values.iter().zip(&back) {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "seed {seed}: {a} came back as {b}"
            );
        }
        assert_eq!(parse_vector("null"), Ok(None));
        assert_eq!(parse_vector("[ ]"), Ok(None));
        assert!(parse_vector("[1, \"x\"]").is_err());
        assert!(parse_vector("{}").is_err());
    }

    #[test]
    fn answer_is_read_with_properties_and_vector() {
        let body = br#"{"data":{"Get":{"Product":[
            {"sku":"A","name":"a","description":null,"price":1.5,
             "_additional":{"id":"fe45772b-8fae-53e0-b955-515010125b4c","vector":[0.5,-0.25]}},
            {"sku":"B","name":null,"description":"b","price":null,
             "_additional":{"id":"c1f1203a-0b6a-5256-bea3-d770a2e910de","vector":null}}
        ]}}}"#;
        let got = parse_fetch_response("Product", body).expect("valid");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].product.sku, "A");
        assert_eq!(got[0].vector.as_deref(), Some(&[0.5f32, -0.25][..]));
        assert_eq!(got[1].vector, None);
        assert_eq!(got[1].product.description.as_deref(), Some("b"));
        let none =
            parse_fetch_response("Product", br#"{"data":{"Get":{"Product":[]}}}"#).expect("valid");
        assert!(none.is_empty());
    }

    #[test]
    fn graphql_errors_are_errors() {
        let e = parse_fetch_response(
            "Product",
            br#"{"errors":[{"message":"Unknown argument \"where\""}]}"#,
        )
        .expect_err("error");
        assert!(e.to_string().contains("Unknown argument"), "{e}");
    }
}
