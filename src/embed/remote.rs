//! [`RemoteEmbedder`]: embeddings from an OpenAI-compatible server (`--embedder URL`).
//!
//! `URL` is the API base as OpenAI clients take it (`http://tei:8080/v1`); vecsync posts
//! `{"model": ..., "input": [...]}` to `{URL}/embeddings`, the API that Hugging Face TEI, vLLM,
//! infinity, Ollama and OpenAI serve. Texts are sent `batch` per request with up to
//! `concurrency` requests in flight, so throughput scales with the server's replicas; the vectors
//! come back in input order.
//!
//! Every answer is checked before a vector is used: one item per text, each `index` exactly
//! once (items are put in order by it), every vector of the dimension the probe found, every
//! number finite. A vector with a non-finite number fails that text only.
//!
//! # The probe
//! [`RemoteEmbedder::probe`] runs once before any other call: it lists `{URL}/models` when the
//! server offers that listing (some servers answer a request for an unknown model with the one
//! model they have, so the name must be checked up front) and embeds [`PROBE_TEXT`], which
//! fixes the dimension every later answer must have.
//!
//! # Error handling
//! - Connection failures, timeouts, 408, 429 and 5xx are retried `attempts` times through the
//!   crate's one backoff (a `Retry-After` raises the wait), then reported as
//!   [`EmbedCallError::Transient`]: the pipeline holds its position and tries again.
//! - 401/403 (the API key) and 404 (the URL or the model) are [`EmbedCallError::Definite`],
//!   with a message naming the flag to fix.
//! - 400, 413 and 422 refuse the request's content. A batch so refused is sent again one text at
//!   a time; a single text refused while the probe text is still accepted is a per-text failure
//!   (the pipeline dead-letters it). When the probe text is refused too, the model or the server
//!   changed: that is definite, never a reason to dead-letter everything.
//! - An answer of the wrong shape (count, indices, dimension) is definite: the server is not
//!   what vecsync was pointed at.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};

use super::text_embedder::{EmbedCallError, TextOutcome};
use crate::backoff::{Attempts, Backoff};
use crate::secret::Secret;

/// Embedded at start to learn the dimension and check the model; kept constant because its
/// vector is what tells "this text is refused" from "the model is gone".
pub const PROBE_TEXT: &str = "vecsync probe: a comfortable pair of running shoes";

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// The API base, e.g. `http://tei:8080/v1` (`/embeddings` is appended).
    pub url: String,
    /// The `model` field of every request.
    pub model: String,
    /// Sent as `Authorization: Bearer`.
    pub api_key: Option<Secret>,
    /// Texts per request.
    pub batch: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Limit of one request, connecting included.
    pub timeout: Duration,
    /// Limit of connecting.
    pub connect_timeout: Duration,
    /// Attempts of one request before a transient failure is handed to the caller.
    pub attempts: u32,
    /// The waits between those attempts.
    pub backoff: Backoff,
}

impl RemoteConfig {
    /// Defaults for everything but where and what: 32 texts per request, 2 in flight, 30 s per
    /// request, 3 attempts.
    pub fn new(url: impl Into<String>, model: impl Into<String>) -> Self {
        RemoteConfig {
            url: url.into(),
            model: model.into(),
            api_key: None,
            batch: 32,
            concurrency: 2,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
        }
    }
}

/// A client of one embeddings server. Cheap to clone: clones share connections and the probed
/// dimension.
#[derive(Clone)]
pub struct RemoteEmbedder {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    embeddings: Url,
    models: Url,
    /// `scheme://host:port/path` of the API base, for messages: no credentials, no query.
    endpoint: String,
    model: String,
    batch: usize,
    concurrency: usize,
    timeout: Duration,
    attempts: u32,
    backoff: Backoff,
    /// Set by the probe; every answer must match it.
    dimension: OnceLock<usize>,
}

impl std::fmt::Debug for RemoteEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteEmbedder")
            .field("endpoint", &self.inner.endpoint)
            .field("model", &self.inner.model)
            .field("batch", &self.inner.batch)
            .field("concurrency", &self.inner.concurrency)
            .field("dimension", &self.inner.dimension.get())
            .finish_non_exhaustive()
    }
}

/// Why one request failed, before retries and isolation decide what it means.
enum Failure {
    /// Worth another attempt.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The server refused the content of this request (400, 413, 422).
    Refused { status: StatusCode, message: String },
    /// Nothing to retry.
    Definite(String),
}

impl RemoteEmbedder {
    /// Build the client. Checks the settings; does not contact the server.
    pub fn new(config: RemoteConfig) -> Result<RemoteEmbedder, EmbedCallError> {
        let bad = |why: String| EmbedCallError::Definite(format!("--embedder: {why}"));
        let mut base = Url::parse(config.url.trim()).map_err(|e| bad(e.to_string()))?;
        if base.scheme() != "http" && base.scheme() != "https" {
            return Err(bad(format!(
                "the URL must start with http:// or https://, not {}://",
                base.scheme()
            )));
        }
        let host = base
            .host_str()
            .ok_or_else(|| bad("the URL has no host".into()))?
            .to_owned();
        base.set_query(None);
        base.set_fragment(None);
        let path = base.path().trim_end_matches('/').to_owned();
        if path.ends_with("/embeddings") {
            return Err(bad(format!(
                "give the API base (e.g. http://tei:8080/v1), not the embeddings endpoint: vecsync \
                 appends /embeddings itself (got a path ending in {path})"
            )));
        }
        let endpoint = match base.port_or_known_default() {
            Some(port) => format!("{}://{host}:{port}{path}", base.scheme()),
            None => format!("{}://{host}{path}", base.scheme()),
        };
        base.set_path(&format!("{path}/"));
        let join = |p: &str| base.join(p).map_err(|e| bad(e.to_string()));
        let (embeddings, models) = (join("embeddings")?, join("models")?);

        let mut headers = HeaderMap::new();
        if let Some(key) = &config.api_key {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    bad("the API key has characters not allowed in an HTTP header".into())
                })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .default_headers(headers)
            .user_agent(concat!("vecsync/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout.min(config.timeout))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .map_err(|e| bad(format!("cannot build the HTTP client: {e}")))?;
        Ok(RemoteEmbedder {
            inner: Arc::new(Inner {
                http,
                embeddings,
                models,
                endpoint,
                model: config.model,
                batch: config.batch.max(1),
                concurrency: config.concurrency.max(1),
                timeout: config.timeout,
                attempts: config.attempts.max(1),
                backoff: config.backoff,
                dimension: OnceLock::new(),
            }),
        })
    }

    /// The model name sent with every request.
    pub fn model(&self) -> &str {
        &self.inner.model
    }

    /// The API base, printable (no credentials).
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// The vector length, known once [`RemoteEmbedder::probe`] succeeded.
    pub fn dimension(&self) -> Option<usize> {
        self.inner.dimension.get().copied()
    }

    /// Requests in flight at most.
    pub fn concurrency(&self) -> usize {
        self.inner.concurrency
    }

    /// Check the model name against `{URL}/models` when the server lists its models, then
    /// embed [`PROBE_TEXT`] and fix the dimension. Returns the probe's vector.
    pub async fn probe(&self) -> Result<Vec<f32>, EmbedCallError> {
        let listed = self.check_model_listed().await?;
        let probe = [PROBE_TEXT.to_owned()];
        let (vectors, answered_model) = match self.request(&probe, true).await? {
            Ok(answer) => answer,
            Err((status, message)) => {
                return Err(EmbedCallError::Definite(format!(
                    "the embedder at {} refused a one-line probe text with {status}: {message}; \
                     the usual cause is a model name it does not serve: check --embedder-model \
                     (`{}`)",
                    self.inner.endpoint, self.inner.model
                )));
            }
        };
        let vector = match vectors.into_iter().next() {
            Some(Ok(v)) => v,
            Some(Err(reason)) => {
                return Err(EmbedCallError::Definite(format!(
                    "the embedder at {} returned an unusable probe vector: {reason}",
                    self.inner.endpoint
                )));
            }
            None => {
                return Err(EmbedCallError::Definite(format!(
                    "the embedder at {} returned no probe vector",
                    self.inner.endpoint
                )));
            }
        };
        if let Some(answered) = answered_model.filter(|m| *m != self.inner.model)
            && !listed
        {
            // OpenAI itself answers some requests with a more specific name, so a different
            // name is not proof of a wrong model; without a listing it is only worth a warning.
            tracing::warn!(
                requested = %self.inner.model,
                answered = %answered,
                endpoint = %self.inner.endpoint,
                "the embedder answered with another model name than --embedder-model"
            );
        }
        let dimension = *self.inner.dimension.get_or_init(|| vector.len());
        if dimension != vector.len() {
            return Err(EmbedCallError::Definite(format!(
                "the embedder at {} now returns {}-dimension vectors, it returned {dimension} \
                 before: the model behind it changed",
                self.inner.endpoint,
                vector.len()
            )));
        }
        tracing::info!(
            endpoint = %self.inner.endpoint,
            model = %self.inner.model,
            dimension,
            "remote embedder answered the probe"
        );
        Ok(vector)
    }

    /// One outcome per text, in input order. Probes first if that has not happened yet.
    pub async fn embed_each(&self, texts: &[String]) -> Result<Vec<TextOutcome>, EmbedCallError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        if self.dimension().is_none() {
            self.probe().await?;
        }
        let started = std::time::Instant::now();
        // Each request's future owns its texts and a handle: futures borrowing `self` and
        // `texts` inside `buffered` trip rustc's higher-ranked Send check (rust-lang/rust#102211)
        // when the pipeline's future is spawned.
        let chunks: Vec<Vec<String>> = texts
            .chunks(self.inner.batch)
            .map(<[String]>::to_vec)
            .collect();
        let parts: Vec<Vec<TextOutcome>> = stream::iter(chunks)
            .map(|chunk| {
                let this = self.clone();
                async move { this.embed_chunk(&chunk).await }
            })
            .buffered(self.inner.concurrency)
            .try_collect()
            .await?;
        tracing::debug!(
            texts = texts.len(),
            requests = parts.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedded remotely"
        );
        Ok(parts.into_iter().flatten().collect())
    }

    /// One request; when the server refuses its content, one request per text to find which.
    async fn embed_chunk(&self, chunk: &[String]) -> Result<Vec<TextOutcome>, EmbedCallError> {
        match self.request(chunk, false).await? {
            Ok((vectors, _)) => Ok(vectors),
            Err((status, message)) if chunk.len() == 1 => {
                Ok(vec![Err(self.refused_text(status, message).await?)])
            }
            Err((status, message)) => {
                tracing::warn!(
                    %status,
                    %message,
                    texts = chunk.len(),
                    "the embedder refused a batch; sending its texts one by one"
                );
                let mut out = Vec::with_capacity(chunk.len());
                for text in chunk {
                    match self.request(std::slice::from_ref(text), false).await? {
                        Ok((mut vectors, _)) => {
                            out.push(vectors.pop().unwrap_or_else(|| {
                                Err("the embedder returned no vector".to_owned())
                            }))
                        }
                        Err((status, message)) => {
                            out.push(Err(self.refused_text(status, message).await?))
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    /// A single text was refused: it is that text's fault only if the probe text still passes.
    async fn refused_text(
        &self,
        status: StatusCode,
        message: String,
    ) -> Result<String, EmbedCallError> {
        match self.request(&[PROBE_TEXT.to_owned()], false).await? {
            Ok(_) => Ok(format!(
                "the embedder refused this text with {status}: {message}"
            )),
            Err((probe_status, probe_message)) => Err(EmbedCallError::Definite(format!(
                "the embedder at {} now refuses every text, the probe text included \
                 ({probe_status}: {probe_message}); check that it still serves model `{}` \
                 (--embedder-model)",
                self.inner.endpoint, self.inner.model
            ))),
        }
    }

    /// Send `texts` until it succeeds, is refused, fails for good or runs out of attempts.
    /// `Ok(Err((status, message)))` is a refusal of the content. On success, also the model
    /// name the server answered with.
    async fn request(
        &self,
        texts: &[String],
        probing: bool,
    ) -> Result<Result<(Vec<TextOutcome>, Option<String>), (StatusCode, String)>, EmbedCallError>
    {
        let mut attempts = Attempts::new(self.inner.backoff);
        loop {
            let (reason, retry_after) = match self.send_once(texts, probing).await {
                Ok(answer) => return Ok(Ok(answer)),
                Err(Failure::Refused { status, message }) => return Ok(Err((status, message))),
                Err(Failure::Definite(reason)) => return Err(EmbedCallError::Definite(reason)),
                Err(Failure::Retry {
                    reason,
                    retry_after,
                }) => (reason, retry_after),
            };
            let wait = attempts.fail(retry_after);
            if attempts.failures() >= self.inner.attempts {
                return Err(EmbedCallError::Transient {
                    reason,
                    retry_after,
                });
            }
            tracing::debug!(
                %reason,
                attempt = attempts.failures(),
                wait_ms = wait.as_millis() as u64,
                "embedder request failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn send_once(
        &self,
        texts: &[String],
        probing: bool,
    ) -> Result<(Vec<TextOutcome>, Option<String>), Failure> {
        let endpoint = &self.inner.endpoint;
        let body = json!({ "model": self.inner.model, "input": texts });
        metrics::counter!(crate::telemetry::EMBEDDER_REQUESTS_TOTAL).increment(1);
        let response = self
            .inner
            .http
            .post(self.inner.embeddings.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| self.transport_failure(e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_failure(e))?;
        if !status.is_success() {
            metrics::counter!(crate::telemetry::EMBEDDER_FAILURES_TOTAL).increment(1);
        }
        let message = || error_message(&bytes);
        match status {
            s if s.is_success() => self.parse(texts.len(), &bytes, probing),
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => Err(Failure::Retry {
                reason: format!(
                    "the embedder at {endpoint} answered {status}: {}",
                    message()
                ),
                retry_after,
            }),
            s if s.is_server_error() => Err(Failure::Retry {
                reason: format!(
                    "the embedder at {endpoint} answered {status}: {}",
                    message()
                ),
                retry_after,
            }),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Failure::Definite(format!(
                "the embedder at {endpoint} refused the API key with {status}: {}; check \
                 --embedder-api-key / VECSYNC_EMBEDDER_API_KEY",
                message()
            ))),
            StatusCode::NOT_FOUND => Err(Failure::Definite(format!(
                "{} answered 404 Not Found ({}): either the URL is wrong (--embedder takes the \
                 API base, e.g. http://tei:8080/v1, and vecsync appends /embeddings) or the server \
                 has no model `{}` (--embedder-model)",
                self.inner.embeddings_printable(),
                message(),
                self.inner.model
            ))),
            StatusCode::BAD_REQUEST
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNPROCESSABLE_ENTITY => Err(Failure::Refused {
                status,
                message: message(),
            }),
            _ => Err(Failure::Definite(format!(
                "the embedder at {endpoint} answered {status}: {}",
                message()
            ))),
        }
    }

    fn transport_failure(&self, error: reqwest::Error) -> Failure {
        let endpoint = &self.inner.endpoint;
        if error.is_builder() {
            return Failure::Definite(format!(
                "cannot build a request to the embedder at {endpoint}: {}",
                error_chain(&error.without_url())
            ));
        }
        metrics::counter!(crate::telemetry::EMBEDDER_FAILURES_TOTAL).increment(1);
        let reason = if error.is_timeout() {
            format!(
                "the embedder at {endpoint} did not answer within {} s (--embedder-timeout-secs)",
                self.inner.timeout.as_secs_f64()
            )
        } else {
            format!(
                "cannot reach the embedder at {endpoint}: {}",
                error_chain(&error.without_url())
            )
        };
        Failure::Retry {
            reason,
            retry_after: None,
        }
    }

    /// Check an answer and put its vectors in input order.
    fn parse(
        &self,
        expected: usize,
        bytes: &[u8],
        probing: bool,
    ) -> Result<(Vec<TextOutcome>, Option<String>), Failure> {
        let bad = |detail: String| {
            Failure::Definite(format!(
                "the embedder at {} gave an answer vecsync cannot use: {detail}",
                self.inner.endpoint
            ))
        };
        let body: Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON ({e})")))?;
        let data = body
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no `data` list".into()))?;
        if data.len() != expected {
            return Err(bad(format!("{} vectors for {expected} texts", data.len())));
        }
        let want_dim = if probing {
            None
        } else {
            self.inner.dimension.get().copied()
        };
        let mut slots: Vec<Option<TextOutcome>> = vec![None; expected];
        let mut seen_dim: Option<usize> = None;
        for item in data {
            let index = item
                .get("index")
                .and_then(Value::as_u64)
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(|| bad("an item without a numeric `index`".into()))?;
            let slot = slots
                .get_mut(index)
                .ok_or_else(|| bad(format!("index {index} for {expected} texts")))?;
            if slot.is_some() {
                return Err(bad(format!("index {index} twice")));
            }
            let numbers = match item.get("embedding") {
                Some(Value::Array(n)) => n,
                Some(Value::String(_)) => {
                    return Err(bad(
                        "a base64 `embedding`; vecsync asks for floats (the server ignores \
                         the default encoding_format)"
                            .into(),
                    ));
                }
                _ => return Err(bad(format!("item {index} has no `embedding` list"))),
            };
            let len = numbers.len();
            if len == 0 {
                return Err(bad(format!("item {index} has an empty embedding")));
            }
            if let Some(want) = want_dim.or(seen_dim)
                && want != len
            {
                return Err(bad(format!(
                    "a {len}-dimension vector where the probe gave {want}: the model behind the \
                     server changed (point vecsync at the model the index was built with, or \
                     re-index)"
                )));
            }
            seen_dim = Some(len);
            let vector: Option<Vec<f32>> = numbers
                .iter()
                .map(|n| n.as_f64().map(|f| f as f32).filter(|f| f.is_finite()))
                .collect();
            *slot = Some(vector.ok_or_else(|| {
                format!("the embedder returned a vector with a non-finite or non-number value for item {index}")
            }));
        }
        let outcomes = slots
            .into_iter()
            .map(|s| s.unwrap_or_else(|| Err("no vector returned".to_owned())))
            .collect();
        let model = body.get("model").and_then(Value::as_str).map(str::to_owned);
        Ok((outcomes, model))
    }

    /// `Ok(true)` when `{URL}/models` lists the model, `Ok(false)` when the server has no such
    /// listing (not every server does), a definite error when it lists other models only.
    async fn check_model_listed(&self) -> Result<bool, EmbedCallError> {
        let mut attempts = Attempts::new(self.inner.backoff);
        loop {
            let failure = match self.inner.http.get(self.inner.models.clone()).send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    match response.bytes().await {
                        Ok(bytes) => match self.read_model_listing(status, &bytes, retry_after) {
                            Ok(listed) => return Ok(listed),
                            Err(f) => f,
                        },
                        Err(e) => self.transport_failure(e),
                    }
                }
                Err(e) => self.transport_failure(e),
            };
            let (reason, retry_after) = match failure {
                Failure::Retry {
                    reason,
                    retry_after,
                } => (reason, retry_after),
                Failure::Definite(reason) => return Err(EmbedCallError::Definite(reason)),
                Failure::Refused { .. } => return Ok(false),
            };
            let wait = attempts.fail(retry_after);
            if attempts.failures() >= self.inner.attempts {
                return Err(EmbedCallError::Transient {
                    reason,
                    retry_after,
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    fn read_model_listing(
        &self,
        status: StatusCode,
        bytes: &[u8],
        retry_after: Option<Duration>,
    ) -> Result<bool, Failure> {
        let endpoint = &self.inner.endpoint;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Failure::Definite(format!(
                "the embedder at {endpoint} refused the API key with {status}: {}; check \
                 --embedder-api-key / VECSYNC_EMBEDDER_API_KEY",
                error_message(bytes)
            )));
        }
        if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
        {
            return Err(Failure::Retry {
                reason: format!(
                    "the embedder at {endpoint} answered {status} to GET /models: {}",
                    error_message(bytes)
                ),
                retry_after,
            });
        }
        let ids: Option<Vec<String>> = status
            .is_success()
            .then(|| serde_json::from_slice::<Value>(bytes).ok())
            .flatten()
            .and_then(|v| {
                v.get("data")?.as_array().map(|items| {
                    items
                        .iter()
                        .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned))
                        .collect()
                })
            });
        match ids {
            Some(ids) if ids.iter().any(|id| *id == self.inner.model) => Ok(true),
            Some(ids) if !ids.is_empty() => Err(Failure::Definite(format!(
                "the embedder at {endpoint} does not serve model `{}` (--embedder-model); it \
                 serves: {}",
                self.inner.model,
                ids.join(", ")
            ))),
            _ => {
                tracing::debug!(
                    %status,
                    endpoint = %endpoint,
                    "the embedder lists no models; the model name is checked by the probe only"
                );
                Ok(false)
            }
        }
    }
}

impl Inner {
    fn embeddings_printable(&self) -> String {
        format!("{}/embeddings", self.endpoint)
    }
}

/// `Retry-After` as seconds or as an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The server's message: OpenAI's `{"error":{"message"}}`, TEI's `{"error": "..."}`,
/// FastAPI's `{"detail": ...}`, else the start of the body.
fn error_message(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty body)".into();
    }
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let found = value
            .pointer("/error/message")
            .or_else(|| value.get("error"))
            .or_else(|| value.get("detail"))
            .or_else(|| value.get("message"));
        match found {
            Some(Value::String(s)) => return s.clone(),
            Some(other) => return other.to_string(),
            None => {}
        }
    }
    let text = String::from_utf8_lossy(body);
    let mut snippet: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        snippet.push('…');
    }
    snippet
}

/// An error and its sources, each once (reqwest's Display leaves the cause out).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> RemoteEmbedder {
        RemoteEmbedder::new(RemoteConfig::new("http://127.0.0.1:9/v1/", "m")).expect("valid")
    }

    fn parsed(e: &RemoteEmbedder, n: usize, body: Value) -> Result<Vec<TextOutcome>, String> {
        match e.parse(n, body.to_string().as_bytes(), false) {
            Ok((v, _)) => Ok(v),
            Err(Failure::Definite(m)) => Err(m),
            Err(_) => Err("not definite".into()),
        }
    }

    #[test]
    fn urls_are_the_api_base_plus_embeddings() {
        let e = client();
        assert_eq!(
            e.inner.embeddings.as_str(),
            "http://127.0.0.1:9/v1/embeddings"
        );
        assert_eq!(e.inner.models.as_str(), "http://127.0.0.1:9/v1/models");
        assert_eq!(e.endpoint(), "http://127.0.0.1:9/v1");
        let root = RemoteEmbedder::new(RemoteConfig::new("https://u:pw@h", "m")).expect("valid");
        assert_eq!(root.inner.embeddings.as_str(), "https://u:pw@h/embeddings");
        assert_eq!(
            root.endpoint(),
            "https://h:443",
            "no credentials in messages"
        );
        let e = RemoteEmbedder::new(RemoteConfig::new("http://h/v1/embeddings", "m"))
            .expect_err("endpoint instead of base");
        assert!(e.to_string().contains("API base"), "{e}");
        assert!(RemoteEmbedder::new(RemoteConfig::new("ftp://h", "m")).is_err());
    }

    #[test]
    fn api_key_never_prints() {
        let mut config = RemoteConfig::new("http://h/v1", "m");
        config.api_key = Some(Secret::new("sk-s3cr3t"));
        assert!(!format!("{config:?}").contains("s3cr3t"));
        let e = RemoteEmbedder::new(config).expect("valid");
        assert!(!format!("{e:?}").contains("s3cr3t"));
    }

    #[test]
    fn answers_are_put_in_index_order() {
        let e = client();
        let body = json!({"data": [
            {"index": 1, "embedding": [0.0, 1.0]},
            {"index": 0, "embedding": [1.0, 0.0]},
        ]});
        let v = parsed(&e, 2, body).expect("valid");
        assert_eq!(v[0].as_ref().expect("ok"), &vec![1.0, 0.0]);
        assert_eq!(v[1].as_ref().expect("ok"), &vec![0.0, 1.0]);
    }

    #[test]
    fn wrong_shapes_are_definite() {
        let e = client();
        let one = |v: Value| json!({"data": [v]});
        for (body, n, want) in [
            (json!({"data": []}), 1, "0 vectors for 1 texts"),
            (json!({"nope": 1}), 1, "no `data`"),
            (
                one(json!({"embedding": [1.0]})),
                1,
                "without a numeric `index`",
            ),
            (
                one(json!({"index": 3, "embedding": [1.0]})),
                1,
                "index 3 for 1",
            ),
            (one(json!({"index": 0, "embedding": "AAAA"})), 1, "base64"),
            (
                one(json!({"index": 0, "embedding": []})),
                1,
                "empty embedding",
            ),
            (
                json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]}),
                2,
                "index 0 twice",
            ),
            (
                json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1.0, 2.0]}]}),
                2,
                "2-dimension vector where the probe gave 1",
            ),
        ] {
            let m = parsed(&e, n, body).expect_err(want);
            assert!(m.contains(want), "{m} should contain {want}");
        }
        assert!(
            e.parse(1, b"<html>", false).is_err(),
            "a non-JSON answer is refused"
        );
    }

    #[test]
    fn the_probed_dimension_is_enforced() {
        let e = client();
        e.inner.dimension.set(3).expect("unset");
        let m = parsed(
            &e,
            1,
            json!({"data": [{"index": 0, "embedding": [1.0, 2.0]}]}),
        )
        .expect_err("wrong dimension");
        assert!(m.contains("where the probe gave 3"), "{m}");
    }

    #[test]
    fn a_non_finite_number_fails_that_text_only() {
        let e = client();
        let v = parsed(
            &e,
            2,
            json!({"data": [
                {"index": 0, "embedding": [1e39, 0.0]},
                {"index": 1, "embedding": [0.5, 0.5]},
            ]}),
        )
        .expect("valid answer");
        assert!(v[0].as_ref().is_err_and(|m| m.contains("non-finite")));
        assert!(v[1].is_ok());
    }

    #[test]
    fn retry_after_as_seconds_or_date() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(120);
        let got = parse_retry_after(&httpdate::fmt_http_date(later)).expect("date");
        assert!(
            got > Duration::from_secs(100) && got <= Duration::from_secs(120),
            "{got:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn server_messages_are_found_in_the_usual_shapes() {
        assert_eq!(
            error_message(br#"{"error":{"message":"The model `x` does not exist."}}"#),
            "The model `x` does not exist."
        );
        assert_eq!(
            error_message(br#"{"error":"Input validation error"}"#),
            "Input validation error"
        );
        assert_eq!(error_message(br#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(error_message(b""), "(empty body)");
        assert_eq!(error_message(b"plain"), "plain");
    }
}
