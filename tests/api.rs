//! The admin HTTP API over real sockets: every route's permission check (401 without or
//! with bad credentials, 403 without the permission, through either a bearer token or an
//! API key), API keys made, used and revoked from the CLI (server running and stopped)
//! and the API, paging bounds, the body limit, and rights changes made through the API
//! reaching open WebSocket connections at once.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use roomgate::authz::Permission;
use roomgate::http::api::{Need, Verb, route_table};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How a test request authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Key(&'a str),
}

async fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Auth<'_>,
    body: Option<Value>,
) -> HttpReply {
    let bearer;
    let mut headers = vec![("Content-Type", "application/json")];
    match auth {
        Auth::None => {}
        Auth::Bearer(t) => {
            bearer = format!("Bearer {t}");
            headers.push(("Authorization", &bearer));
        }
        Auth::Key(k) => headers.push(("X-Api-Key", k)),
    }
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    http_request(addr, method, path, &headers, bytes.as_bytes()).await
}

/// The first-start admin's access token.
async fn admin_token(s: &TestServer) -> String {
    let r = login(s.addr, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_string()
}

/// An API key with these scopes, made through the API by the admin.
async fn key_with(s: &TestServer, admin: &str, name: &str, scopes: &[&str]) -> String {
    let r = api(
        s.addr,
        "POST",
        "/api/v1/apikeys",
        Auth::Bearer(admin),
        Some(json!({"name": name, "scopes": scopes})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["key"].as_str().unwrap().to_string()
}

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "x" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

fn body_for(verb: Verb) -> Option<Value> {
    matches!(verb, Verb::Post | Verb::Put | Verb::Patch).then(|| json!({}))
}

fn assert_refused(r: &HttpReply, status: u16, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    assert_eq!(r.json()["code"], code, "{what}");
    assert!(r.json()["message"].is_string(), "{what}");
    if status == 401 {
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm="),
            "{what}: {challenge}"
        );
    } else {
        assert!(r.header("www-authenticate").is_none(), "{what}");
    }
}

#[tokio::test]
async fn every_route_checks_its_permission() {
    let s = TestServer::start().await;
    let admin = admin_token(&s).await;
    // A plain user: valid token, default role `user`, no global permissions.
    let plain = token("plain");
    let bad_key = format!("rgk_{}", "0".repeat(64));
    let mut checked = 0;
    for route in route_table() {
        let Need::AnyOf(perms) = route.need else {
            continue;
        };
        let (method, path) = (route.verb.as_str(), concrete(route.path));
        let what = format!("{method} {path}");
        let body = || body_for(route.verb);

        let r = api(s.addr, method, &path, Auth::None, body()).await;
        assert_refused(&r, 401, "authentication_required", &what);
        let r = api(s.addr, method, &path, Auth::Bearer("not.a.jwt"), body()).await;
        assert_refused(&r, 401, "invalid_token", &what);
        let r = api(s.addr, method, &path, Auth::Bearer(&bad_key), body()).await;
        assert_refused(&r, 401, "invalid_api_key", &what);
        let r = api(s.addr, method, &path, Auth::Key(&bad_key), body()).await;
        assert_refused(&r, 401, "invalid_api_key", &what);

        let r = api(s.addr, method, &path, Auth::Bearer(&plain), body()).await;
        assert_refused(&r, 403, "insufficient_permissions", &what);

        // A key with every other permission is still refused.
        let others: Vec<&str> = Permission::ALL
            .iter()
            .filter(|p| !perms.contains(p))
            .map(|p| p.as_str())
            .collect();
        let other_key = key_with(&s, &admin, &format!("other{checked}"), &others).await;
        let r = api(s.addr, method, &path, Auth::Key(&other_key), body()).await;
        assert_refused(&r, 403, "insufficient_permissions", &what);

        // Each permission the route accepts gets past the check (through either header).
        for p in perms {
            let key = key_with(
                &s,
                &admin,
                &format!("k{checked}{}", p.as_str()),
                &[p.as_str()],
            )
            .await;
            for auth in [Auth::Key(&key), Auth::Bearer(&key)] {
                let r = api(s.addr, method, &path, auth, body()).await;
                assert!(
                    r.status != 401 && r.status != 403,
                    "{what} with {}: {} {}",
                    p.as_str(),
                    r.status,
                    r.body
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} routes checked");
}

#[tokio::test]
async fn a_users_roles_decide_what_their_bearer_token_may_do() {
    let s = TestServer::start().await;
    let admin = admin_token(&s).await;
    let t = token("erin");
    let r = api(s.addr, "GET", "/api/v1/stats", Auth::Bearer(&t), None).await;
    assert_refused(&r, 403, "insufficient_permissions", "before");
    // The built-in moderator role carries stats:read but not events:read.
    let r = api(
        s.addr,
        "PUT",
        "/api/v1/users/erin/roles",
        Auth::Bearer(&admin),
        Some(json!({"roles": ["moderator"]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"userId": "erin", "roles": ["moderator"]}));
    let r = api(s.addr, "GET", "/api/v1/stats", Auth::Bearer(&t), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api(s.addr, "GET", "/api/v1/events", Auth::Bearer(&t), None).await;
    assert_refused(&r, 403, "insufficient_permissions", "events");

    // A revoked token is refused as invalid, not as lacking rights.
    let r = api(
        s.addr,
        "POST",
        "/api/v1/revocations",
        Auth::Bearer(&admin),
        Some(json!({"token": t})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api(s.addr, "GET", "/api/v1/stats", Auth::Bearer(&t), None).await;
    assert_refused(&r, 401, "invalid_token", "revoked");

    // A logged-out access token, and a wsToken, are not API credentials.
    let r = post_json(s.addr, "/auth/logout", &json!({})).await;
    assert_eq!(r.status, 401);
    let r = http_request(
        s.addr,
        "POST",
        "/auth/logout",
        &[("Authorization", &format!("Bearer {admin}"))],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api(s.addr, "GET", "/api/v1/stats", Auth::Bearer(&admin), None).await;
    assert_refused(&r, 401, "invalid_token", "logged out");
    let mut c = s.client().await;
    let data = c.auth(&token("admin")).await;
    let ws_token = data["wsToken"].as_str().unwrap().to_string();
    let r = api(
        s.addr,
        "GET",
        "/api/v1/stats",
        Auth::Bearer(&ws_token),
        None,
    )
    .await;
    assert_refused(&r, 401, "invalid_token", "wsToken");
    // Refusals are security events.
    let admin = admin_token(&s).await;
    let r = api(
        s.addr,
        "GET",
        "/api/v1/events?action=api_auth&result=failure",
        Auth::Bearer(&admin),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let reasons: Vec<Value> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["metadata"]["reason"].clone())
        .collect();
    assert!(reasons.contains(&json!("revoked")), "{reasons:?}");
    assert!(reasons.contains(&json!("ws_token")), "{reasons:?}");
}

fn cli_value(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|_| panic!("not JSON: {out}"))
}

#[tokio::test]
async fn api_keys_from_the_cli_work_until_revoked_running_or_stopped() {
    let s = TestServer::start_with(|c| c.api.key_last_used_interval_secs = 0).await;
    let dir = s.dir.path().to_path_buf();

    // Running: through the control socket.
    let (ok, out, err) = run_cli(
        &dir,
        &[
            "apikey",
            "create",
            "--name",
            "ci",
            "--scopes",
            "stats:read,events:read",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let created = cli_value(&out);
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("rgk_") && key.len() == 68, "{key}");
    assert_eq!(created["scopes"], json!(["stats:read", "events:read"]));
    let id = created["id"].as_str().unwrap().to_string();

    let r = api(s.addr, "GET", "/api/v1/stats", Auth::Key(&key), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["uptimeSecs"].is_u64());
    let r = api(s.addr, "GET", "/api/v1/users", Auth::Bearer(&key), None).await;
    assert_refused(&r, 403, "insufficient_permissions", "out of scope");

    // The list never shows the key or its digest, and records the use.
    let (ok, out, _) = run_cli(&dir, &["apikey", "list"]).await;
    assert!(ok);
    assert!(!out.contains(&key[4..]), "{out}");
    let listed = cli_value(out.lines().next().unwrap());
    assert_eq!(listed["name"], "ci");
    assert!(listed["lastUsedMs"].as_u64().unwrap() > 0, "{listed}");
    assert!(listed.get("digest").is_none());

    // Bad input is refused with the reason.
    let (ok, _, err) = run_cli(
        &dir,
        &["apikey", "create", "--name", "x", "--scopes", "rooms:*"],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("not a permission"), "{err}");
    let (ok, _, err) = run_cli(
        &dir,
        &["apikey", "create", "--name", "ci", "--scopes", "stats:read"],
    )
    .await;
    assert!(!ok && err.contains("already exists"), "{err}");

    // Revoked by id while running: the next request is 401.
    let (ok, _, err) = run_cli(&dir, &["apikey", "revoke", &id]).await;
    assert!(ok, "{err}");
    let r = api(s.addr, "GET", "/api/v1/stats", Auth::Key(&key), None).await;
    assert_refused(&r, 401, "invalid_api_key", "revoked");

    // Stopped: straight on the store; the key works after a start.
    let dir_handle = s.stop().await;
    let (ok, out, err) = run_cli(
        dir_handle.path(),
        &[
            "apikey",
            "create",
            "--name",
            "ops",
            "--scopes",
            "stats:read",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let key = cli_value(&out)["key"].as_str().unwrap().to_string();
    let s = TestServer::start_in(dir_handle, |_| {}).await;
    let r = api(s.addr, "GET", "/api/v1/stats", Auth::Key(&key), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let dir_handle = s.stop().await;
    let (ok, _, err) = run_cli(dir_handle.path(), &["apikey", "revoke", "ops"]).await;
    assert!(ok, "{err}");
    let s = TestServer::start_in(dir_handle, |_| {}).await;
    let r = api(s.addr, "GET", "/api/v1/stats", Auth::Key(&key), None).await;
    assert_refused(&r, 401, "invalid_api_key", "revoked while stopped");
}

#[tokio::test]
async fn api_keys_through_the_api_cannot_exceed_their_makers_rights() {
    let s = TestServer::start().await;
    let admin = admin_token(&s).await;
    let manager = key_with(&s, &admin, "manager", &["apikeys:manage", "stats:read"]).await;
    let r = api(
        s.addr,
        "POST",
        "/api/v1/apikeys",
        Auth::Key(&manager),
        Some(json!({"name": "climb", "scopes": ["users:manage"]})),
    )
    .await;
    assert_refused(&r, 403, "insufficient_permissions", "climb");
    let r = api(
        s.addr,
        "POST",
        "/api/v1/apikeys",
        Auth::Key(&manager),
        Some(json!({"name": "reader", "scopes": ["stats:read"]})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let reader = r.json()["key"].as_str().unwrap().to_string();
    let r = api(
        s.addr,
        "POST",
        "/api/v1/apikeys",
        Auth::Key(&manager),
        Some(json!({"name": "bad", "scopes": []})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["field"], "scopes");
    let r = api(s.addr, "GET", "/api/v1/apikeys", Auth::Key(&manager), None).await;
    let names: Vec<Value> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("manager"), json!("reader")]);
    assert!(!r.body.contains("rgk_"));
    let r = api(
        s.addr,
        "DELETE",
        "/api/v1/apikeys/reader",
        Auth::Key(&manager),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api(s.addr, "GET", "/api/v1/stats", Auth::Key(&reader), None).await;
    assert_refused(&r, 401, "invalid_api_key", "revoked through the API");
    let r = api(
        s.addr,
        "DELETE",
        "/api/v1/apikeys/reader",
        Auth::Key(&manager),
        None,
    )
    .await;
    assert_refused(&r, 404, "apikey_not_found", "twice");
}

#[tokio::test]
async fn lists_are_paged_within_the_configured_bounds() {
    let s = TestServer::start_with(|c| {
        c.api.default_page_size = 2;
        c.api.max_page_size = 3;
    })
    .await;
    let admin = admin_token(&s).await;
    let auth = Auth::Bearer(&admin);
    for i in 0..7 {
        let r = api(
            s.addr,
            "POST",
            "/api/v1/rooms",
            auth,
            Some(json!({"id": format!("room{i}")})),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    // Default page size, then cursors to the end: every room once, in order.
    let mut seen = Vec::new();
    let mut url = "/api/v1/rooms".to_string();
    let mut pages = 0;
    loop {
        let r = api(s.addr, "GET", &url, auth, None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let page = r.json();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2, "{page}");
        seen.extend(items.iter().map(|r| r["id"].as_str().unwrap().to_string()));
        pages += 1;
        match page["nextCursor"].as_str() {
            Some(c) => url = format!("/api/v1/rooms?cursor={c}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..7).map(|i| format!("room{i}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 4);
    // A larger limit is cut to the maximum; the maximum itself is honoured.
    for (limit, len) in [(1000, 3), (3, 3), (1, 1)] {
        let r = api(
            s.addr,
            "GET",
            &format!("/api/v1/rooms?limit={limit}"),
            auth,
            None,
        )
        .await;
        assert_eq!(r.json()["items"].as_array().unwrap().len(), len, "{limit}");
    }
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=x", "limit"),
        ("cursor=zz", "cursor"),
    ] {
        let r = api(s.addr, "GET", &format!("/api/v1/rooms?{query}"), auth, None).await;
        assert_eq!(r.status, 400, "{query}");
        assert_eq!(r.json()["code"], "invalid_field");
        assert_eq!(r.json()["field"], field, "{query}");
    }
    // Events page by cursor and filter by action, result and time.
    let r = api(
        s.addr,
        "GET",
        "/api/v1/events?action=room_created&limit=3",
        auth,
        None,
    )
    .await;
    let first = r.json();
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let cursor = first["nextCursor"].as_str().unwrap();
    let r = api(
        s.addr,
        "GET",
        &format!("/api/v1/events?action=room_created&limit=3&cursor={cursor}"),
        auth,
        None,
    )
    .await;
    let second = r.json();
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["metadata"]["roomId"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&first), vec!["room0", "room1", "room2"]);
    assert_eq!(ids(&second), vec!["room3", "room4", "room5"]);
    for e in first["items"].as_array().unwrap() {
        assert_eq!(e["metadata"]["via"], "api");
        assert!(
            e["metadata"]["actor"]
                .as_str()
                .unwrap()
                .starts_with("user:")
        );
    }
    let t0 = first["items"][1]["timestamp"].as_u64().unwrap();
    let r = api(
        s.addr,
        "GET",
        &format!("/api/v1/events?action=room_created&until={t0}&result=success"),
        auth,
        None,
    )
    .await;
    let upto = r.json();
    assert!(
        upto["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["timestamp"].as_u64().unwrap() <= t0)
    );
    let r = api(
        s.addr,
        "GET",
        "/api/v1/events?action=room_created&result=failure",
        auth,
        None,
    )
    .await;
    assert_eq!(r.json()["items"], json!([]));
}

/// A chunked request with no `Content-Length`; returns the status.
async fn chunked_post(addr: SocketAddr, path: &str, auth: &str, body: &[u8]) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {auth}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(256) {
        let part = format!("{:x}\r\n", chunk.len());
        // The server may stop reading once the limit is passed.
        if stream.write_all(part.as_bytes()).await.is_err()
            || stream.write_all(chunk).await.is_err()
            || stream.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw);
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413() {
    let s = TestServer::start_with(|c| c.api.max_body_bytes = 1024).await;
    let admin = admin_token(&s).await;
    let auth = Auth::Bearer(&admin);
    // Exactly at the limit: read and judged (a valid room).
    let base = json!({"id": "edge", "name": ""}).to_string().len();
    let name = "n".repeat(1024 - base);
    let at_limit = json!({"id": "edge", "name": name});
    assert_eq!(at_limit.to_string().len(), 1024);
    let name_too_long = api(s.addr, "POST", "/api/v1/rooms", auth, Some(at_limit)).await;
    assert_eq!(name_too_long.status, 400, "{}", name_too_long.body);
    assert_eq!(name_too_long.json()["field"], "name");
    // One byte more: 413.
    let over = json!({"id": "edge", "name": format!("{name}n")});
    let r = api(s.addr, "POST", "/api/v1/rooms", auth, Some(over)).await;
    assert_refused(&r, 413, "payload_too_large", "content-length");
    // Chunked, without a length: cut off once past the limit.
    let big = json!({"id": "edge", "name": "n".repeat(5000)}).to_string();
    assert_eq!(
        chunked_post(s.addr, "/api/v1/rooms", &admin, big.as_bytes()).await,
        413
    );
    let small = json!({"id": "chunked"}).to_string();
    assert_eq!(
        chunked_post(s.addr, "/api/v1/rooms", &admin, small.as_bytes()).await,
        201
    );
    // Malformed and unknown fields are invalid requests.
    let r = http_request(
        s.addr,
        "POST",
        "/api/v1/rooms",
        &[("Authorization", &format!("Bearer {admin}"))],
        b"{nope",
    )
    .await;
    assert_refused(&r, 400, "invalid_request", "malformed");
    let r = api(
        s.addr,
        "POST",
        "/api/v1/rooms",
        auth,
        Some(json!({"id": "x", "colour": "red"})),
    )
    .await;
    assert_refused(&r, 400, "invalid_request", "unknown field");
}

/// The next frame of type `kind`, which must come within one second.
async fn within_1s(c: &mut Client, kind: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(1), c.expect(kind))
        .await
        .unwrap_or_else(|_| panic!("no {kind} within 1 s"))["data"]
        .clone()
}

#[tokio::test]
async fn rights_changed_through_the_api_reach_open_sockets_at_once() {
    let s = TestServer::start().await;
    let admin = admin_token(&s).await;
    let auth = Auth::Bearer(&admin);
    let r = api(
        s.addr,
        "POST",
        "/api/v1/rooms",
        auth,
        Some(json!({"id": "staff", "read": ["staff"], "write": ["staff"], "admin": ["admin"]})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);

    // A user's roles: given, the user may join; taken, the socket is out at once.
    let mut dave = s.authed("dave").await;
    let r = api(
        s.addr,
        "PUT",
        "/api/v1/users/dave/roles",
        auth,
        Some(json!({"roles": ["staff"]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    dave.join("staff").await;
    let r = api(s.addr, "GET", "/api/v1/rooms/staff/members", auth, None).await;
    assert_eq!(r.json()["members"][0]["userId"], "dave", "{}", r.body);

    // A room's ACL: write taken away, then given to the user alone.
    let r = api(
        s.addr,
        "PATCH",
        "/api/v1/rooms/staff",
        auth,
        Some(json!({"write": []})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        within_1s(&mut dave, "permissions_updated").await,
        json!({"roomId": "staff", "read": true, "write": false, "admin": false})
    );
    let r = api(
        s.addr,
        "PATCH",
        "/api/v1/rooms/staff",
        auth,
        Some(json!({"grant": {"userId": "dave", "read": true, "write": true}})),
    )
    .await;
    assert_eq!(r.json()["userGrants"][0]["userId"], "dave");
    assert_eq!(
        within_1s(&mut dave, "permissions_updated").await,
        json!({"roomId": "staff", "read": true, "write": true, "admin": false})
    );

    // A role's permissions: rooms:admin on `staff` makes dave a room admin here.
    let r = api(
        s.addr,
        "PUT",
        "/api/v1/roles/staff",
        auth,
        Some(json!({"permissions": ["rooms:admin"]})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        within_1s(&mut dave, "permissions_updated").await,
        json!({"roomId": "staff", "read": true, "write": true, "admin": true})
    );
    let r = api(s.addr, "DELETE", "/api/v1/roles/staff", auth, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        within_1s(&mut dave, "permissions_updated").await["admin"],
        false
    );
    let r = api(s.addr, "DELETE", "/api/v1/roles/admin", auth, None).await;
    assert_refused(&r, 409, "role_builtin", "built-in role");

    // Revoke the grant and the role: dave loses read and is taken out.
    api(
        s.addr,
        "PATCH",
        "/api/v1/rooms/staff",
        auth,
        Some(json!({"revokeGrant": "dave"})),
    )
    .await;
    let r = api(
        s.addr,
        "PUT",
        "/api/v1/users/dave/roles",
        auth,
        Some(json!({"roles": []})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        within_1s(&mut dave, "room_left").await,
        json!({"roomId": "staff", "reason": "permission_revoked"})
    );

    // A ban through the API takes the user out at once, and kicks work too.
    let r = api(
        s.addr,
        "PUT",
        "/api/v1/users/dave/roles",
        auth,
        Some(json!({"roles": ["staff"]})),
    )
    .await;
    assert_eq!(r.status, 200);
    dave.join("staff").await;
    let r = api(
        s.addr,
        "POST",
        "/api/v1/rooms/staff/kick",
        auth,
        Some(json!({"userId": "dave"})),
    )
    .await;
    assert_eq!(r.json()["count"], 1, "{}", r.body);
    assert_eq!(
        within_1s(&mut dave, "room_left").await,
        json!({"roomId": "staff", "reason": "kicked"})
    );
    dave.join("staff").await;
    let r = api(
        s.addr,
        "PATCH",
        "/api/v1/rooms/staff",
        auth,
        Some(json!({"ban": "dave"})),
    )
    .await;
    assert_eq!(r.json()["bans"], json!(["dave"]));
    assert_eq!(
        within_1s(&mut dave, "room_left").await,
        json!({"roomId": "staff", "reason": "banned"})
    );
    // Deleting the room empties it first.
    let r = api(
        s.addr,
        "PATCH",
        "/api/v1/rooms/staff",
        auth,
        Some(json!({"unban": "dave"})),
    )
    .await;
    assert_eq!(r.status, 200);
    dave.join("staff").await;
    let r = api(s.addr, "DELETE", "/api/v1/rooms/staff", auth, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        within_1s(&mut dave, "room_left").await,
        json!({"roomId": "staff", "reason": "room_deleted"})
    );
    let r = api(s.addr, "GET", "/api/v1/rooms/staff", auth, None).await;
    assert_refused(&r, 404, "room_not_found", "deleted room");
}

#[tokio::test]
async fn sessions_are_listed_and_terminated_and_history_is_paged() {
    let s = TestServer::start().await;
    let admin = admin_token(&s).await;
    let auth = Auth::Bearer(&admin);
    let mut fay = s.authed("fay").await;
    fay.join("lounge").await;
    for i in 0..5 {
        fay.say("lounge", &format!("m{i}")).await;
        fay.expect("message").await;
    }
    // Paged as the `history` frame pages: since forward, before backward.
    let contents = |page: &Value| -> Vec<String> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_string())
            .collect()
    };
    let addr = s.addr;
    let get = |q: String| async move {
        let path = format!("/api/v1/rooms/lounge/history?{q}");
        api(addr, "GET", &path, auth, None).await
    };
    let first = get("since=0&limit=2".into()).await.json();
    assert_eq!(contents(&first), vec!["m0", "m1"]);
    assert_eq!(first["hasMore"], true);
    let last_seq = first["messages"][1]["seq"].as_u64().unwrap();
    let rest = get(format!("since={last_seq}&limit=10")).await.json();
    assert_eq!(contents(&rest), vec!["m2", "m3", "m4"]);
    assert_eq!(rest["hasMore"], false);
    assert_eq!(rest["epoch"], first["epoch"]);
    let newest = get("limit=2".into()).await.json();
    assert_eq!(contents(&newest), vec!["m3", "m4"]);
    for (q, field) in [("since=1&before=3", "before"), ("limit=0", "limit")] {
        let r = get(q.into()).await;
        assert_eq!(
            (r.status, r.json()["field"].clone()),
            (400, json!(field)),
            "{q}"
        );
    }
    // A reset empties the history under a new epoch.
    let r = api(s.addr, "DELETE", "/api/v1/rooms/lounge/history", auth, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let epoch = r.json()["epoch"].clone();
    assert_ne!(epoch, first["epoch"]);
    let after = get("since=0".into()).await.json();
    assert_eq!(
        (after["messages"].clone(), after["epoch"].clone()),
        (json!([]), epoch)
    );

    let r = api(s.addr, "GET", "/api/v1/users/fay/sessions", auth, None).await;
    let sessions = r.json()["items"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 1, "{}", r.body);
    let sid = sessions[0]["sessionId"].as_str().unwrap();
    let r = api(
        s.addr,
        "DELETE",
        &format!("/api/v1/users/someone-else/sessions/{sid}"),
        auth,
        None,
    )
    .await;
    assert_refused(&r, 404, "session_not_found", "other user's session");
    let r = api(
        s.addr,
        "DELETE",
        &format!("/api/v1/users/fay/sessions/{sid}"),
        auth,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["closedConnections"], 1);
    assert_eq!(fay.expect_close().await.code, 4003);
    let r = api(s.addr, "GET", "/api/v1/users/fay/sessions", auth, None).await;
    assert_eq!(r.json()["items"], json!([]));
}

#[tokio::test]
async fn accounts_through_the_api() {
    let s = TestServer::start().await;
    let admin = admin_token(&s).await;
    let auth = Auth::Bearer(&admin);
    let r = api(
        s.addr,
        "POST",
        "/api/v1/users",
        auth,
        Some(json!({"username": "gus", "roles": ["moderator"]})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let password = r.json()["password"].as_str().unwrap().to_string();
    let r = api(
        s.addr,
        "POST",
        "/api/v1/users",
        auth,
        Some(json!({"username": "gus"})),
    )
    .await;
    assert_refused(&r, 409, "already_exists", "twice");
    let r = api(
        s.addr,
        "POST",
        "/api/v1/users",
        auth,
        Some(json!({"username": "bad name"})),
    )
    .await;
    assert_eq!(r.json()["field"], "username");

    let gus = login(s.addr, "gus", &password).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = api(s.addr, "GET", "/api/v1/users/gus", auth, None).await;
    let detail = r.json();
    assert_eq!(detail["roles"], json!(["moderator"]));
    assert!(
        detail["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("rooms:admin"))
    );
    let mut c = s.client().await;
    c.auth(&gus).await;
    let r = api(s.addr, "GET", "/api/v1/users/gus", auth, None).await;
    assert_eq!(r.json()["connections"], 1);

    let r = api(s.addr, "POST", "/api/v1/users/gus/disable", auth, None).await;
    assert_eq!(r.json()["closedConnections"], 1, "{}", r.body);
    assert_eq!(c.expect_close().await.code, 4003);
    assert_eq!(login(s.addr, "gus", &password).await.status, 401);
    let r = api(s.addr, "POST", "/api/v1/users/gus/enable", auth, None).await;
    assert_eq!(r.json()["disabled"], false);
    let r = api(
        s.addr,
        "POST",
        "/api/v1/users/gus/password",
        auth,
        Some(json!({"password": "short"})),
    )
    .await;
    assert_eq!(r.json()["field"], "password");
    let r = api(
        s.addr,
        "POST",
        "/api/v1/users/gus/password",
        auth,
        Some(json!({"password": "a-new-long-password"})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        login(s.addr, "gus", "a-new-long-password").await.status,
        200
    );
    let r = api(s.addr, "GET", "/api/v1/users?limit=10", auth, None).await;
    let names: Vec<Value> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].clone())
        .collect();
    assert_eq!(names, vec![json!("admin"), json!("gus")]);
    assert!(!r.body.contains("argon2"));
    let r = api(s.addr, "DELETE", "/api/v1/users/gus", auth, None).await;
    assert_eq!(r.json()["deleted"], true);
    let r = api(s.addr, "GET", "/api/v1/users/gus", auth, None).await;
    assert_refused(&r, 404, "user_not_found", "deleted");
}

#[tokio::test]
async fn the_api_can_be_turned_off() {
    let s = TestServer::start_with(|c| c.api.enabled = false).await;
    let r = api(s.addr, "GET", "/api/v1/openapi.json", Auth::None, None).await;
    assert_refused(&r, 404, "not_found", "disabled");
}

#[tokio::test]
async fn notifications_through_the_api_reach_users_online_and_offline() {
    let s = TestServer::start().await;
    let admin = admin_token(&s).await;
    let key = key_with(&s, &admin, "app", &["notify:publish"]).await;
    let mut hank = s.authed("hank").await;
    let r = api(
        s.addr,
        "POST",
        "/api/v1/notify",
        Auth::Key(&key),
        Some(json!({"userIds": ["hank", "ivy"], "title": "Build", "body": "green", "data": {"n": 1}})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"recipients": 2, "connections": 1}));
    let n = within_1s(&mut hank, "notification").await;
    assert_eq!(n["from"], "system");
    assert_eq!(n["title"], "Build");
    assert_eq!(n["data"], json!({"n": 1}));
    // Offline: kept, and delivered after the next auth.
    let mut ivy = s.client().await;
    ivy.send("auth", json!({"token": token("ivy")})).await;
    ivy.expect("auth_success").await;
    assert_eq!(ivy.expect("notification").await["data"]["body"], "green");

    // To a room's current members, from a bearer token's user.
    hank.join("news").await;
    let r = api(
        s.addr,
        "POST",
        "/api/v1/notify",
        Auth::Bearer(&admin),
        Some(json!({"roomId": "news", "body": "hello room"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["roomId"], "news");
    let n = within_1s(&mut hank, "notification").await;
    assert_eq!(
        (n["from"].as_str(), n["roomId"].as_str()),
        (Some("admin"), Some("news"))
    );

    // Refusals name the field; an unknown room is 404.
    for (body, status, field) in [
        (json!({"body": "no one"}), 400, Some("userIds")),
        (
            json!({"userId": "a", "roomId": "news", "body": "x"}),
            400,
            Some("userIds"),
        ),
        (
            json!({"userId": "a", "body": "x".repeat(5000)}),
            400,
            Some("body"),
        ),
        (json!({"roomId": "nowhere", "body": "x"}), 404, None),
    ] {
        let r = api(
            s.addr,
            "POST",
            "/api/v1/notify",
            Auth::Key(&key),
            Some(body),
        )
        .await;
        assert_eq!(r.status, status, "{}", r.body);
        if let Some(f) = field {
            assert_eq!(r.json()["field"], f, "{}", r.body);
        }
    }
    // Recorded with the caller.
    let r = api(
        s.addr,
        "GET",
        "/api/v1/events?action=notification_publish",
        Auth::Bearer(&admin),
        None,
    )
    .await;
    let events = r.json()["items"].as_array().unwrap().clone();
    assert!(
        events.iter().any(|e| e["metadata"]["actor"]
            .as_str()
            .unwrap_or("")
            .starts_with("apikey:")),
        "{events:?}"
    );
}

#[tokio::test]
async fn applications_publish_room_messages_stored_in_history_once() {
    let s = TestServer::start().await;
    let admin = admin_token(&s).await;
    let key = key_with(&s, &admin, "deployer", &["notify:publish"]).await;
    let r = api(
        s.addr,
        "POST",
        "/api/v1/rooms",
        Auth::Bearer(&admin),
        Some(json!({"id": "ops"})),
    )
    .await;
    assert_eq!(r.status, 201);
    let mut jo = s.authed("jo").await;
    jo.join("ops").await;
    let body = json!({"roomId": "ops", "content": "Deploy <b>done</b>", "clientMsgId": "deploy-1"});
    let r = api(
        s.addr,
        "POST",
        "/api/v1/publish",
        Auth::Key(&key),
        Some(body.clone()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ack = r.json();
    assert_eq!(ack["duplicate"], false);
    let m = within_1s(&mut jo, "message").await;
    assert_eq!(
        (
            m["userId"].clone(),
            m["system"].clone(),
            m["content"].clone()
        ),
        (json!("system"), json!(true), json!("Deploy bdone/b"))
    );
    assert_eq!(
        (m["seq"].clone(), m["id"].clone()),
        (ack["seq"].clone(), ack["id"].clone())
    );
    // The same clientMsgId again: not stored or sent twice, the original's id and seq back.
    let r = api(
        s.addr,
        "POST",
        "/api/v1/publish",
        Auth::Key(&key),
        Some(body),
    )
    .await;
    let again = r.json();
    assert_eq!(again["duplicate"], true);
    assert_eq!(
        (again["id"].clone(), again["seq"].clone()),
        (ack["id"].clone(), ack["seq"].clone())
    );
    jo.expect_silence(300).await;
    let r = api(
        s.addr,
        "GET",
        "/api/v1/rooms/ops/history",
        Auth::Bearer(&admin),
        None,
    )
    .await;
    let history = r.json();
    assert_eq!(
        history["messages"].as_array().unwrap().len(),
        1,
        "{history}"
    );
    assert_eq!(history["messages"][0]["system"], true);
    // Unknown rooms are not created; bad input names its field.
    for (body, status, field) in [
        (json!({"roomId": "nowhere", "content": "x"}), 404, None),
        (
            json!({"roomId": "ops", "content": ""}),
            400,
            Some("content"),
        ),
        (
            json!({"roomId": "bad room", "content": "x"}),
            400,
            Some("roomId"),
        ),
        (
            json!({"roomId": "ops", "content": "x", "clientMsgId": "no spaces"}),
            400,
            Some("clientMsgId"),
        ),
    ] {
        let r = api(
            s.addr,
            "POST",
            "/api/v1/publish",
            Auth::Key(&key),
            Some(body),
        )
        .await;
        assert_eq!(r.status, status, "{}", r.body);
        if let Some(f) = field {
            assert_eq!(r.json()["field"], f);
        }
    }
}

#[tokio::test]
async fn revocations_are_listed_by_key_never_by_token_and_paged() {
    let s = TestServer::start().await;
    let admin = admin_token(&s).await;
    let auth = Auth::Bearer(&admin);
    let empty = api(s.addr, "GET", "/api/v1/revocations", auth, None).await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(empty.json(), json!({"items": [], "nextCursor": null}));

    let raw = token("gus");
    for body in [
        json!({"jti": "j-1"}),
        json!({"userId": "mallory"}),
        json!({"token": raw}),
    ] {
        let r = api(s.addr, "POST", "/api/v1/revocations", auth, Some(body)).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let all = api(s.addr, "GET", "/api/v1/revocations", auth, None).await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert!(
        !all.body.contains(&raw),
        "the raw token is listed: {}",
        all.body
    );
    let items = all.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 3, "{items:?}");
    let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "listed by id");
    let jti = items.iter().find(|i| i["id"] == "token:jti:j-1").unwrap();
    assert_eq!(jti["kind"], "token");
    assert_eq!(jti["key"], "jti:j-1");
    assert!(jti["revokedMs"].as_u64().unwrap() > 0);
    assert!(jti["expiresMs"].as_u64().unwrap() >= jti["revokedMs"].as_u64().unwrap());
    let user = items.iter().find(|i| i["id"] == "user:mallory").unwrap();
    assert_eq!(user["kind"], "user");
    assert_eq!(user["userId"], "mallory");
    assert!(
        user.get("key").is_none() && user.get("expiresMs").is_none(),
        "{user}"
    );
    let tok = items
        .iter()
        .find(|i| i["kind"] == "token" && i["id"] != "token:jti:j-1")
        .unwrap();
    let key = tok["key"].as_str().unwrap();
    assert!(
        key.starts_with("jti:") || key.starts_with("sha256:"),
        "{key}"
    );

    // Paged like every list: the cursor of a page leads to the rest, nothing twice.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/revocations?limit=2&cursor={c}"),
            None => "/api/v1/revocations?limit=2".to_string(),
        };
        let page = api(s.addr, "GET", &path, auth, None).await.json();
        for i in page["items"].as_array().unwrap() {
            seen.push(i["id"].as_str().unwrap().to_string());
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
}
