//! Settings of the Weaviate sink: where Weaviate is, how to authenticate, which class to write,
//! how patiently to retry.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::retry::RetryPolicy;
use super::schema::ClassSchema;

/// A Weaviate API key: a [`Secret`](crate::secret::Secret), printed as `***`.
pub type ApiKey = crate::secret::Secret;

/// Weaviate's replication consistency level (`consistency_level=` on object and batch calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsistencyLevel {
    /// One replica acknowledged.
    One,
    /// A majority of replicas acknowledged.
    Quorum,
    /// Every replica acknowledged.
    All,
}

impl ConsistencyLevel {
    /// The value Weaviate expects in the query string.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsistencyLevel::One => "ONE",
            ConsistencyLevel::Quorum => "QUORUM",
            ConsistencyLevel::All => "ALL",
        }
    }
}

impl fmt::Display for ConsistencyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConsistencyLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "ONE" => Ok(ConsistencyLevel::One),
            "QUORUM" => Ok(ConsistencyLevel::Quorum),
            "ALL" => Ok(ConsistencyLevel::All),
            _ => Err(format!(
                "unknown consistency level `{s}`: use ONE, QUORUM or ALL"
            )),
        }
    }
}

/// Everything the sink needs to talk to Weaviate.
#[derive(Debug, Clone)]
pub struct WeaviateConfig {
    /// Base URL, e.g. `http://localhost:8080` (a trailing `/` or `/v1` is accepted).
    pub url: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<ApiKey>,
    /// The class to write. Overrides the name in [`WeaviateConfig::schema`].
    pub class: String,
    /// Added as `consistency_level=` to object and batch calls when set; Weaviate's default
    /// (QUORUM) applies otherwise.
    pub consistency_level: Option<ConsistencyLevel>,
    /// Limit for one HTTP request, connecting included.
    pub timeout: Duration,
    /// Retries of transient failures inside one sink call.
    pub retry: RetryPolicy,
    /// The class definition to create when the class is missing and to check an existing class
    /// against.
    pub schema: ClassSchema,
    /// Length of the vectors vecsync writes (384 for all-MiniLM-L6-v2); an existing class whose
    /// objects carry vectors of another length is refused.
    pub vector_dimensions: usize,
    /// Largest number of objects in one `POST /v1/batch/objects`; bigger writes are split.
    pub max_batch_objects: usize,
    /// Most PATCH/DELETE requests in flight at once within one `apply` call.
    pub max_concurrent_requests: usize,
}

impl WeaviateConfig {
    /// Defaults for everything but the URL: class `Product` from `schema/product.json`, no API
    /// key, 30 s timeout, 384-dimension vectors.
    pub fn new(url: impl Into<String>) -> Self {
        let schema = ClassSchema::product();
        WeaviateConfig {
            url: url.into(),
            api_key: None,
            class: schema.class_name().to_owned(),
            consistency_level: None,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            schema,
            vector_dimensions: 384,
            max_batch_objects: 1000,
            max_concurrent_requests: 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_never_prints() {
        let key = ApiKey::new("s3cr3t-key");
        assert_eq!(format!("{key:?}"), "***");
        assert_eq!(format!("{key}"), "***");
        let mut cfg = WeaviateConfig::new("http://localhost:8080");
        cfg.api_key = Some(key.clone());
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
        assert_eq!(key.expose(), "s3cr3t-key");
    }

    #[test]
    fn consistency_level_parses_case_insensitively() {
        assert_eq!("quorum".parse(), Ok(ConsistencyLevel::Quorum));
        assert_eq!("ALL".parse(), Ok(ConsistencyLevel::All));
        assert_eq!(ConsistencyLevel::One.to_string(), "ONE");
        assert!("TWO".parse::<ConsistencyLevel>().is_err());
    }
}
