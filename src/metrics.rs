//! Counters and histograms for `GET /metrics`, in the Prometheus text format. Each
//! figure is one atomic owned here; the code that does the work bumps it with a single
//! relaxed add (never a lock on the message path; labelled counters, which only failure
//! paths touch, sit behind a short mutex). Gauges that another owner already knows
//! (connections, rooms, database size) are read from that owner when the page is
//! rendered, never duplicated. This module decides nothing and never blocks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets: 50 µs to 1 s.
const BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.25, 1.0,
];

/// A fixed-bucket latency histogram.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Counters by a label drawn from a fixed set of names (reasons, limiters).
#[derive(Default)]
pub struct LabelledCounter {
    /// Locking rule: one insert or read per failure; never held across anything else.
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl LabelledCounter {
    pub fn inc(&self, label: &'static str) {
        self.add(label, 1);
    }

    pub fn add(&self, label: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(label)
            .or_insert(0) += n;
    }

    fn render(&self, out: &mut String, name: &str, label: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (value, n) in counts {
            let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
        }
    }
}

/// Every figure the gateway counts.
#[derive(Default)]
pub struct Metrics {
    pub connections_opened: AtomicU64,
    pub messages_in: AtomicU64,
    /// Room messages published (one per broadcast).
    pub messages_out: AtomicU64,
    /// Frames queued to members by broadcasts (one per recipient).
    pub deliveries: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub auth_failures: LabelledCounter,
    pub rate_limited: LabelledCounter,
    /// Records removed by the sweeper, by kind.
    pub swept: LabelledCounter,
    /// Connections closed because a request body broke a rule (`deadline`, `min_rate`).
    pub body_timeouts: LabelledCounter,
    /// Time to fan one message out to a room's members.
    pub fanout: Histogram,
    /// Time to write one batch of history to the store.
    pub history_append: Histogram,
}

/// Figures owned elsewhere, read at render time.
pub struct Gauges {
    pub connections: usize,
    pub authenticated: usize,
    pub rooms: usize,
    pub participants: usize,
    pub db_bytes: u64,
}

impl Metrics {
    /// The page, in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        };
        gauge(
            &mut out,
            "roomgate_connections",
            "Open WebSocket connections.",
            g.connections as u64,
        );
        gauge(
            &mut out,
            "roomgate_connections_authenticated",
            "Authenticated WebSocket connections.",
            g.authenticated as u64,
        );
        gauge(&mut out, "roomgate_rooms", "Live rooms.", g.rooms as u64);
        gauge(
            &mut out,
            "roomgate_room_participants",
            "Distinct users summed over live rooms.",
            g.participants as u64,
        );
        gauge(
            &mut out,
            "roomgate_db_size_bytes",
            "Size of the sled database on disk.",
            g.db_bytes,
        );
        counter(
            &mut out,
            "roomgate_connections_opened_total",
            "WebSocket connections accepted.",
            &self.connections_opened,
        );
        counter(
            &mut out,
            "roomgate_messages_in_total",
            "Client frames received.",
            &self.messages_in,
        );
        counter(
            &mut out,
            "roomgate_messages_out_total",
            "Room messages published.",
            &self.messages_out,
        );
        counter(
            &mut out,
            "roomgate_deliveries_total",
            "Room frames queued to members.",
            &self.deliveries,
        );
        counter(
            &mut out,
            "roomgate_slow_consumers_total",
            "Connections closed because their outbound queue overflowed.",
            &self.slow_consumers,
        );
        self.auth_failures.render(
            &mut out,
            "roomgate_auth_failures_total",
            "reason",
            "Refused WebSocket authentications by reason.",
        );
        self.rate_limited.render(
            &mut out,
            "roomgate_rate_limited_total",
            "limiter",
            "Requests refused by a rate limiter.",
        );
        self.swept.render(
            &mut out,
            "roomgate_swept_total",
            "kind",
            "Records removed by the retention sweeper.",
        );
        self.body_timeouts.render(
            &mut out,
            "roomgate_body_timeouts_total",
            "reason",
            "Connections closed because a request body was too slow.",
        );
        self.fanout.render(
            &mut out,
            "roomgate_fanout_seconds",
            "Time to queue one room message to every member.",
        );
        self.history_append.render(
            &mut out,
            "roomgate_history_append_seconds",
            "Time to write one batch of history.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_labels_and_cumulative_buckets() {
        let m = Metrics::default();
        m.messages_in.fetch_add(3, Ordering::Relaxed);
        m.auth_failures.inc("expired");
        m.auth_failures.inc("expired");
        m.fanout.observe(Duration::from_micros(70));
        m.fanout.observe(Duration::from_millis(2));
        m.fanout.observe(Duration::from_secs(5));
        let page = m.render(&Gauges {
            connections: 2,
            authenticated: 1,
            rooms: 1,
            participants: 1,
            db_bytes: 42,
        });
        assert!(page.contains("roomgate_messages_in_total 3\n"));
        assert!(page.contains("roomgate_auth_failures_total{reason=\"expired\"} 2\n"));
        assert!(page.contains("roomgate_fanout_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(page.contains("roomgate_fanout_seconds_bucket{le=\"0.0025\"} 2\n"));
        assert!(page.contains("roomgate_fanout_seconds_bucket{le=\"1\"} 2\n"));
        assert!(page.contains("roomgate_fanout_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(page.contains("roomgate_fanout_seconds_count 3\n"));
        assert!(page.contains("roomgate_db_size_bytes 42\n"));
        // Every sample line belongs to a family announced by a TYPE line.
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                page.contains(&format!("# TYPE {family} ")),
                "no TYPE for {line}"
            );
        }
    }
}
