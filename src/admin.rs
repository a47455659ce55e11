//! Operator commands (`roomgate user roles`, `room create`, `revoke`, `stats`, `events`),
//! executed the same way whether the server is running (through the control socket, with
//! live effects such as closing revoked sockets) or stopped (directly on the store).
//! Requests and replies are plain serde types so the control socket can carry them as
//! JSON lines. Everything here validates its input and answers with an `AdminError`;
//! nothing panics on bad input.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::{self, Outcome};
use crate::auth::{RevocationTarget, revocation_target};
use crate::config::{Config, ROOM_TYPES};
use crate::passwords::Passwords;
use crate::protocol::{CloseCode, now_ms};
use crate::state::AppState;
use crate::store::{
    AccountRecord, EventFilter, EventRecord, Revocation, RoomRecord, Store, StoreError,
};

/// An operator request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Stats,
    UserRoles {
        user_id: String,
        roles: Vec<String>,
    },
    UserAdd {
        username: String,
        email: Option<String>,
        roles: Vec<String>,
        /// None: generate one and return it.
        password: Option<String>,
    },
    UserPasswd {
        username: String,
        /// None: generate one and return it.
        password: Option<String>,
    },
    UserDisable {
        username: String,
    },
    UserEnable {
        username: String,
    },
    UserDelete {
        username: String,
    },
    UserList,
    RoomCreate {
        id: String,
        name: Option<String>,
        kind: String,
        read: Vec<String>,
        write: Vec<String>,
        admin: Vec<String>,
        max_participants: Option<u32>,
    },
    RevokeToken {
        token: Option<String>,
        jti: Option<String>,
    },
    RevokeUser {
        user_id: String,
    },
    Events {
        since_ms: Option<u64>,
        action: Option<String>,
        limit: Option<usize>,
    },
}

/// A refused or failed operator request.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("room {0:?} already exists")]
    RoomExists(String),
    #[error("account {0:?} already exists")]
    AccountExists(String),
    #[error("no account {0:?}")]
    NoAccount(String),
    #[error("password hashing failed")]
    Password(#[from] crate::passwords::PasswordError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AdminError {
    /// Stable code for the control-socket reply.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::Invalid(_) => "invalid_input",
            AdminError::RoomExists(_) => "room_exists",
            AdminError::AccountExists(_) => "account_exists",
            AdminError::NoAccount(_) => "no_account",
            AdminError::Password(_) => "password_error",
            AdminError::Store(_) => "store_error",
        }
    }
}

/// Where a request runs: the live server, or the store of a stopped one.
pub enum Target<'a> {
    Live(&'a AppState),
    Offline {
        store: &'a Store,
        cfg: &'a Config,
        event_key: &'a [u8],
    },
}

impl Target<'_> {
    fn store(&self) -> &Store {
        match self {
            Target::Live(s) => &s.store,
            Target::Offline { store, .. } => store,
        }
    }

    fn cfg(&self) -> &Config {
        match self {
            Target::Live(s) => &s.cfg,
            Target::Offline { cfg, .. } => cfg,
        }
    }

    fn passwords(&self) -> Result<Passwords, AdminError> {
        match self {
            Target::Live(s) => Ok(s.passwords.clone()),
            Target::Offline { cfg, .. } => Ok(Passwords::new(&cfg.accounts)?),
        }
    }

    fn record(&self, action: &str, user: Option<&str>, meta: &[(&str, &str)]) {
        match self {
            Target::Live(s) => s.audit.record(action, user, Outcome::Success, meta),
            Target::Offline {
                store, event_key, ..
            } => {
                let e = EventRecord {
                    ts_ms: now_ms(),
                    action: action.to_string(),
                    user: user
                        .map(|u| audit::hash_user(event_key, u))
                        .unwrap_or_default(),
                    result: "success".into(),
                    metadata: meta
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                };
                if let Err(err) = store.append_events(&[e]) {
                    tracing::error!(error = %err, "writing security event failed");
                }
            }
        }
    }
}

/// Revokes every token of a user (a not-before time, so tokens without `jti` go too),
/// ends their sessions and refresh families, and closes their sockets. The revocation is
/// durable before any socket is looked for.
async fn revoke_user(
    target: &Target<'_>,
    user_id: &str,
    reason: &str,
) -> Result<(usize, usize), AdminError> {
    let store = target.store();
    store.revoke_user_before(user_id, now_ms())?;
    store.flush().await?;
    let sessions = store.delete_user_sessions(user_id);
    let closed = match target {
        Target::Live(s) => s.registry.close_user(user_id, CloseCode::TokenRevoked),
        Target::Offline { .. } => 0,
    };
    target.record(
        "revocation",
        Some(user_id),
        &[("scope", "user"), ("reason", reason)],
    );
    let sessions = sessions?;
    store.flush().await?;
    Ok((sessions, closed))
}

fn check_username(name: &str) -> Result<(), AdminError> {
    if crate::accounts::valid_username(name) {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "username {name:?} must be 1-64 of A-Z a-z 0-9 _ - . @"
        )))
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
            Some(problem) => Err(AdminError::Invalid(problem)),
            None => Ok((p, false)),
        },
        None => Ok((crate::auth::random_hex(12), true)),
    }
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
}

fn check_roles(field: &str, roles: &[String]) -> Result<(), AdminError> {
    for r in roles {
        if !valid_name(r, 64) {
            return Err(AdminError::Invalid(format!(
                "{field}: {r:?} is not a role name (1-64 of A-Z a-z 0-9 _ - . :)"
            )));
        }
    }
    Ok(())
}

/// Runs a request.
pub async fn execute(req: Request, target: Target<'_>) -> Result<Value, AdminError> {
    let store = target.store();
    let now = now_ms();
    match req {
        Request::Stats => {
            let (conns, authed, rooms, participants) = match &target {
                Target::Live(s) => {
                    let (c, a) = s.registry.counts();
                    let (r, p) = s.hub.counts();
                    (c, a, r, p)
                }
                Target::Offline { .. } => (0, 0, 0, 0),
            };
            Ok(json!({
                "totalConnections": conns,
                "authenticatedConnections": authed,
                "totalRooms": rooms,
                "totalParticipants": participants,
                "storedRooms": store.room_count(),
                "sessions": store.session_count(),
                "revokedTokens": store.revocation_count(),
                "securityEvents": store.event_count(),
                "running": matches!(target, Target::Live(_)),
            }))
        }
        Request::UserRoles { user_id, roles } => {
            if user_id.is_empty() || user_id.len() > 256 {
                return Err(AdminError::Invalid("user id must be 1-256 bytes".into()));
            }
            check_roles("roles", &roles)?;
            // Live, the change reaches the user's open sockets at once.
            let g = match &target {
                Target::Live(state) => {
                    crate::policy::set_user_roles(state, &user_id, roles).await?
                }
                Target::Offline { .. } => {
                    let g = store.set_user_roles(&user_id, roles, now)?;
                    store.flush().await?;
                    g
                }
            };
            target.record("roles_changed", Some(&user_id), &[]);
            Ok(json!({ "userId": user_id, "roles": g.roles }))
        }
        Request::RoomCreate {
            id,
            name,
            kind,
            read,
            write,
            admin,
            max_participants,
        } => {
            let cfg = target.cfg();
            if !valid_name(&id, cfg.rooms.max_room_id_len) {
                return Err(AdminError::Invalid(format!(
                    "room id {id:?} must be 1-{} of A-Z a-z 0-9 _ - . :",
                    cfg.rooms.max_room_id_len
                )));
            }
            if !ROOM_TYPES.contains(&kind.as_str()) {
                return Err(AdminError::Invalid(format!(
                    "type {kind:?} is not one of {ROOM_TYPES:?}"
                )));
            }
            check_roles("read", &read)?;
            check_roles("write", &write)?;
            check_roles("admin", &admin)?;
            let max = max_participants.unwrap_or(cfg.rooms.max_participants);
            if max == 0 {
                return Err(AdminError::Invalid(
                    "max participants must be positive".into(),
                ));
            }
            let record = RoomRecord {
                name: name.unwrap_or_else(|| format!("Room {id}")),
                id: id.clone(),
                kind,
                read,
                write,
                admin,
                max_participants: max,
                auto_created: false,
                created_ms: now,
                last_active_ms: now,
                epoch: crate::store::new_epoch(),
                show_emails: cfg.rooms.show_emails,
                user_grants: Vec::new(),
                bans: Vec::new(),
            };
            let stored = store.create_room_if_absent(&record)?;
            if stored != record {
                return Err(AdminError::RoomExists(id));
            }
            store.flush().await?;
            target.record("room_created", None, &[("roomId", &id)]);
            Ok(json!({
                "id": record.id, "name": record.name, "type": record.kind,
                "read": record.read, "write": record.write, "admin": record.admin,
                "maxParticipants": record.max_participants,
            }))
        }
        Request::RevokeToken { token, jti } => {
            let target_token = match (token, jti) {
                (Some(t), None) if !t.is_empty() => revocation_target(t.trim()),
                // The same rule as verification, so a jti revoked here is one it can match.
                (None, Some(j)) if !j.is_empty() && j.len() <= 256 => RevocationTarget {
                    keys: vec![format!("jti:{j}")],
                    ..RevocationTarget::default()
                },
                _ => {
                    return Err(AdminError::Invalid(
                        "give exactly one of a token or a jti (1-256 bytes)".into(),
                    ));
                }
            };
            let RevocationTarget {
                keys,
                exp,
                session_id,
            } = target_token;
            // Keep the entry while the token could still verify; a year when its expiry is unknown.
            let leeway_ms = target.cfg().auth.leeway_secs.saturating_mul(1000);
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
            let closed = match &target {
                Target::Live(s) => s.registry.close_token(&close_keys, CloseCode::TokenRevoked),
                Target::Offline { .. } => 0,
            };
            target.record("revocation", None, &[("scope", "token")]);
            cleanup?;
            store.flush().await?;
            Ok(json!({ "revokedKeys": keys.len(), "closedConnections": closed }))
        }
        Request::RevokeUser { user_id } => {
            if user_id.is_empty() || user_id.len() > 256 {
                return Err(AdminError::Invalid("user id must be 1-256 bytes".into()));
            }
            let (sessions, closed) = revoke_user(&target, &user_id, "user").await?;
            Ok(json!({ "deletedSessions": sessions, "closedConnections": closed }))
        }
        Request::UserAdd {
            username,
            email,
            roles,
            password,
        } => {
            check_username(&username)?;
            check_roles("roles", &roles)?;
            if email
                .as_ref()
                .is_some_and(|e| e.is_empty() || e.len() > 320)
            {
                return Err(AdminError::Invalid("email must be 1-320 bytes".into()));
            }
            let (password, generated) = choose_password(&target, password)?;
            let hash = target.passwords()?.hash(&password).await?;
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
            target.record("account_created", Some(&username), &[]);
            let mut out = json!({ "username": username, "email": email, "roles": roles });
            if generated {
                out["password"] = Value::String(password);
            }
            Ok(out)
        }
        Request::UserPasswd { username, password } => {
            let mut account = existing_account(store, &username)?;
            let (password, generated) = choose_password(&target, password)?;
            account.password_hash = target.passwords()?.hash(&password).await?;
            account.updated_ms = now;
            store.put_account(&account)?;
            // A new password ends every session made with the old one.
            let (_, closed) = revoke_user(&target, &username, "password_change").await?;
            target.record("password_changed", Some(&username), &[]);
            let mut out = json!({ "username": username, "closedConnections": closed });
            if generated {
                out["password"] = Value::String(password);
            }
            Ok(out)
        }
        Request::UserDisable { username } => {
            let mut account = existing_account(store, &username)?;
            account.disabled = true;
            account.updated_ms = now;
            store.put_account(&account)?;
            let (_, closed) = revoke_user(&target, &username, "account_disabled").await?;
            target.record("account_disabled", Some(&username), &[]);
            Ok(json!({ "username": username, "disabled": true, "closedConnections": closed }))
        }
        Request::UserEnable { username } => {
            let mut account = existing_account(store, &username)?;
            account.disabled = false;
            account.updated_ms = now;
            store.put_account(&account)?;
            store.flush().await?;
            target.record("account_enabled", Some(&username), &[]);
            Ok(json!({ "username": username, "disabled": false }))
        }
        Request::UserDelete { username } => {
            existing_account(store, &username)?;
            store.delete_account(&username)?;
            let (_, closed) = revoke_user(&target, &username, "account_deleted").await?;
            target.record("account_deleted", Some(&username), &[]);
            Ok(json!({ "username": username, "deleted": true, "closedConnections": closed }))
        }
        Request::UserList => {
            let mut out = Vec::new();
            for a in store.accounts()? {
                let roles = store.user_grants(&a.username)?.roles;
                out.push(json!({
                    "username": a.username, "email": a.email, "roles": roles,
                    "disabled": a.disabled, "createdMs": a.created_ms, "updatedMs": a.updated_ms,
                }));
            }
            Ok(Value::Array(out))
        }
        Request::Events {
            since_ms,
            action,
            limit,
        } => {
            if let Target::Live(s) = &target {
                s.audit.sync().await;
            }
            let events = store.events(&EventFilter {
                since_ms,
                action,
                limit,
            })?;
            Ok(Value::Array(events.into_iter().map(event_json).collect()))
        }
    }
}

/// An event as the CLI prints it.
pub fn event_json(e: EventRecord) -> Value {
    let meta: serde_json::Map<String, Value> = e
        .metadata
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    json!({
        "timestamp": e.ts_ms,
        "action": e.action,
        "userId": e.user,
        "result": e.result,
        "metadata": meta,
    })
}
