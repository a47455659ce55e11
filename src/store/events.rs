//! The security-event log (the seed's `ws_security_events` list). Key: time in ms (u64
//! BE) ++ a database-unique id (u64 BE), so iteration is chronological. The user field
//! holds a keyed hash of the user id, never the id; metadata never holds tokens.

use std::sync::atomic::Ordering;

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
    /// Only events at or after this time (ms).
    pub since_ms: Option<u64>,
    /// Only events at or before this time (ms).
    pub until_ms: Option<u64>,
    pub action: Option<String>,
    /// Only events with this result (`success`, `failure`).
    pub result: Option<String>,
    pub limit: Option<usize>,
    /// Resume after this event key (a page cursor from [`Store::events_page`]).
    pub after: Option<Vec<u8>>,
}

impl Store {
    /// Appends events, in order.
    ///
    /// Plain inserts, not one `sled::Batch`: events are independent, so atomicity buys
    /// nothing, and sled 0.34 seals and writes its log buffer twice for every batch
    /// (`PageCache::pin_log`), a disk write and two thread hand-offs per call that were
    /// a tenth of the server's CPU in the `connect` benchmark. After a crash sled keeps
    /// a prefix of its log, so the loss is the same as a lost batch: the newest events.
    pub fn append_events(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        for e in events {
            let mut k = e.ts_ms.to_be_bytes().to_vec();
            k.extend_from_slice(&self.generate_id()?.to_be_bytes());
            if self.events.insert(k, codec::encode(e)?)?.is_none() {
                self.event_count.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Drops the oldest events beyond `max_count`, as the seed's `LTRIM` after every
    /// `LPUSH` did, so the log never holds more than its cap plus one write batch. Left
    /// to the sweeper alone, a burst of connections grows the log (and sled's cache of
    /// it) by everything recorded in a sweep interval.
    pub fn trim_events(&self, max_count: u64) -> Result<usize, StoreError> {
        let excess = self.event_count().saturating_sub(max_count as usize);
        let mut n = 0;
        if excess > 0 {
            for k in self.events.iter().keys().take(excess) {
                n += self.remove_event(&k?)?;
            }
        }
        Ok(n)
    }

    fn remove_event(&self, key: &[u8]) -> Result<usize, StoreError> {
        // Only a removal that found the key counts: the sweeper and the writer may race
        // to the same oldest key.
        Ok(match self.events.remove(key)? {
            Some(_) => {
                self.event_count.fetch_sub(1, Ordering::Relaxed);
                1
            }
            None => 0,
        })
    }

    /// Events matching the filter, oldest first.
    pub fn events(&self, f: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        Ok(self.events_page(f)?.0)
    }

    /// Events matching the filter, oldest first, and the key of the last one when the
    /// page is full (more may follow: pass it back as `after`).
    pub fn events_page(
        &self,
        f: &EventFilter,
    ) -> Result<(Vec<EventRecord>, Option<Vec<u8>>), StoreError> {
        let since = f.since_ms.unwrap_or(0).to_be_bytes().to_vec();
        let start = match &f.after {
            // Just past the cursor key: the key with a 0 byte appended sorts right after it.
            Some(after) if *after >= since => {
                let mut k = after.clone();
                k.push(0);
                k
            }
            _ => since,
        };
        let mut out = Vec::new();
        let mut last = None;
        for item in self.events.range(start..) {
            let (k, v) = item?;
            if f.until_ms
                .is_some_and(|u| k.get(..8).and_then(u64_from).is_some_and(|ts| ts > u))
            {
                break;
            }
            let e: EventRecord = codec::decode(&v)?;
            if f.action.as_deref().is_some_and(|a| a != e.action)
                || f.result.as_deref().is_some_and(|r| r != e.result)
            {
                continue;
            }
            out.push(e);
            if f.limit.is_some_and(|l| out.len() >= l) {
                last = Some(k.to_vec());
                break;
            }
        }
        Ok((out, last))
    }

    /// Drops events older than `before_ms` and the oldest beyond `max_count`.
    pub fn sweep_events(&self, before_ms: u64, max_count: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        for k in self.events.range(..before_ms.to_be_bytes()).keys() {
            n += self.remove_event(&k?)?;
        }
        Ok(n + self.trim_events(max_count)?)
    }

    /// Number of stored events.
    pub fn event_count(&self) -> usize {
        self.event_count.load(Ordering::Relaxed) as usize
    }

    /// Time of the oldest stored event.
    pub fn oldest_event_ms(&self) -> Result<Option<u64>, StoreError> {
        Ok(match self.events.first()? {
            Some((k, _)) => u64_from(&k[..8]),
            None => None,
        })
    }
}
