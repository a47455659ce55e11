//! Permissions of the data root, which holds the signing keys, the database (accounts,
//! password hashes, refresh-token digests, history) and the control socket: the root
//! and the database directory are made 0700 and every file in them 0600, whoever
//! created them. The database files matter most: sled creates them with the process
//! umask (0644 under the usual 022), and a safe program cannot change its umask (that
//! needs `libc`, and `unsafe` is forbidden here). So the directories are made 0700
//! *before* sled opens, which makes every file sled ever creates inside unreachable to
//! other users whatever its own mode, and existing files are narrowed to 0600 after the
//! store is open (and again at shutdown), so a copy of the tree keeps the narrow modes.
//! In production mode a root that stays reachable by others stops the start with its
//! path; in development it is a warning. This module never reads or writes file
//! contents, and never follows a symbolic link inside the root.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The data root's directories that must be private before anything is written.
const DB_DIR: &str = "db";

/// The data root could not be made private.
#[derive(Debug, thiserror::Error)]
pub enum DataRootError {
    #[error("cannot create data directory {path}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "data directory {path} is open to other users (mode {mode:04o}) and cannot be made 0700; production mode refuses it (chown it to the user roomgate runs as, or chmod 0700 it)"
    )]
    Exposed {
        path: PathBuf,
        mode: u32,
        source: std::io::Error,
    },
}

/// Before the store opens and any secret is written: creates the root and its database
/// directory 0700, or makes existing ones 0700.
pub fn secure(root: &Path, production: bool) -> Result<(), DataRootError> {
    for dir in [root.to_path_buf(), root.join(DB_DIR)] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| DataRootError::Create {
                path: dir.clone(),
                source,
            })?;
        let mode = match std::fs::metadata(&dir) {
            Ok(m) => m.permissions().mode() & 0o7777,
            Err(source) => return Err(DataRootError::Create { path: dir, source }),
        };
        if mode & 0o077 == 0 {
            continue;
        }
        if let Err(source) = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        {
            if production {
                return Err(DataRootError::Exposed {
                    path: dir,
                    mode,
                    source,
                });
            }
            tracing::warn!(
                path = %dir.display(),
                mode = format_args!("{mode:04o}"),
                error = %source,
                "data directory is open to other users and cannot be made 0700"
            );
        } else {
            tracing::info!(
                path = %dir.display(),
                was = format_args!("{mode:04o}"),
                "data directory made 0700"
            );
        }
    }
    Ok(())
}

/// Narrows every file under the root to 0600 and every directory to 0700. A file that
/// cannot be changed is only a warning: the 0700 directories above already keep it
/// from other users.
pub fn restrict_contents(root: &Path) {
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(path = %dir.display(), error = %e, "cannot list a data directory");
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // `file_type` does not follow links: a link is left alone, and so is what
            // it points to, which may be outside the root.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let want = if kind.is_dir() {
                pending.push(path.clone());
                0o700
            } else if kind.is_symlink() {
                continue;
            } else {
                0o600
            };
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o777;
            if mode & !want == 0 {
                continue;
            }
            // Only bits are removed, never added: a file written 0400 stays 0400.
            let narrowed = mode & want;
            if let Err(e) =
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(narrowed))
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot narrow a data file's mode");
            }
        }
    }
}
