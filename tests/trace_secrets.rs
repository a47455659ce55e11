//! No log level, `trace` included, writes a secret: the real binary runs a whole session
//! at `ROOMGATE_LOG=trace` (a password login and a wrong password, a refresh-token
//! rotation, an API key made and used through both headers, WebSocket auth with a
//! shared-secret JWT and with an access token, a refused token, a `wsToken` resume and
//! an in-band `refresh`), and its whole stderr is searched for every secret it saw, as
//! text, as hex, as a list of byte values and, for a JWT, for its signature.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const ADMIN_PASSWORD: &str = "trace-test-admin-password-5678";
const WRONG_PASSWORD: &str = "trace-test-wrong-password-9012";

/// `method path` with extra headers and a JSON body; the reply must have `status`.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
    status: u16,
) -> Value {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let r = http_request(addr, method, path, &all, bytes.as_bytes()).await;
    assert_eq!(r.status, status, "{method} {path}: {}", r.body);
    if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    }
}

fn text(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_string()
}

#[tokio::test]
async fn a_session_at_trace_level_logs_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let data = dir.path().join("data");
    let mut child = roomgate_command(&["serve", "--listen", "127.0.0.1:0", "--data"]);
    child
        .arg(&data)
        .env("JWT_SECRET", JWT_SECRET)
        .env("WS_SECRET", WS_SECRET)
        .env("ROOMGATE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("ROOMGATE_LOG", "trace")
        .env_remove("ROOMGATE_CONFIG")
        .env_remove("ROOMGATE_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap());
    let mut child = child.spawn().expect("binary starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr: SocketAddr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = stdout.next_line().await {
            if let Some(rest) = line.strip_prefix("roomgate listening on http://") {
                return rest.parse().expect("address");
            }
        }
        panic!("binary exited before listening");
    })
    .await
    .expect("binary listens within 20 s");
    let mut secrets: Vec<(&str, String)> = vec![
        ("admin password", ADMIN_PASSWORD.into()),
        ("wrong password", WRONG_PASSWORD.into()),
        ("JWT secret", JWT_SECRET.into()),
        ("WS secret", WS_SECRET.into()),
    ];

    // Accounts: a login, a failed login, a refresh-token rotation.
    let login = json!({"username": "admin", "password": ADMIN_PASSWORD});
    let first = call(addr, "POST", "/auth/login", &[], Some(login), 200).await;
    let wrong = json!({"username": "admin", "password": WRONG_PASSWORD});
    call(addr, "POST", "/auth/login", &[], Some(wrong), 401).await;
    let rotate = json!({"refresh_token": text(&first, "refresh_token")});
    let second = call(addr, "POST", "/auth/refresh", &[], Some(rotate), 200).await;
    let access = text(&second, "access_token");
    secrets.push(("access token", text(&first, "access_token")));
    secrets.push(("refresh token", text(&first, "refresh_token")));
    secrets.push(("rotated access token", access.clone()));
    secrets.push(("rotated refresh token", text(&second, "refresh_token")));

    // An API key, made with the access token and used through both headers.
    let bearer = format!("Bearer {access}");
    let made = call(
        addr,
        "POST",
        "/api/v1/apikeys",
        &[("Authorization", &bearer)],
        Some(json!({"name": "trace", "scopes": ["stats:read"]})),
        201,
    )
    .await;
    let key = text(&made, "key");
    call(
        addr,
        "GET",
        "/api/v1/stats",
        &[("X-Api-Key", &key)],
        None,
        200,
    )
    .await;
    let key_bearer = format!("Bearer {key}");
    let auth = [("Authorization", key_bearer.as_str())];
    call(addr, "GET", "/api/v1/stats", &auth, None, 200).await;
    secrets.push(("API key", key));

    // WebSocket: a shared-secret JWT, a message, a drop, a wsToken resume, an in-band
    // refresh, an access token, and a token that fails.
    let url = format!("ws://{addr}/ws");
    let jwt = token("alice");
    let mut c = Client::connect(&url).await;
    c.expect("handshake").await;
    let w1 = text(&c.auth(&jwt).await, "wsToken");
    c.join("lobby").await;
    c.say("lobby", "hello").await;
    c.expect("message").await;
    c.vanish().await;
    let mut c = Client::connect(&url).await;
    c.expect("handshake").await;
    let w2 = text(&c.auth(&w1).await, "wsToken");
    let refreshed = token("alice");
    c.send("refresh", json!({ "token": refreshed })).await;
    c.expect("token_refreshed").await;
    let mut admin = Client::connect(&url).await;
    admin.expect("handshake").await;
    let w3 = text(&admin.auth(&access).await, "wsToken");
    let forged = sign(
        &json!({"sub": "mallory", "exp": now_secs() + 60}),
        "not-the-secret-0123456789abcdef0123456789",
    );
    let mut bad = Client::connect(&url).await;
    bad.expect("handshake").await;
    bad.send("auth", json!({ "token": forged })).await;
    bad.expect_error("auth_failed").await;
    c.close().await;
    admin.close().await;
    secrets.extend([
        ("shared-secret JWT", jwt),
        ("refreshed JWT", refreshed),
        ("first wsToken", w1),
        ("resumed wsToken", w2),
        ("access-token wsToken", w3),
        ("refused token", forged),
    ]);

    // Stopped, so every line is written.
    let pid = child.id().expect("pid");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("binary exits within 20 s")
        .unwrap();
    assert!(exit.success(), "{exit}");
    let log = std::fs::read_to_string(&log_path).unwrap();

    // The log is really at trace (so the search below is not vacuous), and it shows the
    // session: the failed login and the refused WebSocket auth.
    let trace_lines = log.lines().filter(|l| l.contains("TRACE")).count();
    assert!(trace_lines >= 20, "only {trace_lines} trace lines:\n{log}");
    assert!(log.contains("websocket auth failed"), "{log}");
    assert!(log.contains("login refused"), "{log}");

    for (what, secret) in &secrets {
        // As text, as hex (tungstenite's frame dumps) and as a list of byte values
        // (how sled writes store keys at trace).
        let mut forms = vec![
            secret.clone(),
            hex::encode(secret.as_bytes()),
            format!("{:?}", secret.as_bytes()),
        ];
        if let Some(signature) = secret.rsplit('.').next().filter(|_| secret.contains('.')) {
            forms.push(signature.to_string());
        }
        for form in forms {
            if let Some(at) = log.find(&form) {
                let line_start = log[..at].rfind('\n').map_or(0, |i| i + 1);
                let line_end = log[at..].find('\n').map_or(log.len(), |i| at + i);
                panic!(
                    "the {what} is in the trace log:\n{}",
                    &log[line_start..line_end.min(line_start + 600)]
                );
            }
        }
    }
}
