//! The checkpoint: the GTID position of the last transaction whose every event Weaviate confirmed.
//!
//! # Format
//! A small, human-readable JSON file:
//!
//! ```json
//! {
//!   "version": 1,
//!   "gtid": "0-223344-17",
//!   "table": "catalog.products",
//!   "updated_at_ms": 1732460000000
//! }
//! ```
//!
//! # Durability
//! Written to a temporary file beside the target, fsynced, renamed over the target, then the
//! directory is fsynced: a crash leaves either the old or the new checkpoint, never a torn one.
//!
//! # Resumption
//! The checkpoint never moves backwards: [`Checkpoint::store`] refuses a position that does not
//! cover the stored one, domain by domain. Resuming from it replays at most the transactions after
//! it, which is harmless because Weaviate object ids are deterministic.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::event::now_ms;
use crate::position::GtidPosition;

/// The only checkpoint format version this build reads and writes.
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write checkpoint {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "checkpoint {path} is not valid: {reason}; fix or remove it (removing it makes vecsync start as --snapshot says)"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "checkpoint {path} has format version {found}, this build reads version {VERSION}; use a matching vecsync"
    )]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error(
        "checkpoint {path} is for table {found}, not {expected}; point --checkpoint at a file of its own for each table"
    )]
    OtherTable {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("refusing to move checkpoint backwards from {stored} to {proposed}")]
    Backwards {
        stored: GtidPosition,
        proposed: GtidPosition,
    },
}

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointData {
    pub version: u32,
    pub gtid: GtidPosition,
    pub table: String,
    pub updated_at_ms: i64,
}

/// A snapshot in progress, as the checkpoint records it: where a resumed snapshot continues.
///
/// The source reads after `after_key` and numbers its chunks from `next_seq` (see
/// [`crate::source::Start`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotProgress {
    pub id: String,
    pub started_ms: i64,
    /// Key of the last row of the last confirmed chunk; None: no chunk confirmed yet.
    pub after_key: Option<Vec<serde_json::Value>>,
    /// Chunks confirmed so far (the next chunk's seq).
    pub next_seq: u64,
    pub rows_done: u64,
    /// Set once every chunk is confirmed: the stale-object sweep runs (driven by the pipeline).
    pub sweep: Option<SweepProgress>,
}

/// How far the stale-object sweep of a snapshot got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepProgress {
    pub after_id: Option<String>,
}

/// A checkpoint file for one table.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    table: String,
    current: Option<GtidPosition>,
}

impl Checkpoint {
    /// Open the checkpoint at `path` for `table` (`db.table`), reading it when it exists.
    pub fn open(path: impl Into<PathBuf>, table: &str) -> Result<Self, CheckpointError> {
        let path = path.into();
        let current = match read(&path)? {
            None => None,
            Some(data) if data.table != table => {
                return Err(CheckpointError::OtherTable {
                    path,
                    found: data.table,
                    expected: table.to_owned(),
                });
            }
            Some(data) => Some(data.gtid),
        };
        Ok(Self {
            path,
            table: table.to_owned(),
            current,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored position, `None` when no checkpoint was ever written.
    pub fn position(&self) -> Option<&GtidPosition> {
        self.current.as_ref()
    }

    /// Durably store `position`. Storing the current position again is a no-op; a position that
    /// does not cover the stored one is refused.
    pub fn store(&mut self, position: &GtidPosition) -> Result<(), CheckpointError> {
        if let Some(stored) = &self.current {
            if stored == position {
                return Ok(());
            }
            if !position.covers(stored) {
                return Err(CheckpointError::Backwards {
                    stored: stored.clone(),
                    proposed: position.clone(),
                });
            }
        }
        self.write(position)?;
        self.current = Some(position.clone());
        Ok(())
    }

    /// Replace the stored position unconditionally: for an explicit `--gtid` start or a new
    /// snapshot, which are deliberate jumps, not progress.
    pub fn reset(&mut self, position: &GtidPosition) -> Result<(), CheckpointError> {
        self.write(position)?;
        self.current = Some(position.clone());
        Ok(())
    }

    fn write(&self, position: &GtidPosition) -> Result<(), CheckpointError> {
        let data = CheckpointData {
            version: VERSION,
            gtid: position.clone(),
            table: self.table.clone(),
            updated_at_ms: now_ms(),
        };
        let mut text =
            serde_json::to_string_pretty(&data).map_err(|e| CheckpointError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        text.push('\n');
        write_atomically(&self.path, text.as_bytes()).map_err(|source| CheckpointError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// Read a checkpoint file; `Ok(None)` when it does not exist.
pub fn read(path: &Path) -> Result<Option<CheckpointData>, CheckpointError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| CheckpointError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    match version {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Err(CheckpointError::UnsupportedVersion {
                path: path.to_owned(),
                found: u32::try_from(v).unwrap_or(u32::MAX),
            });
        }
        None => {
            return Err(CheckpointError::Corrupt {
                path: path.to_owned(),
                reason: "no numeric \"version\" field".into(),
            });
        }
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| CheckpointError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

/// tmp file -> fsync -> rename -> fsync directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = file_name.to_owned();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(&dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(s: &str) -> GtidPosition {
        s.parse().expect("valid position")
    }

    #[test]
    fn missing_file_means_no_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cp = Checkpoint::open(dir.path().join("cp"), "catalog.products").expect("open");
        assert_eq!(cp.position(), None);
    }

    #[test]
    fn stores_and_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp");
        let mut cp = Checkpoint::open(&path, "catalog.products").expect("open");
        cp.store(&pos("0-1-5")).expect("store");
        cp.store(&pos("0-1-9,1-2-3")).expect("store");
        let reopened = Checkpoint::open(&path, "catalog.products").expect("reopen");
        assert_eq!(reopened.position(), Some(&pos("0-1-9,1-2-3")));
        // Human-readable, versioned, and no temp file left behind.
        let text = fs::read_to_string(&path).expect("read");
        assert!(
            text.contains("\"version\": 1") && text.contains("\"gtid\": \"0-1-9,1-2-3\""),
            "{text}"
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["cp"]);
    }

    #[test]
    fn never_moves_backwards() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp");
        let mut cp = Checkpoint::open(&path, "catalog.products").expect("open");
        cp.store(&pos("0-1-9,1-2-3")).expect("store");
        for back in ["0-1-8,1-2-3", "0-1-9", "1-2-4", ""] {
            let err = cp.store(&pos(back)).expect_err(back);
            assert!(matches!(err, CheckpointError::Backwards { .. }), "{err}");
        }
        assert_eq!(
            read(&path).expect("read").map(|d| d.gtid),
            Some(pos("0-1-9,1-2-3"))
        );
        // An explicit reset may jump anywhere.
        cp.reset(&pos("0-1-2")).expect("reset");
        assert_eq!(cp.position(), Some(&pos("0-1-2")));
    }

    #[test]
    fn rejects_foreign_or_broken_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp");
        Checkpoint::open(&path, "catalog.products")
            .expect("open")
            .store(&pos("0-1-1"))
            .expect("store");
        let err = Checkpoint::open(&path, "shop.items").expect_err("other table");
        assert!(
            err.to_string().contains("is for table catalog.products"),
            "{err}"
        );

        fs::write(&path, "{\"version\": 2, \"gtid\": \"0-1-1\"}").expect("write");
        let err = Checkpoint::open(&path, "catalog.products").expect_err("version");
        assert!(
            matches!(err, CheckpointError::UnsupportedVersion { found: 2, .. }),
            "{err}"
        );

        fs::write(&path, "{\"version\": 1, \"gtid\": \"zero\"").expect("write");
        let err = Checkpoint::open(&path, "catalog.products").expect_err("corrupt");
        assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
    }
}
