//! Server lifecycle: open the store, build `AppState`, serve HTTP/WebSocket from our own
//! accept loop (hyper-util with a header-read timeout, upgrades, and the peer address put
//! into each request; TLS through tokio-rustls when configured), run the control socket
//! and the sweeper, and shut down in a written order: stop accepting, close every socket with 1001, wait for connection
//! tasks (bounded by `shutdown_deadline_secs`), drain the history and audit writers,
//! flush the store last. Nothing here handles protocol frames.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::{Audit, Outcome};
use crate::auth::Verifier;
use crate::authz::RoleTable;
use crate::config::Config;
use crate::history::HistoryWriter;
use crate::http::{self, PeerAddr, Secure, UpgradeSlot};
use crate::hub::{Hub, Registry};
use crate::passwords::{PasswordError, Passwords};
use crate::protocol::CloseCode;
use crate::ratelimit::FailureWindow;
use crate::ratelimit::Limiters;
use crate::secrets::{self, SecretsError};
use crate::state::AppState;
use crate::store::{AccountRecord, Store, StoreError};
use crate::tls::Tls;
use crate::{control, sweeper};
use warp::filters::BoxedFilter;

/// Header-read timeout for HTTP requests (slow-header clients are dropped).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

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
        let secrets = secrets::resolve(&cfg)?;
        let store = Store::open(&cfg.data_dir, &cfg.store)?;
        let passwords = Passwords::new(&cfg.accounts)?;
        if cfg.accounts.enabled {
            bootstrap_admin(&store, &cfg, &passwords).await?;
        }
        let cfg = Arc::new(cfg);
        let state = AppState {
            verifier: Arc::new(Verifier::new(&cfg, &secrets.jwt, &secrets.ws)?),
            roles: Arc::new(RoleTable::load(&store)?),
            audit: Audit::start(store.clone(), secrets.event_key, cfg.store.audit_queue),
            history: HistoryWriter::start(
                store.clone(),
                cfg.store.history_queue,
                cfg.rooms.message_history,
            ),
            hub: Arc::new(Hub::new(store.clone(), cfg.rooms.clone())),
            registry: Arc::new(Registry::new(
                cfg.connection.max_unauthenticated_per_ip,
                cfg.connection.max_connections_per_user,
            )),
            limiters: Arc::new(
                Limiters::new(&cfg.rate_limits)
                    .with_login(cfg.accounts.login, cfg.rate_limits.enabled),
            ),
            login_failures: Arc::new(FailureWindow::new(cfg.accounts.failed_logins)),
            passwords: passwords.clone(),
            trusted_proxies: cfg.trusted_proxies().into(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            store,
            cfg: cfg.clone(),
        };
        if cfg.control_socket {
            let path = cfg.control_socket_path();
            let unix = control::bind(&path).await.map_err(StartError::Control)?;
            tokio::spawn(control::serve(unix, path, state.clone()));
        }
        let accept = tokio::spawn(accept_loop(listener, state.clone(), tls.clone()));
        if let Some(tls) = &tls
            && cfg.tls.reload_check_secs > 0
        {
            tokio::spawn(watch_certificate(
                tls.clone(),
                Duration::from_secs(cfg.tls.reload_check_secs),
                state.shutdown.clone(),
            ));
        }
        let sweeper = tokio::spawn(sweeper::run(state.clone()));
        state
            .audit
            .record("server_start", None, Outcome::Success, &[]);
        Ok(Server {
            addr,
            state,
            accept,
            sweeper,
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
        s.history.stop().await;
        s.audit.stop().await;
        if let Err(e) = s.store.flush().await {
            tracing::error!(error = %e, "final store flush failed");
        }
    }
}

/// Reloads the certificate when its files change (renewal by certbot or similar).
async fn watch_certificate(tls: Arc<Tls>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if tls.changed_on_disk() {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded after a file change"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS reload failed; keeping the current certificate")
                }
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, state: AppState, tls: Option<Arc<Tls>>) {
    let routes = http::routes(state.clone());
    loop {
        let (stream, peer) = tokio::select! {
            _ = state.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        let shutdown = state.shutdown.clone();
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        state.tasks.spawn(async move {
            match acceptor {
                None => serve_http(stream, peer, false, routes, shutdown).await,
                Some(acceptor) => {
                    // A client that never finishes the handshake is dropped like a
                    // slow-header one.
                    let handshake =
                        tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls_stream)) => {
                            serve_http(tls_stream, peer, true, routes, shutdown).await
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Serves HTTP/1.1 with upgrades on one connection, plain or TLS. The peer address and
/// whether the connection is TLS go into each request's extensions for the routes.
async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    secure: bool,
    routes: BoxedFilter<(warp::reply::Response,)>,
    shutdown: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = TowerToHyperService::new(warp::service(routes));
    let svc = hyper::service::service_fn(move |mut req: ::http::Request<Incoming>| {
        req.extensions_mut().insert(PeerAddr(peer));
        if secure {
            req.extensions_mut().insert(Secure);
        }
        if let Some(on) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() {
            req.extensions_mut()
                .insert(UpgradeSlot(Arc::new(std::sync::Mutex::new(Some(on)))));
        }
        svc.call(req)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}
