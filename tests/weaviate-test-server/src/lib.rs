//! A Weaviate-compatible in-memory HTTP server for vecsync's tests (issue 4). Never shipped: it
//! is a dev-dependency only.
//!
//! No Weaviate can run where vecsync is built and tested, so the sink's tests need a stand-in,
//! and the stand-in must not teach the sink Weaviate's quirks wrongly. Two things keep it honest:
//!
//! 1. behaviour copied from Weaviate's handlers and use cases (see `CONTRACT.md`): batch writes
//!    always answer 200 with a per-object result, `PUT` is a replace that 404s for a missing
//!    object, `PATCH` keeps the stored vector, `DELETE` answers 204 for a missing object, every
//!    404 has an empty body, auto-schema creates missing classes, `string` becomes `text`, batch
//!    deletes stop at `QUERY_MAXIMUM_RESULTS`;
//! 2. Weaviate's own OpenAPI spec, embedded: every request body is checked as go-swagger checks
//!    it (with the real status and error shape when it fails), and every response is checked
//!    against the declared schema. A response that breaks the spec is recorded
//!    ([`TestServer::spec_violations`]) and replaced by a 500, so drift cannot pass silently.
//!
//! Tests can inject faults ([`Faults`]) and read every request received
//! ([`TestServer::requests`]).

mod api;
mod classes;
mod faults;
mod filter;
mod graphql;
mod json;
mod query;
mod spec;
mod store;
mod text;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;
use uuid::Uuid;

pub use faults::{Fault, Faults};

/// Server settings, named after the Weaviate environment variables they mirror.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `AUTHENTICATION_APIKEY_ALLOWED_KEYS`. When not empty, anonymous access is off and every
    /// request but `/.well-known/*` needs `Authorization: Bearer <one of these>`.
    pub api_keys: Vec<String>,
    /// `QUERY_MAXIMUM_RESULTS`: the most objects one batch delete removes (and the largest
    /// listing window).
    pub query_maximum_results: usize,
    /// `QUERY_DEFAULTS_LIMIT`: objects listed when no limit is given.
    pub query_defaults_limit: usize,
    /// `AUTOSCHEMA_ENABLED`.
    pub auto_schema: bool,
    /// `DEFAULT_VECTORIZER_MODULE` (the seed's compose file sets `none`).
    pub default_vectorizer: String,
    /// What `/v1/meta` reports.
    pub version: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            api_keys: Vec::new(),
            query_maximum_results: 10_000,
            query_defaults_limit: 10,
            auto_schema: true,
            default_vectorizer: "none".into(),
            version: "1.39.0".into(),
        }
    }
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path without the query string, e.g. `/v1/batch/objects`.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// The `Authorization` header, verbatim.
    pub authorization: Option<String>,
    /// The JSON body, when there was one.
    pub body: Option<Value>,
}

/// A request as received; the body is parsed only when a test asks for it, so recording costs
/// nothing on the hot path (a batch of 256 vectors is a megabyte of JSON).
pub(crate) struct Received {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub body: bytes::Bytes,
}

pub(crate) struct Shared {
    pub config: ServerConfig,
    pub store: Mutex<store::Store>,
    pub faults: Faults,
    pub requests: Mutex<Vec<Received>>,
    pub violations: Mutex<Vec<String>>,
    pub ready: AtomicBool,
}

/// A running server on `127.0.0.1`. Stops when dropped.
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    router: Router,
    extra: Mutex<Vec<JoinHandle<()>>>,
}

impl TestServer {
    /// Start with Weaviate's defaults on a free port.
    pub async fn start() -> std::io::Result<TestServer> {
        TestServer::start_with(ServerConfig::default(), 0).await
    }

    /// Start with these settings on `port` (0: a free one).
    pub async fn start_with(config: ServerConfig, port: u16) -> std::io::Result<TestServer> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            store: Mutex::new(store::Store::default()),
            faults: Faults::default(),
            requests: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            ready: AtomicBool::new(true),
        });
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(accept_loop(listener, router.clone()));
        Ok(TestServer {
            addr,
            shared,
            task,
            router,
            extra: Mutex::new(Vec::new()),
        })
    }

    /// Also listen on `port` (0: a free one) of `127.0.0.1`, for clients that insist on a gRPC
    /// port of its own (Weaviate's 50051): the same server answers there, so a gRPC call gets
    /// the clear UNIMPLEMENTED refusal. Returns the address.
    pub async fn listen_also(&self, port: u16) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        lock(&self.extra).push(tokio::spawn(accept_loop(listener, self.router.clone())));
        Ok(addr)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Fault injection.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests)
            .iter()
            .map(|r| RecordedRequest {
                method: r.method.clone(),
                path: r.path.clone(),
                query: r.query.clone(),
                authorization: r.authorization.clone(),
                body: serde_json::from_slice(&r.body).ok(),
            })
            .collect()
    }

    /// Responses this server was about to send that broke Weaviate's spec (each was replaced by
    /// a 500). Tests assert this stays empty.
    pub fn spec_violations(&self) -> Vec<String> {
        lock(&self.shared.violations).clone()
    }

    /// Make `/.well-known/ready` answer 503 (false) or 200 (true).
    pub fn set_ready(&self, ready: bool) {
        self.shared.ready.store(ready, Ordering::SeqCst);
    }

    /// A stored object as `GET /v1/objects/{class}/{id}?include=vector` shows it, read directly.
    pub fn object(&self, class: &str, id: Uuid) -> Option<Value> {
        lock(&self.shared.store).object_json(class, &id, true)
    }

    /// How many objects `class` holds (0 when it does not exist).
    pub fn object_count(&self, class: &str) -> usize {
        lock(&self.shared.store).count(class)
    }

    /// Run one request through the whole pipeline (faults, spec checks, handler, response check)
    /// without a socket, and return the status and body. For benchmarks that measure the
    /// server's own cost; tests should go through HTTP.
    pub async fn handle_in_process(
        &self,
        method: &str,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> (u16, bytes::Bytes) {
        let request = hyper::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header("content-type", "application/json")
            .body(Body::from(body));
        let Ok(request) = request else {
            return (400, bytes::Bytes::new());
        };
        let response = api::handle(self.shared.clone(), request).await;
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        (status, body)
    }

    /// The stored definition of `class`, as `GET /v1/schema/{class}` shows it.
    pub fn class(&self, class: &str) -> Option<Value> {
        lock(&self.shared.store).class(class).cloned()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
        for task in lock(&self.extra).iter() {
            task.abort();
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A handle the request handler uses to close its own connection (fault injection).
#[derive(Clone)]
pub(crate) struct ConnectionKill(Arc<Notify>);

impl ConnectionKill {
    pub(crate) fn kill(&self) {
        self.0.notify_one();
    }
}

/// Accept connections and serve each with hyper, so a fault can close one connection without
/// answering (axum's own `serve` cannot).
async fn accept_loop(listener: TcpListener, router: Router) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let router = router.clone();
        let kill = Arc::new(Notify::new());
        let handle = ConnectionKill(kill.clone());
        connections.spawn(async move {
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(handle.clone());
                    router.clone().oneshot(request.map(Body::new))
                });
            // HTTP/1 for REST and GraphQL; HTTP/2 is accepted only so that a gRPC client gets
            // a clear UNIMPLEMENTED instead of a hang or a protocol error.
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                // Dropping the connection future closes the socket with no answer.
                _ = kill.notified() => {}
            }
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    api::handle(shared, request).await
}
