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

/// Writes a backup to `path` (absolute). Live, the history and event writers are drained
/// first so rooms, their history and the log agree. The file is written as `path.partial`
/// (mode 0600: it holds the signing keys) and renamed into place when complete.
pub async fn backup(t: &Target<'_>, path: &str) -> Result<Value, AdminError> {
    use std::os::unix::fs::OpenOptionsExt;

    let target = std::path::PathBuf::from(path);
    if !target.is_absolute() {
        return Err(AdminError::Invalid("path", "must be absolute".into()));
    }
    if let Some(s) = t.live() {
        s.history.sync().await;
        s.audit.sync().await;
    }
    let store = t.store().clone();
    let data_dir = t.cfg().data_dir.clone();
    let partial = target.with_extension("partial");
    let summary = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| format!("{}: {e}", partial.display()))?;
        let mut out = std::io::BufWriter::new(file);
        let summary = store
            .write_backup(&data_dir, &mut out)
            .map_err(|e| e.to_string())?;
        let file = out.into_inner().map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&partial, &target).map_err(|e| e.to_string())?;
        Ok::<_, String>(summary)
    })
    .await
    .map_err(|e| AdminError::Backup(e.to_string()))?
    .map_err(AdminError::Backup)?;
    Ok(json!({
        "path": path,
        "schema": summary.schema,
        "trees": summary.trees,
        "entries": summary.entries,
        "keyFiles": summary.files,
    }))
}
