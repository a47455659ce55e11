//! Backup and restore of the whole database (every tree, whatever this build calls it)
//! plus the data root's key files, as one self-checking file. Layout, all integers
//! big-endian:
//!
//! ```text
//! "ROOMGATE-BACKUP\n"  u32 format (1)  u32 schema version
//! u32 files   { u16 name_len, name, u32 len, bytes }      key files of the data root
//! u32 trees   { u16 name_len, name, u64 entries, { u32 klen, key, u32 vlen, value } }
//! [32] SHA-256 of every byte before it
//! ```
//!
//! A restore writes into `db.restoring` beside the target and renames it into place only
//! after the checksum matched, so a truncated or altered file never leaves a half-restored
//! database. This module never decodes records: it copies bytes.

use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{SCHEMA_VERSION, Store, StoreError};

const MAGIC: &[u8; 16] = b"ROOMGATE-BACKUP\n";
const FORMAT: u32 = 1;
/// Files of the data root a backup carries: without them a restored server could not
/// verify its own tokens or match earlier security events.
pub const KEY_FILES: [&str; 3] = ["jwt_secret", "ws_secret", "event_key"];
/// Largest single key or value accepted when reading a backup (sled's own limit is far
/// higher; this only stops a corrupt length from allocating gigabytes).
const MAX_ITEM: u32 = 64 << 20;

/// What a backup held.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub schema: u32,
    pub trees: usize,
    pub entries: u64,
    pub files: usize,
}

/// Why a backup could not be read or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup I/O: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("not a roomgate backup (bad header)")]
    NotABackup,
    #[error("backup format {0} is not supported by this build")]
    Format(u32),
    #[error(
        "the backup holds schema {found}, newer than this build's {supported}; restore it with the newer roomgate"
    )]
    NewerSchema { found: u32, supported: u32 },
    #[error("the backup is damaged: {0}")]
    Damaged(String),
    #[error("{0} already holds a database; restore into an empty data directory")]
    TargetInUse(String),
}

impl From<sled::Error> for BackupError {
    fn from(e: sled::Error) -> Self {
        BackupError::Store(e.into())
    }
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what passes through it.
struct Hashed<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn put_bytes<W: Write>(w: &mut W, len_u16: bool, b: &[u8]) -> io::Result<()> {
    if len_u16 {
        w.write_all(&(b.len() as u16).to_be_bytes())?;
    } else {
        w.write_all(&(b.len() as u32).to_be_bytes())?;
    }
    w.write_all(b)
}

fn get_u16<R: Read>(r: &mut R) -> io::Result<u16> {
    let mut b = [0; 2];
    r.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}

fn get_u32<R: Read>(r: &mut R) -> io::Result<u32> {
    let mut b = [0; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn get_u64<R: Read>(r: &mut R) -> io::Result<u64> {
    let mut b = [0; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn get_bytes<R: Read>(r: &mut R, len: u32) -> Result<Vec<u8>, BackupError> {
    if len > MAX_ITEM {
        return Err(BackupError::Damaged(format!("an item claims {len} bytes")));
    }
    let mut v = vec![0; len as usize];
    r.read_exact(&mut v)?;
    Ok(v)
}

impl Store {
    /// Writes every tree and the data root's key files to `out`. The caller pauses the
    /// history and audit writers around it, so rooms, their history and the event log
    /// agree; each tree is copied as one pass.
    pub fn write_backup<W: Write>(
        &self,
        data_dir: &Path,
        out: W,
    ) -> Result<BackupSummary, BackupError> {
        self.db.flush()?;
        let mut w = Hashing {
            inner: out,
            hash: Sha256::new(),
        };
        w.write_all(MAGIC)?;
        w.write_all(&FORMAT.to_be_bytes())?;
        w.write_all(&SCHEMA_VERSION.to_be_bytes())?;
        let files: Vec<(&str, Vec<u8>)> = KEY_FILES
            .iter()
            .filter_map(|name| {
                std::fs::read(data_dir.join(name))
                    .ok()
                    .map(|bytes| (*name, bytes))
            })
            .collect();
        w.write_all(&(files.len() as u32).to_be_bytes())?;
        for (name, bytes) in &files {
            put_bytes(&mut w, true, name.as_bytes())?;
            put_bytes(&mut w, false, bytes)?;
        }
        let names = self.db.tree_names();
        w.write_all(&(names.len() as u32).to_be_bytes())?;
        let mut summary = BackupSummary {
            schema: SCHEMA_VERSION,
            trees: names.len(),
            entries: 0,
            files: files.len(),
        };
        for name in names {
            let tree = self.db.open_tree(&name)?;
            // Counted first: the tree is written as that many entries, and a key added
            // meanwhile is simply not in this backup.
            let items: Vec<(sled::IVec, sled::IVec)> =
                tree.iter().collect::<Result<_, sled::Error>>()?;
            put_bytes(&mut w, true, &name)?;
            w.write_all(&(items.len() as u64).to_be_bytes())?;
            for (k, v) in &items {
                put_bytes(&mut w, false, k)?;
                put_bytes(&mut w, false, v)?;
            }
            summary.entries += items.len() as u64;
        }
        let digest = w.hash.finalize_reset();
        w.inner.write_all(&digest)?;
        w.inner.flush()?;
        Ok(summary)
    }
}

/// Restores a backup into `data_dir` (which must not hold a database): the key files
/// (mode 0600) and `data_dir/db`. Nothing is left in place unless the whole file read
/// back with a matching checksum.
pub fn restore<R: Read>(input: R, data_dir: &Path) -> Result<BackupSummary, BackupError> {
    use std::os::unix::fs::OpenOptionsExt;

    let target = data_dir.join("db");
    if target.exists() {
        return Err(BackupError::TargetInUse(data_dir.display().to_string()));
    }
    crate::secrets::ensure_data_dir(data_dir)
        .map_err(|e| BackupError::Io(io::Error::other(e.to_string())))?;
    let staging = data_dir.join("db.restoring");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let mut r = Hashed {
        inner: io::BufReader::new(input),
        hash: Sha256::new(),
    };
    let mut magic = [0; 16];
    r.read_exact(&mut magic)
        .map_err(|_| BackupError::NotABackup)?;
    if &magic != MAGIC {
        return Err(BackupError::NotABackup);
    }
    let format = get_u32(&mut r)?;
    if format != FORMAT {
        return Err(BackupError::Format(format));
    }
    let schema = get_u32(&mut r)?;
    if schema > SCHEMA_VERSION {
        return Err(BackupError::NewerSchema {
            found: schema,
            supported: SCHEMA_VERSION,
        });
    }
    let short = |e: io::Error| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            BackupError::Damaged("the file ends early".into())
        } else {
            BackupError::Io(e)
        }
    };
    let mut summary = BackupSummary {
        schema,
        ..BackupSummary::default()
    };
    let nfiles = get_u32(&mut r).map_err(short)?;
    let mut files = Vec::new();
    for _ in 0..nfiles {
        let len = get_u16(&mut r).map_err(short)?;
        let name = String::from_utf8(get_bytes(&mut r, len.into())?)
            .map_err(|_| BackupError::Damaged("a file name is not UTF-8".into()))?;
        if !KEY_FILES.contains(&name.as_str()) {
            return Err(BackupError::Damaged(format!("unexpected file {name:?}")));
        }
        let len = get_u32(&mut r).map_err(short)?;
        files.push((name, get_bytes(&mut r, len)?));
    }
    summary.files = files.len();
    let db = sled::Config::new().path(&staging).open()?;
    let result = (|| -> Result<(), BackupError> {
        let ntrees = get_u32(&mut r).map_err(short)?;
        for _ in 0..ntrees {
            let len = get_u16(&mut r).map_err(short)?;
            let name = get_bytes(&mut r, len.into())?;
            let tree = db.open_tree(&name)?;
            let entries = get_u64(&mut r).map_err(short)?;
            let mut batch = sled::Batch::default();
            for i in 0..entries {
                let klen = get_u32(&mut r).map_err(short)?;
                let k = get_bytes(&mut r, klen)?;
                let vlen = get_u32(&mut r).map_err(short)?;
                let v = get_bytes(&mut r, vlen)?;
                batch.insert(k, v);
                if i % 10_000 == 9_999 {
                    tree.apply_batch(std::mem::take(&mut batch))?;
                }
            }
            tree.apply_batch(batch)?;
            summary.trees += 1;
            summary.entries += entries;
        }
        let expected = r.hash.finalize_reset();
        let mut found = [0u8; 32];
        r.inner.read_exact(&mut found).map_err(short)?;
        if found[..] != expected[..] {
            return Err(BackupError::Damaged("checksum mismatch".into()));
        }
        let mut rest = [0u8; 1];
        if r.inner.read(&mut rest)? != 0 {
            return Err(BackupError::Damaged("bytes after the checksum".into()));
        }
        db.flush()?;
        Ok(())
    })();
    drop(db);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    for (name, bytes) in &files {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(data_dir.join(name))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&staging, &target)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;

    fn backup_of(dir: &Path) -> Vec<u8> {
        let store = Store::open(dir, &StoreConfig::default()).unwrap();
        store
            .set_user_roles("alice", vec!["ops".into()], 1)
            .unwrap();
        std::fs::write(dir.join("jwt_secret"), "k".repeat(64)).unwrap();
        let mut out = Vec::new();
        let summary = store.write_backup(dir, &mut out).unwrap();
        assert!(summary.trees >= 12 && summary.files == 1, "{summary:?}");
        out
    }

    #[test]
    fn round_trip_and_refusals() {
        let src = tempfile::tempdir().unwrap();
        let bytes = backup_of(src.path());

        let dst = tempfile::tempdir().unwrap();
        restore(&bytes[..], dst.path()).unwrap();
        let store = Store::open(dst.path(), &StoreConfig::default()).unwrap();
        assert_eq!(store.user_grants("alice").unwrap().roles, vec!["ops"]);
        assert_eq!(
            std::fs::read(dst.path().join("jwt_secret")).unwrap(),
            "k".repeat(64).into_bytes()
        );
        drop(store);
        // Never over an existing database.
        assert!(matches!(
            restore(&bytes[..], dst.path()),
            Err(BackupError::TargetInUse(_))
        ));

        // A backup from a newer schema is refused before anything is written.
        let mut newer = bytes.clone();
        newer[20..24].copy_from_slice(&(SCHEMA_VERSION + 1).to_be_bytes());
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            restore(&newer[..], d.path()),
            Err(BackupError::NewerSchema { .. })
        ));

        // A flipped byte, a truncation, trailing bytes and another file are refused, and
        // leave nothing behind.
        let mut flipped = bytes.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 1;
        let mut long = bytes.clone();
        long.push(0);
        for (what, bad) in [
            ("flipped", flipped),
            ("truncated", bytes[..bytes.len() - 10].to_vec()),
            ("trailing", long),
            ("other", b"hello world, not a backup".to_vec()),
        ] {
            let d = tempfile::tempdir().unwrap();
            assert!(restore(&bad[..], d.path()).is_err(), "{what}");
            assert!(!d.path().join("db").exists(), "{what}");
            assert!(!d.path().join("db.restoring").exists(), "{what}");
            assert!(!d.path().join("jwt_secret").exists(), "{what}");
        }
    }
}
