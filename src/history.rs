//! The history writer: accepted room messages go to the store in batches from one task,
//! off the fan-out path. Publishers hand records over after their broadcast; when the
//! bounded queue is full the publisher (the sender's own connection task) waits, which
//! slows that sender and nobody else, and loses nothing. Records carry the seq the room
//! assigned, so the key order in the store is broadcast order however batches fall.

use crate::batch::BatchWriter;
use crate::store::{HistoryRecord, Store};

/// Handle to the history writer. Cheap to clone.
#[derive(Clone)]
pub struct HistoryWriter(BatchWriter<HistoryRecord>);

impl HistoryWriter {
    /// Starts the writer; rooms keep their last `keep` messages.
    pub fn start(store: Store, queue: usize, keep: u64) -> HistoryWriter {
        HistoryWriter(BatchWriter::start(queue, 512, move |batch| {
            if let Err(e) = store.append_history(batch, keep) {
                tracing::error!(error = %e, lost = batch.len(), "writing history failed");
            }
        }))
    }

    /// Hands a record to the writer, waiting for room in the queue.
    pub async fn append(&self, record: HistoryRecord) {
        if !self.0.push(record).await {
            // Only after shutdown stopped the writer; the connection is closing anyway.
            tracing::warn!("history writer stopped; message not stored");
        }
    }

    /// True when every record handed over has been applied to the store.
    pub fn is_idle(&self) -> bool {
        self.0.is_idle()
    }

    /// Waits until everything handed over before this call is applied.
    pub async fn sync(&self) {
        self.0.sync().await
    }

    /// Applies everything handed over, then stops the writer.
    pub async fn stop(&self) {
        self.0.stop().await
    }
}
