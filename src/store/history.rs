//! Room message history (the seed's `room_messages:<id>` list). Key: room id ++ 0xFF ++
//! seq (u64 BE); room ids are ASCII, so 0xFF never occurs inside one and a prefix scan
//! of `id ++ 0xFF` is exactly that room. The hub assigns `seq` in broadcast order, so
//! key order is broadcast order.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, codec};

/// One stored chat message (schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub room_id: String,
    pub seq: u64,
    pub id: String,
    pub content: String,
    pub user_id: String,
    pub email: Option<String>,
    pub timestamp: u64,
    /// The sender's idempotency key, when it gave one.
    pub client_msg_id: Option<String>,
    /// Published by an application through the API rather than sent by a user.
    pub system: bool,
}

/// The schema-1 shape, read only by the migration to schema 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct HistoryRecordV1 {
    pub room_id: String,
    pub seq: u64,
    pub id: String,
    pub content: String,
    pub user_id: String,
    pub email: Option<String>,
    pub timestamp: u64,
}

impl HistoryRecordV1 {
    pub(super) fn upgrade(self) -> HistoryRecord {
        HistoryRecord {
            room_id: self.room_id,
            seq: self.seq,
            id: self.id,
            content: self.content,
            user_id: self.user_id,
            email: self.email,
            timestamp: self.timestamp,
            client_msg_id: None,
            system: false,
        }
    }
}

fn prefix(room_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(room_id.len() + 9);
    k.extend_from_slice(room_id.as_bytes());
    k.push(0xFF);
    k
}

fn key(room_id: &str, seq: u64) -> Vec<u8> {
    let mut k = prefix(room_id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl Store {
    /// Appends a batch of messages and trims each touched room to its last `keep`
    /// messages, in one sled batch.
    pub fn append_history(&self, records: &[HistoryRecord], keep: u64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for r in records {
            batch.insert(key(&r.room_id, r.seq), codec::encode(r)?);
        }
        self.history.apply_batch(batch)?;
        let mut rooms: Vec<(&str, u64)> = Vec::new();
        for r in records {
            match rooms.iter_mut().find(|(id, _)| *id == r.room_id) {
                Some(entry) => entry.1 = entry.1.max(r.seq),
                None => rooms.push((&r.room_id, r.seq)),
            }
        }
        for (room, top) in rooms {
            if top > keep {
                let cut = top - keep; // keep seqs cut+1..=top
                for old in self.history.range(key(room, 0)..key(room, cut + 1)).keys() {
                    self.history.remove(old?)?;
                }
            }
        }
        Ok(())
    }

    /// The highest seq stored for a room (0 when it has none).
    pub fn last_seq(&self, room_id: &str) -> Result<u64, StoreError> {
        match self.history.scan_prefix(prefix(room_id)).next_back() {
            Some(item) => {
                let (_, v) = item?;
                Ok(codec::decode::<HistoryRecord>(&v)?.seq)
            }
            None => Ok(0),
        }
    }

    /// Deletes a room's whole history; returns how many entries went.
    pub fn delete_history(&self, room_id: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        for k in self.history.scan_prefix(prefix(room_id)).keys() {
            self.history.remove(k?)?;
            n += 1;
        }
        Ok(n)
    }

    /// The room's stored messages, oldest first.
    pub fn history(&self, room_id: &str) -> Result<Vec<HistoryRecord>, StoreError> {
        self.history
            .scan_prefix(prefix(room_id))
            .values()
            .map(|v| codec::decode(&v?))
            .collect()
    }
}
