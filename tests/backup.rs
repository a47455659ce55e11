//! Backup and restore: `roomgate backup FILE` while the server runs (through its control
//! socket), `roomgate restore FILE --data DIR` into a new data root, and the restored
//! server has the same users, rooms, history, revocations and security events; a restore
//! over a database or with a running server is refused.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use roomgate::config::StoreConfig;
use roomgate::store::Store;
use serde_json::json;

async fn cli_ok(dir: &Path, args: &[&str]) -> String {
    let (ok, out, err) = run_cli(dir, args).await;
    assert!(ok, "roomgate {args:?} failed: {err}");
    out
}

#[tokio::test]
async fn a_backup_of_a_running_server_restores_everything() {
    let src = tempfile::tempdir().unwrap();
    let b = Binary::start(src.path(), &[]).await;
    cli_ok(
        src.path(),
        &["room", "create", "ops", "--read", "user", "--write", "user"],
    )
    .await;
    cli_ok(
        src.path(),
        &["user", "roles", "olga", "--set", "user,editor"],
    )
    .await;
    cli_ok(src.path(), &["revoke", "--jti", "gone-jti"]).await;
    let mut c = Client::connect(&b.url()).await;
    c.expect("handshake").await;
    c.auth(&token("olga")).await;
    c.join("ops").await;
    for i in 0..5 {
        c.say("ops", &format!("m{i}")).await;
        c.expect("message").await;
    }

    let file = src.path().join("snapshot.rgb");
    let out = cli_ok(src.path(), &["backup", file.to_str().unwrap()]).await;
    assert!(out.contains("\"entries\""), "{out}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a backup holds keys");
    // A restore may not touch a running server's data root.
    let (ok, _, err) = run_cli(src.path(), &["restore", file.to_str().unwrap()]).await;
    assert!(!ok && err.contains("running"), "{err}");
    b.stop().await;

    let dst = tempfile::tempdir().unwrap();
    let restored = dst.path().join("data");
    cli_ok(&restored, &["restore", file.to_str().unwrap()]).await;
    // Never over an existing database.
    let (ok, _, err) = run_cli(&restored, &["restore", file.to_str().unwrap()]).await;
    assert!(!ok && err.contains("already holds a database"), "{err}");

    let before = Store::open(src.path(), &StoreConfig::default()).unwrap();
    let after = Store::open(&restored, &StoreConfig::default()).unwrap();
    assert_eq!(after.room("ops").unwrap(), before.room("ops").unwrap());
    assert_eq!(
        after.history("ops").unwrap(),
        before.history("ops").unwrap()
    );
    assert_eq!(after.history("ops").unwrap().len(), 5);
    assert_eq!(
        after.user_grants("olga").unwrap(),
        before.user_grants("olga").unwrap()
    );
    assert!(after.is_token_revoked("jti:gone-jti").unwrap());
    assert_eq!(after.event_count(), before.event_count());
    assert!(after.event_count() > 0);
    assert_eq!(after.account_count(), before.account_count());
    // The key that hashes user ids in events comes along, so old events still match.
    assert_eq!(
        std::fs::read(restored.join("event_key")).unwrap(),
        std::fs::read(src.path().join("event_key")).unwrap()
    );
    drop((before, after));

    // The restored server serves the same rooms and history.
    let b = Binary::start(&restored, &[]).await;
    let mut c = Client::connect(&b.url()).await;
    c.expect("handshake").await;
    c.auth(&token("olga")).await;
    c.send("history", json!({"roomId": "ops"})).await;
    let h = c.expect("history").await;
    assert_eq!(h["data"]["messages"].as_array().unwrap().len(), 5, "{h}");
    b.stop().await;
}
