//! The web assets embedded at build time (`build.rs` tables every file under `web/`):
//! the chat page at `/`, the admin console at `/admin`, the client library at
//! `/client/roomgate.js` with its `roomgate.d.ts`, and every other file at its path
//! relative to `web/`. Lookups are exact matches in that table, so no request path can
//! reach the file system. Every answer carries the security headers, and a
//! Content-Security-Policy that allows scripts, styles and connections from the gateway
//! itself only (no inline script). This module serves bytes; it never reads the store,
//! and a path it does not know falls through to the JSON 404.

use http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Reply;

/// One embedded file.
pub struct Asset {
    /// Relative to `web/`, with `/` separators.
    pub path: &'static str,
    pub content_type: &'static str,
    /// Quoted, as sent.
    pub etag: &'static str,
    pub bytes: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The asset a request path names: `/` is the chat page, `/admin` the console.
pub fn lookup(path: &str) -> Option<&'static Asset> {
    let rel = match path {
        "/" => "index.html",
        "/admin" | "/admin/" => "admin.html",
        p => p.strip_prefix('/')?,
    };
    ASSETS.iter().find(|a| a.path == rel)
}

/// `connect-src` names the gateway's own WebSocket origin besides `'self'`: CSP3 lets
/// `'self'` cover ws: and wss: of the same host, older engines do not. The Host header
/// is used only when it is a plain host[:port], so it cannot inject a directive.
fn csp(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    let sockets = host.map_or(String::new(), |h| format!(" ws://{h} wss://{h}"));
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'{sockets}; form-action 'self'; base-uri 'none'; \
         frame-ancestors 'none'; object-src 'none'"
    )
}

/// `GET` and `HEAD` of an embedded asset.
pub fn routes() -> BoxedFilter<(warp::reply::Response,)> {
    // The method is checked inside, not with `warp::get()`: that filter's "method not
    // allowed" would outrank the 404 of every other route for any POST to an unknown
    // path (a `POST /auth/login` with accounts off answered 405, not 404).
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and_then(
            |method: http::Method, path: warp::path::FullPath, headers: HeaderMap| async move {
                let readable = method == http::Method::GET || method == http::Method::HEAD;
                match lookup(path.as_str()) {
                    Some(asset) if readable => Ok(respond(asset, &headers)),
                    _ => Err(warp::reject::not_found()),
                }
            },
        )
        .boxed()
}

fn respond(asset: &'static Asset, req: &HeaderMap) -> warp::reply::Response {
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == asset.etag || t.trim() == "*")
        });
    let mut res = if fresh {
        let mut r = warp::reply::Response::default();
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        warp::http::Response::new(asset.bytes.into())
    };
    let h = res.headers_mut();
    if !fresh {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
    }
    h.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    // The names carry no content hash, so a cached copy is revalidated on every use (a
    // 304 when unchanged); after an upgrade no browser keeps yesterday's script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    if let Ok(v) = HeaderValue::from_str(&csp(req)) {
        h.insert("content-security-policy", v);
    }
    res.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_names_the_host_only_when_it_is_plain() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        let p = csp(&h);
        assert!(p.contains("connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080;"));
        assert!(p.contains("script-src 'self';") && !p.contains("unsafe"));
        h.insert(header::HOST, HeaderValue::from_static("evil; script-src *"));
        assert!(csp(&h).contains("connect-src 'self'; "));
    }

    #[test]
    fn lookups_are_exact() {
        assert!(lookup("/client/../Cargo.toml").is_none());
        assert!(lookup("/../Cargo.toml").is_none());
        assert!(lookup("//etc/passwd").is_none());
        assert!(lookup("").is_none());
    }
}
