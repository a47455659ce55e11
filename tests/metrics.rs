//! `GET /metrics` parsed by a Prometheus text parser: every series is present and the
//! counters move under traffic; access is loopback-only without a token and
//! bearer-only with one. `GET /readyz` answers while the store does.

mod common;

use std::collections::HashMap;

use common::*;
use prometheus_parse::{Scrape, Value};
use serde_json::json;

const SERIES: [&str; 16] = [
    "roomgate_connections",
    "roomgate_connections_authenticated",
    "roomgate_rooms",
    "roomgate_room_participants",
    "roomgate_db_size_bytes",
    "roomgate_connections_opened_total",
    "roomgate_messages_in_total",
    "roomgate_messages_out_total",
    "roomgate_deliveries_total",
    "roomgate_slow_consumers_total",
    "roomgate_auth_failures_total",
    "roomgate_rate_limited_total",
    "roomgate_swept_total",
    "roomgate_fanout_seconds",
    "roomgate_history_append_seconds",
    "roomgate_body_timeouts_total",
];

async fn scrape(s: &TestServer, headers: &[(&str, &str)]) -> (u16, String) {
    let r = http_request(s.addr, "GET", "/metrics", headers, b"").await;
    (r.status, r.body)
}

/// Sample values by `name{label=value,...}` (labels sorted).
fn values(text: &str) -> (Scrape, HashMap<String, f64>) {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let mut out = HashMap::new();
    for s in &scrape.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let key = format!("{}{{{}}}", s.metric, labels.join(","));
        let v = match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(b) => b.iter().map(|c| c.count).fold(0.0, f64::max),
            Value::Summary(_) => 0.0,
        };
        out.insert(key, v);
    }
    (scrape, out)
}

#[tokio::test]
async fn metrics_parse_and_move_under_traffic() {
    let s = TestServer::start().await;
    let (status, before) = scrape(&s, &[]).await;
    assert_eq!(status, 200, "{before}");
    let (scrape0, v0) = values(&before);
    for name in SERIES {
        assert!(scrape0.docs.contains_key(name), "no HELP for {name}");
    }
    assert!(v0["roomgate_db_size_bytes{}"] > 0.0);

    let mut alice = s.authed("alice").await;
    let mut bob = s.authed("bob").await;
    alice.join("m").await;
    bob.join("m").await;
    alice.say("m", "hi").await;
    bob.expect("message").await;
    let mut mallory = s.client().await;
    mallory.send("auth", json!({"token": "not.a.jwt"})).await;
    mallory.expect_error("auth_failed").await;

    let (_, after) = scrape(&s, &[]).await;
    let (_, v1) = values(&after);
    assert_eq!(v1["roomgate_connections{}"], 3.0, "{after}");
    assert_eq!(v1["roomgate_connections_authenticated{}"], 2.0);
    assert_eq!(v1["roomgate_rooms{}"], 1.0);
    assert_eq!(v1["roomgate_room_participants{}"], 2.0);
    assert!(v1["roomgate_connections_opened_total{}"] >= 3.0);
    assert!(v1["roomgate_messages_in_total{}"] >= 6.0);
    // One broadcast to two members, timed; its history batch written and timed.
    assert_eq!(v1["roomgate_messages_out_total{}"], 1.0, "{after}");
    assert_eq!(v1["roomgate_deliveries_total{}"], 2.0, "{after}");
    assert_eq!(v1["roomgate_fanout_seconds{}"], 1.0, "{after}");
    s.server().state().history.sync().await;
    let (_, after) = scrape(&s, &[]).await;
    let (_, v2) = values(&after);
    assert!(v2["roomgate_history_append_seconds{}"] >= 1.0, "{after}");
    assert_eq!(
        v1["roomgate_auth_failures_total{reason=malformed}"], 1.0,
        "{after}"
    );
}

#[tokio::test]
async fn metrics_are_loopback_only_without_a_token_and_bearer_only_with_one() {
    let s = TestServer::start().await;
    let (status, body) = scrape(&s, &[("x-forwarded-for", "203.0.113.9")]).await;
    assert_eq!(status, 403);
    assert!(body.contains("metrics_forbidden"), "{body}");

    let s = TestServer::start_with(|c| {
        c.metrics.token = Some(roomgate::config::Secret("scrape-token-0123456789".into()));
    })
    .await;
    assert_eq!(scrape(&s, &[]).await.0, 401);
    assert_eq!(
        scrape(&s, &[("authorization", "Bearer wrong")]).await.0,
        401
    );
    let (status, body) = scrape(&s, &[("authorization", "Bearer scrape-token-0123456789")]).await;
    assert_eq!(status, 200);
    values(&body);
}

#[tokio::test]
async fn readyz_answers_while_the_store_does() {
    let s = TestServer::start().await;
    let r = http_request(s.addr, "GET", "/readyz", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ready");
}
