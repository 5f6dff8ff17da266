//! `--emit-events`: every change event as a Debezium-envelope JSON line, to a file or stdout.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use crate::event::ChangeEvent;

#[derive(Debug, thiserror::Error)]
#[error("cannot write change events to {target}: {cause}")]
pub struct EmitError {
    target: String,
    cause: std::io::Error,
}

/// Where events are written.
pub struct EventWriter {
    target: String,
    out: Box<dyn Write + Send + Sync>,
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriter")
            .field("target", &self.target)
            .finish()
    }
}

impl EventWriter {
    /// `"-"` is stdout; anything else a file appended to.
    pub fn open(target: &str) -> Result<Self, EmitError> {
        let out: Box<dyn Write + Send + Sync> = if target == "-" {
            Box::new(BufWriter::new(std::io::stdout()))
        } else {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(PathBuf::from(target))
                .map_err(|cause| EmitError {
                    target: target.to_owned(),
                    cause,
                })?;
            Box::new(BufWriter::new(file))
        };
        Ok(Self {
            target: target.to_owned(),
            out,
        })
    }

    /// Write the events and flush.
    pub fn write<'a>(
        &mut self,
        events: impl IntoIterator<Item = &'a ChangeEvent>,
    ) -> Result<(), EmitError> {
        let err = |cause| EmitError {
            target: self.target.clone(),
            cause,
        };
        for event in events {
            serde_json::to_writer(&mut self.out, event).map_err(|e| err(e.into()))?;
            self.out.write_all(b"\n").map_err(err)?;
        }
        self.out.flush().map_err(err)
    }
}
