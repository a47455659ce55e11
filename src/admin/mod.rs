//! Operator operations (users, roles, rooms, revocations, sessions, API keys, stats,
//! events), each one function that validates its input and answers with an
//! `AdminError`, executed the same way whether the request came from the CLI through the
//! control socket, from the admin HTTP API (both on the live server, with live effects
//! such as closing revoked sockets), or from the CLI on the store of a stopped server.
//! Changes to rights go through `policy` when the server runs, so open connections are
//! re-evaluated. `Request` is the control socket's serde form of the CLI's commands;
//! `execute` maps it onto the functions. Nothing here decides who may call it (the
//! control socket's file mode and the API's permission checks do) and nothing panics on
//! bad input.

mod apikeys;
mod roles;
mod rooms;
mod system;
mod users;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use apikeys::{
    API_KEY_PREFIX, ApiKeyView, CreatedApiKey, apikey_create, apikey_list, apikey_revoke,
    authenticate_api_key,
};
pub use roles::{RoleView, role_delete, role_get, role_list, role_put};
pub use rooms::{
    GrantView, RoomCreate, RoomUpdate, RoomView, room_create, room_delete, room_get,
    room_history_reset, room_kick, room_list, room_members, room_update,
};
pub use system::{event_json, events, stats};
pub use users::{
    AccountView, RevocationView, SessionView, UserAdd, UserDetail, revocations, revoke_token,
    revoke_user, session_terminate, sessions, user_add, user_delete, user_get, user_list,
    user_passwd, user_roles, user_set_disabled, user_stored_roles,
};

use crate::audit::{self, Outcome};
use crate::config::Config;
use crate::passwords::Passwords;
use crate::protocol::now_ms;
use crate::state::AppState;
use crate::store::{EventRecord, Store, StoreError};

/// An operator request, as the control socket carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Stats,
    /// Replaces the user's stored roles (an empty list clears them).
    UserRoles {
        user_id: String,
        roles: Vec<String>,
    },
    /// Reads the user's stored roles; changes nothing.
    UserRolesShow {
        user_id: String,
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
    RoomList,
    RoomShow {
        id: String,
    },
    RoomDelete {
        id: String,
    },
    RoleList,
    SessionList {
        user_id: String,
    },
    RevocationList,
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
    ApikeyCreate {
        name: String,
        scopes: Vec<String>,
    },
    ApikeyList,
    ApikeyRevoke {
        /// The key's name or id.
        key: String,
    },
    /// Writes a backup of the whole database (and the data root's key files) to `path`,
    /// an absolute path on the server's machine.
    Backup {
        path: String,
    },
}

/// A refused or failed operator request.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A field is invalid: the field's name, and what is wrong with it.
    #[error("invalid {0}: {1}")]
    Invalid(&'static str, String),
    #[error("room {0:?} already exists")]
    RoomExists(String),
    #[error("account {0:?} already exists")]
    AccountExists(String),
    #[error("an API key named {0:?} already exists")]
    ApiKeyExists(String),
    #[error("no account {0:?}")]
    NoAccount(String),
    #[error("no room {0:?}")]
    NoRoom(String),
    #[error("no role {0:?}")]
    NoRole(String),
    #[error("role {0:?} is built in and cannot be deleted")]
    BuiltinRole(String),
    #[error("no such session of this user")]
    NoSession,
    #[error("no API key with name or id {0:?}")]
    NoApiKey(String),
    #[error("password hashing failed")]
    Password(#[from] crate::passwords::PasswordError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("backup failed: {0}")]
    Backup(String),
}

impl AdminError {
    /// Stable code for the control-socket reply.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::Invalid(..) => "invalid_input",
            AdminError::RoomExists(_) => "room_exists",
            AdminError::AccountExists(_) => "account_exists",
            AdminError::ApiKeyExists(_) => "apikey_exists",
            AdminError::NoAccount(_) => "no_account",
            AdminError::NoRoom(_) => "no_room",
            AdminError::NoRole(_) => "no_role",
            AdminError::BuiltinRole(_) => "role_builtin",
            AdminError::NoSession => "no_session",
            AdminError::NoApiKey(_) => "no_apikey",
            AdminError::Password(_) => "password_error",
            AdminError::Store(_) => "store_error",
            AdminError::Backup(_) => "backup_error",
        }
    }
}

/// Where a request runs: the live server, or the store of a stopped one.
pub enum Target<'a> {
    /// The running server, asked through the control socket.
    Live(&'a AppState),
    /// The running server, asked through the admin HTTP API; `actor` names the caller in
    /// security events (`apikey:<id>`, or `user:<keyed hash>`, never a raw user id).
    Api { state: &'a AppState, actor: &'a str },
    Offline {
        store: &'a Store,
        cfg: &'a Config,
        event_key: &'a [u8],
    },
}

impl Target<'_> {
    /// The running server, when there is one.
    pub fn live(&self) -> Option<&AppState> {
        match self {
            Target::Live(s) | Target::Api { state: s, .. } => Some(s),
            Target::Offline { .. } => None,
        }
    }

    fn store(&self) -> &Store {
        match self {
            Target::Live(s) | Target::Api { state: s, .. } => &s.store,
            Target::Offline { store, .. } => store,
        }
    }

    fn cfg(&self) -> &Config {
        match self {
            Target::Live(s) | Target::Api { state: s, .. } => &s.cfg,
            Target::Offline { cfg, .. } => cfg,
        }
    }

    fn passwords(&self) -> Result<Passwords, AdminError> {
        match self.live() {
            Some(s) => Ok(s.passwords.clone()),
            None => Ok(Passwords::new(&self.cfg().accounts)?),
        }
    }

    /// Records a successful operator action; API calls also name their caller.
    fn record(&self, action: &str, user: Option<&str>, meta: &[(&str, &str)]) {
        match self {
            Target::Live(s) => s.audit.record(action, user, Outcome::Success, meta),
            Target::Api { state, actor } => {
                let mut meta = meta.to_vec();
                meta.push(("via", "api"));
                meta.push(("actor", actor));
                state.audit.record(action, user, Outcome::Success, &meta);
            }
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

/// A name as roles, room ids and API key names allow: 1-`max` of A-Z a-z 0-9 _ - . :
pub(crate) fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
}

fn check_roles(field: &'static str, roles: &[String]) -> Result<(), AdminError> {
    for r in roles {
        if !valid_name(r, 64) {
            return Err(AdminError::Invalid(
                field,
                format!("{r:?} is not a role name (1-64 of A-Z a-z 0-9 _ - . :)"),
            ));
        }
    }
    Ok(())
}

/// A user id as tokens carry it: 1-256 bytes.
fn check_user_id(field: &'static str, user_id: &str) -> Result<(), AdminError> {
    if user_id.is_empty() || user_id.len() > 256 || user_id.chars().any(char::is_control) {
        return Err(AdminError::Invalid(
            field,
            "a user id must be 1-256 bytes without control characters".into(),
        ));
    }
    Ok(())
}

/// Runs a control-socket request.
pub async fn execute(req: Request, target: Target<'_>) -> Result<Value, AdminError> {
    let t = &target;
    Ok(match req {
        Request::Stats => stats(t)?,
        Request::UserRoles { user_id, roles } => user_roles(t, &user_id, roles).await?,
        Request::UserRolesShow { user_id } => user_stored_roles(t, &user_id)?,
        Request::UserAdd {
            username,
            email,
            roles,
            password,
        } => {
            let add = UserAdd {
                username,
                email,
                roles,
                password,
            };
            user_add(t, add).await?
        }
        Request::UserPasswd { username, password } => user_passwd(t, &username, password).await?,
        Request::UserDisable { username } => user_set_disabled(t, &username, true).await?,
        Request::UserEnable { username } => user_set_disabled(t, &username, false).await?,
        Request::UserDelete { username } => user_delete(t, &username).await?,
        Request::UserList => to_json(user_list(t)?),
        Request::RoomCreate {
            id,
            name,
            kind,
            read,
            write,
            admin,
            max_participants,
        } => {
            let create = RoomCreate {
                id,
                name,
                kind: Some(kind),
                read: Some(read),
                write: Some(write),
                admin: Some(admin),
                max_participants,
                show_emails: None,
            };
            let room = room_create(t, create).await?;
            // The CLI's answer predates the API's fuller room view.
            json!({
                "id": room.id, "name": room.name, "type": room.kind,
                "read": room.read, "write": room.write, "admin": room.admin,
                "maxParticipants": room.max_participants,
            })
        }
        Request::RoomList => to_json(room_list(t)?),
        Request::RoomShow { id } => {
            let mut room = to_json(room_get(t, &id)?);
            // Members exist only on a running server; a stopped one has none to show.
            if t.live().is_some() {
                room["members"] = to_json(room_members(t, &id)?);
            }
            room
        }
        Request::RoomDelete { id } => {
            room_delete(t, &id).await?;
            json!({ "id": id, "deleted": true })
        }
        Request::RoleList => to_json(role_list(t)?),
        Request::SessionList { user_id } => to_json(sessions(t, &user_id)?),
        Request::RevocationList => to_json(revocations(t)?),
        Request::RevokeToken { token, jti } => revoke_token(t, token, jti).await?,
        Request::RevokeUser { user_id } => revoke_user(t, &user_id, "user").await?,
        Request::Events {
            since_ms,
            action,
            limit,
        } => {
            let filter = crate::store::EventFilter {
                since_ms,
                action,
                limit,
                ..Default::default()
            };
            Value::Array(events(t, &filter).await?.0)
        }
        Request::ApikeyCreate { name, scopes } => to_json(apikey_create(t, &name, &scopes).await?),
        Request::ApikeyList => to_json(apikey_list(t)?),
        Request::ApikeyRevoke { key } => to_json(apikey_revoke(t, &key).await?),
        Request::Backup { path } => system::backup(t, &path).await?,
    })
}

/// A typed answer as the control socket sends it.
fn to_json<T: Serialize>(v: T) -> Value {
    // Our views are plain structs of strings, numbers and lists: they always serialise.
    serde_json::to_value(v).unwrap_or(Value::Null)
}
