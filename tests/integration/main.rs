//! vecsync's integration tests: one binary, one file per behaviour, real servers started by the
//! harness (a private mariadbd and memcached per test, the Weaviate test server in-process).

mod dedup;
mod embed;
mod harness;
mod mariadb_harness;
mod sink;
mod weaviate_test_server;
