//! Every open connection, by id and by user, plus unauthenticated sockets per client IP.
//! This is what stats, per-user connection caps, revocation ("close every socket of this
//! user or token") and shutdown act on. It never touches rooms or the store, and its lock
//! is never held across an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::outbound::Outbound;
use crate::maps::shrink_if_sparse;
use crate::protocol::CloseCode;
use crate::ratelimit::Key;

struct Entry {
    out: Outbound,
    user: Option<Arc<str>>,
    token_keys: Vec<String>,
}

#[derive(Default)]
struct Inner {
    conns: HashMap<u64, Entry>,
    by_user: HashMap<Arc<str>, Vec<u64>>,
    unauthenticated: HashMap<Key, usize>,
    next_id: u64,
}

/// The connection registry.
pub struct Registry {
    /// Locking rule: map updates only; no await, no I/O.
    inner: Mutex<Inner>,
    max_unauthenticated_per_ip: usize,
    max_connections_per_user: usize,
}

/// The IP already has its quota of unauthenticated sockets.
#[derive(Debug)]
pub struct TooManyUnauthenticated;

/// The user already has its quota of authenticated sockets.
#[derive(Debug)]
pub struct TooManyConnections;

impl Registry {
    pub fn new(max_unauthenticated_per_ip: usize, max_connections_per_user: usize) -> Registry {
        Registry {
            inner: Mutex::new(Inner::default()),
            max_unauthenticated_per_ip,
            max_connections_per_user,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts an unauthenticated socket from a client address key before the upgrade is accepted.
    pub fn admit(self: &Arc<Self>, ip: Key) -> Result<Admission, TooManyUnauthenticated> {
        let mut inner = self.lock();
        let n = inner.unauthenticated.entry(ip.clone()).or_insert(0);
        if *n >= self.max_unauthenticated_per_ip {
            return Err(TooManyUnauthenticated);
        }
        *n += 1;
        Ok(Admission {
            registry: self.clone(),
            ip,
        })
    }

    /// Registers an open connection; the guard unregisters it.
    pub fn register(self: &Arc<Self>, out: Outbound) -> Registration {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.conns.insert(
            id,
            Entry {
                out,
                user: None,
                token_keys: Vec::new(),
            },
        );
        Registration {
            registry: self.clone(),
            id,
        }
    }

    /// Marks a connection authenticated as `user`, enforcing the per-user cap.
    ///
    /// With `exclusive` (a resumed session's `session:<id>` key), every other connection
    /// of the user holding that key is closed with 4005 and loses the key, in the same
    /// critical section: of two resumes racing for one session the later one keeps it,
    /// and never both are closed. The displaced sockets do not count against the cap.
    /// Returns how many were displaced.
    pub fn authenticate(
        &self,
        id: u64,
        user: Arc<str>,
        token_keys: Vec<String>,
        exclusive: Option<&str>,
    ) -> Result<usize, TooManyConnections> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let holds = |e: &Entry, key: &str| e.token_keys.iter().any(|k| k == key);
        let others: &[u64] = inner.by_user.get(&user).map_or(&[], Vec::as_slice);
        let displaced: Vec<u64> = match exclusive {
            Some(key) => others
                .iter()
                .copied()
                .filter(|other| *other != id)
                .filter(|other| inner.conns.get(other).is_some_and(|e| holds(e, key)))
                .collect(),
            None => Vec::new(),
        };
        if others.len() - displaced.len() >= self.max_connections_per_user {
            return Err(TooManyConnections);
        }
        if let Some(key) = exclusive {
            for other in &displaced {
                if let Some(e) = inner.conns.get_mut(other) {
                    // Without the key it no longer keeps the session alive at a normal
                    // close (`key_held_elsewhere`) while it winds down.
                    e.token_keys.retain(|k| k != key);
                    e.out.close(CloseCode::SessionResumedElsewhere);
                }
            }
        }
        if let Some(e) = inner.conns.get_mut(&id) {
            e.user = Some(user.clone());
            e.token_keys = token_keys;
            inner.by_user.entry(user).or_default().push(id);
        }
        Ok(displaced.len())
    }

    /// Undoes `authenticate` when the rest of authentication failed.
    pub fn unauthenticate(&self, id: u64) {
        let mut inner = self.lock();
        let Some(user) = inner.conns.get_mut(&id).and_then(|e| {
            e.token_keys.clear();
            e.user.take()
        }) else {
            return;
        };
        if let Some(ids) = inner.by_user.get_mut(&user) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                inner.by_user.remove(&user);
                shrink_if_sparse(&mut inner.by_user);
            }
        }
    }

    /// Adds revocation keys to an authenticated connection whose token was refreshed in
    /// band. Its earlier keys stay, so revoking the old token or the new one closes it.
    /// Returns the keys that were not already there, for [`Registry::remove_keys`].
    pub fn add_keys(&self, id: u64, keys: Vec<String>) -> Vec<String> {
        let mut inner = self.lock();
        let Some(e) = inner.conns.get_mut(&id) else {
            return Vec::new();
        };
        let mut added = Vec::new();
        for k in keys {
            if !e.token_keys.contains(&k) {
                e.token_keys.push(k.clone());
                added.push(k);
            }
        }
        added
    }

    /// Undoes `add_keys` when the refresh failed after adding them.
    pub fn remove_keys(&self, id: u64, keys: &[String]) {
        if let Some(e) = self.lock().conns.get_mut(&id) {
            e.token_keys.retain(|k| !keys.contains(k));
        }
    }

    /// Closes every connection of `user`; returns how many.
    pub fn close_user(&self, user: &str, code: CloseCode) -> usize {
        let inner = self.lock();
        let ids = inner.by_user.get(user).cloned().unwrap_or_default();
        for id in &ids {
            if let Some(e) = inner.conns.get(id) {
                e.out.close(code);
            }
        }
        ids.len()
    }

    /// Closes every connection authenticated with a token having any of `keys`.
    pub fn close_token(&self, keys: &[String], code: CloseCode) -> usize {
        let inner = self.lock();
        let mut n = 0;
        for e in inner.conns.values() {
            if e.token_keys.iter().any(|k| keys.contains(k)) {
                e.out.close(code);
                n += 1;
            }
        }
        n
    }

    /// Whether a connection of `user` other than `id` holds the revocation key `key`
    /// (for example another socket resumed from the same session).
    pub fn key_held_elsewhere(&self, id: u64, user: &str, key: &str) -> bool {
        let inner = self.lock();
        inner.by_user.get(user).is_some_and(|ids| {
            ids.iter()
                .filter(|other| **other != id)
                .filter_map(|other| inner.conns.get(other))
                .any(|e| e.token_keys.iter().any(|k| k == key))
        })
    }

    /// How many authenticated connections `user` has open.
    pub fn user_connections(&self, user: &str) -> usize {
        self.lock().by_user.get(user).map_or(0, Vec::len)
    }

    /// Asks every connection of `user` to re-evaluate its rights; returns how many.
    pub fn recheck_user(&self, user: &str) -> usize {
        let inner = self.lock();
        let ids = inner
            .by_user
            .get(user)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for id in ids {
            if let Some(e) = inner.conns.get(id) {
                e.out.recheck();
            }
        }
        ids.len()
    }

    /// Asks every authenticated connection to re-evaluate its rights (a role's
    /// permissions changed, which may touch anyone).
    pub fn recheck_all(&self) {
        for e in self.lock().conns.values().filter(|e| e.user.is_some()) {
            e.out.recheck();
        }
    }

    /// Closes every connection.
    pub fn close_all(&self, code: CloseCode) {
        for e in self.lock().conns.values() {
            e.out.close(code);
        }
    }

    /// (open connections, authenticated connections).
    pub fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        let authed = inner.by_user.values().map(Vec::len).sum();
        (inner.conns.len(), authed)
    }
}

/// An unauthenticated socket counted against its IP; dropped at auth or close.
pub struct Admission {
    registry: Arc<Registry>,
    ip: Key,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        if let Some(n) = inner.unauthenticated.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                inner.unauthenticated.remove(&self.ip);
                shrink_if_sparse(&mut inner.unauthenticated);
            }
        }
    }
}

/// A registered connection; dropping it unregisters.
pub struct Registration {
    registry: Arc<Registry>,
    pub id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        let Some(e) = inner.conns.remove(&self.id) else {
            return;
        };
        shrink_if_sparse(&mut inner.conns);
        if let Some(user) = e.user
            && let Some(ids) = inner.by_user.get_mut(&user)
        {
            ids.retain(|i| *i != self.id);
            if ids.is_empty() {
                inner.by_user.remove(&user);
                shrink_if_sparse(&mut inner.by_user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_keys_close_the_connection_and_can_be_removed() {
        let registry = Arc::new(Registry::new(4, 4));
        let (out, _rx, control) = Outbound::channel(4);
        let reg = registry.register(out);
        registry
            .authenticate(reg.id, "alice".into(), vec!["jti:old".into()], None)
            .unwrap();
        let added = registry.add_keys(reg.id, vec!["jti:old".into(), "jti:new".into()]);
        assert_eq!(added, vec!["jti:new".to_string()]);
        // Either token's key finds the socket.
        assert_eq!(
            registry.close_token(&["jti:old".into()], CloseCode::TokenRevoked),
            1
        );
        assert_eq!(
            registry.close_token(&["jti:new".into()], CloseCode::TokenRevoked),
            1
        );
        assert_eq!(control.requested(), Some(CloseCode::TokenRevoked));
        registry.remove_keys(reg.id, &added);
        assert_eq!(
            registry.close_token(&["jti:new".into()], CloseCode::TokenRevoked),
            0
        );
        assert_eq!(
            registry.close_token(&["jti:old".into()], CloseCode::TokenRevoked),
            1
        );
    }
}
