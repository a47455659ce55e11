//! Password hashing with argon2id (PHC strings; OWASP parameters by default). Hashing and
//! verification run on the blocking pool behind a small semaphore, so a login flood
//! queues here instead of starving the async workers that carry messages. Unknown users
//! are verified against a dummy hash made with the same parameters, so timing does not
//! tell which accounts exist. This module never logs or stores a password.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OnceCell, Semaphore};

use crate::config::AccountsConfig;

/// Hashing failed (bad parameters or an unreadable stored hash).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password hashing task failed")]
    Task,
}

/// The password hasher. Cheap to clone.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    limit: Arc<Semaphore>,
    dummy: Arc<OnceCell<String>>,
    /// Verifications run so far (the dummy ones included), for stats and tests.
    verifications: Arc<AtomicU64>,
}

impl Passwords {
    /// A hasher with the configured cost and concurrency.
    pub fn new(cfg: &AccountsConfig) -> Result<Passwords, PasswordError> {
        let params = Params::new(
            cfg.argon2_memory_kib,
            cfg.argon2_iterations,
            cfg.argon2_parallelism,
            None,
        )
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
        Ok(Passwords {
            params,
            limit: Arc::new(Semaphore::new(cfg.hash_concurrency)),
            dummy: Arc::new(OnceCell::new()),
            verifications: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Hashes a password into a PHC string.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let _permit = self
            .limit
            .acquire()
            .await
            .map_err(|_| PasswordError::Task)?;
        let params = self.params.clone();
        let password = password.to_string();
        tokio::task::spawn_blocking(move || hash_blocking(&params, &password))
            .await
            .map_err(|_| PasswordError::Task)?
    }

    /// Checks a password against a stored hash; with no stored hash, does the same work
    /// against a dummy and returns false.
    pub async fn verify(&self, stored: Option<&str>, password: &str) -> bool {
        let known = stored.is_some();
        let stored = match stored {
            Some(s) => s.to_string(),
            None => match self.dummy_hash().await {
                Some(d) => d,
                None => return false,
            },
        };
        let Ok(_permit) = self.limit.acquire().await else {
            return false;
        };
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&stored)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        ok && known
    }

    /// Password verifications run so far.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    async fn dummy_hash(&self) -> Option<String> {
        self.dummy
            .get_or_try_init(|| async {
                let random = crate::auth::random_hex(16);
                self.hash(&random).await
            })
            .await
            .ok()
            .cloned()
    }
}

/// Hashes on the current thread (the CLI uses it with no runtime pressure).
pub fn hash_blocking(params: &Params, password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt[..]);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let cfg = AccountsConfig {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            ..AccountsConfig::default()
        };
        let p = Passwords::new(&cfg).unwrap();
        let h = p.hash("correct horse").await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{h}");
        assert!(p.verify(Some(&h), "correct horse").await);
        assert!(!p.verify(Some(&h), "correct horse ").await);
        assert!(!p.verify(None, "correct horse").await);
        assert!(!p.verify(Some("garbage"), "x").await);
    }

    #[test]
    fn owasp_defaults() {
        let p = Passwords::new(&AccountsConfig::default()).unwrap();
        assert_eq!(
            (p.params.m_cost(), p.params.t_cost(), p.params.p_cost()),
            (19_456, 2, 1)
        );
    }
}
