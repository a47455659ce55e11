//! The history writer: accepted room messages go to the store in batches from one task,
//! off the fan-out path. Publishers hand records over after their broadcast, through a
//! bounded channel; when it is full the publisher (the sender's own connection task)
//! waits, which slows that sender and nobody else. Records carry the seq the room
//! assigned, so the key order in the store is broadcast order however batches fall.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::store::{HistoryRecord, Store};

enum Msg {
    Record(HistoryRecord),
    Barrier {
        done: oneshot::Sender<()>,
        stop: bool,
    },
}

/// Handle to the history writer. Cheap to clone.
#[derive(Clone)]
pub struct HistoryWriter {
    tx: mpsc::Sender<Msg>,
    sent: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl HistoryWriter {
    /// Starts the writer; rooms keep their last `keep` messages.
    pub fn start(store: Store, queue: usize, keep: u64) -> HistoryWriter {
        let (tx, rx) = mpsc::channel(queue);
        let written = Arc::new(AtomicU64::new(0));
        tokio::spawn(writer(store, rx, keep, written.clone()));
        HistoryWriter {
            tx,
            sent: Arc::new(AtomicU64::new(0)),
            written,
        }
    }

    /// Hands a record to the writer, waiting for room in the queue.
    pub async fn append(&self, record: HistoryRecord) {
        self.sent.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(Msg::Record(record)).await.is_err() {
            // Only after shutdown stopped the writer; the connection is closing anyway.
            tracing::warn!("history writer stopped; message not stored");
            self.written.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// True when every record handed over has been applied to the store.
    pub fn is_idle(&self) -> bool {
        self.written.load(Ordering::Acquire) >= self.sent.load(Ordering::Acquire)
    }

    /// Waits until everything handed over before this call is applied.
    pub async fn sync(&self) {
        self.barrier(false).await
    }

    /// Applies everything handed over, then stops the writer.
    pub async fn stop(&self) {
        self.barrier(true).await
    }

    async fn barrier(&self, stop: bool) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Barrier { done, stop }).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn writer(store: Store, mut rx: mpsc::Receiver<Msg>, keep: u64, written: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(512);
    while let Some(first) = rx.recv().await {
        let mut barrier = None;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Record(r) => batch.push(r),
                Msg::Barrier { done, stop } => {
                    barrier = Some((done, stop));
                    break;
                }
            }
            if batch.len() < 512 {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            if let Err(e) = store.append_history(&batch, keep) {
                tracing::error!(error = %e, lost = batch.len(), "writing history failed");
            }
            written.fetch_add(batch.len() as u64, Ordering::AcqRel);
            batch.clear();
        }
        if let Some((done, stop)) = barrier {
            let _ = done.send(());
            if stop {
                return;
            }
        }
    }
}
