//! What the tool reads about processes from Linux's `/proc`: a server's resident memory
//! (`/proc/PID/status`) and CPU time (`/proc/PID/stat`), and the tool's own CPU time, so
//! runs can give throughput per server CPU-second and show when the tool itself was the
//! limit. Read-only; a run without `--server-pid` simply has no server figures.

use std::sync::OnceLock;

use anyhow::{Context, anyhow};
use clap::Args;
use serde_json::{Value, json};

use crate::stats::round3;

/// Which server a run measures and what to call it in the JSON line.
#[derive(Args, Clone, Debug)]
pub struct ServerOpts {
    /// PID of the server process: adds its CPU seconds during the run (and, for `hold`
    /// and `connect`, its RSS) to the report. Linux only.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Name of the server in the JSON line (`report` compares every label with `ceiling`).
    #[arg(long, default_value = "server")]
    pub label: String,
}

/// Clock ticks per second of `/proc/PID/stat` times: `getconf CLK_TCK` once; 100 (the
/// value on every mainstream Linux) when that cannot be run, and the JSON says so.
pub fn clk_tck() -> (u64, &'static str) {
    static TCK: OnceLock<(u64, &'static str)> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|&t: &u64| t > 0)
            .map_or((100, "assumed"), |t| (t, "getconf"))
    })
}

/// User plus system CPU ticks from the text of `/proc/PID/stat`. The command name (field
/// 2) is in parentheses and may itself hold spaces and parentheses, so fields are
/// counted from the last `)`: utime and stime are fields 14 and 15.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After `)`: field 3 (state) is index 0, so utime (14) is index 11.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `Name:   value kB` line of `/proc/PID/status`, in KiB.
pub fn parse_status_kib(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn read(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
}

/// CPU seconds (user + system) used so far by `pid` ("self" for this process).
pub fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let ticks = parse_stat_ticks(&read(&path)?).ok_or_else(|| anyhow!("cannot parse {path}"))?;
    Ok(ticks as f64 / clk_tck().0 as f64)
}

/// Resident set and its peak, KiB.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = read(&path)?;
    let get = |name| parse_status_kib(&text, name).ok_or_else(|| anyhow!("no {name} in {path}"));
    Ok(Memory {
        rss_kib: get("VmRSS")?,
        hwm_kib: get("VmHWM")?,
    })
}

/// CPU readings of the server and of the tool at the start of a measured interval.
pub struct CpuMark {
    server: Option<f64>,
    tool: f64,
}

impl CpuMark {
    /// Fails only when a server PID was given and cannot be read: a run that was asked
    /// for server figures must not silently come back without them.
    pub fn start(server: &ServerOpts) -> anyhow::Result<CpuMark> {
        Ok(CpuMark {
            server: server
                .server_pid
                .map(|p| cpu_seconds(&p.to_string()))
                .transpose()?,
            tool: cpu_seconds("self").unwrap_or(0.0),
        })
    }

    /// CPU seconds used since `start` by the server (when watched) and by the tool.
    pub fn stop(&self, server: &ServerOpts) -> anyhow::Result<CpuUsed> {
        let now_server = server
            .server_pid
            .map(|p| cpu_seconds(&p.to_string()))
            .transpose()?;
        Ok(CpuUsed {
            server_s: match (self.server, now_server) {
                (Some(a), Some(b)) => Some((b - a).max(0.0)),
                _ => None,
            },
            tool_s: (cpu_seconds("self").unwrap_or(0.0) - self.tool).max(0.0),
        })
    }
}

pub struct CpuUsed {
    pub server_s: Option<f64>,
    pub tool_s: f64,
}

impl CpuUsed {
    /// `count` per server CPU-second, when the server was watched and used any.
    pub fn per_server_second(&self, count: u64) -> Option<f64> {
        self.server_s
            .filter(|&s| s > 0.0)
            .map(|s| crate::stats::round1(count as f64 / s))
    }

    pub fn json(&self) -> Value {
        let (hz, source) = clk_tck();
        json!({
            "server_s": self.server_s.map(round3),
            "tool_s": round3(self.tool_s),
            "clk_tck": hz,
            "clk_tck_source": source,
        })
    }

    pub fn line(&self) -> String {
        match self.server_s {
            Some(s) => format!("server CPU {s:.2} s, tool CPU {:.2} s", self.tool_s),
            None => format!("tool CPU {:.2} s (no --server-pid)", self.tool_s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
        // cmajflt utime stime ...
        let line = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 567 0 0 20 0 2 0";
        assert_eq!(parse_stat_ticks(line), Some(1234 + 567));
        assert_eq!(parse_stat_ticks("4242 (x) S 1"), None);
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn status_lines_in_kib() {
        let text = "Name:\troomgate\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kib(text, "VmRSS"), Some(10240));
        assert_eq!(parse_status_kib(text, "VmHWM"), Some(20480));
        assert_eq!(parse_status_kib(text, "VmSwap"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        assert!(cpu_seconds("self").is_ok());
        let m = memory(std::process::id()).unwrap();
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib);
    }
}
