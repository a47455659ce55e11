//! Test support: a real roomgate server on 127.0.0.1:0 with a temporary data root, a
//! WebSocket client that waits for frames with timeouts (never sleeps to synchronise),
//! token minting, and a way to run the real binary. Every test gets its own server.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header};
use roomgate::config::{Config, Secret};
use roomgate::server::Server;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef0123456789";
pub const WS_SECRET: &str = "test-ws-secret-0123456789abcdef01234567890";
/// Password of the first-start `admin` account in in-process test servers.
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";
/// How long a test waits for an expected frame before failing.
pub const WAIT: Duration = Duration::from_secs(5);

/// The configuration tests start from: fixed secrets, the given data root.
pub fn test_config(dir: &Path) -> Config {
    let mut cfg = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        shutdown_deadline_secs: 5,
        ..Config::default()
    };
    cfg.auth.jwt_secret = Some(Secret(JWT_SECRET.into()));
    cfg.auth.ws_secret = Some(Secret(WS_SECRET.into()));
    // Cheap hashing in tests (the first-start admin account is hashed at every start);
    // the OWASP defaults are checked by a unit test and used by the binary tests.
    cfg.accounts.argon2_memory_kib = 64;
    cfg.accounts.argon2_iterations = 1;
    cfg.accounts.admin_password = Some(Secret(ADMIN_PASSWORD.into()));
    // Rate-limited /auth answers are delayed by default (a tarpit); tests that are not
    // about that delay do not wait for it.
    cfg.accounts.refusal_delay_ms = 0;
    cfg
}

/// A running in-process server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: TempDir,
    server: Option<Server>,
}

impl TestServer {
    /// A server with the default test configuration.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// A server with a tweaked configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("rg")
            .tempdir()
            .expect("tempdir");
        Self::start_in(dir, tweak).await
    }

    /// A server on an existing data root (restart tests).
    pub async fn start_in(dir: TempDir, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut cfg = test_config(dir.path());
        tweak(&mut cfg);
        let problems = cfg.problems();
        assert!(problems.is_empty(), "test config invalid: {problems:?}");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server = Server::start(cfg, listener).await.expect("server starts");
        TestServer {
            addr: server.local_addr(),
            dir,
            server: Some(server),
        }
    }

    /// The running server (for state inspection).
    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    /// Shuts down in order and returns the data root for a restart.
    pub async fn stop(mut self) -> TempDir {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        self.dir
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A connected client whose handshake frame has been read.
    pub async fn client(&self) -> Client {
        let mut c = Client::connect(&self.url()).await;
        let hs = c.expect("handshake").await;
        assert!(hs["data"]["connectionId"].is_string());
        c
    }

    /// A client authenticated as `sub`.
    pub async fn authed(&self, sub: &str) -> Client {
        let mut c = self.client().await;
        c.auth(&token(sub)).await;
        c
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token for `sub`, valid for an hour, with an email claim.
pub fn token(sub: &str) -> String {
    token_with(json!({
        "sub": sub,
        "email": format!("{sub}@example.com"),
        "iat": now_secs(),
        "exp": now_secs() + 3600,
    }))
}

/// An HS256 token with exactly these claims, signed with the test JWT secret.
pub fn token_with(claims: Value) -> String {
    sign(&claims, JWT_SECRET)
}

/// Signs claims with any secret.
pub fn sign(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// A WebSocket test client.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Client { ws }
    }

    /// Sends a raw frame.
    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send");
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.send_raw(Message::text(text.to_string())).await;
    }

    /// Sends `{type, data, timestamp}`.
    pub async fn send(&mut self, kind: &str, data: Value) {
        let v = json!({"type": kind, "data": data, "timestamp": 1});
        self.send_text(&v.to_string()).await;
    }

    /// The next text frame as JSON; panics on timeout, close or non-text frames.
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection ended")
                .expect("read error");
            match msg {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("server sends JSON");
                    assert!(v["timestamp"].is_u64(), "frame without timestamp: {v}");
                    return v;
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Skips frames until one of type `kind` arrives; returns it whole.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = tokio::time::timeout_at(deadline, self.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {kind}"));
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// The next frame, which must be an error with `code`; returns its data.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(v["type"], "error", "expected error {code}, got {v}");
        assert_eq!(v["data"]["code"], code, "wrong error: {v}");
        assert!(v["data"]["message"].is_string());
        v["data"].clone()
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn expect_close(&mut self) -> Closed {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("timed out waiting for close");
            match next {
                Some(Ok(Message::Close(Some(f)))) => {
                    return Closed {
                        code: u16::from(f.code),
                        reason: f.reason.to_string(),
                    };
                }
                Some(Ok(Message::Close(None))) => panic!("close without code"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("read error before close: {e}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }

    /// Asserts no text frame arrives within `ms`.
    pub async fn expect_silence(&mut self, ms: u64) {
        if let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(ms), self.ws.next()).await
        {
            panic!("unexpected frame: {t}");
        }
    }

    /// Authenticates; returns the `auth_success` data.
    pub async fn auth(&mut self, token: &str) -> Value {
        self.send("auth", json!({"token": token})).await;
        let v = self.recv().await;
        assert_eq!(v["type"], "auth_success", "auth failed: {v}");
        v["data"].clone()
    }

    /// Joins a room; returns the `room_joined` data.
    pub async fn join(&mut self, room: &str) -> Value {
        self.send("join", json!({"roomId": room})).await;
        let v = self.expect("room_joined").await;
        assert_eq!(v["data"]["roomId"], room);
        v["data"].clone()
    }

    /// Sends a chat message.
    pub async fn say(&mut self, room: &str, content: &str) {
        self.send("message", json!({"roomId": room, "content": content}))
            .await;
    }

    /// Ends the TCP connection without a close frame, as a dropped network does: the
    /// server keeps the session resumable (a normal close ends it).
    pub async fn vanish(self) {
        let Client { ws, .. } = self;
        let mut tcp = match ws.into_inner() {
            tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
            _ => unreachable!("tests speak plain TCP"),
        };
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tcp).await;
    }

    /// Closes normally (a close frame without a code, as a browser's `close()` sends),
    /// which ends the session, and waits for the server's reply.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(WAIT, async { while self.ws.next().await.is_some() {} }).await;
    }
}

/// The real binary, serving on an ephemeral port.
pub struct Binary {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
}

pub fn binary_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_roomgate"))
}

impl Binary {
    /// Starts `roomgate serve --listen 127.0.0.1:0 --data DIR` with extra env; waits
    /// for its "listening" line.
    pub async fn start(dir: &Path, envs: &[(&str, &str)]) -> Binary {
        Self::start_at(dir, "127.0.0.1:0", envs).await
    }

    /// As `start`, on a given listen address: restart tests re-bind the port an earlier
    /// run of the server got, so clients that kept the URL can reconnect to it.
    pub async fn start_at(dir: &Path, listen: &str, envs: &[(&str, &str)]) -> Binary {
        let mut cmd = tokio::process::Command::new(binary_path());
        cmd.args(["serve", "--listen", listen, "--data"])
            .arg(dir)
            .env("JWT_SECRET", JWT_SECRET)
            .env("WS_SECRET", WS_SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(rest) = line
                    .strip_prefix("roomgate listening on http://")
                    .or_else(|| line.strip_prefix("roomgate listening on https://"))
                {
                    return rest.parse::<SocketAddr>().expect("address");
                }
            }
            panic!("binary exited before listening");
        })
        .await
        .expect("binary listens within 20 s");
        Binary { child, addr }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("pid");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("binary exits within 20 s")
            .expect("wait");
        assert!(exit.success(), "binary exit status {exit}");
    }
}

/// The security events with `action`, once everything recorded so far is written.
pub async fn events(s: &TestServer, action: &str) -> Vec<roomgate::store::EventRecord> {
    let state = s.server().state();
    state.audit.sync().await;
    state
        .store
        .events(&roomgate::store::EventFilter {
            action: Some(action.into()),
            ..Default::default()
        })
        .expect("events")
}

/// One metadata value of a security event.
pub fn meta<'a>(e: &'a roomgate::store::EventRecord, key: &str) -> Option<&'a str> {
    e.metadata
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Leaves `dir` as a server's first start does, with an empty database (and no bootstrap
/// admin account): operator commands refuse a data root that has no database.
pub async fn init_database(dir: &Path) {
    Binary::start(dir, &[("ROOMGATE_ACCOUNTS__ENABLED", "false")])
        .await
        .stop()
        .await;
}

/// What a finished command left.
#[derive(Debug)]
pub struct Output {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The binary with ARGS, stdin closed and killed if the test ends first; callers set
/// the environment and directory they need, then `finish` it.
pub fn roomgate_command(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(binary_path());
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// Runs a command to completion within 30 s.
pub async fn finish(mut cmd: tokio::process::Command) -> Output {
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("command finishes within 30 s")
        .expect("command runs");
    Output {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `roomgate ARGS --data DIR` to completion; returns (success, stdout, stderr).
pub async fn run_cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(binary_path())
        .args(args)
        .arg("--data")
        .arg(dir)
        .env("JWT_SECRET", JWT_SECRET)
        .env("WS_SECRET", WS_SECRET)
        .output()
        .await
        .expect("cli runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An HTTP response, as tests need it.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 request over a real socket (`Connection: close`).
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpReply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("response within the wait")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    HttpReply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// `POST path` with a JSON body.
pub async fn post_json(addr: SocketAddr, path: &str, body: &Value) -> HttpReply {
    http_request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await
}

/// Decodes unpadded base64url (JWT segments).
pub fn b64url_decode(s: &str) -> Vec<u8> {
    let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (mut acc, mut bits, mut out) = (0u32, 0, Vec::new());
    for c in s.bytes() {
        let v = table.iter().position(|t| *t == c).expect("base64url") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The claims of a JWT, read without verifying it.
pub fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&b64url_decode(payload)).expect("JSON claims")
}

/// Polls `cond` until it holds; fails after ten seconds.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `POST /auth/login`.
pub async fn login(addr: SocketAddr, user: &str, password: &str) -> HttpReply {
    post_json(
        addr,
        "/auth/login",
        &json!({"username": user, "password": password}),
    )
    .await
}
