//! Hostile and malformed input: every bad text frame is answered with its error code and
//! leaves the socket usable; bad frames at the WebSocket level close with the right code;
//! and after all of it the server still serves and nothing stored is damaged.

mod common;

use std::time::Duration;

use common::*;
use roomgate::store::Store;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// One bad frame and the reply it must get.
struct Case {
    name: &'static str,
    frame: String,
    code: &'static str,
    message: &'static str,
    /// `data.field` for `invalid_field`.
    field: Option<&'static str>,
}

fn case(name: &'static str, frame: &str, code: &'static str, message: &'static str) -> Case {
    Case {
        name,
        frame: frame.to_string(),
        code,
        message,
        field: None,
    }
}

fn field_case(name: &'static str, frame: &str, field: &'static str) -> Case {
    Case {
        name,
        frame: frame.to_string(),
        code: "invalid_field",
        message: "Invalid message structure",
        field: Some(field),
    }
}

/// `levels` nested arrays inside `data` of an otherwise valid frame.
fn nested_frame(levels: usize) -> String {
    format!(
        r#"{{"type":"message","data":{{"roomId":"r","content":"x","deep":{}{}}},"timestamp":1}}"#,
        "[".repeat(levels),
        "]".repeat(levels)
    )
}

fn cases() -> Vec<Case> {
    const STRUCT: &str = "Invalid message structure";
    vec![
        case("non-JSON", "{", "invalid_format", "Invalid message format"),
        case(
            "plain text",
            "hello there",
            "invalid_format",
            "Invalid message format",
        ),
        case("JSON array", "[1,2,3]", "invalid_structure", STRUCT),
        case("JSON null", "null", "invalid_structure", STRUCT),
        case(
            "missing type",
            r#"{"data":{},"timestamp":1}"#,
            "invalid_structure",
            STRUCT,
        ),
        case(
            "numeric type",
            r#"{"type":7,"data":{},"timestamp":1}"#,
            "invalid_structure",
            STRUCT,
        ),
        case(
            "data not object",
            r#"{"type":"heartbeat","data":"x","timestamp":1}"#,
            "invalid_structure",
            STRUCT,
        ),
        case(
            "data array",
            r#"{"type":"join","data":["roomId"],"timestamp":1}"#,
            "invalid_structure",
            STRUCT,
        ),
        case(
            "missing timestamp",
            r#"{"type":"heartbeat","data":{}}"#,
            "invalid_structure",
            STRUCT,
        ),
        case(
            "string timestamp",
            r#"{"type":"heartbeat","data":{},"timestamp":"1"}"#,
            "invalid_structure",
            STRUCT,
        ),
        case(
            "unknown type",
            r#"{"type":"teleport","data":{},"timestamp":1}"#,
            "unknown_type",
            "Unknown message type",
        ),
        field_case(
            "presence without roomId",
            r#"{"type":"presence","data":{},"timestamp":1}"#,
            "roomId",
        ),
        field_case(
            "kick naming nobody",
            r#"{"type":"kick","data":{"roomId":"r"},"timestamp":1}"#,
            "connectionId",
        ),
        field_case(
            "kick naming a user and a connection",
            r#"{"type":"kick","data":{"roomId":"r","userId":"u","connectionId":"c"},"timestamp":1}"#,
            "userId",
        ),
        field_case(
            "kick banning a connection",
            r#"{"type":"kick","data":{"roomId":"r","connectionId":"c","ban":true},"timestamp":1}"#,
            "ban",
        ),
        field_case(
            "kick with a string ban",
            r#"{"type":"kick","data":{"roomId":"r","userId":"u","ban":"yes"},"timestamp":1}"#,
            "ban",
        ),
        field_case(
            "room_acl with a non-list read",
            r#"{"type":"room_acl","data":{"roomId":"r","read":"user"},"timestamp":1}"#,
            "read",
        ),
        field_case(
            "room_acl with a numeric role",
            r#"{"type":"room_acl","data":{"roomId":"r","write":[1]},"timestamp":1}"#,
            "write",
        ),
        field_case(
            "room_acl grant without userId",
            r#"{"type":"room_acl","data":{"roomId":"r","grant":{"read":true}},"timestamp":1}"#,
            "grant",
        ),
        field_case(
            "room_acl with an empty ban",
            r#"{"type":"room_acl","data":{"roomId":"r","ban":""},"timestamp":1}"#,
            "ban",
        ),
        field_case(
            "join without roomId",
            r#"{"type":"join","data":{},"timestamp":1}"#,
            "roomId",
        ),
        field_case(
            "join with numeric roomId",
            r#"{"type":"join","data":{"roomId":42},"timestamp":1}"#,
            "roomId",
        ),
        field_case(
            "message without content",
            r#"{"type":"message","data":{"roomId":"r"},"timestamp":1}"#,
            "content",
        ),
        Case {
            name: "100 nested arrays",
            frame: nested_frame(100),
            code: "nesting_too_deep",
            message: "Invalid message format",
            field: None,
        },
        Case {
            name: "deep objects",
            frame: format!(
                r#"{{"type":"heartbeat","data":{}1{},"timestamp":1}}"#,
                r#"{"a":"#.repeat(40),
                "}".repeat(40)
            ),
            code: "nesting_too_deep",
            message: "Invalid message format",
            field: None,
        },
    ]
}

/// Sends one bad frame and checks the reply.
async fn check_case(c: &mut Client, case: &Case) {
    c.send_text(&case.frame).await;
    let v = c.recv().await;
    assert_eq!(
        v["type"], "error",
        "{}: expected an error, got {v}",
        case.name
    );
    let d = &v["data"];
    assert_eq!(d["code"], case.code, "{}: wrong code in {v}", case.name);
    assert_eq!(
        d["message"], case.message,
        "{}: wrong message in {v}",
        case.name
    );
    match case.field {
        Some(f) => assert_eq!(d["field"], f, "{}: wrong field in {v}", case.name),
        None => assert!(
            d.get("field").is_none(),
            "{}: unexpected field in {v}",
            case.name
        ),
    }
}

/// Runs the whole table on a fresh socket: before auth, then authenticated, checking
/// after every bad frame that the socket still carries a chat message. Returns the
/// contents it sent to `room`, in order.
async fn run_table(s: &TestServer, user: &str, room: &str) -> Vec<String> {
    let cases = cases();
    let mut c = s.client().await;
    for case in &cases {
        check_case(&mut c, case).await;
    }
    // Unauthenticated bad input did not break authentication or joining.
    let ok = c.auth(&token(user)).await;
    assert_eq!(ok["user"]["userId"], user);
    c.join(room).await;

    let mut sent = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        check_case(&mut c, case).await;
        let content = format!("{user} after {i}: {}", case.name);
        c.say(room, &content).await;
        // The very next frame is the echo: the bad frame got exactly one reply.
        let m = c.recv().await;
        assert_eq!(m["type"], "message", "after {}: {m}", case.name);
        assert_eq!(
            m["data"]["content"],
            content.as_str(),
            "after {}",
            case.name
        );
        sent.push(content);
    }
    // The same shape nested under the limit passes decoding: it is the depth, not the
    // shape, that the nesting cases are refused for.
    c.send_text(&nested_frame(3)).await;
    let m = c.recv().await;
    assert_eq!(m["type"], "error", "{m}");
    assert_eq!(
        m["data"]["code"], "not_member",
        "shallow nesting must pass decoding: {m}"
    );
    c.send("heartbeat", json!({})).await;
    c.expect("heartbeat_response").await;
    // Joining another room still works after all of it.
    c.join(&format!("{room}-2")).await;
    c.close().await;
    sent
}

fn no_limits(cfg: &mut roomgate::config::Config) {
    cfg.rate_limits.enabled = false;
}

#[tokio::test]
async fn every_bad_frame_gets_its_error_and_the_socket_keeps_working() {
    let s = TestServer::start_with(no_limits).await;
    let sent = run_table(&s, "alice", "table").await;
    assert_eq!(sent.len(), cases().len());
}

/// A binary frame closes with 1003.
async fn binary_closes_1003(s: &TestServer) {
    let mut c = s.authed("binary").await;
    c.send_raw(Message::binary(b"{\"type\":\"heartbeat\"}".to_vec()))
        .await;
    let closed = c.expect_close().await;
    assert_eq!(closed.code, 1003, "{closed:?}");
}

/// A frame of exactly `max_frame_bytes` is read; one byte more closes with 1009.
async fn oversize_closes_1009(s: &TestServer) {
    let max = s.server().state().cfg.connection.max_frame_bytes;
    let mut c = s.authed("big").await;
    c.send_text(&"x".repeat(max)).await;
    let e = c.expect_error("invalid_format").await;
    assert_eq!(e["message"], "Invalid message format");
    c.send_text(&"x".repeat(max + 1)).await;
    let closed = c.expect_close().await;
    assert_eq!(closed.code, 1009, "{closed:?}");
}

#[tokio::test]
async fn binary_frame_closes_with_1003() {
    let s = TestServer::start_with(no_limits).await;
    binary_closes_1003(&s).await;
    // Only that socket ended.
    let mut other = s.authed("other").await;
    other.send("heartbeat", json!({})).await;
    other.expect("heartbeat_response").await;
}

#[tokio::test]
async fn text_frame_over_max_frame_bytes_closes_with_1009() {
    let s = TestServer::start_with(no_limits).await;
    oversize_closes_1009(&s).await;
    let mut other = s.authed("other").await;
    other.send("heartbeat", json!({})).await;
    other.expect("heartbeat_response").await;
}

// ---- raw WebSocket client, for frames tungstenite refuses to send ----

/// A socket upgraded by hand; `buf` holds bytes read past the HTTP response.
struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// One server frame.
struct RawFrame {
    opcode: u8,
    payload: Vec<u8>,
}

/// The bytes of a client frame: `fin` bit, opcode, masked or not.
fn client_frame(fin: bool, opcode: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => frame.push(mask_bit | n as u8),
        n if n <= u16::MAX as usize => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        frame.extend_from_slice(payload);
    }
    frame
}

impl RawWs {
    async fn connect(s: &TestServer) -> RawWs {
        RawWs::connect_with(s, &[]).await
    }

    /// Upgrades, writing `early` (client frames) in the same write as the request, as a
    /// client may that does not wait for the 101.
    async fn connect_with(s: &TestServer, early: &[u8]) -> RawWs {
        let mut stream = TcpStream::connect(s.addr).await.expect("tcp connect");
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            s.addr
        );
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(early);
        stream.write_all(&bytes).await.expect("write upgrade");
        let mut buf = Vec::new();
        let end = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    return i + 4;
                }
                let mut chunk = [0u8; 1024];
                let n = stream.read(&mut chunk).await.expect("read response");
                assert!(n > 0, "server closed during the upgrade");
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("upgrade response in time");
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        // RFC 6455's example key has this accept value.
        assert!(
            head.to_ascii_lowercase()
                .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );
        let rest = buf.split_off(end);
        RawWs { stream, buf: rest }
    }

    /// Writes a final, masked client frame.
    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        self.send_raw_frame(true, opcode, true, payload).await;
    }

    /// Writes any client frame: `fin` bit, opcode, masked or not.
    async fn send_raw_frame(&mut self, fin: bool, opcode: u8, masked: bool, payload: &[u8]) {
        let frame = client_frame(fin, opcode, masked, payload);
        self.stream.write_all(&frame).await.expect("write frame");
    }

    async fn fill(&mut self, want: usize) {
        while self.buf.len() < want {
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await.expect("read frame");
            assert!(n > 0, "connection ended without a close frame");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads one unmasked server frame.
    async fn read_frame(&mut self) -> RawFrame {
        self.fill(2).await;
        let opcode = self.buf[0] & 0x0f;
        assert_eq!(self.buf[1] & 0x80, 0, "server frames must not be masked");
        let (len, header) = match self.buf[1] & 0x7f {
            126 => {
                self.fill(4).await;
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 => {
                self.fill(10).await;
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        self.fill(header + len).await;
        let payload = self.buf[header..header + len].to_vec();
        self.buf.drain(..header + len);
        RawFrame { opcode, payload }
    }

    /// Reads frames until a close frame; returns its code and reason.
    async fn expect_close(&mut self) -> (u16, String) {
        tokio::time::timeout(WAIT, async {
            loop {
                let f = self.read_frame().await;
                if f.opcode == 0x8 {
                    assert!(f.payload.len() >= 2, "close frame without a code");
                    let code = u16::from_be_bytes([f.payload[0], f.payload[1]]);
                    let reason = String::from_utf8_lossy(&f.payload[2..]).to_string();
                    return (code, reason);
                }
            }
        })
        .await
        .expect("close frame in time")
    }
}

/// A text frame whose payload is not UTF-8 closes with 1007.
async fn invalid_utf8_closes_1007(s: &TestServer) {
    let mut ws = RawWs::connect(s).await;
    let hs = ws.read_frame().await;
    assert_eq!(hs.opcode, 0x1, "first frame is the text handshake");
    let v: Value = serde_json::from_slice(&hs.payload).expect("handshake JSON");
    assert_eq!(v["type"], "handshake");
    // Control: a valid text frame on this raw socket gets a normal reply.
    ws.send_frame(0x1, br#"{"type":"heartbeat","data":{},"timestamp":1}"#)
        .await;
    let reply = ws.read_frame().await;
    assert_eq!(reply.opcode, 0x1);
    let v: Value = serde_json::from_slice(&reply.payload).expect("reply JSON");
    assert_eq!(v["data"]["code"], "not_authenticated", "{v}");

    ws.send_frame(0x1, &[0xC3, 0x28]).await;
    let (code, reason) = ws.expect_close().await;
    assert_eq!(code, 1007, "reason {reason:?}");
}

/// Frames a client writes together with its upgrade request (without waiting for the 101)
/// are not lost: hyper has already read them off the socket with the request, and the
/// upgraded stream must replay them ahead of what follows. (A server that took the TCP
/// socket back out of hyper's `Upgraded` without them would fail here.)
#[tokio::test]
async fn frames_sent_with_the_upgrade_request_are_not_lost() {
    let s = TestServer::start_with(no_limits).await;
    let mut early = Vec::new();
    for ts in 1..=3 {
        let text = format!(r#"{{"type":"heartbeat","data":{{}},"timestamp":{ts}}}"#);
        early.extend(client_frame(true, 0x1, true, text.as_bytes()));
    }
    let mut ws = RawWs::connect_with(&s, &early).await;
    let hs = ws.read_frame().await;
    let v: Value = serde_json::from_slice(&hs.payload).expect("handshake JSON");
    assert_eq!(v["type"], "handshake");
    // Each of the three early heartbeats is answered; none was dropped with hyper's buffer.
    for _ in 1..=3 {
        let reply = tokio::time::timeout(WAIT, ws.read_frame())
            .await
            .expect("a reply to an early frame");
        let v: Value = serde_json::from_slice(&reply.payload).expect("reply JSON");
        assert_eq!(v["data"]["code"], "not_authenticated", "{v}");
    }
    // The socket is still a working WebSocket after them.
    ws.send_frame(0x1, &[0xC3, 0x28]).await;
    let (code, _) = ws.expect_close().await;
    assert_eq!(code, 1007);
}

#[tokio::test]
async fn text_frame_with_invalid_utf8_closes_with_1007() {
    let s = TestServer::start_with(no_limits).await;
    invalid_utf8_closes_1007(&s).await;
    let mut other = s.authed("other").await;
    other.send("heartbeat", json!({})).await;
    other.expect("heartbeat_response").await;
}

/// A raw socket past its handshake frame.
async fn raw_after_handshake(s: &TestServer) -> RawWs {
    let mut ws = RawWs::connect(s).await;
    let hs = ws.read_frame().await;
    assert_eq!(hs.opcode, 0x1, "first frame is the text handshake");
    ws
}

/// A message sent in fragments that are each under the frame limit but together over
/// the message limit closes with 1009, like one big frame.
async fn fragmented_oversize_closes_1009(s: &TestServer) {
    let max = s.server().state().cfg.connection.max_frame_bytes;
    let mut ws = raw_after_handshake(s).await;
    let part = vec![b'x'; max / 2 + 1];
    ws.send_raw_frame(false, 0x1, true, &part).await;
    ws.send_raw_frame(false, 0x0, true, &part).await;
    ws.send_raw_frame(true, 0x0, true, b"x").await;
    let (code, reason) = ws.expect_close().await;
    assert_eq!(code, 1009, "reason {reason:?}");
}

/// Frames that break RFC 6455 close with 1002.
async fn protocol_violations_close_1002(s: &TestServer) {
    let heartbeat = br#"{"type":"heartbeat","data":{},"timestamp":1}"#;
    // Client frames must be masked.
    let mut ws = raw_after_handshake(s).await;
    ws.send_raw_frame(true, 0x1, false, heartbeat).await;
    let (code, reason) = ws.expect_close().await;
    assert_eq!(code, 1002, "unmasked: reason {reason:?}");
    // Opcode 0x3 is reserved.
    let mut ws = raw_after_handshake(s).await;
    ws.send_raw_frame(true, 0x3, true, b"?").await;
    let (code, reason) = ws.expect_close().await;
    assert_eq!(code, 1002, "reserved opcode: reason {reason:?}");
    // A continuation with nothing to continue.
    let mut ws = raw_after_handshake(s).await;
    ws.send_raw_frame(true, 0x0, true, heartbeat).await;
    let (code, reason) = ws.expect_close().await;
    assert_eq!(code, 1002, "stray continuation: reason {reason:?}");
}

#[tokio::test]
async fn fragmented_message_over_the_limit_closes_with_1009() {
    let s = TestServer::start_with(no_limits).await;
    // Control: a fragmented message under the limit is reassembled and handled.
    let mut ws = raw_after_handshake(&s).await;
    ws.send_raw_frame(false, 0x1, true, br#"{"type":"heartbeat","#)
        .await;
    ws.send_raw_frame(true, 0x0, true, br#""data":{},"timestamp":1}"#)
        .await;
    let reply = ws.read_frame().await;
    let v: Value = serde_json::from_slice(&reply.payload).expect("reply JSON");
    assert_eq!(v["data"]["code"], "not_authenticated", "{v}");

    fragmented_oversize_closes_1009(&s).await;
}

#[tokio::test]
async fn websocket_protocol_violations_close_with_1002() {
    let s = TestServer::start_with(no_limits).await;
    protocol_violations_close_1002(&s).await;
    let mut other = s.authed("other").await;
    other.send("heartbeat", json!({})).await;
    other.expect("heartbeat_response").await;
}

/// `GET /healthz` over a plain socket; returns (status line, body).
async fn healthz(s: &TestServer) -> (String, String) {
    let mut stream = TcpStream::connect(s.addr).await.expect("tcp connect");
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        s.addr
    );
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut out))
        .await
        .expect("healthz answers in time")
        .expect("read healthz");
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.lines().next().unwrap_or("").to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test]
async fn after_all_bad_input_the_server_serves_and_the_store_is_intact() {
    let s = TestServer::start_with(no_limits).await;

    // A bystander in the room the bad-input socket writes to.
    let mut bystander = s.authed("bystander").await;
    bystander.join("table").await;

    let sent = run_table(&s, "alice", "table").await;
    binary_closes_1003(&s).await;
    oversize_closes_1009(&s).await;
    invalid_utf8_closes_1007(&s).await;
    // Several bad sockets at once, interleaved.
    fragmented_oversize_closes_1009(&s).await;
    protocol_violations_close_1002(&s).await;
    tokio::join!(
        binary_closes_1003(&s),
        oversize_closes_1009(&s),
        invalid_utf8_closes_1007(&s),
        fragmented_oversize_closes_1009(&s),
        protocol_violations_close_1002(&s),
    );

    // The bystander saw every message, in order, and nothing else went wrong for it.
    let mut seen = Vec::new();
    while seen.len() < sent.len() {
        let m = bystander.expect("message").await;
        seen.push(m["data"]["content"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, sent);
    bystander.say("table", "bystander still here").await;
    assert_eq!(
        bystander.expect("message").await["data"]["content"],
        "bystander still here"
    );

    let (status, body) = healthz(&s).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let body: Value = serde_json::from_str(&body).expect("healthz JSON");
    assert_eq!(body["status"], "ok");

    // A brand-new client works end to end.
    let mut fresh = s.authed("fresh").await;
    fresh.join("table").await;
    fresh.say("table", "fresh message").await;
    assert_eq!(
        fresh.expect("message").await["data"]["content"],
        "fresh message"
    );
    bystander.close().await;
    fresh.close().await;

    let dir = tokio::time::timeout(Duration::from_secs(20), s.stop())
        .await
        .expect("server stops");
    let store = Store::open(dir.path(), &Default::default()).expect("store reopens");
    let rooms = store.rooms().expect("rooms decode");
    let ids: Vec<&str> = rooms.iter().map(|r| r.id.as_str()).collect();
    assert!(ids.contains(&"table"), "{ids:?}");
    assert!(ids.contains(&"table-2"), "{ids:?}");
    for r in &rooms {
        store.history(&r.id).expect("history decodes");
    }
    let history = store.history("table").expect("history decodes");
    let contents: Vec<&str> = history.iter().map(|h| h.content.as_str()).collect();
    let mut expected: Vec<&str> = sent.iter().map(String::as_str).collect();
    expected.push("bystander still here");
    expected.push("fresh message");
    assert_eq!(contents, expected);
    let seqs: Vec<u64> = history.iter().map(|h| h.seq).collect();
    assert_eq!(seqs, (1..=expected.len() as u64).collect::<Vec<_>>());
    assert!(history.iter().all(|h| h.room_id == "table"));
}

/// Issue 16: a frame naming a key twice, in the envelope or inside `data`, is refused
/// with `invalid_structure` and not acted on (serde_json alone kept the last key, so
/// `{"type":"auth","type":"join",...}` joined the room while a proxy reading the first
/// key saw an `auth`). Each refusal is followed by a valid frame whose answer shows what
/// did or did not happen, so no silence has to be waited out.
#[tokio::test]
async fn a_repeated_key_is_refused_and_not_acted_on() {
    let s = TestServer::start().await;
    let mut bob = s.authed("bob").await;
    bob.join("dup").await;
    let mut alice = s.authed("alice").await;

    // `type` twice: a join only if the last key wins.
    alice
        .send_text(
            r#"{"type":"auth","type":"join","data":{"roomId":"dup","token":"x"},"timestamp":1}"#,
        )
        .await;
    let e = alice.expect_error("invalid_structure").await;
    assert_eq!(e["message"], "Invalid message structure");
    alice.send("presence", json!({"roomId": "dup"})).await;
    let p = alice.expect("presence").await;
    assert_eq!(p["data"]["members"].as_array().unwrap().len(), 1, "{p}");
    assert_eq!(p["data"]["members"][0]["userId"], "bob");

    // A key repeated inside `data`: the message is not stored or broadcast.
    alice.join("dup").await;
    assert_eq!(bob.expect("user_joined").await["data"]["userId"], "alice");
    alice
        .send_text(r#"{"type":"message","data":{"roomId":"dup","content":"seen by a filter","content":"acted on"},"timestamp":1}"#)
        .await;
    alice.expect_error("invalid_structure").await;
    // Deeper still, and with the same value twice.
    alice
        .send_text(r#"{"type":"room_acl","data":{"roomId":"dup","grant":{"userId":"alice","admin":true,"admin":true}},"timestamp":1}"#)
        .await;
    alice.expect_error("invalid_structure").await;
    alice.say("dup", "after").await;
    let m = bob.expect("message").await;
    assert_eq!(
        m["data"]["content"], "after",
        "the refused message was delivered: {m}"
    );
    assert_eq!(m["data"]["seq"], 1, "the refused message was stored: {m}");

    // An unauthenticated socket gets the same answer, and stays usable.
    let mut c = s.client().await;
    c.send_text(r#"{"type":"auth","data":{"token":"a","token":"b"},"timestamp":1}"#)
        .await;
    c.expect_error("invalid_structure").await;
    let ok = c.auth(&token("carol")).await;
    assert_eq!(ok["user"]["userId"], "carol");
}
