//! Room history beyond the live room: the writer that puts accepted messages into the
//! store in batches from one task, off the fan-out path; `history` pages; and history
//! resets. A room queues each message for the writer under its lock, in a queue slot
//! reserved before the lock (when the bounded queue is full the publisher waits for a
//! slot, which slows that sender and nobody else, and loses nothing), so the writer sees
//! each room's messages, and its resets, in seq order. Reads never hold a room lock
//! across the store: they read first, then let the room splice in what only its ring
//! has, and wait on the writer's barrier when the store lags behind the ring.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::batch::{BatchWriter, Slot};
use crate::hub::{Lookup, NeedStore, Page, PageQuery, Room};
use crate::metrics::Metrics;
use crate::protocol::wire_epoch;
use crate::state::AppState;
use crate::store::{HistoryRecord, Store, StoreError, new_epoch};

/// One job for the writer. `pending` is the room's count of jobs not yet applied,
/// decremented once the job is.
pub enum HistoryItem {
    /// Store a message; trim its room to `keep` messages.
    Append {
        record: Arc<HistoryRecord>,
        keep: u64,
        pending: Arc<AtomicU64>,
    },
    /// Delete the room's history and client message ids (the room began a new epoch).
    Reset {
        room_id: Arc<str>,
        pending: Arc<AtomicU64>,
    },
}

impl HistoryItem {
    fn pending(&self) -> &AtomicU64 {
        match self {
            HistoryItem::Append { pending, .. } | HistoryItem::Reset { pending, .. } => pending,
        }
    }
}

/// Room reserved in the writer's queue for one item.
pub struct HistorySlot(Slot<HistoryItem>);

impl HistorySlot {
    /// Queues a message; never waits.
    pub fn append(self, record: Arc<HistoryRecord>, keep: u64, pending: Arc<AtomicU64>) {
        self.0.send(HistoryItem::Append {
            record,
            keep,
            pending,
        });
    }

    /// Queues a reset; never waits.
    pub fn reset(self, room_id: Arc<str>, pending: Arc<AtomicU64>) {
        self.0.send(HistoryItem::Reset { room_id, pending });
    }
}

/// Handle to the history writer. Cheap to clone.
#[derive(Clone)]
pub struct HistoryWriter(BatchWriter<HistoryItem>);

impl HistoryWriter {
    /// Starts the writer; each batch's write time goes to `metrics.history_append`.
    /// With `strict`, each batch is flushed to disk before the writer takes the next, so
    /// a barrier (`sync`) returning means everything before it is durable: one fsync
    /// covers every message that arrived while the previous one ran (group commit).
    pub fn start(store: Store, queue: usize, strict: bool, metrics: Arc<Metrics>) -> HistoryWriter {
        HistoryWriter(BatchWriter::start(
            "roomgate-history",
            queue,
            512,
            move |batch| {
                let started = Instant::now();
                write(&store, batch);
                if strict && let Err(e) = store.flush_blocking() {
                    tracing::error!(error = %e, "flushing history failed");
                }
                metrics.history_append.observe(started.elapsed());
            },
        ))
    }

    /// Waits for room in the queue; None once the writer has stopped (shutdown).
    pub async fn reserve(&self) -> Option<HistorySlot> {
        self.0.reserve().await.map(HistorySlot)
    }

    /// True when every item handed over has been applied to the store.
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

/// Applies a batch in queue order: runs of appends as one store batch each, resets
/// between them.
fn write(store: &Store, batch: &[HistoryItem]) {
    let mut run: Vec<(&HistoryRecord, u64)> = Vec::new();
    let flush = |run: &mut Vec<(&HistoryRecord, u64)>| {
        if run.is_empty() {
            return;
        }
        if let Err(e) = store.append_history(run) {
            tracing::error!(error = %e, lost = run.len(), "writing history failed");
        }
        run.clear();
    };
    for item in batch {
        match item {
            HistoryItem::Append { record, keep, .. } => run.push((record, *keep)),
            HistoryItem::Reset { room_id, .. } => {
                flush(&mut run);
                if let Err(e) = store.delete_history(room_id) {
                    tracing::error!(error = %e, "resetting a room's history failed");
                }
            }
        }
    }
    flush(&mut run);
    for item in batch {
        item.pending().fetch_sub(1, Ordering::AcqRel);
    }
}

/// How often a read retries when the store lags behind a room's ring.
const READ_TRIES: usize = 3;

/// One page of a room's history: from the ring when it reaches back far enough,
/// otherwise from the store first and the ring for what the writer has not applied yet.
pub async fn page(state: &AppState, room: &Room, q: PageQuery) -> Result<Page, StoreError> {
    let mut stored: Option<(Vec<Arc<HistoryRecord>>, u64)> = None;
    for attempt in 0..=READ_TRIES {
        let last_try = attempt == READ_TRIES;
        let have = stored.as_ref().map(|(s, e)| (s.as_slice(), *e));
        let NeedStore { epoch } = match room.page(&q, have, last_try) {
            Ok(page) => return Ok(page),
            Err(need) => need,
        };
        // The first store read needs no barrier: usually the store is only behind for
        // messages the ring still holds. A second means it lagged; wait for the writer.
        if attempt > 0 {
            state.history.sync().await;
        }
        let records = match q.since {
            Some(since) => {
                state
                    .store
                    .history_range(&room.id, since.saturating_add(1), u64::MAX, q.limit)?
            }
            None => state.store.history_before(
                &room.id,
                q.before.unwrap_or(u64::MAX),
                q.limit.saturating_add(1),
            )?,
        };
        stored = Some((records.into_iter().map(Arc::new).collect(), epoch));
    }
    // The last try always answers; this is only reached if it did not.
    let have = stored.as_ref().map(|(s, e)| (s.as_slice(), *e));
    room.page(&q, have, true)
        .map_err(|_| StoreError::Codec("history page did not settle".into()))
}

/// Deletes a room's history and starts a new epoch, so `since` values from before
/// recover nothing. The new epoch is stored first; then the room (loaded if it was not)
/// switches to it under its lock, and the writer deletes the stored messages in queue
/// order. Returns the new epoch as clients see it, or None when there is no such room.
pub async fn reset(state: &AppState, room_id: &str) -> Result<Option<u64>, StoreError> {
    let epoch = new_epoch();
    let Some(record) = state.store.update_room(room_id, |r| r.epoch = epoch)? else {
        return Ok(None);
    };
    // A room retired between the lookup and the reset is simply loaded again.
    for _ in 0..3 {
        let room = match state.hub.load(room_id, false)? {
            Lookup::Found(room) => room,
            Lookup::NotFound => return Ok(None),
        };
        let Some(slot) = state.history.reserve().await else {
            break;
        };
        if room.reset(record.clone(), slot) {
            state.history.sync().await;
            return Ok(Some(wire_epoch(epoch)));
        }
    }
    // Shutting down, or the room keeps being retired: the store write alone still
    // voids old `since` values; the messages go with the next reset or room deletion.
    state.store.delete_history(room_id)?;
    Ok(Some(wire_epoch(epoch)))
}
