//! Token revocations. A token is named by `jti:<jti>` when it has a `jti`, otherwise by
//! `sha256:<hex digest of the token>`: the raw token is never a key (the seed used
//! `revoked_token:<token>`). A user-wide revocation stores a cut-off time instead, so a
//! user's tokens issued before it are refused without listing them.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, codec, u64_from};

/// One revoked token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub revoked_ms: u64,
    /// After this the token has expired anyway and the entry can be swept.
    pub expires_ms: u64,
}

impl Store {
    /// Revokes a token by key and waits until that is on disk.
    pub async fn revoke_token(&self, key: &str, r: &Revocation) -> Result<(), StoreError> {
        self.revocations.insert(key.as_bytes(), codec::encode(r)?)?;
        self.flush().await
    }

    /// Blocking variant for the CLI when no server runs.
    pub fn revoke_token_blocking(&self, key: &str, r: &Revocation) -> Result<(), StoreError> {
        self.revocations.insert(key.as_bytes(), codec::encode(r)?)?;
        self.flush_blocking()
    }

    /// Whether a token key is revoked.
    pub fn is_token_revoked(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.revocations.contains_key(key.as_bytes())?)
    }

    /// Refuses every token of `user_id` issued at or before `cutoff_ms`.
    pub fn revoke_user_before(&self, user_id: &str, cutoff_ms: u64) -> Result<(), StoreError> {
        self.user_revoked
            .insert(user_id.as_bytes(), &cutoff_ms.to_be_bytes())?;
        Ok(())
    }

    /// The user's revocation cut-off, if any.
    pub fn user_revoked_before(&self, user_id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .user_revoked
            .get(user_id.as_bytes())?
            .and_then(|v| u64_from(&v)))
    }

    /// Removes token revocations whose token has expired; returns how many.
    pub fn sweep_revocations(&self, now_ms: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.revocations.iter() {
            let (k, v) = item?;
            // Keep undecodable entries: dropping a revocation by mistake would let a token back in.
            if let Ok(r) = codec::decode::<Revocation>(&v)
                && r.expires_ms <= now_ms
            {
                self.revocations.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Every token revocation, by key.
    pub fn token_revocations(&self) -> Result<Vec<(String, Revocation)>, StoreError> {
        let mut out = Vec::new();
        for item in self.revocations.iter() {
            let (k, v) = item?;
            out.push((String::from_utf8_lossy(&k).into_owned(), codec::decode(&v)?));
        }
        Ok(out)
    }

    /// Every user-wide cut-off (user id, ms), by user id.
    pub fn user_revocations(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out = Vec::new();
        for item in self.user_revoked.iter() {
            let (k, v) = item?;
            if let Some(cutoff) = u64_from(&v) {
                out.push((String::from_utf8_lossy(&k).into_owned(), cutoff));
            }
        }
        Ok(out)
    }

    /// Number of token revocations stored.
    pub fn revocation_count(&self) -> usize {
        self.revocations.len()
    }
}
