//! The chat page and the admin console in real headless Chromium: the real binary serves
//! them, `tests/browser/scenarios.mjs` drives Debian's `/usr/bin/chromium` through
//! playwright-core, and this driver owns the server, so it can stop it with SIGTERM and
//! start it again on the same port and data directory when the script asks. Nothing is
//! skipped: a missing browser or npm fails the test with the command that installs it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const CHROMIUM: &str = "/usr/bin/chromium";
const USER_PASSWORD: &str = "browser-user-password-1";
const BROWSER_ADMIN_PASSWORD: &str = "browser-admin-password-1";
/// The whole run: twelve scenarios, one restart, a few argon2 logins at OWASP cost.
const LIMIT: Duration = Duration::from_secs(240);

fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

async fn ensure_playwright() {
    let dir = harness_dir();
    let have = || {
        dir.join("node_modules/playwright-core/package.json")
            .is_file()
    };
    if have() {
        return;
    }
    let out = tokio::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "npm is needed to install playwright-core in {} ({e}); install Node.js 20+ with npm",
                dir.display()
            )
        });
    assert!(
        out.status.success(),
        "npm ci in {} failed:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(have(), "npm ci did not install playwright-core");
}

/// The server's environment: the bootstrap admin, and HTML stripping off so the pages'
/// own text-only rendering is what stands between a payload and the DOM.
fn server_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("ROOMGATE_ADMIN_PASSWORD", BROWSER_ADMIN_PASSWORD),
        ("ROOMGATE_SECURITY__STRIP_HTML", "false"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_page_and_admin_console_in_chromium() {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: the browser tests need Debian's Chromium \
         (apt-get install -y chromium); .ci/run installs it"
    );
    ensure_playwright().await;
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("rg-browser")
        .tempdir()
        .expect("tempdir");
    let env = server_env();
    let mut server = Some(Binary::start(dir.path(), &env).await);
    let addr = server.as_ref().expect("running").addr;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");

    let mut node = tokio::process::Command::new("node")
        .arg(harness_dir().join("scenarios.mjs"))
        .current_dir(harness_dir())
        .env("ROOMGATE_URL", format!("http://{addr}"))
        .env("ROOMGATE_ADMIN_PASSWORD", BROWSER_ADMIN_PASSWORD)
        .env("ROOMGATE_USER_PASSWORD", USER_PASSWORD)
        .env("SCREENSHOT_DIR", &shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (install Node.js 20+)");
    let mut to_node = node.stdin.take().expect("stdin");
    let mut lines = BufReader::new(node.stdout.take().expect("stdout")).lines();
    let mut stderr = node.stderr.take().expect("stderr");
    let stderr_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut s).await;
        s
    });

    // Serve the script's restart requests until it ends.
    let mut output = Vec::new();
    let run = async {
        while let Some(line) = lines.next_line().await.expect("read node stdout") {
            eprintln!("browser: {line}");
            match line.as_str() {
                "STOP" => {
                    server.take().expect("server running").stop().await;
                    to_node.write_all(b"STOPPED\n").await.expect("answer");
                }
                "START" => {
                    // The same port: the pages keep the URL they were loaded from.
                    let b = Binary::start_at(dir.path(), &addr.to_string(), &env).await;
                    assert_eq!(b.addr, addr);
                    server = Some(b);
                    to_node.write_all(b"STARTED\n").await.expect("answer");
                }
                _ => output.push(line),
            }
        }
        node.wait().await.expect("node exits")
    };
    let status = tokio::time::timeout(LIMIT, run)
        .await
        .unwrap_or_else(|_| panic!("browser scenarios did not finish within {LIMIT:?}"));
    let err = stderr_task.await.unwrap_or_default();
    let out = output.join("\n");
    eprintln!("browser scenarios took {:?}", started.elapsed());
    assert!(
        status.success(),
        "browser scenarios failed ({status}):\n{out}\n{err}"
    );
    for name in [
        "csp_header",
        "two_users_chat",
        "read_only_user",
        "restart_reconnect_exactly_once",
        "missed_messages_recovered",
        "notification_inbox",
        "history_on_join_and_scroll_up",
        "xss_renders_as_text",
        "create_room_where_allowed",
        "admin_console_and_revocation",
        "readme_browser_example",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("PASS {name} "))),
            "scenario {name} did not pass:\n{out}\n{err}"
        );
    }
    for shot in ["chat.png", "admin.png"] {
        assert!(shots.join(shot).is_file(), "screenshot {shot} missing");
    }
    if let Some(s) = server {
        s.stop().await;
    }
}
