//! Measurement plumbing shared by every scenario: latency histograms (and a buffered
//! recorder so thousands of connection tasks can share one), the process clock that
//! send timestamps are taken from, counters by reason, and the number formats of the
//! JSON lines and summaries. It measures; it never talks to a server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::time::Instant;

/// Latencies are recorded in microseconds from 1 µs to 10 minutes, at 3 significant
/// digits (a value is reported within 0.1 % of what was measured).
const HIST_MAX_US: u64 = 600_000_000;
const HIST_SIGFIG: u8 = 3;
/// Values a [`Recorder`] holds before it takes the shared histogram's lock.
const RECORDER_BUFFER: usize = 512;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, HIST_SIGFIG).expect("constant bounds are valid")
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Microseconds on a monotonic clock shared by every task of this process. Publishers
/// embed it in what they send and subscribers in the same process subtract it from
/// their own reading: no wall clock, so no clock steps inside a measurement.
pub fn clock_us() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// A histogram shared by many tasks.
#[derive(Clone)]
pub struct SharedHist(Arc<Mutex<Histogram<u64>>>);

impl SharedHist {
    pub fn new() -> SharedHist {
        SharedHist(Arc::new(Mutex::new(new_histogram())))
    }

    /// A recorder that batches values into this histogram.
    pub fn recorder(&self) -> Recorder {
        Recorder {
            into: self.clone(),
            buf: Vec::new(),
        }
    }

    /// A copy of what has been recorded so far (recorders flush when dropped).
    pub fn snapshot(&self) -> Histogram<u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One task's handle on a [`SharedHist`]: values are buffered and added under the lock
/// a few hundred at a time, and whatever is left when it is dropped.
pub struct Recorder {
    into: SharedHist,
    buf: Vec<u64>,
}

impl Recorder {
    /// Allocates the buffer and touches its pages now. Call it before a measured window:
    /// ten thousand recorders first touching theirs as the window opens fault in 40 MiB
    /// at once and stall the tool's core for a few hundred ms, which a run would
    /// otherwise report as the server's latency (seen at the start of every 20x500
    /// fan-out run).
    pub fn prepare(&mut self) {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(RECORDER_BUFFER);
        }
        let len = self.buf.len();
        self.buf.resize(self.buf.capacity(), 0);
        self.buf.truncate(len);
    }

    pub fn record(&mut self, us: u64) {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(RECORDER_BUFFER);
        }
        self.buf.push(us);
        if self.buf.len() >= RECORDER_BUFFER {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let mut h = self.into.0.lock().unwrap_or_else(|p| p.into_inner());
        for &v in &self.buf {
            h.saturating_record(v);
        }
        self.buf.clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

pub fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
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

/// Events per second over whole seconds, one decimal.
pub fn rate(count: u64, seconds: u64) -> f64 {
    round1(count as f64 / seconds.max(1) as f64)
}

/// Events per second over a measured duration, one decimal.
pub fn rate_over(count: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s <= 0.0 {
        return 0.0;
    }
    round1(count as f64 / s)
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn fmt_us(us: u64) -> String {
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

pub fn latency_line(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".into();
    }
    format!(
        "p50 {}  p99 {}  p99.9 {}  max {}  (n = {})",
        fmt_us(h.value_at_quantile(0.5)),
        fmt_us(h.value_at_quantile(0.99)),
        fmt_us(h.value_at_quantile(0.999)),
        fmt_us(h.max()),
        h.len()
    )
}

pub fn add_counts<K: Ord>(into: &mut BTreeMap<K, u64>, from: BTreeMap<K, u64>) {
    for (k, v) in from {
        *into.entry(k).or_default() += v;
    }
}

pub fn counts_json<K: ToString>(m: &BTreeMap<K, u64>) -> Value {
    m.iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

pub fn counts_line<K: std::fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorders_flush_into_the_shared_histogram() {
        let shared = SharedHist::new();
        {
            let mut a = shared.recorder();
            let mut b = shared.recorder();
            for v in 1..=1000 {
                a.record(v);
                b.record(v * 2);
            }
            // 1000 each: some flushed by the buffer limit, the rest on drop.
        }
        let h = shared.snapshot();
        assert_eq!(h.len(), 2000);
        assert_eq!(h.max(), h.highest_equivalent(2000));
    }

    #[test]
    fn empty_latency_has_only_a_count() {
        assert_eq!(latency_json(&new_histogram()), json!({"count": 0}));
    }
}
