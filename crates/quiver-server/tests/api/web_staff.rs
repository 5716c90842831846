//! The website's working pages: publishing a version from the form (a problem shown next
//! to its field, then a clean publish), and the moderators' and admins' pages (the review
//! queue, users' trust and roles, the audit log, jobs), each allowed exactly to whom the
//! API allows it.

use quiver_store::{JobState, NewJob};
use reqwest::StatusCode;
use serde_json::json;

use crate::common::TestApp;
use crate::web_account::{Answer, Browser};

const ROOT: &str = "root-token-for-web-staff-tests";

async fn role(app: &TestApp, user: &str, role: &str) {
    let (s, b) = app
        .put(
            &format!("/api/v1/users/{user}/role"),
            Some(ROOT),
            json!({"site_role": role}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

async fn publish(b: &mut Browser<'_>, csrf: &str, version: &str, manifest: &str) -> Answer {
    b.post(
        "/publish",
        &[
            ("csrf", csrf),
            ("kind", "tool"),
            ("namespace", "alice"),
            ("name", "text.csv"),
            ("version", version),
            ("manifest", manifest),
            ("changelog", "first"),
        ],
    )
    .await
}

async fn act(b: &mut Browser<'_>, csrf: &str, action: &str, reason: &str) -> Answer {
    b.post(
        "/reviews",
        &[
            ("csrf", csrf),
            ("kind", "tool"),
            ("namespace", "olga"),
            ("name", "text.csv"),
            ("action", action),
            ("reason", reason),
        ],
    )
    .await
}

#[tokio::test]
async fn publish_a_version_from_the_form_with_an_error_then_without() {
    let app = TestApp::builder()
        .admin_token(ROOT)
        .user("alice")
        .user("bob")
        .start()
        .await;
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(app.session("alice")),
            json!({"kind": "tool", "namespace": "alice", "name": "text.csv",
                   "description": "Parse CSV text"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let mut a = Browser::new(&app);
    assert_eq!(a.get("/publish").await.location(), "/signin");
    a.sign_in("alice").await;
    // The entry page links to the form, filled in.
    let entry = a.get("/tool/alice/text.csv").await;
    assert!(
        entry
            .html
            .contains("/publish?kind=tool&amp;namespace=alice&amp;name=text.csv"),
        "{}",
        entry.html
    );
    let form = a
        .get("/publish?kind=tool&namespace=alice&name=text.csv")
        .await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.html.contains(r#"<option value="tool" selected>"#));
    assert!(form.html.contains(r#"value="text.csv""#));
    let csrf = form.csrf();
    // Not JSON: the problem sits under the manifest box, with where it is.
    let bad = publish(&mut a, &csrf, "1.0.0", "{\"summary\": ").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.html);
    assert!(
        bad.html
            .contains(r#"<p class="field-problem" id="e-manifest">manifest: not JSON (line 1"#),
        "{}",
        bad.html
    );
    assert!(bad.html.contains(
        r#"id="p-manifest" name="manifest" rows="14" spellcheck="false" aria-invalid="true""#
    ));
    assert!(
        bad.html.contains("{&quot;summary&quot;: </textarea>"),
        "what was typed is kept: {}",
        bad.html
    );
    // A version the model refuses: under the version field.
    let bad = publish(&mut a, &csrf, "one", "{}").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.html);
    assert!(
        bad.html
            .contains(r#"<p class="field-problem" id="e-version">"#),
        "{}",
        bad.html
    );
    let (_, e) = app.get("/api/v1/entries/tool/alice/text.csv", None).await;
    assert!(e["latest_version"].is_null(), "nothing published: {e}");

    // Clean: off to the entry's page, which has the version.
    let ok = publish(&mut a, &csrf, "1.0.0", r#"{"summary": "Parse CSV"}"#).await;
    assert_eq!(
        (ok.status, ok.location()),
        (StatusCode::SEE_OTHER, "/tool/alice/text.csv"),
        "{}",
        ok.html
    );
    let (_, e) = app.get("/api/v1/entries/tool/alice/text.csv", None).await;
    assert_eq!(e["latest_version"], "1.0.0", "{e}");
    // Versions are immutable: the same one again is refused, next to the version.
    let again = publish(&mut a, &csrf, "1.0.0", "{}").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.html);

    // Someone else may not publish here: the API's answer, as a page.
    let mut b = Browser::new(&app);
    b.sign_in("bob").await;
    let csrf = b.get("/publish").await.csrf();
    let refused = b
        .post(
            "/publish",
            &[
                ("csrf", &csrf),
                ("kind", "tool"),
                ("namespace", "alice"),
                ("name", "text.csv"),
                ("version", "2.0.0"),
                ("manifest", "{}"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
    let (_, e) = app.get("/api/v1/entries/tool/alice/text.csv", None).await;
    assert_eq!(e["latest_version"], "1.0.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderators_and_admins_work_from_the_site() {
    let app = TestApp::builder()
        .admin_token(ROOT)
        .config(|c| c.review.enabled = true)
        .user("olga")
        .user("mona")
        .user("ada")
        .start()
        .await;
    role(&app, "mona", "moderator").await;
    role(&app, "ada", "admin").await;
    let olga = app.session("olga").to_string();
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(&olga),
            json!({"kind": "tool", "namespace": "olga", "name": "text.csv",
                   "description": "Parse CSV text"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = app
        .post(
            "/api/v1/entries/tool/olga/text.csv/versions",
            Some(&olga),
            json!({"version": "1.0.0", "manifest": {}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, e) = app
        .get("/api/v1/entries/tool/olga/text.csv", Some(&olga))
        .await;
    assert_eq!(e["status"], "review", "a new publisher's entry waits: {e}");

    // Olga: not a moderator, so no queue, no users, no audit of the whole site, no jobs.
    let mut o = Browser::new(&app);
    o.sign_in("olga").await;
    for path in ["/reviews", "/users?name=mona", "/audit", "/jobs"] {
        assert_eq!(o.get(path).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert!(!o.get("/dashboard").await.html.contains("/reviews"));

    // Mona works the queue.
    let mut m = Browser::new(&app);
    m.sign_in("mona").await;
    assert!(m
        .get("/dashboard")
        .await
        .html
        .contains(r#"href="/reviews""#));
    let queue = m.get("/reviews").await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.html);
    assert!(queue.html.contains("tool olga/text.csv"), "{}", queue.html);
    assert!(queue.html.contains("olga is a new publisher"));
    let csrf = queue.csrf();
    let o_csrf = o.get("/dashboard").await.csrf();
    let no_reason = act(&mut m, &csrf, "reject", "").await;
    assert_eq!(
        no_reason.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        no_reason.html
    );
    // Olga cannot decide her own entry from the form either.
    let own = act(&mut o, &o_csrf, "approve", "").await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.html);
    let approved = act(&mut m, &csrf, "approve", "looks right").await;
    assert_eq!(
        (approved.status, approved.location()),
        (StatusCode::SEE_OTHER, "/reviews")
    );
    let (_, e) = app.get("/api/v1/entries/tool/olga/text.csv", None).await;
    assert_eq!(e["status"], "published", "{e}");
    assert!(!m.get("/reviews").await.html.contains("tool olga/text.csv"));
    assert!(m
        .get("/reviews?state=approved")
        .await
        .html
        .contains("tool olga/text.csv"));

    // Users: mona sets trust, but not roles (admins only).
    let page = m.get("/users?name=olga").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("<dd>new</dd>"), "{}", page.html);
    let csrf = page.csrf();
    let set = m
        .post(
            "/users",
            &[("csrf", &csrf), ("name", "olga"), ("trust", "trusted")],
        )
        .await;
    assert_eq!(
        (set.status, set.location()),
        (StatusCode::SEE_OTHER, "/users?name=olga")
    );
    assert!(m
        .get("/users?name=olga")
        .await
        .html
        .contains("<dd>trusted</dd>"));
    let promote = m
        .post(
            "/users",
            &[("csrf", &csrf), ("name", "olga"), ("role", "admin")],
        )
        .await;
    assert_eq!(promote.status, StatusCode::FORBIDDEN, "{}", promote.html);
    assert_eq!(m.get("/audit").await.status, StatusCode::FORBIDDEN);

    // Ada, an admin: the audit log with filters, and jobs.
    let mut a = Browser::new(&app);
    a.sign_in("ada").await;
    let log = a.get("/audit?action=user.trust").await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.html);
    assert!(log.html.contains("<td>mona (token "), "{}", log.html);
    assert!(log.html.contains("user olga"));
    assert!(
        !log.html.contains("<code>version.publish</code>"),
        "filtered"
    );
    let denied = a.get("/audit?outcome=denied").await;
    assert!(
        denied.html.contains("olga (token "),
        "olga's refused approval: {}",
        denied.html
    );

    // A dead job, retried from the page.
    let jobs = &app.registry.database().jobs;
    let id = jobs
        .enqueue(NewJob {
            max_attempts: 1,
            ..NewJob::new("test.always_fails", json!({}))
        })
        .await
        .unwrap();
    if let Some(j) = jobs
        .take(
            "tester",
            &["test.always_fails".to_string()],
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap()
    {
        jobs.fail(j.id, "tester", "it always fails").await.unwrap();
    }
    assert_eq!(
        jobs.get_job(id).await.unwrap().unwrap().state,
        JobState::Dead
    );
    let page = a.get("/jobs?state=dead").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("it always fails"), "{}", page.html);
    let csrf = page.csrf();
    let retried = a
        .post("/jobs/retry", &[("csrf", &csrf), ("id", &id.to_string())])
        .await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER, "{}", retried.html);
    assert_ne!(
        jobs.get_job(id).await.unwrap().unwrap().state,
        JobState::Dead
    );
    // A moderator may not retry jobs.
    let csrf = m.get("/dashboard").await.csrf();
    let no = m
        .post("/jobs/retry", &[("csrf", &csrf), ("id", &id.to_string())])
        .await;
    assert_eq!(no.status, StatusCode::FORBIDDEN);
}
