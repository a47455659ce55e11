//! Log set-up for `serve`: the level filter from `ROOMGATE_LOG`, the line format from
//! `log_format`, and the one line that states the effective configuration. A filter the
//! parser refuses is an error for the caller to stop on, never a silently empty filter
//! (which turned logging off). This module owns only the set-up; what is logged where is
//! decided by the code that logs, and nothing here may see a secret (the configuration
//! arrives already redacted). One decision is taken here for code we do not own:
//! tungstenite writes every frame it reads or sends at `trace` (`auth` with its token,
//! `auth_success` with its `wsToken`), so its `trace` events are dropped whatever
//! `ROOMGATE_LOG` says; its `debug` and above stay.

use std::ffi::OsStr;
use std::io::Write;

use serde::Serialize;
use serde_json::Value;
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// The filter used when `ROOMGATE_LOG` is unset or empty.
pub const DEFAULT_FILTER: &str = "info";

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogSetupError {
    #[error("invalid ROOMGATE_LOG {value:?}: {reason}")]
    Filter {
        value: String,
        reason: tracing_subscriber::filter::ParseError,
    },
    #[error("invalid ROOMGATE_LOG: not valid UTF-8")]
    NotUnicode,
    #[error("cannot install the logger: {0}")]
    Install(String),
}

/// The level filter for a `ROOMGATE_LOG` value (EnvFilter directives such as
/// `info,roomgate=debug`); unset or blank means [`DEFAULT_FILTER`].
pub fn filter(value: Option<&OsStr>) -> Result<EnvFilter, LogSetupError> {
    let value = match value {
        None => DEFAULT_FILTER,
        Some(v) => v.to_str().ok_or(LogSetupError::NotUnicode)?,
    };
    let directives = if value.trim().is_empty() {
        DEFAULT_FILTER
    } else {
        value
    };
    // `EnvFilter::new` would drop what it cannot parse and keep the rest, or nothing.
    EnvFilter::builder()
        .parse(directives)
        .map_err(|reason| LogSetupError::Filter {
            value: value.to_string(),
            reason,
        })
}

/// Installs the process-wide logger: lines on stderr, as text (coloured on a terminal)
/// or one JSON object per line with the current span's fields.
pub fn init(format: LogFormat, roomgate_log: Option<&OsStr>) -> Result<(), LogSetupError> {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter(roomgate_log)?)
        .with_writer(std::io::stderr);
    // A separate global filter, not an EnvFilter directive: a directive the operator
    // writes (`tungstenite=trace`) could otherwise override ours.
    let no_frames = filter_fn(|meta| !writes_frames(meta.target(), *meta.level()));
    let installed = match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .finish()
            .with(no_frames)
            .try_init(),
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .finish()
            .with(no_frames)
            .try_init(),
    };
    installed.map_err(|e| LogSetupError::Install(e.to_string()))
}

/// Whether an event of a dependency at `target` and `level` may carry WebSocket frame
/// payloads, and with them tokens: tungstenite's `trace` (its `log` records arrive with
/// their module path as the target).
fn writes_frames(target: &str, level: Level) -> bool {
    let crate_name = target.split("::").next().unwrap_or(target);
    crate_name == "tungstenite" && level == Level::TRACE
}

/// Logs the effective configuration (already redacted) at `info`, as one line.
///
/// In JSON the configuration must be a nested object a collector can query, but the
/// json formatter only sees what tracing's `Visit` hands it, and a `serde_json::Value`
/// reaches it as a string (structured values need tracing's unstable `valuable`
/// support). So this one line is written here, in the formatter's own shape
/// (`timestamp`, `level`, `fields`, `target`, with its timestamp format), straight to
/// stderr, where the logger writes. It runs before the server starts, so no other line
/// can interleave with it. The filter still decides whether it is written.
pub fn effective_config(format: LogFormat, redacted: &Value) {
    match format {
        LogFormat::Text => tracing::info!(config = %redacted, "effective configuration"),
        LogFormat::Json => {
            if tracing::enabled!(tracing::Level::INFO) {
                let mut line = json_line(&timestamp(), redacted);
                line.push('\n');
                // A log line that cannot be written is not a reason to stop serving.
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
        }
    }
}

/// The time as the json formatter writes it.
fn timestamp() -> String {
    let mut ts = String::new();
    // Writing into a String cannot fail.
    let _ = SystemTime.format_time(&mut Writer::new(&mut ts));
    ts
}

/// Field order as the json formatter writes it.
#[derive(Serialize)]
struct Line<'a> {
    timestamp: &'a str,
    level: &'static str,
    fields: Fields<'a>,
    target: &'static str,
}

#[derive(Serialize)]
struct Fields<'a> {
    message: &'static str,
    config: &'a Value,
}

fn json_line(timestamp: &str, config: &Value) -> String {
    let line = Line {
        timestamp,
        level: "INFO",
        fields: Fields {
            message: "effective configuration",
            config,
        },
        target: module_path!(),
    };
    // Serialising strings and a `Value` cannot fail; an empty object is the fallback.
    serde_json::to_string(&line).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_blank_means_info_and_directives_parse() {
        assert_eq!(filter(None).unwrap().to_string(), "info");
        assert_eq!(filter(Some(OsStr::new(""))).unwrap().to_string(), "info");
        assert_eq!(filter(Some(OsStr::new("  "))).unwrap().to_string(), "info");
        let f = filter(Some(OsStr::new("warn,roomgate=debug"))).unwrap();
        assert!(f.to_string().contains("roomgate=debug"), "{f}");
    }

    #[test]
    fn a_directive_the_parser_refuses_is_an_error_naming_the_value() {
        for bad in ["roomgate=loud", "info,roomgate=verbose", "roomgate[{=x"] {
            let e = filter(Some(OsStr::new(bad))).unwrap_err();
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("invalid ROOMGATE_LOG {bad:?}: ")),
                "{text}"
            );
            assert!(text.len() > format!("invalid ROOMGATE_LOG {bad:?}: ").len());
        }
    }

    #[test]
    fn only_tungstenites_trace_events_are_dropped() {
        assert!(writes_frames("tungstenite::protocol", Level::TRACE));
        assert!(writes_frames("tungstenite", Level::TRACE));
        assert!(!writes_frames("tungstenite::protocol", Level::DEBUG));
        assert!(!writes_frames("tokio_tungstenite", Level::TRACE));
        assert!(!writes_frames("roomgate::conn", Level::TRACE));
    }

    #[test]
    fn json_config_line_nests_the_configuration() {
        let cfg = serde_json::json!({"rooms": {"max_participants": 100}});
        let line = json_line("2026-01-01T00:00:00.000000Z", &cfg);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["fields"]["config"]["rooms"]["max_participants"], 100);
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["fields"]["message"], "effective configuration");
        assert!(line.starts_with(r#"{"timestamp":"2026-01-01T"#), "{line}");
    }
}
