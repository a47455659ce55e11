//! Authentication end to end: JWT verification rules, roles, sessions and their
//! `wsToken` resumption, revocation (live, offline, across restarts), the auth and
//! inactivity timeouts, token expiry on a live socket, the per-user connection cap, and
//! the security events `auth` leaves behind.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use roomgate::auth::digest_key;
use roomgate::protocol::now_ms;
use roomgate::store::EventFilter;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Unpadded base64url, as JWTs use.
fn b64url(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(B64URL[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A hand-made JWT: `header.payload.` plus an HMAC-SHA256 signature when `hs256_key` is given.
fn craft(header: &Value, claims: &Value, hs256_key: Option<&str>) -> String {
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = match hs256_key {
        Some(key) => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap();
            mac.update(signing_input.as_bytes());
            b64url(&mac.finalize().into_bytes())
        }
        None => String::new(),
    };
    format!("{signing_input}.{sig}")
}

/// Standard claims valid for an hour, plus `extra`.
fn claims_for(sub: &str, extra: Value) -> Value {
    let mut c = json!({
        "sub": sub,
        "email": format!("{sub}@example.com"),
        "iat": now_secs(),
        "exp": now_secs() + 3600,
    });
    for (k, v) in extra.as_object().expect("object").clone() {
        c[k] = v;
    }
    c
}

/// A token unique to `tag` (tokens minted in the same second are otherwise identical).
fn token_tagged(sub: &str, tag: &str) -> String {
    token_with(claims_for(sub, json!({ "nonce": tag })))
}

/// A fresh connection sends `auth {token}` and must be refused with `code`; returns the error data.
async fn refused(s: &TestServer, token: &str, code: &str) -> Value {
    let mut c = s.client().await;
    c.send("auth", json!({ "token": token })).await;
    c.expect_error(code).await
}

/// A fresh connection that authenticates with `token`; returns it and the `auth_success` data.
async fn accepted(s: &TestServer, token: &str) -> (Client, Value) {
    let mut c = s.client().await;
    let ok = c.auth(token).await;
    (c, ok)
}

/// Polls `cond` until it holds, failing after [`WAIT`].
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn cli_ok(dir: &Path, args: &[&str]) -> String {
    let (ok, out, err) = run_cli(dir, args).await;
    assert!(ok, "roomgate {args:?} failed: {err}");
    out
}

/// Asserts the socket is still open and served: a heartbeat is answered.
async fn assert_alive(c: &mut Client) {
    c.send("heartbeat", json!({})).await;
    c.expect("heartbeat_response").await;
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Which files under `dir` contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| contains(&std::fs::read(p).expect("read"), needle.as_bytes()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. JWT verification
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn hs256_token_with_configured_secret_is_accepted() {
    let s = TestServer::start().await;
    let (_c, ok) = accepted(&s, &token("alice")).await;
    assert_eq!(ok["user"]["userId"], "alice");
    assert_eq!(ok["user"]["email"], "alice@example.com");

    // The same claims signed by hand (checks the helpers the `alg: none` test relies on).
    let hand = craft(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &claims_for("hand", json!({})),
        Some(JWT_SECRET),
    );
    let (_c2, ok) = accepted(&s, &hand).await;
    assert_eq!(ok["user"]["userId"], "hand");
}

#[tokio::test]
async fn token_signed_with_another_secret_is_refused() {
    let s = TestServer::start().await;
    let forged = sign(
        &claims_for("mallory", json!({})),
        "some-other-secret-0123456789",
    );
    let e = refused(&s, &forged, "auth_failed").await;
    assert_eq!(e["message"], "Authentication failed");

    // A client JWT signed with the WS secret is not a wsToken either.
    let ws_signed = sign(&claims_for("mallory", json!({})), WS_SECRET);
    let e = refused(&s, &ws_signed, "auth_failed").await;
    assert_eq!(e["message"], "Authentication failed");
}

#[tokio::test]
async fn alg_none_tokens_are_refused() {
    let s = TestServer::start_with(|c| c.rate_limits.enabled = false).await;
    let claims = claims_for("mallory", json!({}));
    for alg in ["none", "None", "NONE", "nOnE"] {
        let t = craft(&json!({"alg": alg, "typ": "JWT"}), &claims, None);
        assert!(t.ends_with('.'), "empty signature: {t}");
        let e = refused(&s, &t, "auth_failed").await;
        assert_eq!(e["message"], "Authentication failed");
    }
    // An HS256 header with the signature stripped is no better.
    let stripped = craft(&json!({"alg": "HS256", "typ": "JWT"}), &claims, None);
    refused(&s, &stripped, "auth_failed").await;
    // The server still accepts the same claims when they are properly signed.
    let good = craft(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &claims,
        Some(JWT_SECRET),
    );
    accepted(&s, &good).await;
}

#[tokio::test]
async fn other_hmac_algorithms_are_refused_even_with_the_right_secret() {
    let s = TestServer::start().await;
    for alg in [Algorithm::HS512, Algorithm::HS384] {
        let t = jsonwebtoken::encode(
            &Header::new(alg),
            &claims_for("alice", json!({})),
            &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .unwrap();
        let e = refused(&s, &t, "auth_failed").await;
        assert_eq!(e["message"], "Authentication failed");
    }
}

#[tokio::test]
async fn exp_and_sub_are_required() {
    let s = TestServer::start().await;
    let no_exp = token_with(json!({"sub": "alice", "iat": now_secs()}));
    refused(&s, &no_exp, "auth_failed").await;
    let no_sub = token_with(json!({"iat": now_secs(), "exp": now_secs() + 3600}));
    refused(&s, &no_sub, "auth_failed").await;
    let empty_sub = token_with(json!({"sub": "", "exp": now_secs() + 3600}));
    refused(&s, &empty_sub, "auth_failed").await;
    let numeric_sub = token_with(json!({"sub": 42, "exp": now_secs() + 3600}));
    refused(&s, &numeric_sub, "auth_failed").await;
}

#[tokio::test]
async fn expiry_is_checked_with_the_leeway() {
    let s = TestServer::start().await;
    // Expired 10 s ago: inside the default 30 s leeway.
    let recent =
        token_with(json!({"sub": "alice", "iat": now_secs() - 60, "exp": now_secs() - 10}));
    let (_c, ok) = accepted(&s, &recent).await;
    assert_eq!(ok["user"]["userId"], "alice");
    // Expired 120 s ago: beyond it.
    let old = token_with(json!({"sub": "alice", "iat": now_secs() - 600, "exp": now_secs() - 120}));
    let e = refused(&s, &old, "auth_failed").await;
    assert_eq!(e["message"], "Authentication failed");
}

#[tokio::test]
async fn zero_leeway_refuses_a_just_expired_token() {
    let s = TestServer::start_with(|c| c.auth.leeway_secs = 0).await;
    let t = token_with(json!({"sub": "alice", "exp": now_secs() - 10}));
    refused(&s, &t, "auth_failed").await;
}

#[tokio::test]
async fn nbf_in_the_future_is_refused() {
    let s = TestServer::start().await;
    let early = token_with(claims_for("alice", json!({"nbf": now_secs() + 120})));
    refused(&s, &early, "auth_failed").await;
    // nbf within the leeway, and in the past, are fine.
    let skewed = token_with(claims_for("alice", json!({"nbf": now_secs() + 10})));
    accepted(&s, &skewed).await;
    let past = token_with(claims_for("alice", json!({"nbf": now_secs() - 10})));
    accepted(&s, &past).await;
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let s = TestServer::start_with(|c| {
        c.auth.issuer = Some("https://idp.example".into());
        c.auth.audience = Some("roomgate".into());
    })
    .await;
    let iss = "https://idp.example";
    let cases = [
        json!({"aud": "roomgate"}),
        json!({"iss": "https://evil.example", "aud": "roomgate"}),
        json!({"iss": iss}),
        json!({"iss": iss, "aud": "someone-else"}),
        json!({"iss": iss, "aud": ["someone-else"]}),
    ];
    for extra in cases {
        let t = token_with(claims_for("alice", extra.clone()));
        let e = refused(&s, &t, "auth_failed").await;
        assert_eq!(e["message"], "Authentication failed", "{extra}");
    }
    let (_c, ok) = accepted(
        &s,
        &token_with(claims_for("alice", json!({"iss": iss, "aud": "roomgate"}))),
    )
    .await;
    assert_eq!(ok["user"]["userId"], "alice");
    // The audience may be one of several.
    accepted(
        &s,
        &token_with(claims_for(
            "alice",
            json!({"iss": iss, "aud": ["other", "roomgate"]}),
        )),
    )
    .await;
}

#[tokio::test]
async fn issuer_and_audience_are_not_required_when_unset() {
    let s = TestServer::start().await;
    let t = token_with(claims_for(
        "alice",
        json!({"iss": "https://anything.example", "aud": "whatever"}),
    ));
    accepted(&s, &t).await;
}

#[tokio::test]
async fn oversize_tokens_are_refused_before_parsing() {
    let s = TestServer::start_with(|c| c.auth.max_token_bytes = 512).await;
    // Garbage one byte over the limit: too large, not a parse failure.
    let garbage = "x".repeat(513);
    let e = refused(&s, &garbage, "token_too_large").await;
    assert_eq!(e["message"], "Authentication failed");
    // The same garbage at exactly the limit is parsed, and fails as a bad token.
    refused(&s, &"x".repeat(512), "auth_failed").await;
    // A correctly signed token over the limit is refused too.
    let big = token_with(claims_for("alice", json!({"pad": "p".repeat(600)})));
    assert!(big.len() > 512);
    refused(&s, &big, "token_too_large").await;

    s.server().state().audit.sync().await;
    let events = s
        .server()
        .state()
        .store
        .events(&EventFilter {
            action: Some("websocket_auth".into()),
            ..EventFilter::default()
        })
        .unwrap();
    let reasons: Vec<&str> = events
        .iter()
        .filter_map(|e| e.metadata.iter().find(|(k, _)| k == "reason"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "token_too_large").count(),
        2,
        "{reasons:?}"
    );
}

#[tokio::test]
async fn default_size_limit_is_8192_bytes() {
    let s = TestServer::start().await;
    refused(&s, &"y".repeat(8193), "token_too_large").await;
}

#[tokio::test]
async fn missing_or_empty_token_is_token_required() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    for data in [json!({}), json!({"token": ""}), json!({"token": null})] {
        c.send("auth", data.clone()).await;
        let e = c.expect_error("token_required").await;
        assert_eq!(e["message"], "Token required", "{data}");
    }
    // The socket is still usable.
    c.auth(&token("alice")).await;
}

#[tokio::test]
async fn second_auth_is_already_authenticated_and_keeps_the_first_identity() {
    let s = TestServer::start().await;
    let mut c = s.authed("alice").await;
    c.send("auth", json!({"token": token("bob")})).await;
    let e = c.expect_error("already_authenticated").await;
    assert_eq!(e["message"], "Already authenticated");
    // Even an invalid token gets the same answer: the socket is authenticated.
    c.send("auth", json!({"token": "garbage"})).await;
    c.expect_error("already_authenticated").await;
    let joined = c.join("who").await;
    assert_eq!(joined["participants"], json!(["alice"]));
}

#[tokio::test]
async fn a_failed_auth_can_be_retried_on_the_same_socket() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    c.send(
        "auth",
        json!({"token": sign(&claims_for("alice", json!({})), "wrong")}),
    )
    .await;
    c.expect_error("auth_failed").await;
    c.send("join", json!({"roomId": "r"})).await;
    c.expect_error("not_authenticated").await;
    let ok = c.auth(&token("alice")).await;
    assert_eq!(ok["user"]["userId"], "alice");
}

// ---------------------------------------------------------------------------------------
// 2. Roles
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn roles_come_from_the_store_plus_defaults() {
    let s = TestServer::start().await;
    let store = &s.server().state().store;
    store
        .set_user_roles("dave", vec!["moderator".into(), "user".into()], now_ms())
        .unwrap();
    let (_c, ok) = accepted(&s, &token("dave")).await;
    assert_eq!(ok["user"]["roles"], json!(["user", "moderator"]));
    // A user without stored roles has the defaults only.
    let (_c, ok) = accepted(&s, &token("erin")).await;
    assert_eq!(ok["user"]["roles"], json!(["user"]));
}

#[tokio::test]
async fn roles_set_with_the_cli_apply_to_the_next_auth() {
    let s = TestServer::start().await;
    let (_c, ok) = accepted(&s, &token_tagged("carol", "1")).await;
    assert_eq!(ok["user"]["roles"], json!(["user"]));
    cli_ok(
        s.dir.path(),
        &["user", "roles", "carol", "--set", "user,admin"],
    )
    .await;
    let (_c2, ok) = accepted(&s, &token_tagged("carol", "2")).await;
    assert_eq!(ok["user"]["roles"], json!(["user", "admin"]));
}

#[tokio::test]
async fn configured_default_roles_apply() {
    let s = TestServer::start_with(|c| c.auth.default_roles = vec!["member".into()]).await;
    s.server()
        .state()
        .store
        .set_user_roles("dave", vec!["editor".into()], now_ms())
        .unwrap();
    let (_c, ok) = accepted(&s, &token("dave")).await;
    assert_eq!(ok["user"]["roles"], json!(["member", "editor"]));
}

#[tokio::test]
async fn role_claims_are_ignored_by_default() {
    let s = TestServer::start().await;
    let t = token_with(claims_for(
        "mallory",
        json!({"roles": ["admin", "superuser"]}),
    ));
    let (mut c, ok) = accepted(&s, &t).await;
    assert_eq!(ok["user"]["roles"], json!(["user"]));
    // And they grant nothing: an admin-only room stays closed.
    cli_ok(
        s.dir.path(),
        &[
            "room", "create", "ops", "--read", "admin", "--write", "admin",
        ],
    )
    .await;
    c.send("join", json!({"roomId": "ops"})).await;
    c.expect_error("insufficient_permissions").await;
}

#[tokio::test]
async fn role_claims_are_used_when_trusted() {
    let s = TestServer::start_with(|c| c.auth.trust_role_claims = true).await;
    s.server()
        .state()
        .store
        .set_user_roles("frank", vec!["editor".into()], now_ms())
        .unwrap();
    let t = token_with(claims_for("frank", json!({"roles": ["admin", "user", 7]})));
    let (_c, ok) = accepted(&s, &t).await;
    assert_eq!(ok["user"]["roles"], json!(["user", "editor", "admin"]));
}

// ---------------------------------------------------------------------------------------
// 3. Sessions
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn auth_writes_a_session_record() {
    let s = TestServer::start_with(|c| c.auth.token_expiry_secs = 120).await;
    s.server()
        .state()
        .store
        .set_user_roles("alice", vec!["admin".into()], now_ms())
        .unwrap();
    let mut c = Client::connect(&s.url()).await;
    let hs = c.expect("handshake").await;
    let connection_id = hs["data"]["connectionId"].as_str().unwrap().to_string();
    let before = now_ms();
    let ok = c.auth(&token("alice")).await;
    let after = now_ms();

    let ws_token = ok["wsToken"].as_str().unwrap();
    let claims = jwt_claims(ws_token);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["type"], "websocket");
    let sid = claims["sessionId"].as_str().expect("sessionId").to_string();
    assert!(is_hex(&sid, 64), "session id {sid}");

    let rec = s
        .server()
        .state()
        .store
        .session(&sid)
        .unwrap()
        .expect("session stored");
    assert_eq!(rec.session_id, sid);
    assert_eq!(rec.user_id, "alice");
    assert_eq!(rec.email.as_deref(), Some("alice@example.com"));
    assert_eq!(rec.connection_id, connection_id);
    assert_eq!(rec.roles, vec!["user".to_string(), "admin".to_string()]);
    assert_eq!(rec.client_ip, "127.0.0.1");
    assert!(
        before <= rec.created_ms && rec.created_ms <= after,
        "{rec:?}"
    );
    assert_eq!(rec.expires_ms, rec.created_ms + 120_000);
    // The wsToken lives as long as the session.
    let exp = claims["exp"].as_u64().unwrap();
    assert!(
        exp.abs_diff(rec.expires_ms / 1000) <= 1,
        "exp {exp} vs {rec:?}"
    );
    // Every auth gets its own session.
    let (_c2, ok2) = accepted(&s, &token("alice")).await;
    let sid2 = jwt_claims(ok2["wsToken"].as_str().unwrap())["sessionId"].clone();
    assert_ne!(sid2, json!(sid));
}

#[tokio::test]
async fn ws_token_resumes_the_session_also_after_a_restart() {
    let s = TestServer::start().await;
    s.server()
        .state()
        .store
        .set_user_roles("alice", vec!["admin".into()], now_ms())
        .unwrap();
    let (first, ok) = accepted(&s, &token("alice")).await;
    let w1 = ok["wsToken"].as_str().unwrap().to_string();
    let sid = jwt_claims(&w1)["sessionId"].as_str().unwrap().to_string();
    // Dropped, not closed: a normal close would end the session.
    first.vanish().await;

    // A new connection resumes with the wsToken.
    let mut c = Client::connect(&s.url()).await;
    let hs = c.expect("handshake").await;
    let ok = c.auth(&w1).await;
    assert_eq!(ok["user"]["userId"], "alice");
    assert_eq!(ok["user"]["email"], "alice@example.com");
    assert_eq!(ok["user"]["roles"], json!(["user", "admin"]));
    let w2 = ok["wsToken"].as_str().unwrap().to_string();
    assert_eq!(jwt_claims(&w2)["sessionId"], json!(sid));
    let rec = s.server().state().store.session(&sid).unwrap().unwrap();
    assert_eq!(
        rec.connection_id,
        hs["data"]["connectionId"].as_str().unwrap()
    );
    c.join("lobby").await;
    c.vanish().await;

    // After a restart on the same data root, both wsTokens still resume it.
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |_| {}).await;
    for w in [&w2, &w1] {
        let (c, ok) = accepted(&s, w).await;
        assert_eq!(ok["user"]["userId"], "alice");
        assert_eq!(
            jwt_claims(ok["wsToken"].as_str().unwrap())["sessionId"],
            json!(sid)
        );
        c.vanish().await;
    }
}

#[tokio::test]
async fn a_normal_close_ends_the_session_and_other_ends_keep_it() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    // Reads the server's echo of the close, then the end of the stream.
    async fn drain(c: &mut Client) {
        let end = async { while c.ws.next().await.is_some() {} };
        tokio::time::timeout(WAIT, end)
            .await
            .expect("the server closes");
    }
    let s = TestServer::start().await;
    let store = || s.server().state().store.clone();
    let session_of = |ok: &Value| {
        jwt_claims(ok["wsToken"].as_str().unwrap())["sessionId"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // A close frame without a code (a browser's close()) and one with 1000 (the seed's
    // disconnect()) end the session: its wsToken no longer resumes anything.
    for code in [None, Some(CloseCode::Normal)] {
        let (mut c, ok) = accepted(&s, &token("alice")).await;
        let (w, sid) = (ok["wsToken"].as_str().unwrap().to_string(), session_of(&ok));
        let frame = code.map(|code| CloseFrame {
            code,
            reason: "Client disconnect".into(),
        });
        c.ws.send(Message::Close(frame)).await.unwrap();
        drain(&mut c).await;
        wait_until("the session is deleted", || {
            store().session(&sid).unwrap().is_none()
        })
        .await;
        refused(&s, &w, "auth_failed").await;
    }

    // A dropped connection and a close with any other code (1001, a page navigating
    // away) keep it resumable.
    let (c, ok) = accepted(&s, &token("alice")).await;
    let (w, sid) = (ok["wsToken"].as_str().unwrap().to_string(), session_of(&ok));
    c.vanish().await;
    let (mut c, ok) = accepted(&s, &w).await;
    assert_eq!(session_of(&ok), sid);
    let w = ok["wsToken"].as_str().unwrap().to_string();
    c.ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "".into(),
    })))
    .await
    .unwrap();
    drain(&mut c).await;
    let (mut a, ok) = accepted(&s, &w).await;
    assert_eq!(session_of(&ok), sid);

    // A socket displaced by a resume of its session (4005) leaves the session to the
    // new socket, even when its client then closes normally; the new socket's normal
    // close ends it.
    let (b, _) = accepted(&s, &w).await;
    assert_eq!(a.expect_close().await.code, 4005);
    a.close().await;
    assert!(store().session(&sid).unwrap().is_some());
    b.close().await;
    wait_until("the session is deleted", || {
        store().session(&sid).unwrap().is_none()
    })
    .await;
    refused(&s, &w, "auth_failed").await;
}

#[tokio::test]
async fn ws_token_of_another_server_key_or_tampered_is_refused() {
    let s = TestServer::start().await;
    let (_c, ok) = accepted(&s, &token("alice")).await;
    let w = ok["wsToken"].as_str().unwrap();
    let sid = jwt_claims(w)["sessionId"].clone();
    // Claims of a wsToken, signed with the client JWT secret, do not resume anything.
    let forged = token_with(json!({
        "sub": "alice", "sessionId": sid, "type": "websocket",
        "iat": now_secs(), "exp": now_secs() + 3600,
    }));
    refused(&s, &forged, "auth_failed").await;
    // A wsToken for another user's session (signed with the WS key) is refused.
    let stolen = sign(
        &json!({
            "sub": "mallory", "sessionId": sid, "type": "websocket",
            "iat": now_secs(), "exp": now_secs() + 3600,
        }),
        WS_SECRET,
    );
    refused(&s, &stolen, "auth_failed").await;
    // And one for a session that never existed.
    let unknown = sign(
        &json!({
            "sub": "alice", "sessionId": "ab".repeat(32), "type": "websocket",
            "iat": now_secs(), "exp": now_secs() + 3600,
        }),
        WS_SECRET,
    );
    refused(&s, &unknown, "auth_failed").await;
}

#[tokio::test]
async fn ws_token_is_refused_once_the_user_is_revoked() {
    let s = TestServer::start().await;
    let (c, ok) = accepted(&s, &token("alice")).await;
    let w = ok["wsToken"].as_str().unwrap().to_string();
    let sid = jwt_claims(&w)["sessionId"].as_str().unwrap().to_string();
    c.close().await;
    cli_ok(s.dir.path(), &["revoke", "--user", "alice"]).await;
    assert!(
        s.server().state().store.session(&sid).unwrap().is_none(),
        "session deleted"
    );
    let e = refused(&s, &w, "token_revoked").await;
    assert_eq!(e["message"], "Token has been revoked");
}

#[tokio::test]
async fn ws_token_is_refused_once_the_original_token_is_revoked() {
    let s = TestServer::start().await;
    let t = token("alice");
    let (c, ok) = accepted(&s, &t).await;
    let w1 = ok["wsToken"].as_str().unwrap().to_string();
    let sid = jwt_claims(&w1)["sessionId"].as_str().unwrap().to_string();
    c.vanish().await;
    // Resume, and resume again from the resumed socket's wsToken: the session has been
    // rewritten by resumptions, two generations away from the original token.
    // (The second resume closes the first socket: one session, one live socket.)
    let (mut gen1, ok) = accepted(&s, &w1).await;
    let w2 = ok["wsToken"].as_str().unwrap().to_string();
    let (mut gen2, ok) = accepted(&s, &w2).await;
    let w3 = ok["wsToken"].as_str().unwrap().to_string();
    assert_eq!(jwt_claims(&w3)["sessionId"], json!(sid));
    assert_eq!(gen1.expect_close().await.code, 4005);

    cli_ok(s.dir.path(), &["revoke", "--token", &t]).await;
    // The socket descending from the revoked token is closed...
    assert_eq!(
        gen2.expect_close().await,
        Closed {
            code: 4003,
            reason: "Token revoked".into()
        }
    );
    // ...the session is gone...
    let gone = s.server().state().store.session(&sid).unwrap();
    assert!(gone.is_none(), "session survived revocation: {gone:?}");
    // ...and no wsToken descending from it resumes anything.
    for w in [&w1, &w2, &w3] {
        let mut c = s.client().await;
        c.send("auth", json!({"token": w})).await;
        let v = c.recv().await;
        assert_eq!(v["type"], "error", "resumed after revocation: {v}");
        let code = v["data"]["code"].as_str().unwrap();
        assert!(
            code == "auth_failed" || code == "token_revoked",
            "unexpected error {v}"
        );
    }
}

#[tokio::test]
async fn revoking_a_ws_token_ends_its_whole_session() {
    let s = TestServer::start().await;
    let t = token("alice");
    let (_first, ok) = accepted(&s, &t).await;
    let w1 = ok["wsToken"].as_str().unwrap().to_string();
    let sid = jwt_claims(&w1)["sessionId"].as_str().unwrap().to_string();
    // Two resumes of the session, each with its own sibling wsToken; each closes the
    // socket before it (4005).
    let (mut a, ok) = accepted(&s, &w1).await;
    let w2 = ok["wsToken"].as_str().unwrap().to_string();
    let (mut b, _) = accepted(&s, &w2).await;
    assert_eq!(a.expect_close().await.code, 4005);

    cli_ok(s.dir.path(), &["revoke", "--token", &w1]).await;
    assert_eq!(b.expect_close().await.code, 4003);
    assert!(s.server().state().store.session(&sid).unwrap().is_none());
    // The sibling wsToken, never itself revoked, resumes nothing.
    refused(&s, &w2, "auth_failed").await;
}

// ---------------------------------------------------------------------------------------
// 4. Revocation
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn revoke_token_closes_its_sockets_and_refuses_it() {
    let s = TestServer::start().await;
    let t = token_tagged("alice", "revoked");
    let other = token_tagged("alice", "kept");
    let (mut a, _) = accepted(&s, &t).await;
    // A socket resumed from a session of the token goes too.
    let (dropped, ok) = accepted(&s, &t).await;
    let w = ok["wsToken"].as_str().unwrap().to_string();
    dropped.vanish().await;
    let (mut resumed, _) = accepted(&s, &w).await;
    let (mut b, _) = accepted(&s, &other).await;
    let registry = s.server().state().registry.clone();
    wait_until("the dropped socket is gone", || {
        registry.user_connections("alice") == 3
    })
    .await;

    let out = cli_ok(s.dir.path(), &["revoke", "--token", &t]).await;
    let reply: Value = serde_json::from_str(&out).expect("JSON reply");
    assert_eq!(reply["closedConnections"], 2, "{reply}");

    for c in [&mut a, &mut resumed] {
        let closed = c.expect_close().await;
        assert_eq!(
            closed,
            Closed {
                code: 4003,
                reason: "Token revoked".into()
            }
        );
    }
    // The same user's other token is unaffected.
    b.expect_silence(200).await;
    assert_alive(&mut b).await;

    let e = refused(&s, &t, "token_revoked").await;
    assert_eq!(e["message"], "Token has been revoked");
    accepted(&s, &other).await;
}

#[tokio::test]
async fn revoke_by_jti() {
    let s = TestServer::start().await;
    let t = token_with(claims_for("alice", json!({"jti": "jti-42"})));
    let (mut a, _) = accepted(&s, &t).await;
    let (mut b, _) = accepted(
        &s,
        &token_with(claims_for("alice", json!({"jti": "jti-43"}))),
    )
    .await;

    cli_ok(s.dir.path(), &["revoke", "--jti", "jti-42"]).await;
    assert_eq!(
        a.expect_close().await,
        Closed {
            code: 4003,
            reason: "Token revoked".into()
        }
    );
    b.expect_silence(200).await;
    assert_alive(&mut b).await;

    let e = refused(&s, &t, "token_revoked").await;
    assert_eq!(e["message"], "Token has been revoked");
    // Any token carrying that jti is refused, whatever else differs.
    let same_jti = token_with(claims_for("alice", json!({"jti": "jti-42", "nonce": 1})));
    assert_ne!(same_jti, t);
    refused(&s, &same_jti, "token_revoked").await;
}

#[tokio::test]
async fn revoke_user_closes_every_socket_and_refuses_older_tokens() {
    let s = TestServer::start().await;
    let t1 = token_tagged("bob", "1");
    let t2 = token_tagged("bob", "2");
    let (mut b1, _) = accepted(&s, &t1).await;
    let (mut b2, _) = accepted(&s, &t2).await;
    let (mut carol, _) = accepted(&s, &token("carol")).await;

    let out = cli_ok(s.dir.path(), &["revoke", "--user", "bob"]).await;
    let reply: Value = serde_json::from_str(&out).expect("JSON reply");
    assert_eq!(reply["closedConnections"], 2, "{reply}");
    assert_eq!(reply["deletedSessions"], 2, "{reply}");
    for c in [&mut b1, &mut b2] {
        assert_eq!(
            c.expect_close().await,
            Closed {
                code: 4003,
                reason: "Token revoked".into()
            }
        );
    }
    carol.expect_silence(200).await;
    assert_alive(&mut carol).await;

    for t in [&t1, &t2] {
        let e = refused(&s, t, "token_revoked").await;
        assert_eq!(e["message"], "Token has been revoked");
    }
    // A token without iat counts as older than any revocation.
    refused(
        &s,
        &token_with(json!({"sub": "bob", "exp": now_secs() + 3600})),
        "token_revoked",
    )
    .await;
    // A token issued after the revocation works.
    let newer = token_with(claims_for("bob", json!({"iat": now_secs() + 2})));
    let (_c, ok) = accepted(&s, &newer).await;
    assert_eq!(ok["user"]["userId"], "bob");
}

#[tokio::test]
async fn revocations_survive_restarts_and_work_offline() {
    let s = TestServer::start().await;
    let live = token_tagged("alice", "live");
    let offline = token_tagged("carol", "offline");
    let old_dave = token_tagged("dave", "old");
    let fine = token_tagged("erin", "fine");
    let (mut a, _) = accepted(&s, &live).await;
    cli_ok(s.dir.path(), &["revoke", "--token", &live]).await;
    assert_eq!(a.expect_close().await.code, 4003);

    let dir = s.stop().await;
    // With no server running, the CLI works on the store directly.
    let out = cli_ok(dir.path(), &["revoke", "--token", &offline]).await;
    let reply: Value = serde_json::from_str(&out).expect("JSON reply");
    assert_eq!(reply["closedConnections"], 0, "{reply}");
    cli_ok(dir.path(), &["revoke", "--user", "dave"]).await;

    let s = TestServer::start_in(dir, |_| {}).await;
    for t in [&live, &offline, &old_dave] {
        let e = refused(&s, t, "token_revoked").await;
        assert_eq!(e["message"], "Token has been revoked");
    }
    accepted(&s, &fine).await;

    // And once more across a second restart.
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |_| {}).await;
    refused(&s, &live, "token_revoked").await;
    refused(&s, &offline, "token_revoked").await;
}

#[tokio::test]
async fn raw_tokens_never_reach_the_database_files() {
    let s = TestServer::start().await;
    let live = token_tagged("alice", "raw-live");
    let offline = token_tagged("bob", "raw-offline");
    let (mut a, ok) = accepted(&s, &live).await;
    let w = ok["wsToken"].as_str().unwrap().to_string();
    let (mut b, _) = accepted(&s, &offline).await;
    // A failed attempt with a token is recorded too; its token must not be.
    let forged = sign(&claims_for("mallory", json!({})), "other-secret-xyz");
    refused(&s, &forged, "auth_failed").await;
    cli_ok(s.dir.path(), &["revoke", "--token", &live]).await;
    a.expect_close().await;
    b.send("heartbeat", json!({})).await;
    b.expect("heartbeat_response").await;
    b.close().await;
    let dir = s.stop().await;
    cli_ok(dir.path(), &["revoke", "--token", &offline]).await;

    let db = dir.path().join("db");
    assert!(!files_under(&db).is_empty(), "no database files");
    // The grep finds what is there: the revocation keys are stored.
    for t in [&live, &offline] {
        let key = digest_key(t);
        assert!(
            !files_containing(&db, &key).is_empty(),
            "revocation key {key} not found: the grep would miss the token too"
        );
    }
    for t in [&live, &offline, &w, &forged] {
        let hits = files_containing(&db, t);
        assert!(hits.is_empty(), "raw token stored in {hits:?}");
        // Nor its signature, the part that makes it usable.
        let sig = t.rsplit('.').next().unwrap();
        let hits = files_containing(&db, sig);
        assert!(hits.is_empty(), "token signature stored in {hits:?}");
    }
}

// ---------------------------------------------------------------------------------------
// 5. Timeouts and pings
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn unauthenticated_socket_is_closed_after_the_auth_timeout() {
    let s = TestServer::start_with(|c| c.auth.auth_timeout_secs = 1).await;
    let mut c = s.client().await;
    let started = Instant::now();
    assert_eq!(
        c.expect_close().await,
        Closed {
            code: 1008,
            reason: "Authentication timeout".into()
        }
    );
    assert!(started.elapsed() >= Duration::from_millis(800));
}

#[tokio::test]
async fn activity_does_not_extend_the_auth_timeout() {
    let s = TestServer::start_with(|c| c.auth.auth_timeout_secs = 1).await;
    let mut c = s.client().await;
    let deadline = Instant::now() + WAIT;
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    let closed = loop {
        tick.tick().await;
        assert!(Instant::now() < deadline, "never closed");
        // Heartbeats before auth are answered with not_authenticated, until the close.
        if c.ws
            .send(Message::text(
                json!({"type": "heartbeat", "data": {}, "timestamp": 1}).to_string(),
            ))
            .await
            .is_err()
        {
            break c.expect_close().await;
        }
        match tokio::time::timeout(WAIT, c.ws.next())
            .await
            .expect("frame")
        {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                assert_eq!(v["data"]["code"], "not_authenticated", "{v}");
            }
            Some(Ok(Message::Close(Some(f)))) => {
                break Closed {
                    code: u16::from(f.code),
                    reason: f.reason.to_string(),
                };
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(
        closed,
        Closed {
            code: 1008,
            reason: "Authentication timeout".into()
        }
    );
}

#[tokio::test]
async fn authenticated_socket_outlives_the_auth_timeout() {
    let s = TestServer::start_with(|c| c.auth.auth_timeout_secs = 1).await;
    let mut c = s.authed("alice").await;
    c.expect_silence(1600).await;
    assert_alive(&mut c).await;
}

#[tokio::test]
async fn silent_authenticated_socket_is_closed_for_inactivity() {
    let s = TestServer::start_with(|c| {
        c.auth.auth_timeout_secs = 30;
        c.connection.inactivity_timeout_secs = 1;
    })
    .await;
    let mut c = s.authed("alice").await;
    assert_eq!(
        c.expect_close().await,
        Closed {
            code: 1008,
            reason: "Connection timeout".into()
        }
    );
}

#[tokio::test]
async fn any_frame_keeps_a_socket_alive() {
    let s = TestServer::start_with(|c| {
        c.auth.auth_timeout_secs = 30;
        c.connection.inactivity_timeout_secs = 1;
    })
    .await;
    let mut c = s.authed("alice").await;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(400));
    let mut n = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        tick.tick().await;
        if n % 3 == 1 {
            c.join(&format!("keep{n}")).await;
        } else {
            assert_alive(&mut c).await;
        }
        n += 1;
    }
    assert!(started.elapsed() > Duration::from_secs(2));
    // WebSocket pings count as activity too.
    for _ in 0..4 {
        tick.tick().await;
        c.send_raw(Message::Ping(b"keepalive".to_vec().into()))
            .await;
    }
    assert_alive(&mut c).await;
    // Once the client goes quiet the timeout still applies.
    assert_eq!(
        c.expect_close().await,
        Closed {
            code: 1008,
            reason: "Connection timeout".into()
        }
    );
}

async fn expect_pong(c: &mut Client, payload: &[u8]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let msg = tokio::time::timeout_at(deadline, c.ws.next())
            .await
            .expect("timed out waiting for pong")
            .expect("connection ended")
            .expect("read error");
        match msg {
            Message::Pong(p) => {
                assert_eq!(p.as_ref(), payload);
                return;
            }
            Message::Text(_) | Message::Ping(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test]
async fn client_ping_gets_a_pong() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    c.send_raw(Message::Ping(b"before-auth".to_vec().into()))
        .await;
    expect_pong(&mut c, b"before-auth").await;
    c.auth(&token("alice")).await;
    c.send_raw(Message::Ping(b"after-auth".to_vec().into()))
        .await;
    expect_pong(&mut c, b"after-auth").await;
    assert_alive(&mut c).await;
}

// ---------------------------------------------------------------------------------------
// 6. Token expiry on a live connection
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn live_socket_is_closed_when_its_token_expires() {
    let s = TestServer::start_with(|c| c.auth.leeway_secs = 0).await;
    let mut c = s.client().await;
    let t = token_with(json!({"sub": "alice", "iat": now_secs(), "exp": now_secs() + 2}));
    c.auth(&t).await;
    assert_alive(&mut c).await;
    let started = Instant::now();
    assert_eq!(
        c.expect_close().await,
        Closed {
            code: 4001,
            reason: "Token expired".into()
        }
    );
    assert!(started.elapsed() <= Duration::from_secs(4));
}

#[tokio::test]
async fn a_long_lived_token_does_not_expire_the_socket() {
    let s = TestServer::start_with(|c| c.auth.leeway_secs = 0).await;
    let mut c = s.client().await;
    c.auth(&token_with(json!({"sub": "alice", "exp": now_secs() + 30})))
        .await;
    // Less than the default notice period (60 s) is left: the notice comes at once, and
    // then nothing.
    assert_eq!(c.recv().await["type"], "token_expiring");
    c.expect_silence(2500).await;
    assert_alive(&mut c).await;
}

// ---------------------------------------------------------------------------------------
// 7. Per-user connection cap
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn per_user_connection_cap() {
    let s = TestServer::start_with(|c| c.connection.max_connections_per_user = 2).await;
    let mut a = s.authed("alice").await;
    let b = s.authed("alice").await;
    let mut third = s.client().await;
    third.send("auth", json!({"token": token("alice")})).await;
    let e = third.expect_error("too_many_connections").await;
    assert_eq!(e["message"], "Too many connections");
    // The refused socket stays unauthenticated.
    third.send("join", json!({"roomId": "r"})).await;
    third.expect_error("not_authenticated").await;
    // Other users are not affected.
    let _bob = s.authed("bob").await;

    b.close().await;
    let registry = s.server().state().registry.clone();
    // alice's one socket plus bob's.
    wait_until("the closed socket to unregister", || {
        registry.counts().1 == 2
    })
    .await;
    let (mut d, ok) = accepted(&s, &token("alice")).await;
    assert_eq!(ok["user"]["userId"], "alice");
    assert_alive(&mut d).await;
    assert_alive(&mut a).await;
}

// ---------------------------------------------------------------------------------------
// 8. Security events
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn auth_attempts_are_recorded_without_ids_or_tokens() {
    let s = TestServer::start().await;
    let user = "alice-events-user";
    let bad = sign(&claims_for(user, json!({})), "not-the-secret-0123456789");
    let good = token(user);
    let mut c = s.client().await;
    c.send("auth", json!({"token": bad})).await;
    c.expect_error("auth_failed").await;
    let ok = c.auth(&good).await;
    let ws_token = ok["wsToken"].as_str().unwrap().to_string();
    let (_c2, _) = accepted(&s, &ws_token).await;

    let state = s.server().state();
    state.audit.sync().await;
    let events = state.store.events(&EventFilter::default()).unwrap();
    let auth: Vec<_> = events
        .iter()
        .filter(|e| e.action == "websocket_auth")
        .collect();
    let failure = auth
        .iter()
        .find(|e| e.result == "failure")
        .expect("failure event");
    let reason = failure
        .metadata
        .iter()
        .find(|(k, _)| k == "reason")
        .map(|(_, v)| v.as_str());
    assert_eq!(reason, Some("bad_signature"), "{failure:?}");
    assert!(
        failure
            .metadata
            .iter()
            .any(|(k, v)| k == "clientIp" && v == "127.0.0.1"),
        "{failure:?}"
    );

    let successes: Vec<_> = auth.iter().filter(|e| e.result == "success").collect();
    assert_eq!(successes.len(), 2, "{auth:?}");
    let hash = state.audit.hash_user(user);
    assert!(is_hex(&hash, 32), "{hash}");
    for e in &successes {
        assert_eq!(e.user, hash, "{e:?}");
        assert!(is_hex(&e.user, 32), "{e:?}");
    }
    let methods: Vec<&str> = successes
        .iter()
        .filter_map(|e| e.metadata.iter().find(|(k, _)| k == "method"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(methods, vec!["jwt", "ws_token"]);

    // Nothing anywhere in the log holds a token or the raw user id.
    for e in &events {
        let mut fields = vec![e.action.as_str(), e.user.as_str(), e.result.as_str()];
        for (k, v) in &e.metadata {
            fields.push(k);
            fields.push(v);
        }
        for f in fields {
            for secret in [&bad, &good, &ws_token] {
                assert!(!f.contains(secret.as_str()), "token in event {e:?}");
                let sig = secret.rsplit('.').next().unwrap();
                assert!(!f.contains(sig), "token signature in event {e:?}");
            }
            assert!(!f.contains(user), "raw user id in event {e:?}");
        }
    }
}

#[tokio::test]
async fn revoked_token_attempts_are_recorded_with_the_hashed_user() {
    let s = TestServer::start().await;
    let t = token_tagged("zoe", "r");
    cli_ok(s.dir.path(), &["revoke", "--token", &t]).await;
    refused(&s, &t, "token_revoked").await;
    let state = s.server().state();
    state.audit.sync().await;
    let events = state
        .store
        .events(&EventFilter {
            action: Some("websocket_auth".into()),
            ..EventFilter::default()
        })
        .unwrap();
    let e = events
        .iter()
        .find(|e| e.result == "failure")
        .expect("failure event");
    assert_eq!(e.user, state.audit.hash_user("zoe"));
    assert!(
        e.metadata
            .iter()
            .any(|(k, v)| k == "reason" && v == "revoked"),
        "{e:?}"
    );
}
