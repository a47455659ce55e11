//! The real binary: help, operator commands on a stopped and on a running server, file
//! permissions, configuration loading and validation, the effective-configuration log,
//! the seed's environment names, and `serve` as the default command.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Output of a finished command.
/// Runs the binary with exactly these arguments (no `--data` added) and extra env;
/// `JWT_SECRET`/`WS_SECRET` are the test ones unless overridden.
async fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = roomgate_command(args);
    cmd.env("JWT_SECRET", JWT_SECRET)
        .env("WS_SECRET", WS_SECRET)
        .env_remove("ROOMGATE_CONFIG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    finish(cmd).await
}

/// `roomgate ARGS --data DIR`; must succeed and print one JSON document.
async fn cli_json(dir: &Path, args: &[&str]) -> Value {
    let (ok, stdout, stderr) = run_cli(dir, args).await;
    assert!(ok, "roomgate {args:?} failed: {stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("roomgate {args:?} printed no JSON ({e}): {stdout}"))
}

/// `roomgate events ARGS --data DIR`; must succeed and print JSON lines.
async fn cli_events(dir: &Path, args: &[&str]) -> Vec<Value> {
    let mut full = vec!["events"];
    full.extend_from_slice(args);
    let (ok, stdout, stderr) = run_cli(dir, &full).await;
    assert!(ok, "roomgate {full:?} failed: {stderr}");
    stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("event line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// `roomgate ARGS --data DIR`; must fail with a non-zero exit and no panic.
async fn cli_fails(dir: &Path, args: &[&str]) -> String {
    let (ok, stdout, stderr) = run_cli(dir, args).await;
    assert!(!ok, "roomgate {args:?} should fail; printed {stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.trim().is_empty(), "failure without a message");
    stderr
}

/// Spawns the binary with `args`, `envs` and without the `remove`d variables, waits for
/// its "listening" line, and collects its stderr in the background.
async fn launch(
    args: &[&str],
    envs: &[(&str, &str)],
    remove: &[&str],
) -> (Binary, JoinHandle<String>) {
    let mut cmd = tokio::process::Command::new(binary_path());
    cmd.args(args)
        .env("JWT_SECRET", JWT_SECRET)
        .env("WS_SECRET", WS_SECRET)
        .env_remove("ROOMGATE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    for k in remove {
        cmd.env_remove(k);
    }
    let mut child = cmd.spawn().expect("binary starts");
    let mut stderr = child.stderr.take().expect("stderr");
    let err = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let listening = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("roomgate listening on http://") {
                return Some(rest.parse::<std::net::SocketAddr>().expect("address"));
            }
        }
        None
    })
    .await
    .expect("binary listens within 20 s");
    match listening {
        Some(addr) => (Binary { child, addr }, err),
        None => {
            let _ = child.wait().await;
            panic!("binary exited before listening: {}", err.await.unwrap());
        }
    }
}

fn serve_args(dir: &Path) -> Vec<String> {
    vec![
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data".into(),
        dir.display().to_string(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

async fn connect(b: &Binary) -> Client {
    let mut c = Client::connect(&b.url()).await;
    c.expect("handshake").await;
    c
}

fn roles(auth: &Value) -> Vec<String> {
    serde_json::from_value(auth["user"]["roles"].clone()).expect("roles")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("rg").tempdir().unwrap()
}

/// A token with a `jti`, so revocation by value covers both keys.
fn token_jti(sub: &str, jti: &str) -> String {
    token_with(json!({
        "sub": sub,
        "jti": jti,
        "iat": now_secs(),
        "exp": now_secs() + 3600,
    }))
}

#[tokio::test]
async fn help_succeeds() {
    let top = run(&["--help"], &[]).await;
    assert!(top.ok, "{}", top.stderr);
    for word in [
        "serve", "user", "room", "revoke", "stats", "events", "--data",
    ] {
        assert!(
            top.stdout.contains(word),
            "--help lacks {word}: {}",
            top.stdout
        );
    }
    let serve = run(&["serve", "--help"], &[]).await;
    assert!(serve.ok, "{}", serve.stderr);
    assert!(serve.stdout.contains("--listen"), "{}", serve.stdout);
    let version = run(&["--version"], &[]).await;
    assert!(version.ok);
    assert!(version.stdout.contains(env!("CARGO_PKG_VERSION")));
    // An unknown command is refused, not served.
    let bad = run(&["frobnicate"], &[]).await;
    assert!(!bad.ok);
    assert_eq!(bad.code, Some(2), "clap usage error: {}", bad.stderr);
}

#[tokio::test]
async fn commands_work_on_a_stopped_server() {
    let root = tempdir();
    let dir = root.path();
    let bob_token = token("bob");
    let carol_token = token_jti("carol", "carol-jti-1");
    init_database(dir).await;

    let r = cli_json(dir, &["user", "roles", "alice", "--set", "user,admin"]).await;
    assert_eq!(r, json!({"userId": "alice", "roles": ["user", "admin"]}));

    let r = cli_json(
        dir,
        &[
            "room", "create", "ops", "--type", "document", "--read", "admin", "--write", "admin",
            "--admin", "admin", "--max", "5",
        ],
    )
    .await;
    assert_eq!(r["id"], "ops");
    assert_eq!(r["type"], "document");
    assert_eq!(r["read"], json!(["admin"]));
    assert_eq!(r["write"], json!(["admin"]));
    assert_eq!(r["admin"], json!(["admin"]));
    assert_eq!(r["maxParticipants"], 5);

    let r = cli_json(dir, &["revoke", "--user", "bob"]).await;
    assert!(r["deletedSessions"].is_u64(), "{r}");
    let r = cli_json(dir, &["revoke", "--token", &carol_token]).await;
    assert_eq!(r["revokedKeys"], 2, "jti and digest: {r}");

    let stats = cli_json(dir, &["stats"]).await;
    assert_eq!(stats["running"], false, "{stats}");
    assert_eq!(stats["storedRooms"], 1, "{stats}");
    assert_eq!(stats["revokedTokens"], 2, "{stats}");
    assert_eq!(stats["totalConnections"], 0, "{stats}");

    let events = cli_events(dir, &[]).await;
    let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "server_start",
            "roles_changed",
            "room_created",
            "revocation",
            "revocation"
        ],
        "{events:?}"
    );
    for e in &events {
        assert!(e["timestamp"].is_u64(), "{e}");
        // User ids are never stored in the clear.
        assert!(!e.to_string().contains("alice"), "{e}");
        assert!(!e.to_string().contains("bob"), "{e}");
    }

    // Refusals: non-zero exit, a clear message, and no change to the store.
    let err = cli_fails(dir, &["room", "create", "ops"]).await;
    assert!(
        err.contains("ops") && err.contains("already exists"),
        "{err}"
    );
    let err = cli_fails(dir, &["room", "create", "bad id"]).await;
    assert!(err.contains("bad id") && err.contains("room id"), "{err}");
    let err = cli_fails(dir, &["room", "create", "x", "--type", "party"]).await;
    assert!(err.contains("party") && err.contains("type"), "{err}");
    let err = cli_fails(dir, &["user", "roles", "eve", "--set", "bad role"]).await;
    assert!(err.contains("bad role"), "{err}");
    let err = cli_fails(dir, &["revoke"]).await;
    assert!(err.contains("--user"), "{err}");
    let stats = cli_json(dir, &["stats"]).await;
    assert_eq!(stats["storedRooms"], 1, "{stats}");
    let events = cli_events(dir, &[]).await;
    assert_eq!(
        events.len(),
        5,
        "refusals must not be recorded as changes (server_start and the four changes): {events:?}"
    );

    // What was done offline holds once the server runs on the directory.
    let b = Binary::start(dir, &[]).await;
    let mut alice = connect(&b).await;
    let ok = alice.auth(&token("alice")).await;
    assert_eq!(roles(&ok), ["user", "admin"]);
    alice.join("ops").await;
    let mut bob = connect(&b).await;
    bob.send("auth", json!({"token": bob_token})).await;
    bob.expect_error("token_revoked").await;
    let mut carol = connect(&b).await;
    carol.send("auth", json!({"token": carol_token})).await;
    carol.expect_error("token_revoked").await;
    // Another token of carol's is unaffected.
    let mut carol2 = connect(&b).await;
    let ok = carol2.auth(&token_jti("carol", "carol-jti-2")).await;
    assert_eq!(roles(&ok), ["user"]);
    carol2.send("join", json!({"roomId": "ops"})).await;
    let e = carol2.expect_error("insufficient_permissions").await;
    assert_eq!(e["roomId"], "ops");
    b.stop().await;
}

#[tokio::test]
async fn commands_work_through_the_control_socket_of_a_running_server() {
    let root = tempdir();
    let dir = root.path();
    let b = Binary::start(dir, &[]).await;

    let stats = cli_json(dir, &["stats"]).await;
    assert_eq!(stats["running"], true, "{stats}");
    assert_eq!(stats["totalConnections"], 0, "{stats}");

    // A connected socket is counted; authenticating it is counted separately.
    let mut dave = connect(&b).await;
    let stats = cli_json(dir, &["stats"]).await;
    assert_eq!(stats["totalConnections"], 1, "{stats}");
    assert_eq!(stats["authenticatedConnections"], 0, "{stats}");
    let ok = dave.auth(&token("dave")).await;
    assert_eq!(roles(&ok), ["user"]);
    dave.join("lobby").await;
    let stats = cli_json(dir, &["stats"]).await;
    assert_eq!(stats["totalConnections"], 1, "{stats}");
    assert_eq!(stats["authenticatedConnections"], 1, "{stats}");
    assert_eq!(stats["totalRooms"], 1, "{stats}");
    assert_eq!(stats["totalParticipants"], 1, "{stats}");
    assert_eq!(stats["sessions"], 1, "{stats}");

    // The auth is in the security log as soon as it happened (the command syncs the writer).
    let auths = cli_events(dir, &["--action", "websocket_auth"]).await;
    assert_eq!(auths.len(), 1, "{auths:?}");
    assert_eq!(auths[0]["action"], "websocket_auth");
    assert_eq!(auths[0]["result"], "success");
    assert_eq!(auths[0]["metadata"]["method"], "jwt");
    let recent = cli_events(dir, &["--since", "1h"]).await;
    let actions: Vec<&str> = recent.iter().filter_map(|e| e["action"].as_str()).collect();
    for a in ["server_start", "websocket_auth", "room_join"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let future = (now_secs() + 3600) * 1000;
    assert!(
        cli_events(dir, &["--since", &future.to_string()])
            .await
            .is_empty()
    );
    let limited = cli_events(dir, &["--since", "1h", "--limit", "1"]).await;
    assert_eq!(limited.len(), 1);
    let err = cli_fails(dir, &["events", "--since", "2w"]).await;
    assert!(err.contains("--since"), "{err}");

    // Roles changed while running apply at once: dave's open socket hears its new rights
    // in the room it is in (admin carries rooms:admin), and a new auth reports them.
    let r = cli_json(dir, &["user", "roles", "dave", "--set", "user,admin"]).await;
    assert_eq!(r["roles"], json!(["user", "admin"]));
    let upd = dave.expect("permissions_updated").await;
    assert_eq!(upd["data"]["admin"], true);
    let mut dave2 = connect(&b).await;
    let ok = dave2.auth(&token("dave")).await;
    assert_eq!(roles(&ok), ["user", "admin"]);

    // Rooms created while running are enforced at once.
    let r = cli_json(
        dir,
        &[
            "room", "create", "ops", "--type", "document", "--read", "admin", "--write", "admin",
            "--admin", "admin", "--max", "5",
        ],
    )
    .await;
    assert_eq!(r["maxParticipants"], 5);
    let err = cli_fails(dir, &["room", "create", "ops"]).await;
    assert!(err.contains("already exists"), "{err}");
    let err = cli_fails(dir, &["room", "create", "bad id"]).await;
    assert!(err.contains("bad id"), "{err}");
    let err = cli_fails(dir, &["room", "create", "x", "--type", "party"]).await;
    assert!(err.contains("party"), "{err}");
    dave2.join("ops").await;
    dave.join("ops").await;
    let mut gus = connect(&b).await;
    gus.auth(&token("gus")).await;
    gus.send("join", json!({"roomId": "ops"})).await;
    gus.expect_error("insufficient_permissions").await;

    // Revocations close live sockets.
    let erin_token = token_jti("erin", "erin-jti");
    let mut erin = connect(&b).await;
    erin.auth(&erin_token).await;
    let r = cli_json(dir, &["revoke", "--token", &erin_token]).await;
    assert_eq!(r["closedConnections"], 1, "{r}");
    assert_eq!(erin.expect_close().await.code, 4003);
    let mut frank = connect(&b).await;
    frank.auth(&token("frank")).await;
    let r = cli_json(dir, &["revoke", "--user", "frank"]).await;
    assert_eq!(r["closedConnections"], 1, "{r}");
    assert_eq!(frank.expect_close().await.code, 4003);
    // Unrelated sockets stay up.
    dave.send("heartbeat", json!({})).await;
    dave.expect("heartbeat_response").await;

    let stats = cli_json(dir, &["stats"]).await;
    assert_eq!(stats["running"], true);
    assert_eq!(stats["storedRooms"], 2, "lobby and ops: {stats}");
    assert_eq!(stats["revokedTokens"], 2, "{stats}");
    b.stop().await;

    // After a clean stop the same commands run on the store again.
    let stats = cli_json(dir, &["stats"]).await;
    assert_eq!(stats["running"], false, "{stats}");
    assert_eq!(stats["storedRooms"], 2, "{stats}");
}

#[tokio::test]
async fn generated_secrets_and_control_socket_are_private() {
    let root = tempdir();
    let dir = root.path().join("nested").join("data");
    assert!(!dir.exists());
    let args = serve_args(&dir);
    let (b, _err) = launch(&strs(&args), &[], &["JWT_SECRET", "WS_SECRET"]).await;

    assert!(dir.is_dir(), "data dir created on first start");
    assert_eq!(
        mode(&dir) & 0o077,
        0,
        "data dir is private: {:o}",
        mode(&dir)
    );
    let sock = dir.join("roomgate.sock");
    let meta = std::fs::metadata(&sock).expect("control socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(mode(&sock), 0o600, "control socket mode {:o}", mode(&sock));
    let mut secrets = Vec::new();
    for name in ["jwt_secret", "ws_secret", "event_key"] {
        let path = dir.join(name);
        assert_eq!(mode(&path), 0o600, "{name} mode {:o}", mode(&path));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 64, "{name}: 32 random bytes as hex");
        assert!(text.bytes().all(|c| c.is_ascii_hexdigit()), "{name}");
        secrets.push(text);
    }
    assert!(secrets[0] != secrets[1] && secrets[1] != secrets[2]);

    // The generated JWT secret is the one the server verifies with.
    let claims = json!({"sub": "gen", "iat": now_secs(), "exp": now_secs() + 600});
    let mut c = connect(&b).await;
    c.auth(&sign(&claims, &secrets[0])).await;
    let mut wrong = connect(&b).await;
    wrong.send("auth", json!({"token": token("gen")})).await;
    wrong.expect_error("auth_failed").await;
    c.close().await;
    b.stop().await;

    // A restart keeps the generated secrets.
    let (b, _err) = launch(&strs(&args), &[], &["JWT_SECRET", "WS_SECRET"]).await;
    for (name, before) in ["jwt_secret", "ws_secret", "event_key"]
        .iter()
        .zip(&secrets)
    {
        assert_eq!(&std::fs::read_to_string(dir.join(name)).unwrap(), before);
    }
    let mut c = connect(&b).await;
    c.auth(&sign(&claims, &secrets[0])).await;
    b.stop().await;
}

#[tokio::test]
async fn invalid_configuration_is_refused_listing_every_problem() {
    let root = tempdir();
    let data = root.path().join("data");
    let data_s = data.display().to_string();
    let out = run(
        &["serve", "--listen", "nowhere", "--data", &data_s],
        &[
            ("ROOMGATE_RATE_LIMITS__AUTH__POINTS", "0"),
            ("ROOMGATE_ROOMS__DEFAULT_TYPE", "party"),
        ],
    )
    .await;
    assert!(!out.ok, "invalid config must not start: {}", out.stdout);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    for needle in [
        "listen",
        "nowhere",
        "rate_limits.auth",
        "rooms.default_type",
        "party",
    ] {
        assert!(
            out.stderr.contains(needle),
            "{needle} missing: {}",
            out.stderr
        );
    }
    assert!(!out.stdout.contains("listening"));

    // A misspelt environment name is a problem too, not silently ignored.
    let out = run(
        &["serve", "--listen", "127.0.0.1:0", "--data", &data_s],
        &[("ROOMGATE_ROOMS__MAX_PARTICIPANT", "3")],
    )
    .await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("ROOMGATE_ROOMS__MAX_PARTICIPANT"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn toml_config_file_applies_and_unknown_keys_are_refused() {
    let root = tempdir();
    let dir = root.path().join("data");
    let good = root.path().join("good.toml");
    std::fs::write(
        &good,
        "[rooms]\nmax_participants = 1\nmessage_history = 3\n",
    )
    .unwrap();
    let good_s = good.display().to_string();
    init_database(&dir).await;

    // Offline: the file's default is used for a new room.
    let r = cli_json(&dir, &["room", "create", "cfgroom", "--config", &good_s]).await;
    assert_eq!(r["maxParticipants"], 1, "{r}");

    // Serving: an auto-created room holds one user.
    let mut args = serve_args(&dir);
    args.extend(["--config".to_string(), good_s.clone()]);
    let (b, _err) = launch(&strs(&args), &[], &[]).await;
    let mut a = connect(&b).await;
    a.auth(&token("alice")).await;
    a.join("solo").await;
    let mut z = connect(&b).await;
    z.auth(&token("zed")).await;
    z.send("join", json!({"roomId": "solo"})).await;
    let e = z.expect_error("room_full").await;
    assert_eq!(e["roomId"], "solo");
    b.stop().await;

    for (name, text, needle) in [
        (
            "section.toml",
            "[rooms]\nmax_participants = 1\nno_such_key = true\n",
            "no_such_key",
        ),
        ("top.toml", "listen_port = 9\n", "listen_port"),
        (
            "section_name.toml",
            "[roomz]\nmax_participants = 1\n",
            "roomz",
        ),
        (
            "syntax.toml",
            "[rooms\nmax_participants = 1\n",
            "syntax.toml",
        ),
    ] {
        let path = root.path().join(name);
        std::fs::write(&path, text).unwrap();
        let path_s = path.display().to_string();
        let data_s = dir.display().to_string();
        let out = run(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data",
                &data_s,
                "--config",
                &path_s,
            ],
            &[],
        )
        .await;
        assert!(!out.ok, "{name} must be refused; stdout {}", out.stdout);
        assert!(
            out.stderr.contains(needle),
            "{name}: {needle} missing: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        // Operator commands load the same configuration and refuse it the same way.
        let err = cli_fails(&dir, &["stats", "--config", &path_s]).await;
        assert!(err.contains(needle), "{name}: {err}");
    }
    let missing = root.path().join("missing.toml").display().to_string();
    let err = cli_fails(&dir, &["stats", "--config", &missing]).await;
    assert!(err.contains("missing.toml"), "{err}");
}

#[tokio::test]
async fn effective_configuration_is_logged_with_secrets_redacted() {
    let root = tempdir();
    let jwt = "jwt-secret-value-that-must-never-be-logged-1234";
    let ws = "ws-secret-value-that-must-never-be-logged-5678";
    let args = serve_args(root.path());
    let (b, err) = launch(
        &strs(&args),
        &[
            ("ROOMGATE_LOG", "info"),
            ("JWT_SECRET", jwt),
            ("WS_SECRET", ws),
        ],
        &[],
    )
    .await;
    // The configured secret is the one in use.
    let claims = json!({"sub": "log", "iat": now_secs(), "exp": now_secs() + 600});
    let mut c = connect(&b).await;
    let ok = c.auth(&sign(&claims, jwt)).await;
    c.close().await;
    b.stop().await;
    let log = err.await.expect("stderr collected");
    assert!(log.contains("effective configuration"), "{log}");
    assert!(log.contains(r#""jwt_secret":"set""#), "{log}");
    assert!(log.contains(r#""ws_secret":"set""#), "{log}");
    assert!(
        log.contains(r#""max_participants":100"#),
        "values are shown: {log}"
    );
    for secret in [jwt, ws] {
        assert!(!log.contains(secret), "secret leaked into the log: {log}");
    }
    let ws_token = ok["wsToken"].as_str().unwrap();
    assert!(!log.contains(ws_token), "wsToken leaked into the log");
    assert!(
        !log.contains(&sign(&claims, jwt)),
        "JWT leaked into the log"
    );
}

#[tokio::test]
async fn seed_allowed_origins_refuses_other_origins() {
    let root = tempdir();
    let b = Binary::start(root.path(), &[("ALLOWED_ORIGINS", "https://a.example")]).await;
    let with_origin = |origin: Option<&str>| {
        let mut req = b.url().into_client_request().unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("Origin", o.parse().unwrap());
        }
        req
    };
    for origin in [
        Some("https://evil.example"),
        Some("https://a.example.evil"),
        None,
    ] {
        match tokio_tungstenite::connect_async(with_origin(origin)).await {
            Err(tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 403, "origin {origin:?}");
                let body: Value =
                    serde_json::from_slice(resp.body().as_deref().unwrap_or(b"{}")).unwrap();
                assert_eq!(body["code"], "origin_not_allowed", "{body}");
            }
            Err(e) => panic!("origin {origin:?}: expected HTTP 403, got {e}"),
            Ok(_) => panic!("origin {origin:?} was let in"),
        }
    }
    let (ws, _) = tokio_tungstenite::connect_async(with_origin(Some("https://a.example")))
        .await
        .expect("allowed origin connects");
    let mut c = Client { ws };
    c.expect("handshake").await;
    c.auth(&token("alice")).await;
    let refused = cli_events(root.path(), &["--action", "origin_refused"]).await;
    assert_eq!(refused.len(), 3, "{refused:?}");
    b.stop().await;
}

#[tokio::test]
async fn serve_is_the_default_command() {
    let root = tempdir();
    let data = root.path().display().to_string();
    // No subcommand: `roomgate --data DIR` serves (the listen address comes from the
    // environment so the test never binds the default 127.0.0.1:8080).
    let (b, _err) = launch(
        &["--data", &data],
        &[("ROOMGATE_LISTEN", "127.0.0.1:0")],
        &[],
    )
    .await;
    assert!(b.addr.ip().is_loopback());
    assert_ne!(b.addr.port(), 8080);
    let mut c = connect(&b).await;
    c.auth(&token("alice")).await;
    let stats = cli_json(root.path(), &["stats"]).await;
    assert_eq!(stats["running"], true);
    c.close().await;
    b.stop().await;
    // The serve flag is the flag of `serve`, not of the bare command.
    let out = run(&["--listen", "127.0.0.1:0", "--data", &data], &[]).await;
    assert!(!out.ok, "{}", out.stdout);
}

#[tokio::test]
async fn sigterm_right_after_the_listening_line_shuts_down_cleanly() {
    // A supervisor may signal as soon as it sees the ready line; the handler must already
    // be installed then (Binary::stop asserts a zero exit, not death by SIGTERM).
    for _ in 0..10 {
        let root = tempdir();
        let args = serve_args(root.path());
        let (b, err) = launch(&strs(&args), &[("ROOMGATE_LOG", "info")], &[]).await;
        b.stop().await;
        let log = err.await.unwrap();
        assert!(log.contains("stopped"), "no orderly shutdown: {log}");
    }
}

#[tokio::test]
async fn json_logs_carry_the_connection_span_and_never_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(binary_path())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .env("JWT_SECRET", JWT_SECRET)
        .env("WS_SECRET", WS_SECRET)
        .env("ROOMGATE_LOG_FORMAT", "json")
        .env("ROOMGATE_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next_line().await.unwrap().expect("listening line");
        if let Some(rest) = line.strip_prefix("roomgate listening on http://") {
            break rest.to_string();
        }
    };
    let tok = token("alice");
    let mut c = Client::connect(&format!("ws://{addr}/ws")).await;
    let hs = c.expect("handshake").await;
    let conn_id = hs["data"]["connectionId"].as_str().unwrap().to_string();
    c.auth(&tok).await;
    c.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(&tok), "a token reached the log");
    let mut in_span = 0;
    for line in stderr.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
        if v["span"]["id"] == conn_id.as_str() {
            in_span += 1;
        }
    }
    assert!(in_span > 0, "no line in the connection's span:\n{stderr}");
}
