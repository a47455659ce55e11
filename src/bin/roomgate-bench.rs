//! `roomgate-bench`: the load generator behind BENCHMARKS.md (run by
//! `scripts/bench-login.sh`). It talks to a running roomgate over real sockets only:
//! `POST /auth/login` as hand-written HTTP/1.1 on tokio `TcpStream`s (keep-alive unless
//! `--connection-close`), and the WebSocket protocol through tokio-tungstenite.
//!
//! - `login`: N clients log in in a closed loop; successful logins/s, latency, statuses.
//! - `flood-latency`: one WebSocket client sends `message` frames to a room and waits for
//!   its own echo, first on an idle server, then while N clients flood `/auth/login` with
//!   a wrong password; round-trip percentiles of both phases and the flood's statuses.
//! - `report`: Markdown tables from the JSON lines of the two runs.
//!
//! Each run prints one JSON line on stdout and a readable summary on stderr. This is a
//! benchmark, not a test: it fails only when a run cannot be carried out (server
//! unreachable, no successful login, no echo), never because a number is slow.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Latencies are recorded in microseconds from 1 µs to 10 minutes, at 3 significant
/// digits (a value is reported within 0.1 % of what was measured).
const HIST_MAX_US: u64 = 600_000_000;
const HIST_SIGFIG: u8 = 3;
/// How long the probe waits for its own echo before the run is declared broken.
const ECHO_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed connection, so a dead server does not turn a client into a spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

#[derive(Parser)]
#[command(
    name = "roomgate-bench",
    version,
    about = "Load generator for roomgate benchmarks (BENCHMARKS.md)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Closed-loop POST /auth/login: successful logins/s, latency, HTTP statuses.
    Login(LoginArgs),
    /// WebSocket message round trip, idle and during a wrong-password /auth/login flood.
    FloodLatency(FloodArgs),
    /// Markdown tables from the JSON lines printed by `login` and `flood-latency`.
    Report(ReportArgs),
}

#[derive(Args, Clone, Copy)]
struct HttpOpts {
    /// Send `Connection: close` and open a new TCP connection per request (default:
    /// one keep-alive connection per client).
    #[arg(long)]
    connection_close: bool,
    /// Give up on one request after this many seconds (counted as error `timeout`).
    #[arg(long, default_value_t = 30)]
    request_timeout_secs: u64,
}

impl HttpOpts {
    fn connection(&self) -> &'static str {
        if self.connection_close {
            "close"
        } else {
            "keep-alive"
        }
    }
}

#[derive(Args)]
struct LoginArgs {
    /// Base URL of the server, `http://HOST:PORT`.
    #[arg(long)]
    url: String,
    #[arg(long)]
    user: String,
    #[arg(long)]
    password: String,
    /// Clients, each with one request in flight at a time.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Length of the measured window.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Load before the measured window, not recorded (connections, caches, queues).
    #[arg(long, default_value_t = 1)]
    warmup_seconds: u64,
    #[command(flatten)]
    http: HttpOpts,
}

#[derive(Args)]
struct FloodArgs {
    /// Base URL of the server, `http://HOST:PORT`; the WebSocket is `ws://HOST:PORT/ws`.
    #[arg(long)]
    url: String,
    /// JWT the probe client authenticates with (wins over --jwt-secret).
    #[arg(long)]
    token: Option<String>,
    /// The server's HS256 JWT key: mint a one-hour token for --sub with it.
    #[arg(long, env = "ROOMGATE_BENCH_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// `sub` of the minted token.
    #[arg(long, default_value = "bench-probe")]
    sub: String,
    /// Room the probe joins and talks in.
    #[arg(long, default_value = "bench-latency")]
    room: String,
    /// Clients flooding /auth/login during the second phase.
    #[arg(long, default_value_t = 50)]
    flood_concurrency: usize,
    /// Length of each measured phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Round trips before the idle phase, not recorded.
    #[arg(long, default_value_t = 1)]
    warmup_seconds: u64,
    /// Flood this long before the flood phase is measured (0: from its first request).
    #[arg(long, default_value_t = 0)]
    flood_ramp_seconds: u64,
    /// Username the flood tries (an unknown one keeps real accounts from being locked).
    #[arg(long, default_value = "bench-flood")]
    flood_user: String,
    #[arg(long, default_value = "wrong-password")]
    flood_password: String,
    #[command(flatten)]
    http: HttpOpts,
}

#[derive(Args)]
struct ReportArgs {
    /// File whose last line is the JSON of a `login` run.
    #[arg(long)]
    login: PathBuf,
    /// File whose last line is the JSON of a `flood-latency` run.
    #[arg(long)]
    flood: PathBuf,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Login(a) => runtime().and_then(|rt| rt.block_on(login(a))),
        Command::FloodLatency(a) => runtime().and_then(|rt| rt.block_on(flood_latency(a))),
        Command::Report(a) => report(&a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roomgate-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, HIST_SIGFIG).expect("constant bounds are valid")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn latency_json(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
        "mean": h.mean().round() as u64,
    })
}

fn rate(count: u64, seconds: u64) -> f64 {
    let r = count as f64 / seconds.max(1) as f64;
    (r * 10.0).round() / 10.0
}

/// `http://HOST:PORT[/]` → the socket address and the `Host` header value.
struct Target {
    addr: SocketAddr,
    host: String,
}

async fn target(url: &str) -> anyhow::Result<Target> {
    let rest = url
        .strip_prefix("http://")
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

// ---------------------------------------------------------------------------------------
// HTTP/1.1 client

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
fn post_request(host: &str, path: &str, body: &Value, close: bool) -> Vec<u8> {
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
struct LoadStats {
    latency: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    arrived: BTreeMap<u16, u64>,
}

fn add_counts<K: Ord>(into: &mut BTreeMap<K, u64>, from: BTreeMap<K, u64>) {
    for (k, v) in from {
        *into.entry(k).or_default() += v;
    }
}

fn counts_json<K: ToString>(m: &BTreeMap<K, u64>) -> Value {
    m.iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
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
    fn arrived_total(&self) -> u64 {
        self.arrived.values().sum()
    }

    /// Answers with `code` that arrived inside the window.
    fn arrived_with(&self, code: u16) -> u64 {
        self.arrived.get(&code).copied().unwrap_or(0)
    }

    fn summary(&self) -> String {
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
struct Plan {
    start: Instant,
    window: OnceLock<(Instant, Instant)>,
    /// Clients that have had their first answer (or failure).
    warmed: AtomicUsize,
    warmed_changed: Notify,
}

impl Plan {
    fn new(start: Instant) -> Plan {
        Plan {
            start,
            window: OnceLock::new(),
            warmed: AtomicUsize::new(0),
            warmed_changed: Notify::new(),
        }
    }

    fn with_window(start: Instant, from: Instant, end: Instant) -> Plan {
        let plan = Plan::new(start);
        let _ = plan.window.set((from, end));
        plan
    }

    /// Waits until `n` clients have had their first answer.
    async fn warmed(&self, n: usize) {
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
fn spawn_load(
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

async fn join_load(mut tasks: JoinSet<LoadStats>) -> anyhow::Result<LoadStats> {
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

// ---------------------------------------------------------------------------------------
// login

async fn login(a: LoginArgs) -> anyhow::Result<()> {
    let target = target(&a.url).await?;
    let body = json!({"username": a.user, "password": a.password});
    let request = post_request(&target.host, "/auth/login", &body, a.http.connection_close);
    let start = Instant::now();
    let plan = Arc::new(Plan::new(start));
    let tasks = spawn_load(target.addr, request, a.concurrency, a.http, &plan);
    // Warm-up: at least --warmup-seconds, and until every client has had an answer, so
    // the measured window starts with the hashing queue already full.
    tokio::time::sleep_until(start + Duration::from_secs(a.warmup_seconds)).await;
    plan.warmed(a.concurrency.max(1)).await;
    let from = Instant::now();
    let warmup = from - start;
    let _ = plan
        .window
        .set((from, from + Duration::from_secs(a.seconds)));
    let stats = join_load(tasks).await?;

    let ok = stats.arrived_with(200);
    let out = json!({
        "scenario": "login",
        "url": a.url,
        "user": a.user,
        "concurrency": a.concurrency,
        "seconds": a.seconds,
        "warmup_s": (warmup.as_secs_f64() * 10.0).round() / 10.0,
        "connection": a.http.connection(),
        "logins_per_s": rate(ok, a.seconds),
        "answers_per_s": rate(stats.arrived_total(), a.seconds),
        "arrived": counts_json(&stats.arrived),
        "latency_us": latency_json(&stats.latency),
        "status": counts_json(&stats.statuses),
        "errors": counts_json(&stats.errors),
    });
    println!("{out}");
    eprintln!(
        "login: {} clients, {} s measured after {:.1} s warm-up, {}",
        a.concurrency,
        a.seconds,
        warmup.as_secs_f64(),
        a.http.connection()
    );
    eprintln!(
        "  successful logins: {ok} ({}/s); answers: {} ({}/s)",
        rate(ok, a.seconds),
        stats.arrived_total(),
        rate(stats.arrived_total(), a.seconds)
    );
    eprintln!(
        "  latency of the requests started in the window: {}",
        latency_line(&stats.latency)
    );
    eprintln!("  their statuses: {}", stats.summary());
    if ok == 0 {
        bail!("no login succeeded in the measured window (check --url, --user, --password)");
    }
    Ok(())
}

fn latency_line(h: &Histogram<u64>) -> String {
    format!(
        "p50 {}  p99 {}  max {}  (n = {})",
        fmt_us(h.value_at_quantile(0.5)),
        fmt_us(h.value_at_quantile(0.99)),
        fmt_us(h.max()),
        h.len()
    )
}

fn fmt_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2} s", us as f64 / 1_000_000.0)
    } else if us >= 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else if us >= 1_000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

// ---------------------------------------------------------------------------------------
// flood-latency

/// The probe's timeline, fixed once it is connected: warm-up, idle phase, flood ramp,
/// flood phase. The flood clients run from `flood_start` to `flood.1`.
#[derive(Clone, Copy)]
struct Schedule {
    idle: (Instant, Instant),
    flood_start: Instant,
    flood: (Instant, Instant),
}

struct ProbeStats {
    idle: Histogram<u64>,
    flood: Histogram<u64>,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn flood_latency(a: FloodArgs) -> anyhow::Result<()> {
    let target = target(&a.url).await?;
    let token = match (&a.token, &a.jwt_secret) {
        (Some(t), _) => t.clone(),
        (None, Some(secret)) => mint(&a.sub, secret)?,
        (None, None) => bail!("give --token or --jwt-secret"),
    };
    let ws_url = format!("ws://{}/ws", target.host);
    let phase = Duration::from_secs(a.seconds);
    let warmup = Duration::from_secs(a.warmup_seconds);
    let ramp = Duration::from_secs(a.flood_ramp_seconds);

    // The probe gets an OS thread and a runtime of its own, so its round trips do not
    // queue behind the flood clients' tasks in this runtime.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let room = a.room.clone();
    let probe = std::thread::Builder::new()
        .name("probe".into())
        .spawn(move || -> anyhow::Result<ProbeStats> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the probe runtime")?;
            rt.block_on(async move {
                let mut ws = probe_connect(&ws_url, &token, &room).await?;
                let t = Instant::now() + warmup;
                let schedule = Schedule {
                    idle: (t, t + phase),
                    flood_start: t + phase,
                    flood: (t + phase + ramp, t + phase + ramp + phase),
                };
                // The receiver only goes away if the main task failed; then so do we.
                ready_tx
                    .send(schedule)
                    .map_err(|_| anyhow!("the flood side went away"))?;
                probe_loop(&mut ws, &room, schedule).await
            })
        })
        .context("starting the probe thread")?;

    let Ok(schedule) = ready_rx.await else {
        let joined = tokio::task::spawn_blocking(move || probe.join()).await?;
        return match joined {
            Ok(Err(e)) => Err(e),
            _ => Err(anyhow!("the probe stopped before it was ready")),
        };
    };

    let body = json!({"username": a.flood_user, "password": a.flood_password});
    let request = post_request(&target.host, "/auth/login", &body, a.http.connection_close);
    let plan = Arc::new(Plan::with_window(
        schedule.flood_start,
        schedule.flood.0,
        schedule.flood.1,
    ));
    let flood = spawn_load(target.addr, request, a.flood_concurrency, a.http, &plan);
    let flood = join_load(flood).await?;
    let probe = tokio::task::spawn_blocking(move || probe.join())
        .await?
        .map_err(|_| anyhow!("the probe thread panicked"))??;

    let phase_json = |h: &Histogram<u64>| {
        json!({
            "messages": h.len(),
            "messages_per_s": rate(h.len(), a.seconds),
            "rtt_us": latency_json(h),
        })
    };
    let out = json!({
        "scenario": "flood-latency",
        "url": a.url,
        "room": a.room,
        "seconds": a.seconds,
        "warmup_seconds": a.warmup_seconds,
        "flood_ramp_seconds": a.flood_ramp_seconds,
        "idle": phase_json(&probe.idle),
        "flood": phase_json(&probe.flood),
        "login_flood": {
            "concurrency": a.flood_concurrency,
            "connection": a.http.connection(),
            "user": a.flood_user,
            "requests_per_s": rate(flood.arrived_total(), a.seconds),
            "arrived": counts_json(&flood.arrived),
            "latency_us": latency_json(&flood.latency),
            "status": counts_json(&flood.statuses),
            "errors": counts_json(&flood.errors),
        },
    });
    println!("{out}");
    eprintln!(
        "flood-latency: room {}, {} s per phase after {} s warm-up",
        a.room, a.seconds, a.warmup_seconds
    );
    eprintln!(
        "  idle:  {} round trips ({}/s); RTT {}",
        probe.idle.len(),
        rate(probe.idle.len(), a.seconds),
        latency_line(&probe.idle)
    );
    eprintln!(
        "  flood: {} round trips ({}/s); RTT {}",
        probe.flood.len(),
        rate(probe.flood.len(), a.seconds),
        latency_line(&probe.flood)
    );
    eprintln!(
        "  login flood: {} clients, {} answers in the window ({}/s); statuses {}",
        a.flood_concurrency,
        flood.arrived_total(),
        rate(flood.arrived_total(), a.seconds),
        flood.summary()
    );
    eprintln!("  login flood latency: {}", latency_line(&flood.latency));
    Ok(())
}

/// An HS256 token for `sub`, valid for an hour.
fn mint(sub: &str, secret: &str) -> anyhow::Result<String> {
    let now = now_ms() / 1000;
    let claims = json!({"sub": sub, "iat": now, "exp": now + 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("signing the probe token")
}

fn frame(kind: &str, data: Value) -> Message {
    Message::text(json!({"type": kind, "data": data, "timestamp": now_ms()}).to_string())
}

/// The next text frame as JSON.
async fn next_frame(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        let msg = tokio::time::timeout(ECHO_TIMEOUT, ws.next())
            .await
            .map_err(|_| anyhow!("no frame from the server within {ECHO_TIMEOUT:?}"))?
            .ok_or_else(|| anyhow!("the server closed the WebSocket"))?
            .context("reading the WebSocket")?;
        match msg {
            Message::Text(t) => {
                return serde_json::from_str(t.as_str()).context("a frame that is not JSON");
            }
            Message::Close(f) => bail!("the server closed the WebSocket: {f:?}"),
            _ => continue,
        }
    }
}

/// Skips frames until one of type `kind`; an `error` frame ends the run.
async fn expect(ws: &mut Ws, kind: &str) -> anyhow::Result<Value> {
    loop {
        let v = next_frame(ws).await?;
        if v["type"] == kind {
            return Ok(v);
        }
        if v["type"] == "error" {
            bail!("server error while waiting for {kind}: {}", v["data"]);
        }
    }
}

/// Connects, authenticates and joins `room`.
async fn probe_connect(url: &str, token: &str, room: &str) -> anyhow::Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    expect(&mut ws, "handshake").await?;
    ws.send(frame("auth", json!({"token": token}))).await?;
    expect(&mut ws, "auth_success")
        .await
        .context("authenticating the probe")?;
    ws.send(frame("join", json!({"roomId": room}))).await?;
    expect(&mut ws, "room_joined")
        .await
        .context("joining the probe room")?;
    Ok(ws)
}

/// Sends a message, waits for its echo, again, until the flood phase ends; a round trip
/// is recorded in the phase that contains it whole.
async fn probe_loop(ws: &mut Ws, room: &str, s: Schedule) -> anyhow::Result<ProbeStats> {
    let mut stats = ProbeStats {
        idle: new_histogram(),
        flood: new_histogram(),
    };
    let mut seq = 0u64;
    loop {
        let t0 = Instant::now();
        if t0 >= s.flood.1 {
            break;
        }
        seq += 1;
        let content = format!("bench-{seq}");
        ws.send(frame(
            "message",
            json!({"roomId": room, "content": content}),
        ))
        .await
        .context("sending a message")?;
        loop {
            let v = next_frame(ws).await?;
            if v["type"] == "message" && v["data"]["content"] == content.as_str() {
                break;
            }
            if v["type"] == "error" {
                bail!(
                    "server error on message {seq}: {} (is rate_limits.message high enough?)",
                    v["data"]
                );
            }
        }
        let t1 = Instant::now();
        let rtt = micros(t1 - t0);
        if t0 >= s.idle.0 && t1 <= s.idle.1 {
            stats.idle.saturating_record(rtt);
        } else if t0 >= s.flood.0 && t1 <= s.flood.1 {
            stats.flood.saturating_record(rtt);
        }
    }
    let _ = ws.close(None).await;
    Ok(stats)
}

// ---------------------------------------------------------------------------------------
// report

fn last_json_line(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| anyhow!("{} is empty", path.display()))?;
    serde_json::from_str(line).with_context(|| format!("{} is not JSON", path.display()))
}

fn num(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        _ => "?".into(),
    }
}

fn us(v: &Value) -> String {
    v.as_u64().map_or_else(|| "?".into(), fmt_us)
}

fn counts(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, n)| format!("{k}: {}", num(n)))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "none".into(),
    }
}

fn report(a: &ReportArgs) -> anyhow::Result<()> {
    let l = last_json_line(&a.login)?;
    let f = last_json_line(&a.flood)?;
    if l["scenario"] != "login" || f["scenario"] != "flood-latency" {
        bail!("--login needs a login run and --flood a flood-latency run");
    }
    println!("`POST /auth/login` with the right password, rate limits off:\n");
    println!("| clients | measured | successful logins/s | p50 | p99 | max | statuses | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} s | {} | {} | {} | {} | {} | {} |",
        num(&l["concurrency"]),
        num(&l["seconds"]),
        num(&l["logins_per_s"]),
        us(&l["latency_us"]["p50"]),
        us(&l["latency_us"]["p99"]),
        us(&l["latency_us"]["max"]),
        counts(&l["status"]),
        counts(&l["errors"]),
    );
    let flood = &f["login_flood"];
    println!("\nWebSocket `message` round trip (send, wait for its own broadcast), one client:\n");
    println!("| phase | measured | round trips | round trips/s | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|---|");
    for (name, p) in [
        ("idle server".to_string(), &f["idle"]),
        (
            format!(
                "during the login flood ({} clients)",
                num(&flood["concurrency"])
            ),
            &f["flood"],
        ),
    ] {
        println!(
            "| {name} | {} s | {} | {} | {} | {} | {} |",
            num(&f["seconds"]),
            num(&p["messages"]),
            num(&p["messages_per_s"]),
            us(&p["rtt_us"]["p50"]),
            us(&p["rtt_us"]["p99"]),
            us(&p["rtt_us"]["max"]),
        );
    }
    println!("\nThe login flood (`POST /auth/login`, unknown user, wrong password, limits on):\n");
    println!("| clients | measured | requests/s | p50 | p99 | max | statuses | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} s | {} | {} | {} | {} | {} | {} |",
        num(&flood["concurrency"]),
        num(&f["seconds"]),
        num(&flood["requests_per_s"]),
        us(&flood["latency_us"]["p50"]),
        us(&flood["latency_us"]["p99"]),
        us(&flood["latency_us"]["max"]),
        counts(&flood["status"]),
        counts(&flood["errors"]),
    );
    Ok(())
}
