//! `/api/v1/users`, sessions and revocations (`users:manage`). Accounts are the built-in
//! ones; stored roles and sessions belong to any user id, so an identity provider's
//! users can be given roles and have their sessions ended too.

use serde::Deserialize;

use super::{Answer, ApiError, Call, Need, Route, Verb, paged};
use crate::admin::{self, UserAdd};
use crate::authz::Permission;

const NEED: Need = Need::AnyOf(&[Permission::UsersManage]);

pub(super) const ROUTES: &[Route] = &[
    Route {
        verb: Verb::Get,
        path: "/api/v1/users",
        need: NEED,
        handler: |c| Box::pin(list_users(c)),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/users",
        need: NEED,
        handler: |c| Box::pin(create_user(c)),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/users/{username}",
        need: NEED,
        handler: |c| Box::pin(get_user(c)),
    },
    Route {
        verb: Verb::Delete,
        path: "/api/v1/users/{username}",
        need: NEED,
        handler: |c| Box::pin(delete_user(c)),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/users/{username}/disable",
        need: NEED,
        handler: |c| Box::pin(disable_user(c)),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/users/{username}/enable",
        need: NEED,
        handler: |c| Box::pin(enable_user(c)),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/users/{username}/password",
        need: NEED,
        handler: |c| Box::pin(set_password(c)),
    },
    Route {
        verb: Verb::Put,
        path: "/api/v1/users/{userId}/roles",
        need: NEED,
        handler: |c| Box::pin(set_roles(c)),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/users/{userId}/sessions",
        need: NEED,
        handler: |c| Box::pin(list_sessions(c)),
    },
    Route {
        verb: Verb::Delete,
        path: "/api/v1/users/{userId}/sessions/{sessionId}",
        need: NEED,
        handler: |c| Box::pin(terminate_session(c)),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/revocations",
        need: NEED,
        handler: |c| Box::pin(list_revocations(c)),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/revocations",
        need: NEED,
        handler: |c| Box::pin(revoke(c)),
    },
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    username: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    /// Absent: one is generated and returned once.
    #[serde(default)]
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    #[serde(default)]
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesBody {
    roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RevokeBody {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
}

/// GET /api/v1/users
async fn list_users(c: Call) -> Result<Answer, ApiError> {
    let page = c.page()?;
    let users = admin::user_list(&c.target())?;
    Ok(paged(users, |u| &u.username, &page))
}

/// POST /api/v1/users
async fn create_user(c: Call) -> Result<Answer, ApiError> {
    let b: CreateBody = c.body()?;
    let add = UserAdd {
        username: b.username,
        email: b.email,
        roles: b.roles,
        password: b.password,
    };
    Ok(Answer::created(admin::user_add(&c.target(), add).await?))
}

/// GET /api/v1/users/{username}
async fn get_user(c: Call) -> Result<Answer, ApiError> {
    Ok(Answer::ok(admin::user_get(&c.target(), c.param(0))?))
}

/// DELETE /api/v1/users/{username}
async fn delete_user(c: Call) -> Result<Answer, ApiError> {
    Ok(Answer::ok(
        admin::user_delete(&c.target(), c.param(0)).await?,
    ))
}

/// POST /api/v1/users/{username}/disable
async fn disable_user(c: Call) -> Result<Answer, ApiError> {
    let t = c.target();
    Ok(Answer::ok(
        admin::user_set_disabled(&t, c.param(0), true).await?,
    ))
}

/// POST /api/v1/users/{username}/enable
async fn enable_user(c: Call) -> Result<Answer, ApiError> {
    let t = c.target();
    Ok(Answer::ok(
        admin::user_set_disabled(&t, c.param(0), false).await?,
    ))
}

/// POST /api/v1/users/{username}/password
async fn set_password(c: Call) -> Result<Answer, ApiError> {
    // An empty body asks for a generated password.
    let b: PasswordBody = if c.body.is_empty() {
        PasswordBody { password: None }
    } else {
        c.body()?
    };
    let t = c.target();
    Ok(Answer::ok(
        admin::user_passwd(&t, c.param(0), b.password).await?,
    ))
}

/// PUT /api/v1/users/{userId}/roles
async fn set_roles(c: Call) -> Result<Answer, ApiError> {
    let b: RolesBody = c.body()?;
    Ok(Answer::ok(
        admin::user_roles(&c.target(), c.param(0), b.roles).await?,
    ))
}

/// GET /api/v1/users/{userId}/sessions
async fn list_sessions(c: Call) -> Result<Answer, ApiError> {
    let page = c.page()?;
    let sessions = admin::sessions(&c.target(), c.param(0))?;
    Ok(paged(sessions, |s| &s.session_id, &page))
}

/// DELETE /api/v1/users/{userId}/sessions/{sessionId}
async fn terminate_session(c: Call) -> Result<Answer, ApiError> {
    let t = c.target();
    Ok(Answer::ok(
        admin::session_terminate(&t, c.param(0), c.param(1)).await?,
    ))
}

/// GET /api/v1/revocations
async fn list_revocations(c: Call) -> Result<Answer, ApiError> {
    let page = c.page()?;
    let all = admin::revocations(&c.target())?;
    Ok(paged(all, |r| &r.id, &page))
}

/// POST /api/v1/revocations
async fn revoke(c: Call) -> Result<Answer, ApiError> {
    let b: RevokeBody = c.body()?;
    let t = c.target();
    let answer = match (b.token, b.jti, b.user_id) {
        (token @ Some(_), None, None) => admin::revoke_token(&t, token, None).await?,
        (None, jti @ Some(_), None) => admin::revoke_token(&t, None, jti).await?,
        (None, None, Some(user)) => admin::revoke_user(&t, &user, "user").await?,
        _ => return Err(ApiError::Field("token")),
    };
    Ok(Answer::ok(answer))
}
