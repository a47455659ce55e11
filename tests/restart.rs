//! Durable state across a restart on the same data root: rooms and their policies,
//! history and its sequence, revocations, stored roles and sessions. And a database from
//! a newer roomgate is refused rather than opened.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use roomgate::server::Server;
use roomgate::store::Store;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// `roomgate ARGS --data DIR`, through the running server's control socket when there is
/// one; must succeed and print JSON.
async fn cli_json(dir: &Path, args: &[&str]) -> Value {
    let (ok, stdout, stderr) = run_cli(dir, args).await;
    assert!(ok, "roomgate {args:?} failed: {stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("roomgate {args:?} printed no JSON ({e}): {stdout}"))
}

fn roles(auth: &Value) -> Vec<String> {
    serde_json::from_value(auth["user"]["roles"].clone()).expect("roles")
}

fn token_jti(sub: &str, jti: &str) -> String {
    token_with(json!({
        "sub": sub,
        "email": format!("{sub}@example.com"),
        "jti": jti,
        "iat": now_secs(),
        "exp": now_secs() + 3600,
    }))
}

/// Sends `content` and waits for its echo, so it has been published.
async fn say_seen(c: &mut Client, room: &str, content: &str) {
    c.say(room, content).await;
    let m = c.expect("message").await;
    assert_eq!(m["data"]["content"], content);
    assert_eq!(m["data"]["roomId"], room);
}

fn contents(store: &Store, room: &str) -> (Vec<String>, Vec<u64>) {
    let h = store.history(room).expect("history reads");
    (
        h.iter().map(|r| r.content.clone()).collect(),
        h.iter().map(|r| r.seq).collect(),
    )
}

#[tokio::test]
async fn rooms_history_revocations_roles_and_sessions_survive_a_restart() {
    let s = TestServer::start().await;
    let dir = s.dir.path().to_path_buf();

    // alice authenticates and keeps her wsToken.
    let mut alice = s.client().await;
    let ok = alice.auth(&token("alice")).await;
    let ws_token = ok["wsToken"].as_str().expect("wsToken").to_string();

    // bob gets stored roles, and an operator room is created, both through the CLI.
    let r = cli_json(&dir, &["user", "roles", "bob", "--set", "user,admin"]).await;
    assert_eq!(r["roles"], json!(["user", "admin"]));
    cli_json(
        &dir,
        &[
            "room",
            "create",
            "ops",
            "--type",
            "document",
            "--name",
            "Operations",
            "--read",
            "admin",
            "--write",
            "admin",
            "--admin",
            "admin",
            "--max",
            "5",
        ],
    )
    .await;

    // alice auto-creates the lobby and talks; bob talks in ops.
    alice.join("lobby").await;
    for i in 1..=5 {
        say_seen(&mut alice, "lobby", &format!("lobby {i}")).await;
    }
    let mut bob = s.client().await;
    let ok = bob.auth(&token("bob")).await;
    assert_eq!(roles(&ok), ["user", "admin"]);
    bob.join("ops").await;
    for i in 1..=3 {
        say_seen(&mut bob, "ops", &format!("ops {i}")).await;
    }
    bob.close().await;

    // carol's token is revoked while she is connected.
    let carol_token = token_jti("carol", "carol-1");
    let mut carol = s.client().await;
    carol.auth(&carol_token).await;
    let r = cli_json(&dir, &["revoke", "--token", &carol_token]).await;
    assert_eq!(r["closedConnections"], 1, "{r}");
    assert_eq!(carol.expect_close().await.code, 4003);
    carol.close().await;

    // Stop with alice still connected: she is told the server is going away.
    let (dir, closed) = tokio::join!(s.stop(), async {
        let closed = alice.expect_close().await;
        // Answer the close so shutdown need not wait out its grace period.
        alice.close().await;
        closed
    });
    assert_eq!(closed.code, 1001, "{closed:?}");

    // Restart on the same root, with auto-creation off so a joinable lobby must be stored.
    let s = TestServer::start_in(dir, |cfg| cfg.rooms.auto_create = false).await;
    let store = &s.server().state().store;

    let ops = store.room("ops").unwrap().expect("ops survived");
    assert_eq!(ops.name, "Operations");
    assert_eq!(ops.kind, "document");
    assert_eq!(ops.read, ["admin"]);
    assert_eq!(ops.write, ["admin"]);
    assert_eq!(ops.admin, ["admin"]);
    assert_eq!(ops.max_participants, 5);
    assert!(!ops.auto_created);
    let lobby = store.room("lobby").unwrap().expect("lobby survived");
    assert!(lobby.auto_created);
    assert_eq!(lobby.kind, "chat");
    assert_eq!(lobby.read, ["user"]);

    let (lobby_msgs, lobby_seqs) = contents(store, "lobby");
    assert_eq!(
        lobby_msgs,
        ["lobby 1", "lobby 2", "lobby 3", "lobby 4", "lobby 5"]
    );
    assert_eq!(lobby_seqs, [1, 2, 3, 4, 5]);
    let (ops_msgs, ops_seqs) = contents(store, "ops");
    assert_eq!(ops_msgs, ["ops 1", "ops 2", "ops 3"]);
    assert_eq!(ops_seqs, [1, 2, 3]);

    // carol's revoked token stays refused; her other tokens work.
    let mut carol = s.client().await;
    carol.send("auth", json!({"token": carol_token})).await;
    let e = carol.expect_error("token_revoked").await;
    assert_eq!(e["message"], "Token has been revoked");
    carol.close().await;
    let mut carol = s.client().await;
    carol.auth(&token_jti("carol", "carol-2")).await;

    // bob's stored roles apply to a fresh login, and the room policy is enforced.
    let mut bob = s.client().await;
    let ok = bob.auth(&token("bob")).await;
    assert_eq!(roles(&ok), ["user", "admin"]);
    bob.join("ops").await;
    carol.send("join", json!({"roomId": "ops"})).await;
    carol.expect_error("insufficient_permissions").await;
    // The lobby is stored, an unknown room is not (auto-creation is off).
    carol.join("lobby").await;
    carol.send("join", json!({"roomId": "never-made"})).await;
    carol.expect_error("room_not_found").await;

    // alice resumes her unexpired session with the wsToken from before the restart.
    let mut alice = s.client().await;
    let ok = alice.auth(&ws_token).await;
    assert_eq!(ok["user"]["userId"], "alice");
    assert_eq!(ok["user"]["email"], "alice@example.com");
    let resumed = run_cli(s.dir.path(), &["events", "--action", "websocket_auth"]).await;
    assert!(resumed.0, "{}", resumed.2);
    assert!(
        resumed.1.contains(r#""method":"ws_token""#),
        "resume not recorded as such: {}",
        resumed.1
    );

    // New messages continue each room's sequence.
    alice.join("lobby").await;
    say_seen(&mut alice, "lobby", "lobby 6").await;
    carol.expect("message").await;
    say_seen(&mut bob, "ops", "ops 4").await;
    alice.close().await;
    bob.close().await;
    carol.close().await;
    let dir = tokio::time::timeout(Duration::from_secs(20), s.stop())
        .await
        .expect("server stops");

    let store = Store::open(dir.path(), &Default::default()).expect("store reopens");
    let (lobby_msgs, lobby_seqs) = contents(&store, "lobby");
    assert_eq!(lobby_msgs.last().map(String::as_str), Some("lobby 6"));
    assert_eq!(lobby_seqs, [1, 2, 3, 4, 5, 6]);
    let (ops_msgs, ops_seqs) = contents(&store, "ops");
    assert_eq!(ops_msgs, ["ops 1", "ops 2", "ops 3", "ops 4"]);
    assert_eq!(ops_seqs, [1, 2, 3, 4]);
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused() {
    let root = tempfile::Builder::new().prefix("rg").tempdir().unwrap();
    let dir = root.path();
    {
        let store = Store::open(dir, &Default::default()).expect("fresh store");
        store.set_schema_version_for_tests(99).unwrap();
        store.flush_blocking().unwrap();
    }

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    match Server::start(test_config(dir), listener).await {
        Ok(server) => {
            server.shutdown().await;
            panic!("a schema-99 database was opened");
        }
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("newer"), "{text}");
            assert!(text.contains("99"), "{text}");
        }
    }

    // The binary exits non-zero with the same explanation instead of panicking.
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(binary_path())
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir)
            .env("JWT_SECRET", JWT_SECRET)
            .env("WS_SECRET", WS_SECRET)
            .output(),
    )
    .await
    .expect("binary exits in time")
    .expect("binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "served a newer database: {stdout}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("newer"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stdout.contains("listening"), "{stdout}");

    // Offline operator commands refuse it too.
    let (ok, _, stderr) = run_cli(dir, &["stats"]).await;
    assert!(!ok);
    assert!(stderr.contains("newer"), "{stderr}");

    // Nothing rewrote the version on the way.
    match Store::open(dir, &Default::default()) {
        Ok(_) => panic!("the schema version was changed"),
        Err(e) => assert!(e.to_string().contains("newer"), "{e}"),
    }
}

#[tokio::test]
async fn a_data_root_in_use_is_refused_and_the_running_server_is_unaffected() {
    let root = tempfile::Builder::new().prefix("rg").tempdir().unwrap();
    let dir = root.path();
    let first = Binary::start(dir, &[]).await;

    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(binary_path())
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir)
            .env("JWT_SECRET", JWT_SECRET)
            .env("WS_SECRET", WS_SECRET)
            .output(),
    )
    .await
    .expect("second binary exits in time")
    .expect("binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "two servers on one data root");
    assert!(stderr.contains("in use"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The store cannot be opened beside it either, with the same explanation.
    match Store::open(dir, &Default::default()) {
        Ok(_) => panic!("opened a database a running server holds"),
        Err(e) => assert!(e.to_string().contains("in use"), "{e}"),
    }

    // The first server still serves, and its control socket still answers.
    let mut c = Client::connect(&first.url()).await;
    c.expect("handshake").await;
    c.auth(&token("alice")).await;
    let stats = cli_json(dir, &["stats"]).await;
    assert_eq!(stats["running"], true);
    assert_eq!(stats["authenticatedConnections"], 1);
    c.close().await;
    first.stop().await;
}

/// sled drops a log it cannot read and opens empty; roomgate must refuse such a
/// database rather than start again from nothing.
#[tokio::test]
async fn a_corrupted_database_is_refused_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    let b = Binary::start(dir.path(), &[]).await;
    b.stop().await;
    let log = dir.path().join("db").join("db");
    let mut bytes = std::fs::read(&log).unwrap();
    for b in bytes.iter_mut().step_by(7) {
        *b ^= 0xA5;
    }
    std::fs::write(&log, bytes).unwrap();
    let out = tokio::process::Command::new(binary_path())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .env("JWT_SECRET", JWT_SECRET)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "served a corrupted database");
    assert!(
        stderr.contains("corrupt") && stderr.contains("restore"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
