//! Room message history (the seed's `room_messages:<id>` list). Key: room id ++ 0xFF ++
//! seq (u64 BE); room ids are ASCII, so 0xFF never occurs inside one and a prefix scan
//! of `id ++ 0xFF` is exactly that room. The hub assigns `seq` in broadcast order, so
//! key order is broadcast order.

use serde::{Deserialize, Serialize};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::client_msgs::{self, ClientMsgAck};
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
    /// Appends messages and trims each touched room to its last `keep` messages (the
    /// `u64` beside each record, from its room type's retention). Records with a
    /// `client_msg_id` also remember it in `roomid_userid_clientmsgid_ack`, in the same
    /// transaction as the message, so a resend after a crash finds it exactly when the
    /// message itself survived.
    pub fn append_history(&self, records: &[(&HistoryRecord, u64)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut acks = sled::Batch::default();
        let mut any_ack = false;
        for (r, _) in records {
            if let Some(cmid) = &r.client_msg_id {
                let ack = ClientMsgAck {
                    id: r.id.clone(),
                    seq: r.seq,
                    at_ms: r.timestamp,
                };
                acks.insert(
                    client_msgs::key(&r.room_id, &r.user_id, cmid),
                    codec::encode(&ack)?,
                );
                any_ack = true;
            }
        }
        if any_ack {
            for (r, _) in records {
                batch.insert(key(&r.room_id, r.seq), codec::encode(*r)?);
            }
            (&self.history, &self.client_msgs)
                .transaction(|(h, c)| {
                    h.apply_batch(&batch)?;
                    c.apply_batch(&acks)?;
                    Ok::<(), ConflictableTransactionError<()>>(())
                })
                .map_err(|e| match e {
                    TransactionError::Storage(e) => StoreError::Sled(e),
                    TransactionError::Abort(()) => {
                        StoreError::Codec("history transaction aborted".into())
                    }
                })?;
        } else {
            // Plain inserts, in seq order: a `sled::Batch` buys nothing here (sled keeps
            // a prefix of its log after a crash, so a room's history stays gapless), and
            // sled 0.34 seals and writes its log buffer for every batch (two thread
            // hand-offs and a `sync_file_range` per message at low rates: 64% of the
            // server's CPU in the `echo-latency` benchmark). The transaction above is
            // kept where a client message id must land atomically with its message.
            for (r, _) in records {
                self.history
                    .insert(key(&r.room_id, r.seq), codec::encode(*r)?)?;
            }
        }
        let mut rooms: Vec<(&str, u64, u64)> = Vec::new();
        for (r, keep) in records {
            match rooms.iter_mut().find(|(id, _, _)| *id == r.room_id) {
                Some(entry) => {
                    entry.1 = entry.1.max(r.seq);
                    entry.2 = *keep;
                }
                None => rooms.push((&r.room_id, r.seq, *keep)),
            }
        }
        for (room, top, keep) in rooms {
            if top > keep {
                let cut = top - keep; // keep seqs cut+1..=top
                for old in self.history.range(key(room, 0)..key(room, cut + 1)).keys() {
                    self.history.remove(old?)?;
                }
            }
        }
        Ok(())
    }

    /// The highest seq a room has used in its current epoch (0 when it has none): the
    /// newest stored message, or the mark left when age trimming emptied its history.
    pub fn last_seq(&self, room_id: &str) -> Result<u64, StoreError> {
        let stored = match self.history.scan_prefix(prefix(room_id)).next_back() {
            Some(item) => {
                let (_, v) = item?;
                codec::decode::<HistoryRecord>(&v)?.seq
            }
            None => 0,
        };
        let mark = self
            .last_seqs
            .get(room_id.as_bytes())?
            .and_then(|v| super::u64_from(&v))
            .unwrap_or(0);
        Ok(stored.max(mark))
    }

    /// Deletes a room's whole history and its remembered client message ids (a reset:
    /// the room starts a new epoch at seq 0); returns how many messages went.
    pub fn delete_history(&self, room_id: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        for k in self.history.scan_prefix(prefix(room_id)).keys() {
            self.history.remove(k?)?;
            n += 1;
        }
        self.last_seqs.remove(room_id.as_bytes())?;
        self.delete_client_msgs(room_id)?;
        Ok(n)
    }

    /// Deletes a room's messages older than `cutoff_ms` (retention by age); returns how
    /// many went. Timestamps grow with seq, so the scan stops at the first newer one.
    /// When it empties the history, the last seq is kept aside so the room's sequence
    /// never restarts within an epoch.
    pub fn trim_history_before(&self, room_id: &str, cutoff_ms: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        let mut last = None;
        for item in self.history.scan_prefix(prefix(room_id)) {
            let (k, v) = item?;
            let r: HistoryRecord = codec::decode(&v)?;
            if r.timestamp >= cutoff_ms {
                return Ok(n);
            }
            last = Some(r.seq);
            self.history.remove(k)?;
            n += 1;
        }
        if let Some(seq) = last {
            self.last_seqs.fetch_and_update(room_id.as_bytes(), |old| {
                let old = old.and_then(super::u64_from).unwrap_or(0);
                Some(old.max(seq).to_be_bytes().to_vec())
            })?;
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

    /// Up to `limit` stored messages with seq in `from..=to`, oldest first.
    pub fn history_range(
        &self,
        room_id: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<HistoryRecord>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        self.history
            .range(key(room_id, from)..=key(room_id, to))
            .values()
            .take(limit)
            .map(|v| codec::decode(&v?))
            .collect()
    }

    /// The newest `limit` stored messages with seq below `before`, oldest first.
    pub fn history_before(
        &self,
        room_id: &str,
        before: u64,
        limit: usize,
    ) -> Result<Vec<HistoryRecord>, StoreError> {
        let mut out: Vec<HistoryRecord> = self
            .history
            .range(key(room_id, 0)..key(room_id, before))
            .values()
            .rev()
            .take(limit)
            .map(|v| codec::decode(&v?))
            .collect::<Result<_, _>>()?;
        out.reverse();
        Ok(out)
    }
}
