//! Transport hardening over real sockets: request bodies read under a total deadline and
//! a minimum rate (a connection place is never held by an idle body, and the closes are
//! counted), TLS on every route but the probes in production mode, and `/metrics`
//! refusing anything that came through a proxy, whichever header says so.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection from the loopback address `from` (127.0.0.x).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    sock.connect(to).await.unwrap()
}

/// Reads until the server closes; None if it stayed open for `wait`.
async fn read_until_closed(s: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    match tokio::time::timeout(wait, s.read_to_end(&mut buf)).await {
        Ok(_) => Some(buf),
        Err(_) => None,
    }
}

/// One request from `from`, answered within the wait: (status, body).
async fn request_from(
    from: &str,
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = connect_from(from, to).await;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let raw = read_until_closed(&mut s, WAIT)
        .await
        .expect("an answer within the wait");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, body.to_string())
}

/// The value of one series on the loopback `/metrics` page (0 when absent).
async fn metric(addr: SocketAddr, series: &str) -> f64 {
    let r = http_request(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sends the head of `POST path` declaring a 16,000-byte body, and its first byte.
async fn start_slow_body(
    from: &str,
    to: SocketAddr,
    path: &str,
    bearer: Option<&str>,
) -> TcpStream {
    let mut s = connect_from(from, to).await;
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}Content-Length: 16000\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// The lockout: every place under `connection.max_connections` taken by a
/// request that sent its headers and one byte of a large body. Before the fix they were
/// held for ever and nobody else was served; now each is answered 408 and closed by the
/// rate rule or the deadline, a fresh client is served within the deadline plus a
/// margin, and the closes are counted.
#[tokio::test]
async fn slow_bodies_cannot_hold_every_connection_place() {
    let s = TestServer::start_with(|c| {
        c.connection.max_connections = 20;
        c.connection.body_read_timeout_secs = 3;
    })
    .await;
    let admin = login(s.addr, "admin", ADMIN_PASSWORD).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let paths: [(&str, Option<&str>); 4] = [
        ("/auth/login", None),
        ("/auth/refresh", None),
        ("/api/v1/rooms", Some(&admin)),
        ("/api/v1/users", Some(&admin)),
    ];
    let filled = Instant::now();
    let mut slow = Vec::new();
    for i in 0..20 {
        let (path, bearer) = paths[i % paths.len()];
        slow.push(start_slow_body("127.0.0.1", s.addr, path, bearer).await);
    }
    // Every place is taken: one more connection is closed before anything is read.
    let mut over = connect_from("127.0.0.2", s.addr).await;
    let _ = over
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let got = read_until_closed(&mut over, Duration::from_secs(2)).await;
    assert_eq!(got, Some(Vec::new()), "the cap was not full");

    // A fresh client from another address is served within the deadline plus a margin.
    let deadline = filled + Duration::from_secs(3 + 2);
    loop {
        let mut c = connect_from("127.0.0.2", s.addr).await;
        let _ = c
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let got = read_until_closed(&mut c, Duration::from_secs(2)).await;
        if got.is_some_and(|b| b.starts_with(b"HTTP/1.1 200")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no fresh client served {:?} after the slow bodies took every place",
            filled.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each slow connection was answered 408 and closed.
    for mut c in slow {
        let got = read_until_closed(&mut c, Duration::from_secs(5))
            .await
            .expect("a slow body's connection stayed open past the deadline");
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("\"request_timeout\""), "{text}");
    }
    assert_eq!(metric(s.addr, "roomgate_body_timeouts_total").await, 20.0);
}

/// Sends `body` after the head of `POST /auth/login`, `chunk` bytes every 100 ms; returns
/// the status line of the answer (None if the server closed without one) once the
/// server closed, and how long that took.
async fn trickle_login(
    addr: SocketAddr,
    body: Vec<u8>,
    chunk: usize,
) -> (Option<String>, Duration) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        for part in body.chunks(chunk) {
            if wr.write_all(part).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Keep the write half open until the reader is done.
        std::future::pending::<()>().await;
    });
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), rd.read_to_end(&mut raw))
        .await
        .expect("the server answers or closes within 15 s");
    writer.abort();
    let text = String::from_utf8_lossy(&raw);
    (text.lines().next().map(str::to_string), started.elapsed())
}

/// A login body of exactly `len` bytes (valid JSON, wrong password).
fn login_body(len: usize) -> Vec<u8> {
    let base = json!({"username": "admin", "password": ""}).to_string();
    let pad = len - base.len();
    json!({"username": "admin", "password": "x".repeat(pad)})
        .to_string()
        .into_bytes()
}

/// The rate rule's edge: with `body_min_bytes_per_sec = 100`, a body arriving steadily
/// at 120 B/s for about four seconds (past the two-second allowance) is read and
/// answered; one at 50 B/s is cut off with 408 after about four seconds.
#[tokio::test]
async fn a_body_just_above_the_minimum_rate_is_accepted_and_one_below_is_cut_off() {
    let s = TestServer::start_with(|c| {
        c.connection.body_min_bytes_per_sec = 100;
        c.connection.body_read_timeout_secs = 30;
    })
    .await;
    let fast = trickle_login(s.addr, login_body(480), 12);
    let slow = trickle_login(s.addr, login_body(480), 5);
    let ((fast, fast_took), (slow, slow_took)) = tokio::join!(fast, slow);
    assert_eq!(
        fast.as_deref(),
        Some("HTTP/1.1 401 Unauthorized"),
        "the steady body was not read ({fast_took:?})"
    );
    assert!(fast_took >= Duration::from_secs(3), "{fast_took:?}");
    assert_eq!(
        slow.as_deref(),
        Some("HTTP/1.1 408 Request Timeout"),
        "the slow body was not cut off ({slow_took:?})"
    );
    assert!(
        slow_took >= Duration::from_secs(3) && slow_took < Duration::from_secs(7),
        "the slow body was cut after {slow_took:?}"
    );
    assert_eq!(
        metric(s.addr, "roomgate_body_timeouts_total{reason=\"min_rate\"}").await,
        1.0
    );
}

/// The total deadline holds even for a body that keeps the minimum rate: 200 B/s for a
/// 1,000-byte body would take five seconds; the deadline is two.
#[tokio::test]
async fn a_body_is_cut_off_at_the_total_deadline_whatever_its_rate() {
    let s = TestServer::start_with(|c| {
        c.connection.body_min_bytes_per_sec = 100;
        c.connection.body_read_timeout_secs = 2;
    })
    .await;
    let (answer, took) = trickle_login(s.addr, login_body(1000), 20).await;
    assert_eq!(
        answer.as_deref(),
        Some("HTTP/1.1 408 Request Timeout"),
        "not cut off ({took:?})"
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "cut after {took:?}"
    );
    assert_eq!(
        metric(s.addr, "roomgate_body_timeouts_total{reason=\"deadline\"}").await,
        1.0
    );
}

/// A WebSocket upgrade request that declares a body and never sends it does not keep
/// its connection: it is refused, and the connection closed, within the deadline.
#[tokio::test]
async fn an_upgrade_request_with_an_unfinished_body_does_not_keep_its_connection() {
    let s = TestServer::start_with(|c| c.connection.body_read_timeout_secs = 2).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Content-Length: 16000\r\n\r\nx",
    )
    .await
    .unwrap();
    let got = read_until_closed(&mut c, Duration::from_secs(4))
        .await
        .expect("the upgrade request's connection stayed open");
    let text = String::from_utf8_lossy(&got);
    assert!(!text.starts_with("HTTP/1.1 101"), "upgraded: {text}");
}

// Production transport ------------------------------------------------------------------

const PROXY: &str = "127.0.0.3";

async fn production() -> TestServer {
    TestServer::start_with(|c| {
        c.mode = roomgate::config::Mode::Production;
        c.security.behind_proxy = true;
        c.security.trusted_proxies = vec![PROXY.into()];
        c.security.allowed_origins = vec!["https://chat.example.com".into()];
    })
    .await
}

/// In production mode, plain HTTP from a peer that is not a trusted proxy gets 403
/// `tls_required` on `/auth/*` (passwords) and `/api/v1` (keys), as `/ws` always did;
/// the probes still answer.
#[tokio::test]
async fn production_refuses_plain_http_to_auth_and_api() {
    let s = production().await;
    let creds = json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string();
    let ct = ("content-type", "application/json");
    let (status, body) = request_from(
        "127.0.0.1",
        s.addr,
        "POST",
        "/auth/login",
        &[ct],
        creds.as_bytes(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("\"tls_required\""), "{body}");
    let (status, body) = request_from("127.0.0.1", s.addr, "GET", "/api/v1/stats", &[], b"").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("\"tls_required\""), "{body}");
    let (status, _) = request_from("127.0.0.1", s.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(status, 200);
    let (status, _) = request_from("127.0.0.1", s.addr, "GET", "/readyz", &[], b"").await;
    assert_eq!(status, 200);
    // The proxy itself must say the client used HTTPS.
    let (status, _) = request_from(
        PROXY,
        s.addr,
        "POST",
        "/auth/login",
        &[ct, ("x-forwarded-proto", "http")],
        creds.as_bytes(),
    )
    .await;
    assert_eq!(status, 403);
    // A forwarded-proto header from anyone else is not believed.
    let (status, _) = request_from(
        "127.0.0.1",
        s.addr,
        "POST",
        "/auth/login",
        &[ct, ("x-forwarded-proto", "https")],
        creds.as_bytes(),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn production_serves_auth_and_api_through_a_trusted_https_proxy() {
    let s = production().await;
    let creds = json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string();
    let https = ("x-forwarded-proto", "https");
    let (status, body) = request_from(
        PROXY,
        s.addr,
        "POST",
        "/auth/login",
        &[("content-type", "application/json"), https],
        creds.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let (status, body) = request_from(
        PROXY,
        s.addr,
        "GET",
        "/api/v1/stats",
        &[("authorization", &bearer), https],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

// /metrics ------------------------------------------------------------------------------

/// Without `metrics.token`, `/metrics` is for a direct loopback scraper only: a request
/// carrying any forwarded-address header (the proxy set only `X-Real-IP`), or
/// coming from a trusted proxy at all, is refused.
#[tokio::test]
async fn metrics_refuse_proxied_requests_whatever_header_carries_the_client() {
    let s = TestServer::start_with(|c| c.security.trusted_proxies = vec![PROXY.into()]).await;
    for header in [
        ("x-real-ip", "1.2.3.4"),
        ("x-forwarded-for", "1.2.3.4"),
        ("forwarded", "for=1.2.3.4"),
    ] {
        let (status, body) =
            request_from("127.0.0.1", s.addr, "GET", "/metrics", &[header], b"").await;
        assert_eq!(status, 403, "{header:?}: {body}");
        assert!(body.contains("metrics_forbidden"), "{body}");
    }
    // Through the trusted proxy: refused with no header, and with one naming loopback.
    for headers in [vec![], vec![("x-forwarded-for", "127.0.0.1")]] {
        let (status, body) = request_from(PROXY, s.addr, "GET", "/metrics", &headers, b"").await;
        assert_eq!(status, 403, "{headers:?}: {body}");
    }
    // The direct scraper still is served.
    let (status, _) = request_from("127.0.0.1", s.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
}
