//! Key material: the JWT and WS HMAC secrets and the event key that hashes user ids in
//! security events. A secret comes from config, then its `*_file`, then a file in the
//! data root generated on first start (32 random bytes as 64 hex characters, mode 0600,
//! never overwritten). This module must never log or return a secret in an error.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::auth::random_hex;
use crate::config::{Config, Secret};

/// Resolved keys.
pub struct Secrets {
    pub jwt: Vec<u8>,
    pub ws: Vec<u8>,
    pub event_key: Vec<u8>,
}

/// A secret could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read or create secret file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no JWT secret: auth.jwt_secret and auth.jwt_secret_file are unset and {0} does not exist (start the server once to generate it, or pass --data DIR with the server's data root)"
    )]
    NoJwtSecret(PathBuf),
    #[error("secret file {0} is empty")]
    Empty(PathBuf),
    #[error("production mode refuses the {name} from {path}: {why}")]
    Weak {
        name: &'static str,
        path: PathBuf,
        why: String,
    },
}

/// Creates the data root (mode 0700) if it does not exist.
pub fn ensure_data_dir(dir: &Path) -> Result<(), SecretsError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| SecretsError::DataDir {
            path: dir.to_path_buf(),
            source,
        })
}

/// Resolves every secret for a configuration, generating missing ones in the data root.
pub fn resolve(cfg: &Config) -> Result<Secrets, SecretsError> {
    ensure_data_dir(&cfg.data_dir)?;
    let a = &cfg.auth;
    // Inline secrets were judged with the rest of the config.
    let production = cfg.mode == crate::config::Mode::Production;
    Ok(Secrets {
        jwt: one(
            &cfg.data_dir,
            "jwt_secret",
            production,
            &a.jwt_secret,
            &a.jwt_secret_file,
        )?,
        ws: one(
            &cfg.data_dir,
            "ws_secret",
            production,
            &a.ws_secret,
            &a.ws_secret_file,
        )?,
        event_key: one(&cfg.data_dir, "event_key", production, &None, &None)?,
    })
}

/// The JWT secret as the server would use it, for minting development tokens; unlike
/// `resolve` it never creates the data root or generates a key that no server uses.
pub fn existing_jwt_secret(cfg: &Config) -> Result<Vec<u8>, SecretsError> {
    let a = &cfg.auth;
    if let Some(v) = &a.jwt_secret {
        return Ok(v.expose().as_bytes().to_vec());
    }
    let path = a
        .jwt_secret_file
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("jwt_secret"));
    if a.jwt_secret_file.is_none() && !path.exists() {
        return Err(SecretsError::NoJwtSecret(path));
    }
    read(&path)
}

fn one(
    data: &Path,
    name: &'static str,
    production: bool,
    value: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<Vec<u8>, SecretsError> {
    if let Some(v) = value {
        return Ok(v.expose().as_bytes().to_vec());
    }
    // Files (given, or generated earlier and perhaps edited since) are judged here.
    let checked = |path: &Path| -> Result<Vec<u8>, SecretsError> {
        let key = read(path)?;
        if production && let Some(why) = crate::config::weak_secret(&key) {
            return Err(SecretsError::Weak {
                name,
                path: path.to_path_buf(),
                why,
            });
        }
        Ok(key)
    };
    if let Some(path) = file {
        return checked(path);
    }
    let path = data.join(name);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut f) => {
            let secret = random_hex(32);
            f.write_all(secret.as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|source| SecretsError::File {
                    path: path.clone(),
                    source,
                })?;
            Ok(secret.into_bytes())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => checked(&path),
        Err(source) => Err(SecretsError::File { path, source }),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, SecretsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretsError::File {
        path: path.to_path_buf(),
        source,
    })?;
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(SecretsError::Empty(path.to_path_buf()));
    }
    Ok(trimmed.as_bytes().to_vec())
}
