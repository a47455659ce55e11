//! The OpenAPI document served at `/api/v1/openapi.json` matches the server both ways:
//! every documented operation is called (with an administrator's token, path parameters,
//! query parameters and bodies taken from the document's examples) and must answer a
//! documented success status with a body of the documented shape, and without
//! credentials a documented 401 with an error body; every route the server has is
//! documented with the permissions it checks, and undocumented paths are 404.

mod common;

use std::collections::BTreeSet;

use common::*;
use roomgate::http::api::{Need, route_table};
use serde_json::{Value, json};

/// Follows a local `$ref`.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("local $ref");
            resolve(doc, doc.pointer(pointer).unwrap_or_else(|| panic!("{r}")))
        }
        None => v,
    }
}

/// Checks `value` against the subset of JSON Schema the document uses.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if value.is_null() {
        return if schema["nullable"] == true {
            Ok(())
        } else {
            Err(format!("{at}: null where not nullable"))
        };
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        return Err(format!("{at}: {value} not in {options:?}"));
    }
    let ok = match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_u64() || value.is_i64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        None => true,
        Some(other) => return Err(format!("{at}: unknown type {other}")),
    };
    if !ok {
        return Err(format!("{at}: {value} is not {}", schema["type"]));
    }
    if let Some(obj) = value.as_object() {
        for r in schema["required"].as_array().into_iter().flatten() {
            let r = r.as_str().unwrap();
            if !obj.contains_key(r) {
                return Err(format!("{at}: required {r} missing in {value}"));
            }
        }
        for (k, v) in obj {
            if let Some(prop) = schema["properties"].get(k) {
                check(doc, prop, v, &format!("{at}.{k}"))?;
            } else if let Some(extra) = schema.get("additionalProperties")
                && extra.is_object()
            {
                check(doc, extra, v, &format!("{at}.{k}"))?;
            }
        }
    }
    if let (Some(items), Some(schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(doc, schema, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

struct Op {
    method: String,
    path: String,
    spec: Value,
}

/// Creates (a POST to a listable collection, or a PUT) before reads, reads before
/// changes and actions, deletions last (deepest first), so each call finds what the
/// examples name.
fn phase(op: &Op, collections: &BTreeSet<String>) -> (u8, i64, String) {
    let depth = op.path.matches('/').count() as i64;
    let p = match op.method.as_str() {
        "post" if collections.contains(&op.path) => 0,
        "put" => 0,
        "get" => 1,
        "delete" => 3,
        _ => 2,
    };
    let depth = if p == 3 { -depth } else { depth };
    (p, depth, op.path.clone())
}

async fn call(
    s: &TestServer,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&Value>,
) -> HttpReply {
    let bearer = auth.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b));
    }
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    http_request(
        s.addr,
        &method.to_uppercase(),
        path,
        &headers,
        bytes.as_bytes(),
    )
    .await
}

/// A live session of `user`, for the routes that end one.
async fn session_of(s: &TestServer, user: &str) -> (Client, String) {
    let mut c = s.client().await;
    let data = c.auth(&token(user)).await;
    let claims = jwt_claims(data["wsToken"].as_str().unwrap());
    (c, claims["sessionId"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn every_documented_route_answers_as_documented() {
    let s = TestServer::start().await;
    let login = login(s.addr, "admin", ADMIN_PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let admin = login.json()["access_token"].as_str().unwrap().to_string();

    let served = call(&s, "get", "/api/v1/openapi.json", None, None).await;
    assert_eq!(served.status, 200);
    assert_eq!(served.header("content-type"), Some("application/json"));
    let doc = served.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    // The document and the route table list the same operations with the same
    // permissions.
    let mut documented = BTreeSet::new();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, spec) in item.as_object().unwrap() {
            documented.insert((method.to_uppercase(), path.clone()));
            ops.push(Op {
                method: method.clone(),
                path: path.clone(),
                spec: spec.clone(),
            });
        }
    }
    let mut served_routes = BTreeSet::new();
    for r in route_table() {
        served_routes.insert((r.verb.as_str().to_string(), r.path.to_string()));
        let item = &doc["paths"][r.path][r.verb.as_str().to_lowercase()];
        let perms: Vec<&str> = match r.need {
            Need::Public => vec![],
            Need::AnyOf(p) => p.iter().map(|p| p.as_str()).collect(),
        };
        assert_eq!(
            item["x-permissions"],
            json!(perms),
            "permissions of {} {}",
            r.verb.as_str(),
            r.path
        );
        assert_eq!(
            item.get("security") == Some(&json!([])),
            perms.is_empty(),
            "security of {}",
            r.path
        );
    }
    assert_eq!(documented, served_routes, "documented vs served routes");

    let collections: BTreeSet<String> = ops
        .iter()
        .filter(|o| o.method == "get" && !o.path.ends_with('}'))
        .map(|o| o.path.clone())
        .collect();
    ops.sort_by_key(|o| phase(o, &collections));
    let mut keep_alive = Vec::new();
    for op in &ops {
        let what = format!("{} {}", op.method.to_uppercase(), op.path);
        let mut url = op.path.clone();
        let mut query = Vec::new();
        let mut user = None;
        for p in op.spec["parameters"].as_array().into_iter().flatten() {
            let p = resolve(&doc, p);
            let name = p["name"].as_str().unwrap();
            let Some(example) = p.get("example") else {
                continue;
            };
            let text = match example {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match p["in"].as_str().unwrap() {
                "path" if name == "sessionId" => {
                    let (c, sid) = session_of(&s, user.as_deref().unwrap()).await;
                    keep_alive.push(c);
                    url = url.replace("{sessionId}", &sid);
                }
                "path" => {
                    if name == "userId" {
                        user = Some(text.clone());
                    }
                    url = url.replace(&format!("{{{name}}}"), &text);
                }
                "query" => query.push(format!("{name}={text}")),
                other => panic!("{what}: parameter in {other}"),
            }
        }
        assert!(
            !url.contains('{'),
            "{what}: no example for a path parameter"
        );
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
        let body = op.spec["requestBody"]["content"]["application/json"]
            .get("example")
            .cloned();
        let responses = &op.spec["responses"];
        let public = op.spec.get("security") == Some(&json!([]));

        // Without credentials: a documented 401 with an error body and a challenge.
        if !public {
            let r = call(&s, &op.method, &url, None, body.as_ref()).await;
            assert_eq!(r.status, 401, "{what} without credentials: {}", r.body);
            let spec = resolve(&doc, &responses["401"]);
            let schema = &spec["content"]["application/json"]["schema"];
            check(&doc, schema, &r.json(), &what).unwrap();
            assert!(r.header("www-authenticate").is_some(), "{what}: challenge");
        }

        let r = call(&s, &op.method, &url, Some(&admin), body.as_ref()).await;
        let status = r.status.to_string();
        assert!(
            responses.get(&status).is_some(),
            "{what}: status {status} is not documented ({})",
            r.body
        );
        assert!(
            (200..300).contains(&r.status),
            "{what}: the examples should succeed, got {status}: {}",
            r.body
        );
        let spec = resolve(&doc, &responses[&status]);
        let schema = &spec["content"]["application/json"]["schema"];
        check(&doc, schema, &r.json(), &what).unwrap_or_else(|e| panic!("{what}: {e}"));
    }

    // Undocumented paths and methods are not served.
    for (method, path) in [
        ("GET", "/api/v1"),
        ("GET", "/api/v1/"),
        ("GET", "/api/v1/nothing"),
        ("GET", "/api/v1/users/alice/nothing"),
        ("GET", "/api/v1/users/"),
        ("GET", "/api/v2/users"),
    ] {
        let r = call(&s, method, path, Some(&admin), None).await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
        assert_eq!(r.json()["code"], "not_found");
    }
    let r = call(&s, "patch", "/api/v1/users", Some(&admin), None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST"));
    for c in keep_alive {
        c.close().await;
    }
}
