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
use crate::protocol::{CloseCode, now_ms};
use crate::state::AppState;
use crate::store::{EventFilter, EventRecord, Revocation, RoomRecord, Store, StoreError};

/// An operator request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Stats,
    UserRoles {
        user_id: String,
        roles: Vec<String>,
    },
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
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AdminError {
    /// Stable code for the control-socket reply.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::Invalid(_) => "invalid_input",
            AdminError::RoomExists(_) => "room_exists",
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
            let g = store.set_user_roles(&user_id, roles, now)?;
            store.flush().await?;
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
            store.revoke_user_before(&user_id, now)?;
            store.flush().await?;
            let sessions = store.delete_user_sessions(&user_id);
            let closed = match &target {
                Target::Live(s) => s.registry.close_user(&user_id, CloseCode::TokenRevoked),
                Target::Offline { .. } => 0,
            };
            target.record("revocation", Some(&user_id), &[("scope", "user")]);
            let sessions = sessions?;
            store.flush().await?;
            Ok(json!({ "deletedSessions": sessions, "closedConnections": closed }))
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
