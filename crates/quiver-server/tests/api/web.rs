//! The website over the demo data: every page is HTML from the same engine calls as the
//! API, with its security headers and ETag; an entry's page shows its kind's section; a
//! private entry's page is the same 404 as a missing one, and its owner's token sees it.

use quiver_engine::Caller;
use quiver_import::pipeline::{ImportOptions, NoProgress, Source};
use reqwest::StatusCode;
use serde_json::json;

use crate::common::TestApp;

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../quiver/demo/demo.jsonl");

async fn demo_app() -> TestApp {
    let app = TestApp::builder().user("alice").start().await;
    app.registry
        .bulk()
        .import(
            &Caller::Operator,
            vec![Source::new(DEMO)],
            ImportOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    app.registry.sync_index().await.unwrap();
    app
}

/// A page: its status, its headers and its HTML.
async fn page(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut rb = app.http.get(app.url(path));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap();
    (r.status(), r.headers().clone(), r.text().await.unwrap())
}

#[tokio::test]
async fn home_search_and_entry_pages_of_every_kind() {
    let app = demo_app().await;

    let (s, h, home) = page(&app, "/", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("script-src"), "no script at all: {csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "same-origin");
    assert!(home.contains("Recently published") && home.contains("Most used"));
    assert!(
        home.contains("<strong>12</strong> tools"),
        "counts per kind"
    );

    // The same bytes again: 304 by ETag.
    let etag = h["etag"].to_str().unwrap().to_string();
    let r = app
        .http
        .get(app.url("/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);

    // Search: results link to entry pages, facets are links that keep the query.
    let (s, _, html) = page(&app, "/search?q=ripgrep", None).await;
    assert_eq!(s, StatusCode::OK);
    // (minijinja escapes `/` in text too: `&#x2f;` is `/` to a browser.)
    assert!(html.contains(&escaped("/recipe/tsuku/ripgrep")), "{html}");
    assert!(
        html.contains(&escaped("/search?q=ripgrep&kind=recipe")),
        "kind facet link"
    );
    let (_, _, only_tools) = page(&app, "/search?q=text&kind=tool", None).await;
    assert!(!only_tools.contains(r#"class="badge kind-package""#));
    let (s, _, bad) = page(&app, "/search?kind=nonsense", None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.contains("nonsense"));

    // Each kind's own section.
    for (path, wants) in [
        (
            "/tool/tpmjs/web.fetchText",
            &["Inputs", "<code>url</code>", "Outputs"][..],
        ),
        (
            "/recipe/tsuku/ripgrep",
            &["tsuku install ripgrep", "darwin/arm64", "rg --version"],
        ),
        ("/module/mlld/env", &["/import { ... } from @mlld/env"]),
        (
            "/skill/upskill/react-best-practices",
            &["Suggested for projects using", "react-dom"],
        ),
        ("/package/npm/react", &["npm install react"]),
        ("/package/pypi/requests", &["pip install requests"]),
        ("/package/npm/@types/node", &["npm install @types/node"]),
    ] {
        let (s, _, html) = page(&app, path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        for w in wants {
            assert!(
                html.contains(w) || html.contains(&escaped(w)),
                "{path} shows {w}"
            );
        }
        assert!(html.contains("Versions"), "{path}");
    }
    let (s, _, _) = page(&app, "/tool/tpmjs/no.suchTool", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, h, css) = page(&app, "/static/quiver.css", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/css"));
    assert!(css.contains("prefers-color-scheme: dark"));
}

/// What the template engine makes of text (minijinja escapes `& < > " '` and `/`).
fn escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

#[tokio::test]
async fn private_pages_are_missing_pages_to_others_and_text_is_escaped() {
    let app = demo_app().await;
    let alice = app.session("alice").to_string();
    let (s, body) = app
        .post(
            "/api/v1/entries",
            Some(&alice),
            json!({"kind": "tool", "namespace": "alice", "name": "secret.thing",
                   "description": "<script>alert(1)</script> a private tool",
                   "visibility": "private"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, _, html) = page(&app, "/tool/alice/secret.thing", None).await;
    let (missing, _, missing_html) = page(&app, "/tool/alice/never.there", None).await;
    assert_eq!((s, missing), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    let title = |h: &str| {
        h.split("<title>")
            .nth(1)
            .unwrap()
            .split("</title>")
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        title(&html),
        title(&missing_html),
        "the same page as a missing entry"
    );
    assert!(!html.contains("private tool"));

    let (s, _, html) = page(&app, "/tool/alice/secret.thing", Some(&alice)).await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "escaped"
    );
    assert!(!html.contains("<script>"), "no markup from data");
    assert!(html.contains(r#"class="badge vis-private""#));
}

#[tokio::test]
async fn capability_browser_and_selection_playground() {
    let app = demo_app().await;
    let (s, _, html) = page(&app, "/capabilities", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains(r#"<a href="/select?capability=packet_capture">packet_capture</a>"#),
        "{html}"
    );
    assert!(
        html.contains("<td>2</td><td>3</td><td>network</td>"),
        "{html}"
    );

    let (s, _, html) = page(
        &app,
        "/select?capability=packet_capture&vars=packet_count%3D5000&no_approval=on",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    let ranked = html.split("<h2>Ranked</h2>").nth(1).unwrap();
    let first = ranked.split("<tr><td>1</td>").nth(1).unwrap();
    assert!(
        first.contains("opsconductor&#x2f;tcpdump") || first.contains("opsconductor/tcpdump"),
        "{first}"
    );
    assert!(
        first.contains("<td>capture</td><td>2300</td><td>5</td><td><strong>0.820</strong>"),
        "{first}"
    );
    assert!(
        html.contains("requires approval, and approval_allowed is false"),
        "{html}"
    );
    assert!(
        html.contains("<code>800 + 0.3 * packet_count</code>"),
        "the patterns' expressions"
    );
    // The form keeps what was asked.
    assert!(html.contains(r#"name="no_approval" value="on" checked"#));

    let (s, _, html) = page(
        &app,
        "/select?capability=packet_capture&max_cost=lots",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains("max_cost: &#x27;lots&#x27; is not a number"),
        "{html}"
    );
}
