//! README's quick start, run as written: the server is started as the first command
//! starts it (default data root `./data` in the working directory, so the commands find
//! it the same way; only the listen address is an ephemeral port), its start-up output
//! must match the README's example line for line, and then every `sh` block of the
//! section runs in one bash, in order, with nothing changed but the address and the
//! printed password pasted where the README says to paste it.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The README's quick-start section.
fn quick_start() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme
        .find("\n## Quick start\n")
        .expect("a Quick start section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_string()
}

/// The fenced blocks with the given info string, in order.
fn blocks(text: &str, info: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_end() == format!("```{info}") => current = Some(String::new()),
            Some(body) if line.trim_end() == "```" => {
                out.push(std::mem::take(body));
                current = None;
            }
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    out
}

#[tokio::test]
async fn readme_quick_start_runs_as_written() {
    let section = quick_start();
    let home = tempfile::Builder::new().prefix("rg").tempdir().unwrap();
    // Where `cargo run --release` leaves the binary, relative to the clone.
    let release = home.path().join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    std::os::unix::fs::symlink(binary_path(), release.join("roomgate")).unwrap();

    let mut server = tokio::process::Command::new(binary_path())
        .current_dir(home.path())
        .env("ROOMGATE_LISTEN", "127.0.0.1:0")
        .env_remove("JWT_SECRET")
        .env_remove("WS_SECRET")
        .env_remove("ROOMGATE_ADMIN_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(home.path().join("server.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("server starts");
    let server_log = || std::fs::read_to_string(home.path().join("server.log")).unwrap_or_default();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let example = blocks(&section, "text");
    let example = example.first().expect("the start-up output example");
    let mut printed = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while printed.len() < example.lines().count() {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("server printed more");
            printed.push(line);
        }
    })
    .await
    .expect("the server prints its start-up lines");
    let password = printed[0]
        .strip_prefix("roomgate: created account \"admin\" with password ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("first line gives the admin password: {}", printed[0]))
        .to_string();
    let addr = printed[1]
        .strip_prefix("roomgate listening on http://")
        .expect("listening line")
        .to_string();
    // The README's example, with this run's password and address, is what was printed.
    let example_password = example
        .lines()
        .next()
        .and_then(|l| l.split("with password ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .expect("example password");
    for (want, got) in example.lines().zip(&printed) {
        let want = want
            .replace("127.0.0.1:8080", &addr)
            .replace(example_password, &password);
        assert_eq!(
            &want, got,
            "README's start-up output differs from the server's"
        );
    }

    // The shell steps, in one bash, each marked so its output can be told apart.
    let steps = blocks(&section, "sh");
    assert_eq!(steps.len(), 4, "the quick start has four shell steps");
    let mut script = String::from("set -euo pipefail\n");
    for (i, step) in steps.iter().enumerate() {
        let step = step
            .replace("http://127.0.0.1:8080", &format!("http://{addr}"))
            .replace("ws://127.0.0.1:8080", &format!("ws://{addr}"))
            .replace(
                "PASSWORD='paste the password roomgate printed'",
                &format!("PASSWORD='{password}'"),
            );
        script.push_str(&format!("echo '=== step {i}'\n{step}\necho\n"));
    }
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(home.path())
            .env_remove("JWT_SECRET")
            .env_remove("WS_SECRET")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the quick start finishes within 180 s")
    .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the quick start failed:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server\n{}",
        server_log()
    );
    let outputs: Vec<&str> = stdout.split("=== step ").skip(1).collect();
    assert_eq!(outputs.len(), 4, "{stdout}");
    let json_in = |s: &str| -> Value {
        let body = &s[s.find('{').unwrap_or_else(|| panic!("no JSON in {s}"))..];
        let end = body.rfind('}').expect("JSON ends");
        serde_json::from_str(&body[..=end]).unwrap_or_else(|e| panic!("{e}: {body}"))
    };

    // Step 1: the CLI finds the running server's database.
    assert_eq!(json_in(outputs[0])["running"], true, "{}", outputs[0]);
    // Step 3: curl logs in with the printed password.
    let login = json_in(outputs[1]);
    assert_eq!(login["token_type"], "Bearer", "{login}");
    assert!(login["access_token"].as_str().is_some_and(|t| t.len() > 20));
    // Step 4: the WebSocket session, frame by frame.
    let frames: Vec<&str> = outputs[2]
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    for kind in ["handshake", "auth_success", "room_joined", "message"] {
        assert!(frames.contains(&kind), "no {kind} in {}", outputs[2]);
    }
    assert!(outputs[2].contains("hello from alice"), "{}", outputs[2]);
    assert!(outputs[2].contains(r#""userId":"alice""#), "{}", outputs[2]);
    // Step 5: the API key publishes after alice's message.
    let published = json_in(outputs[3]);
    assert_eq!(published["roomId"], "lobby", "{published}");
    assert_eq!(published["seq"], 2, "{published}");
    assert!(
        !stdout.contains("rgk_") && !stdout.contains(&password),
        "the script printed no secret of its own"
    );

    server.kill().await.unwrap();
}
