//! Periodic expiry: sessions past `expires_ms`, revocations of tokens that have expired
//! anyway, security events past retention or over the count cap, idle limiter keys, and
//! rooms: empty rooms are unloaded from memory (only when no history write is pending,
//! so a reload reads the true last seq) and auto-created rooms empty for longer than
//! `rooms.room_expiry_secs` are deleted. It never touches a live member or socket.

use std::time::Duration;

use crate::state::AppState;

/// Runs until shutdown.
pub async fn run(state: AppState) {
    let period = Duration::from_secs(state.cfg.store.sweep_interval_secs);
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => sweep(&state, period),
        }
    }
}

/// One pass.
pub fn sweep(state: &AppState, period: Duration) {
    let now = crate::server::now();
    let store = &state.store;
    let cfg = &state.cfg;
    let result = (|| -> Result<(), crate::store::StoreError> {
        store.sweep_sessions(now)?;
        store.sweep_revocations(now)?;
        let retention_ms = cfg.security.log_retention_days * 86_400_000;
        store.sweep_events(
            now.saturating_sub(retention_ms),
            cfg.security.max_security_events,
        )?;
        state.limiters.sweep();

        let expiry_ms = cfg.rooms.room_expiry_secs * 1000;
        if state.history.is_idle() {
            let cutoff = now.saturating_sub(period.as_millis() as u64);
            for (mut record, emptied) in state.hub.unload_idle(cutoff) {
                if record.auto_created && expiry_ms > 0 && emptied + expiry_ms <= now {
                    store.delete_room(&record.id)?;
                } else if record.last_active_ms < emptied {
                    record.last_active_ms = emptied;
                    store.put_room(&record)?;
                }
            }
        }
        if expiry_ms > 0 {
            for record in store.rooms()? {
                if record.auto_created
                    && record.last_active_ms + expiry_ms <= now
                    && state.hub.get(&record.id).is_none()
                {
                    store.delete_room(&record.id)?;
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        tracing::error!(error = %e, "sweep failed");
    }
}
