//! Embeds the web assets: every file under `web/` becomes an entry of a table in
//! `$OUT_DIR/assets.rs` (its path relative to `web/`, its bytes through `include_bytes!`,
//! its content type, an ETag of its content), which `src/http/assets.rs` serves. A file
//! added under `web/` is served with no code change, and building or running roomgate
//! needs no Node.js and no files beside the binary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("web");
    // Cargo re-runs this when anything under the directory changes.
    println!("cargo:rerun-if-changed=web");
    let mut files = Vec::new();
    if root.is_dir() {
        walk(&root, &mut files);
    }
    files.sort();
    let mut out = String::from("pub static ASSETS: &[Asset] = &[\n");
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_str()
            .expect("asset paths are UTF-8")
            .replace('\\', "/");
        let bytes = std::fs::read(file).unwrap();
        writeln!(
            out,
            "    Asset {{ path: {rel:?}, content_type: {ct:?}, etag: \"\\\"{hash:016x}\\\"\", bytes: include_bytes!({abs:?}) }},",
            ct = content_type(&rel),
            hash = fnv1a(&bytes),
            abs = file.to_str().unwrap(),
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("assets.rs");
    std::fs::write(dest, out).unwrap();
}

/// Regular files, skipping hidden entries and editor or npm leftovers.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "node_modules" || name.ends_with('~') {
            continue;
        }
        if path.is_dir() {
            walk(&path, files);
        } else if path.is_file() {
            files.push(path);
        }
    }
}

/// An unknown extension is served as bytes, never sniffed into something runnable.
fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "ts" => "text/plain; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// FNV-1a: the ETag only has to change when the content does.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
