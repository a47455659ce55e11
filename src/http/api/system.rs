//! `/api/v1/stats` (`stats:read`), `/api/v1/events` (`events:read`) and the OpenAPI
//! document (public: it describes the API, not the data).

use serde_json::json;

use super::{Answer, ApiError, Call, Need, OPENAPI, Route, Verb};
use crate::admin;
use crate::authz::Permission;
use crate::store::EventFilter;

pub(super) const ROUTES: &[Route] = &[
    Route {
        verb: Verb::Get,
        path: "/api/v1/stats",
        need: Need::AnyOf(&[Permission::StatsRead]),
        handler: |c| Box::pin(stats(c)),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/events",
        need: Need::AnyOf(&[Permission::EventsRead]),
        handler: |c| Box::pin(events(c)),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/openapi.json",
        need: Need::Public,
        handler: |c| Box::pin(openapi(c)),
    },
];

/// GET /api/v1/stats
async fn stats(c: Call) -> Result<Answer, ApiError> {
    Ok(Answer::ok(admin::stats(&c.target())?))
}

/// GET /api/v1/events
async fn events(c: Call) -> Result<Answer, ApiError> {
    let page = c.page()?;
    let filter = EventFilter {
        since_ms: c.query_u64("since")?,
        until_ms: c.query_u64("until")?,
        action: c.query("action").map(str::to_string),
        result: c.query("result").map(str::to_string),
        limit: Some(page.limit),
        after: page.after,
    };
    let (items, next) = admin::events(&c.target(), &filter).await?;
    Ok(Answer::ok(json!({
        "items": items,
        "nextCursor": next.map(hex::encode),
    })))
}

/// GET /api/v1/openapi.json
async fn openapi(_c: Call) -> Result<Answer, ApiError> {
    Ok(Answer::json_text(OPENAPI))
}
