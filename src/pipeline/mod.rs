//! The sidecar: source -> batch -> embed (dedup) -> Weaviate -> checkpoint.

pub mod batch;
pub mod deadletter;
