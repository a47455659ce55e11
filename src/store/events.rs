//! The security-event log (the seed's `ws_security_events` list). Key: time in ms (u64
//! BE) ++ a database-unique id (u64 BE), so iteration is chronological. The user field
//! holds a keyed hash of the user id, never the id; metadata never holds tokens.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, codec, u64_from};

/// One security event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub ts_ms: u64,
    pub action: String,
    /// HMAC-SHA256 of the user id under the server's event key, hex, 32 chars; "" when unknown.
    pub user: String,
    pub result: String,
    pub metadata: Vec<(String, String)>,
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub since_ms: Option<u64>,
    pub action: Option<String>,
    pub limit: Option<usize>,
}

impl Store {
    /// Appends events in one batch.
    pub fn append_events(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for e in events {
            let mut k = e.ts_ms.to_be_bytes().to_vec();
            k.extend_from_slice(&self.generate_id()?.to_be_bytes());
            batch.insert(k, codec::encode(e)?);
        }
        self.events.apply_batch(batch)?;
        Ok(())
    }

    /// Events matching the filter, oldest first.
    pub fn events(&self, f: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        let start = f.since_ms.unwrap_or(0).to_be_bytes();
        let mut out = Vec::new();
        for item in self.events.range(start..) {
            let (_, v) = item?;
            let e: EventRecord = codec::decode(&v)?;
            if f.action.as_deref().is_some_and(|a| a != e.action) {
                continue;
            }
            out.push(e);
            if f.limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        Ok(out)
    }

    /// Drops events older than `before_ms` and the oldest beyond `max_count`.
    pub fn sweep_events(&self, before_ms: u64, max_count: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        for k in self.events.range(..before_ms.to_be_bytes()).keys() {
            self.events.remove(k?)?;
            n += 1;
        }
        let len = self.events.len() as u64;
        if len > max_count {
            for k in self.events.iter().keys().take((len - max_count) as usize) {
                self.events.remove(k?)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Number of stored events.
    pub fn event_count(&self) -> usize {
        self.events.len()
    }

    /// Time of the oldest stored event.
    pub fn oldest_event_ms(&self) -> Result<Option<u64>, StoreError> {
        Ok(match self.events.first()? {
            Some((k, _)) => u64_from(&k[..8]),
            None => None,
        })
    }
}
