//! The deployment files under `scripts/` are checked against the real binary, as far as
//! this machine allows: the systemd unit passes `systemd-analyze verify` (syntax, known
//! directives, a real executable), and the Dockerfile's runtime contract (its `ENV`,
//! `ENTRYPOINT` and `CMD`, run as they are written, but on 127.0.0.1:0) starts a server
//! that keeps its data where the image's volume is and that its `HEALTHCHECK` (the
//! binary's own `health`, run as written) calls healthy, then unhealthy once stopped; its
//! builder stage installs what the build needs (make, for jemalloc). Building the image itself needs a Docker engine, which CI machines here do
//! not run.

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

/// The Dockerfile's instructions as (keyword, arguments): continuation lines joined,
/// comments and blank lines dropped.
fn docker_instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        // Docker drops comment and blank lines, inside a continuation too.
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, rest) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((keyword.to_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    assert!(
        current.is_empty(),
        "the Dockerfile ends inside a continuation"
    );
    out
}

/// The instructions of the stage named `name` (`FROM image AS name`), without the FROM.
fn docker_stage(dockerfile: &str, name: &str) -> Vec<(String, String)> {
    let all = docker_instructions(dockerfile);
    let start = all
        .iter()
        .position(|(k, rest)| k == "FROM" && rest.to_lowercase().ends_with(&format!(" as {name}")))
        .unwrap_or_else(|| panic!("no stage named {name}"));
    all[start + 1..]
        .iter()
        .take_while(|(k, _)| k != "FROM")
        .cloned()
        .collect()
}

/// The packages a RUN line's `apt-get install` commands name.
fn apt_installs(run: &str) -> Vec<String> {
    run.split("&&")
        .flat_map(|command| command.split(';'))
        .filter_map(|command| {
            let words: Vec<&str> = command.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "install")?;
            (at > 0 && words[at - 1] == "apt-get").then(|| {
                words[at + 1..]
                    .iter()
                    .filter(|w| !w.starts_with('-'))
                    .map(|w| w.to_string())
                    .collect::<Vec<_>>()
            })
        })
        .flatten()
        .collect()
}

/// A Dockerfile duration (`10s`, `1m30s`, `500ms`).
fn docker_duration(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits]
            .parse()
            .unwrap_or_else(|_| panic!("not a duration: {text}"));
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        total += match &rest[..unit] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            other => panic!("unit {other:?} in duration {text}"),
        };
        rest = &rest[unit..];
    }
    total
}

/// The final stage's HEALTHCHECK: its `--name=value` options and its exec-form command.
fn docker_healthcheck(dockerfile: &str) -> (Vec<(String, String)>, Vec<String>) {
    let all = docker_instructions(dockerfile);
    let last_from = all.iter().rposition(|(k, _)| k == "FROM").expect("FROM");
    let checks: Vec<&String> = all[last_from..]
        .iter()
        .filter(|(k, _)| k == "HEALTHCHECK")
        .map(|(_, rest)| rest)
        .collect();
    assert_eq!(checks.len(), 1, "one HEALTHCHECK in the final stage");
    let (options, cmd) = checks[0]
        .split_once("CMD ")
        .unwrap_or_else(|| panic!("HEALTHCHECK runs a CMD: {}", checks[0]));
    let options = options
        .split_whitespace()
        .map(|o| {
            let (k, v) = o
                .strip_prefix("--")
                .and_then(|o| o.split_once('='))
                .unwrap_or_else(|| panic!("HEALTHCHECK option {o} is not --name=value"));
            (k.to_string(), v.to_string())
        })
        .collect();
    let cmd = serde_json::from_str(cmd.trim())
        .unwrap_or_else(|e| panic!("HEALTHCHECK CMD is not exec form ({e}): {cmd}"));
    (options, cmd)
}

#[test]
fn dockerfile_builder_installs_make_and_builds_the_gateway_alone() {
    let file = script("Dockerfile");
    let build = docker_stage(&file, "build");
    let cargo = build
        .iter()
        .position(|(k, rest)| k == "RUN" && rest.contains("cargo build"))
        .expect("the build stage runs cargo build");
    // jemalloc's build runs make, which the rust slim image lacks.
    let installed: Vec<String> = build[..cargo]
        .iter()
        .filter(|(k, _)| k == "RUN")
        .flat_map(|(_, rest)| apt_installs(rest))
        .collect();
    assert!(
        installed.iter().any(|p| p == "make"),
        "a RUN before cargo build installs make (installs: {installed:?})"
    );
    let words: Vec<&str> = build[cargo].1.split_whitespace().collect();
    for pair in [["-p", "roomgate"], ["--bin", "roomgate"]] {
        assert!(
            words.windows(2).any(|w| w == pair),
            "cargo build selects {pair:?}: {}",
            build[cargo].1
        );
    }
    assert!(words.contains(&"--locked"), "{}", build[cargo].1);
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
    // The health check runs the image's own binary (no curl in the image), its `health`
    // command, giving up well before the next check is due.
    let (health_options, health_cmd) = docker_healthcheck(&file);
    assert_eq!(
        health_cmd.first(),
        entry.first(),
        "HEALTHCHECK runs the installed binary"
    );
    assert_eq!(
        health_cmd.get(1).map(String::as_str),
        Some("health"),
        "HEALTHCHECK runs `roomgate health`: {health_cmd:?}"
    );
    let option = |name: &str| {
        health_options
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("HEALTHCHECK sets --{name}"))
    };
    let interval = docker_duration(option("interval"));
    let timeout = docker_duration(option("timeout"));
    assert!(
        !timeout.is_zero() && timeout < interval,
        "timeout {timeout:?}, interval {interval:?}"
    );
    assert!(!docker_duration(option("start-period")).is_zero());
    let retries: u32 = option("retries").parse().expect("retries is a number");
    assert!(retries >= 1);
    // health's own deadline comes first, so a slow server is reported as not ready
    // (exit 1, with the reason in the log) rather than killed by Docker.
    let own_timeout = health_cmd
        .iter()
        .position(|a| a == "--timeout")
        .and_then(|i| health_cmd.get(i + 1))
        .map(|secs| Duration::from_secs(secs.parse().expect("--timeout SECS")))
        .expect("HEALTHCHECK gives `health` a --timeout");
    assert!(
        own_timeout < timeout,
        "health's --timeout {own_timeout:?} is under Docker's {timeout:?}"
    );
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
    // The image's ENV as written, except that the data root is a temporary directory
    // instead of /data and the listen address is `listen` instead of 0.0.0.0:8080.
    let image_env = |listen: &str| -> Vec<(String, String)> {
        env.iter()
            .map(|(k, v)| {
                let v = if v.starts_with("0.0.0.0:") {
                    listen.to_string()
                } else if *k == data_var {
                    dir.path().to_str().unwrap().to_string()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect()
    };
    let mut command = tokio::process::Command::new(binary_path());
    command
        .args(&cmd)
        .env("JWT_SECRET", JWT_SECRET)
        .env("WS_SECRET", WS_SECRET)
        .envs(image_env("127.0.0.1:0"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
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
    // The HEALTHCHECK's command as the image runs it, in the image's environment: the
    // wildcard listen address is kept (health reaches it on loopback), with the port
    // the server got.
    let port = addr.rsplit_once(':').expect("host:port").1;
    let wildcard = format!("0.0.0.0:{port}");
    let health = || async {
        tokio::time::timeout(
            Duration::from_secs(20),
            tokio::process::Command::new(binary_path())
                .args(&health_cmd[1..])
                .envs(image_env(&wildcard))
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("health answers within 20 s")
        .unwrap()
    };
    let out = health().await;
    assert!(
        out.status.success(),
        "health of the running server: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
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
    // Stopped: unhealthy, which is exit 1 (not a usage error, not a hang).
    let out = health().await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "health of the stopped server: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
