//! The two wire failure registries: reply errors (the connection stays open) and close
//! codes (the connection ends). Every variant maps, through an exhaustive `match`, to the
//! code string or number a client sees and to a fixed public message. The README tables
//! are generated from `ErrorCode::ALL` / `CloseCode::ALL` and a test checks them, so the
//! docs cannot drift. Nothing here knows about sockets or state.

/// A reply error: sent as `{"type":"error","data":{"code","message",...}}`; the socket stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The frame is not valid JSON.
    InvalidFormat,
    /// The frame is JSON but not `{type: string, data: object, timestamp: number}`, or
    /// some object in it names a key twice (at any depth, `data` and below included).
    InvalidStructure,
    /// The JSON nests deeper than `connection.max_json_depth`.
    NestingTooDeep,
    /// A field of `data` is missing or has the wrong type; `field` names it.
    InvalidField,
    /// `type` is not one the server knows.
    UnknownType,
    /// The per-user (per-IP before auth) frame quota is used up; `retryAfterMs` says when to retry.
    RateLimited,
    /// The per-IP authentication quota is used up.
    AuthRateLimited,
    /// The per-user join quota is used up.
    JoinRateLimited,
    /// `auth` without a token.
    TokenRequired,
    /// The token is longer than `auth.max_token_bytes`; refused before parsing.
    TokenTooLarge,
    /// The token failed verification (signature, algorithm, expiry, claims).
    AuthFailed,
    /// The token, or every session of its user, has been revoked.
    TokenRevoked,
    /// A second `auth` on an authenticated connection.
    AlreadyAuthenticated,
    /// The user already has `connection.max_connections_per_user` authenticated sockets.
    TooManyConnections,
    /// A frame other than `auth` or `heartbeat` before authentication.
    NotAuthenticated,
    /// The room id is empty, too long, or has characters outside `[A-Za-z0-9_.:-]`.
    InvalidRoomId,
    /// The room does not exist (and auto-creation is off, or the frame is not a join).
    RoomNotFound,
    /// The user's roles do not grant the action on the room.
    InsufficientPermissions,
    /// The room has `max_participants` distinct users.
    RoomFull,
    /// The connection is in `connection.max_rooms_per_connection` rooms already.
    TooManyRooms,
    /// `message` or `leave` for a room this connection has not joined.
    NotMember,
    /// `refresh` with a token for another user, or on an unauthenticated connection.
    RefreshRejected,
    /// `notification` names none or several of `userId`, `userIds`, `roomId`, an empty
    /// list, or a user id that is empty or over `notifications.max_user_id_bytes`.
    InvalidRecipients,
    /// `notification` addresses more than `notifications.max_recipients` users.
    TooManyRecipients,
    /// A notification's `title`, `body` or `data` is over its `notifications.*` limit;
    /// `field` names it.
    NotificationTooLarge,
    /// `notification_ack` carries more than `notifications.max_ack_ids` ids.
    TooManyIds,
    /// `clientMsgId` is empty, longer than `rooms.max_client_msg_id_len`, or has
    /// characters outside `[A-Za-z0-9_.:-]`.
    InvalidClientMsgId,
    /// `history` with both `since` and `before`, or with `limit` 0.
    InvalidHistoryQuery,
    /// Something failed inside the server; the cause is in the server log.
    Internal,
}

impl ErrorCode {
    /// Every variant, in the order of the README table.
    pub const ALL: [ErrorCode; 29] = [
        ErrorCode::InvalidFormat,
        ErrorCode::InvalidStructure,
        ErrorCode::NestingTooDeep,
        ErrorCode::InvalidField,
        ErrorCode::UnknownType,
        ErrorCode::RateLimited,
        ErrorCode::AuthRateLimited,
        ErrorCode::JoinRateLimited,
        ErrorCode::TokenRequired,
        ErrorCode::TokenTooLarge,
        ErrorCode::AuthFailed,
        ErrorCode::TokenRevoked,
        ErrorCode::AlreadyAuthenticated,
        ErrorCode::TooManyConnections,
        ErrorCode::NotAuthenticated,
        ErrorCode::InvalidRoomId,
        ErrorCode::RoomNotFound,
        ErrorCode::InsufficientPermissions,
        ErrorCode::RoomFull,
        ErrorCode::TooManyRooms,
        ErrorCode::NotMember,
        ErrorCode::RefreshRejected,
        ErrorCode::InvalidRecipients,
        ErrorCode::TooManyRecipients,
        ErrorCode::NotificationTooLarge,
        ErrorCode::TooManyIds,
        ErrorCode::InvalidClientMsgId,
        ErrorCode::InvalidHistoryQuery,
        ErrorCode::Internal,
    ];

    /// The stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::InvalidFormat => "invalid_format",
            ErrorCode::InvalidStructure => "invalid_structure",
            ErrorCode::NestingTooDeep => "nesting_too_deep",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::AuthRateLimited => "auth_rate_limited",
            ErrorCode::JoinRateLimited => "join_rate_limited",
            ErrorCode::TokenRequired => "token_required",
            ErrorCode::TokenTooLarge => "token_too_large",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::TokenRevoked => "token_revoked",
            ErrorCode::AlreadyAuthenticated => "already_authenticated",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::NotAuthenticated => "not_authenticated",
            ErrorCode::InvalidRoomId => "invalid_room_id",
            ErrorCode::RoomNotFound => "room_not_found",
            ErrorCode::InsufficientPermissions => "insufficient_permissions",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::NotMember => "not_member",
            ErrorCode::RefreshRejected => "refresh_rejected",
            ErrorCode::InvalidRecipients => "invalid_recipients",
            ErrorCode::TooManyRecipients => "too_many_recipients",
            ErrorCode::NotificationTooLarge => "notification_too_large",
            ErrorCode::TooManyIds => "too_many_ids",
            ErrorCode::InvalidClientMsgId => "invalid_client_msg_id",
            ErrorCode::InvalidHistoryQuery => "invalid_history_query",
            ErrorCode::Internal => "internal",
        }
    }

    /// The public message: the seed's text wherever the seed has one, so seed clients that
    /// match on `message` keep working.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::InvalidFormat => "Invalid message format",
            ErrorCode::InvalidStructure => "Invalid message structure",
            ErrorCode::NestingTooDeep => "Invalid message format",
            ErrorCode::InvalidField => "Invalid message structure",
            ErrorCode::UnknownType => "Unknown message type",
            ErrorCode::RateLimited => "Rate limit exceeded",
            ErrorCode::AuthRateLimited => "Authentication rate limit exceeded",
            ErrorCode::JoinRateLimited => "Join rate limit exceeded",
            ErrorCode::TokenRequired => "Token required",
            ErrorCode::TokenTooLarge => "Authentication failed",
            ErrorCode::AuthFailed => "Authentication failed",
            ErrorCode::TokenRevoked => "Token has been revoked",
            ErrorCode::AlreadyAuthenticated => "Already authenticated",
            ErrorCode::TooManyConnections => "Too many connections",
            ErrorCode::NotAuthenticated => "Not authenticated",
            ErrorCode::InvalidRoomId => "Invalid room id",
            ErrorCode::RoomNotFound => "Room not found",
            ErrorCode::InsufficientPermissions => "Insufficient permissions",
            ErrorCode::RoomFull => "Room is full",
            ErrorCode::TooManyRooms => "Too many rooms",
            ErrorCode::NotMember => "Not a member of the room",
            ErrorCode::RefreshRejected => "Token refresh rejected",
            ErrorCode::InvalidRecipients => "Invalid recipients",
            ErrorCode::TooManyRecipients => "Too many recipients",
            ErrorCode::NotificationTooLarge => "Notification too large",
            ErrorCode::TooManyIds => "Too many ids",
            ErrorCode::InvalidClientMsgId => "Invalid client message id",
            ErrorCode::InvalidHistoryQuery => "Invalid history query",
            ErrorCode::Internal => "Internal error",
        }
    }
}

/// Whether a client should reconnect after a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// Reconnect with backoff; the same credentials may work.
    Yes,
    /// Reconnect only with a new token.
    WithNewToken,
    /// Do not reconnect automatically; something about the client must change.
    No,
}

/// A close code the server sends. Standard codes where RFC 6455 has one; the 4000-4999
/// private range otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// The server is shutting down (RFC 6455 "going away").
    GoingAway,
    /// A WebSocket protocol violation (bad opcode, unmasked frame, bad close frame...).
    ProtocolError,
    /// A binary frame: the protocol is JSON text only.
    UnsupportedData,
    /// A text frame that is not valid UTF-8.
    InvalidPayload,
    /// No successful `auth` within `auth.auth_timeout_secs` (seed: 1008 "Authentication timeout").
    AuthTimeout,
    /// No client frame within `connection.inactivity_timeout_secs` (seed: 1008 "Connection timeout").
    InactivityTimeout,
    /// A frame or message over `connection.max_frame_bytes`.
    MessageTooBig,
    /// The server failed unexpectedly.
    InternalError,
    /// The token the connection authenticated with reached its `exp`.
    TokenExpired,
    /// The token, its session or all of its user's sessions were revoked.
    TokenRevoked,
    /// Another socket resumed this connection's session with its `wsToken`: one session
    /// has one live socket, so a stolen `wsToken` in use shows up at its owner's end.
    SessionResumedElsewhere,
    /// The connection's outbound queue (`connection.outbound_queue`) overflowed.
    SlowConsumer,
}

impl CloseCode {
    /// Every variant, in the order of the README table.
    pub const ALL: [CloseCode; 12] = [
        CloseCode::GoingAway,
        CloseCode::ProtocolError,
        CloseCode::UnsupportedData,
        CloseCode::InvalidPayload,
        CloseCode::AuthTimeout,
        CloseCode::InactivityTimeout,
        CloseCode::MessageTooBig,
        CloseCode::InternalError,
        CloseCode::TokenExpired,
        CloseCode::TokenRevoked,
        CloseCode::SessionResumedElsewhere,
        CloseCode::SlowConsumer,
    ];

    /// The numeric close code on the wire.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::UnsupportedData => 1003,
            CloseCode::InvalidPayload => 1007,
            CloseCode::AuthTimeout => 1008,
            CloseCode::InactivityTimeout => 1008,
            CloseCode::MessageTooBig => 1009,
            CloseCode::InternalError => 1011,
            CloseCode::TokenExpired => 4001,
            CloseCode::TokenRevoked => 4003,
            CloseCode::SessionResumedElsewhere => 4005,
            CloseCode::SlowConsumer => 4008,
        }
    }

    /// The close reason text (at most 123 bytes, as RFC 6455 allows).
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::GoingAway => "Server shutting down",
            CloseCode::ProtocolError => "Protocol error",
            CloseCode::UnsupportedData => "Binary frames are not supported",
            CloseCode::InvalidPayload => "Invalid UTF-8",
            CloseCode::AuthTimeout => "Authentication timeout",
            CloseCode::InactivityTimeout => "Connection timeout",
            CloseCode::MessageTooBig => "Message too big",
            CloseCode::InternalError => "Internal error",
            CloseCode::TokenExpired => "Token expired",
            CloseCode::TokenRevoked => "Token revoked",
            CloseCode::SessionResumedElsewhere => "Session resumed elsewhere",
            CloseCode::SlowConsumer => "Slow consumer",
        }
    }

    /// What a client should do next.
    pub fn reconnect(self) -> Reconnect {
        match self {
            CloseCode::GoingAway => Reconnect::Yes,
            CloseCode::ProtocolError => Reconnect::No,
            CloseCode::UnsupportedData => Reconnect::No,
            CloseCode::InvalidPayload => Reconnect::No,
            CloseCode::AuthTimeout => Reconnect::Yes,
            CloseCode::InactivityTimeout => Reconnect::Yes,
            CloseCode::MessageTooBig => Reconnect::No,
            CloseCode::InternalError => Reconnect::Yes,
            CloseCode::TokenExpired => Reconnect::WithNewToken,
            CloseCode::TokenRevoked => Reconnect::No,
            // Reconnecting would take the session back and close the other socket in
            // turn; the user decides which of the two should have it.
            CloseCode::SessionResumedElsewhere => Reconnect::No,
            CloseCode::SlowConsumer => Reconnect::Yes,
        }
    }
}

impl Reconnect {
    /// The word used in the README table.
    pub fn as_str(self) -> &'static str {
        match self {
            Reconnect::Yes => "yes, with backoff",
            Reconnect::WithNewToken => "with a new token",
            Reconnect::No => "no",
        }
    }
}
