//! Webhook deliveries across a server crash: events written while the receiver is down
//! are pending (failed attempts waiting for their retry) when `quiver serve` is
//! SIGKILLed; after a restart on the same store, with the receiver up, every one of them
//! arrives. Deliveries are rows and their attempts durable jobs, and the restarted node
//! takes back the attempts its dead workers held.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod common;
use common::Server;

const ADMIN: &str = "root-for-webhook-tests";

fn serve(data: &Path) -> Server {
    Server::start(
        data,
        &[
            "--admin-token",
            ADMIN,
            "--rate-limits",
            "off",
            "--webhooks-allow-private",
            "--webhooks-backoff-ms",
            "200",
            "--webhooks-max-attempts",
            "100",
            "--webhooks-disable-after",
            "0",
        ],
    )
}

/// A minimal HTTP receiver: answers 200 to every request and keeps each body.
async fn receive(listener: TcpListener, bodies: Arc<Mutex<Vec<Value>>>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let bodies = bodies.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() < end + 4 + len {
                    continue;
                }
                let body = &buf[end + 4..end + 4 + len];
                if let Ok(v) = serde_json::from_slice(body) {
                    bodies.lock().unwrap().push(v);
                }
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                return;
            }
        });
    }
}

/// The webhook's delivery log, as the admin reads it.
async fn delivery_log(http: &reqwest::Client, server: &Server, id: i64) -> Value {
    http.get(server.url(&format!("/api/v1/webhooks/{id}/deliveries")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn post(http: &reqwest::Client, server: &Server, path: &str, body: Value) -> Value {
    let r = http
        .post(server.url(path))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_survive_a_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    // The receiver's port, with nothing listening on it yet: every attempt fails.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = serve(data.path());
    post(
        &http,
        &server,
        "/api/v1/entries",
        json!({"kind": "tool", "namespace": "acme", "name": "seed",
               "description": "makes the namespace"}),
    )
    .await;
    let hook = post(
        &http,
        &server,
        "/api/v1/webhooks",
        json!({"url": format!("http://127.0.0.1:{port}/hook"), "namespace": "acme",
               "events": ["version.published"]}),
    )
    .await;
    let id = hook["webhook"]["id"].as_i64().unwrap();
    let versions = ["1.0.0", "1.0.1", "1.0.2", "1.1.0", "2.0.0"];
    for v in versions {
        post(
            &http,
            &server,
            "/api/v1/entries/tool/acme/seed/versions",
            json!({"version": v}),
        )
        .await;
    }
    // Wait until every delivery exists and has failed at least once: pending.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = delivery_log(&http, &server, id).await;
        let items = log["items"].as_array().unwrap();
        if items.len() == versions.len()
            && items
                .iter()
                .all(|d| d["state"] == "pending" && d["attempts"].as_u64() >= Some(1))
        {
            break;
        }
        assert!(Instant::now() < deadline, "not all pending: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill9();

    // The receiver comes up, then the server again on the same store.
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(receive(listener, bodies.clone()));
    let server = serve(data.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    let want: BTreeSet<String> = versions.iter().map(|v| v.to_string()).collect();
    loop {
        let got: BTreeSet<String> = bodies
            .lock()
            .unwrap()
            .iter()
            .filter_map(|b| b["version"].as_str().map(str::to_string))
            .collect();
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the restart only {got:?} of {want:?} arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And the log says so.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = delivery_log(&http, &server, id).await;
        let items = log["items"].as_array().unwrap();
        if items.iter().all(|d| d["state"] == "succeeded") {
            assert_eq!(items.len(), versions.len(), "{log}");
            break;
        }
        assert!(Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.terminate();
}
