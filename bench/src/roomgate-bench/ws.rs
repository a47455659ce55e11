//! WebSocket plumbing shared by the scenarios: where to connect and from which source
//! address, small client buffers, HS256 token minting, the seed's `{type, data,
//! timestamp}` frames, and a connection's setup (TCP, upgrade, `handshake`, `auth`,
//! `join`) with every failure reduced to a short reason that runs can count. It never
//! decides what a run measures.
//!
//! Source addresses: a loopback target is connected to from 127.0.0.2, 127.0.0.3, ...
//! in turn (each socket bound before it connects), so a run of tens of thousands of
//! connections, or several runs in a row with their TIME_WAIT sockets, never runs out
//! of the ~28,000 ephemeral ports of one source address.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Args;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::accounting::Marker;
use crate::stats::now_ms;

pub type Ws = WebSocketStream<TcpStream>;

/// Read buffer of a connection that mostly idles (`connect`, `hold`): 20,000 of them
/// must not cost the tool gigabytes.
pub const SMALL_READ_BUFFER: usize = 4 * 1024;
/// Read buffer of a connection that receives a stream of broadcasts (fewer syscalls).
pub const LARGE_READ_BUFFER: usize = 64 * 1024;

/// Where and how to connect; flattened into every WebSocket scenario's arguments.
#[derive(Args, Clone, Debug)]
pub struct ConnOpts {
    /// Server: `http://HOST:PORT` (the WebSocket is `ws://HOST:PORT/ws`) or a full
    /// `ws://HOST:PORT/PATH`.
    #[arg(long)]
    pub url: String,
    /// HS256 key the server verifies client JWTs with: every connection gets its own
    /// token minted with it (any value for servers that check nothing).
    #[arg(
        long = "secret",
        visible_alias = "jwt-secret",
        env = "ROOMGATE_BENCH_JWT_SECRET",
        hide_env_values = true
    )]
    pub secret: String,
    /// Spread connections over this many source addresses, 127.0.0.2 upwards, when the
    /// server is on 127.0.0.0/8 (0: let the kernel choose).
    #[arg(long, default_value_t = 16)]
    pub source_ips: u8,
    /// Give up on one setup step (TCP, upgrade, auth, join) after this many seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
}

/// A server to open connections to.
pub struct Endpoint {
    addr: SocketAddr,
    url: String,
    sources: Vec<IpAddr>,
    config: WebSocketConfig,
    pub timeout: Duration,
}

impl Endpoint {
    pub async fn new(opts: &ConnOpts, read_buffer: usize) -> anyhow::Result<Endpoint> {
        Self::with(&opts.url, opts.source_ips, read_buffer, opts.timeout_secs).await
    }

    pub async fn with(
        url: &str,
        source_ips: u8,
        read_buffer: usize,
        timeout_secs: u64,
    ) -> anyhow::Result<Endpoint> {
        let (hostport, path) = if let Some(rest) = url.strip_prefix("http://") {
            (
                rest.split('/').next().unwrap_or_default(),
                "/ws".to_string(),
            )
        } else if let Some(rest) = url.strip_prefix("ws://") {
            let (h, p) = rest.split_once('/').unwrap_or((rest, ""));
            (h, format!("/{p}"))
        } else {
            anyhow::bail!("--url must be http://HOST:PORT or ws://HOST:PORT/PATH, got {url:?}");
        };
        let addr = tokio::net::lookup_host(hostport)
            .await
            .with_context(|| format!("resolving {hostport:?} (--url needs HOST:PORT)"))?
            .next()
            .ok_or_else(|| anyhow!("{hostport:?} resolves to no address"))?;
        let sources = match addr.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => (0..source_ips)
                .map(|k| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2u8.saturating_add(k))))
                .collect(),
            _ => Vec::new(),
        };
        // Client frames are small; the read buffer is the per-connection memory that
        // matters. Frames up to 1 MiB are accepted so a server's larger answers (long
        // participant lists) never fail a run.
        let config = WebSocketConfig::default()
            .read_buffer_size(read_buffer)
            .write_buffer_size(16 * 1024)
            .max_message_size(Some(1 << 20))
            .max_frame_size(Some(1 << 20));
        Ok(Endpoint {
            addr,
            url: format!("ws://{hostport}{path}"),
            sources,
            config,
            timeout: Duration::from_secs(timeout_secs.max(1)),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many source addresses connections are spread over (0: the kernel's choice).
    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// Opens connection number `i` (its source address is the `i`-th in turn) and
    /// completes the WebSocket upgrade.
    pub async fn open(&self, i: usize) -> Result<Ws, Fail> {
        let stream = step("tcp", self.timeout, async {
            let stream = if self.sources.is_empty() {
                TcpStream::connect(self.addr).await
            } else {
                let socket = TcpSocket::new_v4().map_err(io_fail("tcp"))?;
                let src = self.sources[i % self.sources.len()];
                socket
                    .bind(SocketAddr::new(src, 0))
                    .map_err(io_fail("bind"))?;
                socket.connect(self.addr).await
            }
            .map_err(io_fail("tcp"))?;
            stream.set_nodelay(true).map_err(io_fail("tcp"))?;
            Ok(stream)
        })
        .await?;
        step("upgrade", self.timeout, async {
            tokio_tungstenite::client_async_with_config(
                self.url.as_str(),
                stream,
                Some(self.config),
            )
            .await
            .map(|(ws, _)| ws)
            .map_err(|e| Fail(format!("upgrade: {}", ws_error_label(&e))))
        })
        .await
    }
}

/// Why a connection's setup failed, or why it ended: a short label runs count by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail(pub String);

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn io_fail(what: &'static str) -> impl Fn(std::io::Error) -> Fail {
    move |e| Fail(format!("{what}: {}", e.kind()))
}

/// A low-cardinality label for a WebSocket error.
pub fn ws_error_label(e: &WsError) -> String {
    match e {
        WsError::Io(e) => format!("io {}", e.kind()),
        WsError::Http(resp) => format!("http {}", resp.status().as_u16()),
        WsError::ConnectionClosed | WsError::AlreadyClosed => "closed".into(),
        WsError::Protocol(_) => "protocol error".into(),
        WsError::Capacity(_) => "frame too large".into(),
        WsError::Utf8(_) => "invalid utf-8".into(),
        _ => "other error".into(),
    }
}

/// Runs one setup step with a deadline; its timeout is labelled with the step.
pub async fn step<T>(
    what: &'static str,
    limit: Duration,
    f: impl Future<Output = Result<T, Fail>>,
) -> Result<T, Fail> {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| Err(Fail(format!("{what}: timeout"))))
}

/// An HS256 token for `sub`, valid for `ttl_secs`.
pub fn mint(sub: &str, secret: &str, ttl_secs: u64) -> anyhow::Result<String> {
    let now = now_ms() / 1000;
    let claims = json!({"sub": sub, "iat": now, "exp": now + ttl_secs});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("signing a token")
}

/// `count` tokens for distinct users `{prefix}-{i}`, minted before a run starts so that
/// signing never counts in what the run measures.
pub fn mint_many(prefix: &str, count: usize, secret: &str) -> anyhow::Result<Vec<String>> {
    (0..count)
        .map(|i| mint(&format!("{prefix}-{i}"), secret, 3 * 3600))
        .collect()
}

/// A random tag for this run's user and room names, so runs against one server never
/// share rooms or users.
pub fn run_tag() -> String {
    format!("{:08x}", rand::random::<u32>())
}

pub fn frame(kind: &str, data: Value) -> Message {
    Message::text(json!({"type": kind, "data": data, "timestamp": now_ms()}).to_string())
}

/// A `message` frame carrying `marker` (plus `pad` filler bytes) as its content, built
/// by hand: publishers send thousands a second and the content needs no escaping.
pub fn message_frame(room_id: &str, marker: &Marker, pad: usize) -> Message {
    let mut s = String::with_capacity(112 + room_id.len() + pad);
    s.push_str(r#"{"type":"message","data":{"roomId":""#);
    s.push_str(room_id);
    s.push_str(r#"","content":""#);
    marker.write(&mut s);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str(r#""},"timestamp":"#);
    s.push_str(&now_ms().to_string());
    s.push('}');
    Message::text(s)
}

pub fn heartbeat() -> Message {
    Message::text(format!(
        r#"{{"type":"heartbeat","data":{{}},"timestamp":{}}}"#,
        now_ms()
    ))
}

/// The next text frame as JSON; a close or read error is labelled with `what`.
pub async fn next_frame(ws: &mut Ws, what: &'static str) -> Result<Value, Fail> {
    loop {
        let msg = match ws.next().await {
            None => return Err(Fail(format!("{what}: closed"))),
            Some(Err(e)) => return Err(Fail(format!("{what}: {}", ws_error_label(&e)))),
            Some(Ok(m)) => m,
        };
        match msg {
            Message::Text(t) => {
                return serde_json::from_str(t.as_str())
                    .map_err(|_| Fail(format!("{what}: a frame that is not JSON")));
            }
            Message::Close(f) => {
                let code = f.map_or(1005, |f| u16::from(f.code));
                return Err(Fail(format!("{what}: closed {code}")));
            }
            _ => continue,
        }
    }
}

/// Skips frames until one of type `kind`; an `error` frame fails the step with its code.
pub async fn expect(ws: &mut Ws, kind: &str, what: &'static str) -> Result<Value, Fail> {
    loop {
        let v = next_frame(ws, what).await?;
        if v["type"] == kind {
            return Ok(v);
        }
        if v["type"] == "error" {
            let code = v["data"]["code"].as_str().unwrap_or("unknown");
            return Err(Fail(format!("{what}: error {code}")));
        }
    }
}

/// An authenticated (and possibly joined) connection.
pub struct Session {
    pub ws: Ws,
    /// From the start of the TCP connect to `auth_success`.
    pub auth_latency: Duration,
    /// The heartbeat period the server's `handshake` asked for, if it gave one.
    pub heartbeat_ms: Option<u64>,
}

/// Opens connection `i`, reads `handshake`, authenticates with `token` and, given a
/// room, joins it.
pub async fn session(
    ep: &Endpoint,
    i: usize,
    token: &str,
    room: Option<&str>,
) -> Result<Session, Fail> {
    use futures_util::SinkExt;
    let t0 = Instant::now();
    let mut ws = ep.open(i).await?;
    let hs = step(
        "handshake",
        ep.timeout,
        expect(&mut ws, "handshake", "handshake"),
    )
    .await?;
    let heartbeat_ms = hs["data"]["heartbeatIntervalMs"].as_u64();
    step("auth", ep.timeout, async {
        ws.send(frame("auth", json!({"token": token})))
            .await
            .map_err(|e| Fail(format!("auth: {}", ws_error_label(&e))))?;
        expect(&mut ws, "auth_success", "auth").await
    })
    .await?;
    let auth_latency = t0.elapsed();
    if let Some(room) = room {
        step("join", ep.timeout, async {
            ws.send(frame("join", json!({"roomId": room})))
                .await
                .map_err(|e| Fail(format!("join: {}", ws_error_label(&e))))?;
            expect(&mut ws, "room_joined", "join").await
        })
        .await?;
    }
    Ok(Session {
        ws,
        auth_latency,
        heartbeat_ms,
    })
}
