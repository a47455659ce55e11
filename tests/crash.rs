//! Crashes: the server is killed with SIGKILL under load, several times, in strict
//! durability. After each kill the database must open, every message acknowledged
//! before the kill must be in history with its seq, no entry may be stored twice, and a
//! revocation acknowledged before the kill must still be in force. Messages sent
//! without client ids (stored by plain inserts) must survive as a gapless prefix. This is the CI smoke
//! form; `scripts/crash-test.sh` runs more cycles by hand (CYCLES=50).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use roomgate::config::StoreConfig;
use roomgate::store::Store;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn token_jti(sub: &str, jti: &str) -> String {
    token_with(json!({"sub": sub, "jti": jti, "exp": now_secs() + 3600}))
}

/// Sends messages as `user` with fresh client ids until the connection dies; returns
/// what was acknowledged (client id → seq).
async fn publish_until_killed(url: String, user: String, cycle: usize) -> HashMap<String, u64> {
    let mut acks = HashMap::new();
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
        return acks;
    };
    let frame = |kind: &str, data: Value| {
        Message::text(json!({"type": kind, "data": data, "timestamp": 1}).to_string())
    };
    let _ = ws.send(frame("auth", json!({"token": token(&user)}))).await;
    let _ = ws.send(frame("join", json!({"roomId": "crash"}))).await;
    let (mut sent, mut joined) = (0u64, false);
    loop {
        while joined && sent < acks.len() as u64 + 8 {
            let id = format!("{user}-{cycle}-{sent}");
            let m = frame(
                "message",
                json!({"roomId": "crash", "content": id, "clientMsgId": id}),
            );
            if ws.send(m).await.is_err() {
                return acks;
            }
            sent += 1;
        }
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                match v["type"].as_str() {
                    Some("room_joined") => joined = true,
                    Some("message_ack") => {
                        acks.insert(
                            v["data"]["clientMsgId"].as_str().unwrap().to_string(),
                            v["data"]["seq"].as_u64().unwrap(),
                        );
                    }
                    _ => {}
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => return acks,
        }
    }
}

/// Sends messages without client ids to the room "plain" until the connection dies.
/// Nothing acknowledges them; what survives a kill must still be a gapless prefix.
async fn publish_plain_until_killed(url: String, cycle: usize) {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
        return;
    };
    let frame = |kind: &str, data: Value| {
        Message::text(json!({"type": kind, "data": data, "timestamp": 1}).to_string())
    };
    let _ = ws
        .send(frame("auth", json!({"token": token("plain")})))
        .await;
    let _ = ws.send(frame("join", json!({"roomId": "plain"}))).await;
    let (mut sink, mut stream) = ws.split();
    // Drain what the server sends so its queue never fills.
    tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    for n in 0u64.. {
        let m = frame(
            "message",
            json!({"roomId": "plain", "content": format!("plain-{cycle}-{n}")}),
        );
        if sink.send(m).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn sigkill_under_load_loses_no_acknowledged_message_or_revocation() {
    let cycles: usize = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("ROOMGATE_STORE__DURABILITY", "strict"),
        ("ROOMGATE_RATE_LIMITS__ENABLED", "false"),
        ("ROOMGATE_ROOMS__MESSAGE_HISTORY", "1000000"),
    ];
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut revoked: Vec<String> = Vec::new();
    for cycle in 0..cycles {
        let mut b = Binary::start(dir.path(), &env).await;
        // Revocations acknowledged in earlier cycles still hold.
        for jti in &revoked {
            let mut c = Client::connect(&b.url()).await;
            c.expect("handshake").await;
            c.send("auth", json!({"token": token_jti("victim", jti)}))
                .await;
            c.expect_error("token_revoked").await;
        }
        let tasks: Vec<_> = (0..3)
            .map(|i| tokio::spawn(publish_until_killed(b.url(), format!("p{i}"), cycle)))
            .collect();
        let plain = tokio::spawn(publish_plain_until_killed(b.url(), cycle));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let jti = format!("crash-{cycle}");
        let (ok, _, err) = run_cli(dir.path(), &["revoke", "--jti", &jti]).await;
        assert!(ok, "{err}");
        revoked.push(jti);
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.child.kill().await.unwrap();
        for t in tasks {
            acked.extend(t.await.unwrap());
        }
        plain.await.unwrap();

        // The database opens and holds every acknowledged message exactly once.
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let history = store.history("crash").unwrap();
        let by_seq: HashMap<u64, &str> = history
            .iter()
            .map(|h| (h.seq, h.content.as_str()))
            .collect();
        for (id, seq) in &acked {
            assert_eq!(
                by_seq.get(seq).copied(),
                Some(id.as_str()),
                "cycle {cycle}: acknowledged {id} (seq {seq}) lost"
            );
        }
        let mut contents: Vec<&str> = history.iter().map(|h| h.content.as_str()).collect();
        contents.sort();
        contents.dedup();
        assert_eq!(
            contents.len(),
            history.len(),
            "cycle {cycle}: duplicated entry"
        );
        for w in history.windows(2) {
            assert_eq!(w[1].seq, w[0].seq + 1, "cycle {cycle}: seq gap");
        }
        // Messages without client ids are stored by plain inserts, not a transaction:
        // what survives must still be gapless and without duplicates.
        let plain = store.history("plain").unwrap();
        assert!(!plain.is_empty(), "cycle {cycle}: no plain message stored");
        for w in plain.windows(2) {
            assert_eq!(w[1].seq, w[0].seq + 1, "cycle {cycle}: plain seq gap");
            assert_ne!(w[1].content, w[0].content, "cycle {cycle}: plain duplicate");
        }
        assert!(
            store
                .is_token_revoked(&format!("jti:crash-{cycle}"))
                .unwrap(),
            "cycle {cycle}: revocation lost"
        );
    }
    assert!(acked.len() > 30, "too little traffic: {}", acked.len());
}
