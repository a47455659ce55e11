//! Refusals by limits, for the operator's log: every request a rate limit, a connection
//! cap or a full room turns away is logged at `debug` where it is refused and counted
//! here, and one background task logs an `info` summary per period
//! (`log_refusal_summary_secs`) with the count per limit, only for periods in which
//! something was refused. A flood is thus one line a minute at `info`, not one per frame.
//! Recording is a relaxed atomic add (and a `debug!` that is off by default); the summary
//! never runs on a request's path. This module decides nothing (the limiters and caps
//! do) and never logs a token, a password or a user id.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `rate_limits.message`: client frames per user (per IP before `auth`).
    Message,
    /// `rate_limits.auth`: `auth` and `refresh` frames per IP.
    Auth,
    /// `rate_limits.join`: joins per user.
    Join,
    /// `accounts.login`: `/auth/login` and `/auth/refresh` per IP.
    Login,
    /// `accounts.failed_logins`: failed logins per account.
    FailedLogins,
    /// `connection.max_connections`: open TCP connections in total.
    Connections,
    /// `connection.max_connections_per_ip`: open TCP connections per client IP.
    ConnectionsPerIp,
    /// `connection.max_unauthenticated_per_ip`: sockets not yet authenticated per IP.
    UnauthenticatedPerIp,
    /// `connection.max_connections_per_user`: authenticated sockets per user.
    ConnectionsPerUser,
    /// The room's participant limit (`rooms.max_participants` or the room's own).
    RoomFull,
    /// `connection.max_rooms_per_connection`.
    RoomsPerConnection,
}

impl Refused {
    /// Every limit, in the order the summary lists them.
    pub const ALL: [Refused; 11] = [
        Refused::Message,
        Refused::Auth,
        Refused::Join,
        Refused::Login,
        Refused::FailedLogins,
        Refused::Connections,
        Refused::ConnectionsPerIp,
        Refused::UnauthenticatedPerIp,
        Refused::ConnectionsPerUser,
        Refused::RoomFull,
        Refused::RoomsPerConnection,
    ];

    /// The stable name used in log lines (and, for the rate limits, in metrics labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Message => "message",
            Refused::Auth => "auth",
            Refused::Join => "join",
            Refused::Login => "login",
            Refused::FailedLogins => "failed_logins",
            Refused::Connections => "connections",
            Refused::ConnectionsPerIp => "connections_per_ip",
            Refused::UnauthenticatedPerIp => "unauthenticated_per_ip",
            Refused::ConnectionsPerUser => "connections_per_user",
            Refused::RoomFull => "room_full",
            Refused::RoomsPerConnection => "rooms_per_connection",
        }
    }

    /// The setting that sets this limit, so a debug line says which knob to turn.
    pub fn setting(self) -> &'static str {
        match self {
            Refused::Message => "rate_limits.message",
            Refused::Auth => "rate_limits.auth",
            Refused::Join => "rate_limits.join",
            Refused::Login => "accounts.login",
            Refused::FailedLogins => "accounts.failed_logins",
            Refused::Connections => "connection.max_connections",
            Refused::ConnectionsPerIp => "connection.max_connections_per_ip",
            Refused::UnauthenticatedPerIp => "connection.max_unauthenticated_per_ip",
            Refused::ConnectionsPerUser => "connection.max_connections_per_user",
            Refused::RoomFull => "rooms.max_participants",
            Refused::RoomsPerConnection => "connection.max_rooms_per_connection",
        }
    }
}

/// Refusals counted since the last summary, one counter per limit.
#[derive(Default)]
pub struct Refusals {
    counts: [AtomicU64; Refused::ALL.len()],
}

impl Refusals {
    /// Logs one refusal at `debug` and counts it for the next summary.
    pub fn record(&self, limit: Refused, client_ip: IpAddr) {
        tracing::debug!(
            limit = limit.as_str(),
            setting = limit.setting(),
            client_ip = %client_ip,
            "request refused by a limit"
        );
        self.counts[limit as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts since the last call, zeroing them.
    pub fn take(&self) -> [u64; Refused::ALL.len()] {
        std::array::from_fn(|i| self.counts[i].swap(0, Ordering::Relaxed))
    }
}

/// `message=120 auth=3`: the limits that refused anything, in [`Refused::ALL`] order;
/// `None` when none did.
pub fn breakdown(counts: &[u64; Refused::ALL.len()]) -> Option<String> {
    let parts: Vec<String> = Refused::ALL
        .iter()
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(limit, n)| format!("{}={n}", limit.as_str()))
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// Logs the summary of the counts taken now, covering the last `window_secs`.
fn summarise(refusals: &Refusals, window_secs: u64) {
    let counts = refusals.take();
    if let Some(text) = breakdown(&counts) {
        let total: u64 = counts.iter().sum();
        // The counts are in the message, not fields, so a text line reads as one sentence;
        // `name=count` pairs after the colon are as easy for a collector to split.
        tracing::info!("limits refused {total} requests in the last {window_secs}s: {text}");
    }
}

/// Logs a summary every `every` while refusals happen, and one for the last partial
/// period when shutdown begins; returns then.
pub async fn run(refusals: Arc<Refusals>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the first summary covers a whole period.
    tick.tick().await;
    let mut since = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                summarise(&refusals, since.elapsed().as_secs().max(1));
                return;
            }
            _ = tick.tick() => {
                summarise(&refusals, every.as_secs());
                since = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_limit_and_resets_on_take() {
        let r = Refusals::default();
        let ip = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(breakdown(&r.take()), None);
        for _ in 0..3 {
            r.record(Refused::ConnectionsPerIp, ip);
        }
        r.record(Refused::Message, ip);
        assert_eq!(
            breakdown(&r.take()).as_deref(),
            Some("message=1 connections_per_ip=3")
        );
        assert_eq!(breakdown(&r.take()), None);
    }

    #[test]
    fn names_are_distinct_and_indexes_match() {
        for (i, limit) in Refused::ALL.iter().enumerate() {
            assert_eq!(*limit as usize, i);
            assert_eq!(
                Refused::ALL
                    .iter()
                    .filter(|l| l.as_str() == limit.as_str())
                    .count(),
                1
            );
        }
    }
}
