//! `roomgate health`: asks a server's `GET /readyz` whether it is ready, for container
//! health checks and supervisors that have no HTTP client of their own. It speaks just
//! enough HTTP/1.1 over plain TCP for that one request; it must never grow into a general
//! HTTP client, and it reads at most a few kilobytes of the answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The most of an answer read: a readiness answer is a status line, a few headers and
/// `{"status":"ready"}`.
const MAX_ANSWER: u64 = 16 * 1024;

/// Why the server is not known to be ready.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// Carries the URL without any user-info part, which may hold a password.
    #[error("{0:?} is not a URL like http://127.0.0.1:8080 (https is not supported here)")]
    BadUrl(String),
    #[error("cannot connect to {addr}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("talking to {addr}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{url} answered {status}: {body}")]
    NotReady {
        url: String,
        status: String,
        body: String,
    },
}

/// Where a client on this machine reaches a server listening on `addr`: a wildcard
/// address is reached on loopback.
pub fn local_address(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// GETs `<base>/readyz`; returns its body when it answered 200.
pub async fn check(base: &str) -> Result<String, HealthError> {
    let bad = || HealthError::BadUrl(without_userinfo(base));
    let rest = base.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty()
        || authority.contains('@')
        || authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        || prefix.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    // A port-less authority gets HTTP's default port; "[::1]" has colons but no port.
    let has_port = authority
        .rfind(':')
        .is_some_and(|i| !authority[i..].contains(']'));
    let target = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let url = format!("http://{authority}{prefix}/readyz");
    let io = |source| HealthError::Io {
        addr: target.clone(),
        source,
    };
    let mut stream = tokio::net::TcpStream::connect(&target)
        .await
        .map_err(|source| HealthError::Connect {
            addr: target.clone(),
            source,
        })?;
    let request = format!(
        "GET {prefix}/readyz HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: roomgate-health\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut answer = Vec::new();
    (&mut stream)
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .await
        .map_err(io)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    let body = body.trim().to_string();
    if code == "200" {
        Ok(body)
    } else {
        Err(HealthError::NotReady {
            url,
            status: if status.is_empty() {
                "nothing".into()
            } else {
                status.to_string()
            },
            body,
        })
    }
}

/// `base` with any `user:password@` before the host cut out, for error messages.
fn without_userinfo(base: &str) -> String {
    let (scheme, rest) = base.split_once("://").unwrap_or(("", base));
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) if scheme.is_empty() => format!("***@{}", &rest[at + 1..]),
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => base.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_reached_on_loopback() {
        let a: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(local_address(a).to_string(), "127.0.0.1:8080");
        let b: SocketAddr = "[::]:9".parse().unwrap();
        assert_eq!(local_address(b).to_string(), "[::1]:9");
        let c: SocketAddr = "10.1.2.3:7".parse().unwrap();
        assert_eq!(local_address(c), c);
    }

    #[tokio::test]
    async fn urls_it_cannot_use_are_refused() {
        match check("http://user:hunter22@127.0.0.1:1").await {
            Err(e @ HealthError::BadUrl(_)) => {
                assert!(!e.to_string().contains("hunter22"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "https://127.0.0.1:1",
            "127.0.0.1:1",
            "http://",
            "http://a b:1",
            "http://u@h:1",
        ] {
            assert!(
                matches!(check(bad).await, Err(HealthError::BadUrl(_))),
                "{bad}"
            );
        }
    }
}
