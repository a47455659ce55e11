//! criterion micro-benchmarks of roomgate's per-message and per-connection hot paths
//! (issue 5), through the library's public API only: decoding and validating a client
//! frame, verifying a client JWT, building the broadcast frame of a chat message, and
//! appending history to the store. `cargo bench` runs them (`cargo bench -- decode` for
//! one group); `cargo test` never does. They explain the end-to-end figures of
//! `scripts/bench.sh`; they are not targets in themselves.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use roomgate::auth::Verifier;
use roomgate::config::Config;
use roomgate::protocol::{self, ChatMessage};
use roomgate::store::{HistoryRecord, Store};
use serde_json::json;

const JWT_SECRET: &str = "bench-jwt-secret-0123456789abcdef0123456789";
const WS_SECRET: &str = "bench-ws-secret-0123456789abcdef01234567890";
/// A typical chat line, well under `security.max_message_length`.
const CONTENT: &str =
    "rgb:12:34567:8901234 the quick brown fox jumps over the lazy dog, twice over";

fn token(secret: &str) -> String {
    let now = protocol::now_ms() / 1000;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "user-1234", "email": "user-1234@example.com", "iat": now, "exp": now + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("signing a token")
}

fn decode(c: &mut Criterion) {
    let depth = Config::default().connection.max_json_depth;
    let frames = [
        (
            "message",
            json!({"type": "message", "data": {"roomId": "bench-room-1", "content": CONTENT}, "timestamp": 1_700_000_000_000u64}).to_string(),
        ),
        (
            "join",
            json!({"type": "join", "data": {"roomId": "bench-room-1"}, "timestamp": 1_700_000_000_000u64}).to_string(),
        ),
        (
            "auth",
            json!({"type": "auth", "data": {"token": token(JWT_SECRET)}, "timestamp": 1_700_000_000_000u64}).to_string(),
        ),
        (
            "heartbeat",
            r#"{"type":"heartbeat","data":{},"timestamp":1700000000000}"#.to_string(),
        ),
        // Refused by the depth check before the parser sees it.
        ("too_deep", format!("{}{}", "[".repeat(1000), "]".repeat(1000))),
    ];
    let mut g = c.benchmark_group("protocol::decode");
    for (name, text) in &frames {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| protocol::decode(black_box(text), depth))
        });
    }
    g.finish();
}

fn verify(c: &mut Criterion) {
    let cfg = Config::default();
    let verifier =
        Verifier::new(&cfg, JWT_SECRET.as_bytes(), WS_SECRET.as_bytes()).expect("a verifier");
    let good = token(JWT_SECRET);
    assert!(
        verifier.verify(&good).is_ok(),
        "the benchmark token verifies"
    );
    let forged = token("some-other-secret-0123456789abcdef0123456789");
    assert!(verifier.verify(&forged).is_err());
    let mut g = c.benchmark_group("auth::Verifier::verify");
    g.bench_function("hs256_valid", |b| {
        b.iter(|| verifier.verify(black_box(&good)))
    });
    // A forged token is tried against the wsToken key too before it is refused.
    g.bench_function("hs256_forged", |b| {
        b.iter(|| verifier.verify(black_box(&forged)))
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let msg = ChatMessage {
        id: "0193a5e8c7d54f3b",
        kind: "chat_message",
        room_id: "bench-room-1",
        content: CONTENT,
        user_id: "user-1234",
        email: Some("user-1234@example.com"),
        timestamp: 1_700_000_000_000,
        client_msg_id: Some("c-42"),
        system: false,
        seq: Some(42),
        epoch: Some(7),
    };
    let mut g = c.benchmark_group("protocol::encode");
    // Built once per broadcast, whatever the room's size.
    g.bench_function("chat_message", |b| {
        b.iter(|| protocol::encode("message", black_box(&msg)))
    });
    g.finish();
}

fn history(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cfg = Config::default();
    let store = Store::open(dir.path(), &cfg.store).expect("the store opens");
    let keep = cfg.rooms.message_history;
    let record = |seq: u64| HistoryRecord {
        room_id: "bench-room-1".into(),
        seq,
        id: format!("{seq:016x}"),
        content: CONTENT.into(),
        user_id: "user-1234".into(),
        email: Some("user-1234@example.com".into()),
        timestamp: 1_700_000_000_000 + seq,
        client_msg_id: None,
        system: false,
    };
    let mut seq = 0u64;
    let mut g = c.benchmark_group("store::append_history");
    // Past `keep` messages every append also trims the room: the steady state. The
    // untrimmed variant (a `keep` never reached) separates the insert from the trim.
    for (batch, keep, name) in [
        (1u64, keep, "batch_of_1"),
        (64, keep, "batch_of_64"),
        (64, u64::MAX, "batch_of_64_untrimmed"),
    ] {
        g.throughput(Throughput::Elements(batch));
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let records: Vec<HistoryRecord> = (seq + 1..=seq + batch).map(record).collect();
                    seq += batch;
                    records
                },
                |records| {
                    let with_keep: Vec<(&HistoryRecord, u64)> =
                        records.iter().map(|r| (r, keep)).collect();
                    store.append_history(&with_keep).expect("append")
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, decode, verify, encode, history);
criterion_main!(benches);
