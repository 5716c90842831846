//! The website's telemetry and A/B test pages: the drift list with its recommendation, a
//! pattern's chart and tables, the tests' list and one test's results, and its buttons
//! run by the tool's maintainer (not by anyone else).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::TestApp;
use crate::web_account::Browser;

/// A page's HTML with the escaped slashes of its attributes as slashes.
fn plain(html: &str) -> String {
    html.replace("&#x2f;", "/")
}

#[tokio::test]
async fn drift_pattern_chart_and_ab_test_pages() {
    let app = TestApp::builder()
        .user("alice")
        .user("bob")
        .token("alice", "reporter", &["telemetry"])
        .start()
        .await;
    let alice = app.session("alice").to_string();
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(&alice),
            json!({"kind": "tool", "namespace": "alice", "name": "tcpdump"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let manifest = json!({"capabilities": {"packet_capture": {"patterns": {
        "capture": {"time_estimate_ms": "800 + 0.3 * packet_count"},
        "quick": {"time_estimate_ms": 100}
    }}}});
    let (s, b) = app
        .post(
            "/api/v1/entries/tool/alice/tcpdump/versions",
            Some(&alice),
            json!({"version": "1.0.0", "manifest": manifest}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // `capture` truly takes 500 + 0.9 × n ms.
    let runs: Vec<Value> = (0..40)
        .map(|i| {
            let n = 1000.0 + 500.0 * f64::from(i);
            json!({"idempotency_key": format!("r{i}"), "tool": "alice/tcpdump",
                   "version": "1.0.0", "capability": "packet_capture", "pattern": "capture",
                   "variables": {"packet_count": n}, "time_ms": 500.0 + 0.9 * n,
                   "success": true})
        })
        .collect();
    let (s, b) = app
        .post(
            "/api/v1/telemetry",
            Some(app.token("reporter")),
            json!({ "events": runs }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let mut visitor = Browser::new(&app);
    let page = visitor.get("/telemetry/drift").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(plain(&page.html).contains("alice/tcpdump"), "{}", page.html);
    assert!(
        plain(&page.html).contains("<code>500 + 0.9 * packet_count</code>"),
        "{}",
        page.html
    );
    assert!(plain(&page.html).contains("/telemetry/alice/tcpdump/packet_capture/capture"));
    let bad = visitor.get("/telemetry/drift?days=0").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    let page = visitor
        .get("/telemetry/alice/tcpdump/packet_capture/capture")
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(plain(&page.html).contains("<svg"), "a chart: {}", page.html);
    assert!(plain(&page.html).contains(r#"<polyline class="actual" points=""#));
    assert!(plain(&page.html).contains(r#"<polyline class="estimate" points=""#));
    assert!(plain(&page.html).contains("By version") && plain(&page.html).contains("1.0.0"));
    let none = visitor
        .get("/telemetry/alice/nothing/packet_capture/capture")
        .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);

    // A test, shown to all; its buttons work for its maintainer only.
    let (s, b) = app
        .post(
            "/api/v1/experiments",
            Some(&alice),
            json!({"name": "quick-or-not", "tool": "alice/tcpdump",
                   "capability": "packet_capture", "subject": "patterns",
                   "arm_a": "capture", "arm_b": "quick", "description": "Is quick enough?"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let list = visitor.get("/experiments").await;
    assert!(
        plain(&list.html).contains(r#"href="/experiments/quick-or-not""#),
        "{}",
        list.html
    );
    let page = visitor.get("/experiments/quick-or-not").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(plain(&page.html).contains("Is quick enough?"));
    assert!(
        plain(&page.html).contains("not yet: each arm needs 100 executions"),
        "{}",
        page.html
    );
    assert!(
        !plain(&page.html).contains(r#"value="start""#),
        "no buttons for a visitor"
    );
    // Nor for one who holds a form cookie (the sign-in page sets one) without signing in.
    let signin = visitor.get("/signin").await;
    assert_eq!(signin.status, StatusCode::OK);
    let page = visitor.get("/experiments/quick-or-not").await;
    assert!(
        !plain(&page.html).contains(r#"value="start""#),
        "no buttons for an anonymous visitor with a form cookie: {}",
        page.html
    );

    let mut bob = Browser::new(&app);
    bob.sign_in("bob").await;
    let page = bob.get("/experiments/quick-or-not").await;
    let csrf = page.csrf();
    let denied = bob
        .post(
            "/experiments/quick-or-not",
            &[("csrf", &csrf), ("action", "start")],
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.html);

    let mut a = Browser::new(&app);
    a.sign_in("alice").await;
    let page = a.get("/experiments/quick-or-not").await;
    let csrf = page.csrf();
    let bad = a
        .post(
            "/experiments/quick-or-not",
            &[("csrf", "wrong"), ("action", "start")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN, "{}", bad.html);
    let started = a
        .post(
            "/experiments/quick-or-not",
            &[("csrf", &csrf), ("action", "start")],
        )
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.html);
    assert_eq!(plain(started.location()), "/experiments/quick-or-not");
    let page = a.get("/experiments/quick-or-not").await;
    assert!(plain(&page.html).contains("active"), "{}", page.html);
    let done = a
        .post(
            "/experiments/quick-or-not",
            &[("csrf", &csrf), ("action", "complete"), ("winner", "quick")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    let (_, x) = app.get("/api/v1/experiments/quick-or-not", None).await;
    assert_eq!(x["experiment"]["status"], "completed");
    assert_eq!(x["experiment"]["winner"], "quick");

    // The creation form: for signed-in visitors; a refusal shows the problem and keeps
    // what was typed; the tool's maintainer creates one; anyone else is refused.
    let page = a.get("/experiments").await;
    assert!(page.html.contains("Create an A/B test"), "{}", page.html);
    let csrf = page.csrf();
    let anon = visitor.get("/experiments").await;
    assert!(!anon.html.contains("Create an A/B test"));
    let form = |subject: &'static str, csrf: String| {
        vec![
            ("csrf", csrf),
            ("name", "capture-again".to_string()),
            ("tool", "alice/tcpdump".to_string()),
            ("capability", "packet_capture".to_string()),
            ("subject", subject.to_string()),
            ("arm_a", "capture".to_string()),
            ("arm_b", "quick".to_string()),
            ("split", "0.3".to_string()),
        ]
    };
    let fields = form("colours", csrf.clone());
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = a.post("/experiments", &fields).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.html
    );
    assert!(refused.html.contains("subject:"), "{}", refused.html);
    assert!(
        refused.html.contains("value=\"capture-again\""),
        "kept: {}",
        refused.html
    );
    let bobs = form("patterns", bob.get("/experiments").await.csrf());
    let bobs: Vec<(&str, &str)> = bobs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let denied = bob.post("/experiments", &bobs).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.html);
    let fields = form("patterns", csrf);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let created = a.post("/experiments", &fields).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.html);
    assert_eq!(plain(created.location()), "/experiments/capture-again");
    let (_, x) = app.get("/api/v1/experiments/capture-again", None).await;
    assert_eq!(x["experiment"]["status"], "draft", "{x}");
    assert_eq!(x["experiment"]["split"], 0.3);
}
