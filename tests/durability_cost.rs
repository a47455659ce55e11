//! The throughput cost of `store.durability = "strict"`, measured, not asserted: a
//! benchmark run by `scripts/bench-durability.sh` (release build), ignored by
//! `cargo test`. Eight publishers, each keeping 8 messages in flight with a
//! `clientMsgId`, send to one room for a few seconds against the real binary in relaxed
//! and then strict mode; it prints acknowledged messages per second and the latency from
//! send to `message_ack` (p50/p99), one JSON line per mode.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn publisher(url: String, user: String, run_for: Duration) -> (u64, Vec<u64>) {
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let frame = |kind: &str, data: Value| {
        Message::text(json!({"type": kind, "data": data, "timestamp": 1}).to_string())
    };
    ws.send(frame("auth", json!({"token": token(&user)})))
        .await
        .unwrap();
    ws.send(frame("join", json!({"roomId": "bench"})))
        .await
        .unwrap();
    let mut in_flight: HashMap<String, Instant> = HashMap::new();
    let mut latencies_us = Vec::new();
    let (mut n, mut joined) = (0u64, false);
    let mut acked = 0u64;
    let deadline = Instant::now() + run_for;
    loop {
        while joined && in_flight.len() < 8 && Instant::now() < deadline {
            let id = format!("{user}-{n}");
            n += 1;
            in_flight.insert(id.clone(), Instant::now());
            let m = frame(
                "message",
                json!({"roomId": "bench", "content": "x", "clientMsgId": id}),
            );
            ws.send(m).await.unwrap();
        }
        if Instant::now() >= deadline && in_flight.is_empty() {
            return (acked, latencies_us);
        }
        let Some(Ok(Message::Text(t))) = ws.next().await else {
            return (acked, latencies_us);
        };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        match v["type"].as_str() {
            Some("room_joined") => joined = true,
            Some("message_ack") => {
                let id = v["data"]["clientMsgId"].as_str().unwrap();
                if let Some(sent) = in_flight.remove(id) {
                    acked += 1;
                    latencies_us.push(sent.elapsed().as_micros() as u64);
                }
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run scripts/bench-durability.sh"]
async fn strict_durability_cost() {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    for mode in ["relaxed", "strict"] {
        let dir = tempfile::tempdir().unwrap();
        let b = Binary::start(
            dir.path(),
            &[
                ("ROOMGATE_STORE__DURABILITY", mode),
                ("ROOMGATE_RATE_LIMITS__ENABLED", "false"),
                ("ROOMGATE_ROOMS__MESSAGE_HISTORY", "10000000"),
                ("ROOMGATE_CONNECTION__MAX_CONNECTIONS_PER_USER", "64"),
            ],
        )
        .await;
        let started = Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                tokio::spawn(publisher(
                    b.url(),
                    format!("p{i}"),
                    Duration::from_secs(secs),
                ))
            })
            .collect();
        let (mut acked, mut lat) = (0u64, Vec::new());
        for t in tasks {
            let (a, l) = t.await.unwrap();
            acked += a;
            lat.extend(l);
        }
        let elapsed = started.elapsed().as_secs_f64();
        b.stop().await;
        lat.sort_unstable();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        println!(
            "{}",
            json!({
                "mode": mode,
                "publishers": 8,
                "in_flight_each": 8,
                "seconds": elapsed,
                "acked": acked,
                "acked_per_sec": (acked as f64 / elapsed).round(),
                "ack_p50_us": pct(0.50),
                "ack_p99_us": pct(0.99),
            })
        );
    }
}
