//! The benchmark tooling of issue 5, run small: the load tool (`roomgate-bench`, the real
//! binary) against an in-process roomgate and against the transport ceiling
//! (`roomgate-ceiling`, the real binary), checking that its accounting of a clean run
//! comes out exact (every message delivered once, in order) and that every scenario
//! and the report produce what `scripts/bench.sh` reads. The accounting's detection of
//! loss, duplicates and reordering is unit-tested inside the tool
//! (`bench/src/roomgate-bench/accounting.rs`). These are smoke runs, not benchmarks: no
//! assertion is about speed.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use roomgate::config::{Config, Secret};
use roomgate::server::Server;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

/// The in-process gateway's token secret; the tool mints its tokens with it.
const JWT_SECRET: &str = "bench-test-jwt-secret-0123456789abcdef01234";

/// The real gateway, started in this process through its library on 127.0.0.1:0 with a
/// temporary data root and the rate limits lifted (the load must never be refused).
/// Only what these tests need; the gateway's own suites have the full helpers.
struct Gateway {
    addr: SocketAddr,
    server: Option<Server>,
    // Dropped after the server is shut down, so the database outlives it.
    _dir: TempDir,
}

impl Gateway {
    async fn start() -> Gateway {
        let dir = tempfile::Builder::new()
            .prefix("rgbench")
            .tempdir()
            .expect("tempdir");
        let mut cfg = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().to_path_buf(),
            shutdown_deadline_secs: 5,
            ..Config::default()
        };
        cfg.auth.jwt_secret = Some(Secret(JWT_SECRET.into()));
        cfg.auth.ws_secret = Some(Secret(
            "bench-test-ws-secret-0123456789abcdef0123456".into(),
        ));
        // The first-start admin account is hashed at every start: cheaply here, since
        // nothing in these tests logs in.
        cfg.accounts.admin_password = Some(Secret("bench-test-admin-password".into()));
        cfg.accounts.argon2_memory_kib = 64;
        cfg.accounts.argon2_iterations = 1;
        cfg.rate_limits.enabled = false;
        let problems = cfg.problems();
        assert!(problems.is_empty(), "test config invalid: {problems:?}");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server = Server::start(cfg, listener)
            .await
            .expect("the gateway starts");
        Gateway {
            addr: server.local_addr(),
            server: Some(server),
            _dir: dir,
        }
    }

    /// Shuts the gateway down in order (connections closed, store flushed).
    async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// Generous: the debug tool sets up and drains its connections on a busy machine.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the load tool; returns the JSON line it printed, failing with its stderr.
async fn tool(args: &[&str]) -> Value {
    let out = tokio::time::timeout(
        TOOL_TIMEOUT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_roomgate-bench"))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the tool finishes in time")
    .expect("the tool runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "roomgate-bench {args:?} failed: {stderr}"
    );
    let line = stdout.lines().last().expect("one JSON line");
    serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"))
}

/// The ceiling binary on 127.0.0.1:0.
struct Ceiling {
    child: tokio::process::Child,
    url: String,
}

impl Ceiling {
    async fn start() -> Ceiling {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roomgate-ceiling"))
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the ceiling starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let url = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(l) = lines.next_line().await.expect("read stdout") {
                if let Some(addr) = l.strip_prefix("roomgate-ceiling listening on ") {
                    return addr.to_string();
                }
            }
            panic!("the ceiling exited before listening");
        })
        .await
        .expect("the ceiling listens within 20 s");
        Ceiling { child, url }
    }

    fn pid(&self) -> String {
        self.child.id().expect("running").to_string()
    }
}

/// Asserts a fanout run delivered every message to every subscriber of its room
/// exactly once and in each publisher's order.
fn assert_exact(v: &Value, rooms: u64, subs: u64, pubs: u64, rate: u64, secs: u64) {
    let per_publisher = secs * rate / pubs;
    let sent = rooms * pubs * per_publisher;
    assert_eq!(v["scenario"], "fanout");
    assert_eq!(v["sent"], sent, "{v}");
    assert_eq!(v["expected"], sent * subs, "{v}");
    assert_eq!(v["delivered"], sent * subs, "{v}");
    for k in ["lost", "duplicates", "out_of_order", "foreign"] {
        assert_eq!(v[k], 0, "{k}: {v}");
    }
    assert_eq!(v["subscribers_with_anomalies"], 0, "{v}");
    assert_eq!(v["latency_us"]["count"], sent * subs, "{v}");
    // Each publisher is a member of its room too and gets every message of it back.
    assert_eq!(v["publisher_echoes"], sent * pubs, "{v}");
    assert_eq!(v["subscribers_ended_early"], serde_json::json!({}), "{v}");
    // The worst window holds the run's worst delivery (the histogram keeps 3 significant
    // figures), and windows are listed worst first.
    let worst = v["worst_windows"].as_array().expect("worst_windows");
    assert!(!worst.is_empty() && worst.len() <= 5, "{v}");
    let top = worst[0]["max_us"].as_u64().unwrap();
    let max = v["latency_us"]["max"].as_u64().unwrap();
    assert!(top.abs_diff(max) <= max / 500 + 1, "{top} vs {max}: {v}");
    assert!(
        worst
            .windows(2)
            .all(|w| w[0]["max_us"].as_u64() >= w[1]["max_us"].as_u64()),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_through_roomgate_is_delivered_exactly_once_in_order() {
    let server = Gateway::start().await;
    let url = format!("http://{}", server.addr);
    let v = tool(&[
        "fanout",
        "--url",
        &url,
        "--secret",
        JWT_SECRET,
        "-r",
        "2",
        "-s",
        "3",
        "-p",
        "2",
        "-m",
        "100",
        "-t",
        "1",
        "--settle-ms",
        "100",
        "--label",
        "roomgate",
    ])
    .await;
    assert_exact(&v, 2, 3, 2, 100, 1);
    assert_eq!(v["label"], "roomgate");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_with_a_wrong_secret_fails_and_says_why() {
    let server = Gateway::start().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_roomgate-bench"))
        .args(["fanout", "--url", &format!("http://{}", server.addr)])
        .args(["--secret", "not-the-server-secret-0123456789abcdef"])
        .args(["-r", "1", "-s", "2", "-p", "1", "-m", "10", "-t", "1"])
        .output()
        .await
        .expect("the tool runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth: error auth_failed"), "{stderr}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_against_the_ceiling_and_reports() {
    let ceiling = Ceiling::start().await;
    let pid = ceiling.pid();
    let base = [
        "--url",
        ceiling.url.as_str(),
        "--secret",
        "any",
        "--server-pid",
        pid.as_str(),
        "--label",
        "ceiling",
    ];
    let with = |args: &[&'static str]| -> Vec<String> {
        args.iter()
            .map(|s| s.to_string())
            .chain(base.iter().map(|s| s.to_string()))
            .collect()
    };
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        tool(&refs).await
    };

    let connect = run(with(&["connect", "-n", "40", "-c", "8"])).await;
    assert_eq!(connect["connected"], 40, "{connect}");
    assert_eq!(connect["failures"], serde_json::json!({}));
    assert!(connect["cpu"]["server_s"].is_number(), "{connect}");
    assert!(connect["auth_latency_us"]["p99"].as_u64().unwrap() > 0);

    let hold = run(with(&[
        "hold",
        "-n",
        "40",
        "--rooms",
        "4",
        "-t",
        "1",
        "--heartbeat-ms",
        "200",
        "--settle-secs",
        "0",
        "--cycles",
        "2",
    ]))
    .await;
    assert_eq!(hold["joined"], 40, "{hold}");
    assert_eq!(hold["survivors"], 40, "{hold}");
    assert!(
        hold["server_rss_kib"]["held"].as_u64().unwrap() > 0,
        "{hold}"
    );
    assert!(hold["kib_per_connection"].is_number(), "{hold}");
    assert!(hold["rss_growth_over_cycles_kib"].is_number(), "{hold}");
    let cycle = &hold["cycles"][0];
    // Every connection beats at least once in the hold; only a beat sent just before
    // the stop (one per connection at most) may still be unanswered.
    let sent = cycle["heartbeats_sent"].as_u64().unwrap();
    let answered = cycle["heartbeat_responses"].as_u64().unwrap();
    assert!(
        answered >= 40 && answered <= sent && sent - answered <= 40,
        "{hold}"
    );

    let fanout = run(with(&[
        "fanout",
        "-r",
        "3",
        "-s",
        "4",
        "-p",
        "1",
        "-m",
        "200",
        "-t",
        "1",
        "--settle-ms",
        "100",
    ]))
    .await;
    assert_exact(&fanout, 3, 4, 1, 200, 1);
    assert!(
        fanout["deliveries_per_server_cpu_s"].is_number(),
        "{fanout}"
    );

    let echo = run(with(&["echo-latency", "-n", "100", "--warmup", "10"])).await;
    assert_eq!(echo["rtt_us"]["count"], 100, "{echo}");

    // The report pairs these runs with the same runs relabelled, as bench.sh does.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lines = String::new();
    for v in [&connect, &hold, &fanout, &echo] {
        let mut other = v.clone();
        other["label"] = "roomgate".into();
        lines.push_str(&format!("{other}\n{v}\n"));
    }
    let runs = dir.path().join("runs.jsonl");
    std::fs::write(&runs, lines).expect("write runs");
    let md = report(&runs).await;
    for want in [
        "`connect`",
        "`hold`",
        "`fanout`",
        "`echo-latency`",
        "| roomgate / ceiling |",
        "**Targets of issue 5**",
    ] {
        assert!(md.contains(want), "report lacks {want}:\n{md}");
    }
}

async fn report(runs: &Path) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_roomgate-bench"))
        .arg("report")
        .arg("--runs")
        .arg(runs)
        .output()
        .await
        .expect("report runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}
