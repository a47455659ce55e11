//! `roomgate-bench`: the load generator behind BENCHMARKS.md (run by `scripts/bench.sh`
//! and `scripts/bench-login.sh`). It talks to a running server over real sockets only,
//! and speaks the seed's wire protocol (`{type, data, timestamp}` text frames), so it
//! measures roomgate and the transport ceiling (`roomgate-ceiling`) alike.
//!
//! Scenarios, one module each:
//! - `connect`: N connections, C handshakes at a time, each authenticated with its own
//!   minted HS256 token; connections/s and time from TCP connect to `auth_success`.
//! - `hold`: N connections authenticated, joined to R rooms and held with heartbeats;
//!   survivors and the server's RSS before, during and after (KiB per connection).
//! - `fanout`: R rooms x S subscribers x P publishers at M msgs/s per room; delivered
//!   msgs/s, end-to-end latency, exact loss, duplicates and reordering per subscriber.
//! - `echo-latency`: one client's closed-loop round trips through a room.
//! - `login`, `flood-latency`: `/auth/login` throughput and round trips under a login flood.
//! - `report`: Markdown tables from the JSON lines the runs print.
//!
//! Each run prints one JSON line on stdout and a readable summary on stderr. This is a
//! benchmark, not a test: it fails only when a run cannot be carried out (server
//! unreachable, nothing authenticated), never because a number is slow. It never
//! contacts anything but the address it is given.

mod accounting;
mod connect;
mod echo;
mod fanout;
mod hold;
mod http;
mod login;
mod procfs;
mod report;
mod stats;
mod ws;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "roomgate-bench",
    version,
    about = "Load generator for roomgate benchmarks (BENCHMARKS.md)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open and authenticate N connections: connections/s, connect-to-auth latency.
    Connect(connect::ConnectArgs),
    /// Open, authenticate, join and hold N connections: survivors, server RSS per connection.
    Hold(hold::HoldArgs),
    /// Rooms x subscribers x publishers: delivered msgs/s, latency, loss, duplicates, order.
    Fanout(fanout::FanoutArgs),
    /// Closed-loop message round trips through a room: RTT percentiles.
    EchoLatency(echo::EchoArgs),
    /// Closed-loop POST /auth/login: successful logins/s, latency, HTTP statuses.
    Login(login::LoginArgs),
    /// WebSocket message round trip, idle and during a wrong-password /auth/login flood.
    FloodLatency(login::FloodArgs),
    /// Markdown tables from the JSON lines of earlier runs.
    Report(report::ReportArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Connect(a) => runtime().and_then(|rt| rt.block_on(connect::run(a))),
        Command::Hold(a) => runtime().and_then(|rt| rt.block_on(hold::run(a))),
        Command::Fanout(a) => runtime().and_then(|rt| rt.block_on(fanout::run(a))),
        Command::EchoLatency(a) => runtime().and_then(|rt| rt.block_on(echo::run(a))),
        Command::Login(a) => runtime().and_then(|rt| rt.block_on(login::login(a))),
        Command::FloodLatency(a) => runtime().and_then(|rt| rt.block_on(login::flood_latency(a))),
        Command::Report(a) => report::run(&a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roomgate-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A multi-threaded runtime: one worker per core the process may run on, so under
/// `taskset -c 1` the whole tool is one thread and never competes with the server's core.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}
