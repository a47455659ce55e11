//! `/api/v1/publish` and `/api/v1/notify` (`notify:publish`): applications and operators
//! post room messages through `publish` (the path a member's `message` takes: sanitised,
//! sequenced, stored in history, `clientMsgId` idempotent), flagged `system`; and send
//! personal notifications to users or to a room's current members through `notify`
//! exactly as the `notification` frame does (same validation, inbox, ordering). What an
//! API key sends comes from `system`; what a bearer token sends, from its user.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Answer, ApiError, Call, Need, Route, Verb, live_room};
use crate::audit::Outcome;
use crate::authz::Permission;
use crate::http::HttpError;
use crate::notify::{self, NewNotification, NotifyError};
use crate::publish::{self, PublishError, Sender};

const NEED: Need = Need::AnyOf(&[Permission::NotifyPublish]);

pub(super) const ROUTES: &[Route] = &[
    Route {
        verb: Verb::Post,
        path: "/api/v1/publish",
        need: NEED,
        handler: |c| Box::pin(publish_route(c)),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/notify",
        need: NEED,
        handler: |c| Box::pin(notify_route(c)),
    },
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PublishBody {
    room_id: String,
    content: String,
    /// Idempotency key: the same id from the same sender in the same room within
    /// `rooms.dedupe_window_secs` is not stored or sent twice.
    #[serde(default)]
    client_msg_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NotifyBody {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    user_ids: Option<Vec<String>>,
    #[serde(default)]
    room_id: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    title: Option<String>,
    body: String,
    #[serde(default)]
    data: Option<Value>,
}

/// How many times a publish looks the room up again when it was unloaded meanwhile.
const RETIRED_RETRIES: usize = 3;

/// POST /api/v1/publish
async fn publish_route(c: Call) -> Result<Answer, ApiError> {
    let b: PublishBody = c.body()?;
    if b.content.is_empty() {
        return Err(ApiError::Field("content"));
    }
    let sender = Sender {
        user_id: c.caller.sender.as_str().into(),
        email: None,
        system: true,
    };
    for _ in 0..RETIRED_RETRIES {
        let room = live_room(&c.state, &b.room_id)?;
        // Authorized by the route's `notify:publish`, not by a membership.
        let grant = crate::authz::unchecked_system_write();
        let result = publish::publish(
            &c.state,
            &room,
            grant,
            &sender,
            &b.content,
            b.client_msg_id.as_deref(),
        )
        .await;
        let ack = match result {
            Ok(ack) => ack,
            Err(PublishError::RoomRetired) => continue,
            Err(PublishError::InvalidClientMsgId) => return Err(ApiError::Field("clientMsgId")),
            Err(PublishError::ShuttingDown) => return Err(ApiError::Refused(HttpError::Internal)),
            Err(PublishError::Store(e)) => return Err(ApiError::Store(e)),
        };
        if !ack.duplicate {
            c.state.audit.record(
                "room_publish",
                None,
                Outcome::Success,
                &[
                    ("roomId", &b.room_id),
                    ("via", "api"),
                    ("actor", &c.caller.label),
                ],
            );
        }
        return Ok(Answer::ok(json!({
            "roomId": ack.room_id.as_ref(),
            "id": ack.id,
            "seq": ack.seq,
            "epoch": ack.epoch,
            "duplicate": ack.duplicate,
            "clientMsgId": ack.client_msg_id,
        })));
    }
    tracing::error!("a room kept being unloaded while publishing to it");
    Err(ApiError::Refused(HttpError::Internal))
}

/// The API's answer to a refused notification.
fn refusal(e: NotifyError) -> ApiError {
    match e {
        NotifyError::InvalidRecipients | NotifyError::TooManyRecipients => {
            ApiError::Field("userIds")
        }
        NotifyError::TooLarge(f) | NotifyError::InvalidField(f) => ApiError::Field(f),
        NotifyError::TooManyIds => ApiError::Field("ids"),
        NotifyError::InvalidRoomId => ApiError::Field("roomId"),
        NotifyError::RoomNotFound => ApiError::Refused(HttpError::RoomNotFound),
        NotifyError::Store(e) => ApiError::Store(e),
        NotifyError::Task(e) => {
            tracing::error!(error = %e, "notification task failed");
            ApiError::Refused(HttpError::Internal)
        }
    }
}

/// POST /api/v1/notify
async fn notify_route(c: Call) -> Result<Answer, ApiError> {
    let b: NotifyBody = c.body()?;
    let n = NewNotification {
        kind: b.kind,
        title: b.title,
        body: b.body,
        data: b.data,
    };
    let from = c.caller.sender.as_str();
    let delivered = match (b.user_id, b.user_ids, &b.room_id) {
        (Some(one), None, None) => notify::notify_users(&c.state, from, &[one], n).await,
        (None, Some(many), None) => notify::notify_users(&c.state, from, &many, n).await,
        (None, None, Some(room)) => notify::notify_room(&c.state, from, room, n).await,
        _ => return Err(ApiError::Field("userIds")),
    }
    .map_err(refusal)?;
    let connections: usize = delivered.iter().map(|d| d.connections).sum();
    let recipients = delivered.len().to_string();
    let mut meta = vec![
        ("recipients", recipients.as_str()),
        ("via", "api"),
        ("actor", c.caller.label.as_str()),
    ];
    if let Some(room) = &b.room_id {
        meta.push(("roomId", room));
    }
    c.state
        .audit
        .record("notification_publish", None, Outcome::Success, &meta);
    let mut out = json!({ "recipients": delivered.len(), "connections": connections });
    if let Some(room) = b.room_id {
        out["roomId"] = Value::String(room);
    }
    Ok(Answer::ok(out))
}
