//! Periodic expiry: sessions past `expires_ms`, revocations of tokens that have expired
//! anyway, notifications older than `notifications.inbox_max_age_secs`, security events
//! past retention or over the count cap, idle limiter keys, client message ids past the
//! dedupe window, messages past their room type's `max_age_secs` (in the store and in
//! live rooms' rings), and rooms: empty rooms are unloaded from memory (once the history
//! writer has applied all they published, so a reload reads the true last seq) and
//! auto-created rooms empty for longer than
//! `rooms.room_expiry_secs` are deleted with their history. Store scans run on the
//! blocking pool; each step fails alone, logged. It never touches a live member or socket.

use std::time::Duration;

use crate::protocol::now_ms;
use crate::state::AppState;
use crate::store::StoreError;

/// Runs until shutdown.
pub async fn run(state: AppState) {
    let period = Duration::from_secs(state.cfg.store.sweep_interval_secs);
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => sweep(&state, period).await,
        }
    }
}

/// One pass.
pub async fn sweep(state: &AppState, period: Duration) {
    state.limiters.sweep();
    // A room is dropped only when the writer has applied everything it published (its
    // pending count is 0); the barrier gets idle rooms there before they are looked at.
    let cutoff = now_ms().saturating_sub(period.as_millis() as u64);
    state.history.sync().await;
    let unloaded = state.hub.unload_idle(cutoff);
    let s = state.clone();
    let result = tokio::task::spawn_blocking(move || sweep_store(&s, unloaded)).await;
    if let Err(e) = result {
        tracing::error!(error = %e, "sweep task failed");
    }
}

fn sweep_store(state: &AppState, unloaded: Vec<(crate::store::RoomRecord, u64)>) {
    let now = now_ms();
    let store = &state.store;
    let cfg = &state.cfg;
    let log = |what: &'static str, r: Result<usize, StoreError>| match r {
        Ok(n) => state.metrics.swept.add(what, n as u64),
        Err(e) => tracing::error!(error = %e, "sweeping {what} failed"),
    };
    log("sessions", store.sweep_sessions(now));
    log("revocations", store.sweep_revocations(now));
    log(
        "refresh_tokens",
        store.sweep_refresh(now, crate::accounts::family_grace_ms(cfg)),
    );
    log(
        "notifications",
        store.sweep_notifications(
            now.saturating_sub(cfg.notifications.inbox_max_age_secs.saturating_mul(1000)),
        ),
    );
    state.login_failures.sweep(now);
    let retention_ms = cfg.security.log_retention_days * 86_400_000;
    log(
        "security_events",
        store.sweep_events(
            now.saturating_sub(retention_ms),
            cfg.security.max_security_events,
        ),
    );

    let window_ms = cfg.rooms.dedupe_window_secs.saturating_mul(1000);
    log(
        "client message ids",
        store.sweep_client_msgs(now.saturating_sub(window_ms)),
    );
    let aged = cfg.rooms.retention.chat.max_age_secs > 0
        || cfg.rooms.retention.document.max_age_secs > 0
        || cfg.rooms.retention.collaboration.max_age_secs > 0
        || cfg.rooms.retention.notification.max_age_secs > 0;
    if aged {
        for record in store.rooms_lossy() {
            let Some(age) = cfg.rooms.max_age_ms(&record.kind) else {
                continue;
            };
            let cutoff = now.saturating_sub(age);
            // The ring first: a recovery must not serve what the store no longer has.
            if let Some(room) = state.hub.get(&record.id) {
                room.prune_before(cutoff);
            }
            log(
                "old messages",
                store.trim_history_before(&record.id, cutoff),
            );
        }
    }

    let expiry_ms = cfg.rooms.room_expiry_secs * 1000;
    let expired = |auto: bool, since: u64| auto && expiry_ms > 0 && since + expiry_ms <= now;
    for (mut record, emptied) in unloaded {
        let r = if expired(record.auto_created, emptied) {
            store.delete_room_and_history(&record.id)
        } else if record.last_active_ms < emptied {
            record.last_active_ms = emptied;
            store.put_room(&record).map(|_| 0)
        } else {
            Ok(0)
        };
        log("expired_room_messages", r);
    }
    if expiry_ms > 0 {
        for record in store.rooms_lossy() {
            if expired(record.auto_created, record.last_active_ms)
                && state.hub.get(&record.id).is_none()
            {
                log(
                    "expired_room_messages",
                    store.delete_room_and_history(&record.id),
                );
            }
        }
    }
}
