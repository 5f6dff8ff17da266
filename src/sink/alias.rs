//! Weaviate collection aliases (`/v1/aliases`, Weaviate 1.32+): the name readers search
//! (`Product`) pointing at the class that holds the index (`Product_<fingerprint8>`), so a
//! re-index switches readers to a new class in one step.
//!
//! Schema calls (`GET/PUT/DELETE /v1/schema/{class}`) take class names only; object, batch and
//! GraphQL calls take an alias too (CONTRACT.md, "Collection aliases"). vecsync therefore writes
//! by the concrete class name and resolves the alias once at start.
//!
//! The switch is `PUT /v1/aliases/{alias}`, one Raft command in Weaviate: atomic, no moment in
//! which the name points nowhere. Only the one-time migration from the seed's plain class needs
//! two requests: the class must go ([`WeaviateSink::delete_class`]) before an alias can take its
//! name ([`WeaviateSink::create_alias`]).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::error::SinkError;
use super::weaviate::{Call, WeaviateSink};

impl WeaviateSink {
    /// The class the alias `name` points to; `None` when no such alias exists (a 404, which is
    /// also what a Weaviate older than 1.32, without the aliases API, answers).
    pub async fn alias_target(&self, name: &str) -> Result<Option<String>, SinkError> {
        let call = Call::new(Method::GET, format!("aliases/{name}"));
        let answer = self.send(&call).await?;
        match answer.status {
            StatusCode::OK => {
                let body = self.parse_json(&call, &answer)?;
                let class = body
                    .get("class")
                    .and_then(Value::as_str)
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| SinkError::UnexpectedResponse {
                        what: call.what(),
                        detail: format!("no `class` in the alias: {body}"),
                    })?;
                Ok(Some(class.to_owned()))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.status_error(&call, &answer)),
        }
    }

    /// Whether a class (not an alias) named `class` exists.
    pub async fn class_exists(&self, class: &str) -> Result<bool, SinkError> {
        let call = Call::new(Method::GET, format!("schema/{class}"));
        let answer = self.send(&call).await?;
        match answer.status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(&call, &answer)),
        }
    }

    /// `POST /v1/aliases`: make `alias` point to `class`.
    pub async fn create_alias(&self, alias: &str, class: &str) -> Result<(), SinkError> {
        let call = Call::new(Method::POST, "aliases".into())
            .json(&json!({"alias": alias, "class": class}));
        self.expect_success(&call).await
    }

    /// `PUT /v1/aliases/{alias}`: point an existing alias to `class`, atomically.
    pub async fn switch_alias(&self, alias: &str, class: &str) -> Result<(), SinkError> {
        let call =
            Call::new(Method::PUT, format!("aliases/{alias}")).json(&json!({"class": class}));
        self.expect_success(&call).await
    }

    /// `DELETE /v1/schema/{class}`: drop a class and every object in it. Never call it with an
    /// alias name.
    pub async fn delete_class(&self, class: &str) -> Result<(), SinkError> {
        let call = Call::new(Method::DELETE, format!("schema/{class}"));
        self.expect_success(&call).await
    }

    async fn expect_success(&self, call: &Call) -> Result<(), SinkError> {
        let answer = self.send(call).await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(self.status_error(call, &answer))
        }
    }
}
