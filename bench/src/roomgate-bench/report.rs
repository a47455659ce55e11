//! `report`: Markdown tables for BENCHMARKS.md from the JSON lines the runs printed.
//! `--login`/`--flood` render the issue-3 login tables; `--runs` renders the
//! side-by-side tables of `connect`, `hold`, `fanout` and `echo-latency` runs, each
//! server beside the baseline (`ceiling`) with their ratio, and the issue-5 targets
//! with the measured figures. It only formats: no judgement leaves it as an exit code.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use serde_json::Value;

use crate::stats::fmt_us;

#[derive(Args)]
pub struct ReportArgs {
    /// File whose last line is the JSON of a `login` run.
    #[arg(long, requires = "flood")]
    login: Option<PathBuf>,
    /// File whose last line is the JSON of a `flood-latency` run.
    #[arg(long, requires = "login")]
    flood: Option<PathBuf>,
    /// File of JSON lines of `connect`, `hold`, `fanout` and `echo-latency` runs (any
    /// order, several servers): side-by-side tables with ratios to the baseline.
    #[arg(long, conflicts_with_all = ["login", "flood"])]
    runs: Option<PathBuf>,
    /// Label of the runs the others are compared with.
    #[arg(long, default_value = "ceiling")]
    baseline: String,
}

pub fn run(a: &ReportArgs) -> anyhow::Result<()> {
    match (&a.login, &a.flood, &a.runs) {
        (Some(l), Some(f), None) => login_tables(l, f),
        (None, None, Some(r)) => {
            let text =
                std::fs::read_to_string(r).with_context(|| format!("reading {}", r.display()))?;
            print!("{}", compare(&text, &a.baseline)?);
            Ok(())
        }
        _ => bail!("give --login and --flood, or --runs"),
    }
}

fn last_json_line(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| anyhow!("{} is empty", path.display()))?;
    serde_json::from_str(line).with_context(|| format!("{} is not JSON", path.display()))
}

fn num(v: &Value) -> String {
    match v {
        // 1000.0 reads better as 1000; 39.7 stays as it is.
        Value::Number(n) => match n.as_f64() {
            Some(x) if n.is_f64() && x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
            _ => n.to_string(),
        },
        _ => "?".into(),
    }
}

fn us(v: &Value) -> String {
    v.as_u64().map_or_else(|| "?".into(), fmt_us)
}

fn counts(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, n)| format!("{k}: {}", num(n)))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "none".into(),
    }
}

fn login_tables(login: &Path, flood: &Path) -> anyhow::Result<()> {
    let l = last_json_line(login)?;
    let f = last_json_line(flood)?;
    if l["scenario"] != "login" || f["scenario"] != "flood-latency" {
        bail!("--login needs a login run and --flood a flood-latency run");
    }
    println!("`POST /auth/login` with the right password, rate limits off:\n");
    println!("| clients | measured | successful logins/s | p50 | p99 | max | statuses | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} s | {} | {} | {} | {} | {} | {} |",
        num(&l["concurrency"]),
        num(&l["seconds"]),
        num(&l["logins_per_s"]),
        us(&l["latency_us"]["p50"]),
        us(&l["latency_us"]["p99"]),
        us(&l["latency_us"]["max"]),
        counts(&l["status"]),
        counts(&l["errors"]),
    );
    let flood = &f["login_flood"];
    println!("\nWebSocket `message` round trip (send, wait for its own broadcast), one client:\n");
    println!("| phase | measured | round trips | round trips/s | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|---|");
    for (name, p) in [
        ("idle server".to_string(), &f["idle"]),
        (
            format!(
                "during the login flood ({} clients)",
                num(&flood["concurrency"])
            ),
            &f["flood"],
        ),
    ] {
        println!(
            "| {name} | {} s | {} | {} | {} | {} | {} |",
            num(&f["seconds"]),
            num(&p["messages"]),
            num(&p["messages_per_s"]),
            us(&p["rtt_us"]["p50"]),
            us(&p["rtt_us"]["p99"]),
            us(&p["rtt_us"]["max"]),
        );
    }
    println!("\nThe login flood (`POST /auth/login`, unknown user, wrong password, limits on):\n");
    println!("| clients | measured | requests/s | p50 | p99 | max | statuses | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} s | {} | {} | {} | {} | {} | {} |",
        num(&flood["concurrency"]),
        num(&f["seconds"]),
        num(&flood["requests_per_s"]),
        us(&flood["latency_us"]["p50"]),
        us(&flood["latency_us"]["p99"]),
        us(&flood["latency_us"]["max"]),
        counts(&flood["status"]),
        counts(&flood["errors"]),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Side-by-side tables of the issue-5 scenarios

/// A cell's text and, when it is a number that can be compared, its value.
type Cell = (String, Option<f64>);

/// One column of a scenario's table; `ratio` columns get a ratio in the ratio rows.
struct Col {
    head: &'static str,
    get: fn(&Value) -> Cell,
    ratio: bool,
}

const fn col(head: &'static str, get: fn(&Value) -> Cell, ratio: bool) -> Col {
    Col { head, get, ratio }
}

fn number(v: &Value) -> Cell {
    match v.as_f64() {
        Some(x) => (num(v), Some(x)),
        None => ("–".into(), None),
    }
}

fn micros_cell(v: &Value) -> Cell {
    match v.as_u64() {
        Some(x) => (fmt_us(x), Some(x as f64)),
        None => ("–".into(), None),
    }
}

fn kib_cell(v: &Value) -> Cell {
    match v.as_f64() {
        Some(k) if k.abs() >= 10.0 * 1024.0 => (format!("{:.1} MiB", k / 1024.0), Some(k)),
        Some(k) => (format!("{k} KiB"), Some(k)),
        None => ("–".into(), None),
    }
}

fn fixed(v: &Value, places: usize) -> Cell {
    match v.as_f64() {
        Some(x) => (format!("{x:.places$}"), Some(x)),
        None => ("–".into(), None),
    }
}

/// A fan-out run at a light per-room rate (the 20x500x5 scenario) is judged by its
/// latency; a heavy one (10x100x1000) by its throughput.
fn is_latency_run(params: &Value) -> bool {
    params["rate"].as_f64().unwrap_or(0.0) < 100.0
}

fn text(s: String) -> Cell {
    (s, None)
}

/// How a scenario is tabled: its title, its parameters in words, its columns, and the
/// figure that picks the median when one server has several runs of the same setup.
struct Scenario {
    name: &'static str,
    title: &'static str,
    params: fn(&Value) -> String,
    cols: &'static [Col],
    key: fn(&Value) -> Option<f64>,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "connect",
        title: "Authenticated connections (`connect`): TCP connect to `auth_success`",
        params: |p| {
            format!(
                "{} connections, {} handshakes at a time",
                num(&p["connections"]),
                num(&p["concurrency"])
            )
        },
        cols: &[
            col("authenticated", |r| number(&r["connected"]), false),
            col("connections/s", |r| number(&r["connections_per_s"]), true),
            col("p50", |r| micros_cell(&r["auth_latency_us"]["p50"]), true),
            col("p99", |r| micros_cell(&r["auth_latency_us"]["p99"]), true),
            col("max", |r| micros_cell(&r["auth_latency_us"]["max"]), false),
            col("failures", |r| text(counts(&r["failures"])), false),
            col("server CPU s", |r| fixed(&r["cpu"]["server_s"], 2), true),
            col(
                "connections per server CPU-s",
                |r| number(&r["connections_per_server_cpu_s"]),
                true,
            ),
        ],
        key: |r| r["connections_per_s"].as_f64(),
    },
    Scenario {
        name: "hold",
        title: "Idle connections (`hold`): authenticated, joined, heartbeating",
        params: |p| {
            format!(
                "{} connections in {} rooms, held {} s, {} cycle(s)",
                num(&p["connections"]),
                num(&p["rooms"]),
                num(&p["seconds"]),
                num(&p["cycles"])
            )
        },
        cols: &[
            col("survivors", |r| number(&r["survivors"]), false),
            col(
                "RSS before",
                |r| kib_cell(&r["server_rss_kib"]["before"]),
                true,
            ),
            col("RSS held", |r| kib_cell(&r["server_rss_kib"]["held"]), true),
            col(
                "KiB per connection",
                |r| fixed(&r["kib_per_connection"], 2),
                true,
            ),
            col(
                "RSS after close",
                |r| kib_cell(&r["server_rss_kib"]["after_close"]),
                true,
            ),
            col(
                "after-close RSS per cycle",
                |r| text(after_close_cycles(r)),
                false,
            ),
            col(
                "growth over cycles",
                |r| kib_cell(&r["rss_growth_over_cycles_kib"]),
                false,
            ),
        ],
        key: |r| r["kib_per_connection"].as_f64(),
    },
    Scenario {
        name: "fanout",
        title: "Fan-out (`fanout`): end-to-end latency, loss, duplicates, order",
        params: |p| {
            format!(
                "{} rooms x {} subscribers x {} publisher(s) at {} msgs/s per room for {} s",
                num(&p["rooms"]),
                num(&p["subscribers"]),
                num(&p["publishers"]),
                num(&p["rate"]),
                num(&p["seconds"])
            )
        },
        cols: &[
            col("offered/s", |r| number(&r["offered_per_s"]), false),
            col("delivered/s", |r| number(&r["delivered_per_s"]), true),
            col("p50", |r| micros_cell(&r["latency_us"]["p50"]), true),
            col("p99", |r| micros_cell(&r["latency_us"]["p99"]), true),
            col("p99.9", |r| micros_cell(&r["latency_us"]["p999"]), true),
            col("max", |r| micros_cell(&r["latency_us"]["max"]), false),
            col("lost", |r| number(&r["lost"]), false),
            col("dup", |r| number(&r["duplicates"]), false),
            col("reordered", |r| number(&r["out_of_order"]), false),
            col("server CPU s", |r| fixed(&r["cpu"]["server_s"], 2), true),
            col(
                "deliveries per server CPU-s",
                |r| number(&r["deliveries_per_server_cpu_s"]),
                true,
            ),
            col("tool CPU s", |r| fixed(&r["cpu"]["tool_s"], 2), false),
        ],
        // The figure its target judges: p99 for a latency run, else deliveries per CPU-s.
        key: |r| {
            if is_latency_run(&r["params"]) {
                return r["latency_us"]["p99"].as_f64();
            }
            r["deliveries_per_server_cpu_s"]
                .as_f64()
                .or_else(|| r["delivered_per_s"].as_f64())
        },
    },
    Scenario {
        name: "echo-latency",
        title: "Round trip (`echo-latency`): one client, its own message back",
        params: |p| format!("{} round trips", num(&p["round_trips"])),
        cols: &[
            col("round trips/s", |r| number(&r["round_trips_per_s"]), true),
            col("p50", |r| micros_cell(&r["rtt_us"]["p50"]), true),
            col("p99", |r| micros_cell(&r["rtt_us"]["p99"]), true),
            col("p99.9", |r| micros_cell(&r["rtt_us"]["p999"]), true),
            col("max", |r| micros_cell(&r["rtt_us"]["max"]), false),
            col(
                "server CPU µs per round trip",
                |r| number(&r["server_cpu_us_per_round_trip"]),
                true,
            ),
        ],
        key: |r| r["rtt_us"]["p50"].as_f64(),
    },
];

fn after_close_cycles(r: &Value) -> String {
    let cycles: Vec<String> = r["cycles"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| kib_cell(&c["server_rss_kib"]["after_close"]).0)
                .collect()
        })
        .unwrap_or_default();
    if cycles.is_empty() {
        "–".into()
    } else {
        cycles.join(", ")
    }
}

/// Runs of one scenario with identical parameters.
struct Group<'a> {
    scenario: &'static Scenario,
    params: &'a Value,
    runs: Vec<&'a Value>,
}

impl<'a> Group<'a> {
    /// Labels in the order first seen, the baseline last.
    fn labels(&self, baseline: &str) -> Vec<&'a str> {
        let mut labels: Vec<&str> = Vec::new();
        for r in &self.runs {
            let l = r["label"].as_str().unwrap_or("?");
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
        labels.sort_by_key(|l| *l == baseline);
        labels
    }

    /// The median run of `label` by the scenario's key figure.
    fn pick(&self, label: &str) -> Option<&'a Value> {
        let mut runs: Vec<&Value> = self
            .runs
            .iter()
            .copied()
            .filter(|r| r["label"] == label)
            .collect();
        runs.sort_by(|a, b| {
            let (x, y) = ((self.scenario.key)(a), (self.scenario.key)(b));
            x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
        });
        runs.get(runs.len().saturating_sub(1) / 2).copied()
    }

    fn count(&self, label: &str) -> usize {
        self.runs.iter().filter(|r| r["label"] == label).count()
    }
}

fn ratio_text(x: f64, base: f64) -> Option<(String, f64)> {
    (base != 0.0 && x.is_finite() && base.is_finite()).then(|| {
        let r = x / base;
        (format!("{r:.2}×"), r)
    })
}

/// The issue-5 targets a group can be held to, as rows of the targets table.
fn targets(g: &Group, label: &str, run: &Value, base: Option<&Value>, out: &mut Vec<[String; 6]>) {
    let params = (g.scenario.params)(g.params);
    let ratio = |get: fn(&Value) -> Option<f64>| -> Option<f64> {
        let b = base.and_then(get)?;
        let x = get(run)?;
        (b != 0.0).then(|| x / b)
    };
    let fmt_ratio = |r: Option<f64>| r.map_or("–".to_string(), |r| format!("{r:.2}×"));
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "yes".to_string(),
        Some(false) => "**no**".to_string(),
        None => "not measured".to_string(),
    };
    let mut row = |target: &str, measured: String, r: Option<f64>, ok: Option<bool>| {
        out.push([
            target.to_string(),
            params.clone(),
            label.to_string(),
            measured,
            fmt_ratio(r),
            verdict(ok),
        ]);
    };
    match g.scenario.name {
        "connect" => {
            let r = ratio(|v| v["connections_per_s"].as_f64());
            row(
                "connections/s at least 0.5× the ceiling's",
                format!("{}/s", num(&run["connections_per_s"])),
                r,
                r.map(|r| r >= 0.5),
            );
        }
        "hold" => {
            let kib = run["kib_per_connection"].as_f64();
            row(
                "at most 12 KiB of server RSS per idle joined connection",
                kib.map_or("–".into(), |k| format!("{k:.2} KiB")),
                ratio(|v| v["kib_per_connection"].as_f64()),
                kib.map(|k| k <= 12.0),
            );
            // "Memory returns": the settled RSS after the last cycle is within 2 % of
            // what the first cycle's connections took of the first cycle's.
            let growth = run["rss_growth_over_cycles_kib"].as_f64();
            let took = run["server_rss_kib"]["held"]
                .as_f64()
                .zip(run["server_rss_kib"]["before"].as_f64())
                .map(|(h, b)| h - b);
            row(
                "memory returns after close: no growth over the cycles (within 2 % of one cycle's)",
                growth.map_or("–".into(), |g| format!("{g:+} KiB")),
                None,
                growth.zip(took).map(|(g, t)| g <= 0.02 * t.max(0.0)),
            );
        }
        "fanout" if !is_latency_run(g.params) => {
            let r = ratio(|v| v["deliveries_per_server_cpu_s"].as_f64());
            let clean = ["lost", "duplicates", "out_of_order", "foreign"]
                .iter()
                .all(|k| run[*k].as_u64() == Some(0));
            row(
                "deliveries per server CPU-s at least 0.75× the ceiling's",
                num(&run["deliveries_per_server_cpu_s"]),
                r,
                r.map(|r| r >= 0.75),
            );
            row(
                "zero lost, duplicated or reordered messages",
                format!(
                    "{} lost, {} dup, {} reordered",
                    num(&run["lost"]),
                    num(&run["duplicates"]),
                    num(&run["out_of_order"])
                ),
                None,
                Some(clean),
            );
        }
        "fanout" => {
            let r = ratio(|v| v["latency_us"]["p99"].as_f64());
            row(
                "p99 latency at most 2× the ceiling's",
                micros_cell(&run["latency_us"]["p99"]).0,
                r,
                r.map(|r| r <= 2.0),
            );
        }
        "echo-latency" => {
            let r = ratio(|v| v["rtt_us"]["p50"].as_f64());
            row(
                "round-trip p50 at most 2× the ceiling's",
                micros_cell(&run["rtt_us"]["p50"]).0,
                r,
                r.map(|r| r <= 2.0),
            );
        }
        _ => {}
    }
}

/// Markdown for every scenario group in `lines` (JSON, one run per line), then the
/// targets table.
pub fn compare(lines: &str, baseline: &str) -> anyhow::Result<String> {
    use std::fmt::Write;
    let runs: Vec<Value> = lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("line {} is not JSON", i + 1))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut groups: Vec<Group> = Vec::new();
    for r in &runs {
        let Some(sc) = SCENARIOS.iter().find(|s| r["scenario"] == s.name) else {
            continue;
        };
        // source_ips and drain_secs do not change what is compared.
        let same = |g: &Group| {
            g.scenario.name == sc.name && comparable(g.params) == comparable(&r["params"])
        };
        match groups.iter_mut().find(|g| same(g)) {
            Some(g) => g.runs.push(r),
            None => groups.push(Group {
                scenario: sc,
                params: &r["params"],
                runs: vec![r],
            }),
        }
    }
    if groups.is_empty() {
        bail!("no connect, hold, fanout or echo-latency runs in the input");
    }
    let mut md = String::new();
    let mut target_rows = Vec::new();
    for g in &groups {
        let sc = g.scenario;
        let labels = g.labels(baseline);
        writeln!(md, "**{}**, {}:\n", sc.title, (sc.params)(g.params))?;
        let heads: Vec<&str> = sc.cols.iter().map(|c| c.head).collect();
        writeln!(md, "| server | {} |", heads.join(" | "))?;
        writeln!(md, "|---|{}", "---|".repeat(heads.len()))?;
        let base = g.pick(baseline);
        for l in &labels {
            let Some(run) = g.pick(l) else { continue };
            let n = g.count(l);
            let name = if n > 1 {
                format!("{l} (median of {n})")
            } else {
                l.to_string()
            };
            let cells: Vec<String> = sc.cols.iter().map(|c| (c.get)(run).0).collect();
            writeln!(md, "| {name} | {} |", cells.join(" | "))?;
        }
        if let Some(base_run) = base {
            for l in labels.iter().filter(|l| **l != baseline) {
                let Some(run) = g.pick(l) else { continue };
                let cells: Vec<String> = sc
                    .cols
                    .iter()
                    .map(|c| {
                        if !c.ratio {
                            return String::new();
                        }
                        match ((c.get)(run).1, (c.get)(base_run).1) {
                            (Some(x), Some(b)) => ratio_text(x, b).map_or("–".into(), |r| r.0),
                            _ => "–".into(),
                        }
                    })
                    .collect();
                writeln!(md, "| {l} / {baseline} | {} |", cells.join(" | "))?;
            }
        }
        writeln!(md)?;
        for l in labels.iter().filter(|l| **l != baseline) {
            if let Some(run) = g.pick(l) {
                targets(g, l, run, base, &mut target_rows);
            }
        }
    }
    if !target_rows.is_empty() {
        writeln!(
            md,
            "**Targets of issue 5** (ratios are to `{baseline}` in the same run):\n"
        )?;
        writeln!(
            md,
            "| target | scenario | server | measured | ratio | met |"
        )?;
        writeln!(md, "|---|---|---|---|---|---|")?;
        for r in &target_rows {
            writeln!(md, "| {} |", r.join(" | "))?;
        }
        writeln!(md)?;
    }
    Ok(md)
}

/// Parameters that define a setup, without the ones that only affect how it is run.
fn comparable(p: &Value) -> Value {
    let mut p = p.clone();
    if let Some(o) = p.as_object_mut() {
        o.remove("source_ips");
        o.remove("drain_secs");
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fanout(label: &str, per_cpu: f64, lost: u64, p99: u64) -> String {
        json!({
            "scenario": "fanout", "label": label,
            "params": {"rooms": 10, "subscribers": 100, "publishers": 1, "rate": 1000.0, "seconds": 3.0, "pad": 0, "source_ips": 16},
            "offered_per_s": 1_000_000.0, "delivered_per_s": 900_000.0,
            "latency_us": {"p50": 100, "p99": p99, "p999": 2000, "max": 5000},
            "lost": lost, "duplicates": 0, "out_of_order": 0, "foreign": 0,
            "cpu": {"server_s": 2.5, "tool_s": 3.0},
            "deliveries_per_server_cpu_s": per_cpu,
        })
        .to_string()
    }

    #[test]
    fn ratios_and_targets_against_the_baseline() {
        let lines = [
            fanout("roomgate", 300_000.0, 0, 1000),
            fanout("ceiling", 400_000.0, 0, 800),
        ]
        .join("\n");
        let md = compare(&lines, "ceiling").unwrap();
        assert!(md.contains("| roomgate / ceiling |"), "{md}");
        assert!(md.contains("0.75×"), "{md}");
        assert!(
            md.contains("| deliveries per server CPU-s at least 0.75× the ceiling's |"),
            "{md}"
        );
        // The roomgate row comes before the baseline row.
        assert!(md.find("| roomgate |").unwrap() < md.find("| ceiling |").unwrap());
        let target = md.lines().find(|l| l.contains("at least 0.75×")).unwrap();
        assert!(target.ends_with("| yes |"), "{target}");
        let clean = md.lines().find(|l| l.contains("zero lost")).unwrap();
        assert!(clean.ends_with("| yes |"), "{clean}");
    }

    #[test]
    fn a_missed_target_says_so_and_several_runs_give_the_median() {
        let lines = [
            fanout("roomgate", 100_000.0, 3, 1000),
            fanout("roomgate", 200_000.0, 0, 1000),
            fanout("roomgate", 900_000.0, 0, 1000),
            fanout("ceiling", 400_000.0, 0, 800),
        ]
        .join("\n");
        let md = compare(&lines, "ceiling").unwrap();
        assert!(md.contains("| roomgate (median of 3) |"), "{md}");
        let target = md.lines().find(|l| l.contains("at least 0.75×")).unwrap();
        assert!(
            target.contains("0.50×") && target.ends_with("| **no** |"),
            "{target}"
        );
    }

    #[test]
    fn input_without_scenarios_is_refused() {
        assert!(compare("{\"scenario\":\"login\"}\n", "ceiling").is_err());
        assert!(compare("not json\n", "ceiling").is_err());
    }
}
