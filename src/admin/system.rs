//! Server statistics (the seed's `getConnectionStats` and more) and the security-event log.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::{AdminError, Target};
use crate::protocol::now_ms;
use crate::store::{EventFilter, EventRecord};

/// The seed's `getConnectionStats` figures (live counts; 0 when stopped), store counts,
/// messages received and published since start, and uptime.
pub fn stats(t: &Target<'_>) -> Result<Value, AdminError> {
    let store = t.store();
    let (conns, authed, rooms, participants, uptime, received, published) = match t.live() {
        Some(s) => {
            let (c, a) = s.registry.counts();
            let (r, p) = s.hub.counts();
            let uptime = now_ms().saturating_sub(s.started_ms) / 1000;
            let m = &s.metrics;
            let received = m.messages_in.load(Ordering::Relaxed);
            let published = m.messages_out.load(Ordering::Relaxed);
            (c, a, r, p, uptime, received, published)
        }
        None => (0, 0, 0, 0, 0, 0, 0),
    };
    Ok(json!({
        "totalConnections": conns,
        "authenticatedConnections": authed,
        "totalRooms": rooms,
        "totalParticipants": participants,
        "storedRooms": store.room_count(),
        "sessions": store.session_count(),
        "revokedTokens": store.revocation_count(),
        "securityEvents": store.event_count(),
        "droppedSecurityEvents": t.live().map_or(0, |s| s.audit.dropped()),
        "messagesReceived": received,
        "messagesPublished": published,
        "uptimeSecs": uptime,
        "running": t.live().is_some(),
    }))
}

/// Events matching the filter, oldest first, as JSON, and the cursor of the last one
/// when the page is full. Live, events recorded so far are written first.
pub async fn events(
    t: &Target<'_>,
    filter: &EventFilter,
) -> Result<(Vec<Value>, Option<Vec<u8>>), AdminError> {
    if let Some(s) = t.live() {
        s.audit.sync().await;
    }
    let (events, next) = t.store().events_page(filter)?;
    Ok((events.into_iter().map(event_json).collect(), next))
}

/// An event as the CLI prints it and the API returns it.
pub fn event_json(e: EventRecord) -> Value {
    let meta: serde_json::Map<String, Value> = e
        .metadata
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    json!({
        "timestamp": e.ts_ms,
        "action": e.action,
        "userId": e.user,
        "result": e.result,
        "metadata": meta,
    })
}
