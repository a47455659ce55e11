//! `roomgate-ceiling`: the transport ceiling of the benchmarks (issue 5). The least
//! tokio + tungstenite server that speaks enough of the seed protocol for the load tool:
//! `handshake` on connect, any `auth` answered with `auth_success`, `join` and `leave`,
//! `message` broadcast to the room as one frame serialised once and shared by every
//! member's queue, and `heartbeat_response`. It checks no token, keeps nothing, limits
//! nothing and logs nothing: what it costs is the floor of what any gateway doing this
//! work on this machine costs, and roomgate is measured beside it.
//!
//! It keeps the shapes that make the comparison fair: roomgate's small WebSocket
//! buffers, one task per connection that alone writes its socket, a bounded outbound
//! queue per connection (a full one closes the socket with 4008, as roomgate does), and
//! the same `message` frame fields. It is not part of the gateway and must never grow
//! into one.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

/// Frames written per flush when the queue has a backlog (as roomgate).
const WRITE_BATCH: usize = 64;

#[derive(Parser)]
#[command(
    name = "roomgate-ceiling",
    version,
    about = "Transport ceiling for roomgate benchmarks: the minimal protocol, no auth, no persistence, no limits"
)]
struct Cli {
    /// Address to listen on; the bound address is printed as
    /// `roomgate-ceiling listening on http://ADDR`.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Frames queued per connection before it is closed as a slow consumer (roomgate's
    /// `connection.outbound_queue` default).
    #[arg(long, default_value_t = 1024)]
    outbound_queue: usize,
    /// Largest client frame (roomgate's `connection.max_frame_bytes` default).
    #[arg(long, default_value_t = 65536)]
    max_frame_bytes: usize,
    /// Heartbeat period advertised in `handshake` (roomgate's default).
    #[arg(long, default_value_t = 30_000)]
    heartbeat_interval_ms: u64,
}

/// A member of a room as the room sees it: where to put frames, and how to ask the
/// connection to close when its queue is full.
#[derive(Clone)]
struct Peer {
    id: u64,
    tx: mpsc::Sender<Message>,
    kill: Arc<Notify>,
}

#[derive(Default)]
struct Room {
    members: RwLock<Vec<Peer>>,
}

struct Hub {
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    next_conn: AtomicU64,
    next_msg: AtomicU64,
    cfg: Cli,
    ws: WebSocketConfig,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // roomgate's WebSocket settings (src/http/mod.rs), so per-connection memory compares.
    let ws = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(cli.max_frame_bytes.max(64 * 1024) * 4)
        .max_message_size(Some(cli.max_frame_bytes))
        .max_frame_size(Some(cli.max_frame_bytes));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(Hub {
        rooms: Mutex::new(HashMap::new()),
        next_conn: AtomicU64::new(1),
        next_msg: AtomicU64::new(1),
        cfg: cli,
        ws,
    }))
}

async fn serve(hub: Hub) -> anyhow::Result<()> {
    let listener = TcpListener::bind(hub.cfg.listen)
        .await
        .with_context(|| format!("binding {}", hub.cfg.listen))?;
    let addr = listener.local_addr()?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "roomgate-ceiling listening on http://{addr}")?;
    stdout.flush()?;
    let hub = Arc::new(hub);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                // Accept errors (a full file table) are transient: keep serving.
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(connection(stream, hub.clone()));
                }
            }
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// A client frame, borrowed from its text where no unescaping is needed.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    data: Data<'a>,
}

#[derive(Deserialize, Default)]
struct Data<'a> {
    #[serde(rename = "roomId", borrow, default)]
    room_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: D,
    timestamp: u64,
}

/// The `data` of a broadcast `message`: roomgate's fields (no email, as no token is read).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChatMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    room_id: &'a str,
    content: &'a str,
    user_id: &'a str,
    timestamp: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn frame<D: Serialize>(kind: &str, data: D) -> Message {
    let env = Envelope {
        kind,
        data,
        timestamp: now_ms(),
    };
    Message::text(serde_json::to_string(&env).unwrap_or_default())
}

fn error(code: &str, message: &str) -> Message {
    frame("error", json!({"code": code, "message": message}))
}

/// One connection's state, owned by its task.
struct Conn {
    id: u64,
    user_id: String,
    peer: Peer,
    rooms: HashMap<String, Arc<Room>>,
}

async fn connection(stream: TcpStream, hub: Arc<Hub>) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(hub.ws)).await else {
        return;
    };
    let id = hub.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel(hub.cfg.outbound_queue.max(1));
    let kill = Arc::new(Notify::new());
    let mut conn = Conn {
        id,
        user_id: format!("c{id}"),
        peer: Peer {
            id,
            tx,
            kill: kill.clone(),
        },
        rooms: HashMap::new(),
    };
    let hello = frame(
        "handshake",
        json!({
            "connectionId": format!("c{id}"),
            "serverTime": now_ms(),
            "heartbeatIntervalMs": hub.cfg.heartbeat_interval_ms,
        }),
    );
    if ws.send(hello).await.is_ok() {
        run(&mut ws, &mut conn, &hub, &mut rx, &kill).await;
    }
    for room in conn.rooms.values() {
        leave(room, id);
    }
}

async fn run(
    ws: &mut WebSocketStream<TcpStream>,
    conn: &mut Conn,
    hub: &Hub,
    rx: &mut mpsc::Receiver<Message>,
    kill: &Notify,
) {
    loop {
        tokio::select! {
            _ = kill.notified() => {
                let close = CloseFrame { code: CloseCode::Library(4008), reason: "Slow consumer".into() };
                let _ = ws.close(Some(close)).await;
                return;
            }
            out = rx.recv() => {
                let Some(first) = out else { return };
                if ws.feed(first).await.is_err() {
                    return;
                }
                for _ in 1..WRITE_BATCH {
                    let Ok(next) = rx.try_recv() else { break };
                    if ws.feed(next).await.is_err() {
                        return;
                    }
                }
                if ws.flush().await.is_err() {
                    return;
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if let Some(reply) = handle(t.as_str(), conn, hub)
                        && ws.send(reply).await.is_err()
                    {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Handles one client frame; returns the direct reply, if any.
fn handle(text: &str, conn: &mut Conn, hub: &Hub) -> Option<Message> {
    let Ok(frame_in) = serde_json::from_str::<Incoming>(text) else {
        return Some(error("invalid_format", "Invalid message format"));
    };
    let room_id = frame_in.data.room_id.as_deref();
    match (&*frame_in.kind, room_id) {
        ("auth", _) => Some(frame(
            "auth_success",
            json!({
                "wsToken": "ceiling",
                "user": {"userId": conn.user_id, "email": null, "roles": ["user"]},
            }),
        )),
        ("join", Some(room_id)) => {
            if !conn.rooms.contains_key(room_id) {
                let room = hub
                    .rooms
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(room_id.to_string())
                    .or_default()
                    .clone();
                room.members
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(conn.peer.clone());
                conn.rooms.insert(room_id.to_string(), room);
            }
            Some(frame(
                "room_joined",
                json!({"roomId": room_id, "participants": []}),
            ))
        }
        ("leave", Some(room_id)) => {
            let room = conn.rooms.remove(room_id)?;
            leave(&room, conn.id);
            Some(frame("room_left", json!({"roomId": room_id})))
        }
        ("message", Some(room_id)) => {
            let Some(room) = conn.rooms.get(room_id) else {
                return Some(error("not_member", "Not a member of the room"));
            };
            let id = hub.next_msg.fetch_add(1, Ordering::Relaxed).to_string();
            let now = now_ms();
            let out = frame(
                "message",
                ChatMessage {
                    id: &id,
                    kind: "chat_message",
                    room_id,
                    content: frame_in.data.content.as_deref().unwrap_or_default(),
                    user_id: &conn.user_id,
                    timestamp: now,
                },
            );
            // One serialisation; each member's queue gets a refcounted clone.
            for peer in room
                .members
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
            {
                if let Err(mpsc::error::TrySendError::Full(_)) = peer.tx.try_send(out.clone()) {
                    peer.kill.notify_one();
                }
            }
            None
        }
        ("heartbeat", _) => Some(frame("heartbeat_response", json!({"serverTime": now_ms()}))),
        ("join" | "leave" | "message", None) => {
            Some(error("invalid_field", "Invalid message structure"))
        }
        _ => Some(error("unknown_type", "Unknown message type")),
    }
}

fn leave(room: &Room, id: u64) {
    room.members
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|p| p.id != id);
}
