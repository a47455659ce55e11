//! `connect`: how fast a server admits authenticated connections. N connections, at
//! most C handshakes in flight, each authenticated with its own HS256 token (its own
//! user) minted before the clock starts; every connection stays open until all are
//! done, so the server holds N sessions at the end, as it would under a reconnect storm.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Args;
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::procfs::{CpuMark, ServerOpts, memory};
use crate::stats::{
    SharedHist, add_counts, counts_json, counts_line, latency_json, latency_line, micros,
    rate_over, round3,
};
use crate::ws::{ConnOpts, Endpoint, SMALL_READ_BUFFER, Ws, mint_many, run_tag, session};

#[derive(Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    conn: ConnOpts,
    #[command(flatten)]
    server: ServerOpts,
    /// Connections to open.
    #[arg(short = 'n', long, default_value_t = 1000)]
    connections: usize,
    /// Handshakes in flight at once.
    #[arg(short = 'c', long, default_value_t = 100)]
    concurrency: usize,
}

struct Worker {
    open: Vec<Ws>,
    failures: BTreeMap<String, u64>,
    last_success: Option<Instant>,
}

pub async fn run(a: ConnectArgs) -> anyhow::Result<()> {
    let ep = Arc::new(Endpoint::new(&a.conn, SMALL_READ_BUFFER).await?);
    let n = a.connections;
    let tag = run_tag();
    let tokens = Arc::new(mint_many(&format!("bench-{tag}"), n, &a.conn.secret)?);
    let pid = a.server.server_pid;
    let rss_before = pid.map(memory).transpose()?;
    let cpu = CpuMark::start(&a.server)?;
    let latency = SharedHist::new();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..a.concurrency.clamp(1, n.max(1)) {
        let (ep, tokens, next) = (ep.clone(), tokens.clone(), next.clone());
        let mut rec = latency.recorder();
        workers.spawn(async move {
            let mut w = Worker {
                open: Vec::new(),
                failures: BTreeMap::new(),
                last_success: None,
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= tokens.len() {
                    break;
                }
                match session(&ep, i, &tokens[i], None).await {
                    Ok(s) => {
                        rec.record(micros(s.auth_latency));
                        w.open.push(s.ws);
                        w.last_success = Some(Instant::now());
                    }
                    Err(f) => *w.failures.entry(f.0).or_default() += 1,
                }
            }
            w
        });
    }
    let mut open = Vec::with_capacity(n);
    let mut failures = BTreeMap::new();
    let mut last = None;
    while let Some(w) = workers.join_next().await {
        let w = w?;
        open.extend(w.open);
        add_counts(&mut failures, w.failures);
        last = last.max(w.last_success);
    }
    let done = Instant::now();
    let used = cpu.stop(&a.server)?;
    let rss_open = pid.map(memory).transpose()?;
    let connected = open.len() as u64;
    // From the first connect to the last auth_success: the rate of admitted connections.
    let span = last.unwrap_or(done) - start;
    drop(open);

    let h = latency.snapshot();
    let per_conn_kib = match (rss_before, rss_open) {
        (Some(b), Some(o)) if connected > 0 => Some(round3(
            (o.rss_kib as f64 - b.rss_kib as f64) / connected as f64,
        )),
        _ => None,
    };
    let out = json!({
        "scenario": "connect",
        "label": a.server.label,
        "url": ep.url(),
        "params": {"connections": n, "concurrency": a.concurrency, "source_ips": ep.source_count()},
        "connected": connected,
        "failures": counts_json(&failures),
        "seconds": round3(span.as_secs_f64()),
        "connections_per_s": rate_over(connected, span),
        "auth_latency_us": latency_json(&h),
        "cpu": used.json(),
        "connections_per_server_cpu_s": used.per_server_second(connected),
        "server_rss_kib": {
            "before": rss_before.map(|m| m.rss_kib),
            "all_open": rss_open.map(|m| m.rss_kib),
            "per_connection": per_conn_kib,
        },
    });
    println!("{out}");
    eprintln!(
        "connect [{}]: {connected}/{n} authenticated in {:.2} s ({}/s), {} at a time, from {} source addresses",
        a.server.label,
        span.as_secs_f64(),
        rate_over(connected, span),
        a.concurrency,
        ep.source_count()
    );
    eprintln!("  TCP connect to auth_success: {}", latency_line(&h));
    eprintln!("  failures: {}", counts_line(&failures));
    eprintln!("  {}", used.line());
    if connected == 0 {
        anyhow::bail!("no connection authenticated (check --url and --secret)");
    }
    Ok(())
}
