//! The accept loop: TCP connections in, HTTP/1.1 (with upgrades) out, plain or over TLS.
//! It enforces what must be decided before a request is read: the global and per-IP
//! connection caps (trusted proxies exempt from the per-IP one, since every client
//! behind them shares their address), the TLS handshake deadline, the header-read
//! deadline and the header size limit. It puts the peer address, the TLS marker and the
//! upgrade handle into each request for the routes. It never reads a request body and
//! never touches the store.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warp::filters::BoxedFilter;

use crate::http::{self, PeerAddr, Secure, UpgradeSlot};
use crate::ratelimit::Key;
use crate::refusals::Refused;
use crate::state::AppState;
use crate::tls::Tls;

/// Open TCP connections, in total and per client address.
pub struct ConnCaps {
    max_total: usize,
    max_per_ip: usize,
    /// Locking rule: one counter update per connection open or close; nothing else inside.
    inner: Mutex<(usize, HashMap<Key, usize>)>,
}

/// A counted connection; dropping it releases its place.
pub struct ConnSlot {
    caps: Arc<ConnCaps>,
    /// None for trusted proxies, which only count towards the total.
    key: Option<Key>,
}

/// The connection's place, shared by the HTTP task and, after an upgrade, the WebSocket
/// task: the place is given back only when both are done. (Held by the HTTP task alone,
/// it was released at the upgrade, so the caps never counted WebSockets.)
#[derive(Clone)]
pub struct ConnHold(pub Arc<ConnSlot>);

/// Why a connection was turned away before any request was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turned {
    ServerFull,
    IpFull,
}

impl ConnCaps {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnCaps> {
        Arc::new(ConnCaps {
            max_total,
            max_per_ip,
            inner: Mutex::new((0, HashMap::new())),
        })
    }

    /// Takes a place for a connection from `ip` (per-IP cap skipped when `exempt`).
    pub fn admit(self: &Arc<Self>, ip: IpAddr, exempt: bool) -> Result<ConnSlot, Turned> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.0 >= self.max_total {
            return Err(Turned::ServerFull);
        }
        let key = if exempt {
            None
        } else {
            // Keyed like the rate limits (IPv6 by /64), so one host cannot rotate addresses.
            let key = Key::ip(ip);
            let n = inner.1.entry(key.clone()).or_insert(0);
            if *n >= self.max_per_ip {
                return Err(Turned::IpFull);
            }
            *n += 1;
            Some(key)
        };
        inner.0 += 1;
        Ok(ConnSlot {
            caps: self.clone(),
            key,
        })
    }

    /// Open connections counted now.
    pub fn open(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut inner = self.caps.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.0 = inner.0.saturating_sub(1);
        if let Some(key) = &self.key
            && let Some(n) = inner.1.get_mut(key)
        {
            *n -= 1;
            if *n == 0 {
                inner.1.remove(key);
                crate::maps::shrink_if_sparse(&mut inner.1);
            }
        }
    }
}

/// Reloads the certificate when its files change (renewal by certbot or similar).
pub async fn watch_certificate(tls: Arc<Tls>, every: Duration, shutdown: CancellationToken) {
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

/// Accepts until shutdown begins.
pub async fn accept_loop(listener: TcpListener, state: AppState, tls: Option<Arc<Tls>>) {
    let routes = http::routes(state.clone());
    let c = &state.cfg.connection;
    let caps = ConnCaps::new(c.max_connections, c.max_connections_per_ip);
    let limits = HttpLimits {
        header_read_timeout: Duration::from_secs(c.header_read_timeout_secs),
        max_header_bytes: c.max_header_bytes,
    };
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
        let exempt = state
            .trusted_proxies
            .iter()
            .any(|cidr| cidr.contains(peer.ip()));
        let slot = match caps.admit(peer.ip(), exempt) {
            Ok(slot) => slot,
            Err(why) => {
                // Closed before reading anything: the cheapest answer to a flood. No
                // header has been read, so the peer is the only address known here.
                let limit = match why {
                    Turned::ServerFull => Refused::Connections,
                    Turned::IpFull => Refused::ConnectionsPerIp,
                };
                state.refusals.record(limit, peer.ip());
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        let shutdown = state.shutdown.clone();
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        let hold = ConnHold(Arc::new(slot));
        state.tasks.spawn(async move {
            match acceptor {
                None => serve_http(stream, peer, false, hold, routes, limits, shutdown).await,
                Some(acceptor) => {
                    // A client that never finishes the handshake is dropped like a
                    // slow-header one.
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls_stream)) => {
                            serve_http(tls_stream, peer, true, hold, routes, limits, shutdown).await
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

#[derive(Clone, Copy)]
struct HttpLimits {
    header_read_timeout: Duration,
    max_header_bytes: usize,
}

/// Serves HTTP/1.1 with upgrades on one connection, plain or TLS.
async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    secure: bool,
    hold: ConnHold,
    routes: BoxedFilter<(warp::reply::Response,)>,
    limits: HttpLimits,
    shutdown: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = TowerToHyperService::new(warp::service(routes));
    let svc = hyper::service::service_fn(move |mut req: ::http::Request<Incoming>| {
        req.extensions_mut().insert(PeerAddr(peer));
        req.extensions_mut().insert(hold.clone());
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
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
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
