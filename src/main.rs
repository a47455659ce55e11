//! The binary's edge: parse the command line, load the configuration, set up logging,
//! then either serve or run one operator command (through the running server's control
//! socket when there is one, directly on the store otherwise). `anyhow` lives here only.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{Context, bail};
use clap::Parser;
use roomgate::admin::{self, Request, Target};
use roomgate::cli::{
    ApikeyCmd, Cli, Command, ConfigCmd, RevocationsCmd, RolesCmd, RoomCmd, SessionsCmd, UserCmd,
    parse_since, parse_ttl,
};
use roomgate::config::{Config, Overrides};
use roomgate::protocol::now_ms;
use roomgate::server::Server;
use roomgate::store::Store;
use roomgate::{control, logging, secrets};
use serde_json::Value;

// jemalloc, not the system allocator: glibc keeps every page a burst of connections
// touched (RSS stayed at its peak after 19,900 connections closed, and crept up by
// ~10 MiB over three open/close cycles as long-lived sled nodes and events pinned
// pages between freed buffers); jemalloc hands unused pages back from a background
// thread, so memory returns after the connections go. Its options are compiled in
// from .cargo/config.toml. See BENCHMARKS.md.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("roomgate: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roomgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let listen = match &cli.command {
        Some(Command::Serve { listen }) => listen.clone(),
        _ => None,
    };
    let overrides = Overrides {
        config_file: cli.global.config.clone(),
        listen,
        data_dir: cli.global.data.clone(),
    };
    // Before the configuration is loaded for use: `config check` reports a bad one.
    if let Some(Command::Config { cmd }) = &cli.command {
        return config_command(cmd, &overrides, &env);
    }
    let cfg = Config::load(&overrides, &env)?;
    if let Some(command) = &cli.command
        && command.needs_database()
    {
        require_database(&cfg)?;
    }
    let request = match cli.command {
        None | Some(Command::Serve { .. }) => return serve(cfg).await,
        Some(Command::Health { url, timeout }) => return health(&cfg, url, timeout).await,
        Some(Command::Token {
            user,
            roles,
            email,
            ttl,
            force,
        }) => return mint_token(&cfg, &user, &roles, email.as_deref(), &ttl, force),
        Some(Command::User { cmd }) => match cmd {
            UserCmd::Roles {
                id,
                set: Some(roles),
                clear: false,
            } => Request::UserRoles { user_id: id, roles },
            UserCmd::Roles {
                id, clear: true, ..
            } => Request::UserRoles {
                user_id: id,
                roles: Vec::new(),
            },
            UserCmd::Roles { id, .. } => Request::UserRolesShow { user_id: id },
            UserCmd::Add {
                name,
                email,
                roles,
                password_stdin,
            } => Request::UserAdd {
                username: name,
                email,
                roles,
                password: password_stdin.then(read_password).transpose()?,
            },
            UserCmd::Passwd { name, generate } => Request::UserPasswd {
                username: name,
                password: (!generate).then(read_password).transpose()?,
            },
            UserCmd::Disable { name } => Request::UserDisable { username: name },
            UserCmd::Enable { name } => Request::UserEnable { username: name },
            UserCmd::Delete { name } => Request::UserDelete { username: name },
            UserCmd::List => Request::UserList,
        },
        Some(Command::Room { cmd }) => match cmd {
            RoomCmd::Create {
                id,
                kind,
                name,
                read,
                write,
                admin,
                max,
            } => Request::RoomCreate {
                id,
                name,
                kind,
                read,
                write,
                admin,
                max_participants: max,
            },
            RoomCmd::List => Request::RoomList,
            RoomCmd::Show { id } => Request::RoomShow { id },
            RoomCmd::Delete { id } => Request::RoomDelete { id },
        },
        Some(Command::Roles {
            cmd: RolesCmd::List,
        }) => Request::RoleList,
        Some(Command::Sessions {
            cmd: SessionsCmd::List { user },
        }) => Request::SessionList { user_id: user },
        Some(Command::Revocations {
            cmd: RevocationsCmd::List,
        }) => Request::RevocationList,
        Some(Command::Apikey { cmd }) => match cmd {
            ApikeyCmd::Create { name, scopes } => Request::ApikeyCreate { name, scopes },
            ApikeyCmd::List => Request::ApikeyList,
            ApikeyCmd::Revoke { key } => Request::ApikeyRevoke { key },
        },
        Some(Command::Revoke { token, jti, user }) => match (token, jti, user) {
            (Some(t), None, None) => {
                let token = if t == "-" {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading the token from stdin")?;
                    s.trim().to_string()
                } else {
                    t
                };
                Request::RevokeToken {
                    token: Some(token),
                    jti: None,
                }
            }
            (None, Some(j), None) => Request::RevokeToken {
                token: None,
                jti: Some(j),
            },
            (None, None, Some(u)) => Request::RevokeUser { user_id: u },
            _ => bail!("give exactly one of --token, --jti or --user"),
        },
        // Handled before the load above; kept here so the match stays exhaustive.
        Some(Command::Config { cmd }) => return config_command(&cmd, &overrides, &env),
        Some(Command::Stats) => Request::Stats,
        Some(Command::Backup { file }) => {
            let path = std::path::absolute(&file)
                .with_context(|| format!("resolving {}", file.display()))?;
            Request::Backup {
                path: path.display().to_string(),
            }
        }
        Some(Command::Restore { file }) => return restore(&cfg, &file).await,
        Some(Command::Events {
            since,
            action,
            limit,
        }) => Request::Events {
            since_ms: since
                .map(|s| parse_since(&s, now_ms()))
                .transpose()
                .map_err(anyhow::Error::msg)?,
            action,
            limit,
        },
    };
    let is_lines = matches!(
        request,
        Request::Events { .. }
            | Request::UserList
            | Request::ApikeyList
            | Request::RoomList
            | Request::RoleList
            | Request::SessionList { .. }
            | Request::RevocationList
    );
    let result = operate(&cfg, request).await?;
    match (is_lines, result) {
        (true, Value::Array(events)) => {
            for e in events {
                println!("{e}");
            }
        }
        (_, other) => println!("{}", serde_json::to_string_pretty(&other)?),
    }
    Ok(())
}

/// Operator commands act on an existing database: one run from the wrong directory must
/// not create an empty database beside it and report success there.
fn require_database(cfg: &Config) -> anyhow::Result<()> {
    let db = cfg.data_dir.join("db");
    let shown = std::path::absolute(&db).unwrap_or_else(|_| db.clone());
    match std::fs::metadata(&db) {
        Ok(m) if m.is_dir() => return Ok(()),
        // A data root another user owns is not a missing database: saying "start the
        // server" here could start a second one.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "cannot read {} ({e}); run the command as the user the server runs as",
            shown.display()
        ),
        _ => {}
    }
    bail!(
        "no roomgate database in the data root {} (looked for {}); pass --data DIR or set ROOMGATE_DATA_DIR to the server's data root, or start the server once with `roomgate serve` to create one",
        cfg.data_dir.display(),
        shown.display()
    )
}

/// `roomgate token USER`: a development token signed with the server's JWT secret.
fn mint_token(
    cfg: &Config,
    user: &str,
    roles: &[String],
    email: Option<&str>,
    ttl: &str,
    force: bool,
) -> anyhow::Result<()> {
    if cfg.mode == roomgate::config::Mode::Production && !force {
        bail!(
            "refusing to mint a test token in production mode: tokens should come from your identity provider or POST /auth/login (pass --force if you mean it)"
        );
    }
    if user.is_empty() || user.len() > 256 || user.chars().any(char::is_control) {
        bail!("USER must be 1-256 bytes without control characters");
    }
    let ttl_secs = parse_ttl(ttl).map_err(anyhow::Error::msg)?;
    let secret = roomgate::secrets::existing_jwt_secret(cfg)?;
    let token = roomgate::auth::mint_test_token(
        &secret,
        &roomgate::auth::TestToken {
            sub: user,
            email,
            roles,
            issuer: cfg.auth.issuer.as_deref(),
            audience: cfg.auth.audience.as_deref(),
            now_secs: now_ms() / 1000,
            ttl_secs,
        },
    )
    .context("signing the token")?;
    if !roles.is_empty() && !cfg.auth.trust_role_claims {
        eprintln!(
            "roomgate: note: auth.trust_role_claims is false, so the server ignores this token's roles claim; store roles with `roomgate user roles {user} --set ...`"
        );
    }
    println!("{token}");
    Ok(())
}

/// `roomgate health`: exit 0 when GET /readyz answers 200, an error (exit 1) otherwise.
async fn health(cfg: &Config, url: Option<String>, timeout_secs: u64) -> anyhow::Result<()> {
    let base = match url {
        Some(u) => u,
        None => {
            if cfg.tls.cert_file.is_some() {
                bail!(
                    "the server serves TLS; give --url http://... of a plain listener, or check /readyz with a TLS client"
                );
            }
            format!(
                "http://{}",
                roomgate::health::local_address(cfg.listen_addr())
            )
        }
    };
    let timeout = std::time::Duration::from_secs(timeout_secs);
    let answer = tokio::time::timeout(timeout, roomgate::health::check(&base))
        .await
        .map_err(|_| anyhow::anyhow!("{base}/readyz did not answer within {timeout_secs} s"))??;
    println!("{answer}");
    Ok(())
}

/// `roomgate config check|defaults`: touches nothing but the config file it reads.
fn config_command(
    cmd: &ConfigCmd,
    overrides: &Overrides,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    match cmd {
        ConfigCmd::Defaults => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(roomgate::config::DEFAULTS_TOML.as_bytes())
                .and_then(|()| out.flush())
                .context("writing the defaults")?;
        }
        ConfigCmd::Check => match Config::check(overrides, env) {
            Ok(checked) => println!("{}", checked.summary()),
            Err(e) => {
                for problem in &e.0 {
                    println!("{problem}");
                }
                match e.0.len() {
                    1 => bail!("1 configuration problem"),
                    n => bail!("{n} configuration problems"),
                }
            }
        },
    }
    Ok(())
}

/// `roomgate restore FILE`: into a stopped server's data root only.
async fn restore(cfg: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    if control::call(&cfg.control_socket_path(), &Request::Stats)
        .await
        .ok()
        .flatten()
        .is_some()
    {
        bail!(
            "a server is running on {}; stop it and restore into an empty data directory",
            cfg.data_dir.display()
        );
    }
    let input = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let summary = roomgate::store::backup::restore(input, &cfg.data_dir)?;
    println!(
        "{}",
        serde_json::json!({
            "restored": cfg.data_dir.display().to_string(),
            "schema": summary.schema,
            "trees": summary.trees,
            "entries": summary.entries,
            "keyFiles": summary.files,
        })
    );
    Ok(())
}

/// The first line of stdin, without its line ending (passwords are never trimmed).
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("no password on stdin");
    }
    Ok(password.to_string())
}

/// Runs an operator request on the running server, or on the store when none runs.
async fn operate(cfg: &Config, request: Request) -> anyhow::Result<Value> {
    if let Some(reply) = control::call(&cfg.control_socket_path(), &request)
        .await
        .context("talking to the running server")?
    {
        if reply["ok"] == Value::Bool(true) {
            return Ok(reply["result"].clone());
        }
        bail!(
            "{} ({})",
            reply["error"]["message"]
                .as_str()
                .unwrap_or("request failed"),
            reply["error"]["code"].as_str().unwrap_or("error")
        );
    }
    // The offline store is the server's: it is kept as private as the server keeps it.
    roomgate::dataroot::secure(
        &cfg.data_dir,
        cfg.mode == roomgate::config::Mode::Production,
    )?;
    let secrets = secrets::resolve(cfg)?;
    let store = Store::open(&cfg.data_dir, &cfg.store)?;
    roomgate::dataroot::restrict_contents(&cfg.data_dir);
    let result = admin::execute(
        request,
        Target::Offline {
            store: &store,
            cfg,
            event_key: &secrets.event_key,
        },
    )
    .await;
    store.flush().await?;
    Ok(result?)
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    // Before anything binds: an unreadable ROOMGATE_LOG stops the start.
    logging::init(cfg.log_format, std::env::var_os("ROOMGATE_LOG").as_deref())?;
    logging::effective_config(cfg.log_format, &cfg.redacted());
    // Installed before the "listening" line, so a SIGTERM sent as soon as a supervisor
    // sees it shuts down in order instead of killing the process.
    let signals = Signals::install()?;
    let listener = roomgate::server::bind(cfg.listen_addr(), cfg.connection.listen_backlog)
        .with_context(|| format!("binding {}", cfg.listen))?;
    let server = Server::start(cfg, listener).await?;
    let scheme = if server.tls_enabled() {
        "https"
    } else {
        "http"
    };
    // Where a person goes next; a wildcard listener is shown as its loopback address.
    let base = format!(
        "{scheme}://{}",
        roomgate::health::local_address(server.local_addr())
    );
    // The first line is stable: scripts and tests learn the port from it when listening
    // on :0. One write, and its failure ignored: whoever started us may stop reading
    // stdout once it has the address, and that must not stop the server.
    let banner = format!(
        "roomgate listening on {scheme}://{addr}\n  chat page:     {base}/\n  admin console: {base}/admin\n  metrics:       {base}/metrics\n  health:        {base}/healthz, {base}/readyz\n",
        addr = server.local_addr()
    );
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    }
    tracing::info!(addr = %server.local_addr(), "serving");
    signals.wait_for_stop(&server).await;
    tracing::info!("shutting down");
    server.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT (stop) and SIGHUP (reload the TLS certificate), caught from the
/// moment they are installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing SIGHUP handler")?,
        })
    }

    /// Returns on SIGTERM or SIGINT; reloads the certificate on each SIGHUP meanwhile.
    async fn wait_for_stop(mut self, server: &Server) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => match server.reload_tls() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the current certificate"),
                },
            }
        }
    }
}
