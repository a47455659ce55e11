//! Personal notifications over real sockets: live delivery to every tab of a user, the
//! inbox replayed after `auth` (and after a wsToken resume) oldest first and not again
//! once acknowledged, the inbox's count and age limits at their edges, the
//! `notify:publish` permission, room notifications reaching members only, the inbox
//! across a restart, input limits, and no notification lost or doubled when one is
//! published while a connection's inbox is being replayed.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use roomgate::config::{Quota, StoreConfig};
use roomgate::notify::{self, NewNotification};
use roomgate::protocol::now_ms;
use roomgate::store::{EventFilter, NotificationRecord, RoleRecord, RoomRecord, Store};
use serde_json::{Value, json};

/// Gives `user` the built-in `moderator` role (which carries `notify:publish`) and
/// connects it.
async fn publisher(s: &TestServer, user: &str) -> Client {
    s.server()
        .state()
        .store
        .set_user_roles(user, vec!["moderator".into()], now_ms())
        .unwrap();
    s.authed(user).await
}

/// Sends a `notification` and returns the `notification_sent` data.
async fn notify(c: &mut Client, data: Value) -> Value {
    c.send("notification", data).await;
    let v = c.recv().await;
    assert_eq!(v["type"], "notification_sent", "{v}");
    v["data"].clone()
}

/// The next frame, which must be a notification; returns its data.
async fn next_notification(c: &mut Client) -> Value {
    let v = c.recv().await;
    assert_eq!(
        v["type"], "notification",
        "expected a notification, got {v}"
    );
    v["data"].clone()
}

fn bodies(store: &Store, user: &str) -> Vec<String> {
    store
        .inbox(user)
        .unwrap()
        .into_iter()
        .map(|r| r.body)
        .collect()
}

/// A frame's `data`, and `None` when it is accepted or the expected `(code, field)`.
type Row = (Value, Option<(&'static str, Option<&'static str>)>);

fn plain(body: &str) -> NewNotification {
    NewNotification {
        body: body.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_notification_reaches_every_open_connection_of_its_users() {
    let s = TestServer::start().await;
    let mut alice = publisher(&s, "alice").await;
    let mut tab1 = s.authed("bob").await;
    let mut tab2 = s.authed("bob").await;
    let mut carol = s.authed("carol").await;

    let sent = notify(
        &mut alice,
        json!({"userId": "bob", "kind": "mention", "title": "Hi <b>", "body": "You were <i>mentioned</i>",
               "data": {"thread": 7, "tags": ["a", "b"]}}),
    )
    .await;
    assert_eq!(sent, json!({"recipients": 1, "connections": 2}));
    let a = next_notification(&mut tab1).await;
    let b = next_notification(&mut tab2).await;
    assert_eq!(a, b, "both tabs get the same notification");
    assert!(a["id"].is_u64(), "{a}");
    assert_eq!(a["from"], "alice");
    assert_eq!(a["kind"], "mention");
    // Title and body follow the content policy; data passes through untouched.
    assert_eq!(a["title"], "Hi b");
    assert_eq!(a["body"], "You were imentioned/i");
    assert_eq!(a["data"], json!({"thread": 7, "tags": ["a", "b"]}));
    assert!(a.get("roomId").is_none(), "{a}");
    assert!(a["timestamp"].as_u64().unwrap() <= now_ms());
    carol.expect_silence(200).await;

    // A list, repeats collapsed: each user gets one, on each of its connections.
    let sent = notify(
        &mut alice,
        json!({"userIds": ["bob", "carol", "bob"], "body": "hello all"}),
    )
    .await;
    assert_eq!(sent, json!({"recipients": 2, "connections": 3}));
    for c in [&mut tab1, &mut tab2, &mut carol] {
        let n = next_notification(c).await;
        assert_eq!(n["body"], "hello all");
        assert!(n.get("kind").is_none() && n.get("title").is_none() && n.get("data").is_none());
    }
    tab1.expect_silence(200).await;
    let later = s.server().state().store.inbox("bob").unwrap();
    assert_eq!(later.len(), 2, "live ones are kept until acknowledged");
    assert!(later[0].id < later[1].id);
}

#[tokio::test]
async fn the_inbox_is_replayed_after_auth_oldest_first_and_not_after_ack() {
    let s = TestServer::start().await;
    let mut alice = publisher(&s, "alice").await;
    for i in 1..=3 {
        let sent = notify(
            &mut alice,
            json!({"userId": "dave", "body": format!("n{i}")}),
        )
        .await;
        assert_eq!(sent, json!({"recipients": 1, "connections": 0}));
    }

    // The replay follows auth_success at once, oldest first.
    let mut dave = s.client().await;
    let ok = dave.auth(&token("dave")).await;
    let ws_token = ok["wsToken"].as_str().unwrap().to_string();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_notification(&mut dave).await);
    }
    let texts: Vec<&str> = got.iter().map(|n| n["body"].as_str().unwrap()).collect();
    assert_eq!(texts, ["n1", "n2", "n3"]);
    let ids: Vec<u64> = got.iter().map(|n| n["id"].as_u64().unwrap()).collect();
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
    dave.expect_silence(200).await;

    // Acknowledge two, and an id that was never there (harmless).
    dave.send(
        "notification_ack",
        json!({"ids": [ids[0], ids[1], 987_654_321]}),
    )
    .await;
    let acked = dave.expect("notification_acked").await;
    assert_eq!(acked["data"], json!({"removed": 2}));
    dave.send("notification_ack", json!({"ids": [ids[0]]}))
        .await;
    assert_eq!(
        dave.expect("notification_acked").await["data"],
        json!({"removed": 0})
    );
    // Dropped, not closed, so the session stays resumable for the last step.
    dave.vanish().await;

    // A new connection gets only the unacknowledged one.
    let mut dave = s.authed("dave").await;
    let n = next_notification(&mut dave).await;
    assert_eq!(
        (n["body"].as_str(), n["id"].as_u64()),
        (Some("n3"), Some(ids[2]))
    );
    dave.expect_silence(200).await;
    dave.send("notification_ack", json!({"ids": [ids[2]]}))
        .await;
    dave.expect("notification_acked").await;
    dave.close().await;

    // Resuming the session with the wsToken replays too, and only what is new.
    notify(&mut alice, json!({"userId": "dave", "body": "n4"})).await;
    let mut dave = s.client().await;
    dave.auth(&ws_token).await;
    assert_eq!(next_notification(&mut dave).await["body"], "n4");
    dave.expect_silence(200).await;
}

#[tokio::test]
async fn the_inbox_keeps_its_count_and_drops_the_oldest() {
    let s = TestServer::start_with(|c| c.notifications.inbox_max_count = 3).await;
    let store = s.server().state().store.clone();
    let mut alice = publisher(&s, "alice").await;
    for i in 1..=3 {
        notify(
            &mut alice,
            json!({"userId": "erin", "body": format!("n{i}")}),
        )
        .await;
    }
    // At the limit nothing is dropped...
    assert_eq!(bodies(&store, "erin"), ["n1", "n2", "n3"]);
    // ...one over it drops the oldest.
    notify(&mut alice, json!({"userId": "erin", "body": "n4"})).await;
    assert_eq!(bodies(&store, "erin"), ["n2", "n3", "n4"]);
    assert_eq!(store.notification_count(), 3);

    let mut erin = s.authed("erin").await;
    for want in ["n2", "n3", "n4"] {
        assert_eq!(next_notification(&mut erin).await["body"], want);
    }
    erin.expect_silence(200).await;
}

#[tokio::test]
async fn the_inbox_never_outgrows_half_the_socket_queue() {
    // A whole inbox is queued at once after auth, so it may use half the queue at most.
    let s = TestServer::start_with(|c| {
        c.connection.outbound_queue = 8;
        c.notifications.inbox_max_count = 100;
    })
    .await;
    let state = s.server().state().clone();
    for i in 1..=6 {
        notify::notify_users(&state, "app", &["ines".into()], plain(&format!("n{i}")))
            .await
            .unwrap();
    }
    assert_eq!(bodies(&state.store, "ines"), ["n3", "n4", "n5", "n6"]);
    let mut ines = s.authed("ines").await;
    for want in ["n3", "n4", "n5", "n6"] {
        assert_eq!(next_notification(&mut ines).await["body"], want);
    }
    // Not closed as a slow consumer: the socket still answers.
    ines.send("heartbeat", json!({})).await;
    ines.expect("heartbeat_response").await;
}

#[tokio::test]
async fn the_sweeper_drops_notifications_past_the_age_limit() {
    let s = TestServer::start_with(|c| {
        c.notifications.inbox_max_age_secs = 1;
        c.store.sweep_interval_secs = 1;
    })
    .await;
    let store = s.server().state().store.clone();
    let mut alice = publisher(&s, "alice").await;
    notify(&mut alice, json!({"userId": "frank", "body": "soon gone"})).await;
    assert_eq!(bodies(&store, "frank"), ["soon gone"]);
    eventually("the sweeper drops the expired notification", || {
        store.inbox("frank").unwrap().is_empty()
    })
    .await;
    assert_eq!(store.notification_count(), 0);
    let mut frank = s.authed("frank").await;
    frank.expect_silence(300).await;
}

#[tokio::test]
async fn expired_but_unswept_notifications_are_not_replayed() {
    // The sweeper runs rarely here; the replay itself skips what is past the limit.
    let s = TestServer::start_with(|c| c.notifications.inbox_max_age_secs = 60).await;
    let state = s.server().state().clone();
    let now = now_ms();
    let old = |id: u64, age_ms: u64, body: &str| NotificationRecord {
        id,
        from: "app".into(),
        kind: None,
        title: None,
        body: body.into(),
        data: None,
        room_id: None,
        timestamp: now - age_ms,
    };
    state
        .store
        .put_notification("gail", &old(1, 61_000, "expired"), 100)
        .unwrap();
    state
        .store
        .put_notification("gail", &old(2, 50_000, "still fresh"), 100)
        .unwrap();
    let mut gail = s.authed("gail").await;
    assert_eq!(next_notification(&mut gail).await["body"], "still fresh");
    gail.expect_silence(200).await;
}

#[test]
fn the_age_sweep_keeps_entries_created_at_its_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    let record = |id: u64, timestamp: u64| NotificationRecord {
        id,
        from: "app".into(),
        kind: None,
        title: None,
        body: format!("at {timestamp}"),
        data: Some("{\"k\":1}".into()),
        room_id: None,
        timestamp,
    };
    for (id, ts) in [(1, 999), (2, 1000), (3, 1001)] {
        store.put_notification("u", &record(id, ts), 10).unwrap();
    }
    store.put_notification("v", &record(4, 500), 10).unwrap();
    assert_eq!(store.sweep_notifications(1000).unwrap(), 2);
    let left: Vec<u64> = store.inbox("u").unwrap().iter().map(|r| r.id).collect();
    assert_eq!(left, [2, 3]);
    assert!(store.inbox("v").unwrap().is_empty());
    // Acknowledged and deleted entries are gone; a later sweep finds only what is left.
    assert_eq!(store.ack_notifications("u", &[2, 99]).unwrap(), 1);
    store.put_notification("w", &record(5, 10), 10).unwrap();
    assert_eq!(store.delete_inbox("w").unwrap(), 1);
    assert_eq!(store.delete_inbox("w").unwrap(), 0);
    assert_eq!(
        store.sweep_notifications(1002).unwrap(),
        1,
        "only id 3 is left"
    );
    assert_eq!(store.notification_count(), 0);
    assert_eq!(store.sweep_notifications(u64::MAX).unwrap(), 0);
}

#[tokio::test]
async fn only_publishers_may_send_notifications() {
    let s = TestServer::start().await;
    let store = s.server().state().store.clone();
    let mut bob = s.authed("bob").await;
    bob.send("notification", json!({"userId": "carol", "body": "hi"}))
        .await;
    bob.expect_error("insufficient_permissions").await;
    bob.send("notification", json!({"roomId": "lobby", "body": "hi"}))
        .await;
    let e = bob.expect_error("insufficient_permissions").await;
    assert_eq!(e["roomId"], "lobby");
    assert!(store.inbox("carol").unwrap().is_empty());
    eventually("two permission_denied events for notify", || {
        let events = store
            .events(&EventFilter {
                action: Some("permission_denied".into()),
                ..Default::default()
            })
            .unwrap();
        events
            .iter()
            .filter(|e| e.metadata.contains(&("action".into(), "notify".into())))
            .count()
            == 2
    })
    .await;

    // The admin role carries the permission too.
    store
        .set_user_roles("root", vec!["admin".into()], now_ms())
        .unwrap();
    let mut root = s.authed("root").await;
    notify(&mut root, json!({"userId": "carol", "body": "hi"})).await;
    assert_eq!(bodies(&store, "carol"), ["hi"]);
}

#[tokio::test]
async fn publishing_spends_the_frame_quota() {
    let s = TestServer::start_with(|c| {
        c.rate_limits.message = Quota {
            points: 3,
            duration_secs: 3600,
        }
    })
    .await;
    let mut alice = publisher(&s, "alice").await;
    for _ in 0..3 {
        notify(&mut alice, json!({"userId": "bob", "body": "x"})).await;
    }
    alice
        .send("notification", json!({"userId": "bob", "body": "x"}))
        .await;
    let e = alice.expect_error("rate_limited").await;
    assert!(e["retryAfterMs"].as_u64().unwrap() > 0);
    assert_eq!(s.server().state().store.inbox("bob").unwrap().len(), 3);
}

#[tokio::test]
async fn a_room_notification_reaches_the_room_members_only() {
    let s = TestServer::start().await;
    let state = s.server().state().clone();
    let mut alice = publisher(&s, "alice").await;
    let mut bob = s.authed("bob").await;
    let mut carol = s.authed("carol").await;
    let mut carol_elsewhere = s.authed("carol").await;
    let mut dave = s.authed("dave").await;
    bob.join("lobby").await;
    carol.join("lobby").await;

    let sent = notify(
        &mut alice,
        json!({"roomId": "lobby", "title": "Standup", "body": "in 5 minutes"}),
    )
    .await;
    assert_eq!(
        sent,
        json!({"recipients": 2, "connections": 3, "roomId": "lobby"})
    );
    for c in [&mut bob, &mut carol, &mut carol_elsewhere] {
        let n = c.expect("notification").await["data"].clone();
        assert_eq!(n["roomId"], "lobby");
        assert_eq!(n["from"], "alice");
        assert_eq!(n["body"], "in 5 minutes");
    }
    dave.expect_silence(200).await;
    // Stored per member, as personal notifications.
    assert_eq!(bodies(&state.store, "bob"), ["in 5 minutes"]);
    assert_eq!(bodies(&state.store, "carol"), ["in 5 minutes"]);
    assert!(state.store.inbox("dave").unwrap().is_empty());
    assert!(state.store.inbox("alice").unwrap().is_empty());

    // The function the HTTP API calls does the same.
    let delivered = notify::notify_room(&state, "app", "lobby", plain("from the app"))
        .await
        .unwrap();
    let mut users: Vec<&str> = delivered.iter().map(|d| d.user_id.as_str()).collect();
    users.sort();
    assert_eq!(users, ["bob", "carol"]);
    assert_eq!(bob.expect("notification").await["data"]["from"], "app");

    // Unknown rooms and malformed ids are refused.
    alice
        .send("notification", json!({"roomId": "nowhere", "body": "x"}))
        .await;
    alice.expect_error("room_not_found").await;
    alice
        .send("notification", json!({"roomId": "no spaces", "body": "x"}))
        .await;
    alice.expect_error("invalid_room_id").await;

    // A publisher needs read access to the room it notifies.
    let now = now_ms();
    state
        .store
        .create_room_if_absent(&RoomRecord {
            id: "ops".into(),
            name: "Ops".into(),
            kind: "chat".into(),
            read: vec!["admin".into()],
            write: vec!["admin".into()],
            admin: vec!["admin".into()],
            max_participants: 10,
            auto_created: false,
            created_ms: now,
            last_active_ms: now,
            epoch: 1,
            show_emails: false,
            user_grants: Vec::new(),
            bans: Vec::new(),
        })
        .unwrap();
    state
        .store
        .put_role(&RoleRecord {
            name: "announcer".into(),
            permissions: vec!["notify:publish".into()],
            description: "notifies".into(),
            builtin: false,
            updated_ms: now,
        })
        .unwrap();
    state.roles.reload(&state.store).unwrap();
    state
        .store
        .set_user_roles("herald", vec!["announcer".into()], now)
        .unwrap();
    let mut herald = s.authed("herald").await;
    herald
        .send("notification", json!({"roomId": "ops", "body": "x"}))
        .await;
    let e = herald.expect_error("insufficient_permissions").await;
    assert_eq!(e["roomId"], "ops");
    // ...but may notify users directly, and a room it can read.
    notify(&mut herald, json!({"userId": "dave", "body": "direct"})).await;
    let sent = notify(&mut herald, json!({"roomId": "lobby", "body": "all"})).await;
    assert_eq!(sent["recipients"], 2);
}

#[tokio::test]
async fn the_inbox_survives_a_restart() {
    let s = TestServer::start().await;
    let mut alice = publisher(&s, "alice").await;
    let mut ids = Vec::new();
    for i in 1..=2 {
        notify(
            &mut alice,
            json!({"userId": "ivan", "body": format!("n{i}"), "data": [i]}),
        )
        .await;
    }
    for r in s.server().state().store.inbox("ivan").unwrap() {
        ids.push(r.id);
    }
    alice.close().await;
    let dir = s.stop().await;

    let s = TestServer::start_in(dir, |_| {}).await;
    let mut ivan = s.authed("ivan").await;
    for (i, id) in ids.iter().enumerate() {
        let n = next_notification(&mut ivan).await;
        assert_eq!(n["id"].as_u64(), Some(*id));
        assert_eq!(n["body"], format!("n{}", i + 1));
        assert_eq!(n["data"], json!([i + 1]));
        assert_eq!(n["from"], "alice");
    }
    ivan.expect_silence(200).await;
    // Ids keep increasing across the restart.
    let state = s.server().state();
    let d = notify::notify_users(state, "app", &["ivan".into()], plain("after"))
        .await
        .unwrap();
    assert!(d[0].id > ids[1], "{} after {}", d[0].id, ids[1]);
    assert_eq!(d[0].connections, 1);
    assert_eq!(
        next_notification(&mut ivan).await["id"].as_u64(),
        Some(d[0].id)
    );
}

#[tokio::test]
async fn notification_input_is_checked_at_every_limit() {
    let s = TestServer::start_with(|c| {
        let n = &mut c.notifications;
        n.max_recipients = 2;
        n.max_user_id_bytes = 5;
        n.max_kind_bytes = 4;
        n.max_title_chars = 5;
        n.max_body_chars = 6;
        n.max_data_bytes = 10;
        n.max_ack_ids = 2;
    })
    .await;
    let mut alice = publisher(&s, "alice").await;
    let rows: Vec<Row> = vec![
        (json!({"userId": "ab", "body": "123456"}), None),
        (json!({"userId": "ab", "body": "éééééé"}), None),
        (
            json!({"userId": "ab", "body": "1234567"}),
            Some(("notification_too_large", Some("body"))),
        ),
        (json!({"userId": "ab", "title": "12345", "body": "x"}), None),
        (
            json!({"userId": "ab", "title": "123456", "body": "x"}),
            Some(("notification_too_large", Some("title"))),
        ),
        (json!({"userId": "ab", "kind": "ab:c", "body": "x"}), None),
        (
            json!({"userId": "ab", "kind": "abcde", "body": "x"}),
            Some(("notification_too_large", Some("kind"))),
        ),
        (
            json!({"userId": "ab", "kind": "a b", "body": "x"}),
            Some(("invalid_field", Some("kind"))),
        ),
        // `{"a":1234}` is exactly 10 bytes.
        (
            json!({"userId": "ab", "body": "x", "data": {"a": 1234}}),
            None,
        ),
        (
            json!({"userId": "ab", "body": "x", "data": {"a": 12345}}),
            Some(("notification_too_large", Some("data"))),
        ),
        (json!({"userIds": ["a", "b"], "body": "x"}), None),
        (
            json!({"userIds": ["a", "b", "c"], "body": "x"}),
            Some(("too_many_recipients", None)),
        ),
        (
            json!({"userIds": [], "body": "x"}),
            Some(("invalid_recipients", None)),
        ),
        (json!({"userId": "abcde", "body": "x"}), None),
        (
            json!({"userId": "abcdef", "body": "x"}),
            Some(("invalid_recipients", None)),
        ),
        (
            json!({"userId": "", "body": "x"}),
            Some(("invalid_recipients", None)),
        ),
        (
            json!({"userId": "a", "roomId": "r", "body": "x"}),
            Some(("invalid_recipients", None)),
        ),
        (json!({"body": "x"}), Some(("invalid_recipients", None))),
        (
            json!({"userId": "a"}),
            Some(("invalid_field", Some("body"))),
        ),
        (
            json!({"userId": "a", "body": ""}),
            Some(("invalid_field", Some("body"))),
        ),
        (
            json!({"userId": 5, "body": "x"}),
            Some(("invalid_field", Some("userId"))),
        ),
        (
            json!({"userIds": "a", "body": "x"}),
            Some(("invalid_field", Some("userIds"))),
        ),
        (
            json!({"userIds": ["a", 1], "body": "x"}),
            Some(("invalid_field", Some("userIds"))),
        ),
        (
            json!({"userId": "a", "body": "x", "title": 7}),
            Some(("invalid_field", Some("title"))),
        ),
    ];
    for (data, want) in rows {
        alice.send("notification", data.clone()).await;
        let v = alice.recv().await;
        match want {
            None => assert_eq!(v["type"], "notification_sent", "{data} -> {v}"),
            Some((code, field)) => {
                assert_eq!(v["type"], "error", "{data} -> {v}");
                assert_eq!(v["data"]["code"], code, "{data} -> {v}");
                assert_eq!(v["data"]["field"].as_str(), field, "{data} -> {v}");
            }
        }
    }
    let acks: Vec<Row> = vec![
        (json!({"ids": [1, 2]}), None),
        (json!({"ids": []}), None),
        (json!({"ids": [1, 2, 3]}), Some(("too_many_ids", None))),
        (json!({"ids": "1"}), Some(("invalid_field", Some("ids")))),
        (json!({}), Some(("invalid_field", Some("ids")))),
        (json!({"ids": [-1]}), Some(("invalid_field", Some("ids")))),
        (json!({"ids": [1.5]}), Some(("invalid_field", Some("ids")))),
    ];
    for (data, want) in acks {
        alice.send("notification_ack", data.clone()).await;
        let v = alice.recv().await;
        match want {
            None => assert_eq!(v["type"], "notification_acked", "{data} -> {v}"),
            Some((code, field)) => {
                assert_eq!(v["data"]["code"], code, "{data} -> {v}");
                assert_eq!(v["data"]["field"].as_str(), field, "{data} -> {v}");
            }
        }
    }
    // Nothing is accepted before auth.
    let mut anon = s.client().await;
    anon.send("notification_ack", json!({"ids": [1]})).await;
    anon.expect_error("not_authenticated").await;
}

/// Notifications published while connections authenticate (and replay the inbox) reach
/// each connection exactly once, in increasing id order: the replay, then live ones.
#[tokio::test]
async fn a_notification_published_during_the_replay_is_neither_lost_nor_doubled() {
    let s = TestServer::start_with(|c| c.notifications.inbox_max_count = 500).await;
    let state = s.server().state().clone();
    let user = vec!["hana".to_string()];
    let mut all_ids = Vec::new();
    for i in 0..50 {
        let d = notify::notify_users(&state, "app", &user, plain(&format!("before {i}")))
            .await
            .unwrap();
        all_ids.push(d[0].id);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicUsize::new(0));
    let task = {
        let (state, user, stop, published) =
            (state.clone(), user.clone(), stop.clone(), published.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            while !stop.load(Ordering::SeqCst) && ids.len() < 400 {
                let d = notify::notify_users(&state, "app", &user, plain("live"))
                    .await
                    .unwrap();
                ids.push(d[0].id);
                published.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
            ids
        })
    };
    eventually("the publisher is running", || {
        published.load(Ordering::SeqCst) >= 5
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(s.authed("hana").await);
    }
    let after_auth = published.load(Ordering::SeqCst);
    eventually("more are published after the last auth", || {
        published.load(Ordering::SeqCst) >= after_auth + 20
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    all_ids.extend(task.await.unwrap());
    assert!(all_ids.len() < 500, "nothing may be trimmed in this test");

    for (k, c) in clients.iter_mut().enumerate() {
        let mut got = Vec::with_capacity(all_ids.len());
        while got.len() < all_ids.len() {
            got.push(next_notification(c).await["id"].as_u64().unwrap());
        }
        assert_eq!(got, all_ids, "connection {k} saw a different sequence");
        c.expect_silence(200).await;
    }
}
