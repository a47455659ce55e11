//! The login scenarios of issue 3: `login` (closed-loop `POST /auth/login` throughput)
//! and `flood-latency` (one WebSocket client's round trips, idle and while many clients
//! flood `/auth/login` with a wrong password). roomgate-specific: the ceiling has no
//! `/auth` endpoints.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use futures_util::SinkExt;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::time::Instant;

use crate::http::{HttpOpts, Plan, join_load, post_request, spawn_load, target};
use crate::stats::{counts_json, latency_json, latency_line, micros, new_histogram, rate};
use crate::ws::{Endpoint, LARGE_READ_BUFFER, Ws, frame, mint, next_frame, session};

/// How long the probe waits for its own echo before the run is declared broken.
const ECHO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args)]
pub struct LoginArgs {
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
pub struct FloodArgs {
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

pub async fn login(a: LoginArgs) -> anyhow::Result<()> {
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

pub async fn flood_latency(a: FloodArgs) -> anyhow::Result<()> {
    let target = target(&a.url).await?;
    let token = match (&a.token, &a.jwt_secret) {
        (Some(t), _) => t.clone(),
        (None, Some(secret)) => mint(&a.sub, secret, 3600)?,
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

/// Connects, authenticates and joins `room`.
async fn probe_connect(url: &str, token: &str, room: &str) -> anyhow::Result<Ws> {
    let ep = Endpoint::with(url, 0, LARGE_READ_BUFFER, ECHO_TIMEOUT.as_secs()).await?;
    let s = session(&ep, 0, token, Some(room))
        .await
        .map_err(|e| anyhow!("connecting the probe to {}: {e}", ep.url()))?;
    Ok(s.ws)
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
            let v = tokio::time::timeout(ECHO_TIMEOUT, next_frame(ws, "echo"))
                .await
                .map_err(|_| anyhow!("no echo of message {seq} within {ECHO_TIMEOUT:?}"))?
                .map_err(|e| anyhow!("waiting for the echo of message {seq}: {e}"))?;
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
