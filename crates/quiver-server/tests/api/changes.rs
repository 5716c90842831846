//! The public change feed through the API: pages in commit order with a position to
//! resume from, private entries' events hidden from those who may not read them, long
//! polls that return when a write lands, and the Server-Sent Events stream resumed with
//! Last-Event-ID.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{assert_envelope, TestApp};

const ADMIN: &str = "admin-secret";

async fn app() -> TestApp {
    TestApp::builder().admin_token(ADMIN).start().await
}

async fn create(app: &TestApp, name: &str, visibility: &str) {
    let (s, e) = app
        .post(
            "/api/v1/entries",
            Some(ADMIN),
            json!({"kind": "tool", "namespace": "acme", "name": name,
                   "visibility": visibility, "description": "a tool for the feed tests"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    let (s, e) = app
        .post(
            &format!("/api/v1/entries/tool/acme/{name}/versions"),
            Some(ADMIN),
            json!({"version": "1.0.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
}

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {} {}{}",
                c["entity"].as_str().unwrap(),
                c["op"].as_str().unwrap(),
                c["name"].as_str().unwrap_or("-"),
                c["version"]
                    .as_str()
                    .map(|v| format!("@{v}"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test]
async fn pages_hide_private_events_and_resume() {
    let app = app().await;
    create(&app, "open.one", "public").await;
    create(&app, "hidden.one", "private").await;
    create(&app, "open.two", "public").await;

    let (s, page) = app.get("/api/v1/changes", None).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(
        names(&page),
        [
            "entry create open.one",
            "version create open.one@1.0.0",
            "entry create open.two",
            "version create open.two@1.0.0"
        ]
    );
    let seqs: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_i64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seqs:?}"
    );
    assert_eq!(page["next"], page["head"], "{page}");
    let (_, all) = app.get("/api/v1/changes", Some(ADMIN)).await;
    let all_names = names(&all);
    assert!(
        all_names.contains(&"entry create hidden.one".to_string()),
        "{all_names:?}"
    );
    assert!(
        all_names.iter().any(|n| n.starts_with("namespace create")),
        "admins see namespaces: {all_names:?}"
    );
    // The same positions for everyone: the anonymous view is a subsequence.
    let all_seqs: Vec<i64> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.iter().all(|s| all_seqs.contains(s)));

    // Small pages resume exactly where they stopped, never repeating or skipping.
    let (mut since, mut seen) = (0, Vec::new());
    loop {
        let (s, p) = app
            .get(&format!("/api/v1/changes?since={since}&limit=1"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{p}");
        seen.extend(
            p["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["seq"].as_i64().unwrap()),
        );
        if p["items"].as_array().unwrap().is_empty() {
            break;
        }
        since = p["next"].as_i64().unwrap();
    }
    assert_eq!(seen, seqs);
    // Nothing new: an empty page at the head.
    let (_, p) = app
        .get(&format!("/api/v1/changes?since={since}"), None)
        .await;
    assert_eq!(p["items"], json!([]));
    assert_eq!(p["next"].as_i64().unwrap(), since);

    for bad in [
        "limit=0",
        "limit=1001",
        "since=-1",
        "wait=61",
        "since=x",
        "other=1",
    ] {
        let (s, e) = app.get(&format!("/api/v1/changes?{bad}"), None).await;
        assert!(
            s == StatusCode::UNPROCESSABLE_ENTITY || s == StatusCode::BAD_REQUEST,
            "{bad}: {s} {e}"
        );
    }
    let (s, e) = app.get("/api/v1/changes?limit=0", None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_envelope(&e, "invalid_input", Some("limit"));
}

#[tokio::test]
async fn a_long_poll_returns_when_a_write_lands() {
    let app = app().await;
    create(&app, "first.one", "public").await;
    let (_, p) = app.get("/api/v1/changes", None).await;
    let head = p["next"].as_i64().unwrap();
    let url = app.url(&format!("/api/v1/changes?since={head}&wait=30"));
    let http = app.http.clone();
    let started = Instant::now();
    let poll = tokio::spawn(async move {
        let r = http.get(url).send().await.unwrap();
        (r.status(), r.json::<Value>().await.unwrap(), Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "it waits while nothing happens");
    // A private write wakes nothing the anonymous caller may see; a public one does.
    create(&app, "hidden.two", "private").await;
    create(&app, "second.one", "public").await;
    let written = Instant::now();
    let (s, page, answered) = poll.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(names(&page)[0], "entry create second.one");
    assert!(names(&page).iter().all(|n| !n.contains("hidden")), "{page}");
    assert!(
        answered.duration_since(started) < Duration::from_secs(25),
        "it did not wait out its time"
    );
    eprintln!(
        "long poll answered {:?} after the write",
        answered.saturating_duration_since(written)
    );
    // A poll that times out answers an empty page at the same position.
    let (_, p) = app.get("/api/v1/changes", None).await;
    let head = p["next"].as_i64().unwrap();
    let (s, p) = app
        .get(&format!("/api/v1/changes?since={head}&wait=1"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["items"], json!([]));
    assert_eq!(p["next"].as_i64().unwrap(), head);
}

/// Read `n` events of a stream: (id, data).
async fn read_events(mut resp: reqwest::Response, n: usize) -> Vec<(i64, Value)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < n {
        let chunk = tokio::time::timeout_at(deadline.into(), resp.chunk())
            .await
            .expect("events in time")
            .unwrap()
            .expect("the stream stays open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut data) = (None, None);
            for line in block.lines() {
                if let Some(v) = line
                    .strip_prefix("id: ")
                    .or_else(|| line.strip_prefix("id:"))
                {
                    id = v.trim().parse::<i64>().ok();
                }
                if let Some(v) = line
                    .strip_prefix("data: ")
                    .or_else(|| line.strip_prefix("data:"))
                {
                    data = serde_json::from_str::<Value>(v).ok();
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                out.push((id, data));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_stream_follows_live_and_resumes_with_last_event_id() {
    let app = app().await;
    create(&app, "s.one", "public").await;
    create(&app, "s.hidden", "private").await;
    let resp = app
        .http
        .get(app.url("/api/v1/changes/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    // Two past events (s.one), then a live one.
    let live = {
        let app_http = app.http.clone();
        let url = app.url("/api/v1/entries");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let r = app_http
                .post(url)
                .bearer_auth(ADMIN)
                .json(
                    &json!({"kind": "tool", "namespace": "acme", "name": "s.live",
                              "description": "a tool for the feed tests"}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
        })
    };
    let events = read_events(resp, 3).await;
    live.await.unwrap();
    let got: Vec<String> = events
        .iter()
        .map(|(_, c)| {
            format!(
                "{} {}",
                c["entity"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(got, ["entry s.one", "version s.one", "entry s.live"]);
    assert!(events.windows(2).all(|w| w[0].0 < w[1].0));
    // Resume after the first event: the rest, again, in order.
    let resp = app
        .http
        .get(app.url("/api/v1/changes/stream"))
        .header("last-event-id", events[0].0.to_string())
        .send()
        .await
        .unwrap();
    let again = read_events(resp, 2).await;
    assert_eq!(
        again.iter().map(|e| e.0).collect::<Vec<_>>(),
        [events[1].0, events[2].0]
    );
    let (s, e) = app
        .call(
            reqwest::Method::GET,
            "/api/v1/changes/stream?since=-5",
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
}
