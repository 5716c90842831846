//! A tool's estimate expressions are checked on publish through the API: a syntax error,
//! an unknown function or an undeclared variable is a 422 naming the pattern's field and
//! the position, and nothing is stored.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::TestApp;

fn manifest(time: &str) -> serde_json::Value {
    json!({"capabilities": {"packet_capture": {
        "description": "capture packets",
        "patterns": {"capture": {
            "time_estimate_ms": time,
            "cost_estimate": "ceil(packet_count / 1000)",
            "required_inputs": [{"name": "iface", "type": "string"}],
            "policy": {"requires_background_if": "packet_count > 10000"}
        }}
    }}})
}

#[tokio::test]
async fn invalid_expressions_are_refused_on_publish_with_field_and_position() {
    let app = TestApp::builder().user("alice").start().await;
    let alice = app.session("alice").to_string();
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(&alice),
            json!({"kind": "tool", "namespace": "alice", "name": "tcpdump"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let path = "/api/v1/entries/tool/alice/tcpdump/versions";
    let field = "manifest.capabilities.packet_capture.patterns.capture.time_estimate_ms";
    for (time, says) in [
        ("1200 + * N )", "at character 8"),
        ("frob(N)", "calls `frob`"),
        ("800 + 0.3 * packets", "uses `packets`"),
    ] {
        let (s, b) = app
            .post(
                path,
                Some(&alice),
                json!({"version": "1.0.0", "manifest": manifest(time)}),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{time}: {b}");
        assert_eq!(b["error"]["field"], field, "{b}");
        let message = b["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(says) && message.contains("pattern `capture`"),
            "{message}"
        );
    }
    let (_, versions) = app.get(path, Some(&alice)).await;
    assert_eq!(versions["items"], json!([]), "nothing stored");

    // Declared inputs and context variables are fine.
    let (s, b) = app
        .post(
            path,
            Some(&alice),
            json!({"version": "1.0.0", "manifest": manifest("800 + 0.3 * packet_count + if(N > 5, 1, 0)")}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}
