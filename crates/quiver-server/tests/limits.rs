//! Rate limits through the HTTP API: 429 with `Retry-After` and the error envelope once a
//! client is over its class's limit, other addresses, tokens, users, classes and entries
//! unaffected, the window resetting, and (with PostgreSQL) two servers sharing the count.
//!
//! Clients with different addresses connect from 127.0.0.1 and 127.0.0.2 (both loopback).
//! Limits that must not reset during a test use day-long windows.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use quiver_engine::{EngineConfig, Registry};
use quiver_postgres::testing::{test_url, TestSchema};
use quiver_server::limits::{Limit, RateLimits, RouteClass};
use quiver_server::AppState;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ROOT: &str = "root-token-for-limit-tests";
const PASSWORD: &str = "correct horse battery staple";

/// A server with `limits` over `registry`.
async fn serve(registry: Arc<Registry>, limits: RateLimits) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState {
        registry,
        admin_token: Some(ROOT.to_string()),
    };
    tokio::spawn(async move {
        quiver_server::serve_with(listener, state, limits, std::future::pending())
            .await
            .unwrap();
    });
    base
}

/// A fresh SQLite registry (kept alive by the returned directory).
async fn sqlite_registry() -> (Arc<Registry>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.open_writes = false;
    config.poll_interval = Duration::from_millis(50);
    let db = quiver_backends::open(quiver_backends::Location::in_data_dir(dir.path()), None)
        .await
        .unwrap();
    (Registry::open(db, config).await.unwrap(), dir)
}

/// Only the given classes limited.
fn only(pairs: &[(RouteClass, Limit)]) -> RateLimits {
    let mut l = RateLimits::off();
    for (c, limit) in pairs {
        l.set(*c, Some(*limit));
    }
    l
}

/// An HTTP client whose connections come from `127.0.0.<last>`.
fn client_from(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .build()
        .unwrap()
}

struct Answer {
    status: StatusCode,
    body: Value,
    retry_after: Option<u64>,
    remaining: Option<u64>,
}

async fn call(
    http: &reqwest::Client,
    method: Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut rb = http.request(method, url);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let num = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap())
    };
    let (retry_after, remaining) = (num("retry-after"), num("ratelimit-remaining"));
    let status = r.status();
    Answer {
        status,
        body: r.json().await.unwrap_or(Value::Null),
        retry_after,
        remaining,
    }
}

async fn get(http: &reqwest::Client, base: &str, path: &str, token: Option<&str>) -> Answer {
    call(http, Method::GET, format!("{base}{path}"), token, None).await
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Answer {
    call(
        http,
        Method::POST,
        format!("{base}{path}"),
        token,
        Some(body),
    )
    .await
}

/// A 429 in the envelope, with a `Retry-After` of at most the window.
fn assert_limited(a: &Answer, window: Duration) {
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "rate_limited", "{}", a.body);
    assert!(a.body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    let retry = a.retry_after.expect("a 429 carries Retry-After");
    assert!(
        (1..=window.as_secs()).contains(&retry),
        "Retry-After {retry} outside 1..={}",
        window.as_secs()
    );
    assert_eq!(a.remaining, Some(0));
}

/// Register `name` (from `http`) and sign in: a session token.
async fn user(http: &reqwest::Client, base: &str, name: &str) -> String {
    let a = post(
        http,
        base,
        "/api/v1/users",
        None,
        json!({"name": name, "email": format!("{name}@example.org"), "password": PASSWORD}),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::CREATED,
        "registering {name}: {}",
        a.body
    );
    login(http, base, name).await
}

async fn login(http: &reqwest::Client, base: &str, name: &str) -> String {
    let a = post(
        http,
        base,
        "/api/v1/session",
        None,
        json!({"name": name, "password": PASSWORD}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "login {name}: {}", a.body);
    a.body["token"].as_str().unwrap().to_string()
}

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_over_its_limit_gets_429_and_others_do_not() {
    let (registry, _dir) = sqlite_registry().await;
    let base = serve(
        registry,
        only(&[
            (RouteClass::Read, Limit::per_day(3)),
            (RouteClass::Search, Limit::per_day(5)),
        ]),
    )
    .await;
    let a = client_from(1);
    let b = client_from(2);

    for left in [2, 1, 0] {
        let r = get(&a, &base, "/api/v1/entries", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.remaining, Some(left));
        assert_eq!(r.retry_after, None);
    }
    let r = get(&a, &base, "/api/v1/entries", None).await;
    assert_limited(&r, DAY);
    // Still limited: the refused request does not open a new window.
    assert_limited(&get(&a, &base, "/api/v1/kinds", None).await, DAY);

    // Another address has its own count.
    let r = get(&b, &base, "/api/v1/entries", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.remaining, Some(2));
    // The same address with a token counts as the token.
    let r = get(&a, &base, "/api/v1/entries", Some(ROOT)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.remaining, Some(2));
    // Another class of the limited address has its own count.
    let r = get(&a, &base, "/api/v1/search?q=csv", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.remaining, Some(4));
    // Health is never limited.
    let r = get(&a, &base, "/healthz", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.remaining, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_limit_gets_429_and_other_tokens_do_not() {
    let (registry, _dir) = sqlite_registry().await;
    let base = serve(registry, only(&[(RouteClass::Read, Limit::per_day(2))])).await;
    let http = client_from(1);
    let ana = user(&http, &base, "ana").await;
    let bob = user(&http, &base, "bob").await;

    for _ in 0..2 {
        let r = get(&http, &base, "/api/v1/user", Some(&ana)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_limited(&get(&http, &base, "/api/v1/user", Some(&ana)).await, DAY);
    // Another token, the admin token and the address without a token are unaffected.
    let r = get(&http, &base, "/api/v1/user", Some(&bob)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["name"], "bob");
    let r = get(&http, &base, "/api/v1/entries", Some(ROOT)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = get(&http, &base, "/api/v1/entries", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.remaining, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_resets() {
    let (registry, _dir) = sqlite_registry().await;
    let window = Duration::from_secs(2);
    let base = serve(registry, only(&[(RouteClass::Read, Limit::new(1, window))])).await;
    let http = client_from(1);
    // One request per window: at the latest the second in the same window is refused (a
    // window may end between two requests, so allow a few tries to see a refusal).
    let mut refused = None;
    for _ in 0..10 {
        let r = get(&http, &base, "/api/v1/kinds", None).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let refused = refused.expect("a second request within the window is refused");
    assert_limited(&refused, window);
    // Retry-After is rounded up, so after waiting it the window has ended.
    tokio::time::sleep(Duration::from_secs(refused.retry_after.unwrap())).await;
    let r = get(&http, &base, "/api/v1/kinds", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.remaining, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_count_per_user_across_their_tokens() {
    let (registry, _dir) = sqlite_registry().await;
    let base = serve(
        registry,
        only(&[(RouteClass::Registration, Limit::per_day(2))]),
    )
    .await;
    let a = client_from(1);
    let b = client_from(2);
    // Account registrations count per address: ana uses one of 127.0.0.1's two.
    let ana = user(&a, &base, "ana").await;
    let ana2 = login(&a, &base, "ana").await;
    let bob = user(&b, &base, "bob").await;

    for (token, ns) in [(&ana, "ana-one"), (&ana2, "ana-two")] {
        let r = post(
            &a,
            &base,
            "/api/v1/namespaces",
            Some(token),
            json!({"name": ns}),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    // Her third, through either token, is refused: the count is the user's.
    for token in [&ana, &ana2] {
        let r = post(
            &a,
            &base,
            "/api/v1/namespaces",
            Some(token),
            json!({"name": "ana-three"}),
        )
        .await;
        assert_limited(&r, DAY);
    }
    // Another user is unaffected, from either address.
    let r = post(
        &a,
        &base,
        "/api/v1/namespaces",
        Some(&bob),
        json!({"name": "bob-one"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Other classes of hers are unaffected.
    let r = get(&a, &base, "/api/v1/user", Some(&ana)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Anonymous account registrations from 127.0.0.1: one left, then refused.
    let _ = user(&a, &base, "cat").await;
    let r = post(
        &a,
        &base,
        "/api/v1/users",
        None,
        json!({"name": "dan", "email": "dan@example.org", "password": PASSWORD}),
    )
    .await;
    assert_limited(&r, DAY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_count_per_entry() {
    let (registry, _dir) = sqlite_registry().await;
    let base = serve(registry, only(&[(RouteClass::Download, Limit::per_day(2))])).await;
    let http = client_from(1);
    let manifest = json!({
        "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
        "output_schema": {"type": "object"}
    });
    for name in ["text.one", "text.two"] {
        let r = post(
            &http,
            &base,
            "/api/v1/entries",
            Some(ROOT),
            json!({"kind": "tool", "namespace": "acme", "name": name,
                   "description": "a tool that is here to be downloaded", "category": "text"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let r = post(
            &http,
            &base,
            &format!("/api/v1/entries/tool/acme/{name}/versions"),
            Some(ROOT),
            json!({"version": "1.0.0", "manifest": manifest}),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let one = "/api/v1/entries/tool/acme/text.one/versions/1.0.0";
    for _ in 0..2 {
        let r = get(&http, &base, one, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_limited(&get(&http, &base, one, None).await, DAY);
    // Another entry, and reads of the same entry that are not downloads, are unaffected.
    let r = get(
        &http,
        &base,
        "/api/v1/entries/tool/acme/text.two/versions/1.0.0",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = get(&http, &base, "/api/v1/entries/tool/acme/text.one", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Another client downloads the same entry.
    let r = get(&client_from(2), &base, one, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_counts_only_when_trusted() {
    let limit = Limit::per_day(1);
    let http = client_from(1);
    let forwarded = |ip: &'static str| {
        let http = http.clone();
        move |base: String| async move {
            let r = http
                .get(format!("{base}/api/v1/kinds"))
                .header("x-forwarded-for", format!("203.0.113.9, {ip}"))
                .send()
                .await
                .unwrap();
            r.status()
        }
    };
    // Untrusted: the header is ignored, both requests count against 127.0.0.1.
    let (registry, _dir) = sqlite_registry().await;
    let base = serve(registry, only(&[(RouteClass::Read, limit)])).await;
    assert_eq!(
        forwarded("198.51.100.1")(base.clone()).await,
        StatusCode::OK
    );
    assert_eq!(
        forwarded("198.51.100.2")(base.clone()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Trusted: the last forwarded address counts.
    let (registry, _dir2) = sqlite_registry().await;
    let mut limits = only(&[(RouteClass::Read, limit)]);
    limits.trust_forwarded_for = true;
    let base = serve(registry, limits).await;
    assert_eq!(
        forwarded("198.51.100.1")(base.clone()).await,
        StatusCode::OK
    );
    assert_eq!(
        forwarded("198.51.100.2")(base.clone()).await,
        StatusCode::OK
    );
    assert_eq!(
        forwarded("198.51.100.1")(base.clone()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_over_postgresql_share_the_count() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let limits = only(&[(RouteClass::Read, Limit::per_day(3))]);
    let mut bases = vec![];
    let mut dirs = vec![];
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EngineConfig::new(dir.path());
        config.open_writes = false;
        let db = schema.database().await.unwrap();
        let registry = Registry::open(db, config).await.unwrap();
        bases.push(serve(registry, limits.clone()).await);
        dirs.push(dir);
    }
    let a = client_from(1);
    let b = client_from(2);
    // Two reads on the first server, one on the second: the address's three.
    for base in [&bases[0], &bases[0], &bases[1]] {
        let r = get(&a, base, "/api/v1/entries", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_eq!(
        get(&a, &bases[1], "/api/v1/entries", None).await.remaining,
        Some(0),
        "the second server counts after the first one's hits"
    );
    for base in &bases {
        assert_limited(&get(&a, base, "/api/v1/entries", None).await, DAY);
    }
    // Another address is unaffected on both.
    for base in &bases {
        let r = get(&b, base, "/api/v1/entries", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    // The shared counters hold no address in clear.
    let store = schema.store().await.unwrap();
    let c = store.client().await.unwrap();
    let rows = c
        .query("SELECT subject, class, hits FROM rate_limits", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "one row per address and class");
    for r in &rows {
        let subject: String = r.get(0);
        assert!(!subject.contains("127.0.0"), "{subject}");
        assert_eq!(r.get::<_, String>(1), "read");
    }
}
