//! Live authorization: role, permission and ACL changes reaching open connections within
//! a second in both directions; room admins kicking and banning over the WebSocket; and
//! presence keyed by connection, aggregated by user.

mod common;

use std::time::Duration;

use common::*;
use roomgate::authz::Permission;
use roomgate::policy;
use roomgate::store::{RoleRecord, RoomRecord};
use serde_json::{Value, json};

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn room(id: &str, read: &[&str], write: &[&str], admin: &[&str]) -> RoomRecord {
    RoomRecord {
        id: id.into(),
        name: id.into(),
        kind: "chat".into(),
        read: strings(read),
        write: strings(write),
        admin: strings(admin),
        max_participants: 50,
        auto_created: false,
        created_ms: 0,
        last_active_ms: 0,
        epoch: 7,
        show_emails: true,
        user_grants: Vec::new(),
        bans: Vec::new(),
    }
}

/// The next frame of type `kind`, which must come within one second.
async fn within_1s(c: &mut Client, kind: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(1), c.expect(kind))
        .await
        .unwrap_or_else(|_| panic!("no {kind} within 1 s"))["data"]
        .clone()
}

async fn authed_as(s: &TestServer, sub: &str, email: &str) -> Client {
    let mut c = s.client().await;
    c.auth(&token_with(
        json!({"sub": sub, "email": email, "exp": now_secs() + 600}),
    ))
    .await;
    c
}

#[tokio::test]
async fn losing_a_role_takes_the_user_out_and_regaining_lets_them_back() {
    let s = TestServer::start().await;
    let st = s.server().state();
    st.store
        .put_room(&room("ops", &["ops"], &["ops"], &["admin"]))
        .unwrap();
    st.store
        .set_user_roles("bob", strings(&["ops"]), 0)
        .unwrap();
    st.store
        .set_user_roles("olga", strings(&["ops"]), 0)
        .unwrap();
    let mut bob = s.authed("bob").await;
    let mut olga = s.authed("olga").await;
    olga.join("ops").await;
    bob.join("ops").await;
    olga.expect("user_joined").await;

    policy::set_user_roles(st, "bob", Vec::new()).await.unwrap();
    let left = within_1s(&mut bob, "room_left").await;
    assert_eq!(
        left,
        json!({"roomId": "ops", "reason": "permission_revoked"})
    );
    let gone = within_1s(&mut olga, "user_left").await;
    assert_eq!(gone["userId"], "bob");
    // No longer a member: a message is refused, and so is joining again.
    bob.say("ops", "still here?").await;
    bob.expect_error("not_member").await;
    bob.send("join", json!({"roomId": "ops"})).await;
    bob.expect_error("insufficient_permissions").await;
    olga.expect_silence(200).await;

    // Through the operator command too: the same socket may join again at once.
    let dir = st.cfg.data_dir.clone();
    let (ok, _, err) = run_cli(&dir, &["user", "roles", "bob", "--set", "ops"]).await;
    assert!(ok, "{err}");
    bob.join("ops").await;
    assert_eq!(olga.expect("user_joined").await["data"]["userId"], "bob");
}

#[tokio::test]
async fn losing_and_gaining_write_is_announced_and_enforced() {
    let s = TestServer::start().await;
    let st = s.server().state();
    st.store
        .put_room(&room("news", &["user"], &["writer"], &["admin"]))
        .unwrap();
    st.store
        .set_user_roles("carol", strings(&["writer"]), 0)
        .unwrap();
    let mut carol = s.authed("carol").await;
    let joined = carol.join("news").await;
    assert_eq!(
        joined["permissions"],
        json!({"read": true, "write": true, "admin": false})
    );
    // A reader sees the room as read-only from the start.
    let mut reader = s.authed("rita").await;
    let joined = reader.join("news").await;
    assert_eq!(joined["permissions"]["write"], false);
    carol.say("news", "first").await;
    carol.expect("message").await;

    policy::set_user_roles(st, "carol", Vec::new())
        .await
        .unwrap();
    let upd = within_1s(&mut carol, "permissions_updated").await;
    assert_eq!(
        upd,
        json!({"roomId": "news", "read": true, "write": false, "admin": false})
    );
    carol.say("news", "second").await;
    carol.expect_error("insufficient_permissions").await;

    policy::set_user_roles(st, "carol", strings(&["writer"]))
        .await
        .unwrap();
    let upd = within_1s(&mut carol, "permissions_updated").await;
    assert_eq!(upd["write"], true);
    carol.say("news", "third").await;
    assert_eq!(carol.expect("message").await["data"]["content"], "third");
}

#[tokio::test]
async fn acl_and_role_permission_changes_reach_members() {
    let s = TestServer::start().await;
    let st = s.server().state();
    st.store
        .put_room(&room("lab", &["user"], &["user"], &["admin"]))
        .unwrap();
    let mut dan = s.authed("dan").await;
    let mut eve = s.authed("eve").await;
    dan.join("lab").await;
    eve.join("lab").await;

    // The room stops letting "user" write: both hear it; a per-user grant gives it back to eve.
    policy::update_room(st, "lab", |r| r.write = strings(&["editor"]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        within_1s(&mut dan, "permissions_updated").await["write"],
        false
    );
    assert_eq!(
        within_1s(&mut eve, "permissions_updated").await["write"],
        false
    );
    policy::update_room(st, "lab", |r| {
        r.user_grants = vec![roomgate::store::RoomUserGrant {
            user_id: "eve".into(),
            read: true,
            write: true,
            admin: false,
        }]
    })
    .await
    .unwrap();
    assert_eq!(
        within_1s(&mut eve, "permissions_updated").await["write"],
        true
    );
    dan.expect_silence(200).await;

    // The built-in "user" role gains rooms:admin: everyone becomes admin of the room.
    let mut user_role = st.store.role("user").unwrap().unwrap();
    user_role.permissions = vec![Permission::RoomsAdmin.as_str().into()];
    policy::put_role(st, &user_role).await.unwrap();
    let upd = within_1s(&mut dan, "permissions_updated").await;
    assert_eq!(
        upd,
        json!({"roomId": "lab", "read": true, "write": true, "admin": true})
    );
    // And loses it again.
    policy::put_role(
        st,
        &RoleRecord {
            permissions: Vec::new(),
            ..user_role
        },
    )
    .await
    .unwrap();
    assert_eq!(
        within_1s(&mut dan, "permissions_updated").await["admin"],
        false
    );

    // Read taken from everyone but admins: both are removed with the reason.
    policy::update_room(st, "lab", |r| {
        r.read = strings(&["admin"]);
        r.user_grants.clear();
    })
    .await
    .unwrap();
    assert_eq!(
        within_1s(&mut dan, "room_left").await["reason"],
        "permission_revoked"
    );
    assert_eq!(
        within_1s(&mut eve, "room_left").await["reason"],
        "permission_revoked"
    );
}

#[tokio::test]
async fn room_admins_kick_ban_and_edit_the_acl_over_the_socket() {
    let s = TestServer::start().await;
    let st = s.server().state();
    st.store
        .put_room(&room("club", &["user"], &["user"], &["host"]))
        .unwrap();
    st.store
        .set_user_roles("hana", strings(&["host"]), 0)
        .unwrap();
    let mut hana = s.authed("hana").await;
    let mut ivan = s.authed("ivan").await;
    let mut jo = s.authed("jo").await;
    hana.join("club").await;
    ivan.join("club").await;
    jo.join("club").await;
    hana.expect("user_joined").await;
    hana.expect("user_joined").await;
    ivan.expect("user_joined").await;

    // A member without admin rights may not kick.
    ivan.send("kick", json!({"roomId": "club", "userId": "jo"}))
        .await;
    ivan.expect_error("insufficient_permissions").await;

    // Kick: ivan is out, the others see user_left, ivan may come back.
    hana.send("kick", json!({"roomId": "club", "userId": "ivan"}))
        .await;
    assert_eq!(
        within_1s(&mut hana, "kicked").await,
        json!({"roomId": "club", "count": 1, "banned": false})
    );
    assert_eq!(within_1s(&mut ivan, "room_left").await["reason"], "kicked");
    assert_eq!(within_1s(&mut jo, "user_left").await["userId"], "ivan");
    ivan.say("club", "hello?").await;
    ivan.expect_error("not_member").await;
    ivan.join("club").await;
    jo.expect("user_joined").await;

    // Ban: out, and a new join is refused.
    hana.send(
        "kick",
        json!({"roomId": "club", "userId": "ivan", "ban": true}),
    )
    .await;
    assert_eq!(within_1s(&mut hana, "kicked").await["banned"], true);
    assert_eq!(within_1s(&mut ivan, "room_left").await["reason"], "banned");
    ivan.send("join", json!({"roomId": "club"})).await;
    ivan.expect_error("insufficient_permissions").await;

    // ACL edit: writes limited to hosts; jo hears it; the answer is the whole ACL.
    hana.send(
        "room_acl",
        json!({"roomId": "club", "write": ["host"], "showEmails": false}),
    )
    .await;
    let acl = within_1s(&mut hana, "room_acl").await;
    assert_eq!(acl["write"], json!(["host"]));
    assert_eq!(acl["bans"], json!(["ivan"]));
    assert_eq!(acl["showEmails"], false);
    assert_eq!(
        within_1s(&mut jo, "permissions_updated").await["write"],
        false
    );
    jo.say("club", "can I?").await;
    jo.expect_error("insufficient_permissions").await;
    // Unban through the ACL frame; bad input is refused with the field named.
    hana.send("room_acl", json!({"roomId": "club", "unban": "ivan"}))
        .await;
    assert_eq!(within_1s(&mut hana, "room_acl").await["bans"], json!([]));
    ivan.join("club").await;
    hana.expect("user_joined").await;
    hana.send("room_acl", json!({"roomId": "club", "read": ["bad role!"]}))
        .await;
    assert_eq!(hana.expect_error("invalid_field").await["field"], "read");
    hana.send("room_acl", json!({"roomId": "nowhere"})).await;
    hana.expect_error("room_not_found").await;

    // The kick and ACL change are in the security log.
    for a in [
        "room_kick",
        "room_ban",
        "room_acl_changed",
        "permission_denied",
    ] {
        eventually(a, || {
            st.store
                .events(&Default::default())
                .unwrap()
                .iter()
                .any(|e| e.action == a)
        })
        .await;
    }
}

#[tokio::test]
async fn presence_aggregates_tabs_by_user_and_follows_the_email_policy() {
    let s = TestServer::start().await;
    let st = s.server().state();
    st.store
        .put_room(&room("team", &["user"], &["user"], &["admin"]))
        .unwrap();
    let mut tab1 = authed_as(&s, "kim", "kim@example.com").await;
    let mut tab2 = authed_as(&s, "kim", "kim@example.com").await;
    let mut lee = authed_as(&s, "lee", "lee@example.com").await;
    tab1.join("team").await;
    lee.join("team").await;
    tab2.join("team").await;

    lee.send("presence", json!({"roomId": "team"})).await;
    let p = within_1s(&mut lee, "presence").await;
    let members = p["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{p}");
    assert_eq!(members[0]["userId"], "kim");
    assert_eq!(members[0]["connections"], 2);
    assert_eq!(members[0]["email"], "kim@example.com");
    assert_eq!(members[1]["userId"], "lee");
    assert_eq!(members[1]["connections"], 1);
    assert!(members[0]["joinedAt"].as_u64().unwrap() <= members[1]["joinedAt"].as_u64().unwrap());

    // One tab closes: kim is still present with one connection, and nobody hears user_left.
    tab2.close().await;
    eventually("kim down to one connection", || {
        st.hub.get("team").unwrap().presence()[0].connections == 1
    })
    .await;
    lee.expect_silence(200).await;

    // The room hides emails: presence and announcements drop them.
    policy::update_room(st, "team", |r| r.show_emails = false)
        .await
        .unwrap();
    lee.send("presence", json!({"roomId": "team"})).await;
    let p = within_1s(&mut lee, "presence").await;
    assert!(
        p["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m.get("email").is_none()),
        "{p}"
    );
    let mut max = authed_as(&s, "max", "max@example.com").await;
    max.join("team").await;
    let joined = within_1s(&mut lee, "user_joined").await;
    assert!(joined.get("email").is_none(), "{joined}");

    // Presence needs read access.
    policy::update_room(st, "team", |r| r.read = strings(&["admin"]))
        .await
        .unwrap();
    within_1s(&mut lee, "room_left").await;
    lee.send("presence", json!({"roomId": "team"})).await;
    lee.expect_error("insufficient_permissions").await;
    drop(tab1);
}

#[tokio::test]
async fn acl_lists_are_capped_at_rooms_max_acl_entries() {
    let s = TestServer::start_with(|c| c.rooms.max_acl_entries = 2).await;
    let st = s.server().state();
    st.store
        .put_room(&room("tiny", &["user"], &["user"], &["host"]))
        .unwrap();
    st.store
        .set_user_roles("hana", strings(&["host"]), 0)
        .unwrap();
    let mut hana = s.authed("hana").await;
    hana.send("room_acl", json!({"roomId": "tiny", "read": ["a", "b"]}))
        .await;
    assert_eq!(
        within_1s(&mut hana, "room_acl").await["read"],
        json!(["a", "b"])
    );
    hana.send(
        "room_acl",
        json!({"roomId": "tiny", "read": ["a", "b", "c"]}),
    )
    .await;
    assert_eq!(hana.expect_error("invalid_field").await["field"], "read");
    for u in ["u1", "u2"] {
        hana.send("room_acl", json!({"roomId": "tiny", "ban": u}))
            .await;
        within_1s(&mut hana, "room_acl").await;
    }
    hana.send("room_acl", json!({"roomId": "tiny", "ban": "u3"}))
        .await;
    hana.expect_error("invalid_field").await;
    assert_eq!(
        st.store.room("tiny").unwrap().unwrap().bans,
        strings(&["u1", "u2"])
    );
}
