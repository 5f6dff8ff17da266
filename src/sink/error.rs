//! The sink's error type, split into transient failures (retry while holding the database
//! position) and definite ones (stop and tell the operator what to do).

use reqwest::StatusCode;

/// Why a call to Weaviate failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The configuration cannot work (bad URL, invalid class name, unreadable schema file).
    #[error("invalid Weaviate settings: {0}")]
    Config(String),

    /// No HTTP answer: connection refused or reset, DNS failure, timeout, connection dropped.
    #[error("could not reach Weaviate at {endpoint} ({what}): {source}")]
    Transport {
        /// `scheme://host:port` only, never credentials.
        endpoint: String,
        /// The call, e.g. `POST /v1/batch/objects`.
        what: String,
        #[source]
        source: reqwest::Error,
    },

    /// Weaviate answered with an unexpected HTTP status.
    #[error("Weaviate answered {status} to {what}: {message}{hint}", hint = status_hint(*status))]
    Status {
        /// The call, e.g. `PATCH /v1/objects/Product/{id}`.
        what: String,
        status: StatusCode,
        /// Weaviate's own message (from `{"error":[{"message"}]}` or `{"code","message"}`).
        message: String,
    },

    /// Weaviate answered 200 with a body that does not have the documented shape.
    #[error("unexpected answer from Weaviate to {what}: {detail}")]
    UnexpectedResponse { what: String, detail: String },

    /// Some objects of a batch kept failing with errors that look temporary (for example a
    /// replica that cannot reach its consistency level) after every retry.
    #[error(
        "Weaviate kept failing {count} object(s) of a batch write with a temporary error; first: {first_message}"
    )]
    ObjectsFailing { count: usize, first_message: String },

    /// A batch answer reported a read-only shard: nothing of the batch can be trusted as
    /// written (Weaviate 1.32.0 to 1.38.9 and 1.39.0 report only the first object as FAILED).
    #[error(
        "Weaviate's store is read-only ({message}); the whole batch is held and retried (free \
         disk space or lift the read-only mode on the shard)"
    )]
    ReadOnly { message: String },

    /// Every object of a batch failed with the same message: a class or cluster problem, not a
    /// verdict on each object.
    #[error(
        "Weaviate failed all {count} objects of a batch with the same error: {message}. This is a \
         class or cluster problem; the position is held and the batch retried"
    )]
    ClassWide { count: usize, message: String },

    /// The class exists but vecsync cannot write to it safely.
    #[error(
        "Weaviate class `{class}` is not compatible with vecsync: {}. vecsync never deletes or \
         changes an existing class: fix or remove it yourself, or point vecsync at another class \
         with --class",
        problems.join("; ")
    )]
    IncompatibleSchema {
        class: String,
        problems: Vec<String>,
    },

    /// A GraphQL query came back with `errors` (HTTP 200).
    #[error("Weaviate GraphQL query failed: {0}")]
    GraphQl(String),
}

impl SinkError {
    /// Whether retrying the same call later can succeed without anyone changing anything:
    /// connection problems, timeouts, 429 and 5xx. Everything else needs an operator or is a
    /// bug, and retrying would only hide it.
    pub fn is_transient(&self) -> bool {
        match self {
            SinkError::Transport { source, .. } => !source.is_builder(),
            SinkError::Status { status, .. } => status_is_transient(*status),
            SinkError::ObjectsFailing { .. }
            | SinkError::ReadOnly { .. }
            | SinkError::ClassWide { .. } => true,
            SinkError::Config(_)
            | SinkError::UnexpectedResponse { .. }
            | SinkError::IncompatibleSchema { .. }
            | SinkError::GraphQl(_) => false,
        }
    }

    /// The HTTP status Weaviate answered, when there was one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            SinkError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// 408, 429 and every 5xx are worth retrying; other statuses are answers, not accidents.
pub(crate) fn status_is_transient(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

fn status_hint(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => " (check the API key: --weaviate-api-key / WEAVIATE_API_KEY)",
        StatusCode::FORBIDDEN => {
            " (the API key's user lacks a permission on this class; grant it in Weaviate)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> SinkError {
        SinkError::Status {
            what: "POST /v1/batch/objects".into(),
            status: StatusCode::from_u16(code).expect("valid status"),
            message: "m".into(),
        }
    }

    #[test]
    fn server_errors_and_throttling_are_transient() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(status(code).is_transient(), "{code}");
        }
    }

    #[test]
    fn client_errors_are_definite() {
        for code in [400, 401, 403, 404, 422] {
            assert!(!status(code).is_transient(), "{code}");
        }
    }

    #[test]
    fn unauthorized_tells_the_operator_about_the_key() {
        assert!(status(401).to_string().contains("WEAVIATE_API_KEY"));
    }

    #[test]
    fn incompatible_schema_is_definite_and_lists_problems() {
        let e = SinkError::IncompatibleSchema {
            class: "Product".into(),
            problems: vec!["a".into(), "b".into()],
        };
        assert!(!e.is_transient());
        assert!(e.to_string().contains("a; b"));
    }
}
