//! WebSocket protocol conformance: the Autobahn TestSuite's core cases, run by kosoku
//! 0.1.0 (pinned by hash in tests/autobahn/requirements.txt, installed into a virtual
//! environment under target/), against the real binary's test-only echo route, which is
//! served through `/ws`'s accept loop, upgrade and WebSocket settings. Groups 12 and 13
//! test permessage-deflate, which roomgate does not offer. Every one of the 301 other
//! cases must pass with a clean close handshake; the report stays in
//! target/tmp/autobahn/report (index.html, one JSON and HTML file per case).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const CORE_CASES: usize = 301;

fn work_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("autobahn")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The venv's `kosoku`, installed once from the hash-pinned requirements; reinstalled
/// when the requirements file changes.
fn kosoku() -> PathBuf {
    let requirements =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/autobahn/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("tests/autobahn/requirements.txt");
    let venv = work_dir().join("venv");
    let stamp = venv.join("roomgate-requirements.txt");
    let bin = venv.join("bin/kosoku");
    if bin.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return bin;
    }
    let _ = std::fs::remove_dir_all(&venv);
    std::fs::create_dir_all(work_dir()).expect("target/tmp/autobahn");
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv (on Debian: apt-get install python3-venv; scripts/test.sh does)",
    );
    run(
        Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--require-hashes",
                "--only-binary=:all:",
                "-r",
            ])
            .arg(&requirements),
        "pip install kosoku",
    );
    std::fs::write(&stamp, wanted).expect("write the requirements stamp");
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_core_cases_pass_against_the_echo_route() {
    let kosoku = tokio::task::spawn_blocking(kosoku)
        .await
        .expect("install kosoku");
    let dir = tempfile::tempdir().unwrap();
    // Group 9 sends messages of up to 16 MiB: the frame limit is raised above that,
    // everything else is the default configuration.
    let server = Binary::start(
        dir.path(),
        &[
            ("ROOMGATE_TEST_ECHO", "true"),
            ("ROOMGATE_CONNECTION__MAX_FRAME_BYTES", "20000000"),
        ],
    )
    .await;
    let report = work_dir().join("report");
    let _ = std::fs::remove_dir_all(&report);
    let url = format!("ws://{}/test/echo", server.addr);
    let mut cmd = tokio::process::Command::new(&kosoku);
    cmd.arg(&url)
        .args(["-x", "12.*", "-x", "13.*", "-p", "4", "-o"])
        .arg(&report)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(900), cmd.output())
        .await
        .expect("kosoku finishes within 15 minutes")
        .expect("kosoku runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(report.join("index.json"))
            .unwrap_or_else(|e| panic!("no report ({e}):\n{stdout}\n{stderr}")),
    )
    .expect("index.json is JSON");
    let cases: Vec<(&String, &Value)> = index
        .as_object()
        .expect("index by agent")
        .values()
        .flat_map(|agent| agent.as_object().expect("cases by id"))
        .collect();
    let bad: Vec<String> = cases
        .iter()
        .filter(|(_, r)| {
            !matches!(
                r["behavior"].as_str(),
                Some("OK" | "NON-STRICT" | "INFORMATIONAL")
            ) || !matches!(r["behaviorClose"].as_str(), Some("OK" | "INFORMATIONAL"))
        })
        .map(|(id, r)| {
            format!(
                "{id}: {} / close {} (remote code {})",
                r["behavior"], r["behaviorClose"], r["remoteCloseCode"]
            )
        })
        .collect();
    assert!(
        out.status.success() && bad.is_empty(),
        "kosoku: {} ({} of {} cases not passed):\n{}\n{stdout}\n{stderr}\nreport: {}",
        out.status,
        bad.len(),
        cases.len(),
        bad.join("\n"),
        report.display()
    );
    assert_eq!(cases.len(), CORE_CASES, "core case count\n{stdout}");
    // Autobahn also passes a server that just drops the connection on a bad frame; the
    // codes roomgate promises (README's close-code table) are checked here. Cases: a
    // reserved opcode, reserved bits, an oversized ping, an orphan continuation, a close
    // with a one-byte payload (1002); invalid UTF-8 in a message and in a close reason
    // (1007); and a normal echo followed by the client's close (1000 echoed back).
    let codes: std::collections::HashMap<&str, u64> = cases
        .iter()
        .filter_map(|(id, r)| Some((id.as_str(), r["remoteCloseCode"].as_u64()?)))
        .collect();
    for (case, code) in [
        ("1.1.1", 1000),
        ("2.5", 1002),
        ("3.1", 1002),
        ("4.1.1", 1002),
        ("5.1", 1002),
        ("7.3.2", 1002),
        ("6.3.1", 1007),
        ("6.4.1", 1007),
        ("7.5.1", 1007),
    ] {
        assert_eq!(codes.get(case), Some(&code), "close code in case {case}");
    }
    assert!(
        stdout.contains(&format!("{CORE_CASES} cases passed")),
        "kosoku's summary:\n{stdout}"
    );
    server.stop().await;
}

/// The echo route is not there unless `test_echo` is set (an unknown path's 404), a
/// plain HTTP request to it is refused like one to `/ws`, and production mode refuses to
/// start with the setting, naming it.
#[tokio::test]
async fn echo_route_exists_only_behind_test_echo_and_never_in_production() {
    let dir = tempfile::tempdir().unwrap();
    let off = Binary::start(dir.path(), &[]).await;
    let url = format!("ws://{}/test/echo", off.addr);
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 404)
        }
        other => panic!("echo route served without test_echo: {other:?}"),
    }
    off.stop().await;

    let on = Binary::start(dir.path(), &[("ROOMGATE_TEST_ECHO", "true")]).await;
    let reply = http_request(on.addr, "GET", "/test/echo", &[], b"").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["code"], "upgrade_required");
    on.stop().await;

    let prod = tempfile::tempdir().unwrap();
    let mut cmd = roomgate_command(&["serve", "--listen", "127.0.0.1:0", "--data"]);
    cmd.arg(prod.path())
        .env("ROOMGATE_ENV", "production")
        .env("ROOMGATE_TEST_ECHO", "true")
        .env("JWT_SECRET", JWT_SECRET)
        .env("WS_SECRET", WS_SECRET);
    let out = finish(cmd).await;
    assert!(!out.ok, "production start with test_echo: {out:?}");
    assert!(
        out.stderr.contains("production mode refuses test_echo"),
        "{}",
        out.stderr
    );
}
