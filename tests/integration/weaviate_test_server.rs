//! The Weaviate test server itself: that it answers as CONTRACT.md and Weaviate's OpenAPI spec
//! say, and that its own response check catches a response that breaks the spec. Raw HTTP only,
//! no vecsync code, so a sink bug cannot hide a server bug.

use reqwest::Method;
use serde_json::{Value, json};
use weaviate_test_server::{Fault, ServerConfig, TestServer};

use crate::harness;

struct Raw {
    server: TestServer,
    http: reqwest::Client,
}

impl Raw {
    async fn start() -> Raw {
        Raw::start_with(ServerConfig::default()).await
    }

    async fn start_with(config: ServerConfig) -> Raw {
        Raw {
            server: TestServer::start_with(config, 0).await.expect("start"),
            http: reqwest::Client::new(),
        }
    }

    /// Status, raw body text and the body as JSON (Null when empty or not JSON).
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, String, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.server.url()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, text, json)
    }

    async fn create_seed_class(&self, class: &str) {
        let (status, text, _) = self
            .call(
                Method::POST,
                "/v1/schema",
                Some(json!({"class": class, "vectorizer": "none", "properties": [
                    {"name": "sku", "dataType": ["string"]},
                    {"name": "price", "dataType": ["number"]}]})),
            )
            .await;
        assert_eq!(status, 200, "{text}");
    }

    fn assert_no_violations(&self) {
        assert_eq!(self.server.spec_violations(), Vec::<String>::new());
    }
}

const ID: &str = "fe45772b-8fae-53e0-b955-515010125b4c";

#[tokio::test]
async fn spec_validation_rejects_a_bad_body_like_go_swagger() {
    let raw = Raw::start().await;
    let class = harness::unique_name("Product");
    raw.create_seed_class(&class).await;

    // A format violation: 422 in go-openapi's shape, before Weaviate's handler runs.
    let (status, _, body) = raw
        .call(
            Method::PUT,
            &format!("/v1/objects/{class}/{ID}"),
            Some(json!({"class": class, "id": "not-a-uuid"})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        json!({"code": 601, "message": "id in body must be of type uuid: \"not-a-uuid\""})
    );

    // A JSON type the Go struct cannot take: 400 parse error.
    let (status, _, body) = raw
        .call(
            Method::POST,
            "/v1/batch/objects",
            Some(json!({"objects": [{"class": class, "vector": "abc"}]})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], 400);
    assert!(
        body["message"].as_str().expect("message").starts_with(
            "parsing body body from \"\" failed, because json: cannot unmarshal string"
        ),
        "{body}"
    );

    // An enum violation in a schema definition.
    let (status, _, body) = raw
        .call(
            Method::POST,
            "/v1/schema",
            Some(json!({"class": "Other", "properties": [{"name": "x", "dataType": ["text"], "tokenization": "bogus"}]})),
        )
        .await;
    assert_eq!((status, body["code"].as_u64()), (422, Some(606)));
    // A bad uuid in the path.
    let (status, _, body) = raw
        .call(Method::GET, &format!("/v1/objects/{class}/xyz"), None)
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["message"], "id in path must be of type uuid: \"xyz\"");
    raw.assert_no_violations();
}

#[tokio::test]
async fn handler_errors_use_weaviates_shape_and_404s_are_empty() {
    let raw = Raw::start().await;
    let class = harness::unique_name("Product");
    raw.create_seed_class(&class).await;

    let (status, _, body) = raw
        .call(
            Method::POST,
            "/v1/schema",
            Some(json!({"class": class, "properties": []})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        json!({"error": [{"message": format!("class name {class} already exists")}]})
    );

    for path in [
        "/v1/schema/Missing".to_owned(),
        format!("/v1/objects/{class}/{ID}"),
    ] {
        let (status, text, _) = raw.call(Method::GET, &path, None).await;
        assert_eq!((status, text.as_str()), (404, ""), "{path}");
    }

    let (status, text, _) = raw
        .call(
            Method::PUT,
            &format!("/v1/objects/{class}/{ID}"),
            Some(json!({"class": class, "id": ID, "properties": {"sku": "A"}})),
        )
        .await;
    assert_eq!((status, text.as_str()), (404, ""), "PUT is not an upsert");

    let other = "c1f1203a-0b6a-5256-bea3-d770a2e910de";
    let (status, _, body) = raw
        .call(
            Method::PUT,
            &format!("/v1/objects/{class}/{ID}"),
            Some(json!({"class": class, "id": other})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body["error"][0]["message"],
        "invalid update: field 'id' is immutable"
    );

    let (status, _, body) = raw
        .call(
            Method::DELETE,
            &format!("/v1/objects/{class}/{ID}?consistency_level=TWO"),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"][0]["message"],
        "unrecognized consistency level 'TWO', try one of the following: ['ONE', 'QUORUM', 'ALL']"
    );

    let (status, text, _) = raw
        .call(Method::DELETE, &format!("/v1/objects/{class}/{ID}"), None)
        .await;
    assert_eq!(
        (status, text.as_str()),
        (204, ""),
        "missing object: still 204"
    );
    let (status, _, body) = raw
        .call(Method::DELETE, &format!("/v1/objects/Nope/{ID}"), None)
        .await;
    assert_eq!(status, 500);
    assert!(
        body["error"][0]["message"]
            .as_str()
            .expect("message")
            .contains("delete from non-existing index for Nope")
    );
    raw.assert_no_violations();
}

#[tokio::test]
async fn batch_answers_200_with_per_object_results_and_auto_schema() {
    let raw = Raw::start().await;
    let class = harness::unique_name("Product");
    raw.create_seed_class(&class).await;
    let (status, _, body) = raw
        .call(
            Method::POST,
            "/v1/batch/objects",
            Some(json!({"objects": [
                {"class": class, "id": ID, "properties": {"sku": "A", "price": "12.5"}},
                {"class": class, "properties": {"sku": "B", "price": 12.5}}
            ]})),
        )
        .await;
    assert_eq!(status, 200, "always 200");
    assert_eq!(body[0]["result"]["status"], "FAILED");
    assert_eq!(
        body[0]["result"]["errors"]["error"][0]["message"],
        format!(
            "invalid number property 'price' on class '{class}': requires a float, the given value is '12.5'"
        )
    );
    assert_eq!(body[1]["result"]["status"], "SUCCESS");
    assert!(body[1]["id"].as_str().is_some(), "an id is generated");

    let (status, _, body) = raw
        .call(
            Method::POST,
            "/v1/batch/objects",
            Some(json!({"objects": []})),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        body["error"][0]["message"]
            .as_str()
            .expect("message")
            .contains("cannot be empty")
    );

    // Auto-schema: a batch for a missing class creates it silently.
    let auto = harness::unique_name("Auto");
    let (status, _, body) = raw
        .call(
            Method::POST,
            "/v1/batch/objects",
            Some(json!({"objects": [{"class": auto, "properties": {"sku": "A", "price": 1.5}}]})),
        )
        .await;
    assert_eq!(
        (status, body[0]["result"]["status"].as_str()),
        (200, Some("SUCCESS"))
    );
    let (status, _, class_json) = raw
        .call(Method::GET, &format!("/v1/schema/{auto}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(class_json["properties"][0]["dataType"], json!(["text"]));
    assert_eq!(class_json["properties"][1]["dataType"], json!(["number"]));
    raw.assert_no_violations();
}

#[tokio::test]
async fn cursor_listing_walks_every_object_once_in_id_order() {
    let raw = Raw::start().await;
    let class = harness::unique_name("Product");
    raw.create_seed_class(&class).await;
    let objects: Vec<Value> = (0..25)
        .map(|i| json!({"class": class, "properties": {"sku": format!("S{i}")}}))
        .collect();
    let (status, _, _) = raw
        .call(
            Method::POST,
            "/v1/batch/objects",
            Some(json!({"objects": objects})),
        )
        .await;
    assert_eq!(status, 200);

    let mut seen: Vec<String> = Vec::new();
    let mut after = String::new();
    loop {
        let (status, _, page) = raw
            .call(
                Method::GET,
                &format!("/v1/objects?class={class}&limit=10&after={after}"),
                None,
            )
            .await;
        assert_eq!(status, 200);
        let ids: Vec<String> = page["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .map(|o| o["id"].as_str().expect("id").to_owned())
            .collect();
        assert_eq!(page["totalResults"], ids.len());
        let Some(last) = ids.last() else { break };
        after = last.clone();
        seen.extend(ids);
    }
    assert_eq!(seen.len(), 25);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "ascending, no duplicates");
    raw.assert_no_violations();
}

#[tokio::test]
async fn response_validation_catches_a_response_that_breaks_the_spec() {
    let raw = Raw::start().await;
    // A correct answer passes.
    let (status, _, meta) = raw.call(Method::GET, "/v1/meta", None).await;
    assert_eq!(status, 200);
    assert_eq!(meta["version"], "1.39.0");
    raw.assert_no_violations();

    // `version` must be a string in Weaviate's Meta definition.
    raw.server
        .faults()
        .inject(Fault::rewrite_response(|body| body["version"] = json!(139)).on("GET", "/v1/meta"));
    let (status, _, body) = raw.call(Method::GET, "/v1/meta", None).await;
    assert_eq!(status, 500);
    assert!(
        body["error"][0]["message"]
            .as_str()
            .expect("message")
            .contains("breaks Weaviate's OpenAPI spec"),
        "{body}"
    );
    let violations = raw.server.spec_violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains("meta.get 200"), "{violations:?}");

    // CONTRACT.md: every 404 has an empty body.
    raw.server.faults().inject(
        Fault::rewrite_response(|body| *body = json!({"error": [{"message": "x"}]}))
            .on("GET", "/v1/schema/"),
    );
    let (status, _, _) = raw.call(Method::GET, "/v1/schema/Missing", None).await;
    assert_eq!(status, 500);
    let violations = raw.server.spec_violations();
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(
        violations[1].contains("a 404 must have an empty body"),
        "{violations:?}"
    );
}

#[tokio::test]
async fn api_key_protects_everything_but_liveness() {
    let raw = Raw::start_with(ServerConfig {
        api_keys: vec!["k1".into()],
        ..ServerConfig::default()
    })
    .await;
    let (status, text, _) = raw.call(Method::GET, "/v1/.well-known/ready", None).await;
    assert_eq!((status, text.as_str()), (200, ""));
    let (status, _, body) = raw.call(Method::GET, "/v1/schema", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], 401);
    let response = raw
        .http
        .get(format!("{}/v1/schema", raw.server.url()))
        .bearer_auth("k1")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    raw.assert_no_violations();
}

#[tokio::test]
async fn graphql_errors_come_back_as_200() {
    let raw = Raw::start().await;
    let (status, _, body) = raw
        .call(
            Method::POST,
            "/v1/graphql",
            Some(json!({"query": "{ Get { Missing { sku } } }"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["errors"][0]["message"],
        "Cannot query field \"Missing\" on type \"GetObjectsObj\"."
    );
    let (status, _, body) = raw
        .call(Method::POST, "/v1/graphql", Some(json!({"query": ""})))
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"][0]["message"], "query cannot be empty");
    raw.assert_no_violations();
}

// ---- Issue 13: every formerly ignored argument is implemented or an error ----

/// (sku, name, description, price, vector) of a small catalog.
const CATALOG: &[(&str, &str, &str, f64, [f32; 3])] = &[
    (
        "A",
        "Red shirt",
        "A soft red cotton shirt",
        19.99,
        [1.0, 0.0, 0.0],
    ),
    ("B", "Blue jeans", "Slim blue jeans", 49.5, [0.0, 1.0, 0.0]),
    (
        "C",
        "Red hat",
        "A warm hat, deep red",
        15.0,
        [0.9, 0.1, 0.0],
    ),
    (
        "D",
        "Green jacket",
        "A light jacket for the rain",
        89.0,
        [0.0, 0.0, 1.0],
    ),
];

fn catalog_id(class: &str, sku: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_DNS,
        format!("{class}{sku}").as_bytes(),
    )
    .to_string()
}

impl Raw {
    /// A class with sku (field), name, description (word) and price, holding [`CATALOG`].
    async fn catalog(&self) -> String {
        let class = harness::unique_name("Product");
        let (status, text, _) = self
            .call(
                Method::POST,
                "/v1/schema",
                Some(json!({"class": class, "vectorizer": "none", "properties": [
                    {"name": "sku", "dataType": ["text"], "tokenization": "field"},
                    {"name": "name", "dataType": ["text"]},
                    {"name": "description", "dataType": ["text"]},
                    {"name": "price", "dataType": ["number"]}]})),
            )
            .await;
        assert_eq!(status, 200, "{text}");
        let objects: Vec<Value> = CATALOG
            .iter()
            .map(|(sku, name, description, price, vector)| {
                json!({"class": class, "id": catalog_id(&class, sku), "vector": vector,
                       "properties": {"sku": sku, "name": name, "description": description, "price": price}})
            })
            .collect();
        let (status, _, body) = self
            .call(
                Method::POST,
                "/v1/batch/objects",
                Some(json!({"objects": objects})),
            )
            .await;
        assert_eq!(status, 200);
        assert!(
            body.as_array()
                .expect("results")
                .iter()
                .all(|r| r["result"]["status"] == "SUCCESS"),
            "{body}"
        );
        class
    }

    /// The GraphQL answer to `query`.
    async fn graphql(&self, query: &str) -> Value {
        let (status, _, body) = self
            .call(Method::POST, "/v1/graphql", Some(json!({ "query": query })))
            .await;
        assert_eq!(status, 200, "GraphQL always answers 200: {body}");
        body
    }

    /// The skus a `Get` returned, in order.
    async fn skus(&self, class: &str, query: &str) -> Vec<String> {
        let body = self.graphql(query).await;
        assert!(body.get("errors").is_none(), "{query}: {body}");
        body["data"]["Get"][class]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|i| i["sku"].as_str().expect("sku").to_owned())
            .collect()
    }

    /// The first GraphQL error message of `query`.
    async fn graphql_error(&self, query: &str) -> String {
        let body = self.graphql(query).await;
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{query}: expected an error, got {body}"))
            .to_owned()
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn graphql_where_filters_are_applied_not_ignored() {
    let raw = Raw::start().await;
    let class = raw.catalog().await;
    let get = |w: &str| format!("{{ Get {{ {class}(where: {w}) {{ sku }} }} }}");
    // The issue's three cases: each used to return every product.
    assert_eq!(
        raw.skus(
            &class,
            &get(r#"{path: ["sku"], operator: Equal, valueText: "B"}"#)
        )
        .await,
        ["B"]
    );
    assert_eq!(
        sorted(
            raw.skus(
                &class,
                &get(r#"{path: ["price"], operator: LessThan, valueNumber: 20}"#)
            )
            .await
        ),
        ["A", "C"]
    );
    let ids = format!(
        "[\"{}\", \"{}\"]",
        catalog_id(&class, "A"),
        catalog_id(&class, "D")
    );
    assert_eq!(
        sorted(
            raw.skus(
                &class,
                &get(&format!(
                    r#"{{path: ["id"], operator: ContainsAny, valueText: {ids}}}"#
                ))
            )
            .await
        ),
        ["A", "D"]
    );
    for (w, want) in [
        (
            r#"{path: ["sku"], operator: NotEqual, valueText: "B"}"#,
            vec!["A", "C", "D"],
        ),
        (
            r#"{path: ["price"], operator: LessThanEqual, valueNumber: 19.99}"#,
            vec!["A", "C"],
        ),
        (
            r#"{path: ["price"], operator: GreaterThan, valueNumber: 49.5}"#,
            vec!["D"],
        ),
        (
            r#"{path: ["price"], operator: GreaterThanEqual, valueNumber: 49.5}"#,
            vec!["B", "D"],
        ),
        (
            r#"{path: ["name"], operator: Like, valueText: "re*"}"#,
            vec!["A", "C"],
        ),
        (
            r#"{path: ["description"], operator: ContainsAll, valueText: ["red", "warm"]}"#,
            vec!["C"],
        ),
        (
            r#"{path: ["name"], operator: Equal, valueText: "the red hat"}"#,
            vec!["C"],
        ),
        (
            r#"{operator: Or, operands: [{path: ["sku"], operator: Equal, valueText: "A"}, {path: ["sku"], operator: Equal, valueText: "B"}]}"#,
            vec!["A", "B"],
        ),
        (
            r#"{operator: And, operands: [{path: ["name"], operator: Equal, valueText: "red"}, {path: ["price"], operator: GreaterThan, valueNumber: 16}]}"#,
            vec!["A"],
        ),
    ] {
        assert_eq!(sorted(raw.skus(&class, &get(w)).await), want, "{w}");
    }
    // Variables work too, and a string where an enum belongs is refused as graphql-go does.
    let body = raw
        .call(
            Method::POST,
            "/v1/graphql",
            Some(json!({"query": format!("query Q($w: GetObjects{class}WhereInpObj) {{ Get {{ {class}(where: $w) {{ sku }} }} }}"),
                        "variables": {"w": {"path": ["sku"], "operator": "Equal", "valueText": "C"}}})),
        )
        .await
        .2;
    assert_eq!(body["data"]["Get"][&class][0]["sku"], "C", "{body}");
    let e = raw
        .graphql_error(&get(
            r#"{path: ["sku"], operator: "Equal", valueText: "B"}"#,
        ))
        .await;
    assert!(e.contains("In field \"operator\": Expected type"), "{e}");
    let e = raw
        .graphql_error(&get(
            r#"{path: ["price"], operator: Equal, valueText: "B"}"#,
        ))
        .await;
    assert!(e.contains("use \"valueNumber\" instead"), "{e}");
    let e = raw
        .graphql_error(&get(
            r#"{path: ["name"], operator: Equal, valueText: "the"}"#,
        ))
        .await;
    assert!(e.contains("only stopwords"), "{e}");
    raw.assert_no_violations();
}

#[tokio::test]
async fn unknown_and_unimplemented_graphql_fails_closed() {
    let raw = Raw::start().await;
    let class = raw.catalog().await;
    assert_eq!(
        raw.graphql_error(&format!(
            "{{ Get {{ {class}(noSuchArgument: 1) {{ sku }} }} }}"
        ))
        .await,
        format!(
            "Unknown argument \"noSuchArgument\" on field \"{class}\" of type \"GetObjectsObj\"."
        )
    );
    assert_eq!(
        raw.graphql_error(&format!(
            "{{ Get {{ {class} {{ sku _additional {{ nope }} }} }} }}"
        ))
        .await,
        format!("Cannot query field \"nope\" on type \"{class}Additional\".")
    );
    assert_eq!(
        raw.graphql_error(&format!("{{ Get {{ {class} {{ nope }} }} }}"))
            .await,
        format!("Cannot query field \"nope\" on type \"{class}\".")
    );
    for query in [
        format!("{{ Get {{ {class}(sort: [{{path: [\"price\"]}}]) {{ sku }} }} }}"),
        format!(
            "{{ Get {{ {class}(nearObject: {{id: \"{}\"}}) {{ sku }} }} }}",
            catalog_id(&class, "A")
        ),
        format!("{{ Get {{ {class}(groupBy: {{path: [\"sku\"]}}) {{ sku }} }} }}"),
        format!("{{ Get {{ {class} {{ sku _additional {{ classification {{ id }} }} }} }} }}"),
        format!(
            "{{ Get {{ {class}(hybrid: {{query: \"x\", alpha: 0, fusionType: rankedFusion}}) {{ sku }} }} }}"
        ),
        format!("{{ Aggregate {{ {class}(groupBy: [\"sku\"]) {{ meta {{ count }} }} }} }}"),
        format!("{{ Aggregate {{ {class} {{ price {{ mean }} }} }} }}"),
        "{ Explore(concepts: [\"x\"]) { beacon } }".to_owned(),
    ] {
        let e = raw.graphql_error(&query).await;
        assert!(
            e.contains("weaviate-test-server does not implement"),
            "{query}: {e}"
        );
    }
    let e = raw
        .graphql_error(&format!("{{ Get {{ {class}(limit: \"5\") {{ sku }} }} }}"))
        .await;
    assert!(
        e.starts_with("Argument \"limit\" has invalid value \"5\"."),
        "{e}"
    );
    let e = raw
        .graphql_error(&format!(
            "{{ Get {{ {class}(limit: 1, limit: 2) {{ sku }} }} }}"
        ))
        .await;
    assert_eq!(e, "There can be only one argument named \"limit\".");
    let e = raw
        .graphql_error(&format!(
            "{{ Get {{ {class}(nearVector: {{vector: [1, 0, 0], bogus: 1}}) {{ sku }} }} }}"
        ))
        .await;
    assert!(e.contains("In field \"bogus\": Unknown field."), "{e}");
    raw.assert_no_violations();
}

#[tokio::test]
async fn additional_returns_only_what_is_asked_and_distance_only_for_vector_searches() {
    let raw = Raw::start().await;
    let class = raw.catalog().await;
    let body = raw
        .graphql(&format!(
            "{{ Get {{ {class}(where: {{path: [\"sku\"], operator: Equal, valueText: \"A\"}}) {{ sku _additional {{ id score }} }} }} }}"
        ))
        .await;
    let item = &body["data"]["Get"][&class][0];
    assert_eq!(
        item["_additional"],
        json!({"id": catalog_id(&class, "A"), "score": "0"})
    );
    let body = raw
        .graphql(&format!(
            "{{ Get {{ {class}(where: {{path: [\"sku\"], operator: Equal, valueText: \"A\"}}) {{ sku _additional {{ distance }} }} }} }}"
        ))
        .await;
    assert_eq!(
        body["data"]["Get"][&class][0],
        json!({"sku": "A", "_additional": null})
    );
    let body = raw
        .graphql(&format!(
            "{{ Get {{ {class}(nearVector: {{vector: [1, 0, 0]}}, limit: 2) {{ sku first: _additional {{ distance certainty }} }} }} }}"
        ))
        .await;
    let items = &body["data"]["Get"][&class];
    assert_eq!(
        items[0],
        json!({"sku": "A", "first": {"distance": 0.0, "certainty": 1.0}})
    );
    assert_eq!(items[1]["sku"], "C");
    raw.assert_no_violations();
}

#[tokio::test]
async fn near_vector_distance_and_certainty_limit_the_results() {
    let raw = Raw::start().await;
    let class = raw.catalog().await;
    let near = |args: &str| {
        format!("{{ Get {{ {class}(nearVector: {{vector: [1, 0, 0]{args}}}) {{ sku }} }} }}")
    };
    // C is at 1 - 0.9/sqrt(0.82) = 0.0061 from the query; B and D at 1.
    assert_eq!(
        raw.skus(&class, &near(", distance: 0.01")).await,
        ["A", "C"]
    );
    assert_eq!(raw.skus(&class, &near(", distance: 0.001")).await, ["A"]);
    assert_eq!(
        raw.skus(&class, &near(", certainty: 0.99")).await,
        ["A", "C"]
    );
    assert_eq!(raw.skus(&class, &near("")).await.len(), 4);
    let e = raw
        .graphql_error(&near(", distance: 0.1, certainty: 0.9"))
        .await;
    assert!(e.contains("cannot provide distance and certainty"), "{e}");
    let e = raw
        .graphql_error(&format!(
            "{{ Get {{ {class}(nearVector: {{vector: [1, 0]}}) {{ sku }} }} }}"
        ))
        .await;
    assert!(e.contains("vector lengths don't match: 2 vs 3"), "{e}");
    raw.assert_no_violations();
}

#[tokio::test]
async fn limit_and_offset_follow_weaviates_defaults() {
    let raw = Raw::start().await;
    let class = harness::unique_name("Product");
    raw.create_seed_class(&class).await;
    let objects: Vec<Value> = (0..120)
        .map(|i| json!({"class": class, "properties": {"sku": format!("S{i}")}}))
        .collect();
    let (status, _, _) = raw
        .call(
            Method::POST,
            "/v1/batch/objects",
            Some(json!({"objects": objects})),
        )
        .await;
    assert_eq!(status, 200);
    let count = |q: String| {
        let raw = &raw;
        let class = class.clone();
        async move { raw.skus(&class, &q).await.len() }
    };
    // No limit and no offset: QUERY_DEFAULTS_LIMIT_GRAPHQL (100); offset alone: QUERY_DEFAULTS_LIMIT (10).
    assert_eq!(
        count(format!("{{ Get {{ {class} {{ sku }} }} }}")).await,
        100
    );
    assert_eq!(
        count(format!("{{ Get {{ {class}(offset: 5) {{ sku }} }} }}")).await,
        10
    );
    assert_eq!(
        count(format!("{{ Get {{ {class}(limit: 200) {{ sku }} }} }}")).await,
        120
    );
    assert_eq!(
        count(format!(
            "{{ Get {{ {class}(limit: 50, offset: 100) {{ sku }} }} }}"
        ))
        .await,
        20
    );
    let e = raw
        .graphql_error(&format!(
            "{{ Get {{ {class}(limit: 10, offset: 9991) {{ sku }} }} }}"
        ))
        .await;
    assert!(e.contains("query maximum results exceeded"), "{e}");
    raw.assert_no_violations();
}

#[tokio::test]
async fn bm25_ranks_with_bm25f_and_scores_are_strings() {
    let raw = Raw::start().await;
    let class = raw.catalog().await;
    let body = raw
        .graphql(&format!(
            "{{ Get {{ {class}(bm25: {{query: \"red shirt\", properties: [\"name\"]}}) {{ sku _additional {{ score }} }} }} }}"
        ))
        .await;
    let items = body["data"]["Get"][&class]
        .as_array()
        .expect("items")
        .clone();
    let skus: Vec<&str> = items
        .iter()
        .map(|i| i["sku"].as_str().expect("sku"))
        .collect();
    assert_eq!(
        skus,
        ["A", "C"],
        "only objects containing a query term, best first"
    );
    // name lengths 2, 2, 2, 2 (mean 2); N = 4. "red": n = 2, "shirt": n = 1.
    let idf = |n: f64| (1.0 + (4.0 - n + 0.5) / (n + 0.5)).ln();
    let tf = 1.0 / (1.0 + 1.2);
    let a: f64 = items[0]["_additional"]["score"]
        .as_str()
        .expect("string")
        .parse()
        .expect("number");
    let c: f64 = items[1]["_additional"]["score"]
        .as_str()
        .expect("string")
        .parse()
        .expect("number");
    assert!((a - (idf(2.0) + idf(1.0)) * tf).abs() < 1e-5, "{a}");
    assert!((c - idf(2.0) * tf).abs() < 1e-5, "{c}");
    // Every searchable text property by default: the sku (field tokenization) too.
    assert_eq!(
        raw.skus(
            &class,
            &format!("{{ Get {{ {class}(bm25: {{query: \"D\"}}) {{ sku }} }} }}")
        )
        .await,
        ["D"]
    );
    let e = raw
        .graphql_error(&format!(
            "{{ Get {{ {class}(bm25: {{query: \"x\", properties: [\"price\"]}}) {{ sku }} }} }}"
        ))
        .await;
    assert!(e.contains("cannot handle datatype"), "{e}");
    let e = raw
        .graphql_error(&format!("{{ Get {{ {class}(bm25: {{query: \"x\"}}, nearVector: {{vector: [1, 0, 0]}}) {{ sku }} }} }}"))
        .await;
    assert!(e.contains("conflict"), "{e}");
    raw.assert_no_violations();
}

#[tokio::test]
async fn hybrid_fuses_relative_scores_with_alpha() {
    let raw = Raw::start().await;
    let class = raw.catalog().await;
    let hybrid = |args: &str| {
        format!(
            "{{ Get {{ {class}(hybrid: {{{args}}}) {{ sku _additional {{ score explainScore }} }} }} }}"
        )
    };
    // Default alpha 0.75: the vector side weighs 3 times the keyword side.
    let body = raw
        .graphql(&hybrid(
            "query: \"jacket\", vector: [1, 0, 0], properties: [\"name\"]",
        ))
        .await;
    let items = body["data"]["Get"][&class]
        .as_array()
        .expect("items")
        .clone();
    let skus: Vec<&str> = items
        .iter()
        .map(|i| i["sku"].as_str().expect("sku"))
        .collect();
    // Vector side: A 1.0, C ~0.994, B and D 0 (normalised) -> A 0.75, C ~0.745; keyword side:
    // only D has "jacket" -> D 0.25. Then B (0).
    assert_eq!(skus, ["A", "C", "D", "B"]);
    let score = |i: usize| -> f64 {
        items[i]["_additional"]["score"]
            .as_str()
            .expect("string")
            .parse()
            .expect("f")
    };
    assert!((score(0) - 0.75).abs() < 1e-6);
    assert!((score(2) - 0.25).abs() < 1e-6);
    assert!(
        items[2]["_additional"]["explainScore"]
            .as_str()
            .expect("string")
            .contains("Hybrid (Result Set keyword,bm25)"),
        "{body}"
    );
    // alpha 0: keyword only, so only D; a where filter applies to both sides.
    assert_eq!(
        raw.skus(
            &class,
            &format!("{{ Get {{ {class}(hybrid: {{query: \"jacket\", alpha: 0}}) {{ sku }} }} }}")
        )
        .await,
        ["D"]
    );
    let filtered = raw
        .skus(
            &class,
            &format!("{{ Get {{ {class}(hybrid: {{query: \"red\", vector: [1, 0, 0], alpha: 0.5}}, where: {{path: [\"price\"], operator: GreaterThan, valueNumber: 16}}) {{ sku }} }} }}"),
        )
        .await;
    // A scores on both sides; B and D tie at 0 and are ordered by id.
    assert_eq!(filtered[0], "A");
    assert_eq!(sorted(filtered[1..].to_vec()), ["B", "D"]);
    let e = raw
        .graphql_error(&hybrid("query: \"x\", alpha: 1.5, vector: [1, 0, 0]"))
        .await;
    assert!(e.contains("alpha should be between 0.0 and 1.0"), "{e}");
    let e = raw.graphql_error(&hybrid("query: \"x\"")).await;
    assert!(e.contains("no vector given"), "{e}");
    raw.assert_no_violations();
}

#[tokio::test]
async fn aggregate_counts_with_and_without_where() {
    let raw = Raw::start().await;
    let class = raw.catalog().await;
    let body = raw
        .graphql(&format!(
            "{{ Aggregate {{ {class} {{ meta {{ count }} }} }} }}"
        ))
        .await;
    assert_eq!(
        body,
        json!({"data": {"Aggregate": {&class: [{"meta": {"count": 4}}]}}})
    );
    let body = raw
        .graphql(&format!(
            "{{ Aggregate {{ {class}(where: {{path: [\"name\"], operator: Equal, valueText: \"red\"}}) {{ meta {{ count }} }} }} }}"
        ))
        .await;
    assert_eq!(body["data"]["Aggregate"][&class][0]["meta"]["count"], 2);
    raw.assert_no_violations();
}

#[tokio::test]
async fn nodes_report_one_node_with_its_shards_and_counts() {
    let raw = Raw::start().await;
    let class = raw.catalog().await;
    let (status, _, minimal) = raw.call(Method::GET, "/v1/nodes", None).await;
    assert_eq!(status, 200);
    assert_eq!(minimal["nodes"].as_array().expect("nodes").len(), 1);
    assert!(
        minimal["nodes"][0].get("shards").is_none(),
        "minimal: no shards"
    );
    let (status, _, verbose) = raw
        .call(Method::GET, "/v1/nodes?output=verbose", None)
        .await;
    assert_eq!(status, 200);
    let node = &verbose["nodes"][0];
    assert_eq!(node["status"], "HEALTHY");
    assert_eq!(node["stats"], json!({"shardCount": 1, "objectCount": 4}));
    assert_eq!(node["shards"][0]["class"], class.as_str());
    assert_eq!(node["shards"][0]["objectCount"], 4);
    let (status, _, by_class) = raw
        .call(
            Method::GET,
            &format!("/v1/nodes/{class}?output=verbose"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(by_class["nodes"][0]["shards"][0]["objectCount"], 4);
    let (status, _, _) = raw.call(Method::GET, "/v1/nodes?output=loud", None).await;
    assert_eq!(status, 422);
    raw.assert_no_violations();
}

#[tokio::test]
async fn aliases_crud_and_alias_names_where_weaviate_accepts_them() {
    let raw = Raw::start().await;
    let class = raw.catalog().await;
    let alias = harness::unique_name("Alias");
    let (status, _, body) = raw
        .call(
            Method::POST,
            "/v1/aliases",
            Some(json!({"alias": alias, "class": class})),
        )
        .await;
    assert_eq!(
        (status, &body),
        (200, &json!({"alias": alias, "class": class}))
    );
    for (request, message) in [
        (
            json!({"alias": alias, "class": class}),
            format!("create alias: {alias}, alias already exists"),
        ),
        (
            json!({"alias": class, "class": class}),
            format!("create alias: class {class} already exists"),
        ),
        (
            json!({"alias": "Other", "class": "Missing"}),
            "create alias: target class \"Missing\" does not exist".to_owned(),
        ),
    ] {
        let (status, _, body) = raw.call(Method::POST, "/v1/aliases", Some(request)).await;
        assert_eq!(
            (status, body["error"][0]["message"].as_str()),
            (422, Some(message.as_str()))
        );
    }
    let (_, _, list) = raw
        .call(Method::GET, &format!("/v1/aliases?class={class}"), None)
        .await;
    assert_eq!(list, json!({"aliases": [{"alias": alias, "class": class}]}));
    let (status, _, body) = raw
        .call(Method::GET, &format!("/v1/aliases/{alias}"), None)
        .await;
    assert_eq!(
        (status, body["class"].as_str()),
        (200, Some(class.as_str()))
    );

    // The alias works for objects, batches, batch deletes and GraphQL.
    let a = catalog_id(&class, "A");
    let (status, _, object) = raw
        .call(Method::GET, &format!("/v1/objects/{alias}/{a}"), None)
        .await;
    assert_eq!(
        (status, object["properties"]["sku"].as_str()),
        (200, Some("A"))
    );
    let (status, _, _) = raw
        .call(Method::HEAD, &format!("/v1/objects/{alias}/{a}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, text, _) = raw
        .call(
            Method::PATCH,
            &format!("/v1/objects/{alias}/{a}"),
            Some(json!({"properties": {"price": 1.5}})),
        )
        .await;
    assert_eq!(status, 204, "{text}");
    let (status, text, _) = raw
        .call(
            Method::PUT,
            &format!("/v1/objects/{alias}/{a}"),
            Some(json!({"class": alias, "id": a, "properties": {"sku": "A", "price": 2.5}})),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let (status, _, body) = raw
        .call(
            Method::POST,
            "/v1/batch/objects",
            Some(json!({"objects": [{"class": alias, "id": catalog_id(&class, "E"), "properties": {"sku": "E"}}]})),
        )
        .await;
    assert_eq!(
        (status, body[0]["result"]["status"].as_str()),
        (200, Some("SUCCESS"))
    );
    assert_eq!(
        raw.server.object_count(&class),
        5,
        "written into the aliased class"
    );
    assert!(
        raw.server.class(&alias).is_none(),
        "no class was auto-created for the alias"
    );
    assert_eq!(
        sorted(raw.skus(&alias, &format!("{{ Get {{ {alias}(where: {{path: [\"price\"], operator: LessThan, valueNumber: 3}}) {{ sku }} }} }}")).await),
        ["A"]
    );
    let body = raw
        .graphql(&format!(
            "{{ Aggregate {{ {alias} {{ meta {{ count }} }} }} }}"
        ))
        .await;
    assert_eq!(body["data"]["Aggregate"][&alias][0]["meta"]["count"], 5);
    let (status, _, body) = raw
        .call(
            Method::DELETE,
            "/v1/batch/objects",
            Some(json!({"match": {"class": alias, "where": {"path": ["sku"], "operator": "Equal", "valueText": "E"}}})),
        )
        .await;
    assert_eq!(
        (status, body["results"]["successful"].as_u64()),
        (200, Some(1))
    );
    let (status, _, _) = raw
        .call(Method::DELETE, &format!("/v1/objects/{alias}/{a}"), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(raw.server.object_count(&class), 3);

    // Switch, then delete; creating a class named like an alias is refused.
    let other = raw.catalog().await;
    let (status, _, body) = raw
        .call(
            Method::PUT,
            &format!("/v1/aliases/{alias}"),
            Some(json!({"class": other})),
        )
        .await;
    assert_eq!(
        (status, body["class"].as_str()),
        (200, Some(other.as_str()))
    );
    let (status, _, body) = raw
        .call(Method::POST, "/v1/schema", Some(json!({"class": alias})))
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body["error"][0]["message"],
        format!("class name {alias} already exists")
    );
    let (status, _, _) = raw
        .call(Method::DELETE, &format!("/v1/aliases/{alias}"), None)
        .await;
    assert_eq!(status, 204);
    for method in [Method::GET, Method::DELETE] {
        let (status, text, _) = raw
            .call(method, &format!("/v1/aliases/{alias}"), None)
            .await;
        assert_eq!((status, text.as_str()), (404, ""));
    }
    raw.assert_no_violations();
}

#[tokio::test]
async fn batch_delete_by_many_ids_and_cursor_listing_with_vectors() {
    let raw = Raw::start().await;
    let class = raw.catalog().await;
    let (status, _, page) = raw
        .call(
            Method::GET,
            &format!("/v1/objects?class={class}&limit=2&include=vector"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["objects"].as_array().expect("objects").len(), 2);
    assert!(
        page["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .all(|o| o["vector"].as_array().is_some_and(|v| v.len() == 3))
    );
    let ids = vec![
        catalog_id(&class, "B"),
        catalog_id(&class, "C"),
        uuid::Uuid::new_v4().to_string(),
    ];
    let (status, _, body) = raw
        .call(
            Method::DELETE,
            "/v1/batch/objects",
            Some(json!({"match": {"class": class, "where": {"path": ["id"], "operator": "ContainsAny", "valueTextArray": ids}},
                        "output": "verbose"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["results"]["matches"], 2);
    assert_eq!(body["results"]["successful"], 2);
    assert_eq!(raw.server.object_count(&class), 2);
    raw.assert_no_violations();
}

#[tokio::test]
async fn rest_query_parameters_outside_the_spec_or_unimplemented_are_refused() {
    let raw = Raw::start().await;
    let class = raw.catalog().await;
    let (status, _, body) = raw
        .call(
            Method::GET,
            &format!("/v1/objects?class={class}&limt=2"),
            None,
        )
        .await;
    assert_eq!(status, 422);
    let message = body["error"][0]["message"].as_str().expect("message");
    assert!(
        message.contains("'limt'") && message.contains("no such parameter"),
        "{message}"
    );
    let (status, _, body) = raw
        .call(
            Method::GET,
            &format!("/v1/objects?class={class}&sort=price"),
            None,
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        body["error"][0]["message"]
            .as_str()
            .expect("message")
            .contains("does not implement the query parameter 'sort'"),
        "{body}"
    );
    let (status, _, _) = raw
        .call(
            Method::POST,
            "/v1/batch/objects?tenant=t1",
            Some(json!({"objects": [{"class": class}]})),
        )
        .await;
    assert_eq!(
        status, 422,
        "batch.objects.create has no tenant parameter in the spec"
    );
    raw.assert_no_violations();
}

#[tokio::test]
async fn read_only_store_fails_every_object_unless_the_bug_is_switched_on() {
    let raw = Raw::start().await;
    let class = raw.catalog().await;
    let batch = |skus: &[&str]| json!({"objects": skus.iter().map(|s| json!({"class": class, "id": catalog_id(&class, s), "properties": {"sku": s}})).collect::<Vec<_>>()});
    let statuses = |body: &Value| -> Vec<String> {
        body.as_array()
            .expect("results")
            .iter()
            .map(|r| r["result"]["status"].as_str().expect("status").to_owned())
            .collect()
    };
    // A fixed Weaviate: every object FAILED, nothing written.
    raw.server
        .faults()
        .read_only("disk usage currently at 91.00%, threshold set to 90.00%");
    let (status, _, body) = raw
        .call(
            Method::POST,
            "/v1/batch/objects",
            Some(batch(&["X", "Y", "Z"])),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(statuses(&body), ["FAILED", "FAILED", "FAILED"]);
    assert!(
        body[0]["result"]["errors"]["error"][0]["message"]
            .as_str()
            .expect("m")
            .starts_with("store is read-only due to: disk usage")
    );
    // Weaviate 1.32.0-1.38.9 and 1.39.0: only the first object is reported, none is written.
    raw.server
        .faults()
        .read_only_with_reporting_bug("disk usage currently at 91.00%, threshold set to 90.00%");
    let (_, _, body) = raw
        .call(
            Method::POST,
            "/v1/batch/objects",
            Some(batch(&["X", "Y", "Z"])),
        )
        .await;
    assert_eq!(statuses(&body), ["FAILED", "SUCCESS", "SUCCESS"]);
    assert_eq!(raw.server.object_count(&class), 4, "nothing was written");
    let (status, _, _) = raw
        .call(
            Method::PUT,
            &format!("/v1/objects/{class}/{}", catalog_id(&class, "A")),
            Some(
                json!({"class": class, "id": catalog_id(&class, "A"), "properties": {"sku": "A"}}),
            ),
        )
        .await;
    assert_eq!(status, 500);
    raw.server.faults().writable();
    let (_, _, body) = raw
        .call(Method::POST, "/v1/batch/objects", Some(batch(&["X"])))
        .await;
    assert_eq!(statuses(&body), ["SUCCESS"]);
    assert_eq!(raw.server.object_count(&class), 5);
    raw.assert_no_violations();
}

#[tokio::test]
async fn batch_wide_and_whole_request_faults() {
    let raw = Raw::start().await;
    let class = raw.catalog().await;
    let objects = json!({"objects": [
        {"class": class, "id": catalog_id(&class, "X"), "properties": {"sku": "X"}},
        {"class": class, "id": catalog_id(&class, "Y"), "properties": {"sku": "Y"}}]});
    let message = format!(
        "could not find index for class {class}. It might have been deleted in the meantime"
    );
    raw.server.faults().fail_batches(&message, 1);
    let (status, _, body) = raw
        .call(Method::POST, "/v1/batch/objects", Some(objects.clone()))
        .await;
    assert_eq!(status, 200);
    for r in body.as_array().expect("results") {
        assert_eq!(r["result"]["status"], "FAILED");
        assert_eq!(
            r["result"]["errors"]["error"][0]["message"],
            message.as_str()
        );
    }
    assert_eq!(raw.server.object_count(&class), 4);
    raw.server.faults().inject(
        Fault::status_with_message(500, "cannot process batch: not enough memory")
            .on("POST", "/v1/batch/objects"),
    );
    let (status, _, body) = raw
        .call(Method::POST, "/v1/batch/objects", Some(objects.clone()))
        .await;
    assert_eq!(
        (status, body["error"][0]["message"].as_str()),
        (500, Some("cannot process batch: not enough memory"))
    );
    raw.server.faults().fail_objects(
        [uuid::Uuid::parse_str(&catalog_id(&class, "Y")).expect("uuid")],
        "tenant not found",
        1,
    );
    let (_, _, body) = raw
        .call(Method::POST, "/v1/batch/objects", Some(objects))
        .await;
    assert_eq!(body[0]["result"]["status"], "SUCCESS");
    assert_eq!(
        body[1]["result"]["errors"]["error"][0]["message"],
        "tenant not found"
    );
    raw.assert_no_violations();
}

#[tokio::test]
async fn class_update_changes_the_description_and_refuses_immutable_fields() {
    let raw = Raw::start().await;
    let class = raw.catalog().await;
    let (_, _, mut definition) = raw
        .call(Method::GET, &format!("/v1/schema/{class}"), None)
        .await;
    definition["description"] = json!("catalog v2");
    let (status, text, _) = raw
        .call(
            Method::PUT,
            &format!("/v1/schema/{class}"),
            Some(definition.clone()),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        raw.server.class(&class).expect("class")["description"],
        "catalog v2"
    );
    definition["properties"][3]["dataType"] = json!(["int"]);
    let (status, _, body) = raw
        .call(
            Method::PUT,
            &format!("/v1/schema/{class}"),
            Some(definition),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        body["error"][0]["message"]
            .as_str()
            .expect("m")
            .contains("properties cannot be updated"),
        "{body}"
    );
    raw.assert_no_violations();
}

#[tokio::test]
async fn grpc_calls_are_refused_at_once_with_a_clear_status() {
    let raw = Raw::start().await;
    let http2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let started = std::time::Instant::now();
    let response = http2
        .post(format!("{}/weaviate.v1.Weaviate/Search", raw.server.url()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .expect("an answer, not a hang");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["grpc-status"], "12", "UNIMPLEMENTED");
    let message = response.headers()["grpc-message"].to_str().expect("ascii");
    assert!(message.contains("does not speak gRPC"), "{message}");
}
