//! Stored roles and permissions per user id (the seed's `user_roles:<id>` and
//! `user_permissions:<id>` sets). Key: the user id as it appears in the JWT `sub`.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, codec};

/// What the store grants a user beyond the configured default roles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserGrants {
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub updated_ms: u64,
}

impl Store {
    /// The user's stored grants (empty when none).
    pub fn user_grants(&self, user_id: &str) -> Result<UserGrants, StoreError> {
        Ok(self
            .users
            .get(user_id.as_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()?
            .unwrap_or_default())
    }

    /// Replaces the user's stored roles, keeping permissions.
    pub fn set_user_roles(
        &self,
        user_id: &str,
        roles: Vec<String>,
        now_ms: u64,
    ) -> Result<UserGrants, StoreError> {
        let mut g = self.user_grants(user_id)?;
        g.roles = roles;
        g.updated_ms = now_ms;
        self.users.insert(user_id.as_bytes(), codec::encode(&g)?)?;
        Ok(g)
    }
}
