//! Per-user notification inboxes. Two trees:
//! - `useridseq_notification`: user id ++ 0xFF ++ id (u64 BE) => [`NotificationRecord`].
//!   User ids are UTF-8, which never contains 0xFF, so a prefix scan of `user ++ 0xFF`
//!   is exactly that user's inbox, in id order.
//! - `tsuseridseq_inbox`: created-at ms (u64 BE) ++ the inbox key => empty. The age
//!   index, so the sweeper reaches expired entries without reading every inbox.
//!
//! Writes keep one rule so a crash can only leave a harmless orphan index entry (which
//! the sweep removes): the index entry is written before the record and removed after it.
//! Ordering between publishers and readers of one inbox is `notify`'s job, not this file's.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, codec};

/// One notification in a user's inbox. `data` holds the application's JSON as compact
/// text (bincode cannot carry a self-describing JSON value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRecord {
    pub id: u64,
    pub from: String,
    pub kind: Option<String>,
    pub title: Option<String>,
    pub body: String,
    pub data: Option<String>,
    pub room_id: Option<String>,
    /// Created at, ms since the epoch.
    pub timestamp: u64,
}

fn prefix(user_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(user_id.len() + 9);
    k.extend_from_slice(user_id.as_bytes());
    k.push(0xFF);
    k
}

fn key(user_id: &str, id: u64) -> Vec<u8> {
    let mut k = prefix(user_id);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn index_key(ts_ms: u64, inbox_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + inbox_key.len());
    k.extend_from_slice(&ts_ms.to_be_bytes());
    k.extend_from_slice(inbox_key);
    k
}

impl Store {
    /// Adds a notification to `user_id`'s inbox, then drops the oldest entries beyond
    /// `keep`. Returns how many were dropped.
    pub fn put_notification(
        &self,
        user_id: &str,
        record: &NotificationRecord,
        keep: usize,
    ) -> Result<usize, StoreError> {
        let k = key(user_id, record.id);
        self.notification_index
            .insert(index_key(record.timestamp, &k), &[])?;
        self.notifications.insert(k, codec::encode(record)?)?;
        let mut dropped = 0;
        let old: Vec<sled::IVec> = self
            .notifications
            .scan_prefix(prefix(user_id))
            .keys()
            .rev()
            .skip(keep)
            .collect::<Result<_, _>>()?;
        for k in old {
            if self.remove_notification(&k)? {
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// Removes one inbox entry and its index entry; whether it was there.
    fn remove_notification(&self, inbox_key: &[u8]) -> Result<bool, StoreError> {
        let Some(v) = self.notifications.remove(inbox_key)? else {
            return Ok(false);
        };
        let record: NotificationRecord = codec::decode(&v)?;
        self.notification_index
            .remove(index_key(record.timestamp, inbox_key))?;
        Ok(true)
    }

    /// The user's inbox, oldest first.
    pub fn inbox(&self, user_id: &str) -> Result<Vec<NotificationRecord>, StoreError> {
        self.notifications
            .scan_prefix(prefix(user_id))
            .values()
            .map(|v| codec::decode(&v?))
            .collect()
    }

    /// Deletes the named entries of the user's inbox; unknown ids are ignored. Returns
    /// how many were deleted.
    pub fn ack_notifications(&self, user_id: &str, ids: &[u64]) -> Result<usize, StoreError> {
        let mut n = 0;
        for id in ids {
            if self.remove_notification(&key(user_id, *id))? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Drops every inbox entry created before `before_ms`; returns how many went.
    pub fn sweep_notifications(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        for k in self
            .notification_index
            .range(..before_ms.to_be_bytes())
            .keys()
        {
            let k = k?;
            if let Some(inbox_key) = k.get(8..)
                && self.notifications.remove(inbox_key)?.is_some()
            {
                n += 1;
            }
            self.notification_index.remove(&k)?;
        }
        Ok(n)
    }

    /// Deletes a user's whole inbox (for when the user is deleted); returns how many
    /// entries went.
    pub fn delete_inbox(&self, user_id: &str) -> Result<usize, StoreError> {
        let keys: Vec<sled::IVec> = self
            .notifications
            .scan_prefix(prefix(user_id))
            .keys()
            .collect::<Result<_, _>>()?;
        let mut n = 0;
        for k in keys {
            if self.remove_notification(&k)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Entries in every inbox together.
    pub fn notification_count(&self) -> usize {
        self.notifications.len()
    }
}
