//! A connection's outbound side as other tasks see it: a bounded queue of pre-serialised
//! frames plus a close request and a re-check request, all in one allocation that the
//! connection task reads on every turn of its loop. Publishers never wait for a reader:
//! the queue's lock is held only for a push or a pop (and, after a burst, giving the
//! buffer back), and a full queue does not block or drop silently, it asks the
//! connection to close with the slow-consumer code, so one stalled reader never delays
//! a room. The connection task
//! owns the receiving end ([`Inbox`]) and is the only writer to its socket; nothing here
//! touches a socket or awaits.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio_tungstenite::tungstenite::Message;

use crate::maps::shrink_deque_if_sparse;
use crate::protocol::CloseCode;

/// A connection's shared state: its queue of frames and the requests made of it.
///
/// One allocation, polled on every turn of the connection's loop, i.e. once per
/// delivered frame: a lock that is never contended for long (a push or a pop), a few
/// atomics and one waker slot. (With tokio's mpsc channel beside a separate request
/// struct, a delivery cost a semaphore acquire and release, the channel's block list, two
/// waker slots and a second cache line, about 9 % of the server's samples in the
/// 20x500x5 fan-out; two `Notify` futures and a shared `CancellationToken` before that
/// cost a mutex and a waiter-list insert and removal three times per delivery.) Shutdown
/// reaches connections through [`Registry::close_all`](super::Registry::close_all), like
/// any other close.
pub struct Control {
    queue: Mutex<Queue>,
    /// The queue's length, readable without its lock (see [`Outbound::backlogged`]).
    queued: AtomicUsize,
    capacity: usize,
    /// The first close requested wins. Locked only to set it and read it once.
    code: Mutex<Option<CloseCode>>,
    /// Set (after `code`) when a close has been requested: the lock-free check.
    closing: AtomicBool,
    /// Rights may have changed (roles, a role's permissions, a room's ACL): the task
    /// re-reads them. Requests made while one is pending merge into it.
    recheck: AtomicBool,
    /// The connection task, woken by a request or by a frame queued into an empty queue.
    waker: AtomicWaker,
}

struct Queue {
    frames: VecDeque<Frame>,
    /// False once the connection task let go of its [`Inbox`]: frames are refused.
    open: bool,
}

/// What the connection task is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Close(CloseCode),
    Recheck,
}

impl Control {
    /// A connection's state with room for `capacity` queued frames.
    pub fn new(capacity: usize) -> Control {
        Control {
            queue: Mutex::new(Queue {
                frames: VecDeque::new(),
                open: true,
            }),
            queued: AtomicUsize::new(0),
            capacity,
            code: Mutex::new(None),
            closing: AtomicBool::new(false),
            recheck: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

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

    /// Queues `frame` unless the queue is full or its reader gone.
    fn push(&self, frame: Frame) -> Push {
        let mut q = self.lock();
        if !q.open {
            return Push::Gone;
        }
        if q.frames.len() >= self.capacity {
            return Push::Full;
        }
        let was_empty = q.frames.is_empty();
        q.frames.push_back(frame);
        self.queued.store(q.frames.len(), Ordering::Relaxed);
        drop(q);
        // The task looks at the queue again (after registering its waker) before it
        // sleeps on it, so it can only be asleep on an empty queue: the frame that
        // makes it non-empty is the one that needs to wake it. Frames left queued
        // while it waits on a write are taken when it comes back to the queue.
        if was_empty {
            self.waker.wake();
        }
        Push::Queued
    }

    fn pop(&self) -> Option<Frame> {
        let mut q = self.lock();
        let frame = q.frames.pop_front();
        if frame.is_some() {
            self.queued.store(q.frames.len(), Ordering::Relaxed);
            // A burst's buffer goes back once drained (up to `capacity` slots).
            shrink_deque_if_sparse(&mut q.frames);
        }
        frame
    }
}

enum Push {
    Queued,
    Full,
    Gone,
}

/// A queued frame, serialised once and shared by every queue it is in. The queue holds
/// a pointer, not the 40-byte `Message`, so a burst's queue costs 8 bytes a frame.
pub type Frame = Arc<Message>;

/// A text frame ready to queue.
pub fn text_frame(text: String) -> Frame {
    Arc::new(Message::text(text))
}

/// The sending half of a connection. Cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    control: Arc<Control>,
}

/// The connection task's end of its queue. Dropping it refuses further frames and drops
/// the ones still queued.
pub struct Inbox {
    control: Arc<Control>,
}

impl Inbox {
    /// Ready with the next queued frame; otherwise registers the task to be woken when
    /// one is queued (registered before the queue is looked at, so none is missed).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Frame> {
        self.control.waker.register(cx.waker());
        match self.control.pop() {
            Some(frame) => Poll::Ready(frame),
            None => Poll::Pending,
        }
    }

    /// Resolves with the next queued frame.
    pub async fn recv(&mut self) -> Frame {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next queued frame, if one is there now.
    pub fn try_recv(&mut self) -> Option<Frame> {
        self.control.pop()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let frames = {
            let mut q = self.control.lock();
            q.open = false;
            self.control.queued.store(0, Ordering::Relaxed);
            std::mem::take(&mut q.frames)
        };
        // Dropped outside the lock: the last reference to a frame frees it.
        drop(frames);
    }
}

impl Outbound {
    /// A queue of `capacity` frames; returns the handle, the connection task's end and
    /// the requests it polls.
    pub fn channel(capacity: usize) -> (Outbound, Inbox, Arc<Control>) {
        let control = Arc::new(Control::new(capacity));
        (
            Outbound {
                control: control.clone(),
            },
            Inbox {
                control: control.clone(),
            },
            control,
        )
    }

    /// Queues a frame. A full queue closes the connection as a slow consumer; a closed
    /// queue means the connection is already going away. Returns whether it was queued.
    pub fn send(&self, frame: Frame) -> bool {
        match self.control.push(frame) {
            Push::Queued => true,
            Push::Full => {
                self.control.close(CloseCode::SlowConsumer);
                false
            }
            Push::Gone => false,
        }
    }

    /// Whether the queue is more than half full: the connection task is behind, and a
    /// publisher feeding it should let it run (see `publish::publish`).
    pub fn backlogged(&self) -> bool {
        self.control.queued.load(Ordering::Relaxed) * 2 > self.control.capacity
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
        let control = Arc::new(Control::new(4));
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

    #[tokio::test]
    async fn frames_come_out_in_order_and_a_full_queue_closes_as_a_slow_consumer() {
        let (out, mut inbox, control) = Outbound::channel(4);
        for i in 0..4 {
            assert!(out.send_text(format!("f{i}")));
        }
        // At the edge: the fifth frame is refused and asks for the slow-consumer close.
        assert!(out.backlogged());
        assert!(!out.send_text("f4".into()));
        assert_eq!(control.requested(), Some(CloseCode::SlowConsumer));
        for i in 0..4 {
            let f = inbox.try_recv().expect("queued frame");
            assert_eq!(f.to_text().unwrap(), format!("f{i}"));
        }
        assert!(inbox.try_recv().is_none());
        assert!(!out.backlogged());
        // Room again once drained.
        assert!(out.send_text("f5".into()));
        assert_eq!(inbox.recv().await.to_text().unwrap(), "f5");
        // Half full is not yet backlogged; past half is.
        let (out, _inbox, _) = Outbound::channel(4);
        out.send_text("a".into());
        out.send_text("b".into());
        assert!(!out.backlogged());
        out.send_text("c".into());
        assert!(out.backlogged());
    }

    /// Several publishers on other threads, a reader that takes a frame and then up to a
    /// batch more without waiting, as the connection task does: every frame arrives,
    /// in each publisher's order, with no send left to wake the reader at the end. A
    /// reader that looked at the queue before registering its waker would hang here.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_publishers_lose_nothing_and_keep_their_order() {
        const PUBLISHERS: usize = 4;
        const EACH: usize = 5_000;
        let (out, mut inbox, _control) = Outbound::channel(256);
        let mut senders = Vec::new();
        for p in 0..PUBLISHERS {
            let out = out.clone();
            senders.push(tokio::spawn(async move {
                for i in 0..EACH {
                    // Publishers here wait for room (the server's close instead); a
                    // burst of up to 64 at a time.
                    while out.backlogged() {
                        tokio::task::yield_now().await;
                    }
                    assert!(out.send_text(format!("{p}:{i}")), "refused {p}:{i}");
                    if i % 64 == 63 {
                        tokio::task::yield_now().await;
                    }
                }
            }));
        }
        let reader = tokio::spawn(async move {
            let mut next = [0usize; PUBLISHERS];
            let mut seen = 0;
            let mut take = |f: Frame| {
                let text = f.to_text().unwrap().to_string();
                let (p, i) = text.split_once(':').unwrap();
                let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
                assert_eq!(i, next[p], "publisher {p} out of order");
                next[p] += 1;
                seen += 1;
                seen
            };
            let mut total = 0;
            while total < PUBLISHERS * EACH {
                total = take(inbox.recv().await);
                for _ in 1..64 {
                    match inbox.try_recv() {
                        Some(f) => total = take(f),
                        None => break,
                    }
                }
            }
            total
        });
        // One deadline over all of it: a lost wake-up stalls the reader, and with it the
        // publishers waiting for room.
        let total = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            for s in senders {
                s.await.unwrap();
            }
            reader.await.unwrap()
        })
        .await
        .expect("every frame reached the reader");
        assert_eq!(total, PUBLISHERS * EACH);
    }

    #[tokio::test]
    async fn a_frame_into_an_empty_queue_wakes_the_waiting_task_and_a_gone_inbox_refuses() {
        let (out, mut inbox, _control) = Outbound::channel(8);
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let reader = tokio::spawn(async move {
            for _ in 0..1_000 {
                let f = inbox.recv().await;
                tx.send(f.to_text().unwrap().to_string()).await.unwrap();
            }
            inbox
        });
        for i in 0..1_000 {
            assert!(out.send_text(format!("{i}")));
            let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
                .await
                .expect("the frame woke the reader");
            assert_eq!(got, Some(format!("{i}")));
        }
        let inbox = reader.await.unwrap();
        assert!(out.send_text("queued".into()));
        let frame = text_frame("shared".into());
        assert!(out.send(frame.clone()));
        drop(inbox);
        // The queued frames were dropped with the inbox, and nothing more is taken.
        assert_eq!(Arc::strong_count(&frame), 1);
        assert!(!out.send_text("late".into()));
        assert!(!out.backlogged());
    }
}
