//! Search queries, the only place vecsync speaks GraphQL for searching: nearest neighbours by
//! vector (`nearVector`), Weaviate's hybrid query (BM25 + vector, `hybrid`), both optionally
//! narrowed by simple property filters (`where`).
//!
//! Weaviate announced the deprecation of its GraphQL API on 2026-10-26 (self-hosted servers keep
//! it until at least 2027-05-01), and its REST `/v1/search/...` endpoints do not offer these
//! searches yet. Everything GraphQL-specific stays in this file (building the query, reading the
//! answer), so moving to the newer search API touches nothing else.
//!
//! # Hybrid
//! `hybrid: {query, vector, alpha, properties}` (CONTRACT.md): the vector is vecsync's own
//! embedding of the query (the class has no vectorizer), `alpha` weighs the vector side (0 =
//! keyword only, 1 = vector only; Weaviate's default 0.75 when absent), fusion is Weaviate's
//! default `relativeScoreFusion`. Hits carry Weaviate's `score` (sent as a string) instead of a
//! distance.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use super::error::SinkError;
use super::product::Product;
use super::weaviate::{Call, WeaviateSink};

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub id: Uuid,
    /// `1 - cosine similarity` for a cosine class: smaller is closer. Vector searches only.
    pub distance: Option<f32>,
    /// The fused score of a hybrid search: larger is better.
    pub score: Option<f32>,
    pub product: Product,
}

/// A comparison of a `where` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Equal,
    NotEqual,
    LessThan,
    LessThanEqual,
    GreaterThan,
    GreaterThanEqual,
}

impl FilterOp {
    /// Weaviate's operator name.
    pub fn as_weaviate(self) -> &'static str {
        match self {
            FilterOp::Equal => "Equal",
            FilterOp::NotEqual => "NotEqual",
            FilterOp::LessThan => "LessThan",
            FilterOp::LessThanEqual => "LessThanEqual",
            FilterOp::GreaterThan => "GreaterThan",
            FilterOp::GreaterThanEqual => "GreaterThanEqual",
        }
    }
}

/// The value a property is compared with; its kind must match the property's data type.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterValue {
    Text(String),
    Number(f64),
}

/// `property op value`, e.g. `price < 50`.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyFilter {
    pub property: String,
    pub op: FilterOp,
    pub value: FilterValue,
}

/// The keyword half of a hybrid search.
#[derive(Debug, Clone, PartialEq)]
pub struct HybridQuery {
    /// The text BM25 ranks by.
    pub query: String,
    /// Weight of the vector side, 0 to 1; `None` leaves Weaviate's default (0.75).
    pub alpha: Option<f32>,
    /// Text properties BM25 searches; empty: every searchable text property.
    pub properties: Vec<String>,
}

/// A search: the query's vector, optionally hybrid, optionally filtered. All filters must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    pub vector: Vec<f32>,
    pub limit: usize,
    pub hybrid: Option<HybridQuery>,
    pub filters: Vec<PropertyFilter>,
}

impl WeaviateSink {
    /// Run `query` against the class; hits best first, as Weaviate ranked them.
    pub async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, SinkError> {
        let body = search_request(self.class(), query)?;
        let call = Call::new(Method::POST, "graphql".into()).json(&body);
        let answer = self.send(&call).await?;
        if answer.status != StatusCode::OK {
            return Err(self.status_error(&call, &answer));
        }
        let body = self.parse_json(&call, &answer)?;
        parse_search_response(self.class(), &body)
    }
}

/// The body of `POST /v1/graphql` for the `limit` objects of `class` nearest to `vector`.
pub(crate) fn near_vector_request(
    class: &str,
    vector: &[f32],
    limit: usize,
) -> Result<Value, SinkError> {
    search_request(
        class,
        &SearchQuery {
            vector: vector.to_vec(),
            limit,
            hybrid: None,
            filters: Vec::new(),
        },
    )
}

/// Read the hits of a `nearVector` answer, nearest first.
pub(crate) fn parse_near_vector_response(
    class: &str,
    body: &Value,
) -> Result<Vec<SearchHit>, SinkError> {
    parse_search_response(class, body)
}

/// The body of `POST /v1/graphql` for `query`.
///
/// The vector is written inline, as Weaviate's own clients do; Rust prints floats in plain
/// decimal notation, which is valid GraphQL. Texts are GraphQL string literals (JSON escaping is
/// valid GraphQL escaping), so no value can break out of the query.
pub(crate) fn search_request(class: &str, query: &SearchQuery) -> Result<Value, SinkError> {
    if let Some(bad) = query.vector.iter().find(|v| !v.is_finite()) {
        return Err(SinkError::Config(format!(
            "cannot search with a vector containing {bad}"
        )));
    }
    let mut list = String::with_capacity(query.vector.len() * 12);
    for (i, v) in query.vector.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        list.push_str(&v.to_string());
    }
    let mut arguments = match &query.hybrid {
        None => format!("nearVector: {{vector: [{list}]}}"),
        Some(h) => {
            let mut args = format!("query: {}, vector: [{list}]", literal(&h.query));
            if let Some(alpha) = h.alpha {
                if !(0.0..=1.0).contains(&alpha) {
                    return Err(SinkError::Config(format!(
                        "hybrid alpha must be between 0 and 1, got {alpha}"
                    )));
                }
                args.push_str(&format!(", alpha: {alpha}"));
            }
            if !h.properties.is_empty() {
                let props: Vec<String> = h.properties.iter().map(|p| literal(p)).collect();
                args.push_str(&format!(", properties: [{}]", props.join(", ")));
            }
            format!("hybrid: {{{args}}}")
        }
    };
    if let Some(filter) = where_filter(&query.filters)? {
        arguments.push_str(&format!(", where: {filter}"));
    }
    let additional = if query.hybrid.is_some() {
        "id score"
    } else {
        "id distance"
    };
    // `class` is checked against Weaviate's class-name rule when the sink is built, so it
    // cannot break out of the query.
    let q = format!(
        "{{ Get {{ {class}({arguments}, limit: {limit}) \
         {{ sku name description price _additional {{ {additional} }} }} }} }}",
        limit = query.limit
    );
    Ok(json!({ "query": q }))
}

/// A GraphQL `where` argument: one condition, or `And` over several.
fn where_filter(filters: &[PropertyFilter]) -> Result<Option<String>, SinkError> {
    let conditions = filters
        .iter()
        .map(|f| {
            if !f
                .property
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
                || f.property.is_empty()
            {
                return Err(SinkError::Config(format!(
                    "cannot filter on property {:?}",
                    f.property
                )));
            }
            let value = match &f.value {
                FilterValue::Text(t) => format!("valueText: {}", literal(t)),
                FilterValue::Number(n) if n.is_finite() => format!("valueNumber: {n}"),
                FilterValue::Number(n) => {
                    return Err(SinkError::Config(format!(
                        "cannot filter with the number {n}"
                    )));
                }
            };
            Ok(format!(
                "{{path: [{}], operator: {}, {value}}}",
                literal(&f.property),
                f.op.as_weaviate()
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match conditions.len() {
        0 => None,
        1 => conditions.into_iter().next(),
        _ => Some(format!(
            "{{operator: And, operands: [{}]}}",
            conditions.join(", ")
        )),
    })
}

/// A GraphQL string literal.
fn literal(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// Read the hits out of a GraphQL answer, in Weaviate's order.
pub(crate) fn parse_search_response(
    class: &str,
    body: &Value,
) -> Result<Vec<SearchHit>, SinkError> {
    if let Some(errors) = body
        .get("errors")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
    {
        let messages: Vec<&str> = errors
            .iter()
            .filter_map(|e| e.get("message").and_then(Value::as_str))
            .collect();
        return Err(SinkError::GraphQl(messages.join("; ")));
    }
    let unexpected = |detail: String| SinkError::UnexpectedResponse {
        what: "POST /v1/graphql".into(),
        detail,
    };
    let items = match body.pointer(&format!("/data/Get/{class}")) {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => return Ok(Vec::new()),
        Some(other) => return Err(unexpected(format!("Get.{class} is not a list: {other}"))),
    };
    items
        .iter()
        .map(|item| {
            let additional = item
                .get("_additional")
                .ok_or_else(|| unexpected(format!("hit without _additional: {item}")))?;
            let id = additional
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| unexpected(format!("hit without a valid id: {item}")))?;
            let distance = additional
                .get("distance")
                .and_then(Value::as_f64)
                .map(|d| d as f32);
            // Weaviate sends the score as a string ("0.8"); accept a number too.
            let score = match additional.get("score") {
                Some(Value::String(s)) => Some(s.trim().parse::<f32>().map_err(|_| {
                    unexpected(format!("hit with a score that is not a number: {item}"))
                })?),
                Some(Value::Number(n)) => n.as_f64().map(|f| f as f32),
                _ => None,
            };
            if distance.is_none() && score.is_none() {
                return Err(unexpected(format!(
                    "hit without a distance or a score: {item}"
                )));
            }
            let product = Product::from_properties(item).map_err(unexpected)?;
            Ok(SearchHit {
                id,
                distance,
                score,
                product,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(hybrid: Option<HybridQuery>, filters: Vec<PropertyFilter>) -> String {
        let body = search_request(
            "Product",
            &SearchQuery {
                vector: vec![0.5, -0.25],
                limit: 3,
                hybrid,
                filters,
            },
        )
        .expect("valid");
        body["query"].as_str().expect("query").to_owned()
    }

    #[test]
    fn query_inlines_the_vector_and_asks_for_distance() {
        let body = near_vector_request("Product", &[0.5, -0.25, 1e-7], 3).expect("finite");
        let q = body["query"].as_str().expect("query");
        assert!(
            q.contains("Product(nearVector: {vector: [0.5,-0.25,0.0000001]}, limit: 3)"),
            "{q}"
        );
        assert!(q.contains("_additional { id distance }"), "{q}");
    }

    #[test]
    fn non_finite_vectors_are_refused() {
        assert!(near_vector_request("Product", &[f32::NAN], 1).is_err());
    }

    #[test]
    fn hybrid_sends_query_vector_alpha_and_properties_and_asks_for_score() {
        let q = query(
            Some(HybridQuery {
                query: "red \"running\" shoes".into(),
                alpha: Some(0.25),
                properties: vec!["name".into(), "description".into()],
            }),
            Vec::new(),
        );
        assert!(
            q.contains(
                r#"Product(hybrid: {query: "red \"running\" shoes", vector: [0.5,-0.25], alpha: 0.25, properties: ["name", "description"]}, limit: 3)"#
            ),
            "{q}"
        );
        assert!(q.contains("_additional { id score }"), "{q}");
        let default_alpha = query(
            Some(HybridQuery {
                query: "x".into(),
                alpha: None,
                properties: Vec::new(),
            }),
            Vec::new(),
        );
        assert!(!default_alpha.contains("alpha"), "{default_alpha}");
        assert!(!default_alpha.contains("properties"), "{default_alpha}");
    }

    #[test]
    fn alpha_outside_zero_to_one_is_refused() {
        let bad = search_request(
            "Product",
            &SearchQuery {
                vector: vec![1.0],
                limit: 1,
                hybrid: Some(HybridQuery {
                    query: "x".into(),
                    alpha: Some(1.5),
                    properties: Vec::new(),
                }),
                filters: Vec::new(),
            },
        );
        assert!(bad.is_err());
    }

    #[test]
    fn filters_become_a_where_argument() {
        let price = PropertyFilter {
            property: "price".into(),
            op: FilterOp::LessThan,
            value: FilterValue::Number(50.0),
        };
        let q = query(None, vec![price.clone()]);
        assert!(
            q.contains(
                r#", where: {path: ["price"], operator: LessThan, valueNumber: 50}, limit: 3)"#
            ),
            "{q}"
        );
        let name = PropertyFilter {
            property: "name".into(),
            op: FilterOp::NotEqual,
            value: FilterValue::Text("Bob's \"best\"".into()),
        };
        let q = query(None, vec![price, name]);
        assert!(
            q.contains(
                r#"where: {operator: And, operands: [{path: ["price"], operator: LessThan, valueNumber: 50}, {path: ["name"], operator: NotEqual, valueText: "Bob's \"best\""}]}"#
            ),
            "{q}"
        );
    }

    #[test]
    fn odd_property_names_are_refused() {
        let f = PropertyFilter {
            property: "a\"] } }".into(),
            op: FilterOp::Equal,
            value: FilterValue::Text("x".into()),
        };
        assert!(where_filter(&[f]).is_err());
    }

    #[test]
    fn hits_come_back_in_order_with_properties() {
        let body = json!({"data":{"Get":{"Product":[
            {"sku":"A","name":"a","description":null,"price":1.5,
             "_additional":{"id":"fe45772b-8fae-53e0-b955-515010125b4c","distance":0.1}},
            {"sku":"B","name":null,"description":"b","price":null,
             "_additional":{"id":"c1f1203a-0b6a-5256-bea3-d770a2e910de","distance":0.4}}
        ]}}});
        let hits = parse_near_vector_response("Product", &body).expect("valid");
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].product.sku, "A");
        assert!((hits[0].distance.expect("distance") - 0.1).abs() < 1e-6);
        assert_eq!(hits[1].product.description.as_deref(), Some("b"));
    }

    #[test]
    fn hybrid_scores_are_read_from_strings() {
        let body = json!({"data":{"Get":{"Product":[
            {"sku":"A","name":"a","description":"d","price":1,
             "_additional":{"id":"fe45772b-8fae-53e0-b955-515010125b4c","score":"0.75"}}
        ]}}});
        let hits = parse_search_response("Product", &body).expect("valid");
        assert_eq!(hits[0].score, Some(0.75));
        assert_eq!(hits[0].distance, None);
        let bad = json!({"data":{"Get":{"Product":[
            {"sku":"A","_additional":{"id":"fe45772b-8fae-53e0-b955-515010125b4c","score":"high"}}
        ]}}});
        assert!(parse_search_response("Product", &bad).is_err());
    }

    #[test]
    fn graphql_errors_become_an_error() {
        let body = json!({"errors":[{"message":"Cannot query field \"Nope\""}]});
        let e = parse_near_vector_response("Nope", &body).expect_err("error");
        assert!(e.to_string().contains("Cannot query field"));
        assert!(!e.is_transient());
    }
}
