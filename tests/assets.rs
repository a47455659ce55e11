//! The embedded web assets over a real socket: every file under `web/` is served at its
//! path with its bytes and content type, `/` and `/admin` are the two pages, ETags give
//! 304s, every answer carries a Content-Security-Policy without inline script, and no
//! path (traversal, encoded or not) reaches anything else.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn web_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "node_modules" {
            continue;
        }
        if p.is_dir() {
            web_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[tokio::test]
async fn every_web_file_is_served_with_its_type_and_security_headers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let mut files = Vec::new();
    web_files(&root, &mut files);
    for must in [
        "index.html",
        "admin.html",
        "client/roomgate.js",
        "client/roomgate.d.ts",
    ] {
        assert!(root.join(must).is_file(), "web/{must} is missing");
    }
    let server = TestServer::start().await;
    let addr = server.server().local_addr();
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap().to_str().unwrap();
        let reply = http_request(addr, "GET", &format!("/{rel}"), &[], b"").await;
        assert_eq!(reply.status, 200, "/{rel}");
        let want = std::fs::read_to_string(file).unwrap_or_default();
        if !want.is_empty() {
            assert_eq!(reply.body, want, "/{rel} is served byte for byte");
        }
        let ct = reply.header("content-type").unwrap_or("");
        let expected = match rel.rsplit('.').next().unwrap() {
            "html" => "text/html",
            "js" => "text/javascript",
            "css" => "text/css",
            "ts" => "text/plain",
            "png" => "image/png",
            _ => "",
        };
        assert!(ct.starts_with(expected), "/{rel}: content-type {ct}");
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(reply.header("cache-control"), Some("no-cache"));
    }

    // The two pages at their short paths, with a CSP that forbids inline script and
    // lets the page connect to the gateway only.
    for (path, file) in [("/", "index.html"), ("/admin", "admin.html")] {
        let reply = http_request(addr, "GET", path, &[], b"").await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(
            reply.body,
            std::fs::read_to_string(root.join(file)).unwrap()
        );
        let csp = reply.header("content-security-policy").expect("CSP");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert!(
            csp.contains(&format!("connect-src 'self' ws://{addr} wss://{addr};")),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("object-src 'none'"));
        // The pages carry no inline script for the CSP to have to allow.
        let html = reply.body.to_ascii_lowercase();
        for tag in html.split("<script").skip(1) {
            let open = tag.split('>').next().unwrap();
            assert!(open.contains("src="), "{path} has an inline <script>");
        }
        assert!(
            !html.contains(" onclick=") && !html.contains(" onload="),
            "{path}"
        );
    }

    // Revalidation.
    let first = http_request(addr, "GET", "/client/roomgate.js", &[], b"").await;
    let etag = first.header("etag").expect("ETag").to_string();
    let again = http_request(
        addr,
        "GET",
        "/client/roomgate.js",
        &[("If-None-Match", &etag)],
        b"",
    )
    .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let stale = http_request(
        addr,
        "GET",
        "/client/roomgate.js",
        &[("If-None-Match", "\"0000000000000000\"")],
        b"",
    )
    .await;
    assert_eq!(stale.status, 200);

    // Nothing else is reachable, however the path is spelled; unknown paths keep the
    // JSON 404 of every other route.
    for path in [
        "/client/../Cargo.toml",
        "/client/%2e%2e/Cargo.toml",
        "/..%2fCargo.toml",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/web/index.html",
        "/client/",
        "/nope.js",
    ] {
        let reply = http_request(addr, "GET", path, &[], b"").await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.json()["code"], "not_found", "{path}");
    }
    // Other methods are not served from the table.
    let post = http_request(addr, "POST", "/", &[], b"x").await;
    assert_ne!(post.status, 200);
    server.stop().await;
}
