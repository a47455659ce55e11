//! `/api/v1/*`: the admin HTTP API. One route table (each resource file contributes its
//! rows: verb, path template, the permission it needs, the handler) is both the router
//! and what the OpenAPI conformance test walks, so a route cannot exist undocumented.
//! Every request goes the same way: match the table (404, or 405 with `Allow`),
//! authenticate (a bearer access token verified and revocation-checked like a WebSocket
//! `auth`, or an API key; 401 with `WWW-Authenticate`), check the route's `Permission`
//! (403; never a role name), read the query and a size-limited JSON body, run the
//! handler, and answer JSON; every refusal is `{code, message, field?}` from the
//! `HttpError` registry. Handlers adapt HTTP to `admin`'s operations (which go through
//! `policy`, so open connections see rights changes at once); they hold no logic of
//! their own beyond parsing and paging.

mod apikeys;
mod credentials;
mod publish;
mod roles;
mod rooms;
mod system;
mod users;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::path::FullPath;
use warp::reply::Reply;

use super::{HttpError, PeerAddr, client_ip};
use crate::admin::{AdminError, Target};
use crate::authz::{Permission, Permissions};
use crate::hub::{Lookup, Room};
use crate::state::AppState;
use crate::store::StoreError;

/// The API's path prefix.
pub const PREFIX: &str = "/api/v1";

/// HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    /// The method's name as HTTP spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }

    fn from_method(m: &Method) -> Option<Verb> {
        match *m {
            Method::GET => Some(Verb::Get),
            Method::POST => Some(Verb::Post),
            Method::PUT => Some(Verb::Put),
            Method::PATCH => Some(Verb::Patch),
            Method::DELETE => Some(Verb::Delete),
            _ => None,
        }
    }

    fn has_body(self) -> bool {
        matches!(self, Verb::Post | Verb::Put | Verb::Patch)
    }
}

/// What a route needs from its caller.
#[derive(Debug, Clone, Copy)]
pub enum Need {
    /// Nothing: served to anyone (the OpenAPI document).
    Public,
    /// Valid credentials carrying at least one of these permissions.
    AnyOf(&'static [Permission]),
}

type Handler = fn(Call) -> Pin<Box<dyn Future<Output = Result<Answer, ApiError>> + Send>>;

/// One row of the route table.
pub struct Route {
    pub verb: Verb,
    /// OpenAPI path template under the host, e.g. `/api/v1/users/{username}`.
    pub path: &'static str,
    pub need: Need,
    handler: Handler,
}

/// Every route the API answers, in documentation order.
pub fn route_table() -> impl Iterator<Item = &'static Route> {
    users::ROUTES
        .iter()
        .chain(roles::ROUTES)
        .chain(rooms::ROUTES)
        .chain(apikeys::ROUTES)
        .chain(publish::ROUTES)
        .chain(system::ROUTES)
}

/// Who is calling.
struct Caller {
    /// How security events name the caller: `apikey:<id>` or `user:<keyed hash>`.
    label: String,
    /// Who recipients see as the sender of what the caller publishes: the user id of a
    /// bearer token's user, `system` for an API key (an application).
    sender: String,
    permissions: Permissions,
}

/// One request, as a handler sees it.
pub struct Call {
    state: AppState,
    caller: Caller,
    /// Path parameters in template order, percent-decoded.
    params: Vec<String>,
    query: Vec<(String, String)>,
    body: Bytes,
}

/// A successful answer.
pub struct Answer {
    status: StatusCode,
    body: Body,
}

enum Body {
    Json(Value),
    /// JSON text sent as it is (the embedded OpenAPI document).
    Text(&'static str),
}

impl Answer {
    fn ok(v: impl Serialize) -> Answer {
        Answer::with(StatusCode::OK, v)
    }

    fn created(v: impl Serialize) -> Answer {
        Answer::with(StatusCode::CREATED, v)
    }

    fn with(status: StatusCode, v: impl Serialize) -> Answer {
        // Our answers are plain structs and JSON values: they always serialise.
        Answer {
            status,
            body: Body::Json(serde_json::to_value(v).unwrap_or(Value::Null)),
        }
    }

    fn json_text(text: &'static str) -> Answer {
        Answer {
            status: StatusCode::OK,
            body: Body::Text(text),
        }
    }
}

/// Why a handler refused or failed.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("refused: {0:?}")]
    Refused(HttpError),
    /// A body field, path segment or query parameter (named) is invalid.
    #[error("invalid field {0}")]
    Field(&'static str),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    fn response(self) -> warp::reply::Response {
        let (error, field) = match self {
            ApiError::Refused(e) => (e, None),
            ApiError::Field(f) => (HttpError::InvalidField, Some(f)),
            ApiError::Admin(e) => match e {
                AdminError::Invalid(f, _) => (HttpError::InvalidField, Some(f)),
                AdminError::RoomExists(_)
                | AdminError::AccountExists(_)
                | AdminError::ApiKeyExists(_) => (HttpError::AlreadyExists, None),
                AdminError::NoAccount(_) => (HttpError::UserNotFound, None),
                AdminError::NoRoom(_) => (HttpError::RoomNotFound, None),
                AdminError::NoRole(_) => (HttpError::RoleNotFound, None),
                AdminError::BuiltinRole(_) => (HttpError::BuiltinRole, None),
                AdminError::NoSession => (HttpError::SessionNotFound, None),
                AdminError::NoApiKey(_) => (HttpError::ApiKeyNotFound, None),
                AdminError::Password(e) => {
                    tracing::error!(error = %e, "password hashing failed in the admin API");
                    (HttpError::Internal, None)
                }
                AdminError::Store(e) => {
                    tracing::error!(error = %e, "store failure in the admin API");
                    (HttpError::Internal, None)
                }
                // The API offers no backup route; reaching this is a server fault.
                AdminError::Backup(e) => {
                    tracing::error!(error = %e, "backup failed in the admin API");
                    (HttpError::Internal, None)
                }
            },
            ApiError::Store(e) => {
                tracing::error!(error = %e, "store failure in the admin API");
                (HttpError::Internal, None)
            }
        };
        error.response_with_field(field)
    }
}

/// The page a list request asks for.
struct Page {
    limit: usize,
    /// Resume after this sort key.
    after: Option<Vec<u8>>,
}

impl Call {
    /// Where admin operations run: this server, naming this caller in events.
    fn target(&self) -> Target<'_> {
        Target::Api {
            state: &self.state,
            actor: &self.caller.label,
        }
    }

    /// The `i`th path parameter.
    fn param(&self, i: usize) -> &str {
        self.params.get(i).map_or("", String::as_str)
    }

    /// A query parameter (the first, if repeated).
    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A numeric query parameter.
    fn query_u64(&self, name: &'static str) -> Result<Option<u64>, ApiError> {
        self.query(name)
            .map(|v| v.parse::<u64>().map_err(|_| ApiError::Field(name)))
            .transpose()
    }

    /// The JSON body.
    fn body<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body).map_err(|_| ApiError::Refused(HttpError::InvalidRequest))
    }

    /// `limit` (default `api.default_page_size`, cut to `api.max_page_size`, at least 1)
    /// and `cursor` (an opaque string from an earlier page's `nextCursor`).
    fn page(&self) -> Result<Page, ApiError> {
        let cfg = &self.state.cfg.api;
        let limit = match self.query_u64("limit")? {
            None => cfg.default_page_size,
            Some(0) => return Err(ApiError::Field("limit")),
            Some(n) => usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(cfg.max_page_size),
        };
        let after = self
            .query("cursor")
            .map(|c| hex::decode(c).map_err(|_| ApiError::Field("cursor")))
            .transpose()?;
        Ok(Page { limit, after })
    }

    /// Whether the caller holds `p` (for checks inside a route, beyond the route's own).
    fn caller_has(&self, p: Permission) -> bool {
        self.caller.permissions.has(p)
    }
}

/// A stored room, loaded into the hub (never created), for routes that act on the live
/// room: history pages and publishing.
fn live_room(state: &AppState, id: &str) -> Result<Arc<Room>, ApiError> {
    if !crate::admin::valid_name(id, state.cfg.rooms.max_room_id_len) {
        return Err(ApiError::Field("roomId"));
    }
    match state.hub.load(id, false)? {
        Lookup::Found(room) => Ok(room),
        Lookup::NotFound => Err(ApiError::Refused(HttpError::RoomNotFound)),
    }
}

/// A page of `items` (sorted here by `key`) as `{items, nextCursor}`; `nextCursor` is
/// null on the last page.
fn paged<T: Serialize>(mut items: Vec<T>, key: impl Fn(&T) -> &str, page: &Page) -> Answer {
    items.sort_by(|a, b| key(a).cmp(key(b)));
    let start = match &page.after {
        Some(after) => items.partition_point(|i| key(i).as_bytes() <= after.as_slice()),
        None => 0,
    };
    let rest = items.len().saturating_sub(start);
    let taken: Vec<T> = items.into_iter().skip(start).take(page.limit).collect();
    let next = (rest > page.limit)
        .then(|| taken.last().map(|l| hex::encode(key(l))))
        .flatten();
    Answer::ok(json!({ "items": taken, "nextCursor": next }))
}

/// The `/api/v1` routes, or nothing when `api.enabled` is off.
pub fn routes(state: AppState) -> BoxedFilter<(warp::reply::Response,)> {
    let enabled = state.cfg.api.enabled;
    let with_state = warp::any().map(move || state.clone());
    // A malformed query string is answered by the handler, not left to a rejection.
    let query = warp::query::<Vec<(String, String)>>()
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    warp::path("api")
        .and(warp::path("v1"))
        .and_then(move || async move {
            if enabled {
                Ok::<_, warp::Rejection>(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .and(with_state)
        .and(warp::path::full())
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<PeerAddr>())
        .and(query)
        .and(warp::body::stream())
        .then(
            |state: AppState,
             path: FullPath,
             method: Method,
             headers: HeaderMap,
             peer: Option<PeerAddr>,
             query: Option<Vec<(String, String)>>,
             body| async move {
                let mut res =
                    dispatch(state, path.as_str(), method, headers, peer, query, body).await;
                // Answers may hold API keys, sessions and user data.
                res.headers_mut()
                    .insert("cache-control", HeaderValue::from_static("no-store"));
                res
            },
        )
        .boxed()
}

/// Where a path leads.
enum Found {
    Route(&'static Route, Vec<String>),
    /// The path exists, but not for this method; these ones it has.
    WrongMethod(Vec<Verb>),
    Nowhere,
}

fn find(path: &str, verb: Option<Verb>) -> Found {
    let mut allowed = Vec::new();
    for route in route_table() {
        let Some(params) = match_template(route.path, path) else {
            continue;
        };
        if Some(route.verb) == verb {
            return Found::Route(route, params);
        }
        allowed.push(route.verb);
    }
    if allowed.is_empty() {
        Found::Nowhere
    } else {
        Found::WrongMethod(allowed)
    }
}

/// The decoded parameters when `path` fits `template` (`{name}` segments match one
/// non-empty segment).
fn match_template(template: &str, path: &str) -> Option<Vec<String>> {
    let mut t = template.split('/');
    let mut p = path.split('/');
    let mut params = Vec::new();
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(params),
            (Some(ts), Some(ps)) if ts.starts_with('{') => {
                if ps.is_empty() {
                    return None;
                }
                params.push(percent_decode(ps)?);
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return None,
        }
    }
}

/// `%XX` decoding of one path segment; None when it is not UTF-8 afterwards.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

async fn dispatch<S, B>(
    state: AppState,
    path: &str,
    method: Method,
    headers: HeaderMap,
    peer: Option<PeerAddr>,
    query: Option<Vec<(String, String)>>,
    body: S,
) -> warp::reply::Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let verb = Verb::from_method(&method);
    let (route, params) = match find(path, verb) {
        Found::Route(r, p) => (r, p),
        Found::Nowhere => return HttpError::NotFound.response(),
        Found::WrongMethod(allowed) => {
            let mut res = HttpError::MethodNotAllowed.response();
            let allow: Vec<&str> = allowed.iter().map(|v| v.as_str()).collect();
            if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
                res.headers_mut().insert("allow", v);
            }
            return res;
        }
    };
    let peer_ip = peer.map_or(IpAddr::from([127, 0, 0, 1]), |p| p.0.ip());
    let ip = client_ip(peer_ip, &headers, &state.trusted_proxies);
    let caller = match route.need {
        Need::Public => Caller {
            label: "anonymous".into(),
            sender: String::new(),
            permissions: Permissions::default(),
        },
        Need::AnyOf(perms) => {
            let caller = match credentials::authenticate(&state, &headers).await {
                Ok(c) => c,
                Err(refusal) => {
                    credentials::audit_refusal(&state, ip, "api_auth", refusal.reason, None, route);
                    return credentials::unauthorized(refusal.error);
                }
            };
            if !perms.iter().any(|p| caller.permissions.has(*p)) {
                credentials::audit_refusal(
                    &state,
                    ip,
                    "permission_denied",
                    "missing_permission",
                    Some(&caller.label),
                    route,
                );
                return HttpError::InsufficientPermissions.response();
            }
            caller
        }
    };
    let Some(query) = query else {
        return ApiError::Field("query").response();
    };
    let body = if route.verb.has_body() {
        match read_body(&headers, body, state.cfg.api.max_body_bytes).await {
            Ok(b) => b,
            Err(e) => return e.response(),
        }
    } else {
        Bytes::new()
    };
    let call = Call {
        state,
        caller,
        params,
        query,
        body,
    };
    match (route.handler)(call).await {
        Ok(Answer {
            status,
            body: Body::Json(v),
        }) => warp::reply::with_status(warp::reply::json(&v), status).into_response(),
        Ok(Answer {
            status,
            body: Body::Text(text),
        }) => {
            let mut res = warp::reply::with_status(text, status).into_response();
            res.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            res
        }
        Err(e) => e.response(),
    }
}

/// Reads a body of at most `max` bytes: refused at once when `Content-Length` says it
/// is larger, and cut off as soon as a chunked one grows past the limit.
async fn read_body<S, B>(headers: &HeaderMap, body: S, max: u64) -> Result<Bytes, HttpError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(HttpError::PayloadTooLarge);
    }
    let mut body = std::pin::pin!(body);
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| HttpError::InvalidRequest)?;
        if (out.len() + chunk.remaining()) as u64 > max {
            return Err(HttpError::PayloadTooLarge);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

/// The OpenAPI 3 document of this API, as served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_segments() {
        assert_eq!(
            match_template("/api/v1/users/{id}/roles", "/api/v1/users/a%7Cb/roles"),
            Some(vec!["a|b".to_string()])
        );
        assert_eq!(match_template("/api/v1/users/{id}", "/api/v1/users/"), None);
        assert_eq!(match_template("/api/v1/users", "/api/v1/users/"), None);
        assert_eq!(
            match_template("/api/v1/users/{id}", "/api/v1/users/a/b"),
            None
        );
        assert_eq!(
            match_template("/api/v1/users/{id}", "/api/v1/users/%FF"),
            None
        );
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
    }

    #[test]
    fn every_route_is_under_the_prefix_and_unique() {
        let routes: Vec<&Route> = route_table().collect();
        for (i, r) in routes.iter().enumerate() {
            assert!(r.path.starts_with(PREFIX), "{}", r.path);
            assert!(
                !routes[..i]
                    .iter()
                    .any(|o| o.verb == r.verb && o.path == r.path),
                "{} {} twice",
                r.verb.as_str(),
                r.path
            );
        }
    }
}
