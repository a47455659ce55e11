//! API keys for the admin HTTP API. A key is shown once when it is made and stored only
//! as its SHA-256 digest (keys carry 256 random bits, so a fast digest is enough: there
//! is nothing to guess). Two trees: `keydigest_apikey` (hex digest => record), read on
//! every API request, and `apikeyname_keydigest` (name => hex digest), which keeps names
//! unique. Both are written together in one transaction.

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{Store, StoreError, codec};

/// One API key, without the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public id (16 hex chars), shown in lists and accepted by revoke.
    pub id: String,
    /// Unique, chosen by the operator.
    pub name: String,
    /// Hex SHA-256 of the key.
    pub digest: String,
    /// Permission names (see `authz::Permission`).
    pub scopes: Vec<String>,
    pub created_ms: u64,
    /// 0 until first use; updated at most once per `api.key_last_used_interval_secs`.
    pub last_used_ms: u64,
}

fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    }
}

impl Store {
    /// Stores a new key unless its name is taken; returns whether it was stored.
    pub fn create_api_key(&self, k: &ApiKeyRecord) -> Result<bool, StoreError> {
        let bytes = codec::encode(k)?;
        (&self.apikeys, &self.apikey_names)
            .transaction(|(keys, names)| {
                if names.get(k.name.as_bytes())?.is_some() {
                    return Ok(false);
                }
                names.insert(k.name.as_bytes(), k.digest.as_bytes())?;
                keys.insert(k.digest.as_bytes(), bytes.as_slice())?;
                Ok::<_, ConflictableTransactionError<StoreError>>(true)
            })
            .map_err(tx_error)
    }

    /// The key with this digest, if it exists.
    pub fn api_key_by_digest(&self, digest: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.apikeys
            .get(digest.as_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// Every key, by digest order (callers sort as they show them).
    pub fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.apikeys
            .iter()
            .values()
            .map(|v| codec::decode(&v?))
            .collect()
    }

    /// Deletes a key and its name; returns whether it existed.
    pub fn delete_api_key(&self, k: &ApiKeyRecord) -> Result<bool, StoreError> {
        (&self.apikeys, &self.apikey_names)
            .transaction(|(keys, names)| {
                let existed = keys.remove(k.digest.as_bytes())?.is_some();
                names.remove(k.name.as_bytes())?;
                Ok::<_, ConflictableTransactionError<StoreError>>(existed)
            })
            .map_err(tx_error)
    }

    /// Records a use of the key, unless it was deleted meanwhile (a revoked key must not
    /// come back through a late update).
    pub fn touch_api_key(&self, digest: &str, now_ms: u64) -> Result<(), StoreError> {
        loop {
            let Some(old) = self.apikeys.get(digest.as_bytes())? else {
                return Ok(());
            };
            let mut k: ApiKeyRecord = codec::decode(&old)?;
            k.last_used_ms = now_ms;
            let new = codec::encode(&k)?;
            if self
                .apikeys
                .compare_and_swap(digest.as_bytes(), Some(old), Some(new))?
                .is_ok()
            {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;

    fn key(name: &str, digest: &str) -> ApiKeyRecord {
        ApiKeyRecord {
            id: format!("id-{name}"),
            name: name.into(),
            digest: digest.into(),
            scopes: vec!["stats:read".into()],
            created_ms: 1,
            last_used_ms: 0,
        }
    }

    #[test]
    fn names_are_unique_and_a_revoked_key_stays_gone() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        assert!(s.create_api_key(&key("ci", "aa")).unwrap());
        assert!(!s.create_api_key(&key("ci", "bb")).unwrap());
        assert!(s.api_key_by_digest("bb").unwrap().is_none());
        s.touch_api_key("aa", 42).unwrap();
        assert_eq!(s.api_key_by_digest("aa").unwrap().unwrap().last_used_ms, 42);
        assert!(s.delete_api_key(&key("ci", "aa")).unwrap());
        // A late touch must not bring the key back.
        s.touch_api_key("aa", 43).unwrap();
        assert!(s.api_key_by_digest("aa").unwrap().is_none());
        // The name is free again.
        assert!(s.create_api_key(&key("ci", "cc")).unwrap());
        assert_eq!(s.api_keys().unwrap().len(), 1);
    }
}
