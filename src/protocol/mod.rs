//! The wire protocol: client frames decoded from JSON text and server frames encoded to
//! it, exactly in the seed's shapes (`{type, data, timestamp}`) plus our `code` field on
//! errors. This module owns the envelope rules (what makes a frame well-formed, how deep
//! JSON may nest) and nothing else: it never touches sockets, state or the store, and it
//! never decides whether an action is allowed.

pub mod codes;
mod strict;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::store::HistoryRecord;

pub use codes::{CloseCode, ErrorCode, Reconnect};

/// A decoded client frame. Field names follow the seed (`roomId`, `content`, `token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// `auth {token}`.
    Auth { token: String },
    /// `join {roomId, since?, epoch?}`: `since` (the last seq the client has) asks for
    /// the messages it missed, `epoch` names the history that seq belongs to.
    Join {
        room_id: String,
        since: Option<u64>,
        epoch: Option<u64>,
    },
    /// `leave {roomId}`.
    Leave { room_id: String },
    /// `message {roomId, content, clientMsgId?}`.
    Message {
        room_id: String,
        content: String,
        client_msg_id: Option<String>,
    },
    /// `history {roomId, since?, before?, limit?}`.
    History {
        room_id: String,
        since: Option<u64>,
        before: Option<u64>,
        limit: Option<u64>,
    },
    /// `heartbeat {}`.
    Heartbeat,
    /// `refresh {token}`: a new access token for the same user, on a live connection.
    Refresh { token: String },
    /// `presence {roomId}`: who is in the room.
    Presence { room_id: String },
    /// `kick {roomId, userId | connectionId, ban?}`: a room admin takes connections out.
    Kick {
        room_id: String,
        target: KickWho,
        ban: bool,
    },
    /// `room_acl {roomId, ...changes}`: a room admin reads or changes the room's ACL.
    RoomAcl { room_id: String, change: AclChange },
    /// `notification {userId | userIds | roomId, kind?, title?, body, data?}`: a
    /// publisher (`notify:publish`) notifies users or a room's members.
    Notification {
        target: NotifyTarget,
        kind: Option<String>,
        title: Option<String>,
        body: String,
        data: Option<Value>,
    },
    /// `notification_ack {ids}`: the client has the notifications; delete them.
    NotificationAck { ids: Vec<u64> },
}

/// Whom a `notification` frame addresses: exactly one of `userId`, `userIds`, `roomId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyTarget {
    /// `userId` (as a one-element list) or `userIds`.
    Users(Vec<String>),
    Room(String),
}

/// Whom a `kick` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KickWho {
    User(String),
    Connection(String),
}

/// The changes a `room_acl` frame asks for; every part optional (none reads the ACL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclChange {
    pub read: Option<Vec<String>>,
    pub write: Option<Vec<String>>,
    pub admin: Option<Vec<String>>,
    pub show_emails: Option<bool>,
    /// `grant {userId, read, write, admin}`: sets one user's own rights.
    pub grant: Option<(String, bool, bool, bool)>,
    /// `revokeGrant userId`: removes one user's own rights.
    pub revoke_grant: Option<String>,
    pub ban: Option<String>,
    pub unban: Option<String>,
}

impl AclChange {
    /// Whether the frame changes anything.
    pub fn is_empty(&self) -> bool {
        *self == AclChange::default()
    }
}

impl ClientFrame {
    /// The frame's `type`, for logs and limiter decisions.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientFrame::Auth { .. } => "auth",
            ClientFrame::Join { .. } => "join",
            ClientFrame::Leave { .. } => "leave",
            ClientFrame::Message { .. } => "message",
            ClientFrame::History { .. } => "history",
            ClientFrame::Heartbeat => "heartbeat",
            ClientFrame::Refresh { .. } => "refresh",
            ClientFrame::Presence { .. } => "presence",
            ClientFrame::Kick { .. } => "kick",
            ClientFrame::RoomAcl { .. } => "room_acl",
            ClientFrame::Notification { .. } => "notification",
            ClientFrame::NotificationAck { .. } => "notification_ack",
        }
    }
}

/// Why a text frame could not be decoded; always answered with an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    pub code: ErrorCode,
    /// The offending `data` field for [`ErrorCode::InvalidField`].
    pub field: Option<&'static str>,
}

impl DecodeError {
    fn code(code: ErrorCode) -> Self {
        DecodeError { code, field: None }
    }

    fn field(field: &'static str) -> Self {
        DecodeError {
            code: ErrorCode::InvalidField,
            field: Some(field),
        }
    }
}

/// Decodes one text frame. The depth check runs first, on bytes, so a hostile
/// `[[[[...` costs a linear scan and never reaches the recursive parser.
pub fn decode(text: &str, max_depth: usize) -> Result<ClientFrame, DecodeError> {
    if json_depth_exceeds(text.as_bytes(), max_depth) {
        return Err(DecodeError::code(ErrorCode::NestingTooDeep));
    }
    // One pass that also refuses repeated keys: with serde_json's last-wins rule, a proxy
    // reading the first `type` would see another frame than the one acted on.
    let value = strict::parse(text).map_err(|e| {
        DecodeError::code(match e {
            strict::StrictError::Syntax => ErrorCode::InvalidFormat,
            strict::StrictError::DuplicateKey => ErrorCode::InvalidStructure,
        })
    })?;
    let Value::Object(mut envelope) = value else {
        return Err(DecodeError::code(ErrorCode::InvalidStructure));
    };
    // The seed's validateMessage: type is a string, data an object, timestamp a number.
    let kind = match envelope.remove("type") {
        Some(Value::String(s)) => s,
        _ => return Err(DecodeError::code(ErrorCode::InvalidStructure)),
    };
    let mut data = match envelope.remove("data") {
        Some(Value::Object(map)) => map,
        _ => return Err(DecodeError::code(ErrorCode::InvalidStructure)),
    };
    if !matches!(envelope.get("timestamp"), Some(Value::Number(_))) {
        return Err(DecodeError::code(ErrorCode::InvalidStructure));
    }
    match kind.as_str() {
        // `{wsToken}` is accepted as well as `{token}`, to resume a session on reconnect.
        "auth" => match data.remove("token").or_else(|| data.remove("wsToken")) {
            Some(Value::String(t)) if !t.is_empty() => Ok(ClientFrame::Auth { token: t }),
            // The seed answers every missing or empty token with "Token required".
            None | Some(Value::Null) | Some(Value::String(_)) => {
                Err(DecodeError::code(ErrorCode::TokenRequired))
            }
            Some(_) => Err(DecodeError::field("token")),
        },
        "join" => Ok(ClientFrame::Join {
            room_id: string_field(&mut data, "roomId")?,
            since: seq_field(&mut data, "since")?,
            epoch: seq_field(&mut data, "epoch")?,
        }),
        "leave" => Ok(ClientFrame::Leave {
            room_id: string_field(&mut data, "roomId")?,
        }),
        "message" => Ok(ClientFrame::Message {
            room_id: string_field(&mut data, "roomId")?,
            content: string_field(&mut data, "content")?,
            client_msg_id: match data.remove("clientMsgId") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s),
                Some(_) => return Err(DecodeError::field("clientMsgId")),
            },
        }),
        "history" => Ok(ClientFrame::History {
            room_id: string_field(&mut data, "roomId")?,
            since: seq_field(&mut data, "since")?,
            before: seq_field(&mut data, "before")?,
            limit: seq_field(&mut data, "limit")?,
        }),
        "heartbeat" => Ok(ClientFrame::Heartbeat),
        "refresh" => match data.remove("token") {
            Some(Value::String(t)) if !t.is_empty() => Ok(ClientFrame::Refresh { token: t }),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                Err(DecodeError::code(ErrorCode::TokenRequired))
            }
            Some(_) => Err(DecodeError::field("token")),
        },
        "presence" => Ok(ClientFrame::Presence {
            room_id: string_field(&mut data, "roomId")?,
        }),
        "kick" => {
            let room_id = string_field(&mut data, "roomId")?;
            let target = match (data.remove("userId"), data.remove("connectionId")) {
                (Some(Value::String(u)), None) if !u.is_empty() => KickWho::User(u),
                (None, Some(Value::String(c))) if !c.is_empty() => KickWho::Connection(c),
                (Some(_), _) => return Err(DecodeError::field("userId")),
                (None, _) => return Err(DecodeError::field("connectionId")),
            };
            let ban = opt_bool(&mut data, "ban")?.unwrap_or(false);
            if ban && matches!(target, KickWho::Connection(_)) {
                return Err(DecodeError::field("ban"));
            }
            Ok(ClientFrame::Kick {
                room_id,
                target,
                ban,
            })
        }
        "room_acl" => {
            let room_id = string_field(&mut data, "roomId")?;
            let grant = match data.remove("grant") {
                None | Some(Value::Null) => None,
                Some(Value::Object(mut g)) => Some((
                    string_field(&mut g, "userId").map_err(|_| DecodeError::field("grant"))?,
                    opt_bool(&mut g, "read")?.unwrap_or(false),
                    opt_bool(&mut g, "write")?.unwrap_or(false),
                    opt_bool(&mut g, "admin")?.unwrap_or(false),
                )),
                Some(_) => return Err(DecodeError::field("grant")),
            };
            Ok(ClientFrame::RoomAcl {
                room_id,
                change: AclChange {
                    read: opt_strings(&mut data, "read")?,
                    write: opt_strings(&mut data, "write")?,
                    admin: opt_strings(&mut data, "admin")?,
                    show_emails: opt_bool(&mut data, "showEmails")?,
                    grant,
                    revoke_grant: opt_string(&mut data, "revokeGrant")?,
                    ban: opt_string(&mut data, "ban")?,
                    unban: opt_string(&mut data, "unban")?,
                },
            })
        }
        "notification" => Ok(ClientFrame::Notification {
            target: notify_target(&mut data)?,
            kind: opt_string(&mut data, "kind")?,
            title: opt_string(&mut data, "title")?,
            body: string_field(&mut data, "body")?,
            data: data.remove("data").filter(|v| !v.is_null()),
        }),
        "notification_ack" => match data.remove("ids") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_u64().ok_or(DecodeError::field("ids")))
                .collect::<Result<Vec<u64>, _>>()
                .map(|ids| ClientFrame::NotificationAck { ids }),
            _ => Err(DecodeError::field("ids")),
        },
        _ => Err(DecodeError::code(ErrorCode::UnknownType)),
    }
}

/// Exactly one of `userId`, `userIds` and `roomId` (a null counts as absent).
fn notify_target(data: &mut Map<String, Value>) -> Result<NotifyTarget, DecodeError> {
    let mut take = |name| data.remove(name).filter(|v: &Value| !v.is_null());
    match (take("userId"), take("userIds"), take("roomId")) {
        (Some(user), None, None) => match user {
            Value::String(u) => Ok(NotifyTarget::Users(vec![u])),
            _ => Err(DecodeError::field("userId")),
        },
        (None, Some(users), None) => match users {
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(u) => Ok(u),
                    _ => Err(DecodeError::field("userIds")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(NotifyTarget::Users),
            _ => Err(DecodeError::field("userIds")),
        },
        (None, None, Some(room)) => match room {
            Value::String(r) => Ok(NotifyTarget::Room(r)),
            _ => Err(DecodeError::field("roomId")),
        },
        _ => Err(DecodeError::code(ErrorCode::InvalidRecipients)),
    }
}

fn opt_bool(
    data: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<bool>, DecodeError> {
    match data.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(DecodeError::field(name)),
    }
}

fn opt_string(
    data: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, DecodeError> {
    match data.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(_) => Err(DecodeError::field(name)),
    }
}

fn opt_strings(
    data: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<Vec<String>>, DecodeError> {
    match data.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(DecodeError::field(name)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(DecodeError::field(name)),
    }
}

/// Moves a string out of `data` (no copy of message content on the hot path).
fn string_field(data: &mut Map<String, Value>, name: &'static str) -> Result<String, DecodeError> {
    match data.remove(name) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(DecodeError::field(name)),
    }
}

/// An optional non-negative integer that a JavaScript client can represent exactly
/// (at most 2^53 - 1); absent and `null` are None, anything else is refused.
fn seq_field(
    data: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, DecodeError> {
    match data.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v <= MAX_SAFE_INTEGER => Ok(Some(v)),
            _ => Err(DecodeError::field(name)),
        },
        Some(_) => Err(DecodeError::field(name)),
    }
}

/// The largest integer a JSON number keeps exactly in JavaScript.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A room epoch as clients see it: cut to 53 bits so JavaScript keeps it exactly
/// (epochs made by this build already fit; older ones are cut the same way everywhere).
pub fn wire_epoch(epoch: u64) -> u64 {
    epoch & MAX_SAFE_INTEGER
}

/// True when `bytes` opens more than `max` nested arrays/objects at some point. Brackets
/// inside strings are skipped; malformed JSON is left for the parser to reject.
pub fn json_depth_exceeds(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Milliseconds since the Unix epoch, the unit of every `timestamp` on the wire.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a D,
    timestamp: u64,
}

/// Encodes a server frame `{type, data, timestamp}`. Serialisation of our own plain data
/// types cannot fail; if it ever did we send an `internal` error rather than panic.
pub fn encode<D: Serialize>(kind: &str, data: &D) -> String {
    let envelope = Envelope {
        kind,
        data,
        timestamp: now_ms(),
    };
    serde_json::to_string(&envelope).unwrap_or_else(|_| {
        format!(
            r#"{{"type":"error","data":{{"code":"internal","message":"Internal error"}},"timestamp":{}}}"#,
            now_ms()
        )
    })
}

/// `handshake {connectionId, serverTime}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Handshake<'a> {
    pub connection_id: &'a str,
    pub server_time: u64,
    /// How often the client should send `heartbeat` (our addition; seed clients ignore it).
    pub heartbeat_interval_ms: u64,
}

/// `auth_success {wsToken, user}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthSuccess<'a> {
    pub ws_token: &'a str,
    pub user: UserView<'a>,
}

/// The user as other clients see it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView<'a> {
    pub user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    pub roles: &'a [String],
}

/// `room_joined {roomId, participants, epoch, seq, recovered?}`: `seq` is the room's
/// last message; `recovered` answers a `join` with `since`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomJoined<'a> {
    pub room_id: &'a str,
    pub participants: Vec<String>,
    pub epoch: u64,
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// The joiner's rights here, so a client can show a read-only room as such.
    pub permissions: RoomRights,
}

/// `{read, write, admin}` in `room_joined`.
#[derive(Serialize, Debug, Clone, Copy)]
pub struct RoomRights {
    pub read: bool,
    pub write: bool,
    pub admin: bool,
}

/// `room_left {roomId}`: our acknowledgement of `leave` (the seed sends none).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomLeft<'a> {
    pub room_id: &'a str,
    /// Why the server took the connection out (`kicked`, `banned`,
    /// `permission_revoked`, `room_deleted`); absent after the client's own `leave`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

/// `permissions_updated {roomId, read, write, admin}`: the connection's rights in a room
/// it is in changed while it stayed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionsUpdated<'a> {
    pub room_id: &'a str,
    pub read: bool,
    pub write: bool,
    pub admin: bool,
}

/// `kicked {roomId, count, banned}`: the answer to a room admin's `kick`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kicked<'a> {
    pub room_id: &'a str,
    pub count: usize,
    pub banned: bool,
}

/// `room_acl {...}`: a room's ACL, the answer to `room_acl`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomAclView<'a> {
    pub room_id: &'a str,
    pub read: &'a [String],
    pub write: &'a [String],
    pub admin: &'a [String],
    pub show_emails: bool,
    pub user_grants: Vec<UserGrantView<'a>>,
    pub bans: &'a [String],
}

/// One user's own rights in a room.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserGrantView<'a> {
    pub user_id: &'a str,
    pub read: bool,
    pub write: bool,
    pub admin: bool,
}

/// One user in a `presence` answer: connections aggregated by user.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PresenceMember {
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub connections: u32,
    /// When the user's earliest connection still in the room joined (ms).
    pub joined_at: u64,
}

/// `presence {roomId, members}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Presence<'a> {
    pub room_id: &'a str,
    pub members: Vec<PresenceMember>,
}

/// `user_joined`, `user_left`, `user_disconnected {userId, email, roomId}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPresence<'a> {
    pub user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    pub room_id: &'a str,
}

/// The `data` of a `message` frame: the seed's `chat_message` plus the room's `seq`
/// and `epoch`, the sender's `clientMsgId` when it gave one, and `system: true` for
/// messages an application published.
#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub room_id: &'a str,
    pub content: &'a str,
    pub user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    pub timestamp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub system: bool,
    /// Left out when the frame is spliced together under the room lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

impl<'a> ChatMessage<'a> {
    /// A stored message as clients see it.
    pub fn from_record(r: &'a HistoryRecord, epoch: u64) -> ChatMessage<'a> {
        ChatMessage {
            id: &r.id,
            kind: "chat_message",
            room_id: &r.room_id,
            content: &r.content,
            user_id: &r.user_id,
            email: r.email.as_deref(),
            timestamp: r.timestamp,
            client_msg_id: r.client_msg_id.as_deref(),
            system: r.system,
            seq: Some(r.seq),
            epoch: Some(epoch),
        }
    }
}

/// The `data` of a `message` frame without `seq` and `epoch`, serialised before the
/// room lock is taken; [`splice_message`] finishes it inside.
pub fn message_body(m: &ChatMessage<'_>) -> String {
    let unsequenced = ChatMessage {
        seq: None,
        epoch: None,
        ..m.clone()
    };
    serde_json::to_string(&unsequenced).unwrap_or_else(|_| "{}".into())
}

/// The whole `message` frame from a [`message_body`] and the seq and epoch the room
/// assigned: string concatenation only, so the room lock covers no serialisation work.
pub fn splice_message(body: &str, seq: u64, epoch: u64) -> String {
    let fields = body
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .unwrap_or("");
    let sep = if fields.is_empty() { "" } else { "," };
    format!(
        r#"{{"type":"message","data":{{{fields}{sep}"seq":{seq},"epoch":{epoch}}},"timestamp":{}}}"#,
        now_ms()
    )
}

/// `message_ack {roomId, clientMsgId, id, seq, epoch, duplicate}` to the sender of a
/// message that carried a `clientMsgId`; a resend gets the original's id and seq.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageAck<'a> {
    pub room_id: &'a str,
    pub client_msg_id: &'a str,
    pub id: &'a str,
    pub seq: u64,
    pub epoch: u64,
    pub duplicate: bool,
}

/// `history {roomId, epoch, seq, messages, hasMore}`: `messages` oldest first; `seq` is
/// the room's last message; `hasMore` says whether more lie in the paging direction.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage<'a> {
    pub room_id: &'a str,
    pub epoch: u64,
    pub seq: u64,
    pub messages: Vec<ChatMessage<'a>>,
    pub has_more: bool,
}

/// `token_expiring {expiresAt}` and `token_refreshed {expiresAt}` (ms since the epoch).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenExpiry {
    pub expires_at: u64,
}

/// `heartbeat_response {serverTime}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatResponse {
    pub server_time: u64,
}

/// The `data` of a `notification` frame: one entry of a user's inbox.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView<'a> {
    /// Unique, and increasing in the order one user's notifications were published.
    pub id: u64,
    pub from: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<&'a str>,
    pub body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_id: Option<&'a str>,
    /// Created at, ms since the epoch.
    pub timestamp: u64,
}

/// `notification_sent {recipients, connections, roomId?}`: the answer to a publisher's
/// `notification`: users it was stored for, and their open connections it reached.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationSent<'a> {
    pub recipients: usize,
    pub connections: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_id: Option<&'a str>,
}

/// `notification_acked {removed}`: the answer to `notification_ack`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationAcked {
    pub removed: usize,
}

/// `error {code, message, field?, retryAfterMs?}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorData<'a> {
    pub code: &'static str,
    pub message: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Encodes an error reply.
pub fn error_frame(
    code: ErrorCode,
    field: Option<&'static str>,
    room_id: Option<&str>,
    retry_after_ms: Option<u64>,
) -> String {
    encode(
        "error",
        &ErrorData {
            code: code.code(),
            message: code.message(),
            field,
            room_id,
            retry_after_ms,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_seed_frames() {
        let f = decode(
            r#"{"type":"join","data":{"roomId":"r1"},"timestamp":1}"#,
            32,
        );
        assert_eq!(
            f,
            Ok(ClientFrame::Join {
                room_id: "r1".into(),
                since: None,
                epoch: None,
            })
        );
        let f = decode(r#"{"type":"heartbeat","data":{},"timestamp":1.5}"#, 32);
        assert_eq!(f, Ok(ClientFrame::Heartbeat));
    }

    #[test]
    fn rejects_bad_envelopes() {
        let cases = [
            ("not json", ErrorCode::InvalidFormat),
            ("[]", ErrorCode::InvalidStructure),
            (r#"{"type":"join","data":{}}"#, ErrorCode::InvalidStructure),
            (
                r#"{"type":"join","data":{},"timestamp":1}"#,
                ErrorCode::InvalidField,
            ),
            (
                r#"{"type":"join","data":{"roomId":"a"}}"#,
                ErrorCode::InvalidStructure,
            ),
            (
                r#"{"type":1,"data":{},"timestamp":1}"#,
                ErrorCode::InvalidStructure,
            ),
            (
                r#"{"type":"x","data":[],"timestamp":1}"#,
                ErrorCode::InvalidStructure,
            ),
            (
                r#"{"type":"x","data":{},"timestamp":"1"}"#,
                ErrorCode::InvalidStructure,
            ),
            (
                r#"{"type":"nope","data":{},"timestamp":1}"#,
                ErrorCode::UnknownType,
            ),
            (
                r#"{"type":"auth","data":{},"timestamp":1}"#,
                ErrorCode::TokenRequired,
            ),
            (
                r#"{"type":"auth","data":{"token":""},"timestamp":1}"#,
                ErrorCode::TokenRequired,
            ),
        ];
        for (text, code) in cases {
            let got = decode(text, 32).map_err(|e| e.code);
            assert_eq!(got, Err(code), "{text}");
        }
    }

    #[test]
    fn recovery_fields_are_safe_integers() {
        let f = decode(
            r#"{"type":"join","data":{"roomId":"r","since":7,"epoch":9007199254740991},"timestamp":1}"#,
            32,
        );
        assert_eq!(
            f,
            Ok(ClientFrame::Join {
                room_id: "r".into(),
                since: Some(7),
                epoch: Some(MAX_SAFE_INTEGER),
            })
        );
        for bad in [
            r#"{"since":-1}"#,
            r#"{"since":1.5}"#,
            r#"{"since":"3"}"#,
            r#"{"since":9007199254740992}"#,
        ] {
            let text = format!(
                r#"{{"type":"history","data":{{"roomId":"r",{}}},"timestamp":1}}"#,
                &bad[1..bad.len() - 1]
            );
            let e = decode(&text, 32).unwrap_err();
            assert_eq!((e.code, e.field), (ErrorCode::InvalidField, Some("since")));
        }
        let e = decode(
            r#"{"type":"message","data":{"roomId":"r","content":"x","clientMsgId":5},"timestamp":1}"#,
            32,
        )
        .unwrap_err();
        assert_eq!(e.field, Some("clientMsgId"));
    }

    #[test]
    fn spliced_message_equals_the_serialised_one() {
        let r = HistoryRecord {
            room_id: "r".into(),
            seq: 42,
            id: "abc".into(),
            content: "say \"hi\" </b>".into(),
            user_id: "u".into(),
            email: None,
            timestamp: 5,
            client_msg_id: Some("c-1".into()),
            system: false,
        };
        let full = ChatMessage::from_record(&r, 77);
        let spliced: Value = serde_json::from_str(&splice_message(&message_body(&full), 42, 77))
            .expect("spliced frame is JSON");
        assert_eq!(spliced["type"], "message");
        assert_eq!(spliced["data"], serde_json::to_value(&full).unwrap());
        assert!(spliced["data"].get("system").is_none());
    }

    #[test]
    fn depth_scan_ignores_brackets_in_strings() {
        assert!(!json_depth_exceeds(br#"{"a":"[[[[[[[[["}"#, 2));
        assert!(json_depth_exceeds(b"[[[", 2));
        assert!(!json_depth_exceeds(b"[[]]", 2));
        assert!(!json_depth_exceeds(br#"{"a":"\"[[[["}"#, 1));
    }
}
