//! Durable jobs through the API: the index rebuild, listing, retry.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::entries::{hit_names, start, tool};

#[tokio::test]
async fn index_rebuild_runs_as_a_durable_job() {
    let app = start().await;
    let mut body = tool("text.rebuildMe", "capybara grooming kit");
    body["status"] = json!("published");
    app.post("/api/v1/entries", None, body).await;
    let (s, job) = app.post("/api/v1/index/rebuild", None, json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_i64().unwrap();
    let mut state = Value::Null;
    for _ in 0..100 {
        let (_, j) = app.get(&format!("/api/v1/jobs/{id}"), None).await;
        state = j["state"].clone();
        if state == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "succeeded");
    let (_, list) = app.get("/api/v1/jobs?state=succeeded", None).await;
    assert_eq!(list["items"][0]["id"], id);
    app.search_until("capybara", |b| {
        hit_names(b).contains(&"tpmjs/text.rebuildMe".to_string())
    })
    .await;
    let (s, b) = app
        .post(&format!("/api/v1/jobs/{id}/retry"), None, json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "only dead jobs are retried: {b}");
    let (s, _) = app.get("/api/v1/jobs/999999", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = app.get("/api/v1/jobs/abc", None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
}
