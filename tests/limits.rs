//! Limits end to end: the three rate limits and their keys, the per-IP cap on
//! unauthenticated sockets, frame size, Origin checks, X-Forwarded-For trust, and the
//! content policy.

mod common;

use std::time::Duration;

use common::*;
use roomgate::config::Quota;
use roomgate::store::EventFilter;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Opens `/ws` with extra request headers; returns the client (handshake frame read) or
/// the connect error.
async fn connect_with(s: &TestServer, headers: &[(&str, &str)]) -> Result<Client, WsError> {
    let mut req = s.url().into_client_request().expect("request");
    for (k, v) in headers {
        req.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async(req).await?;
    let mut c = Client { ws };
    c.expect("handshake").await;
    Ok(c)
}

/// The HTTP status and JSON body of a refused upgrade.
fn refusal(result: Result<Client, WsError>) -> (u16, Value) {
    match result {
        Ok(_) => panic!("upgrade was accepted"),
        Err(WsError::Http(resp)) => {
            let body = resp.body().as_deref().unwrap_or_default();
            let json = serde_json::from_slice(body)
                .unwrap_or_else(|e| panic!("body {:?}: {e}", String::from_utf8_lossy(body)));
            (resp.status().as_u16(), json)
        }
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
    }
}

fn retry_after(e: &Value) -> u64 {
    e["retryAfterMs"]
        .as_u64()
        .unwrap_or_else(|| panic!("no retryAfterMs in {e}"))
}

/// Sends a message and asserts the next frame is its echo.
async fn say_ok(c: &mut Client, room: &str, content: &str) {
    c.say(room, content).await;
    let m = c.recv().await;
    assert_eq!(
        m["type"], "message",
        "expected the echo of {content:?}, got {m}"
    );
    assert_eq!(m["data"]["content"], content);
}

async fn heartbeat_ok(c: &mut Client) {
    c.send("heartbeat", json!({})).await;
    let v = c.recv().await;
    assert_eq!(v["type"], "heartbeat_response", "{v}");
}

// 1. Message limit -------------------------------------------------------------------

#[tokio::test]
async fn message_limit_bursts_then_refills_and_spares_heartbeats() {
    let s = TestServer::start_with(|c| {
        c.rate_limits.message = Quota {
            points: 3,
            duration_secs: 3,
        }
    })
    .await;
    // The auth frame is spent from the IP's budget; from here on the user's counts.
    let mut alice = s.authed("alice").await;
    alice.join("r").await; // 1
    say_ok(&mut alice, "r", "one").await; // 2
    say_ok(&mut alice, "r", "two").await; // 3
    alice.say("r", "three").await;
    let e = alice.expect_error("rate_limited").await;
    assert_eq!(e["message"], "Rate limit exceeded");
    let wait = retry_after(&e);
    assert!(wait > 0 && wait <= 1000, "retryAfterMs {wait}");

    // Heartbeats are never limited, and the refused message was never broadcast (the
    // next frames are exactly the heartbeat answers).
    for _ in 0..10 {
        heartbeat_ok(&mut alice).await;
    }
    // Waiting the advertised time (the behaviour under test, not synchronisation)
    // refills exactly one point.
    tokio::time::sleep(Duration::from_millis(wait)).await;
    say_ok(&mut alice, "r", "four").await;
    alice.say("r", "five").await;
    let e = alice.expect_error("rate_limited").await;
    assert!(retry_after(&e) > 0);

    let limited = events(&s, "rate_limited").await;
    assert_eq!(limited.len(), 2, "{limited:?}");
    assert_eq!(meta(&limited[0], "limit"), Some("message"));
}

#[tokio::test]
async fn before_auth_the_message_limit_is_per_ip() {
    let s = TestServer::start_with(|c| {
        c.rate_limits.message = Quota {
            points: 3,
            duration_secs: 60,
        }
    })
    .await;
    let mut c1 = s.client().await;
    let mut c2 = s.client().await;
    let join = json!({"roomId": "r"});
    c1.send("join", join.clone()).await;
    c1.expect_error("not_authenticated").await;
    c2.send("join", join.clone()).await;
    c2.expect_error("not_authenticated").await;
    c1.send("join", join.clone()).await;
    c1.expect_error("not_authenticated").await;
    // The two sockets shared one budget of 3.
    c2.send("join", join.clone()).await;
    let e = c2.expect_error("rate_limited").await;
    assert!(retry_after(&e) > 0);
    // Heartbeats are not counted (they are refused for being unauthenticated only).
    for _ in 0..5 {
        c1.send("heartbeat", json!({})).await;
        c1.expect_error("not_authenticated").await;
    }
    // Every other frame counts, auth included.
    c1.send("auth", json!({"token": token("alice")})).await;
    c1.expect_error("rate_limited").await;
    // Garbage too.
    c2.send_text("not json").await;
    c2.expect_error("rate_limited").await;
}

#[tokio::test]
async fn after_auth_the_message_limit_is_per_user() {
    let s = TestServer::start_with(|c| {
        c.rate_limits.message = Quota {
            points: 3,
            duration_secs: 60,
        }
    })
    .await;
    // Three auth frames: exactly the IP's budget.
    let mut tab1 = s.authed("alice").await;
    let mut tab2 = s.authed("alice").await;
    let mut bob = s.authed("bob").await;

    tab1.join("a").await; // alice 1
    tab2.join("a").await; // alice 2
    say_ok(&mut tab1, "a", "from tab1").await; // alice 3
    assert_eq!(tab2.expect("message").await["data"]["content"], "from tab1");
    tab2.say("a", "from tab2").await;
    tab2.expect_error("rate_limited").await;
    tab1.say("a", "again").await;
    tab1.expect_error("rate_limited").await;

    // bob has his own budget, untouched by alice's.
    bob.join("b").await;
    say_ok(&mut bob, "b", "bob 1").await;
    say_ok(&mut bob, "b", "bob 2").await;
    bob.say("b", "bob 3").await;
    bob.expect_error("rate_limited").await;
    tab1.expect_silence(100).await;
}

// 2. Auth limit ----------------------------------------------------------------------

#[tokio::test]
async fn auth_attempts_are_limited_per_ip() {
    let s = TestServer::start_with(|c| {
        c.rate_limits.auth = Quota {
            points: 2,
            duration_secs: 60,
        }
    })
    .await;
    let mut c1 = s.client().await;
    c1.send("auth", json!({"token": "not.a.jwt"})).await;
    c1.expect_error("auth_failed").await;
    c1.auth(&token("alice")).await;

    // A new socket from the same IP, with a valid token, is still over the limit.
    let mut c2 = s.client().await;
    c2.send("auth", json!({"token": token("bob")})).await;
    let e = c2.expect_error("auth_rate_limited").await;
    assert_eq!(e["message"], "Authentication rate limit exceeded");
    let wait = retry_after(&e);
    assert!(wait > 0 && wait <= 30_000, "retryAfterMs {wait}");
    // It was not authenticated.
    c2.send("join", json!({"roomId": "r"})).await;
    c2.expect_error("not_authenticated").await;

    let limited = events(&s, "rate_limited").await;
    assert_eq!(limited.len(), 1, "{limited:?}");
    assert_eq!(meta(&limited[0], "limit"), Some("auth"));
    assert_eq!(meta(&limited[0], "clientIp"), Some("127.0.0.1"));
}

// 3. Join limit ----------------------------------------------------------------------

#[tokio::test]
async fn joins_are_limited_per_user() {
    let s = TestServer::start_with(|c| {
        c.rate_limits.join = Quota {
            points: 2,
            duration_secs: 60,
        }
    })
    .await;
    let mut alice = s.authed("alice").await;
    // An invalid room id is refused before the limiter and costs nothing.
    alice.send("join", json!({"roomId": "bad id"})).await;
    alice.expect_error("invalid_room_id").await;
    alice.join("r1").await;
    alice.join("r2").await;
    alice.send("join", json!({"roomId": "r3"})).await;
    let e = alice.expect_error("join_rate_limited").await;
    assert_eq!(e["message"], "Join rate limit exceeded");
    assert_eq!(e["roomId"], "r3");
    assert!(retry_after(&e) > 0);

    // The budget belongs to the user, not the socket.
    let mut tab = s.authed("alice").await;
    tab.send("join", json!({"roomId": "r1"})).await;
    tab.expect_error("join_rate_limited").await;
    // Another user is unaffected.
    let mut bob = s.authed("bob").await;
    bob.join("r3").await;
    bob.join("r1").await;
}

// 4. Unauthenticated sockets per IP --------------------------------------------------

#[tokio::test]
async fn unauthenticated_sockets_per_ip_are_capped_before_upgrade() {
    let s = TestServer::start_with(|c| c.connection.max_unauthenticated_per_ip = 2).await;
    let mut c1 = s.client().await;
    let _c2 = s.client().await;
    let (status, body) = refusal(connect_with(&s, &[]).await);
    assert_eq!(status, 429);
    assert_eq!(body["code"], "too_many_unauthenticated");
    assert_eq!(body["message"], "Too many unauthenticated connections");

    // Authenticating moves c1 out of the unauthenticated count.
    c1.auth(&token("alice")).await;
    let _c3 = s.client().await;
    let (status, _) = refusal(connect_with(&s, &[]).await);
    assert_eq!(status, 429);
    // The authenticated socket still works.
    c1.join("r").await;
}

// 5. Frame size ----------------------------------------------------------------------

/// A `message` frame of exactly `len` bytes.
fn message_frame(len: usize) -> String {
    let frame = |content: &str| {
        json!({"type": "message", "data": {"roomId": "big", "content": content}, "timestamp": 1})
            .to_string()
    };
    let base = frame("").len();
    let text = frame(&"y".repeat(len - base));
    assert_eq!(text.len(), len);
    text
}

#[tokio::test]
async fn oversized_frames_close_with_1009() {
    let s = TestServer::start_with(|c| c.connection.max_frame_bytes = 4096).await;
    let mut alice = s.authed("alice").await;
    alice.join("big").await;
    let text = message_frame(4000);
    alice.send_text(&text).await;
    let m = alice.expect("message").await;
    let sent: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["data"]["content"], sent["data"]["content"]);
    // Exactly the limit is still accepted.
    let pad = "z".repeat(4096 - r#"{"type":"heartbeat","data":{"pad":""},"timestamp":1}"#.len());
    let hb = format!(r#"{{"type":"heartbeat","data":{{"pad":"{pad}"}},"timestamp":1}}"#);
    assert_eq!(hb.len(), 4096);
    alice.send_text(&hb).await;
    alice.expect("heartbeat_response").await;

    alice.send_text(&message_frame(5000)).await;
    assert_eq!(
        alice.expect_close().await,
        Closed {
            code: 1009,
            reason: "Message too big".into()
        }
    );

    // One byte over is too big as well.
    let mut bob = s.authed("bob").await;
    bob.join("big").await;
    bob.send_text(&message_frame(4097)).await;
    assert_eq!(bob.expect_close().await.code, 1009);
}

// 6. Origin --------------------------------------------------------------------------

#[tokio::test]
async fn only_allowed_origins_may_upgrade() {
    let s = TestServer::start_with(|c| {
        c.security.allowed_origins = vec!["https://chat.example.com".into()];
    })
    .await;
    let mut ok = connect_with(&s, &[("origin", "https://chat.example.com")])
        .await
        .expect("allowed origin upgrades");
    ok.auth(&token("alice")).await;

    for bad in [
        "https://evil.example",
        "https://chat.example.com.evil.example",
    ] {
        let (status, body) = refusal(connect_with(&s, &[("origin", bad)]).await);
        assert_eq!(status, 403, "{bad}");
        assert_eq!(body["code"], "origin_not_allowed");
        assert_eq!(body["message"], "Origin not allowed");
    }
    // No Origin at all is refused unless allowed explicitly.
    let (status, body) = refusal(connect_with(&s, &[]).await);
    assert_eq!(status, 403);
    assert_eq!(body["code"], "origin_not_allowed");

    let refused = events(&s, "origin_refused").await;
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert_eq!(meta(&refused[0], "origin"), Some("https://evil.example"));
    assert_eq!(meta(&refused[0], "clientIp"), Some("127.0.0.1"));
    assert_eq!(refused[0].result, "failure");
    assert_eq!(meta(&refused[2], "origin"), Some(""));
}

#[tokio::test]
async fn missing_origin_can_be_allowed() {
    let s = TestServer::start_with(|c| {
        c.security.allowed_origins = vec!["https://chat.example.com".into()];
        c.security.allow_missing_origin = true;
    })
    .await;
    let mut c = connect_with(&s, &[]).await.expect("no Origin is allowed");
    c.auth(&token("alice")).await;
    let (status, _) = refusal(connect_with(&s, &[("origin", "https://evil.example")]).await);
    assert_eq!(status, 403);
}

// 7. X-Forwarded-For -----------------------------------------------------------------

#[tokio::test]
async fn forwarded_for_is_ignored_from_untrusted_peers() {
    let s = TestServer::start_with(|c| {
        c.rate_limits.auth = Quota {
            points: 1,
            duration_secs: 60,
        }
    })
    .await;
    let mut a = connect_with(&s, &[("x-forwarded-for", "203.0.113.7")])
        .await
        .unwrap();
    a.auth(&token("alice")).await;
    // A different claimed address does not buy a new budget: the key is still 127.0.0.1.
    let mut b = connect_with(&s, &[("x-forwarded-for", "203.0.113.8")])
        .await
        .unwrap();
    b.send("auth", json!({"token": token("bob")})).await;
    b.expect_error("auth_rate_limited").await;

    let auths = events(&s, "websocket_auth").await;
    assert_eq!(auths.len(), 1, "{auths:?}");
    assert_eq!(meta(&auths[0], "clientIp"), Some("127.0.0.1"));
    let limited = events(&s, "rate_limited").await;
    assert_eq!(meta(&limited[0], "clientIp"), Some("127.0.0.1"));
}

#[tokio::test]
async fn forwarded_for_is_honoured_from_trusted_proxies() {
    let s = TestServer::start_with(|c| {
        c.rate_limits.auth = Quota {
            points: 1,
            duration_secs: 60,
        };
        c.security.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let mut a = connect_with(&s, &[("x-forwarded-for", "203.0.113.7")])
        .await
        .unwrap();
    a.auth(&token("alice")).await;
    let mut b = connect_with(&s, &[("x-forwarded-for", "203.0.113.8")])
        .await
        .unwrap();
    b.auth(&token("bob")).await;
    // The same forwarded address shares its budget.
    let mut c = connect_with(&s, &[("x-forwarded-for", "203.0.113.7")])
        .await
        .unwrap();
    c.send("auth", json!({"token": token("carol")})).await;
    c.expect_error("auth_rate_limited").await;

    let auths = events(&s, "websocket_auth").await;
    let mut ips: Vec<&str> = auths.iter().filter_map(|e| meta(e, "clientIp")).collect();
    ips.sort();
    assert_eq!(ips, vec!["203.0.113.7", "203.0.113.8"]);
    let limited = events(&s, "rate_limited").await;
    assert_eq!(limited.len(), 1);
    assert_eq!(meta(&limited[0], "clientIp"), Some("203.0.113.7"));
}

// 8. Content -------------------------------------------------------------------------

#[tokio::test]
async fn content_is_sanitised_like_the_seed() {
    let s = TestServer::start().await;
    let mut alice = s.authed("alice").await;
    let mut bob = s.authed("bob").await;
    alice.join("c").await;
    bob.join("c").await;
    alice.say("c", "<b>hi</b> javascript:alert(1)").await;
    for c in [&mut alice, &mut bob] {
        let m = c.expect("message").await;
        assert_eq!(m["data"]["content"], "bhi/b alert(1)");
    }
    alice.say("c", "JaVaScRiPt:go()").await;
    assert_eq!(bob.expect("message").await["data"]["content"], "go()");
}

#[tokio::test]
async fn html_stripping_can_be_turned_off() {
    let s = TestServer::start_with(|c| c.security.strip_html = false).await;
    let mut alice = s.authed("alice").await;
    alice.join("c").await;
    let raw = "<b>hi</b> javascript:alert(1)";
    alice.say("c", raw).await;
    assert_eq!(alice.expect("message").await["data"]["content"], raw);
}

#[tokio::test]
async fn content_is_cut_to_the_length_in_characters() {
    let s = TestServer::start_with(|c| c.security.max_message_length = 5).await;
    let mut alice = s.authed("alice").await;
    alice.join("c").await;
    alice.say("c", "ééééééé").await;
    let m = alice.expect("message").await;
    assert_eq!(m["data"]["content"], "ééééé");
    alice.say("c", "abc").await;
    assert_eq!(alice.expect("message").await["data"]["content"], "abc");
    // A raw frame check that nothing else slipped through.
    alice.send_raw(Message::text(
        json!({"type": "message", "data": {"roomId": "c", "content": "0123456789"}, "timestamp": 1})
            .to_string(),
    ))
    .await;
    assert_eq!(alice.expect("message").await["data"]["content"], "01234");
}

#[tokio::test]
async fn a_flood_of_refused_frames_records_a_bounded_number_of_events() {
    let s = TestServer::start_with(|c| {
        c.rate_limits.message = Quota {
            points: 1,
            duration_secs: 60,
        };
    })
    .await;
    let mut c = s.client().await;
    c.send_text("garbage").await;
    c.expect_error("invalid_format").await;
    for _ in 0..100 {
        c.send_text("garbage").await;
        c.expect_error("rate_limited").await;
    }
    let state = s.server().state();
    state.audit.sync().await;
    let events = state
        .store
        .events(&EventFilter {
            action: Some("rate_limited".into()),
            ..EventFilter::default()
        })
        .unwrap();
    assert!(
        !events.is_empty() && events.len() <= 10,
        "{} rate_limited events for 100 refusals",
        events.len()
    );
}

// 7. Production mode -------------------------------------------------------------------

#[tokio::test]
async fn production_mode_wants_wss_even_without_require_tls() {
    let s = TestServer::start_with(|c| {
        c.mode = roomgate::config::Mode::Production;
        c.security.behind_proxy = true;
        c.security.trusted_proxies = vec!["127.0.0.1".into()];
        c.security.allowed_origins = vec!["https://chat.example.com".into()];
    })
    .await;
    let origin = ("origin", "https://chat.example.com");
    let (status, body) = refusal(connect_with(&s, &[origin]).await);
    assert_eq!(status, 403);
    assert_eq!(body["code"], "tls_required");
    let (status, _) = refusal(connect_with(&s, &[origin, ("x-forwarded-proto", "http")]).await);
    assert_eq!(status, 403);
    // The trusted proxy says the client used HTTPS.
    let mut ok = connect_with(&s, &[origin, ("x-forwarded-proto", "https")])
        .await
        .expect("upgrade through the proxy");
    ok.auth(&token("alice")).await;
}
