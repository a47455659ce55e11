//! The one path a room message takes, for a WebSocket `message` and for an application
//! publishing through the API alike: client message id check, content sanitisation,
//! sender idempotency (the room's memory, then the store), a slot in the history
//! writer's queue, and the room's sequenced fan-out. It decides nothing about who may
//! write: the caller brings a `WriteGrant`. It never holds a room lock across the store
//! or an await (the room's own methods take and release it).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::auth::random_hex;
use crate::authz::WriteGrant;
use crate::config::Durability;
use crate::hub::{Outgoing, Posted, Recent, Room};
use crate::protocol::{self, ChatMessage, now_ms};
use crate::state::AppState;
use crate::store::{HistoryRecord, StoreError};

/// Who a message is from.
#[derive(Debug, Clone)]
pub struct Sender {
    pub user_id: Arc<str>,
    pub email: Option<Arc<str>>,
    /// Published by an application (the admin API) rather than typed by a user.
    pub system: bool,
}

/// What became of a message: its id and seq in the room's epoch; on a duplicate
/// `clientMsgId`, the original's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub room_id: Arc<str>,
    pub client_msg_id: Option<String>,
    pub id: String,
    pub seq: u64,
    pub epoch: u64,
    pub duplicate: bool,
}

/// Why a message was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The client message id is empty, too long or has a character outside
    /// `[A-Za-z0-9_.:-]` (`invalid_client_msg_id`).
    #[error("invalid client message id")]
    InvalidClientMsgId,
    /// The room was unloaded from memory meanwhile (only possible for a publisher that
    /// is not a member): look it up again with `hub.load` and retry.
    #[error("the room was unloaded; load it again")]
    RoomRetired,
    /// The history writer has stopped: the server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether `id` is an acceptable client message id.
pub fn valid_client_msg_id(id: &str, max_len: usize) -> bool {
    !id.is_empty()
        && id.len() <= max_len
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
}

/// Publishes `content` to `room` as `sender`: sanitised as configured, stored in
/// history, sent to every member (the sender's own connections included) with the
/// room's next seq. With a `client_msg_id` that this user already used in this room
/// within `rooms.dedupe_window_secs`, nothing is stored or sent and the original's id
/// and seq come back with `duplicate: true`.
///
/// With `store.durability = "strict"` it returns only once the message (or, for a
/// duplicate, its original) is flushed to disk, so an `Ack` is a durable fact.
pub async fn publish(
    state: &AppState,
    room: &Arc<Room>,
    grant: WriteGrant,
    sender: &Sender,
    content: &str,
    client_msg_id: Option<&str>,
) -> Result<Ack, PublishError> {
    let ack = publish_queued(state, room, grant, sender, content, client_msg_id).await?;
    if state.cfg.store.durability == Durability::Strict {
        // The writer flushes every batch in strict mode: its barrier is a durability point.
        state.history.sync().await;
    }
    Ok(ack)
}

async fn publish_queued(
    state: &AppState,
    room: &Arc<Room>,
    grant: WriteGrant,
    sender: &Sender,
    content: &str,
    client_msg_id: Option<&str>,
) -> Result<Ack, PublishError> {
    let rooms = &state.cfg.rooms;
    if let Some(c) = client_msg_id
        && !valid_client_msg_id(c, rooms.max_client_msg_id_len)
    {
        return Err(PublishError::InvalidClientMsgId);
    }
    let ack = |p: Posted| Ack {
        room_id: room.id.clone(),
        client_msg_id: client_msg_id.map(str::to_string),
        id: p.id,
        seq: p.seq,
        epoch: p.epoch,
        duplicate: p.duplicate,
    };
    if let Some(c) = client_msg_id {
        match room.recent(&sender.user_id, c) {
            Recent::Seen(p) => return Ok(ack(p)),
            Recent::Unseen { certain: true } => {}
            // The room was loaded within the window (or forgot ids under its cap): an
            // earlier send may only be in the store, or on its way there.
            Recent::Unseen { certain: false } => {
                if room.has_pending_writes() {
                    state.history.sync().await;
                }
                let window_ms = rooms.dedupe_window_secs.saturating_mul(1000);
                if let Some(a) = state.store.client_msg(&room.id, &sender.user_id, c)?
                    && a.at_ms.saturating_add(window_ms) > now_ms()
                {
                    let (epoch, _) = room.position();
                    return Ok(ack(Posted {
                        id: a.id,
                        seq: a.seq,
                        epoch,
                        duplicate: true,
                        recipients: 0,
                        backlogged: false,
                    }));
                }
            }
        }
    }
    let sec = &state.cfg.security;
    let content = crate::content::sanitize(content, sec.strip_html, sec.max_message_length);
    let record = HistoryRecord {
        room_id: room.id.to_string(),
        seq: 0,
        id: random_hex(16),
        content,
        user_id: sender.user_id.to_string(),
        email: sender.email.as_deref().map(str::to_string),
        timestamp: now_ms(),
        client_msg_id: client_msg_id.map(str::to_string),
        system: sender.system,
    };
    // Serialised once, before the lock; the room splices in seq and epoch.
    let body = protocol::message_body(&ChatMessage::from_record(&record, 0));
    let slot = state
        .history
        .reserve()
        .await
        .ok_or(PublishError::ShuttingDown)?;
    let started = Instant::now();
    let posted = room
        .publish(grant, Outgoing { record, body }, slot)
        .map_err(|_| PublishError::RoomRetired)?;
    if !posted.duplicate {
        let m = &state.metrics;
        m.fanout.observe(started.elapsed());
        m.messages_out.fetch_add(1, Ordering::Relaxed);
        m.deliveries
            .fetch_add(posted.recipients as u64, Ordering::Relaxed);
    }
    // Backpressure without waiting on anyone: when a member's queue is past half, the
    // publisher steps to the back of the run queue so the members' tasks drain before
    // its next frame. After a stall (a busy core, a pause) a publisher's socket holds
    // a burst that it would otherwise fan out faster than any member can write it,
    // closing healthy members as slow consumers (seen in the 10x100x1000 fan-out on a
    // shared machine). A member that really stopped reading still fills its queue and
    // is closed; the room never waits for it.
    if posted.backlogged {
        tokio::task::yield_now().await;
    }
    Ok(ack(posted))
}
