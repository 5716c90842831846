//! The website's signed-in pages as a browser uses them: the sign-in form (with its form
//! cookie and CSRF token), the session cookie, the dashboard, tokens made and revoked from
//! a form, signing out; and what must not work (a post without the form's token, a
//! session cookie on the JSON API, a stale cookie).

use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::json;

use quiver_engine::throttle::{CredentialLimits, Rate};

use crate::common::{TestApp, PASSWORD};

const ROOT: &str = "root-token-for-web-account-tests";

/// A browser: cookies kept by hand, redirects not followed (the tests look at them).
pub(crate) struct Browser<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
    pub(crate) cookies: Vec<(String, String)>,
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) html: String,
}

impl Answer {
    pub(crate) fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// The value of the first form's CSRF field.
    pub(crate) fn csrf(&self) -> String {
        let at = self
            .html
            .find(r#"name="csrf" value=""#)
            .unwrap_or_else(|| panic!("no CSRF field in {}", self.html));
        let rest = &self.html[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    pub(crate) fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }
}

impl<'a> Browser<'a> {
    pub(crate) fn new(app: &'a TestApp) -> Self {
        Browser {
            app,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: vec![],
        }
    }

    pub(crate) fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn keep(&mut self, a: &Answer) {
        for c in a.set_cookies() {
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !v.is_empty() && !c.contains("Max-Age=0") {
                self.cookies.push((k.to_string(), v.to_string()));
            }
        }
    }

    async fn send(&mut self, rb: reqwest::RequestBuilder) -> Answer {
        let rb = if self.cookies.is_empty() {
            rb
        } else {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            rb.header(COOKIE, jar.join("; "))
        };
        let r = rb.send().await.unwrap();
        let a = Answer {
            status: r.status(),
            headers: r.headers().clone(),
            html: r.text().await.unwrap(),
        };
        self.keep(&a);
        a
    }

    pub(crate) async fn get(&mut self, path: &str) -> Answer {
        let rb = self.http.get(self.app.url(path));
        self.send(rb).await
    }

    pub(crate) async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| {
                let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
                format!("{}={}", enc(k), enc(v))
            })
            .collect();
        let rb = self
            .http
            .post(self.app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"));
        self.send(rb).await
    }

    pub(crate) async fn sign_in(&mut self, name: &str) -> Answer {
        let csrf = self.get("/signin").await.csrf();
        self.post(
            "/signin",
            &[("csrf", &csrf), ("name", name), ("password", PASSWORD)],
        )
        .await
    }
}

#[tokio::test]
async fn sign_in_dashboard_tokens_and_sign_out() {
    let app = TestApp::builder()
        .admin_token(ROOT)
        .user("alice")
        .start()
        .await;
    let mut b = Browser::new(&app);

    // Anonymous: the signed-in pages send the browser to the sign-in form.
    for path in ["/dashboard", "/tokens"] {
        let a = b.get(path).await;
        assert_eq!(
            (a.status, a.location()),
            (StatusCode::SEE_OTHER, "/signin"),
            "{path}"
        );
    }

    // The form comes with its cookie (HttpOnly, SameSite=Lax) and a token bound to it.
    let form = b.get("/signin").await;
    assert_eq!(form.status, StatusCode::OK);
    assert_eq!(form.headers["cache-control"], "no-store");
    let set = form.set_cookies().join("\n");
    assert!(
        set.contains("quiver_form=") && set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    let csrf = form.csrf();
    assert!(
        !csrf.is_empty() && !set.contains(&csrf),
        "the token is not the cookie"
    );

    // A post without the form's cookie (another site's form) is refused, and signs no
    // one in, whatever the password.
    let other_site = Browser::new(&app)
        .post(
            "/signin",
            &[("csrf", &csrf), ("name", "alice"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(
        other_site.status,
        StatusCode::FORBIDDEN,
        "{}",
        other_site.html
    );
    assert!(!other_site
        .set_cookies()
        .join(" ")
        .contains("quiver_session=qvr_"));

    // A wrong password: the form again, with the problem, no session.
    let wrong = b
        .post(
            "/signin",
            &[
                ("csrf", &csrf),
                ("name", "alice"),
                ("password", "not it at all"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.html.contains("wrong user name or password"),
        "{}",
        wrong.html
    );
    assert!(wrong.html.contains(r#"value="alice""#), "the name is kept");
    assert!(b.cookie("quiver_session").is_none());

    // The right one: a session cookie, and off to the dashboard.
    let ok = b.sign_in("alice").await;
    assert_eq!(
        (ok.status, ok.location()),
        (StatusCode::SEE_OTHER, "/dashboard")
    );
    let set = ok.set_cookies().join("\n");
    assert!(
        set.contains("quiver_session=qvr_")
            && set.contains("HttpOnly")
            && set.contains("SameSite=Lax")
            && set.contains("Path=/"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain http on loopback: {set}");
    let session = b.cookie("quiver_session").unwrap().to_string();

    let dash = b.get("/dashboard").await;
    assert_eq!(dash.status, StatusCode::OK, "{}", dash.html);
    assert!(dash
        .html
        .contains(r#"<a class="me" href="/dashboard">alice</a>"#));
    assert!(
        dash.html.contains(r#"href="/namespaces/alice""#),
        "{}",
        dash.html
    );
    assert!(dash.html.contains("Sign out"));
    // Pages everyone sees know who is signed in, too.
    assert!(b.get("/").await.html.contains(">alice</a>"));

    // The session cookie is the website's: the JSON API takes bearer tokens only.
    let (s, _) = {
        let r = b
            .http
            .get(app.url("/api/v1/user"))
            .header(COOKIE, format!("quiver_session={session}"))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    };
    assert_eq!(s, StatusCode::UNAUTHORIZED, "no cookie auth on the API");

    // Tokens: the form's token is bound to the session.
    let page = b.get("/tokens").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.csrf();
    assert!(page.html.contains("this session"), "{}", page.html);
    let forged = b
        .post(
            "/tokens",
            &[
                ("csrf", "0000"),
                ("name", "ci"),
                ("scope_publish_new", "on"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let bad_days = b
        .post(
            "/tokens",
            &[
                ("csrf", &csrf),
                ("name", "ci"),
                ("scope_yank", "on"),
                ("expires_in_days", "soon"),
            ],
        )
        .await;
    assert_eq!(bad_days.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad_days.html.contains("expires_in_days"),
        "{}",
        bad_days.html
    );
    assert!(
        bad_days
            .html
            .contains(r#"name="scope_yank" value="on" checked"#),
        "the choices are kept"
    );
    let (_, listed) = app.get("/api/v1/tokens", Some(app.session("alice"))).await;
    let before = listed.as_array().unwrap().len();

    let made = b
        .post(
            "/tokens",
            &[
                ("csrf", &csrf),
                ("name", "ci"),
                ("scope_publish_new", "on"),
                ("pattern", "text.*"),
                ("expires_in_days", "30"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.html);
    assert_eq!(made.headers["cache-control"], "no-store");
    let at = made.html.find("qvr_").expect("the token, shown once");
    let secret: String = made.html[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    let (s, me) = app.get("/api/v1/user", Some(&secret)).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["name"], "alice");
    let (_, listed) = app.get("/api/v1/tokens", Some(app.session("alice"))).await;
    assert_eq!(
        listed.as_array().unwrap().len(),
        before + 1,
        "one token made"
    );
    let ci = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci")
        .unwrap()
        .clone();
    assert_eq!(ci["scopes"], json!(["publish-new"]));
    assert_eq!(ci["pattern"], "text.*");
    assert!(ci["expires_at"].is_string());
    // Shown once: the page lists it without its secret.
    assert!(!b.get("/tokens").await.html.contains(&secret));

    // Revoke it from its row's form.
    let gone = b
        .post(&format!("/tokens/{}/revoke", ci["id"]), &[("csrf", &csrf)])
        .await;
    assert_eq!(
        (gone.status, gone.location()),
        (StatusCode::SEE_OTHER, "/tokens")
    );
    let (s, _) = app.get("/api/v1/user", Some(&secret)).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a revoked token signs no one in"
    );

    // The audit log has the website's writes as the session's.
    let (_, log) = app
        .get("/api/v1/audit?action=token.create", Some(ROOT))
        .await;
    let rows = log["items"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["target"] == format!("token {}", ci["id"])
                && r["actor"].as_str().unwrap().starts_with("alice (token ")),
        "{log}"
    );

    // Sign out: the session is revoked and the cookie dropped.
    let csrf = b.get("/dashboard").await.csrf();
    let out = b.post("/signout", &[("csrf", &csrf)]).await;
    assert_eq!((out.status, out.location()), (StatusCode::SEE_OTHER, "/"));
    assert!(out.set_cookies().join(" ").contains("quiver_session=; "));
    assert!(b.cookie("quiver_session").is_none());
    let (s, _) = app.get("/api/v1/user", Some(&session)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the session token is revoked");
    // A browser that kept the old cookie is anonymous, not broken.
    b.cookies.push(("quiver_session".into(), session));
    let a = b.get("/dashboard").await;
    assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, "/signin"));
    let home = b.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.html.contains(">Sign in</a>"));
}

#[tokio::test]
async fn a_signed_in_owner_sees_their_private_entry_and_drafts() {
    let app = TestApp::builder().user("alice").user("bob").start().await;
    let alice = app.session("alice").to_string();
    let (s, body) = app
        .post(
            "/api/v1/entries",
            Some(&alice),
            json!({"kind": "tool", "namespace": "alice", "name": "hidden.tool",
                   "description": "only alice sees this", "visibility": "private"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");

    let mut anon = Browser::new(&app);
    assert_eq!(
        anon.get("/tool/alice/hidden.tool").await.status,
        StatusCode::NOT_FOUND
    );
    let mut bob = Browser::new(&app);
    bob.sign_in("bob").await;
    assert_eq!(
        bob.get("/tool/alice/hidden.tool").await.status,
        StatusCode::NOT_FOUND,
        "another user: the same 404"
    );
    assert!(!bob.get("/dashboard").await.html.contains("hidden.tool"));

    let mut owner = Browser::new(&app);
    owner.sign_in("alice").await;
    let page = owner.get("/tool/alice/hidden.tool").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("only alice sees this"));
    let dash = owner.get("/dashboard").await;
    assert!(dash.html.contains("hidden.tool"), "{}", dash.html);
    assert!(
        dash.html.contains("Drafts and entries in review"),
        "a new entry is a draft: {}",
        dash.html
    );
}

#[tokio::test]
async fn the_sign_in_form_shares_the_credential_throttle_with_the_api() {
    let app = TestApp::builder()
        .config(|c| {
            c.credentials = CredentialLimits {
                pair: Rate {
                    burst: 3,
                    period: std::time::Duration::from_secs(3600),
                },
                slow_after: u32::MAX,
                ..CredentialLimits::default()
            }
        })
        .user("alice")
        .start()
        .await;
    for i in 0..3 {
        let (s, b) = app
            .post(
                "/api/v1/session",
                None,
                json!({"name": "alice", "password": format!("guess-{i}")}),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    }
    let mut b = Browser::new(&app);
    let csrf = b.get("/signin").await.csrf();
    let a = b
        .post(
            "/signin",
            &[("csrf", &csrf), ("name", "alice"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.html);
    assert!(a.headers.contains_key("retry-after"));
    assert!(a.html.contains("<form"), "the form again, with the problem");
    assert!(b.cookie("quiver_session").is_none());
}
