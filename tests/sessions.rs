//! A WebSocket session's lifetime and its one live socket: a socket resumed with a
//! `wsToken` lives no longer than the access token that opened (or last refreshed) the
//! session, gets `token_expiring` and the 4001 close at that token's `exp`, and a resume
//! after it is refused; an in-band `refresh` on a resumed socket extends the session;
//! resuming a session whose socket is still open closes the older socket with 4005 and
//! records a `session_resumed_elsewhere` security event.

mod common;

use std::time::Duration;

use common::*;
use roomgate::protocol::now_ms;
use serde_json::json;

/// Allowance for the difference between the server's monotonic timers and the wall clock.
const CLOCK_SLACK_MS: u64 = 100;

/// A shared-secret token for `sub` expiring at `exp` (seconds), unique to `tag`.
fn token_until(sub: &str, exp: u64, tag: &str) -> String {
    token_with(json!({
        "sub": sub,
        "email": format!("{sub}@example.com"),
        "iat": now_secs(),
        "exp": exp,
        "jti": tag,
    }))
}

/// Waits (the test is about time passing) until the wall clock reads `at_ms`.
async fn sleep_until_ms(at_ms: u64) {
    tokio::time::sleep(Duration::from_millis(at_ms.saturating_sub(now_ms()))).await;
}

/// Sends `auth` with `token` and expects `auth_success` followed by `token_expiring`
/// for `exp` (the remaining life is below the notice period); returns the wsToken.
async fn auth_expiring(c: &mut Client, token: &str, exp: u64) -> String {
    let ok = c.auth(token).await;
    let notice = c.recv().await;
    assert_eq!(notice["type"], "token_expiring", "{notice}");
    assert_eq!(notice["data"]["expiresAt"], exp * 1000, "{notice}");
    ok["wsToken"].as_str().expect("wsToken").to_string()
}

/// The socket is still open and served.
async fn assert_alive(c: &mut Client) {
    c.send("heartbeat", json!({})).await;
    c.expect("heartbeat_response").await;
}

fn session_of(ws_token: &str) -> String {
    jwt_claims(ws_token)["sessionId"]
        .as_str()
        .expect("sessionId")
        .to_string()
}

#[tokio::test]
async fn a_resumed_socket_closes_at_the_original_tokens_exp_and_a_later_resume_is_refused() {
    let s = TestServer::start_with(|c| {
        c.auth.leeway_secs = 1;
        c.auth.expiry_grace_secs = 0;
    })
    .await;
    let exp = now_secs() + 3;
    let mut first = s.client().await;
    let w = auth_expiring(&mut first, &token_until("alice", exp, "short"), exp).await;
    first.vanish().await;

    // The resumed socket is told the original token's expiry, and closed at it.
    let mut resumed = s.client().await;
    let w2 = auth_expiring(&mut resumed, &w, exp).await;
    assert_eq!(session_of(&w2), session_of(&w));
    assert_alive(&mut resumed).await;
    let closed = resumed.expect_close().await;
    let at = now_ms();
    assert_eq!(
        closed,
        Closed {
            code: 4001,
            reason: "Token expired".into()
        }
    );
    assert!(
        at + CLOCK_SLACK_MS >= exp * 1000,
        "closed at {at}, exp {exp}"
    );
    assert!(
        at <= exp * 1000 + 2000,
        "closed at {at}, long after exp {exp}"
    );
    let expired = events(&s, "token_expired").await;
    assert_eq!(expired.len(), 1, "{expired:?}");

    // After exp plus the leeway, neither wsToken resumes the session.
    sleep_until_ms((exp + 1) * 1000 + 200).await;
    for w in [&w, &w2] {
        let mut c = s.client().await;
        c.send("auth", json!({ "token": w })).await;
        c.expect_error("auth_failed").await;
    }
    let refusals: Vec<_> = events(&s, "websocket_auth")
        .await
        .into_iter()
        .filter(|e| e.result == "failure")
        .collect();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    for e in &refusals {
        assert_eq!(meta(e, "reason"), Some("session_expired"), "{e:?}");
    }
}

#[tokio::test]
async fn refresh_on_a_resumed_socket_extends_the_session() {
    let s = TestServer::start_with(|c| {
        c.auth.leeway_secs = 0;
        c.auth.expiry_grace_secs = 0;
    })
    .await;
    let exp1 = now_secs() + 3;
    let mut first = s.client().await;
    let w = auth_expiring(&mut first, &token_until("alice", exp1, "one"), exp1).await;
    first.vanish().await;
    let mut resumed = s.client().await;
    let w = auth_expiring(&mut resumed, &w, exp1).await;

    let exp2 = now_secs() + 30;
    resumed
        .send(
            "refresh",
            json!({ "token": token_until("alice", exp2, "two") }),
        )
        .await;
    let refreshed = resumed.expect("token_refreshed").await;
    assert_eq!(refreshed["data"]["expiresAt"], exp2 * 1000);
    // The new expiry is in the session record, not only in this socket's timer.
    let record = s
        .server()
        .state()
        .store
        .session(&session_of(&w))
        .unwrap()
        .expect("session");
    assert_eq!(record.token_exp, exp2);

    // Past the first token's exp the resumed socket is open, and the session resumes
    // again, now living on the refreshed token.
    sleep_until_ms(exp1 * 1000 + 1500).await;
    assert_alive(&mut resumed).await;
    resumed.vanish().await;
    let mut again = s.client().await;
    auth_expiring(&mut again, &w, exp2).await;
    assert_alive(&mut again).await;
}

#[tokio::test]
async fn resuming_a_live_session_closes_the_older_socket_with_4005() {
    let s = TestServer::start().await;
    let mut first = s.client().await;
    let ok = first.auth(&token("alice")).await;
    let w = ok["wsToken"].as_str().unwrap().to_string();
    first.join("lobby").await;

    // The wsToken is used elsewhere while its owner is connected.
    let mut second = s.client().await;
    let ok2 = second.auth(&w).await;
    let w2 = ok2["wsToken"].as_str().unwrap().to_string();
    assert_eq!(session_of(&w2), session_of(&w));
    let closed = first.expect_close().await;
    assert_eq!(
        closed,
        Closed {
            code: 4005,
            reason: "Session resumed elsewhere".into()
        }
    );
    assert_alive(&mut second).await;

    // Again, from the second socket's own wsToken: the second is closed the same way.
    let mut third = s.client().await;
    third.auth(&w2).await;
    let closed = second.expect_close().await;
    assert_eq!(closed.code, 4005);
    assert_alive(&mut third).await;
    third.join("lobby").await;

    let e = events(&s, "session_resumed_elsewhere").await;
    assert_eq!(e.len(), 2, "{e:?}");
    let hash = s.server().state().audit.hash_user("alice");
    for event in &e {
        assert_eq!(event.user, hash);
        assert_eq!(event.result, "failure");
        assert!(meta(event, "connectionId").is_some(), "{event:?}");
        assert_eq!(meta(event, "clientIp"), Some("127.0.0.1"), "{event:?}");
        assert_eq!(meta(event, "closed"), Some("1"), "{event:?}");
    }
    // The displaced sockets did not end the session: it still resumes.
    third.vanish().await;
    let registry = s.server().state().registry.clone();
    eventually("the dropped socket is gone", || {
        registry.user_connections("alice") == 0
    })
    .await;
    let mut fourth = s.client().await;
    let ok4 = fourth.auth(&w2).await;
    assert_eq!(session_of(ok4["wsToken"].as_str().unwrap()), session_of(&w));
    // A resume of a session nobody holds displaces nothing and records no event.
    assert_eq!(events(&s, "session_resumed_elsewhere").await.len(), 2);
}
