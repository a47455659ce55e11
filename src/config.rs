//! The one typed configuration. Layers, lowest first: built-in defaults (the seed's
//! `websocketSecurityConfig` values), a TOML file, the environment (`ROOMGATE_*` plus the
//! seed's `JWT_SECRET`, `WS_SECRET`, `ALLOWED_ORIGINS`), then command-line flags. Layers
//! are merged as JSON values and deserialised into the one `Config`, so every field has
//! exactly one definition here. Each key a layer sets keeps its source (file and line,
//! variable, flag), and every problem is reported at once with its key and source. This
//! module owns parsing, merging and validation; it must never read secrets from the data
//! root, touch the data directory or open the store (that is `server`'s job), and it
//! must never print a secret: `redacted()` is what gets logged.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A secret string. `Debug` never shows it; the effective-config log shows set/unset.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// The secret's bytes, for keys.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: String,
    /// Data root: sled database, generated secrets, control socket. Default `./data`.
    pub data_dir: PathBuf,
    /// Serve the operator control socket `<data_dir>/roomgate.sock` (mode 0600) so CLI
    /// commands reach a running server. Default true.
    pub control_socket: bool,
    /// Seconds to wait for connections and writers to finish at shutdown. Default 10.
    pub shutdown_deadline_secs: u64,
    /// `development` (easy defaults) or `production` (refuses to start without TLS or a
    /// trusted proxy, an origin list and strong secrets). `ROOMGATE_ENV` sets it too.
    /// Default development.
    pub mode: Mode,
    /// Log lines on stderr as `text` (for people) or `json` (one object per line, for
    /// collectors). Levels come from `ROOMGATE_LOG`. Default text.
    pub log_format: LogFormat,
    /// Seconds between the `info` summaries of refusals by limits (rate limits, connection
    /// caps, full rooms); each refusal itself is logged at `debug`. Nothing is logged for
    /// a period without refusals. Default 60.
    pub log_refusal_summary_secs: u64,
    /// Test-only: serve `GET /test/echo`, a WebSocket that echoes every message back,
    /// through the same accept loop, upgrade and WebSocket limits as `/ws`, so protocol
    /// conformance suites (Autobahn) can drive the server's WebSocket layer without the
    /// JSON protocol in the way. It needs no token: production mode refuses to start
    /// with it. Default false.
    pub test_echo: bool,
    pub auth: AuthConfig,
    pub accounts: AccountsConfig,
    pub connection: ConnectionConfig,
    pub rate_limits: RateLimitConfig,
    pub rooms: RoomsConfig,
    pub security: SecurityConfig,
    pub store: StoreConfig,
    pub tls: TlsConfig,
    pub metrics: MetricsConfig,
    pub notifications: NotificationsConfig,
    pub api: ApiConfig,
}

/// `GET /metrics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Bearer token `/metrics` requires. Unset: served only to direct loopback peers
    /// (not a trusted proxy, no forwarding header such as `X-Forwarded-For`,
    /// `X-Real-IP` or `Forwarded`).
    pub token: Option<Secret>,
}

/// How strict the start-up checks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Development,
    Production,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Shortest HMAC key production mode accepts, bytes (HS256 wants at least its output size).
pub const MIN_PRODUCTION_SECRET_BYTES: usize = 32;

/// Built-in TLS (`wss://`). Off unless both files are set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first. Unset: plain HTTP.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) matching the certificate.
    pub key_file: Option<PathBuf>,
    /// How often to look for changed certificate files, seconds; 0 reloads only on
    /// SIGHUP. Default 10.
    pub reload_check_secs: u64,
}

/// Token verification and sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 key for client JWTs (seed `JWT_SECRET`). Generated into the data root when unset.
    pub jwt_secret: Option<Secret>,
    /// File holding `jwt_secret` (trailing newline trimmed).
    pub jwt_secret_file: Option<PathBuf>,
    /// HS256 key for the `wsToken` the server issues (seed `WS_SECRET`). Generated when unset.
    pub ws_secret: Option<Secret>,
    /// File holding `ws_secret`.
    pub ws_secret_file: Option<PathBuf>,
    /// Required `iss` claim, checked when set.
    pub issuer: Option<String>,
    /// Required `aud` claim, checked when set.
    pub audience: Option<String>,
    /// Clock-skew allowance for `exp`/`nbf`, seconds. Default 30.
    pub leeway_secs: u64,
    /// Tokens longer than this many bytes are refused before parsing. Default 8192.
    pub max_token_bytes: usize,
    /// Roles every authenticated user has. Default `["user"]`.
    pub default_roles: Vec<String>,
    /// Take roles from the JWT `roles` claim too. Default false: roles come from the store.
    pub trust_role_claims: bool,
    /// Life of a session and its `wsToken`, seconds (seed `tokenExpiry`). Default 3600.
    pub token_expiry_secs: u64,
    /// Seconds an unauthenticated socket may stay open (seed `authTimeout`). Default 30.
    pub auth_timeout_secs: u64,
    /// Send `token_expiring` this many seconds before a live connection's token expires. Default 60.
    pub refresh_notice_secs: u64,
    /// Keep a connection open this long after its token's `exp` without a refresh. Default 0.
    pub expiry_grace_secs: u64,
    /// External identity providers, each with its own issuer, audience, algorithm and keys.
    pub issuers: Vec<IssuerConfig>,
}

/// An external identity provider whose tokens roomgate accepts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Exact `iss` of its tokens.
    pub issuer: String,
    /// Required `aud`, when set.
    #[serde(default)]
    pub audience: Option<String>,
    /// The one algorithm accepted: RS256, ES256 or EdDSA.
    pub algorithm: String,
    /// A PEM public key file (SPKI or PKCS#1 for RSA).
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// A JWKS file; keys are chosen by `kid` from this set only.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
}

/// Built-in accounts and the `/auth` token endpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsConfig {
    /// Serve `/auth/login`, `/auth/refresh`, `/auth/logout` and create the first admin. Default true.
    pub enabled: bool,
    /// `iss` of the access tokens roomgate issues. Default "roomgate".
    pub issuer: String,
    /// `aud` of the access tokens roomgate issues. Default "roomgate".
    pub audience: String,
    /// Access token life, seconds. Default 900.
    pub access_token_secs: u64,
    /// Refresh token life, seconds. Default 2592000 (30 days).
    pub refresh_token_secs: u64,
    /// argon2id memory cost, KiB (OWASP). Default 19456.
    pub argon2_memory_kib: u32,
    /// argon2id iterations (OWASP). Default 2.
    pub argon2_iterations: u32,
    /// argon2id parallelism (OWASP). Default 1.
    pub argon2_parallelism: u32,
    /// Password hashes computed at once; more logins wait. Default 2.
    pub hash_concurrency: usize,
    /// Shortest password accepted when setting one, characters. Default 8.
    pub min_password_chars: usize,
    /// Longest password accepted, bytes. Default 1024.
    pub max_password_bytes: usize,
    /// Login attempts per client IP, checked before hashing. Default 10/60 s.
    pub login: Quota,
    /// Failed logins per account, checked before hashing. Default 10/3600 s.
    pub failed_logins: Quota,
    /// Largest JSON body of an `/auth` request, bytes. Default 16384.
    pub max_body_bytes: u64,
    /// A rate-limited `/auth` request is answered after this delay (a tarpit: a client
    /// flooding on keep-alive connections then costs a sleeping task, not a busy core).
    /// Default 1000.
    pub refusal_delay_ms: u64,
    /// Password of the first `admin` account, from `ROOMGATE_ADMIN_PASSWORD` only (never
    /// in a file, never logged).
    #[serde(skip)]
    pub admin_password: Option<Secret>,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            enabled: true,
            issuer: "roomgate".into(),
            audience: "roomgate".into(),
            access_token_secs: 900,
            refresh_token_secs: 30 * 86_400,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            hash_concurrency: 2,
            min_password_chars: 8,
            max_password_bytes: 1024,
            login: Quota {
                points: 10,
                duration_secs: 60,
            },
            failed_logins: Quota {
                points: 10,
                duration_secs: 3600,
            },
            max_body_bytes: 16 * 1024,
            refusal_delay_ms: 1000,
            admin_password: None,
        }
    }
}

/// Per-connection limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionConfig {
    /// Heartbeat period clients should use, seconds (seed `heartbeatInterval`); sent in
    /// `handshake` as `heartbeatIntervalMs`. Default 30.
    pub heartbeat_interval_secs: u64,
    /// Close a socket with no client frame for this long, seconds (seed
    /// `connectionTimeout`). Default 60.
    pub inactivity_timeout_secs: u64,
    /// Largest frame or message a client may send, bytes; larger closes with 1009. Default 65536.
    pub max_frame_bytes: usize,
    /// Deepest JSON nesting accepted in a client frame. Default 32.
    pub max_json_depth: usize,
    /// Frames queued for one socket before it is closed as a slow consumer. Default 1024.
    pub outbound_queue: usize,
    /// Unauthenticated sockets allowed per client IP; more get HTTP 429. Default 64.
    pub max_unauthenticated_per_ip: usize,
    /// Authenticated sockets allowed per user. Default 32.
    pub max_connections_per_user: usize,
    /// Rooms one socket may be in at once. Default 100.
    pub max_rooms_per_connection: usize,
    /// Open TCP connections in total (HTTP and WebSocket); more are closed at once.
    /// Keep it under the process's open-file limit. Default 10000.
    pub max_connections: usize,
    /// Open TCP connections per client address (IPv6 by /64); trusted proxies are
    /// exempt. Default 256.
    pub max_connections_per_ip: usize,
    /// Seconds a client has to send a request's headers (and finish a TLS handshake)
    /// before it is dropped. Default 10.
    pub header_read_timeout_secs: u64,
    /// Largest request head (request line and headers), bytes; larger get 431. At
    /// least 8192. Default 16384.
    pub max_header_bytes: usize,
    /// Seconds a client has to send a whole request body, counted from the end of its
    /// headers; after it the connection is closed (and counted in
    /// `roomgate_body_timeouts_total{reason="deadline"}`). A body that never ends would
    /// otherwise hold a connection place for ever. Between 1 and 3600. Default 10, as
    /// for headers: the default bodies (at most 64 KiB) need 6.5 KB/s to fit.
    pub body_read_timeout_secs: u64,
    /// Least average rate a request body must keep, bytes per second, judged from two
    /// seconds after the headers; a slower one is closed before the deadline (reason
    /// `min_rate`), so a stalled body holds its place for about two seconds, not the
    /// whole deadline. 0 turns the rule off. Default 1024: a login or API body (under
    /// 1 KiB) arrives in one packet, and a link slower than 1 KiB/s cannot use the
    /// console anyway.
    pub body_min_bytes_per_sec: u64,
    /// Length of the kernel's queue of established connections not yet accepted (the
    /// `listen(2)` backlog; Linux caps it at `net.core.somaxconn`). Rust's default of
    /// 128 overflowed under a connection storm of 200 concurrent handshakes, and each
    /// dropped handshake cost its client a one-second SYN retransmission. Between 16 and
    /// 65535. Default 1024.
    pub listen_backlog: u32,
}

/// One limiter: `points` actions per `duration_secs`, as a burst that refills evenly.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub points: u32,
    pub duration_secs: u64,
}

/// The seed's rate limits, in process (governor) instead of Redis.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Turn the frame, auth, join and login limiters off (benchmarks only); the
    /// failed-login lockout stays on. Default true.
    pub enabled: bool,
    /// Client frames (all but heartbeats) per user, per IP before auth. Default 60/60 s.
    pub message: Quota,
    /// `auth` attempts per client IP. Default 10/60 s.
    pub auth: Quota,
    /// Room joins per user. Default 20/60 s.
    pub join: Quota,
    /// Keys one limiter may track; beyond it idle keys are swept at once. Default 100000.
    pub max_keys: usize,
}

/// Rooms and history.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// Distinct users per room unless the room says otherwise (seed `maxParticipants`). Default 100.
    pub max_participants: u32,
    /// Messages kept per room (seed `messageHistory`). Default 1000.
    pub message_history: u64,
    /// Seconds an auto-created room with no members is kept (seed `roomExpiry`); 0 keeps
    /// rooms forever. Rooms made with `roomgate room create` never expire. Default 86400.
    pub room_expiry_secs: u64,
    /// Create an unknown room on join. Default true.
    pub auto_create: bool,
    /// Type of auto-created rooms. Default "chat".
    pub default_type: String,
    /// Roles that may read auto-created rooms. Default `["user"]`.
    pub default_read: Vec<String>,
    /// Roles that may write in auto-created rooms. Default `["user"]`.
    pub default_write: Vec<String>,
    /// Roles that administer auto-created rooms. Default `["admin"]`.
    pub default_admin: Vec<String>,
    /// Longest room id, bytes. Default 128.
    pub max_room_id_len: usize,
    /// Whether new rooms show members' emails in presence and join/leave announcements
    /// (the seed always did). Each room keeps its own setting. Default true.
    pub show_emails: bool,
    /// Longest role list, per-user grant list or ban list one room may hold. Default 256.
    pub max_acl_entries: usize,
    /// Most messages one `history` answer carries; also its default `limit`. Default 100.
    pub history_max_page: usize,
    /// Last messages each live room keeps in memory, so a rejoin or a `history` request
    /// for recent messages is served without the store. Default 256.
    pub recovery_buffer: usize,
    /// Longest gap a `join` with `since` replays; a larger one answers `recovered: false`
    /// (page it with `history`). Capped at half of `connection.outbound_queue`, so a
    /// replay cannot overflow the joiner's own queue. Default 500.
    pub max_recovery_messages: u64,
    /// Seconds a `clientMsgId` is remembered per user and room, so a resend is neither
    /// stored nor broadcast twice. Default 300.
    pub dedupe_window_secs: u64,
    /// Longest `clientMsgId`, bytes (`A-Z a-z 0-9 _ - . :`). Default 64.
    pub max_client_msg_id_len: usize,
    /// Client message ids one live room remembers in memory; beyond it the oldest are
    /// looked up in the store instead. Default 10000.
    pub dedupe_max_entries: usize,
    /// History retention per room type.
    pub retention: RetentionConfig,
}

/// History retention for each room type (`[rooms.retention.chat]` and so on).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    pub chat: Retention,
    pub document: Retention,
    pub collaboration: Retention,
    pub notification: Retention,
}

/// How long one room type keeps its messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Messages kept per room; 0 uses `rooms.message_history`. Default 0.
    pub max_messages: u64,
    /// Messages older than this many seconds are deleted by the sweeper; 0 keeps them
    /// regardless of age. Default 0.
    pub max_age_secs: u64,
}

impl Config {
    /// Longest gap a rejoin replays: `rooms.max_recovery_messages`, at most half of the
    /// joiner's queue.
    pub fn max_replay(&self) -> u64 {
        self.rooms
            .max_recovery_messages
            .min((self.connection.outbound_queue / 2) as u64)
    }
}

impl RoomsConfig {
    /// The retention of a room type as configured (unknown types get chat's).
    pub fn retention(&self, kind: &str) -> Retention {
        match kind {
            "document" => self.retention.document,
            "collaboration" => self.retention.collaboration,
            "notification" => self.retention.notification,
            _ => self.retention.chat,
        }
    }

    /// Messages kept per room of this type.
    pub fn keep(&self, kind: &str) -> u64 {
        match self.retention(kind).max_messages {
            0 => self.message_history,
            n => n,
        }
    }

    /// Age past which messages of this type are deleted, ms; None keeps them.
    pub fn max_age_ms(&self, kind: &str) -> Option<u64> {
        let secs = self.retention(kind).max_age_secs;
        (secs > 0).then(|| secs.saturating_mul(1000))
    }
}

/// Origin, proxies, content and the security-event log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Origins allowed to open `/ws` (seed `ALLOWED_ORIGINS`); empty allows any.
    pub allowed_origins: Vec<String>,
    /// With `allowed_origins` set, also allow upgrades that send no Origin (non-browser
    /// clients). Default false.
    pub allow_missing_origin: bool,
    /// Refuse `/ws` unless a trusted proxy says the client used HTTPS (seed `requireTLS`;
    /// built-in TLS comes later). Default false.
    pub require_tls: bool,
    /// Proxies (IPs or CIDRs) whose `X-Forwarded-For`/`X-Forwarded-Proto` are believed. Default none.
    pub trusted_proxies: Vec<String>,
    /// roomgate runs behind a TLS-terminating proxy (one of `trusted_proxies`); lets
    /// production mode start without built-in TLS. Default false.
    pub behind_proxy: bool,
    /// Longest message content, in characters (seed `maxMessageLength`). Default 4000.
    pub max_message_length: usize,
    /// Strip `<`, `>` and `javascript:` from content, as the seed does. Turn off for
    /// clients that escape on output. Default true.
    pub strip_html: bool,
    /// Days to keep security events (seed `logRetention`). Default 30.
    pub log_retention_days: u64,
    /// Most security events kept. Default 100000.
    pub max_security_events: u64,
}

/// Personal notifications: the per-user inbox and the limits on what a publisher sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// Unacknowledged notifications kept per user; the oldest is dropped beyond it. The
    /// server uses at most half of `connection.outbound_queue` (and warns at start when
    /// that is less), so replaying a full inbox after `auth` cannot overflow the socket's
    /// queue. Default 100.
    pub inbox_max_count: usize,
    /// Seconds an unacknowledged notification is kept; the sweeper drops older ones.
    /// Default 604800 (7 days).
    pub inbox_max_age_secs: u64,
    /// Users one `notification` (or one API call) may address. Default 100.
    pub max_recipients: usize,
    /// Longest user id a notification may be addressed to, bytes. Default 256.
    pub max_user_id_bytes: usize,
    /// Longest `kind`, bytes (`A-Z a-z 0-9 _ - . :`). Default 64.
    pub max_kind_bytes: usize,
    /// Longest `title`, characters. Default 200.
    pub max_title_chars: usize,
    /// Longest `body`, characters. Default 4000.
    pub max_body_chars: usize,
    /// Largest `data`, bytes of compact JSON. Default 8192.
    pub max_data_bytes: usize,
    /// Ids one `notification_ack` may carry. Default 100.
    pub max_ack_ids: usize,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            inbox_max_count: 100,
            inbox_max_age_secs: 7 * 86_400,
            max_recipients: 100,
            max_user_id_bytes: 256,
            max_kind_bytes: 64,
            max_title_chars: 200,
            max_body_chars: 4000,
            max_data_bytes: 8192,
            max_ack_ids: 100,
        }
    }
}

/// The admin HTTP API under `/api/v1`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve `/api/v1/*`. Default true.
    pub enabled: bool,
    /// Largest request body, bytes; larger ones get 413. Default 65536.
    pub max_body_bytes: u64,
    /// Items per page when a list request gives no `limit`. Default 50.
    pub default_page_size: usize,
    /// Most items per page; a larger `limit` is cut to this. Default 500.
    pub max_page_size: usize,
    /// An API key's last use is written at most this often, seconds. Default 60.
    pub key_last_used_interval_secs: u64,
}

/// The embedded database and background writers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// sled page cache, bytes. Default 64 MiB.
    pub cache_capacity_bytes: u64,
    /// sled background flush period, milliseconds. Default 500.
    pub flush_every_ms: u64,
    /// Period of the expiry sweeper, seconds. Default 60.
    pub sweep_interval_secs: u64,
    /// Security events buffered for the writer; more are dropped and counted. Default 4096.
    pub audit_queue: usize,
    /// History records buffered for the writer; publishers wait when full. Default 4096.
    pub history_queue: usize,
    /// `relaxed`: a message is acknowledged once queued for the history writer; a crash
    /// can lose what sled had not flushed (up to `flush_every_ms` plus the queue).
    /// `strict`: the writer flushes each batch to disk (group commit) and `message_ack`
    /// waits for the flush of the batch holding the message. Default relaxed.
    pub durability: Durability,
}

/// When an acknowledged message is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    Relaxed,
    Strict,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            control_socket: true,
            shutdown_deadline_secs: 10,
            mode: Mode::Development,
            log_format: LogFormat::Text,
            log_refusal_summary_secs: 60,
            test_echo: false,
            auth: AuthConfig::default(),
            accounts: AccountsConfig::default(),
            connection: ConnectionConfig::default(),
            rate_limits: RateLimitConfig::default(),
            rooms: RoomsConfig::default(),
            security: SecurityConfig::default(),
            store: StoreConfig::default(),
            tls: TlsConfig::default(),
            metrics: MetricsConfig::default(),
            notifications: NotificationsConfig::default(),
            api: ApiConfig::default(),
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: None,
            key_file: None,
            reload_check_secs: 10,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            max_body_bytes: 65_536,
            default_page_size: 50,
            max_page_size: 500,
            key_last_used_interval_secs: 60,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_secret: None,
            jwt_secret_file: None,
            ws_secret: None,
            ws_secret_file: None,
            issuer: None,
            audience: None,
            leeway_secs: 30,
            max_token_bytes: 8192,
            default_roles: vec!["user".into()],
            trust_role_claims: false,
            token_expiry_secs: 3600,
            auth_timeout_secs: 30,
            refresh_notice_secs: 60,
            expiry_grace_secs: 0,
            issuers: Vec::new(),
        }
    }
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            heartbeat_interval_secs: 30,
            inactivity_timeout_secs: 60,
            max_frame_bytes: 64 * 1024,
            max_json_depth: 32,
            outbound_queue: 1024,
            max_unauthenticated_per_ip: 64,
            max_connections_per_user: 32,
            max_rooms_per_connection: 100,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            header_read_timeout_secs: 10,
            max_header_bytes: 16_384,
            body_read_timeout_secs: 10,
            body_min_bytes_per_sec: 1024,
            listen_backlog: 1024,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            message: Quota {
                points: 60,
                duration_secs: 60,
            },
            auth: Quota {
                points: 10,
                duration_secs: 60,
            },
            join: Quota {
                points: 20,
                duration_secs: 60,
            },
            max_keys: 100_000,
        }
    }
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            max_participants: 100,
            message_history: 1000,
            room_expiry_secs: 86_400,
            auto_create: true,
            default_type: "chat".into(),
            default_read: vec!["user".into()],
            default_write: vec!["user".into()],
            default_admin: vec!["admin".into()],
            max_room_id_len: 128,
            show_emails: true,
            max_acl_entries: 256,
            history_max_page: 100,
            recovery_buffer: 256,
            max_recovery_messages: 500,
            dedupe_window_secs: 300,
            max_client_msg_id_len: 64,
            dedupe_max_entries: 10_000,
            retention: RetentionConfig::default(),
        }
    }
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            allowed_origins: Vec::new(),
            allow_missing_origin: false,
            require_tls: false,
            trusted_proxies: Vec::new(),
            behind_proxy: false,
            max_message_length: 4000,
            strip_html: true,
            log_retention_days: 30,
            max_security_events: 10_000,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_capacity_bytes: 64 * 1024 * 1024,
            flush_every_ms: 500,
            sweep_interval_secs: 60,
            audit_queue: 4096,
            history_queue: 4096,
            durability: Durability::Relaxed,
        }
    }
}

/// Where a configuration value came from; values nobody set are the built-in defaults
/// and have none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A key of the TOML file, at this line (1-based).
    File { path: PathBuf, line: usize },
    /// An environment variable, by name (its value is never shown: it may be a secret).
    Env(String),
    /// A command-line flag such as `--listen`.
    Flag(&'static str),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::Env(name) => f.write_str(name),
            Source::Flag(flag) => f.write_str(flag),
        }
    }
}

/// One thing wrong with the configuration, shown as `key (source): message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the key it concerns (`rooms.max_participants`), when it concerns one.
    pub key: Option<String>,
    /// The layer that set that key, or the file position of a syntax error.
    pub source: Option<Source>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.key, &self.source) {
            (Some(key), Some(source)) => write!(f, "{key} ({source}): {}", self.message),
            (Some(key), None) => write!(f, "{key}: {}", self.message),
            (None, Some(source)) => write!(f, "{source}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

impl Problem {
    fn new(key: Option<String>, source: Option<Source>, message: impl Into<String>) -> Problem {
        Problem {
            key,
            source,
            message: message.into(),
        }
    }
}

/// Errors loading the configuration: every problem found, not just the first.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", list(.0))]
pub struct ConfigError(pub Vec<Problem>);

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n  - ")
}

/// Values given on the command line; they override every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
}

/// A configuration that loaded, with where its values came from (`roomgate config check`).
#[derive(Debug)]
pub struct Checked {
    pub config: Config,
    /// The TOML file read, if any.
    pub file: Option<PathBuf>,
    /// Environment variables read: those that set a key, in the order they were
    /// applied, then `ROOMGATE_CONFIG` and `ROOMGATE_ADMIN_PASSWORD` when used.
    pub env: Vec<String>,
    /// Flags that set a key.
    pub flags: Vec<&'static str>,
    /// Every key a layer set, by dotted path, with the layer that set it last.
    pub sources: BTreeMap<String, Source>,
}

impl Checked {
    /// One line naming the layers used, for `config check`.
    pub fn summary(&self) -> String {
        let mut layers = vec!["built-in defaults".to_string()];
        if let Some(file) = &self.file {
            layers.push(format!("file {}", file.display()));
        }
        match self.env.len() {
            0 => {}
            1 => layers.push(format!("1 environment variable ({})", self.env[0])),
            n => layers.push(format!(
                "{n} environment variables ({})",
                self.env.join(", ")
            )),
        }
        if !self.flags.is_empty() {
            layers.push(format!("flags {}", self.flags.join(" ")));
        }
        format!("configuration OK: {}", layers.join(", "))
    }
}

/// The fully commented example configuration, every option with its default
/// (`roomgate config defaults`); tests/docs.rs checks it against the code.
pub const DEFAULTS_TOML: &str = include_str!("../scripts/roomgate.toml");

/// Environment variables that start with `ROOMGATE_` but are not config fields.
const NON_CONFIG_ENV: &[&str] = &[
    "ROOMGATE_LOG",
    "ROOMGATE_CONFIG",
    "ROOMGATE_ADMIN_PASSWORD",
    "ROOMGATE_ENV",
    // Where the seed-client tests find the seed document; servers they start inherit it.
    "ROOMGATE_SEED",
];

/// Fields whose values are secrets: a type error on one must not echo the value.
const SECRET_KEYS: &[&str] = &["auth.jwt_secret", "auth.ws_secret", "metrics.token"];

/// Whether a key is a secret or a table holding one (`ROOMGATE_AUTH='{"jwt_secret":1}'`
/// sets the whole `auth` table): a type error there must not quote the value.
fn may_hold_secret(dotted: &str) -> bool {
    dotted.is_empty()
        || SECRET_KEYS
            .iter()
            .any(|k| *k == dotted || k.strip_prefix(dotted).is_some_and(|r| r.starts_with('.')))
}

/// Room types the seed defines.
pub const ROOM_TYPES: &[&str] = &["chat", "document", "collaboration", "notification"];

impl Config {
    /// Loads defaults < file < environment < flags and validates the result.
    pub fn load(
        overrides: &Overrides,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        Config::check(overrides, env).map(|c| c.config)
    }

    /// Loads like `load`, keeping where each value came from. Every problem is reported
    /// at once: a value of the wrong type is reported with its key and source and then
    /// replaced by its default, so that the remaining keys are still checked.
    pub fn check(
        overrides: &Overrides,
        env: &BTreeMap<String, String>,
    ) -> Result<Checked, ConfigError> {
        let defaults = serde_json::to_value(Config::default())
            .map_err(|e| ConfigError(vec![Problem::new(None, None, e.to_string())]))?;
        let mut layers = Layers {
            merged: defaults.clone(),
            defaults,
            set: BTreeMap::new(),
            problems: Vec::new(),
        };

        let file = overrides
            .config_file
            .clone()
            .or_else(|| env.get("ROOMGATE_CONFIG").map(PathBuf::from));
        if let Some(path) = &file {
            match std::fs::read_to_string(path) {
                Ok(text) => layers.apply_file(path, &text),
                Err(e) => layers.problems.push(Problem::new(
                    None,
                    None,
                    format!("config file {}: {e}", path.display()),
                )),
            }
        }
        let mut env_used = layers.apply_env(env);
        if overrides.config_file.is_none() && file.is_some() {
            env_used.push("ROOMGATE_CONFIG".into());
        }
        if env.contains_key("ROOMGATE_ADMIN_PASSWORD") {
            env_used.push("ROOMGATE_ADMIN_PASSWORD".into());
        }
        let mut flags = Vec::new();
        if let Some(listen) = &overrides.listen {
            layers.set(
                &["listen".into()],
                Value::String(listen.clone()),
                Source::Flag("--listen"),
            );
            flags.push("--listen");
        }
        if let Some(dir) = &overrides.data_dir {
            layers.set(
                &["data_dir".into()],
                Value::String(dir.display().to_string()),
                Source::Flag("--data"),
            );
            flags.push("--data");
        }

        let Some(mut config) = layers.deserialise() else {
            return Err(ConfigError(layers.problems));
        };
        if let Some(p) = env.get("ROOMGATE_ADMIN_PASSWORD") {
            config.accounts.admin_password = Some(Secret(p.clone()));
        }
        for message in config.problems() {
            let problem = layers.attribute(message);
            layers.problems.push(problem);
        }
        if !layers.problems.is_empty() {
            return Err(ConfigError(layers.problems));
        }
        Ok(Checked {
            config,
            file,
            env: env_used,
            flags,
            sources: layers
                .set
                .into_iter()
                .map(|(path, source)| (path.join("."), source))
                .collect(),
        })
    }

    /// What production mode requires beyond the usual checks.
    fn production_problems(&self, p: &mut Vec<String>) {
        let sec = &self.security;
        let tls = self.tls.cert_file.is_some() && self.tls.key_file.is_some();
        let proxied = sec.behind_proxy && !sec.trusted_proxies.is_empty();
        if !(tls || proxied) {
            p.push(
                "production mode needs TLS: set tls.cert_file and tls.key_file, or security.behind_proxy = true with security.trusted_proxies naming the proxy".into(),
            );
        }
        if sec.allowed_origins.is_empty() {
            p.push(
                "production mode needs security.allowed_origins (the sites allowed to open /ws)"
                    .into(),
            );
        }
        if self.test_echo {
            p.push(
                "production mode refuses test_echo (an unauthenticated echo WebSocket for conformance tests)"
                    .into(),
            );
        }
        for (name, secret) in [
            ("auth.jwt_secret", &self.auth.jwt_secret),
            ("auth.ws_secret", &self.auth.ws_secret),
        ] {
            if let Some(s) = secret
                && let Some(why) = weak_secret(s.expose().as_bytes())
            {
                p.push(format!("{name}: production mode refuses it: {why}"));
            }
        }
    }

    /// Every semantic problem with this configuration, each starting with the path of
    /// the key it concerns (which `check` uses to name the key's source).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.mode == Mode::Production {
            self.production_problems(&mut p);
        }
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(_), None) => p.push("tls.cert_file is set but tls.key_file is not".into()),
            (None, Some(_)) => p.push("tls.key_file is set but tls.cert_file is not".into()),
            _ => {}
        }
        if self.tls.reload_check_secs > 86_400 {
            p.push("tls.reload_check_secs must be at most 86400".into());
        }
        if self.listen.parse::<SocketAddr>().is_err() {
            p.push(format!(
                "listen: {:?} is not an address like 127.0.0.1:8080",
                self.listen
            ));
        }
        let a = &self.auth;
        for (name, secret, file) in [
            ("jwt_secret", &a.jwt_secret, &a.jwt_secret_file),
            ("ws_secret", &a.ws_secret, &a.ws_secret_file),
        ] {
            if secret.is_some() && file.is_some() {
                p.push(format!(
                    "auth.{name}: auth.{name}_file is set too; give only one"
                ));
            }
            if let Some(s) = secret
                && s.0.is_empty()
            {
                p.push(format!("auth.{name} is empty"));
            }
        }
        if a.max_token_bytes < 64 {
            p.push("auth.max_token_bytes must be at least 64".into());
        }
        if a.token_expiry_secs == 0 {
            p.push("auth.token_expiry_secs must be positive".into());
        }
        if a.auth_timeout_secs == 0 {
            p.push("auth.auth_timeout_secs must be positive".into());
        }
        if a.leeway_secs > 300 {
            p.push("auth.leeway_secs must be at most 300".into());
        }
        for role in &a.default_roles {
            check_name(&mut p, "auth.default_roles", role);
        }
        for (i, iss) in a.issuers.iter().enumerate() {
            let at = format!("auth.issuers[{i}]");
            if iss.issuer.is_empty() {
                p.push(format!("{at}.issuer is empty"));
            }
            if !["RS256", "ES256", "EdDSA"].contains(&iss.algorithm.as_str()) {
                p.push(format!(
                    "{at}.algorithm {:?} is not one of RS256, ES256, EdDSA",
                    iss.algorithm
                ));
            }
            if iss.public_key_file.is_some() == iss.jwks_file.is_some() {
                p.push(format!(
                    "{at}: give exactly one of public_key_file and jwks_file"
                ));
            }
            if a.issuers[..i].iter().any(|o| o.issuer == iss.issuer) {
                p.push(format!("{at}: issuer {:?} is configured twice", iss.issuer));
            }
            if iss.issuer == self.accounts.issuer && self.accounts.enabled {
                p.push(format!(
                    "{at}: issuer {:?} is roomgate's own (accounts.issuer)",
                    iss.issuer
                ));
            }
            // Tokens naming it would go to the provider's keys only, so the shared-secret
            // tokens that `auth.issuer` asks for could never verify.
            if a.issuer.as_deref() == Some(iss.issuer.as_str()) {
                p.push(format!(
                    "{at}: issuer {:?} is also auth.issuer (the shared-secret tokens' issuer)",
                    iss.issuer
                ));
            }
        }
        let ac = &self.accounts;
        for (name, value) in [("issuer", &ac.issuer), ("audience", &ac.audience)] {
            if value.is_empty() {
                p.push(format!("accounts.{name} must not be empty"));
            }
        }
        for (name, value) in [
            ("access_token_secs", ac.access_token_secs),
            ("refresh_token_secs", ac.refresh_token_secs),
            ("argon2_iterations", u64::from(ac.argon2_iterations)),
            ("argon2_parallelism", u64::from(ac.argon2_parallelism)),
        ] {
            if value == 0 {
                p.push(format!("accounts.{name} must be positive"));
            }
        }
        if ac.argon2_memory_kib < 8 * ac.argon2_parallelism.max(1) {
            p.push(
                "accounts.argon2_memory_kib must be at least 8 KiB per lane (argon2_parallelism)"
                    .into(),
            );
        }
        if ac.hash_concurrency == 0 {
            p.push("accounts.hash_concurrency must be positive".into());
        }
        if ac.min_password_chars == 0 {
            p.push("accounts.min_password_chars must be positive".into());
        }
        if ac.max_password_bytes < 64 {
            p.push("accounts.max_password_bytes must be at least 64".into());
        }
        for (name, q) in [("login", ac.login), ("failed_logins", ac.failed_logins)] {
            if q.points == 0 || q.duration_secs == 0 {
                p.push(format!(
                    "accounts.{name}: points and duration_secs must be positive"
                ));
            }
        }
        if let Some(pw) = &ac.admin_password
            && (pw.0.chars().count() < ac.min_password_chars || pw.0.len() > ac.max_password_bytes)
        {
            p.push(format!(
                "ROOMGATE_ADMIN_PASSWORD must be {}-{} long (characters, bytes)",
                ac.min_password_chars, ac.max_password_bytes
            ));
        }
        if ac.max_body_bytes < 256 {
            p.push("accounts.max_body_bytes must be at least 256".into());
        }
        let c = &self.connection;
        if c.heartbeat_interval_secs == 0 {
            p.push("connection.heartbeat_interval_secs must be positive".into());
        }
        if c.inactivity_timeout_secs == 0 {
            p.push("connection.inactivity_timeout_secs must be positive".into());
        }
        if c.max_frame_bytes < 1024 {
            p.push("connection.max_frame_bytes must be at least 1024".into());
        }
        if c.header_read_timeout_secs == 0 || c.header_read_timeout_secs > 300 {
            p.push("connection.header_read_timeout_secs must be between 1 and 300".into());
        }
        if c.body_read_timeout_secs == 0 || c.body_read_timeout_secs > 3600 {
            p.push("connection.body_read_timeout_secs must be between 1 and 3600".into());
        }
        if !(16..=65_535).contains(&c.listen_backlog) {
            p.push("connection.listen_backlog must be between 16 and 65535".into());
        }
        if c.max_header_bytes < 8192 || c.max_header_bytes > 1 << 20 {
            p.push("connection.max_header_bytes must be between 8192 and 1048576".into());
        }
        if c.max_json_depth < 2 {
            p.push("connection.max_json_depth must be at least 2".into());
        }
        for (name, v) in [
            ("outbound_queue", c.outbound_queue),
            ("max_unauthenticated_per_ip", c.max_unauthenticated_per_ip),
            ("max_connections_per_user", c.max_connections_per_user),
            ("max_rooms_per_connection", c.max_rooms_per_connection),
            ("max_connections", c.max_connections),
            ("max_connections_per_ip", c.max_connections_per_ip),
        ] {
            if v == 0 {
                p.push(format!("connection.{name} must be positive"));
            }
        }
        let r = &self.rate_limits;
        for (name, q) in [("message", r.message), ("auth", r.auth), ("join", r.join)] {
            if q.points == 0 || q.duration_secs == 0 {
                p.push(format!(
                    "rate_limits.{name}: points and duration_secs must be positive"
                ));
            }
        }
        if r.max_keys == 0 {
            p.push("rate_limits.max_keys must be positive".into());
        }
        let rooms = &self.rooms;
        if rooms.max_participants == 0 {
            p.push("rooms.max_participants must be positive".into());
        }
        if rooms.message_history == 0 {
            p.push("rooms.message_history must be positive".into());
        }
        for kind in ROOM_TYPES {
            const MAX_AGE: u64 = 36_500 * 86_400;
            if rooms.retention(kind).max_age_secs > MAX_AGE {
                p.push(format!(
                    "rooms.retention.{kind}.max_age_secs must be at most {MAX_AGE}"
                ));
            }
        }
        if rooms.history_max_page == 0 || rooms.history_max_page > 1000 {
            p.push("rooms.history_max_page must be between 1 and 1000".into());
        }
        if rooms.recovery_buffer > 100_000 {
            p.push("rooms.recovery_buffer must be at most 100000".into());
        }
        if rooms.max_client_msg_id_len == 0 || rooms.max_client_msg_id_len > 256 {
            p.push("rooms.max_client_msg_id_len must be between 1 and 256".into());
        }
        if rooms.dedupe_max_entries == 0 {
            p.push("rooms.dedupe_max_entries must be positive".into());
        }
        if !ROOM_TYPES.contains(&rooms.default_type.as_str()) {
            p.push(format!(
                "rooms.default_type: {:?} is not one of {ROOM_TYPES:?}",
                rooms.default_type
            ));
        }
        if rooms.max_acl_entries == 0 || rooms.max_acl_entries > 10_000 {
            p.push("rooms.max_acl_entries must be between 1 and 10000".into());
        }
        if rooms.max_room_id_len == 0 || rooms.max_room_id_len > 1024 {
            p.push("rooms.max_room_id_len must be between 1 and 1024".into());
        }
        for (name, list) in [
            ("default_read", &rooms.default_read),
            ("default_write", &rooms.default_write),
            ("default_admin", &rooms.default_admin),
        ] {
            for role in list {
                check_name(&mut p, &format!("rooms.{name}"), role);
            }
        }
        let s = &self.security;
        for origin in &s.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                p.push(format!(
                    "security.allowed_origins: {origin:?} is not an origin like https://chat.example.com"
                ));
            }
        }
        for proxy in &s.trusted_proxies {
            if Cidr::parse(proxy).is_none() {
                p.push(format!(
                    "security.trusted_proxies: {proxy:?} is not an IP address or CIDR"
                ));
            }
        }
        if s.require_tls && s.trusted_proxies.is_empty() {
            p.push("security.require_tls needs security.trusted_proxies: roomgate has no built-in TLS yet, so TLS must end at a trusted proxy".into());
        }
        if s.max_message_length == 0 {
            p.push("security.max_message_length must be positive".into());
        }
        if s.log_retention_days == 0 {
            p.push("security.log_retention_days must be positive".into());
        }
        if s.max_security_events == 0 {
            p.push("security.max_security_events must be positive".into());
        }
        let api = &self.api;
        if api.max_body_bytes < 1024 || api.max_body_bytes > 64 * 1024 * 1024 {
            p.push("api.max_body_bytes must be between 1024 and 67108864".into());
        }
        if api.max_page_size == 0 || api.max_page_size > 10_000 {
            p.push("api.max_page_size must be between 1 and 10000".into());
        }
        if api.default_page_size == 0 || api.default_page_size > api.max_page_size {
            p.push("api.default_page_size must be between 1 and api.max_page_size".into());
        }
        // Upper bounds keep every duration representable (no overflow in ms or Instant
        // arithmetic) and catch unit mistakes such as milliseconds given as seconds.
        const DAY: u64 = 86_400;
        for (name, value, limit) in [
            ("shutdown_deadline_secs", self.shutdown_deadline_secs, 3_600),
            ("auth.token_expiry_secs", a.token_expiry_secs, 365 * DAY),
            ("auth.auth_timeout_secs", a.auth_timeout_secs, DAY),
            ("auth.refresh_notice_secs", a.refresh_notice_secs, DAY),
            ("auth.expiry_grace_secs", a.expiry_grace_secs, DAY),
            (
                "accounts.access_token_secs",
                ac.access_token_secs,
                365 * DAY,
            ),
            ("accounts.refusal_delay_ms", ac.refusal_delay_ms, 60_000),
            (
                "api.key_last_used_interval_secs",
                api.key_last_used_interval_secs,
                DAY,
            ),
            (
                "accounts.refresh_token_secs",
                ac.refresh_token_secs,
                3_650 * DAY,
            ),
            (
                "accounts.login.duration_secs",
                ac.login.duration_secs,
                365 * DAY,
            ),
            (
                "accounts.failed_logins.duration_secs",
                ac.failed_logins.duration_secs,
                365 * DAY,
            ),
            (
                "connection.heartbeat_interval_secs",
                c.heartbeat_interval_secs,
                DAY,
            ),
            (
                "connection.inactivity_timeout_secs",
                c.inactivity_timeout_secs,
                365 * DAY,
            ),
            (
                "rate_limits.message.duration_secs",
                r.message.duration_secs,
                365 * DAY,
            ),
            (
                "rate_limits.auth.duration_secs",
                r.auth.duration_secs,
                365 * DAY,
            ),
            (
                "rate_limits.join.duration_secs",
                r.join.duration_secs,
                365 * DAY,
            ),
            (
                "rooms.room_expiry_secs",
                rooms.room_expiry_secs,
                3_650 * DAY,
            ),
            (
                "rooms.dedupe_window_secs",
                rooms.dedupe_window_secs,
                7 * DAY,
            ),
            ("security.log_retention_days", s.log_retention_days, 36_500),
            ("store.flush_every_ms", self.store.flush_every_ms, 60_000),
            (
                "store.sweep_interval_secs",
                self.store.sweep_interval_secs,
                DAY,
            ),
        ] {
            if value > limit {
                p.push(format!("{name} must be at most {limit}"));
            }
        }
        if self.log_refusal_summary_secs == 0 || self.log_refusal_summary_secs > DAY {
            p.push("log_refusal_summary_secs must be between 1 and 86400".into());
        }
        let st = &self.store;
        if st.cache_capacity_bytes < 1024 * 1024 {
            p.push("store.cache_capacity_bytes must be at least 1 MiB".into());
        }
        for (name, value) in [
            ("flush_every_ms", st.flush_every_ms),
            ("sweep_interval_secs", st.sweep_interval_secs),
            ("audit_queue", st.audit_queue as u64),
            ("history_queue", st.history_queue as u64),
        ] {
            if value == 0 {
                p.push(format!("store.{name} must be positive"));
            }
        }
        let n = &self.notifications;
        for (name, v) in [
            ("inbox_max_count", n.inbox_max_count),
            ("max_recipients", n.max_recipients),
            ("max_user_id_bytes", n.max_user_id_bytes),
            ("max_kind_bytes", n.max_kind_bytes),
            ("max_title_chars", n.max_title_chars),
            ("max_body_chars", n.max_body_chars),
            ("max_data_bytes", n.max_data_bytes),
            ("max_ack_ids", n.max_ack_ids),
        ] {
            if v == 0 {
                p.push(format!("notifications.{name} must be positive"));
            }
        }
        if n.inbox_max_age_secs == 0 || n.inbox_max_age_secs > 3_650 * DAY {
            p.push(format!(
                "notifications.inbox_max_age_secs must be between 1 and {}",
                3_650 * DAY
            ));
        }
        p
    }

    /// The listen address; valid after `load`.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    /// Parsed trusted proxies.
    pub fn trusted_proxies(&self) -> Vec<Cidr> {
        self.security
            .trusted_proxies
            .iter()
            .filter_map(|s| Cidr::parse(s))
            .collect()
    }

    /// The effective configuration as JSON with every secret replaced by "set"/"unset".
    pub fn redacted(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        // Every `Secret` field: shown as set or unset, never its value.
        for (section, key) in [
            ("auth", "jwt_secret"),
            ("auth", "ws_secret"),
            ("metrics", "token"),
        ] {
            let state = if v[section][key].is_null() {
                "unset"
            } else {
                "set"
            };
            v[section][key] = Value::String(state.into());
        }
        v
    }

    /// Path of the control socket in the data root.
    pub fn control_socket_path(&self) -> PathBuf {
        control_socket_path(&self.data_dir)
    }
}

/// Path of the control socket for a data root.
pub fn control_socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("roomgate.sock")
}

fn check_name(problems: &mut Vec<String>, field: &str, name: &str) {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
    {
        problems.push(format!(
            "{field}: {name:?} is not a role name (1-64 of A-Z a-z 0-9 _ - . :)"
        ));
    }
}

/// The layers being merged: defaults, then each layer's keys written over them, with
/// the source of every key a layer set.
struct Layers {
    defaults: Value,
    merged: Value,
    /// Key path (segments) to the layer that set it last.
    set: BTreeMap<Vec<String>, Source>,
    problems: Vec<Problem>,
}

impl Layers {
    /// Writes one key; a later layer replaces the value and the source of the key and of
    /// everything under it.
    fn set(&mut self, path: &[String], value: Value, source: Source) {
        if let Some(slot) = at_mut(&mut self.merged, path) {
            *slot = value;
            self.set.retain(|p, _| !p.starts_with(path));
            self.set.insert(path.to_vec(), source);
        }
    }

    /// The TOML file. Values come from `toml::Value` (one conversion for every TOML
    /// type); the line of each key comes from a second, spanned parse.
    fn apply_file(&mut self, path: &Path, text: &str) {
        let file_source = |offset: usize| Source::File {
            path: path.to_path_buf(),
            line: line_of(text, offset),
        };
        let spanned = match toml::de::DeTable::parse(text) {
            Ok(t) => t,
            Err(e) => {
                let source = e
                    .span()
                    .map(|s| file_source(s.start))
                    .unwrap_or(Source::File {
                        path: path.to_path_buf(),
                        line: 1,
                    });
                self.problems
                    .push(Problem::new(None, Some(source), e.message().trim_end()));
                return;
            }
        };
        let mut lines = BTreeMap::new();
        key_lines(spanned.get_ref(), &mut Vec::new(), text, &mut lines);
        let parsed = toml::from_str::<toml::Value>(text).map(|mut v| {
            datetimes_as_text(&mut v);
            serde_json::to_value(v)
        });
        let json = match parsed {
            Ok(Ok(json)) => json,
            Ok(Err(e)) => {
                self.problems
                    .push(Problem::new(None, Some(file_source(0)), e.to_string()));
                return;
            }
            Err(e) => {
                self.problems.push(Problem::new(
                    None,
                    Some(file_source(e.span().map_or(0, |s| s.start))),
                    e.message().trim_end(),
                ));
                return;
            }
        };
        let mut leaves = Vec::new();
        file_leaves(&self.defaults, json, &mut Vec::new(), &mut leaves);
        for (key, value) in leaves {
            let line = lines.get(&key).copied().unwrap_or(1);
            let source = Source::File {
                path: path.to_path_buf(),
                line,
            };
            match value {
                Some(value) => self.set(&key, value, source),
                None => {
                    let message = if key == ["accounts", "admin_password"] {
                        "unknown key (the first admin's password is read from ROOMGATE_ADMIN_PASSWORD only)"
                    } else {
                        "unknown key"
                    };
                    self.problems
                        .push(Problem::new(Some(key.join(".")), Some(source), message));
                }
            }
        }
    }

    /// `ROOMGATE_SECTION__FIELD=value` sets `section.field`; a value is read as JSON when
    /// it parses as JSON of the field's type, as a comma-separated list for list fields,
    /// and as a string otherwise. Unknown `ROOMGATE_*` names are problems, so typos do not
    /// pass silently. Returns the names of the variables that set a key.
    fn apply_env(&mut self, env: &BTreeMap<String, String>) -> Vec<String> {
        let seed = [
            ("JWT_SECRET", "auth__jwt_secret"),
            ("WS_SECRET", "auth__ws_secret"),
            ("ALLOWED_ORIGINS", "security__allowed_origins"),
            // The conventional name; `ROOMGATE_MODE` is the field's own and wins.
            ("ROOMGATE_ENV", "mode"),
        ];
        let mut settings: Vec<(String, String, String)> = Vec::new();
        for (name, path) in seed {
            if let Some(v) = env.get(name) {
                settings.push((name.to_string(), path.to_string(), v.clone()));
            }
        }
        for (name, v) in env {
            if let Some(rest) = name.strip_prefix("ROOMGATE_") {
                if NON_CONFIG_ENV.contains(&name.as_str()) {
                    continue;
                }
                settings.push((name.clone(), rest.to_ascii_lowercase(), v.clone()));
            }
        }
        let mut used = Vec::new();
        // Seed names first, so ROOMGATE_* wins where both are given.
        for (name, path, raw) in settings {
            let key: Vec<String> = path.split("__").map(str::to_string).collect();
            // The field's own type decides how the text is read, not whatever a lower
            // layer put there.
            let Some(current) = at(&self.defaults, &key).or_else(|| at(&self.merged, &key)) else {
                self.problems.push(Problem::new(
                    Some(key.join(".")),
                    Some(Source::Env(name)),
                    "unknown key: no such configuration field",
                ));
                continue;
            };
            let value = env_value(current, &raw);
            self.set(&key, value, Source::Env(name.clone()));
            used.push(name);
        }
        used
    }

    /// Deserialises the merged layers. Each key a layer set is first tried alone on the
    /// defaults, so a type error is reported with its key and source; the key then falls
    /// back to its default so that the semantic checks still run on the rest.
    fn deserialise(&mut self) -> Option<Config> {
        let set: Vec<(Vec<String>, Source)> = self
            .set
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        for (key, source) in set {
            let (Some(value), Some(default)) = (at(&self.merged, &key), at(&self.defaults, &key))
            else {
                // Inside an array a file supplied: checked with the whole below.
                continue;
            };
            let (value, default) = (value.clone(), default.clone());
            let mut probe = self.defaults.clone();
            if let Some(slot) = at_mut(&mut probe, &key) {
                *slot = value;
            }
            if let Err(e) = serde_json::from_value::<Config>(probe) {
                let dotted = key.join(".");
                let message = if SECRET_KEYS.contains(&dotted.as_str()) {
                    "invalid type: expected a string".to_string()
                } else if may_hold_secret(&dotted) {
                    "invalid value (not shown: this table holds a secret)".to_string()
                } else {
                    e.to_string()
                };
                self.problems
                    .push(Problem::new(Some(dotted), Some(source), message));
                if let Some(slot) = at_mut(&mut self.merged, &key) {
                    *slot = default;
                }
                self.set.remove(&key);
            }
        }
        match serde_json::from_value::<Config>(self.merged.clone()) {
            Ok(c) => Some(c),
            // Only reached when a key's own check passed; its text may quote any value.
            Err(_) => {
                self.problems.push(Problem::new(
                    None,
                    None,
                    "the configuration does not fit its types (the value is not shown)".to_string(),
                ));
                None
            }
        }
    }

    /// Turns a semantic problem, which starts with the path of its key
    /// ("rooms.max_participants must be positive"), into a `Problem` carrying that key and
    /// the source of the key, of the nearest set key under it, or of the nearest above it.
    fn attribute(&self, message: String) -> Problem {
        // Production mode's demands are there because of the mode.
        if message.starts_with("production mode") {
            let key = vec!["mode".to_string()];
            return Problem::new(Some("mode".into()), self.source_of(&key), message);
        }
        let token_len = message
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "_.[]".contains(c)))
            .unwrap_or(message.len());
        let token = &message[..token_len];
        // `auth.issuers[1].algorithm` is looked up as `auth.issuers.algorithm`.
        let path: Vec<String> = token
            .split('.')
            .map(|s| s.split('[').next().unwrap_or(s).to_string())
            .collect();
        if token.is_empty() || !known(&self.defaults, &path) {
            return Problem::new(None, None, message);
        }
        let rest = message[token_len..].trim_start_matches(':').trim_start();
        Problem::new(Some(token.to_string()), self.source_of(&path), rest)
    }

    fn source_of(&self, path: &[String]) -> Option<Source> {
        if let Some(s) = self.set.get(path) {
            return Some(s.clone());
        }
        let below = self
            .set
            .range(path.to_vec()..)
            .take_while(|(k, _)| k.starts_with(path))
            .map(|(_, s)| s)
            .next();
        if let Some(s) = below {
            return Some(s.clone());
        }
        (1..path.len())
            .rev()
            .find_map(|n| self.set.get(&path[..n]))
            .cloned()
    }
}

/// Line (1-based) of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The line of every key in a parsed file, tables included; the keys inside an array of
/// tables are not listed (they are attributed to the array's key).
fn key_lines(
    table: &toml::de::DeTable<'_>,
    prefix: &mut Vec<String>,
    text: &str,
    out: &mut BTreeMap<Vec<String>, usize>,
) {
    for (key, value) in table.iter() {
        prefix.push(key.get_ref().to_string());
        out.entry(prefix.clone())
            .or_insert_with(|| line_of(text, key.span().start));
        if let toml::de::DeValue::Table(inner) = value.get_ref() {
            key_lines(inner, prefix, text, out);
        }
        prefix.pop();
    }
}

/// The keys a file sets, walked beside the defaults: a table where the defaults have a
/// table is descended into; a key the defaults lack is unknown (`None`), and nothing
/// under it is listed; anything else is one value to set.
fn file_leaves(
    defaults: &Value,
    value: Value,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, Option<Value>)>,
) {
    let Value::Object(map) = value else {
        return;
    };
    for (key, v) in map {
        prefix.push(key.clone());
        match defaults.get(&key) {
            None => out.push((prefix.clone(), None)),
            Some(d @ Value::Object(_)) if v.is_object() => file_leaves(d, v, prefix, out),
            Some(_) => out.push((prefix.clone(), Some(v))),
        }
        prefix.pop();
    }
}

/// No field is a date: a TOML datetime is read as the text written, so that it meets the
/// field's own check instead of serde's private datetime wrapper.
fn datetimes_as_text(v: &mut toml::Value) {
    match v {
        toml::Value::Datetime(d) => *v = toml::Value::String(d.to_string()),
        toml::Value::Array(a) => a.iter_mut().for_each(datetimes_as_text),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| datetimes_as_text(v)),
        _ => {}
    }
}

/// Whether a key path names a field (or something inside a list field).
fn known(defaults: &Value, path: &[String]) -> bool {
    let mut v = defaults;
    for seg in path {
        match v {
            Value::Object(m) => match m.get(seg) {
                Some(next) => v = next,
                None => return false,
            },
            Value::Array(_) => return true,
            _ => return false,
        }
    }
    true
}

fn at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn at_mut<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, seg| match v {
        Value::Object(m) => m.get_mut(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    })
}

fn env_value(current: &Value, raw: &str) -> Value {
    match current {
        Value::Array(_) => match serde_json::from_str::<Value>(raw) {
            Ok(v @ Value::Array(_)) => v,
            _ => Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_string()))
                    .collect(),
            ),
        },
        // Every optional field (secrets, paths, issuer, audience) is a string.
        Value::String(_) | Value::Null => Value::String(raw.to_string()),
        _ => match serde_json::from_str::<Value>(raw) {
            Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Object(_))) => v,
            _ => Value::String(raw.to_string()),
        },
    }
}

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `::1` or `192.168.1.5`.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr: ip, prefix })
    }

    /// Whether `ip` lies inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Maps IPv4-mapped IPv6 addresses to IPv4 so one client has one key.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Why an HMAC key is too weak for production, if it is.
pub fn weak_secret(key: &[u8]) -> Option<String> {
    // The seed's sample values and the usual stand-ins, however they are padded.
    const PLACEHOLDERS: [&str; 5] = [
        "your-secret-key",
        "your-ws-secret-key",
        "changeme",
        "change-me",
        "replace-me",
    ];
    let text = String::from_utf8_lossy(key).to_ascii_lowercase();
    if PLACEHOLDERS.iter().any(|p| text.contains(p)) || text == "secret" {
        return Some("it is a well-known placeholder".into());
    }
    if key.len() < MIN_PRODUCTION_SECRET_BYTES {
        return Some(format!(
            "it is {} bytes; at least {MIN_PRODUCTION_SECRET_BYTES} are needed",
            key.len()
        ));
    }
    if key.iter().all(|b| *b == key[0]) {
        return Some("it repeats one character".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(&Overrides::default(), &env(pairs))
    }

    #[test]
    fn production_mode_refuses_what_development_allows() {
        // Development starts with nothing set.
        assert!(load_env(&[]).is_ok());
        // Production lists every missing piece at once.
        let err = load_env(&[("ROOMGATE_ENV", "production"), ("JWT_SECRET", "short")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs TLS"), "{err}");
        assert!(err.contains("allowed_origins"), "{err}");
        assert!(
            err.contains("auth.jwt_secret (JWT_SECRET): production mode refuses it: it is 5 bytes"),
            "{err}"
        );
        assert!(
            err.contains("mode (ROOMGATE_ENV): production mode needs TLS"),
            "{err}"
        );
        // The seed's placeholder and one repeated character are refused at any length.
        for weak in [
            "your-secret-key-but-made-very-long-0123456789",
            &"a".repeat(40),
        ] {
            let err = load_env(&[
                ("ROOMGATE_MODE", "production"),
                ("ROOMGATE_SECURITY__BEHIND_PROXY", "true"),
                ("ROOMGATE_SECURITY__TRUSTED_PROXIES", "127.0.0.1"),
                ("ROOMGATE_SECURITY__ALLOWED_ORIGINS", "https://chat.example"),
                ("ROOMGATE_AUTH__WS_SECRET", weak),
            ])
            .unwrap_err()
            .to_string();
            assert!(err.contains("auth.ws_secret"), "{err}");
        }
        // Behind a trusted proxy with origins and strong (or generated) secrets: fine.
        let ok = load_env(&[
            ("ROOMGATE_ENV", "production"),
            ("ROOMGATE_SECURITY__BEHIND_PROXY", "true"),
            ("ROOMGATE_SECURITY__TRUSTED_PROXIES", "127.0.0.1"),
            ("ROOMGATE_SECURITY__ALLOWED_ORIGINS", "https://chat.example"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
        .unwrap();
        assert_eq!(ok.mode, Mode::Production);
        // behind_proxy without naming the proxy is not enough; TLS files are.
        let err = load_env(&[
            ("ROOMGATE_ENV", "production"),
            ("ROOMGATE_SECURITY__BEHIND_PROXY", "true"),
            ("ROOMGATE_SECURITY__ALLOWED_ORIGINS", "https://chat.example"),
        ])
        .unwrap_err();
        assert!(err.0.iter().any(|p| p.message.contains("needs TLS")));
        assert!(
            load_env(&[
                ("ROOMGATE_ENV", "production"),
                ("ROOMGATE_TLS__CERT_FILE", "/etc/c.pem"),
                ("ROOMGATE_TLS__KEY_FILE", "/etc/k.pem"),
                ("ROOMGATE_SECURITY__ALLOWED_ORIGINS", "https://chat.example"),
            ])
            .is_ok()
        );
        // An unknown mode is a problem, not a silent default.
        assert!(load_env(&[("ROOMGATE_ENV", "prod")]).is_err());
        // Exactly at the edge: 31 bytes refused, 32 accepted.
        assert!(weak_secret(&[b'x', b'y'].repeat(16)[..31]).is_some());
        assert!(weak_secret(&[b'x', b'y'].repeat(16)).is_none());
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = std::env::temp_dir().join(format!("rg-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\n[rooms]\nmax_participants = 5\nmessage_history = 7\n",
        )
        .unwrap();
        let cfg = Config::load(
            &Overrides {
                config_file: Some(file),
                listen: Some("127.0.0.1:9100".into()),
                data_dir: None,
            },
            &env(&[
                ("ROOMGATE_ROOMS__MAX_PARTICIPANTS", "9"),
                ("ROOMGATE_LISTEN", "127.0.0.1:9050"),
                ("ALLOWED_ORIGINS", "https://a.example,https://b.example"),
                ("JWT_SECRET", "seed-secret"),
                ("ROOMGATE_AUTH__JWT_SECRET", "roomgate-secret"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:9100");
        assert_eq!(cfg.rooms.max_participants, 9);
        assert_eq!(cfg.rooms.message_history, 7);
        assert_eq!(cfg.security.allowed_origins.len(), 2);
        assert_eq!(cfg.auth.jwt_secret.unwrap().0, "roomgate-secret");
    }

    /// Writes `text` to a temporary `roomgate.toml`; the directory lives as long as the guard.
    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roomgate.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn with_file(path: &Path) -> Overrides {
        Overrides {
            config_file: Some(path.to_path_buf()),
            ..Overrides::default()
        }
    }

    fn lines(err: &ConfigError) -> Vec<String> {
        err.0.iter().map(Problem::to_string).collect()
    }

    #[test]
    fn provenance_names_file_lines_environment_variables_and_flags() {
        let (_dir, path) = file(
            "# comment\n\
             listen = \"127.0.0.1:9000\"\n\
             \n\
             [rooms]\n\
             max_participants = 5\n\
             message_history = 7\n\
             \n\
             [rooms.retention.chat]\n\
             max_messages = 3\n\
             \n\
             [accounts]\n\
             login = { points = 3, duration_secs = 9 }\n\
             \n\
             [[auth.issuers]]\n\
             issuer = \"https://idp.example\"\n\
             algorithm = \"RS256\"\n\
             public_key_file = \"k.pem\"\n",
        );
        let checked = Config::check(
            &Overrides {
                config_file: Some(path.clone()),
                listen: Some("127.0.0.1:9100".into()),
                data_dir: Some("/tmp/somewhere".into()),
            },
            &env(&[
                ("ROOMGATE_ROOMS__MAX_PARTICIPANTS", "9"),
                ("JWT_SECRET", "seed-secret"),
                ("ROOMGATE_LOG", "debug"),
            ]),
        )
        .unwrap();
        let at = |line| Source::File {
            path: path.clone(),
            line,
        };
        let expected = [
            // An inline table is a table: each of its keys is set.
            ("accounts.login.duration_secs", at(12)),
            ("accounts.login.points", at(12)),
            ("auth.issuers", at(14)),
            ("auth.jwt_secret", Source::Env("JWT_SECRET".into())),
            ("data_dir", Source::Flag("--data")),
            ("listen", Source::Flag("--listen")),
            (
                "rooms.max_participants",
                Source::Env("ROOMGATE_ROOMS__MAX_PARTICIPANTS".into()),
            ),
            ("rooms.message_history", at(6)),
            ("rooms.retention.chat.max_messages", at(9)),
        ];
        let expected: BTreeMap<String, Source> = expected
            .into_iter()
            .map(|(k, s)| (k.to_string(), s))
            .collect();
        // Only what a layer set has a source; defaults have none.
        assert_eq!(checked.sources, expected);
        assert_eq!(checked.config.rooms.max_participants, 9);
        assert_eq!(checked.config.accounts.login.points, 3);
        assert_eq!(checked.config.auth.issuers.len(), 1);
        let summary = checked.summary();
        assert!(summary.starts_with("configuration OK"), "{summary}");
        assert!(summary.contains(&path.display().to_string()), "{summary}");
        assert!(
            summary
                .contains("2 environment variables (JWT_SECRET, ROOMGATE_ROOMS__MAX_PARTICIPANTS)"),
            "{summary}"
        );
        assert!(summary.contains("--listen --data"), "{summary}");
        // The file named by ROOMGATE_CONFIG is attributed the same way.
        let by_env = Config::check(
            &Overrides::default(),
            &env(&[("ROOMGATE_CONFIG", &path.display().to_string())]),
        )
        .unwrap();
        assert_eq!(by_env.file.as_ref(), Some(&path));
        assert_eq!(by_env.env, ["ROOMGATE_CONFIG"]);
        assert_eq!(by_env.sources["rooms.message_history"], at(6));
    }

    #[test]
    fn type_unknown_and_semantic_problems_are_listed_together_with_their_sources() {
        let (_dir, path) = file(
            "[rooms]\n\
             max_participants = \"x\"\n\
             message_history = 0\n\
             max_participant = 4\n\
             [roomz]\n\
             a = 1\n",
        );
        let err = Config::load(
            &with_file(&path),
            &env(&[
                ("ROOMGATE_CONNECTION__MAX_FRAME_BYTES", "big"),
                ("ROOMGATE_NO_SUCH", "1"),
                ("ROOMGATE_RATE_LIMITS__AUTH__POINTS", "0"),
            ]),
        )
        .unwrap_err();
        let p = path.display();
        let mut got = lines(&err);
        got.sort();
        let mut want = vec![
            format!("rooms.max_participant ({p}:4): unknown key"),
            format!("roomz ({p}:5): unknown key"),
            format!("rooms.max_participants ({p}:2): invalid type: string \"x\", expected u32"),
            format!("rooms.message_history ({p}:3): must be positive"),
            "connection.max_frame_bytes (ROOMGATE_CONNECTION__MAX_FRAME_BYTES): invalid type: string \"big\", expected usize".to_string(),
            "no_such (ROOMGATE_NO_SUCH): unknown key: no such configuration field".to_string(),
            "rate_limits.auth (ROOMGATE_RATE_LIMITS__AUTH__POINTS): points and duration_secs must be positive".to_string(),
        ];
        want.sort();
        // The mistyped keys fell back to their defaults, so they add no semantic problem.
        assert_eq!(got, want);
        // The error's own text lists them all too (serve prints it).
        let text = err.to_string();
        assert!(text.starts_with("invalid configuration:\n  - "), "{text}");
        assert_eq!(text.matches("\n  - ").count(), 7, "{text}");
    }

    #[test]
    fn semantic_problems_take_the_source_of_the_key_below_or_above() {
        let (_dir, path) = file(
            "[accounts.login]\n\
             duration_secs = 60\n\
             points = 0\n\
             \n\
             [[auth.issuers]]\n\
             issuer = \"https://idp.example\"\n\
             algorithm = \"HS256\"\n\
             public_key_file = \"k.pem\"\n",
        );
        let err =
            Config::load(&with_file(&path), &env(&[("ROOMGATE_ENV", "production")])).unwrap_err();
        let p = path.display();
        let got = lines(&err);
        for want in [
            // The section's nearest set key below it.
            format!("accounts.login ({p}:2): points and duration_secs must be positive"),
            // Inside an array of tables: the array's key.
            format!(
                "auth.issuers[0].algorithm ({p}:5): \"HS256\" is not one of RS256, ES256, EdDSA"
            ),
            // Production's demands are the mode's.
            "mode (ROOMGATE_ENV): production mode needs security.allowed_origins (the sites allowed to open /ws)".to_string(),
        ] {
            assert!(got.contains(&want), "{want:?} not in {got:#?}");
        }
        // An unset key's problem has no source.
        let mut c = Config::default();
        c.rooms.max_participants = 0;
        assert_eq!(c.problems(), ["rooms.max_participants must be positive"]);
    }

    #[test]
    fn syntax_errors_and_bad_tables_are_placed_in_the_file() {
        let (_dir, path) = file("[rooms]\nmax_participants = 1\n[rooms\n");
        let err = Config::load(&with_file(&path), &env(&[])).unwrap_err();
        assert_eq!(err.0.len(), 1, "{:?}", err.0);
        assert_eq!(
            err.0[0].source,
            Some(Source::File {
                path: path.clone(),
                line: 3
            })
        );
        assert_eq!(err.0[0].key, None);
        // A table's type error names the table; an entry of an array of tables missing a
        // field names the array.
        let (_dir2, path) = file("rooms = 5\n\n[[auth.issuers]]\nissuer = \"x\"\n");
        let got = lines(&Config::load(&with_file(&path), &env(&[])).unwrap_err());
        let p = path.display();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].starts_with(&format!("auth.issuers ({p}:3): missing field `algorithm`")),
            "{got:?}"
        );
        assert!(
            got[1].starts_with(&format!("rooms ({p}:1): invalid type: integer `5`")),
            "{got:?}"
        );
        // A datetime where a table belongs is a type error, not a table of unknown keys.
        let (_dir3, path) = file("[rooms]\nretention = 1979-05-27\n");
        let got = lines(&Config::load(&with_file(&path), &env(&[])).unwrap_err());
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with(&format!(
                "rooms.retention ({}:2): invalid type: string \"1979-05-27\"",
                path.display()
            )),
            "{got:?}"
        );
        // A missing file is named.
        let missing = path.with_file_name("missing.toml");
        let got = lines(&Config::load(&with_file(&missing), &env(&[])).unwrap_err());
        assert!(got[0].contains("missing.toml"), "{got:?}");
    }

    #[test]
    fn a_mistyped_secret_is_not_echoed() {
        let (_dir, path) = file("[auth]\nws_secret = 918273645546372819\n");
        let got = lines(&Config::load(&with_file(&path), &env(&[])).unwrap_err());
        assert_eq!(
            got,
            [format!(
                "auth.ws_secret ({}:2): invalid type: expected a string",
                path.display()
            )]
        );
        // A whole table set at once is judged as one value, and it holds a secret.
        for (name, value) in [
            ("ROOMGATE_AUTH", r#"{"jwt_secret":918273645546372819}"#),
            ("ROOMGATE_METRICS", r#"{"token":918273645546372819}"#),
        ] {
            let got =
                lines(&Config::load(&Overrides::default(), &env(&[(name, value)])).unwrap_err());
            assert!(
                got.iter().all(|l| !l.contains("918273645546372819")),
                "{got:?}"
            );
            assert!(got.iter().any(|l| l.contains(name)), "{got:?}");
        }
    }

    #[test]
    fn durations_have_upper_bounds() {
        let mut c = Config::default();
        c.auth.token_expiry_secs = u64::MAX;
        c.connection.inactivity_timeout_secs = u64::MAX;
        c.rooms.room_expiry_secs = u64::MAX;
        let p = c.problems();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("auth.token_expiry_secs must be at most"));
    }

    #[test]
    fn an_external_issuer_must_not_be_one_of_roomgates_own() {
        let entry = |issuer: &str| IssuerConfig {
            issuer: issuer.into(),
            audience: None,
            algorithm: "RS256".into(),
            public_key_file: Some("k.pem".into()),
            jwks_file: None,
        };
        let mut c = Config::default();
        c.auth.issuer = Some("https://backend.example".into());
        c.auth.issuers = vec![entry("https://idp.example")];
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        c.auth.issuers = vec![entry("https://backend.example"), entry("roomgate")];
        let p = c.problems();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("auth.issuers[0]") && p[0].contains("auth.issuer"));
        assert!(p[1].contains("auth.issuers[1]") && p[1].contains("accounts.issuer"));
    }

    #[test]
    fn notification_limits_must_be_positive() {
        let mut c = Config::default();
        c.notifications.inbox_max_age_secs = 0;
        c.notifications.max_ack_ids = 0;
        assert_eq!(c.problems().len(), 2, "{:?}", c.problems());
        c.notifications.inbox_max_age_secs = 3_650 * 86_400;
        c.notifications.max_ack_ids = 1;
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        c.notifications.inbox_max_age_secs += 1;
        assert_eq!(c.problems().len(), 1, "{:?}", c.problems());
    }

    #[test]
    fn history_limits_are_checked_at_their_edges() {
        let mut c = Config::default();
        c.rooms.history_max_page = 1000;
        c.rooms.max_client_msg_id_len = 256;
        c.rooms.dedupe_window_secs = 7 * 86_400;
        c.rooms.retention.notification.max_messages = 1;
        c.rooms.retention.chat.max_age_secs = 36_500 * 86_400;
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        c.rooms.history_max_page = 1001;
        c.rooms.max_client_msg_id_len = 257;
        c.rooms.dedupe_window_secs = 7 * 86_400 + 1;
        c.rooms.retention.chat.max_age_secs = 36_500 * 86_400 + 1;
        c.rooms.dedupe_max_entries = 0;
        let p = c.problems();
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(
            p.iter()
                .any(|m| m.contains("rooms.retention.chat.max_age_secs"))
        );
        // Per-type counts fall back to rooms.message_history; the replay cap follows
        // the joiner's queue.
        let mut c = Config::default();
        c.rooms.message_history = 9;
        c.rooms.retention.document.max_messages = 3;
        assert_eq!((c.rooms.keep("chat"), c.rooms.keep("document")), (9, 3));
        assert_eq!(c.rooms.max_age_ms("chat"), None);
        c.connection.outbound_queue = 100;
        assert_eq!(c.max_replay(), 50);
        // Nested per-type fields can be set from the environment.
        let c = Config::load(
            &Overrides::default(),
            &env(&[
                ("ROOMGATE_ROOMS__RETENTION__CHAT__MAX_MESSAGES", "5"),
                ("ROOMGATE_ROOMS__RETENTION__DOCUMENT__MAX_AGE_SECS", "60"),
            ]),
        )
        .unwrap();
        assert_eq!(c.rooms.keep("chat"), 5);
        assert_eq!(c.rooms.max_age_ms("document"), Some(60_000));
    }

    #[test]
    fn api_limits_are_checked_at_their_edges() {
        let mut c = Config::default();
        c.api.max_body_bytes = 1024;
        c.api.max_page_size = 10_000;
        c.api.default_page_size = 10_000;
        c.api.key_last_used_interval_secs = 86_400;
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        c.api.max_body_bytes = 1023;
        c.api.max_page_size = 10_001;
        c.api.key_last_used_interval_secs = 86_401;
        let p = c.problems();
        assert_eq!(p.len(), 3, "{p:?}");
        let mut c = Config::default();
        c.api.default_page_size = c.api.max_page_size + 1;
        assert!(c.problems()[0].contains("api.default_page_size"));
        c.api.default_page_size = 0;
        assert_eq!(c.problems().len(), 1);
    }

    #[test]
    fn listen_backlog_is_checked_at_its_edges() {
        let mut c = Config::default();
        for ok in [16, 65_535] {
            c.connection.listen_backlog = ok;
            assert!(c.problems().is_empty(), "{ok}: {:?}", c.problems());
        }
        for bad in [15, 65_536] {
            c.connection.listen_backlog = bad;
            let p = c.problems();
            assert!(
                p.len() == 1 && p[0].contains("connection.listen_backlog"),
                "{bad}: {p:?}"
            );
        }
    }

    #[test]
    fn redacted_hides_secrets() {
        let mut c = Config::default();
        c.auth.jwt_secret = Some(Secret("hunter2-hunter2".into()));
        c.metrics.token = Some(Secret("scrape-hunter3".into()));
        let text = c.redacted().to_string();
        assert!(!text.contains("hunter2") && !text.contains("hunter3"));
        assert_eq!(c.redacted()["metrics"]["token"], "set");
        assert_eq!(c.redacted()["auth"]["jwt_secret"], "set");
        assert_eq!(c.redacted()["auth"]["ws_secret"], "unset");
    }

    #[test]
    fn cidr_matching() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("1.2.3.4/33").is_none());
    }
}
