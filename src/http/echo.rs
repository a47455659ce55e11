//! `GET /test/echo`: a WebSocket that sends every text and binary message back, for
//! protocol conformance suites (Autobahn through kosoku) that must drive the server's
//! WebSocket layer without roomgate's JSON protocol in the way. It exists only when the
//! test-only setting `test_echo` is on (production mode refuses to start with it), and it
//! is served exactly as `/ws` is: the same accept loop and connection caps, the same
//! upgrade (`switch_protocols`) and tungstenite settings (`ws_config`), the same close
//! codes for read errors. It must never touch rooms, sessions, the store or any token.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_util::sync::CancellationToken;
use warp::Filter;
use warp::filters::BoxedFilter;

use super::{HttpError, Refused, Socket, UpgradeSlot};
use crate::accept::ConnHold;
use crate::protocol::CloseCode;
use crate::state::AppState;

/// How long each half of a close handshake may take, as on `/ws`.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The route; it answers `not_found` as any unknown path does unless `test_echo` is on.
pub fn route(state: AppState) -> BoxedFilter<(warp::reply::Response,)> {
    warp::path!("test" / "echo")
        .and(warp::get())
        .and(warp::any().map(move || state.clone()))
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<UpgradeSlot>())
        .and(warp::ext::optional::<ConnHold>())
        .and_then(upgrade)
        .boxed()
}

async fn upgrade(
    state: AppState,
    headers: HeaderMap,
    slot: Option<UpgradeSlot>,
    hold: Option<ConnHold>,
) -> Result<warp::reply::Response, warp::Rejection> {
    if !state.cfg.test_echo {
        return Err(warp::reject::not_found());
    }
    let on_upgrade = super::upgrade_key(&headers).and_then(|key| {
        let on = slot.and_then(|s| s.0.lock().ok().and_then(|mut g| g.take()))?;
        Some((key, on))
    });
    let Some((key, on_upgrade)) = on_upgrade else {
        return Err(warp::reject::custom(Refused(HttpError::UpgradeRequired)));
    };
    let shutdown = state.shutdown.clone();
    Ok(super::switch_protocols(
        &key,
        &state.tasks,
        on_upgrade,
        super::ws_config(&state.cfg.connection),
        move |ws| echo(ws, shutdown, hold),
    ))
}

/// Echoes until the peer closes, a read fails or shutdown begins, then closes as `/ws`
/// does: with the registry's code after a read error or at shutdown, or by completing the
/// peer's close handshake.
async fn echo(mut ws: Socket, shutdown: CancellationToken, hold: Option<ConnHold>) {
    let close = loop {
        let incoming = tokio::select! {
            _ = shutdown.cancelled() => break Some(CloseCode::GoingAway),
            incoming = ws.next() => incoming,
        };
        let msg = match incoming {
            None => break None,
            Some(Err(e)) => break crate::conn::read_error_close(&e),
            Some(Ok(msg)) => msg,
        };
        let sent = match msg {
            Message::Text(_) | Message::Binary(_) => ws.send(msg).await,
            // tungstenite queued the pong; push it out now.
            Message::Ping(_) => ws.flush().await,
            Message::Pong(_) | Message::Frame(_) => Ok(()),
            // tungstenite queued the reply to the peer's close; `close` below sends it.
            Message::Close(_) => break None,
        };
        if sent.is_err() {
            break None;
        }
    };
    match close {
        Some(code) => {
            let frame = Message::Close(Some(CloseFrame {
                code: WsCloseCode::from(code.code()),
                reason: code.reason().into(),
            }));
            let _ = timeout(CLOSE_GRACE, ws.send(frame)).await;
            // Wait for the peer's close reply so the handshake completes cleanly.
            let _ = timeout(CLOSE_GRACE, async { while ws.next().await.is_some() {} }).await;
        }
        None => {
            let _ = timeout(CLOSE_GRACE, SinkExt::close(&mut ws)).await;
        }
    }
    // The TCP connection's place under the caps is given back with the socket.
    drop(ws);
    drop(hold);
}
