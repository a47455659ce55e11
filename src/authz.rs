//! Authorization: what a user may do. Two questions live here and nowhere else:
//! which global permissions a set of roles carries (through the role table, a snapshot of
//! the `rolename_role` tree), and what a user may do in one room (its role lists, its
//! per-user grants and bans). Room rights come out as grant values only this module can
//! make; the hub's join takes a [`ReadGrant`] and its publish a [`WriteGrant`], so nothing
//! can enter or speak in a room without passing here. It holds no lock across I/O and
//! never writes the store.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use crate::store::{RoleRecord, RoomRecord, Store, StoreError};

/// A global permission. Every admin action checks one of these, never a role name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Create rooms through the API (auto-creation on join follows `rooms.auto_create`).
    RoomsCreate,
    /// Administer every room: ACLs, kicks, bans, deletion, history.
    RoomsAdmin,
    /// Manage users: create, roles, disable, delete, sessions, revocations.
    UsersManage,
    /// Edit roles and the permissions they carry.
    RolesManage,
    /// Send notifications to users and rooms.
    NotifyPublish,
    /// Read the security-event log.
    EventsRead,
    /// Read server statistics.
    StatsRead,
    /// Create and revoke API keys.
    ApikeysManage,
}

impl Permission {
    /// Every permission, in documentation order.
    pub const ALL: [Permission; 8] = [
        Permission::RoomsCreate,
        Permission::RoomsAdmin,
        Permission::UsersManage,
        Permission::RolesManage,
        Permission::NotifyPublish,
        Permission::EventsRead,
        Permission::StatsRead,
        Permission::ApikeysManage,
    ];

    /// The permission's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::RoomsCreate => "rooms:create",
            Permission::RoomsAdmin => "rooms:admin",
            Permission::UsersManage => "users:manage",
            Permission::RolesManage => "roles:manage",
            Permission::NotifyPublish => "notify:publish",
            Permission::EventsRead => "events:read",
            Permission::StatsRead => "stats:read",
            Permission::ApikeysManage => "apikeys:manage",
        }
    }

    /// Parses a permission name.
    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The roles roomgate ships with, written once into a new (or schema-1) database.
pub fn builtin_roles() -> Vec<RoleRecord> {
    let role = |name: &str, description: &str, perms: &[Permission]| RoleRecord {
        name: name.to_string(),
        permissions: perms.iter().map(|p| p.as_str().to_string()).collect(),
        description: description.to_string(),
        builtin: true,
        updated_ms: 0,
    };
    vec![
        role("user", "Joins and writes where rooms allow", &[]),
        role(
            "moderator",
            "Creates and administers rooms, sends notifications",
            &[
                Permission::RoomsCreate,
                Permission::RoomsAdmin,
                Permission::NotifyPublish,
                Permission::StatsRead,
            ],
        ),
        role("admin", "Every permission", &Permission::ALL),
    ]
}

/// The role → permissions table, kept in memory so a permission check on the message
/// path costs no store read. Reloaded from the store after every role change.
pub struct RoleTable {
    /// Locking rule: replaced whole on reload; readers clone the `Arc` and let go.
    roles: RwLock<Arc<Vec<RoleRecord>>>,
}

impl RoleTable {
    /// Loads the table from the store.
    pub fn load(store: &Store) -> Result<RoleTable, StoreError> {
        Ok(RoleTable {
            roles: RwLock::new(Arc::new(store.roles()?)),
        })
    }

    /// Re-reads the table after a role was changed.
    pub fn reload(&self, store: &Store) -> Result<(), StoreError> {
        let fresh = Arc::new(store.roles()?);
        *self.roles.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    fn snapshot(&self) -> Arc<Vec<RoleRecord>> {
        self.roles.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The permissions carried by `roles`, plus `direct` ones given to the user itself.
    pub fn permissions(&self, roles: &[String], direct: &[String]) -> Permissions {
        let table = self.snapshot();
        let mut set = BTreeSet::new();
        let named = table
            .iter()
            .filter(|r| roles.contains(&r.name))
            .flat_map(|r| r.permissions.iter());
        for name in named.chain(direct.iter()) {
            if let Some(p) = Permission::parse(name) {
                set.insert(p);
            }
        }
        Permissions(set)
    }
}

/// A user's effective global permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions(BTreeSet<Permission>);

impl Permissions {
    pub fn has(&self, p: Permission) -> bool {
        self.0.contains(&p)
    }

    /// Names, for frames and API answers.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|p| p.as_str()).collect()
    }
}

/// A set from explicit permissions (API key scopes).
impl FromIterator<Permission> for Permissions {
    fn from_iter<I: IntoIterator<Item = Permission>>(perms: I) -> Permissions {
        Permissions(perms.into_iter().collect())
    }
}

/// What one user may do in one room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access {
    pub read: bool,
    pub write: bool,
    pub admin: bool,
}

/// Who is asking about a room.
pub struct Subject<'a> {
    pub user_id: &'a str,
    pub roles: &'a [String],
    pub permissions: &'a Permissions,
}

/// The user's rights in `room`. A ban refuses everything. Admin comes from the room's
/// admin roles, a per-user admin grant, or the global `rooms:admin` permission, and
/// implies read and write (an administrator can always see and speak in what they run).
pub fn access(who: &Subject<'_>, room: &RoomRecord) -> Access {
    if room.bans.iter().any(|b| b == who.user_id) {
        return Access::default();
    }
    let listed = |list: &[String]| who.roles.iter().any(|r| list.contains(r));
    let grant = room.user_grants.iter().find(|g| g.user_id == who.user_id);
    let admin = listed(&room.admin)
        || grant.is_some_and(|g| g.admin)
        || who.permissions.has(Permission::RoomsAdmin);
    let write = admin || listed(&room.write) || grant.is_some_and(|g| g.write);
    let read = admin || listed(&room.read) || grant.is_some_and(|g| g.read);
    Access { read, write, admin }
}

/// Proof that a user may read (join) a room.
#[derive(Debug)]
pub struct ReadGrant(());

/// Proof that a user may write (send messages) in a room.
#[derive(Debug)]
pub struct WriteGrant(());

/// Proof that a caller may administer a room (kick, change its ACL).
#[derive(Debug)]
pub struct AdminGrant(());

/// The user may not do that here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("insufficient permissions")]
pub struct Denied;

impl Access {
    pub fn read_grant(self) -> Result<ReadGrant, Denied> {
        self.read.then_some(ReadGrant(())).ok_or(Denied)
    }

    pub fn write_grant(self) -> Result<WriteGrant, Denied> {
        self.write.then_some(WriteGrant(())).ok_or(Denied)
    }

    pub fn admin_grant(self) -> Result<AdminGrant, Denied> {
        self.admin.then_some(AdminGrant(())).ok_or(Denied)
    }
}

/// A write grant for a message the server itself publishes (the `/api/v1/publish`
/// route, already authorized by its API key), not on behalf of a room member.
pub fn unchecked_system_write() -> WriteGrant {
    WriteGrant(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RoomUserGrant;

    fn room() -> RoomRecord {
        RoomRecord {
            id: "r".into(),
            name: "r".into(),
            kind: "chat".into(),
            read: vec!["user".into()],
            write: vec!["writer".into()],
            admin: vec!["owner".into()],
            max_participants: 10,
            auto_created: false,
            created_ms: 0,
            last_active_ms: 0,
            epoch: 1,
            show_emails: true,
            user_grants: vec![RoomUserGrant {
                user_id: "guest".into(),
                read: true,
                write: true,
                admin: false,
            }],
            bans: vec!["troll".into()],
        }
    }

    fn check(user: &str, roles: &[&str], perms: &[Permission]) -> Access {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        let permissions: Permissions = perms.iter().copied().collect();
        access(
            &Subject {
                user_id: user,
                roles: &roles,
                permissions: &permissions,
            },
            &room(),
        )
    }

    #[test]
    fn role_lists_grants_bans_and_global_admin_decide() {
        let a = check("u", &["user"], &[]);
        assert!(a.read && !a.write && !a.admin);
        let a = check("w", &["writer"], &[]);
        assert!(!a.read && a.write && !a.admin);
        let a = check("o", &["owner"], &[]);
        assert!(a.read && a.write && a.admin);
        let a = check("guest", &[], &[]);
        assert!(a.read && a.write && !a.admin);
        assert_eq!(check("troll", &["owner"], &[]), Access::default());
        let a = check("m", &[], &[Permission::RoomsAdmin]);
        assert!(a.read && a.write && a.admin);
        assert!(check("x", &["other"], &[]).read_grant().is_err());
    }

    #[test]
    fn permission_names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
        assert_eq!(Permission::parse("rooms:*"), None);
    }
}
