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
use crate::protocol::{self, RoomJoined, UserPresence, now_ms};
use crate::store::RoomRecord;

/// Who a connection is, as the room needs it.
#[derive(Clone)]
pub struct MemberInfo {
    pub conn_id: u64,
    pub user_id: Arc<str>,
    pub email: Option<Arc<str>>,
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
    Left,
    Disconnected,
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
            let frame = Message::text(protocol::encode(
                "user_joined",
                &UserPresence {
                    user_id: &member.user_id,
                    email: member.email.as_deref(),
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
            let frame = Message::text(protocol::encode(
                kind,
                &UserPresence {
                    user_id: &member.user_id,
                    email: member.email.as_deref(),
                    room_id: &self.id,
                },
            ));
            fan_out(&st, &frame, None);
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
