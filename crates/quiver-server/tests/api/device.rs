//! Device-code sign-in (RFC 8628) through the HTTP API: the code request, approval by a
//! signed-in user, the poll's RFC error codes (`authorization_pending`, `slow_down`,
//! `expired_token`, `access_denied`, `invalid_grant`), the token handed out exactly once,
//! what an approving token may grant, the audit rows, and no code or token in the
//! database in clear.

use std::time::Duration;

use quiver_engine::device::DeviceSettings;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ROOT: &str = "root-token-for-device-tests";

use crate::common::{TestApp, PASSWORD};

/// The embedded store with the bootstrap admin `ROOT` and these device-code settings.
fn builder(device: DeviceSettings) -> crate::common::TestAppBuilder {
    TestApp::builder()
        .admin_token(ROOT)
        .config(move |c| c.device = device)
}

async fn start_on(device: DeviceSettings) -> TestApp {
    builder(device).start().await
}

impl TestApp {
    /// A server whose clients must wait `interval` between polls.
    async fn with_interval(secs: u64) -> TestApp {
        start_on(DeviceSettings {
            interval: Duration::from_secs(secs),
            ..Default::default()
        })
        .await
    }

    async fn code(&self, body: Value) -> Value {
        let (s, b) = self.post("/api/v1/device/code", None, body).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    }

    async fn poll(&self, device_code: &str) -> (StatusCode, Value) {
        self.post(
            "/api/v1/device/token",
            None,
            json!({"device_code": device_code,
                   "grant_type": "urn:ietf:params:oauth:grant-type:device_code"}),
        )
        .await
    }

    async fn approve(&self, token: Option<&str>, user_code: &str) -> (StatusCode, Value) {
        self.post(
            "/api/v1/device/approve",
            token,
            json!({"user_code": user_code}),
        )
        .await
    }

    fn database_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for suffix in ["quiver.db", "quiver.db-wal"] {
            if let Ok(b) = std::fs::read(self.dir.path().join(suffix)) {
                bytes.extend_from_slice(&b);
            }
        }
        bytes
    }
}

/// A poll that got no token: 400, the one envelope, the RFC's code.
fn assert_poll_error(status: StatusCode, body: &Value, code: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(body.get("token").is_none(), "{body}");
}

fn is_user_code(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 9
        && b[4] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || b"BCDFGHJKLMNPQRSTVWXZ".contains(c))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_then_the_token_is_handed_out_once() {
    // A long interval, so that two polls in a row are certainly too fast.
    let app = TestApp::with_interval(30).await;
    let alice = app.user("alice").await;

    let a = app
        .code(json!({"client_name": "quiver CLI on laptop"}))
        .await;
    let device_code = a["device_code"].as_str().unwrap().to_string();
    let user_code = a["user_code"].as_str().unwrap().to_string();
    assert!(is_user_code(&user_code), "{a}");
    assert!(device_code.starts_with("qvd_"), "{a}");
    assert_eq!(a["verification_uri"], format!("{}/device", app.base));
    assert_eq!(
        a["verification_uri_complete"],
        format!("{}/device?user_code={user_code}", app.base)
    );
    assert_eq!(a["interval"], 30);
    assert_eq!(a["expires_in"], 600);

    // Nobody approved yet; the second poll comes too soon and the interval grows by 5 s.
    let (s, b) = app.poll(&device_code).await;
    assert_poll_error(s, &b, "authorization_pending");
    let (s, b) = app.poll(&device_code).await;
    assert_poll_error(s, &b, "slow_down");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("35 seconds"),
        "{b}"
    );

    // Approving needs a signed-in account; the code must be one.
    let (s, b) = app.approve(None, &user_code).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, b) = app.approve(Some(ROOT), &user_code).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "the admin token has no account: {b}"
    );
    let (s, b) = app.approve(Some(&alice), "not-a-code").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "user_code");
    let other = if user_code == "BCDF-GHJK" {
        "BCDF-GHJL"
    } else {
        "BCDF-GHJK"
    };
    let (s, b) = app.approve(Some(&alice), other).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "an unknown code: {b}");

    // Typed in lower case without the dash: still the code.
    let typed = user_code.replace('-', "").to_lowercase();
    let (s, b) = app.approve(Some(&alice), &typed).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "approved");
    assert_eq!(b["client_name"], "quiver CLI on laptop");
    assert_eq!(
        b["scopes"],
        json!(["publish-new", "publish-update", "read-private", "yank"])
    );
    // Decided once.
    let (s, _) = app.approve(Some(&alice), &user_code).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The poll after approval gets the token (approval is not subject to the pace).
    let (s, t) = app.poll(&device_code).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let token = t["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("qvr_"), "{t}");
    assert_eq!(t["name"], "device: quiver CLI on laptop");
    assert!(t["expires_at"].is_string(), "device tokens expire: {t}");
    // It is alice's, with the scopes asked for.
    let (s, me) = app.get("/api/v1/user", Some(&token)).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["name"], "alice");
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(&token),
            json!({"kind": "tool", "namespace": "alice", "name": "text.fromDevice",
                   "description": "created with a token from the device flow"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // Only once: the same device code now gets nothing.
    let (s, b) = app.poll(&device_code).await;
    assert_poll_error(s, &b, "invalid_grant");
    let (s, b) = app.poll(&device_code).await;
    assert_poll_error(s, &b, "invalid_grant");

    // The token is among alice's, and revocable like any other.
    let (s, list) = app.get("/api/v1/tokens", Some(&alice)).await;
    assert_eq!(s, StatusCode::OK);
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "device: quiver CLI on laptop")
        .map(|t| t["id"].as_i64().unwrap())
        .expect("the device token is listed");
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.get("/api/v1/user", Some(&token)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // The audit log has the approval (with what was granted) and the token's creation.
    let (s, log) = app.get("/api/v1/audit?limit=100", Some(ROOT)).await;
    assert_eq!(s, StatusCode::OK, "{log}");
    let rows = log["items"].as_array().unwrap();
    let approval = rows
        .iter()
        .find(|r| r["action"] == "device.approve")
        .unwrap_or_else(|| panic!("no device.approve row: {log}"));
    assert_eq!(approval["outcome"], "allowed");
    assert!(
        approval["actor"]
            .as_str()
            .unwrap()
            .starts_with("alice (token "),
        "approved with alice's session: {approval}"
    );
    assert_eq!(approval["diff"]["status"]["after"], "approved");
    assert_eq!(
        approval["diff"]["client_name"]["after"],
        "quiver CLI on laptop"
    );
    assert!(
        rows.iter().any(|r| r["action"] == "token.create"
            && r["actor"] == "alice"
            && r["target"] == format!("token {id}")
            && r["reason"] == "device sign-in"),
        "{log}"
    );

    // Neither code nor the token is in the database in clear; the device code's hash is.
    let bytes = app.database_bytes();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(contains(
        quiver_engine::auth::device::code_hash(&device_code).as_bytes()
    ));
    for (what, secret) in [
        ("device code", device_code.clone()),
        ("device code body", device_code[4..].to_string()),
        ("user code", user_code.clone()),
        ("user code", user_code.replace('-', "")),
        ("token", token.clone()),
        ("token body", token[4..].to_string()),
    ] {
        assert!(
            !contains(secret.as_bytes()),
            "the {what} is in the database in clear"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_requests_answer_access_denied() {
    let app = TestApp::with_interval(1).await;
    let bob = app.user("bob").await;
    let a = app.code(json!({})).await;
    let device_code = a["device_code"].as_str().unwrap();
    let (s, b) = app
        .post(
            "/api/v1/device/approve",
            Some(&bob),
            json!({"user_code": a["user_code"], "deny": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "denied");
    for _ in 0..2 {
        let (s, b) = app.poll(device_code).await;
        assert_poll_error(s, &b, "access_denied");
    }
    // A denied request cannot be approved after all.
    let (s, _) = app
        .approve(Some(&bob), a["user_code"].as_str().unwrap())
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, log) = app
        .get("/api/v1/audit?action=device.deny", Some(ROOT))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(log["items"].as_array().unwrap().len(), 1, "{log}");
    assert_eq!(log["items"][0]["actor"], format!("bob (token {})", 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_codes_answer_expired_token_and_cannot_be_approved() {
    let app = start_on(DeviceSettings {
        lifetime: Duration::from_secs(1),
        interval: Duration::from_secs(1),
        verification_uri: Some("https://registry.invalid/activate".into()),
    })
    .await;
    let carol = app.user("carol").await;
    let a = app.code(json!({"client_name": "slow"})).await;
    assert_eq!(a["expires_in"], 1);
    // The configured page, not the server's own address.
    assert_eq!(a["verification_uri"], "https://registry.invalid/activate");
    // Wait past the lifetime (a lower bound: a slow machine only waits longer).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (s, b) = app.poll(a["device_code"].as_str().unwrap()).await;
    assert_poll_error(s, &b, "expired_token");
    let (s, b) = app
        .approve(Some(&carol), a["user_code"].as_str().unwrap())
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, b) = app.poll(a["device_code"].as_str().unwrap()).await;
    assert_poll_error(s, &b, "expired_token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approving_token_grants_no_more_than_it_has() {
    let app = TestApp::with_interval(1).await;
    let dana = app.user("dana").await;
    let (s, b) = app
        .post(
            "/api/v1/tokens",
            Some(&dana),
            json!({"name": "yank only", "scopes": ["yank"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let yank_only = b["token"].as_str().unwrap().to_string();
    let (s, b) = app
        .post(
            "/api/v1/tokens",
            Some(&dana),
            json!({"name": "patterned", "scopes": ["admin"], "pattern": "text.*"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let patterned = b["token"].as_str().unwrap().to_string();

    // The device asks for publish-new: a yank-only token cannot approve that.
    let a = app
        .code(json!({"client_name": "ci box", "scopes": ["publish-new"]}))
        .await;
    let user_code = a["user_code"].as_str().unwrap();
    let (s, b) = app.approve(Some(&yank_only), user_code).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("publish-new"));
    let (s, b) = app.approve(Some(&patterned), user_code).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // Still pending after the refusals, and the refusals are audited.
    let (s, b) = app.poll(a["device_code"].as_str().unwrap()).await;
    assert_poll_error(s, &b, "authorization_pending");
    let (s, log) = app
        .get(
            "/api/v1/audit?action=device.approve&outcome=denied",
            Some(ROOT),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(log["items"].as_array().unwrap().len(), 2, "{log}");

    // The session (every scope) approves; the token has exactly the scope asked for.
    let (s, _) = app.approve(Some(&dana), user_code).await;
    assert_eq!(s, StatusCode::OK);
    let (s, t) = app.poll(a["device_code"].as_str().unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["scopes"], json!(["publish-new"]));
    let token = t["token"].as_str().unwrap();
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(token),
            json!({"kind": "tool", "namespace": "dana", "name": "text.ok",
                   "description": "publish-new creates entries"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = app
        .post(
            "/api/v1/tokens",
            Some(token),
            json!({"name": "wider", "scopes": ["yank"]}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no more than publish-new: {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_unknown_codes() {
    let app = TestApp::with_interval(1).await;
    let (s, b) = app.poll("qvd_nothing").await;
    assert_poll_error(s, &b, "invalid_grant");
    let fake = format!("qvd_{}", "A".repeat(43));
    let (s, b) = app.poll(&fake).await;
    assert_poll_error(s, &b, "invalid_grant");
    let (s, b) = app
        .post(
            "/api/v1/device/token",
            None,
            json!({"device_code": fake, "grant_type": "password"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "grant_type");
    let (s, b) = app
        .post("/api/v1/device/code", None, json!({"scopes": []}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "scopes");
    let (s, b) = app
        .post(
            "/api/v1/device/code",
            None,
            json!({"scopes": ["everything"]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, b) = app
        .post("/api/v1/device/code", None, json!({"client_name": ""}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "client_name");
    // Two requests get different codes.
    let a = app.code(json!({})).await;
    let b = app.code(json!({})).await;
    assert_ne!(a["device_code"], b["device_code"]);
    assert_ne!(a["user_code"], b["user_code"]);
}

/// A form post to the verification page (values here need no escaping but spaces).
async fn submit(app: &TestApp, fields: &[(&str, &str)]) -> (StatusCode, String) {
    let body = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace(' ', "+")))
        .collect::<Vec<_>>()
        .join("&");
    let r = app
        .http
        .post(format!("{}/device", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verification_page_approves_with_a_password() {
    let app = TestApp::with_interval(1).await;
    app.user("erin").await;
    let a = app.code(json!({"client_name": "build <box>"})).await;
    let user_code = a["user_code"].as_str().unwrap();

    // verification_uri_complete opens the form with the code filled in.
    let r = app
        .http
        .get(a["verification_uri_complete"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/html")));
    let page = r.text().await.unwrap();
    assert!(page.contains(&format!("value=\"{user_code}\"")), "{page}");
    // Whatever is in the query is escaped, never markup.
    let r = app
        .http
        .get(format!(
            "{}/device?user_code=%22%3E%3Cscript%3Ex%3C/script%3E",
            app.base
        ))
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains("&quot;&gt;&lt;script&gt;"), "{page}");

    // A wrong password approves nothing.
    let (s, page) = submit(
        &app,
        &[
            ("user_code", user_code),
            ("name", "erin"),
            ("password", "not the password"),
            ("decision", "approve"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{page}");
    assert!(
        page.contains(quiver_engine::device::DEVICE_FORM_REFUSAL),
        "{page}"
    );
    let (s, b) = app.poll(a["device_code"].as_str().unwrap()).await;
    assert_poll_error(s, &b, "authorization_pending");

    // The right one does; the client's name is shown escaped.
    let (s, page) = submit(
        &app,
        &[
            ("user_code", user_code),
            ("name", "erin"),
            ("password", PASSWORD),
            ("decision", "approve"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("Approved"), "{page}");
    assert!(page.contains("build &lt;box&gt;"), "{page}");
    let (s, t) = app.poll(a["device_code"].as_str().unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let (s, me) = app.get("/api/v1/user", t["token"].as_str()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["name"], "erin");

    // A used code is refused on the page too, as any other wrong code.
    let (s, page) = submit(
        &app,
        &[
            ("user_code", user_code),
            ("name", "erin"),
            ("password", PASSWORD),
            ("decision", "deny"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{page}");
}

/// The whole flow over PostgreSQL: pending, slow_down, approve, the token once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_on_postgres() {
    let Some(b) = builder(DeviceSettings {
        interval: Duration::from_secs(30),
        ..Default::default()
    })
    .postgres() else {
        return;
    };
    let app = b.start().await;
    let gail = app.user("gail").await;
    let a = app.code(json!({"client_name": "pg box"})).await;
    let device_code = a["device_code"].as_str().unwrap();
    let (s, b) = app.poll(device_code).await;
    assert_poll_error(s, &b, "authorization_pending");
    let (s, b) = app.poll(device_code).await;
    assert_poll_error(s, &b, "slow_down");
    let (s, b) = app
        .approve(Some(&gail), a["user_code"].as_str().unwrap())
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Two polls at once: one token.
    let (p1, p2) = tokio::join!(app.poll(device_code), app.poll(device_code));
    let tokens: Vec<&Value> = [&p1, &p2]
        .into_iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(tokens.len(), 1, "{p1:?} {p2:?}");
    let other = if p1.0 == StatusCode::OK { &p2 } else { &p1 };
    assert_poll_error(other.0, &other.1, "invalid_grant");
    let (s, me) = app.get("/api/v1/user", tokens[0]["token"].as_str()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["name"], "gail");
}
