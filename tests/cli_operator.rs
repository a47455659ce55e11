//! The operator commands a newcomer reaches for, over the real binary: they refuse a data
//! root without a database instead of creating one, `user roles` changes nothing without a
//! flag, the listing commands (rooms, roles, sessions, revocations) work on a stopped and a
//! running server, `token` mints a token the server accepts (and refuses in production
//! mode), and `health` tells a running server from a stopped one.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::*;
use serde_json::{Value, json};

/// Runs the binary with ARGS in `cwd`, with no JWT/WS secrets in the environment unless
/// given; returns (exit code, stdout, stderr).
async fn roomgate(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = roomgate_command(args);
    cmd.current_dir(cwd)
        .env_remove("JWT_SECRET")
        .env_remove("WS_SECRET");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = finish(cmd).await;
    (out.code.unwrap_or(-1), out.stdout, out.stderr)
}

/// `roomgate ARGS --data DIR`, which must succeed; its stdout.
async fn ok(dir: &Path, args: &[&str]) -> String {
    let (success, out, err) = run_cli(dir, args).await;
    assert!(success, "roomgate {args:?} failed: {err}");
    out
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

async fn actions(dir: &Path) -> Vec<String> {
    json_lines(&ok(dir, &["events"]).await)
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn commands_refuse_a_data_root_without_a_database_and_create_nothing() {
    let cwd = tempfile::tempdir().unwrap();
    let elsewhere = cwd.path().join("not-the-server");
    let backup = cwd.path().join("b.bak");
    let commands: &[&[&str]] = &[
        &["user", "add", "alice"],
        &["user", "list"],
        &["user", "roles", "dave"],
        &["user", "roles", "dave", "--set", "admin"],
        &["user", "passwd", "alice", "--generate"],
        &["user", "disable", "alice"],
        &["room", "create", "r1"],
        &["room", "list"],
        &["room", "show", "r1"],
        &["room", "delete", "r1"],
        &["roles", "list"],
        &["sessions", "list", "--user", "alice"],
        &["revocations", "list"],
        &["revoke", "--user", "alice"],
        &["apikey", "list"],
        &["stats"],
        &["events"],
        &["backup", backup.to_str().unwrap()],
    ];
    for args in commands {
        // Without --data: the default ./data of wherever the command was run.
        let (code, out, err) = roomgate(cwd.path(), args, &[]).await;
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        let looked = cwd.path().join("data").join("db");
        assert!(
            err.contains(&looked.display().to_string()) && err.contains("--data"),
            "{args:?} names the path it looked at and --data: {err}"
        );
        assert!(out.is_empty(), "{args:?} printed {out}");
        assert!(
            !cwd.path().join("data").exists(),
            "{args:?} created a data root"
        );
        // With --data naming a directory that holds no database.
        let mut with = args.to_vec();
        with.extend(["--data", elsewhere.to_str().unwrap()]);
        let (code, _, err) = roomgate(cwd.path(), &with, &[]).await;
        assert_eq!(code, 1, "{with:?}: {err}");
        assert!(err.contains("no roomgate database"), "{err}");
        assert!(
            !elsewhere.exists(),
            "{with:?} created {}",
            elsewhere.display()
        );
    }
    assert!(!backup.exists());
}

#[tokio::test]
async fn user_roles_prints_and_changes_only_with_a_flag() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    init_database(d).await;
    let show = |out: String| serde_json::from_str::<Value>(&out).expect("JSON");

    assert_eq!(
        show(ok(d, &["user", "roles", "dave"]).await),
        json!({"userId": "dave", "roles": []})
    );
    assert_eq!(
        show(ok(d, &["user", "roles", "dave", "--set", "user,moderator"]).await),
        json!({"userId": "dave", "roles": ["user", "moderator"]})
    );
    // Printing does not change them, nor log a change.
    for _ in 0..2 {
        assert_eq!(
            show(ok(d, &["user", "roles", "dave"]).await)["roles"],
            json!(["user", "moderator"])
        );
    }
    assert_eq!(
        show(ok(d, &["user", "roles", "dave", "--clear"]).await),
        json!({"userId": "dave", "roles": []})
    );
    let changes = actions(d)
        .await
        .into_iter()
        .filter(|a| a == "roles_changed")
        .count();
    assert_eq!(changes, 2, "only --set and --clear change roles");

    // An empty --set is not a way to clear, and the two flags do not go together.
    for bad in [
        &["user", "roles", "dave", "--set"][..],
        &["user", "roles", "dave", "--set", "a", "--clear"],
    ] {
        let (success, _, err) = run_cli(d, bad).await;
        assert!(!success, "{bad:?} was accepted");
        assert!(err.contains("error:"), "{err}");
    }
    assert_eq!(
        show(ok(d, &["user", "roles", "dave"]).await)["roles"],
        json!([])
    );
}

#[tokio::test]
async fn rooms_roles_sessions_and_revocations_are_listed_stopped_and_running() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    init_database(d).await;

    // Stopped.
    ok(d, &["room", "create", "alpha", "--type", "document"]).await;
    ok(d, &["room", "create", "beta"]).await;
    let rooms = json_lines(&ok(d, &["room", "list"]).await);
    let ids: Vec<&str> = rooms.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids, ["alpha", "beta"]);
    let alpha: Value = serde_json::from_str(&ok(d, &["room", "show", "alpha"]).await).unwrap();
    assert_eq!(alpha["type"], "document");
    assert!(
        alpha.get("members").is_none(),
        "a stopped server has no members"
    );
    let deleted: Value = serde_json::from_str(&ok(d, &["room", "delete", "beta"]).await).unwrap();
    assert_eq!(deleted, json!({"id": "beta", "deleted": true}));
    let (success, _, err) = run_cli(d, &["room", "show", "beta"]).await;
    assert!(!success && err.contains("no room \"beta\""), "{err}");
    let (success, _, err) = run_cli(d, &["room", "delete", "beta"]).await;
    assert!(!success && err.contains("no room \"beta\""), "{err}");

    let roles = json_lines(&ok(d, &["roles", "list"]).await);
    let names: Vec<&str> = roles.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["admin", "moderator", "user"]);
    assert!(roles[0]["permissions"].as_array().unwrap().len() >= 8);

    // Running: sessions of a connected user, members of a room, revocations by key.
    let b = Binary::start(d, &[]).await;
    let mut c = Client::connect(&b.url()).await;
    c.expect("handshake").await;
    let alice_token = token("alice");
    c.auth(&alice_token).await;
    c.join("alpha").await;

    let sessions = json_lines(&ok(d, &["sessions", "list", "--user", "alice"]).await);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["userId"], "alice");
    assert!(
        ok(d, &["sessions", "list", "--user", "nobody"])
            .await
            .is_empty()
    );

    let alpha: Value = serde_json::from_str(&ok(d, &["room", "show", "alpha"]).await).unwrap();
    assert_eq!(alpha["members"][0]["userId"], "alice", "{alpha}");

    assert!(ok(d, &["revocations", "list"]).await.is_empty());
    ok(d, &["revoke", "--token", &alice_token]).await;
    ok(d, &["revoke", "--user", "mallory"]).await;
    let listed = ok(d, &["revocations", "list"]).await;
    assert!(
        !listed.contains(&alice_token),
        "a revocation is listed by key, never by the token"
    );
    let revs = json_lines(&listed);
    assert!(
        revs.iter()
            .any(|r| r["kind"] == "token" && r["key"].as_str().unwrap().starts_with("sha256:")),
        "{revs:?}"
    );
    assert!(
        revs.iter()
            .any(|r| r["kind"] == "user" && r["userId"] == "mallory"),
        "{revs:?}"
    );
    b.stop().await;
}

/// The payload of a JWT, decoded without checking it.
fn claims(token: &str) -> Value {
    use base64_payload::decode;
    let payload = token.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&decode(payload)).expect("JSON claims")
}

/// Enough base64url decoding to read a token's claims in a test.
mod base64_payload {
    pub fn decode(s: &str) -> Vec<u8> {
        let val = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {c}"),
        };
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for &c in s.as_bytes() {
            acc = (acc << 6) | u32::from(val(c));
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        out
    }
}

#[tokio::test]
async fn token_mints_what_the_server_accepts_and_production_refuses_it() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    let data = d.to_str().unwrap();

    // No secret yet: says where it looked, creates nothing.
    let fresh = d.join("fresh");
    let (code, _, err) = roomgate(
        d,
        &["token", "alice", "--data", fresh.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("jwt_secret") && err.contains("fresh"), "{err}");
    assert!(!fresh.exists());

    // A server with its generated secret (nothing in the environment).
    let mut server = tokio::process::Command::new(binary_path());
    server
        .args(["serve", "--listen", "127.0.0.1:0", "--data", data])
        .env_remove("JWT_SECRET")
        .env_remove("WS_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = server.spawn().unwrap();
    let addr = listening_addr(&mut child).await;

    let (code, out, err) = roomgate(
        d,
        &[
            "token",
            "alice",
            "--ttl",
            "1h",
            "--email",
            "a@example.com",
            "--data",
            data,
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let token = out.trim();
    let c = claims(token);
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["email"], "a@example.com");
    assert_eq!(
        c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
        3600
    );
    assert!(c["jti"].is_string());
    let mut ws = Client::connect(&format!("ws://{addr}/ws")).await;
    ws.expect("handshake").await;
    let ok = ws.auth(token).await;
    assert_eq!(ok["user"]["userId"], "alice", "{ok}");

    // Roles in the claim are ignored unless the server trusts them, and it says so.
    let (code, _, err) = roomgate(
        d,
        &["token", "bob", "--roles", "admin", "--data", data],
        &[],
    )
    .await;
    assert_eq!(code, 0);
    assert!(err.contains("trust_role_claims"), "{err}");

    for bad in [
        &["--ttl", "0"][..],
        &["--ttl", "5w"],
        &["--ttl", "x"],
        &["--ttl", "366d"],
    ] {
        let mut args = vec!["token", "carol", "--data", data];
        args.extend(bad);
        let (code, out, err) = roomgate(d, &args, &[]).await;
        assert_eq!(code, 1, "{bad:?}: {out}");
        assert!(err.contains("--ttl"), "{err}");
    }
    child.kill().await.unwrap();

    // Production mode (otherwise valid) refuses test tokens unless forced.
    let strong = "9f1c2e7a4b8d3f6051e2c9a7b4d8f3e6a1c5b9d2e7f4a8c3b6d1e9f2a5c8b7d4";
    let prod = [
        ("ROOMGATE_MODE", "production"),
        ("ROOMGATE_SECURITY__BEHIND_PROXY", "true"),
        ("ROOMGATE_SECURITY__TRUSTED_PROXIES", "127.0.0.1/32"),
        ("ROOMGATE_SECURITY__ALLOWED_ORIGINS", "https://app.example"),
        ("JWT_SECRET", strong),
        (
            "WS_SECRET",
            "3b7e1d9c5a2f8e4b6d0c9a7f3e1b5d8c2a6f4e9b7d3c1a5f8e2b6d4c9a7f3e1b",
        ),
    ];
    let (code, out, err) = roomgate(d, &["token", "alice", "--data", data], &prod).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("production mode") && err.contains("--force"),
        "{err}"
    );
    let (code, out, err) = roomgate(d, &["token", "alice", "--force", "--data", data], &prod).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(claims(out.trim())["sub"], "alice");
}

async fn listening_addr(child: &mut tokio::process::Child) -> String {
    use tokio::io::AsyncBufReadExt;
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if let Some(rest) = line.strip_prefix("roomgate listening on http://") {
                return rest.to_string();
            }
        }
        panic!("exited before listening");
    })
    .await
    .expect("listens within 20 s")
}

#[tokio::test]
async fn health_tells_a_running_server_from_a_stopped_one() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    let b = Binary::start(d, &[]).await;
    let base = b.url().replace("ws://", "http://").replace("/ws", "");
    let addr = base.trim_start_matches("http://").to_string();

    let (code, out, err) = roomgate(d, &["health", "--url", &base], &[]).await;
    assert_eq!((code, out.trim()), (0, r#"{"status":"ready"}"#), "{err}");
    // The default URL comes from the configured listen address; health needs no database.
    let elsewhere = d.join("elsewhere");
    let (code, _, err) = roomgate(
        d,
        &["health", "--data", elsewhere.to_str().unwrap()],
        &[("ROOMGATE_LISTEN", &addr)],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(!elsewhere.exists());
    // Something that is not roomgate's readiness answers: not healthy.
    let (code, _, err) = roomgate(
        d,
        &["health", "--url", &format!("{base}/nothing-here")],
        &[],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");

    b.stop().await;
    let (code, out, err) = roomgate(d, &["health", "--url", &base], &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("cannot connect"), "{err}");
    for t in ["0", "301"] {
        let (code, _, err) = roomgate(d, &["health", "--url", &base, "--timeout", t], &[]).await;
        assert_eq!(code, 2, "--timeout {t} is refused as a usage error: {err}");
    }
    let (code, _, err) = roomgate(d, &["health", "--url", "https://127.0.0.1:1"], &[]).await;
    assert_eq!(code, 1);
    assert!(err.contains("not a URL like http://"), "{err}");
}
