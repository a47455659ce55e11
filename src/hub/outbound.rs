//! A connection's outbound side as other tasks see it: a bounded queue of pre-serialised
//! frames plus a close request. Publishers only ever `try_send`; a full queue does not
//! wait or drop silently, it asks the connection to close with the slow-consumer code,
//! so one stalled reader never delays a room. The connection task owns the receiving
//! end and is the only writer to its socket.

use std::sync::{Arc, Mutex};

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::protocol::CloseCode;

/// A request to close, or to re-check permissions, observed by the connection task.
///
/// Polled on every turn of the connection's loop, i.e. once per delivered frame, so it
/// is a few atomics and one waker slot: no lock and no waiter list. (With two `Notify`
/// futures and a shared `CancellationToken` it took a mutex and a waiter-list insert
/// and removal three times per delivery.) Shutdown reaches connections through
/// [`Registry::close_all`](super::Registry::close_all), like any other close.
#[derive(Default)]
pub struct Control {
    /// The first close requested wins. Locked only to set it and read it once.
    code: Mutex<Option<CloseCode>>,
    /// Set (after `code`) when a close has been requested: the lock-free check.
    closing: AtomicBool,
    /// Rights may have changed (roles, a role's permissions, a room's ACL): the task
    /// re-reads them. Requests made while one is pending merge into it.
    recheck: AtomicBool,
    /// The connection task, woken by either request.
    waker: AtomicWaker,
}

/// What the connection task is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Close(CloseCode),
    Recheck,
}

impl Control {
    /// Asks the connection to close with `code` (first request wins).
    pub fn close(&self, code: CloseCode) {
        let mut slot = self.code.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(code);
            drop(slot);
            self.closing.store(true, Ordering::Release);
            self.waker.wake();
        }
    }

    /// The requested close code, if any.
    pub fn requested(&self) -> Option<CloseCode> {
        if !self.closing.load(Ordering::Acquire) {
            return None;
        }
        *self.code.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the connection to re-evaluate its roles and room rights.
    pub fn recheck(&self) {
        // A burst of changes sets the flag once and costs one re-evaluation.
        self.recheck.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready with a close request (which stays set) or a re-check (which is taken);
    /// otherwise registers the task to be woken by the next request. The waker is
    /// registered before the flags are read, so a request made in between is not lost.
    pub fn poll_request(&self, cx: &mut Context<'_>) -> Poll<Request> {
        self.waker.register(cx.waker());
        if let Some(code) = self.requested() {
            return Poll::Ready(Request::Close(code));
        }
        if self.recheck.swap(false, Ordering::AcqRel) {
            return Poll::Ready(Request::Recheck);
        }
        Poll::Pending
    }

    /// Resolves with the next request.
    pub async fn request(&self) -> Request {
        std::future::poll_fn(|cx| self.poll_request(cx)).await
    }

    /// Resolves when a close has been requested (re-checks are left pending).
    pub async fn wait(&self) -> CloseCode {
        std::future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            match self.requested() {
                Some(code) => Poll::Ready(code),
                None => Poll::Pending,
            }
        })
        .await
    }
}

/// A queued frame, serialised once and shared by every queue it is in. The queue holds
/// a pointer, not the 40-byte `Message`: tokio allocates a queue's slots 32 at a time
/// and keeps the blocks for reuse, so the slot size is paid per idle connection (about
/// 2 KiB each with `Message` slots, measured in the `hold` benchmark).
pub type Frame = Arc<Message>;

/// A text frame ready to queue.
pub fn text_frame(text: String) -> Frame {
    Arc::new(Message::text(text))
}

/// The sending half of a connection. Cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    tx: mpsc::Sender<Frame>,
    control: Arc<Control>,
}

impl Outbound {
    /// A queue of `capacity` frames; returns the handle and the receiver for the connection task.
    pub fn channel(capacity: usize) -> (Outbound, mpsc::Receiver<Frame>, Arc<Control>) {
        let (tx, rx) = mpsc::channel(capacity);
        let control = Arc::new(Control::default());
        (
            Outbound {
                tx,
                control: control.clone(),
            },
            rx,
            control,
        )
    }

    /// Queues a frame. A full queue closes the connection as a slow consumer; a closed
    /// queue means the connection is already going away. Returns whether it was queued.
    pub fn send(&self, frame: Frame) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.control.close(CloseCode::SlowConsumer);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Whether the queue is more than half full: the connection task is behind, and a
    /// publisher feeding it should let it run (see `publish::publish`).
    pub fn backlogged(&self) -> bool {
        self.tx.capacity() * 2 < self.tx.max_capacity()
    }

    /// Queues a text frame.
    pub fn send_text(&self, text: String) -> bool {
        self.send(text_frame(text))
    }

    /// Asks the connection to close.
    pub fn close(&self, code: CloseCode) {
        self.control.close(code)
    }

    /// Asks the connection to re-evaluate its rights.
    pub fn recheck(&self) {
        self.control.recheck()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_wake_the_task_merge_and_the_first_close_wins() {
        let control = Arc::new(Control::default());
        // A re-check requested before anyone waits is kept, and a burst is one request.
        control.recheck();
        control.recheck();
        assert_eq!(control.request().await, Request::Recheck);
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(50), control.request()).await;
        assert!(pending.is_err(), "a taken re-check must not repeat");
        // A request from another task wakes a waiting one.
        let c = control.clone();
        let waiter = tokio::spawn(async move { c.wait().await });
        tokio::task::yield_now().await;
        control.close(CloseCode::SlowConsumer);
        control.close(CloseCode::GoingAway);
        assert_eq!(waiter.await.unwrap(), CloseCode::SlowConsumer);
        // A close stays set, and wins over a pending re-check.
        control.recheck();
        assert_eq!(
            control.request().await,
            Request::Close(CloseCode::SlowConsumer)
        );
        assert_eq!(control.requested(), Some(CloseCode::SlowConsumer));
    }
}
