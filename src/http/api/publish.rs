//! `/api/v1/notify` (`notify:publish`): applications and operators send personal
//! notifications to users or to a room's current members, through `notify` exactly as
//! the `notification` frame does (same validation, inbox, ordering). An API key's
//! notifications come from `system`; a bearer token's from its user.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Answer, ApiError, Call, Need, Route, Verb};
use crate::audit::Outcome;
use crate::authz::Permission;
use crate::http::HttpError;
use crate::notify::{self, NewNotification, NotifyError};

pub(super) const ROUTES: &[Route] = &[Route {
    verb: Verb::Post,
    path: "/api/v1/notify",
    need: Need::AnyOf(&[Permission::NotifyPublish]),
    handler: |c| Box::pin(notify_route(c)),
}];

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
