//! `/api/v1/apikeys` (`apikeys:manage`): the same keys `roomgate apikey` manages. A
//! caller may only give a new key permissions it holds itself, so this route cannot be
//! used to climb.

use serde::Deserialize;

use super::{Answer, ApiError, Call, Need, Route, Verb, paged};
use crate::admin;
use crate::authz::Permission;
use crate::http::HttpError;

const NEED: Need = Need::AnyOf(&[Permission::ApikeysManage]);

pub(super) const ROUTES: &[Route] = &[
    Route {
        verb: Verb::Get,
        path: "/api/v1/apikeys",
        need: NEED,
        handler: |c| Box::pin(list_keys(c)),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/apikeys",
        need: NEED,
        handler: |c| Box::pin(create_key(c)),
    },
    Route {
        verb: Verb::Delete,
        path: "/api/v1/apikeys/{key}",
        need: NEED,
        handler: |c| Box::pin(revoke_key(c)),
    },
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    scopes: Vec<String>,
}

/// GET /api/v1/apikeys
async fn list_keys(c: Call) -> Result<Answer, ApiError> {
    let page = c.page()?;
    let keys = admin::apikey_list(&c.target())?;
    Ok(paged(keys, |k| &k.name, &page))
}

/// POST /api/v1/apikeys
async fn create_key(c: Call) -> Result<Answer, ApiError> {
    let b: CreateBody = c.body()?;
    // Unknown names are left for `apikey_create` to refuse as invalid.
    let beyond_own = b
        .scopes
        .iter()
        .filter_map(|s| Permission::parse(s.trim()))
        .any(|p| !c.caller_has(p));
    if beyond_own {
        return Err(ApiError::Refused(HttpError::InsufficientPermissions));
    }
    let t = c.target();
    Ok(Answer::created(
        admin::apikey_create(&t, &b.name, &b.scopes).await?,
    ))
}

/// DELETE /api/v1/apikeys/{key}
async fn revoke_key(c: Call) -> Result<Answer, ApiError> {
    let revoked = admin::apikey_revoke(&c.target(), c.param(0)).await?;
    Ok(Answer::ok(serde_json::json!({
        "id": revoked.id, "name": revoked.name, "revoked": true,
    })))
}
