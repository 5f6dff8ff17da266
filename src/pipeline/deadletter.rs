//! The dead-letter file: events Weaviate rejected for good, one JSON line each.
//!
//! Each line is `{"error": "...", "ts_ms": ..., "event": <the Debezium envelope>}`. The file is
//! appended to and synced before the checkpoint moves past the events it records, so a rejected
//! change is never lost: fix the cause, then replay the lines (or re-snapshot).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::event::{ChangeEvent, now_ms};

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot write dead-letter file {path}: {cause}; fix the path or its permissions (--dead-letter)"
)]
pub struct DeadLetterError {
    path: PathBuf,
    cause: std::io::Error,
}

#[derive(Serialize)]
struct Line<'a> {
    error: &'a str,
    ts_ms: i64,
    event: &'a ChangeEvent,
}

/// An append-only JSON-lines file, opened on first use.
#[derive(Debug)]
pub struct DeadLetters {
    path: PathBuf,
    file: Option<File>,
}

impl DeadLetters {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            file: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `entries` and sync them to disk.
    pub fn write(&mut self, entries: &[(&ChangeEvent, String)]) -> Result<(), DeadLetterError> {
        if entries.is_empty() {
            return Ok(());
        }
        let err = |cause| DeadLetterError {
            path: self.path.clone(),
            cause,
        };
        let mut buf = Vec::new();
        for (event, error) in entries {
            let line = Line {
                error,
                ts_ms: now_ms(),
                event,
            };
            serde_json::to_writer(&mut buf, &line).map_err(|e| err(e.into()))?;
            buf.push(b'\n');
        }
        if self.file.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(err)?;
            self.file = Some(f);
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.write_all(&buf).map_err(err)?;
        file.sync_data().map_err(err)?;
        Ok(())
    }
}
