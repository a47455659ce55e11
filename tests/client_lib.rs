//! The browser client library (web/client/roomgate.js) in Node.js against the real binary:
//! each tests/client/*.test.mjs file runs under `node --test` with its own server, reached
//! through RGTEST_URL, with the JWT secret to mint tokens and the binary and data dir to
//! run operator commands (revocation) while the server runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::sync::OnceCell;

fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/client")
}

/// Installs the pinned `ws` package once per test binary.
async fn ensure_node_modules() {
    static READY: OnceCell<()> = OnceCell::const_new();
    READY
        .get_or_init(|| async {
            let dir = harness_dir();
            let have = dir.join("node_modules/ws/package.json").is_file();
            if have {
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
                        "npm is needed to install the client-library tests in {} ({e}); install Node.js 20+ with npm",
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
            assert!(
                dir.join("node_modules/ws/package.json").is_file(),
                "npm ci did not install ws"
            );
        })
        .await;
}

/// Starts a binary and runs `node --test tests/client/FILE` against it; panics with the
/// node output unless every test in the file passed.
async fn run_node_test(file: &str) {
    ensure_node_modules().await;
    let root = tempfile::Builder::new().prefix("rg").tempdir().unwrap();
    let b = Binary::start(
        root.path(),
        &[
            ("ROOMGATE_RATE_LIMITS__AUTH__POINTS", "100000"),
            ("ROOMGATE_RATE_LIMITS__MESSAGE__POINTS", "100000"),
            ("ROOMGATE_RATE_LIMITS__JOIN__POINTS", "100000"),
        ],
    )
    .await;
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("--test")
        .arg(harness_dir().join(file))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RGTEST_URL", b.url())
        .env("RGTEST_JWT_SECRET", JWT_SECRET)
        .env("RGTEST_BIN", binary_path())
        .env("RGTEST_DATA", root.path())
        .env("JWT_SECRET", JWT_SECRET)
        .env("WS_SECRET", WS_SECRET)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("node --test {file} finishes within 90 s"))
        .unwrap_or_else(|e| panic!("cannot run node ({e}); install Node.js 20+"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node --test {file} failed against {}:\nstdout:\n{stdout}\nstderr:\n{stderr}",
        b.url()
    );
    assert!(
        stdout.contains("# fail 0") && !stdout.contains("# pass 0"),
        "node --test {file}: no passing run reported:\n{stdout}\nstderr:\n{stderr}"
    );
    b.stop().await;
}

#[tokio::test]
async fn backoff_bounds() {
    run_node_test("backoff.test.mjs").await;
}

#[tokio::test]
async fn resume_with_ws_token() {
    run_node_test("resume.test.mjs").await;
}

#[tokio::test]
async fn recovery_without_duplicates_under_concurrent_publishing() {
    run_node_test("recovery.test.mjs").await;
}

#[tokio::test]
async fn unacked_messages_are_resent_and_stored_once() {
    run_node_test("resend.test.mjs").await;
}

#[tokio::test]
async fn token_refresh_on_token_expiring() {
    run_node_test("refresh.test.mjs").await;
}

#[tokio::test]
async fn terminal_close_stops_reconnecting() {
    run_node_test("terminal.test.mjs").await;
}

#[tokio::test]
async fn token_expired_close_reconnects_with_a_fresh_token() {
    run_node_test("expiry.test.mjs").await;
}

#[tokio::test]
async fn seed_api_compatibility() {
    run_node_test("seed_compat.test.mjs").await;
}

#[tokio::test]
async fn the_readme_node_example_runs() {
    run_node_test("readme.test.mjs").await;
}
