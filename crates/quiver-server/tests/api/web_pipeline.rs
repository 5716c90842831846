//! The website's recipe pipeline pages: the dashboard (depth, activity chart, valves,
//! blockers, gaps, checksum alerts, failures with their filters), an item's page (an id
//! with a `/` too), and the valve and emergency stop buttons run by the pipeline's
//! operators (a non-member's refusal shown on the page), with hostile text escaped.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::TestApp;
use crate::web_account::{Answer, Browser};

const ENV: &str = "linux-glibc-x86_64";
const HOSTILE: &str = "npm:<img src=x onerror=alert(1)>";

/// A page's HTML with the escaped slashes of its attributes as slashes.
fn plain(html: &str) -> String {
    html.replace("&#x2f;", "/")
}

/// The part of a page from the element with this id on.
fn from_id(html: &str, id: &str) -> String {
    let html = plain(html);
    let at = html
        .find(&format!(r#"id="{id}""#))
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    html[at..].to_string()
}

/// The text between the `id` element and the next section.
fn section(html: &str, id: &str) -> String {
    let rest = from_id(html, id);
    rest[..rest.find("</section>").unwrap_or(rest.len())].to_string()
}

fn valve(status: &Value, ecosystem: &str) -> Value {
    status["valves"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["ecosystem"] == ecosystem)
        .cloned()
        .unwrap_or(Value::Null)
}

fn assert_escaped(page: &Answer) {
    for raw in ["<script>alert", "<img src=x", "<b>down"] {
        assert!(!page.html.contains(raw), "{raw} unescaped in {}", page.html);
    }
}

#[tokio::test]
async fn dashboard_item_pages_and_valve_buttons() {
    let app = TestApp::builder()
        .user("ops")
        .user("bob")
        .config(|c| {
            // An ecosystem's first failed item opens its breaker (for an hour).
            c.pipeline.breaker = quiver_store::pipeline::BreakerConfig {
                window: 4,
                min_results: 1,
                threshold: 0.5,
                cooldown_ms: 3_600_000,
            };
        })
        .start()
        .await;
    let ops = app.session("ops").to_string();
    let (s, b) = app
        .post("/api/v1/namespaces", Some(&ops), json!({"name": "tsuku"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let items = json!({"items": [
        {"id": "homebrew:imagemagick", "tier": 1, "popularity": 0.8},
        {"id": "github:sharkdp/bat", "tier": 1, "popularity": 0.7},
        {"id": HOSTILE, "tier": 1, "popularity": 0.6},
        {"id": "cargo:ripgrep", "tier": 2, "popularity": 0.5},
    ]});
    let (s, b) = app.post("/api/v1/pipeline/items", Some(&ops), items).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, c) = app
        .post(
            "/api/v1/pipeline/claim",
            Some(&ops),
            json!({"worker": "w", "limit": 3, "ecosystems": ["homebrew", "github", "npm"]}),
        )
        .await;
    assert_eq!(c["items"].as_array().unwrap().len(), 3, "{c}");
    let fail = |dep: &str, msg: &str| {
        json!([{"environment": ENV, "passed": false,
                "category": "missing_dependency", "exit_code": 1, "message": msg,
                "blocked_by": [dep]}])
    };
    let report = json!({"worker": "w", "batch_id": "b<1>", "items": [
        {"id": "homebrew:imagemagick",
         "results": fail("libpng", "needs libpng <script>alert(1)</script>\nsecond line")},
        {"id": "github:sharkdp/bat", "results": fail("oniguruma", "needs oniguruma")},
        {"id": HOSTILE, "results": fail("<b>dep</b>", "x")},
    ]});
    let (s, b) = app
        .post("/api/v1/pipeline/results", Some(&ops), report)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // An older run outside a claim passed on another environment.
    let (s, b) = app
        .post(
            "/api/v1/pipeline/failures",
            Some(&ops),
            json!({"records": [{"id": "github:sharkdp/bat", "environment": "darwin-arm64",
                                "passed": true, "at": "2026-01-02T03:04:05Z"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let sum = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    for c in ['a', 'b'] {
        let (s, b) = app
            .post(
                "/api/v1/pipeline/checksums",
                Some(&ops),
                json!({"recipe": "ripgrep", "version": "14.1.0", "environment": ENV,
                       "asset": "ripgrep.tar.gz", "checksum": sum(c)}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }

    // What anyone sees (a visitor who opened the sign-in form too).
    let mut visitor = Browser::new(&app);
    visitor.get("/signin").await;
    let page = visitor.get("/pipeline").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert_escaped(&page);
    let html = plain(&page.html);
    assert!(
        html.contains(r#"<a href="/pipeline">Pipeline</a>"#),
        "in the nav"
    );
    let queue = section(&page.html, "queue");
    for want in [
        "<th scope=\"row\">homebrew</th>",
        "<th scope=\"row\">cargo</th>",
        "requires manual",
    ] {
        assert!(queue.contains(want), "{want} in {queue}");
    }
    assert!(
        queue.contains("<th scope=\"row\">cargo</th><td>1</td>"),
        "cargo's one pending item: {queue}"
    );
    let activity = section(&page.html, "activity");
    assert!(
        activity.contains("<svg") && activity.contains("<desc"),
        "{activity}"
    );
    assert!(activity.contains(r#"<rect class="fail""#), "{activity}");
    assert!(activity.contains("3 claimed"), "{activity}");
    let valves = section(&page.html, "valves");
    for want in ["homebrew", "github", "cargo", "running", "Breaker"] {
        assert!(valves.contains(want), "{want} in {valves}");
    }
    assert!(
        !html.contains(r#"value="pause""#) && !html.contains("/pipeline/stop"),
        "no buttons for a visitor"
    );
    let blockers = section(&page.html, "blockers");
    for want in [
        "libpng",
        "oniguruma",
        r#"<a href="/pipeline/items/github:sharkdp%2Fbat">github:sharkdp/bat</a>"#,
        r#"<a href="/pipeline/items/homebrew:imagemagick">"#,
    ] {
        assert!(blockers.contains(want), "{want} in {blockers}");
    }
    let gaps = section(&page.html, "gaps");
    assert!(
        gaps.contains("missing_dependency") && gaps.contains(ENV),
        "{gaps}"
    );
    assert!(
        gaps.contains("/pipeline?category=missing_dependency&amp;environment=linux-glibc-x86_64"),
        "{gaps}"
    );
    let alerts = section(&page.html, "alerts");
    assert!(
        alerts.contains("ripgrep 14.1.0") && alerts.contains(&sum('b')),
        "{alerts}"
    );
    let failures = section(&page.html, "failures");
    assert!(
        failures.contains("github:sharkdp/bat") && failures.contains("homebrew:imagemagick"),
        "{failures}"
    );
    assert!(
        failures.contains("needs libpng &lt;script&gt;") && !failures.contains("second line"),
        "the first line of the message: {failures}"
    );

    // The failures' filters.
    let page = visitor.get("/pipeline?ecosystem=github&category=").await;
    assert_eq!(page.status, StatusCode::OK);
    let failures = section(&page.html, "failures");
    assert!(failures.contains("github:sharkdp/bat"), "{failures}");
    assert!(!failures.contains("homebrew:imagemagick"), "{failures}");
    assert!(
        failures.contains("<option selected>github</option>"),
        "{failures}"
    );
    let page = visitor
        .get("/pipeline?environment=darwin-arm64#failures")
        .await;
    assert!(
        section(&page.html, "failures").contains("No failure records match"),
        "{}",
        page.html
    );
    let bad = visitor.get("/pipeline?before=yesterday").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    // An item with a `/` in its id, by the dashboard's link.
    let page = visitor.get("/pipeline/items/github:sharkdp%2Fbat").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let html = plain(&page.html);
    assert!(html.contains("<h1>github:sharkdp/bat</h1>"), "{html}");
    assert!(
        html.contains(&format!("<th scope=\"row\">{ENV}</th><td>oniguruma</td>")),
        "blocked by, per environment: {html}"
    );
    assert!(
        html.contains(
            r#"<td class="no"><strong>fail</strong></td><td>missing_dependency</td><td>1</td>"#
        ),
        "the matrix: {html}"
    );
    assert!(html.contains(r#"<td class="ok">pass</td>"#), "{html}");
    assert!(
        html.contains("not tried yet"),
        "an environment without a result: {html}"
    );
    assert!(
        html.contains("<pre>needs oniguruma</pre>"),
        "history: {html}"
    );
    assert!(html.contains("batch b&lt;1&gt;"), "{html}");
    let (newer, older) = (
        html.find("<pre>needs oniguruma</pre>").unwrap(),
        html.find("<strong>darwin-arm64</strong>").unwrap(),
    );
    assert!(newer < older, "history newest first: {html}");
    assert!(html.contains("/api/v1/pipeline/items/github:sharkdp%2Fbat"));
    let same = visitor.get("/pipeline/items/github%3Asharkdp%2Fbat").await;
    assert_eq!(same.status, StatusCode::OK);

    let page = visitor.get("/pipeline/items/homebrew:imagemagick").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_escaped(&page);
    assert!(
        page.html
            .contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;\nsecond line"),
        "{}",
        page.html
    );
    let hostile = format!(
        "/pipeline/items/{}",
        percent_encoding::utf8_percent_encode(HOSTILE, percent_encoding::NON_ALPHANUMERIC)
    );
    let page = visitor.get(&hostile).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert_escaped(&page);
    assert!(page.html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(page.html.contains("&lt;b&gt;dep&lt;"), "{}", page.html);
    let page = visitor.get("/pipeline/items/homebrew:nothing").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);

    // Buttons: signing in first; a non-member's press is refused on the page.
    let anon = visitor
        .post(
            "/pipeline/ecosystems/homebrew",
            &[("csrf", "x"), ("action", "pause"), ("reason", "x")],
        )
        .await;
    assert_eq!(anon.status, StatusCode::SEE_OTHER);
    assert_eq!(anon.location(), "/signin");
    let mut bob = Browser::new(&app);
    bob.sign_in("bob").await;
    let csrf = bob.get("/pipeline").await.csrf();
    let denied = bob
        .post(
            "/pipeline/ecosystems/homebrew",
            &[("csrf", &csrf), ("action", "pause"), ("reason", "x")],
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.html);
    assert!(
        denied.html.contains(r#"class="problem" role="alert""#)
            && denied.html.contains("bob may not publish to namespace"),
        "{}",
        denied.html
    );
    assert!(
        denied.html.contains("<h1>Recipe pipeline</h1>"),
        "the dashboard again"
    );
    let denied = bob
        .post("/pipeline/stop", &[("csrf", &csrf), ("reason", "x")])
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.html);
    let (_, st) = app.get("/api/v1/pipeline/status", None).await;
    assert_eq!(valve(&st, "homebrew")["paused"], false, "{st}");
    assert_eq!(st["stopped"], Value::Null);

    // An operator's buttons.
    let mut o = Browser::new(&app);
    o.sign_in("ops").await;
    let page = o.get("/pipeline").await;
    let csrf = page.csrf();
    let html = plain(&page.html);
    assert!(
        html.contains(
            r#"<form class="filters" method="post" action="/pipeline/ecosystems/homebrew">"#
        ),
        "{html}"
    );
    assert!(html.contains(r#"action="/pipeline/stop""#));
    let bad = o
        .post(
            "/pipeline/ecosystems/homebrew",
            &[("csrf", "wrong"), ("action", "pause"), ("reason", "x")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN, "{}", bad.html);
    let (_, st) = app.get("/api/v1/pipeline/status", None).await;
    assert_eq!(
        valve(&st, "homebrew")["paused"],
        false,
        "not by a bad token"
    );

    let paused = o
        .post(
            "/pipeline/ecosystems/homebrew",
            &[
                ("csrf", &csrf),
                ("action", "pause"),
                ("reason", "bottles <b>down</b>"),
            ],
        )
        .await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER, "{}", paused.html);
    assert_eq!(paused.location(), "/pipeline");
    let page = o.get("/pipeline").await;
    assert_escaped(&page);
    let valves = section(&page.html, "valves");
    assert!(
        valves.contains("<strong>paused</strong>: bottles &lt;b&gt;down&lt;/b&gt;"),
        "{valves}"
    );
    assert!(valves.contains(r#"value="resume""#), "{valves}");
    let (_, st) = app.get("/api/v1/pipeline/status", None).await;
    assert_eq!(valve(&st, "homebrew")["paused"], true);
    assert_eq!(valve(&st, "homebrew")["reason"], "bottles <b>down</b>");

    let no_reason = o
        .post(
            "/pipeline/ecosystems/cargo",
            &[("csrf", &csrf), ("action", "pause"), ("reason", " ")],
        )
        .await;
    assert_eq!(no_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        no_reason.html.contains("reason: must be"),
        "{}",
        no_reason.html
    );
    let bad_limit = o
        .post(
            "/pipeline/ecosystems/cargo",
            &[
                ("csrf", &csrf),
                ("action", "rate_limit"),
                ("claims_per_hour", "lots"),
            ],
        )
        .await;
    assert_eq!(bad_limit.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad_limit
            .html
            .contains("claims_per_hour: &#x27;lots&#x27; is not a whole number"),
        "{}",
        bad_limit.html
    );
    let limited = o
        .post(
            "/pipeline/ecosystems/cargo",
            &[
                ("csrf", &csrf),
                ("action", "rate_limit"),
                ("claims_per_hour", "5"),
            ],
        )
        .await;
    assert_eq!(limited.status, StatusCode::SEE_OTHER, "{}", limited.html);
    let valves = section(&o.get("/pipeline").await.html, "valves");
    assert!(valves.contains("5 an hour, 5 left this hour"), "{valves}");
    let resumed = o
        .post(
            "/pipeline/ecosystems/homebrew",
            &[("csrf", &csrf), ("action", "resume")],
        )
        .await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER);
    let (_, st) = app.get("/api/v1/pipeline/status", None).await;
    assert_eq!(valve(&st, "homebrew")["paused"], false);

    // github's failures opened its breaker; the button closes it.
    assert_eq!(valve(&st, "github")["breaker"], "open", "{st}");
    let valves = section(&o.get("/pipeline").await.html, "valves");
    assert!(valves.contains("<strong>open</strong>"), "{valves}");
    assert!(valves.contains(r#"value="reset_breaker""#), "{valves}");
    let reset = o
        .post(
            "/pipeline/ecosystems/github",
            &[("csrf", &csrf), ("action", "reset_breaker")],
        )
        .await;
    assert_eq!(reset.status, StatusCode::SEE_OTHER, "{}", reset.html);
    let (_, st) = app.get("/api/v1/pipeline/status", None).await;
    assert_eq!(valve(&st, "github")["breaker"], "closed", "{st}");
    let odd = o
        .post(
            "/pipeline/ecosystems/github",
            &[("csrf", &csrf), ("action", "explode")],
        )
        .await;
    assert_eq!(odd.status, StatusCode::UNPROCESSABLE_ENTITY);

    // The emergency stop and start.
    let stopped = o
        .post(
            "/pipeline/stop",
            &[("csrf", &csrf), ("reason", "incident <42>")],
        )
        .await;
    assert_eq!(stopped.status, StatusCode::SEE_OTHER, "{}", stopped.html);
    assert_eq!(stopped.location(), "/pipeline");
    let page = o.get("/pipeline").await;
    assert!(
        page.html
            .contains("<strong>Stopped:</strong> incident &lt;42&gt;"),
        "{}",
        page.html
    );
    assert!(plain(&page.html).contains(r#"action="/pipeline/start""#));
    let (_, st) = app.get("/api/v1/pipeline/status", None).await;
    assert_eq!(st["stopped"], "incident <42>");
    let started = o.post("/pipeline/start", &[("csrf", &csrf)]).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.html);
    let page = o.get("/pipeline").await;
    assert!(!page.html.contains("Stopped:"), "{}", page.html);
    let (_, st) = app.get("/api/v1/pipeline/status", None).await;
    assert_eq!(st["stopped"], Value::Null);
    let bad = o.post("/pipeline/start", &[("csrf", "wrong")]).await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN);
}
