//! The deployment files under `scripts/` are checked against the real binary, as far as
//! this machine allows: the systemd unit passes `systemd-analyze verify` (syntax, known
//! directives, a real executable), and the Dockerfile's runtime contract (its `ENV`,
//! `ENTRYPOINT` and `CMD`, run as they are written, but on 127.0.0.1:0) starts a server
//! that keeps its data where the image's volume is. Building the image itself needs a
//! Docker engine, which CI machines here do not run.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};

fn script(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn systemd_unit_verifies() {
    let unit = script("roomgate.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    assert!(
        exec.starts_with("/usr/local/bin/roomgate serve "),
        "ExecStart runs the installed binary: {exec}"
    );
    // The unit names the installed path; point it at the binary under test so verify
    // also checks that the command exists and is executable.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("roomgate.service");
    let bin = binary_path();
    std::fs::write(
        &file,
        unit.replace("/usr/local/bin/roomgate", bin.to_str().unwrap()),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("systemd-analyze is needed ({e}); install the systemd package"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Lines about the unit itself; systemd may also mention units of the host.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("roomgate.service"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
    // The hardening the README promises is there.
    for line in [
        "User=roomgate",
        "StateDirectory=roomgate",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "KillSignal=SIGTERM",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line}");
    }
}

/// `ENV` pairs of the final stage (continuation lines joined).
fn docker_env(dockerfile: &str) -> Vec<(String, String)> {
    let joined = dockerfile.replace("\\\n", " ");
    let last_stage = joined.rsplit("\nFROM ").next().unwrap();
    last_stage
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(|rest| {
            rest.split_whitespace()
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("ENV KEY=VALUE");
                    (k.to_string(), v.to_string())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The exec-form JSON array of an instruction of the final stage.
fn docker_exec(dockerfile: &str, instruction: &str) -> Vec<String> {
    let line = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{instruction} ")))
        .unwrap_or_else(|| panic!("{instruction} missing"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{instruction} is not exec form: {e}"))
}

#[tokio::test]
async fn dockerfile_runtime_contract_starts_a_server() {
    let file = script("Dockerfile");
    let user = file
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    assert!(user != "root" && user != "0", "the image runs as {user}");
    assert!(
        file.contains("COPY --from=build /src/target/release/roomgate /usr/local/bin/roomgate"),
        "the final stage copies the release binary"
    );
    let entry = docker_exec(&file, "ENTRYPOINT");
    assert_eq!(entry, ["/usr/local/bin/roomgate"]);
    let cmd = docker_exec(&file, "CMD");
    let env = docker_env(&file);
    let data_var = env
        .iter()
        .find(|(_, v)| v == "/data")
        .map(|(k, _)| k.clone())
        .expect("an ENV points the data root at the /data volume");
    assert!(
        file.contains("VOLUME [\"/data\"]"),
        "the data root is a volume"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(binary_path());
    command
        .args(&cmd)
        .env("JWT_SECRET", JWT_SECRET)
        .env("WS_SECRET", WS_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in &env {
        // As written, except that a test listens on loopback port 0 and keeps its data
        // in a temporary directory instead of the image's 0.0.0.0:8080 and /data.
        let v = if v.starts_with("0.0.0.0:") {
            "127.0.0.1:0".to_string()
        } else if *k == data_var {
            dir.path().to_str().unwrap().to_string()
        } else {
            v.clone()
        };
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(a) = line.strip_prefix("roomgate listening on http://") {
                return a.to_string();
            }
        }
        panic!("the server exited before listening");
    })
    .await
    .expect("listens within 20 s");
    assert!(addr.starts_with("127.0.0.1:"), "listens on {addr}");
    assert!(
        dir.path().join("db").is_dir(),
        "the database is in the directory {data_var} names"
    );
    let pid = child.id().unwrap().to_string();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("stops within 20 s on the image's STOPSIGNAL")
        .unwrap();
    assert!(status.success(), "{status}");
}
