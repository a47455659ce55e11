//! Sessions (the seed's `ws_session:<id>`): one per successful `auth`, kept until it
//! expires or is revoked, so a `wsToken` can resume after a disconnect or a restart.
//! Key: session id (64 hex chars, 256 random bits). `token_exp` follows the access token
//! that opened or last refreshed the session; `conn` refuses a resume past it.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, codec};

/// A WebSocket session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub session_id: String,
    pub user_id: String,
    pub email: Option<String>,
    pub connection_id: String,
    pub roles: Vec<String>,
    pub client_ip: String,
    pub created_ms: u64,
    pub expires_ms: u64,
    /// Revocation key of the token that opened the session (`jti:..` or `sha256:..`).
    pub token_key: String,
    /// `exp` of that token, seconds since the epoch.
    pub token_exp: u64,
    /// The refresh family (login) of a roomgate access token that opened the session, so
    /// that ending the login (logout, refresh-token reuse) also ends the session and
    /// every `wsToken` resume of it. None for other tokens and for sessions from schema 2.
    pub family: Option<String>,
}

/// A session as schemas 1 and 2 stored it (no family); read only by the migration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SessionRecordV2 {
    pub session_id: String,
    pub user_id: String,
    pub email: Option<String>,
    pub connection_id: String,
    pub roles: Vec<String>,
    pub client_ip: String,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub token_key: String,
    pub token_exp: u64,
}

impl SessionRecordV2 {
    /// The family of an old session is unknown: it ends with its token, as before.
    pub(super) fn upgrade(self) -> SessionRecord {
        SessionRecord {
            session_id: self.session_id,
            user_id: self.user_id,
            email: self.email,
            connection_id: self.connection_id,
            roles: self.roles,
            client_ip: self.client_ip,
            created_ms: self.created_ms,
            expires_ms: self.expires_ms,
            token_key: self.token_key,
            token_exp: self.token_exp,
            family: None,
        }
    }
}

impl Store {
    /// Writes or replaces a session.
    pub fn put_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        self.sessions
            .insert(s.session_id.as_bytes(), codec::encode(s)?)?;
        Ok(())
    }

    /// Replaces a session only if it still exists; returns whether it did.
    pub fn replace_session_if_present(&self, s: &SessionRecord) -> Result<bool, StoreError> {
        let key = s.session_id.as_bytes();
        let new = codec::encode(s)?;
        loop {
            let Some(current) = self.sessions.get(key)? else {
                return Ok(false);
            };
            match self
                .sessions
                .compare_and_swap(key, Some(current), Some(new.clone()))?
            {
                Ok(()) => return Ok(true),
                // Changed under us (another resume): read again and retry.
                Err(_) => continue,
            }
        }
    }

    /// Moves a session onto the access token that refreshed it: `token_exp` becomes
    /// `exp` (seconds), the rest is kept. Returns whether the session still existed (a
    /// revocation may have deleted it, and must not be undone here).
    pub fn set_session_token_exp(&self, id: &str, exp: u64) -> Result<bool, StoreError> {
        let key = id.as_bytes();
        loop {
            let Some(current) = self.sessions.get(key)? else {
                return Ok(false);
            };
            let mut record: SessionRecord = codec::decode(&current)?;
            record.token_exp = exp;
            let new = codec::encode(&record)?;
            match self
                .sessions
                .compare_and_swap(key, Some(current), Some(new))?
            {
                Ok(()) => return Ok(true),
                // Changed under us (a resume): read again and retry.
                Err(_) => continue,
            }
        }
    }

    /// Reads a session, whether or not it has expired.
    pub fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.sessions
            .get(id.as_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// Every stored session of a user (expired ones the sweeper has not reached
    /// included), by session id.
    pub fn user_sessions(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.sessions.iter() {
            let (_, v) = item?;
            let s: SessionRecord = codec::decode(&v)?;
            if s.user_id == user_id {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Deletes one session.
    pub fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        self.sessions.remove(id.as_bytes())?;
        Ok(())
    }

    /// Deletes every session of a user; returns how many went.
    pub fn delete_user_sessions(&self, user_id: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.sessions.iter() {
            let (k, v) = item?;
            let s: SessionRecord = codec::decode(&v)?;
            if s.user_id == user_id {
                self.sessions.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Deletes every session opened with the token whose revocation key is `token_key`.
    pub fn delete_token_sessions(&self, token_key: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.sessions.iter() {
            let (k, v) = item?;
            let s: SessionRecord = codec::decode(&v)?;
            if s.token_key == token_key {
                self.sessions.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Deletes every session opened by an access token of refresh family `family`;
    /// returns how many went.
    pub fn delete_family_sessions(&self, family: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.sessions.iter() {
            let (k, v) = item?;
            let s: SessionRecord = codec::decode(&v)?;
            if s.family.as_deref() == Some(family) {
                self.sessions.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Removes sessions that expired before `now_ms`; returns how many.
    pub fn sweep_sessions(&self, now_ms: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.sessions.iter() {
            let (k, v) = item?;
            // An undecodable record cannot be used by anyone; sweeping it is safe.
            let expired = codec::decode::<SessionRecord>(&v)
                .map(|s| s.expires_ms <= now_ms)
                .unwrap_or(true);
            if expired {
                self.sessions.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Number of stored sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }
}
