//! The Weaviate sink against the Weaviate test server, and the same cases against a real Weaviate
//! when `WEAVIATE_URL` is set (`WEAVIATE_API_KEY` too if it needs one). Each case has a
//! `test_server` and a `real_weaviate` variant; the `real_weaviate` ones are ignored (reported as
//! skipped) unless run with `--run-ignored all`; fault-injection cases run on the test server only.
//! Every test writes its own class `Product_<uuid>`, so tests never share data.

use std::time::Duration;

use serde_json::{Value, json};
use vecsync::backoff::Backoff;
use vecsync::sink::{
    ApiKey, ClassSchema, ConsistencyLevel, OpOutcome, Product, RetryPolicy, SchemaStatus,
    SinkError, WeaviateConfig, WeaviateSink, WriteOp, decimal_to_json_number, product_id,
};
use weaviate_test_server::{Fault, ServerConfig, TestServer};

use crate::harness;

/// Vector length used by these tests (the sink does not care; 384 would only slow them down).
const DIMS: usize = 4;

/// Where a case runs.
struct Target {
    url: String,
    api_key: Option<String>,
    class: String,
    server: Option<TestServer>,
    http: reqwest::Client,
}

impl Target {
    async fn test_server() -> Target {
        Target::test_server_with(ServerConfig::default()).await
    }

    async fn test_server_with(config: ServerConfig) -> Target {
        let server = TestServer::start_with(config, 0)
            .await
            .expect("start the Weaviate test server");
        Target {
            url: server.url(),
            api_key: None,
            class: harness::unique_name("Product"),
            server: Some(server),
            http: reqwest::Client::new(),
        }
    }

    /// A real Weaviate from `WEAVIATE_URL`, or `None` when unset.
    fn real() -> Option<Target> {
        let url = std::env::var("WEAVIATE_URL").ok()?;
        Some(Target {
            url,
            api_key: std::env::var("WEAVIATE_API_KEY").ok(),
            class: harness::unique_name("Product"),
            server: None,
            http: reqwest::Client::new(),
        })
    }

    fn server(&self) -> &TestServer {
        self.server
            .as_ref()
            .expect("this case needs the test server")
    }

    fn config(&self) -> WeaviateConfig {
        let mut cfg = WeaviateConfig::new(&self.url);
        cfg.class = self.class.clone();
        cfg.api_key = self.api_key.clone().map(ApiKey::new);
        cfg.vector_dimensions = DIMS;
        cfg.timeout = Duration::from_secs(10);
        cfg.retry = RetryPolicy {
            max_attempts: 4,
            backoff: Backoff::new(Duration::from_millis(5), Duration::from_millis(50)),
        };
        cfg
    }

    fn sink(&self) -> WeaviateSink {
        WeaviateSink::new(self.config()).expect("valid sink settings")
    }

    /// A raw call, for checking what the sink did without trusting the sink.
    async fn raw(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(
            method,
            format!("{}/v1/{path}", self.url.trim_end_matches('/')),
        );
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("raw request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("raw body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Requests the test server received on `method path`.
    fn count(&self, method: &str, path: &str) -> usize {
        self.server()
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }

    /// Test server: no response broke the spec. Real Weaviate: remove the test's class.
    async fn finish(self) {
        match &self.server {
            Some(server) => assert_eq!(server.spec_violations(), Vec::<String>::new()),
            None => {
                let path = format!("schema/{}", self.class);
                self.raw(reqwest::Method::DELETE, &path, None).await;
            }
        }
    }
}

/// Run a case against the test server, and against a real Weaviate when configured.
macro_rules! both {
    ($case:ident) => {
        mod $case {
            #[tokio::test]
            async fn test_server() {
                let target = super::Target::test_server().await;
                super::$case(&target).await;
                target.finish().await;
            }

            // Reported as skipped in a normal run; with a real Weaviate:
            // WEAVIATE_URL=... cargo nextest run --run-ignored all -E 'test(/real_weaviate/)'
            #[tokio::test]
            #[ignore = "needs a real Weaviate: set WEAVIATE_URL and run with --run-ignored all"]
            async fn real_weaviate() {
                let target = super::Target::real()
                    .expect("WEAVIATE_URL must point at a real Weaviate for this test");
                super::$case(&target).await;
                target.finish().await;
            }
        }
    };
}

fn product(
    sku: &str,
    name: Option<&str>,
    description: Option<&str>,
    price: Option<&str>,
) -> Product {
    Product {
        sku: sku.into(),
        name: name.map(Into::into),
        description: description.map(Into::into),
        price: price.map(|p| decimal_to_json_number(p).expect("valid price")),
        ..Product::default()
    }
}

fn upsert(sku: &str, vector: Option<Vec<f32>>) -> WriteOp {
    WriteOp::Upsert {
        product: product(sku, Some(sku), Some("a description"), Some("1.00")),
        vector,
    }
}

// ---- schema ---------------------------------------------------------------------------------

both!(schema_created_then_compatible);
async fn schema_created_then_compatible(t: &Target) {
    let sink = t.sink();
    assert_eq!(
        sink.ensure_schema().await.expect("create"),
        SchemaStatus::Created
    );
    assert_eq!(
        sink.ensure_schema().await.expect("verify"),
        SchemaStatus::Compatible
    );

    let (status, class) = t
        .raw(reqwest::Method::GET, &format!("schema/{}", t.class), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(class["vectorizer"], "none");
    assert_eq!(class["vectorIndexConfig"]["distance"], "cosine");
    let prop = |name: &str| {
        class["properties"]
            .as_array()
            .expect("properties")
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("property {name} in {class}"))
    };
    assert_eq!(prop("sku")["dataType"], json!(["text"]));
    assert_eq!(prop("sku")["tokenization"], "whitespace");
    assert_eq!(prop("description")["tokenization"], "word");
    assert_eq!(prop("price")["dataType"], json!(["number"]));
}

both!(seed_script_class_is_compatible);
/// A class created by the seed's Python script (deprecated `string` types) is taken as is.
async fn seed_script_class_is_compatible(t: &Target) {
    let seed = json!({
        "class": t.class,
        "description": "A product from the catalog",
        "properties": [
            {"name": "sku", "dataType": ["string"], "description": "The unique stock keeping unit"},
            {"name": "name", "dataType": ["string"], "description": "The name of the product"},
            {"name": "description", "dataType": ["text"], "description": "The detailed product description to be vectorized"},
            {"name": "price", "dataType": ["number"], "description": "The price of the product"}
        ],
        "vectorizer": "none"
    });
    let (status, created) = t.raw(reqwest::Method::POST, "schema", Some(seed)).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["properties"][0]["dataType"], json!(["text"]));
    assert_eq!(created["properties"][0]["tokenization"], "whitespace");
    assert_eq!(
        t.sink().ensure_schema().await.expect("compatible"),
        SchemaStatus::Compatible
    );
}

both!(incompatible_schema_is_refused_and_kept);
async fn incompatible_schema_is_refused_and_kept(t: &Target) {
    let other = json!({
        "class": t.class,
        "vectorizer": "none",
        "properties": [
            {"name": "sku", "dataType": ["text"]},
            {"name": "name", "dataType": ["text"]},
            {"name": "description", "dataType": ["text"]},
            {"name": "price", "dataType": ["text"]}
        ]
    });
    let (status, _) = t.raw(reqwest::Method::POST, "schema", Some(other)).await;
    assert_eq!(status, 200);
    let err = t.sink().ensure_schema().await.expect_err("incompatible");
    assert!(matches!(err, SinkError::IncompatibleSchema { .. }), "{err}");
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("`price` is `text`, expected `number`"),
        "{text}"
    );
    // Never deleted: the class is still there, unchanged.
    let (status, class) = t
        .raw(reqwest::Method::GET, &format!("schema/{}", t.class), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(class["properties"][3]["dataType"], json!(["text"]));
}

both!(stored_vectors_of_another_length_are_refused);
async fn stored_vectors_of_another_length_are_refused(t: &Target) {
    let sink = t.sink();
    sink.ensure_schema().await.expect("create");
    let outcomes = sink
        .apply(&[upsert("A", Some(vec![1.0, 0.0, 0.0, 0.0]))])
        .await
        .expect("write");
    assert_eq!(outcomes, vec![OpOutcome::Done]);

    let mut cfg = t.config();
    cfg.vector_dimensions = 384;
    let err = WeaviateSink::new(cfg)
        .expect("valid")
        .ensure_schema()
        .await
        .expect_err("other model");
    assert!(
        err.to_string()
            .contains("4-dimension vectors, vecsync writes 384"),
        "{err}"
    );
}

// ---- writes ---------------------------------------------------------------------------------

both!(upsert_writes_the_seeds_object);
async fn upsert_writes_the_seeds_object(t: &Target) {
    let sink = t.sink();
    sink.ensure_schema().await.expect("schema");
    let p = product(
        "TS-001",
        None,
        Some("A classic crew-neck t-shirt"),
        Some("19.99"),
    );
    let vector = vec![0.5, -0.25, 0.125, 1.0];
    let outcomes = sink
        .apply(&[WriteOp::Upsert {
            product: p.clone(),
            vector: Some(vector.clone()),
        }])
        .await
        .expect("write");
    assert_eq!(outcomes, vec![OpOutcome::Done]);

    // The id is the seed's uuid5, and the stored JSON has price as a number, name absent (null).
    let id = product_id("TS-001");
    let (status, stored) = t
        .raw(
            reqwest::Method::GET,
            &format!("objects/{}/{id}?include=vector", t.class),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(stored["properties"]["price"], json!(19.99));
    assert_eq!(stored["properties"]["sku"], "TS-001");
    assert!(stored["properties"].get("name").is_none_or(Value::is_null));

    let got = sink.get("TS-001").await.expect("get").expect("stored");
    assert_eq!(got.id, id);
    assert_eq!(got.product, p);
    assert_eq!(got.vector, Some(vector));

    // Upserting again replaces the object: no duplicate, new values.
    let p2 = product("TS-001", Some("Cotton T-Shirt"), None, Some("21.00"));
    sink.apply(&[WriteOp::Upsert {
        product: p2.clone(),
        vector: None,
    }])
    .await
    .expect("rewrite");
    let got = sink.get("TS-001").await.expect("get").expect("stored");
    assert_eq!(got.product, p2);
    assert_eq!(got.vector, None, "an upsert without a vector stores none");
}

both!(batch_with_one_object_failing);
async fn batch_with_one_object_failing(t: &Target) {
    let sink = t.sink();
    sink.ensure_schema().await.expect("schema");
    // Fix the vector length of the class first, so the batch's order cannot matter.
    sink.apply(&[upsert("FIRST", Some(vec![1.0, 0.0, 0.0, 0.0]))])
        .await
        .expect("write");

    let ops = [
        upsert("A", Some(vec![0.0, 1.0, 0.0, 0.0])),
        upsert("B", Some(vec![0.0, 1.0, 0.0])),
        upsert("C", Some(vec![0.0, 0.0, 1.0, 0.0])),
    ];
    let outcomes = sink.apply(&ops).await.expect("the call itself succeeds");
    assert_eq!(outcomes[0], OpOutcome::Done);
    assert_eq!(outcomes[2], OpOutcome::Done);
    match &outcomes[1] {
        OpOutcome::Rejected { message } => assert!(
            message.contains("vector with length 3") && message.contains("length 4"),
            "{message}"
        ),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(sink.get("A").await.expect("get").is_some());
    assert!(sink.get("B").await.expect("get").is_none());
    assert!(sink.get("C").await.expect("get").is_some());
}

both!(patch_keeps_the_vector_and_clears_nulls);
async fn patch_keeps_the_vector_and_clears_nulls(t: &Target) {
    let sink = t.sink();
    sink.ensure_schema().await.expect("schema");
    let vector = vec![0.1, 0.2, 0.3, 0.4];
    sink.apply(&[WriteOp::Upsert {
        product: product(
            "JN-001",
            Some("Slim Fit Jeans"),
            Some("stretch denim"),
            Some("79.50"),
        ),
        vector: Some(vector.clone()),
    }])
    .await
    .expect("write");

    let patched = product("JN-001", None, Some("stretch denim"), Some("59.99"));
    let outcomes = sink
        .apply(&[WriteOp::PatchProperties {
            product: patched.clone(),
        }])
        .await
        .expect("patch");
    assert_eq!(outcomes, vec![OpOutcome::Done]);
    let got = sink.get("JN-001").await.expect("get").expect("stored");
    assert_eq!(got.vector, Some(vector), "PATCH without a vector keeps it");
    assert_eq!(got.product, patched, "price changed, name cleared");
}

both!(patch_of_a_missing_object_falls_back_to_upsert);
async fn patch_of_a_missing_object_falls_back_to_upsert(t: &Target) {
    let sink = t.sink();
    sink.ensure_schema().await.expect("schema");
    let p = product("NEW-1", Some("New"), Some("brand new"), Some("5.00"));
    let outcomes = sink
        .apply(&[WriteOp::PatchProperties { product: p.clone() }])
        .await
        .expect("patch");
    assert_eq!(outcomes, vec![OpOutcome::Missing]);
    assert!(
        sink.get("NEW-1").await.expect("get").is_none(),
        "PATCH created nothing"
    );

    // What the pipeline does next: embed and upsert.
    let outcomes = sink
        .apply(&[WriteOp::Upsert {
            product: p.clone(),
            vector: Some(vec![1.0, 1.0, 0.0, 0.0]),
        }])
        .await
        .expect("upsert");
    assert_eq!(outcomes, vec![OpOutcome::Done]);
    assert_eq!(
        sink.get("NEW-1")
            .await
            .expect("get")
            .expect("stored")
            .product,
        p
    );
}

both!(deletes_are_idempotent);
async fn deletes_are_idempotent(t: &Target) {
    let sink = t.sink();
    sink.ensure_schema().await.expect("schema");
    sink.apply(&[upsert("GONE", None)]).await.expect("write");
    let outcomes = sink
        .apply(&[
            WriteOp::Delete { sku: "GONE".into() },
            WriteOp::Delete {
                sku: "NEVER-EXISTED".into(),
            },
        ])
        .await
        .expect("delete");
    assert_eq!(outcomes, vec![OpOutcome::Done, OpOutcome::Done]);
    assert!(sink.get("GONE").await.expect("get").is_none());
}

both!(mixed_operations_keep_their_order);
async fn mixed_operations_keep_their_order(t: &Target) {
    let sink = t.sink();
    sink.ensure_schema().await.expect("schema");
    sink.apply(&[
        upsert("P", Some(vec![1.0, 0.0, 0.0, 0.0])),
        upsert("D", None),
    ])
    .await
    .expect("seed");
    let ops = [
        WriteOp::Delete { sku: "D".into() },
        upsert("U", None),
        WriteOp::PatchProperties {
            product: product("P", Some("patched"), None, None),
        },
        WriteOp::PatchProperties {
            product: product("MISSING", None, None, None),
        },
    ];
    let outcomes = sink.apply(&ops).await.expect("apply");
    assert_eq!(
        outcomes,
        vec![
            OpOutcome::Done,
            OpOutcome::Done,
            OpOutcome::Done,
            OpOutcome::Missing
        ]
    );
}

both!(consistency_level_is_accepted);
async fn consistency_level_is_accepted(t: &Target) {
    let mut cfg = t.config();
    cfg.consistency_level = Some(ConsistencyLevel::Quorum);
    let sink = WeaviateSink::new(cfg).expect("valid");
    sink.ensure_schema().await.expect("schema");
    let outcomes = sink
        .apply(&[upsert("Q", None), WriteOp::Delete { sku: "X".into() }])
        .await
        .expect("write");
    assert_eq!(outcomes, vec![OpOutcome::Done, OpOutcome::Done]);
    assert!(sink.get("Q").await.expect("get").is_some());
    if let Some(server) = &t.server {
        let batch = server
            .requests()
            .into_iter()
            .find(|r| r.path == "/v1/batch/objects")
            .expect("a batch write");
        assert!(
            batch
                .query
                .contains(&("consistency_level".into(), "QUORUM".into()))
        );
    }
}

both!(truncate_spans_more_than_one_batch_delete);
/// Weaviate deletes at most QUERY_MAXIMUM_RESULTS (10,000 by default) objects per batch delete.
async fn truncate_spans_more_than_one_batch_delete(t: &Target) {
    let sink = t.sink();
    sink.ensure_schema().await.expect("schema");
    let total = 10_050;
    let ops: Vec<WriteOp> = (0..total)
        .map(|i| WriteOp::Upsert {
            product: product(&format!("SKU-{i}"), None, None, None),
            vector: None,
        })
        .collect();
    let outcomes = sink.apply(&ops).await.expect("write");
    assert!(outcomes.iter().all(|o| *o == OpOutcome::Done));

    assert_eq!(sink.truncate().await.expect("truncate"), total as u64);
    let (status, listed) = t
        .raw(
            reqwest::Method::GET,
            &format!("objects?class={}&limit=10", t.class),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["objects"], json!([]));
    if t.server.is_some() {
        // 10,000, then 50, then a call that matches nothing.
        assert_eq!(t.count("DELETE", "/v1/batch/objects"), 3);
    }
    // The class stays.
    assert_eq!(
        sink.ensure_schema().await.expect("schema"),
        SchemaStatus::Compatible
    );
}

both!(near_vector_returns_the_nearest_product_first);
async fn near_vector_returns_the_nearest_product_first(t: &Target) {
    let sink = t.sink();
    sink.ensure_schema().await.expect("schema");
    let vectors = [
        ("SHIRT", vec![1.0f32, 0.0, 0.0, 0.0]),
        ("JEANS", vec![0.0, 1.0, 0.0, 0.0]),
        ("SANDALS", vec![0.6, 0.8, 0.0, 0.0]),
    ];
    let ops: Vec<WriteOp> = vectors
        .iter()
        .map(|(sku, v)| upsert(sku, Some(v.clone())))
        .collect();
    sink.apply(&ops).await.expect("write");
    sink.apply(&[upsert("NO-VECTOR", None)])
        .await
        .expect("write");

    let query = [0.9f32, 0.1, 0.0, 0.0];
    let hits = sink.near_vector(&query, 2).await.expect("search");
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].product.sku, "SHIRT");
    assert_eq!(hits[1].product.sku, "SANDALS");
    assert_eq!(hits[0].id, product_id("SHIRT"));
    // Cosine distance, computed here independently of both servers.
    let cosine = |a: &[f32], b: &[f32]| {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        1.0 - dot / (n(a) * n(b))
    };
    assert!((hits[0].distance - cosine(&query, &vectors[0].1)).abs() < 1e-4);
    assert!((hits[1].distance - cosine(&query, &vectors[2].1)).abs() < 1e-4);
    assert!(hits[0].distance <= hits[1].distance);
}

// ---- transport, retries and faults (test server only) ----------------------------------------

#[tokio::test]
async fn api_key_is_sent_and_required() {
    let t = Target::test_server_with(ServerConfig {
        api_keys: vec!["s3cret".into()],
        ..ServerConfig::default()
    })
    .await;
    let mut cfg = t.config();
    cfg.api_key = Some(ApiKey::new("s3cret"));
    let sink = WeaviateSink::new(cfg).expect("valid");
    sink.ensure_schema().await.expect("authenticated");
    sink.apply(&[upsert("K", None)]).await.expect("write");
    let requests = t.server().requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(
            r.authorization.as_deref(),
            Some("Bearer s3cret"),
            "{} {}",
            r.method,
            r.path
        );
    }

    let err = t.sink().ensure_schema().await.expect_err("no key");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(401));
    assert!(!err.is_transient());
    assert!(
        err.to_string().contains("anonymous access not enabled"),
        "{err}"
    );

    let mut cfg = t.config();
    cfg.api_key = Some(ApiKey::new("wrong"));
    let err = WeaviateSink::new(cfg)
        .expect("valid")
        .ensure_schema()
        .await
        .expect_err("bad key");
    assert!(err.to_string().contains("invalid api key"), "{err}");
    assert!(!format!("{err:?}").contains("wrong"), "the key never shows");
    t.finish().await;
}

#[tokio::test]
async fn retries_after_500s() {
    let t = Target::test_server().await;
    let sink = t.sink();
    sink.ensure_schema().await.expect("schema");
    t.server()
        .faults()
        .inject(Fault::status(500).times(2).on("POST", "/v1/batch/objects"));
    let outcomes = sink.apply(&[upsert("R", None)]).await.expect("third try");
    assert_eq!(outcomes, vec![OpOutcome::Done]);
    assert_eq!(t.count("POST", "/v1/batch/objects"), 3);
    assert!(sink.get("R").await.expect("get").is_some());
    t.finish().await;
}

#[tokio::test]
async fn gives_up_with_a_transient_error_after_the_last_attempt() {
    let t = Target::test_server().await;
    let sink = t.sink();
    sink.ensure_schema().await.expect("schema");
    t.server()
        .faults()
        .inject(Fault::status(503).times(100).on("PATCH", "/v1/objects/"));
    let err = sink
        .apply(&[WriteOp::PatchProperties {
            product: product("P", None, None, None),
        }])
        .await
        .expect_err("still failing");
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
    assert_eq!(
        t.count(
            "PATCH",
            &format!("/v1/objects/{}/{}", t.class, product_id("P"))
        ),
        4
    );
    t.finish().await;
}

#[tokio::test]
async fn no_retry_on_422() {
    let t = Target::test_server().await;
    let sink = t.sink();
    sink.ensure_schema().await.expect("schema");
    t.server()
        .faults()
        .inject(Fault::status(422).on("POST", "/v1/batch/objects"));
    let err = sink.apply(&[upsert("V", None)]).await.expect_err("422");
    assert!(!err.is_transient());
    assert!(
        err.to_string().contains("injected fault"),
        "carries Weaviate's message: {err}"
    );
    assert_eq!(t.count("POST", "/v1/batch/objects"), 1);

    // A 422 on one PATCH is that object's rejection, not an error of the call.
    t.server()
        .faults()
        .inject(Fault::status(422).on("PATCH", "/v1/objects/"));
    let outcomes = sink
        .apply(&[WriteOp::PatchProperties {
            product: product("V", None, None, None),
        }])
        .await
        .expect("call succeeds");
    assert!(
        matches!(&outcomes[0], OpOutcome::Rejected { message } if message.contains("injected fault"))
    );
    assert_eq!(
        t.count(
            "PATCH",
            &format!("/v1/objects/{}/{}", t.class, product_id("V"))
        ),
        1
    );
    t.finish().await;
}

#[tokio::test]
async fn dropped_connections_and_timeouts_are_retried() {
    let t = Target::test_server().await;
    let mut cfg = t.config();
    cfg.timeout = Duration::from_millis(500);
    let sink = WeaviateSink::new(cfg).expect("valid");
    sink.ensure_schema().await.expect("schema");

    t.server()
        .faults()
        .inject(Fault::drop_connection().on("POST", "/v1/batch/objects"));
    assert_eq!(
        sink.apply(&[upsert("DROP", None)]).await.expect("retried"),
        vec![OpOutcome::Done]
    );
    assert_eq!(t.count("POST", "/v1/batch/objects"), 2);

    t.server()
        .faults()
        .inject(Fault::delay(Duration::from_secs(3)).on("DELETE", "/v1/objects/"));
    assert_eq!(
        sink.apply(&[WriteOp::Delete { sku: "DROP".into() }])
            .await
            .expect("retried"),
        vec![OpOutcome::Done]
    );
    assert_eq!(
        t.count(
            "DELETE",
            &format!("/v1/objects/{}/{}", t.class, product_id("DROP"))
        ),
        2
    );
    t.finish().await;
}

#[tokio::test]
async fn unreachable_weaviate_is_a_transient_error() {
    let port = harness::free_port();
    let mut cfg = WeaviateConfig::new(format!("http://user:hunter2@127.0.0.1:{port}"));
    cfg.retry = RetryPolicy {
        max_attempts: 2,
        backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(2)),
    };
    let err = WeaviateSink::new(cfg)
        .expect("valid")
        .ensure_schema()
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, SinkError::Transport { .. }), "{err}");
    assert!(err.is_transient());
    // Credentials in the URL never reach a message or a log line.
    let shown = format!("{err} {err:?} {:?}", std::error::Error::source(&err));
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
}

#[tokio::test]
async fn temporary_object_failures_are_retried_and_definite_ones_rejected() {
    let t = Target::test_server().await;
    let sink = t.sink();
    sink.ensure_schema().await.expect("schema");
    let server = t.server();
    server.faults().fail_objects(
        [product_id("TEMP")],
        "cannot achieve consistency level \"QUORUM\": read error",
        1,
    );
    // Only Weaviate's own validation wording about an object's content is a rejection.
    const INVALID: &str = "invalid number property 'price' on class 'Product': requires a float, the given value is '12.5'";
    server
        .faults()
        .fail_objects([product_id("BAD")], INVALID, 1);
    let outcomes = sink
        .apply(&[
            upsert("OK", None),
            upsert("TEMP", None),
            upsert("BAD", None),
        ])
        .await
        .expect("apply");
    assert_eq!(outcomes[0], OpOutcome::Done);
    assert_eq!(outcomes[1], OpOutcome::Done, "retried alone");
    assert_eq!(
        outcomes[2],
        OpOutcome::Rejected {
            message: INVALID.into()
        }
    );
    let batches: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/batch/objects")
        .collect();
    assert_eq!(batches.len(), 2);
    let second = batches[1].body.as_ref().expect("body");
    assert_eq!(second["objects"].as_array().map(Vec::len), Some(1));
    assert_eq!(second["objects"][0]["properties"]["sku"], "TEMP");
    t.finish().await;
}

#[tokio::test]
async fn unknown_object_errors_are_transient_never_rejections() {
    let t = Target::test_server().await;
    let sink = t.sink();
    sink.ensure_schema().await.expect("schema");
    // A message no list knows (a leader change, a shard move): retried, then reported as a
    // transient error of the whole call, so the pipeline holds its position. Never a rejection.
    t.server().faults().fail_objects(
        [product_id("ODD")],
        "raft: leadership transferred while applying",
        100,
    );
    let err = sink
        .apply(&[upsert("FINE", None), upsert("ODD", None)])
        .await
        .expect_err("held, not rejected");
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("leadership transferred"), "{err}");
    t.finish().await;
}

#[tokio::test]
async fn all_objects_failing_alike_is_a_class_problem() {
    let t = Target::test_server().await;
    let sink = t.sink();
    sink.ensure_schema().await.expect("schema");
    // Even a content-looking message, when every object of the batch gets it, says the class
    // (here: its vector length) is the problem: hold, do not dead-letter the stream.
    let message = "new node has a vector with length 3. Existing nodes have vectors with length 4";
    t.server()
        .faults()
        .fail_objects([product_id("A"), product_id("B")], message, 1);
    let err = sink
        .apply(&[upsert("A", None), upsert("B", None)])
        .await
        .expect_err("held");
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().contains("class or cluster problem"),
        "{err}"
    );
    t.finish().await;
}

#[tokio::test]
async fn many_deletes_are_one_batch_delete_by_id() {
    let t = Target::test_server().await;
    let sink = t.sink();
    sink.ensure_schema().await.expect("schema");
    let ops: Vec<WriteOp> = (0..30).map(|i| upsert(&format!("D{i}"), None)).collect();
    sink.apply(&ops).await.expect("write");
    let deletes: Vec<WriteOp> = (0..20)
        .map(|i| WriteOp::Delete {
            sku: format!("D{i}"),
        })
        .chain([WriteOp::Delete {
            sku: "NEVER-WRITTEN".into(),
        }])
        .collect();
    let outcomes = sink.apply(&deletes).await.expect("delete");
    assert!(outcomes.iter().all(|o| *o == OpOutcome::Done));
    assert_eq!(t.server().object_count(&t.class), 10);
    for i in 20..30 {
        assert!(
            t.server()
                .object(&t.class, product_id(&format!("D{i}")))
                .is_some()
        );
    }
    assert_eq!(t.count("DELETE", "/v1/batch/objects"), 1);
    let single_deletes = t
        .server()
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.starts_with("/v1/objects/"))
        .count();
    assert_eq!(single_deletes, 0);
    t.finish().await;
}

#[tokio::test]
async fn large_writes_are_split_into_several_batches() {
    let t = Target::test_server().await;
    let mut cfg = t.config();
    cfg.max_batch_objects = 10;
    let sink = WeaviateSink::new(cfg).expect("valid");
    sink.ensure_schema().await.expect("schema");
    let ops: Vec<WriteOp> = (0..25).map(|i| upsert(&format!("S{i}"), None)).collect();
    let outcomes = sink.apply(&ops).await.expect("write");
    assert_eq!(outcomes.len(), 25);
    assert_eq!(t.count("POST", "/v1/batch/objects"), 3);
    assert_eq!(t.server().object_count(&t.class), 25);
    t.finish().await;
}

#[tokio::test]
async fn ready_reports_weaviate_readiness() {
    let t = Target::test_server().await;
    let sink = t.sink();
    sink.ready().await.expect("ready");
    t.server().set_ready(false);
    let err = sink.ready().await.expect_err("not ready");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
    assert!(err.is_transient());
    t.finish().await;
}

#[tokio::test]
async fn class_name_override_keeps_the_seeds_ids() {
    let t = Target::test_server().await;
    let sink = t.sink();
    sink.ensure_schema().await.expect("schema");
    sink.apply(&[upsert("SKU-123", None)]).await.expect("write");
    // The id prefix is the literal "Product", whatever the class is called.
    let id = uuid::Uuid::parse_str("fe45772b-8fae-53e0-b955-515010125b4c").expect("uuid");
    assert!(t.server().object(&t.class, id).is_some());
    assert_eq!(
        ClassSchema::product().class_name(),
        "Product",
        "the default class is the seed's"
    );
    t.finish().await;
}
