//! One live room: its policy, its members keyed by connection, its users aggregated
//! from those connections, its message sequence and epoch, a ring of its last messages
//! (for recovery and recent history) and the client message ids it accepted lately.
//! Everything that changes who is in the room or what they receive happens under the
//! room's one lock, so sequence order, membership, fan-out order, the ring and the
//! history writer's queue order agree. The lock is never held across an await or a
//! store call: whatever comes from the store is read before the lock and handed in,
//! and the history writer's queue slot is reserved before it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::outbound::{Frame, Outbound, text_frame};
use crate::authz::{ReadGrant, WriteGrant};
use crate::history::HistorySlot;
use crate::maps::{shrink_deque_if_sparse, shrink_if_sparse};
use crate::protocol::{
    self, PresenceMember, RoomJoined, RoomLeft, UserPresence, now_ms, wire_epoch,
};
use crate::store::{HistoryRecord, RoomRecord};

/// Per-room limits, from the room type's retention and `rooms.*`.
#[derive(Debug, Clone, Copy)]
pub struct RoomLimits {
    /// Messages kept in memory for recovery (at most `keep`).
    pub ring: usize,
    /// Messages the store keeps for this room.
    pub keep: u64,
    /// How long a client message id is remembered, ms.
    pub dedupe_window_ms: u64,
    /// Client message ids remembered in memory.
    pub dedupe_max: usize,
}

/// A published message as the room keeps it: the record and the frame its members got.
#[derive(Clone)]
pub struct Entry {
    pub record: Arc<HistoryRecord>,
    pub frame: Frame,
}

/// A message ready for the room: its record (seq still 0) and its `data` serialised
/// without seq and epoch (`protocol::message_body`).
pub struct Outgoing {
    pub record: HistoryRecord,
    pub body: String,
}

/// What became of a message handed to [`Room::publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub id: String,
    pub seq: u64,
    pub epoch: u64,
    /// The client message id was seen before: nothing was stored or sent, and `id` and
    /// `seq` are the original's.
    pub duplicate: bool,
    /// Members the frame was queued to.
    pub recipients: usize,
    /// Some member's queue is more than half full.
    pub backlogged: bool,
}

/// A client message id looked up in the room's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recent {
    Seen(Posted),
    /// Not seen. `certain` when the memory covers the whole window, so the store need
    /// not be asked.
    Unseen {
        certain: bool,
    },
}

/// What a rejoining client asks for with `join {since, epoch}`, and what the caller read
/// from the store for it.
pub struct Resume {
    pub since: u64,
    pub epoch: Option<u64>,
    /// Longest gap replayed (`rooms.max_recovery_messages`).
    pub max: u64,
    /// Messages from the store (oldest first) and the epoch they were read in.
    pub stored: Vec<Entry>,
    pub stored_epoch: Option<u64>,
    /// No more store reads will follow: a gap not covered now is reported as lost.
    pub last_try: bool,
}

/// A join that succeeded.
pub struct Joined {
    pub membership: Membership,
    /// Some when `since` was given: whether every missed message was replayed.
    pub recovered: Option<bool>,
}

/// One `history` request.
#[derive(Debug, Clone, Copy)]
pub struct PageQuery {
    /// Messages after this seq (forward); None pages backward from `before`.
    pub since: Option<u64>,
    /// Messages below this seq (backward); None means the newest.
    pub before: Option<u64>,
    pub limit: usize,
}

/// One `history` answer, oldest first.
pub struct Page {
    pub epoch: u64,
    pub seq: u64,
    pub messages: Vec<Arc<HistoryRecord>>,
    pub has_more: bool,
}

/// The room needs messages from the store (read in this epoch) to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedStore {
    pub epoch: u64,
}

/// The room was retired (dropped from the hub); look it up again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retired;

/// Who a connection is, as the room needs it.
#[derive(Clone)]
pub struct MemberInfo {
    pub conn_id: u64,
    /// The connection id the client saw in `handshake` (what a room admin kicks by).
    pub connection_id: Arc<str>,
    pub user_id: Arc<str>,
    pub email: Option<Arc<str>>,
    pub joined_ms: u64,
    /// The member's rights when it joined (told to it in `room_joined`).
    pub access: crate::authz::Access,
    pub out: Outbound,
}

struct State {
    /// Locking rule: short sections only; no await, no I/O, no other room's lock.
    members: HashMap<u64, MemberInfo>,
    /// Connections per user: presence is keyed by connection, aggregated by user.
    users: HashMap<Arc<str>, u32>,
    seq: u64,
    /// The epoch as clients see it (`protocol::wire_epoch`).
    epoch: u64,
    /// The last published messages, seqs contiguous up to `seq`.
    ring: VecDeque<Entry>,
    recent: RecentIds,
    emptied_at_ms: u64,
    /// Set when the hub drops the room from memory; a join that raced with that retries.
    retired: bool,
}

type RecentKey = (Arc<str>, String);

/// Client message ids accepted within the dedupe window, oldest first.
struct RecentIds {
    acks: HashMap<RecentKey, (String, u64)>,
    order: VecDeque<(u64, RecentKey)>,
    /// Ids accepted before this time (ms) may be missing: the room was loaded then, or
    /// the oldest were evicted to respect the cap.
    complete_from_ms: u64,
}

impl RecentIds {
    fn new(now: u64) -> RecentIds {
        RecentIds {
            acks: HashMap::new(),
            order: VecDeque::new(),
            complete_from_ms: now,
        }
    }

    fn expire(&mut self, now: u64, window: u64) {
        while let Some((at, _)) = self.order.front() {
            if at.saturating_add(window) > now {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.acks.remove(&key);
            }
        }
        // Up to `dedupe_max_entries` each, for the room's life: a burst's peak goes back.
        shrink_if_sparse(&mut self.acks);
        shrink_deque_if_sparse(&mut self.order);
    }

    fn insert(&mut self, key: RecentKey, id: String, seq: u64, now: u64, max: usize) {
        self.acks.insert(key.clone(), (id, seq));
        self.order.push_back((now, key));
        while self.order.len() > max {
            if let Some((at, key)) = self.order.pop_front() {
                self.acks.remove(&key);
                self.complete_from_ms = self.complete_from_ms.max(at.saturating_add(1));
            }
        }
    }
}

/// A live room.
pub struct Room {
    pub id: Arc<str>,
    /// The room's definition and ACL. Locking rule: replaced whole when an operator
    /// changes it; readers clone the `Arc` and let go at once.
    record: RwLock<Arc<RoomRecord>>,
    state: Mutex<State>,
    limits: RoomLimits,
    /// History writer items (appends, resets) handed over and not yet applied; the room
    /// is retired only at 0, so a reload reads the true last seq from the store.
    pending: Arc<AtomicU64>,
}

/// Why a join was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum JoinError {
    Full,
    Retired,
    /// The replay needs stored messages `from..=to` read in `epoch`; read them and
    /// join again.
    NeedStored {
        from: u64,
        to: u64,
        epoch: u64,
    },
}

/// How a member left, which decides the frame the others see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// Asked to leave, or was taken out by the server (kick, lost rights): `user_left`.
    Left,
    Disconnected,
}

/// Which connections a kick takes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KickTarget {
    User(String),
    Connection(String),
    Everyone,
}

impl Room {
    /// A room whose last stored message has sequence `last_seq`.
    pub fn new(record: RoomRecord, last_seq: u64, limits: RoomLimits) -> Room {
        let now = now_ms();
        Room {
            id: record.id.as_str().into(),
            state: Mutex::new(State {
                members: HashMap::new(),
                users: HashMap::new(),
                seq: last_seq,
                epoch: wire_epoch(record.epoch),
                ring: VecDeque::new(),
                recent: RecentIds::new(now),
                emptied_at_ms: now,
                retired: false,
            }),
            record: RwLock::new(Arc::new(record)),
            limits,
            pending: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The room's (epoch, last seq).
    pub fn position(&self) -> (u64, u64) {
        let st = self.lock();
        (st.epoch, st.seq)
    }

    /// The room's limits.
    pub fn limits(&self) -> RoomLimits {
        self.limits
    }

    /// Whether the history writer has items of this room it has not applied yet.
    pub fn has_pending_writes(&self) -> bool {
        self.pending.load(Ordering::Acquire) > 0
    }

    /// The room's current definition.
    pub fn record(&self) -> Arc<RoomRecord> {
        self.record
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the definition after the stored record changed. Members are re-checked
    /// by their own connection tasks (the caller asks them to), not here.
    pub fn set_record(&self, record: RoomRecord) {
        *self.record.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(record);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a connection. Announces `user_joined` to the others when this is the user's
    /// first connection here, and queues `room_joined` to the joiner inside the same
    /// critical section, so it precedes every room frame the joiner will receive. With
    /// `resume`, the messages after `since` follow `room_joined` (also inside the
    /// section, so no live message can come between or before them) when they are all in
    /// the ring or in `resume.stored`; when the ring alone does not reach back and the
    /// store was not read yet (or lagged), nothing changes and `NeedStored` says what to
    /// read.
    pub fn join(
        self: &Arc<Self>,
        _grant: ReadGrant,
        member: MemberInfo,
        resume: Option<&Resume>,
    ) -> Result<Joined, JoinError> {
        let mut st = self.lock();
        if st.retired {
            return Err(JoinError::Retired);
        }
        let present = st.users.contains_key(&member.user_id);
        // Capacity counts distinct users, as the seed does: a second tab always fits.
        if !present && st.users.len() >= self.record().max_participants as usize {
            return Err(JoinError::Full);
        }
        let replay = match resume {
            None => None,
            Some(r) => match plan_replay(&st, r, self.limits.keep) {
                Replay::Frames(frames) => Some(Some(frames)),
                Replay::Lost => Some(None),
                Replay::NeedStored { from, to } => {
                    return Err(JoinError::NeedStored {
                        from,
                        to,
                        epoch: st.epoch,
                    });
                }
            },
        };
        st.members.insert(member.conn_id, member.clone());
        *st.users.entry(member.user_id.clone()).or_insert(0) += 1;
        if !present {
            let show = self.record().show_emails;
            let frame = text_frame(protocol::encode(
                "user_joined",
                &UserPresence {
                    user_id: &member.user_id,
                    email: member.email.as_deref().filter(|_| show),
                    room_id: &self.id,
                },
            ));
            fan_out(&st, &frame, Some(&member.user_id));
        }
        let recovered = replay.as_ref().map(Option::is_some);
        member
            .out
            .send_text(room_joined(&self.id, &st, recovered, member.access));
        for frame in replay.into_iter().flatten().flatten() {
            member.out.send(frame);
        }
        Ok(Joined {
            membership: Membership {
                room: self.clone(),
                conn_id: member.conn_id,
                departure: Departure::Disconnected,
            },
            recovered,
        })
    }

    /// Answers a `join` from a connection that is already a member: `room_joined` with
    /// the current epoch and seq, queued under the lock so every message up to that seq
    /// is already ahead of it in the queue (hence `recovered: true` when `since` was
    /// given: the connection missed nothing).
    pub fn rejoined(&self, out: &Outbound, since_given: bool, access: crate::authz::Access) {
        let st = self.lock();
        out.send_text(room_joined(
            &self.id,
            &st,
            since_given.then_some(true),
            access,
        ));
    }

    /// Looks a client message id up among those accepted within the dedupe window.
    pub fn recent(&self, user_id: &str, client_msg_id: &str) -> Recent {
        let now = now_ms();
        let window = self.limits.dedupe_window_ms;
        let mut st = self.lock();
        st.recent.expire(now, window);
        let key: RecentKey = (user_id.into(), client_msg_id.to_string());
        match st.recent.acks.get(&key) {
            Some((id, seq)) => Recent::Seen(Posted {
                id: id.clone(),
                seq: *seq,
                epoch: st.epoch,
                duplicate: true,
                recipients: 0,
                backlogged: false,
            }),
            None => Recent::Unseen {
                certain: st.recent.complete_from_ms.saturating_add(window) <= now,
            },
        }
    }

    /// Assigns the next seq, sends the frame (serialised once, finished here by splicing
    /// in seq and epoch) to every member in sequence order, keeps it in the ring, and
    /// queues the record for the history writer in the reserved `slot`, all under the
    /// lock. A client message id already accepted here is a duplicate: nothing is sent
    /// or stored and the original's id and seq come back.
    pub fn publish(
        &self,
        _grant: WriteGrant,
        msg: Outgoing,
        slot: HistorySlot,
    ) -> Result<Posted, Retired> {
        let now = now_ms();
        let mut st = self.lock();
        if st.retired {
            return Err(Retired);
        }
        let Outgoing { mut record, body } = msg;
        let key = record
            .client_msg_id
            .as_ref()
            .map(|c| -> RecentKey { (record.user_id.as_str().into(), c.clone()) });
        if let Some(key) = &key {
            st.recent.expire(now, self.limits.dedupe_window_ms);
            if let Some((id, seq)) = st.recent.acks.get(key) {
                return Ok(Posted {
                    id: id.clone(),
                    seq: *seq,
                    epoch: st.epoch,
                    duplicate: true,
                    recipients: 0,
                    backlogged: false,
                });
            }
        }
        st.seq += 1;
        let (seq, epoch) = (st.seq, st.epoch);
        record.seq = seq;
        let record = Arc::new(record);
        let frame = text_frame(protocol::splice_message(&body, seq, epoch));
        let backlogged = fan_out(&st, &frame, None);
        if self.limits.ring > 0 {
            if st.ring.len() >= self.limits.ring {
                st.ring.pop_front();
            }
            st.ring.push_back(Entry {
                record: record.clone(),
                frame,
            });
        }
        if let Some(key) = key {
            let max = self.limits.dedupe_max;
            st.recent.insert(key, record.id.clone(), seq, now, max);
        }
        let id = record.id.clone();
        self.pending.fetch_add(1, Ordering::AcqRel);
        slot.append(record, self.limits.keep, self.pending.clone());
        Ok(Posted {
            id,
            seq,
            epoch,
            duplicate: false,
            recipients: st.members.len(),
            backlogged,
        })
    }

    /// One page of history from the ring and `stored` (what the caller read from the
    /// store for this query, with the epoch it was read in). `NeedStore` when the ring
    /// alone cannot answer and nothing (or something from another epoch) was read, or
    /// when what was read stops short of the ring (the writer lags) and this is not the
    /// `last_try`, after which such a hole is left out.
    pub fn page(
        &self,
        q: &PageQuery,
        stored: Option<(&[Arc<HistoryRecord>], u64)>,
        last_try: bool,
    ) -> Result<Page, NeedStore> {
        let st = self.lock();
        let need = NeedStore { epoch: st.epoch };
        let stored = match stored {
            Some((s, epoch)) if epoch == st.epoch => Some(s),
            Some(_) => return Err(need),
            None => None,
        };
        let ring_first = st.ring.front().map_or(st.seq + 1, |e| e.record.seq);
        // Retention by count applies to answers at once, even while the writer has not
        // trimmed the store yet.
        let floor = st.seq.saturating_sub(self.limits.keep);
        let stored = stored.map(|s| {
            let cut = s.partition_point(|r| r.seq <= floor);
            &s[cut..]
        });
        let ring_from = |after: u64| {
            st.ring
                .iter()
                .filter(move |e| e.record.seq > after)
                .map(|e| e.record.clone())
        };
        let limit = q.limit.max(1);
        let (messages, has_more) = match q.since {
            Some(since) => {
                let mut out: Vec<Arc<HistoryRecord>>;
                if since >= st.seq {
                    out = Vec::new();
                } else if since + 1 >= ring_first {
                    out = ring_from(since).take(limit).collect();
                } else {
                    let stored = stored.ok_or(need)?;
                    out = stored
                        .iter()
                        .filter(|r| r.seq > since)
                        .take(limit)
                        .cloned()
                        .collect();
                    if out.len() < limit {
                        let top = out.last().map_or(since, |r| r.seq);
                        if top + 1 < ring_first && !last_try {
                            return Err(need);
                        }
                        let more = limit - out.len();
                        out.extend(ring_from(top).take(more));
                    }
                }
                let more = out.last().is_some_and(|r| r.seq < st.seq);
                (out, more)
            }
            None => {
                let before = q.before.unwrap_or(u64::MAX).min(st.seq + 1);
                let ring: Vec<Arc<HistoryRecord>> = st
                    .ring
                    .iter()
                    .filter(|e| e.record.seq < before)
                    .map(|e| e.record.clone())
                    .collect();
                let mut all = if ring.len() > limit || ring_first <= 1 || before <= 1 {
                    ring
                } else {
                    let stored = stored.ok_or(need)?;
                    let top = before.min(ring_first);
                    let mut lower: Vec<Arc<HistoryRecord>> =
                        stored.iter().filter(|r| r.seq < top).cloned().collect();
                    let reached = lower.last().map_or(0, |r| r.seq);
                    if reached + 1 < top && !last_try {
                        return Err(need);
                    }
                    lower.extend(ring);
                    lower
                };
                let more = all.len() > limit;
                if more {
                    all.drain(..all.len() - limit);
                }
                (all, more)
            }
        };
        Ok(Page {
            epoch: st.epoch,
            seq: st.seq,
            messages,
            has_more,
        })
    }

    /// Starts a new history: the new epoch from `record`, seq 0, an empty ring and no
    /// remembered client ids; the writer deletes the stored history in queue order (so
    /// after every message published before, and before every one published after).
    /// False when the room was retired meanwhile.
    pub fn reset(&self, record: RoomRecord, slot: HistorySlot) -> bool {
        let now = now_ms();
        let mut st = self.lock();
        if st.retired {
            return false;
        }
        st.epoch = wire_epoch(record.epoch);
        st.seq = 0;
        st.ring.clear();
        st.recent = RecentIds::new(0);
        st.recent.complete_from_ms = now.saturating_sub(self.limits.dedupe_window_ms);
        self.pending.fetch_add(1, Ordering::AcqRel);
        slot.reset(self.id.clone(), self.pending.clone());
        *self.record.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(record);
        true
    }

    /// Drops ring entries older than `cutoff_ms` (retention by age).
    pub fn prune_before(&self, cutoff_ms: u64) {
        let mut st = self.lock();
        while st
            .ring
            .front()
            .is_some_and(|e| e.record.timestamp < cutoff_ms)
        {
            st.ring.pop_front();
        }
    }

    fn remove(&self, conn_id: u64, departure: Departure) {
        let mut st = self.lock();
        self.remove_locked(&mut st, conn_id, departure);
    }

    /// Takes matching connections out of the room: each gets `room_left {roomId,
    /// reason}` and the others see `user_left` for every user with no connection left.
    /// The connections' own `Membership` guards become no-ops; they notice on their next
    /// re-check (which the caller requests). Returns how many connections went.
    pub fn kick(&self, target: &KickTarget, reason: &str) -> usize {
        let mut st = self.lock();
        let ids: Vec<u64> = st
            .members
            .values()
            .filter(|m| match target {
                KickTarget::User(u) => *m.user_id == **u,
                KickTarget::Connection(c) => *m.connection_id == **c,
                KickTarget::Everyone => true,
            })
            .map(|m| m.conn_id)
            .collect();
        let frame = protocol::encode(
            "room_left",
            &RoomLeft {
                room_id: &self.id,
                reason: Some(reason),
            },
        );
        for id in &ids {
            if let Some(m) = st.members.get(id) {
                m.out.send_text(frame.clone());
                m.out.recheck();
            }
            self.remove_locked(&mut st, *id, Departure::Left);
        }
        ids.len()
    }

    /// Whether the connection is (still) a member: a kick may have taken it out.
    pub fn has_member(&self, conn_id: u64) -> bool {
        self.lock().members.contains_key(&conn_id)
    }

    /// Asks every member's connection to re-evaluate its rights here.
    pub fn recheck_members(&self) {
        for m in self.lock().members.values() {
            m.out.recheck();
        }
    }

    /// The members aggregated by user, earliest joiners first. Emails only when the
    /// room's policy shows them.
    pub fn presence(&self) -> Vec<PresenceMember> {
        let show = self.record().show_emails;
        let st = self.lock();
        let mut by_user: HashMap<&str, PresenceMember> = HashMap::new();
        for m in st.members.values() {
            let e = by_user.entry(&m.user_id).or_insert_with(|| PresenceMember {
                user_id: m.user_id.to_string(),
                email: None,
                connections: 0,
                joined_at: m.joined_ms,
            });
            e.connections += 1;
            e.joined_at = e.joined_at.min(m.joined_ms);
            if show && e.email.is_none() {
                e.email = m.email.as_deref().map(str::to_string);
            }
        }
        let mut out: Vec<PresenceMember> = by_user.into_values().collect();
        drop(st);
        out.sort_by(|a, b| (a.joined_at, &a.user_id).cmp(&(b.joined_at, &b.user_id)));
        out
    }

    fn remove_locked(&self, st: &mut State, conn_id: u64, departure: Departure) {
        let Some(member) = st.members.remove(&conn_id) else {
            return;
        };
        shrink_if_sparse(&mut st.members);
        let last = match st.users.get_mut(&member.user_id) {
            Some(conns) if *conns > 1 => {
                *conns -= 1;
                false
            }
            _ => {
                st.users.remove(&member.user_id);
                shrink_if_sparse(&mut st.users);
                true
            }
        };
        if last {
            let kind = match departure {
                Departure::Left => "user_left",
                Departure::Disconnected => "user_disconnected",
            };
            let show = self.record().show_emails;
            let frame = text_frame(protocol::encode(
                kind,
                &UserPresence {
                    user_id: &member.user_id,
                    email: member.email.as_deref().filter(|_| show),
                    room_id: &self.id,
                },
            ));
            fan_out(st, &frame, None);
        }
        if st.members.is_empty() {
            st.emptied_at_ms = now_ms();
        }
    }

    /// Distinct user ids in the room.
    pub fn participants(&self) -> Vec<String> {
        self.lock().users.keys().map(|u| u.to_string()).collect()
    }

    /// Distinct users in the room.
    pub fn user_count(&self) -> usize {
        self.lock().users.len()
    }

    /// Connections in the room.
    pub fn member_count(&self) -> usize {
        self.lock().members.len()
    }

    /// Retires the room if it has been empty since before `cutoff_ms` and the history
    /// writer has applied everything it published; returns whether it did.
    pub(super) fn retire_if_idle(&self, cutoff_ms: u64) -> bool {
        let mut st = self.lock();
        if st.members.is_empty()
            && st.emptied_at_ms <= cutoff_ms
            && self.pending.load(Ordering::Acquire) == 0
        {
            st.retired = true;
            true
        } else {
            false
        }
    }

    /// When the room last became empty (ms), or None while it has members.
    pub fn emptied_at(&self) -> Option<u64> {
        let st = self.lock();
        st.members.is_empty().then_some(st.emptied_at_ms)
    }
}

fn room_joined(
    room_id: &str,
    st: &State,
    recovered: Option<bool>,
    access: crate::authz::Access,
) -> String {
    protocol::encode(
        "room_joined",
        &RoomJoined {
            room_id,
            participants: st.users.keys().map(|u| u.to_string()).collect(),
            epoch: st.epoch,
            seq: st.seq,
            recovered,
            permissions: protocol::RoomRights {
                read: access.read,
                write: access.write,
                admin: access.admin,
            },
        },
    )
}

enum Replay {
    Frames(Vec<Frame>),
    Lost,
    NeedStored { from: u64, to: u64 },
}

/// Which messages a rejoin with `since` gets: those after `since` from `r.stored` up to
/// where the ring starts, then the ring, provided the seqs run without a hole;
/// otherwise lost (another epoch, a gap too long, trimmed or failed writes) or, when the
/// store was not read or stopped short of the ring, a request to read it.
fn plan_replay(st: &State, r: &Resume, keep: u64) -> Replay {
    if r.epoch.is_some_and(|e| e != st.epoch)
        || r.since > st.seq
        || st.seq - r.since > r.max
        || st.seq - r.since > keep
    {
        return Replay::Lost;
    }
    let from = r.since + 1;
    let ring_first = st.ring.front().map_or(st.seq + 1, |e| e.record.seq);
    let mut frames = Vec::new();
    let mut next = from;
    if from < ring_first {
        if r.stored_epoch != Some(st.epoch) {
            return Replay::NeedStored {
                from,
                to: ring_first - 1,
            };
        }
        for e in &r.stored {
            let seq = e.record.seq;
            if seq < next {
                continue;
            }
            if seq > next || next >= ring_first {
                break;
            }
            frames.push(e.frame.clone());
            next += 1;
        }
        if next < ring_first {
            let hole = r
                .stored
                .iter()
                .any(|e| e.record.seq > next && e.record.seq < ring_first);
            if hole || r.last_try {
                return Replay::Lost;
            }
            return Replay::NeedStored {
                from,
                to: ring_first - 1,
            };
        }
    }
    frames.extend(
        st.ring
            .iter()
            .filter(|e| e.record.seq >= next)
            .map(|e| e.frame.clone()),
    );
    Replay::Frames(frames)
}

/// Queues `frame` to every member (but `except_user`'s connections); returns whether
/// some member's queue is now more than half full.
fn fan_out(st: &State, frame: &Frame, except_user: Option<&Arc<str>>) -> bool {
    let mut backlogged = false;
    for m in st.members.values() {
        if except_user.is_some_and(|u| *u == m.user_id) {
            continue;
        }
        // The frame was serialised once; each member's queue gets a pointer to it.
        m.out.send(frame.clone());
        backlogged |= m.out.backlogged();
    }
    backlogged
}

/// A connection's place in a room. Dropping it leaves the room and tells the others,
/// so errors, panics and shutdown clean up the same way.
pub struct Membership {
    room: Arc<Room>,
    conn_id: u64,
    departure: Departure,
}

impl Membership {
    /// The room.
    pub fn room(&self) -> &Arc<Room> {
        &self.room
    }

    /// Leaves on request: the others see `user_left` rather than `user_disconnected`.
    pub fn leave(mut self) {
        self.departure = Departure::Left;
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.room.remove(self.conn_id, self.departure);
    }
}
