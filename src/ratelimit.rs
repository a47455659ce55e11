//! The seed's three rate limits as in-process governor keyed limiters (GCRA: a burst of
//! `points`, refilled evenly over `duration_secs`). Keys are user ids after auth and
//! client IPs before it; IPv6 clients are keyed by their /64 so one host cannot dodge
//! the limit by rotating addresses. governor keeps every key it has seen, so `sweep`
//! (called by the sweeper, and early when `max_keys` is passed) drops idle ones. This
//! module decides only "allowed or wait N ms"; it never sends anything.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota as GQuota};

use crate::config::{Quota, RateLimitConfig};

/// Who a limit applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    User(Arc<str>),
    Ip(IpAddr),
}

impl Key {
    /// The key for a client IP: IPv4 as is, IPv6 by /64.
    pub fn ip(ip: IpAddr) -> Key {
        match crate::config::canonical(ip) {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & (u128::MAX << 64);
                Key::Ip(IpAddr::V6(bits.into()))
            }
            v4 => Key::Ip(v4),
        }
    }
}

/// Which limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Message,
    Auth,
    Join,
    /// `/auth/login` and `/auth/refresh` attempts per client IP.
    Login,
}

/// Refusal events recorded per key per minute.
const EVENTS_PER_MINUTE: u32 = 10;

struct One {
    limiter: DefaultKeyedRateLimiter<Key>,
    checks: AtomicU64,
}

/// The three limiters; `None` inside when limits are disabled.
pub struct Limiters {
    message: Option<One>,
    auth: Option<One>,
    join: Option<One>,
    login: Option<One>,
    /// Security events about refusals (rate limited, origin refused) per key: always on,
    /// so a flood of refused frames cannot flood the event log and push real events out.
    events: One,
    max_keys: usize,
    clock: DefaultClock,
}

fn build(q: Quota, enabled: bool) -> Option<One> {
    if !enabled {
        return None;
    }
    let points = NonZeroU32::new(q.points)?;
    let period = Duration::from_secs(q.duration_secs) / q.points;
    let quota = GQuota::with_period(period)?.allow_burst(points);
    Some(One {
        limiter: DefaultKeyedRateLimiter::keyed(quota),
        checks: AtomicU64::new(0),
    })
}

impl Limiters {
    /// Builds the limiters from config.
    pub fn new(cfg: &RateLimitConfig) -> Limiters {
        Limiters {
            message: build(cfg.message, cfg.enabled),
            auth: build(cfg.auth, cfg.enabled),
            join: build(cfg.join, cfg.enabled),
            login: None,
            events: build(
                Quota {
                    points: EVENTS_PER_MINUTE,
                    duration_secs: 60,
                },
                true,
            )
            .expect("constant quota is valid"),
            max_keys: cfg.max_keys,
            clock: DefaultClock::default(),
        }
    }

    /// Adds the login limiter (`accounts.login`), unless limits are disabled.
    pub fn with_login(mut self, quota: Quota, enabled: bool) -> Limiters {
        self.login = build(quota, enabled);
        self
    }

    fn get(&self, which: Limit) -> Option<&One> {
        match which {
            Limit::Message => self.message.as_ref(),
            Limit::Auth => self.auth.as_ref(),
            Limit::Join => self.join.as_ref(),
            Limit::Login => self.login.as_ref(),
        }
    }

    /// Takes one point for `key`; `Err(ms)` says how long until the next point.
    pub fn check(&self, which: Limit, key: &Key) -> Result<(), u64> {
        let Some(one) = self.get(which) else {
            return Ok(());
        };
        // Counting keys costs a walk over the shards, so do it every 1024 checks only.
        if one.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 1023
            && one.limiter.len() > self.max_keys
        {
            one.limiter.retain_recent();
        }
        one.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            // Round up: retrying after exactly this long must succeed.
            (wait.as_micros().div_ceil(1000) as u64).max(1)
        })
    }

    /// Whether a refusal event for `key` should be recorded (at most
    /// `EVENTS_PER_MINUTE` per key per minute, whether limits are enabled or not).
    pub fn allow_event(&self, key: &Key) -> bool {
        self.events.limiter.check_key(key).is_ok()
    }

    /// Drops keys whose limit has fully refilled.
    pub fn sweep(&self) {
        self.events.limiter.retain_recent();
        self.events.limiter.shrink_to_fit();
        for one in [&self.message, &self.auth, &self.join, &self.login]
            .into_iter()
            .flatten()
        {
            one.limiter.retain_recent();
            one.limiter.shrink_to_fit();
        }
    }

    /// Keys currently tracked, summed over limiters.
    pub fn tracked_keys(&self) -> usize {
        [&self.message, &self.auth, &self.join, &self.login]
            .into_iter()
            .flatten()
            .map(|o| o.limiter.len())
            .sum()
    }
}

/// Failed attempts per key in a sliding window (failed logins per account, as OWASP ASVS
/// asks). An attempt takes its slot before the password is checked, under the lock, so
/// parallel attempts cannot all pass a check made before any of them failed; a failure
/// keeps its slot, and a success clears the key. So a user who types the password right
/// starts afresh, and no more than `points` guesses in a row ever reach the hasher.
pub struct FailureWindow {
    points: usize,
    window_ms: u64,
    /// Locking rule: map updates only; no await, no I/O.
    map: Mutex<HashMap<String, VecDeque<u64>>>,
}

impl FailureWindow {
    pub fn new(q: Quota) -> FailureWindow {
        FailureWindow {
            points: q.points as usize,
            window_ms: q.duration_secs.saturating_mul(1000),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<u64>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for one attempt at `now_ms`, counted as a failure until released.
    /// `Err(ms)` when `key` has no slot left: ms until the oldest one ages out.
    pub fn reserve(&self, key: &str, now_ms: u64) -> Result<(), u64> {
        let mut map = self.lock();
        let q = map.entry(key.to_string()).or_default();
        while q.front().is_some_and(|t| t + self.window_ms <= now_ms) {
            q.pop_front();
        }
        match q.front() {
            Some(oldest) if q.len() >= self.points => {
                Err((oldest + self.window_ms).saturating_sub(now_ms).max(1))
            }
            _ => {
                q.push_back(now_ms);
                Ok(())
            }
        }
    }

    /// Forgets `key`'s failures: the right password ends a run of wrong ones (attempts
    /// still in flight lose their slots too; at most `points` of them can be).
    pub fn reset(&self, key: &str) {
        let mut map = self.lock();
        map.remove(key);
        crate::maps::shrink_if_sparse(&mut map);
    }

    /// Drops keys whose failures have all aged out.
    pub fn sweep(&self, now_ms: u64) {
        let mut map = self.lock();
        map.retain(|_, q| q.back().is_some_and(|t| t + self.window_ms > now_ms));
        crate::maps::shrink_if_sparse(&mut map);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn failure_window_counts_only_failures() {
        let w = FailureWindow::new(Quota {
            points: 2,
            duration_secs: 10,
        });
        // A success clears the key, earlier failures included.
        assert!(w.reserve("a", 0).is_ok());
        assert!(w.reserve("a", 0).is_ok());
        w.reset("a");
        assert!(w.lock().is_empty());
        // Failures keep theirs; the third attempt finds none left.
        assert!(w.reserve("a", 0).is_ok());
        assert!(w.reserve("a", 1000).is_ok());
        assert_eq!(w.reserve("a", 2000), Err(8000));
        assert!(w.reserve("b", 2000).is_ok());
        assert!(w.reserve("a", 10_000).is_ok());
        w.sweep(30_000);
        assert!(w.lock().is_empty());
    }

    /// Attempts in flight hold their slots: with 2 points, 2 reservations and no outcome
    /// yet, a third attempt is refused.
    #[test]
    fn failure_window_reservations_count_before_their_outcome() {
        let w = FailureWindow::new(Quota {
            points: 2,
            duration_secs: 10,
        });
        assert!(w.reserve("a", 5).is_ok());
        assert!(w.reserve("a", 5).is_ok());
        assert!(w.reserve("a", 5).is_err());
        w.reset("a");
        assert!(w.reserve("a", 6).is_ok());
    }

    use super::*;

    #[test]
    fn burst_then_refill() {
        let cfg = RateLimitConfig {
            auth: Quota {
                points: 3,
                duration_secs: 3,
            },
            ..RateLimitConfig::default()
        };
        let l = Limiters::new(&cfg);
        let k = Key::ip("127.0.0.1".parse().unwrap());
        for _ in 0..3 {
            assert!(l.check(Limit::Auth, &k).is_ok());
        }
        let wait = l.check(Limit::Auth, &k).unwrap_err();
        assert!(wait > 0 && wait <= 1000, "{wait}");
        std::thread::sleep(Duration::from_millis(wait + 20));
        assert!(l.check(Limit::Auth, &k).is_ok());
        assert!(l.check(Limit::Auth, &k).is_err());
    }

    #[test]
    fn ipv6_keyed_by_slash_64() {
        let a = Key::ip("2001:db8::1".parse().unwrap());
        let b = Key::ip("2001:db8::ffff".parse().unwrap());
        let c = Key::ip("2001:db8:0:1::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn disabled_allows_everything() {
        let cfg = RateLimitConfig {
            enabled: false,
            ..RateLimitConfig::default()
        };
        let l = Limiters::new(&cfg);
        let k = Key::User("u".into());
        for _ in 0..1000 {
            assert!(l.check(Limit::Message, &k).is_ok());
        }
    }
}
