//! What every connection and answer goes through: connection limits and timeouts, the
//! answers to oversized requests, unread bodies on kept-alive connections, response
//! headers, and who may read the metrics.

use std::time::Duration;

use quiver_server::conn::ConnectionLimits;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::{assert_envelope, TestApp};

fn port(app: &TestApp) -> u16 {
    app.base.rsplit(':').next().unwrap().parse().unwrap()
}

/// A raw connection to the app from `from` (any 127.x address is this machine's).
async fn connect_from(app: &TestApp, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket
        .connect(format!("127.0.0.1:{}", port(app)).parse().unwrap())
        .await
        .unwrap()
}

/// Read one HTTP/1.1 answer (head and a `content-length` body) from `s`.
async fn read_answer(s: &mut TcpStream) -> (u16, String, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(
            n > 0,
            "connection closed mid-answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap().to_ascii_lowercase();
    let status: u16 = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (status, head, String::from_utf8(body).unwrap())
}

#[tokio::test]
async fn every_answer_says_nosniff() {
    let app = TestApp::start().await;
    for path in [
        "/healthz",
        "/api/v1/entries",
        "/api/v1/nowhere",
        "/openapi.json",
    ] {
        let resp = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            resp.headers()
                .get("x-content-type-options")
                .map(|v| v.to_str().unwrap()),
            Some("nosniff"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_oversized_body_is_413_in_the_envelope() {
    let app = TestApp::start().await;
    let big = "x".repeat(5 * 1024 * 1024);
    let resp = app
        .http
        .post(app.url("/api/v1/entries"))
        .header("content-type", "application/json")
        .body(format!("{{\"name\":\"{big}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = resp.json().await.unwrap();
    assert_envelope(&body, "payload_too_large", Some("body"));
}

#[tokio::test]
async fn long_uris_and_large_headers_are_answered_in_the_envelope() {
    let app = TestApp::start().await;
    let resp = app
        .http
        .get(app.url(&format!("/api/v1/entries?q={}", "a".repeat(9000))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::URI_TOO_LONG);
    assert_envelope(&resp.json().await.unwrap(), "uri_too_long", Some("uri"));

    let mut req = app.http.get(app.url("/healthz"));
    for i in 0..40 {
        req = req.header(format!("x-filler-{i}"), "v".repeat(1000));
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_envelope(
        &resp.json().await.unwrap(),
        "headers_too_large",
        Some("headers"),
    );
}

#[tokio::test]
async fn errors_from_outside_the_handlers_use_the_envelope() {
    let app = TestApp::start().await;
    // A form body of the wrong type is refused by the form extractor before any handler.
    let resp = app
        .http
        .post(app.url("/device"))
        .header("content-type", "text/plain")
        .body("user_code=x")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error(), "{}", resp.status());
    let body: Value = resp.json().await.expect("a JSON envelope");
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

/// A request whose body arrives after its head and is never read by a handler (the
/// router's 404 and 405): the next request on the connection still gets its answer.
#[tokio::test]
async fn a_connection_stays_usable_after_an_unread_body() {
    let app = TestApp::start().await;
    for (method, path) in [("POST", "/api/v1/nowhere"), ("DELETE", "/healthz")] {
        let mut s = connect_from(&app, "127.0.0.1").await;
        let body = json!({"a": "b".repeat(2000)}).to_string();
        s.write_all(
            format!(
                "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(body.as_bytes()).await.unwrap();
        let (status, head, _) = read_answer(&mut s).await;
        assert!(status == 404 || status == 405, "{method} {path}: {status}");
        assert!(!head.contains("connection: close"), "{head}");
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let (status, _, _) = read_answer(&mut s).await;
        assert_eq!(status, 200, "the second request on the connection");
    }
}

/// A body too slow to wait for: the answer says the connection closes, so the client
/// never sends into a connection about to be dropped.
#[tokio::test]
async fn an_unread_body_that_does_not_arrive_closes_the_connection_cleanly() {
    let app = TestApp::start().await;
    let mut s = connect_from(&app, "127.0.0.1").await;
    s.write_all(b"POST /api/v1/nowhere HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n")
        .await
        .unwrap();
    let (status, head, body) = read_answer(&mut s).await;
    assert_eq!(status, 404);
    assert!(head.contains("connection: close"), "{head}");
    assert_envelope(&serde_json::from_str(&body).unwrap(), "not_found", None);
}

/// Slowloris: connections that send nothing are capped per client (503 beyond the cap),
/// closed after the header timeout, and other clients are served throughout.
#[tokio::test]
async fn idle_connections_are_capped_per_client_and_timed_out() {
    let app = TestApp::builder()
        .connections(ConnectionLimits {
            max_connections: 100,
            max_per_client: 4,
            header_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(5),
        })
        .start()
        .await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect_from(&app, "127.0.0.2").await);
    }
    // Let the server admit the four before the fifth arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fifth = connect_from(&app, "127.0.0.2").await;
    let (status, head, body) = read_answer(&mut fifth).await;
    assert_eq!(status, 503);
    assert!(head.contains("retry-after: 1"), "{head}");
    assert_envelope(&serde_json::from_str(&body).unwrap(), "unavailable", None);

    // Another client is not held up by the first one's connections.
    assert_eq!(app.get("/healthz", None).await.0, StatusCode::OK);

    // The idle ones are closed once the header timeout passes.
    for mut s in idle {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("closed within the timeout")
            .unwrap_or(0);
        assert_eq!(n, 0, "an idle connection got {:?}", &buf[..n]);
    }
    // And their slots came back.
    let mut again = connect_from(&app, "127.0.0.2").await;
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_answer(&mut again).await.0, 200);
}

#[tokio::test]
async fn metrics_are_for_admins() {
    let app = TestApp::builder().admin_token("root").start().await;
    let (s, body) = app.get("/metrics", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    let resp = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth("root")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("quiver_feed_head"));
}

#[tokio::test]
async fn job_records_do_not_show_the_data_directory() {
    let app = TestApp::builder().admin_token("root").start().await;
    let (s, job) = app
        .post("/api/v1/index/rebuild", Some("root"), json!({}))
        .await;
    assert!(s.is_success(), "{s} {job}");
    let (s, jobs) = app.get("/api/v1/jobs", Some("root")).await;
    assert_eq!(s, StatusCode::OK);
    let dir = std::fs::canonicalize(app.dir.path()).unwrap();
    for text in [job.to_string(), jobs.to_string()] {
        assert!(
            !text.contains(&*dir.to_string_lossy())
                && !text.contains(&*app.dir.path().to_string_lossy()),
            "a job record names the data directory: {text}"
        );
    }
}

/// A tool manifest of about `bytes` bytes.
fn manifest_of(bytes: usize) -> Value {
    json!({
        "input_schema": {
            "type": "object",
            "description": "n".repeat(bytes),
            "properties": {"text": {"type": "string"}},
        },
    })
}

async fn tool_with_versions(app: &TestApp, n: usize, manifest_bytes: usize) -> String {
    let (s, e) = app
        .post(
            "/api/v1/entries",
            None,
            crate::entries::tool("big.versions", "an entry with many versions"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    let path = "/api/v1/entries/tool/tpmjs/big.versions".to_string();
    for i in 0..n {
        let (s, v) = app
            .post(
                &format!("{path}/versions"),
                None,
                json!({"version": format!("1.{i}.0"), "manifest": manifest_of(manifest_bytes)}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    path
}

#[tokio::test]
async fn versions_are_listed_a_page_at_a_time_without_manifests_unless_asked() {
    let app = TestApp::start().await;
    let path = tool_with_versions(&app, 25, 2000).await;
    let (s, first) = app.get(&format!("{path}/versions"), None).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 20, "the default page");
    assert_eq!(items[0]["version"], "1.24.0", "newest first");
    assert!(items.iter().all(|v| v["manifest"].is_null()), "{first}");
    assert!(
        first.to_string().len() < 20_000,
        "a page without manifests is small"
    );
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let (_, second) = app
        .get(
            &format!("{path}/versions?cursor={cursor}&include=manifest"),
            None,
        )
        .await;
    let rest: Vec<&str> = second["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(rest, ["1.4.0", "1.3.0", "1.2.0", "1.1.0", "1.0.0"]);
    assert!(second["next_cursor"].is_null());
    assert!(
        second["items"][0]["manifest"]["input_schema"]["description"].is_string(),
        "{second}"
    );

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("include=everything", "include"),
        ("cursor=not-a-cursor", "cursor"),
        ("colour=red", "colour"),
    ] {
        let (s, body) = app.get(&format!("{path}/versions?{query}"), None).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_envelope(&body, "invalid_input", Some(field));
    }
}

#[tokio::test]
async fn an_entry_holds_a_bounded_total_of_manifest_bytes() {
    let app = TestApp::builder()
        .config(|c| c.max_entry_manifest_bytes = 50_000)
        .start()
        .await;
    let path = tool_with_versions(&app, 4, 10_000).await;
    let (s, body) = app
        .post(
            &format!("{path}/versions"),
            None,
            json!({"version": "2.0.0", "manifest": manifest_of(20_000)}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_envelope(&body, "invalid_input", Some("manifest"));
    let (_, page) = app.get(&format!("{path}/versions"), None).await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        4,
        "nothing was stored"
    );
    // A small one still fits.
    let (s, body) = app
        .post(
            &format!("{path}/versions"),
            None,
            json!({"version": "2.0.0", "manifest": manifest_of(100)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
}

/// Every body is a JSON object: an array (which serde would read into a struct) or a
/// scalar is refused, before anything runs.
#[tokio::test]
async fn a_body_of_the_wrong_type_is_refused() {
    let app = TestApp::start().await;
    for body in ["[null, null]", "[]", "\"x\"", "42", "null"] {
        for path in ["/api/v1/device/code", "/api/v1/entries"] {
            let resp = app
                .http
                .post(app.url(path))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {body}"
            );
            assert_envelope(&resp.json().await.unwrap(), "invalid_input", Some("body"));
        }
    }
}

/// A page with manifests stops once it carries 4 MiB of them (after at least one), and
/// continues on the next page.
#[tokio::test]
async fn a_page_of_manifests_is_bounded_in_bytes() {
    let app = TestApp::start().await;
    let path = tool_with_versions(&app, 6, 1_000_000).await;
    let (s, first) = app
        .get(&format!("{path}/versions?include=manifest&limit=100"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        first["items"].as_array().unwrap().len(),
        5,
        "five pass 4 MiB"
    );
    let cursor = first["next_cursor"]
        .as_str()
        .expect("the rest on a next page");
    let (_, second) = app
        .get(
            &format!("{path}/versions?include=manifest&limit=100&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(second["items"][0]["version"], "1.0.0");
    assert!(second["next_cursor"].is_null());
}
