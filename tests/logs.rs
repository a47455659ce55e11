//! The operator's log, read from the real binary's stderr: failed logins and failed
//! WebSocket auths at `info` with reason, client IP and keyed user hash (and never a
//! token, a password or a user id); refusals by limits at `debug` and one `info` summary
//! per period; an unparseable `ROOMGATE_LOG` stops the start before binding; in JSON the
//! effective configuration is a nested object.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    Client, JWT_SECRET, WS_SECRET, binary_path, login, now_secs, post_json, sign, token, token_with,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::watch;

const ADMIN_PASSWORD: &str = "logs-test-admin-password-1234";
/// How long a test waits for an expected log line.
const LOG_WAIT: Duration = Duration::from_secs(10);

/// The real binary with its stderr collected line by line as it is written.
struct Served {
    child: tokio::process::Child,
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    written: watch::Receiver<usize>,
    reader: tokio::task::JoinHandle<()>,
}

impl Served {
    async fn start(dir: &Path, envs: &[(&str, &str)]) -> Served {
        let mut cmd = tokio::process::Command::new(binary_path());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir)
            .env("JWT_SECRET", JWT_SECRET)
            .env("WS_SECRET", WS_SECRET)
            .env("ROOMGATE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env_remove("ROOMGATE_CONFIG")
            .env_remove("ROOMGATE_LOG")
            .env_remove("ROOMGATE_LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("binary starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, written) = watch::channel(0);
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let sink = lines.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                let mut all = sink.lock().unwrap();
                all.push(line);
                tx.send_replace(all.len());
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = stdout.next_line().await {
                if let Some(rest) = line.strip_prefix("roomgate listening on http://") {
                    return rest.parse::<SocketAddr>().expect("address");
                }
            }
            panic!(
                "binary exited before listening: {:?}",
                lines.lock().unwrap()
            );
        })
        .await
        .expect("binary listens within 20 s");
        Served {
            child,
            addr,
            lines,
            written,
            reader,
        }
    }

    fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until a stderr line satisfies `pred`; returns it.
    async fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let found = tokio::time::timeout(LOG_WAIT, async {
            loop {
                if let Some(l) = self.log().into_iter().find(|l| pred(l)) {
                    return l;
                }
                self.written.changed().await.expect("stderr still open");
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no log line {what}:\n{}", self.log().join("\n")))
    }

    /// Waits until a JSON log line satisfies `pred`; returns it parsed.
    async fn wait_for_json(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let line = self
            .wait_for(what, |l| {
                serde_json::from_str::<Value>(l).is_ok_and(|v| pred(&v))
            })
            .await;
        serde_json::from_str(&line).expect("JSON line")
    }

    /// SIGTERM, a clean exit, and every line the process wrote.
    async fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().expect("pid").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let exit = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("exits within 20 s")
            .expect("wait");
        assert!(exit.success(), "exit status {exit}");
        (&mut self.reader).await.expect("stderr reader");
        self.log()
    }
}

/// The keyed hash the security-event log uses for `user`, from the data root's event key.
fn user_hash(dir: &Path, user: &str) -> String {
    let key = std::fs::read_to_string(dir.join("event_key")).expect("event key");
    roomgate::audit::hash_user(key.trim_end().as_bytes(), user)
}

async fn connect(addr: SocketAddr) -> Client {
    let mut c = Client::connect(&format!("ws://{addr}/ws")).await;
    c.expect("handshake").await;
    c
}

fn message_is(v: &Value, message: &str) -> bool {
    v["fields"]["message"] == message
}

#[tokio::test]
async fn failed_logins_and_websocket_auths_are_logged_at_info_without_secrets() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    // An empty ROOMGATE_LOG means `info`.
    let mut s = Served::start(
        &dir,
        &[("ROOMGATE_LOG", ""), ("ROOMGATE_LOG_FORMAT", "json")],
    )
    .await;
    let refused = |v: &Value, message: &str, reason: &str| {
        message_is(v, message) && v["fields"]["reason"] == reason
    };

    let wrong_password = "not-the-admin-password-5678";
    assert_eq!(login(s.addr, "admin", wrong_password).await.status, 401);
    let line = s
        .wait_for_json("for a wrong password", |v| {
            refused(v, "login refused", "bad_password")
        })
        .await;
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["fields"]["client_ip"], "127.0.0.1", "{line}");
    assert_eq!(line["fields"]["user"], user_hash(&dir, "admin"), "{line}");

    let unknown = "mallory-unknown-user";
    let unknown_password = "mallory-password-9012";
    assert_eq!(login(s.addr, unknown, unknown_password).await.status, 401);
    let line = s
        .wait_for_json("for an unknown user", |v| {
            refused(v, "login refused", "unknown_user")
        })
        .await;
    assert_eq!(line["fields"]["client_ip"], "127.0.0.1", "{line}");
    assert_eq!(line["fields"]["user"], user_hash(&dir, unknown), "{line}");

    let refresh_token = "f".repeat(64);
    let r = post_json(
        s.addr,
        "/auth/refresh",
        &json!({"refresh_token": refresh_token}),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let line = s
        .wait_for_json("for an unknown refresh token", |v| {
            refused(v, "token refresh refused", "unknown_token")
        })
        .await;
    assert_eq!(line["fields"]["client_ip"], "127.0.0.1", "{line}");

    // A token signed with another key: the user it claims is only hashed, and marked as
    // a claim.
    let forged = sign(
        &json!({"sub": "forged-sub-user", "iat": now_secs(), "exp": now_secs() + 600}),
        "some-other-secret-that-is-not-the-servers",
    );
    let mut c = connect(s.addr).await;
    c.send("auth", json!({"token": forged})).await;
    c.expect_error("auth_failed").await;
    let line = s
        .wait_for_json("for a bad signature", |v| {
            refused(v, "websocket auth failed", "bad_signature")
        })
        .await;
    assert_eq!(line["fields"]["client_ip"], "127.0.0.1", "{line}");
    assert_eq!(
        line["fields"]["claimed_user"],
        user_hash(&dir, "forged-sub-user"),
        "{line}"
    );
    assert!(
        line["span"]["id"].is_string(),
        "in the connection's span: {line}"
    );

    let expired = token_with(json!({
        "sub": "expired-sub-user",
        "iat": now_secs() - 7200,
        "exp": now_secs() - 3600,
    }));
    c.send("auth", json!({"token": expired})).await;
    c.expect_error("auth_failed").await;
    let line = s
        .wait_for_json("for an expired token", |v| {
            refused(v, "websocket auth failed", "expired")
        })
        .await;
    assert_eq!(line["fields"]["client_ip"], "127.0.0.1", "{line}");
    assert_eq!(
        line["fields"]["claimed_user"],
        user_hash(&dir, "expired-sub-user"),
        "{line}"
    );

    // `refresh` to another user's token on an authenticated socket.
    let own = token("refresher-user");
    let other = token("someone-else-user");
    c.auth(&own).await;
    c.send("refresh", json!({"token": other})).await;
    c.expect_error("refresh_rejected").await;
    let line = s
        .wait_for_json("for a refused refresh", |v| {
            refused(v, "websocket token refresh refused", "other_user")
        })
        .await;
    assert_eq!(line["fields"]["client_ip"], "127.0.0.1", "{line}");
    assert_eq!(
        line["fields"]["user"],
        user_hash(&dir, "refresher-user"),
        "{line}"
    );
    c.close().await;

    let log = s.stop().await.join("\n");
    for secret in [
        wrong_password,
        unknown_password,
        ADMIN_PASSWORD,
        &refresh_token,
        &forged,
        &expired,
        &own,
        &other,
    ] {
        assert!(!log.contains(secret), "a secret reached the log: {secret}");
    }
    for user in [
        unknown,
        "forged-sub-user",
        "expired-sub-user",
        "refresher-user",
        "someone-else-user",
    ] {
        assert!(!log.contains(user), "a raw user id reached the log: {user}");
    }
    // One line per failure.
    let failures = log
        .lines()
        .filter(|l| l.contains("refused\"") || l.contains("failed\""))
        .filter(|l| l.contains("\"reason\""))
        .count();
    assert_eq!(failures, 6, "{log}");
}

/// `message=4 connections_per_ip=3` out of a summary line (`limits refused 7 requests in
/// the last 2s: message=4 connections_per_ip=3`).
fn summary_counts(line: &str) -> Vec<(String, u64)> {
    let (_, rest) = line.split_once(" requests in the last ").expect("summary");
    let (_, counts) = rest.split_once(": ").expect("counts");
    counts
        .split_whitespace()
        .map_while(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn refusals_by_limits_are_debug_lines_and_one_summary_per_period() {
    const PERIOD_SECS: u64 = 2;
    let root = tempfile::tempdir().unwrap();
    let period = PERIOD_SECS.to_string();
    let mut s = Served::start(
        root.path(),
        &[
            ("ROOMGATE_LOG", "debug"),
            ("ROOMGATE_LOG_REFUSAL_SUMMARY_SECS", &period),
            ("ROOMGATE_RATE_LIMITS__MESSAGE__POINTS", "3"),
            ("ROOMGATE_CONNECTION__MAX_CONNECTIONS_PER_IP", "2"),
        ],
    )
    .await;
    let summaries = |log: &[String]| -> Vec<String> {
        log.iter()
            .filter(|l| l.contains("limits refused ") && l.contains(" requests in the last "))
            .cloned()
            .collect()
    };
    let mut c = connect(s.addr).await;
    c.auth(&token("burst-user")).await;

    // The message quota is per user after `auth`: 3 frames pass, 4 are refused.
    for i in 0..7 {
        c.send("leave", json!({"roomId": "r"})).await;
        let code = if i < 3 { "not_member" } else { "rate_limited" };
        c.expect_error(code).await;
    }
    // The socket above holds one of the IP's 2 places; the next TCP connection takes
    // the other, and 3 more are closed unread.
    let held = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    for _ in 0..3 {
        let mut refused = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), refused.read(&mut buf))
            .await
            .expect("closed at once");
        assert!(matches!(n, Ok(0) | Err(_)), "refused connection was served");
    }

    // Every refusal is counted once, in one summary (two if the burst straddled the
    // end of a period).
    let want = [("message", 4), ("connections_per_ip", 3)];
    let totals = |log: &[String]| {
        let mut t = std::collections::BTreeMap::new();
        for line in summaries(log) {
            for (k, n) in summary_counts(&line) {
                *t.entry(k).or_insert(0) += n;
            }
        }
        t
    };
    let lines = s.lines.clone();
    s.wait_for("summing to the burst", |_| {
        let t = totals(&lines.lock().unwrap());
        want.iter().all(|(k, n)| t.get(*k) == Some(n))
    })
    .await;
    let log = s.log();
    let t = totals(&log);
    assert_eq!(t.len(), want.len(), "only the limits that refused: {t:?}");
    let seen = summaries(&log);
    assert!(
        (1..=2).contains(&seen.len()),
        "one summary per period: {seen:?}"
    );
    for line in &seen {
        assert!(line.contains(" INFO "), "summaries are at info: {line}");
        assert!(
            line.contains(&format!(" requests in the last {PERIOD_SECS}s: ")),
            "{line}"
        );
        let sum: u64 = summary_counts(line).iter().map(|(_, n)| n).sum();
        assert!(
            line.contains(&format!("limits refused {sum} requests")),
            "{line}"
        );
    }
    let debug = |limit: &str| {
        log.iter()
            .filter(|l| l.contains(" DEBUG ") && l.contains("request refused by a limit"))
            .filter(|l| l.contains(&format!("limit=\"{limit}\"")))
            .filter(|l| l.contains("client_ip=127.0.0.1"))
            .count()
    };
    assert_eq!(debug("message"), 4, "one debug line per refusal");
    assert_eq!(debug("connections_per_ip"), 3, "one debug line per refusal");

    // Idle for three periods: no new summary. (Absence cannot be waited for, only
    // given time.)
    tokio::time::sleep(Duration::from_secs(3 * PERIOD_SECS)).await;
    assert_eq!(summaries(&s.log()), seen, "a summary without refusals");
    drop(held);
    c.close().await;
    let log = s.stop().await;
    assert_eq!(
        summaries(&log),
        seen,
        "a summary at shutdown without refusals"
    );
}

#[tokio::test]
async fn an_unparseable_roomgate_log_stops_the_start_before_binding() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    // Held by the test: a server that tried to bind would fail with "binding ...".
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let bad = "info,roomgate=loudest";
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(binary_path())
            .args(["serve", "--listen", &listen, "--data"])
            .arg(&data)
            .env("JWT_SECRET", JWT_SECRET)
            .env("WS_SECRET", WS_SECRET)
            .env("ROOMGATE_LOG", bad)
            .env_remove("ROOMGATE_CONFIG")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("exits at once")
    .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "started anyway: {stdout}");
    assert!(
        stderr.starts_with(&format!("roomgate: invalid ROOMGATE_LOG {bad:?}: ")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("binding"), "{stderr}");
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(!data.exists(), "the data root was created");
}

#[tokio::test]
async fn json_logs_write_the_effective_configuration_as_an_object() {
    let root = tempfile::tempdir().unwrap();
    let mut s = Served::start(
        root.path(),
        &[("ROOMGATE_LOG", "info"), ("ROOMGATE_LOG_FORMAT", "json")],
    )
    .await;
    let line = s
        .wait_for_json("with the configuration", |v| {
            message_is(v, "effective configuration")
        })
        .await;
    let cfg = &line["fields"]["config"];
    assert!(cfg.is_object(), "config is not an object: {line}");
    assert_eq!(cfg["rooms"]["max_participants"], 100, "{line}");
    assert_eq!(cfg["log_refusal_summary_secs"], 60, "{line}");
    assert_eq!(cfg["auth"]["jwt_secret"], "set", "{line}");
    assert_eq!(cfg["metrics"]["token"], "unset", "{line}");
    assert_eq!(line["level"], "INFO", "{line}");
    assert!(
        line["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("roomgate"))
    );
    let log = s.stop().await;
    // Every line, this one included, is one JSON object of the same shape.
    let stamp = |v: &Value| v["timestamp"].as_str().unwrap_or_default().len();
    for l in &log {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
        assert_eq!(stamp(&v), stamp(&line), "timestamp format: {l}");
    }
    assert!(log.len() > 1);
    let all = log.join("\n");
    assert!(!all.contains(JWT_SECRET) && !all.contains(WS_SECRET));
    assert!(!all.contains(ADMIN_PASSWORD));
}
