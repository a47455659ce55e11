//! A connection's outbound side as other tasks see it: a bounded queue of pre-serialised
//! frames plus a close request. Publishers only ever `try_send`; a full queue does not
//! wait or drop silently, it asks the connection to close with the slow-consumer code,
//! so one stalled reader never delays a room. The connection task owns the receiving
//! end and is the only writer to its socket.

use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;

use crate::protocol::CloseCode;

/// A request to close, or to re-check permissions, observed by the connection task.
#[derive(Default)]
pub struct Control {
    /// The first close requested wins. Locked only to read or set the code; no await inside.
    code: Mutex<Option<CloseCode>>,
    notify: Notify,
    /// Rights may have changed (roles, a role's permissions, a room's ACL): the task
    /// re-reads them. Requests made while one is pending merge into it.
    recheck: Notify,
}

impl Control {
    /// Asks the connection to close with `code` (first request wins).
    pub fn close(&self, code: CloseCode) {
        let mut slot = self.code.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(code);
            drop(slot);
            // notify_one stores a permit when nobody waits yet, so the request is never lost.
            self.notify.notify_one();
        }
    }

    /// The requested close code, if any.
    pub fn requested(&self) -> Option<CloseCode> {
        *self.code.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the connection to re-evaluate its roles and room rights.
    pub fn recheck(&self) {
        // notify_one keeps one permit when the task is busy, so no request is lost and
        // a burst of changes costs one re-evaluation.
        self.recheck.notify_one();
    }

    /// Resolves when a re-check has been requested.
    pub async fn recheck_requested(&self) {
        self.recheck.notified().await
    }

    /// Resolves when a close has been requested.
    pub async fn wait(&self) -> CloseCode {
        loop {
            if let Some(code) = self.requested() {
                return code;
            }
            self.notify.notified().await;
        }
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
