//! Room records (the seed's `room:<id>` snapshot without its participant set: who is in a
//! room is live state owned by the hub, not a durable fact). Key: the room id.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, codec};

/// A room's durable definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRecord {
    pub id: String,
    pub name: String,
    /// chat, document, collaboration or notification.
    pub kind: String,
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub admin: Vec<String>,
    pub max_participants: u32,
    /// Created by a join rather than by an operator; only these expire.
    pub auto_created: bool,
    pub created_ms: u64,
    /// Last time the room emptied; the expiry clock for auto-created rooms.
    pub last_active_ms: u64,
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

    /// Deletes a room and its history; returns how many history entries went.
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
