//! `/auth/*`: the token endpoints of the built-in identity provider. JSON in, JSON out;
//! bodies are size-limited before they are read; every refusal is `{code, message}` from
//! the `HttpError` registry, with `Retry-After` on 429. The flows themselves live in
//! `accounts`; this file only adapts HTTP to them.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Reply;

use super::{HttpError, PeerAddr, client_ip};
use crate::accounts::{self, Refusal};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: String,
}

/// The `/auth` routes.
pub fn routes(state: AppState) -> BoxedFilter<(warp::reply::Response,)> {
    let max = state.cfg.accounts.max_body_bytes;
    let with_state = {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    let body = warp::body::content_length_limit(max).and(warp::body::bytes());
    let ip = warp::header::headers_cloned()
        .and(warp::ext::optional::<PeerAddr>())
        .and(with_state.clone())
        .map(|h: HeaderMap, p: Option<PeerAddr>, s: AppState| {
            let peer = p.map_or(std::net::IpAddr::from([127, 0, 0, 1]), |p| p.0.ip());
            client_ip(peer, &h, &s.trusted_proxies)
        });

    let login = warp::path!("auth" / "login")
        .and(warp::post())
        .and(with_state.clone())
        .and(ip.clone())
        .and(body)
        .then(
            |state: AppState, ip: std::net::IpAddr, body: Bytes| async move {
                let b: LoginBody = match parse(&body, ip) {
                    Ok(b) => b,
                    Err(e) => return e.response(),
                };
                let delay = state.cfg.accounts.refusal_delay_ms;
                reply(
                    accounts::login(&state, ip, &b.username, &b.password).await,
                    delay,
                )
                .await
            },
        );
    let refresh = warp::path!("auth" / "refresh")
        .and(warp::post())
        .and(with_state.clone())
        .and(ip)
        .and(warp::body::content_length_limit(max).and(warp::body::bytes()))
        .then(
            |state: AppState, ip: std::net::IpAddr, body: Bytes| async move {
                let b: RefreshBody = match parse(&body, ip) {
                    Ok(b) => b,
                    Err(e) => return e.response(),
                };
                let delay = state.cfg.accounts.refusal_delay_ms;
                reply(accounts::refresh(&state, ip, &b.refresh_token).await, delay).await
            },
        );
    let logout = warp::path!("auth" / "logout")
        .and(warp::post())
        .and(with_state)
        .and(warp::header::optional::<String>("authorization"))
        .then(|state: AppState, authz: Option<String>| async move {
            let Some(token) = authz
                .as_deref()
                .and_then(|h| {
                    h.strip_prefix("Bearer ")
                        .or_else(|| h.strip_prefix("bearer "))
                })
                .map(str::trim)
                .filter(|t| !t.is_empty())
            else {
                return HttpError::InvalidToken.response();
            };
            match accounts::logout(&state, token).await {
                Ok(()) => warp::reply::with_status(
                    warp::reply::json(&serde_json::json!({"ok": true})),
                    StatusCode::OK,
                )
                .into_response(),
                Err(r) => refusal(r),
            }
        });
    let enabled = state.cfg.accounts.enabled;
    warp::any()
        .and_then(move || async move {
            if enabled {
                Ok::<_, warp::Rejection>(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .and(login.or(refresh).unify().or(logout).unify())
        .boxed()
}

fn parse<T: DeserializeOwned>(body: &Bytes, ip: std::net::IpAddr) -> Result<T, HttpError> {
    serde_json::from_slice(body).map_err(|_| {
        // At `debug`, not `info`: no credential was tried, and these come before the
        // login rate limit, so at `info` they would let anyone flood the log.
        tracing::debug!(client_ip = %ip, "auth request refused: malformed body");
        HttpError::InvalidRequest
    })
}

async fn reply(
    result: Result<accounts::TokenPair, Refusal>,
    delay_ms: u64,
) -> warp::reply::Response {
    match result {
        Ok(pair) => {
            let mut res = warp::reply::json(&pair).into_response();
            // RFC 6749 5.1: token responses must not be cached.
            res.headers_mut()
                .insert("cache-control", HeaderValue::from_static("no-store"));
            res
        }
        Err(r) => refusal_after(r, delay_ms).await,
    }
}

/// Answers a refusal; a rate-limited one only after `accounts.refusal_delay_ms`.
async fn refusal_after(r: Refusal, delay_ms: u64) -> warp::reply::Response {
    if r.error == HttpError::TooManyAttempts && delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
    }
    refusal(r)
}

fn refusal(r: Refusal) -> warp::reply::Response {
    let mut res = r.error.response();
    if let Some(secs) = r.retry_after_secs {
        res.headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
    }
    res
}

/// Maps body-limit rejections to our codes; anything else is left for the caller.
pub fn body_rejection(rej: &warp::Rejection) -> Option<HttpError> {
    if rej.find::<warp::reject::PayloadTooLarge>().is_some() {
        Some(HttpError::PayloadTooLarge)
    } else if rej.find::<warp::reject::LengthRequired>().is_some() {
        Some(HttpError::InvalidRequest)
    } else {
        None
    }
}
