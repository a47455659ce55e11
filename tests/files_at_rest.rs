//! Files at rest: the data root and everything roomgate writes there are private to its
//! user, the database files sled creates included, even when someone else created the
//! root with open permissions.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// Every entry under `root` (not following links) that others could reach: files not
/// 0600 or narrower, directories not 0700.
fn open_to_others(root: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_symlink() {
                continue;
            }
            if kind.is_dir() {
                pending.push(path.clone());
            }
            let m = mode(&path);
            if m & 0o077 != 0 {
                bad.push(format!("{} {m:04o}", path.display()));
            }
        }
    }
    bad
}

/// A root made 0755 by someone else (with a stray 0644 file in it) becomes 0700 at
/// start, the database directory 0700, and every file in it, sled's included, 0600;
/// while the server runs and after it stops.
#[tokio::test]
async fn a_pre_created_open_data_root_is_made_private_with_its_database_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("notes.txt"), "left by an operator").unwrap();
    std::fs::set_permissions(
        root.join("notes.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();

    let bin = Binary::start(&root, &[]).await;
    assert_eq!(format!("{:o}", mode(&root)), "700", "data root");
    assert_eq!(
        format!("{:o}", mode(&root.join("db"))),
        "700",
        "database directory"
    );
    assert!(
        std::fs::read_dir(root.join("db")).unwrap().count() > 0,
        "sled wrote no files"
    );
    let bad = open_to_others(&root);
    assert!(bad.is_empty(), "open to others while running: {bad:?}");
    bin.stop().await;
    let bad = open_to_others(&root);
    assert!(bad.is_empty(), "open to others after stop: {bad:?}");
}

/// In production mode a root others can reach that cannot be made private stops the
/// start, naming the root. (`/proc/self/fdinfo` is 0555 and refuses `chmod` even to
/// root; nothing is written there, since the check comes first.)
#[tokio::test]
async fn production_refuses_a_data_root_it_cannot_make_private() {
    let mut cmd = roomgate_command(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data",
        "/proc/self/fdinfo",
    ]);
    cmd.env("JWT_SECRET", JWT_SECRET)
        .env("WS_SECRET", WS_SECRET)
        .env("ROOMGATE_ENV", "production")
        .env("ROOMGATE_SECURITY__BEHIND_PROXY", "true")
        .env("ROOMGATE_SECURITY__TRUSTED_PROXIES", "127.0.0.1")
        .env("ROOMGATE_SECURITY__ALLOWED_ORIGINS", "https://chat.example");
    let out = finish(cmd).await;
    assert!(!out.ok, "started: {}", out.stdout);
    let refusal = out
        .stderr
        .lines()
        .find(|l| l.starts_with("roomgate: "))
        .unwrap_or_else(|| panic!("no error line: {}", out.stderr));
    assert!(
        refusal.contains("data directory /proc/self/fdinfo is open to other users")
            && refusal.contains("production mode refuses it"),
        "{refusal}"
    );
}
