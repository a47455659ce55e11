//! Operations routes: `GET /readyz` (ready only while the store answers and shutdown has
//! not begun) and `GET /metrics` (Prometheus text). Metrics are protected: with
//! `metrics.token` set they need `Authorization: Bearer <token>`; without it they are
//! served only to a direct loopback peer that is not a trusted proxy and sent no
//! forwarding header (`X-Forwarded-For`, `X-Real-IP`, `Forwarded`, ...), so a local
//! reverse proxy cannot expose them by accident, whichever header it sets. These routes
//! only read counters and registries; they never write.

use http::HeaderMap;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Reply;

use super::{HttpError, PeerAddr, with_state};
use crate::metrics::Gauges;
use crate::state::AppState;

/// The operations routes.
pub fn routes(state: AppState) -> BoxedFilter<(warp::reply::Response,)> {
    let ready = warp::path!("readyz")
        .and(warp::get())
        .and(with_state(state.clone()))
        .map(readyz);
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_state(state))
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<PeerAddr>())
        .map(metrics);
    ready.or(metrics).unify().boxed()
}

/// GET /readyz
fn readyz(state: AppState) -> warp::reply::Response {
    if state.shutdown.is_cancelled() {
        return HttpError::NotReady.response();
    }
    match state.store.ping() {
        Ok(()) => warp::reply::json(&serde_json::json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "readiness check: store does not answer");
            HttpError::NotReady.response()
        }
    }
}

/// GET /metrics
fn metrics(state: AppState, headers: HeaderMap, peer: Option<PeerAddr>) -> warp::reply::Response {
    let allowed = match &state.cfg.metrics.token {
        Some(token) => headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.as_bytes(), token.expose().as_bytes())),
        None => is_direct_loopback(&state, &headers, peer),
    };
    if !allowed {
        return match state.cfg.metrics.token {
            Some(_) => HttpError::InvalidToken.response(),
            None => HttpError::MetricsForbidden.response(),
        };
    }
    let (connections, authenticated) = state.registry.counts();
    let (rooms, participants) = state.hub.counts();
    let page = state.metrics.render(&Gauges {
        connections,
        authenticated,
        rooms,
        participants,
        db_bytes: state.store.size_on_disk().unwrap_or(0),
    });
    warp::reply::with_header(page, "content-type", "text/plain; version=0.0.4").into_response()
}

/// Headers a proxy uses to name the client it forwards for. A proxy that sets any of
/// them (nginx's `proxy_set_header X-Real-IP` alone is common) is forwarding, so the
/// request is not the local scraper's, whoever the socket peer is.
const FORWARDING_HEADERS: [&str; 6] = [
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-host",
    "true-client-ip",
    "cf-connecting-ip",
];

/// Whether a request comes straight from a scraper on this host: a loopback peer that
/// is not a trusted proxy (everything through a proxy may come from anywhere) and sent
/// no forwarding header.
fn is_direct_loopback(state: &AppState, headers: &HeaderMap, peer: Option<PeerAddr>) -> bool {
    let Some(ip) = peer.map(|p| crate::config::canonical(p.0.ip())) else {
        return false;
    };
    ip.is_loopback()
        && !state.trusted_proxies.iter().any(|c| c.contains(ip))
        && !FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
