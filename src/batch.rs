//! A batching writer: one thread that takes items from a bounded channel and hands them
//! to a write function in batches, so a burst becomes one store batch instead of many
//! small writes, and nothing on a request path waits for disk. Barriers let callers wait
//! until everything queued before them is written (and optionally stop the thread). The
//! history and audit writers are both this, with different overflow policies chosen by
//! the caller (`push` waits, `try_push` refuses).
//!
//! The writer is an OS thread, not a runtime task, because sled's calls are synchronous
//! and can block: an insert waits for a log buffer while the flusher writes and syncs the
//! previous ones. On a runtime task that wait stops every connection sharing the worker
//! (with the server on one core, all of them); on its own thread it stops only the writer,
//! whose bounded queue keeps the rest of the server going.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

enum Msg<T> {
    Item(T),
    Barrier {
        done: oneshot::Sender<()>,
        stop: bool,
    },
}

/// Room reserved in a writer's queue for one item.
pub struct Slot<T> {
    permit: mpsc::OwnedPermit<Msg<T>>,
    sent: Arc<AtomicU64>,
}

impl<T> Slot<T> {
    /// Queues the item; never waits.
    pub fn send(self, item: T) {
        self.sent.fetch_add(1, Ordering::AcqRel);
        self.permit.send(Msg::Item(item));
    }
}

/// Handle to a batching writer task. Cheap to clone.
pub struct BatchWriter<T> {
    tx: mpsc::Sender<Msg<T>>,
    sent: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl<T> Clone for BatchWriter<T> {
    fn clone(&self) -> Self {
        BatchWriter {
            tx: self.tx.clone(),
            sent: self.sent.clone(),
            written: self.written.clone(),
        }
    }
}

impl<T: Send + 'static> BatchWriter<T> {
    /// Starts the thread `name`; `write` gets at most `max_batch` items at a time, in
    /// queue order. The thread ends after a `stop`, or once every handle is dropped and
    /// the queue is drained.
    pub fn start<W>(name: &str, queue: usize, max_batch: usize, mut write: W) -> BatchWriter<T>
    where
        W: FnMut(&[T]) + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Msg<T>>(queue);
        let written = Arc::new(AtomicU64::new(0));
        let counter = written.clone();
        let run = move || {
            let mut batch = Vec::with_capacity(max_batch);
            while let Some(first) = rx.blocking_recv() {
                let mut barrier = None;
                let mut next = Some(first);
                while let Some(msg) = next.take() {
                    match msg {
                        Msg::Item(item) => batch.push(item),
                        Msg::Barrier { done, stop } => {
                            barrier = Some((done, stop));
                            break;
                        }
                    }
                    if batch.len() < max_batch {
                        next = rx.try_recv().ok();
                    }
                }
                if !batch.is_empty() {
                    write(&batch);
                    counter.fetch_add(batch.len() as u64, Ordering::AcqRel);
                    batch.clear();
                }
                if let Some((done, stop)) = barrier {
                    if stop {
                        // What the writer holds (a store handle among it) goes before the
                        // stop is acknowledged, so the waiter may reopen the store at once.
                        drop(write);
                        drop(rx);
                        let _ = done.send(());
                        return;
                    }
                    let _ = done.send(());
                }
            }
        };
        // Without the thread nothing could ever be written: failing to start one is as
        // fatal as failing to start the runtime.
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(run)
            .expect("starting a writer thread");
        BatchWriter {
            tx,
            sent: Arc::new(AtomicU64::new(0)),
            written,
        }
    }

    /// Queues an item, waiting for room. Returns false when the writer has stopped.
    pub async fn push(&self, item: T) -> bool {
        self.sent.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(Msg::Item(item)).await.is_err() {
            self.written.fetch_add(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Waits for room in the queue and holds it: the returned slot queues its item
    /// without waiting, so a caller can reserve before taking a lock and queue under it
    /// (queue order then follows the order the lock imposes). None when the writer has
    /// stopped. Dropping an unused slot gives the room back.
    pub async fn reserve(&self) -> Option<Slot<T>> {
        let permit = self.tx.clone().reserve_owned().await.ok()?;
        Some(Slot {
            permit,
            sent: self.sent.clone(),
        })
    }

    /// Queues an item if there is room; never waits.
    pub fn try_push(&self, item: T) -> bool {
        self.sent.fetch_add(1, Ordering::AcqRel);
        if self.tx.try_send(Msg::Item(item)).is_err() {
            self.written.fetch_add(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// True when every item queued so far has been written.
    pub fn is_idle(&self) -> bool {
        self.written.load(Ordering::Acquire) >= self.sent.load(Ordering::Acquire)
    }

    /// Waits until everything queued before this call is written.
    pub async fn sync(&self) {
        self.barrier(false).await
    }

    /// Writes everything queued, then stops the task.
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
