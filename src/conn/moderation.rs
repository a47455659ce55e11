//! Live rights on one connection: re-evaluation after an operator or room admin changed
//! roles, permissions or a room's ACL, and the room-admin frames (`presence`, `kick`,
//! `room_acl`). Re-evaluation runs on the connection's own task, asked for through its
//! `Control`, so membership changes stay with the task that owns the memberships. Changes
//! are made through `policy`, never by writing the store or a room record directly.

use crate::audit::Outcome;
use crate::authz::Access;
use crate::hub::{KickTarget, Lookup, Room};
use crate::policy;
use crate::protocol::{
    self, AclChange, ErrorCode, KickWho, Kicked, PermissionsUpdated, Presence, RoomAclView,
    RoomLeft, UserGrantView,
};
use crate::store::RoomRecord;

use super::{Conn, Session};

use std::sync::Arc;

impl Conn {
    /// Re-reads the user's roles and permissions, then re-checks every room the
    /// connection is in: a room it may no longer read is left (`room_left` with reason
    /// `permission_revoked`; the others see `user_left`), a change of rights in a room it
    /// stays in is announced with `permissions_updated`. A connection a room admin
    /// kicked drops its stale membership here.
    pub(super) fn reevaluate(&mut self) {
        let Some(identity) = self.identity() else {
            return;
        };
        let (user_id, claimed) = (identity.user_id.clone(), identity.claimed_roles.clone());
        match self.roles_for(&user_id, &claimed) {
            Ok((roles, permissions)) => {
                if let Session::Authenticated(identity) = &mut self.session {
                    identity.roles = roles;
                    identity.permissions = permissions;
                }
            }
            Err(e) => {
                // Keep the rights we had rather than guess; the next change retries.
                tracing::error!(error = %e, "store failure re-reading roles");
                return;
            }
        }
        let Some(identity) = self.identity() else {
            return;
        };
        let mut revoked: Vec<(String, bool)> = Vec::new();
        let mut changed: Vec<(String, Access)> = Vec::new();
        for (room_id, membership) in &self.rooms {
            let room = membership.room();
            if !room.has_member(self.id) {
                revoked.push((room_id.clone(), false));
                continue;
            }
            let access = identity.access(&room.record());
            if !access.read {
                revoked.push((room_id.clone(), true));
            } else if self.room_access.get(room_id) != Some(&access) {
                changed.push((room_id.clone(), access));
            }
        }
        for (room_id, announce) in revoked {
            self.room_access.remove(&room_id);
            if let Some(membership) = self.rooms.remove(&room_id) {
                membership.leave();
            }
            // A kicked connection already got its `room_left` from the room.
            if announce {
                self.out.send_text(protocol::encode(
                    "room_left",
                    &RoomLeft {
                        room_id: &room_id,
                        reason: Some("permission_revoked"),
                    },
                ));
                self.state.audit.record(
                    "room_access_revoked",
                    Some(&user_id),
                    Outcome::Success,
                    &[("roomId", &room_id), ("connectionId", &self.connection_id)],
                );
            }
        }
        for (room_id, access) in changed {
            self.send_permissions(&room_id, access);
            self.room_access.insert(room_id, access);
        }
    }

    fn send_permissions(&self, room_id: &str, a: Access) {
        self.out.send_text(protocol::encode(
            "permissions_updated",
            &PermissionsUpdated {
                room_id,
                read: a.read,
                write: a.write,
                admin: a.admin,
            },
        ));
    }

    /// Forgets a membership a room admin ended (the room no longer lists this
    /// connection), so a later `join` joins for real and a `message` is refused.
    pub(super) fn drop_if_kicked(&mut self, room_id: &str) {
        if self
            .rooms
            .get(room_id)
            .is_some_and(|m| !m.room().has_member(self.id))
        {
            self.rooms.remove(room_id);
            self.room_access.remove(room_id);
        }
    }

    /// A stored room for a room-level request, or the error already answered.
    fn room_for_request(&self, room_id: &str) -> Option<Arc<Room>> {
        if !self.valid_room_id(room_id) {
            self.error(ErrorCode::InvalidRoomId);
            return None;
        }
        match self.state.hub.load(room_id, false) {
            Ok(Lookup::Found(room)) => Some(room),
            Ok(Lookup::NotFound) => {
                self.error_with(ErrorCode::RoomNotFound, None, Some(room_id), None);
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "store failure loading a room");
                self.error(ErrorCode::Internal);
                None
            }
        }
    }

    /// The caller's rights in `room`, or None (with the refusal answered and recorded)
    /// when it lacks `need`.
    fn require(&self, room: &Room, action: &str, need: fn(&Access) -> bool) -> Option<Access> {
        let identity = self.identity()?;
        let access = identity.access(&room.record());
        if need(&access) {
            return Some(access);
        }
        let user = identity.user_id.clone();
        self.audit_denied(&user, action, &room.id);
        self.error_with(
            ErrorCode::InsufficientPermissions,
            None,
            Some(&room.id),
            None,
        );
        None
    }

    /// `presence {roomId}`: the room's members by user, for anyone who may read it.
    pub(super) fn on_presence(&mut self, room_id: &str) {
        let Some(room) = self.room_for_request(room_id) else {
            return;
        };
        if self.require(&room, "presence", |a| a.read).is_none() {
            return;
        }
        self.out.send_text(protocol::encode(
            "presence",
            &Presence {
                room_id,
                members: room.presence(),
            },
        ));
    }

    /// `kick {roomId, userId | connectionId, ban?}`: a room admin takes a user's or one
    /// connection's memberships away; with `ban` the user also may not come back.
    pub(super) async fn on_kick(&mut self, room_id: &str, who: KickWho, ban: bool) {
        let Some(room) = self.room_for_request(room_id) else {
            return;
        };
        if self.require(&room, "kick", |a| a.admin).is_none() {
            return;
        }
        if let KickWho::User(u) = &who
            && !policy::valid_user_id(u)
        {
            self.error_with(ErrorCode::InvalidField, Some("userId"), Some(room_id), None);
            return;
        }
        let mut count = 0;
        if ban {
            let KickWho::User(user) = &who else {
                return;
            };
            // The ban goes through the ACL path, which takes the user's sockets out.
            let before = room.member_count();
            let user = user.clone();
            let result = policy::update_room(&self.state, room_id, |r| {
                if !r.bans.contains(&user) {
                    r.bans.push(user.clone());
                }
            })
            .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "store failure banning");
                self.error(ErrorCode::Internal);
                return;
            }
            count = before.saturating_sub(room.member_count());
        } else {
            let target = match &who {
                KickWho::User(u) => KickTarget::User(u.clone()),
                KickWho::Connection(c) => KickTarget::Connection(c.clone()),
            };
            count += policy::kick(&self.state, room_id, &target, "kicked");
        }
        let actor = self.identity().map(|i| i.user_id.clone());
        let target = match &who {
            KickWho::User(_) => "user",
            KickWho::Connection(_) => "connection",
        };
        let n = count.to_string();
        self.state.audit.record(
            if ban { "room_ban" } else { "room_kick" },
            actor.as_deref(),
            Outcome::Success,
            &[("roomId", room_id), ("target", target), ("count", &n)],
        );
        self.out.send_text(protocol::encode(
            "kicked",
            &Kicked {
                room_id,
                count,
                banned: ban,
            },
        ));
    }

    /// `room_acl {roomId, ...}`: a room admin reads the ACL (no changes) or changes it.
    /// Every affected connection re-evaluates at once.
    pub(super) async fn on_room_acl(&mut self, room_id: &str, change: AclChange) {
        let Some(room) = self.room_for_request(room_id) else {
            return;
        };
        if self.require(&room, "room_acl", |a| a.admin).is_none() {
            return;
        }
        if let Err(field) = policy::check_acl_change(&change, self.state.cfg.rooms.max_acl_entries)
        {
            self.error_with(ErrorCode::InvalidField, Some(field), Some(room_id), None);
            return;
        }
        let record = if change.is_empty() {
            (*room.record()).clone()
        } else {
            let limit = self.state.cfg.rooms.max_acl_entries;
            let mut too_many = false;
            let result = policy::update_room(&self.state, room_id, |r| {
                too_many = !policy::apply_acl_change(r, &change, limit);
            })
            .await;
            match result {
                Ok(Some(r)) if !too_many => r,
                Ok(Some(_)) => {
                    let field = if change.ban.is_some() { "ban" } else { "grant" };
                    self.error_with(ErrorCode::InvalidField, Some(field), Some(room_id), None);
                    return;
                }
                Ok(None) => {
                    self.error_with(ErrorCode::RoomNotFound, None, Some(room_id), None);
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "store failure changing a room ACL");
                    self.error(ErrorCode::Internal);
                    return;
                }
            }
        };
        if !change.is_empty() {
            let actor = self.identity().map(|i| i.user_id.clone());
            self.state.audit.record(
                "room_acl_changed",
                actor.as_deref(),
                Outcome::Success,
                &[("roomId", room_id), ("via", "websocket")],
            );
        }
        self.out
            .send_text(protocol::encode("room_acl", &acl_view(&record)));
    }
}

/// The `room_acl` answer for a record.
pub(crate) fn acl_view(r: &RoomRecord) -> RoomAclView<'_> {
    RoomAclView {
        room_id: &r.id,
        read: &r.read,
        write: &r.write,
        admin: &r.admin,
        show_emails: r.show_emails,
        user_grants: r
            .user_grants
            .iter()
            .map(|g| UserGrantView {
                user_id: &g.user_id,
                read: g.read,
                write: g.write,
                admin: g.admin,
            })
            .collect(),
        bans: &r.bans,
    }
}
