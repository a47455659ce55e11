//! The seed's wire protocol end to end: every frame type with its shape and key names.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn handshake_auth_join_message_heartbeat() {
    let s = TestServer::start().await;
    let mut c = Client::connect(&s.url()).await;
    let hs = c.expect("handshake").await;
    assert_eq!(hs["data"]["connectionId"].as_str().unwrap().len(), 32);
    assert!(hs["data"]["serverTime"].is_u64());

    let ok = c.auth(&token("alice")).await;
    assert_eq!(ok["user"]["userId"], "alice");
    assert_eq!(ok["user"]["email"], "alice@example.com");
    assert_eq!(ok["user"]["roles"], json!(["user"]));
    assert!(ok["wsToken"].as_str().unwrap().split('.').count() == 3);

    let joined = c.join("lobby").await;
    assert_eq!(joined["participants"], json!(["alice"]));

    c.say("lobby", "hello").await;
    let m = c.expect("message").await;
    let d = &m["data"];
    assert_eq!(d["type"], "chat_message");
    assert_eq!(d["roomId"], "lobby");
    assert_eq!(d["content"], "hello");
    assert_eq!(d["userId"], "alice");
    assert_eq!(d["email"], "alice@example.com");
    assert_eq!(d["id"].as_str().unwrap().len(), 32);
    assert!(d["timestamp"].is_u64());

    c.send("heartbeat", json!({})).await;
    let hb = c.expect("heartbeat_response").await;
    assert!(hb["data"]["serverTime"].is_u64());
}

#[tokio::test]
async fn others_see_join_message_leave_and_disconnect() {
    let s = TestServer::start().await;
    let mut a = s.authed("alice").await;
    let mut b = s.authed("bob").await;
    a.join("r1").await;
    let joined = b.join("r1").await;
    let mut parts: Vec<String> = serde_json::from_value(joined["participants"].clone()).unwrap();
    parts.sort();
    assert_eq!(parts, vec!["alice", "bob"]);
    let uj = a.expect("user_joined").await;
    assert_eq!(uj["data"]["userId"], "bob");
    assert_eq!(uj["data"]["email"], "bob@example.com");

    b.say("r1", "from bob").await;
    assert_eq!(a.expect("message").await["data"]["content"], "from bob");
    assert_eq!(b.expect("message").await["data"]["content"], "from bob");

    b.send("leave", json!({"roomId": "r1"})).await;
    assert_eq!(b.expect("room_left").await["data"]["roomId"], "r1");
    let left = a.expect("user_left").await;
    assert_eq!(left["data"]["userId"], "bob");

    b.join("r1").await;
    a.expect("user_joined").await;
    b.close().await;
    let gone = a.expect("user_disconnected").await;
    assert_eq!(gone["data"]["userId"], "bob");
    assert_eq!(gone["data"]["roomId"], "r1");
}

#[tokio::test]
async fn join_then_message_at_once_is_processed_in_order() {
    let s = TestServer::start().await;
    let mut c = s.authed("alice").await;
    // Both frames in one write burst: the seed's concurrent handlers fail this.
    c.send("join", json!({"roomId": "fast"})).await;
    c.say("fast", "right after join").await;
    c.expect("room_joined").await;
    let m = c.recv().await;
    assert_eq!(m["type"], "message", "{m}");
    assert_eq!(m["data"]["content"], "right after join");
}

#[tokio::test]
async fn frames_before_auth_are_refused() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    for (kind, data) in [
        ("join", json!({"roomId": "r"})),
        ("leave", json!({"roomId": "r"})),
        ("message", json!({"roomId": "r", "content": "x"})),
        ("heartbeat", json!({})),
    ] {
        c.send(kind, data).await;
        let e = c.expect_error("not_authenticated").await;
        assert_eq!(e["message"], "Not authenticated");
    }
}

#[tokio::test]
async fn message_needs_membership() {
    let s = TestServer::start().await;
    let mut a = s.authed("alice").await;
    let mut b = s.authed("bob").await;
    a.join("private").await;
    b.say("private", "sneaky").await;
    let e = b.expect_error("not_member").await;
    assert_eq!(e["roomId"], "private");
    a.expect_silence(200).await;
}

#[tokio::test]
async fn two_tabs_of_one_user_are_two_members() {
    let s = TestServer::start().await;
    let mut watcher = s.authed("watcher").await;
    watcher.join("tabs").await;
    let mut tab1 = s.authed("carol").await;
    let mut tab2 = s.authed("carol").await;
    tab1.join("tabs").await;
    assert_eq!(
        watcher.expect("user_joined").await["data"]["userId"],
        "carol"
    );
    tab2.join("tabs").await;
    // The second tab is not announced again.
    watcher.expect_silence(200).await;
    tab1.say("tabs", "hi").await;
    assert_eq!(tab2.expect("message").await["data"]["content"], "hi");
    assert_eq!(watcher.expect("message").await["data"]["content"], "hi");
    tab1.close().await;
    // carol still has tab2 in the room: nobody is told she left.
    watcher.expect_silence(300).await;
    tab2.close().await;
    assert_eq!(
        watcher.expect("user_disconnected").await["data"]["userId"],
        "carol"
    );
}
