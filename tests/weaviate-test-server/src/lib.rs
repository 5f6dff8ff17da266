//! A Weaviate-compatible in-memory HTTP server for vecsync's tests (see issue 4).
