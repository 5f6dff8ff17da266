//! Which embedding built a class, recorded in the class itself (its `description`), so that a
//! second vecsync instance, `vecsync verify` or a person reading the schema can tell, and vecsync
//! never mixes vectors of two models or two texts in one class.
//!
//! Weaviate has no free-form metadata field on a class (CONTRACT.md, "Class metadata"); the
//! description is the one place that is per class, survives restarts and backups, and is shown
//! by every client. vecsync writes `vecsync embedding <JSON>` there (after any text the class
//! had), changing it with `GET` + `PUT /v1/schema/{class}` of the whole class, as Weaviate
//! requires.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::error::SinkError;
use super::weaviate::{Call, WeaviateSink};

/// What precedes the record in the class description.
const MARKER: &str = "vecsync embedding ";

impl WeaviateSink {
    /// The embedding record of the class (the JSON vecsync wrote), `None` when there is none.
    pub async fn embedding_record(&self) -> Result<Option<String>, SinkError> {
        let class = self.fetch_class_definition().await?;
        Ok(class
            .as_ref()
            .and_then(|c| c.get("description"))
            .and_then(Value::as_str)
            .and_then(|d| d.split_once(MARKER))
            .map(|(_, record)| record.trim().to_owned()))
    }

    /// Write `record` (JSON text) as the class's embedding record, keeping the rest of the class
    /// and any description text before the record.
    pub async fn set_embedding_record(&self, record: &str) -> Result<(), SinkError> {
        let mut class =
            self.fetch_class_definition()
                .await?
                .ok_or_else(|| SinkError::UnexpectedResponse {
                    what: format!("GET /v1/schema/{}", self.class()),
                    detail: "the class vanished while vecsync recorded its embedding".into(),
                })?;
        let kept = class
            .get("description")
            .and_then(Value::as_str)
            .map(|d| {
                d.split_once(MARKER)
                    .map_or(d, |(before, _)| before)
                    .trim_end()
            })
            .unwrap_or_default()
            .to_owned();
        let description = if kept.is_empty() {
            format!("{MARKER}{record}")
        } else {
            format!("{kept} {MARKER}{record}")
        };
        if let Some(obj) = class.as_object_mut() {
            obj.insert("description".into(), Value::String(description));
        }
        let call = Call::new(Method::PUT, format!("schema/{}", self.class())).json(&class);
        let answer = self.send(&call).await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(self.status_error(&call, &answer))
        }
    }

    /// Whether the class holds any object.
    pub async fn has_objects(&self) -> Result<bool, SinkError> {
        Ok(!self.list_page(None, 1).await?.is_empty())
    }

    async fn fetch_class_definition(&self) -> Result<Option<Value>, SinkError> {
        let call = Call::new(Method::GET, format!("schema/{}", self.class()));
        let answer = self.send(&call).await?;
        match answer.status {
            StatusCode::OK => Ok(Some(self.parse_json(&call, &answer)?)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.status_error(&call, &answer)),
        }
    }
}
