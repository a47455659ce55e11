//! Server lifecycle: make the data root private (`dataroot`), open the store, build `AppState`, start the accept loop
//! (`accept.rs`: connection caps, TLS, HTTP/1.1 with upgrades), the certificate watcher,
//! the control socket, the sweeper and the refusal summary, and shut down in a written order: stop accepting,
//! close every socket with 1001, wait for connection tasks (bounded by
//! `shutdown_deadline_secs`), drain the history and audit writers, flush the store last.
//! Nothing here handles protocol frames.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::{Audit, Outcome};
use crate::auth::Verifier;
use crate::authz::RoleTable;
use crate::config::Config;
use crate::history::HistoryWriter;
use crate::hub::{Hub, Registry};
use crate::notify::Notifier;
use crate::passwords::{PasswordError, Passwords};
use crate::protocol::CloseCode;
use crate::ratelimit::FailureWindow;
use crate::ratelimit::Limiters;
use crate::refusals::{self, Refusals};
use crate::secrets::{self, SecretsError};
use crate::state::{AppState, Shared};
use crate::store::{AccountRecord, Store, StoreError};
use crate::tls::Tls;
use crate::{accept, control, dataroot, sweeper};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("control socket: {0}")]
    Control(std::io::Error),
    #[error("listener: {0}")]
    Listener(std::io::Error),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    DataRoot(#[from] crate::dataroot::DataRootError),
}

/// Binds the listening socket with an explicit `listen(2)` backlog (std and tokio use
/// 128, which a burst of concurrent handshakes overflows; see
/// `connection.listen_backlog`). Must be called inside the runtime.
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std does on Unix: a restart must not wait out TIME_WAIT sockets of the old one.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// On first start with no account, creates `admin` with the password from
/// `ROOMGATE_ADMIN_PASSWORD` or a random one printed once on the console.
async fn bootstrap_admin(
    store: &Store,
    cfg: &Config,
    passwords: &Passwords,
) -> Result<(), StartError> {
    if store.account_count() > 0 {
        return Ok(());
    }
    let (password, generated) = match &cfg.accounts.admin_password {
        Some(p) => (p.expose().to_string(), false),
        None => (crate::auth::random_hex(12), true),
    };
    let now = crate::protocol::now_ms();
    let created = store.create_account(&AccountRecord {
        username: "admin".into(),
        email: None,
        password_hash: passwords.hash(&password).await?,
        disabled: false,
        created_ms: now,
        updated_ms: now,
    })?;
    if created {
        store.set_user_roles("admin", vec!["admin".into()], now)?;
        store.flush().await?;
        if generated {
            // Shown once, on stdout, never in the log.
            println!(
                "roomgate: created account \"admin\" with password {password} (shown once; change it with `roomgate user passwd admin`)"
            );
        } else {
            println!(
                "roomgate: created account \"admin\" with the password from ROOMGATE_ADMIN_PASSWORD"
            );
        }
    }
    Ok(())
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    state: AppState,
    accept: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    refusal_summary: JoinHandle<()>,
    /// Ends the refusal summary after the connections have drained, not when shutdown
    /// begins, so refusals during the drain are in its last line.
    refusal_summary_stop: CancellationToken,
    tls: Option<Arc<Tls>>,
}

impl Server {
    /// Starts serving on `listener` with `cfg` (already validated).
    pub async fn start(cfg: Config, listener: TcpListener) -> Result<Server, StartError> {
        let addr = listener.local_addr().map_err(StartError::Listener)?;
        // Certificate problems stop the start before anything is written.
        let tls = match (&cfg.tls.cert_file, &cfg.tls.key_file) {
            (Some(cert), Some(key)) => Some(Arc::new(Tls::load(cert, key)?)),
            _ => None,
        };
        let production = cfg.mode == crate::config::Mode::Production;
        dataroot::secure(&cfg.data_dir, production)?;
        let secrets = secrets::resolve(&cfg)?;
        let store = Store::open(&cfg.data_dir, &cfg.store)?;
        dataroot::restrict_contents(&cfg.data_dir);
        let passwords = Passwords::new(&cfg.accounts)?;
        // Key files are read before the first admin is made: a start that fails on them
        // must not have printed (and spent) the one-time admin password.
        let verifier = Arc::new(Verifier::new(&cfg, &secrets.jwt, &secrets.ws)?);
        if cfg.accounts.enabled {
            bootstrap_admin(&store, &cfg, &passwords).await?;
        }
        let cfg = Arc::new(cfg);
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let state = AppState::new(Shared {
            verifier,
            roles: Arc::new(RoleTable::load(&store)?),
            metrics: metrics.clone(),
            audit: Audit::start(
                store.clone(),
                secrets.event_key,
                cfg.store.audit_queue,
                cfg.security.max_security_events,
            ),
            history: HistoryWriter::start(
                store.clone(),
                cfg.store.history_queue,
                cfg.store.durability == crate::config::Durability::Strict,
                metrics,
            ),
            hub: Arc::new(Hub::new(store.clone(), cfg.rooms.clone())),
            notifier: Arc::new(Notifier::new(store.clone(), &cfg)),
            registry: Arc::new(Registry::new(
                cfg.connection.max_unauthenticated_per_ip,
                cfg.connection.max_connections_per_user,
            )),
            limiters: Arc::new(
                Limiters::new(&cfg.rate_limits)
                    .with_login(cfg.accounts.login, cfg.rate_limits.enabled),
            ),
            login_failures: Arc::new(FailureWindow::new(cfg.accounts.failed_logins)),
            refusals: Arc::new(Refusals::default()),
            passwords: passwords.clone(),
            trusted_proxies: cfg.trusted_proxies().into(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            started_ms: crate::protocol::now_ms(),
            store,
            cfg: cfg.clone(),
        });
        if cfg.control_socket {
            let path = cfg.control_socket_path();
            let unix = control::bind(&path).await.map_err(StartError::Control)?;
            tokio::spawn(control::serve(unix, path, state.clone()));
        }
        let accept = tokio::spawn(accept::accept_loop(listener, state.clone(), tls.clone()));
        if let Some(tls) = &tls
            && cfg.tls.reload_check_secs > 0
        {
            tokio::spawn(accept::watch_certificate(
                tls.clone(),
                Duration::from_secs(cfg.tls.reload_check_secs),
                state.shutdown.clone(),
            ));
        }
        let sweeper = tokio::spawn(sweeper::run(state.clone()));
        let refusal_summary_stop = CancellationToken::new();
        let refusal_summary = tokio::spawn(refusals::run(
            state.refusals.clone(),
            Duration::from_secs(cfg.log_refusal_summary_secs),
            refusal_summary_stop.clone(),
        ));
        state
            .audit
            .record("server_start", None, Outcome::Success, &[]);
        Ok(Server {
            addr,
            state,
            accept,
            sweeper,
            refusal_summary,
            refusal_summary_stop,
            tls,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (tests inspect it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Whether the server speaks TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// Reads the TLS certificate and key again (SIGHUP). New handshakes use them; open
    /// connections are not touched. Without TLS there is nothing to do.
    pub fn reload_tls(&self) -> Result<(), crate::tls::TlsError> {
        match &self.tls {
            Some(tls) => tls.reload(),
            None => Ok(()),
        }
    }

    /// Shuts down in order and returns when the store is flushed.
    pub async fn shutdown(self) {
        let s = &self.state;
        s.shutdown.cancel();
        let _ = self.accept.await;
        s.registry.close_all(CloseCode::GoingAway);
        s.tasks.close();
        let deadline = Duration::from_secs(s.cfg.shutdown_deadline_secs);
        if tokio::time::timeout(deadline, s.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown deadline passed with connections still open");
        }
        let _ = self.sweeper.await;
        // It logs the refusals of the last partial period, the drain's included, as it ends.
        self.refusal_summary_stop.cancel();
        let _ = self.refusal_summary.await;
        s.history.stop().await;
        s.audit.stop().await;
        if let Err(e) = s.store.flush().await {
            tracing::error!(error = %e, "final store flush failed");
        }
        // Files sled created while running (snapshots) have the umask's mode; the
        // directory kept them private, and now they are narrowed like the rest.
        dataroot::restrict_contents(&s.cfg.data_dir);
    }
}
