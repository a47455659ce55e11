//! `/api/v1/rooms` (`rooms:admin`; creating a room also accepts `rooms:create`): stored
//! rooms, their ACLs, live members, kicks and stored history. ACL, grant and ban changes
//! re-evaluate the room's open connections at once, as the `room_acl` frame does.

use serde::Deserialize;
use serde_json::json;

use super::{Answer, ApiError, Call, Need, Route, Verb, live_room, paged};
use crate::admin::{self, RoomCreate, RoomUpdate};
use crate::authz::Permission;
use crate::hub::PageQuery;
use crate::protocol::{AclChange, ChatMessage, HistoryPage};

const NEED: Need = Need::AnyOf(&[Permission::RoomsAdmin]);

pub(super) const ROUTES: &[Route] = &[
    Route {
        verb: Verb::Get,
        path: "/api/v1/rooms",
        need: NEED,
        handler: |c| Box::pin(list_rooms(c)),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/rooms",
        need: Need::AnyOf(&[Permission::RoomsCreate, Permission::RoomsAdmin]),
        handler: |c| Box::pin(create_room(c)),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/rooms/{roomId}",
        need: NEED,
        handler: |c| Box::pin(get_room(c)),
    },
    Route {
        verb: Verb::Patch,
        path: "/api/v1/rooms/{roomId}",
        need: NEED,
        handler: |c| Box::pin(update_room(c)),
    },
    Route {
        verb: Verb::Delete,
        path: "/api/v1/rooms/{roomId}",
        need: NEED,
        handler: |c| Box::pin(delete_room(c)),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/rooms/{roomId}/members",
        need: NEED,
        handler: |c| Box::pin(members(c)),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/rooms/{roomId}/kick",
        need: NEED,
        handler: |c| Box::pin(kick(c)),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/rooms/{roomId}/history",
        need: NEED,
        handler: |c| Box::pin(history(c)),
    },
    Route {
        verb: Verb::Delete,
        path: "/api/v1/rooms/{roomId}/history",
        need: NEED,
        handler: |c| Box::pin(reset_history(c)),
    },
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    read: Option<Vec<String>>,
    #[serde(default)]
    write: Option<Vec<String>>,
    #[serde(default)]
    admin: Option<Vec<String>>,
    #[serde(default)]
    max_participants: Option<u32>,
    #[serde(default)]
    show_emails: Option<bool>,
}

/// The `room_acl` frame's changes plus name and capacity; every part optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    max_participants: Option<u32>,
    #[serde(default)]
    read: Option<Vec<String>>,
    #[serde(default)]
    write: Option<Vec<String>>,
    #[serde(default)]
    admin: Option<Vec<String>>,
    #[serde(default)]
    show_emails: Option<bool>,
    #[serde(default)]
    grant: Option<GrantBody>,
    #[serde(default)]
    revoke_grant: Option<String>,
    #[serde(default)]
    ban: Option<String>,
    #[serde(default)]
    unban: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GrantBody {
    user_id: String,
    #[serde(default)]
    read: bool,
    #[serde(default)]
    write: bool,
    #[serde(default)]
    admin: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KickBody {
    user_id: String,
}

/// GET /api/v1/rooms
async fn list_rooms(c: Call) -> Result<Answer, ApiError> {
    let page = c.page()?;
    let rooms = admin::room_list(&c.target())?;
    Ok(paged(rooms, |r| &r.id, &page))
}

/// POST /api/v1/rooms
async fn create_room(c: Call) -> Result<Answer, ApiError> {
    let b: CreateBody = c.body()?;
    let create = RoomCreate {
        id: b.id,
        name: b.name,
        kind: b.kind,
        read: b.read,
        write: b.write,
        admin: b.admin,
        max_participants: b.max_participants,
        show_emails: b.show_emails,
    };
    Ok(Answer::created(
        admin::room_create(&c.target(), create).await?,
    ))
}

/// GET /api/v1/rooms/{roomId}
async fn get_room(c: Call) -> Result<Answer, ApiError> {
    Ok(Answer::ok(admin::room_get(&c.target(), c.param(0))?))
}

/// PATCH /api/v1/rooms/{roomId}
async fn update_room(c: Call) -> Result<Answer, ApiError> {
    let b: UpdateBody = c.body()?;
    let update = RoomUpdate {
        name: b.name,
        max_participants: b.max_participants,
        acl: AclChange {
            read: b.read,
            write: b.write,
            admin: b.admin,
            show_emails: b.show_emails,
            grant: b.grant.map(|g| (g.user_id, g.read, g.write, g.admin)),
            revoke_grant: b.revoke_grant,
            ban: b.ban,
            unban: b.unban,
        },
    };
    let t = c.target();
    Ok(Answer::ok(
        admin::room_update(&t, c.param(0), update).await?,
    ))
}

/// DELETE /api/v1/rooms/{roomId}
async fn delete_room(c: Call) -> Result<Answer, ApiError> {
    admin::room_delete(&c.target(), c.param(0)).await?;
    Ok(Answer::ok(json!({ "id": c.param(0), "deleted": true })))
}

/// GET /api/v1/rooms/{roomId}/members
async fn members(c: Call) -> Result<Answer, ApiError> {
    let members = admin::room_members(&c.target(), c.param(0))?;
    Ok(Answer::ok(
        json!({ "roomId": c.param(0), "members": members }),
    ))
}

/// POST /api/v1/rooms/{roomId}/kick
async fn kick(c: Call) -> Result<Answer, ApiError> {
    let b: KickBody = c.body()?;
    let count = admin::room_kick(&c.target(), c.param(0), &b.user_id)?;
    Ok(Answer::ok(json!({ "roomId": c.param(0), "count": count })))
}

/// GET /api/v1/rooms/{roomId}/history
async fn history(c: Call) -> Result<Answer, ApiError> {
    let since = c.query_u64("since")?;
    let before = c.query_u64("before")?;
    if since.is_some() && before.is_some() {
        return Err(ApiError::Field("before"));
    }
    // The `history` frame's page size and cap, so both paths page alike.
    let cap = c.state.cfg.rooms.history_max_page;
    let limit = match c.query_u64("limit")? {
        Some(0) => return Err(ApiError::Field("limit")),
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(cap),
        None => cap,
    };
    let room = live_room(&c.state, c.param(0))?;
    let q = PageQuery {
        since,
        before,
        limit,
    };
    let page = crate::history::page(&c.state, &room, q).await?;
    let messages: Vec<ChatMessage<'_>> = page
        .messages
        .iter()
        .map(|r| ChatMessage::from_record(r, page.epoch))
        .collect();
    Ok(Answer::ok(HistoryPage {
        room_id: &room.id,
        epoch: page.epoch,
        seq: page.seq,
        messages,
        has_more: page.has_more,
    }))
}

/// DELETE /api/v1/rooms/{roomId}/history
async fn reset_history(c: Call) -> Result<Answer, ApiError> {
    let epoch = admin::room_history_reset(&c.target(), c.param(0)).await?;
    Ok(Answer::ok(json!({ "roomId": c.param(0), "epoch": epoch })))
}
