//! vecsync's integration tests: one binary, one file per behaviour, real servers started by the
//! harness (a private mariadbd and memcached per test, the Weaviate test server in-process).

// Large `json!` literals (binlog_types) need more macro recursion than the default.
#![recursion_limit = "512"]

mod binary;
mod binlog_compressed;
mod binlog_ddl;
mod binlog_events;
mod binlog_faults;
mod binlog_ops;
mod binlog_purge;
mod binlog_restart;
mod binlog_tls;
mod binlog_types;
mod dedup;
mod deploy;
mod embed;
mod embed_engines;
mod fail_closed;
mod failover;
mod harness;
mod large_events;
mod mariadb_harness;
mod pipeline;
mod preflight;
mod reindex;
mod remote_embedder;
mod search;
mod sink;
mod snapshot;
mod snapshot_binary;
mod snapshot_merge;
mod snapshot_model;
mod snapshot_pipeline;
mod snapshot_resume;
mod source_health;
mod template;
mod verify;
mod weaviate_test_server;
mod xa;
