//! HTTP routes, by resource: `GET /healthz`, the `GET /ws` upgrade, the token endpoints
//! (`auth.rs`), the admin API (`api/`) and the embedded web assets (`assets.rs`). The upgrade is done here rather than with
//! `warp::ws()` so tungstenite gets small buffers and our frame limits, and so origin,
//! TLS and per-IP checks refuse a socket with an HTTP status before any upgrade. Each
//! refusal has a stable code in [`HttpError`]; one `recover` turns every rejection into
//! `{code, message}` JSON. Routes never touch the store directly: they call `accounts`,
//! `admin` and `principal`.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderValue, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Reply;

pub mod api;
pub mod assets;
pub mod auth;
pub mod echo;
pub mod ops;

use crate::audit::Outcome;
use crate::config::{Cidr, canonical};
use crate::conn;
use crate::ratelimit::Key;
use crate::state::AppState;

/// The peer address of the TCP connection, put into request extensions by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Marks a request that arrived over roomgate's own TLS.
#[derive(Debug, Clone, Copy)]
pub struct Secure;

/// The connection's upgrade handle, moved into a cloneable slot by the accept loop so a
/// filter can take it.
#[derive(Clone, Default)]
pub struct UpgradeSlot(pub std::sync::Arc<std::sync::Mutex<Option<OnUpgrade>>>);

/// Refusals answered over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// `GET /ws` without a valid WebSocket upgrade request.
    UpgradeRequired,
    /// The Origin is not in `security.allowed_origins`.
    OriginNotAllowed,
    /// `security.require_tls` is on and no trusted proxy reported HTTPS.
    TlsRequired,
    /// The client IP has `connection.max_unauthenticated_per_ip` unauthenticated sockets.
    TooManyUnauthenticated,
    /// No such route.
    NotFound,
    /// The method is not allowed on this route.
    MethodNotAllowed,
    /// The request body is not the JSON the endpoint expects.
    InvalidRequest,
    /// The request body is larger than `accounts.max_body_bytes`.
    PayloadTooLarge,
    /// The request body did not arrive within `connection.body_read_timeout_secs` or at
    /// `connection.body_min_bytes_per_sec`; the connection is closed after this answer.
    RequestTimeout,
    /// Login failed: unknown user, wrong password or disabled account (one answer for all).
    InvalidCredentials,
    /// The refresh token is unknown, expired, rotated or revoked.
    InvalidGrant,
    /// The bearer access token is missing, invalid or not roomgate's own.
    InvalidToken,
    /// Too many login attempts from this IP or for this account; see `Retry-After`.
    TooManyAttempts,
    /// Built-in accounts are turned off (`accounts.enabled = false`).
    AccountsDisabled,
    /// `/metrics` without `metrics.token` asked by anyone but a direct loopback peer.
    MetricsForbidden,
    /// `/readyz` while the store does not answer or shutdown has begun.
    NotReady,
    /// `/api/v1`: no `Authorization` or `X-Api-Key` header.
    AuthenticationRequired,
    /// `/api/v1`: the API key is unknown or revoked.
    InvalidApiKey,
    /// `/api/v1`: valid credentials without the permission the route needs.
    InsufficientPermissions,
    /// `/api/v1`: a body field, path segment or query parameter is invalid; `field` names it.
    InvalidField,
    /// `/api/v1`: no such account.
    UserNotFound,
    /// `/api/v1`: no such room.
    RoomNotFound,
    /// `/api/v1`: no such role.
    RoleNotFound,
    /// `/api/v1`: no such session of this user.
    SessionNotFound,
    /// `/api/v1`: no API key with that name or id.
    ApiKeyNotFound,
    /// `/api/v1`: an account, room or API key with that name exists.
    AlreadyExists,
    /// `/api/v1`: built-in roles may be edited but not deleted.
    BuiltinRole,
    /// A server fault; the cause is in the server log.
    Internal,
}

impl HttpError {
    /// Every variant, in README order.
    pub const ALL: [HttpError; 28] = [
        HttpError::UpgradeRequired,
        HttpError::OriginNotAllowed,
        HttpError::TlsRequired,
        HttpError::TooManyUnauthenticated,
        HttpError::NotFound,
        HttpError::MethodNotAllowed,
        HttpError::InvalidRequest,
        HttpError::PayloadTooLarge,
        HttpError::RequestTimeout,
        HttpError::InvalidCredentials,
        HttpError::InvalidGrant,
        HttpError::InvalidToken,
        HttpError::TooManyAttempts,
        HttpError::AccountsDisabled,
        HttpError::MetricsForbidden,
        HttpError::NotReady,
        HttpError::AuthenticationRequired,
        HttpError::InvalidApiKey,
        HttpError::InsufficientPermissions,
        HttpError::InvalidField,
        HttpError::UserNotFound,
        HttpError::RoomNotFound,
        HttpError::RoleNotFound,
        HttpError::SessionNotFound,
        HttpError::ApiKeyNotFound,
        HttpError::AlreadyExists,
        HttpError::BuiltinRole,
        HttpError::Internal,
    ];

    pub fn status(self) -> StatusCode {
        match self {
            HttpError::UpgradeRequired => StatusCode::BAD_REQUEST,
            HttpError::OriginNotAllowed => StatusCode::FORBIDDEN,
            HttpError::TlsRequired => StatusCode::FORBIDDEN,
            HttpError::TooManyUnauthenticated => StatusCode::TOO_MANY_REQUESTS,
            HttpError::NotFound => StatusCode::NOT_FOUND,
            HttpError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::InvalidRequest => StatusCode::BAD_REQUEST,
            HttpError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            HttpError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            HttpError::InvalidGrant => StatusCode::UNAUTHORIZED,
            HttpError::InvalidToken => StatusCode::UNAUTHORIZED,
            HttpError::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            HttpError::AccountsDisabled => StatusCode::NOT_FOUND,
            HttpError::MetricsForbidden => StatusCode::FORBIDDEN,
            HttpError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::AuthenticationRequired => StatusCode::UNAUTHORIZED,
            HttpError::InvalidApiKey => StatusCode::UNAUTHORIZED,
            HttpError::InsufficientPermissions => StatusCode::FORBIDDEN,
            HttpError::InvalidField => StatusCode::BAD_REQUEST,
            HttpError::UserNotFound => StatusCode::NOT_FOUND,
            HttpError::RoomNotFound => StatusCode::NOT_FOUND,
            HttpError::RoleNotFound => StatusCode::NOT_FOUND,
            HttpError::SessionNotFound => StatusCode::NOT_FOUND,
            HttpError::ApiKeyNotFound => StatusCode::NOT_FOUND,
            HttpError::AlreadyExists => StatusCode::CONFLICT,
            HttpError::BuiltinRole => StatusCode::CONFLICT,
            HttpError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            HttpError::UpgradeRequired => "upgrade_required",
            HttpError::OriginNotAllowed => "origin_not_allowed",
            HttpError::TlsRequired => "tls_required",
            HttpError::TooManyUnauthenticated => "too_many_unauthenticated",
            HttpError::NotFound => "not_found",
            HttpError::MethodNotAllowed => "method_not_allowed",
            HttpError::InvalidRequest => "invalid_request",
            HttpError::PayloadTooLarge => "payload_too_large",
            HttpError::RequestTimeout => "request_timeout",
            HttpError::InvalidCredentials => "invalid_credentials",
            HttpError::InvalidGrant => "invalid_grant",
            HttpError::InvalidToken => "invalid_token",
            HttpError::TooManyAttempts => "too_many_attempts",
            HttpError::AccountsDisabled => "accounts_disabled",
            HttpError::MetricsForbidden => "metrics_forbidden",
            HttpError::NotReady => "not_ready",
            HttpError::AuthenticationRequired => "authentication_required",
            HttpError::InvalidApiKey => "invalid_api_key",
            HttpError::InsufficientPermissions => "insufficient_permissions",
            HttpError::InvalidField => "invalid_field",
            HttpError::UserNotFound => "user_not_found",
            HttpError::RoomNotFound => "room_not_found",
            HttpError::RoleNotFound => "role_not_found",
            HttpError::SessionNotFound => "session_not_found",
            HttpError::ApiKeyNotFound => "apikey_not_found",
            HttpError::AlreadyExists => "already_exists",
            HttpError::BuiltinRole => "role_builtin",
            HttpError::Internal => "internal",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            HttpError::UpgradeRequired => "Expected a WebSocket upgrade request",
            HttpError::OriginNotAllowed => "Origin not allowed",
            HttpError::TlsRequired => "TLS required",
            HttpError::TooManyUnauthenticated => "Too many unauthenticated connections",
            HttpError::NotFound => "Not found",
            HttpError::MethodNotAllowed => "Method not allowed",
            HttpError::InvalidRequest => "Invalid request body",
            HttpError::PayloadTooLarge => "Request body too large",
            HttpError::RequestTimeout => "Request body not received in time",
            HttpError::InvalidCredentials => "Invalid username or password",
            HttpError::InvalidGrant => "Invalid refresh token",
            HttpError::InvalidToken => "Invalid access token",
            HttpError::TooManyAttempts => "Too many attempts",
            HttpError::AccountsDisabled => "Accounts are disabled",
            HttpError::MetricsForbidden => {
                "Metrics are served to loopback only unless metrics.token is set"
            }
            HttpError::NotReady => "Not ready",
            HttpError::AuthenticationRequired => "Authentication required",
            HttpError::InvalidApiKey => "Invalid API key",
            HttpError::InsufficientPermissions => "Insufficient permissions",
            HttpError::InvalidField => "Invalid field",
            HttpError::UserNotFound => "User not found",
            HttpError::RoomNotFound => "Room not found",
            HttpError::RoleNotFound => "Role not found",
            HttpError::SessionNotFound => "Session not found",
            HttpError::ApiKeyNotFound => "API key not found",
            HttpError::AlreadyExists => "Already exists",
            HttpError::BuiltinRole => "Built-in roles cannot be deleted",
            HttpError::Internal => "Internal error",
        }
    }

    /// The JSON error response `{code, message}`.
    pub fn response(self) -> warp::reply::Response {
        self.response_with_field(None)
    }

    /// The JSON error response `{code, message, field?}`; `field` names the offending
    /// input for [`HttpError::InvalidField`].
    pub fn response_with_field(self, field: Option<&str>) -> warp::reply::Response {
        #[derive(Serialize)]
        struct Body<'a> {
            code: &'static str,
            message: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            field: Option<&'a str>,
        }
        let json = warp::reply::json(&Body {
            code: self.code(),
            message: self.message(),
            field,
        });
        warp::reply::with_status(json, self.status()).into_response()
    }
}

#[derive(Debug)]
pub(crate) struct Refused(pub(crate) HttpError);
impl warp::reject::Reject for Refused {}

/// All routes, boxed at the boundary.
pub fn routes(state: AppState) -> BoxedFilter<(warp::reply::Response,)> {
    let state_for_auth = state.clone();
    let state_for_api = state.clone();
    let state_for_transport = state.clone();
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response());
    let ws = warp::path!("ws")
        .and(warp::get())
        .and(with_state(state))
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<PeerAddr>())
        .and(warp::ext::optional::<UpgradeSlot>())
        .and(warp::ext::optional::<Secure>())
        .and(warp::ext::optional::<crate::accept::ConnHold>())
        .and_then(ws_upgrade);
    let transport = warp::path::full()
        .and(with_state(state_for_transport))
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<PeerAddr>())
        .and(warp::ext::optional::<Secure>())
        .and_then(production_transport)
        .untuple_one();
    let echo = echo::route(state_for_auth.clone());
    let all = health
        .or(ws)
        .unify()
        .or(echo)
        .unify()
        .or(auth::routes(state_for_auth.clone()))
        .unify()
        .or(ops::routes(state_for_auth))
        .unify()
        .or(api::routes(state_for_api))
        .unify()
        .or(assets::routes())
        .unify();
    transport.and(all).recover(recover).unify().boxed()
}

/// Production mode: every route but the probes needs TLS, built in or reported by a
/// trusted proxy. Checked before any route runs (and before any body is read), so
/// passwords and API keys are never taken over plain HTTP. The probes stay plain
/// because load balancers and orchestrators call them on the internal address.
async fn production_transport(
    path: warp::path::FullPath,
    state: AppState,
    headers: HeaderMap,
    peer: Option<PeerAddr>,
    secure: Option<Secure>,
) -> Result<(), warp::Rejection> {
    if state.cfg.mode != crate::config::Mode::Production
        || matches!(path.as_str(), "/healthz" | "/readyz")
        || is_https(&state, &headers, peer, secure)
    {
        return Ok(());
    }
    Err(warp::reject::custom(Refused(HttpError::TlsRequired)))
}

/// Whether the client used HTTPS: over roomgate's own TLS, or through a trusted proxy
/// that says so in `X-Forwarded-Proto` (believed from nobody else).
fn is_https(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<PeerAddr>,
    secure: Option<Secure>,
) -> bool {
    if secure.is_some() {
        return true;
    }
    let peer_ip = peer.map_or(IpAddr::from([127, 0, 0, 1]), |p| canonical(p.0.ip()));
    state.trusted_proxies.iter().any(|c| c.contains(peer_ip))
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

fn with_state(state: AppState) -> impl Filter<Extract = (AppState,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

async fn recover(rej: warp::Rejection) -> Result<warp::reply::Response, Infallible> {
    let err = if let Some(Refused(e)) = rej.find::<Refused>() {
        *e
    } else if let Some(e) = auth::body_rejection(&rej) {
        e
    } else if rej.is_not_found() {
        HttpError::NotFound
    } else if rej.find::<warp::reject::MethodNotAllowed>().is_some() {
        HttpError::MethodNotAllowed
    } else {
        HttpError::NotFound
    };
    Ok(err.response())
}

/// The client IP: the socket peer, or the first untrusted hop of `X-Forwarded-For`
/// (right to left) when the peer is a trusted proxy. The seed believed XFF from anyone.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut ip = peer;
    for hop in hops.into_iter().rev() {
        // An entry we cannot read ends the walk: everything left of it was written by
        // someone we cannot vouch for.
        let Some(addr) = parse_hop(hop) else {
            break;
        };
        ip = canonical(addr);
        if !is_trusted(ip) {
            break;
        }
    }
    ip
}

/// One `X-Forwarded-For` entry: `ip`, `ip:port` or `[v6]:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// `GET /ws`: checks origin, TLS and the per-IP cap, then answers 101 and hands the
/// upgraded stream to a connection task.
async fn ws_upgrade(
    state: AppState,
    headers: HeaderMap,
    peer: Option<PeerAddr>,
    slot: Option<UpgradeSlot>,
    secure: Option<Secure>,
    hold: Option<crate::accept::ConnHold>,
) -> Result<warp::reply::Response, warp::Rejection> {
    let refuse = |e: HttpError| Err(warp::reject::custom(Refused(e)));
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(key) = upgrade_key(&headers) else {
        return refuse(HttpError::UpgradeRequired);
    };
    let peer_ip = peer
        .map(|p| p.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let ip = client_ip(peer_ip, &headers, &state.trusted_proxies);
    let sec = &state.cfg.security;

    if !sec.allowed_origins.is_empty() {
        let allowed = match header("origin") {
            Some(o) => sec.allowed_origins.iter().any(|a| a == o),
            None => sec.allow_missing_origin,
        };
        if !allowed && state.limiters.allow_event(&Key::ip(ip)) {
            let origin: String = header("origin").unwrap_or("").chars().take(200).collect();
            let ip_s = ip.to_string();
            state.audit.record(
                "origin_refused",
                None,
                Outcome::Failure,
                &[("origin", &origin), ("clientIp", &ip_s)],
            );
        }
        if !allowed {
            return refuse(HttpError::OriginNotAllowed);
        }
    }
    // Production mode always wants wss (built in, or reported by a trusted proxy).
    let want_tls = sec.require_tls || state.cfg.mode == crate::config::Mode::Production;
    if want_tls && !is_https(&state, &headers, peer, secure) {
        return refuse(HttpError::TlsRequired);
    }
    // Keyed like the rate limits (IPv6 by /64), so one host cannot rotate addresses.
    let admission = match state.registry.admit(Key::ip(ip)) {
        Ok(a) => a,
        Err(_) => {
            state
                .refusals
                .record(crate::refusals::Refused::UnauthenticatedPerIp, ip);
            return refuse(HttpError::TooManyUnauthenticated);
        }
    };
    let Some(on_upgrade) = slot.and_then(|s| s.0.lock().ok().and_then(|mut g| g.take())) else {
        return refuse(HttpError::UpgradeRequired);
    };

    let tasks = state.tasks.clone();
    let ws_config = ws_config(&state.cfg.connection);
    // The socket keeps its TCP connection's place under the connection caps for its
    // whole life (the connection owns `hold`). Not held by an async block around the
    // future here: that would store the future twice.
    Ok(switch_protocols(
        &key,
        &tasks,
        on_upgrade,
        ws_config,
        move |ws| conn::run(ws, state, ip, admission, hold),
    ))
}

/// The upgraded connection as a WebSocket.
pub(crate) type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// The `Sec-WebSocket-Key` of a well-formed WebSocket upgrade request (`Connection:
/// upgrade`, `Upgrade: websocket`, version 13), or None.
pub(crate) fn upgrade_key(headers: &HeaderMap) -> Option<HeaderValue> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let is_upgrade = header("connection").is_some_and(|c| {
        c.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    }) && header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        && header("sec-websocket-version") == Some("13")
        // An upgrade request has no body (RFC 6455 4.1). One that declares a body would
        // be answered 101 while hyper still waits for that body, so the connection
        // would never be handed over nor closed.
        && !headers.contains_key("transfer-encoding")
        && header("content-length").is_none_or(|n| n.trim() == "0");
    if is_upgrade {
        headers.get("sec-websocket-key").cloned()
    } else {
        None
    }
}

/// tungstenite's settings for every WebSocket the server accepts.
pub(crate) fn ws_config(c: &crate::config::ConnectionConfig) -> WebSocketConfig {
    // 1 KiB reads: client frames are small (auth, join, a chat line), a larger frame is
    // read in a few more calls, and the buffer is kept per idle connection (4 KiB cost
    // 3 KiB of RSS per connection in the `hold` benchmark). Writes batch up to 16 KiB
    // because fan-out throughput depends on it.
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(c.max_frame_bytes.max(64 * 1024) * 4)
        .max_message_size(Some(c.max_frame_bytes))
        .max_frame_size(Some(c.max_frame_bytes))
}

/// Answers 101 and, once hyper hands the connection over, runs `serve` on it as a
/// tracked task of its own. Every WebSocket route goes through here, so they share one
/// upgrade path.
pub(crate) fn switch_protocols<F, Fut>(
    key: &HeaderValue,
    tasks: &tokio_util::task::TaskTracker,
    on_upgrade: OnUpgrade,
    ws_config: WebSocketConfig,
    serve: F,
) -> warp::reply::Response
where
    F: FnOnce(Socket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tracker = tasks.clone();
    tasks.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ws_config),
                )
                .await;
                // A task of its own, sized to the connection's future alone: awaited
                // here it would carry this block's state too, for its whole life
                // (about 1.6 KiB per idle connection, measured).
                tracker.spawn(serve(ws));
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });

    let accept = derive_accept_key(key.as_bytes());
    let mut res = warp::reply::Response::default();
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert("connection", HeaderValue::from_static("upgrade"));
    h.insert("upgrade", HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xff_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.2".parse().unwrap());
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(client_ip(peer, &h, &[]), peer);
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        assert_eq!(
            client_ip(peer, &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        let outsider: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_ip(outsider, &h, &trusted), outsider);
        // An unreadable hop stops the walk at the last address we could vouch for.
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, unknown, 10.0.0.3:5000".parse().unwrap(),
        );
        assert_eq!(
            client_ip(peer, &h, &trusted),
            "10.0.0.3".parse::<IpAddr>().unwrap()
        );
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "[2001:db8::1]:443".parse().unwrap());
        assert_eq!(
            client_ip(peer, &h, &trusted),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }
}
