//! The command line: `roomgate [serve]` and the operator commands. Parsing only; `main`
//! decides where each command runs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Self-hosted real-time WebSocket gateway.
#[derive(Debug, Parser)]
#[command(name = "roomgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub global: Global,
}

/// Options every command takes.
#[derive(Debug, Args, Clone, Default)]
pub struct Global {
    /// TOML configuration file.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data root (database, generated secrets, control socket).
    #[arg(long, global = true, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default command).
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Manage built-in accounts (username and password logins) and any user's stored roles.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Create, list, show and delete rooms.
    Room {
        #[command(subcommand)]
        cmd: RoomCmd,
    },
    /// List the stored roles and their permissions.
    Roles {
        #[command(subcommand)]
        cmd: RolesCmd,
    },
    /// List a user's stored WebSocket sessions.
    Sessions {
        #[command(subcommand)]
        cmd: SessionsCmd,
    },
    /// List stored revocations (tokens by key, never the token; users by id).
    Revocations {
        #[command(subcommand)]
        cmd: RevocationsCmd,
    },
    /// Manage API keys for the admin HTTP API.
    Apikey {
        #[command(subcommand)]
        cmd: ApikeyCmd,
    },
    /// Revoke one token (by value or jti) or every session of a user.
    Revoke {
        /// The token to revoke; `-` reads it from stdin (keeps it out of `ps`).
        #[arg(long, conflicts_with_all = ["jti", "user"])]
        token: Option<String>,
        /// Revoke by the token's `jti` claim.
        #[arg(long, conflicts_with = "user")]
        jti: Option<String>,
        /// Revoke every token and session of this user id.
        #[arg(long)]
        user: Option<String>,
    },
    /// Print the seed's getConnectionStats figures and store counts as JSON.
    Stats,
    /// Write a backup of the database and key files to FILE (through the running server
    /// when there is one, so it is taken while it serves).
    Backup {
        /// Where to write it (it holds the signing keys: mode 0600).
        file: PathBuf,
    },
    /// Restore a backup into a stopped server's data root (which must hold no database).
    Restore {
        /// The backup file.
        file: PathBuf,
    },
    /// Mint an HS256 test token for USER from the configured JWT secret and print it.
    Token {
        /// The user id (the token's `sub`).
        user: String,
        /// Comma-separated `roles` claim (the server reads it only with auth.trust_role_claims).
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// The `email` claim.
        #[arg(long)]
        email: Option<String>,
        /// Lifetime: seconds, or an age like 30s, 15m, 1h, 7d; at most 365d.
        #[arg(long, default_value = "1h", value_name = "AGE")]
        ttl: String,
        /// Mint even in production mode (test tokens are refused there by default).
        #[arg(long)]
        force: bool,
    },
    /// Exit 0 when the server's GET /readyz answers ready, 1 otherwise (for health checks).
    Health {
        /// Base URL of the server (default: from the configured listen address).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Seconds to wait for the answer (1-300).
        #[arg(long, default_value_t = 5, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=300))]
        timeout: u64,
    },
    /// Print security events as JSON lines, oldest first.
    Events {
        /// Only events at or after this time: ms since the epoch, or an age like 30s, 15m, 2h, 7d.
        #[arg(long)]
        since: Option<String>,
        /// Only events with this action (websocket_auth, room_join, permission_denied, ...).
        #[arg(long)]
        action: Option<String>,
        /// At most this many events.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Check the configuration, or print the default one.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// List every configuration problem with its key and source; exit 1 on any.
    ///
    /// Loads the layers serve uses (defaults, --config file, ROOMGATE_* and seed
    /// variables, flags) and nothing else: never opens or creates the data directory.
    Check,
    /// Print every option with its default, as a commented TOML file.
    Defaults,
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a built-in account; without --password-stdin a password is generated and printed once.
    Add {
        /// Username (1-64 of A-Z a-z 0-9 _ - . @); it is the `sub` of its access tokens.
        name: String,
        /// The account's email (shown to rooms that show emails).
        #[arg(long)]
        email: Option<String>,
        /// Comma-separated stored roles (default roles still apply).
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Read the password from the first line of stdin (never trimmed, only the newline).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set an account's password (first line of stdin, or --generate); ends all its sessions.
    Passwd {
        /// Username.
        name: String,
        /// Generate a password and print it once instead of reading stdin.
        #[arg(long)]
        generate: bool,
    },
    /// Disable an account: no logins, and every token and socket of it is revoked.
    Disable {
        /// Username.
        name: String,
    },
    /// Enable a disabled account.
    Enable {
        /// Username.
        name: String,
    },
    /// Delete an account and its stored roles; every token and socket of it is revoked.
    Delete {
        /// Username.
        name: String,
    },
    /// List accounts (never their password hashes).
    List,
    /// Print a user's stored roles; --set replaces them, --clear removes them (default roles still apply).
    Roles {
        /// The user id (the JWT `sub`).
        id: String,
        /// Comma-separated roles that replace the stored ones, e.g. user,admin.
        #[arg(long, value_delimiter = ',', num_args = 1.., conflicts_with = "clear")]
        set: Option<Vec<String>>,
        /// Remove every stored role of the user.
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApikeyCmd {
    /// Create a key; it is printed once and stored only as a digest.
    Create {
        /// Unique name (1-64 of A-Z a-z 0-9 _ - . :).
        #[arg(long)]
        name: String,
        /// Comma-separated permissions the key carries, e.g. stats:read,events:read.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
    },
    /// List keys (names, ids, scopes, creation and last use; never the keys).
    List,
    /// Revoke a key by name or id; requests with it get 401 from then on.
    Revoke {
        /// The key's name or id.
        key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoomCmd {
    /// Create a room with its own role lists.
    Create {
        /// Room id (A-Z a-z 0-9 _ - . :).
        id: String,
        /// chat, document, collaboration or notification.
        #[arg(long = "type", default_value = "chat")]
        kind: String,
        /// Display name (default "Room <id>").
        #[arg(long)]
        name: Option<String>,
        /// Roles that may join and read.
        #[arg(long, value_delimiter = ',', default_value = "user")]
        read: Vec<String>,
        /// Roles that may send messages.
        #[arg(long, value_delimiter = ',', default_value = "user")]
        write: Vec<String>,
        /// Roles that administer the room.
        #[arg(long, value_delimiter = ',', default_value = "admin")]
        admin: Vec<String>,
        /// Most distinct users at once (default rooms.max_participants).
        #[arg(long)]
        max: Option<u32>,
    },
    /// List rooms as JSON lines.
    List,
    /// Print one room: its settings, ACL and, while the server runs, its members.
    Show {
        /// Room id.
        id: String,
    },
    /// Delete a room, its history and ACL; members are taken out with reason room_deleted.
    Delete {
        /// Room id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RolesCmd {
    /// List roles and their permissions as JSON lines.
    List,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCmd {
    /// List a user's stored sessions as JSON lines.
    List {
        /// The user id (the JWT `sub`).
        #[arg(long)]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RevocationsCmd {
    /// List revocations as JSON lines.
    List,
}

impl Command {
    /// Commands that may run where no database exists yet: `serve` creates one,
    /// `restore` fills an empty data root, and the rest never open it (`token` reads
    /// only the JWT secret, and says where it looked when there is none; `config` reads
    /// only the configuration).
    pub fn needs_database(&self) -> bool {
        !matches!(
            self,
            Command::Serve { .. }
                | Command::Restore { .. }
                | Command::Health { .. }
                | Command::Token { .. }
                | Command::Config { .. }
        )
    }
}

/// The longest `--ttl`: a development token that outlives a year is a credential
/// someone forgot, not a test.
pub const MAX_TTL_SECS: u64 = 365 * 86_400;

/// Parses `--ttl`: whole seconds, or an age with unit s/m/h/d; one second to a year.
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let secs = match s.parse::<u64>() {
        Ok(secs) => secs,
        Err(_) => parse_age_ms(s).map_err(|why| format!("--ttl {s:?}: {why}"))? / 1000,
    };
    if secs == 0 {
        return Err("--ttl must be at least 1 second".into());
    }
    if secs > MAX_TTL_SECS {
        return Err("--ttl must be at most 365d".into());
    }
    Ok(secs)
}

/// Parses `--since`: ms since the epoch, or an age with unit s/m/h/d.
pub fn parse_since(s: &str, now_ms: u64) -> Result<u64, String> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let age = parse_age_ms(s).map_err(|why| format!("--since {s:?}: {why}"))?;
    Ok(now_ms.saturating_sub(age))
}

/// An age like 30s, 15m, 2h or 7d, in milliseconds.
fn parse_age_ms(s: &str) -> Result<u64, String> {
    let Some(unit_char) = s.chars().last() else {
        return Err("empty".into());
    };
    let (num, unit) = s.split_at(s.len() - unit_char.len_utf8());
    let n: u64 = num
        .parse()
        .map_err(|_| "expected a number with a unit, like 15m".to_string())?;
    let unit_ms: u64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err("unit must be s, m, h or d".into()),
    };
    Ok(n.saturating_mul(unit_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        assert_eq!(parse_since("1234", 0), Ok(1234));
        assert_eq!(parse_since("2m", 200_000), Ok(80_000));
        assert!(parse_since("2w", 0).is_err());
        assert!(parse_since("", 0).is_err());
        assert!(parse_since("5µ", 0).is_err());
    }

    #[test]
    fn ttl_forms() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("2d"), Ok(172_800));
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("1w").unwrap_err().contains("--ttl"));
        assert_eq!(parse_ttl("365d"), Ok(MAX_TTL_SECS));
        assert!(parse_ttl("366d").unwrap_err().contains("at most"));
        assert!(parse_ttl("99999999999999d").is_err());
    }
}
