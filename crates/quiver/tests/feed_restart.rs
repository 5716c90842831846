//! Following the public change feed across a server crash: a client that pages with
//! `since` and a client on the Server-Sent Events stream see every public event exactly
//! once, in order, before and after a SIGKILL and a restart on the same store; a private
//! entry's events never reach them; the stream resumes with `Last-Event-ID`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::Server;

const ADMIN: &str = "root-for-feed-tests";

fn serve(data: &Path) -> Server {
    Server::start(data, &["--admin-token", ADMIN, "--rate-limits", "off"])
}

/// A public or private tool with one version: two events (entry created, version).
async fn write(http: &reqwest::Client, server: &Server, name: &str, visibility: &str) {
    let r = http
        .post(server.url("/api/v1/entries"))
        .bearer_auth(ADMIN)
        .json(&json!({"kind": "tool", "namespace": "acme", "name": name,
                      "visibility": visibility,
                      "description": "a tool written for the change feed restart test"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "create {name}: {}", r.status());
    let r = http
        .post(server.url(&format!("/api/v1/entries/tool/acme/{name}/versions")))
        .bearer_auth(ADMIN)
        .json(&json!({"version": "1.0.0"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "publish {name}: {}", r.status());
}

/// An event as its position and `entity op name@version`.
fn event(c: &Value) -> (i64, String) {
    (
        c["seq"].as_i64().unwrap(),
        format!(
            "{} {} {}{}",
            c["entity"].as_str().unwrap(),
            c["op"].as_str().unwrap(),
            c["name"].as_str().unwrap_or("-"),
            c["version"]
                .as_str()
                .map(|v| format!("@{v}"))
                .unwrap_or_default()
        ),
    )
}

/// Page anonymously from `since` to the head: the events and the next position.
async fn follow(
    http: &reqwest::Client,
    server: &Server,
    mut since: i64,
) -> (Vec<(i64, String)>, i64) {
    let mut out = Vec::new();
    loop {
        let page: Value = http
            .get(server.url(&format!("/api/v1/changes?since={since}&limit=3")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = page["items"].as_array().unwrap();
        out.extend(items.iter().map(event));
        let next = page["next"].as_i64().unwrap();
        if items.is_empty() {
            return (out, next);
        }
        since = next;
    }
}

/// Read `n` events of an SSE answer: (id, event).
async fn read_events(mut resp: reqwest::Response, n: usize) -> Vec<(i64, String)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
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
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse::<i64>().ok();
                }
                if let Some(v) = line.strip_prefix("data:") {
                    data = serde_json::from_str::<Value>(v.trim()).ok();
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                let (seq, what) = event(&data);
                assert_eq!(id, seq, "the event id is its feed position");
                out.push((id, what));
            }
        }
    }
    out
}

fn assert_in_order(events: &[(i64, String)]) {
    assert!(
        events.windows(2).all(|w| w[0].0 < w[1].0),
        "positions strictly increase: {events:?}"
    );
}

/// The entry and version creations among `events`, as `entity op name@version`.
fn creations(events: &[(i64, String)]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.1.starts_with("entry create") || e.1.starts_with("version create"))
        .map(|e| e.1.clone())
        .collect()
}

fn created(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .flat_map(|n| {
            [
                format!("entry create {n}"),
                format!("version create {n}@1.0.0"),
            ]
        })
        .collect()
}

fn assert_no_private(events: &[(i64, String)]) {
    assert!(
        !events
            .iter()
            .any(|e| e.1.contains("feed.secret") || e.1.contains("feed.hidden")),
        "a private entry's event reached an anonymous follower: {events:?}"
    );
}

#[tokio::test]
async fn followers_see_every_public_event_once_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = reqwest::Client::new();

    let server = serve(&data);
    for (name, vis) in [
        ("feed.one", "public"),
        ("feed.secret", "private"),
        ("feed.two", "public"),
    ] {
        write(&http, &server, name, vis).await;
    }
    let (before, pos) = follow(&http, &server, 0).await;
    assert_in_order(&before);
    assert_no_private(&before);
    assert_eq!(creations(&before), created(&["feed.one", "feed.two"]));
    // The stream from the start holds the same events.
    let resp = http
        .get(server.url("/api/v1/changes/stream"))
        .send()
        .await
        .unwrap();
    let streamed = read_events(resp, before.len()).await;
    assert_eq!(streamed, before);
    let last_event_id = streamed.last().unwrap().0;

    // A crash: no shutdown, then a restart on the same store.
    server.kill9();
    let server = serve(&data);
    for (name, vis) in [
        ("feed.three", "public"),
        ("feed.hidden", "private"),
        ("feed.four", "public"),
    ] {
        write(&http, &server, name, vis).await;
    }

    // The pager resumes from its position: only what came after, in order.
    let (after, _) = follow(&http, &server, pos).await;
    assert_in_order(&after);
    assert_no_private(&after);
    assert!(after.first().unwrap().0 > before.last().unwrap().0);
    assert_eq!(creations(&after), created(&["feed.three", "feed.four"]));
    // The stream resumes after the last event it delivered before the crash.
    let resp = http
        .get(server.url("/api/v1/changes/stream"))
        .header("Last-Event-ID", last_event_id.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(read_events(resp, after.len()).await, after);

    // Whoever may read the private entries sees their events too, at positions
    // comparable with the anonymous view, which is exactly its public part.
    let mut seen = before.clone();
    seen.extend(after);
    let last = seen.last().unwrap().0;
    let page: Value = http
        .get(server.url("/api/v1/changes?since=0&limit=1000"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let all: Vec<(i64, String)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(event)
        .filter(|e| e.0 <= last)
        .collect();
    assert_in_order(&all);
    for private in ["entry create feed.secret", "entry create feed.hidden"] {
        assert!(all.iter().any(|e| e.1 == private), "{private} in {all:?}");
    }
    let entries_and_versions = |evs: &[(i64, String)]| -> Vec<(i64, String)> {
        evs.iter()
            .filter(|e| e.1.starts_with("entry ") || e.1.starts_with("version "))
            .filter(|e| !e.1.contains("feed.secret") && !e.1.contains("feed.hidden"))
            .cloned()
            .collect()
    };
    assert_eq!(
        entries_and_versions(&all),
        entries_and_versions(&seen),
        "no public event missed or repeated"
    );
}
