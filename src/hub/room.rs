//! One live room: its policy, its members keyed by connection, its users aggregated
//! from those connections, and its message sequence. Everything that changes who is in
//! the room or what they receive happens under the room's one lock, so sequence order,
//! membership and fan-out order agree. The lock is never held across an await or a
//! store call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio_tungstenite::tungstenite::Message;

use super::outbound::Outbound;
use crate::authz::{ReadGrant, WriteGrant};
use crate::protocol::{self, PresenceMember, RoomJoined, RoomLeft, UserPresence, now_ms};
use crate::store::RoomRecord;

/// Who a connection is, as the room needs it.
#[derive(Clone)]
pub struct MemberInfo {
    pub conn_id: u64,
    /// The connection id the client saw in `handshake` (what a room admin kicks by).
    pub connection_id: Arc<str>,
    pub user_id: Arc<str>,
    pub email: Option<Arc<str>>,
    pub joined_ms: u64,
    pub out: Outbound,
}

struct State {
    /// Locking rule: short sections only; no await, no I/O, no other room's lock.
    members: HashMap<u64, MemberInfo>,
    /// Connections per user: presence is keyed by connection, aggregated by user.
    users: HashMap<Arc<str>, u32>,
    seq: u64,
    emptied_at_ms: u64,
    /// Set when the hub drops the room from memory; a join that raced with that retries.
    retired: bool,
}

/// A live room.
pub struct Room {
    pub id: Arc<str>,
    /// The room's definition and ACL. Locking rule: replaced whole when an operator
    /// changes it; readers clone the `Arc` and let go at once.
    record: RwLock<Arc<RoomRecord>>,
    state: Mutex<State>,
}

/// Why a join was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum JoinError {
    Full,
    Retired,
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
    pub fn new(record: RoomRecord, last_seq: u64) -> Room {
        Room {
            id: record.id.as_str().into(),
            state: Mutex::new(State {
                members: HashMap::new(),
                users: HashMap::new(),
                seq: last_seq,
                emptied_at_ms: now_ms(),
                retired: false,
            }),
            record: RwLock::new(Arc::new(record)),
        }
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
    /// critical section, so it precedes every room frame the joiner will receive.
    pub fn join(
        self: &Arc<Self>,
        _grant: ReadGrant,
        member: MemberInfo,
    ) -> Result<Membership, JoinError> {
        let mut st = self.lock();
        if st.retired {
            return Err(JoinError::Retired);
        }
        let present = st.users.contains_key(&member.user_id);
        // Capacity counts distinct users, as the seed does: a second tab always fits.
        if !present && st.users.len() >= self.record().max_participants as usize {
            return Err(JoinError::Full);
        }
        st.members.insert(member.conn_id, member.clone());
        *st.users.entry(member.user_id.clone()).or_insert(0) += 1;
        if !present {
            let show = self.record().show_emails;
            let frame = Message::text(protocol::encode(
                "user_joined",
                &UserPresence {
                    user_id: &member.user_id,
                    email: member.email.as_deref().filter(|_| show),
                    room_id: &self.id,
                },
            ));
            fan_out(&st, &frame, Some(&member.user_id));
        }
        let participants = st.users.keys().map(|u| u.to_string()).collect();
        member.out.send_text(protocol::encode(
            "room_joined",
            &RoomJoined {
                room_id: &self.id,
                participants,
            },
        ));
        Ok(Membership {
            room: self.clone(),
            conn_id: member.conn_id,
            departure: Departure::Disconnected,
        })
    }

    /// Sends a pre-serialised frame to every member, in sequence order; returns its seq.
    pub fn publish(&self, _grant: WriteGrant, frame: &Message) -> u64 {
        let mut st = self.lock();
        st.seq += 1;
        fan_out(&st, frame, None);
        st.seq
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
        let last = match st.users.get_mut(&member.user_id) {
            Some(conns) if *conns > 1 => {
                *conns -= 1;
                false
            }
            _ => {
                st.users.remove(&member.user_id);
                true
            }
        };
        if last {
            let kind = match departure {
                Departure::Left => "user_left",
                Departure::Disconnected => "user_disconnected",
            };
            let show = self.record().show_emails;
            let frame = Message::text(protocol::encode(
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

    /// Retires the room if it has been empty since before `cutoff_ms`; returns whether it did.
    pub(super) fn retire_if_idle(&self, cutoff_ms: u64) -> bool {
        let mut st = self.lock();
        if st.members.is_empty() && st.emptied_at_ms <= cutoff_ms {
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

fn fan_out(st: &State, frame: &Message, except_user: Option<&Arc<str>>) {
    for m in st.members.values() {
        if except_user.is_some_and(|u| *u == m.user_id) {
            continue;
        }
        // A clone of a text Message shares its bytes; the frame was serialised once.
        m.out.send(frame.clone());
    }
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
