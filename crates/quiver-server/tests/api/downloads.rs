//! Content and downloads through the API: a module published with its content (hashed by
//! quiver; a declared hash that disagrees refused, nothing written), downloaded with its
//! hash as ETag and immutable caching; downloads and resolutions counted once per client,
//! entry, version and hour; statistics per entry, namespace and client program; private
//! entries' statistics hidden; popularity refreshed from downloads.

use quiver_server::limits::RateLimits;
use reqwest::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH, USER_AGENT};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::{assert_envelope, TestApp};

const ADMIN: &str = "admin-secret";
const TEXT: &str = "/var @greeting = \"hello\"\n/export { greeting }\n";

fn sha(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

async fn app() -> TestApp {
    let mut limits = RateLimits::off();
    // Clients are told apart by X-Forwarded-For here (all tests come from 127.0.0.1).
    limits.trust_forwarded_for = true;
    TestApp::builder()
        .admin_token(ADMIN)
        .limits(limits)
        .start()
        .await
}

async fn entry(app: &TestApp, name: &str, visibility: &str) {
    let (s, e) = app
        .post(
            "/api/v1/entries",
            Some(ADMIN),
            json!({"kind": "module", "namespace": "alice", "name": name,
                   "visibility": visibility, "description": "greetings"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
}

async fn publish(app: &TestApp, name: &str, version: &str, body: Value) -> (StatusCode, Value) {
    let mut body = body;
    body["version"] = json!(version);
    app.post(
        &format!("/api/v1/entries/module/alice/{name}/versions"),
        Some(ADMIN),
        body,
    )
    .await
}

async fn download(app: &TestApp, name: &str, version: &str, client: &str) -> reqwest::Response {
    app.http
        .get(app.url(&format!(
            "/api/v1/entries/module/alice/{name}/versions/{version}/content"
        )))
        .header("x-forwarded-for", client)
        .header(USER_AGENT, "quiver/0.9.3 (test)")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn content_is_hashed_stored_and_served_immutable() {
    let app = app().await;
    entry(&app, "greet", "public").await;
    let h = sha(TEXT.as_bytes());

    // A declared hash that disagrees: 422 naming the field, and no version written.
    let (s, e) = publish(
        &app,
        "greet",
        "1.0.0",
        json!({"content": TEXT, "manifest": {"source": {"content_hash": format!("sha256:{}", "0".repeat(64))}}}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_envelope(&e, "invalid_input", Some("manifest.source.content_hash"));
    let (s, _) = app
        .get("/api/v1/entries/module/alice/greet/versions/1.0.0", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // content and content_base64 together, or bad base64: refused.
    let (s, e) = publish(
        &app,
        "greet",
        "1.0.0",
        json!({"content": "a", "content_base64": "YQ=="}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (s, e) = publish(&app, "greet", "1.0.0", json!({"content_base64": "%%%"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_envelope(&e, "invalid_input", Some("content_base64"));
    // Anonymous: refused before anything is stored.
    let (s, _) = app
        .post(
            "/api/v1/entries/module/alice/greet/versions",
            None,
            json!({"version": "1.0.0", "content": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // The right hash declared (without prefix, upper case) or none: accepted, recorded.
    let (s, v) = publish(
        &app,
        "greet",
        "1.0.0",
        json!({"content": TEXT, "manifest": {"source": {"type": "inline", "content_hash": h.to_uppercase()}}}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["manifest"]["source"]["content_hash"],
        json!(format!("sha256:{h}"))
    );
    assert_eq!(v["manifest"]["source"]["type"], json!("inline"));
    let bin: Vec<u8> = (0..=255u8).collect();
    use base64::Engine as _;
    let (s, v) = publish(
        &app,
        "greet",
        "1.1.0",
        json!({"content_base64": base64::engine::general_purpose::STANDARD.encode(&bin)}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["manifest"]["source"]["content_hash"],
        json!(format!("sha256:{}", sha(&bin)))
    );

    // Download: the bytes, the hash as a strong ETag, cached for good.
    let r = download(&app, "greet", "1.0.0", "10.0.0.1").await;
    assert_eq!(r.status(), StatusCode::OK);
    let etag = r.headers()[ETAG].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"sha256:{h}\""));
    let cache = r.headers()[CACHE_CONTROL].to_str().unwrap().to_string();
    assert!(
        cache.contains("immutable") && cache.contains("max-age=31536000"),
        "{cache}"
    );
    assert_eq!(
        r.headers()["x-content-sha256"],
        format!("sha256:{h}").as_str()
    );
    assert_eq!(r.bytes().await.unwrap(), TEXT.as_bytes());
    let r = download(&app, "greet", "1.1.0", "10.0.0.1").await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), bin);
    let r = app
        .http
        .get(app.url("/api/v1/entries/module/alice/greet/versions/1.0.0/content"))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);

    // Resolution gives the same hash.
    let (s, r) = app
        .get("/api/v1/resolve/module/alice/greet?range=1.0.0", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["content_hash"], json!(format!("sha256:{h}")));

    // A version without content, a missing version, a private entry: 404.
    entry(&app, "plain", "public").await;
    let (s, _) = publish(&app, "plain", "1.0.0", json!({})).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        download(&app, "plain", "1.0.0", "10.0.0.1").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        download(&app, "greet", "9.0.0", "10.0.0.1").await.status(),
        StatusCode::NOT_FOUND
    );
    entry(&app, "secret", "private").await;
    let (s, _) = publish(&app, "secret", "1.0.0", json!({"content": "hidden"})).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        download(&app, "secret", "1.0.0", "10.0.0.1").await.status(),
        StatusCode::NOT_FOUND
    );
    let r = app
        .http
        .get(app.url("/api/v1/entries/module/alice/secret/versions/1.0.0/content"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), "hidden".as_bytes());
}

#[tokio::test]
async fn a_client_counts_once_an_hour_and_stats_add_up() {
    let app = app().await;
    entry(&app, "greet", "public").await;
    for v in ["1.0.0", "1.1.0"] {
        let (s, e) = publish(&app, "greet", v, json!({"content": format!("{TEXT}{v}")})).await;
        assert_eq!(s, StatusCode::CREATED, "{e}");
    }
    // 1,000 downloads from 10 clients count as 10.
    for i in 0..1000 {
        let client = format!("10.0.0.{}", i % 10);
        let r = download(&app, "greet", "1.0.0", &client).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    // Resolutions count as downloads of what they chose; 3 clients, twice each.
    for i in 0..6 {
        let r = app
            .http
            .get(app.url("/api/v1/resolve/module/alice/greet?range=^1"))
            .header("x-forwarded-for", format!("10.0.1.{}", i % 3))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = app
        .http
        .post(app.url("/api/v1/resolve"))
        .header("x-forwarded-for", "10.0.2.1")
        .json(&json!({"references": [
            {"kind": "module", "namespace": "alice", "name": "greet", "range": "1.0.0"},
            {"kind": "module", "namespace": "alice", "name": "nope"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let counted = app.registry.flush_downloads().await.unwrap();
    assert_eq!(counted, 10 + 3 + 1);
    // Nothing buffered is counted twice.
    assert_eq!(app.registry.flush_downloads().await.unwrap(), 0);

    let (s, st) = app
        .get("/api/v1/entries/module/alice/greet/stats", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{st}");
    assert_eq!(st["total"], json!(14));
    assert_eq!(st["last_7_days"], json!(14));
    assert_eq!(st["last_30_days"], json!(14));
    let daily = st["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 30);
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    assert_eq!(daily[29], json!({"date": today, "count": 14}));
    assert_eq!(st["to"], json!(today));
    assert_eq!(
        st["versions"],
        json!([{"version": "1.0.0", "total": 11, "in_window": 11},
               {"version": "1.1.0", "total": 3, "in_window": 3}])
    );
    // A window of one past day: nothing in it, the totals unchanged.
    let (s, st) = app
        .get(
            "/api/v1/entries/module/alice/greet/stats?from=2026-01-01&to=2026-01-02",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{st}");
    assert_eq!(
        st["daily"],
        json!([{"date": "2026-01-01", "count": 0}, {"date": "2026-01-02", "count": 0}])
    );
    assert_eq!(st["total"], json!(14));
    let (s, e) = app
        .get(
            "/api/v1/entries/module/alice/greet/stats?from=2026-13-01",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_envelope(&e, "invalid_input", Some("from"));
    let (s, e) = app
        .get(
            "/api/v1/entries/module/alice/greet/stats?from=2024-01-01&to=2026-01-01",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");

    // A private entry's downloads: its stats hidden, and left out of its namespace's.
    entry(&app, "secret", "private").await;
    let (s, _) = publish(&app, "secret", "1.0.0", json!({"content": "hidden"})).await;
    assert_eq!(s, StatusCode::CREATED);
    let r = app
        .http
        .get(app.url("/api/v1/entries/module/alice/secret/versions/1.0.0/content"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    app.registry.flush_downloads().await.unwrap();
    let (s, _) = app
        .get("/api/v1/entries/module/alice/secret/stats", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, ns) = app.get("/api/v1/namespaces/alice/stats", None).await;
    assert_eq!(s, StatusCode::OK, "{ns}");
    assert_eq!(ns["total"], json!(14));
    assert_eq!(ns["entries"].as_array().unwrap().len(), 1);
    let (_, ns) = app.get("/api/v1/namespaces/alice/stats", Some(ADMIN)).await;
    assert_eq!(ns["total"], json!(15));
    let (s, _) = app.get("/api/v1/namespaces/nobody/stats", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Client programs in aggregate, for admins only.
    let (s, _) = app.get("/api/v1/stats/agents", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, ag) = app.get("/api/v1/stats/agents", Some(ADMIN)).await;
    assert_eq!(s, StatusCode::OK, "{ag}");
    let quiver = ag["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent"] == json!("quiver/0.9"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(quiver["count"], json!(1000), "{ag}");
}

#[tokio::test]
async fn popularity_follows_downloads_over_its_prior() {
    let app = app().await;
    entry(&app, "greet", "public").await;
    let (s, _) = publish(&app, "greet", "1.0.0", json!({"content": TEXT})).await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, e) = app.get("/api/v1/entries/module/alice/greet", None).await;
    let before = e["popularity"]["score"].as_f64().unwrap_or(0.0);
    assert_eq!(
        app.registry.refresh_popularity().await.unwrap(),
        0,
        "no downloads, no change"
    );
    for i in 0..50 {
        download(&app, "greet", "1.0.0", &format!("10.1.0.{i}")).await;
    }
    app.registry.flush_downloads().await.unwrap();
    assert_eq!(app.registry.refresh_popularity().await.unwrap(), 1);
    let (_, e) = app.get("/api/v1/entries/module/alice/greet", None).await;
    let after = e["popularity"]["score"].as_f64().unwrap();
    assert!(after > before, "{before} -> {after}");
    // A second refresh with the same downloads does not compound.
    assert_eq!(app.registry.refresh_popularity().await.unwrap(), 0);
    let (_, e) = app.get("/api/v1/entries/module/alice/greet", None).await;
    assert_eq!(e["popularity"]["score"].as_f64().unwrap(), after);
}

/// The website: a downloads chart on an entry with downloads (none without), the
/// install line of a module with content, and the most downloaded on the home page
/// (private entries left out for others).
#[tokio::test]
async fn pages_show_downloads() {
    let app = app().await;
    entry(&app, "greet", "public").await;
    entry(&app, "quiet", "public").await;
    entry(&app, "secret", "private").await;
    for name in ["greet", "quiet", "secret"] {
        let (s, e) = publish(
            &app,
            name,
            "1.0.0",
            json!({"content": format!("{TEXT}{name}")}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{e}");
    }
    for i in 0..7 {
        download(&app, "greet", "1.0.0", &format!("10.2.0.{i}")).await;
    }
    let r = app
        .http
        .get(app.url("/api/v1/entries/module/alice/secret/versions/1.0.0/content"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    app.registry.flush_downloads().await.unwrap();

    let html = |path: &'static str| {
        let app = &app;
        async move {
            let r = app.http.get(app.url(path)).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            r.text().await.unwrap()
        }
    };
    let page = html("/module/alice/greet").await;
    assert!(page.contains("id=\"downloads\""), "{page}");
    assert!(page.contains("7 in the last 30 days"), "{page}");
    assert!(page.contains("<rect class=\"day\""), "{page}");
    assert!(page.contains(": 7</title>"), "{page}");
    assert!(
        page.contains("quiver install module alice&#x2f;greet"),
        "{page}"
    );
    let page = html("/module/alice/quiet").await;
    assert!(
        !page.contains("id=\"downloads\""),
        "no chart without downloads"
    );
    let home = html("/").await;
    assert!(home.contains("Most downloaded here"), "{home}");
    assert!(
        home.contains("alice/greet</a> <span class=\"n\">7</span>"),
        "{home}"
    );
    assert!(
        !home.contains("alice/secret"),
        "a private entry is left out: {home}"
    );
}
