//! The control socket: `<data_dir>/roomgate.sock`, mode 0600, so operator commands reach
//! a running server (sled admits one process per database). One JSON request line in,
//! one JSON reply line out: `{"ok":true,"result":..}` or `{"ok":false,"error":{code,message}}`.
//! Only the owner of the data root can connect; the socket is the authentication. This
//! module only carries requests; `admin` decides what they do.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::admin::{self, Request, Target};
use crate::state::AppState;

/// Largest request line accepted.
const MAX_REQUEST: u64 = 1024 * 1024;

/// Binds the socket, replacing a stale one; refuses when another server answers on it.
pub async fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "{} answers: another roomgate server uses this data directory",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves requests until shutdown.
pub async fn serve(listener: UnixListener, path: PathBuf, state: AppState) {
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                state.tasks.clone().spawn(async move { handle(stream, state).await });
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

async fn handle(stream: UnixStream, state: AppState) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    let reply =
        match tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line)).await {
            Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
                Ok(req) => match admin::execute(req, Target::Live(&state)).await {
                    Ok(result) => json!({"ok": true, "result": result}),
                    Err(e) => {
                        json!({"ok": false, "error": {"code": e.code(), "message": e.to_string()}})
                    }
                },
                Err(e) => {
                    json!({"ok": false, "error": {"code": "bad_request", "message": e.to_string()}})
                }
            },
            _ => return,
        };
    let mut text = reply.to_string();
    text.push('\n');
    let _ = write.write_all(text.as_bytes()).await;
}

/// Sends a request to a running server. `Ok(None)` when no server listens on `path`.
pub async fn call(path: &Path, req: &Request) -> std::io::Result<Option<Value>> {
    let stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(req)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let v: Value = serde_json::from_str(&line)?;
    Ok(Some(v))
}
