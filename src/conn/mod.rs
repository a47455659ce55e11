//! One task per WebSocket connection. It owns the socket, the session state and the
//! connection's room memberships; it reads frames and handles them strictly one after
//! another (a `join` followed at once by a `message` always works, unlike the seed's
//! concurrent handlers), and it is the only writer to its socket, draining the bounded
//! outbound queue that rooms fan out into. Timeouts (auth, inactivity, token expiry),
//! close requests from other tasks and shutdown all end here with a close code from the
//! registry; the token timers (the `token_expiring` notice and the expiry close) are
//! re-armed whenever `auth` or `refresh` accepts a token. It must never block on another
//! connection: everything it sends elsewhere goes through `Outbound::send` (`try_send`).

mod dispatch;
mod moderation;
mod notifications;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::Instrument;

use crate::audit::Outcome;
use crate::auth::random_hex;
use crate::authz::{self, Access, Permissions, Subject};
use crate::hub::{Admission, Control, Inbox, Membership, Outbound, Registration, Request};
use crate::notify;
use crate::protocol::{self, CloseCode, ErrorCode, Handshake, TokenExpiry, now_ms};
use crate::state::AppState;
use crate::store::RoomRecord;

/// Who an authenticated connection is.
pub struct Identity {
    pub user_id: Arc<str>,
    pub email: Option<Arc<str>>,
    pub roles: Vec<String>,
    pub permissions: Permissions,
    /// The token's `roles` claim, kept to recompute roles when grants change.
    pub claimed_roles: Vec<String>,
    pub session_id: String,
}

impl Identity {
    /// What this identity may do in a room, by the room's current definition.
    pub fn access(&self, room: &RoomRecord) -> Access {
        authz::access(
            &Subject {
                user_id: &self.user_id,
                roles: &self.roles,
                permissions: &self.permissions,
            },
            room,
        )
    }
}

/// Session typestate: only an authenticated connection has an identity to act with.
enum Session {
    /// Not yet authenticated; the admission counts against the client IP.
    Pending(#[expect(dead_code, reason = "held for its Drop")] Admission),
    Authenticated(Identity),
}

/// The connection's own state, owned by its task.
struct Conn {
    state: AppState,
    id: u64,
    connection_id: String,
    ip: IpAddr,
    out: Outbound,
    session: Session,
    rooms: HashMap<String, Membership>,
    /// The rights last told to the client per room, to announce only changes.
    room_access: HashMap<String, Access>,
    /// Live notifications for the user, from the inbox replay after `auth` on.
    notifications: Option<notify::Subscription>,
    /// `exp` of the token the connection lives on (seconds); 0 before `auth`.
    token_expires_at: u64,
    /// Set by `auth` and `refresh`; the run loop re-arms its token timers from it.
    token_timers: Option<TokenTimers>,
    /// The TCP connection's place under the connection caps, given back with the socket.
    _place: Option<crate::accept::ConnHold>,
    /// The `conn` span every log line of this connection is under. Entered around what
    /// can log (frame handling, re-checks, the close), not for the whole task: entering a
    /// span on every poll, once per delivered frame, cost 3 % of the server's CPU in the
    /// 20x500 fan-out.
    span: tracing::Span,
}

/// When the current token's `token_expiring` notice is due and when the socket closes.
#[derive(Clone, Copy)]
struct TokenTimers {
    /// `None` when the notice has already been sent.
    notice: Option<Instant>,
    expiry: Instant,
}

/// Longest timer the connection arms (ten years): tokens and configs may name later
/// instants, which `Instant` arithmetic cannot represent on every platform.
pub(crate) const MAX_TIMER_SECS: u64 = 10 * 365 * 86_400;
/// Frames written per flush when the queue has a backlog.
const WRITE_BATCH: usize = 64;
/// How long a close handshake may take before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The future that runs a connection to completion; spawn it as a task of its own.
///
/// A plain function, not an `async fn`: an async wrapper would keep its arguments (the
/// whole `WebSocketStream`) in its state beside the inner future's copy for the
/// connection's whole life. Every byte of this future is paid per idle connection.
pub fn run<S>(
    ws: WebSocketStream<S>,
    state: AppState,
    ip: IpAddr,
    admission: Admission,
    place: Option<crate::accept::ConnHold>,
) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Every log line of this connection carries its id (the one the client saw in
    // `handshake`), never its token or user id.
    let connection_id = random_hex(16);
    let span = tracing::info_span!("conn", id = %connection_id);
    state
        .metrics
        .connections_opened
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (out, rx, control) = Outbound::channel(state.cfg.connection.outbound_queue);
    let registration = state.registry.register(out.clone());
    // Shutdown closes every registered connection (`Registry::close_all`) after
    // cancelling the token; one registered after that sweep sees the token instead.
    if state.shutdown.is_cancelled() {
        control.close(CloseCode::GoingAway);
    }
    let conn = Conn {
        id: registration.id,
        connection_id,
        ip,
        out,
        session: Session::Pending(admission),
        rooms: HashMap::new(),
        room_access: HashMap::new(),
        notifications: None,
        token_expires_at: 0,
        token_timers: None,
        _place: place,
        span,
        state,
    };
    conn.out.send_text(protocol::encode(
        "handshake",
        &Handshake {
            connection_id: &conn.connection_id,
            server_time: protocol::now_ms(),
            heartbeat_interval_ms: conn.state.cfg.connection.heartbeat_interval_secs * 1000,
        },
    ));
    // Built here, outside the future, so the socket and the pieces of the connection
    // are stored in it once, not also as arguments. The socket is not split: this task
    // alone reads and writes it, and never both at once (a write is awaited inside the
    // branch that took the frame), so split halves would only add their lock to every
    // read and write.
    let io = Io {
        ws,
        rx,
        control,
        registration,
    };
    serve(conn, io)
}

/// The socket and the connection's own ends of its queue and registration.
struct Io<S> {
    ws: WebSocketStream<S>,
    rx: Inbox,
    control: Arc<Control>,
    registration: Registration,
}

async fn serve<S>(mut conn: Conn, io: Io<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Io {
        mut ws,
        mut rx,
        control,
        registration,
    } = io;
    let cfg = conn.state.cfg.clone();
    let inactivity = Duration::from_secs(cfg.connection.inactivity_timeout_secs);
    let start = Instant::now();
    let mut due = Deadlines {
        auth: start + Duration::from_secs(cfg.auth.auth_timeout_secs),
        idle: start + inactivity,
        // Far future until a token arms them.
        expiry: far_future(),
        notice: far_future(),
    };
    // One timer for the four deadlines, set to the earliest. It may fire early (a client
    // frame moves `idle` later without touching it): it then just re-arms. One `Sleep`
    // instead of four keeps three timer polls off every delivered frame and 336 bytes
    // out of every connection's task.
    let timer = sleep_until(due.next(false, true));
    tokio::pin!(timer);
    // The frame taken off the queue and not yet handed to the socket.
    let mut in_hand: Option<Message> = None;
    let mut goodbye = false;

    let close = loop {
        let authenticated = matches!(conn.session, Session::Authenticated(_));
        // Order matters: close requests first; then the client's frames before our
        // outbound backlog, so steady fan-out cannot starve a client's reads (client
        // frames are rate-limited, so the reverse cannot happen).
        tokio::select! {
            biased;
            request = control.request() => match request {
                Request::Close(code) => break Some(code),
                Request::Recheck => {
                    let span = conn.span.clone();
                    let _in = span.enter();
                    conn.reevaluate();
                }
            },
            incoming = ws.next() => {
                let msg = match incoming {
                    None => break None,
                    Some(Err(e)) => break read_error_close(&e),
                    Some(Ok(msg)) => msg,
                };
                // Any client frame is activity (the seed counted only heartbeats).
                due.idle = Instant::now() + inactivity;
                match msg {
                    // Boxed: the dispatcher's state machine (every frame handler) is
                    // several KiB and would otherwise sit inline in every idle
                    // connection's task for its whole life; boxed, it exists only while
                    // a frame is handled.
                    Message::Text(text) => {
                        let span = conn.span.clone();
                        Box::pin(conn.handle_text(text.as_str()).instrument(span)).await
                    }
                    Message::Binary(_) => break Some(CloseCode::UnsupportedData),
                    // tungstenite queued the pong; push it out now, bounded like any write.
                    Message::Ping(_) => match timeout(inactivity, ws.flush()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break None,
                        Err(_) => break Some(CloseCode::InactivityTimeout),
                    },
                    Message::Pong(_) | Message::Frame(_) => {}
                    Message::Close(frame) => {
                        // A normal close (1000, or a close frame without a code) is a
                        // client saying goodbye, as the seed's `disconnect()` does; it
                        // does not reconnect after one, so its session need not wait
                        // for a resume that will not come.
                        goodbye = frame.is_none_or(|f| f.code == WsCloseCode::Normal);
                        break None;
                    }
                }
                if let Some(timers) = conn.token_timers.take() {
                    due.expiry = timers.expiry;
                    due.notice = timers.notice.unwrap_or_else(far_future);
                    let authenticated = matches!(conn.session, Session::Authenticated(_));
                    timer.as_mut().reset(due.next(authenticated, true));
                }
            }
            frame = rx.recv() => {
                // Parked outside the write future, so a frame never vanishes with it: a
                // close that wins the select below while the write waits must still send
                // it ahead of the close frame (an `auth_success` followed at once by the
                // expiry close was lost so when the timers were polled first).
                // Unwrapped without a copy when this queue held the last reference.
                in_hand = Some(Arc::unwrap_or_clone(frame));
                // A peer that stops reading blocks this write; close requests and every
                // timer must still end the connection and take it out of its rooms. The
                // write is polled first: it almost always completes at once, and then
                // the other branches (close request, timer) register no wakers; a close
                // or deadline due meanwhile is seen on the next turn of the loop, after
                // the frame it followed.
                let write = write_batch(&mut ws, &mut in_hand, &mut rx);
                tokio::pin!(write);
                // The timer may fire for a deadline that does not close (the notice, or
                // an early fire); the write goes on, and the timer waits for the next
                // closing deadline only, so a due notice cannot spin this loop.
                let mut rearmed = false;
                let ended = loop {
                    tokio::select! {
                        biased;
                        written = &mut write => break written.err().map(|_| None),
                        code = control.wait() => break Some(Some(code)),
                        () = &mut timer => {
                            if let Some(code) = due.close_at(Instant::now(), authenticated) {
                                break Some(Some(code));
                            }
                            timer.as_mut().reset(due.next(authenticated, false));
                            rearmed = true;
                        }
                    }
                };
                if let Some(close) = ended {
                    break close;
                }
                if rearmed {
                    timer.as_mut().reset(due.next(authenticated, true));
                }
            }
            () = &mut timer => {
                let now = Instant::now();
                if let Some(code) = due.close_at(now, authenticated) {
                    break Some(code);
                }
                // Not sent while a write is blocked (above): the notice can wait for it.
                if due.notice <= now {
                    let span = conn.span.clone();
                    let _in = span.enter();
                    conn.send_token_expiring();
                    due.notice = far_future();
                }
                timer.as_mut().reset(due.next(authenticated, true));
            }
        }
    };

    // Boxed for the same reason as the frame handler: the close handshake's futures
    // are only needed once, at the end.
    let span = conn.span.clone();
    if goodbye {
        let _in = span.enter();
        conn.end_session();
    }
    Box::pin(finish(conn, close, in_hand, ws, rx, registration).instrument(span)).await;
}

/// Leaves the rooms, then sends what is still queued and the close frame (or just
/// closes), each bounded by `CLOSE_GRACE`, and finally gives up the registration.
async fn finish<S>(
    mut conn: Conn,
    close: Option<CloseCode>,
    mut in_hand: Option<Message>,
    mut ws: WebSocketStream<S>,
    mut rx: Inbox,
    registration: Registration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tracing::debug!(close = ?close.map(|c| c.code()), "connection closing");
    if close == Some(CloseCode::SlowConsumer) {
        conn.state
            .metrics
            .slow_consumers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    if close == Some(CloseCode::TokenExpired) {
        conn.audit_expired();
    }

    // Leave rooms first so the others hear `user_disconnected` even if the close
    // handshake below stalls.
    conn.rooms.clear();
    match close {
        Some(code) => {
            let frame = Message::Close(Some(CloseFrame {
                code: WsCloseCode::from(code.code()),
                reason: code.reason().into(),
            }));
            // Frames already queued (an error explaining the close, messages in flight at
            // shutdown) go out before the close frame, within one bounded grace period so
            // a peer that does not read cannot hold the task. A slow consumer gets only
            // the close: its backlog is exactly what it could not take.
            let _ = timeout(CLOSE_GRACE, async {
                if code != CloseCode::SlowConsumer {
                    if let Some(frame) = in_hand.take() {
                        ws.feed(frame).await?;
                    }
                    while let Some(frame) = rx.try_recv() {
                        ws.feed(Arc::unwrap_or_clone(frame)).await?;
                    }
                }
                ws.send(frame).await
            })
            .await;
            // Wait for the peer's close reply so the handshake completes cleanly.
            let _ = timeout(CLOSE_GRACE, async { while ws.next().await.is_some() {} }).await;
        }
        None => {
            let _ = timeout(CLOSE_GRACE, SinkExt::close(&mut ws)).await;
        }
    }
    drop(registration);
}

/// Writes the frame in hand (taken only once the write starts) and up to a batch of
/// queued ones, then flushes.
async fn write_batch<S>(
    sink: &mut S,
    in_hand: &mut Option<Message>,
    rx: &mut Inbox,
) -> Result<(), WsError>
where
    S: futures_util::Sink<Message, Error = WsError> + Unpin,
{
    if let Some(first) = in_hand.take() {
        sink.feed(first).await?;
    }
    for _ in 1..WRITE_BATCH {
        match rx.try_recv() {
            Some(frame) => sink.feed(Arc::unwrap_or_clone(frame)).await?,
            None => break,
        }
    }
    sink.flush().await
}

/// A connection's deadlines, behind its one timer.
struct Deadlines {
    /// Closes an unauthenticated socket (`auth.auth_timeout_secs`).
    auth: Instant,
    /// Closes a socket that sent nothing for `connection.inactivity_timeout_secs`.
    idle: Instant,
    /// Closes the socket when its token expires (plus `auth.expiry_grace_secs`).
    expiry: Instant,
    /// Sends `token_expiring`; does not close.
    notice: Instant,
}

impl Deadlines {
    /// The close due at `now`, if any; the auth deadline counts only before `auth`.
    fn close_at(&self, now: Instant, authenticated: bool) -> Option<CloseCode> {
        if !authenticated && self.auth <= now {
            Some(CloseCode::AuthTimeout)
        } else if self.idle <= now {
            Some(CloseCode::InactivityTimeout)
        } else if self.expiry <= now {
            Some(CloseCode::TokenExpired)
        } else {
            None
        }
    }

    /// The earliest deadline that matters, the notice only when `with_notice`.
    fn next(&self, authenticated: bool, with_notice: bool) -> Instant {
        let mut at = self.idle.min(self.expiry);
        if !authenticated {
            at = at.min(self.auth);
        }
        if with_notice {
            at = at.min(self.notice);
        }
        at
    }
}

/// The instant a disarmed timer is parked at.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(MAX_TIMER_SECS)
}

/// The instant the wall-clock time `at_ms` (ms since the epoch) arrives, or now if it
/// has passed; never further than [`MAX_TIMER_SECS`] away.
fn instant_at(at_ms: u64, now_ms: u64) -> Instant {
    let wait = at_ms.saturating_sub(now_ms).min(MAX_TIMER_SECS * 1000);
    Instant::now() + Duration::from_millis(wait)
}

/// The close code for a read error; `None` when the peer is simply gone. The test echo
/// route (`http::echo`) closes with the same codes.
pub(crate) fn read_error_close(e: &WsError) -> Option<CloseCode> {
    match e {
        WsError::Capacity(_) => Some(CloseCode::MessageTooBig),
        WsError::Utf8(_) => Some(CloseCode::InvalidPayload),
        WsError::Protocol(_) | WsError::AttackAttempt => Some(CloseCode::ProtocolError),
        _ => None,
    }
}

impl Conn {
    /// Makes `expires_at` (the `exp` of a token just accepted by `auth` or `refresh`, in
    /// seconds) the connection's token expiry: the socket closes `auth.expiry_grace_secs`
    /// after it, and `token_expiring` goes out `auth.refresh_notice_secs` before it, at
    /// once if that moment has passed. Call after the answer to the frame is queued, so a
    /// notice due at once follows it. (`auth.leeway_secs` is for clock skew when a token
    /// is verified; it does not extend a live connection.)
    fn arm_token(&mut self, expires_at: u64) {
        let auth = &self.state.cfg.auth;
        let now = now_ms();
        let exp_ms = expires_at.saturating_mul(1000);
        let expiry = instant_at(
            exp_ms.saturating_add(auth.expiry_grace_secs.saturating_mul(1000)),
            now,
        );
        let notice_ms = exp_ms.saturating_sub(auth.refresh_notice_secs.saturating_mul(1000));
        self.token_expires_at = expires_at;
        let notice = if notice_ms <= now {
            self.send_token_expiring();
            None
        } else {
            Some(instant_at(notice_ms, now))
        };
        self.token_timers = Some(TokenTimers { notice, expiry });
    }

    /// `token_expiring {expiresAt}` for the current token.
    fn send_token_expiring(&self) {
        self.out.send_text(protocol::encode(
            "token_expiring",
            &TokenExpiry {
                expires_at: self.token_expires_at.saturating_mul(1000),
            },
        ));
    }

    /// Records that the socket is being closed because its token expired.
    /// Deletes the session after the client closed normally, unless another live
    /// socket resumed it and still uses it. Abnormal ends (a dropped network, a restart,
    /// a server-side close) keep it, so its `wsToken` resumes it until it expires.
    fn end_session(&self) {
        let Session::Authenticated(identity) = &self.session else {
            return;
        };
        let key = format!("session:{}", identity.session_id);
        if self
            .state
            .registry
            .key_held_elsewhere(self.id, &identity.user_id, &key)
        {
            return;
        }
        if let Err(e) = self.state.store.delete_session(&identity.session_id) {
            tracing::warn!(error = %e, "deleting a closed session failed");
        }
    }

    fn audit_expired(&self) {
        let Session::Authenticated(identity) = &self.session else {
            return;
        };
        let ip = self.ip.to_string();
        self.state.audit.record(
            "token_expired",
            Some(&identity.user_id),
            Outcome::Failure,
            &[("connectionId", &self.connection_id), ("clientIp", &ip)],
        );
    }

    fn error(&self, code: ErrorCode) {
        self.out
            .send_text(protocol::error_frame(code, None, None, None));
    }

    fn error_with(
        &self,
        code: ErrorCode,
        field: Option<&'static str>,
        room_id: Option<&str>,
        retry_after_ms: Option<u64>,
    ) {
        self.out
            .send_text(protocol::error_frame(code, field, room_id, retry_after_ms));
    }
}
