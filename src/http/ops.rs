//! Operations routes: `GET /readyz` (ready only while the store answers and shutdown has
//! not begun) and `GET /metrics` (Prometheus text). Metrics are protected: with
//! `metrics.token` set they need `Authorization: Bearer <token>`; without it they are
//! served only to a direct loopback peer that sent no `X-Forwarded-For` (so a local
//! reverse proxy cannot expose them by accident). These routes only read counters and
//! registries; they never write.

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
        None => {
            peer.is_some_and(|p| p.0.ip().is_loopback())
                && !headers.contains_key("x-forwarded-for")
                && !headers.contains_key("forwarded")
        }
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
