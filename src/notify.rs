//! Personal notifications: every user's live channel and durable inbox. A notification
//! is validated here (sizes from `[notifications]`, the seed's content policy on `title`
//! and `body`), stored in the addressee's inbox (`store`, bounded by count; the sweeper
//! enforces the age limit), and sent as one pre-serialised `notification` frame to every
//! connection the user has subscribed. A connection subscribes right after `auth`, and
//! subscribing replays the inbox oldest first. Callers: `conn` (the `notification` and
//! `notification_ack` frames, the post-auth replay) and the HTTP API ([`notify_users`],
//! [`notify_room`]). It decides nothing about who may publish (callers check
//! `notify:publish` or an API key), never takes a hub lock, and never awaits under a lock.
//!
//! **Ordering.** Per user, "assign an id, store, send to subscribers" and "read the inbox,
//! subscribe, replay it" run under one lock (a stripe chosen by hashing the user id). So
//! a notification is either in the inbox a connection replays or sent to it live, never
//! both and never neither, and a user's ids increase in the order its frames are sent:
//! the replay comes first, oldest first, and every live frame after it has a higher id.
//! The lock covers one user's sled calls and never an await. Publishing to many users
//! runs on the blocking pool (it takes one user's lock at a time); the subscribe at
//! `auth` takes it inline, since it is one short inbox scan.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use crate::config::Config;
use crate::hub::{Outbound, text_frame};
use crate::protocol::{self, ErrorCode, NotificationView, now_ms};
use crate::state::AppState;
use crate::store::{NotificationRecord, RoomRecord, Store, StoreError};

/// Lock stripes. A contention knob, not a limit: two users share a stripe only by hash,
/// and then merely take turns for a few microseconds.
const STRIPES: usize = 64;

/// A notification as a publisher gives it, before validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewNotification {
    /// An application-defined category (`A-Z a-z 0-9 _ - . :`).
    pub kind: Option<String>,
    pub title: Option<String>,
    pub body: String,
    /// Any JSON value, passed through unchanged (not sanitised: clients escape it).
    pub data: Option<Value>,
}

/// A validated notification, ready to publish.
#[derive(Debug, Clone)]
pub struct Prepared {
    kind: Option<String>,
    title: Option<String>,
    body: String,
    data: Option<Value>,
    /// `data` as compact JSON, as stored.
    data_text: Option<String>,
}

/// One user a notification was stored for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub user_id: String,
    /// The notification's id in that user's inbox.
    pub id: u64,
    /// The user's open connections it was sent to at once.
    pub connections: usize,
}

/// A room's current members, for a room notification.
pub struct RoomAudience {
    pub record: Arc<RoomRecord>,
    /// Distinct user ids of the members (each was admitted with `read`, and live
    /// re-evaluation takes out any who lose it).
    pub members: Vec<String>,
}

/// Why a notification was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("no recipients, several kinds of target, or a bad user id")]
    InvalidRecipients,
    #[error("more recipients than notifications.max_recipients")]
    TooManyRecipients,
    #[error("{0} is over its size limit")]
    TooLarge(&'static str),
    #[error("{0} is malformed")]
    InvalidField(&'static str),
    #[error("more ids than notifications.max_ack_ids")]
    TooManyIds,
    #[error("invalid room id")]
    InvalidRoomId,
    #[error("room not found")]
    RoomNotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("notification task failed: {0}")]
    Task(String),
}

impl NotifyError {
    /// The reply code a WebSocket client sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            NotifyError::InvalidRecipients => ErrorCode::InvalidRecipients,
            NotifyError::TooManyRecipients => ErrorCode::TooManyRecipients,
            NotifyError::TooLarge(_) => ErrorCode::NotificationTooLarge,
            NotifyError::InvalidField(_) => ErrorCode::InvalidField,
            NotifyError::TooManyIds => ErrorCode::TooManyIds,
            NotifyError::InvalidRoomId => ErrorCode::InvalidRoomId,
            NotifyError::RoomNotFound => ErrorCode::RoomNotFound,
            NotifyError::Store(_) | NotifyError::Task(_) => ErrorCode::Internal,
        }
    }

    /// The offending field, for `TooLarge` and `InvalidField`.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            NotifyError::TooLarge(f) | NotifyError::InvalidField(f) => Some(f),
            _ => None,
        }
    }
}

/// Validates a notification against `[notifications]` and applies the content policy
/// (`security.strip_html`) to its title and body.
pub fn prepare(cfg: &Config, n: NewNotification) -> Result<Prepared, NotifyError> {
    let limits = &cfg.notifications;
    if let Some(kind) = &n.kind {
        if kind.len() > limits.max_kind_bytes {
            return Err(NotifyError::TooLarge("kind"));
        }
        if kind.is_empty()
            || !kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
        {
            return Err(NotifyError::InvalidField("kind"));
        }
    }
    let strip = cfg.security.strip_html;
    let title = match n.title {
        Some(t) if t.chars().count() > limits.max_title_chars => {
            return Err(NotifyError::TooLarge("title"));
        }
        Some(t) => Some(crate::content::sanitize(&t, strip, limits.max_title_chars)),
        None => None,
    };
    if n.body.is_empty() {
        return Err(NotifyError::InvalidField("body"));
    }
    if n.body.chars().count() > limits.max_body_chars {
        return Err(NotifyError::TooLarge("body"));
    }
    let body = crate::content::sanitize(&n.body, strip, limits.max_body_chars);
    // A JSON null is no data, as in the frame.
    let data = n.data.filter(|v| !v.is_null());
    let data_text = match &data {
        Some(v) => {
            let text = serde_json::to_string(v).map_err(|_| NotifyError::InvalidField("data"))?;
            if text.len() > limits.max_data_bytes {
                return Err(NotifyError::TooLarge("data"));
            }
            Some(text)
        }
        None => None,
    };
    Ok(Prepared {
        kind: n.kind,
        title,
        body,
        data,
        data_text,
    })
}

/// Checks a list of addressees and removes repeats (first occurrence kept).
pub fn check_recipients(cfg: &Config, user_ids: &[String]) -> Result<Vec<String>, NotifyError> {
    let limits = &cfg.notifications;
    if user_ids.is_empty() {
        return Err(NotifyError::InvalidRecipients);
    }
    if user_ids.len() > limits.max_recipients {
        return Err(NotifyError::TooManyRecipients);
    }
    let mut seen = std::collections::HashSet::with_capacity(user_ids.len());
    let mut out: Vec<String> = Vec::with_capacity(user_ids.len());
    for u in user_ids {
        if u.is_empty() || u.len() > limits.max_user_id_bytes {
            return Err(NotifyError::InvalidRecipients);
        }
        if seen.insert(u.as_str()) {
            out.push(u.clone());
        }
    }
    Ok(out)
}

/// Whether `room_id` is a well-formed room id (the rule `join` uses).
pub fn check_room_id(cfg: &Config, room_id: &str) -> Result<(), NotifyError> {
    let ok = !room_id.is_empty()
        && room_id.len() <= cfg.rooms.max_room_id_len
        && room_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(NotifyError::InvalidRoomId)
    }
}

/// The room's definition and its members right now. A stored room nobody is in has no
/// audience; an unknown room is `RoomNotFound`.
pub fn room_audience(state: &AppState, room_id: &str) -> Result<RoomAudience, NotifyError> {
    check_room_id(&state.cfg, room_id)?;
    if let Some(room) = state.hub.get(room_id) {
        return Ok(RoomAudience {
            record: room.record(),
            members: room.participants(),
        });
    }
    match state.store.room(room_id)? {
        Some(record) => Ok(RoomAudience {
            record: Arc::new(record),
            members: Vec::new(),
        }),
        None => Err(NotifyError::RoomNotFound),
    }
}

/// Notifies users (the HTTP API's `POST /api/v1/notify`): validates, stores one entry
/// per distinct user, and sends it to each user's open connections. `from` is shown to
/// the recipients as the sender. On a store failure part-way, the users before it
/// have theirs.
pub async fn notify_users(
    state: &AppState,
    from: &str,
    user_ids: &[String],
    n: NewNotification,
) -> Result<Vec<Delivered>, NotifyError> {
    let users = check_recipients(&state.cfg, user_ids)?;
    let prepared = prepare(&state.cfg, n)?;
    publish(state, from, users, prepared, None).await
}

/// Notifies the current members of a room: each distinct member user gets it as a
/// personal notification with `roomId` set (stored in their inbox, sent to all their
/// connections). The caller has decided that `from` may address this room.
pub async fn notify_room(
    state: &AppState,
    from: &str,
    room_id: &str,
    n: NewNotification,
) -> Result<Vec<Delivered>, NotifyError> {
    let prepared = prepare(&state.cfg, n)?;
    let audience = room_audience(state, room_id)?;
    publish(state, from, audience.members, prepared, Some(room_id)).await
}

/// Stores and sends an already validated notification to `users` (distinct, checked),
/// on the blocking pool.
pub async fn publish(
    state: &AppState,
    from: &str,
    users: Vec<String>,
    n: Prepared,
    room_id: Option<&str>,
) -> Result<Vec<Delivered>, NotifyError> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let notifier = state.notifier.clone();
    let from = from.to_string();
    let room_id = room_id.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        notifier.publish_blocking(&from, &users, &n, room_id.as_deref())
    })
    .await
    .map_err(|e| NotifyError::Task(e.to_string()))?
    .map_err(NotifyError::from)
}

/// Deletes acknowledged notifications from `user_id`'s inbox; unknown ids are ignored.
/// Returns how many were deleted.
pub async fn ack(state: &AppState, user_id: &str, ids: Vec<u64>) -> Result<usize, NotifyError> {
    if ids.len() > state.cfg.notifications.max_ack_ids {
        return Err(NotifyError::TooManyIds);
    }
    let store = state.store.clone();
    let user = user_id.to_string();
    tokio::task::spawn_blocking(move || store.ack_notifications(&user, &ids))
        .await
        .map_err(|e| NotifyError::Task(e.to_string()))?
        .map_err(NotifyError::from)
}

/// Subscribes a freshly authenticated connection to its user's notifications and
/// replays the inbox to it, oldest first. The subscription holds even when the replay
/// failed (the inbox stays for the next `auth`); the returned result says how many were
/// replayed.
///
/// Runs inline on the connection's task: it is one prefix scan of a (usually empty)
/// inbox under one user's stripe lock, like the other sled reads `auth` makes. Handing
/// it to the blocking pool cost two thread switches per `auth`, and under a connection
/// storm the pool grew a thread per concurrent handshake: that was most of the
/// server's CPU in the `connect` benchmark.
pub fn subscribe(
    state: &AppState,
    user_id: Arc<str>,
    conn_id: u64,
    out: Outbound,
) -> (Subscription, Result<usize, NotifyError>) {
    let (sub, replayed) = state.notifier.subscribe_blocking(user_id, conn_id, out);
    (sub, replayed.map_err(NotifyError::from))
}

/// Live subscribers and the per-user ordering locks.
pub struct Notifier {
    store: Store,
    /// At most half of `connection.outbound_queue`, so a replay fits the socket's queue.
    inbox_max_count: usize,
    inbox_max_age_ms: u64,
    stripes: Box<[Stripe]>,
    hasher: RandomState,
}

struct Stripe {
    /// Held across one user's "id, store, send" or "read inbox, subscribe, replay".
    /// Locking rule: one user's sled calls and `try_send`s only, never an await (so it
    /// is held for microseconds and may be taken on a runtime worker); never with a hub
    /// lock; `subs` may be taken inside it, not the
    /// reverse.
    order: Mutex<()>,
    /// Open connections by user. Locking rule: map updates and `try_send`s only.
    subs: Mutex<HashMap<Arc<str>, Vec<Subscriber>>>,
}

/// One open connection of a user: its registry id and its queue.
type Subscriber = (u64, Outbound);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Notifier {
    /// The inbox keeps `notifications.inbox_max_count` entries, but never more than half
    /// of `connection.outbound_queue`: the whole inbox is queued to a socket at once,
    /// while its task is still busy with `auth`, and must leave room for live frames.
    pub fn new(store: Store, cfg: &Config) -> Notifier {
        let n = &cfg.notifications;
        let fits = (cfg.connection.outbound_queue / 2).max(1);
        if n.inbox_max_count > fits {
            tracing::warn!(
                configured = n.inbox_max_count,
                used = fits,
                "notifications.inbox_max_count is more than half of connection.outbound_queue; using half"
            );
        }
        Notifier {
            store,
            inbox_max_count: n.inbox_max_count.min(fits),
            inbox_max_age_ms: n.inbox_max_age_secs.saturating_mul(1000),
            stripes: (0..STRIPES)
                .map(|_| Stripe {
                    order: Mutex::new(()),
                    subs: Mutex::new(HashMap::new()),
                })
                .collect(),
            hasher: RandomState::new(),
        }
    }

    fn stripe(&self, user_id: &str) -> &Stripe {
        let i = self.hasher.hash_one(user_id) as usize % self.stripes.len();
        &self.stripes[i]
    }

    /// Open connections subscribed for `user_id`.
    pub fn subscribers(&self, user_id: &str) -> usize {
        lock(&self.stripe(user_id).subs)
            .get(user_id)
            .map_or(0, Vec::len)
    }

    /// Blocking: stores and sends to each user in turn, one user's lock at a time.
    fn publish_blocking(
        &self,
        from: &str,
        users: &[String],
        n: &Prepared,
        room_id: Option<&str>,
    ) -> Result<Vec<Delivered>, StoreError> {
        let mut delivered = Vec::with_capacity(users.len());
        for user in users {
            let stripe = self.stripe(user);
            let _order = lock(&stripe.order);
            // Taken under the order lock, so one user's ids grow in send order.
            let id = self.store.generate_id()?;
            let record = NotificationRecord {
                id,
                from: from.to_string(),
                kind: n.kind.clone(),
                title: n.title.clone(),
                body: n.body.clone(),
                data: n.data_text.clone(),
                room_id: room_id.map(str::to_string),
                timestamp: now_ms(),
            };
            self.store
                .put_notification(user, &record, self.inbox_max_count)?;
            let frame = text_frame(encode(&record, n.data.as_ref()));
            let subs = lock(&stripe.subs);
            let conns = subs.get(user.as_str()).map_or(&[][..], Vec::as_slice);
            for (_, out) in conns {
                // Serialised once per user; each connection gets a refcounted clone.
                out.send(frame.clone());
            }
            delivered.push(Delivered {
                user_id: user.clone(),
                id,
                connections: conns.len(),
            });
        }
        Ok(delivered)
    }

    /// Blocking: reads the inbox, subscribes the connection and queues the replay, all
    /// under the user's order lock.
    fn subscribe_blocking(
        self: &Arc<Self>,
        user_id: Arc<str>,
        conn_id: u64,
        out: Outbound,
    ) -> (Subscription, Result<usize, StoreError>) {
        let stripe = self.stripe(&user_id);
        let _order = lock(&stripe.order);
        let inbox = self.store.inbox(&user_id);
        lock(&stripe.subs)
            .entry(user_id.clone())
            .or_default()
            .push((conn_id, out.clone()));
        let sub = Subscription {
            notifier: self.clone(),
            user_id,
            conn_id,
        };
        let replayed = inbox.map(|records| {
            // Past the age limit but not yet swept: as good as gone.
            let cutoff = now_ms().saturating_sub(self.inbox_max_age_ms);
            let mut n = 0;
            for r in records.iter().filter(|r| r.timestamp >= cutoff) {
                // Stored by us as JSON text; unreadable data would be a bug, not input.
                let data = r
                    .data
                    .as_deref()
                    .and_then(|d| serde_json::from_str::<Value>(d).ok());
                out.send_text(encode(r, data.as_ref()));
                n += 1;
            }
            n
        });
        (sub, replayed)
    }
}

fn encode(r: &NotificationRecord, data: Option<&Value>) -> String {
    protocol::encode(
        "notification",
        &NotificationView {
            id: r.id,
            from: &r.from,
            kind: r.kind.as_deref(),
            title: r.title.as_deref(),
            body: &r.body,
            data,
            room_id: r.room_id.as_deref(),
            timestamp: r.timestamp,
        },
    )
}

/// A connection's subscription to its user's notifications; dropping it unsubscribes.
pub struct Subscription {
    notifier: Arc<Notifier>,
    user_id: Arc<str>,
    conn_id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = lock(&self.notifier.stripe(&self.user_id).subs);
        if let Some(list) = subs.get_mut(&self.user_id) {
            list.retain(|(id, _)| *id != self.conn_id);
            if list.is_empty() {
                subs.remove(&self.user_id);
                crate::maps::shrink_if_sparse(&mut subs);
            }
        }
    }
}
