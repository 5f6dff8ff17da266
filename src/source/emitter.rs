//! Handing messages to the pipeline: a bounded channel (its capacity is the back-pressure) and a
//! cancellation token, so a stopped pipeline never leaves the source blocked on a full channel.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::event::SourceMessage;

use super::error::SourceError;

/// Why a source loop ended early.
#[derive(Debug)]
pub(crate) enum Interrupt {
    /// Cancelled, or the receiver is gone: a clean stop.
    Stopped,
    Failed(SourceError),
}

impl From<SourceError> for Interrupt {
    fn from(e: SourceError) -> Self {
        Interrupt::Failed(e)
    }
}

pub(crate) struct Emitter {
    tx: mpsc::Sender<SourceMessage>,
    cancel: CancellationToken,
}

impl Emitter {
    pub(crate) fn new(tx: mpsc::Sender<SourceMessage>, cancel: CancellationToken) -> Self {
        Self { tx, cancel }
    }

    /// Send `msg`, waiting for room in the channel unless the source is cancelled.
    pub(crate) async fn send(&self, msg: SourceMessage) -> Result<(), Interrupt> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(Interrupt::Stopped),
            sent = self.tx.send(msg) => sent.map_err(|_| Interrupt::Stopped),
        }
    }

    pub(crate) fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }
}
