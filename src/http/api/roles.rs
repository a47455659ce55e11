//! `/api/v1/roles` (`roles:manage`): roles and the global permissions they carry. A
//! change reloads the role table and re-evaluates every open connection. Note that
//! `roles:manage` can give any role any permission, so it is as strong as `admin`.

use serde::Deserialize;

use super::{Answer, ApiError, Call, Need, Route, Verb, paged};
use crate::admin;
use crate::authz::Permission;

const NEED: Need = Need::AnyOf(&[Permission::RolesManage]);

pub(super) const ROUTES: &[Route] = &[
    Route {
        verb: Verb::Get,
        path: "/api/v1/roles",
        need: NEED,
        handler: |c| Box::pin(list_roles(c)),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/roles/{name}",
        need: NEED,
        handler: |c| Box::pin(get_role(c)),
    },
    Route {
        verb: Verb::Put,
        path: "/api/v1/roles/{name}",
        need: NEED,
        handler: |c| Box::pin(put_role(c)),
    },
    Route {
        verb: Verb::Delete,
        path: "/api/v1/roles/{name}",
        need: NEED,
        handler: |c| Box::pin(delete_role(c)),
    },
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    permissions: Vec<String>,
    #[serde(default)]
    description: Option<String>,
}

/// GET /api/v1/roles
async fn list_roles(c: Call) -> Result<Answer, ApiError> {
    let page = c.page()?;
    let roles = admin::role_list(&c.target())?;
    Ok(paged(roles, |r| &r.name, &page))
}

/// GET /api/v1/roles/{name}
async fn get_role(c: Call) -> Result<Answer, ApiError> {
    Ok(Answer::ok(admin::role_get(&c.target(), c.param(0))?))
}

/// PUT /api/v1/roles/{name}
async fn put_role(c: Call) -> Result<Answer, ApiError> {
    let b: RoleBody = c.body()?;
    let t = c.target();
    let (role, created) = admin::role_put(&t, c.param(0), b.permissions, b.description).await?;
    Ok(if created {
        Answer::created(role)
    } else {
        Answer::ok(role)
    })
}

/// DELETE /api/v1/roles/{name}
async fn delete_role(c: Call) -> Result<Answer, ApiError> {
    admin::role_delete(&c.target(), c.param(0)).await?;
    Ok(Answer::ok(
        serde_json::json!({ "name": c.param(0), "deleted": true }),
    ))
}
