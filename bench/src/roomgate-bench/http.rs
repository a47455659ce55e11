//! The HTTP side of the tool: a minimal HTTP/1.1 client (hand-written on tokio
//! `TcpStream`s, keep-alive unless told otherwise) and closed-loop load of one request
//! from many clients, as the `login` and `flood-latency` scenarios need it. It knows
//! nothing of WebSockets or of what the requests mean.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::stats::{add_counts, micros, new_histogram};

/// Pause after a failed connection, so a dead server does not turn a client into a spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

#[derive(Args, Clone, Copy)]
pub struct HttpOpts {
    /// Send `Connection: close` and open a new TCP connection per request (default:
    /// one keep-alive connection per client).
    #[arg(long)]
    pub connection_close: bool,
    /// Give up on one request after this many seconds (counted as error `timeout`).
    #[arg(long, default_value_t = 30)]
    pub request_timeout_secs: u64,
}

impl HttpOpts {
    pub fn connection(&self) -> &'static str {
        if self.connection_close {
            "close"
        } else {
            "keep-alive"
        }
    }
}

/// `http://HOST:PORT[/]` → the socket address and the `Host` header value.
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
}

pub async fn target(url: &str) -> anyhow::Result<Target> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("ws://"))
        .ok_or_else(|| anyhow!("--url must be http://HOST:PORT (no TLS), got {url:?}"))?;
    let host = rest.split('/').next().unwrap_or_default();
    let addr = tokio::net::lookup_host(host)
        .await
        .with_context(|| format!("resolving {host:?} (--url needs HOST:PORT)"))?
        .next()
        .ok_or_else(|| anyhow!("{host:?} resolves to no address"))?;
    Ok(Target {
        addr,
        host: host.to_string(),
    })
}

/// Why one request produced no status.
enum Failure {
    Io(std::io::ErrorKind),
    Protocol(&'static str),
}

impl Failure {
    fn label(&self) -> String {
        match self {
            Failure::Io(kind) => format!("io: {kind}"),
            Failure::Protocol(what) => format!("protocol: {what}"),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e.kind())
    }
}

/// `POST path` with a JSON body, as bytes ready to write.
pub fn post_request(host: &str, path: &str, body: &Value, close: bool) -> Vec<u8> {
    let body = body.to_string();
    let connection = if close { "close" } else { "keep-alive" };
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One client's connection; reopened whenever the server (or an error) closes it.
struct HttpClient {
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    close: bool,
    conn: Option<BufReader<TcpStream>>,
    line: String,
}

impl HttpClient {
    fn new(addr: SocketAddr, request: Arc<Vec<u8>>, close: bool) -> HttpClient {
        HttpClient {
            addr,
            request,
            close,
            conn: None,
            line: String::new(),
        }
    }

    /// Sends the request and reads the whole response; returns its status. A failure on
    /// a reused keep-alive connection (the server may have closed it while idle) is
    /// retried once on a new one.
    async fn send(&mut self) -> Result<u16, Failure> {
        let reused = self.conn.is_some();
        match self.attempt().await {
            Err(_) if reused => self.attempt().await,
            other => other,
        }
    }

    async fn attempt(&mut self) -> Result<u16, Failure> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => {
                let stream = TcpStream::connect(self.addr).await?;
                stream.set_nodelay(true)?;
                self.conn.insert(BufReader::new(stream))
            }
        };
        let result = exchange(conn, &self.request, &mut self.line).await;
        if !matches!(result, Ok((_, true))) || self.close {
            self.conn = None;
        }
        result.map(|(status, _)| status)
    }

    fn reset(&mut self) {
        self.conn = None;
    }
}

/// Writes `request`, reads one response; returns its status and whether the connection
/// can carry another request.
async fn exchange(
    conn: &mut BufReader<TcpStream>,
    request: &[u8],
    line: &mut String,
) -> Result<(u16, bool), Failure> {
    conn.get_mut().write_all(request).await?;
    line.clear();
    if conn.read_line(line).await? == 0 {
        return Err(Failure::Protocol("closed before the status line"));
    }
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(Failure::Protocol("bad status line"))?;
    let mut keep_alive = version == "HTTP/1.1";
    let mut length: Option<u64> = None;
    let mut chunked = false;
    loop {
        line.clear();
        if conn.read_line(line).await? == 0 {
            return Err(Failure::Protocol("closed in the headers"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(Failure::Protocol("bad header line"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse()
                    .map_err(|_| Failure::Protocol("bad content-length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            let value = value.to_ascii_lowercase();
            if value.contains("close") {
                keep_alive = false;
            } else if value.contains("keep-alive") {
                keep_alive = true;
            }
        }
    }
    if chunked {
        loop {
            line.clear();
            if conn.read_line(line).await? == 0 {
                return Err(Failure::Protocol("closed in a chunk header"));
            }
            let size = line.trim_end().split(';').next().unwrap_or_default();
            let size = u64::from_str_radix(size.trim(), 16)
                .map_err(|_| Failure::Protocol("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if conn.read_line(line).await? == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            discard(conn, size + 2).await?;
        }
    } else if let Some(n) = length {
        discard(conn, n).await?;
    } else {
        tokio::io::copy(conn, &mut tokio::io::sink()).await?;
        keep_alive = false;
    }
    Ok((status, keep_alive))
}

async fn discard(conn: &mut BufReader<TcpStream>, n: u64) -> Result<(), Failure> {
    let read = tokio::io::copy(&mut (&mut *conn).take(n), &mut tokio::io::sink()).await?;
    if read == n {
        Ok(())
    } else {
        Err(Failure::Protocol("closed in the body"))
    }
}

// ---------------------------------------------------------------------------------------
// Closed-loop HTTP load

/// What a set of clients saw. Every request that *started* inside the measured window is
/// waited for, even past its end, and counted in `latency`, `statuses` or `errors` (so the
/// slowest requests are not cut off the percentiles); `arrived` counts by status the
/// answers that *arrived* inside the window, whenever their request started, and is what
/// rates are computed from.
pub struct LoadStats {
    pub latency: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<String, u64>,
    pub arrived: BTreeMap<u16, u64>,
}

impl LoadStats {
    fn new() -> LoadStats {
        LoadStats {
            latency: new_histogram(),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            arrived: BTreeMap::new(),
        }
    }

    fn merge(&mut self, other: LoadStats) -> anyhow::Result<()> {
        self.latency
            .add(&other.latency)
            .map_err(|e| anyhow!("merging histograms: {e:?}"))?;
        add_counts(&mut self.statuses, other.statuses);
        add_counts(&mut self.errors, other.errors);
        add_counts(&mut self.arrived, other.arrived);
        Ok(())
    }

    /// Answers (any status) that arrived inside the window.
    pub fn arrived_total(&self) -> u64 {
        self.arrived.values().sum()
    }

    /// Answers with `code` that arrived inside the window.
    pub fn arrived_with(&self, code: u16) -> u64 {
        self.arrived.get(&code).copied().unwrap_or(0)
    }

    pub fn summary(&self) -> String {
        let mut s: Vec<String> = self
            .statuses
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        s.extend(self.errors.iter().map(|(k, v)| format!("{k}: {v}")));
        if s.is_empty() {
            "none".into()
        } else {
            s.join(", ")
        }
    }
}

/// When a load's clients start, and its measured window `(from, end)`: set up front, or
/// once the warm-up is over. No request starts at or after `end`.
pub struct Plan {
    start: Instant,
    pub window: OnceLock<(Instant, Instant)>,
    /// Clients that have had their first answer (or failure).
    warmed: AtomicUsize,
    warmed_changed: Notify,
}

impl Plan {
    pub fn new(start: Instant) -> Plan {
        Plan {
            start,
            window: OnceLock::new(),
            warmed: AtomicUsize::new(0),
            warmed_changed: Notify::new(),
        }
    }

    pub fn with_window(start: Instant, from: Instant, end: Instant) -> Plan {
        let plan = Plan::new(start);
        let _ = plan.window.set((from, end));
        plan
    }

    /// Waits until `n` clients have had their first answer.
    pub async fn warmed(&self, n: usize) {
        loop {
            // A notification between this check and the await is kept as a permit.
            if self.warmed.load(Ordering::Acquire) >= n {
                return;
            }
            self.warmed_changed.notified().await;
        }
    }
}

/// `concurrency` clients, each sending `request` again as soon as it has an answer.
pub fn spawn_load(
    addr: SocketAddr,
    request: Vec<u8>,
    concurrency: usize,
    http: HttpOpts,
    plan: &Arc<Plan>,
) -> JoinSet<LoadStats> {
    let request = Arc::new(request);
    let timeout = Duration::from_secs(http.request_timeout_secs.max(1));
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let client = HttpClient::new(addr, request.clone(), http.connection_close);
        tasks.spawn(load_client(client, timeout, plan.clone()));
    }
    tasks
}

pub async fn join_load(mut tasks: JoinSet<LoadStats>) -> anyhow::Result<LoadStats> {
    let mut total = LoadStats::new();
    while let Some(stats) = tasks.join_next().await {
        total.merge(stats.context("a load client panicked")?)?;
    }
    Ok(total)
}

async fn load_client(mut client: HttpClient, timeout: Duration, plan: Arc<Plan>) -> LoadStats {
    let mut stats = LoadStats::new();
    let mut first = true;
    tokio::time::sleep_until(plan.start).await;
    loop {
        let t0 = Instant::now();
        let window = plan.window.get().copied();
        if window.is_some_and(|(_, end)| t0 >= end) {
            break;
        }
        let started_inside = window.is_some_and(|(from, _)| t0 >= from);
        let outcome = tokio::time::timeout(timeout, client.send()).await;
        let t1 = Instant::now();
        if first {
            first = false;
            plan.warmed.fetch_add(1, Ordering::Release);
            plan.warmed_changed.notify_one();
        }
        let arrived_inside = plan
            .window
            .get()
            .is_some_and(|&(from, end)| t1 >= from && t1 <= end);
        match outcome {
            Ok(Ok(status)) => {
                if started_inside {
                    *stats.statuses.entry(status).or_default() += 1;
                    stats.latency.saturating_record(micros(t1 - t0));
                }
                if arrived_inside {
                    *stats.arrived.entry(status).or_default() += 1;
                }
            }
            Ok(Err(failure)) => {
                if started_inside {
                    *stats.errors.entry(failure.label()).or_default() += 1;
                }
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
            Err(_) => {
                client.reset();
                if started_inside {
                    *stats.errors.entry("timeout".into()).or_default() += 1;
                }
            }
        }
    }
    stats
}
