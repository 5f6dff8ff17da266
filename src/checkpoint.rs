//! The checkpoint: the GTID position of the last transaction whose every event Weaviate confirmed,
//! the progress of a snapshot in progress, and which embedding built the index.
//!
//! # Format
//! A small, human-readable JSON file (version 2; version 1 files, which only had `gtid`, are
//! read without loss and rewritten as version 2 on the next store):
//!
//! ```json
//! {
//!   "version": 2,
//!   "gtid": "0-223344-17",
//!   "table": "catalog.products",
//!   "updated_at_ms": 1732460000000,
//!   "snapshot": {"id": "...", "started_ms": 1732460000000, "after_key": [1024], "next_seq": 1,
//!                "rows_done": 1024, "sweep": null}
//! }
//! ```
//!
//! # Durability
//! Written to a temporary file beside the target, fsynced, renamed over the target, then the
//! directory is fsynced: a crash leaves either the old or the new checkpoint, never a torn one.
//!
//! # Resumption
//! The position never moves backwards: [`Checkpoint::store`] refuses a position that does not
//! cover the stored one, domain by domain. Resuming from it replays at most the transactions after
//! it, which is harmless because Weaviate object ids are deterministic. A snapshot in progress
//! resumes after its last confirmed key: chunks after it are read again at positions at or after
//! the stored one, so the two together lose nothing.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::event::now_ms;
use crate::position::GtidPosition;

/// The checkpoint format version this build writes.
pub const VERSION: u32 = 2;
/// The oldest version this build reads.
pub const OLDEST_READABLE: u32 = 1;

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
        "checkpoint {path} has format version {found}, this build reads versions {OLDEST_READABLE} to {VERSION}; use a matching vecsync"
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

/// A snapshot in progress, as the checkpoint records it.
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

/// How far the sweep of stale objects got: the last object id whose absence check is confirmed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepProgress {
    pub after_id: Option<String>,
}

/// Which embedding built the index (recorded so that a change of model or text is noticed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingRecord {
    pub fingerprint: String,
    pub class: String,
}

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointData {
    pub version: u32,
    pub gtid: GtidPosition,
    pub table: String,
    pub updated_at_ms: i64,
    #[serde(default)]
    pub snapshot: Option<SnapshotProgress>,
    #[serde(default)]
    pub embedding: Option<EmbeddingRecord>,
}

/// A checkpoint file for one table.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    table: String,
    current: Option<GtidPosition>,
    snapshot: Option<SnapshotProgress>,
    embedding: Option<EmbeddingRecord>,
}

impl Checkpoint {
    /// Open the checkpoint at `path` for `table` (`db.table`), reading it when it exists.
    pub fn open(path: impl Into<PathBuf>, table: &str) -> Result<Self, CheckpointError> {
        let path = path.into();
        let (current, snapshot, embedding) = match read(&path)? {
            None => (None, None, None),
            Some(data) if data.table != table => {
                return Err(CheckpointError::OtherTable {
                    path,
                    found: data.table,
                    expected: table.to_owned(),
                });
            }
            Some(data) => (Some(data.gtid), data.snapshot, data.embedding),
        };
        Ok(Self {
            path,
            table: table.to_owned(),
            current,
            snapshot,
            embedding,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored position, `None` when no checkpoint was ever written.
    pub fn position(&self) -> Option<&GtidPosition> {
        self.current.as_ref()
    }

    /// The snapshot in progress, if any.
    pub fn snapshot(&self) -> Option<&SnapshotProgress> {
        self.snapshot.as_ref()
    }

    /// Which embedding built the index, when recorded.
    pub fn embedding(&self) -> Option<&EmbeddingRecord> {
        self.embedding.as_ref()
    }

    /// Durably store `position` and the snapshot's progress. Storing what is stored already is a
    /// no-op; a position that does not cover the stored one is refused.
    pub fn store(
        &mut self,
        position: &GtidPosition,
        snapshot: Option<&SnapshotProgress>,
    ) -> Result<(), CheckpointError> {
        if let Some(stored) = &self.current {
            if stored == position && self.snapshot.as_ref() == snapshot {
                return Ok(());
            }
            if !position.covers(stored) {
                return Err(CheckpointError::Backwards {
                    stored: stored.clone(),
                    proposed: position.clone(),
                });
            }
        }
        self.reset(position, snapshot)
    }

    /// Replace the stored position unconditionally: for an explicit `--gtid` start or a new
    /// snapshot, which are deliberate jumps, not progress.
    pub fn reset(
        &mut self,
        position: &GtidPosition,
        snapshot: Option<&SnapshotProgress>,
    ) -> Result<(), CheckpointError> {
        self.write(position, snapshot, self.embedding.as_ref())?;
        self.current = Some(position.clone());
        self.snapshot = snapshot.cloned();
        Ok(())
    }

    /// Record which embedding builds the index (written with the next store, or now when a
    /// position is stored already).
    pub fn set_embedding(&mut self, record: EmbeddingRecord) -> Result<(), CheckpointError> {
        if self.embedding.as_ref() == Some(&record) {
            return Ok(());
        }
        if let Some(position) = self.current.clone() {
            self.write(&position, self.snapshot.clone().as_ref(), Some(&record))?;
        }
        self.embedding = Some(record);
        Ok(())
    }

    fn write(
        &self,
        position: &GtidPosition,
        snapshot: Option<&SnapshotProgress>,
        embedding: Option<&EmbeddingRecord>,
    ) -> Result<(), CheckpointError> {
        let data = CheckpointData {
            version: VERSION,
            gtid: position.clone(),
            table: self.table.clone(),
            updated_at_ms: now_ms(),
            snapshot: snapshot.cloned(),
            embedding: embedding.cloned(),
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
        Some(v) if (u64::from(OLDEST_READABLE)..=u64::from(VERSION)).contains(&v) => {}
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
        cp.store(&pos("0-1-5"), None).expect("store");
        cp.store(&pos("0-1-9,1-2-3"), None).expect("store");
        let reopened = Checkpoint::open(&path, "catalog.products").expect("reopen");
        assert_eq!(reopened.position(), Some(&pos("0-1-9,1-2-3")));
        // Human-readable, versioned, and no temp file left behind.
        let text = fs::read_to_string(&path).expect("read");
        assert!(
            text.contains("\"version\": 2") && text.contains("\"gtid\": \"0-1-9,1-2-3\""),
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
        cp.store(&pos("0-1-9,1-2-3"), None).expect("store");
        for back in ["0-1-8,1-2-3", "0-1-9", "1-2-4", ""] {
            let err = cp.store(&pos(back), None).expect_err(back);
            assert!(matches!(err, CheckpointError::Backwards { .. }), "{err}");
        }
        assert_eq!(
            read(&path).expect("read").map(|d| d.gtid),
            Some(pos("0-1-9,1-2-3"))
        );
        // An explicit reset may jump anywhere.
        cp.reset(&pos("0-1-2"), None).expect("reset");
        assert_eq!(cp.position(), Some(&pos("0-1-2")));
    }

    #[test]
    fn rejects_foreign_or_broken_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp");
        Checkpoint::open(&path, "catalog.products")
            .expect("open")
            .store(&pos("0-1-1"), None)
            .expect("store");
        let err = Checkpoint::open(&path, "shop.items").expect_err("other table");
        assert!(
            err.to_string().contains("is for table catalog.products"),
            "{err}"
        );

        fs::write(&path, "{\"version\": 3, \"gtid\": \"0-1-1\"}").expect("write");
        let err = Checkpoint::open(&path, "catalog.products").expect_err("version");
        assert!(
            matches!(err, CheckpointError::UnsupportedVersion { found: 3, .. }),
            "{err}"
        );

        fs::write(&path, "{\"version\": 1, \"gtid\": \"zero\"").expect("write");
        let err = Checkpoint::open(&path, "catalog.products").expect_err("corrupt");
        assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn version_1_files_are_read_without_loss_and_rewritten_as_version_2() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp");
        fs::write(
            &path,
            r#"{"version": 1, "gtid": "0-1-7", "table": "catalog.products", "updated_at_ms": 5}"#,
        )
        .expect("write");
        let mut cp = Checkpoint::open(&path, "catalog.products").expect("open a v1 file");
        assert_eq!(cp.position(), Some(&pos("0-1-7")));
        assert_eq!(cp.snapshot(), None);
        cp.store(&pos("0-1-8"), None).expect("store");
        let data = read(&path).expect("read").expect("data");
        assert_eq!((data.version, data.gtid), (2, pos("0-1-8")));
    }

    #[test]
    fn snapshot_progress_and_embedding_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp");
        let progress = SnapshotProgress {
            id: "s1".into(),
            started_ms: 1,
            after_key: Some(vec![serde_json::json!(1024), serde_json::json!("b")]),
            next_seq: 1,
            rows_done: 1024,
            sweep: None,
        };
        let mut cp = Checkpoint::open(&path, "catalog.products").expect("open");
        cp.set_embedding(EmbeddingRecord {
            fingerprint: "abcd1234".into(),
            class: "Product".into(),
        })
        .expect("embedding");
        cp.store(&pos("0-1-5"), Some(&progress)).expect("store");
        // Same position, more progress: still written.
        let mut more = progress.clone();
        more.sweep = Some(SweepProgress { after_id: None });
        cp.store(&pos("0-1-5"), Some(&more)).expect("store");
        let reopened = Checkpoint::open(&path, "catalog.products").expect("reopen");
        assert_eq!(reopened.snapshot(), Some(&more));
        assert_eq!(
            reopened.embedding().map(|e| e.fingerprint.as_str()),
            Some("abcd1234")
        );
    }
}
