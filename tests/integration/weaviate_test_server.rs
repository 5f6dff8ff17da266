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
