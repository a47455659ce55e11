//! Refresh tokens and their families. A login starts a family; every refresh rotates
//! the token within it. Refresh tokens are stored only as SHA-256 digests (key: hex
//! digest), never as issued. Revoking a family is a revocation entry `family:<id>` in
//! `tokenkey_revocation`, which also refuses the family's access tokens (they carry the
//! family id in `sid`).
//!
//! Trees: `refreshdigest_refresh`: hex digest => [`RefreshRecord`];
//! `familyid_family`: family id => [`FamilyRecord`].

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, codec};

/// One issued refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub family: String,
    pub username: String,
    pub issued_ms: u64,
    pub expires_ms: u64,
    /// Set when it was exchanged; a second use is reuse.
    pub used_ms: Option<u64>,
}

/// One login's chain of refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyRecord {
    pub username: String,
    pub created_ms: u64,
    pub expires_ms: u64,
}

/// Outcome of trying to use a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// Unknown digest.
    Unknown,
    /// This use rotated it; the record as it was before.
    Rotated(RefreshRecord),
    /// It had been used before: reuse.
    Reused(RefreshRecord),
}

impl Store {
    /// Stores a new family and its first refresh token.
    pub fn put_family(&self, id: &str, f: &FamilyRecord) -> Result<(), StoreError> {
        self.families.insert(id.as_bytes(), codec::encode(f)?)?;
        Ok(())
    }

    /// Reads a family.
    pub fn family(&self, id: &str) -> Result<Option<FamilyRecord>, StoreError> {
        self.families
            .get(id.as_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// Stores a refresh token by digest.
    pub fn put_refresh(&self, digest: &str, r: &RefreshRecord) -> Result<(), StoreError> {
        self.refresh.insert(digest.as_bytes(), codec::encode(r)?)?;
        Ok(())
    }

    /// Marks a refresh token used, atomically: of two concurrent uses exactly one rotates.
    pub fn use_refresh(&self, digest: &str, now_ms: u64) -> Result<RefreshUse, StoreError> {
        loop {
            let Some(current) = self.refresh.get(digest.as_bytes())? else {
                return Ok(RefreshUse::Unknown);
            };
            let record: RefreshRecord = codec::decode(&current)?;
            if record.used_ms.is_some() {
                return Ok(RefreshUse::Reused(record));
            }
            let used = RefreshRecord {
                used_ms: Some(now_ms),
                ..record.clone()
            };
            match self.refresh.compare_and_swap(
                digest.as_bytes(),
                Some(current),
                Some(codec::encode(&used)?),
            )? {
                Ok(()) => return Ok(RefreshUse::Rotated(record)),
                Err(_) => continue,
            }
        }
    }

    /// Drops refresh tokens past their expiry, and families `family_grace_ms` past theirs
    /// (access tokens of a family outlive it by up to their own lifetime, and a family
    /// that is gone refuses them); returns how many.
    pub fn sweep_refresh(&self, now_ms: u64, family_grace_ms: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.refresh.iter() {
            let (k, v) = item?;
            if codec::decode::<RefreshRecord>(&v).map_or(true, |r| r.expires_ms <= now_ms) {
                self.refresh.remove(k)?;
                n += 1;
            }
        }
        for item in self.families.iter() {
            let (k, v) = item?;
            if codec::decode::<FamilyRecord>(&v).map_or(true, |f| {
                f.expires_ms.saturating_add(family_grace_ms) <= now_ms
            }) {
                self.families.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }
}
