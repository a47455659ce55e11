//! Account commands (`roomgate user ...`) with the server stopped and running, and their
//! effect on live sockets: a password change, a disable or a delete closes every socket
//! of the account within a second and refuses its earlier tokens and refresh tokens.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

async fn cli_stdin(dir: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = tokio::process::Command::new(binary_path())
        .args(args)
        .arg("--data")
        .arg(dir)
        .env("JWT_SECRET", JWT_SECRET)
        .env("WS_SECRET", WS_SECRET)
        // Cheap hashing for tests; the defaults are OWASP's.
        .env("ROOMGATE_ACCOUNTS__ARGON2_MEMORY_KIB", "64")
        .env("ROOMGATE_ACCOUNTS__ARGON2_ITERATIONS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cli runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn ok(dir: &std::path::Path, args: &[&str], stdin: &str) -> Value {
    let (success, out, err) = cli_stdin(dir, args, stdin).await;
    assert!(success, "{args:?} failed: {out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|_| panic!("not JSON: {out}"))
}

#[tokio::test]
async fn user_commands_work_with_the_server_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init_database(d).await;
    let added = ok(
        d,
        &[
            "user",
            "add",
            "dora",
            "--email",
            "d@example.com",
            "--roles",
            "staff",
            "--password-stdin",
        ],
        "  spaces are kept  \n",
    )
    .await;
    assert_eq!(added["username"], "dora");
    assert!(added.get("password").is_none());
    let generated = ok(d, &["user", "add", "eve"], "").await;
    let eve_pw = generated["password"].as_str().unwrap().to_string();
    assert!(eve_pw.len() >= 16);
    let (success, _, err) = cli_stdin(d, &["user", "add", "dora"], "").await;
    assert!(!success && err.contains("already exists"), "{err}");
    let (success, _, err) = cli_stdin(d, &["user", "add", "bad name"], "").await;
    assert!(!success && err.contains("username"), "{err}");
    let (success, _, err) =
        cli_stdin(d, &["user", "add", "frank", "--password-stdin"], "short\n").await;
    assert!(!success && err.contains("shorter"), "{err}");
    ok(d, &["user", "disable", "eve"], "").await;
    let (success, out, _) = cli_stdin(d, &["user", "list"], "").await;
    assert!(success);
    let list: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(list.len(), 2);
    assert!(!out.contains("argon2"), "hashes must never be listed");
    let eve = list.iter().find(|u| u["username"] == "eve").unwrap();
    assert_eq!(eve["disabled"], true);
    ok(d, &["user", "enable", "eve"], "").await;
    ok(d, &["user", "delete", "eve"], "").await;
    let (success, _, err) = cli_stdin(d, &["user", "delete", "eve"], "").await;
    assert!(!success && err.contains("no account"), "{err}");

    // The server starts on that data root, creates no second admin... and dora can log in
    // with her untrimmed password.
    let s = TestServer::start_in(dir, |_| {}).await;
    assert!(s.server().state().store.account("admin").unwrap().is_none());
    assert_eq!(login(s.addr, "dora", "spaces are kept").await.status, 401);
    let r = login(s.addr, "dora", "  spaces are kept  ").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn logged_in_socket(s: &TestServer, user: &str, password: &str) -> (Client, Value) {
    let r = login(s.addr, user, password).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let tokens = r.json();
    let mut ws = s.client().await;
    ws.auth(tokens["access_token"].as_str().unwrap()).await;
    (ws, tokens)
}

async fn closed_within_a_second(ws: &mut Client) {
    let closed = tokio::time::timeout(Duration::from_secs(1), ws.expect_close())
        .await
        .expect("socket closed within one second");
    assert_eq!(closed.code, 4003);
}

#[tokio::test]
async fn password_change_disable_and_delete_close_live_sockets() {
    let s = TestServer::start().await;
    let d = s.dir.path();
    for name in ["p1", "p2", "p3"] {
        ok(
            d,
            &["user", "add", name, "--password-stdin"],
            "initial-password\n",
        )
        .await;
    }

    for (name, args) in [
        ("p1", vec!["user", "passwd", "p1"]),
        ("p2", vec!["user", "disable", "p2"]),
        ("p3", vec!["user", "delete", "p3"]),
    ] {
        let (mut ws, tokens) = logged_in_socket(&s, name, "initial-password").await;
        let access = tokens["access_token"].as_str().unwrap().to_string();
        let reply = ok(d, &args, "a-new-password\n").await;
        assert_eq!(reply["closedConnections"], 1, "{reply}");
        closed_within_a_second(&mut ws).await;
        // Earlier tokens and refresh tokens are dead.
        let mut again = s.client().await;
        again.send("auth", json!({"token": access})).await;
        again.expect_error("token_revoked").await;
        let r = post_json(
            s.addr,
            "/auth/refresh",
            &json!({"refresh_token": tokens["refresh_token"]}),
        )
        .await;
        assert_eq!(r.status, 401, "{name}: refresh survived: {}", r.body);
    }
    // The new password works, the disabled and deleted accounts cannot log in.
    assert_eq!(login(s.addr, "p1", "a-new-password").await.status, 200);
    assert_eq!(login(s.addr, "p1", "initial-password").await.status, 401);
    assert_eq!(login(s.addr, "p2", "initial-password").await.status, 401);
    assert_eq!(login(s.addr, "p3", "initial-password").await.status, 401);
}

#[tokio::test]
async fn revoke_user_ends_logins_too() {
    let s = TestServer::start().await;
    let (mut ws, tokens) = logged_in_socket(&s, "admin", ADMIN_PASSWORD).await;
    let (success, out, err) = run_cli(s.dir.path(), &["revoke", "--user", "admin"]).await;
    assert!(success, "{out}{err}");
    closed_within_a_second(&mut ws).await;
    let r = post_json(
        s.addr,
        "/auth/refresh",
        &json!({"refresh_token": tokens["refresh_token"]}),
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn a_login_right_after_a_password_change_works_at_once() {
    let s = TestServer::start().await;
    let d = s.dir.path();
    ok(
        d,
        &["user", "add", "quick", "--password-stdin"],
        "first-password\n",
    )
    .await;
    ok(d, &["user", "passwd", "quick"], "second-password\n").await;
    // Same second as the revocation: the new login's socket must still authenticate.
    let (_ws, _) = logged_in_socket(&s, "quick", "second-password").await;
}

#[tokio::test]
async fn revoking_a_token_or_a_session_closes_sockets_within_a_second() {
    let s = TestServer::start().await;
    let (mut ws, tokens) = logged_in_socket(&s, "admin", ADMIN_PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap();
    let (success, out, err) = run_cli(s.dir.path(), &["revoke", "--token", access]).await;
    assert!(success, "{out}{err}");
    closed_within_a_second(&mut ws).await;

    // A session, named by its wsToken, likewise.
    let (mut first, _) = logged_in_socket(&s, "admin", ADMIN_PASSWORD).await;
    let mut c = s.client().await;
    let fresh = login(s.addr, "admin", ADMIN_PASSWORD).await.json();
    let ok = c.auth(fresh["access_token"].as_str().unwrap()).await;
    let ws_token = ok["wsToken"].as_str().unwrap();
    let (success, out, err) = run_cli(s.dir.path(), &["revoke", "--token", ws_token]).await;
    assert!(success, "{out}{err}");
    closed_within_a_second(&mut c).await;
    // Another session of the same user is untouched.
    first.send("heartbeat", json!({})).await;
    first.expect("heartbeat_response").await;
}
