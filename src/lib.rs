//! roomgate: a self-hosted real-time WebSocket gateway. Crate map, following one frame:
//! socket → [`http`] (upgrade, origin, client IP) → [`conn`] (one task per connection)
//! → [`protocol`] decode → `conn::dispatch` → [`auth`] / [`ratelimit`] / [`authz`] →
//! [`publish`] (the message path) → [`hub`] (rooms, fan-out into bounded
//! [`hub::Outbound`] queues) → each member's task writes. Personal notifications go
//! through [`notify`] (per-user inbox and live subscribers). Durable facts live in
//! [`store`] (sled), written off the fan-out path by
//! [`history`] and [`audit`]; [`sweeper`] expires them. Refusals by limits are counted
//! in [`refusals`] for the log. [`server`] wires it all
//! ([`state::AppState`]) and shuts it down in order; [`admin`] and [`control`] serve
//! operator commands. The binary (`main.rs`) is the only place that uses `anyhow`.

pub mod accept;
pub mod accounts;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod batch;
pub mod cli;
pub mod config;
pub mod conn;
pub mod content;
pub mod control;
pub mod dataroot;
pub mod health;
pub mod history;
pub mod http;
pub mod hub;
pub mod logging;
pub mod maps;
pub mod metrics;
pub mod notify;
pub mod passwords;
pub mod policy;
pub mod principal;
pub mod protocol;
pub mod publish;
pub mod ratelimit;
pub mod refusals;
pub mod secrets;
pub mod server;
pub mod state;
pub mod store;
pub mod sweeper;
pub mod tls;
