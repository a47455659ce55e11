//! Security events (the seed's `logSecurityEvent`): built on the request path, handed to
//! a bounded channel with `try_send`, and written to the store in batches by one writer
//! task. Recording never blocks a request and never waits for disk; when the queue is
//! full the event is dropped and counted. User ids are replaced by an HMAC-SHA256 under
//! a server secret (the seed used an unkeyed, guessable SHA-256 prefix). Nothing here may
//! accept a token or a password: metadata values come from a fixed vocabulary plus
//! room ids, connection ids and IPs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::batch::BatchWriter;
use crate::protocol::now_ms;
use crate::store::{EventRecord, Store};

/// Outcome recorded with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// Handle for recording events. Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    writer: BatchWriter<EventRecord>,
    key: Arc<[u8]>,
    dropped: Arc<AtomicU64>,
}

impl Audit {
    /// Starts the writer thread; returns the handle. The log is trimmed to `max_events`
    /// after every batch it writes.
    pub fn start(store: Store, key: Vec<u8>, queue: usize, max_events: u64) -> Audit {
        let writer = BatchWriter::start(
            "roomgate-audit",
            queue,
            256,
            move |batch: &[EventRecord]| {
                if let Err(e) = store.append_events(batch) {
                    tracing::error!(error = %e, lost = batch.len(), "writing security events failed");
                }
                if let Err(e) = store.trim_events(max_events) {
                    tracing::error!(error = %e, "trimming security events failed");
                }
            },
        );
        Audit {
            writer,
            key: key.into(),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The keyed hash that stands for a user id in events.
    pub fn hash_user(&self, user_id: &str) -> String {
        hash_user(&self.key, user_id)
    }

    /// Records an event; never waits.
    pub fn record(
        &self,
        action: &str,
        user_id: Option<&str>,
        outcome: Outcome,
        metadata: &[(&str, &str)],
    ) {
        let event = EventRecord {
            ts_ms: now_ms(),
            action: action.to_string(),
            user: user_id.map(|u| self.hash_user(u)).unwrap_or_default(),
            result: outcome.as_str().to_string(),
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        if !self.writer.try_push(event) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "security event queue full; events dropped");
            }
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every event recorded before this call is written, then stops the writer.
    pub async fn stop(&self) {
        self.writer.stop().await
    }

    /// Waits until every event recorded before this call is written.
    pub async fn sync(&self) {
        self.writer.sync().await
    }
}

/// HMAC-SHA256(key, user id), first 16 bytes as hex.
pub fn hash_user(key: &[u8], user_id: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(user_id.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}
