//! The hub: live rooms and live connections. It owns who is where and fans frames out
//! through each member's bounded queue; a broadcast reaches a room's members through the
//! room's own index, never a scan of all connections. The hub reads the store only to
//! load or create a room, and never while holding a lock (lock order: the hub's room map,
//! then one room; never the reverse). It never writes history or events itself: a room
//! hands each message to the history writer through a queue slot reserved before its
//! lock, so the writer sees a room's messages in seq order.

pub mod outbound;
pub mod registry;
pub mod room;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub use outbound::{Control, Frame, Inbox, Outbound, Request, text_frame};
pub use registry::{Admission, Registration, Registry};
pub use room::{
    Departure, Entry, JoinError, Joined, KickTarget, MemberInfo, Membership, NeedStore, Outgoing,
    Page, PageQuery, Posted, Recent, Resume, Retired, Room, RoomLimits,
};

use crate::config::RoomsConfig;
use crate::protocol::now_ms;
use crate::store::{RoomRecord, Store, StoreError};

/// Live rooms.
pub struct Hub {
    /// Locking rule: lookups and inserts only; never held across a store call or an await.
    rooms: Mutex<HashMap<Arc<str>, Arc<Room>>>,
    store: Store,
    cfg: RoomsConfig,
}

/// Result of looking a room up for a join.
pub enum Lookup {
    Found(Arc<Room>),
    NotFound,
}

impl Hub {
    pub fn new(store: Store, cfg: RoomsConfig) -> Hub {
        Hub {
            rooms: Mutex::new(HashMap::new()),
            store,
            cfg,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Room>>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A live room, if loaded.
    pub fn get(&self, id: &str) -> Option<Arc<Room>> {
        self.lock().get(id).cloned()
    }

    /// Finds a room in memory or the store, creating it when `create` allows (the seed's
    /// `getOrCreateRoom`).
    pub fn load(&self, id: &str, create: bool) -> Result<Lookup, StoreError> {
        if let Some(room) = self.get(id) {
            return Ok(Lookup::Found(room));
        }
        let record = match self.store.room(id)? {
            Some(r) => r,
            None if create => {
                let now = now_ms();
                self.store.create_room_if_absent(&RoomRecord {
                    id: id.to_string(),
                    name: format!("Room {id}"),
                    kind: self.cfg.default_type.clone(),
                    read: self.cfg.default_read.clone(),
                    write: self.cfg.default_write.clone(),
                    admin: self.cfg.default_admin.clone(),
                    max_participants: self.cfg.max_participants,
                    auto_created: true,
                    created_ms: now,
                    last_active_ms: now,
                    epoch: crate::store::new_epoch(),
                    show_emails: self.cfg.show_emails,
                    user_grants: Vec::new(),
                    bans: Vec::new(),
                })?
            }
            None => return Ok(Lookup::NotFound),
        };
        let last_seq = self.store.last_seq(id)?;
        let limits = self.limits(&record.kind);
        let room = Arc::new(Room::new(record, last_seq, limits));
        let mut rooms = self.lock();
        // Another task may have loaded it meanwhile; the first one in wins.
        let room = rooms.entry(room.id.clone()).or_insert(room).clone();
        Ok(Lookup::Found(room))
    }

    /// The limits of a room of type `kind`.
    pub fn limits(&self, kind: &str) -> RoomLimits {
        let keep = self.cfg.keep(kind);
        RoomLimits {
            ring: (self.cfg.recovery_buffer as u64).min(keep) as usize,
            keep,
            dedupe_window_ms: self.cfg.dedupe_window_secs.saturating_mul(1000),
            dedupe_max: self.cfg.dedupe_max_entries,
        }
    }

    /// Every live room.
    pub fn rooms(&self) -> Vec<Arc<Room>> {
        self.lock().values().cloned().collect()
    }

    /// Drops a room from memory (after its record changed in the store, or it was deleted).
    pub fn forget(&self, id: &str) -> bool {
        let mut rooms = self.lock();
        match rooms.get(id) {
            Some(room) if room.retire_if_idle(u64::MAX) => {
                rooms.remove(id);
                crate::maps::shrink_if_sparse(&mut rooms);
                true
            }
            _ => false,
        }
    }

    /// Unloads rooms empty since before `cutoff_ms`. Only call when no history write is
    /// pending, so a reload reads the true last seq. Returns the ids unloaded with their
    /// emptied-at times.
    pub fn unload_idle(&self, cutoff_ms: u64) -> Vec<(RoomRecord, u64)> {
        let mut rooms = self.lock();
        let mut out = Vec::new();
        rooms.retain(|_, room| {
            let emptied = room.emptied_at();
            if room.retire_if_idle(cutoff_ms) {
                out.push(((*room.record()).clone(), emptied.unwrap_or(cutoff_ms)));
                false
            } else {
                true
            }
        });
        crate::maps::shrink_if_sparse(&mut rooms);
        out
    }

    /// (live rooms, participants summed over rooms).
    pub fn counts(&self) -> (usize, usize) {
        let rooms: Vec<Arc<Room>> = self.lock().values().cloned().collect();
        let participants = rooms.iter().map(|r| r.user_count()).sum();
        (rooms.len(), participants)
    }
}
