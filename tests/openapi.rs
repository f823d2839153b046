//! `GET /api/openapi.json`: the document is valid, names exactly the
//! endpoints docs/INTERFACES.md lists, every operation is served, and
//! schemathesis (PyPI) finds no server error and no answer outside the
//! schema against a live node.
mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::TestNode;
use serde_json::Value;

const METHODS: [&str; 4] = ["get", "put", "post", "delete"];

fn document(node: &TestNode) -> Value {
    let (status, doc) = node.admin.get("/api/openapi.json");
    assert_eq!(status, 200, "{doc}");
    doc
}

/// `METHOD /path` of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<String> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                ops.insert(format!("{} {path}", m.to_uppercase()));
            }
        }
    }
    ops
}

/// `METHOD /path` of every endpoint docs/INTERFACES.md names in code spans
/// (`GET|PUT /v1/x/{id}?q=…` counts once per method).
fn documented() -> BTreeSet<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/INTERFACES.md"))
        .expect("docs/INTERFACES.md");
    let mut ops = BTreeSet::new();
    for span in text.split('`').skip(1).step_by(2) {
        let Some((methods, path)) = span.split_once(' ') else {
            continue;
        };
        let path = path.split(['?', ' ']).next().unwrap_or_default();
        let known = methods
            .split('|')
            .all(|m| METHODS.contains(&m.to_lowercase().as_str()));
        if !known || !path.starts_with('/') || path.contains('…') {
            continue;
        }
        for m in methods.split('|') {
            ops.insert(format!("{m} {path}"));
        }
    }
    ops
}

fn resolve<'a>(doc: &'a Value, r: &str) -> Option<&'a Value> {
    doc.pointer(r.strip_prefix('#')?)
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[test]
fn the_document_is_valid_complete_and_served() {
    let node = TestNode::start();
    let doc = document(&node);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Switchboard");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    // The document and INTERFACES.md name the same endpoints.
    let ops = operations(&doc);
    let listed = documented();
    assert!(ops.len() >= 25, "{ops:?}");
    let missing: Vec<_> = listed.difference(&ops).collect();
    let unlisted: Vec<_> = ops.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "in INTERFACES.md, not in the document: {missing:?}"
    );
    assert!(
        unlisted.is_empty(),
        "in the document, not in INTERFACES.md: {unlisted:?}"
    );

    // Every reference resolves; every operation has an id, a success answer
    // and the error shape as its default answer.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in &all {
        assert!(resolve(&doc, r).is_some(), "dangling {r}");
    }
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let id = op["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
            let answers = op["responses"].as_object().expect("responses");
            assert!(
                answers.keys().any(|k| k.starts_with('2') || k == "101"),
                "{m} {path}: no success answer"
            );
            assert_eq!(
                answers["default"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{m} {path}"
            );
            if op.get("security").is_some() {
                assert!(answers.contains_key("401"), "{m} {path}: no 401");
            }
            if path.contains('{') {
                let params = op["parameters"].as_array().expect("path parameters");
                for name in path.split('{').skip(1).filter_map(|s| s.split_once('}')) {
                    assert!(
                        params
                            .iter()
                            .any(|p| p["name"] == name.0 && p["in"] == "path"),
                        "{m} {path}: parameter {} undeclared",
                        name.0
                    );
                }
            }
        }
    }

    // Every operation is served: none answers the router's 404/405.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    for op in &ops {
        let (method, path) = op.split_once(' ').expect("method path");
        let url = format!("{}{}", node.url, path.replace('{', "x").replace('}', ""));
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Authorization", format!("Bearer {}", node.admin.token))
            .body(Vec::<u8>::new())
            .expect("request");
        let mut resp = agent.run(req).expect("the node answers");
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        assert_ne!(resp.status().as_u16(), 405, "{op}: {body}");
        assert!(!body.contains("no such endpoint"), "{op}: {body}");
    }

    // A known path with another method: 405 naming the allowed ones.
    let req = ureq::http::Request::builder()
        .method("DELETE")
        .uri(format!("{}/v1/messages", node.url))
        .body(Vec::<u8>::new())
        .expect("request");
    let resp = agent.run(req).expect("answer");
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.headers()["allow"], "GET, POST");
}

fn schemathesis(node: &TestNode, token: &str, filter: &[&str], seconds: u32) {
    // `python3 -m schemathesis.cli` is `st`, wherever pip put the script.
    // It keeps a cache in its working directory: not in the checkout.
    let cwd = tempfile::tempdir().expect("a temp dir");
    let out = Command::new("python3")
        .current_dir(cwd.path())
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{}/api/openapi.json", node.url))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        // Everything but "a schema-valid request is accepted": the API has
        // rules JSON Schema cannot state (a profile's id equals the path's,
        // a manager needs a `normal` configuration, addresses valid per
        // medium, a known recipient, a WebSocket handshake).
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-time", &seconds.to_string(), "--workers", "2"])
        .args(["--request-timeout", "10"])
        .args(filter)
        .output()
        .expect("python3 runs (scripts/test installs schemathesis)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: String = text.lines().rev().take(25).collect::<Vec<_>>().join("\n");
    eprintln!("{summary}");
    assert!(out.status.success(), "schemathesis failed:\n{text}");
    assert!(text.contains("Tested:"), "{text}");
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_outside_the_schema() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    node.admin.add_user("bob", &[("im", "bob")]);
    alice.send("bob", "something to find");
    // The admin on the admin and token-free endpoints; a user on theirs.
    schemathesis(
        &node,
        &node.admin.token,
        &[
            "--include-path-regex",
            "^/(v1/admin|healthz|readyz|metrics|api)",
        ],
        40,
    );
    schemathesis(
        &node,
        &alice.token,
        &[
            "--exclude-path-regex",
            "^/(v1/admin|healthz|readyz|metrics|api)",
        ],
        25,
    );
    // And the node still serves.
    let (status, _) = node.admin.get("/readyz");
    assert_eq!(status, 200);
}
