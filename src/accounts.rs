//! Built-in identity: the login, refresh and logout flows behind `/auth/*`, and the
//! checks shared with operator commands (usernames, passwords). Logins are limited per
//! IP and per account before any hashing; unknown users, wrong passwords and disabled
//! accounts get one answer; refresh tokens rotate, and a reused one revokes its whole
//! family. Every revocation is durable before the answer. This module speaks typed
//! results; `http::auth` turns them into responses. Each refusal is logged once, here,
//! where it is decided: failures at `info` with the reason, the client IP and the keyed
//! user hash; refusals by limits at `debug` through `refusals`. It never logs a password,
//! a token or a raw user id.

use std::net::IpAddr;

use serde::Serialize;

use crate::audit::Outcome;
use crate::auth::random_hex;
use crate::config::Config;
use crate::http::HttpError;
use crate::protocol::{CloseCode, now_ms};
use crate::ratelimit::{Key, Limit};
use crate::refusals::Refused;
use crate::state::AppState;
use crate::store::{AccountRecord, FamilyRecord, RefreshRecord, RefreshUse, Revocation};

/// A successful login or refresh (RFC 6749 field names).
#[derive(Debug, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
}

/// Refusal with an optional `Retry-After`, in seconds.
#[derive(Debug)]
pub struct Refusal {
    pub error: HttpError,
    pub retry_after_secs: Option<u64>,
}

impl From<HttpError> for Refusal {
    fn from(error: HttpError) -> Self {
        Refusal {
            error,
            retry_after_secs: None,
        }
    }
}

fn internal<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> Refusal {
    move |e| {
        tracing::error!(error = %e, "{what}");
        HttpError::Internal.into()
    }
}

/// Whether a username is acceptable: 1-64 of `A-Z a-z 0-9 _ - . @`.
pub fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.@".contains(&b))
}

/// Why a new password is refused, if it is.
pub fn password_problem(password: &str, min_chars: usize, max_bytes: usize) -> Option<String> {
    if password.len() > max_bytes {
        Some(format!("password longer than {max_bytes} bytes"))
    } else if password.chars().count() < min_chars {
        Some(format!("password shorter than {min_chars} characters"))
    } else {
        None
    }
}

/// `POST /auth/login`.
pub async fn login(
    state: &AppState,
    ip: IpAddr,
    username: &str,
    password: &str,
) -> Result<TokenPair, Refusal> {
    let cfg = &state.cfg.accounts;
    let ip_s = ip.to_string();
    if let Err(ms) = state.limiters.check(Limit::Login, &Key::ip(ip)) {
        return Err(too_many(state, ip, Refused::Login, ms));
    }
    // Passwords are never trimmed; oversize ones are refused before hashing.
    if password.len() > cfg.max_password_bytes || username.len() > 256 {
        log_refused(state, "login", "too_long", ip, Some(username));
        return Err(HttpError::InvalidRequest.into());
    }
    // Usernames are looked up exactly, so failures are counted exactly too: "ADMIN"
    // can never be `admin`, and guessing at it must not lock `admin` out.
    let account_key = username;
    let now = now_ms();
    // The slot is taken before hashing, so parallel guesses cannot all pass the check
    // before the first of them fails.
    if let Err(ms) = state.login_failures.reserve(account_key, now) {
        return Err(too_many(state, ip, Refused::FailedLogins, ms));
    }
    let account = if valid_username(username) {
        state
            .store
            .account(username)
            .map_err(internal("reading an account"))?
    } else {
        None
    };
    // One hash either way, so timing does not reveal which accounts exist.
    let matches = state
        .passwords
        .verify(account.as_ref().map(|a| a.password_hash.as_str()), password)
        .await;
    let reason = match &account {
        None => Some("unknown_user"),
        Some(_) if !matches => Some("bad_password"),
        Some(a) if a.disabled => Some("disabled"),
        Some(_) => None,
    };
    if let Some(reason) = reason {
        // The reserved slot stays: it is this failure.
        log_refused(state, "login", reason, ip, Some(username));
        state.audit.record(
            "login",
            Some(username),
            Outcome::Failure,
            &[("reason", reason), ("clientIp", &ip_s)],
        );
        return Err(HttpError::InvalidCredentials.into());
    }
    let account = account.ok_or(HttpError::InvalidCredentials)?;
    // The right password ends a run of failures (and frees this attempt's slot).
    state.login_failures.reset(account_key);
    let family = random_hex(16);
    let family_expires_ms = now.saturating_add(cfg.refresh_token_secs.saturating_mul(1000));
    state
        .store
        .put_family(
            &family,
            &FamilyRecord {
                username: account.username.clone(),
                created_ms: now,
                expires_ms: family_expires_ms,
            },
        )
        .map_err(internal("storing a refresh family"))?;
    let pair = issue_pair(state, &account, &family, family_expires_ms, now).await?;
    state.audit.record(
        "login",
        Some(&account.username),
        Outcome::Success,
        &[("clientIp", &ip_s)],
    );
    Ok(pair)
}

/// Logs a refused login or refresh at `info`, once per refusal: the reason, the client
/// IP as resolved (trusted proxies respected) and, when a user is named, the keyed hash
/// the security events use for them (an unknown username is hashed too, so repeated
/// guesses at one name can be told apart from a spray over many).
fn log_refused(state: &AppState, flow: &str, reason: &str, ip: IpAddr, user: Option<&str>) {
    tracing::info!(
        reason,
        client_ip = %ip,
        user = user.map(|u| state.audit.hash_user(u)).as_deref(),
        "{flow} refused"
    );
}

/// A refusal by the per-IP login limit or the per-account failure window.
fn too_many(state: &AppState, ip: IpAddr, limit: Refused, ms: u64) -> Refusal {
    state.refusals.record(limit, ip);
    let scope = if limit == Refused::FailedLogins {
        "account"
    } else {
        "ip"
    };
    if state.limiters.allow_event(&Key::ip(ip)) {
        let ip_s = ip.to_string();
        state.audit.record(
            "rate_limited",
            None,
            Outcome::Failure,
            &[("limit", "login"), ("scope", scope), ("clientIp", &ip_s)],
        );
    }
    Refusal {
        error: HttpError::TooManyAttempts,
        retry_after_secs: Some(ms.div_ceil(1000).max(1)),
    }
}

/// Issues an access token and a new refresh token in `family`, which ends at
/// `family_expires_ms`: no refresh token outlives its login.
async fn issue_pair(
    state: &AppState,
    account: &AccountRecord,
    family: &str,
    family_expires_ms: u64,
    now: u64,
) -> Result<TokenPair, Refusal> {
    let cfg = &state.cfg;
    let grants = state
        .store
        .user_grants(&account.username)
        .map_err(internal("reading roles"))?;
    let mut roles = cfg.auth.default_roles.clone();
    for r in grants.roles {
        if !roles.contains(&r) {
            roles.push(r);
        }
    }
    let access = state
        .verifier
        .issue_access_token(
            &account.username,
            account.email.as_deref(),
            &roles,
            family,
            now / 1000,
        )
        .map_err(internal("signing an access token"))?;
    // 256 random bits; only the digest is stored.
    let refresh_token = random_hex(32);
    state
        .store
        .put_refresh(
            &digest(&refresh_token),
            &RefreshRecord {
                family: family.to_string(),
                username: account.username.clone(),
                issued_ms: now,
                expires_ms: now
                    .saturating_add(cfg.accounts.refresh_token_secs.saturating_mul(1000))
                    .min(family_expires_ms),
                used_ms: None,
            },
        )
        .map_err(internal("storing a refresh token"))?;
    state
        .store
        .flush()
        .await
        .map_err(internal("flushing tokens"))?;
    Ok(TokenPair {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_at.saturating_sub(now / 1000),
        refresh_token,
    })
}

fn digest(refresh_token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(refresh_token.as_bytes()))
}

/// `POST /auth/refresh`: rotates; a second use of a rotated token revokes the family.
pub async fn refresh(
    state: &AppState,
    ip: IpAddr,
    refresh_token: &str,
) -> Result<TokenPair, Refusal> {
    if let Err(ms) = state.limiters.check(Limit::Login, &Key::ip(ip)) {
        return Err(too_many(state, ip, Refused::Login, ms));
    }
    if refresh_token.is_empty() || refresh_token.len() > 256 {
        log_refused(state, "token refresh", "malformed", ip, None);
        return Err(HttpError::InvalidGrant.into());
    }
    let now = now_ms();
    let store = &state.store;
    let used = store
        .use_refresh(&digest(refresh_token), now)
        .map_err(internal("using a refresh token"))?;
    let record = match used {
        RefreshUse::Unknown => {
            log_refused(state, "token refresh", "unknown_token", ip, None);
            return Err(HttpError::InvalidGrant.into());
        }
        RefreshUse::Reused(r) => {
            log_refused(state, "token refresh", "reused", ip, Some(&r.username));
            revoke_family(state, &r.family, &r.username).await?;
            state.audit.record(
                "refresh_reuse_detected",
                Some(&r.username),
                Outcome::Failure,
                &[("clientIp", &ip.to_string())],
            );
            return Err(HttpError::InvalidGrant.into());
        }
        RefreshUse::Rotated(r) => r,
    };
    let ip_s = ip.to_string();
    let refuse = |reason: &str| {
        log_refused(state, "token refresh", reason, ip, Some(&record.username));
        state.audit.record(
            "token_refresh",
            Some(&record.username),
            Outcome::Failure,
            &[("reason", reason), ("clientIp", &ip_s)],
        );
        Refusal::from(HttpError::InvalidGrant)
    };
    if record.expires_ms <= now {
        return Err(refuse("expired"));
    }
    let revoked = store
        .is_token_revoked(&format!("family:{}", record.family))
        .map_err(internal("reading revocations"))?;
    let family = store
        .family(&record.family)
        .map_err(internal("reading a refresh family"))?;
    let cutoff = store
        .user_revoked_before(&record.username)
        .map_err(internal("reading revocations"))?;
    let Some(family) = family.filter(|_| !revoked) else {
        return Err(refuse("revoked"));
    };
    // A login lasts `accounts.refresh_token_secs` from its start, however often it rotates.
    if family.expires_ms <= now {
        return Err(refuse("expired"));
    }
    // Revoking all of a user's tokens (password change, disable, revoke --user) ends
    // logins made before it.
    if cutoff.is_some_and(|c| family.created_ms <= c) {
        return Err(refuse("revoked"));
    }
    let account = match store
        .account(&record.username)
        .map_err(internal("reading an account"))?
    {
        Some(a) if !a.disabled => a,
        _ => return Err(refuse("account_gone")),
    };
    let pair = issue_pair(state, &account, &record.family, family.expires_ms, now).await?;
    state.audit.record(
        "token_refresh",
        Some(&account.username),
        Outcome::Success,
        &[],
    );
    Ok(pair)
}

/// How long an access token of a family can still verify after the family itself ends:
/// its lifetime plus the clock leeway. A family's revocation entry and its record are
/// kept that much longer than the family.
pub fn family_grace_ms(cfg: &Config) -> u64 {
    cfg.accounts
        .access_token_secs
        .saturating_add(cfg.auth.leeway_secs)
        .saturating_mul(1000)
}

/// Revokes a refresh family: its refresh tokens and every access token (and socket)
/// descending from it.
async fn revoke_family(state: &AppState, family: &str, username: &str) -> Result<(), Refusal> {
    let now = now_ms();
    // The entry must outlive the family's last access token; a family that is already
    // gone refuses its tokens by itself, so `now` is enough of a base then.
    let family_end = state
        .store
        .family(family)
        .ok()
        .flatten()
        .map_or(now, |f| f.expires_ms.max(now));
    let expires_ms = family_end.saturating_add(family_grace_ms(&state.cfg));
    let key = format!("family:{family}");
    state
        .store
        .revoke_token(
            &key,
            &Revocation {
                revoked_ms: now,
                expires_ms,
            },
        )
        .await
        .map_err(internal("revoking a refresh family"))?;
    state
        .registry
        .close_token(std::slice::from_ref(&key), CloseCode::TokenRevoked);
    if let Err(e) = state.store.delete_family_sessions(family) {
        tracing::error!(error = %e, "deleting sessions of a revoked family");
    }
    state.audit.record(
        "revocation",
        Some(username),
        Outcome::Success,
        &[("scope", "family")],
    );
    Ok(())
}

/// `POST /auth/logout` with a bearer access token: revokes that token and its family,
/// and closes every socket authenticated with them.
pub async fn logout(state: &AppState, bearer: &str) -> Result<(), Refusal> {
    let verified = state
        .verifier
        .verify(bearer)
        .map_err(|_| HttpError::InvalidToken)?;
    let Some(family) = verified.family.clone() else {
        return Err(HttpError::InvalidToken.into());
    };
    let now = now_ms();
    let revocation = Revocation {
        revoked_ms: now,
        expires_ms: verified
            .expires_at
            .saturating_mul(1000)
            .saturating_add(state.cfg.auth.leeway_secs * 1000),
    };
    for key in verified.keys.iter().filter(|k| !k.starts_with("family:")) {
        state
            .store
            .revoke_token(key, &revocation)
            .await
            .map_err(internal("revoking a token"))?;
        state
            .registry
            .close_token(std::slice::from_ref(key), CloseCode::TokenRevoked);
    }
    revoke_family(state, &family, &verified.user_id).await?;
    state
        .audit
        .record("logout", Some(&verified.user_id), Outcome::Success, &[]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_and_passwords() {
        assert!(valid_username("alice.b-c_d@x"));
        assert!(!valid_username(""));
        assert!(!valid_username("a b"));
        assert!(!valid_username(&"a".repeat(65)));
        assert!(password_problem("  spaced  ", 8, 1024).is_none());
        assert!(password_problem("short", 8, 1024).is_some());
        assert!(password_problem(&"p".repeat(1025), 8, 1024).is_some());
        assert!(password_problem(&"p".repeat(64), 8, 1024).is_none());
    }
}
