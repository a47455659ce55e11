//! The notification side of one connection: the inbox replay right after `auth` (which
//! also subscribes the socket to live notifications), a publisher's `notification`
//! frame, and `notification_ack`. Storage, ordering and fan-out belong to `notify`; this
//! file checks the input, then the `notify:publish` permission (and `read` on a target
//! room), and answers. It never sends to another connection itself.

use crate::audit::Outcome;
use crate::authz::Permission;
use crate::notify::{self, NewNotification, NotifyError};
use crate::protocol::{self, ErrorCode, NotificationAcked, NotificationSent, NotifyTarget};

use super::Conn;

impl Conn {
    /// Subscribes the connection to its user's notifications and replays the inbox,
    /// oldest first, ahead of any live one. A failed replay leaves the inbox for the
    /// next `auth` and still subscribes, so live notifications keep coming.
    pub(super) fn deliver_inbox(&mut self) {
        let Some(identity) = self.identity() else {
            return;
        };
        let user = identity.user_id.clone();
        let (sub, replayed) = notify::subscribe(&self.state, user, self.id, self.out.clone());
        self.notifications = Some(sub);
        if let Err(e) = replayed {
            tracing::error!(error = %e, "reading a notification inbox failed");
            self.error(ErrorCode::Internal);
        }
    }

    /// `notification {userId | userIds | roomId, kind?, title?, body, data?}` from a
    /// publisher. Input is checked first, then `notify:publish`, then (for a room) that
    /// the publisher may read the room. Answered with `notification_sent`.
    pub(super) async fn on_notification(&mut self, target: NotifyTarget, n: NewNotification) {
        let room_id = match &target {
            NotifyTarget::Room(r) => Some(r.clone()),
            NotifyTarget::Users(_) => None,
        };
        let room_id = room_id.as_deref();
        let checked = notify::prepare(&self.state.cfg, n).and_then(|p| match &target {
            NotifyTarget::Users(list) => {
                notify::check_recipients(&self.state.cfg, list).map(|u| (p, Some(u)))
            }
            NotifyTarget::Room(r) => notify::check_room_id(&self.state.cfg, r).map(|()| (p, None)),
        });
        let (prepared, users) = match checked {
            Ok(c) => c,
            Err(e) => return self.notify_failed(&e, room_id),
        };
        let Some(identity) = self.identity() else {
            return;
        };
        let user_id = identity.user_id.clone();
        if !identity.permissions.has(Permission::NotifyPublish) {
            self.audit_notify_denied(&user_id, room_id);
            self.error_with(ErrorCode::InsufficientPermissions, None, room_id, None);
            return;
        }
        let users = match (users, room_id) {
            (Some(users), _) => users,
            (None, Some(room)) => {
                let audience = match notify::room_audience(&self.state, room) {
                    Ok(a) => a,
                    Err(e) => return self.notify_failed(&e, room_id),
                };
                if !identity.access(&audience.record).read {
                    self.audit_notify_denied(&user_id, room_id);
                    self.error_with(ErrorCode::InsufficientPermissions, None, room_id, None);
                    return;
                }
                audience.members
            }
            (None, None) => return,
        };
        match notify::publish(&self.state, &user_id, users, prepared, room_id).await {
            Ok(delivered) => {
                let connections = delivered.iter().map(|d| d.connections).sum();
                self.out.send_text(protocol::encode(
                    "notification_sent",
                    &NotificationSent {
                        recipients: delivered.len(),
                        connections,
                        room_id,
                    },
                ));
                let recipients = delivered.len().to_string();
                let mut metadata = vec![("recipients", recipients.as_str())];
                if let Some(r) = room_id {
                    metadata.push(("roomId", r));
                }
                self.state.audit.record(
                    "notification_publish",
                    Some(&user_id),
                    Outcome::Success,
                    &metadata,
                );
            }
            Err(e) => self.notify_failed(&e, room_id),
        }
    }

    /// `notification_ack {ids}`: deletes those notifications from the user's inbox, so
    /// no later `auth` replays them. Unknown (or already acknowledged) ids are ignored.
    pub(super) async fn on_notification_ack(&mut self, ids: Vec<u64>) {
        let Some(identity) = self.identity() else {
            return;
        };
        let user = identity.user_id.clone();
        match notify::ack(&self.state, &user, ids).await {
            Ok(removed) => {
                self.out.send_text(protocol::encode(
                    "notification_acked",
                    &NotificationAcked { removed },
                ));
            }
            Err(e) => self.notify_failed(&e, None),
        }
    }

    fn notify_failed(&self, e: &NotifyError, room_id: Option<&str>) {
        if e.code() == ErrorCode::Internal {
            tracing::error!(error = %e, "notification failed");
        }
        self.error_with(e.code(), e.field(), room_id, None);
    }

    fn audit_notify_denied(&self, user_id: &str, room_id: Option<&str>) {
        let mut metadata = vec![("action", "notify")];
        if let Some(r) = room_id {
            metadata.push(("roomId", r));
        }
        self.state.audit.record(
            "permission_denied",
            Some(user_id),
            Outcome::Failure,
            &metadata,
        );
    }
}
