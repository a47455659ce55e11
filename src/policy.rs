//! Changes to who may do what, applied durably and then to live connections. Every path
//! that changes a user's roles, a role's permissions or a room's ACL (the control socket,
//! the admin API, a room admin over the WebSocket) goes through here, so none of them
//! can forget the second half: each change is written to the store, the in-memory copies
//! (role table, live room record) are replaced, and every connection it may touch is
//! asked to re-evaluate its rights; each connection then re-reads and acts on its own
//! task. This module decides nothing about whether the caller may make the change (its
//! callers check that) and never holds a lock across the store.

use crate::hub::KickTarget;
use crate::protocol::AclChange;
use crate::protocol::now_ms;
use crate::state::AppState;
use crate::store::{RoleRecord, RoomRecord, RoomUserGrant, StoreError, UserGrants};

/// Replaces a user's stored roles and re-evaluates the user's open connections.
pub async fn set_user_roles(
    state: &AppState,
    user_id: &str,
    roles: Vec<String>,
) -> Result<UserGrants, StoreError> {
    let g = state.store.set_user_roles(user_id, roles, now_ms())?;
    state.store.flush().await?;
    state.registry.recheck_user(user_id);
    Ok(g)
}

/// Writes a role (new or changed permissions) and re-evaluates every connection.
pub async fn put_role(state: &AppState, role: &RoleRecord) -> Result<(), StoreError> {
    state.store.put_role(role)?;
    state.store.flush().await?;
    state.roles.reload(&state.store)?;
    state.registry.recheck_all();
    Ok(())
}

/// Deletes a role; returns whether it existed.
pub async fn delete_role(state: &AppState, name: &str) -> Result<bool, StoreError> {
    let existed = state.store.delete_role(name)?;
    state.store.flush().await?;
    state.roles.reload(&state.store)?;
    state.registry.recheck_all();
    Ok(existed)
}

/// Applies `change` to a stored room (ACL, grants, bans, email policy, name, capacity),
/// updates the live room, and re-evaluates its members. Users newly banned are taken out
/// at once with reason `banned`. Returns the new record, or None when there is no such
/// room. `change` may run more than once and must have no side effects.
pub async fn update_room(
    state: &AppState,
    room_id: &str,
    change: impl FnMut(&mut RoomRecord),
) -> Result<Option<RoomRecord>, StoreError> {
    let before = state.store.room(room_id)?;
    let Some(after) = state.store.update_room(room_id, change)? else {
        return Ok(None);
    };
    state.store.flush().await?;
    if let Some(room) = state.hub.get(room_id) {
        room.set_record(after.clone());
        let old_bans = before.map(|b| b.bans).unwrap_or_default();
        for banned in after.bans.iter().filter(|b| !old_bans.contains(b)) {
            room.kick(&KickTarget::User(banned.clone()), "banned");
        }
        room.recheck_members();
    }
    Ok(Some(after))
}

/// Takes connections out of a live room with `reason`; returns how many went. Nothing
/// stops them joining again unless their rights changed (ban the user for that).
pub fn kick(state: &AppState, room_id: &str, target: &KickTarget, reason: &str) -> usize {
    match state.hub.get(room_id) {
        Some(room) => room.kick(target, reason),
        None => 0,
    }
}

/// Deletes a room and its history: members are taken out with reason `room_deleted`
/// first. Returns whether the room existed.
pub async fn delete_room(state: &AppState, room_id: &str) -> Result<bool, StoreError> {
    let existed = state.store.room(room_id)?.is_some();
    if let Some(room) = state.hub.get(room_id) {
        room.kick(&KickTarget::Everyone, "room_deleted");
    }
    // A live room leaves memory only once the writer has applied what it published (so
    // nothing lands after the deletion below).
    state.history.sync().await;
    state.hub.forget(room_id);
    state.store.delete_room_and_history(room_id)?;
    state.store.flush().await?;
    Ok(existed)
}

/// Validates an ACL change (role names, user ids, list sizes up to `limit`); the
/// offending field on failure. Shared by the `room_acl` frame and the admin API.
pub fn check_acl_change(c: &AclChange, limit: usize) -> Result<(), &'static str> {
    for (field, list) in [("read", &c.read), ("write", &c.write), ("admin", &c.admin)] {
        if let Some(list) = list
            && (list.len() > limit || !list.iter().all(|r| valid_role(r)))
        {
            return Err(field);
        }
    }
    let users = [
        ("grant", c.grant.as_ref().map(|g| &g.0)),
        ("revokeGrant", c.revoke_grant.as_ref()),
        ("ban", c.ban.as_ref()),
        ("unban", c.unban.as_ref()),
    ];
    for (field, user) in users {
        if user.is_some_and(|u| !valid_user_id(u)) {
            return Err(field);
        }
    }
    Ok(())
}

/// Applies an ACL change to a room record; false when it would take a grant or ban list
/// past `limit` (the record is then left as it was). Pure, so it may run inside
/// [`update_room`]'s retried closure.
pub fn apply_acl_change(r: &mut RoomRecord, c: &AclChange, limit: usize) -> bool {
    let mut next = r.clone();
    if let Some(v) = &c.read {
        next.read = v.clone();
    }
    if let Some(v) = &c.write {
        next.write = v.clone();
    }
    if let Some(v) = &c.admin {
        next.admin = v.clone();
    }
    if let Some(v) = c.show_emails {
        next.show_emails = v;
    }
    if let Some((user, read, write, admin)) = &c.grant {
        next.user_grants.retain(|g| g.user_id != *user);
        next.user_grants.push(RoomUserGrant {
            user_id: user.clone(),
            read: *read,
            write: *write,
            admin: *admin,
        });
    }
    if let Some(user) = &c.revoke_grant {
        next.user_grants.retain(|g| g.user_id != *user);
    }
    if let Some(user) = &c.ban
        && !next.bans.contains(user)
    {
        next.bans.push(user.clone());
    }
    if let Some(user) = &c.unban {
        next.bans.retain(|b| b != user);
    }
    if next.user_grants.len() > limit || next.bans.len() > limit {
        return false;
    }
    *r = next;
    true
}

/// A role name as ACLs store it: 1-64 bytes of letters, digits and `_-.:`.
pub fn valid_role(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
}

/// A user id as tokens carry it: 1-256 bytes, no control characters.
pub fn valid_user_id(u: &str) -> bool {
    !u.is_empty() && u.len() <= 256 && !u.chars().any(char::is_control)
}
