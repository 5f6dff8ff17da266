//! [`WeaviateSink`]: the Weaviate REST client the pipeline writes through.
//!
//! - Upserts go through `POST /v1/batch/objects`, Weaviate's real upsert (`PUT` answers 404 for a
//!   missing object). That call answers 200 even when objects fail, so every per-object result is
//!   read: a validation failure becomes [`OpOutcome::Rejected`] with Weaviate's message, never a
//!   silent drop.
//! - A properties-only change is a `PATCH` without a vector: Weaviate merges it and keeps the
//!   stored vector. A 404 comes back as [`OpOutcome::Missing`] so the caller can embed and upsert.
//! - Deletes are `DELETE /v1/objects/{class}/{id}`, which answers 204 even for a missing object.
//! - One `reqwest::Client` is shared by every clone of the sink, so connections are reused.
//!
//! # Error handling
//! Connection failures, timeouts, 408, 429 and 5xx are retried with capped exponential backoff and
//! jitter ([`RetryPolicy`]); once the attempts are used up the call returns an error whose
//! [`SinkError::is_transient`] is true, and the pipeline retries while holding its position.
//! Other statuses (401, 403, 400, whole-request 422) are definite and carry Weaviate's message.
//!
//! # Cancellation
//! Every future here may be dropped at any await point (the pipeline does so on shutdown): no
//! state outlives a call, and every write is idempotent (deterministic ids, full-object upserts,
//! full-property patches), so a write interrupted half-way is simply repeated.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::config::{ConsistencyLevel, WeaviateConfig};
use super::error::{SinkError, status_is_transient};
use super::ids::product_id;
use super::object_error::{self, ObjectFailure};
use super::product::{OpOutcome, Product, StoredProduct, WriteOp};
use super::retry::RetryPolicy;
use super::schema::{ClassSchema, SchemaStatus, validate_class_name};
use super::search::{SearchHit, near_vector_request, parse_near_vector_response};

/// How many stored objects `ensure_schema` reads to check their vector length.
const VECTOR_CHECK_SAMPLE: usize = 100;

/// Most ids matched by one batch delete (Weaviate's `QUERY_MAXIMUM_RESULTS` default).
const BATCH_DELETE_MAX: usize = 10_000;

/// The body of `POST /v1/batch/objects`, serialized straight from the products and vectors.
#[derive(serde::Serialize)]
struct BatchBody<'a> {
    objects: Vec<BatchObject<'a>>,
}

#[derive(serde::Serialize)]
struct BatchObject<'a> {
    class: &'a str,
    id: Uuid,
    properties: &'a Product,
    #[serde(skip_serializing_if = "Option::is_none")]
    vector: Option<&'a [f32]>,
}

/// Writes products into one Weaviate class. Cheap to clone: clones share the HTTP connection
/// pool.
#[derive(Clone)]
pub struct WeaviateSink {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `.../v1/`, every call path is joined onto it.
    base: Url,
    /// `scheme://host:port`, for messages: never the full URL, which may carry credentials.
    endpoint: String,
    class: String,
    schema: ClassSchema,
    consistency: Option<ConsistencyLevel>,
    retry: RetryPolicy,
    vector_dimensions: usize,
    max_batch_objects: usize,
    max_concurrent_requests: usize,
}

impl std::fmt::Debug for WeaviateSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeaviateSink")
            .field("endpoint", &self.inner.endpoint)
            .field("class", &self.inner.class)
            .finish_non_exhaustive()
    }
}

/// One HTTP call, described once and sent as many times as the retry policy allows.
pub(super) struct Call {
    method: Method,
    /// Relative to `/v1/`.
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Bytes>,
    /// Also return these transient statuses as answers instead of retrying them.
    keep: fn(StatusCode, &[u8]) -> bool,
}

impl Call {
    pub(super) fn new(method: Method, path: String) -> Self {
        Call {
            method,
            path,
            query: Vec::new(),
            body: None,
            keep: |_, _| false,
        }
    }

    pub(super) fn json(self, body: &Value) -> Self {
        self.serialized(body)
    }

    /// Any serializable body (typed request structs, no `Value` tree), serialized once; retries
    /// resend the same bytes.
    pub(super) fn serialized<T: serde::Serialize + ?Sized>(mut self, body: &T) -> Self {
        // Serializing plain data into a Vec cannot fail (maps have string keys).
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.body = Some(Bytes::from(bytes));
        self
    }

    pub(super) fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    pub(super) fn what(&self) -> String {
        format!("{} /v1/{}", self.method, self.path)
    }

    /// The `kind` label of `vecsync_weaviate_requests_total`: few, fixed values.
    fn kind(&self) -> &'static str {
        let first = self.path.split('/').next().unwrap_or_default();
        match (&self.method, first) {
            (&Method::POST, "batch") => "batch_upsert",
            (&Method::DELETE, "batch") => "batch_delete",
            (&Method::PATCH, "objects") => "patch",
            (&Method::DELETE, "objects") => "delete",
            (_, "objects") => "read",
            (_, "schema") => "schema",
            (_, "graphql") => "search",
            (_, ".well-known") => "ready",
            _ => "other",
        }
    }
}

/// An HTTP answer, read in full.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Bytes,
    pub(super) retry_after: Option<Duration>,
}

impl WeaviateSink {
    /// Build the client. Checks the settings but does not contact Weaviate.
    pub fn new(cfg: WeaviateConfig) -> Result<Self, SinkError> {
        validate_class_name(&cfg.class).map_err(SinkError::Config)?;
        let schema = cfg
            .schema
            .with_class_name(&cfg.class)
            .map_err(SinkError::Config)?;
        let (base, endpoint) = base_url(&cfg.url)?;
        if cfg.vector_dimensions == 0 {
            return Err(SinkError::Config(
                "vector dimensions must be above 0".into(),
            ));
        }

        if cfg.api_key.is_some() && base.scheme() == "http" && !is_loopback(&base) {
            warn!(
                endpoint = %endpoint,
                "the Weaviate API key travels over plain http: anyone on the path can read it; use https"
            );
        }
        let mut headers = HeaderMap::new();
        if let Some(key) = &cfg.api_key {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    SinkError::Config(
                        "the API key contains characters not allowed in an HTTP header".into(),
                    )
                })?;
            // Keeps the key out of HTTP-level debug output too.
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .default_headers(headers)
            .user_agent(concat!("vecsync/", env!("CARGO_PKG_VERSION")))
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .map_err(|e| SinkError::Config(format!("cannot build the HTTP client: {e}")))?;

        Ok(WeaviateSink {
            inner: Arc::new(Inner {
                http,
                base,
                endpoint,
                class: cfg.class,
                schema,
                consistency: cfg.consistency_level,
                retry: cfg.retry,
                vector_dimensions: cfg.vector_dimensions,
                max_batch_objects: cfg.max_batch_objects.max(1),
                max_concurrent_requests: cfg.max_concurrent_requests.max(1),
            }),
        })
    }

    /// The class this sink writes.
    pub fn class(&self) -> &str {
        &self.inner.class
    }

    /// The properties of the class definition vecsync writes, in definition order.
    pub fn property_names(&self) -> Vec<String> {
        self.inner.schema.property_names()
    }

    /// `GET /v1/.well-known/ready`, once, without retrying: `Ok` when Weaviate can serve
    /// traffic, a transient error while it starts (503) or cannot be reached.
    pub async fn ready(&self) -> Result<(), SinkError> {
        let call = Call::new(Method::GET, ".well-known/ready".into());
        let answer = self.send_once(&call).await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(self.status_error(&call, &answer))
        }
    }

    /// Create the class when it is missing; when it exists, check that vecsync can write to it
    /// (property types, vectorizer `none`, no multi-tenancy, and the length of stored vectors).
    /// Never deletes or changes an existing class.
    pub async fn ensure_schema(&self) -> Result<SchemaStatus, SinkError> {
        let class = &self.inner.class;
        if let Some(existing) = self.fetch_class().await? {
            self.verify_class(&existing).await?;
            info!(class = %class, "Weaviate class exists and is compatible");
            return Ok(SchemaStatus::Compatible);
        }

        let call = Call::new(Method::POST, "schema".into()).json(self.inner.schema.definition());
        let answer = self.send(&call).await?;
        if answer.status.is_success() {
            info!(class = %class, "created Weaviate class");
            return Ok(SchemaStatus::Created);
        }
        // Another writer (or our own earlier attempt whose answer was lost) created it first.
        let message = error_message(&answer.body);
        if answer.status == StatusCode::UNPROCESSABLE_ENTITY && message.contains("already exists") {
            if let Some(existing) = self.fetch_class().await? {
                self.verify_class(&existing).await?;
                return Ok(SchemaStatus::Compatible);
            }
        }
        Err(self.status_error(&call, &answer))
    }

    async fn fetch_class(&self) -> Result<Option<Value>, SinkError> {
        let call = Call::new(Method::GET, format!("schema/{}", self.inner.class));
        let answer = self.send(&call).await?;
        match answer.status {
            StatusCode::OK => Ok(Some(self.parse_json(&call, &answer)?)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.status_error(&call, &answer)),
        }
    }

    async fn verify_class(&self, existing: &Value) -> Result<(), SinkError> {
        let class = &self.inner.class;
        let compat = self.inner.schema.check(existing);
        for warning in &compat.warnings {
            warn!(class = %class, warning = %warning, "Weaviate class differs from schema/product.json");
        }
        let mut problems = compat.problems;
        if problems.is_empty() {
            problems.extend(self.stored_vector_problem().await?);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SinkError::IncompatibleSchema {
                class: class.clone(),
                problems,
            })
        }
    }

    /// Look at the first stored objects: vectors of another length mean another model wrote
    /// this class, and every vecsync write would fail (or worse, mix two vector spaces).
    async fn stored_vector_problem(&self) -> Result<Option<String>, SinkError> {
        let call = Call::new(Method::GET, "objects".into())
            .query("class", self.inner.class.clone())
            .query("limit", VECTOR_CHECK_SAMPLE.to_string())
            .query("include", "vector");
        let answer = self.send(&call).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(self.status_error(&call, &answer));
        }
        let body = self.parse_json(&call, &answer)?;
        let objects = body
            .get("objects")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let want = self.inner.vector_dimensions;
        let other = objects
            .iter()
            .filter_map(|o| o.get("vector").and_then(Value::as_array))
            .map(Vec::len)
            .find(|&len| len != 0 && len != want);
        Ok(other.map(|len| {
            format!(
                "objects already stored have {len}-dimension vectors, vecsync writes {want} \
                 (another embedding model wrote this class)"
            )
        }))
    }

    /// Apply write operations on distinct objects; one outcome per operation, in order.
    ///
    /// Upserts go in one `POST /v1/batch/objects` (split above `max_batch_objects`), several
    /// deletes in one `DELETE /v1/batch/objects` matching their ids, patches (and a lone delete)
    /// run concurrently. An `Err` means the whole call may be retried: every operation is
    /// idempotent.
    pub async fn apply(&self, ops: &[WriteOp]) -> Result<Vec<OpOutcome>, SinkError> {
        let of_kind = |want: fn(&WriteOp) -> bool| -> Vec<usize> {
            (0..ops.len()).filter(|&i| want(&ops[i])).collect()
        };
        let upserts = of_kind(|op| matches!(op, WriteOp::Upsert { .. }));
        let mut deletes = of_kind(|op| matches!(op, WriteOp::Delete { .. }));
        let mut singles = of_kind(|op| matches!(op, WriteOp::PatchProperties { .. }));
        if deletes.len() == 1 {
            singles.append(&mut deletes);
        }

        let batch = self.upsert_all(ops, &upserts);
        let removed = self.delete_many(ops, &deletes);
        let single = stream::iter(singles)
            .map(|i| async move { self.apply_single(&ops[i]).await.map(|o| (i, o)) })
            .buffer_unordered(self.inner.max_concurrent_requests)
            .try_collect::<Vec<_>>();
        let (batch, removed, single) = tokio::try_join!(batch, removed, single)?;

        let mut outcomes = vec![None; ops.len()];
        for (i, outcome) in batch.into_iter().chain(removed).chain(single) {
            outcomes[i] = Some(outcome);
        }
        outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                o.ok_or_else(|| SinkError::UnexpectedResponse {
                    what: "apply".into(),
                    detail: format!("no outcome for operation {i}"),
                })
            })
            .collect()
    }

    async fn upsert_all(
        &self,
        ops: &[WriteOp],
        indices: &[usize],
    ) -> Result<Vec<(usize, OpOutcome)>, SinkError> {
        let mut out = Vec::with_capacity(indices.len());
        for chunk in indices.chunks(self.inner.max_batch_objects) {
            out.extend(self.upsert_chunk(ops, chunk).await?);
        }
        Ok(out)
    }

    /// One batch request, then again for the objects that failed with a transient error.
    ///
    /// Per-object failures are judged by what they are ([`super::object_error`]): an error about
    /// the object's own content is a rejection; a `read-only` error anywhere fails the whole
    /// batch (some Weaviate versions report the rest as SUCCESS although nothing was written);
    /// every object failing with one message is a class or cluster problem; anything else is
    /// retried, and returned as a transient error once the attempts are used up.
    async fn upsert_chunk(
        &self,
        ops: &[WriteOp],
        chunk: &[usize],
    ) -> Result<Vec<(usize, OpOutcome)>, SinkError> {
        let class = &self.inner.class;
        let mut out = Vec::with_capacity(chunk.len());
        let mut pending: Vec<usize> = chunk.to_vec();
        let mut attempt = 1;
        loop {
            let objects: Vec<BatchObject<'_>> = pending
                .iter()
                .filter_map(|&i| match &ops[i] {
                    WriteOp::Upsert { product, vector } => Some(BatchObject {
                        class,
                        id: product_id(&product.sku),
                        properties: product,
                        vector: vector.as_deref(),
                    }),
                    _ => None,
                })
                .collect();
            let call = self
                .with_consistency(Call::new(Method::POST, "batch/objects".into()))
                .serialized(&BatchBody { objects });
            let answer = self.send(&call).await?;
            if answer.status != StatusCode::OK {
                return Err(self.status_error(&call, &answer));
            }
            let results = self.parse_batch_results(&call, &answer)?;
            let mut by_id: HashMap<Uuid, Option<String>> = results.into_iter().collect();

            let mut failed: Vec<(usize, String)> = Vec::new();
            for &i in &pending {
                let id = product_id(ops[i].sku());
                match by_id.remove(&id) {
                    None => {
                        return Err(SinkError::UnexpectedResponse {
                            what: call.what(),
                            detail: format!("no result for object {id}"),
                        });
                    }
                    Some(None) => out.push((i, OpOutcome::Done)),
                    Some(Some(message)) => failed.push((i, message)),
                }
            }
            if failed.is_empty() {
                return Ok(out);
            }
            if let Some((_, message)) = failed.iter().find(|(_, m)| object_error::is_read_only(m)) {
                // Nothing of this batch can be trusted as written: hold the whole batch.
                return Err(SinkError::ReadOnly {
                    message: message.clone(),
                });
            }
            if failed.len() == pending.len()
                && pending.len() > 1
                && failed.iter().all(|(_, m)| *m == failed[0].1)
            {
                return Err(SinkError::ClassWide {
                    count: failed.len(),
                    message: failed[0].1.clone(),
                });
            }
            let mut transient = Vec::new();
            for (i, message) in failed {
                match object_error::classify(&message) {
                    ObjectFailure::Content => {
                        warn!(sku = %ops[i].sku(), error = %message, "Weaviate rejected an object");
                        out.push((i, OpOutcome::Rejected { message }));
                    }
                    ObjectFailure::Transient => transient.push((i, message)),
                }
            }
            let Some((_, first_message)) = transient.first().cloned() else {
                return Ok(out);
            };
            if attempt >= self.inner.retry.attempts() {
                return Err(SinkError::ObjectsFailing {
                    count: transient.len(),
                    first_message,
                });
            }
            let wait = self.inner.retry.backoff(attempt, None);
            warn!(
                count = transient.len(),
                error = %first_message,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "Weaviate failed objects of a batch with an error that is not about their content; retrying them"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
            pending = transient.into_iter().map(|(i, _)| i).collect();
        }
    }

    /// Delete several objects in one `DELETE /v1/batch/objects` matching their ids
    /// (`ContainsAny` on `id`). A missing object simply does not match: deleting is idempotent.
    async fn delete_many(
        &self,
        ops: &[WriteOp],
        indices: &[usize],
    ) -> Result<Vec<(usize, OpOutcome)>, SinkError> {
        let ids: Vec<Uuid> = indices.iter().map(|&i| product_id(ops[i].sku())).collect();
        self.delete_ids(&ids).await?;
        Ok(indices.iter().map(|&i| (i, OpOutcome::Done)).collect())
    }

    /// Delete these objects by id, in as few `DELETE /v1/batch/objects` calls as Weaviate's
    /// limit allows. Missing ids are fine.
    pub async fn delete_ids(&self, ids: &[Uuid]) -> Result<(), SinkError> {
        let class = &self.inner.class;
        for chunk in ids.chunks(BATCH_DELETE_MAX) {
            let ids: Vec<String> = chunk.iter().map(|id| id.hyphenated().to_string()).collect();
            let body = json!({
                "match": {
                    "class": class,
                    "where": { "path": ["id"], "operator": "ContainsAny", "valueTextArray": ids }
                },
                "output": "minimal",
                "dryRun": false
            });
            let call = self
                .with_consistency(Call::new(Method::DELETE, "batch/objects".into()))
                .json(&body);
            let answer = self.send(&call).await?;
            if answer.status != StatusCode::OK {
                return Err(self.status_error(&call, &answer));
            }
            let result = self.parse_json(&call, &answer)?;
            let failed = result
                .pointer("/results/failed")
                .and_then(Value::as_u64)
                .ok_or_else(|| SinkError::UnexpectedResponse {
                    what: call.what(),
                    detail: format!("no results.failed in {result}"),
                })?;
            if failed > 0 {
                return Err(SinkError::ObjectsFailing {
                    count: failed as usize,
                    first_message: format!(
                        "batch delete of {} objects of `{class}` failed for {failed}",
                        ids.len()
                    ),
                });
            }
        }
        Ok(())
    }

    /// The per-object results of a batch write: id and, for a failed object, Weaviate's message.
    fn parse_batch_results(
        &self,
        call: &Call,
        answer: &Answer,
    ) -> Result<Vec<(Uuid, Option<String>)>, SinkError> {
        let body = self.parse_json(call, answer)?;
        let unexpected = |detail: String| SinkError::UnexpectedResponse {
            what: call.what(),
            detail,
        };
        let items = body
            .as_array()
            .ok_or_else(|| unexpected("the answer is not a list".into()))?;
        items
            .iter()
            .map(|item| {
                let id = item
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .ok_or_else(|| unexpected(format!("result without a valid id: {item}")))?;
                // `status` defaults to SUCCESS in Weaviate's spec.
                let failed =
                    item.pointer("/result/status").and_then(Value::as_str) == Some("FAILED");
                let message = failed.then(|| {
                    let messages: Vec<&str> = item
                        .pointer("/result/errors/error")
                        .and_then(Value::as_array)
                        .map(|errs| {
                            errs.iter()
                                .filter_map(|e| e.get("message").and_then(Value::as_str))
                                .collect()
                        })
                        .unwrap_or_default();
                    if messages.is_empty() {
                        "object failed without a message".to_owned()
                    } else {
                        messages.join("; ")
                    }
                });
                Ok((id, message))
            })
            .collect()
    }

    async fn apply_single(&self, op: &WriteOp) -> Result<OpOutcome, SinkError> {
        match op {
            WriteOp::PatchProperties { product } => self.patch(product).await,
            WriteOp::Delete { sku } => self.delete(sku).await,
            WriteOp::Upsert { .. } => Err(SinkError::UnexpectedResponse {
                what: "apply".into(),
                detail: "an upsert reached the single-object path".into(),
            }),
        }
    }

    async fn patch(&self, product: &Product) -> Result<OpOutcome, SinkError> {
        let class = &self.inner.class;
        let id = product_id(&product.sku);
        // No `vector` key: with vectorizer "none" Weaviate keeps the stored vector.
        let body = json!({ "class": class, "id": id, "properties": product.to_properties() });
        let call = self
            .with_consistency(Call::new(Method::PATCH, format!("objects/{class}/{id}")))
            .json(&body);
        let answer = self.send(&call).await?;
        match answer.status {
            s if s.is_success() => Ok(OpOutcome::Done),
            StatusCode::NOT_FOUND => Ok(OpOutcome::Missing),
            StatusCode::UNPROCESSABLE_ENTITY => {
                let message = error_message(&answer.body);
                warn!(sku = %product.sku, id = %id, error = %message, "Weaviate rejected a patch");
                Ok(OpOutcome::Rejected { message })
            }
            _ => Err(self.status_error(&call, &answer)),
        }
    }

    async fn delete(&self, sku: &str) -> Result<OpOutcome, SinkError> {
        let class = &self.inner.class;
        let id = product_id(sku);
        let mut call =
            self.with_consistency(Call::new(Method::DELETE, format!("objects/{class}/{id}")));
        // Deleting from a class that does not exist is a 500 ("delete from non-existing
        // index"); the object is gone either way, and retrying would wedge the pipeline.
        call.keep = |status, body| {
            status == StatusCode::INTERNAL_SERVER_ERROR
                && String::from_utf8_lossy(body).contains("non-existing index")
        };
        let answer = self.send(&call).await?;
        match answer.status {
            // 404 from servers before 1.26, which did not treat a missing object as deleted.
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(OpOutcome::Done),
            s if (call.keep)(s, &answer.body) => Ok(OpOutcome::Done),
            _ => Err(self.status_error(&call, &answer)),
        }
    }

    /// Remove every object of the class with batch deletes (Weaviate deletes at most
    /// `QUERY_MAXIMUM_RESULTS`, 10,000 by default, per call) until none matches. Returns how
    /// many objects were deleted. The class itself stays.
    pub async fn truncate(&self) -> Result<u64, SinkError> {
        let class = &self.inner.class;
        // Weaviate's own tests match every object this way: `id` is the internal `_id`.
        let body = json!({
            "match": {
                "class": class,
                "where": { "path": ["id"], "operator": "Like", "valueText": "*" }
            },
            "output": "minimal",
            "dryRun": false
        });
        let mut deleted = 0u64;
        loop {
            let call = self
                .with_consistency(Call::new(Method::DELETE, "batch/objects".into()))
                .json(&body);
            let answer = self.send(&call).await?;
            if answer.status != StatusCode::OK {
                return Err(self.status_error(&call, &answer));
            }
            let result = self.parse_json(&call, &answer)?;
            let count = |key: &str| {
                result
                    .pointer(&format!("/results/{key}"))
                    .and_then(Value::as_f64)
                    .map(|n| n as u64)
                    .ok_or_else(|| SinkError::UnexpectedResponse {
                        what: call.what(),
                        detail: format!("no results.{key} in {result}"),
                    })
            };
            let matches = count("matches")?;
            let successful = count("successful")?;
            let failed = count("failed")?;
            deleted += successful;
            debug!(class = %class, matches, successful, failed, "batch delete");
            if matches == 0 {
                info!(class = %class, deleted, "truncated Weaviate class");
                return Ok(deleted);
            }
            if successful == 0 {
                return Err(SinkError::ObjectsFailing {
                    count: failed as usize,
                    first_message: format!(
                        "batch delete matched {matches} objects of `{class}` but deleted none"
                    ),
                });
            }
        }
    }

    /// The `limit` products nearest to `vector`, nearest first (GraphQL `nearVector`, see
    /// [`super::search`]).
    pub async fn near_vector(
        &self,
        vector: &[f32],
        limit: usize,
    ) -> Result<Vec<SearchHit>, SinkError> {
        let body = near_vector_request(&self.inner.class, vector, limit)?;
        let call = Call::new(Method::POST, "graphql".into()).json(&body);
        let answer = self.send(&call).await?;
        if answer.status != StatusCode::OK {
            return Err(self.status_error(&call, &answer));
        }
        let body = self.parse_json(&call, &answer)?;
        parse_near_vector_response(&self.inner.class, &body)
    }

    /// The stored object of this sku with its vector, or `None` when there is none.
    pub async fn get(&self, sku: &str) -> Result<Option<StoredProduct>, SinkError> {
        let class = &self.inner.class;
        let id = product_id(sku);
        let call = self
            .with_consistency(Call::new(Method::GET, format!("objects/{class}/{id}")))
            .query("include", "vector");
        let answer = self.send(&call).await?;
        match answer.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(self.status_error(&call, &answer)),
        }
        let body = self.parse_json(&call, &answer)?;
        let unexpected = |detail: String| SinkError::UnexpectedResponse {
            what: call.what(),
            detail,
        };
        let product = Product::from_properties(body.get("properties").unwrap_or(&Value::Null))
            .map_err(unexpected)?;
        let vector = match body.get("vector") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) if items.is_empty() => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| v.as_f64().map(|f| f as f32))
                    .collect::<Option<Vec<f32>>>()
                    .ok_or_else(|| unexpected("vector with a non-number".into()))?,
            ),
            Some(other) => return Err(unexpected(format!("vector is not a list: {other}"))),
        };
        Ok(Some(StoredProduct {
            id,
            product,
            vector,
        }))
    }

    fn with_consistency(&self, call: Call) -> Call {
        match self.inner.consistency {
            Some(level) => call.query("consistency_level", level.as_str()),
            None => call,
        }
    }

    /// Send, retrying transport failures and transient statuses; any other status is returned
    /// for the caller to interpret.
    pub(super) async fn send(&self, call: &Call) -> Result<Answer, SinkError> {
        let attempts = self.inner.retry.attempts();
        let mut attempt = 1;
        loop {
            let (error, retry_after) = match self.send_once(call).await {
                Ok(answer)
                    if !status_is_transient(answer.status)
                        || (call.keep)(answer.status, &answer.body) =>
                {
                    return Ok(answer);
                }
                Ok(answer) => (self.status_error(call, &answer), answer.retry_after),
                Err(error) if error.is_transient() => (error, None),
                Err(error) => return Err(error),
            };
            if attempt >= attempts {
                return Err(error);
            }
            let wait = self.inner.retry.backoff(attempt, retry_after);
            warn!(
                %error,
                attempt,
                max_attempts = attempts,
                wait_ms = wait.as_millis() as u64,
                "Weaviate request failed; retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn send_once(&self, call: &Call) -> Result<Answer, SinkError> {
        // The call and endpoint are named in the error already; dropping reqwest's copy of the
        // URL keeps anything odd in it (query, credentials) out of messages.
        let transport = |source: reqwest::Error| SinkError::Transport {
            endpoint: self.inner.endpoint.clone(),
            what: call.what(),
            source: source.without_url(),
        };
        let mut url = self
            .inner
            .base
            .join(&call.path)
            .map_err(|e| SinkError::Config(format!("bad request path {}: {e}", call.path)))?;
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&call.query);
        }
        let mut request = self.inner.http.request(call.method.clone(), url);
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let started = Instant::now();
        metrics::counter!(crate::telemetry::WEAVIATE_REQUESTS_TOTAL, "kind" => call.kind())
            .increment(1);
        let response = request.send().await.map_err(|e| {
            metrics::counter!(crate::telemetry::WEAVIATE_FAILURES_TOTAL).increment(1);
            transport(e)
        })?;
        let status = response.status();
        // A 404 is an answer (object missing), not a failure.
        if (status.is_client_error() && status != StatusCode::NOT_FOUND) || status.is_server_error()
        {
            metrics::counter!(crate::telemetry::WEAVIATE_FAILURES_TOTAL).increment(1);
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.map_err(transport)?;
        debug!(
            method = %call.method,
            path = %call.path,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Weaviate call"
        );
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }

    pub(super) fn parse_json(&self, call: &Call, answer: &Answer) -> Result<Value, SinkError> {
        serde_json::from_slice(&answer.body).map_err(|e| SinkError::UnexpectedResponse {
            what: call.what(),
            detail: format!("not JSON ({e}): {}", snippet(&answer.body)),
        })
    }

    pub(super) fn status_error(&self, call: &Call, answer: &Answer) -> SinkError {
        SinkError::Status {
            what: call.what(),
            status: answer.status,
            message: error_message(&answer.body),
        }
    }
}

/// Whether the URL's host is this machine (plain http to it does not cross a network).
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Split the configured URL into the `/v1/` base every path is joined to, and a printable
/// `scheme://host:port` without credentials.
fn base_url(raw: &str) -> Result<(Url, String), SinkError> {
    let bad = |why: String| SinkError::Config(format!("Weaviate URL: {why}"));
    let mut url = Url::parse(raw.trim()).map_err(|e| bad(e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad(format!(
            "scheme must be http or https, not {}",
            url.scheme()
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| bad("no host".into()))?
        .to_owned();
    let endpoint = match url.port_or_known_default() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    };
    let path = url.path().trim_end_matches('/');
    let path = path.strip_suffix("/v1").unwrap_or(path).to_owned();
    url.set_path(&format!("{path}/v1/"));
    url.set_query(None);
    url.set_fragment(None);
    Ok((url, endpoint))
}

/// Weaviate's message from an error body: `{"error":[{"message"}]}` from its handlers, or
/// `{"code","message"}` from the OpenAPI layer (request validation, authentication).
fn error_message(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty body)".into();
    }
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        if let Some(errors) = value.get("error").and_then(Value::as_array) {
            let messages: Vec<&str> = errors
                .iter()
                .filter_map(|e| e.get("message").and_then(Value::as_str))
                .collect();
            if !messages.is_empty() {
                return messages.join("; ");
            }
        }
        if let Some(message) = value.get("message").and_then(Value::as_str) {
            return message.to_owned();
        }
    }
    snippet(body)
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_accepts_common_forms_and_hides_credentials() {
        for raw in [
            "http://localhost:8080",
            "http://localhost:8080/",
            "http://localhost:8080/v1",
            "http://localhost:8080/v1/",
        ] {
            let (url, endpoint) = base_url(raw).expect("valid");
            assert_eq!(url.as_str(), "http://localhost:8080/v1/", "{raw}");
            assert_eq!(endpoint, "http://localhost:8080");
        }
        let (url, endpoint) = base_url("https://user:pw@db.example/weaviate").expect("valid");
        assert_eq!(url.path(), "/weaviate/v1/");
        assert_eq!(endpoint, "https://db.example:443");
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("not a url").is_err());
    }

    #[test]
    fn loopback_hosts_are_told_apart() {
        for (url, want) in [
            ("http://localhost:8080", true),
            ("http://127.0.0.1:8080", true),
            ("http://[::1]:8080", true),
            ("http://weaviate:8080", false),
            ("http://10.0.0.7:8080", false),
        ] {
            let (base, _) = base_url(url).expect("valid");
            assert_eq!(is_loopback(&base), want, "{url}");
        }
    }

    #[test]
    fn error_messages_from_both_error_shapes() {
        assert_eq!(
            error_message(br#"{"error":[{"message":"a"},{"message":"b"}]}"#),
            "a; b"
        );
        assert_eq!(
            error_message(br#"{"code":601,"message":"id in body must be of type uuid"}"#),
            "id in body must be of type uuid"
        );
        assert_eq!(error_message(b""), "(empty body)");
        assert_eq!(error_message(b"<html>"), "<html>");
    }

    #[test]
    fn invalid_settings_are_refused_before_any_call() {
        let mut cfg = WeaviateConfig::new("http://localhost:8080");
        cfg.class = "lowercase".into();
        assert!(matches!(WeaviateSink::new(cfg), Err(SinkError::Config(_))));
        let cfg = WeaviateConfig::new("localhost:8080");
        assert!(matches!(WeaviateSink::new(cfg), Err(SinkError::Config(_))));
    }
}
