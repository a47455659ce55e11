//! Roles and the permissions they carry. Key: the role name. A role that is not stored
//! carries no permissions but still works in room ACL lists, so rooms may name roles
//! that exist only in tokens or grants. The built-in roles are written by the schema-2
//! migration, once; after that they are ordinary records an operator may edit.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, codec};

/// One role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRecord {
    pub name: String,
    /// Permission names (see `authz::Permission`).
    pub permissions: Vec<String>,
    pub description: String,
    /// Shipped with roomgate; may be edited but not deleted.
    pub builtin: bool,
    pub updated_ms: u64,
}

impl Store {
    /// Reads a role.
    pub fn role(&self, name: &str) -> Result<Option<RoleRecord>, StoreError> {
        self.roles
            .get(name.as_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// Every role, by name.
    pub fn roles(&self) -> Result<Vec<RoleRecord>, StoreError> {
        self.roles
            .iter()
            .values()
            .map(|v| codec::decode(&v?))
            .collect()
    }

    /// Writes or replaces a role.
    pub fn put_role(&self, r: &RoleRecord) -> Result<(), StoreError> {
        self.roles.insert(r.name.as_bytes(), codec::encode(r)?)?;
        Ok(())
    }

    /// Deletes a role; returns whether it existed.
    pub fn delete_role(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.roles.remove(name.as_bytes())?.is_some())
    }
}
