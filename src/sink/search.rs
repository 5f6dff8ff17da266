//! Nearest-neighbour search by vector, the only place vecsync speaks GraphQL.
//!
//! Weaviate announced the deprecation of its GraphQL API on 2026-10-26 (self-hosted servers keep
//! it until at least 2027-05-01), and its REST `/v1/search/...` endpoints do not offer a
//! near-vector search yet. Everything GraphQL-specific stays in this file (building the query,
//! reading the answer), so moving to the newer search API touches nothing else.

use serde_json::{Value, json};
use uuid::Uuid;

use super::error::SinkError;
use super::product::Product;

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub id: Uuid,
    /// `1 - cosine similarity` for a cosine class: smaller is closer.
    pub distance: f32,
    pub product: Product,
}

/// The body of `POST /v1/graphql` for the `limit` objects of `class` nearest to `vector`.
///
/// The vector is written inline, as Weaviate's own clients do; Rust prints floats in plain
/// decimal notation, which is valid GraphQL.
pub(crate) fn near_vector_request(
    class: &str,
    vector: &[f32],
    limit: usize,
) -> Result<Value, SinkError> {
    if let Some(bad) = vector.iter().find(|v| !v.is_finite()) {
        return Err(SinkError::Config(format!(
            "cannot search with a vector containing {bad}"
        )));
    }
    let mut list = String::with_capacity(vector.len() * 12);
    for (i, v) in vector.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        list.push_str(&v.to_string());
    }
    // `class` is checked against Weaviate's class-name rule when the sink is built, so it
    // cannot break out of the query.
    let query = format!(
        "{{ Get {{ {class}(nearVector: {{vector: [{list}]}}, limit: {limit}) \
         {{ sku name description price _additional {{ id distance }} }} }} }}"
    );
    Ok(json!({ "query": query }))
}

/// Read the hits out of a GraphQL answer, nearest first as Weaviate ordered them.
pub(crate) fn parse_near_vector_response(
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
                .ok_or_else(|| unexpected(format!("hit without a distance: {item}")))?;
            let product = Product::from_properties(item).map_err(unexpected)?;
            Ok(SearchHit {
                id,
                distance: distance as f32,
                product,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!((hits[0].distance - 0.1).abs() < 1e-6);
        assert_eq!(hits[1].product.description.as_deref(), Some("b"));
    }

    #[test]
    fn graphql_errors_become_an_error() {
        let body = json!({"errors":[{"message":"Cannot query field \"Nope\""}]});
        let e = parse_near_vector_response("Nope", &body).expect_err("error");
        assert!(e.to_string().contains("Cannot query field"));
        assert!(!e.is_transient());
    }
}
