//! Built-in accounts. Key: the username (it is also the `sub` of the access tokens
//! roomgate issues, and the key of the user's stored roles in `userid_grants`). The
//! password is kept only as an argon2id PHC string.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, codec};

/// A built-in account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub username: String,
    pub email: Option<String>,
    /// argon2id PHC string.
    pub password_hash: String,
    pub disabled: bool,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl Store {
    /// Reads an account.
    pub fn account(&self, username: &str) -> Result<Option<AccountRecord>, StoreError> {
        self.accounts
            .get(username.as_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// Creates an account unless the name is taken; returns whether it was created.
    pub fn create_account(&self, a: &AccountRecord) -> Result<bool, StoreError> {
        let bytes = codec::encode(a)?;
        Ok(self
            .accounts
            .compare_and_swap(a.username.as_bytes(), None as Option<&[u8]>, Some(bytes))?
            .is_ok())
    }

    /// Replaces an account.
    pub fn put_account(&self, a: &AccountRecord) -> Result<(), StoreError> {
        self.accounts
            .insert(a.username.as_bytes(), codec::encode(a)?)?;
        Ok(())
    }

    /// Deletes an account and its stored roles; returns whether it existed.
    pub fn delete_account(&self, username: &str) -> Result<bool, StoreError> {
        self.users.remove(username.as_bytes())?;
        Ok(self.accounts.remove(username.as_bytes())?.is_some())
    }

    /// Every account, by name.
    pub fn accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
        self.accounts
            .iter()
            .values()
            .map(|v| codec::decode(&v?))
            .collect()
    }

    /// Number of accounts.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }
}
