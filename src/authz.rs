//! Room authorization: a user's roles against a room's read/write/admin role lists (the
//! seed's `hasRoomPermission`). `authorize` returns a grant value that only this module
//! can make; the hub's join takes a [`ReadGrant`] and its publish a [`WriteGrant`], so
//! nothing can enter or speak in a room without passing here. It reads no state of its
//! own and never touches the store.

use crate::store::RoomRecord;

/// An action on a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
    Admin,
}

/// Proof that a user may read (join) a room.
#[derive(Debug)]
pub struct ReadGrant(());

/// Proof that a user may write (send messages) in a room.
#[derive(Debug)]
pub struct WriteGrant(());

/// The user's roles do not include any role the room lists for the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("insufficient permissions")]
pub struct Denied;

/// Whether any of `roles` appears in the room's list for `action`.
pub fn allows(roles: &[String], room: &RoomRecord, action: Action) -> bool {
    let required = match action {
        Action::Read => &room.read,
        Action::Write => &room.write,
        Action::Admin => &room.admin,
    };
    roles.iter().any(|r| required.contains(r))
}

/// Authorizes reading a room.
pub fn authorize_read(roles: &[String], room: &RoomRecord) -> Result<ReadGrant, Denied> {
    allows(roles, room, Action::Read)
        .then_some(ReadGrant(()))
        .ok_or(Denied)
}

/// Authorizes writing in a room.
pub fn authorize_write(roles: &[String], room: &RoomRecord) -> Result<WriteGrant, Denied> {
    allows(roles, room, Action::Write)
        .then_some(WriteGrant(()))
        .ok_or(Denied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomRecord {
        RoomRecord {
            id: "r".into(),
            name: "r".into(),
            kind: "chat".into(),
            read: vec!["user".into()],
            write: vec!["writer".into()],
            admin: vec!["admin".into()],
            max_participants: 10,
            auto_created: false,
            created_ms: 0,
            last_active_ms: 0,
        }
    }

    #[test]
    fn role_lists_decide() {
        let r = room();
        let user = vec!["user".to_string()];
        assert!(authorize_read(&user, &r).is_ok());
        assert!(authorize_write(&user, &r).is_err());
        let writer = vec!["writer".to_string()];
        assert!(authorize_read(&writer, &r).is_err());
        assert!(authorize_write(&writer, &r).is_ok());
        assert!(!allows(&user, &r, Action::Admin));
    }
}
