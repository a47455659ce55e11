//! Built-in accounts and the token endpoints: login, refresh rotation, reuse detection,
//! logout, limits before hashing, and one answer for unknown users and wrong passwords.

mod common;

use common::*;
use roomgate::config::Quota;
use roomgate::store::AccountRecord;
use serde_json::{Value, json};

async fn add_account(s: &TestServer, name: &str, password: &str) {
    let state = s.server().state();
    let now = roomgate::protocol::now_ms();
    let created = state
        .store
        .create_account(&AccountRecord {
            username: name.into(),
            email: Some(format!("{name}@example.com")),
            password_hash: state.passwords.hash(password).await.unwrap(),
            disabled: false,
            created_ms: now,
            updated_ms: now,
        })
        .unwrap();
    assert!(created);
}

async fn login_ok(s: &TestServer, user: &str, password: &str) -> Value {
    let r = login(s.addr, user, password).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.json()
}

#[tokio::test]
async fn first_start_creates_admin_and_login_gives_a_working_access_token() {
    let s = TestServer::start().await;
    let tokens = login_ok(&s, "admin", ADMIN_PASSWORD).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert!(tokens["refresh_token"].as_str().unwrap().len() >= 32);
    let access = tokens["access_token"].as_str().unwrap();
    let c = jwt_claims(access);
    assert_eq!(c["iss"], "roomgate");
    assert_eq!(c["aud"], "roomgate");
    assert_eq!(c["sub"], "admin");
    assert!(c["jti"].is_string() && c["iat"].is_u64() && c["sid"].is_string());
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 900);
    let header = access.split('.').next().unwrap();
    assert!(!header.is_empty());

    let mut ws = s.client().await;
    let ok = ws.auth(access).await;
    assert_eq!(ok["user"]["userId"], "admin");
    let roles: Vec<String> = serde_json::from_value(ok["user"]["roles"].clone()).unwrap();
    assert!(roles.contains(&"admin".to_string()), "{roles:?}");
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_the_same_answer() {
    let s = TestServer::start().await;
    add_account(&s, "bob", "bob-password-1").await;
    let wrong = login(s.addr, "bob", "not-his-password").await;
    let unknown = login(s.addr, "nobody", "not-his-password").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.json()["code"], "invalid_credentials");
    // Passwords are never trimmed.
    assert_eq!(login(s.addr, "bob", " bob-password-1").await.status, 401);
    login_ok(&s, "bob", "bob-password-1").await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let s = TestServer::start().await;
    let first = login_ok(&s, "admin", ADMIN_PASSWORD).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let second = post_json(s.addr, "/auth/refresh", &json!({"refresh_token": r1})).await;
    assert_eq!(second.status, 200, "{}", second.body);
    let second = second.json();
    let r2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r2);
    let a2 = second["access_token"].as_str().unwrap();
    assert_eq!(
        jwt_claims(a2)["sid"],
        jwt_claims(first["access_token"].as_str().unwrap())["sid"]
    );

    // A socket on the rotated family's access token.
    let mut ws = s.client().await;
    ws.auth(a2).await;

    // The old refresh token no longer works, and using it revokes the whole family.
    let reuse = post_json(s.addr, "/auth/refresh", &json!({"refresh_token": r1})).await;
    assert_eq!(reuse.status, 401);
    assert_eq!(reuse.json()["code"], "invalid_grant");
    assert_eq!(ws.expect_close().await.code, 4003);
    let after = post_json(s.addr, "/auth/refresh", &json!({"refresh_token": r2})).await;
    assert_eq!(after.status, 401, "family survived reuse: {}", after.body);
    let mut again = s.client().await;
    again.send("auth", json!({"token": a2})).await;
    again.expect_error("token_revoked").await;

    let state = s.server().state();
    state.audit.sync().await;
    let events = state
        .store
        .events(&roomgate::store::EventFilter {
            action: Some("refresh_reuse_detected".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(events.len(), 1);
}

#[tokio::test]
async fn logout_closes_live_sockets_and_ends_the_session() {
    let s = TestServer::start().await;
    let t = login_ok(&s, "admin", ADMIN_PASSWORD).await;
    let access = t["access_token"].as_str().unwrap();
    let mut ws = s.client().await;
    ws.auth(access).await;
    let r = http_request(
        s.addr,
        "POST",
        "/auth/logout",
        &[("Authorization", &format!("Bearer {access}"))],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ws.expect_close().await.code, 4003);
    let refresh = post_json(
        s.addr,
        "/auth/refresh",
        &json!({"refresh_token": t["refresh_token"]}),
    )
    .await;
    assert_eq!(refresh.status, 401);
    let bad = http_request(s.addr, "POST", "/auth/logout", &[], b"").await;
    assert_eq!(bad.status, 401);
    assert_eq!(bad.json()["code"], "invalid_token");
    // A token not issued by roomgate cannot log out.
    let foreign = http_request(
        s.addr,
        "POST",
        "/auth/logout",
        &[("Authorization", &format!("Bearer {}", token("alice")))],
        b"",
    )
    .await;
    assert_eq!(foreign.status, 401);
}

#[tokio::test]
async fn logins_are_limited_per_ip_before_hashing() {
    let s = TestServer::start_with(|c| {
        c.accounts.login = Quota {
            points: 3,
            duration_secs: 60,
        };
    })
    .await;
    for _ in 0..3 {
        assert_eq!(login(s.addr, "admin", "wrong-password").await.status, 401);
    }
    let hashed = s.server().state().passwords.verifications();
    assert_eq!(hashed, 3);
    let limited = login(s.addr, "admin", ADMIN_PASSWORD).await;
    assert_eq!(limited.status, 429);
    for _ in 0..5 {
        assert_eq!(login(s.addr, "admin", "wrong-password").await.status, 429);
    }
    // Refused attempts never reach the hasher.
    assert_eq!(s.server().state().passwords.verifications(), hashed);
    assert_eq!(limited.json()["code"], "too_many_attempts");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

#[tokio::test]
async fn failed_logins_are_limited_per_account() {
    let s = TestServer::start_with(|c| {
        c.accounts.failed_logins = Quota {
            points: 2,
            duration_secs: 3600,
        };
    })
    .await;
    add_account(&s, "carol", "carol-password").await;
    // Successes never count.
    for _ in 0..3 {
        login_ok(&s, "carol", "carol-password").await;
    }
    for _ in 0..2 {
        assert_eq!(login(s.addr, "carol", "guess").await.status, 401);
    }
    let hashed = s.server().state().passwords.verifications();
    let locked = login(s.addr, "carol", "carol-password").await;
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert_eq!(s.server().state().passwords.verifications(), hashed);
    assert!(locked.header("retry-after").is_some());
    // Other accounts are not affected.
    login_ok(&s, "admin", ADMIN_PASSWORD).await;
}

#[tokio::test]
async fn parallel_wrong_passwords_reach_the_hasher_no_more_than_the_limit() {
    const LIMIT: u32 = 3;
    const ATTEMPTS: usize = 12;
    let s = TestServer::start_with(|c| {
        c.accounts.failed_logins = Quota {
            points: LIMIT,
            duration_secs: 3600,
        };
        c.accounts.login = Quota {
            points: 1000,
            duration_secs: 60,
        };
        // One hash at a time, each costing a few ms: every attempt is in flight while
        // the first is still being hashed, which is when a check-then-record limit leaks.
        c.accounts.hash_concurrency = 1;
        c.accounts.argon2_memory_kib = 4096;
    })
    .await;
    let before = s.server().state().passwords.verifications();
    let guesses: Vec<String> = (0..ATTEMPTS).map(|i| format!("guess-{i}")).collect();
    let replies =
        futures_util::future::join_all(guesses.iter().map(|g| login(s.addr, "admin", g))).await;
    let hashed = s.server().state().passwords.verifications() - before;
    assert!(
        hashed <= u64::from(LIMIT),
        "{hashed} guesses reached the hasher"
    );
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    let refused = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        (refused, limited),
        (LIMIT as usize, ATTEMPTS - LIMIT as usize),
        "{statuses:?}"
    );
    // The right password is locked out too now: the slots are failures.
    assert_eq!(login(s.addr, "admin", ADMIN_PASSWORD).await.status, 429);
}

#[tokio::test]
async fn a_successful_login_resets_the_accounts_failures() {
    let s = TestServer::start_with(|c| {
        c.accounts.failed_logins = Quota {
            points: 2,
            duration_secs: 3600,
        };
    })
    .await;
    assert_eq!(login(s.addr, "admin", "guess-1").await.status, 401);
    login_ok(&s, "admin", ADMIN_PASSWORD).await;
    // The earlier failure is forgotten: two more wrong passwords are answered, not limited.
    assert_eq!(login(s.addr, "admin", "guess-2").await.status, 401);
    assert_eq!(login(s.addr, "admin", "guess-3").await.status, 401);
    assert_eq!(login(s.addr, "admin", "guess-4").await.status, 429);
}

#[tokio::test]
async fn failures_count_against_the_exact_username_that_is_looked_up() {
    let s = TestServer::start_with(|c| {
        c.accounts.failed_logins = Quota {
            points: 2,
            duration_secs: 3600,
        };
    })
    .await;
    // "ADMIN" is not the `admin` account (lookups are exact)...
    assert_eq!(login(s.addr, "ADMIN", ADMIN_PASSWORD).await.status, 401);
    assert_eq!(login(s.addr, "ADMIN", "guess").await.status, 401);
    assert_eq!(login(s.addr, "ADMIN", "guess").await.status, 429);
    // ...so guessing at it does not lock `admin` out.
    login_ok(&s, "admin", ADMIN_PASSWORD).await;
}

#[tokio::test]
async fn bad_bodies_get_json_errors() {
    let s = TestServer::start_with(|c| c.accounts.max_body_bytes = 512).await;
    let r = http_request(s.addr, "POST", "/auth/login", &[], b"{not json").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "invalid_request");
    let r = post_json(s.addr, "/auth/login", &json!({"username": "admin"})).await;
    assert_eq!(r.status, 400);
    let big = json!({"username": "admin", "password": "x".repeat(600)});
    let r = post_json(s.addr, "/auth/login", &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["code"], "payload_too_large");
    let r = http_request(s.addr, "GET", "/auth/login", &[], b"").await;
    assert!(r.status == 405 || r.status == 404, "{}", r.status);
    assert!(r.json()["code"].is_string());
}

#[tokio::test]
async fn passwords_over_the_limit_are_refused_before_hashing() {
    let s = TestServer::start().await;
    let r = login(s.addr, "admin", &"p".repeat(1025)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "invalid_request");
}

#[tokio::test]
async fn accounts_can_be_turned_off() {
    let s = TestServer::start_with(|c| c.accounts.enabled = false).await;
    let r = login(s.addr, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status, 404);
    assert_eq!(s.server().state().store.account_count(), 0);
}

#[tokio::test]
async fn limited_attempts_are_answered_late() {
    let s = TestServer::start_with(|c| {
        c.accounts.login = Quota {
            points: 1,
            duration_secs: 60,
        };
        c.accounts.refusal_delay_ms = 400;
    })
    .await;
    let started = std::time::Instant::now();
    assert_eq!(login(s.addr, "admin", "wrong").await.status, 401);
    assert!(started.elapsed() < std::time::Duration::from_millis(400));
    let started = std::time::Instant::now();
    assert_eq!(login(s.addr, "admin", "wrong").await.status, 429);
    assert!(started.elapsed() >= std::time::Duration::from_millis(400));
}

/// Sends `auth {wsToken}` on a fresh socket; returns the reply frame.
async fn resume(s: &TestServer, ws_token: &str) -> Value {
    let mut c = s.client().await;
    c.send("auth", json!({ "wsToken": ws_token })).await;
    c.recv().await
}

#[tokio::test]
async fn ending_a_login_ends_sessions_resumed_with_ws_tokens() {
    let s = TestServer::start().await;
    let first = login_ok(&s, "admin", ADMIN_PASSWORD).await;
    let a1 = first["access_token"].as_str().unwrap();
    let r1 = first["refresh_token"].as_str().unwrap();
    let mut original = s.client().await;
    let w = original.auth(a1).await["wsToken"]
        .as_str()
        .unwrap()
        .to_string();
    let sid = jwt_claims(&w)["sessionId"].as_str().unwrap().to_string();
    // A second socket resumes the session: its own keys never named the access token's
    // family, only the session record does.
    let mut resumed = s.client().await;
    resumed.send("auth", json!({ "wsToken": w })).await;
    let ok = resumed.recv().await;
    assert_eq!(ok["type"], "auth_success", "{ok}");
    let w2 = ok["data"]["wsToken"].as_str().unwrap().to_string();
    // One session, one live socket: the resume closed the original.
    assert_eq!(original.expect_close().await.code, 4005);
    let state = s.server().state();
    let session = state.store.session(&sid).unwrap().expect("session stored");

    // Reuse of a rotated refresh token revokes the family (a2 is never named).
    let rotated = post_json(s.addr, "/auth/refresh", &json!({"refresh_token": r1})).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let reuse = post_json(s.addr, "/auth/refresh", &json!({"refresh_token": r1})).await;
    assert_eq!(reuse.status, 401, "{}", reuse.body);
    assert_eq!(
        resumed.expect_close().await.code,
        4003,
        "resumed socket kept"
    );

    // The session went with the family, so neither wsToken resumes it.
    assert_eq!(state.store.session(&sid).unwrap(), None);
    for w in [&w, &w2] {
        let r = resume(&s, w).await;
        assert_eq!(
            r["type"], "error",
            "resumed after the family was revoked: {r}"
        );
        assert_eq!(r["data"]["code"], "auth_failed", "{r}");
    }
    // Even if the session record had survived (a deletion that failed, or raced), the
    // family's revocation refuses the resume.
    state.store.put_session(&session).unwrap();
    let r = resume(&s, &w2).await;
    assert_eq!(r["data"]["code"], "token_revoked", "{r}");
}

#[tokio::test]
async fn logout_with_a_later_access_token_ends_sessions_of_the_same_login() {
    let s = TestServer::start().await;
    let first = login_ok(&s, "admin", ADMIN_PASSWORD).await;
    let a1 = first["access_token"].as_str().unwrap();
    let mut c = s.client().await;
    let w = c.auth(a1).await["wsToken"].as_str().unwrap().to_string();
    c.close().await;
    let second = post_json(
        s.addr,
        "/auth/refresh",
        &json!({"refresh_token": first["refresh_token"]}),
    )
    .await;
    assert_eq!(second.status, 200, "{}", second.body);
    let a2 = second.json()["access_token"].as_str().unwrap().to_string();
    let out = http_request(
        s.addr,
        "POST",
        "/auth/logout",
        &[("Authorization", &format!("Bearer {a2}"))],
        b"",
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.body);
    let r = resume(&s, &w).await;
    assert_eq!(r["type"], "error", "resumed after logout: {r}");
}

/// The refresh family id (`sid`) of an access token, and its stored expiry.
fn family_of(s: &TestServer, access: &str) -> (String, u64) {
    let sid = jwt_claims(access)["sid"].as_str().unwrap().to_string();
    let family = s
        .server()
        .state()
        .store
        .family(&sid)
        .unwrap()
        .expect("family");
    (sid, family.expires_ms)
}

/// What the sweeper would do at `at_ms`.
fn sweep_at(s: &TestServer, at_ms: u64) {
    let state = s.server().state();
    let grace = roomgate::accounts::family_grace_ms(&state.cfg);
    state.store.sweep_revocations(at_ms).unwrap();
    state.store.sweep_refresh(at_ms, grace).unwrap();
}

#[tokio::test]
async fn a_revoked_login_stays_revoked_while_its_access_tokens_live() {
    let s = TestServer::start().await;
    let first = login_ok(&s, "admin", ADMIN_PASSWORD).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let second = post_json(s.addr, "/auth/refresh", &json!({"refresh_token": r1})).await;
    assert_eq!(second.status, 200, "{}", second.body);
    let a2 = second.json()["access_token"].as_str().unwrap().to_string();
    let (_, family_end) = family_of(&s, &a2);
    let reuse = post_json(s.addr, "/auth/refresh", &json!({"refresh_token": r1})).await;
    assert_eq!(reuse.status, 401);

    // Just after the family's own end the family's entry is still there: an access token
    // issued at the last moment is still valid then.
    sweep_at(&s, family_end + 1);
    let mut c = s.client().await;
    c.send("auth", json!({ "token": a2 })).await;
    c.expect_error("token_revoked").await;

    // Once the entry and the family are both swept, the missing family refuses it.
    let cfg = &s.server().state().cfg;
    let last_token_end = family_end + roomgate::accounts::family_grace_ms(cfg);
    sweep_at(&s, last_token_end + 1);
    let mut c = s.client().await;
    c.send("auth", json!({ "token": a2 })).await;
    c.expect_error("token_revoked").await;
}

#[tokio::test]
async fn an_access_token_whose_family_is_gone_is_refused_everywhere() {
    let s = TestServer::start().await;
    let t = login_ok(&s, "admin", ADMIN_PASSWORD).await;
    let access = t["access_token"].as_str().unwrap();
    let (_, family_end) = family_of(&s, access);
    let mut on_it = s.client().await;
    let w = on_it.auth(access).await["wsToken"]
        .as_str()
        .unwrap()
        .to_string();
    // The family record is kept while its tokens can verify...
    sweep_at(&s, family_end + 1);
    let mut c = s.client().await;
    c.auth(access).await;
    // ...and once it is gone, the token and its sessions are refused: at auth, at an
    // in-band refresh, and at a wsToken resume.
    let cfg = &s.server().state().cfg;
    sweep_at(
        &s,
        family_end + roomgate::accounts::family_grace_ms(cfg) + 1,
    );
    let mut c = s.client().await;
    c.send("auth", json!({ "token": access })).await;
    c.expect_error("token_revoked").await;
    let mut other = s.authed("admin").await;
    other.send("refresh", json!({ "token": access })).await;
    other.expect_error("token_revoked").await;
    // Sessions outlive the sweep here (their own expiry is real time); the resume is
    // refused by the missing family.
    let mut c = s.client().await;
    c.send("auth", json!({ "wsToken": w })).await;
    c.expect_error("token_revoked").await;
    let refresh = post_json(
        s.addr,
        "/auth/refresh",
        &json!({"refresh_token": t["refresh_token"]}),
    )
    .await;
    assert_eq!(refresh.status, 401, "{}", refresh.body);
}

/// Rewrites the stored end of an access token's refresh family.
fn set_family_end(s: &TestServer, access: &str, expires_ms: u64) {
    let store = &s.server().state().store;
    let (sid, _) = family_of(s, access);
    let mut family = store.family(&sid).unwrap().unwrap();
    family.expires_ms = expires_ms;
    store.put_family(&sid, &family).unwrap();
}

#[tokio::test]
async fn refresh_ends_with_the_login_however_often_it_rotates() {
    let s = TestServer::start().await;
    let now = roomgate::protocol::now_ms();

    // A login past its end cannot be refreshed, though its refresh token is still fresh.
    let t = login_ok(&s, "admin", ADMIN_PASSWORD).await;
    set_family_end(&s, t["access_token"].as_str().unwrap(), now - 1);
    let r = post_json(
        s.addr,
        "/auth/refresh",
        &json!({"refresh_token": t["refresh_token"]}),
    )
    .await;
    assert_eq!(r.status, 401, "expired login refreshed: {}", r.body);
    assert_eq!(r.json()["code"], "invalid_grant");

    // A token rotated inside a login ends with it, not a full refresh lifetime later:
    // sweeping at the login's end drops it (the family itself is kept a while longer).
    let t = login_ok(&s, "admin", ADMIN_PASSWORD).await;
    let family_end = now + 60_000;
    set_family_end(&s, t["access_token"].as_str().unwrap(), family_end);
    let rotated = post_json(
        s.addr,
        "/auth/refresh",
        &json!({"refresh_token": t["refresh_token"]}),
    )
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let r2 = rotated.json()["refresh_token"].clone();
    s.server()
        .state()
        .store
        .sweep_refresh(family_end, u64::MAX / 2)
        .unwrap();
    let r = post_json(s.addr, "/auth/refresh", &json!({"refresh_token": r2})).await;
    assert_eq!(
        r.status, 401,
        "rotated token outlived its login: {}",
        r.body
    );
}
