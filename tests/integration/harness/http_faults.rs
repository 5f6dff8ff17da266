//! An HTTP proxy that forwards to a real server and answers chosen requests itself with a
//! fault (a status, headers, a body): the way to test the rate-limit path (429 with
//! `Retry-After`) against a real inference server that never limits.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tokio_util::sync::CancellationToken;

/// One canned answer, given instead of forwarding.
#[derive(Debug, Clone)]
pub struct HttpFault {
    /// Only requests whose path ends with this are answered (e.g. `/embeddings`).
    pub path_suffix: String,
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

impl HttpFault {
    /// A 429 with `Retry-After: secs` for requests to paths ending in `path_suffix`.
    pub fn too_many_requests(path_suffix: &str, secs: u64) -> HttpFault {
        HttpFault {
            path_suffix: path_suffix.to_owned(),
            status: 429,
            retry_after: Some(secs.to_string()),
            body: r#"{"error":{"message":"rate limit reached","type":"rate_limit"}}"#.into(),
        }
    }
}

/// A request the proxy saw, and what it answered.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub path: String,
    pub status: u16,
}

struct Shared {
    target: String,
    http: reqwest::Client,
    faults: Mutex<VecDeque<HttpFault>>,
    seen: Mutex<Vec<Seen>>,
}

/// Forwards `127.0.0.1:port()` to `target` (an origin, `http://host:port`).
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl FaultProxy {
    pub async fn start(target: &str) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared {
            target: target.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            faults: Mutex::new(VecDeque::new()),
            seen: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(forward).with_state(shared.clone());
        let stop = CancellationToken::new();
        let until = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(until)
                .await;
        });
        FaultProxy { port, shared, stop }
    }

    /// `http://127.0.0.1:port` followed by `path` (e.g. `/v1`).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answer the next matching request with `fault`, `times` times in all.
    pub fn inject(&self, fault: HttpFault, times: usize) {
        let mut faults = self.shared.faults.lock().expect("faults lock");
        faults.extend(std::iter::repeat_n(fault, times));
    }

    /// Faults not used yet.
    pub fn pending(&self) -> usize {
        self.shared.faults.lock().expect("faults lock").len()
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().expect("seen lock").clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let at = Instant::now();
    let path = request.uri().path().to_owned();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |p| p.as_str().to_owned());
    let fault = {
        let mut faults = shared.faults.lock().expect("faults lock");
        match faults.front() {
            Some(f) if path.ends_with(&f.path_suffix) => faults.pop_front(),
            _ => None,
        }
    };
    let response = match fault {
        Some(fault) => {
            let mut response = Response::new(Body::from(fault.body));
            *response.status_mut() =
                StatusCode::from_u16(fault.status).expect("a valid fault status");
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Some(after) = fault.retry_after {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_str(&after).expect("a valid Retry-After"),
                );
            }
            response
        }
        None => pass_through(&shared, request, &path_and_query).await,
    };
    shared.seen.lock().expect("seen lock").push(Seen {
        at,
        path,
        status: response.status().as_u16(),
    });
    response
}

async fn pass_through(shared: &Shared, request: Request, path_and_query: &str) -> Response {
    let method = request.method().clone();
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    let mut upstream = shared
        .http
        .request(method, format!("{}{path_and_query}", shared.target))
        .body(body);
    for name in [header::CONTENT_TYPE, header::AUTHORIZATION] {
        if let Some(v) = headers.get(&name) {
            upstream = upstream.header(name, v.clone());
        }
    }
    match upstream.send().await {
        Ok(answer) => {
            let status = answer.status();
            let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
            let bytes = answer.bytes().await.unwrap_or_default();
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            if let Some(ct) = content_type {
                response.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            response
        }
        Err(_) => {
            let mut response = Response::new(Body::from("upstream unreachable"));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}
