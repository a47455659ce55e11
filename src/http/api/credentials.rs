//! Who is calling the admin API: a bearer access token (verified, revocation-checked and
//! given its user's roles and permissions exactly as a WebSocket `auth` would, through
//! `principal`) or an API key (through `admin`, by digest). It answers refusals with the
//! RFC 6750 challenge and records them as rate-limited security events; it never names
//! a user in an event except by its keyed hash, and never logs a credential.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue, StatusCode};

use super::{Caller, Route};
use crate::admin;
use crate::audit::Outcome;
use crate::authz::Permission;
use crate::http::HttpError;
use crate::principal;
use crate::ratelimit::Key;
use crate::state::AppState;

/// Why credentials were refused: what the client sees, and the reason for the log.
pub(super) struct Refusal {
    pub(super) error: HttpError,
    pub(super) reason: &'static str,
}

fn refuse(error: HttpError, reason: &'static str) -> Refusal {
    Refusal { error, reason }
}

/// The caller behind `Authorization: Bearer <access token | API key>` or `X-Api-Key`.
pub(super) async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, Refusal> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let bearer = header("authorization").map(|h| {
        let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
        (scheme.eq_ignore_ascii_case("bearer"), rest.trim())
    });
    let credential = match (bearer, header("x-api-key")) {
        (Some((true, token)), None) if !token.is_empty() => token,
        (None, Some(key)) if !key.trim().is_empty() => key.trim(),
        (None, None) => return Err(refuse(HttpError::AuthenticationRequired, "missing")),
        // Another scheme, an empty token, or both headers at once: ambiguous, refused.
        _ => return Err(refuse(HttpError::InvalidToken, "malformed")),
    };
    if credential.starts_with(admin::API_KEY_PREFIX) {
        let touch_ms = state
            .cfg
            .api
            .key_last_used_interval_secs
            .saturating_mul(1000);
        return match admin::authenticate_api_key(&state.store, credential, touch_ms) {
            Ok(Some(key)) => Ok(Caller {
                label: format!("apikey:{}", key.id),
                sender: "system".into(),
                permissions: key
                    .scopes
                    .iter()
                    .filter_map(|s| Permission::parse(s))
                    .collect(),
            }),
            Ok(None) => Err(refuse(HttpError::InvalidApiKey, "unknown_api_key")),
            Err(e) => {
                tracing::error!(error = %e, "store failure reading an API key");
                Err(refuse(HttpError::Internal, "internal"))
            }
        };
    }
    let verified = state
        .verifier
        .verify(credential)
        .map_err(|e| refuse(HttpError::InvalidToken, e.reason()))?;
    // A wsToken resumes a WebSocket session; it is not an API credential.
    if verified.resume_session.is_some() {
        return Err(refuse(HttpError::InvalidToken, "ws_token"));
    }
    // As at `auth`: an identity provider's token naming a built-in account is refused.
    match principal::foreign_sub_collides(&state.store, &verified) {
        Ok(false) => {}
        Ok(true) => return Err(refuse(HttpError::InvalidToken, "sub_collides_with_account")),
        Err(e) => {
            tracing::error!(error = %e, "store failure checking an API bearer token");
            return Err(refuse(HttpError::Internal, "internal"));
        }
    }
    let checked =
        principal::is_revoked(&state.store, &verified, &verified.keys).and_then(|revoked| {
            if revoked {
                Ok(None)
            } else {
                principal::roles_for(state, &verified.user_id, &verified.claimed_roles).map(Some)
            }
        });
    match checked {
        Ok(Some((_, permissions))) => Ok(Caller {
            label: format!("user:{}", state.audit.hash_user(&verified.user_id)),
            sender: verified.user_id.clone(),
            permissions,
        }),
        Ok(None) => Err(refuse(HttpError::InvalidToken, "revoked")),
        Err(e) => {
            tracing::error!(error = %e, "store failure checking an API bearer token");
            Err(refuse(HttpError::Internal, "internal"))
        }
    }
}

/// A 401 with its `WWW-Authenticate` challenge (RFC 6750).
pub(super) fn unauthorized(error: HttpError) -> warp::reply::Response {
    let mut res = error.response();
    if error.status() == StatusCode::UNAUTHORIZED {
        let challenge = if error == HttpError::AuthenticationRequired {
            "Bearer realm=\"roomgate\""
        } else {
            "Bearer realm=\"roomgate\", error=\"invalid_token\""
        };
        res.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static(challenge));
    }
    res
}

/// Records a refused API request, at most a few per client IP a minute.
pub(super) fn audit_refusal(
    state: &AppState,
    ip: IpAddr,
    action: &str,
    reason: &str,
    actor: Option<&str>,
    route: &Route,
) {
    if !state.limiters.allow_event(&Key::ip(ip)) {
        return;
    }
    let ip = ip.to_string();
    let op = format!("{} {}", route.verb.as_str(), route.path);
    let mut meta = vec![
        ("reason", reason),
        ("route", op.as_str()),
        ("clientIp", &ip),
    ];
    if let Some(actor) = actor {
        meta.push(("actor", actor));
    }
    state.audit.record(action, None, Outcome::Failure, &meta);
}
