//! Built-in TLS: `wss://` and `https://` with a certificate generated in the test, a
//! certificate reload (in-process and by SIGHUP to the binary) that leaves an open
//! connection alone, plain text refused on a TLS port, and bad certificate files stopping
//! the start with their path.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// A self-signed certificate for `localhost`, written as PEM files into `dir`.
struct TestCert {
    der: CertificateDer<'static>,
    cert_file: PathBuf,
    key_file: PathBuf,
}

fn make_cert(dir: &Path, name: &str) -> TestCert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_file = dir.join(format!("{name}.crt"));
    let key_file = dir.join(format!("{name}.key"));
    std::fs::write(&cert_file, ck.cert.pem()).unwrap();
    std::fs::write(&key_file, ck.signing_key.serialize_pem()).unwrap();
    TestCert {
        der: ck.cert.der().clone(),
        cert_file,
        key_file,
    }
}

/// Writes `cert`'s files over the paths the server was configured with.
fn install(cert: &TestCert, cert_file: &Path, key_file: &Path) {
    std::fs::copy(&cert.cert_file, cert_file).unwrap();
    std::fs::copy(&cert.key_file, key_file).unwrap();
}

/// A TLS connection to `addr` trusting only `trusted`.
async fn tls_connect(
    addr: SocketAddr,
    trusted: &CertificateDer<'static>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

struct WssClient {
    ws: WebSocketStream<TlsStream<TcpStream>>,
}

impl WssClient {
    async fn connect(addr: SocketAddr, trusted: &CertificateDer<'static>) -> WssClient {
        let tls = tls_connect(addr, trusted).await.expect("TLS handshake");
        let (ws, _) = tokio_tungstenite::client_async("wss://localhost/ws", tls)
            .await
            .expect("websocket over TLS");
        let mut c = WssClient { ws };
        assert_eq!(c.recv().await["type"], "handshake");
        c
    }

    async fn send(&mut self, kind: &str, data: Value) {
        let v = json!({"type": kind, "data": data, "timestamp": 1});
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), self.ws.next())
                .await
                .expect("frame within 5 s")
                .expect("open")
                .expect("read");
            if let Message::Text(t) = msg {
                return serde_json::from_str(t.as_str()).unwrap();
            }
        }
    }

    async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == kind {
                return v;
            }
        }
    }
}

async fn start_tls(certs: &tempfile::TempDir, cert: &TestCert) -> (TestServer, PathBuf, PathBuf) {
    let cert_file = certs.path().join("server.crt");
    let key_file = certs.path().join("server.key");
    install(cert, &cert_file, &key_file);
    let (c, k) = (cert_file.clone(), key_file.clone());
    let s = TestServer::start_with(move |cfg| {
        cfg.tls.cert_file = Some(c);
        cfg.tls.key_file = Some(k);
        cfg.tls.reload_check_secs = 0;
    })
    .await;
    (s, cert_file, key_file)
}

#[tokio::test]
async fn wss_and_https_speak_the_protocol_and_plain_text_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    let cert = make_cert(certs.path(), "one");
    let (s, _, _) = start_tls(&certs, &cert).await;

    let mut alice = WssClient::connect(s.addr, &cert.der).await;
    alice.send("auth", json!({"token": token("alice")})).await;
    assert_eq!(alice.recv().await["type"], "auth_success");
    alice.send("join", json!({"roomId": "secure"})).await;
    alice.expect("room_joined").await;
    alice
        .send(
            "message",
            json!({"roomId": "secure", "content": "over TLS"}),
        )
        .await;
    assert_eq!(alice.expect("message").await["data"]["content"], "over TLS");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(s.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    // HTTPS works for the other routes.
    let mut tls = tls_connect(s.addr, &cert.der).await.unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test]
async fn a_reloaded_certificate_serves_new_handshakes_and_keeps_open_connections() {
    let certs = tempfile::tempdir().unwrap();
    let first = make_cert(certs.path(), "one");
    let second = make_cert(certs.path(), "two");
    let (s, cert_file, key_file) = start_tls(&certs, &first).await;

    let mut open = WssClient::connect(s.addr, &first.der).await;
    open.send("auth", json!({"token": token("alice")})).await;
    assert_eq!(open.recv().await["type"], "auth_success");

    install(&second, &cert_file, &key_file);
    s.server().reload_tls().expect("reload");

    // The open connection is untouched.
    open.send("heartbeat", json!({})).await;
    assert_eq!(
        open.expect("heartbeat_response").await["type"],
        "heartbeat_response"
    );
    // New handshakes present the new certificate only.
    WssClient::connect(s.addr, &second.der).await;
    assert!(tls_connect(s.addr, &first.der).await.is_err());

    // A broken file on reload keeps the certificate in use.
    std::fs::write(&key_file, "not a key").unwrap();
    let err = s.server().reload_tls().unwrap_err().to_string();
    assert!(err.contains("server.key"), "{err}");
    WssClient::connect(s.addr, &second.der).await;
}

#[tokio::test]
async fn the_binary_reloads_on_sighup_and_on_file_change() {
    let data = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let first = make_cert(certs.path(), "one");
    let second = make_cert(certs.path(), "two");
    let third = make_cert(certs.path(), "three");
    let cert_file = certs.path().join("server.crt");
    let key_file = certs.path().join("server.key");
    install(&first, &cert_file, &key_file);
    let cf = cert_file.display().to_string();
    let kf = key_file.display().to_string();
    let b = Binary::start(
        data.path(),
        &[
            ("ROOMGATE_TLS__CERT_FILE", &cf),
            ("ROOMGATE_TLS__KEY_FILE", &kf),
            ("ROOMGATE_TLS__RELOAD_CHECK_SECS", "1"),
        ],
    )
    .await;
    let mut open = WssClient::connect(b.addr, &first.der).await;
    open.send("auth", json!({"token": token("alice")})).await;
    assert_eq!(open.recv().await["type"], "auth_success");

    install(&second, &cert_file, &key_file);
    let pid = b.child.id().expect("pid").to_string();
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(ok.success());
    let mut reloaded = false;
    for _ in 0..50 {
        if tls_connect(b.addr, &second.der).await.is_ok() {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reloaded, "SIGHUP did not reload the certificate");

    // A file change alone is noticed by the poll (every second here). File times have
    // coarse granularity on some filesystems, so wait past it before writing.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    install(&third, &cert_file, &key_file);
    let mut reloaded = false;
    for _ in 0..50 {
        if tls_connect(b.addr, &third.der).await.is_ok() {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reloaded, "a changed file was not picked up");

    open.send("heartbeat", json!({})).await;
    open.expect("heartbeat_response").await;
    b.stop().await;
}

#[tokio::test]
async fn bad_certificate_files_stop_the_start_with_their_path() {
    let data = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let good = make_cert(certs.path(), "good");
    let other = make_cert(certs.path(), "other");
    let missing = certs.path().join("missing.crt");
    let garbage = certs.path().join("garbage.crt");
    std::fs::write(&garbage, "hello").unwrap();
    let cases: Vec<(PathBuf, PathBuf, &str)> = vec![
        (missing.clone(), good.key_file.clone(), "missing.crt"),
        (garbage.clone(), good.key_file.clone(), "garbage.crt"),
        (good.cert_file.clone(), garbage.clone(), "garbage.crt"),
        // A key that belongs to another certificate.
        (good.cert_file.clone(), other.key_file.clone(), "other.key"),
    ];
    for (cert, key, named) in cases {
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::process::Command::new(binary_path())
                .args(["serve", "--listen", "127.0.0.1:0", "--data"])
                .arg(data.path())
                .env("ROOMGATE_TLS__CERT_FILE", &cert)
                .env("ROOMGATE_TLS__KEY_FILE", &key)
                .output(),
        )
        .await
        .expect("exits")
        .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{named}: {err}");
    }
    // Only one of the two files set is a config problem.
    let out = tokio::process::Command::new(binary_path())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .env("ROOMGATE_TLS__CERT_FILE", &good.cert_file)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls.key_file"));
}

#[tokio::test]
async fn production_mode_refuses_to_start_without_tls_origins_or_strong_secrets() {
    let data = tempfile::tempdir().unwrap();
    let run = |envs: Vec<(&'static str, String)>| {
        let dir = data.path().to_path_buf();
        async move {
            let mut cmd = tokio::process::Command::new(binary_path());
            cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
                .arg(dir)
                .env_remove("JWT_SECRET")
                .env_remove("WS_SECRET");
            for (k, v) in envs {
                cmd.env(k, v);
            }
            let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
                .await
                .expect("exits")
                .unwrap();
            assert!(!out.status.success());
            String::from_utf8_lossy(&out.stderr).to_string()
        }
    };
    let err = run(vec![("ROOMGATE_ENV", "production".into())]).await;
    assert!(
        err.contains("needs TLS") && err.contains("allowed_origins"),
        "{err}"
    );

    // A weak key in a file is judged when it is read.
    let weak = data.path().join("weak.key");
    std::fs::write(&weak, "changeme\n").unwrap();
    let err = run(vec![
        ("ROOMGATE_ENV", "production".into()),
        ("ROOMGATE_SECURITY__BEHIND_PROXY", "true".into()),
        ("ROOMGATE_SECURITY__TRUSTED_PROXIES", "127.0.0.1".into()),
        (
            "ROOMGATE_SECURITY__ALLOWED_ORIGINS",
            "https://chat.example".into(),
        ),
        ("ROOMGATE_AUTH__JWT_SECRET_FILE", weak.display().to_string()),
    ])
    .await;
    assert!(
        err.contains("weak.key") && err.contains("placeholder"),
        "{err}"
    );
}
