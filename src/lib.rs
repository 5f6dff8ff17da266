//! vecsync keeps a Weaviate vector index in sync with a MariaDB table, with no Kafka and no Debezium.
//!
//! The data flow, one module per stage:
//!
//! ```text
//! MariaDB binlog ──► source (ChangeEvent, Debezium semantics) ──► pipeline (batch, coalesce)
//!        ──► dedup (Memcached) ──► embed (tract in-process, or an OpenAI-compatible server)
//!        ──► sink (Weaviate) ──► checkpoint
//! ```
//!
//! The checkpoint only moves forward at transaction boundaries, after Weaviate confirmed every
//! event up to that position: delivery is at-least-once, and deterministic object ids make a
//! replay harmless.

pub mod backoff;
pub mod budget;
pub mod checkpoint;
pub mod config;
pub mod dedup;
pub mod embed;
pub mod event;
pub mod notify;
pub mod pipeline;
pub mod position;
pub mod report;
pub mod search;
pub mod secret;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod template;
pub mod verify;
