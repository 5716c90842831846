//! Webhooks end to end, against a real receiver on loopback: signatures that verify as
//! the README says, retries with growing waits, dead letters and the subscription
//! disabled with an audit row, private targets refused (at creation and again at
//! delivery), private entries' events only for owners who may read them, the delivery
//! log, redelivery, pings, secret rotation with its overlap, and owners' rights.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::{assert_envelope, TestApp};

const ADMIN: &str = "admin-secret";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Got {
    at: Instant,
    signature: String,
    event: String,
    body: Bytes,
}

/// A receiver on loopback answering each request with the status `answer` gives for its
/// number (0-based), recording what it got.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
}

type Answer = Arc<dyn Fn(usize) -> u16 + Send + Sync>;

impl Receiver {
    async fn start(answer: impl Fn(usize) -> u16 + Send + Sync + 'static) -> Receiver {
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let answer: Answer = Arc::new(answer);
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(
                    |State((got, answer)): State<(Arc<Mutex<Vec<Got>>>, Answer)>,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        let header = |n: &str| {
                            headers
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string()
                        };
                        let mut g = got.lock().unwrap();
                        let n = g.len();
                        g.push(Got {
                            at: Instant::now(),
                            signature: header("quiver-signature"),
                            event: header("quiver-event"),
                            body,
                        });
                        AxStatus::from_u16(answer(n)).unwrap()
                    },
                ),
            )
            .with_state((got.clone(), answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, got }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Wait until `n` requests arrived (or fail after `secs`).
    async fn wait_for(&self, n: usize, secs: u64) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.got();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} requests arrived: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// HMAC-SHA256, written here from RFC 2104 (not the server's code).
fn hmac(key: &[u8], msg: &[u8]) -> String {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let inner = Sha256::new()
        .chain_update(k.map(|b| b ^ 0x36))
        .chain_update(msg)
        .finalize();
    let outer = Sha256::new()
        .chain_update(k.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize();
    hex::encode(outer)
}

/// The README's check: `t` and the `v1` values from the header; valid when one `v1`
/// equals hex HMAC-SHA256 of `"<t>.<raw body>"` keyed with the secret, and `t` is
/// recent.
fn verifies(header: &str, secret: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut sigs = vec![];
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.push(v.to_string()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    let now = jiff::Timestamp::now().as_second();
    if (now - t).abs() > 300 {
        return false;
    }
    let mut msg = format!("{t}.").into_bytes();
    msg.extend_from_slice(body);
    let expected = hmac(secret.as_bytes(), &msg);
    sigs.contains(&expected)
}

fn builder() -> crate::common::TestAppBuilder {
    TestApp::builder().admin_token(ADMIN).worker()
}

/// An app whose webhooks may target loopback, with quick retries.
async fn app(backoff_ms: u64, max_attempts: u32, disable_after: u32) -> TestApp {
    builder()
        .user("ann")
        .user("bob")
        .config(move |c| {
            c.webhooks.allow_private = true;
            c.webhooks.backoff_base = Duration::from_millis(backoff_ms);
            c.webhooks.max_attempts = max_attempts;
            c.webhooks.disable_after = disable_after;
            c.webhooks.poll_interval = Duration::from_millis(20);
        })
        .start()
        .await
}

async fn entry(app: &TestApp, ns: &str, name: &str, visibility: &str) {
    let (s, e) = app
        .post(
            "/api/v1/entries",
            Some(ADMIN),
            json!({"kind": "tool", "namespace": ns, "name": name,
                   "visibility": visibility, "description": "a tool for the webhook tests"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
}

async fn publish(app: &TestApp, ns: &str, name: &str, version: &str) {
    let (s, e) = app
        .post(
            &format!("/api/v1/entries/tool/{ns}/{name}/versions"),
            Some(ADMIN),
            json!({"version": version}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
}

async fn subscribe(app: &TestApp, token: &str, body: Value) -> (i64, String) {
    let (s, w) = app.post("/api/v1/webhooks", Some(token), body).await;
    assert_eq!(s, StatusCode::CREATED, "{w}");
    (
        w["webhook"]["id"].as_i64().unwrap(),
        w["secret"].as_str().unwrap().to_string(),
    )
}

/// The delivery log, once its newest delivery is in `state`.
async fn log_when(app: &TestApp, token: &str, id: i64, state: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (s, log) = app
            .get(&format!("/api/v1/webhooks/{id}/deliveries"), Some(token))
            .await;
        assert_eq!(s, StatusCode::OK, "{log}");
        if log["items"][0]["state"] == state {
            return log;
        }
        assert!(Instant::now() < deadline, "never {state}: {log}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_as_documented() {
    let app = app(100, 3, 10).await;
    let rx = Receiver::start(|_| 204).await;
    let ann = app.session("ann").to_string();
    let (id, secret) = subscribe(
        &app,
        &ann,
        json!({"url": rx.url, "events": ["version.published"], "namespaces": ["acme"]}),
    )
    .await;
    assert!(secret.starts_with("whsec_"));
    entry(&app, "acme", "hooked", "public").await;
    entry(&app, "other", "ignored", "public").await;
    publish(&app, "other", "ignored", "1.0.0").await;
    publish(&app, "acme", "hooked", "1.0.0").await;

    let got = rx.wait_for(1, 10).await;
    let g = &got[0];
    assert_eq!(g.event, "version.published");
    assert!(g.signature.starts_with("t="), "{}", g.signature);
    assert!(verifies(&g.signature, &secret, &g.body), "{}", g.signature);
    assert!(!verifies(&g.signature, "whsec_wrong", &g.body));
    let mut tampered = g.body.to_vec();
    tampered.push(b' ');
    assert!(!verifies(&g.signature, &secret, &tampered));
    let body: Value = serde_json::from_slice(&g.body).unwrap();
    assert_eq!(body["event"], "version.published");
    assert_eq!(body["entry"]["name"], "hooked");
    assert_eq!(body["entry"]["namespace"], "acme");
    assert_eq!(body["version"], "1.0.0");

    // The log: one delivery, succeeded at the first attempt, with its code and duration.
    let log = log_when(&app, &ann, id, "succeeded", 10).await;
    let d = &log["items"][0];
    assert_eq!(d["attempts"], 1, "{log}");
    assert_eq!(d["last_status"], 204, "{log}");
    assert!(d["last_duration_ms"].is_u64(), "{log}");
    assert_eq!(log["items"].as_array().unwrap().len(), 1, "filtered: {log}");

    // Rotation: the new secret is answered once and signs; the old one still signs
    // during the overlap (a second v1=).
    let (s, r) = app
        .post(
            &format!("/api/v1/webhooks/{id}/rotate-secret"),
            Some(&ann),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let new_secret = r["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    assert!(r["webhook"]["previous_secret_until"].is_string(), "{r}");
    let (s, p) = app
        .post(
            &format!("/api/v1/webhooks/{id}/test"),
            Some(&ann),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{p}");
    let got = rx.wait_for(2, 10).await;
    let g = &got[1];
    assert_eq!(g.event, "ping");
    assert_eq!(g.signature.matches("v1=").count(), 2, "{}", g.signature);
    assert!(verifies(&g.signature, &new_secret, &g.body));
    assert!(verifies(&g.signature, &secret, &g.body));

    // Redelivery: a new delivery of the same event, linked to the first.
    let first = log["items"][0]["id"].as_i64().unwrap();
    let (s, d) = app
        .post(
            &format!("/api/v1/webhooks/{id}/deliveries/{first}/redeliver"),
            Some(&ann),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{d}");
    assert_eq!(d["redelivery_of"], first);
    let got = rx.wait_for(3, 10).await;
    assert_eq!(got[2].event, "version.published");
    assert_eq!(got[2].body, got[0].body, "the same event again");

    // Never a secret in a list or a read; others are told it does not exist.
    let (s, list) = app.get("/api/v1/webhooks", Some(&ann)).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains("whsec_"), "{list}");
    let bob = app.session("bob").to_string();
    let (s, e) = app.get(&format!("/api/v1/webhooks/{id}"), Some(&bob)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (s, e) = app.get(&format!("/api/v1/webhooks/{id}"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{e}");
    let (s, list) = app.get("/api/v1/webhooks", Some(&bob)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list, json!([]));
    let (s, e) = app
        .post(
            "/api/v1/webhooks",
            Some(&bob),
            json!({"url": rx.url, "namespace": "acme"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "not acme's owner: {e}");
    let (s, e) = app
        .post(
            "/api/v1/webhooks",
            Some(&bob),
            json!({"url": rx.url, "events": ["nope"]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_envelope(&e, "invalid_input", Some("events[0]"));

    // Deletion takes the log with it.
    let (s, _) = app
        .delete(&format!("/api/v1/webhooks/{id}"), Some(&ann))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app
        .get(&format!("/api/v1/webhooks/{id}/deliveries"), Some(&ann))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_it_after_growing_waits() {
    let app = app(200, 6, 10).await;
    // Fails three times, then succeeds.
    let rx = Receiver::start(|n| if n < 3 { 503 } else { 200 }).await;
    let ann = app.session("ann").to_string();
    let (id, _) = subscribe(&app, &ann, json!({"url": rx.url})).await;
    entry(&app, "acme", "flaky", "public").await;
    publish(&app, "acme", "flaky", "1.0.0").await;

    let got = rx.wait_for(4, 20).await;
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    // 200 ms, 400 ms, 800 ms (with the worker's polling on top).
    assert!(gaps[0] >= Duration::from_millis(180), "{gaps:?}");
    assert!(gaps[1] > gaps[0], "growing waits: {gaps:?}");
    assert!(gaps[2] > gaps[1], "growing waits: {gaps:?}");
    assert!(
        got.iter().all(|g| g.body == got[0].body),
        "the same delivery"
    );
    let log = log_when(&app, &ann, id, "succeeded", 10).await;
    let d = &log["items"][0];
    assert_eq!(d["attempts"], 4, "{log}");
    assert_eq!(d["last_status"], 200, "{log}");
    let (_, w) = app.get(&format!("/api/v1/webhooks/{id}"), Some(&ann)).await;
    assert_eq!(w["active"], true, "{w}");
    assert_eq!(
        w["consecutive_failures"], 0,
        "a success resets the run: {w}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.got().len(), 4, "nothing after the success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_always_failing_receiver_is_dead_lettered_and_disabled() {
    let app = app(50, 3, 5).await;
    let rx = Receiver::start(|_| 500).await;
    let ann = app.session("ann").to_string();
    let (id, _) = subscribe(&app, &ann, json!({"url": rx.url})).await;
    entry(&app, "acme", "broken", "public").await;
    publish(&app, "acme", "broken", "1.0.0").await;
    // Three attempts, then dead.
    let log = log_when(&app, &ann, id, "dead", 20).await;
    let d = &log["items"][0];
    assert_eq!(d["attempts"], 3, "{log}");
    assert_eq!(d["last_status"], 500, "{log}");
    assert_eq!(d["last_error"], "HTTP 500", "{log}");
    let (_, w) = app.get(&format!("/api/v1/webhooks/{id}"), Some(&ann)).await;
    assert_eq!(w["active"], true, "three failures of five: {w}");
    assert_eq!(w["consecutive_failures"], 3, "{w}");

    // Two more failures make the run five: disabled, with an audit row.
    publish(&app, "acme", "broken", "1.0.1").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let w = loop {
        let (_, w) = app.get(&format!("/api/v1/webhooks/{id}"), Some(&ann)).await;
        if w["active"] == false {
            break w;
        }
        assert!(Instant::now() < deadline, "never disabled: {w}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    assert_eq!(w["consecutive_failures"], 5, "{w}");
    assert!(
        w["disabled_reason"].as_str().unwrap().contains("5 failed"),
        "{w}"
    );
    let log = log_when(&app, &ann, id, "dead", 10).await;
    assert_eq!(
        log["items"][0]["attempts"], 2,
        "no retry once disabled: {log}"
    );
    let (s, audit) = app
        .get("/api/v1/audit?action=webhook.disable", Some(ADMIN))
        .await;
    assert_eq!(s, StatusCode::OK, "{audit}");
    let rows = audit["items"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{audit}");
    assert_eq!(rows[0]["actor"], "quiver (webhooks)");
    assert_eq!(rows[0]["target"], format!("webhook {id}"));
    let received = rx.got().len();
    assert_eq!(received, 5);

    // A disabled subscription gets nothing more; re-enabling resets it.
    publish(&app, "acme", "broken", "1.0.2").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(rx.got().len(), received, "nothing for a disabled webhook");
    let (s, w) = app
        .patch(
            &format!("/api/v1/webhooks/{id}"),
            Some(&ann),
            json!({"active": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{w}");
    assert_eq!(w["consecutive_failures"], 0);
    assert!(w.get("disabled_reason").is_none(), "{w}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_refused_unless_allowed() {
    let app = builder().user("ann").start().await;
    let ann = app.session("ann").to_string();
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "ftp://127.0.0.1/hook",
        "http://user:pass@127.0.0.1/hook",
        "not a url",
    ] {
        let (s, e) = app
            .post("/api/v1/webhooks", Some(&ann), json!({"url": url}))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {e}");
        assert_envelope(&e, "invalid_input", Some("url"));
    }
    let (_, list) = app.get("/api/v1/webhooks", Some(&ann)).await;
    assert_eq!(list, json!([]), "nothing written");

    // A subscription that points inside anyway (written before the rule, or a name that
    // resolves elsewhere now) is checked again at delivery: refused, nothing sent.
    let rx = Receiver::start(|_| 200).await;
    let now = jiff::Timestamp::now();
    let ann_id = app
        .registry
        .database()
        .accounts
        .get_user("ann")
        .await
        .unwrap()
        .unwrap()
        .user
        .id;
    let w = app
        .registry
        .database()
        .webhooks
        .create_webhook(
            quiver_store::webhooks::Webhook {
                id: 0,
                owner: quiver_store::webhooks::WebhookOwner::User(ann_id),
                url: rx.url.clone(),
                filter: Default::default(),
                active: true,
                disabled_reason: None,
                consecutive_failures: 0,
                secret: "whsec_test".into(),
                previous_secret: None,
                previous_secret_until: None,
                created_at: now,
                updated_at: now,
            },
            None,
        )
        .await
        .unwrap();
    let (s, d) = app
        .post(
            &format!("/api/v1/webhooks/{}/test", w.id),
            Some(&ann),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{d}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let d = loop {
        let (_, log) = app
            .get(&format!("/api/v1/webhooks/{}/deliveries", w.id), Some(&ann))
            .await;
        if log["items"][0]["attempts"].as_u64() >= Some(1) {
            break log["items"][0].clone();
        }
        assert!(Instant::now() < deadline, "never attempted: {log}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    let err = d["last_error"].as_str().unwrap();
    assert!(err.contains("refused") && err.contains("127.0.0.1"), "{d}");
    assert!(d["last_status"].is_null(), "{d}");
    assert!(rx.got().is_empty(), "nothing reached the inside address");

    // Allowed with the server's explicit setting.
    let open = builder()
        .user("ann")
        .config(|c| c.webhooks.allow_private = true)
        .start()
        .await;
    let ann = open.session("ann").to_string();
    let (s, e) = open
        .post("/api/v1/webhooks", Some(&ann), json!({"url": rx.url}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_entries_reach_only_owners_who_may_read_them() {
    let app = app(100, 3, 10).await;
    let for_ann = Receiver::start(|_| 200).await;
    let for_acme = Receiver::start(|_| 200).await;
    let ann = app.session("ann").to_string();
    subscribe(&app, &ann, json!({"url": for_ann.url})).await;
    entry(&app, "acme", "seed", "public").await; // the namespace exists
    subscribe(
        &app,
        ADMIN,
        json!({"url": for_acme.url, "namespace": "acme"}),
    )
    .await;
    entry(&app, "acme", "secret.tool", "private").await;
    publish(&app, "acme", "secret.tool", "1.0.0").await;
    entry(&app, "acme", "open.tool", "public").await;
    publish(&app, "acme", "open.tool", "1.0.0").await;

    let acme = for_acme.wait_for(2, 10).await;
    let names = |got: &[Got]| -> Vec<String> {
        got.iter()
            .map(|g| {
                let b: Value = serde_json::from_slice(&g.body).unwrap();
                b["entry"]["name"].as_str().unwrap().to_string()
            })
            .collect()
    };
    // Deliveries go out in parallel: no order between them.
    let mut acme = names(&acme);
    acme.sort();
    assert_eq!(acme, ["open.tool", "secret.tool"]);
    let got = for_ann.wait_for(1, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(names(&for_ann.got()), ["open.tool"], "{got:?}");
}

/// The fan-out benchmark (ignored by default; it prints figures, asserts none): 100
/// subscriptions of one namespace, 10 versions published back to back, so 1,000
/// deliveries to one receiver on loopback sent by 8 delivery workers; the time from each
/// publish request's start to each delivery's receipt, as p50, p95 and max.
///
/// `cargo test -p quiver-server --test api -- --ignored --nocapture webhook_fan_out_bench`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: prints figures"]
async fn webhook_fan_out_bench() {
    const HOOKS: usize = 100;
    const WRITES: usize = 10;
    let app = builder()
        .config(|c| {
            c.webhooks.allow_private = true;
            c.webhooks.workers = 8;
            c.webhooks.poll_interval = Duration::from_millis(20);
        })
        .start()
        .await;
    let rx = Receiver::start(|_| 200).await;
    entry(&app, "bench", "fanned", "public").await;
    for _ in 0..HOOKS {
        subscribe(
            &app,
            ADMIN,
            json!({"url": rx.url, "namespace": "bench", "events": ["version.published"]}),
        )
        .await;
    }
    let started = Instant::now();
    let mut written = std::collections::HashMap::new();
    for i in 0..WRITES {
        let version = format!("1.0.{i}");
        written.insert(version.clone(), Instant::now());
        publish(&app, "bench", "fanned", &version).await;
    }
    let got = rx.wait_for(HOOKS * WRITES, 120).await;
    let total = started.elapsed();
    let mut lat: Vec<Duration> = got
        .iter()
        .map(|g| {
            let b: Value = serde_json::from_slice(&g.body).unwrap();
            g.at - written[b["version"].as_str().unwrap()]
        })
        .collect();
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "webhook fan-out: {} deliveries ({HOOKS} subscriptions x {WRITES} writes), 8 workers, \
         {} backend: write-to-receipt p50 {:?}, p95 {:?}, max {:?}; all received in {:?} \
         ({:.0} deliveries/s)",
        lat.len(),
        app.registry.database().backend(),
        q(0.50),
        q(0.95),
        lat[lat.len() - 1],
        total,
        lat.len() as f64 / total.as_secs_f64()
    );
}

/// The website's pages: the list and its form (CSRF checked, the secret shown once, a
/// private target refused on the page), the delivery log, a ping and a redelivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_website_lists_adds_and_redelivers() {
    use crate::web_account::Browser;
    let app = app(100, 3, 10).await;
    let rx = Receiver::start(|_| 200).await;
    let mut b = Browser::new(&app);
    let a = b.get("/webhooks").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "signed-in only");
    b.sign_in("ann").await;
    let page = b.get("/webhooks").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert_eq!(page.headers["cache-control"], "no-store");
    let csrf = page.csrf();
    let forged = b
        .post("/webhooks", &[("csrf", "0000"), ("url", &rx.url)])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let bad = b
        .post("/webhooks", &[("csrf", &csrf), ("url", "ftp://nowhere/x")])
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.html);
    assert!(bad.html.contains("http or https"), "{}", bad.html);
    let made = b
        .post(
            "/webhooks",
            &[
                ("csrf", &csrf),
                ("url", &rx.url),
                ("event_version_published", "on"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.html);
    assert!(made.html.contains("whsec_"), "the secret, once");
    let host = rx
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap();
    assert!(made.html.contains(host), "{}", made.html);
    let again = b.get("/webhooks").await;
    assert!(!again.html.contains("whsec_"), "never again");

    let ann = app.session("ann").to_string();
    let (_, list) = app.get("/api/v1/webhooks", Some(&ann)).await;
    let id = list[0]["id"].as_i64().unwrap();
    assert_eq!(list[0]["filter"]["events"], json!(["version.published"]));
    let ping = b
        .post(&format!("/webhooks/{id}/test"), &[("csrf", &csrf)])
        .await;
    assert_eq!(ping.status, StatusCode::SEE_OTHER, "{}", ping.html);
    rx.wait_for(1, 10).await;
    let log = log_when(&app, &ann, id, "succeeded", 10).await;
    let first = log["items"][0]["id"].as_i64().unwrap();
    let page = b.get(&format!("/webhooks/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.html.contains("ping") && page.html.contains("succeeded"),
        "{}",
        page.html
    );
    let again = b
        .post(
            &format!("/webhooks/{id}/deliveries/{first}/redeliver"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.html);
    rx.wait_for(2, 10).await;
    // Another user's page of it: not found.
    let mut other = Browser::new(&app);
    other.sign_in("bob").await;
    let theirs = other.get(&format!("/webhooks/{id}")).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    // An id that cannot be one (past i64, not a number): the website's not-found page,
    // not the API's JSON error.
    for bad in ["9223372036854775808", "abc", "0"] {
        let page = b.get(&format!("/webhooks/{bad}")).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{bad}");
        assert!(page.html.contains("<html"), "{bad}: {}", page.html);
    }
}

/// The same path on PostgreSQL: fan-out, a failed attempt, its retry, the log (skips
/// without `QUIVER_TEST_POSTGRES_URL`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_the_log_on_postgres() {
    let Some(b) = builder().postgres() else {
        return;
    };
    let app = b
        .user("ann")
        .config(|c| {
            c.webhooks.allow_private = true;
            c.webhooks.backoff_base = Duration::from_millis(100);
            c.webhooks.poll_interval = Duration::from_millis(20);
        })
        .start()
        .await;
    let rx = Receiver::start(|n| if n == 0 { 500 } else { 200 }).await;
    let ann = app.session("ann").to_string();
    let (id, secret) = subscribe(&app, &ann, json!({"url": rx.url})).await;
    entry(&app, "acme", "pg.hook", "public").await;
    publish(&app, "acme", "pg.hook", "1.0.0").await;
    let got = rx.wait_for(2, 20).await;
    assert!(verifies(&got[1].signature, &secret, &got[1].body));
    let log = log_when(&app, &ann, id, "succeeded", 10).await;
    assert_eq!(log["items"][0]["attempts"], 2, "{log}");
    assert_eq!(log["items"][0]["last_status"], 200, "{log}");
}

/// Deletions reach webhooks: a version's and an entry's, named from their tombstones
/// (the entry is gone by the time the fan-out reads the feed), with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_are_delivered_from_their_tombstones() {
    let app = app(100, 3, 10).await;
    let rx = Receiver::start(|_| 200).await;
    entry(&app, "acme", "seed", "public").await; // the namespace exists
    subscribe(&app, ADMIN, json!({"url": rx.url, "namespace": "acme"})).await;
    entry(&app, "acme", "doomed", "public").await;
    publish(&app, "acme", "doomed", "1.0.0").await;
    publish(&app, "acme", "doomed", "1.1.0").await;
    // (A publish the fan-out reads only after its entry is gone cannot be named any
    // more: wait for both before deleting.)
    rx.wait_for(2, 10).await;
    let path = "/api/v1/entries/tool/acme/doomed";
    let (s, t) = app
        .call(
            reqwest::Method::DELETE,
            &format!("{path}/versions/1.1.0"),
            Some(ADMIN),
            Some(json!({"reason": "a leaked key"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let (s, t) = app
        .call(
            reqwest::Method::DELETE,
            path,
            Some(ADMIN),
            Some(json!({"reason": "a court order"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let got = rx.wait_for(4, 10).await;
    let bodies: Vec<Value> = got
        .iter()
        .map(|g| serde_json::from_slice(&g.body).unwrap())
        .collect();
    let of =
        |event: &str| -> Vec<&Value> { bodies.iter().filter(|b| b["event"] == event).collect() };
    assert_eq!(of("version.published").len(), 2, "{bodies:?}");
    let v = of("version.deleted");
    assert_eq!(v.len(), 1, "{bodies:?}");
    assert_eq!(v[0]["version"], "1.1.0");
    assert_eq!(v[0]["reason"], "a leaked key");
    assert_eq!(v[0]["entry"]["name"], "doomed");
    let e = of("entry.deleted");
    assert_eq!(e.len(), 1, "{bodies:?}");
    assert_eq!(e[0]["reason"], "a court order");
    assert_eq!(e[0]["by_admin"], true);
    assert_eq!(e[0]["entry"]["namespace"], "acme");
    // Each event once, even as the follower goes on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.got().len(), 4, "{:?}", rx.got());
}
