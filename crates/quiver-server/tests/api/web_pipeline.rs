//! The website's recipe pipeline pages: the dashboard (depth, activity, valves, blockers,
//! recent failures), an item's page (an id with a `/` too), and the valve buttons run by
//! the pipeline's operators (not by anyone else), with hostile text escaped.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::TestApp;
use crate::web_account::Browser;

fn plain(html: &str) -> String {
    html.replace("&#x2f;", "/")
}

#[tokio::test]
async fn dashboard_item_pages_and_valve_buttons() {
    let app = TestApp::builder().user("ops").user("bob").start().await;
    let ops = app.session("ops").to_string();
    let (s, b) = app
        .post("/api/v1/namespaces", Some(&ops), json!({"name": "tsuku"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let items = json!({"items": [
        {"id": "homebrew:imagemagick", "tier": 1, "popularity": 0.8},
        {"id": "github:sharkdp/bat", "tier": 1, "popularity": 0.7},
    ]});
    let (s, b) = app.post("/api/v1/pipeline/items", Some(&ops), items).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, c) = app
        .post(
            "/api/v1/pipeline/claim",
            Some(&ops),
            json!({"worker": "w", "limit": 2}),
        )
        .await;
    assert_eq!(c["items"].as_array().unwrap().len(), 2, "{c}");
    let fail = |dep: &str, msg: &str| {
        json!([{"environment": "linux-glibc-x86_64", "passed": false,
                "category": "missing_dependency", "exit_code": 1, "message": msg,
                "blocked_by": [dep]}])
    };
    let report = json!({"worker": "w", "items": [
        {"id": "homebrew:imagemagick", "results": fail("libpng", "needs libpng <script>alert(1)</script>")},
        {"id": "github:sharkdp/bat", "results": fail("oniguruma", "needs oniguruma")},
    ]});
    let (s, b) = app
        .post("/api/v1/pipeline/results", Some(&ops), report)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let mut visitor = Browser::new(&app);
    let page = visitor.get("/pipeline").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let html = plain(&page.html);
    for want in [
        "Recipe pipeline",
        "homebrew",
        "libpng",
        "oniguruma",
        "/pipeline/items/github:sharkdp%2Fbat",
        "<svg",
    ] {
        assert!(html.contains(want), "{want} in {html}");
    }
    assert!(
        !html.contains(r#"value="pause""#),
        "no buttons for a visitor"
    );

    let page = visitor.get("/pipeline/items/github%3Asharkdp%2Fbat").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(plain(&page.html).contains("oniguruma"), "{}", page.html);
    let page = visitor.get("/pipeline/items/homebrew:imagemagick").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.html.contains("<script>alert(1)"), "escaped");
    assert!(
        page.html.contains("&lt;script&gt;alert(1)"),
        "{}",
        page.html
    );
    let page = visitor.get("/pipeline/items/homebrew:nothing").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);

    // A non-member's button is refused, and nothing changes.
    let mut bob = Browser::new(&app);
    bob.sign_in("bob").await;
    let csrf = bob.get("/pipeline").await.csrf();
    let denied = bob
        .post(
            "/pipeline",
            &[
                ("csrf", &csrf),
                ("action", "pause"),
                ("ecosystem", "homebrew"),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.html);

    let mut o = Browser::new(&app);
    o.sign_in("ops").await;
    let page = o.get("/pipeline").await;
    let csrf = page.csrf();
    let bad = o
        .post(
            "/pipeline",
            &[
                ("csrf", "wrong"),
                ("action", "pause"),
                ("ecosystem", "homebrew"),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN, "{}", bad.html);
    let paused = o
        .post(
            "/pipeline",
            &[
                ("csrf", &csrf),
                ("action", "pause"),
                ("ecosystem", "homebrew"),
                ("reason", "bottles <b>down</b>"),
            ],
        )
        .await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER, "{}", paused.html);
    let page = o.get("/pipeline").await;
    assert!(
        page.html.contains("bottles &lt;b&gt;down&lt;&#x2f;b&gt;")
            || page.html.contains("bottles &lt;b&gt;down"),
        "{}",
        page.html
    );
    assert!(page.html.contains(r#"value="resume""#));
    let (_, st) = app.get("/api/v1/pipeline/status", None).await;
    let v = st["valves"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["ecosystem"] == "homebrew")
        .unwrap();
    assert_eq!(v["paused"], true);
    let bad_limit = o
        .post(
            "/pipeline",
            &[
                ("csrf", &csrf),
                ("action", "rate_limit"),
                ("ecosystem", "homebrew"),
                ("claims_per_hour", "lots"),
            ],
        )
        .await;
    assert_eq!(
        bad_limit.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        bad_limit.html
    );
    assert!(
        bad_limit.html.contains("claims_per_hour"),
        "{}",
        bad_limit.html
    );

    let stopped = o
        .post(
            "/pipeline",
            &[("csrf", &csrf), ("action", "stop"), ("reason", "incident")],
        )
        .await;
    assert_eq!(stopped.status, StatusCode::SEE_OTHER, "{}", stopped.html);
    assert!(o.get("/pipeline").await.html.contains("Stopped:"));
    let started = o
        .post("/pipeline", &[("csrf", &csrf), ("action", "start")])
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER);
    assert!(!o.get("/pipeline").await.html.contains("Stopped:"));
}
