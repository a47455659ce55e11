//! Rooms end to end: role-based authorization, auto-creation, room-id validation,
//! capacity, per-connection room caps, broadcast isolation, slow consumers, and history
//! that survives a restart.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, Stream, StreamExt};
use roomgate::store::{RoomRecord, Store};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Runs a CLI command against the data root and asserts it succeeded.
async fn cli_ok(dir: &Path, args: &[&str]) -> String {
    let (ok, out, err) = run_cli(dir, args).await;
    assert!(ok, "roomgate {args:?} failed: {err}");
    out
}

/// Sends a join that must be refused with `code`; returns the error data.
async fn join_refused(c: &mut Client, room: &str, code: &str) -> Value {
    c.send("join", json!({ "roomId": room })).await;
    let e = c.expect_error(code).await;
    if code != "invalid_room_id" {
        assert_eq!(e["roomId"], room, "{e}");
    }
    e
}

/// Sends a message and returns the echoed `message` data (the sender is a member).
async fn say_echo(c: &mut Client, room: &str, content: &str) -> Value {
    c.say(room, content).await;
    let m = c.recv().await;
    assert_eq!(
        m["type"], "message",
        "expected the echo of {content:?}, got {m}"
    );
    assert_eq!(m["data"]["roomId"], room);
    assert_eq!(m["data"]["content"], content);
    m["data"].clone()
}

fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = serde_json::from_value(v.clone()).expect("string list");
    out.sort();
    out
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

// 1. Authorization -------------------------------------------------------------------

#[tokio::test]
async fn restricted_room_admits_only_listed_roles() {
    let s = TestServer::start().await;
    let dir = s.dir.path();
    // Created through the running server's control socket.
    cli_ok(
        dir,
        &[
            "room", "create", "staff", "--type", "chat", "--read", "staff", "--write", "staff",
            "--admin", "admin",
        ],
    )
    .await;
    cli_ok(dir, &["user", "roles", "bob", "--set", "staff"]).await;

    let mut alice = s.authed("alice").await;
    let e = join_refused(&mut alice, "staff", "insufficient_permissions").await;
    assert_eq!(e["message"], "Insufficient permissions");
    // The refused join left alice outside the room.
    alice.say("staff", "let me in").await;
    alice.expect_error("not_member").await;

    let mut bob = s.client().await;
    let ok = bob.auth(&token("bob")).await;
    assert_eq!(ok["user"]["roles"], json!(["user", "staff"]));
    let joined = bob.join("staff").await;
    assert_eq!(joined["participants"], json!(["bob"]));
    say_echo(&mut bob, "staff", "staff only").await;
    alice.expect_silence(200).await;

    // The refusal is a security event.
    let st = s.server().state();
    st.audit.sync().await;
    let denied = st
        .store
        .events(&roomgate::store::EventFilter {
            action: Some("permission_denied".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert!(
        denied[0]
            .metadata
            .contains(&("roomId".to_string(), "staff".to_string()))
    );
}

#[tokio::test]
async fn read_only_room_refuses_messages_from_readers() {
    let s = TestServer::start().await;
    let dir = s.dir.path();
    cli_ok(
        dir,
        &[
            "room", "create", "news", "--read", "user", "--write", "writer",
        ],
    )
    .await;
    cli_ok(dir, &["user", "roles", "wendy", "--set", "writer"]).await;

    let mut alice = s.authed("alice").await;
    alice.join("news").await;
    alice.say("news", "can I post?").await;
    let e = alice.expect_error("insufficient_permissions").await;
    assert_eq!(e["message"], "Insufficient permissions");
    assert_eq!(e["roomId"], "news");

    let mut wendy = s.authed("wendy").await;
    wendy.join("news").await;
    // alice hears wendy arrive, but nothing of her own refused post.
    let first = alice.recv().await;
    assert_eq!(first["type"], "user_joined", "{first}");
    assert_eq!(first["data"]["userId"], "wendy");
    say_echo(&mut wendy, "news", "extra! extra!").await;
    let m = alice.recv().await;
    assert_eq!(m["type"], "message", "{m}");
    assert_eq!(m["data"]["content"], "extra! extra!");
    assert_eq!(m["data"]["userId"], "wendy");
}

#[tokio::test]
async fn room_policy_stored_directly_is_enforced() {
    let s = TestServer::start().await;
    let st = s.server().state();
    st.store
        .put_room(&RoomRecord {
            id: "ops".into(),
            name: "Ops".into(),
            kind: "collaboration".into(),
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
    st.store
        .set_user_roles("olga", strings(&["ops"]), 0)
        .unwrap();
    let mut alice = s.authed("alice").await;
    join_refused(&mut alice, "ops", "insufficient_permissions").await;
    let mut olga = s.authed("olga").await;
    olga.join("ops").await;
    say_echo(&mut olga, "ops", "deploying").await;
}

// 2. Auto-creation -------------------------------------------------------------------

#[tokio::test]
async fn unknown_room_is_auto_created_with_seed_defaults() {
    let s = TestServer::start().await;
    let store = &s.server().state().store;
    assert!(store.room("fresh").unwrap().is_none());

    let mut alice = s.authed("alice").await;
    let joined = alice.join("fresh").await;
    assert_eq!(joined["participants"], json!(["alice"]));

    let r = store
        .room("fresh")
        .unwrap()
        .expect("room record created on join");
    assert_eq!(r.id, "fresh");
    assert_eq!(r.name, "Room fresh");
    assert_eq!(r.kind, "chat");
    assert_eq!(r.read, strings(&["user"]));
    assert_eq!(r.write, strings(&["user"]));
    assert_eq!(r.admin, strings(&["admin"]));
    assert_eq!(r.max_participants, 100);
    assert!(r.auto_created);
    say_echo(&mut alice, "fresh", "first!").await;
}

#[tokio::test]
async fn without_auto_create_unknown_rooms_are_not_found() {
    let s = TestServer::start_with(|c| c.rooms.auto_create = false).await;
    let store = &s.server().state().store;
    let mut alice = s.authed("alice").await;
    let e = join_refused(&mut alice, "nowhere", "room_not_found").await;
    assert_eq!(e["message"], "Room not found");
    assert!(store.room("nowhere").unwrap().is_none());
    // Asking again does not create it either.
    join_refused(&mut alice, "nowhere", "room_not_found").await;
    assert_eq!(store.room_count(), 0);

    cli_ok(s.dir.path(), &["room", "create", "made"]).await;
    alice.join("made").await;
    say_echo(&mut alice, "made", "it exists").await;
}

// 3. Room ids ------------------------------------------------------------------------

#[tokio::test]
async fn room_ids_are_validated_and_bad_ones_create_nothing() {
    let s = TestServer::start().await;
    let st = s.server().state();
    let max = st.cfg.rooms.max_room_id_len;
    let mut alice = s.authed("alice").await;

    let too_long = "a".repeat(max + 1);
    let bad = [
        "",
        too_long.as_str(),
        "has space",
        "a/b",
        "../etc",
        "<script>",
        "café",
        "日本",
        "tab\there",
        "nul\0",
        "semi;colon",
    ];
    for id in bad {
        let e = join_refused(&mut alice, id, "invalid_room_id").await;
        assert_eq!(e["message"], "Invalid room id", "{id:?}");
    }
    // The other room frames validate too.
    alice.send("leave", json!({"roomId": "a/b"})).await;
    alice.expect_error("invalid_room_id").await;
    alice.say("<x>", "hi").await;
    alice.expect_error("invalid_room_id").await;
    assert_eq!(st.store.room_count(), 0, "{:?}", st.store.rooms().unwrap());

    let longest = "b".repeat(max);
    alice.join(&longest).await;
    alice.join("Aa0_-.:z").await;
    let mut ids: Vec<String> = st
        .store
        .rooms()
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.sort();
    let mut want = vec![longest.clone(), "Aa0_-.:z".to_string()];
    want.sort();
    assert_eq!(ids, want);
}

// 4. Capacity ------------------------------------------------------------------------

#[tokio::test]
async fn capacity_counts_distinct_users_not_sockets() {
    let s = TestServer::start().await;
    cli_ok(s.dir.path(), &["room", "create", "small", "--max", "2"]).await;

    let mut alice = s.authed("alice").await;
    let mut bob = s.authed("bob").await;
    let mut carol = s.authed("carol").await;
    alice.join("small").await;
    bob.join("small").await;
    let e = join_refused(&mut carol, "small", "room_full").await;
    assert_eq!(e["message"], "Room is full");

    // A second tab of a present user always fits.
    let mut alice2 = s.authed("alice").await;
    let joined = alice2.join("small").await;
    assert_eq!(sorted(&joined["participants"]), strings(&["alice", "bob"]));
    join_refused(&mut carol, "small", "room_full").await;

    // A user leaving frees the place.
    bob.send("leave", json!({"roomId": "small"})).await;
    bob.expect("room_left").await;
    let joined = carol.join("small").await;
    assert_eq!(
        sorted(&joined["participants"]),
        strings(&["alice", "carol"])
    );
}

// 5. Rooms per connection ------------------------------------------------------------

#[tokio::test]
async fn rooms_per_connection_are_capped() {
    let s = TestServer::start_with(|c| c.connection.max_rooms_per_connection = 2).await;
    let mut alice = s.authed("alice").await;
    alice.join("one").await;
    alice.join("two").await;
    let e = join_refused(&mut alice, "three", "too_many_rooms").await;
    assert_eq!(e["message"], "Too many rooms");
    // Re-joining a room it is already in is not a new room.
    alice.join("two").await;
    // The cap is per connection: another socket of the same user has its own.
    let mut tab = s.authed("alice").await;
    tab.join("three").await;

    alice.send("leave", json!({"roomId": "one"})).await;
    assert_eq!(alice.expect("room_left").await["data"]["roomId"], "one");
    alice.join("three").await;
    join_refused(&mut alice, "one", "too_many_rooms").await;
}

// 6. Broadcast isolation -------------------------------------------------------------

#[tokio::test]
async fn broadcast_reaches_exactly_the_rooms_members() {
    let s = TestServer::start().await;
    // (label, user, rooms)
    let layout: [(&str, &str, &[&str]); 8] = [
        ("ann", "ann", &["r1"]),
        ("ann-tab", "ann", &["r1"]),
        ("amy", "amy", &["r1"]),
        ("xav", "xav", &["r1", "r2"]),
        ("bea", "bea", &["r2"]),
        ("bo", "bo", &["r2"]),
        ("cid", "cid", &["r3"]),
        ("cyd", "cyd", &["r3"]),
    ];
    let mut clients = Vec::new();
    for (label, user, rooms) in layout {
        let mut c = s.authed(user).await;
        for r in rooms {
            c.join(r).await;
        }
        clients.push((label, c, rooms));
    }
    // Presence frames are queued before each joiner's room_joined, so a heartbeat round
    // trip drains every client.
    for (_, c, _) in clients.iter_mut() {
        c.send("heartbeat", json!({})).await;
        c.expect("heartbeat_response").await;
    }

    // (sender label, room, content); each sender waits for its own echo, which is
    // queued to every member in the same critical section.
    let sends = [
        ("ann", "r1", "to r1 from ann"),
        ("bea", "r2", "to r2 from bea"),
        ("cyd", "r3", "to r3 from cyd"),
        ("xav", "r2", "to r2 from xav"),
        ("ann-tab", "r1", "to r1 from ann's tab"),
    ];
    let mut got: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (from, room, content) in sends {
        let (_, c, _) = clients.iter_mut().find(|(l, _, _)| *l == from).unwrap();
        c.say(room, content).await;
        // Earlier messages from its other rooms may come first; keep them too.
        loop {
            let v = c.recv().await;
            assert_eq!(v["type"], "message", "{from}: {v}");
            let d = &v["data"];
            let entry = format!(
                "{}|{}",
                d["roomId"].as_str().unwrap(),
                d["content"].as_str().unwrap()
            );
            got.entry(from).or_default().push(entry);
            if d["content"] == content && d["userId"] == user_of(&layout, from) {
                break;
            }
        }
    }
    for (label, c, _) in clients.iter_mut() {
        c.send("heartbeat", json!({})).await;
        loop {
            let v = c.recv().await;
            match v["type"].as_str().unwrap() {
                "heartbeat_response" => break,
                "message" => got.entry(label).or_default().push(format!(
                    "{}|{}",
                    v["data"]["roomId"].as_str().unwrap(),
                    v["data"]["content"].as_str().unwrap()
                )),
                _ => panic!("{label}: unexpected frame {v}"),
            }
        }
    }
    for (label, _, rooms) in &clients {
        let mut want: Vec<String> = sends
            .iter()
            .filter(|(_, room, _)| rooms.contains(room))
            .map(|(_, room, content)| format!("{room}|{content}"))
            .collect();
        want.sort();
        let mut have = got.remove(label).unwrap_or_default();
        have.sort();
        assert_eq!(have, want, "{label} in {rooms:?}");
    }
}

fn user_of<'a>(layout: &[(&str, &'a str, &[&str])], label: &str) -> &'a str {
    layout.iter().find(|(l, _, _)| *l == label).unwrap().1
}

// 7. Slow consumers ------------------------------------------------------------------

/// Reads a member's frames, checking that the firehose messages arrive complete and in
/// order; publishes how many arrived. Returns how many had arrived when `gone_user` was
/// announced as disconnected (and tells `notify` at that moment), and the stream.
async fn follow<S>(
    label: &'static str,
    mut stream: S,
    total: usize,
    progress: watch::Sender<usize>,
    gone_user: &'static str,
    mut notify: Option<oneshot::Sender<usize>>,
) -> (Option<usize>, S)
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let mut n = 0;
    let mut gone_at = None;
    while n < total {
        let msg = timeout(Duration::from_secs(20), stream.next())
            .await
            .unwrap_or_else(|_| panic!("{label}: no frame for 20 s after {n} messages"))
            .unwrap_or_else(|| panic!("{label}: connection ended after {n} messages"))
            .unwrap_or_else(|e| panic!("{label}: read error after {n} messages: {e}"));
        let Message::Text(text) = msg else { continue };
        let v: Value = serde_json::from_str(text.as_str()).unwrap();
        match v["type"].as_str().unwrap() {
            "message" => {
                let content = v["data"]["content"].as_str().unwrap();
                let index: usize = content[..5].parse().unwrap();
                assert_eq!(index, n, "{label}: message out of order");
                assert_eq!(content.len(), 6 + 8 * 1024, "{label}: content cut");
                n += 1;
                progress.send_replace(n);
            }
            "user_disconnected" if v["data"]["userId"] == gone_user && gone_at.is_none() => {
                gone_at = Some(n);
                if let Some(tx) = notify.take() {
                    let _ = tx.send(n);
                }
            }
            _ => panic!("{label}: unexpected frame {v}"),
        }
    }
    // The stream is handed back so the member stays connected.
    (gone_at, stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_disconnected_without_slowing_the_room() {
    const TOTAL: usize = 2000;
    /// The sender keeps at most this many messages ahead of the reading members, so
    /// their outbound queues (8) can never overflow however the tasks are scheduled.
    const WINDOW: usize = 4;
    let s = TestServer::start_with(|c| {
        c.connection.outbound_queue = 8;
        c.rate_limits.enabled = false;
        c.security.max_message_length = 16 * 1024;
    })
    .await;
    let mut slow = s.authed("slow").await;
    slow.join("firehose").await;
    let mut reader = s.authed("reader").await;
    reader.join("firehose").await;
    let mut sender = s.authed("sender").await;
    sender.join("firehose").await;
    for c in [&mut reader, &mut sender] {
        c.send("heartbeat", json!({})).await;
        c.expect("heartbeat_response").await;
    }
    // From here on the slow member's socket is never read until it has been dropped
    // from the room: 2000 x 8 KiB is far more than the kernel buffers hold.

    let (gone_tx, gone_rx) = oneshot::channel();
    let (r_prog_tx, mut r_prog) = watch::channel(0);
    let (s_prog_tx, mut s_prog) = watch::channel(0);
    let reader_task = tokio::spawn(follow(
        "reader",
        reader.ws,
        TOTAL,
        r_prog_tx,
        "slow",
        Some(gone_tx),
    ));
    let (mut sink, sender_stream) = sender.ws.split();
    let sender_task = tokio::spawn(follow(
        "sender",
        sender_stream,
        TOTAL,
        s_prog_tx,
        "slow",
        None,
    ));
    let slow_task = tokio::spawn(async move {
        let at = gone_rx
            .await
            .expect("the slow consumer was never disconnected from the room");
        (at, slow.expect_close().await)
    });

    let pad = "x".repeat(8 * 1024);
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    for i in 0..TOTAL {
        if i >= WINDOW {
            let need = i + 1 - WINDOW;
            let t = Instant::now();
            for (who, p) in [("reader", &mut r_prog), ("sender", &mut s_prog)] {
                let reached = timeout(Duration::from_secs(20), p.wait_for(|n| *n >= need))
                    .await
                    .is_ok_and(|r| r.is_ok());
                assert!(
                    reached,
                    "room stalled at message {i}: {who} received only {}",
                    *p.borrow()
                );
            }
            worst = worst.max(t.elapsed());
        }
        let frame = json!({
            "type": "message",
            "data": {"roomId": "firehose", "content": format!("{i:05}|{pad}")},
            "timestamp": 1,
        });
        sink.send(Message::text(frame.to_string()))
            .await
            .expect("send");
    }
    let (reader_saw_gone, _reader) = reader_task.await.unwrap();
    let (sender_saw_gone, _sender) = sender_task.await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        worst < Duration::from_secs(5),
        "a member waited {worst:?} for one message"
    );
    assert!(
        elapsed < Duration::from_secs(60),
        "firehose took {elapsed:?}"
    );

    let (at, closed) = slow_task.await.unwrap();
    assert_eq!(reader_saw_gone, Some(at));
    assert!(sender_saw_gone.is_some());
    assert!(at < TOTAL, "disconnected at {at}");
    assert_eq!(
        closed,
        Closed {
            code: 4008,
            reason: "Slow consumer".into()
        }
    );
    // The room no longer lists it.
    let room = s.server().state().hub.get("firehose").expect("live room");
    assert_eq!(
        {
            let mut p = room.participants();
            p.sort();
            p
        },
        strings(&["reader", "sender"])
    );
}

// 8. History -------------------------------------------------------------------------

#[tokio::test]
async fn history_is_stored_in_broadcast_order() {
    let s = TestServer::start().await;
    let mut alice = s.authed("alice").await;
    alice.join("hist").await;
    alice.join("hist.2").await;
    let mut sent = Vec::new();
    for i in 1..=10 {
        let content = format!("message {i}");
        let echo = say_echo(&mut alice, "hist", &content).await;
        sent.push(echo);
        if i % 3 == 0 {
            say_echo(&mut alice, "hist.2", &format!("other {i}")).await;
        }
    }
    let dir = s.stop().await;

    let store = Store::open(dir.path(), &Default::default()).unwrap();
    let h = store.history("hist").unwrap();
    assert_eq!(h.len(), 10, "{h:?}");
    for (i, (rec, echo)) in h.iter().zip(&sent).enumerate() {
        assert_eq!(rec.seq, i as u64 + 1);
        assert_eq!(rec.room_id, "hist");
        assert_eq!(rec.content, format!("message {}", i + 1));
        assert_eq!(rec.id, echo["id"].as_str().unwrap());
        assert_eq!(rec.timestamp, echo["timestamp"].as_u64().unwrap());
        assert_eq!(rec.user_id, "alice");
        assert_eq!(rec.email.as_deref(), Some("alice@example.com"));
    }
    // A room whose id starts with another's keeps its own sequence.
    let other = store.history("hist.2").unwrap();
    let seqs: Vec<u64> = other.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(other[2].content, "other 9");
    assert_eq!(store.last_seq("hist").unwrap(), 10);
}

#[tokio::test]
async fn history_keeps_only_the_last_n_messages() {
    let s = TestServer::start_with(|c| c.rooms.message_history = 5).await;
    let mut alice = s.authed("alice").await;
    alice.join("short").await;
    let mut ids = Vec::new();
    for i in 1..=12 {
        let echo = say_echo(&mut alice, "short", &format!("m{i}")).await;
        ids.push(echo["id"].as_str().unwrap().to_string());
    }
    let dir = s.stop().await;
    let store = Store::open(dir.path(), &Default::default()).unwrap();
    let h = store.history("short").unwrap();
    let seqs: Vec<u64> = h.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![8, 9, 10, 11, 12]);
    let contents: Vec<&str> = h.iter().map(|r| r.content.as_str()).collect();
    assert_eq!(contents, vec!["m8", "m9", "m10", "m11", "m12"]);
    let kept: Vec<&str> = h.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        kept,
        ids[7..].iter().map(String::as_str).collect::<Vec<_>>()
    );
}

// 9. Restart -------------------------------------------------------------------------

#[tokio::test]
async fn rooms_roles_and_history_survive_a_restart() {
    let s = TestServer::start().await;
    let dir = s.dir.path().to_path_buf();
    cli_ok(
        &dir,
        &[
            "room", "create", "vip", "--read", "vip", "--write", "vip", "--max", "5",
        ],
    )
    .await;
    cli_ok(&dir, &["user", "roles", "victor", "--set", "vip"]).await;
    let mut victor = s.authed("victor").await;
    victor.join("vip").await;
    say_echo(&mut victor, "vip", "vip 1").await;
    say_echo(&mut victor, "vip", "vip 2").await;
    let mut alice = s.authed("alice").await;
    alice.join("lobby").await;
    for i in 1..=3 {
        say_echo(&mut alice, "lobby", &format!("lobby {i}")).await;
    }
    let vip_before = s.server().state().store.room("vip").unwrap().unwrap();
    let lobby_before = s.server().state().store.room("lobby").unwrap().unwrap();
    drop((victor, alice));
    let dir = s.stop().await;

    let s = TestServer::start_in(dir, |_| {}).await;
    let store = &s.server().state().store;
    assert_eq!(store.room("vip").unwrap().unwrap(), vip_before);
    let lobby = store.room("lobby").unwrap().unwrap();
    assert!(lobby.auto_created);
    assert_eq!(
        (&lobby.read, &lobby.write, &lobby.admin),
        (&lobby_before.read, &lobby_before.write, &lobby_before.admin)
    );

    let mut alice = s.authed("alice").await;
    join_refused(&mut alice, "vip", "insufficient_permissions").await;
    alice.join("lobby").await;
    say_echo(&mut alice, "lobby", "lobby 4").await;
    let mut victor = s.client().await;
    let ok = victor.auth(&token("victor")).await;
    assert_eq!(ok["user"]["roles"], json!(["user", "vip"]));
    victor.join("vip").await;
    say_echo(&mut victor, "vip", "vip 3").await;
    drop((victor, alice));
    let dir = s.stop().await;

    let store = Store::open(dir.path(), &Default::default()).unwrap();
    let pairs = |room: &str| -> Vec<(u64, String)> {
        store
            .history(room)
            .unwrap()
            .into_iter()
            .map(|r| (r.seq, r.content))
            .collect()
    };
    assert_eq!(
        pairs("vip"),
        vec![
            (1, "vip 1".to_string()),
            (2, "vip 2".to_string()),
            (3, "vip 3".to_string())
        ]
    );
    assert_eq!(
        pairs("lobby"),
        (1..=4)
            .map(|i| (i, format!("lobby {i}")))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn expired_auto_created_rooms_go_with_their_history() {
    let s = TestServer::start_with(|c| {
        c.rooms.room_expiry_secs = 1;
        c.store.sweep_interval_secs = 1;
    })
    .await;
    let mut a = s.authed("alice").await;
    a.join("ephemeral").await;
    a.say("ephemeral", "soon gone").await;
    a.expect("message").await;
    // An operator-made room never expires.
    let (ok, out, err) = run_cli(s.dir.path(), &["room", "create", "kept", "--type", "chat"]).await;
    assert!(ok, "{out}{err}");
    a.close().await;
    let store = s.server().state().store.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.room("ephemeral").unwrap().is_some() {
        assert!(Instant::now() < deadline, "expired room was never deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(store.history("ephemeral").unwrap().is_empty());
    assert!(store.room("kept").unwrap().is_some());
}
