//! Graceful shutdown under traffic: SIGTERM closes every socket with 1001, and every
//! message the server acknowledged (`message_ack`) is in history, once, after the stop.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use roomgate::config::StoreConfig;
use roomgate::store::Store;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Publishes as `user` until the server closes; returns (acks by clientMsgId → seq, close code).
async fn publisher(url: String, user: String) -> (HashMap<String, u64>, Option<u16>) {
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let send = |kind: &str, data: Value| {
        Message::text(json!({"type": kind, "data": data, "timestamp": 1}).to_string())
    };
    ws.send(send("auth", json!({"token": token(&user)})))
        .await
        .unwrap();
    ws.send(send("join", json!({"roomId": "shutdown"})))
        .await
        .unwrap();
    let mut acks = HashMap::new();
    let mut sent = 0u64;
    let mut joined = false;
    loop {
        // Keep up to 8 messages in flight once joined.
        while joined && sent < acks.len() as u64 + 8 {
            let id = format!("{user}-{sent}");
            let frame = send(
                "message",
                json!({"roomId": "shutdown", "content": id, "clientMsgId": id}),
            );
            if ws.send(frame).await.is_err() {
                break;
            }
            sent += 1;
        }
        let msg = match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(m))) => m,
            _ => return (acks, None),
        };
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                match v["type"].as_str() {
                    Some("room_joined") => joined = true,
                    Some("message_ack") => {
                        let id = v["data"]["clientMsgId"].as_str().unwrap().to_string();
                        acks.insert(id, v["data"]["seq"].as_u64().unwrap());
                    }
                    Some("error") => panic!("{user}: {v}"),
                    _ => {}
                }
            }
            Message::Close(frame) => return (acks, frame.map(|f| u16::from(f.code))),
            _ => {}
        }
    }
}

#[tokio::test]
async fn sigterm_under_traffic_closes_with_1001_and_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let b = Binary::start(
        dir.path(),
        &[
            ("ROOMGATE_RATE_LIMITS__ENABLED", "false"),
            ("ROOMGATE_CONNECTION__MAX_CONNECTIONS_PER_USER", "4"),
            // Keep every message, so "not in history" can only mean lost.
            ("ROOMGATE_ROOMS__MESSAGE_HISTORY", "1000000"),
        ],
    )
    .await;
    let url = b.url();
    let tasks: Vec<_> = (0..4)
        .map(|i| tokio::spawn(publisher(url.clone(), format!("p{i}"))))
        .collect();
    // Let traffic build, then stop the server in the middle of it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    b.stop().await;

    let mut acked: HashMap<String, u64> = HashMap::new();
    for t in tasks {
        let (acks, code) = t.await.unwrap();
        assert_eq!(code, Some(1001), "a socket was not closed with going-away");
        acked.extend(acks);
    }
    assert!(
        acked.len() > 20,
        "too little traffic to mean anything: {}",
        acked.len()
    );

    let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    let history = store.history("shutdown").unwrap();
    let by_seq: HashMap<u64, &roomgate::store::HistoryRecord> =
        history.iter().map(|h| (h.seq, h)).collect();
    let max_acked = acked.values().max().copied().unwrap_or(0);
    let seqs: Vec<u64> = history.iter().map(|h| h.seq).collect();
    eprintln!(
        "acked {} (max seq {max_acked}); history {} entries, seqs {:?}..{:?}",
        acked.len(),
        history.len(),
        seqs.first(),
        seqs.last()
    );
    for (id, seq) in &acked {
        let h = by_seq
            .get(seq)
            .unwrap_or_else(|| panic!("acknowledged {id} (seq {seq}) is not in history"));
        assert_eq!(&h.content, id);
        assert_eq!(h.client_msg_id.as_deref(), Some(id.as_str()));
    }
    // Nothing stored twice, and seqs are gapless in order.
    let mut ids: Vec<&str> = history.iter().map(|h| h.content.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), history.len(), "a message is stored twice");
    for (i, h) in history.iter().enumerate() {
        assert_eq!(h.seq, i as u64 + 1, "seq gap in history");
    }
}
