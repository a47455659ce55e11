//! Expiry: sessions, revocations and security events leave the store on time, and idle
//! limiter keys are dropped.

mod common;

use std::time::Duration;

use common::*;
use roomgate::config::{Quota, RateLimitConfig, StoreConfig};
use roomgate::ratelimit::{Key, Limit, Limiters};
use roomgate::store::{EventFilter, EventRecord, Revocation, Store};

#[tokio::test]
async fn expired_sessions_are_swept() {
    let s = TestServer::start_with(|c| {
        c.auth.token_expiry_secs = 1;
        c.store.sweep_interval_secs = 1;
    })
    .await;
    let mut c = s.client().await;
    let ok = c.auth(&token("alice")).await;
    let ws = ok["wsToken"].as_str().unwrap();
    let claims = jwt_claims(ws);
    let sid = claims["sessionId"].as_str().unwrap().to_string();
    let store = s.server().state().store.clone();
    assert!(store.session(&sid).unwrap().is_some());
    eventually("session sweep", || store.session(&sid).unwrap().is_none()).await;
    c.close().await;
}

#[tokio::test]
async fn revocations_of_expired_tokens_are_swept_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    let now = roomgate::protocol::now_ms();
    let gone = Revocation {
        revoked_ms: now - 10_000,
        expires_ms: now - 1,
    };
    let kept = Revocation {
        revoked_ms: now,
        expires_ms: now + 60_000,
    };
    store.revoke_token_blocking("jti:old", &gone).unwrap();
    store.revoke_token_blocking("jti:new", &kept).unwrap();
    assert_eq!(store.sweep_revocations(now).unwrap(), 1);
    assert!(!store.is_token_revoked("jti:old").unwrap());
    assert!(store.is_token_revoked("jti:new").unwrap());
}

#[tokio::test]
async fn security_events_are_kept_by_age_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    let now = roomgate::protocol::now_ms();
    let event = |ts_ms: u64, action: &str| EventRecord {
        ts_ms,
        action: action.into(),
        user: String::new(),
        result: "success".into(),
        metadata: vec![],
    };
    let day = 86_400_000;
    let mut events = vec![event(now - 40 * day, "ancient")];
    for i in 0..10 {
        events.push(event(now - 10 * day + i, &format!("e{i}")));
    }
    store.append_events(&events).unwrap();
    // 30 days of retention drop the ancient one; a cap of 4 keeps the newest 4.
    let removed = store.sweep_events(now - 30 * day, 4).unwrap();
    assert_eq!(removed, 7);
    let left: Vec<String> = store
        .events(&EventFilter::default())
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(left, vec!["e6", "e7", "e8", "e9"]);
}

#[test]
fn idle_limiter_keys_are_swept() {
    let cfg = RateLimitConfig {
        message: Quota {
            points: 2,
            duration_secs: 1,
        },
        ..RateLimitConfig::default()
    };
    let l = Limiters::new(&cfg);
    for i in 0..50u32 {
        let _ = l.check(Limit::Message, &Key::User(format!("u{i}").into()));
    }
    assert!(l.tracked_keys() >= 50);
    // After a full refill every key is back to its initial state and can go.
    std::thread::sleep(Duration::from_millis(1100));
    l.sweep();
    assert_eq!(l.tracked_keys(), 0);
}

#[tokio::test]
async fn the_security_log_is_trimmed_to_its_cap_as_it_is_written() {
    // Sweeps are an hour apart: only the writer's trim can hold the log at its cap.
    let s = TestServer::start_with(|c| {
        c.security.max_security_events = 6;
        c.store.sweep_interval_secs = 3600;
        c.rate_limits.auth.points = 100;
    })
    .await;
    let state = s.server().state();
    state.audit.sync().await;
    // Start-up may record its own (the first-start admin account).
    let base = state.store.event_count();
    assert!(base < 6);
    // One websocket_auth event per authentication: up to the cap exactly, all kept.
    for i in 0..6 - base {
        s.authed(&format!("u{i}")).await.close().await;
    }
    state.audit.sync().await;
    assert_eq!(state.store.event_count(), 6);
    let first = state.store.events(&EventFilter::default()).unwrap();
    // One more: still 6, and the oldest is the one that went.
    s.authed("u-one-more").await.close().await;
    state.audit.sync().await;
    let now = state.store.events(&EventFilter::default()).unwrap();
    assert_eq!(now.len(), 6);
    assert_eq!(now[..5], first[1..]);
    // Ten more: the log holds the newest 6, and the counter agrees with the tree.
    for i in 6..16 {
        s.authed(&format!("u{i}")).await.close().await;
    }
    state.audit.sync().await;
    let left = state.store.events(&EventFilter::default()).unwrap();
    assert_eq!(left.len(), 6);
    assert_eq!(state.store.event_count(), 6);
    let hashes: Vec<String> = (10..16)
        .map(|i| state.audit.hash_user(&format!("u{i}")))
        .collect();
    let kept: Vec<String> = left.iter().map(|e| e.user.clone()).collect();
    assert_eq!(kept, hashes, "the newest six, oldest first");
    let dir = s.stop().await;
    // The count is the tree's own after a restart.
    let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    assert_eq!(store.event_count(), 6);
    assert_eq!(store.events(&EventFilter::default()).unwrap().len(), 6);
}
