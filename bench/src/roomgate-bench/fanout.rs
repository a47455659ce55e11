//! `fanout`: R rooms, each with S subscribers and P publishers, the publishers sending M
//! messages per second per room between them for T seconds on a fixed schedule (open
//! loop: a slow server does not slow the offered load). Every message carries a marker
//! (publisher, sequence number, send time on this process's clock), so each subscriber
//! measures end-to-end latency and accounts exactly for loss, duplicates and reordering
//! per publisher ([`crate::accounting`]). Delivered messages per second count the
//! subscribers' deliveries that arrived inside the sending window; after it, subscribers
//! wait up to `--drain-secs` for the rest before anything missing counts as lost. The
//! worst latency of each 100 ms of send time is kept too, so a report can tell one stall
//! (one bad window) from a steady cost (all of them).
//!
//! All connections are set up (authenticated as distinct users, joined) before the first
//! message, and the server's join traffic is read and allowed to settle, so the window
//! holds nothing but the message path. The tool's own per-subscriber buffers are
//! allocated and touched before the window opens, for the same reason.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::accounting::{Ledger, Marker, Seen, Tally};
use crate::procfs::{CpuMark, ServerOpts};
use crate::stats::{
    Recorder, SharedHist, clock_us, counts_json, counts_line, latency_json, latency_line,
    rate_over, round1, round3,
};
use crate::ws::{
    ConnOpts, Endpoint, Fail, Ws, message_frame, mint_many, run_tag, session, ws_error_label,
};

/// Subscribers read streams of broadcasts: a larger read buffer means fewer syscalls,
/// and there are at most some thousands of them.
const READ_BUFFER: usize = 16 * 1024;
/// Messages a publisher writes before it flushes when it is behind its schedule.
const SEND_BATCH: usize = 64;
/// How far ahead of the first message the start time is announced.
const START_LEAD: Duration = Duration::from_millis(200);

#[derive(Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    conn: ConnOpts,
    #[command(flatten)]
    server: ServerOpts,
    /// Rooms.
    #[arg(short = 'r', long, default_value_t = 10)]
    rooms: usize,
    /// Subscribers per room (they only read).
    #[arg(short = 's', long, default_value_t = 100)]
    subscribers: usize,
    /// Publishers per room (they send; they also get their own messages back).
    #[arg(short = 'p', long, default_value_t = 1)]
    publishers: usize,
    /// Messages per second per room, shared evenly by its publishers.
    #[arg(short = 'm', long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds of sending.
    #[arg(short = 't', long, default_value_t = 3.0)]
    seconds: f64,
    /// Setups (connect, auth, join) in flight at once.
    #[arg(short = 'c', long, default_value_t = 200)]
    concurrency: usize,
    /// After the sending window, how long subscribers wait for missing messages.
    #[arg(long, default_value_t = 10)]
    drain_secs: u64,
    /// Quiet time between the last join and the first message.
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// Extra content bytes per message, after the marker.
    #[arg(long, default_value_t = 0)]
    pad: usize,
    /// Most subscribers listed one by one in the JSON when they saw anomalies.
    #[arg(long, default_value_t = 20)]
    list_anomalies: usize,
}

/// When the sending window starts, on both clocks.
/// Windows listed in the report, worst first.
const WORST_WINDOWS: usize = 5;

/// The worst latency of the messages sent in each short window of the run, so a tail can
/// be told apart: one stall shows as one bad window, a steady cost as all of them.
struct Timeline {
    max_us: Vec<AtomicU64>,
}

impl Timeline {
    const BUCKET_MS: u64 = 100;

    fn new(span: Duration) -> Timeline {
        let n = span.as_millis() as u64 / Self::BUCKET_MS + 1;
        Timeline {
            max_us: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// A message sent `since_start_us` after the start arrived after `us`.
    fn note(&self, since_start_us: u64, us: u64) {
        let i = (since_start_us / 1000 / Self::BUCKET_MS) as usize;
        if let Some(b) = self.max_us.get(i) {
            b.fetch_max(us, Ordering::Relaxed);
        }
    }

    /// The `n` windows with the worst latency: (start in ms from the run's start, max µs).
    fn worst(&self, n: usize) -> Vec<(u64, u64)> {
        let mut all: Vec<(u64, u64)> = self
            .max_us
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u64 * Self::BUCKET_MS, b.load(Ordering::Relaxed)))
            .filter(|(_, us)| *us > 0)
            .collect();
        all.sort_by_key(|w| std::cmp::Reverse(w.1));
        all.truncate(n);
        all
    }
}

#[derive(Clone, Copy)]
struct Start {
    at: Instant,
    at_us: u64,
}

struct SubResult {
    room: usize,
    index: usize,
    ledger: Ledger,
    /// Marked messages received, duplicates included.
    delivered: u64,
    in_window: u64,
    last_us: u64,
    ended: Option<String>,
}

struct PubResult {
    echoes: u64,
    ended: Option<String>,
}

/// Per-room numbering: connection `i` is in room `i / per_room`; the first `subs` of a
/// room subscribe, the rest publish.
struct Layout {
    subs: usize,
    pubs: usize,
}

impl Layout {
    fn per_room(&self) -> usize {
        self.subs + self.pubs
    }
}

pub async fn run(a: FanoutArgs) -> anyhow::Result<()> {
    if a.rooms == 0 || a.subscribers == 0 || a.publishers == 0 {
        bail!("-r, -s and -p must be at least 1");
    }
    if !(a.rate > 0.0 && a.seconds > 0.0) {
        bail!("-m and -t must be positive");
    }
    let ep = Arc::new(Endpoint::new(&a.conn, READ_BUFFER).await?);
    let layout = Arc::new(Layout {
        subs: a.subscribers,
        pubs: a.publishers,
    });
    let total = a.rooms * layout.per_room();
    let total_pubs = a.rooms * a.publishers;
    let tag = run_tag();
    let tokens = Arc::new(mint_many(&format!("bench-{tag}"), total, &a.conn.secret)?);
    let rooms: Arc<Vec<String>> = Arc::new(
        (0..a.rooms)
            .map(|r| format!("bench-{tag}-fan-{r}"))
            .collect(),
    );
    let per_pub_rate = a.rate / a.publishers as f64;
    let per_pub_total = (a.seconds * per_pub_rate).floor() as u64;
    let window = Duration::from_secs_f64(a.seconds);
    let drain = Duration::from_secs(a.drain_secs);

    let latency = SharedHist::new();
    let lag = SharedHist::new();
    let timeline = Arc::new(Timeline::new(window + drain));
    let permits = Arc::new(Semaphore::new(a.concurrency.max(1)));
    let (setup_tx, mut setup_rx) = mpsc::unbounded_channel::<Result<(), Fail>>();
    let (start_tx, start_rx) = watch::channel::<Option<Start>>(None);
    let (sent_tx, sent_rx) = watch::channel::<Option<Arc<Vec<u64>>>>(None);
    let (pub_done_tx, mut pub_done_rx) = mpsc::unbounded_channel::<(usize, u64)>();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (results_tx, mut results_rx) = mpsc::unbounded_channel::<SubResult>();

    let mut subs = JoinSet::new();
    let mut pubs = JoinSet::new();
    for i in 0..total {
        let (ep, tokens, rooms, permits, layout) = (
            ep.clone(),
            tokens.clone(),
            rooms.clone(),
            permits.clone(),
            layout.clone(),
        );
        let setup_tx = setup_tx.clone();
        let mut start_rx = start_rx.clone();
        let room = i / layout.per_room();
        let k = i % layout.per_room();
        let room_id = rooms[room].clone();
        let setup = async move {
            let permit = permits.acquire_owned().await;
            let s = session(&ep, i, &tokens[i], Some(&rooms[room])).await;
            drop(permit);
            match s {
                Ok(s) => {
                    let _ = setup_tx.send(Ok(()));
                    Some(s.ws)
                }
                Err(f) => {
                    let _ = setup_tx.send(Err(f));
                    None
                }
            }
        };
        if k < layout.subs {
            let (mut sent_rx, rec) = (sent_rx.clone(), latency.recorder());
            let timeline = timeline.clone();
            let (results_tx, mut stop_rx) = (results_tx.clone(), stop_rx.clone());
            subs.spawn(async move {
                let Some(mut ws) = setup.await else {
                    return;
                };
                let r = subscribe(
                    &mut ws,
                    room,
                    k,
                    &layout,
                    &mut start_rx,
                    &mut sent_rx,
                    window,
                    drain,
                    rec,
                    &timeline,
                )
                .await;
                let _ = results_tx.send(r);
                drop(results_tx);
                // Stay in the room until everyone is done: a leave makes the server tell
                // the others, and they may still be counting.
                hold_until_stop(&mut ws, &mut stop_rx).await;
            });
        } else {
            let g = room * layout.pubs + (k - layout.subs);
            let plan = PubPlan {
                g,
                room_id,
                interval_us: 1e6 / per_pub_rate,
                phase_us: 1e6 / per_pub_rate * (g as f64 / total_pubs as f64),
                total: per_pub_total,
                pad: a.pad,
            };
            let (done_tx, mut stop_rx, rec) =
                (pub_done_tx.clone(), stop_rx.clone(), lag.recorder());
            pubs.spawn(async move {
                let Some(ws) = setup.await else {
                    let _ = done_tx.send((g, 0));
                    return None;
                };
                Some(publish(ws, plan, &mut start_rx, &mut stop_rx, done_tx, rec).await)
            });
        }
    }
    drop((setup_tx, pub_done_tx, results_tx));

    let setup_start = Instant::now();
    let mut joined = 0u64;
    let mut failures = BTreeMap::new();
    while let Some(r) = setup_rx.recv().await {
        match r {
            Ok(()) => joined += 1,
            Err(f) => *failures.entry(f.0).or_default() += 1,
        }
    }
    let setup = setup_start.elapsed();
    eprintln!(
        "fanout [{}]: {joined}/{total} connections joined in {:.1} s",
        a.server.label,
        setup.as_secs_f64()
    );
    if joined < total as u64 {
        // Without every member the accounting means nothing: stop everyone and say why.
        let _ = stop_tx.send(true);
        drop(start_tx);
        subs.shutdown().await;
        pubs.shutdown().await;
        bail!(
            "{} of {total} connections failed to set up: {}",
            total as u64 - joined,
            counts_line(&failures)
        );
    }
    tokio::time::sleep(Duration::from_millis(a.settle_ms)).await;

    let cpu = CpuMark::start(&a.server)?;
    let start = Start {
        at: Instant::now() + START_LEAD,
        at_us: clock_us() + START_LEAD.as_micros() as u64,
    };
    let _ = start_tx.send(Some(start));

    let mut sent = vec![0u64; total_pubs];
    while let Some((g, n)) = pub_done_rx.recv().await {
        sent[g] = n;
    }
    let sent = Arc::new(sent);
    let _ = sent_tx.send(Some(sent.clone()));

    let mut results = Vec::with_capacity(a.rooms * a.subscribers);
    while let Some(r) = results_rx.recv().await {
        results.push(r);
    }
    let used = cpu.stop(&a.server)?;
    let _ = stop_tx.send(true);
    while let Some(r) = subs.join_next().await {
        r?;
    }
    let (mut echoes, mut pub_ended) = (0u64, BTreeMap::<String, u64>::new());
    while let Some(r) = pubs.join_next().await {
        if let Some(p) = r? {
            echoes += p.echoes;
            if let Some(e) = p.ended {
                *pub_ended.entry(e).or_default() += 1;
            }
        }
    }

    // Totals and the subscribers that saw anything but clean delivery.
    let mut totals = Tally::default();
    let (mut delivered, mut in_window, mut last_us) = (0u64, 0u64, start.at_us);
    let mut sub_ended = BTreeMap::<String, u64>::new();
    let mut anomalies = Vec::new();
    let mut affected = 0u64;
    for r in &results {
        let room_sent = &sent[r.room * a.publishers..(r.room + 1) * a.publishers];
        let t = r.ledger.tally(room_sent);
        totals.add(&t);
        delivered += r.delivered;
        in_window += r.in_window;
        last_us = last_us.max(r.last_us);
        if let Some(e) = &r.ended {
            *sub_ended.entry(e.clone()).or_default() += 1;
        }
        if t.anomalous() {
            affected += 1;
            if anomalies.len() < a.list_anomalies {
                anomalies.push(json!({
                    "room": r.room, "subscriber": r.index, "received": t.received,
                    "lost": t.lost, "duplicates": t.duplicates,
                    "out_of_order": t.out_of_order, "foreign": t.foreign,
                }));
            }
        }
    }
    let sent_total: u64 = sent.iter().sum();
    let expected = sent_total * a.subscribers as u64;
    let h = latency.snapshot();
    let lag = lag.snapshot();
    let out = json!({
        "scenario": "fanout",
        "label": a.server.label,
        "url": ep.url(),
        "params": {
            "rooms": a.rooms, "subscribers": a.subscribers, "publishers": a.publishers,
            "rate": a.rate, "seconds": a.seconds, "pad": a.pad,
            "source_ips": ep.source_count(), "drain_secs": a.drain_secs,
        },
        "connections": total,
        "setup_s": round3(setup.as_secs_f64()),
        "sent": sent_total,
        "offered_per_s": round1(a.rate * a.rooms as f64 * a.subscribers as f64),
        "expected": expected,
        "delivered": delivered,
        "delivered_in_window": in_window,
        "delivered_per_s": rate_over(in_window, window),
        // From the end of the sending window to the last delivery.
        "drain_ms": round1(last_us.saturating_sub(start.at_us + window.as_micros() as u64) as f64 / 1000.0),
        "publisher_echoes": echoes,
        "latency_us": latency_json(&h),
        "publisher_lag_us": latency_json(&lag),
        "worst_windows": timeline.worst(WORST_WINDOWS).iter().map(|(at_ms, us)| json!({"at_ms": at_ms, "max_us": us})).collect::<Vec<_>>(),
        "lost": totals.lost,
        "duplicates": totals.duplicates,
        "out_of_order": totals.out_of_order,
        "foreign": totals.foreign,
        "subscribers_with_anomalies": affected,
        "anomalies": anomalies,
        "subscribers_ended_early": counts_json(&sub_ended),
        "publishers_ended_early": counts_json(&pub_ended),
        "cpu": used.json(),
        "deliveries_per_server_cpu_s": used.per_server_second(delivered.saturating_sub(totals.duplicates)),
    });
    println!("{out}");
    eprintln!(
        "  {} rooms x {} subscribers x {} publishers at {} msgs/s per room for {} s: sent {sent_total}, delivered {delivered} of {expected} ({}/s in the window, {:.0}/s offered)",
        a.rooms,
        a.subscribers,
        a.publishers,
        a.rate,
        a.seconds,
        rate_over(in_window, window),
        a.rate * (a.rooms * a.subscribers) as f64
    );
    eprintln!("  latency: {}", latency_line(&h));
    eprintln!(
        "  worst {} ms windows by send time: {}",
        Timeline::BUCKET_MS,
        timeline
            .worst(WORST_WINDOWS)
            .iter()
            .map(|(at_ms, us)| format!(
                "{:.1} s max {:.1} ms",
                *at_ms as f64 / 1000.0,
                *us as f64 / 1000.0
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!(
        "  lost {}, duplicates {}, out of order {}, foreign {} ({affected} subscribers affected); publishers behind schedule: {}",
        totals.lost,
        totals.duplicates,
        totals.out_of_order,
        totals.foreign,
        latency_line(&lag)
    );
    eprintln!(
        "  {}; ended early: subscribers {}, publishers {}",
        used.line(),
        counts_line(&sub_ended),
        counts_line(&pub_ended)
    );
    Ok(())
}

/// What a connection's next frame was, outside the marked messages.
enum Other {
    Frame,
    Ended(String),
}

/// Classifies a frame that was not a marked message (or the end of the stream).
fn other(msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> Other {
    match msg {
        Some(Ok(Message::Close(f))) => {
            Other::Ended(format!("closed {}", f.map_or(1005, |f| u16::from(f.code))))
        }
        Some(Ok(_)) => Other::Frame,
        Some(Err(e)) => Other::Ended(ws_error_label(&e)),
        None => Other::Ended("closed".into()),
    }
}

/// Reads until the start is announced; `Err` if the connection ended or the run was
/// called off.
async fn await_start(
    ws: &mut Ws,
    start_rx: &mut watch::Receiver<Option<Start>>,
) -> Result<Start, String> {
    loop {
        if let Some(s) = *start_rx.borrow_and_update() {
            return Ok(s);
        }
        tokio::select! {
            r = start_rx.changed() => if r.is_err() { return Err("run called off".into()) },
            msg = ws.next() => if let Other::Ended(e) = other(msg) { return Err(e) },
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn subscribe(
    ws: &mut Ws,
    room: usize,
    index: usize,
    layout: &Layout,
    start_rx: &mut watch::Receiver<Option<Start>>,
    sent_rx: &mut watch::Receiver<Option<Arc<Vec<u64>>>>,
    window: Duration,
    drain: Duration,
    mut rec: Recorder,
    timeline: &Timeline,
) -> SubResult {
    let mut r = SubResult {
        room,
        index,
        ledger: Ledger::new((room * layout.pubs) as u32, layout.pubs as u32),
        delivered: 0,
        in_window: 0,
        last_us: 0,
        ended: None,
    };
    rec.prepare();
    let start = match await_start(ws, start_rx).await {
        Ok(s) => s,
        Err(e) => {
            r.ended = Some(e);
            return r;
        }
    };
    let window_end_us = start.at_us + window.as_micros() as u64;
    let deadline = tokio::time::sleep_until(start.at + window + drain);
    tokio::pin!(deadline);
    let mut expected: Option<u64> = None;
    loop {
        if expected.is_some_and(|e| r.ledger.distinct() >= e) {
            break;
        }
        tokio::select! {
            biased;
            msg = ws.next() => {
                if let Some(Ok(Message::Text(t))) = &msg
                    && let Some(m) = Marker::find(t.as_str())
                {
                    let now = clock_us();
                    r.delivered += 1;
                    if now <= window_end_us {
                        r.in_window += 1;
                    }
                    r.last_us = now;
                    if matches!(r.ledger.record(&m), Seen::InOrder | Seen::OutOfOrder) {
                        let us = now.saturating_sub(m.sent_us).max(1);
                        rec.record(us);
                        timeline.note(m.sent_us.saturating_sub(start.at_us), us);
                    }
                    continue;
                }
                if let Other::Ended(e) = other(msg) {
                    r.ended = Some(e);
                    break;
                }
            }
            changed = sent_rx.changed(), if expected.is_none() => {
                if changed.is_err() {
                    break;
                }
                if let Some(sent) = sent_rx.borrow_and_update().as_ref() {
                    expected = Some(sent[room * layout.pubs..(room + 1) * layout.pubs].iter().sum());
                }
            }
            _ = &mut deadline => break,
        }
    }
    r
}

/// Reads (and ignores) frames until the run is over, then closes.
async fn hold_until_stop(ws: &mut Ws, stop_rx: &mut watch::Receiver<bool>) {
    while !*stop_rx.borrow_and_update() {
        tokio::select! {
            c = stop_rx.changed() => if c.is_err() { break },
            msg = ws.next() => if let Other::Ended(_) = other(msg) { return },
        }
    }
    let _ = ws.close(None).await;
}

/// One publisher's schedule: message `seq` is due `phase + seq * interval` after the
/// start. Phases spread the publishers over one interval, so rooms do not send in step.
struct PubPlan {
    g: usize,
    room_id: String,
    interval_us: f64,
    phase_us: f64,
    total: u64,
    pad: usize,
}

impl PubPlan {
    fn due_us(&self, start_us: u64, seq: u64) -> u64 {
        start_us + (self.phase_us + seq as f64 * self.interval_us) as u64
    }

    fn frame(&self, seq: u64, now_us: u64) -> Message {
        let marker = Marker {
            publisher: self.g as u32,
            seq,
            sent_us: now_us,
        };
        message_frame(&self.room_id, &marker, self.pad)
    }
}

async fn publish(
    mut ws: Ws,
    plan: PubPlan,
    start_rx: &mut watch::Receiver<Option<Start>>,
    stop_rx: &mut watch::Receiver<bool>,
    done: mpsc::UnboundedSender<(usize, u64)>,
    mut lag: Recorder,
) -> PubResult {
    let mut r = PubResult {
        echoes: 0,
        ended: None,
    };
    let start = match await_start(&mut ws, start_rx).await {
        Ok(s) => s,
        Err(e) => {
            let _ = done.send((plan.g, 0));
            r.ended = Some(e);
            return r;
        }
    };
    let mut seq = 0u64;
    let mut unflushed = 0usize;
    while seq < plan.total && r.ended.is_none() {
        let due = plan.due_us(start.at_us, seq);
        let now = clock_us();
        if due <= now && unflushed < SEND_BATCH {
            lag.record(now - due + 1);
            if let Err(e) = ws.feed(plan.frame(seq, now)).await {
                r.ended = Some(format!("send: {}", ws_error_label(&e)));
                break;
            }
            seq += 1;
            unflushed += 1;
            continue;
        }
        if unflushed > 0 {
            if let Err(e) = ws.flush().await {
                r.ended = Some(format!("send: {}", ws_error_label(&e)));
                break;
            }
            unflushed = 0;
            continue;
        }
        let wake = start.at + Duration::from_micros(due - start.at_us);
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            msg = ws.next() => r.ended = count_echo(msg, &mut r.echoes),
        }
    }
    if unflushed > 0
        && let Err(e) = ws.flush().await
    {
        r.ended = Some(format!("send: {}", ws_error_label(&e)));
    }
    let _ = done.send((plan.g, seq));
    drop(done);
    // Keep reading (own echoes) until the subscribers are done, so that leaving the
    // room sends them nothing while they are still counting.
    while r.ended.is_none() && !*stop_rx.borrow_and_update() {
        tokio::select! {
            c = stop_rx.changed() => if c.is_err() { break },
            msg = ws.next() => r.ended = count_echo(msg, &mut r.echoes),
        }
    }
    let _ = ws.close(None).await;
    r
}

/// Counts a publisher's own message coming back; `Some(reason)` if the stream ended.
fn count_echo(
    msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    echoes: &mut u64,
) -> Option<String> {
    if let Some(Ok(Message::Text(t))) = &msg
        && t.as_str().contains(crate::accounting::MARKER_TAG)
    {
        *echoes += 1;
        return None;
    }
    match other(msg) {
        Other::Ended(e) => Some(e),
        Other::Frame => None,
    }
}
