//! Where change events come from: the MariaDB binlog, and snapshots of the table.
//!
//! [`BinlogSource`] connects to MariaDB as a replica, checks the server's settings
//! ([`Preflight`]), takes a consistent snapshot when needed, then streams the binlog from a GTID
//! position and sends the watched table's row changes as [`ChangeEvent`](crate::event::ChangeEvent)s,
//! each transaction followed by its [`Commit`](crate::event::Commit).
//!
//! ```text
//! replicator  start rules, snapshot, reconnects            (BinlogSource::run)
//!  ├─ preflight   settings and privileges, checked first
//!  ├─ snapshot    chunked consistent reads (TableReader), merged into the stream at their
//!  │              GTID positions (Merge, driven by SnapshotControl); progress
//!  └─ binlog      replica connection, event groups -> events + Commit; calls the merge hook
//!      ├─ mariadb_events  GTID/GTID_LIST/ROTATE/QUERY/rows bodies, compression, checksums
//!      ├─ table_map       column storage types and optional metadata
//!      ├─ columns         names, signedness, charsets, ENUM/SET members (or information_schema)
//!      ├─ rows            row images -> cells (DECIMAL exact, temporal fractions)
//!      ├─ values          cells and snapshot values -> the same JSON
//!      └─ statement       which QUERY events matter (COMMIT, XA, TRUNCATE, DDL, partitions)
//!  ├─ connection  endpoints (several servers), 1 GiB packets, read timeouts
//!  ├─ emitter     the channel, the memory budget, prepared XA transactions
//!  └─ status      SourceStatus: connected, last error, reconnects, last heard
//! ```
//!
//! The channel's items carry their share of the memory budget ([`crate::budget`]).

mod binlog;
mod columns;
mod connection;
mod emitter;
mod error;
mod mariadb_events;
mod preflight;
mod replicator;
mod rows;
pub mod snapshot;
mod statement;
mod status;
mod table_map;
mod values;

pub use emitter::Item;
pub use error::{SUPPORTED_VERSIONS, SourceError};
pub use preflight::Preflight;
pub use replicator::{BinlogSource, DEFAULT_SERVER_ID, SourceConfig, Start};
pub use rows::RowError;
pub use snapshot::{MAX_CHUNKS_AHEAD, ReadPoint, SnapshotControl, TableChunk, TableReader};
pub use status::{SourceHealth, SourceStatus};
