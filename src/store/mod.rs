//! The only importer of sled. `Store` owns the database and its catalogue of trees; each
//! record family lives in its own file with its key layout written beside it. Callers
//! get typed records, never bytes or sled types. Integers in keys are big-endian so byte
//! order is numeric order. This module must never be called while a hub lock is held
//! and must never log record contents (they may hold user ids).
//!
//! Tree catalogue (name: key => value):
//! - `meta`: utf8 name => bytes (`schema_version` => u32 BE)
//! - `sessionid_session`: session id (hex) => [`SessionRecord`] (family added in schema 3)
//! - `tokenkey_revocation`: `jti:<jti>` | `sha256:<hex digest>` => [`Revocation`]
//! - `userid_revokedbefore`: user id => u64 BE ms; tokens issued at or before it are refused
//! - `userid_grants`: user id => [`UserGrants`] (the seed's `user_roles:` / `user_permissions:`)
//! - `roomid_room`: room id => [`RoomRecord`]
//! - `roomid_seq_message`: room id ++ 0xFF ++ seq u64 BE => [`HistoryRecord`]
//! - `tsid_event`: ts ms u64 BE ++ id u64 BE => [`EventRecord`]
//! - `username_account`: username => [`AccountRecord`]
//! - `refreshdigest_refresh`: hex SHA-256 of a refresh token => [`RefreshRecord`]
//! - `familyid_family`: refresh family id => [`FamilyRecord`]
//! - `rolename_role`: role name => [`RoleRecord`] (schema 2)
//! - `useridseq_notification`: user id ++ 0xFF ++ id u64 BE => [`NotificationRecord`]
//! - `tsuseridseq_inbox`: created ms u64 BE ++ the `useridseq_notification` key => empty
//!   (the inbox age index; both trees are new and start empty, so older databases need
//!   no migration step)
//! - `roomid_userid_clientmsgid_ack`: room id ++ 0xFF ++ user id ++ 0xFF ++ client message
//!   id => [`ClientMsgAck`] (sender idempotency; written with the message)
//! - `roomid_lastseq`: room id => u64 BE, the last seq of a room whose history age
//!   trimming emptied (so its sequence does not restart within an epoch); both trees
//!   are new and start empty, so older databases need no migration step
//! - `keydigest_apikey`: hex SHA-256 of an API key => [`ApiKeyRecord`] (new, starts empty)
//! - `apikeyname_keydigest`: API key name => hex SHA-256 of the key (names are unique)
//!
//! `backup.rs` copies every tree by name, so a tree added here is backed up with no
//! further change.

mod accounts;
mod apikeys;
pub mod backup;
mod client_msgs;
pub mod codec;
mod events;
mod history;
mod notifications;
mod refresh;
mod revocations;
mod roles;
mod rooms;
mod sessions;
mod users;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

pub use accounts::AccountRecord;
pub use apikeys::ApiKeyRecord;
pub use client_msgs::ClientMsgAck;
pub use events::{EventFilter, EventRecord};
pub use history::HistoryRecord;
pub use notifications::NotificationRecord;
pub use refresh::{FamilyRecord, RefreshRecord, RefreshUse};
pub use revocations::Revocation;
pub use roles::RoleRecord;
pub use rooms::{RoomRecord, RoomUserGrant, new_epoch};
pub use sessions::SessionRecord;
pub use users::UserGrants;

use crate::config::StoreConfig;

/// How long `open` waits for a held database lock before reporting it as in use.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Schema version written by this build. Bump with a numbered step in `migrate`.
pub const SCHEMA_VERSION: u32 = 3;

/// Store failures. The public text says what to do; causes go to the log once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
    #[error(
        "the database in {path} is corrupt ({detail}). roomgate will not reset it. Stop the server, move the directory aside, and restore the latest backup (or start with an empty data directory)"
    )]
    Corrupt { path: String, detail: String },
    #[error(
        "the database in {path} was written by a newer roomgate (schema {found}, this build knows up to {supported}); run the newer version or restore a backup taken for this one"
    )]
    NewerSchema {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error(
        "the database in {0} is in use by another process (is a roomgate server running on this data directory?)"
    )]
    Locked(String),
    #[error("stored record could not be decoded: {0}")]
    Codec(String),
}

/// The database and its trees. Cheap to clone (sled handles are `Arc`s).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    sessions: sled::Tree,
    revocations: sled::Tree,
    user_revoked: sled::Tree,
    users: sled::Tree,
    rooms: sled::Tree,
    history: sled::Tree,
    events: sled::Tree,
    accounts: sled::Tree,
    refresh: sled::Tree,
    families: sled::Tree,
    roles: sled::Tree,
    notifications: sled::Tree,
    notification_index: sled::Tree,
    client_msgs: sled::Tree,
    last_seqs: sled::Tree,
    apikeys: sled::Tree,
    apikey_names: sled::Tree,
    /// Entries in `events`, kept beside the tree because `sled::Tree::len` walks every
    /// key and the log is trimmed to its cap after every write batch.
    event_count: Arc<AtomicU64>,
}

impl Store {
    /// Opens (creating if needed) the database under `dir/db`, checks and migrates its
    /// schema, and refuses newer or corrupt databases with a clear error.
    ///
    /// A held lock is waited for up to `LOCK_WAIT`: sled's I/O threads can keep the file
    /// (and its lock) for some milliseconds after the last handle is dropped, so a
    /// restart in the same process would otherwise be refused as "in use".
    pub fn open(dir: &Path, cfg: &StoreConfig) -> Result<Store, StoreError> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match Self::open_once(dir, cfg) {
                Err(StoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }

    fn open_once(dir: &Path, cfg: &StoreConfig) -> Result<Store, StoreError> {
        let path = dir.join("db");
        let shown = path.display().to_string();
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(cfg.cache_capacity_bytes)
            .flush_every_ms(Some(cfg.flush_every_ms))
            .open()
            .map_err(|e| open_error(&shown, e))?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| open_error(&shown, e));
        let events = tree("tsid_event")?;
        let store = Store {
            meta: tree("meta")?,
            sessions: tree("sessionid_session")?,
            revocations: tree("tokenkey_revocation")?,
            user_revoked: tree("userid_revokedbefore")?,
            users: tree("userid_grants")?,
            rooms: tree("roomid_room")?,
            history: tree("roomid_seq_message")?,
            accounts: tree("username_account")?,
            refresh: tree("refreshdigest_refresh")?,
            families: tree("familyid_family")?,
            roles: tree("rolename_role")?,
            notifications: tree("useridseq_notification")?,
            notification_index: tree("tsuseridseq_inbox")?,
            client_msgs: tree("roomid_userid_clientmsgid_ack")?,
            last_seqs: tree("roomid_lastseq")?,
            apikeys: tree("keydigest_apikey")?,
            apikey_names: tree("apikeyname_keydigest")?,
            event_count: Arc::new(AtomicU64::new(events.len() as u64)),
            events,
            db,
        };
        // sled drops a log it cannot read and opens empty; a database that was
        // initialised before (the marker beside it says so) but has no schema now has
        // lost its contents, and must not quietly start again from nothing.
        let marker = dir.join("db.initialized");
        if marker.exists() && store.meta.get("schema_version")?.is_none() {
            return Err(StoreError::Corrupt {
                path: shown,
                detail: "it was initialised before but sled now finds it empty".into(),
            });
        }
        store.migrate(&shown)?;
        if !marker.exists() {
            store.db.flush()?;
            std::fs::write(
                &marker,
                b"roomgate database initialised; see README Backup and restore\n",
            )
            .map_err(|e| StoreError::Sled(e.into()))?;
        }
        Ok(store)
    }

    fn migrate(&self, shown: &str) -> Result<(), StoreError> {
        let found = match self.meta.get("schema_version")? {
            Some(v) => {
                let bytes: [u8; 4] = v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    path: shown.to_string(),
                    detail: "schema_version is not 4 bytes".into(),
                })?;
                u32::from_be_bytes(bytes)
            }
            None => 0,
        };
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: shown.to_string(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        // Numbered steps: step N upgrades a version N-1 database to N. Version 0 is a
        // fresh database, and version 1 is the first layout, so there is nothing to move.
        // Each step's writes are flushed before the version that records them, so a
        // crash mid-migration reruns the step (every step is idempotent).
        let mut version = found;
        while version < SCHEMA_VERSION {
            version += 1;
            match version {
                2 => self.migrate_to_2()?,
                3 => self.migrate_to_3()?,
                _ => {}
            }
            self.db.flush()?;
            self.meta.insert("schema_version", &version.to_be_bytes())?;
            self.db.flush()?;
        }
        Ok(())
    }

    /// Schema 2: rooms gain an epoch, an email policy, per-user grants and bans; history
    /// entries gain a client message id and a system flag; the built-in roles appear.
    fn migrate_to_2(&self) -> Result<(), StoreError> {
        for item in self.rooms.iter() {
            let (k, v) = item?;
            // A rerun after a crash finds some records already in the new shape.
            if codec::decode::<RoomRecord>(&v).is_ok() {
                continue;
            }
            let old: rooms::RoomRecordV1 = codec::decode(&v)?;
            // Schema 1 sent emails in join announcements; keep that for existing rooms.
            self.rooms
                .insert(k, codec::encode(&old.upgrade(new_epoch(), true))?)?;
        }
        for item in self.history.iter() {
            let (k, v) = item?;
            if codec::decode::<HistoryRecord>(&v).is_ok() {
                continue;
            }
            let old: history::HistoryRecordV1 = codec::decode(&v)?;
            self.history.insert(k, codec::encode(&old.upgrade())?)?;
        }
        for role in crate::authz::builtin_roles() {
            if self.role(&role.name)?.is_none() {
                self.put_role(&role)?;
            }
        }
        Ok(())
    }

    /// Schema 3: sessions remember the refresh family of the token that opened them.
    fn migrate_to_3(&self) -> Result<(), StoreError> {
        for item in self.sessions.iter() {
            let (k, v) = item?;
            if codec::decode::<SessionRecord>(&v).is_ok() {
                continue;
            }
            let old: sessions::SessionRecordV2 = codec::decode(&v)?;
            self.sessions.insert(k, codec::encode(&old.upgrade())?)?;
        }
        Ok(())
    }

    /// Waits until every write so far is on disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Blocking flush, for shutdown paths and the CLI.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Size of the database files on disk, bytes.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// A cheap read that fails when the database cannot be used.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.meta.get("schema_version")?;
        Ok(())
    }

    /// A fresh unique id (monotonic within this database).
    pub fn generate_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    /// Overwrites the schema version; tests use it to simulate a newer database.
    pub fn set_schema_version_for_tests(&self, version: u32) -> Result<(), StoreError> {
        self.meta.insert("schema_version", &version.to_be_bytes())?;
        Ok(())
    }
}

fn open_error(path: &str, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { .. } => StoreError::Corrupt {
            path: path.to_string(),
            detail: e.to_string(),
        },
        sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => {
            StoreError::Locked(path.to_string())
        }
        sled::Error::Io(ref io) if io.to_string().contains("lock") => {
            StoreError::Locked(path.to_string())
        }
        other => other.into(),
    }
}

fn u64_from(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schema-1 database (records in their first shape) opens as schema 2 with every
    /// record readable, rooms given an epoch, and the built-in roles present.
    #[test]
    fn schema_1_database_migrates_to_2() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig::default();
        {
            let s = Store::open(dir.path(), &cfg).unwrap();
            s.rooms.clear().unwrap();
            s.history.clear().unwrap();
            s.roles.clear().unwrap();
            let room = rooms::RoomRecordV1 {
                id: "ops".into(),
                name: "Ops".into(),
                kind: "chat".into(),
                read: vec!["user".into()],
                write: vec!["user".into()],
                admin: vec!["admin".into()],
                max_participants: 5,
                auto_created: false,
                created_ms: 1,
                last_active_ms: 2,
            };
            s.rooms
                .insert("ops", codec::encode(&room).unwrap())
                .unwrap();
            for seq in 1..=3u64 {
                let h = history::HistoryRecordV1 {
                    room_id: "ops".into(),
                    seq,
                    id: format!("m{seq}"),
                    content: format!("hello {seq}"),
                    user_id: "alice".into(),
                    email: None,
                    timestamp: seq,
                };
                let mut key = b"ops\xff".to_vec();
                key.extend_from_slice(&seq.to_be_bytes());
                s.history.insert(key, codec::encode(&h).unwrap()).unwrap();
            }
            s.set_schema_version_for_tests(1).unwrap();
            s.flush_blocking().unwrap();
        }
        let s = Store::open(dir.path(), &cfg).unwrap();
        let room = s.room("ops").unwrap().unwrap();
        assert_eq!(room.max_participants, 5);
        assert!(room.epoch != 0 && room.show_emails && room.bans.is_empty());
        let history = s.history("ops").unwrap();
        let seqs: Vec<u64> = history.iter().map(|h| h.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        assert!(
            history
                .iter()
                .all(|h| h.client_msg_id.is_none() && !h.system)
        );
        let names: Vec<String> = s.roles().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, vec!["admin", "moderator", "user"]);
        let version = s.meta.get("schema_version").unwrap().unwrap();
        assert_eq!(version.as_ref(), &SCHEMA_VERSION.to_be_bytes());
    }

    /// A schema-2 database's sessions (no family) open as schema 3: readable, with no
    /// family, and every other field kept; a rerun of the step changes nothing.
    #[test]
    fn schema_2_sessions_migrate_to_3() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig::default();
        let old = sessions::SessionRecordV2 {
            session_id: "s1".into(),
            user_id: "alice".into(),
            email: Some("alice@example.com".into()),
            connection_id: "c1".into(),
            roles: vec!["user".into()],
            client_ip: "127.0.0.1".into(),
            created_ms: 1,
            expires_ms: u64::MAX,
            token_key: "jti:abc".into(),
            token_exp: 9,
        };
        {
            let s = Store::open(dir.path(), &cfg).unwrap();
            s.sessions
                .insert("s1", codec::encode(&old).unwrap())
                .unwrap();
            assert!(s.session("s1").is_err(), "old shape must not read as new");
            s.set_schema_version_for_tests(2).unwrap();
            s.flush_blocking().unwrap();
        }
        let expected = old.upgrade();
        assert_eq!(expected.family, None);
        let s = Store::open(dir.path(), &cfg).unwrap();
        assert_eq!(s.session("s1").unwrap(), Some(expected.clone()));
        // Idempotent: a crash before the version write reruns the step on new records.
        s.migrate_to_3().unwrap();
        assert_eq!(s.session("s1").unwrap(), Some(expected));
        let version = s.meta.get("schema_version").unwrap().unwrap();
        assert_eq!(version.as_ref(), &3u32.to_be_bytes());
    }
}
