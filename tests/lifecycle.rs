//! The token lifecycle on a live connection: the `token_expiring` notice, in-band
//! `refresh` (checks, revocation keys, roles, re-armed expiry), the close with 4001 when
//! a token expires (and its grace period), the security events all of this leaves
//! behind, and `auth {wsToken}`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use roomgate::protocol::now_ms;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Allowance for the difference between the server's monotonic timers and the wall clock.
const CLOCK_SLACK_MS: u64 = 100;

/// A token for `sub` expiring at `exp` (seconds), unique to `tag`.
fn token_until(sub: &str, exp: u64, tag: &str) -> String {
    token_with(json!({
        "sub": sub,
        "email": format!("{sub}@example.com"),
        "iat": now_secs(),
        "exp": exp,
        "nonce": tag,
    }))
}

/// Waits (the test is about time passing) until the wall clock reads `at_ms`.
async fn sleep_until_ms(at_ms: u64) {
    let wait = at_ms.saturating_sub(now_ms());
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// Asserts the socket is still open and served: a heartbeat is answered.
async fn assert_alive(c: &mut Client) {
    c.send("heartbeat", json!({})).await;
    c.expect("heartbeat_response").await;
}

/// Sends `refresh {token}`.
async fn refresh(c: &mut Client, token: &str) {
    c.send("refresh", json!({ "token": token })).await;
}

/// Authenticates with a token whose remaining life is below the notice period, so the
/// `token_expiring` notice follows `auth_success` at once; checks and consumes both.
async fn auth_short(c: &mut Client, token: &str, exp: u64) -> Value {
    let ok = c.auth(token).await;
    let notice = c.recv().await;
    assert_eq!(notice["type"], "token_expiring", "{notice}");
    assert_eq!(notice["data"]["expiresAt"], exp * 1000, "{notice}");
    ok
}

/// Waits (up to [`WAIT`]) for the close and checks it is 4001 "Token expired"; returns
/// the wall-clock time (ms) it arrived.
async fn expect_expired_close(c: &mut Client) -> u64 {
    let closed = c.expect_close().await;
    let at = now_ms();
    assert_eq!(
        closed,
        Closed {
            code: 4001,
            reason: "Token expired".into()
        }
    );
    at
}

async fn cli_ok(dir: &Path, args: &[&str]) -> String {
    let (ok, out, err) = run_cli(dir, args).await;
    assert!(ok, "roomgate {args:?} failed: {err}");
    out
}

// ---------------------------------------------------------------------------------------
// 1. The token_expiring notice
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn token_expiring_comes_refresh_notice_secs_before_exp() {
    let s = TestServer::start_with(|c| {
        c.auth.leeway_secs = 0;
        c.auth.refresh_notice_secs = 2;
    })
    .await;
    let mut c = s.client().await;
    let exp = now_secs() + 3;
    c.auth(&token_until("alice", exp, "notice")).await;
    let notice = c.recv().await;
    assert_eq!(notice["type"], "token_expiring", "{notice}");
    assert_eq!(notice["data"]["expiresAt"], exp * 1000);
    // Sent at exp - 2 s, not at auth (which was up to a second earlier) nor at exp.
    let sent = notice["timestamp"].as_u64().unwrap();
    assert!(
        sent + CLOCK_SLACK_MS >= (exp - 2) * 1000,
        "notice {sent} before exp - 2 s ({exp})"
    );
    assert!(sent < exp * 1000, "notice {sent} only at exp ({exp})");
    // It comes once.
    assert_alive(&mut c).await;
}

#[tokio::test]
async fn token_expiring_comes_at_once_when_less_than_the_notice_is_left() {
    // Default notice period (60 s), token valid for 30 s.
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let exp = now_secs() + 30;
    c.send("auth", json!({"token": token_until("alice", exp, "soon")}))
        .await;
    assert_eq!(c.recv().await["type"], "auth_success");
    let notice = c.recv().await;
    assert_eq!(notice["type"], "token_expiring", "{notice}");
    assert_eq!(notice["data"]["expiresAt"], exp * 1000);
    // A long-lived token gets no notice.
    let mut d = s.authed("bob").await;
    d.expect_silence(300).await;
}

// ---------------------------------------------------------------------------------------
// 2. Expiry
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn without_refresh_the_socket_closes_with_4001_at_exp() {
    // The default 30 s leeway applies to verification only: the socket still closes at exp.
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let exp = now_secs() + 2;
    auth_short(&mut c, &token_until("alice", exp, "expire"), exp).await;
    assert_alive(&mut c).await;
    let at = expect_expired_close(&mut c).await;
    assert!(
        at + CLOCK_SLACK_MS >= exp * 1000,
        "closed at {at}, before exp {exp}"
    );
    assert!(
        at <= exp * 1000 + 3000,
        "closed at {at}, long after exp {exp}"
    );

    // The close is recorded with the hashed user.
    let e = events(&s, "token_expired").await;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].user, s.server().state().audit.hash_user("alice"));
    assert!(meta(&e[0], "connectionId").is_some(), "{e:?}");
}

#[tokio::test]
async fn expiry_grace_keeps_the_socket_open_longer() {
    let s = TestServer::start_with(|c| {
        c.auth.leeway_secs = 0;
        c.auth.expiry_grace_secs = 2;
    })
    .await;
    let mut c = s.client().await;
    let exp = now_secs() + 2;
    auth_short(&mut c, &token_until("alice", exp, "grace"), exp).await;
    // Past exp the socket is still served...
    sleep_until_ms(exp * 1000 + 500).await;
    assert_alive(&mut c).await;
    // ...until exp + 2 s.
    let at = expect_expired_close(&mut c).await;
    assert!(
        at + CLOCK_SLACK_MS >= (exp + 2) * 1000,
        "closed at {at}, before exp + grace ({exp})"
    );
}

// ---------------------------------------------------------------------------------------
// 3. In-band refresh
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn refresh_extends_the_connection_past_the_first_tokens_expiry() {
    let s = TestServer::start_with(|c| {
        c.auth.leeway_secs = 0;
        c.auth.expiry_grace_secs = 0;
        c.auth.refresh_notice_secs = 2;
    })
    .await;
    let mut c = s.client().await;
    let exp1 = now_secs() + 3;
    c.auth(&token_until("alice", exp1, "first")).await;
    c.join("lobby").await;
    // The client refreshes when told to.
    let notice = c.expect("token_expiring").await;
    assert_eq!(notice["data"]["expiresAt"], exp1 * 1000);
    let exp2 = now_secs() + 30;
    refresh(&mut c, &token_until("alice", exp2, "second")).await;
    let refreshed = c.recv().await;
    assert_eq!(refreshed["type"], "token_refreshed", "{refreshed}");
    assert_eq!(refreshed["data"]["expiresAt"], exp2 * 1000);

    // Two seconds after the first token's exp, the socket is open and working.
    sleep_until_ms(exp1 * 1000 + 2000).await;
    assert_alive(&mut c).await;
    c.say("lobby", "still here").await;
    let m = c.expect("message").await;
    assert_eq!(m["data"]["content"], "still here");
    c.expect_silence(200).await;

    let e = events(&s, "token_refresh").await;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].result, "success");
    assert_eq!(e[0].user, s.server().state().audit.hash_user("alice"));
}

#[tokio::test]
async fn refresh_with_another_users_token_is_rejected_and_the_old_expiry_stays() {
    let s = TestServer::start_with(|c| c.auth.leeway_secs = 0).await;
    let mut c = s.client().await;
    let exp = now_secs() + 3;
    let ok = auth_short(&mut c, &token_until("alice", exp, "alice"), exp).await;
    refresh(&mut c, &token_until("bob", now_secs() + 3600, "bob")).await;
    let e = c.expect_error("refresh_rejected").await;
    assert_eq!(e["message"], "Token refresh rejected");
    // A wsToken, even alice's own, does not renew a live connection.
    refresh(&mut c, ok["wsToken"].as_str().unwrap()).await;
    c.expect_error("refresh_rejected").await;
    assert_alive(&mut c).await;
    // The connection still lives on alice's first token.
    let at = expect_expired_close(&mut c).await;
    assert!(at + CLOCK_SLACK_MS >= exp * 1000);

    let e = events(&s, "token_refresh").await;
    let reasons: Vec<_> = e.iter().filter_map(|e| meta(e, "reason")).collect();
    assert_eq!(reasons, vec!["other_user", "ws_token"], "{e:?}");
    for ev in &e {
        assert_eq!(ev.result, "failure");
        assert_eq!(ev.user, s.server().state().audit.hash_user("alice"));
    }
}

#[tokio::test]
async fn refresh_with_a_revoked_token_is_token_revoked_and_the_old_token_stays() {
    let s = TestServer::start_with(|c| c.auth.leeway_secs = 0).await;
    let revoked = token_until("alice", now_secs() + 3600, "revoked");
    cli_ok(s.dir.path(), &["revoke", "--token", &revoked]).await;

    let mut c = s.client().await;
    let exp = now_secs() + 3;
    auth_short(&mut c, &token_until("alice", exp, "live"), exp).await;
    refresh(&mut c, &revoked).await;
    let e = c.expect_error("token_revoked").await;
    assert_eq!(e["message"], "Token has been revoked");
    assert_alive(&mut c).await;
    let at = expect_expired_close(&mut c).await;
    assert!(at + CLOCK_SLACK_MS >= exp * 1000);

    let e = events(&s, "token_refresh").await;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(meta(&e[0], "reason"), Some("revoked"));
}

#[tokio::test]
async fn refresh_with_a_bad_signature_is_auth_failed() {
    let s = TestServer::start().await;
    let mut c = s.authed("alice").await;
    let forged = sign(
        &json!({"sub": "alice", "iat": now_secs(), "exp": now_secs() + 3600}),
        "not-the-secret-0123456789abcdef",
    );
    refresh(&mut c, &forged).await;
    let e = c.expect_error("auth_failed").await;
    assert_eq!(e["message"], "Authentication failed");
    assert_alive(&mut c).await;

    let e = events(&s, "token_refresh").await;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].result, "failure");
    assert_eq!(meta(&e[0], "reason"), Some("bad_signature"));
    assert_eq!(e[0].user, s.server().state().audit.hash_user("alice"));
    // Never the token, nor its signature.
    let sig = forged.rsplit('.').next().unwrap();
    for (k, v) in &e[0].metadata {
        assert!(!k.contains(sig) && !v.contains(sig), "{e:?}");
    }
}

#[tokio::test]
async fn refresh_before_auth_is_not_authenticated() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    refresh(&mut c, &token("alice")).await;
    c.expect_error("not_authenticated").await;
    // The socket can still authenticate.
    c.auth(&token("alice")).await;
}

#[tokio::test]
async fn refresh_counts_against_the_auth_rate_limit() {
    let s = TestServer::start_with(|c| {
        c.rate_limits.auth.points = 2;
        c.rate_limits.auth.duration_secs = 60;
    })
    .await;
    let mut c = s.authed("alice").await;
    refresh(&mut c, &token_until("alice", now_secs() + 3600, "r1")).await;
    c.expect("token_refreshed").await;
    refresh(&mut c, &token_until("alice", now_secs() + 3600, "r2")).await;
    let e = c.expect_error("auth_rate_limited").await;
    assert!(e["retryAfterMs"].as_u64().unwrap() > 0, "{e}");
}

#[tokio::test]
async fn revoking_the_new_token_after_a_refresh_closes_the_socket() {
    let s = TestServer::start().await;
    let mut c = s.authed("alice").await;
    let new = token_until("alice", now_secs() + 3600, "new");
    refresh(&mut c, &new).await;
    c.expect("token_refreshed").await;
    cli_ok(s.dir.path(), &["revoke", "--token", &new]).await;
    assert_eq!(
        c.expect_close().await,
        Closed {
            code: 4003,
            reason: "Token revoked".into()
        }
    );
}

#[tokio::test]
async fn revoking_the_old_token_after_a_refresh_closes_the_socket_too() {
    let s = TestServer::start().await;
    let old = token_until("alice", now_secs() + 3600, "old");
    let mut c = s.client().await;
    c.auth(&old).await;
    refresh(&mut c, &token_until("alice", now_secs() + 3600, "new")).await;
    c.expect("token_refreshed").await;
    cli_ok(s.dir.path(), &["revoke", "--token", &old]).await;
    assert_eq!(c.expect_close().await.code, 4003);
}

#[tokio::test]
async fn a_socket_refreshed_onto_a_roomgate_access_token_ends_with_its_login() {
    let s = TestServer::start().await;
    // The socket starts on a token from elsewhere, then moves onto roomgate's own.
    let mut c = s.authed("admin").await;
    let login = post_json(
        s.addr,
        "/auth/login",
        &json!({"username": "admin", "password": ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let login = login.json();
    let access = login["access_token"].as_str().unwrap();
    refresh(&mut c, access).await;
    let refreshed = c.expect("token_refreshed").await;
    let exp = jwt_claims(access)["exp"].as_u64().unwrap();
    assert_eq!(refreshed["data"]["expiresAt"], exp * 1000);

    // Rotating the refresh token and then reusing the old one revokes the whole login
    // (its `family:` key), though this access token itself was never named.
    let r1 = login["refresh_token"].as_str().unwrap();
    let rotated = post_json(s.addr, "/auth/refresh", &json!({"refresh_token": r1})).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let reuse = post_json(s.addr, "/auth/refresh", &json!({"refresh_token": r1})).await;
    assert_eq!(reuse.status, 401, "{}", reuse.body);
    assert_eq!(
        c.expect_close().await,
        Closed {
            code: 4003,
            reason: "Token revoked".into()
        }
    );
}

#[tokio::test]
async fn roles_changed_in_the_store_apply_at_once_and_survive_a_refresh() {
    let s = TestServer::start().await;
    let dir = s.dir.path();
    cli_ok(
        dir,
        &[
            "room", "create", "vip", "--read", "editor", "--write", "editor",
        ],
    )
    .await;
    let mut c = s.authed("alice").await;
    c.send("join", json!({"roomId": "vip"})).await;
    c.expect_error("insufficient_permissions").await;

    cli_ok(dir, &["user", "roles", "alice", "--set", "editor"]).await;
    // The open socket re-reads its roles when they change; no refresh is needed.
    c.join("vip").await;
    refresh(&mut c, &token_until("alice", now_secs() + 3600, "roles")).await;
    c.expect("token_refreshed").await;
    c.say("vip", "hello editors").await;
    let m = c.expect("message").await;
    assert_eq!(m["data"]["content"], "hello editors");
}

// ---------------------------------------------------------------------------------------
// 4. Resuming with `auth {wsToken}`
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn auth_with_a_ws_token_key_resumes_the_session() {
    let s = TestServer::start().await;
    let mut first = s.client().await;
    let ok = first.auth(&token("alice")).await;
    let w = ok["wsToken"].as_str().unwrap().to_string();
    let sid = jwt_claims(&w)["sessionId"].clone();
    assert!(sid.is_string());
    first.vanish().await;

    let mut c = s.client().await;
    c.send("auth", json!({ "wsToken": w })).await;
    let ok = c.recv().await;
    assert_eq!(ok["type"], "auth_success", "{ok}");
    assert_eq!(ok["data"]["user"]["userId"], "alice");
    let w2 = ok["data"]["wsToken"].as_str().unwrap();
    assert_eq!(jwt_claims(w2)["sessionId"], sid);
    c.join("lobby").await;
}

/// A token already past its `exp` but inside the leeway is accepted and the socket
/// closes at once; `auth_success` and `token_expiring` still reach the client before the
/// 4001 close. (The frame the writer had taken off the queue when the already-due expiry
/// timer won its select used to vanish with the write.)
#[tokio::test]
async fn a_token_accepted_inside_the_leeway_is_answered_before_the_close() {
    let s = TestServer::start_with(|c| {
        c.rate_limits.auth = roomgate::config::Quota {
            points: 100,
            duration_secs: 60,
        }
    })
    .await;
    for i in 0..30 {
        let exp = now_secs() - 10;
        let t = token_until("alice", exp, &format!("late-{i}"));
        let mut c = s.client().await;
        auth_short(&mut c, &t, exp).await;
        expect_expired_close(&mut c).await;
    }
}
