//! Sign-in through an outside OAuth2/OIDC provider, against a fake provider on loopback
//! (a small axum server in this test): the redirect with state and PKCE, the browser's
//! trip through the provider, the code exchange (client secret and PKCE verifier checked
//! by the fake), userinfo, linking the subject to one user, and every way it must fail.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use quiver_engine::oidc::OidcConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::TestApp;

const CLIENT_ID: &str = "quiver-test-client";
const CLIENT_SECRET: &str = "quiver-test-secret";
const ROOT: &str = "root-token-for-oidc-tests";

/// What the fake provider remembers.
#[derive(Default)]
struct Fake {
    /// The profile the next person to "sign in at the provider" has.
    next_profile: Value,
    /// code → (PKCE challenge, redirect_uri, profile); removed when exchanged.
    codes: HashMap<String, (String, String, Value)>,
    /// access token → profile.
    tokens: HashMap<String, Value>,
    counter: u64,
}

type Shared = Arc<Mutex<Fake>>;

async fn authorize(State(f): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut f = f.lock().unwrap();
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || q.get("response_type").map(String::as_str) != Some("code")
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return (AxStatus::BAD_REQUEST, "bad authorize request").into_response();
    }
    f.counter += 1;
    let code = format!("code-{}", f.counter);
    let redirect = q["redirect_uri"].clone();
    let profile = f.next_profile.clone();
    f.codes.insert(
        code.clone(),
        (q["code_challenge"].clone(), redirect.clone(), profile),
    );
    let location = format!("{redirect}?code={code}&state={}", q["state"]);
    (AxStatus::FOUND, [("location", location)]).into_response()
}

async fn token(State(f): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut f = f.lock().unwrap();
    let bad = |e: &str| (AxStatus::BAD_REQUEST, Json(json!({"error": e}))).into_response();
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return bad("invalid_client");
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return bad("unsupported_grant_type");
    }
    let Some((challenge, redirect, profile)) = form.get("code").and_then(|c| f.codes.remove(c))
    else {
        return bad("invalid_grant");
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    if computed != challenge || form.get("redirect_uri") != Some(&redirect) {
        return bad("invalid_grant");
    }
    f.counter += 1;
    let access = format!("access-{}", f.counter);
    f.tokens.insert(access.clone(), profile);
    Json(json!({"access_token": access, "token_type": "bearer"})).into_response()
}

async fn userinfo(State(f): State<Shared>, headers: HeaderMap) -> Response {
    let f = f.lock().unwrap();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    match f.tokens.get(bearer) {
        Some(p) => Json(p.clone()).into_response(),
        None => AxStatus::UNAUTHORIZED.into_response(),
    }
}

struct Setup {
    base: String,
    fake: Shared,
    /// A client that does not follow redirects (the test plays the browser).
    http: reqwest::Client,
    _app: TestApp,
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

async fn setup(with_provider: bool) -> Setup {
    let fake: Shared = Arc::new(Mutex::new(Fake::default()));
    let provider = serve(
        Router::new()
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(token))
            .route("/user", get(userinfo))
            .with_state(fake.clone()),
    )
    .await;
    let app = TestApp::builder()
        .admin_token(ROOT)
        .config(move |config| {
            if with_provider {
                config.oidc = Some(OidcConfig {
                    provider: "fakehub".into(),
                    authorize_url: format!("{provider}/login/oauth/authorize"),
                    token_url: format!("{provider}/login/oauth/access_token"),
                    userinfo_url: format!("{provider}/user"),
                    client_id: CLIENT_ID.into(),
                    client_secret: CLIENT_SECRET.into(),
                    scopes: "read:user user:email".into(),
                    redirect_uri: None,
                });
            }
        })
        .start()
        .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Setup {
        base: app.base.clone(),
        fake,
        http,
        _app: app,
    }
}

fn query_of(url: &str) -> HashMap<String, String> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// A browser's sign-in up to the provider's redirect back: (callback URL, cookie).
async fn begin(s: &Setup, profile: Value) -> (String, String, HashMap<String, String>) {
    begin_at(s, "/api/v1/auth/oidc/start", profile).await
}

/// [`begin`] from `start` (the API's start, or the website's).
async fn begin_at(
    s: &Setup,
    start: &str,
    profile: Value,
) -> (String, String, HashMap<String, String>) {
    s.fake.lock().unwrap().next_profile = profile;
    let r = s
        .http
        .get(format!("{}{start}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let params = query_of(&location);
    // The provider comes back to the browser with a code.
    let r = s.http.get(&location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND, "{location}");
    let callback = r.headers()["location"].to_str().unwrap().to_string();
    (callback, cookie, params)
}

async fn finish(s: &Setup, callback: &str, cookie: Option<&str>) -> (StatusCode, Value) {
    let mut rb = s.http.get(callback);
    if let Some(c) = cookie {
        rb = rb.header("cookie", c);
    }
    let r = rb.send().await.unwrap();
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// `GET path` with a bearer token: the JSON of a 200.
async fn get_as(s: &Setup, path: &str, token: &str) -> Value {
    let r = s
        .http
        .get(format!("{}{path}", s.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.unwrap()
}

/// The audit log as the admin reads it, with `query`.
async fn audit(s: &Setup, query: &str) -> Value {
    get_as(s, &format!("/api/v1/audit?{query}"), ROOT).await
}

async fn whoami(s: &Setup, token: &str) -> Value {
    get_as(s, "/api/v1/user", token).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_through_a_fake_provider_links_one_user() {
    let s = setup(true).await;
    let octo = json!({"id": 4242, "login": "Octo.Cat", "email": "octo@example.org"});

    let (callback, cookie, params) = begin(&s, octo.clone()).await;
    // The redirect carried what the provider needs, and a PKCE challenge.
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["scope"], "read:user user:email");
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["code_challenge"].len(), 43);
    assert_eq!(
        params["redirect_uri"],
        format!("{}/api/v1/auth/oidc/callback", s.base)
    );
    assert!(callback.starts_with(&params["redirect_uri"]), "{callback}");

    // Without the browser's cookie, or with another state, nothing happens.
    let (st, b) = finish(&s, &callback, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b}");
    let forged = callback.replace(
        &format!("state={}", params["state"]),
        "state=someone-elses-state",
    );
    assert_ne!(forged, callback);
    let (st, b) = finish(&s, &forged, Some(&cookie)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b}");

    // The real callback: a session token for a new user named after the login.
    let (st, b) = finish(&s, &callback, Some(&cookie)).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert_eq!(b["name"], "session (fakehub)");
    let me = whoami(&s, b["token"].as_str().unwrap()).await;
    assert_eq!(me["name"], "octo-cat");
    assert_eq!(me["email"], "octo@example.org");
    let first_id = me["id"].clone();

    // The code was used once: replaying the callback fails at the provider.
    let (st, b) = finish(&s, &callback, Some(&cookie)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b}");

    // Signing in again with the same subject is the same user, even if the login changed.
    let renamed = json!({"id": 4242, "login": "octo-renamed"});
    let (callback, cookie, _) = begin(&s, renamed).await;
    let (st, b) = finish(&s, &callback, Some(&cookie)).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let me = whoami(&s, b["token"].as_str().unwrap()).await;
    assert_eq!(me["id"], first_id);
    assert_eq!(me["name"], "octo-cat");

    // Another subject with the same login gets a user of its own.
    let twin = json!({"sub": "other-subject", "preferred_username": "octo.cat"});
    let (callback, cookie, _) = begin(&s, twin).await;
    let (st, b) = finish(&s, &callback, Some(&cookie)).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let me = whoami(&s, b["token"].as_str().unwrap()).await;
    assert_eq!(me["name"], "octo-cat-2");
    assert_ne!(me["id"], first_id);

    // A user made by the provider has no password.
    let r = s
        .http
        .post(format!("{}/api/v1/session", s.base))
        .json(&json!({"name": "octo-cat", "password": "!external"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The audit log says how the user came to be.
    let log = audit(&s, "action=user.register").await;
    let rows = log["items"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{log}");
    assert!(rows
        .iter()
        .all(|r| r["reason"] == "signed in through fakehub"));
}

/// A signed-in user's link up to the provider's redirect back: (callback URL, cookie),
/// or the refusal of `POST .../link`.
async fn begin_link(
    s: &Setup,
    token: Option<&str>,
    profile: Value,
) -> Result<(String, String), (StatusCode, Value)> {
    s.fake.lock().unwrap().next_profile = profile;
    let mut rb = s.http.post(format!("{}/api/v1/auth/oidc/link", s.base));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap();
    if r.status() != StatusCode::OK {
        let st = r.status();
        return Err((st, r.json().await.unwrap_or(Value::Null)));
    }
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let b: Value = r.json().await.unwrap();
    let authorize = b["authorize_url"].as_str().unwrap();
    let r = s.http.get(authorize).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND, "{authorize}");
    let callback = r.headers()["location"].to_str().unwrap().to_string();
    Ok((callback, cookie))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_user_links_an_outside_account_to_theirs() {
    let s = setup(true).await;
    // alice has a password account.
    let api = |path: &str| format!("{}{path}", s.base);
    let r = s
        .http
        .post(api("/api/v1/users"))
        .json(&json!({"name": "alice", "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let session: Value = s
        .http
        .post(api("/api/v1/session"))
        .json(&json!({"name": "alice", "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alice = session["token"].as_str().unwrap().to_string();
    let gh = json!({"id": 777, "login": "alice-gh"});

    // Nobody signed in, or a narrow token, may not start a link.
    let (st, b) = begin_link(&s, None, gh.clone()).await.unwrap_err();
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b}");
    let narrow: Value = s
        .http
        .post(api("/api/v1/tokens"))
        .bearer_auth(&alice)
        .json(&json!({"name": "ci", "scopes": ["publish-update"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (st, b) = begin_link(&s, narrow["token"].as_str(), gh.clone())
        .await
        .unwrap_err();
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");

    // alice links her provider account: the callback answers the link, not a session.
    let (callback, cookie) = begin_link(&s, Some(&alice), gh.clone()).await.unwrap();
    let (st, b) = finish(&s, &callback, Some(&cookie)).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(
        b["linked"],
        json!({"provider": "fakehub", "subject": "777", "user": "alice"})
    );
    assert!(b.get("token").is_none(), "{b}");

    // From now on, signing in through the provider is alice (no alice-gh account).
    let (callback, cookie, _) = begin(&s, gh.clone()).await;
    let (st, b) = finish(&s, &callback, Some(&cookie)).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert_eq!(
        whoami(&s, b["token"].as_str().unwrap()).await["name"],
        "alice"
    );

    // An identity that already signs in as someone else is not moved.
    let octo = json!({"id": 4242, "login": "octo"});
    let (callback, cookie, _) = begin(&s, octo.clone()).await;
    let (st, _) = finish(&s, &callback, Some(&cookie)).await;
    assert_eq!(st, StatusCode::CREATED, "octo signs up");
    let (callback, cookie) = begin_link(&s, Some(&alice), octo).await.unwrap();
    let (st, b) = finish(&s, &callback, Some(&cookie)).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["error"]["field"], "identity");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("'octo'"),
        "{b}"
    );
    // Linking the identity already linked to alice again is harmless.
    let (callback, cookie) = begin_link(&s, Some(&alice), gh).await.unwrap();
    let (st, b) = finish(&s, &callback, Some(&cookie)).await;
    assert_eq!(st, StatusCode::OK, "{b}");

    // The link is in the audit log, and no user was created for it.
    let log = audit(&s, "action=user.link").await;
    let rows = log["items"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{log}");
    assert_eq!(rows[0]["target"], "user alice");
    assert_eq!(rows[0]["diff"]["identity"]["after"], "fakehub:777");
    let log = audit(&s, "action=user.register&limit=100").await;
    let names: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["user octo", "user alice"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_verifier_or_a_provider_error_signs_nobody_in() {
    let s = setup(true).await;
    let who = json!({"id": 7, "login": "mallory"});
    let (callback, cookie, _) = begin(&s, who.clone()).await;
    // Same state, another PKCE verifier: the provider refuses the code.
    let (state, _) = cookie
        .trim_start_matches("quiver_oidc=")
        .split_once('.')
        .unwrap();
    let tampered = format!("quiver_oidc={state}.{}", "x".repeat(43));
    let (st, b) = finish(&s, &callback, Some(&tampered)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b}");
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("invalid_grant"));

    // The provider says no.
    let r = s
        .http
        .get(format!(
            "{}/api/v1/auth/oidc/callback?error=access_denied&state={state}",
            s.base
        ))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Nobody was created.
    let log = audit(&s, "action=user.register").await;
    assert_eq!(log["items"].as_array().unwrap().len(), 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_provider_the_routes_answer_404() {
    let s = setup(false).await;
    for path in [
        "/api/v1/auth/oidc/start",
        "/api/v1/auth/oidc/callback?code=a&state=b",
    ] {
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["error"]["code"], "not_found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_website_signs_in_through_the_provider_into_a_session_cookie() {
    let s = setup(true).await;
    let page = s
        .http
        .get(format!("{}/signin", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"href="/signin/oidc">Sign in with fakehub</a>"#),
        "{page}"
    );
    let hubert = json!({"id": 77, "login": "hubert"});
    let (callback, cookie, _) = begin_at(&s, "/signin/oidc", hubert.clone()).await;
    assert!(cookie.ends_with(".site"), "{cookie}");

    // A forged state: the site's error page, not JSON, and no session.
    let forged = callback.replace("state=", "state=x");
    let r = s
        .http
        .get(&forged)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(!format!("{:?}", r.headers()).contains("quiver_session=qvr_"));

    let r = s
        .http
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/dashboard");
    let set: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("quiver_session=qvr_"))
        .unwrap_or_else(|| panic!("{set:?}"));
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"));
    assert!(
        set.iter().any(|c| c.starts_with("quiver_oidc=;")),
        "{set:?}"
    );
    let pair = session.split(';').next().unwrap();
    let dash = s
        .http
        .get(format!("{}/dashboard", s.base))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(dash.status(), StatusCode::OK);
    assert!(dash.text().await.unwrap().contains("<h1>hubert</h1>"));
}
