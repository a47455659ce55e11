//! One handler per client frame type. Each checks, in this order: session state, input
//! validity, rate limit, authorization; then acts through the hub and answers. Denials
//! are answered with an error code from the registry and recorded as security events;
//! failed `auth` and `refresh` frames are also logged at `info` (reason, client IP, keyed
//! user hash; never the token), and refusals by limits at `debug` through `refusals`.
//! Nothing here sends to another connection except through a room.

use std::sync::Arc;

use super::{Conn, Identity, Session};
use crate::audit::Outcome;
use crate::auth::{AuthError, Verified, random_hex};
use crate::authz::Permissions;
use crate::hub::{Entry, JoinError, Joined, Lookup, MemberInfo, PageQuery, Resume, text_frame};
use crate::notify::NewNotification;
use crate::principal;
use crate::protocol::{
    self, AuthSuccess, ChatMessage, ClientFrame, ErrorCode, HeartbeatResponse, HistoryPage,
    MessageAck, RoomLeft, TokenExpiry, UserView, now_ms,
};
use crate::publish::{self, PublishError, Sender};
use crate::ratelimit::{Key, Limit};
use crate::refusals::Refused;
use crate::store::{SessionRecord, StoreError};

/// Why `auth` failed, split into what the client sees and what the log records.
enum AuthFailure {
    Client(ErrorCode, &'static str),
    Store(StoreError),
}

/// A successful `auth`: who, the `wsToken` to answer with, and the `exp` (seconds) of
/// the access token the socket lives on (for a resume, the session's).
struct Established {
    identity: Identity,
    ws_token: String,
    token_exp: u64,
}

impl From<StoreError> for AuthFailure {
    fn from(e: StoreError) -> Self {
        AuthFailure::Store(e)
    }
}

impl Conn {
    pub(super) fn identity(&self) -> Option<&Identity> {
        match &self.session {
            Session::Authenticated(id) => Some(id),
            Session::Pending(_) => None,
        }
    }

    fn limit_key(&self) -> Key {
        match self.identity() {
            Some(id) => Key::User(id.user_id.clone()),
            None => Key::ip(self.ip),
        }
    }

    /// Handles one text frame.
    pub(super) async fn handle_text(&mut self, text: &str) {
        self.state
            .metrics
            .messages_in
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let decoded = protocol::decode(text, self.state.cfg.connection.max_json_depth);
        // Every frame but a heartbeat spends the frame quota, malformed ones included,
        // so garbage cannot be sent for free.
        if !matches!(decoded, Ok(ClientFrame::Heartbeat))
            && let Err(wait) = self.state.limiters.check(Limit::Message, &self.limit_key())
        {
            self.audit_limited(Refused::Message);
            self.error_with(ErrorCode::RateLimited, None, None, Some(wait));
            return;
        }
        let frame = match decoded {
            Ok(f) => f,
            Err(e) => {
                self.error_with(e.code, e.field, None, None);
                return;
            }
        };
        match frame {
            ClientFrame::Auth { token } => self.on_auth(&token).await,
            _ if self.identity().is_none() => self.error(ErrorCode::NotAuthenticated),
            ClientFrame::Join {
                room_id,
                since,
                epoch,
            } => self.on_join(&room_id, since, epoch).await,
            ClientFrame::Leave { room_id } => self.on_leave(&room_id),
            ClientFrame::Message {
                room_id,
                content,
                client_msg_id,
            } => {
                self.on_message(&room_id, &content, client_msg_id.as_deref())
                    .await
            }
            ClientFrame::History {
                room_id,
                since,
                before,
                limit,
            } => self.on_history(&room_id, since, before, limit).await,
            ClientFrame::Refresh { token } => self.on_refresh(&token).await,
            ClientFrame::Presence { room_id } => self.on_presence(&room_id),
            ClientFrame::Kick {
                room_id,
                target,
                ban,
            } => self.on_kick(&room_id, target, ban).await,
            ClientFrame::RoomAcl { room_id, change } => self.on_room_acl(&room_id, change).await,
            ClientFrame::Notification {
                target,
                kind,
                title,
                body,
                data,
            } => {
                let n = NewNotification {
                    kind,
                    title,
                    body,
                    data,
                };
                self.on_notification(target, n).await
            }
            ClientFrame::NotificationAck { ids } => self.on_notification_ack(ids).await,
            ClientFrame::Heartbeat => {
                self.out.send_text(protocol::encode(
                    "heartbeat_response",
                    &HeartbeatResponse {
                        server_time: now_ms(),
                    },
                ));
            }
        }
    }

    /// `refresh {token}`: moves the connection onto a new token for the same user, in
    /// band. The new token is verified and checked for revocation as `auth` does; its keys
    /// join the old ones in the registry (revoking either token closes the socket); the
    /// roles are read again; the expiry timers follow the new `exp`. Any refusal leaves
    /// the connection on its old token, which still expires when it did.
    async fn on_refresh(&mut self, token: &str) {
        if self.identity().is_none() {
            return;
        }
        if !self.auth_attempt_allowed() {
            return;
        }
        let verified = match self.state.verifier.verify(token) {
            Ok(v) => v,
            Err(e) => {
                self.refresh_failed(verify_error_code(e), e.reason());
                return;
            }
        };
        match self.refresh_to(&verified) {
            Ok(()) => {
                self.out.send_text(protocol::encode(
                    "token_refreshed",
                    &TokenExpiry {
                        expires_at: verified.expires_at.saturating_mul(1000),
                    },
                ));
                self.audit_refresh(Outcome::Success, None);
                self.arm_token(verified.expires_at);
            }
            Err(AuthFailure::Client(code, reason)) => self.refresh_failed(code, reason),
            Err(AuthFailure::Store(e)) => {
                tracing::error!(error = %e, "store failure during token refresh");
                self.error(ErrorCode::Internal);
            }
        }
    }

    /// The checks and the switch of `refresh`, once the token has verified.
    fn refresh_to(&mut self, v: &Verified) -> Result<(), AuthFailure> {
        let Some(identity) = self.identity() else {
            return Err(AuthFailure::Client(
                ErrorCode::NotAuthenticated,
                "not_authenticated",
            ));
        };
        // A wsToken resumes a session on a new socket; it does not renew a live one.
        if v.resume_session.is_some() {
            return Err(AuthFailure::Client(ErrorCode::RefreshRejected, "ws_token"));
        }
        if *v.user_id != *identity.user_id {
            return Err(AuthFailure::Client(
                ErrorCode::RefreshRejected,
                "other_user",
            ));
        }
        self.check_foreign_sub(v)?;
        // As in `establish`: checked for the answer, then again once the keys are in the
        // registry, so a revocation racing with this refresh either finds the socket by
        // the new keys or is seen by the second check.
        if self.is_revoked(v, &v.keys)? {
            return Err(AuthFailure::Client(ErrorCode::TokenRevoked, "revoked"));
        }
        let added = self.state.registry.add_keys(self.id, v.keys.clone());
        let roles = match self.is_revoked(v, &v.keys) {
            Ok(false) => self
                .roles_for(&v.user_id, &v.claimed_roles)
                .map_err(AuthFailure::from),
            Ok(true) => Err(AuthFailure::Client(ErrorCode::TokenRevoked, "revoked")),
            Err(e) => Err(e.into()),
        };
        // The session now lives on the new token: a later resume gets its expiry.
        let roles = roles.and_then(|r| {
            self.state
                .store
                .set_session_token_exp(&identity.session_id, v.expires_at)?;
            Ok(r)
        });
        let roles = match roles {
            Ok(r) => r,
            Err(e) => {
                self.state.registry.remove_keys(self.id, &added);
                return Err(e);
            }
        };
        if let Session::Authenticated(identity) = &mut self.session {
            (identity.roles, identity.permissions) = roles;
            identity.claimed_roles = v.claimed_roles.clone();
        }
        Ok(())
    }

    fn refresh_failed(&self, code: ErrorCode, reason: &str) {
        tracing::info!(
            reason,
            client_ip = %self.ip,
            user = self
                .identity()
                .map(|i| self.state.audit.hash_user(&i.user_id))
                .as_deref(),
            "websocket token refresh refused"
        );
        self.audit_refresh(Outcome::Failure, Some(reason));
        self.error(code);
    }

    /// Records a `token_refresh` event for the connection's (hashed) user.
    fn audit_refresh(&self, outcome: Outcome, reason: Option<&str>) {
        let user = self.identity().map(|i| i.user_id.clone());
        let ip = self.ip.to_string();
        let mut metadata = vec![("connectionId", self.connection_id.as_str())];
        if let Some(r) = reason {
            metadata.push(("reason", r));
        }
        metadata.push(("clientIp", &ip));
        self.state
            .audit
            .record("token_refresh", user.as_deref(), outcome, &metadata);
    }

    /// Spends one point of the per-IP auth quota (`auth` and `refresh` share it);
    /// answers the refusal itself when it is used up.
    fn auth_attempt_allowed(&self) -> bool {
        match self.state.limiters.check(Limit::Auth, &Key::ip(self.ip)) {
            Ok(()) => true,
            Err(wait) => {
                self.audit_limited(Refused::Auth);
                self.error_with(ErrorCode::AuthRateLimited, None, None, Some(wait));
                false
            }
        }
    }

    /// When a session whose access token expires at `token_exp` (seconds) ends: the
    /// moment a socket living on that token is closed with 4001.
    fn session_end_ms(&self, token_exp: u64) -> u64 {
        token_exp
            .saturating_add(self.state.cfg.auth.expiry_grace_secs)
            .saturating_mul(1000)
    }

    /// Records that this resume closed `closed` other sockets of the session (4005).
    fn audit_resumed_elsewhere(&self, user_id: &str, closed: usize) {
        let ip = self.ip.to_string();
        let closed = closed.to_string();
        tracing::info!(
            client_ip = %self.ip,
            user = self.state.audit.hash_user(user_id),
            "session resumed elsewhere; the older socket is closed"
        );
        self.state.audit.record(
            "session_resumed_elsewhere",
            Some(user_id),
            Outcome::Failure,
            &[
                ("connectionId", &self.connection_id),
                ("clientIp", &ip),
                ("closed", &closed),
            ],
        );
    }

    fn audit_limited(&self, limit: Refused) {
        self.state.metrics.rate_limited.inc(limit.as_str());
        self.state.refusals.record(limit, self.ip);
        if !self.state.limiters.allow_event(&self.limit_key()) {
            return;
        }
        let user = self.identity().map(|i| i.user_id.clone());
        let ip = self.ip.to_string();
        self.state.audit.record(
            "rate_limited",
            user.as_deref(),
            Outcome::Failure,
            &[("limit", limit.as_str()), ("clientIp", &ip)],
        );
    }

    async fn on_auth(&mut self, token: &str) {
        if self.identity().is_some() {
            self.error(ErrorCode::AlreadyAuthenticated);
            return;
        }
        if !self.auth_attempt_allowed() {
            return;
        }
        let ip = self.ip.to_string();
        let verified = match self.state.verifier.verify(token) {
            Ok(v) => v,
            Err(e) => {
                // An oversize token is refused before any parsing, and stays unparsed here.
                let claimed = match e {
                    crate::auth::AuthError::TooLarge => None,
                    _ => crate::auth::claimed_subject(token),
                };
                self.auth_failed(verify_error_code(e), e.reason(), None, claimed.as_deref());
                return;
            }
        };
        match self.establish(&verified).await {
            Ok(Established {
                identity,
                ws_token,
                token_exp,
            }) => {
                self.out.send_text(protocol::encode(
                    "auth_success",
                    &AuthSuccess {
                        ws_token: &ws_token,
                        user: UserView {
                            user_id: &identity.user_id,
                            email: identity.email.as_deref(),
                            roles: &identity.roles,
                        },
                    },
                ));
                self.state.audit.record(
                    "websocket_auth",
                    Some(&identity.user_id),
                    Outcome::Success,
                    &[
                        ("connectionId", &self.connection_id),
                        ("clientIp", &ip),
                        (
                            "method",
                            if verified.resume_session.is_some() {
                                "ws_token"
                            } else {
                                "jwt"
                            },
                        ),
                    ],
                );
                self.session = Session::Authenticated(identity);
                // A resumed socket lives on the session's token, exactly as the socket
                // that opened it did, not on the wsToken's longer life.
                self.arm_token(token_exp);
                // After `auth_success` (and any `token_expiring`): the inbox, then live.
                self.deliver_inbox();
            }
            Err(AuthFailure::Client(code, reason)) => {
                self.auth_failed(code, reason, Some(&verified.user_id), None)
            }
            Err(AuthFailure::Store(e)) => {
                tracing::error!(error = %e, "store failure during auth");
                self.error(ErrorCode::Internal);
            }
        }
    }

    /// Answers and records a failed `auth`. `user` is the verified user, when the token
    /// verified; `claimed` the unverified `sub` of one that did not, which only the log
    /// line shows (hashed, as `claimed_user`).
    fn auth_failed(
        &self,
        code: ErrorCode,
        reason: &'static str,
        user: Option<&str>,
        claimed: Option<&str>,
    ) {
        self.state.metrics.auth_failures.inc(reason);
        // The per-user connection cap was logged and counted where it refused.
        if code != ErrorCode::TooManyConnections {
            let hash = |u: &str| self.state.audit.hash_user(u);
            tracing::info!(
                reason,
                client_ip = %self.ip,
                user = user.map(hash).as_deref(),
                claimed_user = claimed.map(hash).as_deref(),
                "websocket auth failed"
            );
        }
        let ip = self.ip.to_string();
        self.state.audit.record(
            "websocket_auth",
            user,
            Outcome::Failure,
            &[
                ("reason", reason),
                ("connectionId", &self.connection_id),
                ("clientIp", &ip),
            ],
        );
        self.error(code);
    }

    /// Registers the connection, checks revocation, and writes or resumes the session.
    ///
    /// Registration comes first on purpose: `admin` writes a revocation to the store and
    /// then closes the sockets it finds in the registry, so an auth racing with it either
    /// is found by that scan or sees the revocation in the checks below.
    async fn establish(&mut self, v: &Verified) -> Result<Established, AuthFailure> {
        let store = &self.state.store;
        // Checked here for the answer (a revoked wsToken's session is gone too, and the
        // client should hear "revoked", not "failed"), and again after registering.
        if self.is_revoked(v, &v.keys)? {
            return Err(AuthFailure::Client(ErrorCode::TokenRevoked, "revoked"));
        }
        self.check_foreign_sub(v)?;
        let resumed = match &v.resume_session {
            Some(sid) => match store.session(sid)? {
                Some(s) if s.user_id == v.user_id && s.expires_ms > now_ms() => Some(s),
                _ => return Err(AuthFailure::Client(ErrorCode::AuthFailed, "session_gone")),
            },
            None => None,
        };
        // A session lives no longer than the access token that opened or last refreshed
        // it (plus the grace a live socket gets): a wsToken must not buy more time than
        // that token had. `auth_failed` makes a client fall back to a fresh token.
        if let Some(s) = &resumed
            && now_ms() >= self.session_end_ms(s.token_exp)
        {
            return Err(AuthFailure::Client(
                ErrorCode::AuthFailed,
                "session_expired",
            ));
        }
        let session_id = match &resumed {
            Some(s) => s.session_id.clone(),
            None => random_hex(32),
        };
        let mut keys = v.keys.clone();
        if let Some(s) = &resumed {
            // Revoking the original token, or ending its login, must also close sockets
            // resumed from it (and `is_revoked` below checks these keys too).
            keys.push(s.token_key.clone());
            if let Some(family) = &s.family {
                keys.push(format!("family:{family}"));
            }
        }
        // Sockets are also findable by session, so revoking a wsToken closes its siblings.
        keys.push(format!("session:{session_id}"));
        let user_id: Arc<str> = v.user_id.as_str().into();
        // One session, one live socket: a resume closes the socket that holds it.
        let session_key = format!("session:{session_id}");
        let exclusive = resumed.is_some().then_some(session_key.as_str());
        let displaced = match self.state.registry.authenticate(
            self.id,
            user_id.clone(),
            keys.clone(),
            exclusive,
        ) {
            Ok(n) => n,
            Err(_) => {
                self.state
                    .refusals
                    .record(Refused::ConnectionsPerUser, self.ip);
                return Err(AuthFailure::Client(
                    ErrorCode::TooManyConnections,
                    "too_many_connections",
                ));
            }
        };
        if displaced > 0 {
            self.audit_resumed_elsewhere(&user_id, displaced);
        }
        let result = self.establish_registered(v, user_id, session_id, resumed, &keys);
        if result.is_err() {
            self.state.registry.unauthenticate(self.id);
        }
        result
    }

    fn establish_registered(
        &self,
        v: &Verified,
        user_id: Arc<str>,
        session_id: String,
        resumed: Option<SessionRecord>,
        keys: &[String],
    ) -> Result<Established, AuthFailure> {
        let store = &self.state.store;
        let cfg = &self.state.cfg.auth;
        if self.is_revoked(v, keys)? {
            return Err(AuthFailure::Client(ErrorCode::TokenRevoked, "revoked"));
        }
        let (roles, permissions) = self.roles_for(&v.user_id, &v.claimed_roles)?;
        let now = now_ms();
        let email = match &resumed {
            Some(s) => s.email.clone(),
            None => v.email.clone(),
        };
        // A resumed session stays bound to the token (and login) that opened it, so
        // revoking either still deletes the session and refuses every wsToken from it.
        let (token_key, token_exp, expires_ms, family) = match &resumed {
            Some(s) => (
                s.token_key.clone(),
                s.token_exp,
                s.expires_ms,
                s.family.clone(),
            ),
            None => (
                v.primary_key().to_string(),
                v.expires_at,
                now.saturating_add(cfg.token_expiry_secs.saturating_mul(1000)),
                v.family.clone(),
            ),
        };
        let record = SessionRecord {
            session_id: session_id.clone(),
            user_id: v.user_id.clone(),
            email: email.clone(),
            connection_id: self.connection_id.clone(),
            roles: roles.clone(),
            client_ip: self.ip.to_string(),
            created_ms: now,
            expires_ms,
            token_key,
            token_exp,
            family,
        };
        if resumed.is_some() {
            // Only update a session that still exists: a revocation may have deleted it
            // since we read it, and must not be undone here.
            if !store.replace_session_if_present(&record)? {
                return Err(AuthFailure::Client(ErrorCode::AuthFailed, "session_gone"));
            }
        } else {
            store.put_session(&record)?;
        }
        let life = expires_ms.saturating_sub(now) / 1000;
        let ws_token = self
            .state
            .verifier
            .issue_ws_token(&v.user_id, &session_id, now / 1000, life.max(1))
            .map_err(|e| {
                tracing::error!(error = %e, "signing wsToken failed");
                AuthFailure::Client(ErrorCode::Internal, "internal")
            })?;
        Ok(Established {
            identity: Identity {
                user_id,
                email: email.map(|e| e.as_str().into()),
                roles,
                permissions,
                claimed_roles: v.claimed_roles.clone(),
                session_id,
            },
            ws_token,
            token_exp,
        })
    }

    /// The roles and permissions a user acts with (see `principal::roles_for`). Read at
    /// `auth`, at every `refresh`, and again whenever an operator changes roles or
    /// permissions.
    pub(super) fn roles_for(
        &self,
        user_id: &str,
        claimed: &[String],
    ) -> Result<(Vec<String>, Permissions), StoreError> {
        principal::roles_for(&self.state, user_id, claimed)
    }

    /// Refuses a token from an external provider whose `sub` names a built-in account:
    /// stored roles, grants and sessions are keyed by user id, so the provider's "admin"
    /// would otherwise act as roomgate's own `admin`.
    fn check_foreign_sub(&self, v: &Verified) -> Result<(), AuthFailure> {
        if principal::foreign_sub_collides(&self.state.store, v)? {
            return Err(AuthFailure::Client(
                ErrorCode::AuthFailed,
                "sub_collides_with_account",
            ));
        }
        Ok(())
    }

    /// Whether any of the token's revocation keys, a missing refresh family, or a
    /// user-wide cut-off refuses it.
    fn is_revoked(&self, v: &Verified, keys: &[String]) -> Result<bool, StoreError> {
        principal::is_revoked(&self.state.store, v, keys)
    }

    pub(super) fn valid_room_id(&self, room_id: &str) -> bool {
        !room_id.is_empty()
            && room_id.len() <= self.state.cfg.rooms.max_room_id_len
            && room_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
    }

    async fn on_join(&mut self, room_id: &str, since: Option<u64>, epoch: Option<u64>) {
        let Some(identity) = self.identity() else {
            return;
        };
        if !self.valid_room_id(room_id) {
            self.error(ErrorCode::InvalidRoomId);
            return;
        }
        let user_id = identity.user_id.clone();
        if let Err(wait) = self
            .state
            .limiters
            .check(Limit::Join, &Key::User(user_id.clone()))
        {
            self.audit_limited(Refused::Join);
            self.error_with(ErrorCode::JoinRateLimited, None, Some(room_id), Some(wait));
            return;
        }
        self.drop_if_kicked(room_id);
        if let Some(existing) = self.rooms.get(room_id) {
            // Joining twice is harmless: answer as the first time, announce nothing.
            let access = self.room_access.get(room_id).copied().unwrap_or_default();
            existing.room().rejoined(&self.out, since.is_some(), access);
            return;
        }
        if self.rooms.len() >= self.state.cfg.connection.max_rooms_per_connection {
            self.state
                .refusals
                .record(Refused::RoomsPerConnection, self.ip);
            self.error_with(ErrorCode::TooManyRooms, None, Some(room_id), None);
            return;
        }
        let mut resume = since.map(|since| Resume {
            since,
            epoch,
            max: self.state.cfg.max_replay(),
            stored: Vec::new(),
            stored_epoch: None,
            last_try: false,
        });
        // A room retired by the sweeper between lookup and join is simply loaded again;
        // a replay that needs the store reads it (outside the room lock) and joins again.
        let mut store_reads = 0;
        for _ in 0..8 {
            let room = match self
                .state
                .hub
                .load(room_id, self.state.cfg.rooms.auto_create)
            {
                Ok(Lookup::Found(room)) => room,
                Ok(Lookup::NotFound) => {
                    self.error_with(ErrorCode::RoomNotFound, None, Some(room_id), None);
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "store failure loading a room");
                    self.error(ErrorCode::Internal);
                    return;
                }
            };
            let Some(identity) = self.identity() else {
                return;
            };
            let grant = match identity.access(&room.record()).read_grant() {
                Ok(g) => g,
                Err(_) => {
                    self.audit_denied(&user_id, "join", room_id);
                    self.error_with(
                        ErrorCode::InsufficientPermissions,
                        None,
                        Some(room_id),
                        None,
                    );
                    return;
                }
            };
            let access = identity.access(&room.record());
            let member = MemberInfo {
                conn_id: self.id,
                connection_id: self.connection_id.as_str().into(),
                joined_ms: now_ms(),
                access,
                user_id: user_id.clone(),
                email: identity.email.clone(),
                out: self.out.clone(),
            };
            match room.join(grant, member, resume.as_ref()) {
                Ok(Joined {
                    membership,
                    recovered,
                }) => {
                    self.rooms.insert(room_id.to_string(), membership);
                    self.room_access.insert(room_id.to_string(), access);
                    let mut meta = vec![("roomId", room_id)];
                    if let Some(r) = recovered {
                        meta.push(("recovered", if r { "true" } else { "false" }));
                    }
                    self.state
                        .audit
                        .record("room_join", Some(&user_id), Outcome::Success, &meta);
                    return;
                }
                Err(JoinError::Full) => {
                    self.state.refusals.record(Refused::RoomFull, self.ip);
                    self.error_with(ErrorCode::RoomFull, None, Some(room_id), None);
                    return;
                }
                Err(JoinError::Retired) => continue,
                Err(JoinError::NeedStored { from, to, epoch }) => {
                    let Some(r) = resume.as_mut() else {
                        continue;
                    };
                    // The first read needs no barrier; a second means the store lagged
                    // behind the ring, so wait for the writer first.
                    if store_reads > 0 {
                        self.state.history.sync().await;
                    }
                    store_reads += 1;
                    let limit = (to - from + 1) as usize;
                    let records = match self.state.store.history_range(room_id, from, to, limit) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(error = %e, "store failure reading history");
                            self.error(ErrorCode::Internal);
                            return;
                        }
                    };
                    r.stored = records
                        .into_iter()
                        .map(|rec| {
                            let frame = text_frame(protocol::encode(
                                "message",
                                &ChatMessage::from_record(&rec, epoch),
                            ));
                            Entry {
                                record: Arc::new(rec),
                                frame,
                            }
                        })
                        .collect();
                    r.stored_epoch = Some(epoch);
                    r.last_try = store_reads >= 3;
                }
            }
        }
        self.error(ErrorCode::Internal);
    }

    /// `history {roomId, since?, before?, limit?}`: a page of the room's messages, oldest
    /// first. Needs read access to the room, not membership.
    async fn on_history(
        &mut self,
        room_id: &str,
        since: Option<u64>,
        before: Option<u64>,
        limit: Option<u64>,
    ) {
        let Some(identity) = self.identity() else {
            return;
        };
        if !self.valid_room_id(room_id) {
            self.error(ErrorCode::InvalidRoomId);
            return;
        }
        if (since.is_some() && before.is_some()) || limit == Some(0) {
            self.error_with(ErrorCode::InvalidHistoryQuery, None, Some(room_id), None);
            return;
        }
        let cap = self.state.cfg.rooms.history_max_page;
        let limit = limit.map_or(cap, |l| l.min(cap as u64) as usize);
        let room = match self.state.hub.load(room_id, false) {
            Ok(Lookup::Found(room)) => room,
            Ok(Lookup::NotFound) => {
                self.error_with(ErrorCode::RoomNotFound, None, Some(room_id), None);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "store failure loading a room");
                self.error(ErrorCode::Internal);
                return;
            }
        };
        if !identity.access(&room.record()).read {
            let user = identity.user_id.clone();
            self.audit_denied(&user, "history", room_id);
            self.error_with(
                ErrorCode::InsufficientPermissions,
                None,
                Some(room_id),
                None,
            );
            return;
        }
        let q = PageQuery {
            since,
            before,
            limit,
        };
        match crate::history::page(&self.state, &room, q).await {
            Ok(page) => {
                let messages = page
                    .messages
                    .iter()
                    .map(|r| ChatMessage::from_record(r, page.epoch))
                    .collect();
                self.out.send_text(protocol::encode(
                    "history",
                    &HistoryPage {
                        room_id,
                        epoch: page.epoch,
                        seq: page.seq,
                        messages,
                        has_more: page.has_more,
                    },
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "store failure reading history");
                self.error(ErrorCode::Internal);
            }
        }
    }

    pub(super) fn audit_denied(&self, user_id: &str, action: &str, room_id: &str) {
        self.state.audit.record(
            "permission_denied",
            Some(user_id),
            Outcome::Failure,
            &[("action", action), ("roomId", room_id)],
        );
    }

    fn on_leave(&mut self, room_id: &str) {
        if !self.valid_room_id(room_id) {
            self.error(ErrorCode::InvalidRoomId);
            return;
        }
        self.room_access.remove(room_id);
        match self.rooms.remove(room_id) {
            Some(membership) => {
                membership.leave();
                self.out.send_text(protocol::encode(
                    "room_left",
                    &RoomLeft {
                        room_id,
                        reason: None,
                    },
                ));
            }
            None => self.error_with(ErrorCode::NotMember, None, Some(room_id), None),
        }
    }

    async fn on_message(&mut self, room_id: &str, content: &str, client_msg_id: Option<&str>) {
        self.drop_if_kicked(room_id);
        let Some(identity) = self.identity() else {
            return;
        };
        if !self.valid_room_id(room_id) {
            self.error(ErrorCode::InvalidRoomId);
            return;
        }
        // The seed let anyone with the write role post into rooms they never joined.
        let Some(membership) = self.rooms.get(room_id) else {
            self.error_with(ErrorCode::NotMember, None, Some(room_id), None);
            return;
        };
        let room = membership.room().clone();
        let grant = match identity.access(&room.record()).write_grant() {
            Ok(g) => g,
            Err(_) => {
                let user = identity.user_id.clone();
                self.audit_denied(&user, "write", room_id);
                self.error_with(
                    ErrorCode::InsufficientPermissions,
                    None,
                    Some(room_id),
                    None,
                );
                return;
            }
        };
        let sender = Sender {
            user_id: identity.user_id.clone(),
            email: identity.email.clone(),
            system: false,
        };
        match publish::publish(&self.state, &room, grant, &sender, content, client_msg_id).await {
            Ok(ack) => {
                if let Some(client_msg_id) = &ack.client_msg_id {
                    self.out.send_text(protocol::encode(
                        "message_ack",
                        &MessageAck {
                            room_id,
                            client_msg_id,
                            id: &ack.id,
                            seq: ack.seq,
                            epoch: ack.epoch,
                            duplicate: ack.duplicate,
                        },
                    ));
                }
            }
            Err(PublishError::InvalidClientMsgId) => {
                self.error_with(ErrorCode::InvalidClientMsgId, None, Some(room_id), None);
            }
            // A member's room is never retired, and shutdown closes this socket anyway.
            Err(PublishError::RoomRetired | PublishError::ShuttingDown) => {
                self.error(ErrorCode::Internal);
            }
            Err(PublishError::Store(e)) => {
                tracing::error!(error = %e, "store failure publishing a message");
                self.error(ErrorCode::Internal);
            }
        }
    }
}

/// The reply code for a token that failed verification.
fn verify_error_code(e: AuthError) -> ErrorCode {
    if e == AuthError::TooLarge {
        ErrorCode::TokenTooLarge
    } else {
        ErrorCode::AuthFailed
    }
}
