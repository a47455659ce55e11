//! History and recovery over real sockets: every message carries the room's `seq` and
//! `epoch`; `history` pages forward and backward and validates its query; a rejoin with
//! `since` replays the gap exactly once and in order, under concurrent publishing and
//! across a restart, and says `recovered: false` when the gap was trimmed or the epoch
//! changed; `clientMsgId` resends are neither stored nor broadcast twice, across
//! reconnects and restarts; retention by count and age per room type; and the shared
//! publish path used by an application (system) sender.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use roomgate::authz::unchecked_system_write;
use roomgate::hub::Lookup;
use roomgate::publish::{self, Sender};
use roomgate::store::RoomRecord;
use serde_json::{Value, json};

/// Sends `content` and returns the data of its echo (skipping others' messages; every
/// content in these tests is unique).
async fn say_echo(c: &mut Client, room: &str, content: &str) -> Value {
    c.say(room, content).await;
    loop {
        let m = c.expect("message").await;
        if m["data"]["content"] == content && m["data"]["roomId"] == room {
            return m["data"].clone();
        }
    }
}

/// Sends `content` with a client message id; returns the `message_ack` data (skipping
/// the echo, if any).
async fn say_with_id(c: &mut Client, room: &str, content: &str, id: &str) -> Value {
    c.send(
        "message",
        json!({"roomId": room, "content": content, "clientMsgId": id}),
    )
    .await;
    c.expect("message_ack").await["data"].clone()
}

/// `join {roomId, since, epoch}`; returns the `room_joined` data.
async fn join_since(c: &mut Client, room: &str, since: u64, epoch: &Value) -> Value {
    c.send(
        "join",
        json!({"roomId": room, "since": since, "epoch": epoch}),
    )
    .await;
    let v = c.expect("room_joined").await;
    assert_eq!(v["data"]["roomId"], room);
    v["data"].clone()
}

/// `history {...}`; returns the `history` data (or the error frame, whole).
async fn history(c: &mut Client, data: Value) -> Value {
    c.send("history", data).await;
    let v = c.recv().await;
    match v["type"].as_str() {
        Some("history") => v["data"].clone(),
        _ => v,
    }
}

fn seqs(page: &Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages in {page}"))
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

fn seq(m: &Value) -> u64 {
    m["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {m}"))
}

/// Reads `message` frames of `room` until one with `last` arrives; returns their seqs.
async fn seqs_until(c: &mut Client, room: &str, last: u64) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        let m = c.expect("message").await;
        if m["data"]["roomId"] != room {
            continue;
        }
        let s = seq(&m["data"]);
        got.push(s);
        if s >= last {
            return got;
        }
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// 1. Sequence and epoch ----------------------------------------------------------------

#[tokio::test]
async fn messages_carry_a_gapless_seq_and_the_room_epoch() {
    let s = TestServer::start().await;
    let mut alice = s.authed("alice").await;
    let joined = alice.join("seqs").await;
    assert_eq!(joined["seq"], 0, "{joined}");
    assert!(joined.get("recovered").is_none(), "{joined}");
    let epoch = joined["epoch"].clone();
    let e = epoch.as_u64().expect("epoch is a number");
    assert!(
        e > 0 && e < (1 << 53),
        "epoch {e} must be a safe JS integer"
    );

    let mut bob = s.authed("bob").await;
    bob.join("seqs").await;
    for i in 1..=3u64 {
        let m = say_echo(&mut alice, "seqs", &format!("m{i}")).await;
        assert_eq!(m["seq"], i);
        assert_eq!(m["epoch"], epoch);
        // The seed's shape is kept.
        assert_eq!(m["type"], "chat_message");
        assert_eq!(m["userId"], "alice");
        assert!(m["id"].is_string() && m["timestamp"].is_u64());
        assert!(m.get("clientMsgId").is_none() && m.get("system").is_none());
        let seen = bob.expect("message").await;
        assert_eq!(seen["data"], m);
    }
    // Another room counts on its own; a later join reports where the room is.
    let m = say_echo(&mut alice, "seqs", "m4").await;
    assert_eq!(m["seq"], 4);
    let mut carol = s.authed("carol").await;
    let joined = carol.join("seqs").await;
    assert_eq!(
        (joined["seq"].as_u64(), &joined["epoch"]),
        (Some(4), &epoch)
    );
    let other = carol.join("seqs.other").await;
    assert_eq!(other["seq"], 0);
    assert_ne!(other["epoch"], epoch);
}

// 2. History pages --------------------------------------------------------------------

#[tokio::test]
async fn history_pages_forward_and_backward_through_store_and_ring() {
    // A ring of 4 and pages of 5: most pages need the store and the ring together.
    let s = TestServer::start_with(|c| {
        c.rooms.recovery_buffer = 4;
        c.rooms.history_max_page = 5;
    })
    .await;
    let mut alice = s.authed("alice").await;
    let epoch = alice.join("pages").await["epoch"].clone();
    for i in 1..=12 {
        say_echo(&mut alice, "pages", &format!("m{i}")).await;
    }
    // A reader that never joined the room may read it.
    let mut bob = s.authed("bob").await;
    let newest = history(&mut bob, json!({"roomId": "pages"})).await;
    assert_eq!(seqs(&newest), [8, 9, 10, 11, 12], "{newest}");
    assert_eq!(newest["hasMore"], true);
    assert_eq!(newest["epoch"], epoch);
    assert_eq!(newest["seq"], 12);
    assert_eq!(newest["roomId"], "pages");
    let m = &newest["messages"][0];
    assert_eq!(m["content"], "m8");
    assert_eq!(m["userId"], "alice");
    assert_eq!(m["roomId"], "pages");
    assert_eq!(m["epoch"], epoch);

    // Scrolling upward.
    let up = history(&mut bob, json!({"roomId": "pages", "before": 8})).await;
    assert_eq!(
        (seqs(&up), &up["hasMore"]),
        (vec![3, 4, 5, 6, 7], &json!(true))
    );
    let top = history(&mut bob, json!({"roomId": "pages", "before": 3})).await;
    assert_eq!((seqs(&top), &top["hasMore"]), (vec![1, 2], &json!(false)));
    let none = history(&mut bob, json!({"roomId": "pages", "before": 1})).await;
    assert_eq!((seqs(&none), &none["hasMore"]), (vec![], &json!(false)));

    // Forward from a seq.
    let first = history(&mut bob, json!({"roomId": "pages", "since": 0})).await;
    assert_eq!(
        (seqs(&first), &first["hasMore"]),
        (vec![1, 2, 3, 4, 5], &json!(true))
    );
    let mid = history(&mut bob, json!({"roomId": "pages", "since": 6, "limit": 3})).await;
    assert_eq!((seqs(&mid), &mid["hasMore"]), (vec![7, 8, 9], &json!(true)));
    let tail = history(&mut bob, json!({"roomId": "pages", "since": 10})).await;
    assert_eq!(
        (seqs(&tail), &tail["hasMore"]),
        (vec![11, 12], &json!(false))
    );
    let end = history(&mut bob, json!({"roomId": "pages", "since": 12})).await;
    assert_eq!((seqs(&end), &end["hasMore"]), (vec![], &json!(false)));
    // A limit above the cap is cut to it; limit 1 is the smallest page.
    let capped = history(
        &mut bob,
        json!({"roomId": "pages", "since": 0, "limit": 1000}),
    )
    .await;
    assert_eq!(seqs(&capped).len(), 5);
    let one = history(&mut bob, json!({"roomId": "pages", "limit": 1})).await;
    assert_eq!((seqs(&one), &one["hasMore"]), (vec![12], &json!(true)));

    // The same pages after a restart, now wholly from the store.
    drop(bob);
    alice.close().await;
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |c| {
        c.rooms.recovery_buffer = 4;
        c.rooms.history_max_page = 5;
    })
    .await;
    let mut bob = s.authed("bob").await;
    let up = history(&mut bob, json!({"roomId": "pages", "before": 8})).await;
    assert_eq!(seqs(&up), [3, 4, 5, 6, 7]);
    assert_eq!(up["epoch"], epoch);
    let newest = history(&mut bob, json!({"roomId": "pages"})).await;
    assert_eq!(seqs(&newest), [8, 9, 10, 11, 12]);
}

#[tokio::test]
async fn history_checks_its_query_and_read_access() {
    let s = TestServer::start_with(|c| c.rooms.history_max_page = 3).await;
    let st = s.server().state();
    st.store
        .put_room(&RoomRecord {
            id: "secret".into(),
            name: "Secret".into(),
            kind: "chat".into(),
            read: strings(&["ops"]),
            write: strings(&["ops"]),
            admin: strings(&["admin"]),
            max_participants: 10,
            auto_created: false,
            created_ms: 0,
            last_active_ms: 0,
            epoch: 1,
            show_emails: true,
            user_grants: Vec::new(),
            bans: Vec::new(),
        })
        .unwrap();
    let mut alice = s.authed("alice").await;
    alice.join("open").await;
    say_echo(&mut alice, "open", "hello").await;

    alice
        .send(
            "history",
            json!({"roomId": "open", "since": 1, "before": 5}),
        )
        .await;
    let e = alice.expect_error("invalid_history_query").await;
    assert_eq!(e["roomId"], "open");
    alice
        .send("history", json!({"roomId": "open", "limit": 0}))
        .await;
    alice.expect_error("invalid_history_query").await;
    for (field, bad) in [
        ("since", json!(-1)),
        ("since", json!(1.5)),
        ("since", json!("1")),
        ("before", json!(9007199254740992u64)),
        ("limit", json!(true)),
    ] {
        let mut data = json!({"roomId": "open"});
        data[field] = bad.clone();
        alice.send("history", data).await;
        let e = alice.expect_error("invalid_field").await;
        assert_eq!(e["field"], field, "{bad}");
    }
    alice.send("history", json!({"roomId": "bad room"})).await;
    alice.expect_error("invalid_room_id").await;
    alice.send("history", json!({"roomId": "nowhere"})).await;
    alice.expect_error("room_not_found").await;
    // history never creates a room.
    assert!(st.store.room("nowhere").unwrap().is_none());
    alice.send("history", json!({"roomId": "secret"})).await;
    let e = alice.expect_error("insufficient_permissions").await;
    assert_eq!(e["roomId"], "secret");
    // Largest accepted values are fine: the page is just empty.
    let page = history(
        &mut alice,
        json!({"roomId": "open", "since": 9007199254740991u64, "limit": 9007199254740991u64}),
    )
    .await;
    assert_eq!((seqs(&page), &page["hasMore"]), (vec![], &json!(false)));
    // Nothing above was a message.
    let page = history(&mut alice, json!({"roomId": "open"})).await;
    assert_eq!(seqs(&page), [1]);
}

// 3. Recovery -------------------------------------------------------------------------

/// Three publishers send concurrently while an observer disconnects after seeing some
/// messages and rejoins with `since`; they keep sending until well after the rejoin.
/// Across its two connections the observer sees every seq exactly once, in order, each
/// as it was broadcast and stored, with live messages following the replay.
async fn recovery_under_concurrent_publishing(ring: usize) {
    const PUBLISHERS: usize = 3;
    /// Each publisher sends at least this many, and this many more after the rejoin.
    const MIN_EACH: usize = 40;
    const AFTER: usize = 10;
    let s = Arc::new(
        TestServer::start_with(move |c| {
            c.rooms.recovery_buffer = ring;
            c.rate_limits.message.points = 10_000;
        })
        .await,
    );
    let mut observer = s.authed("observer").await;
    let epoch = observer.join("busy").await["epoch"].clone();

    let echoed = Arc::new(AtomicU64::new(0));
    let rejoined = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let (s, echoed, rejoined) = (s.clone(), echoed.clone(), rejoined.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = s.authed(&format!("pub{p}")).await;
            c.join("busy").await;
            let mut stop_at = None;
            let mut i = 0;
            while stop_at.is_none_or(|n| i < n) {
                say_echo(&mut c, "busy", &format!("p{p}-{i}")).await;
                echoed.fetch_add(1, Ordering::SeqCst);
                i += 1;
                if stop_at.is_none() && rejoined.load(Ordering::SeqCst) {
                    stop_at = Some(MIN_EACH.max(i + AFTER));
                }
                assert!(i < 10_000, "the observer never rejoined");
            }
            c.close().await;
            i
        }));
    }

    // Before the disconnect: everything up to some seq, in order.
    let mut first: Vec<(u64, Value)> = Vec::new();
    while first.len() < 20 {
        let m = observer.expect("message").await["data"].clone();
        first.push((seq(&m), m));
    }
    let since = first.last().map(|(s, _)| *s).unwrap();
    observer.close().await;

    // Publishing goes on while the observer is away: wait until a real gap exists.
    let gap_from = echoed.load(Ordering::SeqCst);
    eventually("publishers to send 40 more", || {
        echoed.load(Ordering::SeqCst) >= gap_from + 40
    })
    .await;

    let mut observer = s.authed("observer").await;
    let joined = join_since(&mut observer, "busy", since, &epoch).await;
    rejoined.store(true, Ordering::SeqCst);
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(joined["epoch"], epoch);
    let joined_seq = joined["seq"].as_u64().unwrap();
    assert!(joined_seq >= since + 40, "{joined}");
    let mut second: Vec<(u64, Value)> = Vec::new();
    let mut sent = 0;
    for t in tasks {
        sent += t.await.expect("publisher") as u64;
    }
    assert!(sent > joined_seq, "publishing went on after the rejoin");
    while second.last().is_none_or(|(s, _)| *s < sent) {
        let m = observer.recv().await;
        assert_ne!(m["type"], "room_joined", "one room_joined only: {m}");
        if m["type"] == "message" {
            second.push((seq(&m["data"]), m["data"].clone()));
        }
    }

    let all: Vec<u64> = first.iter().chain(&second).map(|(s, _)| *s).collect();
    let want: Vec<u64> = (1..=sent).collect();
    assert_eq!(
        all, want,
        "every seq exactly once, in order (since {since})"
    );
    // What was replayed is what was broadcast: compare with the stored history.
    s.server().state().history.sync().await;
    let stored = s.server().state().store.history("busy").unwrap();
    for (seq, m) in first.iter().chain(&second) {
        let r = &stored[*seq as usize - 1];
        assert_eq!(r.seq, *seq);
        assert_eq!(
            (m["id"].as_str(), m["content"].as_str()),
            (Some(r.id.as_str()), Some(r.content.as_str()))
        );
        assert_eq!(m["epoch"], epoch);
    }
    // Each publisher's messages keep their own order.
    for p in 0..PUBLISHERS {
        let prefix = format!("p{p}-");
        let mine: Vec<String> = first
            .iter()
            .chain(&second)
            .filter_map(|(_, m)| m["content"].as_str())
            .filter(|c| c.starts_with(&prefix))
            .map(str::to_string)
            .collect();
        let want: Vec<String> = (0..mine.len()).map(|i| format!("{prefix}{i}")).collect();
        assert_eq!(mine, want);
    }
}

#[tokio::test]
async fn rejoin_replays_the_gap_exactly_once_under_concurrent_publishing_from_the_ring() {
    recovery_under_concurrent_publishing(256).await;
}

#[tokio::test]
async fn rejoin_replays_the_gap_exactly_once_under_concurrent_publishing_from_store_and_ring() {
    // A ring of 4 cannot hold the gap: the replay splices the store and the ring while
    // messages keep arriving (and the store may lag behind the ring).
    recovery_under_concurrent_publishing(4).await;
}

#[tokio::test]
async fn rejoin_recovers_across_a_restart() {
    let s = TestServer::start_with(|c| c.rooms.recovery_buffer = 4).await;
    let mut alice = s.authed("alice").await;
    let epoch = alice.join("durable").await["epoch"].clone();
    let mut bob = s.authed("bob").await;
    bob.join("durable").await;
    for i in 1..=5 {
        say_echo(&mut alice, "durable", &format!("a{i}")).await;
    }
    alice.close().await;
    for i in 6..=10 {
        say_echo(&mut bob, "durable", &format!("b{i}")).await;
    }
    bob.close().await;
    let dir = s.stop().await;

    let s = TestServer::start_in(dir, |c| c.rooms.recovery_buffer = 4).await;
    let mut alice = s.authed("alice").await;
    let joined = join_since(&mut alice, "durable", 5, &epoch).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(
        (joined["seq"].as_u64(), &joined["epoch"]),
        (Some(10), &epoch)
    );
    for i in 6..=10u64 {
        let m = alice.recv().await;
        assert_eq!(m["type"], "message", "{m}");
        assert_eq!(
            (seq(&m["data"]), &m["data"]["content"]),
            (i, &json!(format!("b{i}")))
        );
    }
    // The sequence goes on where it was, and live messages follow the replay.
    let m = say_echo(&mut alice, "durable", "after").await;
    assert_eq!((seq(&m), &m["epoch"]), (11, &epoch));

    // A since equal to the room's seq recovers nothing and misses nothing.
    let mut carol = s.authed("carol").await;
    let joined = join_since(&mut carol, "durable", 11, &epoch).await;
    assert_eq!(joined["recovered"], true);
    carol.expect_silence(200).await;
    // Another epoch, or a since from the future, is not this history.
    let mut dave = s.authed("dave").await;
    let joined = join_since(&mut dave, "durable", 3, &json!(12345)).await;
    assert_eq!(
        (&joined["recovered"], &joined["epoch"]),
        (&json!(false), &epoch)
    );
    dave.expect_silence(200).await;
    let mut erin = s.authed("erin").await;
    let joined = join_since(&mut erin, "durable", 99, &epoch).await;
    assert_eq!(joined["recovered"], false);
    erin.expect_silence(200).await;
    // Joining twice on one socket: the socket missed nothing.
    let again = join_since(&mut alice, "durable", 1, &epoch).await;
    assert_eq!(
        (&again["recovered"], &again["seq"]),
        (&json!(true), &json!(11))
    );
    alice.expect_silence(200).await;
}

#[tokio::test]
async fn rejoin_after_history_was_trimmed_past_the_gap_is_not_recovered() {
    let s = TestServer::start_with(|c| {
        c.rooms.retention.chat.max_messages = 5;
        c.rate_limits.message.points = 1000;
    })
    .await;
    let mut alice = s.authed("alice").await;
    let epoch = alice.join("short").await["epoch"].clone();
    let mut bob = s.authed("bob").await;
    bob.join("short").await;
    say_echo(&mut alice, "short", "one").await;
    say_echo(&mut alice, "short", "two").await;
    alice.close().await;
    for i in 3..=20 {
        say_echo(&mut bob, "short", &format!("m{i}")).await;
    }
    let mut alice = s.authed("alice").await;
    let joined = join_since(&mut alice, "short", 2, &epoch).await;
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(
        (joined["seq"].as_u64(), &joined["epoch"]),
        (Some(20), &epoch)
    );
    // No replay: the next message is a live one.
    let m = say_echo(&mut bob, "short", "live").await;
    assert_eq!(seq(&alice.expect("message").await["data"]), seq(&m));
    // What is left is the last five, in the store and in the ring alike.
    let page = history(&mut alice, json!({"roomId": "short", "since": 0})).await;
    assert_eq!(seqs(&page), [17, 18, 19, 20, 21]);
    s.server().state().history.sync().await;
    let stored: Vec<u64> = s
        .server()
        .state()
        .store
        .history("short")
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(stored, [17, 18, 19, 20, 21]);
    // A gap that still fits is recovered.
    let mut carol = s.authed("carol").await;
    let joined = join_since(&mut carol, "short", 17, &epoch).await;
    assert_eq!(joined["recovered"], true);
    assert_eq!(seqs_until(&mut carol, "short", 21).await, [18, 19, 20, 21]);
}

#[tokio::test]
async fn a_gap_longer_than_the_replay_limit_is_not_recovered() {
    let s = TestServer::start_with(|c| {
        c.rooms.max_recovery_messages = 3;
        c.rate_limits.message.points = 1000;
    })
    .await;
    let mut alice = s.authed("alice").await;
    let epoch = alice.join("limit").await["epoch"].clone();
    for i in 1..=7 {
        say_echo(&mut alice, "limit", &format!("m{i}")).await;
    }
    let mut bob = s.authed("bob").await;
    let joined = join_since(&mut bob, "limit", 3, &epoch).await;
    assert_eq!(joined["recovered"], false, "a gap of 4 > 3");
    bob.expect_silence(200).await;
    let mut carol = s.authed("carol").await;
    let joined = join_since(&mut carol, "limit", 4, &epoch).await;
    assert_eq!(joined["recovered"], true, "a gap of 3 fits");
    assert_eq!(seqs_until(&mut carol, "limit", 7).await, [5, 6, 7]);
}

#[tokio::test]
async fn a_history_reset_starts_a_new_epoch_that_stale_since_values_cannot_use() {
    let s = TestServer::start().await;
    let state = s.server().state().clone();
    let mut alice = s.authed("alice").await;
    let old = alice.join("reset").await["epoch"].clone();
    say_with_id(&mut alice, "reset", "before", "c-1").await;
    for i in 2..=4 {
        say_echo(&mut alice, "reset", &format!("m{i}")).await;
    }
    let new = roomgate::history::reset(&state, "reset")
        .await
        .expect("reset")
        .expect("room exists");
    assert_ne!(json!(new), old);
    assert_eq!(state.store.room("reset").unwrap().unwrap().epoch, new);
    assert!(state.store.history("reset").unwrap().is_empty());
    assert_eq!(
        roomgate::history::reset(&state, "no-such-room")
            .await
            .unwrap(),
        None
    );

    // Members continue in the new epoch from seq 1.
    let m = say_echo(&mut alice, "reset", "after").await;
    assert_eq!((seq(&m), &m["epoch"]), (1, &json!(new)));
    // A stale since recovers nothing; history has only the new epoch.
    let mut bob = s.authed("bob").await;
    let joined = join_since(&mut bob, "reset", 2, &old).await;
    assert_eq!(
        (&joined["recovered"], &joined["epoch"], &joined["seq"]),
        (&json!(false), &json!(new), &json!(1))
    );
    bob.expect_silence(200).await;
    let page = history(&mut bob, json!({"roomId": "reset"})).await;
    assert_eq!((seqs(&page), &page["epoch"]), (vec![1], &json!(new)));
    // A client id used before the reset is new again.
    let ack = say_with_id(&mut alice, "reset", "again", "c-1").await;
    assert_eq!((&ack["duplicate"], &ack["seq"]), (&json!(false), &json!(2)));
    // The new epoch and its sequence survive a restart.
    drop(state);
    alice.close().await;
    bob.close().await;
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |_| {}).await;
    let mut carol = s.authed("carol").await;
    let joined = join_since(&mut carol, "reset", 1, &json!(new)).await;
    assert_eq!(
        (&joined["recovered"], &joined["seq"]),
        (&json!(true), &json!(2))
    );
    assert_eq!(seqs_until(&mut carol, "reset", 2).await, [2]);
}

// 4. Sender idempotency ---------------------------------------------------------------

#[tokio::test]
async fn a_resent_client_msg_id_is_stored_and_broadcast_once() {
    let s = TestServer::start_with(|c| c.rooms.max_client_msg_id_len = 8).await;
    let mut alice = s.authed("alice").await;
    let epoch = alice.join("idem").await["epoch"].clone();
    let mut bob = s.authed("bob").await;
    bob.join("idem").await;

    alice
        .send(
            "message",
            json!({"roomId": "idem", "content": "hello", "clientMsgId": "abc-1"}),
        )
        .await;
    let echo = alice.expect("message").await;
    assert_eq!(echo["data"]["clientMsgId"], "abc-1");
    let ack = alice.recv().await;
    assert_eq!(
        ack["type"], "message_ack",
        "the ack follows the echo: {ack}"
    );
    let ack = &ack["data"];
    assert_eq!(
        (
            &ack["roomId"],
            &ack["clientMsgId"],
            &ack["id"],
            &ack["seq"],
            &ack["epoch"],
            &ack["duplicate"]
        ),
        (
            &json!("idem"),
            &json!("abc-1"),
            &echo["data"]["id"],
            &json!(1),
            &epoch,
            &json!(false)
        )
    );
    assert_eq!(bob.expect("message").await["data"]["clientMsgId"], "abc-1");

    // The resend: only an ack, with the original's id and seq.
    let dup = say_with_id(&mut alice, "idem", "hello again", "abc-1").await;
    assert_eq!(
        (&dup["id"], &dup["seq"], &dup["duplicate"]),
        (&ack["id"], &json!(1), &json!(true))
    );
    bob.expect_silence(200).await;
    // The same id from another user, or in another room, is another message.
    let other = say_with_id(&mut bob, "idem", "mine", "abc-1").await;
    assert_eq!(
        (&other["seq"], &other["duplicate"]),
        (&json!(2), &json!(false))
    );
    alice.join("idem.2").await;
    let other = say_with_id(&mut alice, "idem.2", "elsewhere", "abc-1").await;
    assert_eq!(
        (&other["seq"], &other["duplicate"]),
        (&json!(1), &json!(false))
    );
    // Messages without an id get no ack.
    say_echo(&mut alice, "idem", "plain").await;
    alice.expect_silence(200).await;

    // Bad ids are refused and nothing is sent: empty, too long (the limit is 8), odd
    // characters. Exactly 8 is fine.
    for bad in ["", "123456789", "a b", "ü", "a/b"] {
        alice
            .send(
                "message",
                json!({"roomId": "idem", "content": "x", "clientMsgId": bad}),
            )
            .await;
        let e = alice.expect_error("invalid_client_msg_id").await;
        assert_eq!(e["roomId"], "idem", "{bad:?}");
    }
    let ok = say_with_id(&mut alice, "idem", "eight", "12345678").await;
    assert_eq!(ok["duplicate"], false);
    let stored = {
        s.server().state().history.sync().await;
        s.server().state().store.history("idem").unwrap()
    };
    let contents: Vec<&str> = stored.iter().map(|r| r.content.as_str()).collect();
    assert_eq!(contents, ["hello", "mine", "plain", "eight"]);
    assert_eq!(stored[0].client_msg_id.as_deref(), Some("abc-1"));

    // A new connection of the same user: still a duplicate.
    alice.close().await;
    let mut alice = s.authed("alice").await;
    alice.join("idem").await;
    let dup = say_with_id(&mut alice, "idem", "hello", "abc-1").await;
    assert_eq!((&dup["id"], &dup["duplicate"]), (&ack["id"], &json!(true)));

    // And after a restart (the room is reloaded, so the store answers).
    alice.close().await;
    bob.close().await;
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |c| c.rooms.max_client_msg_id_len = 8).await;
    let mut alice = s.authed("alice").await;
    alice.join("idem").await;
    let dup = say_with_id(&mut alice, "idem", "hello", "abc-1").await;
    assert_eq!(
        (&dup["id"], &dup["seq"], &dup["duplicate"], &dup["epoch"]),
        (&ack["id"], &json!(1), &json!(true), &epoch)
    );
    let fresh = say_with_id(&mut alice, "idem", "new", "abc-2").await;
    assert_eq!(
        (&fresh["seq"], &fresh["duplicate"]),
        (&json!(5), &json!(false))
    );
    let store = &s.server().state().store;
    s.server().state().history.sync().await;
    assert_eq!(store.history("idem").unwrap().len(), 5);
}

#[tokio::test]
async fn a_client_msg_id_is_forgotten_after_the_window() {
    let s = TestServer::start_with(|c| c.rooms.dedupe_window_secs = 1).await;
    let mut alice = s.authed("alice").await;
    alice.join("window").await;
    let sent = Instant::now();
    let first = say_with_id(&mut alice, "window", "once", "w-1").await;
    assert_eq!(first["duplicate"], false);
    // Resend until the id is forgotten; each resend before that is a duplicate.
    loop {
        let ack = say_with_id(&mut alice, "window", "once", "w-1").await;
        if ack["duplicate"] == false {
            assert!(
                sent.elapsed() >= Duration::from_millis(900),
                "forgotten after {:?}",
                sent.elapsed()
            );
            assert_eq!(ack["seq"], 2);
            break;
        }
        assert_eq!(ack["seq"], 1);
        assert!(sent.elapsed() < Duration::from_secs(5), "never forgotten");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

#[tokio::test]
async fn ids_beyond_the_in_memory_cap_are_found_in_the_store() {
    // Time passing is the subject here: the room must have been loaded for longer than
    // the window, so that its memory alone would be trusted if it had not evicted.
    let s = TestServer::start_with(|c| {
        c.rooms.dedupe_window_secs = 2;
        c.rooms.dedupe_max_entries = 2;
    })
    .await;
    let mut alice = s.authed("alice").await;
    alice.join("capped").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        let ack = say_with_id(&mut alice, "capped", id, id).await;
        assert_eq!(
            (&ack["seq"], &ack["duplicate"]),
            (&json!(i + 1), &json!(false))
        );
    }
    // "a" was evicted from memory (cap 2) right away; the store still knows it, even
    // though the writer may not have applied it yet.
    for id in ["a", "b", "c"] {
        let ack = say_with_id(&mut alice, "capped", "again", id).await;
        assert_eq!(ack["duplicate"], true, "{id}: {ack}");
    }
    s.server().state().history.sync().await;
    assert_eq!(s.server().state().store.history("capped").unwrap().len(), 3);
}

// 5. Retention -------------------------------------------------------------------------

#[tokio::test]
async fn retention_is_per_room_type_by_count_and_age() {
    let s = TestServer::start_with(|c| {
        c.rooms.retention.document.max_messages = 2;
        c.rooms.retention.collaboration.max_age_secs = 1;
        c.store.sweep_interval_secs = 1;
        c.rate_limits.message.points = 1000;
    })
    .await;
    let st = s.server().state().clone();
    for (id, kind) in [("doc", "document"), ("collab", "collaboration")] {
        st.store
            .put_room(&RoomRecord {
                id: id.into(),
                name: id.into(),
                kind: kind.into(),
                read: strings(&["user"]),
                write: strings(&["user"]),
                admin: strings(&["admin"]),
                max_participants: 10,
                auto_created: false,
                created_ms: 0,
                last_active_ms: 0,
                epoch: 7,
                show_emails: true,
                user_grants: Vec::new(),
                bans: Vec::new(),
            })
            .unwrap();
    }
    let mut alice = s.authed("alice").await;
    for room in ["doc", "collab", "chat"] {
        alice.join(room).await;
        for i in 1..=4 {
            say_echo(&mut alice, room, &format!("{room}{i}")).await;
        }
    }
    // Count: documents keep 2 (in the store and in what history serves), chat 1000.
    let page = history(&mut alice, json!({"roomId": "doc", "since": 0})).await;
    assert_eq!(seqs(&page), [3, 4]);
    st.history.sync().await;
    assert_eq!(st.store.history("doc").unwrap().len(), 2);
    assert_eq!(st.store.history("chat").unwrap().len(), 4);

    // Age: collaboration messages go within a sweep or two of turning one second old,
    // from the store and from the room's ring; the others stay.
    eventually("old collaboration messages to be deleted", || {
        st.store.history("collab").unwrap().is_empty()
    })
    .await;
    let page = history(&mut alice, json!({"roomId": "collab"})).await;
    assert_eq!((seqs(&page), &page["seq"]), (vec![], &json!(4)));
    assert_eq!(st.store.history("chat").unwrap().len(), 4);
    // The sequence does not restart, not even after a restart with nothing stored.
    let m = say_echo(&mut alice, "collab", "fresh").await;
    assert_eq!(seq(&m), 5);
    eventually("the fresh message to age out too", || {
        st.store.history("collab").unwrap().is_empty()
    })
    .await;
    drop(st);
    alice.close().await;
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |_| {}).await;
    let mut alice = s.authed("alice").await;
    let joined = alice.join("collab").await;
    assert_eq!((&joined["seq"], &joined["epoch"]), (&json!(5), &json!(7)));
    let m = say_echo(&mut alice, "collab", "later").await;
    assert_eq!(seq(&m), 6);
}

// 6. The publish path for applications --------------------------------------------------

#[tokio::test]
async fn a_system_sender_publishes_through_the_same_path() {
    let s = TestServer::start().await;
    let state = s.server().state().clone();
    let mut alice = s.authed("alice").await;
    alice.join("news").await;
    say_echo(&mut alice, "news", "first").await;
    let Lookup::Found(room) = state.hub.load("news", false).unwrap() else {
        panic!("room exists");
    };
    let sender = Sender {
        user_id: "system".into(),
        email: None,
        system: true,
    };
    let ack = publish::publish(
        &state,
        &room,
        unchecked_system_write(),
        &sender,
        "deploy <b>done</b>",
        Some("deploy-42"),
    )
    .await
    .expect("published");
    assert_eq!((ack.seq, ack.duplicate), (2, false));
    let m = alice.expect("message").await["data"].clone();
    assert_eq!(
        (&m["userId"], &m["system"], &m["seq"], &m["content"]),
        (
            &json!("system"),
            &json!(true),
            &json!(2),
            &json!("deploy bdone/b")
        )
    );
    assert_eq!(m["id"], ack.id);
    // Idempotent for applications too.
    let again = publish::publish(
        &state,
        &room,
        unchecked_system_write(),
        &sender,
        "deploy done",
        Some("deploy-42"),
    )
    .await
    .unwrap();
    assert_eq!(
        (again.id.as_str(), again.seq, again.duplicate),
        (ack.id.as_str(), 2, true)
    );
    alice.expect_silence(200).await;
    let err = publish::publish(
        &state,
        &room,
        unchecked_system_write(),
        &sender,
        "x",
        Some("no spaces"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, publish::PublishError::InvalidClientMsgId),
        "{err}"
    );
    // Into a room nobody is in: stored, and seen by the next reader.
    let Lookup::Found(empty) = state.hub.load("news", false).unwrap() else {
        panic!("room exists");
    };
    alice.close().await;
    publish::publish(
        &state,
        &empty,
        unchecked_system_write(),
        &sender,
        "while away",
        None,
    )
    .await
    .unwrap();
    let mut bob = s.authed("bob").await;
    let page = history(&mut bob, json!({"roomId": "news"})).await;
    assert_eq!(seqs(&page), [1, 2, 3]);
    assert_eq!(page["messages"][2]["system"], true);
    assert!(page["messages"][0].get("system").is_none());
}
