//! The accept loop's own limits: slow-header clients dropped on time, oversized request
//! heads refused with 431, and the per-IP and global TCP connection caps (with trusted
//! proxies exempt from the per-IP one).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Reads until the server closes; returns what it sent, or None if it stayed open `wait`.
async fn read_until_closed(s: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    match tokio::time::timeout(wait, s.read_to_end(&mut buf)).await {
        Ok(_) => Some(buf),
        Err(_) => None,
    }
}

/// A TCP connection from the loopback address `from` (127.0.0.x).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    sock.connect(to).await.unwrap()
}

/// Whether a fresh connection from `from` is served (a health check answers 200).
async fn served(from: &str, to: SocketAddr) -> bool {
    let mut s = connect_from(from, to).await;
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    match read_until_closed(&mut s, Duration::from_secs(5)).await {
        Some(buf) => String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
        None => false,
    }
}

#[tokio::test]
async fn slow_header_clients_are_dropped_on_time() {
    let s = TestServer::start_with(|c| c.connection.header_read_timeout_secs = 1).await;
    // One that sends half a request and stops, and one that trickles a byte at a time.
    let mut stalled = TcpStream::connect(s.addr).await.unwrap();
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let trickle = tokio::spawn({
        let addr = s.addr;
        async move {
            let mut t = TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            for b in b"GET /healthz HTTP/1.1\r\nHost: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" {
                if t.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = read_until_closed(&mut t, Duration::from_secs(5)).await;
            started.elapsed()
        }
    });
    let got = read_until_closed(&mut stalled, Duration::from_secs(5)).await;
    assert!(got.is_some(), "a stalled client was not dropped");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let took = trickle.await.unwrap();
    assert!(
        took < Duration::from_secs(4),
        "trickling client kept for {took:?}"
    );
}

#[tokio::test]
async fn oversized_request_heads_get_431() {
    let s = TestServer::start_with(|c| c.connection.max_header_bytes = 8192).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let big = "a".repeat(9000);
    let req = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let _ = c.write_all(req.as_bytes()).await;
    let got = read_until_closed(&mut c, Duration::from_secs(5))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    // Just under the limit is fine.
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let ok = "a".repeat(7000);
    let req =
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Ok: {ok}\r\nConnection: close\r\n\r\n");
    c.write_all(req.as_bytes()).await.unwrap();
    let got = read_until_closed(&mut c, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn connections_per_ip_are_capped_and_other_addresses_are_not_affected() {
    let s = TestServer::start_with(|c| c.connection.max_connections_per_ip = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.1", s.addr).await);
    }
    // The fourth from the same address is closed before anything is read.
    let mut fourth = connect_from("127.0.0.1", s.addr).await;
    let got = read_until_closed(&mut fourth, Duration::from_secs(2)).await;
    assert_eq!(got, Some(Vec::new()), "the fourth connection was served");
    // Another client address is served.
    assert!(served("127.0.0.2", s.addr).await);
    // A place freed is a place again.
    held.pop();
    let mut ok = false;
    for _ in 0..50 {
        if served("127.0.0.1", s.addr).await {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "a freed place was not reused");
}

#[tokio::test]
async fn trusted_proxies_are_exempt_from_the_per_ip_cap_but_not_the_total() {
    let s = TestServer::start_with(|c| {
        c.connection.max_connections_per_ip = 2;
        c.connection.max_connections = 4;
        c.security.trusted_proxies = vec!["127.0.0.3".into()];
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.3", s.addr).await);
    }
    // Three from the proxy are fine; the fourth connection fills the server.
    assert!(served("127.0.0.3", s.addr).await);
    held.push(connect_from("127.0.0.4", s.addr).await);
    let mut over = connect_from("127.0.0.5", s.addr).await;
    let got = read_until_closed(&mut over, Duration::from_secs(2)).await;
    assert_eq!(
        got,
        Some(Vec::new()),
        "a connection past the total was served"
    );
}

/// How many of `n` TCP connects to `to` complete within 300 ms each while nobody
/// accepts (a full accept queue makes the kernel drop the SYN, so connect hangs).
async fn established_without_accept(to: SocketAddr, n: usize) -> (usize, Vec<TcpStream>) {
    let mut held = Vec::new();
    for _ in 0..n {
        let sock = TcpSocket::new_v4().unwrap();
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(300), sock.connect(to)).await
        {
            held.push(s);
        }
    }
    (held.len(), held)
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// `connection.listen_backlog` is the binary's real `listen(2)` backlog: with the
/// server stopped (SIGSTOP) nothing is accepted, and Linux lets exactly backlog + 1
/// connections complete. At the default (1024) a burst far past std's 128 completes.
#[tokio::test]
async fn listen_backlog_bounds_the_accept_queue() {
    for (backlog, burst, expect) in [("16", 24, 17usize), ("1024", 300, 300)] {
        let dir = tempfile::tempdir().unwrap();
        let bin = Binary::start(
            dir.path(),
            &[("ROOMGATE_CONNECTION__LISTEN_BACKLOG", backlog)],
        )
        .await;
        let pid = bin.child.id().unwrap();
        signal(pid, "-STOP");
        // kill(1) returns before the process is stopped; connects made meanwhile would
        // be accepted and not count against the queue.
        let stat = format!("/proc/{pid}/stat");
        for _ in 0..500 {
            let st = std::fs::read_to_string(&stat).unwrap_or_default();
            if st
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('T'))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let (done, held) = established_without_accept(bin.addr, burst).await;
        signal(pid, "-CONT");
        drop(held);
        // Linux admits backlog + 1; one either way is allowed for kernels that count
        // differently, which still tells 16 from 128 and from 1024.
        assert!(
            done.abs_diff(expect) <= 1,
            "backlog {backlog}: {done} of {burst} connects completed, expected {expect}"
        );
        bin.stop().await;
    }
}

/// An upgraded WebSocket keeps its TCP connection's place under the caps for its whole
/// life (the place used to be given back at the upgrade, so WebSockets were uncapped).
#[tokio::test]
async fn websockets_count_towards_the_connection_caps() {
    let s = TestServer::start_with(|c| c.connection.max_connections_per_ip = 2).await;
    let first = s.client().await;
    let second = s.client().await;
    let mut third = connect_from("127.0.0.1", s.addr).await;
    let got = read_until_closed(&mut third, Duration::from_secs(2)).await;
    assert_eq!(got, Some(Vec::new()), "a third connection was served");
    first.close().await;
    let mut ok = false;
    for _ in 0..50 {
        if served("127.0.0.1", s.addr).await {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the closed WebSocket's place was not given back");
    second.close().await;
}
