//! Stored rooms: create, read, change (name, capacity, ACL, grants, bans, email policy),
//! delete, their live members, and history resets. Live, changes go through `policy`
//! so members whose rights changed are re-evaluated at once and deleted rooms empty first.

use serde::Serialize;

use super::{AdminError, Target, check_roles, check_user_id, valid_name};
use crate::config::ROOM_TYPES;
use crate::hub::KickTarget;
use crate::protocol::{AclChange, PresenceMember, now_ms};
use crate::store::RoomRecord;

/// A room as operators see it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomView {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub admin: Vec<String>,
    pub max_participants: u32,
    pub show_emails: bool,
    pub user_grants: Vec<GrantView>,
    pub bans: Vec<String>,
    pub auto_created: bool,
    pub created_ms: u64,
    /// As clients see it in `room_joined` and `history`.
    pub epoch: u64,
    /// Distinct users in the room now (0 when the server is stopped).
    pub participants: usize,
}

/// One user's own rights in a room.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantView {
    pub user_id: String,
    pub read: bool,
    pub write: bool,
    pub admin: bool,
}

/// A new room; unset lists and settings take the configured defaults for new rooms.
#[derive(Debug, Clone, Default)]
pub struct RoomCreate {
    pub id: String,
    pub name: Option<String>,
    pub kind: Option<String>,
    pub read: Option<Vec<String>>,
    pub write: Option<Vec<String>>,
    pub admin: Option<Vec<String>>,
    pub max_participants: Option<u32>,
    pub show_emails: Option<bool>,
}

/// Changes to a room; every part optional.
#[derive(Debug, Clone, Default)]
pub struct RoomUpdate {
    pub name: Option<String>,
    pub max_participants: Option<u32>,
    /// The same changes the `room_acl` frame makes.
    pub acl: AclChange,
}

fn view(t: &Target<'_>, r: RoomRecord) -> RoomView {
    let participants = t
        .live()
        .and_then(|s| s.hub.get(&r.id))
        .map_or(0, |room| room.user_count());
    RoomView {
        participants,
        id: r.id,
        name: r.name,
        kind: r.kind,
        read: r.read,
        write: r.write,
        admin: r.admin,
        max_participants: r.max_participants,
        show_emails: r.show_emails,
        user_grants: r
            .user_grants
            .into_iter()
            .map(|g| GrantView {
                user_id: g.user_id,
                read: g.read,
                write: g.write,
                admin: g.admin,
            })
            .collect(),
        bans: r.bans,
        auto_created: r.auto_created,
        created_ms: r.created_ms,
        epoch: crate::protocol::wire_epoch(r.epoch),
    }
}

fn check_room_id(t: &Target<'_>, id: &str) -> Result<(), AdminError> {
    let max = t.cfg().rooms.max_room_id_len;
    if valid_name(id, max) {
        Ok(())
    } else {
        Err(AdminError::Invalid(
            "id",
            format!("room id {id:?} must be 1-{max} of A-Z a-z 0-9 _ - . :"),
        ))
    }
}

fn check_display_name(name: &str) -> Result<(), AdminError> {
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(AdminError::Invalid(
            "name",
            "must be 1-256 bytes without control characters".into(),
        ));
    }
    Ok(())
}

fn existing(t: &Target<'_>, id: &str) -> Result<RoomRecord, AdminError> {
    check_room_id(t, id)?;
    t.store()
        .room(id)?
        .ok_or_else(|| AdminError::NoRoom(id.to_string()))
}

/// Creates a room with its own role lists.
pub async fn room_create(t: &Target<'_>, c: RoomCreate) -> Result<RoomView, AdminError> {
    let cfg = &t.cfg().rooms;
    check_room_id(t, &c.id)?;
    let kind = c.kind.unwrap_or_else(|| cfg.default_type.clone());
    if !ROOM_TYPES.contains(&kind.as_str()) {
        return Err(AdminError::Invalid(
            "type",
            format!("{kind:?} is not one of {ROOM_TYPES:?}"),
        ));
    }
    let read = c.read.unwrap_or_else(|| cfg.default_read.clone());
    let write = c.write.unwrap_or_else(|| cfg.default_write.clone());
    let admin = c.admin.unwrap_or_else(|| cfg.default_admin.clone());
    for (field, list) in [("read", &read), ("write", &write), ("admin", &admin)] {
        check_roles(field, list)?;
        if list.len() > cfg.max_acl_entries {
            return Err(AdminError::Invalid(
                field,
                format!("at most {} roles", cfg.max_acl_entries),
            ));
        }
    }
    if let Some(name) = &c.name {
        check_display_name(name)?;
    }
    let max = c.max_participants.unwrap_or(cfg.max_participants);
    if max == 0 {
        return Err(AdminError::Invalid(
            "maxParticipants",
            "must be positive".into(),
        ));
    }
    let now = now_ms();
    let record = RoomRecord {
        name: c.name.unwrap_or_else(|| format!("Room {}", c.id)),
        id: c.id.clone(),
        kind,
        read,
        write,
        admin,
        max_participants: max,
        auto_created: false,
        created_ms: now,
        last_active_ms: now,
        epoch: crate::store::new_epoch(),
        show_emails: c.show_emails.unwrap_or(cfg.show_emails),
        user_grants: Vec::new(),
        bans: Vec::new(),
    };
    let stored = t.store().create_room_if_absent(&record)?;
    if stored != record {
        return Err(AdminError::RoomExists(c.id));
    }
    t.store().flush().await?;
    t.record("room_created", None, &[("roomId", &c.id)]);
    Ok(view(t, record))
}

/// Every stored room, by id.
pub fn room_list(t: &Target<'_>) -> Result<Vec<RoomView>, AdminError> {
    Ok(t.store().rooms()?.into_iter().map(|r| view(t, r)).collect())
}

/// One stored room.
pub fn room_get(t: &Target<'_>, id: &str) -> Result<RoomView, AdminError> {
    Ok(view(t, existing(t, id)?))
}

/// Changes a room. Live, members whose rights changed are re-evaluated at once and newly
/// banned users are taken out.
pub async fn room_update(t: &Target<'_>, id: &str, u: RoomUpdate) -> Result<RoomView, AdminError> {
    check_room_id(t, id)?;
    if let Some(name) = &u.name {
        check_display_name(name)?;
    }
    if u.max_participants == Some(0) {
        return Err(AdminError::Invalid(
            "maxParticipants",
            "must be positive".into(),
        ));
    }
    let limit = t.cfg().rooms.max_acl_entries;
    if let Err(field) = crate::policy::check_acl_change(&u.acl, limit) {
        return Err(AdminError::Invalid(
            field,
            format!("invalid role names or user ids, or more than {limit} entries"),
        ));
    }
    let mut too_many = false;
    let change = |r: &mut RoomRecord| {
        too_many = !crate::policy::apply_acl_change(r, &u.acl, limit);
        if too_many {
            return;
        }
        if let Some(name) = &u.name {
            r.name = name.clone();
        }
        if let Some(max) = u.max_participants {
            r.max_participants = max;
        }
    };
    let updated = match t.live() {
        Some(state) => crate::policy::update_room(state, id, change).await?,
        None => {
            let r = t.store().update_room(id, change)?;
            t.store().flush().await?;
            r
        }
    };
    let Some(record) = updated else {
        return Err(AdminError::NoRoom(id.to_string()));
    };
    if too_many {
        let field = if u.acl.ban.is_some() { "ban" } else { "grant" };
        return Err(AdminError::Invalid(
            field,
            format!("a room holds at most {limit} grants and {limit} bans"),
        ));
    }
    t.record("room_acl_changed", None, &[("roomId", id)]);
    Ok(view(t, record))
}

/// Deletes a room and its history; live members are taken out first (`room_deleted`).
pub async fn room_delete(t: &Target<'_>, id: &str) -> Result<(), AdminError> {
    existing(t, id)?;
    match t.live() {
        Some(state) => {
            crate::policy::delete_room(state, id).await?;
        }
        None => {
            t.store().delete_room_and_history(id)?;
            t.store().flush().await?;
        }
    }
    t.record("room_deleted", None, &[("roomId", id)]);
    Ok(())
}

/// Who is in the room now, by user (empty when the server is stopped).
pub fn room_members(t: &Target<'_>, id: &str) -> Result<Vec<PresenceMember>, AdminError> {
    existing(t, id)?;
    Ok(t.live()
        .and_then(|s| s.hub.get(id))
        .map(|room| room.presence())
        .unwrap_or_default())
}

/// Takes a user's connections out of a live room (`room_left` with reason `kicked`);
/// returns how many went. Ban the user as well to keep them out.
pub fn room_kick(t: &Target<'_>, id: &str, user_id: &str) -> Result<usize, AdminError> {
    existing(t, id)?;
    check_user_id("userId", user_id)?;
    let n = match t.live() {
        Some(state) => {
            crate::policy::kick(state, id, &KickTarget::User(user_id.to_string()), "kicked")
        }
        None => 0,
    };
    let count = n.to_string();
    t.record(
        "room_kick",
        None,
        &[("roomId", id), ("target", "user"), ("count", &count)],
    );
    Ok(n)
}

/// Deletes a room's history and starts a new epoch, so clients' `since` values from
/// before recover nothing. Returns the new epoch as clients see it.
pub async fn room_history_reset(t: &Target<'_>, id: &str) -> Result<u64, AdminError> {
    existing(t, id)?;
    let epoch = match t.live() {
        Some(state) => crate::history::reset(state, id)
            .await?
            .ok_or_else(|| AdminError::NoRoom(id.to_string()))?,
        None => {
            let epoch = crate::store::new_epoch();
            if t.store().update_room(id, |r| r.epoch = epoch)?.is_none() {
                return Err(AdminError::NoRoom(id.to_string()));
            }
            t.store().delete_history(id)?;
            t.store().flush().await?;
            crate::protocol::wire_epoch(epoch)
        }
    };
    t.record("history_reset", None, &[("roomId", id)]);
    Ok(epoch)
}
