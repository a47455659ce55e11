//! `roomgate config check` and `roomgate config defaults` over the real binary: every
//! problem listed with its key and source, `serve` refusing with the same messages, the
//! defaults printed byte for byte, and no data directory ever created by a check.

mod common;

use std::path::Path;

use common::*;

/// Runs the binary in `cwd` with exactly these arguments and environment variables (the
/// test's own environment is not passed on, so a stray `ROOMGATE_*` cannot interfere).
async fn roomgate(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = roomgate_command(args);
    cmd.current_dir(cwd).env_clear();
    for (k, v) in envs {
        cmd.env(k, v);
    }
    finish(cmd).await
}

/// A file with three problems of different kinds: a value of the wrong type, an unknown
/// key, and a value of the right type that fails a semantic check.
const BAD: &str = "\
# three problems
[rooms]
max_participants = \"x\"
max_participant = 4

[connection]
listen_backlog = 3
";

#[tokio::test]
async fn check_lists_every_problem_with_its_key_and_source() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("roomgate.toml");
    std::fs::write(&file, BAD).unwrap();
    let file_s = file.display().to_string();
    let data = root.path().join("data");
    let data_s = data.display().to_string();
    let out = roomgate(
        root.path(),
        &["config", "check", "--config", &file_s, "--data", &data_s],
        &[("ROOMGATE_RATE_LIMITS__MAX_KEYS", "many")],
    )
    .await;
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    let mut lines: Vec<&str> = out.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            format!("connection.listen_backlog ({file_s}:7): must be between 16 and 65535"),
            "rate_limits.max_keys (ROOMGATE_RATE_LIMITS__MAX_KEYS): invalid type: string \"many\", expected usize".to_string(),
            format!("rooms.max_participant ({file_s}:4): unknown key"),
            format!("rooms.max_participants ({file_s}:3): invalid type: string \"x\", expected u32"),
        ],
        "stdout:\n{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("roomgate: 4 configuration problems"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    // A check reads the configuration only.
    assert!(!data.exists(), "config check created the data directory");
}

#[tokio::test]
async fn check_accepts_a_good_file_and_names_the_sources() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("good.toml");
    std::fs::write(&file, "[rooms]\nmax_participants = 5\n").unwrap();
    let file_s = file.display().to_string();
    let out = roomgate(
        root.path(),
        &["config", "check", "--config", &file_s],
        &[("JWT_SECRET", JWT_SECRET)],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        format!(
            "configuration OK: built-in defaults, file {file_s}, 1 environment variable (JWT_SECRET)\n"
        )
    );
    // The secret's value is never shown.
    assert!(!out.stdout.contains(JWT_SECRET) && !out.stderr.contains(JWT_SECRET));
    // Neither the default data root nor anything else was created in the working directory.
    let entries: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["good.toml"]);
}

#[tokio::test]
async fn defaults_print_the_example_file_which_itself_checks() {
    let root = tempfile::tempdir().unwrap();
    let out = roomgate(root.path(), &["config", "defaults"], &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/roomgate.toml"),
    )
    .unwrap();
    assert_eq!(
        out.stdout, example,
        "config defaults differs from scripts/roomgate.toml"
    );

    let file = root.path().join("defaults.toml");
    std::fs::write(&file, &out.stdout).unwrap();
    let file_s = file.display().to_string();
    let out = roomgate(root.path(), &["config", "check", "--config", &file_s], &[]).await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("configuration OK"), "{}", out.stdout);
}

#[tokio::test]
async fn serve_refuses_a_type_error_with_the_same_message_as_check() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("roomgate.toml");
    std::fs::write(&file, "[rooms]\nmax_participants = \"x\"\n").unwrap();
    let file_s = file.display().to_string();
    let data = root.path().join("data");
    let data_s = data.display().to_string();
    let envs = [("JWT_SECRET", JWT_SECRET), ("WS_SECRET", WS_SECRET)];
    let check = roomgate(
        root.path(),
        &["config", "check", "--config", &file_s, "--data", &data_s],
        &envs,
    )
    .await;
    assert_eq!(check.code, Some(1));
    let expected =
        format!("rooms.max_participants ({file_s}:2): invalid type: string \"x\", expected u32");
    assert_eq!(check.stdout.trim_end(), expected);

    let serve = roomgate(
        root.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            &file_s,
            "--data",
            &data_s,
        ],
        &envs,
    )
    .await;
    assert_ne!(serve.code, Some(0), "serve started: {}", serve.stdout);
    assert!(!serve.stdout.contains("listening"), "{}", serve.stdout);
    assert!(
        serve.stderr.lines().any(|l| l.ends_with(&expected)),
        "{expected:?} not in serve's stderr:\n{}",
        serve.stderr
    );
    assert!(!serve.stderr.contains("panicked"), "{}", serve.stderr);
}
