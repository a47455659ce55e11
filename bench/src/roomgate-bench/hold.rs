//! `hold`: what idle connections cost a server. N connections are opened (C at a time),
//! authenticated as N distinct users and joined to R rooms in turn, then held for T
//! seconds sending heartbeats at the server's advertised interval and reading whatever
//! it sends; the server's RSS is read before, once all are joined, at the end of the
//! hold and after they have closed. `--cycles K` repeats it with the same users and
//! rooms, to show whether memory comes back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::procfs::{CpuMark, Memory, ServerOpts, memory};
use crate::stats::{add_counts, counts_json, counts_line, round3};
use crate::ws::{
    ConnOpts, Endpoint, Fail, SMALL_READ_BUFFER, heartbeat, mint_many, run_tag, session,
    ws_error_label,
};

/// Heartbeat period when neither `--heartbeat-ms` nor the server's handshake gives one
/// (the seed's 30 s).
const DEFAULT_HEARTBEAT_MS: u64 = 30_000;
/// How long a closing connection waits for its close frame to be written.
const CLOSE_WRITE: Duration = Duration::from_secs(2);

#[derive(Args)]
pub struct HoldArgs {
    #[command(flatten)]
    conn: ConnOpts,
    #[command(flatten)]
    server: ServerOpts,
    /// Connections to open, authenticate, join and hold.
    #[arg(short = 'n', long, default_value_t = 1000)]
    connections: usize,
    /// Rooms the connections are spread over (connection i joins room i mod R).
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Seconds to hold them once all are joined.
    #[arg(short = 't', long, default_value_t = 10)]
    seconds: u64,
    /// Setups (connect, auth, join) in flight at once.
    #[arg(short = 'c', long, default_value_t = 200)]
    concurrency: usize,
    /// Heartbeat period (default: the server's `heartbeatIntervalMs`, else 30 s).
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    /// Hold cycles, each opening and closing every connection.
    #[arg(long, default_value_t = 1)]
    cycles: u32,
    /// Seconds to wait after the connections close before reading the server's RSS.
    #[arg(long, default_value_t = 5)]
    settle_secs: u64,
}

/// How one connection's hold ended.
struct Held {
    /// Why it closed before it was told to, if it did.
    died: Option<String>,
    heartbeats: u64,
    responses: u64,
    frames: u64,
}

pub async fn run(a: HoldArgs) -> anyhow::Result<()> {
    let ep = Arc::new(Endpoint::new(&a.conn, SMALL_READ_BUFFER).await?);
    let tag = run_tag();
    let tokens = Arc::new(mint_many(
        &format!("bench-{tag}"),
        a.connections,
        &a.conn.secret,
    )?);
    let rooms: Arc<Vec<String>> = Arc::new(
        (0..a.rooms.max(1))
            .map(|r| format!("bench-{tag}-hold-{r}"))
            .collect(),
    );
    let mut cycles = Vec::new();
    for cycle in 1..=a.cycles.max(1) {
        let c = hold_cycle(&a, &ep, &tokens, &rooms).await?;
        eprintln!(
            "hold [{}] cycle {cycle}: {}/{} joined in {:.1} s, {} still open after {} s; {}",
            a.server.label,
            c["joined"],
            a.connections,
            c["setup_s"].as_f64().unwrap_or(0.0),
            c["survivors"],
            a.seconds,
            c["cpu_line"].as_str().unwrap_or_default()
        );
        if let Some(rss) = c["server_rss_kib"].as_object() {
            eprintln!(
                "  server RSS: {} KiB before, {} KiB joined, {} KiB held, {} KiB after close; {} KiB per held connection",
                rss["before"],
                rss["joined"],
                rss["held"],
                rss["after_close"],
                rss["per_connection"]
            );
        }
        eprintln!(
            "  failures: {}; ended early: {}",
            c["failures_line"].as_str().unwrap_or_default(),
            c["died_line"].as_str().unwrap_or_default()
        );
        cycles.push(c);
    }
    for c in &mut cycles {
        if let Some(o) = c.as_object_mut() {
            o.remove("cpu_line");
            o.remove("failures_line");
            o.remove("died_line");
        }
    }
    let closed: Vec<Option<u64>> = cycles
        .iter()
        .map(|c| c["server_rss_kib"]["after_close"].as_u64())
        .collect();
    // Growth of the settled RSS from the first cycle's close to the last one's.
    let growth = match (closed.first(), closed.last()) {
        (Some(Some(f)), Some(Some(l))) if closed.len() > 1 => Some(*l as i64 - *f as i64),
        _ => None,
    };
    let first = &cycles[0];
    let out = json!({
        "scenario": "hold",
        "label": a.server.label,
        "url": ep.url(),
        "params": {
            "connections": a.connections, "rooms": a.rooms, "seconds": a.seconds,
            "concurrency": a.concurrency, "cycles": a.cycles, "source_ips": ep.source_count(),
        },
        "joined": first["joined"],
        "survivors": first["survivors"],
        "server_rss_kib": first["server_rss_kib"],
        "kib_per_connection": first["server_rss_kib"]["per_connection"],
        "rss_growth_over_cycles_kib": growth,
        "cycles": cycles,
    });
    println!("{out}");
    if out["joined"].as_u64() == Some(0) {
        anyhow::bail!("no connection joined (check --url and --secret)");
    }
    Ok(())
}

fn mem_kib(pid: Option<u32>) -> anyhow::Result<Option<Memory>> {
    pid.map(memory).transpose()
}

async fn hold_cycle(
    a: &HoldArgs,
    ep: &Arc<Endpoint>,
    tokens: &Arc<Vec<String>>,
    rooms: &Arc<Vec<String>>,
) -> anyhow::Result<Value> {
    let pid = a.server.server_pid;
    let before = mem_kib(pid)?;
    let cpu = CpuMark::start(&a.server)?;
    let permits = Arc::new(Semaphore::new(a.concurrency.max(1)));
    let (setup_tx, mut setup_rx) = mpsc::unbounded_channel::<Result<(), Fail>>();
    let (stop_tx, stop_rx) = watch::channel(false);
    let dead = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..tokens.len() {
        let (ep, tokens, rooms, permits) =
            (ep.clone(), tokens.clone(), rooms.clone(), permits.clone());
        let (setup_tx, mut stop_rx, dead) = (setup_tx.clone(), stop_rx.clone(), dead.clone());
        let fixed_hb = a.heartbeat_ms;
        tasks.spawn(async move {
            let permit = permits.acquire_owned().await;
            let room = &rooms[i % rooms.len()];
            let s = session(&ep, i, &tokens[i], Some(room)).await;
            drop(permit);
            let s = match s {
                Ok(s) => {
                    let _ = setup_tx.send(Ok(()));
                    s
                }
                Err(f) => {
                    let _ = setup_tx.send(Err(f));
                    return None;
                }
            };
            drop(setup_tx);
            let hb = Duration::from_millis(
                fixed_hb
                    .or(s.heartbeat_ms)
                    .unwrap_or(DEFAULT_HEARTBEAT_MS)
                    .max(100),
            );
            let held = hold_one(s.ws, hb, &mut stop_rx).await;
            if held.died.is_some() {
                dead.fetch_add(1, Ordering::Relaxed);
            }
            Some(held)
        });
    }
    drop(setup_tx);
    let mut joined = 0u64;
    let mut failures = BTreeMap::new();
    while let Some(r) = setup_rx.recv().await {
        match r {
            Ok(()) => joined += 1,
            Err(f) => *failures.entry(f.0).or_default() += 1,
        }
    }
    let setup = start.elapsed();
    let at_joined = mem_kib(pid)?;
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let held_mem = mem_kib(pid)?;
    let survivors = joined.saturating_sub(dead.load(Ordering::Relaxed) as u64);
    let used = cpu.stop(&a.server)?;
    let _ = stop_tx.send(true);
    let mut died: BTreeMap<String, u64> = BTreeMap::new();
    let (mut heartbeats, mut responses, mut frames) = (0u64, 0u64, 0u64);
    while let Some(r) = tasks.join_next().await {
        if let Some(h) = r? {
            if let Some(d) = h.died {
                add_counts(&mut died, BTreeMap::from([(d, 1)]));
            }
            heartbeats += h.heartbeats;
            responses += h.responses;
            frames += h.frames;
        }
    }
    tokio::time::sleep(Duration::from_secs(a.settle_secs)).await;
    let after = mem_kib(pid)?;
    let per_conn = match (before, held_mem) {
        (Some(b), Some(h)) if survivors > 0 => Some(round3(
            (h.rss_kib as f64 - b.rss_kib as f64) / survivors as f64,
        )),
        _ => None,
    };
    Ok(json!({
        "joined": joined,
        "survivors": survivors,
        "setup_s": round3(setup.as_secs_f64()),
        "failures": counts_json(&failures),
        "ended_early": counts_json(&died),
        "heartbeats_sent": heartbeats,
        "heartbeat_responses": responses,
        "frames_received": frames,
        "cpu": used.json(),
        "server_rss_kib": pid.map(|_| json!({
            "before": before.map(|m| m.rss_kib),
            "joined": at_joined.map(|m| m.rss_kib),
            "held": held_mem.map(|m| m.rss_kib),
            "after_close": after.map(|m| m.rss_kib),
            // VmHWM as of the end of the hold (the kernel updates it lazily).
            "peak": held_mem.map(|m| m.hwm_kib.max(m.rss_kib)),
            "per_connection": per_conn,
        })),
        "cpu_line": used.line(),
        "failures_line": counts_line(&failures),
        "died_line": counts_line(&died),
    }))
}

/// Holds one joined connection until `stop`: heartbeats every `hb` (the first at a
/// random point of the first period, so 20,000 of them do not beat in step), every
/// frame read. Closes with a close frame when told to stop.
async fn hold_one(mut ws: crate::ws::Ws, hb: Duration, stop: &mut watch::Receiver<bool>) -> Held {
    let mut held = Held {
        died: None,
        heartbeats: 0,
        responses: 0,
        frames: 0,
    };
    let offset = hb.mul_f64(rand::random::<f64>());
    let mut next_beat = Instant::now() + offset;
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    let _ = tokio::time::timeout(CLOSE_WRITE, ws.close(None)).await;
                    return held;
                }
            }
            _ = tokio::time::sleep_until(next_beat) => {
                if let Err(e) = ws.send(heartbeat()).await {
                    held.died = Some(format!("heartbeat: {}", ws_error_label(&e)));
                    return held;
                }
                held.heartbeats += 1;
                next_beat += hb;
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    held.frames += 1;
                    if t.as_str().contains("\"heartbeat_response\"") {
                        held.responses += 1;
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    held.died = Some(format!("closed {}", f.map_or(1005, |f| u16::from(f.code))));
                    return held;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    held.died = Some(ws_error_label(&e));
                    return held;
                }
                None => {
                    held.died = Some("closed".into());
                    return held;
                }
            },
        }
    }
}
