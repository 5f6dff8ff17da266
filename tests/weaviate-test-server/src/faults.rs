//! Fault injection: make the server misbehave the way a real deployment sometimes does, on
//! purpose and in a way a test controls exactly.
//!
//! Faults simulate infrastructure (a proxy answering 502, a node restarting, a slow disk), so
//! their answers are not checked against the spec, except [`Fault::rewrite_response`], which
//! exists to prove the response check works.
//!
//! Besides request faults, a store can be made read-only ([`Faults::read_only`]), optionally
//! with the per-object reporting bug of Weaviate 1.32.0 to 1.38.9 and 1.39.0
//! ([`Faults::read_only_with_reporting_bug`]: only the first object of the shard is reported
//! FAILED, the others SUCCESS, and none is written; fixed by Weaviate PR #12519). The bug is
//! never on by default: the test server behaves like a fixed Weaviate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Method;
use serde_json::Value;
use uuid::Uuid;

use crate::lock;

type Rewrite = Arc<dyn Fn(&mut Value) + Send + Sync>;

/// What a fault does to a matching request.
#[derive(Clone)]
pub(crate) enum Action {
    /// Answer with this status and an `{"error":[{"message"}]}` body, without handling the
    /// request.
    Status(u16, String),
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
        Fault::new(Action::Status(
            status,
            "weaviate-test-server: injected fault".into(),
        ))
    }

    /// Answer with `status` and this message in Weaviate's error shape (e.g. 500 `cannot
    /// process batch: not enough memory`).
    pub fn status_with_message(status: u16, message: &str) -> Self {
        Fault::new(Action::Status(status, message.to_owned()))
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

/// A read-only store, as Weaviate makes a shard read-only when the disk or memory is nearly
/// full.
#[derive(Debug, Clone)]
pub(crate) struct ReadOnly {
    /// The `due to` part of `store is read-only due to: ...`.
    pub reason: String,
    /// Report like Weaviate 1.32.0 to 1.38.9 and 1.39.0 (first object FAILED, the rest SUCCESS).
    pub reporting_bug: bool,
}

impl ReadOnly {
    pub(crate) fn message(&self) -> String {
        format!("store is read-only due to: {}", self.reason)
    }
}

/// The faults of one server.
#[derive(Default)]
pub struct Faults {
    rules: Mutex<Vec<Fault>>,
    failing_objects: Mutex<HashMap<Uuid, (String, usize)>>,
    failing_batches: Mutex<Vec<(String, usize)>>,
    read_only: Mutex<Option<ReadOnly>>,
}

impl Faults {
    /// Add a fault.
    pub fn inject(&self, fault: Fault) {
        lock(&self.rules).push(fault);
    }

    /// Answer the next `n` requests (any path) with 500.
    pub fn fail_next(&self, n: usize) {
        self.inject(Fault::status(500).times(n));
    }

    /// In the next `times` batch writes that contain them, report these objects as FAILED with
    /// `message` (the rest of the batch succeeds).
    pub fn fail_objects(&self, ids: impl IntoIterator<Item = Uuid>, message: &str, times: usize) {
        let mut failing = lock(&self.failing_objects);
        for id in ids {
            failing.insert(id, (message.to_owned(), times));
        }
    }

    /// In the next `times` batch writes, report EVERY object as FAILED with `message` and
    /// write none (a class-wide problem, e.g. `could not find index for class Product. It might
    /// have been deleted in the meantime`).
    pub fn fail_batches(&self, message: &str, times: usize) {
        lock(&self.failing_batches).push((message.to_owned(), times));
    }

    /// Make the store read-only, as a fixed Weaviate reports it: every object of a batch is
    /// FAILED with `store is read-only due to: <reason>`, object writes and deletes answer 500,
    /// and nothing is written. Lasts until [`Faults::writable`] or [`Faults::clear`].
    pub fn read_only(&self, reason: &str) {
        *lock(&self.read_only) = Some(ReadOnly {
            reason: reason.to_owned(),
            reporting_bug: false,
        });
    }

    /// Make the store read-only with the batch reporting bug of Weaviate 1.32.0 to 1.38.9 and
    /// 1.39.0: in each batch only the FIRST object is reported FAILED (`store is read-only due
    /// to: <reason>`), every other one SUCCESS, although none is written.
    pub fn read_only_with_reporting_bug(&self, reason: &str) {
        *lock(&self.read_only) = Some(ReadOnly {
            reason: reason.to_owned(),
            reporting_bug: true,
        });
    }

    /// End a read-only fault.
    pub fn writable(&self) {
        *lock(&self.read_only) = None;
    }

    /// Remove every fault.
    pub fn clear(&self) {
        lock(&self.rules).clear();
        lock(&self.failing_objects).clear();
        lock(&self.failing_batches).clear();
        *lock(&self.read_only) = None;
    }

    pub(crate) fn read_only_state(&self) -> Option<ReadOnly> {
        lock(&self.read_only).clone()
    }

    /// The message every object of this batch fails with, if a batch-wide fault is pending.
    pub(crate) fn batch_failure(&self) -> Option<String> {
        let mut batches = lock(&self.failing_batches);
        let (message, left) = batches.first_mut()?;
        let message = message.clone();
        *left -= 1;
        if *left == 0 {
            batches.remove(0);
        }
        Some(message)
    }

    /// The actions for this request, each fault used once.
    pub(crate) fn take(&self, method: &Method, path: &str) -> Vec<Action> {
        let mut rules = lock(&self.rules);
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
        let mut failing = lock(&self.failing_objects);
        let (message, left) = failing.get_mut(id)?;
        let message = message.clone();
        *left -= 1;
        if *left == 0 {
            failing.remove(id);
        }
        Some(message)
    }
}
