//! Room records (the seed's `room:<id>` snapshot without its participant set: who is in a
//! room is live state owned by the hub, not a durable fact). Key: the room id.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, codec};

/// A room's durable definition (schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRecord {
    pub id: String,
    pub name: String,
    /// chat, document, collaboration or notification.
    pub kind: String,
    /// Roles that may read (join), write (send) and administer the room.
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub admin: Vec<String>,
    pub max_participants: u32,
    /// Created by a join rather than by an operator; only these expire.
    pub auto_created: bool,
    pub created_ms: u64,
    /// Last time the room emptied; the expiry clock for auto-created rooms.
    pub last_active_ms: u64,
    /// Names this room's history; a new epoch means earlier sequence numbers are void
    /// (history deleted or reset), so a client's `since` from another epoch recovers nothing.
    pub epoch: u64,
    /// Whether presence and join/leave announcements show members' emails.
    pub show_emails: bool,
    /// Rights given to single users on top of their roles.
    pub user_grants: Vec<RoomUserGrant>,
    /// Users refused everything here, whatever their roles or grants.
    pub bans: Vec<String>,
}

/// Rights one user has in one room regardless of roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomUserGrant {
    pub user_id: String,
    pub read: bool,
    pub write: bool,
    pub admin: bool,
}

/// The schema-1 shape, read only by the migration to schema 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RoomRecordV1 {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub admin: Vec<String>,
    pub max_participants: u32,
    pub auto_created: bool,
    pub created_ms: u64,
    pub last_active_ms: u64,
}

impl RoomRecordV1 {
    pub(super) fn upgrade(self, epoch: u64, show_emails: bool) -> RoomRecord {
        RoomRecord {
            id: self.id,
            name: self.name,
            kind: self.kind,
            read: self.read,
            write: self.write,
            admin: self.admin,
            max_participants: self.max_participants,
            auto_created: self.auto_created,
            created_ms: self.created_ms,
            last_active_ms: self.last_active_ms,
            epoch,
            show_emails,
            user_grants: Vec::new(),
            bans: Vec::new(),
        }
    }
}

/// A fresh random epoch: never 0 (which clients may use for "none"), and below 2^53 so
/// a JavaScript client keeps it exactly.
pub fn new_epoch() -> u64 {
    (rand::random::<u64>() >> 11).max(1)
}

impl Store {
    /// Reads a room.
    pub fn room(&self, id: &str) -> Result<Option<RoomRecord>, StoreError> {
        self.rooms
            .get(id.as_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// Writes or replaces a room.
    pub fn put_room(&self, r: &RoomRecord) -> Result<(), StoreError> {
        self.rooms.insert(r.id.as_bytes(), codec::encode(r)?)?;
        Ok(())
    }

    /// Creates a room unless one with that id exists; returns the stored room either way.
    pub fn create_room_if_absent(&self, r: &RoomRecord) -> Result<RoomRecord, StoreError> {
        let bytes = codec::encode(r)?;
        match self
            .rooms
            .compare_and_swap(r.id.as_bytes(), None as Option<&[u8]>, Some(bytes))?
        {
            Ok(()) => Ok(r.clone()),
            Err(cas) => match cas.current {
                Some(v) => codec::decode(&v),
                None => Ok(r.clone()),
            },
        }
    }

    /// Applies `change` to a stored room atomically (retried if another writer got in
    /// first); returns the new record, or None when the room does not exist. `change`
    /// may run more than once and must have no side effects.
    pub fn update_room(
        &self,
        id: &str,
        mut change: impl FnMut(&mut RoomRecord),
    ) -> Result<Option<RoomRecord>, StoreError> {
        loop {
            let Some(old) = self.rooms.get(id.as_bytes())? else {
                return Ok(None);
            };
            let mut room: RoomRecord = codec::decode(&old)?;
            change(&mut room);
            let new = codec::encode(&room)?;
            if self
                .rooms
                .compare_and_swap(id.as_bytes(), Some(old), Some(new))?
                .is_ok()
            {
                return Ok(Some(room));
            }
        }
    }

    /// Deletes a room, its history and its client message ids; returns how many history
    /// entries went.
    pub fn delete_room_and_history(&self, id: &str) -> Result<usize, StoreError> {
        self.rooms.remove(id.as_bytes())?;
        self.delete_history(id)
    }

    /// Every room.
    pub fn rooms(&self) -> Result<Vec<RoomRecord>, StoreError> {
        self.rooms
            .iter()
            .values()
            .map(|v| codec::decode(&v?))
            .collect()
    }

    /// Every readable room; unreadable records are logged and skipped, so one bad record
    /// cannot stop maintenance of the others.
    pub fn rooms_lossy(&self) -> Vec<RoomRecord> {
        let mut out = Vec::new();
        for item in self.rooms.iter() {
            match item
                .map_err(StoreError::from)
                .and_then(|(_, v)| codec::decode(&v))
            {
                Ok(r) => out.push(r),
                Err(e) => tracing::error!(error = %e, "skipping an unreadable room record"),
            }
        }
        out
    }

    /// Number of rooms stored.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }
}
