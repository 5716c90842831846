//! `POST /api/v1/entries` checks the name against its kind's whole naming rule (the
//! convention the `naming` gate checks included; module names have no convention beyond
//! their lexical rule): a refused name is the usual 422 naming
//! the field, and writes nothing (no entry, no audit row).

use reqwest::StatusCode;
use serde_json::json;

use crate::common::TestApp;

const ROOT: &str = "root-token-for-entry-name-tests";

#[tokio::test]
async fn a_name_against_its_kinds_convention_is_refused_at_creation() {
    let app = TestApp::builder().admin_token(ROOT).start().await;
    for (kind, name) in [
        ("tool", "BadName"),
        ("recipe", "nginx-"),
        ("skill", "pdf__tools"),
        ("tool", "text.CsvParse"),
    ] {
        let (s, b) = app
            .post(
                "/api/v1/entries",
                Some(ROOT),
                json!({"kind": kind, "namespace": "acme", "name": name,
                       "description": "an entry whose name is under test"}),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{kind} {name}: {b}");
        assert_eq!(b["error"]["code"], "invalid_input", "{b}");
        assert_eq!(b["error"]["field"], "name", "{b}");
        assert!(
            b["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(name)),
            "{b}"
        );
        let (s, _) = app
            .get(&format!("/api/v1/entries/{kind}/acme/{name}"), Some(ROOT))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{kind} {name}");
    }
    let (s, list) = app.get("/api/v1/entries", Some(ROOT)).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["items"], json!([]), "{list}");
    let (s, log) = app.get("/api/v1/audit?limit=100", Some(ROOT)).await;
    assert_eq!(s, StatusCode::OK, "{log}");
    assert_eq!(log["items"], json!([]), "{log}");

    // The same tool, named by the convention, is created.
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(ROOT),
            json!({"kind": "tool", "namespace": "acme", "name": "badName",
                   "description": "an entry whose name is under test"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}
