//! `echo-latency`: one authenticated client alone in a room sends a message, waits for
//! the server's broadcast of it back to itself, and sends the next: closed-loop round
//! trips, so each one measures the whole message path (decode, checks, fan-out, write)
//! on an otherwise idle server.

use anyhow::{anyhow, bail};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::accounting::Marker;
use crate::procfs::{CpuMark, ServerOpts};
use crate::stats::{
    clock_us, latency_json, latency_line, micros, new_histogram, rate_over, round1, round3,
};
use crate::ws::{ConnOpts, Endpoint, Ws, message_frame, mint, run_tag, session, ws_error_label};

#[derive(Args)]
pub struct EchoArgs {
    #[command(flatten)]
    conn: ConnOpts,
    #[command(flatten)]
    server: ServerOpts,
    /// Measured round trips.
    #[arg(short = 'n', long, default_value_t = 10_000)]
    round_trips: u64,
    /// Round trips before the measured ones, not recorded.
    #[arg(long, default_value_t = 200)]
    warmup: u64,
    /// Extra content bytes per message, after the marker.
    #[arg(long, default_value_t = 0)]
    pad: usize,
}

pub async fn run(a: EchoArgs) -> anyhow::Result<()> {
    let ep = Endpoint::new(&a.conn, crate::ws::SMALL_READ_BUFFER).await?;
    let tag = run_tag();
    let token = mint(&format!("bench-{tag}-echo"), &a.conn.secret, 3 * 3600)?;
    let room = format!("bench-{tag}-echo");
    let mut ws = session(&ep, 0, &token, Some(&room))
        .await
        .map_err(|e| anyhow!("setting up the client: {e}"))?
        .ws;
    let mut seq = 0u64;
    for _ in 0..a.warmup {
        round_trip(&mut ws, &room, &mut seq, a.pad, &ep).await?;
    }
    let mut h = new_histogram();
    let cpu = CpuMark::start(&a.server)?;
    let t0 = Instant::now();
    for _ in 0..a.round_trips {
        let rtt = round_trip(&mut ws, &room, &mut seq, a.pad, &ep).await?;
        h.saturating_record(rtt);
    }
    let took = t0.elapsed();
    let used = cpu.stop(&a.server)?;
    let _ = ws.close(None).await;
    let out = json!({
        "scenario": "echo-latency",
        "label": a.server.label,
        "url": ep.url(),
        "params": {"round_trips": a.round_trips, "warmup": a.warmup, "pad": a.pad},
        "seconds": round3(took.as_secs_f64()),
        "round_trips_per_s": rate_over(a.round_trips, took),
        "rtt_us": latency_json(&h),
        "cpu": used.json(),
        "server_cpu_us_per_round_trip": used.server_s.map(|s| round1(s * 1e6 / a.round_trips.max(1) as f64)),
    });
    println!("{out}");
    eprintln!(
        "echo-latency [{}]: {} round trips in {:.2} s ({}/s); RTT {}",
        a.server.label,
        a.round_trips,
        took.as_secs_f64(),
        rate_over(a.round_trips, took),
        latency_line(&h)
    );
    eprintln!("  {}", used.line());
    Ok(())
}

/// Sends message `seq` and waits for it to come back; returns the round trip in µs.
async fn round_trip(
    ws: &mut Ws,
    room: &str,
    seq: &mut u64,
    pad: usize,
    ep: &Endpoint,
) -> anyhow::Result<u64> {
    let marker = Marker {
        publisher: 0,
        seq: *seq,
        sent_us: clock_us(),
    };
    *seq += 1;
    let t0 = Instant::now();
    ws.send(message_frame(room, &marker, pad))
        .await
        .map_err(|e| anyhow!("sending message {}: {}", marker.seq, ws_error_label(&e)))?;
    loop {
        let msg = tokio::time::timeout(ep.timeout, ws.next())
            .await
            .map_err(|_| anyhow!("no echo of message {} within {:?}", marker.seq, ep.timeout))?;
        match msg {
            Some(Ok(Message::Text(t))) => {
                if Marker::find(t.as_str()).is_some_and(|m| m.seq == marker.seq) {
                    return Ok(micros(t0.elapsed()));
                }
                if t.as_str().contains(r#""type":"error""#) {
                    bail!(
                        "server error on message {}: {} (are rate limits lifted?)",
                        marker.seq,
                        t.as_str()
                    );
                }
            }
            Some(Ok(Message::Close(f))) => bail!("the server closed the connection: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("reading the echo: {}", ws_error_label(&e)),
            None => bail!("the server closed the connection"),
        }
    }
}
