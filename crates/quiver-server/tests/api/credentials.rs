//! The credential throttle over HTTP: password guessing is refused past a burst, per
//! account and client (the owner still gets in from elsewhere), parallel guesses cannot
//! slip past it, the device page is no oracle, sign-in attempts spend no write budget, and
//! failures are audited. (The throttle's store is checked on both backends by
//! `quiver_conformance::throttle`.)

use std::time::Duration;

use quiver_engine::throttle::{CredentialLimits, Rate};
use quiver_server::limits::{Limit, RateLimits, RouteClass};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{assert_envelope, TestApp, PASSWORD};

const ROOT: &str = "root-token-for-credential-tests";

/// Pair burst `pair`, no slow-down (tests stay fast), clients told apart by
/// `X-Forwarded-For`.
fn limits(pair: u32) -> CredentialLimits {
    CredentialLimits {
        pair: Rate {
            burst: pair,
            period: Duration::from_secs(3600),
        },
        slow_after: u32::MAX,
        ..CredentialLimits::default()
    }
}

async fn app(pair: u32, rate: RateLimits) -> TestApp {
    TestApp::builder()
        .admin_token(ROOT)
        .limits(RateLimits {
            trust_forwarded_for: true,
            ..rate
        })
        .config(move |c| c.credentials = limits(pair))
        .user("erin")
        .start()
        .await
}

async fn login_from(
    app: &TestApp,
    from: &str,
    name: &str,
    password: &str,
) -> (StatusCode, Value, Option<String>) {
    let r = app
        .http
        .post(format!("{}/api/v1/session", app.base))
        .header("x-forwarded-for", from)
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap();
    let s = r.status();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (s, r.json().await.unwrap_or(Value::Null), retry)
}

async fn device_form(
    app: &TestApp,
    from: &str,
    code: &str,
    name: &str,
    password: &str,
) -> (StatusCode, String) {
    let r = app
        .http
        .post(format!("{}/device", app.base))
        .header("x-forwarded-for", from)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("user_code", code),
            ("name", name),
            ("password", password),
            ("decision", "approve"),
        ]))
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// `application/x-www-form-urlencoded`, by the URL parser's encoder.
fn form_body(fields: &[(&str, &str)]) -> String {
    reqwest::Url::parse_with_params("http://form/", fields)
        .unwrap()
        .query()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_is_refused_past_a_burst_but_the_owner_gets_in_from_elsewhere() {
    let app = app(3, RateLimits::default()).await;
    for i in 0..3 {
        let (s, b, _) = login_from(&app, "10.0.0.66", "erin", &format!("guess-{i}")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "guess {i}: {b}");
    }
    // The fourth guess is refused before the password is looked at: even the right one.
    let (s, b, retry) = login_from(&app, "10.0.0.66", "erin", PASSWORD).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");
    assert_envelope(&b, "too_many_attempts", None);
    let secs: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((3000..=3600).contains(&secs), "retry after {secs} s");
    // The owner, from their own address, is not locked out.
    let (s, b, _) = login_from(&app, "10.0.0.7", "erin", PASSWORD).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // Nor is another account from the guessing address.
    app.user("faye").await;
    let (s, b, _) = login_from(&app, "10.0.0.66", "faye", PASSWORD).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // Every failure and the refusal are in the audit log.
    let (s, log) = app
        .get("/api/v1/audit?action=session.login&limit=100", Some(ROOT))
        .await;
    assert_eq!(s, StatusCode::OK, "{log}");
    let denied: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "denied")
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert_eq!(
        denied
            .iter()
            .filter(|d| d.contains("wrong user name or password"))
            .count(),
        3,
        "{log}"
    );
    assert!(
        denied
            .iter()
            .any(|d| d.contains("too many failed attempts")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_cannot_slip_past_the_burst() {
    let app = app(4, RateLimits::default()).await;
    let tries: Vec<_> = (0..20)
        .map(|i| {
            let http = app.http.clone();
            let url = format!("{}/api/v1/session", app.base);
            tokio::spawn(async move {
                http.post(url)
                    .header("x-forwarded-for", "10.0.0.66")
                    .json(&json!({"name": "erin", "password": format!("guess-{i}")}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut checked = 0;
    let mut refused = 0;
    for t in tries {
        match t.await.unwrap() {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((checked, refused), (4, 16));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_spraying_many_accounts_is_refused() {
    let app = TestApp::builder()
        .admin_token(ROOT)
        .limits(RateLimits {
            trust_forwarded_for: true,
            ..RateLimits::default()
        })
        .config(|c| {
            c.credentials = CredentialLimits {
                client: Rate {
                    burst: 5,
                    period: Duration::from_secs(3600),
                },
                ..limits(100)
            }
        })
        .start()
        .await;
    for i in 0..5 {
        let (s, b, _) = login_from(&app, "10.0.0.66", &format!("user{i}"), "guess").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    }
    let (s, b, _) = login_from(&app, "10.0.0.66", "user9", "guess").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");
    let (s, b, _) = login_from(&app, "10.0.0.67", "user9", "guess").await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "another client is not refused: {b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_attempts_spend_no_write_budget() {
    let mut rate = RateLimits::default();
    rate.set(RouteClass::Write, Some(Limit::per_hour(2)));
    let app = app(100, rate).await;
    for i in 0..5 {
        let (s, b, _) = login_from(&app, "10.0.0.5", "erin", &format!("guess-{i}")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    }
    let (s, b, _) = login_from(&app, "10.0.0.5", "erin", PASSWORD).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // The client's two writes are still there.
    let token = b["token"].as_str().unwrap().to_string();
    for n in ["a", "b"] {
        let (s, b) = app
            .post(
                "/api/v1/entries",
                Some(&token),
                json!({"kind": "tool", "namespace": "erin", "name": n}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_form_answers_alike_whatever_is_wrong() {
    let app = app(100, RateLimits::default()).await;
    let (s, a) = app.post("/api/v1/device/code", None, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    let code = a["user_code"].as_str().unwrap();
    let unknown = if code.starts_with('B') {
        "CDFG-HJKL"
    } else {
        "BCDF-GHJK"
    };

    let wrong_password = device_form(&app, "10.0.0.1", code, "erin", "not-it").await;
    let wrong_code = device_form(&app, "10.0.0.1", unknown, "erin", PASSWORD).await;
    let wrong_user = device_form(&app, "10.0.0.1", code, "nobody", PASSWORD).await;
    for (what, (s, page)) in [
        ("wrong password", &wrong_password),
        ("right password, unknown code", &wrong_code),
        ("unknown user", &wrong_user),
    ] {
        assert_eq!(*s, StatusCode::UNAUTHORIZED, "{what}: {page}");
        assert!(
            page.contains(quiver_engine::device::DEVICE_FORM_REFUSAL),
            "{what}: {page}"
        );
    }
    // Apart from the code echoed back into the form, the pages are the same.
    assert_eq!(
        wrong_password.1.replace(code, ""),
        wrong_code.1.replace(unknown, ""),
    );
    // And the right everything approves.
    let (s, page) = device_form(&app, "10.0.0.1", code, "erin", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_form_and_the_login_share_one_throttle() {
    let app = app(3, RateLimits::default()).await;
    let (_, a) = app.post("/api/v1/device/code", None, json!({})).await;
    let code = a["user_code"].as_str().unwrap();
    for i in 0..3 {
        let (s, b, _) = login_from(&app, "10.0.0.66", "erin", &format!("guess-{i}")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    }
    let (s, page) = device_form(&app, "10.0.0.66", code, "erin", PASSWORD).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{page}");
    assert!(page.contains("too many failed attempts"), "{page}");
}
