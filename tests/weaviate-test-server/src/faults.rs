//! Fault injection: make the server misbehave the way a real deployment sometimes does, on
//! purpose and in a way a test controls exactly.
//!
//! Faults simulate infrastructure (a proxy answering 502, a node restarting, a slow disk), so
//! their answers are not checked against the spec, except [`Fault::rewrite_response`], which
//! exists to prove the response check works.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Method;
use serde_json::Value;
use uuid::Uuid;

type Rewrite = Arc<dyn Fn(&mut Value) + Send + Sync>;

/// What a fault does to a matching request.
#[derive(Clone)]
pub(crate) enum Action {
    /// Answer with this status and an `{"error":[...]}` body, without handling the request.
    Status(u16),
    /// Wait, then handle the request normally.
    Delay(Duration),
    /// Close the connection without answering.
    Drop,
    /// Handle the request, then change the JSON body of the answer.
    Rewrite(Rewrite),
}

/// One fault, for the next `times` requests matching `method` and `path_prefix`.
#[derive(Clone)]
pub struct Fault {
    pub(crate) action: Action,
    pub(crate) times: usize,
    pub(crate) method: Option<Method>,
    pub(crate) path_prefix: String,
}

impl Fault {
    fn new(action: Action) -> Self {
        Fault {
            action,
            times: 1,
            method: None,
            path_prefix: String::new(),
        }
    }

    /// Answer with `status` (e.g. 500, 503, 429) instead of handling the request.
    pub fn status(status: u16) -> Self {
        Fault::new(Action::Status(status))
    }

    /// Hold the answer back for `delay`, then answer normally.
    pub fn delay(delay: Duration) -> Self {
        Fault::new(Action::Delay(delay))
    }

    /// Close the TCP connection without answering.
    pub fn drop_connection() -> Self {
        Fault::new(Action::Drop)
    }

    /// Change the JSON body of the answer (to send one that breaks the spec, for example).
    pub fn rewrite_response(rewrite: impl Fn(&mut Value) + Send + Sync + 'static) -> Self {
        Fault::new(Action::Rewrite(Arc::new(rewrite)))
    }

    /// Apply to the next `n` matching requests (default 1).
    pub fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }

    /// Apply only to `method` requests whose path starts with `path_prefix` (e.g. `"POST",
    /// "/v1/batch/objects"`).
    pub fn on(mut self, method: &str, path_prefix: &str) -> Self {
        self.method = method.parse().ok();
        self.path_prefix = path_prefix.to_owned();
        self
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        self.times > 0
            && self.method.as_ref().is_none_or(|m| m == method)
            && path.starts_with(&self.path_prefix)
    }
}

/// The faults of one server.
#[derive(Default)]
pub struct Faults {
    rules: Mutex<Vec<Fault>>,
    failing_objects: Mutex<HashMap<Uuid, (String, usize)>>,
}

impl Faults {
    /// Add a fault.
    pub fn inject(&self, fault: Fault) {
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(fault);
    }

    /// Answer the next `n` requests (any path) with 500.
    pub fn fail_next(&self, n: usize) {
        self.inject(Fault::status(500).times(n));
    }

    /// In the next `times` batch writes that contain them, report these objects as FAILED with
    /// `message` (the rest of the batch succeeds).
    pub fn fail_objects(&self, ids: impl IntoIterator<Item = Uuid>, message: &str, times: usize) {
        let mut failing = self
            .failing_objects
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for id in ids {
            failing.insert(id, (message.to_owned(), times));
        }
    }

    /// Remove every fault.
    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.failing_objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The actions for this request, each fault used once.
    pub(crate) fn take(&self, method: &Method, path: &str) -> Vec<Action> {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        let mut actions = Vec::new();
        for rule in rules.iter_mut() {
            if rule.matches(method, path) {
                rule.times -= 1;
                actions.push(rule.action.clone());
            }
        }
        rules.retain(|r| r.times > 0);
        actions
    }

    /// The injected failure message for this object in a batch write, if any.
    pub(crate) fn object_failure(&self, id: &Uuid) -> Option<String> {
        let mut failing = self
            .failing_objects
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (message, left) = failing.get_mut(id)?;
        let message = message.clone();
        *left -= 1;
        if *left == 0 {
            failing.remove(id);
        }
        Some(message)
    }
}
