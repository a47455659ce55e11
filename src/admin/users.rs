//! Accounts, stored roles, sessions and revocations. Every change that ends a user's
//! access (password, disable, delete, revoke) makes the revocation durable first and only
//! then looks for the user's sockets, so an `auth` racing with it either sees the
//! revocation or is found and closed.

use serde::Serialize;
use serde_json::{Value, json};

use super::{AdminError, Target, check_roles, check_user_id};
use crate::auth::{RevocationTarget, revocation_target};
use crate::authz::RoleTable;
use crate::protocol::{CloseCode, now_ms};
use crate::store::{AccountRecord, Revocation, SessionRecord, Store};

/// A built-in account as operators see it (never its password hash).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    pub username: String,
    pub email: Option<String>,
    /// Stored roles (the configured default roles apply on top).
    pub roles: Vec<String>,
    pub disabled: bool,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// One account with what it may do now.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDetail {
    #[serde(flatten)]
    pub account: AccountView,
    /// Global permissions from the default and stored roles.
    pub permissions: Vec<&'static str>,
    /// Open authenticated sockets (0 when the server is stopped).
    pub connections: usize,
}

/// A stored WebSocket session.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub session_id: String,
    pub user_id: String,
    pub connection_id: String,
    pub client_ip: String,
    pub roles: Vec<String>,
    pub created_ms: u64,
    pub expires_ms: u64,
}

/// A stored revocation: one token (by `jti:` or `sha256:` key, never the token), or
/// every token of a user issued up to a moment.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevocationView {
    /// `token:<key>` or `user:<userId>`; the paging key.
    pub id: String,
    /// `token` or `user`.
    pub kind: &'static str,
    /// For a token: its revocation key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// For a user-wide revocation: the user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// When it was revoked (for a user: tokens issued up to this moment are refused).
    pub revoked_ms: u64,
    /// For a token: when the token expires and the entry is swept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

/// Every stored revocation, tokens and users, by id.
pub fn revocations(t: &Target<'_>) -> Result<Vec<RevocationView>, AdminError> {
    let store = t.store();
    let tokens = store
        .token_revocations()?
        .into_iter()
        .map(|(key, r)| RevocationView {
            id: format!("token:{key}"),
            kind: "token",
            key: Some(key),
            user_id: None,
            revoked_ms: r.revoked_ms,
            expires_ms: Some(r.expires_ms),
        });
    let users = store
        .user_revocations()?
        .into_iter()
        .map(|(user, cutoff)| RevocationView {
            id: format!("user:{user}"),
            kind: "user",
            key: None,
            user_id: Some(user),
            revoked_ms: cutoff,
            expires_ms: None,
        });
    let mut out: Vec<RevocationView> = tokens.chain(users).collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

impl From<SessionRecord> for SessionView {
    fn from(s: SessionRecord) -> Self {
        SessionView {
            session_id: s.session_id,
            user_id: s.user_id,
            connection_id: s.connection_id,
            client_ip: s.client_ip,
            roles: s.roles,
            created_ms: s.created_ms,
            expires_ms: s.expires_ms,
        }
    }
}

/// A new account.
#[derive(Debug, Clone)]
pub struct UserAdd {
    pub username: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
    /// None: generate one and return it (once).
    pub password: Option<String>,
}

fn check_username(name: &str) -> Result<(), AdminError> {
    if crate::accounts::valid_username(name) {
        Ok(())
    } else {
        Err(AdminError::Invalid(
            "username",
            format!("{name:?} must be 1-64 of A-Z a-z 0-9 _ - . @"),
        ))
    }
}

fn existing_account(store: &Store, name: &str) -> Result<AccountRecord, AdminError> {
    check_username(name)?;
    store
        .account(name)?
        .ok_or_else(|| AdminError::NoAccount(name.to_string()))
}

/// The given password after the length rules, or a generated one (`true`).
fn choose_password(
    target: &Target<'_>,
    given: Option<String>,
) -> Result<(String, bool), AdminError> {
    let cfg = &target.cfg().accounts;
    match given {
        Some(p) => match crate::accounts::password_problem(
            &p,
            cfg.min_password_chars,
            cfg.max_password_bytes,
        ) {
            Some(problem) => Err(AdminError::Invalid("password", problem)),
            None => Ok((p, false)),
        },
        None => Ok((crate::auth::random_hex(12), true)),
    }
}

fn view(store: &Store, a: AccountRecord) -> Result<AccountView, AdminError> {
    let roles = store.user_grants(&a.username)?.roles;
    Ok(AccountView {
        username: a.username,
        email: a.email,
        roles,
        disabled: a.disabled,
        created_ms: a.created_ms,
        updated_ms: a.updated_ms,
    })
}

/// Creates a built-in account with stored roles; the answer carries a generated password
/// (shown this once) when none was given.
pub async fn user_add(t: &Target<'_>, add: UserAdd) -> Result<Value, AdminError> {
    let store = t.store();
    let UserAdd {
        username,
        email,
        roles,
        password,
    } = add;
    check_username(&username)?;
    check_roles("roles", &roles)?;
    if email
        .as_ref()
        .is_some_and(|e| e.is_empty() || e.len() > 320)
    {
        return Err(AdminError::Invalid("email", "must be 1-320 bytes".into()));
    }
    let (password, generated) = choose_password(t, password)?;
    let hash = t.passwords()?.hash(&password).await?;
    let now = now_ms();
    let created = store.create_account(&AccountRecord {
        username: username.clone(),
        email: email.clone(),
        password_hash: hash,
        disabled: false,
        created_ms: now,
        updated_ms: now,
    })?;
    if !created {
        return Err(AdminError::AccountExists(username));
    }
    store.set_user_roles(&username, roles.clone(), now)?;
    store.flush().await?;
    t.record("account_created", Some(&username), &[]);
    let mut out = json!({ "username": username, "email": email, "roles": roles });
    if generated {
        out["password"] = Value::String(password);
    }
    Ok(out)
}

/// Sets a new password (given or generated) and ends every session made with the old one.
pub async fn user_passwd(
    t: &Target<'_>,
    username: &str,
    password: Option<String>,
) -> Result<Value, AdminError> {
    let mut account = existing_account(t.store(), username)?;
    let (password, generated) = choose_password(t, password)?;
    account.password_hash = t.passwords()?.hash(&password).await?;
    account.updated_ms = now_ms();
    t.store().put_account(&account)?;
    let (_, closed) = revoke_user_everywhere(t, username, "password_change").await?;
    t.record("password_changed", Some(username), &[]);
    let mut out = json!({ "username": username, "closedConnections": closed });
    if generated {
        out["password"] = Value::String(password);
    }
    Ok(out)
}

/// Disables (no logins; every token, session and socket of it revoked) or enables an account.
pub async fn user_set_disabled(
    t: &Target<'_>,
    username: &str,
    disabled: bool,
) -> Result<Value, AdminError> {
    let mut account = existing_account(t.store(), username)?;
    account.disabled = disabled;
    account.updated_ms = now_ms();
    t.store().put_account(&account)?;
    if disabled {
        let (_, closed) = revoke_user_everywhere(t, username, "account_disabled").await?;
        t.record("account_disabled", Some(username), &[]);
        Ok(json!({ "username": username, "disabled": true, "closedConnections": closed }))
    } else {
        t.store().flush().await?;
        t.record("account_enabled", Some(username), &[]);
        Ok(json!({ "username": username, "disabled": false }))
    }
}

/// Deletes an account, its stored roles and its notification inbox; every token,
/// session and socket of it is revoked.
pub async fn user_delete(t: &Target<'_>, username: &str) -> Result<Value, AdminError> {
    existing_account(t.store(), username)?;
    t.store().delete_account(username)?;
    // A later account of the same name must not inherit the old one's notifications.
    t.store().delete_inbox(username)?;
    let (_, closed) = revoke_user_everywhere(t, username, "account_deleted").await?;
    t.record("account_deleted", Some(username), &[]);
    Ok(json!({ "username": username, "deleted": true, "closedConnections": closed }))
}

/// Every account, by username.
pub fn user_list(t: &Target<'_>) -> Result<Vec<AccountView>, AdminError> {
    let store = t.store();
    store
        .accounts()?
        .into_iter()
        .map(|a| view(store, a))
        .collect()
}

/// One account, its effective permissions and its open sockets.
pub fn user_get(t: &Target<'_>, username: &str) -> Result<UserDetail, AdminError> {
    let store = t.store();
    let account = view(store, existing_account(store, username)?)?;
    let (permissions, connections) = match t.live() {
        Some(s) => (
            crate::principal::roles_for(s, username, &[])?.1,
            s.registry.user_connections(username),
        ),
        None => {
            let table = RoleTable::load(store)?;
            let (_, p) = crate::principal::roles_from(&t.cfg().auth, store, &table, username, &[])?;
            (p, 0)
        }
    };
    Ok(UserDetail {
        account,
        permissions: permissions.names(),
        connections,
    })
}

/// Replaces a user's stored roles (any user id, built-in account or not). Live, the
/// user's open sockets are re-evaluated at once.
pub async fn user_roles(
    t: &Target<'_>,
    user_id: &str,
    roles: Vec<String>,
) -> Result<Value, AdminError> {
    check_user_id("userId", user_id)?;
    check_roles("roles", &roles)?;
    let g = match t.live() {
        Some(state) => crate::policy::set_user_roles(state, user_id, roles).await?,
        None => {
            let g = t.store().set_user_roles(user_id, roles, now_ms())?;
            t.store().flush().await?;
            g
        }
    };
    t.record("roles_changed", Some(user_id), &[]);
    Ok(json!({ "userId": user_id, "roles": g.roles }))
}

/// A user's stored roles (any user id), without the configured default roles.
pub fn user_stored_roles(t: &Target<'_>, user_id: &str) -> Result<Value, AdminError> {
    check_user_id("userId", user_id)?;
    let roles = t.store().user_grants(user_id)?.roles;
    Ok(json!({ "userId": user_id, "roles": roles }))
}

/// The user's stored sessions, by session id.
pub fn sessions(t: &Target<'_>, user_id: &str) -> Result<Vec<SessionView>, AdminError> {
    check_user_id("userId", user_id)?;
    let mut out: Vec<SessionView> = t
        .store()
        .user_sessions(user_id)?
        .into_iter()
        .map(SessionView::from)
        .collect();
    out.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    Ok(out)
}

/// Ends one session of a user: the token that opened it is revoked (so it cannot open
/// another), every session opened with that token is deleted, and their sockets close.
pub async fn session_terminate(
    t: &Target<'_>,
    user_id: &str,
    session_id: &str,
) -> Result<Value, AdminError> {
    check_user_id("userId", user_id)?;
    let session = match t.store().session(session_id)? {
        Some(s) if s.user_id == user_id => s,
        _ => return Err(AdminError::NoSession),
    };
    let (keys, closed) = revoke_keys(
        t,
        RevocationTarget {
            keys: vec![session.token_key.clone()],
            exp: Some(session.token_exp),
            session_id: Some(session.session_id.clone()),
        },
        "session",
    )
    .await?;
    Ok(json!({ "sessionId": session_id, "revokedKeys": keys, "closedConnections": closed }))
}

/// Revokes one token, given whole or by its `jti`.
pub async fn revoke_token(
    t: &Target<'_>,
    token: Option<String>,
    jti: Option<String>,
) -> Result<Value, AdminError> {
    let target = match (token, jti) {
        (Some(tok), None) if !tok.is_empty() => revocation_target(tok.trim()),
        // The same rule as verification, so a jti revoked here is one it can match.
        (None, Some(j)) if !j.is_empty() && j.len() <= 256 => RevocationTarget {
            keys: vec![format!("jti:{j}")],
            ..RevocationTarget::default()
        },
        _ => {
            return Err(AdminError::Invalid(
                "token",
                "give exactly one of a token or a jti (1-256 bytes)".into(),
            ));
        }
    };
    let (keys, closed) = revoke_keys(t, target, "token").await?;
    Ok(json!({ "revokedKeys": keys, "closedConnections": closed }))
}

/// Revokes every token, session and socket of a user id.
pub async fn revoke_user(t: &Target<'_>, user_id: &str, reason: &str) -> Result<Value, AdminError> {
    check_user_id("userId", user_id)?;
    let (sessions, closed) = revoke_user_everywhere(t, user_id, reason).await?;
    Ok(json!({ "deletedSessions": sessions, "closedConnections": closed }))
}

/// Revokes token keys (durably, before any socket is looked for), ends the sessions
/// opened with them (and the named session), and closes their sockets. Returns (keys
/// revoked, sockets closed).
async fn revoke_keys(
    t: &Target<'_>,
    target: RevocationTarget,
    scope: &str,
) -> Result<(usize, usize), AdminError> {
    let store = t.store();
    let now = now_ms();
    let RevocationTarget {
        keys,
        exp,
        session_id,
    } = target;
    // Keep the entry while the token could still verify; a year when its expiry is unknown.
    let leeway_ms = t.cfg().auth.leeway_secs.saturating_mul(1000);
    let expires_ms = exp
        .map(|e| e.saturating_mul(1000).saturating_add(leeway_ms))
        .unwrap_or(now.saturating_add(365 * 86_400_000));
    let r = Revocation {
        revoked_ms: now,
        expires_ms,
    };
    // Order matters: the revocation is durable before sockets are looked for, so
    // an auth racing with this either sees it or is found by the scan below.
    for k in &keys {
        store.revoke_token(k, &r).await?;
    }
    // A wsToken names its session: end it, so no sibling wsToken resumes it, and
    // close every socket on that session.
    let mut close_keys = keys.clone();
    let mut cleanup = Ok(());
    if let Some(sid) = &session_id {
        cleanup = cleanup.and(store.delete_session(sid));
        close_keys.push(format!("session:{sid}"));
    }
    for k in &keys {
        cleanup = cleanup.and(store.delete_token_sessions(k).map(drop));
    }
    // Sockets close even when session cleanup failed: the revocation itself holds.
    let closed = match t.live() {
        Some(s) => s.registry.close_token(&close_keys, CloseCode::TokenRevoked),
        None => 0,
    };
    t.record("revocation", None, &[("scope", scope)]);
    cleanup?;
    store.flush().await?;
    Ok((keys.len(), closed))
}

/// Revokes every token of a user (a not-before time, so tokens without `jti` go too),
/// ends their sessions and refresh families, and closes their sockets. The revocation is
/// durable before any socket is looked for. Returns (sessions deleted, sockets closed).
async fn revoke_user_everywhere(
    t: &Target<'_>,
    user_id: &str,
    reason: &str,
) -> Result<(usize, usize), AdminError> {
    let store = t.store();
    store.revoke_user_before(user_id, now_ms())?;
    store.flush().await?;
    let sessions = store.delete_user_sessions(user_id);
    let closed = match t.live() {
        Some(s) => s.registry.close_user(user_id, CloseCode::TokenRevoked),
        None => 0,
    };
    t.record(
        "revocation",
        Some(user_id),
        &[("scope", "user"), ("reason", reason)],
    );
    let sessions = sessions?;
    store.flush().await?;
    Ok((sessions, closed))
}
