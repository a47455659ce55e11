//! The README's tables are checked against the code: every error code, close code, HTTP
//! refusal and configuration field is documented with the text the code uses, and the
//! README lists nothing the code does not have.

use roomgate::config::Config;
use roomgate::http::HttpError;
use roomgate::protocol::{CloseCode, ErrorCode};
use serde_json::Value;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("{heading} missing"));
    let rest = &text[start + heading.len()..];
    let end = rest.find("\n#").unwrap_or(rest.len());
    &rest[..end]
}

fn rows(section: &str) -> Vec<Vec<String>> {
    section
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
        .skip(1)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn error_code_table_matches_code() {
    let text = readme();
    let table = rows(section(&text, "### Error codes"));
    assert_eq!(table.len(), ErrorCode::ALL.len(), "row count");
    for (row, code) in table.iter().zip(ErrorCode::ALL) {
        assert_eq!(row[0], format!("`{}`", code.code()));
        assert_eq!(row[1], code.message(), "message of {}", code.code());
    }
}

#[test]
fn close_code_table_matches_code() {
    let text = readme();
    let table = rows(section(&text, "### Close codes"));
    assert_eq!(table.len(), CloseCode::ALL.len(), "row count");
    for (row, code) in table.iter().zip(CloseCode::ALL) {
        assert_eq!(row[0], code.code().to_string());
        assert_eq!(row[1], code.reason());
        assert_eq!(row[3], code.reconnect().as_str(), "reconnect of {code:?}");
    }
}

#[test]
fn http_refusal_table_matches_code() {
    let text = readme();
    let table = rows(section(&text, "### HTTP errors"));
    assert_eq!(table.len(), HttpError::ALL.len());
    for (row, e) in table.iter().zip(HttpError::ALL) {
        assert_eq!(row[0], e.status().as_u16().to_string());
        assert_eq!(row[1], format!("`{}`", e.code()));
        assert_eq!(row[2], e.message());
    }
}

fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        // A quota is documented as one row.
        Value::Object(m) if !m.contains_key("points") => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&p, v, out);
            }
        }
        _ => out.push((prefix.to_string(), v.clone())),
    }
}

#[test]
fn every_config_field_is_documented() {
    let text = readme();
    let table = rows(section(&text, "## Configuration"));
    let documented: Vec<String> = table
        .iter()
        .map(|r| r[0].trim_matches('`').to_string())
        .collect();
    let mut fields = Vec::new();
    leaves(
        "",
        &serde_json::to_value(Config::default()).unwrap(),
        &mut fields,
    );
    for (f, default) in &fields {
        let Some(row) = table.iter().find(|r| r[0].trim_matches('`') == f) else {
            panic!("config field {f} is not in README");
        };
        let shown = match default {
            Value::Null => None,
            Value::Object(q) => Some(format!(
                "`{{points = {}, duration_secs = {}}}`",
                q["points"], q["duration_secs"]
            )),
            Value::String(s) => Some(format!("`{s}`")),
            other => Some(format!("`{other}`").replace("\",\"", "\", \"")),
        };
        if let Some(shown) = shown {
            assert_eq!(row[1], shown, "default of {f}");
        }
    }
    for d in &documented {
        assert!(
            fields.iter().any(|(f, _)| f == d),
            "README documents {d}, which is not a field"
        );
    }
}

/// `scripts/roomgate.toml` shows every option: with its default lines uncommented it
/// loads to exactly the built-in defaults, and every field appears in it.
#[test]
fn example_config_shows_every_option_with_its_default() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/roomgate.toml"
    ))
    .unwrap();
    let mut uncommented = String::new();
    let mut shown: Vec<String> = Vec::new();
    let mut section = String::new();
    for line in text.lines() {
        let (optional, body) = match (line.strip_prefix("#? "), line.strip_prefix("# ")) {
            (Some(b), _) => (true, b),
            (None, Some(b)) => (false, b),
            _ => continue,
        };
        if body.starts_with('[') && body.ends_with(']') {
            section = body.trim_matches(['[', ']']).to_string();
            uncommented.push_str(body);
            uncommented.push('\n');
        } else if let Some((key, _)) = body.split_once(" = ")
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            let path = if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            };
            shown.push(path);
            if !optional {
                uncommented.push_str(body);
                uncommented.push('\n');
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("example.toml");
    std::fs::write(&file, &uncommented).unwrap();
    let loaded = Config::load(
        &roomgate::config::Overrides {
            config_file: Some(file),
            ..Default::default()
        },
        &Default::default(),
    )
    .unwrap_or_else(|e| panic!("example does not load: {e:?}\n{uncommented}"));
    assert_eq!(
        serde_json::to_value(&loaded).unwrap(),
        serde_json::to_value(Config::default()).unwrap(),
        "a default shown in scripts/roomgate.toml differs from the code"
    );
    let mut fields = Vec::new();
    leaves(
        "",
        &serde_json::to_value(Config::default()).unwrap(),
        &mut fields,
    );
    let mut missing: Vec<&str> = fields
        .iter()
        .map(|(f, _)| f.as_str())
        .filter(|f| !shown.iter().any(|s| s == f))
        .collect();
    // Quotas are shown as their own tables.
    missing.retain(|f| !shown.iter().any(|s| s.starts_with(&format!("{f}."))));
    assert!(
        missing.is_empty(),
        "not in scripts/roomgate.toml: {missing:?}"
    );
}

#[test]
fn admin_api_route_table_matches_code() {
    use roomgate::http::api::{Need, route_table};
    let text = readme();
    let table = rows(section(&text, "## Admin HTTP API"));
    let routes: Vec<_> = route_table().collect();
    assert_eq!(table.len(), routes.len(), "row count");
    for (row, r) in table.iter().zip(routes) {
        assert_eq!(row[0], r.verb.as_str());
        assert_eq!(row[1], format!("`{}`", r.path));
        let perms = match r.need {
            Need::Public => "none".to_string(),
            Need::AnyOf(p) => p
                .iter()
                .map(|p| format!("`{}`", p.as_str()))
                .collect::<Vec<_>>()
                .join(", "),
        };
        assert_eq!(row[2], perms, "permission of {}", r.path);
    }
}
