//! The accept loop: TCP connections in, HTTP/1.1 (with upgrades) out, plain or over TLS.
//! It enforces what must be decided before a request is read: the global and per-IP
//! connection caps (trusted proxies exempt from the per-IP one, since every client
//! behind them shares their address), the TLS handshake deadline, the header-read
//! deadline and the header size limit. It puts the peer address, the TLS marker and the
//! upgrade handle into each request for the routes, and wraps each request body in
//! [`TimedBody`], which holds it to `connection.body_read_timeout_secs` and
//! `connection.body_min_bytes_per_sec` whichever route reads it, and closes the
//! connection when it fails them: a connection place is never held by an idle body. It
//! never reads a request body itself and never touches the store.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warp::filters::BoxedFilter;

use crate::http::{self, HttpError, PeerAddr, Secure, UpgradeSlot};
use crate::metrics::Metrics;
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
        body: BodyRule {
            timeout: Duration::from_secs(c.body_read_timeout_secs),
            min_bytes_per_sec: c.body_min_bytes_per_sec,
        },
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
        let conn = ConnCtx {
            peer,
            hold,
            limits,
            metrics: state.metrics.clone(),
        };
        state.tasks.spawn(async move {
            match acceptor {
                None => serve_http(stream, false, conn, routes, shutdown).await,
                Some(acceptor) => {
                    // A client that never finishes the handshake is dropped like a
                    // slow-header one.
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls_stream)) => {
                            serve_http(tls_stream, true, conn, routes, shutdown).await
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
    body: BodyRule,
}

/// What one connection's HTTP task needs besides its stream.
struct ConnCtx {
    peer: SocketAddr,
    hold: ConnHold,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
}

/// Serves HTTP/1.1 with upgrades on one connection, plain or TLS.
async fn serve_http<I>(
    io: I,
    secure: bool,
    ctx: ConnCtx,
    routes: BoxedFilter<(warp::reply::Response,)>,
    shutdown: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let ConnCtx {
        peer,
        hold,
        limits,
        metrics,
    } = ctx;
    // Cancelled by a body that failed its deadline or rate: the request is answered 408
    // whatever the route made of the failed read, and the connection is closed here
    // within a second, so its place is free at once.
    let tripped = CancellationToken::new();
    let trip = tripped.clone();
    let svc = TowerToHyperService::new(warp::service(routes));
    let svc = hyper::service::service_fn(move |req: ::http::Request<Incoming>| {
        let mut req =
            req.map(|body| TimedBody::new(body, limits.body, trip.clone(), metrics.clone()));
        req.extensions_mut().insert(PeerAddr(peer));
        req.extensions_mut().insert(hold.clone());
        if secure {
            req.extensions_mut().insert(Secure);
        }
        if let Some(on) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() {
            req.extensions_mut()
                .insert(UpgradeSlot(Arc::new(std::sync::Mutex::new(Some(on)))));
        }
        let answer = svc.call(req);
        let trip = trip.clone();
        async move {
            let res = match answer.await {
                Ok(res) => res,
                Err(never) => match never {},
            };
            // The route answered a failed body read as it answers bad input; the client
            // is told what happened instead (RFC 9110 15.5.9), and the connection closes.
            if trip.is_cancelled() {
                let mut res = HttpError::RequestTimeout.response();
                res.headers_mut()
                    .insert("connection", ::http::HeaderValue::from_static("close"));
                return Ok::<_, std::convert::Infallible>(res);
            }
            Ok(res)
        }
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
        _ = tripped.cancelled() => {
            // Time to write the 408; hyper then closes, since the body was not read.
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

/// How long a body may stay below the minimum rate at its start: the first packets of a
/// body on a real link may wait out a retransmission (one second at first) or a slow
/// start, and the rate is judged on the average since the headers from then on.
const RATE_ALLOWANCE: Duration = Duration::from_secs(2);

/// `connection.body_read_timeout_secs` and `connection.body_min_bytes_per_sec`.
#[derive(Clone, Copy)]
struct BodyRule {
    timeout: Duration,
    /// 0: no rate rule.
    min_bytes_per_sec: u64,
}

impl BodyRule {
    /// When a body that began at `started` and has delivered `received` bytes fails,
    /// and which rule fails it. With nothing more arriving, the average since the
    /// headers falls below the minimum at `started + allowance + received / rate`: one
    /// timer, moved on as bytes arrive, instead of a periodic check.
    fn expiry(
        &self,
        started: tokio::time::Instant,
        received: u64,
    ) -> (tokio::time::Instant, &'static str) {
        let deadline = started + self.timeout;
        if self.min_bytes_per_sec == 0 {
            return (deadline, "deadline");
        }
        let covered = Duration::from_secs_f64(received as f64 / self.min_bytes_per_sec as f64);
        match started
            .checked_add(RATE_ALLOWANCE)
            .and_then(|t| t.checked_add(covered))
        {
            Some(at) if at < deadline => (at, "min_rate"),
            _ => (deadline, "deadline"),
        }
    }
}

/// Why a request body read failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body broke a rule (`deadline` or `min_rate`); the connection is being closed.
    #[error("request body too slow ({0})")]
    TooSlow(&'static str),
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

/// A request body held to the deadline and the minimum rate. The rules are checked
/// whenever the reader waits for more, so they hold for every route that reads a body;
/// a body nobody reads holds nothing, because hyper closes the connection after the
/// answer instead of waiting for the rest.
pub struct TimedBody {
    inner: Incoming,
    rule: BodyRule,
    started: tokio::time::Instant,
    received: u64,
    /// Made the first time the reader has to wait: most requests (every upgrade, every
    /// GET) have no body, and a body sent in one packet never waits.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    failed: Option<&'static str>,
    trip: CancellationToken,
    metrics: Arc<Metrics>,
}

impl TimedBody {
    fn new(
        inner: Incoming,
        rule: BodyRule,
        trip: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> TimedBody {
        // The clock starts with the headers: hyper hands the request over as soon as
        // they are read.
        TimedBody {
            inner,
            rule,
            started: tokio::time::Instant::now(),
            received: 0,
            timer: None,
            failed: None,
            trip,
            metrics,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(why) = this.failed {
            return Poll::Ready(Some(Err(BodyError::TooSlow(why))));
        }
        // Whatever has arrived is taken before the clock is looked at, so a reader that
        // came late does not fail a client that was on time.
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received = this.received.saturating_add(data.len() as u64);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        let (at, why) = this.rule.expiry(this.started, this.received);
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        match timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                this.failed = Some(why);
                this.metrics.body_timeouts.inc(why);
                tracing::debug!(
                    rule = why,
                    received = this.received,
                    "request body too slow; closing the connection"
                );
                this.trip.cancel();
                Poll::Ready(Some(Err(BodyError::TooSlow(why))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
