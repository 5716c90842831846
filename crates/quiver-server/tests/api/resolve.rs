//! Resolution through the API: ranges, `latest`, exact pins, prereleases, yanked versions
//! (skipped unless pinned), deprecated entries (warned), content hashes and sources, the
//! batch form over a lock set, a scoped npm name, bad input, and private entries.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::TestApp;
use crate::web_account::Browser;

const ADMIN: &str = "admin-secret";

fn hash(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

async fn module(app: &TestApp, namespace: &str, name: &str, visibility: &str, versions: &[&str]) {
    let (s, e) = app
        .post(
            "/api/v1/entries",
            Some(ADMIN),
            json!({"kind": "module", "namespace": namespace, "name": name,
                   "visibility": visibility, "description": format!("{name} module")}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    for (i, v) in versions.iter().enumerate() {
        let (s, e) = app
            .post(
                &format!("/api/v1/entries/module/{namespace}/{name}/versions"),
                Some(ADMIN),
                json!({"version": v, "manifest": {"source": {"type": "github",
                    "url": format!("https://example.invalid/{name}/{v}"),
                    "content_hash": hash(i as u8)}}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}: {e}");
    }
}

fn at(v: &Value, i: usize) -> &Value {
    &v["items"][i]
}

#[tokio::test]
async fn ranges_pins_yanked_deprecated_and_lock_sets() {
    let app = TestApp::builder().admin_token(ADMIN).start().await;
    module(
        &app,
        "alice",
        "fmt",
        "public",
        &[
            "1.0.0",
            "1.2.0",
            "1.2.5",
            "1.3.0-beta.1",
            "2.0.0",
            "2.1.0-rc.1",
        ],
    )
    .await;
    let (s, e) = app
        .post(
            "/api/v1/entries/module/alice/fmt/versions/1.2.5/yank",
            Some(ADMIN),
            json!({"reason": "corrupts output"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    module(&app, "alice", "old", "public", &["0.9.0"]).await;
    let (s, e) = app
        .post(
            "/api/v1/entries/module/alice/old/deprecate",
            Some(ADMIN),
            json!({"message": "unmaintained", "replacement": "module alice/fmt"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    module(&app, "secretco", "internal", "private", &["1.0.0"]).await;

    let get = |range: &str| {
        let path = format!(
            "/api/v1/resolve/module/alice/fmt?range={}",
            range
                .replace('^', "%5E")
                .replace(' ', "%20")
                .replace(',', "%2C")
        );
        let app = &app;
        async move { app.get(&path, None).await }
    };
    // A range: the highest match that is not yanked; the hashes and source it declares.
    let (s, v) = get("^1.2").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["version"], "1.2.0", "1.2.5 is yanked: {v}");
    assert_eq!(v["content_hash"], json!(format!("sha256:{}", hash(1))));
    assert_eq!(v["source"]["url"], "https://example.invalid/fmt/1.2.0");
    assert!(v["source"].get("content_hash").is_none());
    assert_eq!(v["manifest_sha256"].as_str().unwrap().len(), 64);
    assert!(v["warnings"][0]
        .as_str()
        .unwrap()
        .contains("newer version is out: 2.0.0"));
    // latest: no prerelease; the default.
    for path in [
        "/api/v1/resolve/module/alice/fmt",
        "/api/v1/resolve/module/alice/fmt?range=latest",
    ] {
        let (_, v) = app.get(path, None).await;
        assert_eq!(v["version"], "2.0.0", "{path}: {v}");
        assert_eq!(v["warnings"], json!([]));
    }
    // Prereleases only when asked for.
    assert_eq!(get(">=1.3.0-beta.0, <2").await.1["version"], "1.3.0-beta.1");
    assert_eq!(get("^2").await.1["version"], "2.0.0");
    // An exact pin takes a yanked version, with a warning.
    let (s, v) = get("1.2.5").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["yanked"], true);
    assert!(v["warnings"][0]
        .as_str()
        .unwrap()
        .contains("yanked (corrupts output)"));
    // Nothing matches: 404; a bad range: 422 naming it.
    let (s, e) = get("^3").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (s, e) = get("one point two").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["field"], "range");
    // Deprecated: resolved, and warned.
    let (_, v) = app.get("/api/v1/resolve/module/alice/old", None).await;
    assert_eq!(v["version"], "0.9.0");
    assert_eq!(v["deprecated"], true);
    assert!(v["warnings"][0]
        .as_str()
        .unwrap()
        .contains("deprecated: unmaintained (use module alice/fmt)"));
    // Private: not found for others, resolved for those who may read it.
    let (s, _) = app
        .get("/api/v1/resolve/module/secretco/internal", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .get("/api/v1/resolve/module/secretco/internal", Some(ADMIN))
        .await;
    assert_eq!(s, StatusCode::OK);

    // Dist-tags: set by the entry's maintainers, audited, resolved like a pin.
    let tags = "/api/v1/entries/module/alice/fmt/dist-tags";
    let (s, v) = app.get(tags, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"tags": [], "latest": "2.0.0"}));
    for (tag, version) in [("stable", "1.2.0"), ("beta", "1.3.0-beta.1")] {
        let (s, e) = app
            .put(
                &format!("{tags}/{tag}"),
                Some(ADMIN),
                json!({"version": version}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{e}");
        let (_, v) = get(tag).await;
        assert_eq!(v["version"], json!(version), "{tag}: {v}");
    }
    let (s, e) = app
        .put(&format!("{tags}/stable"), None, json!({"version": "1.0.0"}))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "only maintainers: {e}");
    let (s, e) = app
        .put(
            &format!("{tags}/1.x"),
            Some(ADMIN),
            json!({"version": "1.0.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["field"], "tag");
    let (s, _) = app
        .put(
            &format!("{tags}/stable"),
            Some(ADMIN),
            json!({"version": "7.7.7"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(get("stable").await.1["version"], "1.2.0", "unchanged");
    let (s, _) = get("nightly").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a tag nobody set");
    // `latest` set by hand overrides the highest release, until it is removed.
    app.put(
        &format!("{tags}/latest"),
        Some(ADMIN),
        json!({"version": "1.2.0"}),
    )
    .await;
    assert_eq!(get("latest").await.1["version"], "1.2.0");
    assert_eq!(app.get(tags, None).await.1["latest"], "1.2.0");
    let (s, v) = app.delete(&format!("{tags}/latest"), Some(ADMIN)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["latest"], "2.0.0");
    assert_eq!(
        v["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["tag"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["beta", "stable"]
    );
    let (_, log) = app
        .get("/api/v1/audit?action=entry.dist_tag&limit=100", Some(ADMIN))
        .await;
    assert_eq!(log["items"].as_array().unwrap().len(), 3, "{log}");
    assert_eq!(
        log["items"][0]["target"], "module alice/fmt#latest",
        "{log}"
    );

    // A lock set: each reference on its own, in order.
    let mut refs = vec![
        json!({"kind": "module", "namespace": "alice", "name": "fmt", "range": "~1.2.0"}),
        json!({"kind": "module", "namespace": "alice", "name": "fmt"}),
        json!({"kind": "module", "namespace": "alice", "name": "nope"}),
        json!({"kind": "module", "namespace": "alice", "name": "fmt", "range": "^9"}),
        json!({"kind": "module", "namespace": "secretco", "name": "internal"}),
    ];
    for _ in 0..95 {
        refs.push(
            json!({"kind": "module", "namespace": "alice", "name": "fmt",
                         "range": "^1"}),
        );
    }
    let (s, v) = app
        .post("/api/v1/resolve", None, json!({"references": refs}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 100);
    assert_eq!(at(&v, 0)["resolved"]["version"], "1.2.0");
    assert_eq!(at(&v, 1)["resolved"]["version"], "2.0.0");
    assert_eq!(at(&v, 1)["requested"], "latest");
    assert_eq!(at(&v, 2)["error"]["code"], "not_found");
    assert_eq!(at(&v, 3)["error"]["code"], "no_match");
    assert_eq!(at(&v, 4)["error"]["code"], "not_found", "private: {v}");
    assert!(!v.to_string().contains("example.invalid/internal"));
    assert_eq!(at(&v, 99)["resolved"]["version"], "1.2.0");
    assert_eq!(v["failed"], 3);
    // A malformed range refuses the request, naming the reference.
    let (s, e) = app
        .post(
            "/api/v1/resolve",
            None,
            json!({"references": [
                {"kind": "module", "namespace": "alice", "name": "fmt"},
                {"kind": "module", "namespace": "alice", "name": "fmt", "range": "??"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["field"], "references[1].range");
    let (s, _) = app
        .post("/api/v1/resolve", None, json!({"references": []}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Any kind, and a scoped npm name's slash as is.
    let (s, e) = app
        .post(
            "/api/v1/entries",
            Some(ADMIN),
            json!({"kind": "package", "namespace": "npm", "name": "@types/node"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    for ver in ["20.1.0", "22.0.0"] {
        let (s, e) = app
            .post(
                "/api/v1/entries/package/npm/@types/node/versions",
                Some(ADMIN),
                json!({"version": ver}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{e}");
    }
    let (s, v) = app
        .get("/api/v1/resolve/package/npm/@types/node?range=%5E20", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["version"], "20.1.0");
    assert_eq!(v["name"], "@types/node");
    assert_eq!(v["content_hash"], Value::Null);
}

/// Advisories: published by moderators only, listed with filters, shown in resolution
/// for the versions they affect with the next fix, withdrawn, and never leaking a private
/// entry.
#[tokio::test]
async fn advisories_are_published_listed_and_shown_in_resolution() {
    let app = TestApp::builder()
        .admin_token(ADMIN)
        .user("mallory")
        .start()
        .await;
    module(
        &app,
        "alice",
        "fmt",
        "public",
        &["1.0.0", "1.1.0", "1.2.0", "2.0.0"],
    )
    .await;
    module(&app, "secretco", "internal", "private", &["1.0.0"]).await;
    let body = |summary: &str, severity: &str, entry: (&str, &str), range: &str, fixed: Value| {
        json!({"summary": summary, "severity": severity, "aliases": ["CVE-2026-4242"],
               "description": "Titles reach the prompt unescaped.",
               "recommendation": "Upgrade.", "verified": true,
               "affected": [{"entry": {"kind": "module", "namespace": entry.0, "name": entry.1},
                             "range": range, "fixed": fixed}]})
    };
    // Only moderators and admins publish.
    let b1 = body(
        "Prompt injection",
        "high",
        ("alice", "fmt"),
        "<1.2.0",
        json!(["1.2.0"]),
    );
    let (s, _) = app.post("/api/v1/advisories", None, b1.clone()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let mallory = app.session("mallory").to_string();
    let (s, _) = app
        .post("/api/v1/advisories", Some(&mallory), b1.clone())
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, a1) = app.post("/api/v1/advisories", Some(ADMIN), b1).await;
    assert_eq!(s, StatusCode::CREATED, "{a1}");
    let id1 = a1["id"].as_str().unwrap().to_string();
    assert!(id1.starts_with("QVR-") && id1.ends_with("-0001"), "{id1}");
    let (s, a2) = app
        .post(
            "/api/v1/advisories",
            Some(ADMIN),
            body(
                "Crash on empty input",
                "low",
                ("alice", "fmt"),
                ">=2.0.0",
                json!([]),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a2}");
    let (s, secret) = app
        .post(
            "/api/v1/advisories",
            Some(ADMIN),
            body(
                "Internal leak",
                "critical",
                ("secretco", "internal"),
                "*",
                json!([]),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{secret}");
    // Bad input: the field and reason, nothing written.
    let (s, e) = app
        .post(
            "/api/v1/advisories",
            Some(ADMIN),
            body("Bad", "high", ("alice", "fmt"), "soon", json!([])),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["field"], "affected[0].range");
    let (s, e) = app
        .post(
            "/api/v1/advisories",
            Some(ADMIN),
            body("Bad", "high", ("alice", "nope"), "*", json!([])),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["field"], "affected[0].entry");

    // Listed newest first; the private entry's advisory only for those who may see it.
    let (_, list) = app.get("/api/v1/advisories", None).await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a2["id"].as_str().unwrap(), id1.as_str()], "{list}");
    assert!(!list.to_string().contains("Internal leak"));
    let (s, _) = app
        .get(
            &format!("/api/v1/advisories/{}", secret["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, all) = app.get("/api/v1/advisories", Some(ADMIN)).await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    let (_, high) = app.get("/api/v1/advisories?severity=high", None).await;
    assert_eq!(high.as_array().unwrap().len(), 1);
    let (_, of_fmt) = app
        .get(
            "/api/v1/advisories?kind=module&namespace=alice&name=fmt",
            None,
        )
        .await;
    assert_eq!(of_fmt.as_array().unwrap().len(), 2);
    let (s, _) = app.get("/api/v1/advisories?severity=dire", None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Resolution: an affected version carries the advisory and the next fix.
    let (_, v) = app
        .get("/api/v1/resolve/module/alice/fmt?range=1.0.0", None)
        .await;
    assert_eq!(v["advisories"][0]["id"], json!(id1), "{v}");
    assert_eq!(v["advisories"][0]["severity"], "high");
    assert_eq!(v["next_fix"], "1.2.0");
    assert!(v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("fixed in 1.2.0")));
    let (_, v) = app
        .get("/api/v1/resolve/module/alice/fmt?range=%5E1", None)
        .await;
    assert_eq!(v["version"], "1.2.0");
    assert_eq!(v["advisories"], json!([]), "1.2.0 is the fix");
    let (_, v) = app.get("/api/v1/resolve/module/alice/fmt", None).await;
    assert_eq!(v["version"], "2.0.0");
    assert_eq!(v["advisories"][0]["severity"], "low");
    assert_eq!(v["next_fix"], Value::Null, "no fix yet");
    // The website: the list, one advisory, and the banner on the affected entry.
    let mut visitor = Browser::new(&app);
    let page = visitor.get("/advisories").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.html.replace("&#x2f;", "/");
    assert!(
        html.contains(&id1) && html.contains("Prompt injection"),
        "{html}"
    );
    assert!(
        !html.contains("Internal leak"),
        "a private entry's advisory: {html}"
    );
    let page = visitor.get("/advisories?severity=high").await;
    assert!(!page.html.contains("Crash on empty input"));
    let page = visitor.get(&format!("/advisories/{id1}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("CVE-2026-4242") && page.html.contains("1.2.0"));
    let page = visitor
        .get(&format!("/advisories/{}", secret["id"].as_str().unwrap()))
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let page = visitor.get("/module/alice/fmt").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.html.replace("&#x2f;", "/");
    assert!(
        html.contains("role=\"alert\"><strong>Security advisory")
            && html.contains("The latest version is affected"),
        "the latest (2.0.0) is affected by the low one: {html}"
    );
    assert!(
        html.contains(&format!("href=\"/advisories/{id1}\"")),
        "{html}"
    );

    // Withdrawn: gone from resolution and the list, still readable.
    let (s, w) = app
        .post(
            &format!("/api/v1/advisories/{id1}/withdraw"),
            Some(ADMIN),
            json!({"reason": "not exploitable"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{w}");
    assert!(w["withdrawn_at"].is_string());
    let (_, v) = app
        .get("/api/v1/resolve/module/alice/fmt?range=1.0.0", None)
        .await;
    assert_eq!(v["advisories"], json!([]));
    let (s, _) = app.get(&format!("/api/v1/advisories/{id1}"), None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, list) = app.get("/api/v1/advisories", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, log) = app
        .get(
            "/api/v1/audit?action=advisory.publish&limit=100",
            Some(ADMIN),
        )
        .await;
    // Three publishes, and mallory's denied attempt.
    let outcomes: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["allowed", "allowed", "allowed", "denied"],
        "{log}"
    );
}

/// The batch reads on PostgreSQL: a lock set with a tag, an advisory, a private entry.
#[tokio::test]
async fn lock_sets_tags_and_advisories_on_postgres() {
    let Some(builder) = TestApp::builder().admin_token(ADMIN).postgres() else {
        return;
    };
    let app = builder.start().await;
    module(
        &app,
        "alice",
        "fmt",
        "public",
        &["1.0.0", "1.2.0", "2.0.0-rc.1"],
    )
    .await;
    module(&app, "alice", "io", "public", &["0.1.0"]).await;
    module(&app, "secretco", "internal", "private", &["1.0.0"]).await;
    app.put(
        "/api/v1/entries/module/alice/io/dist-tags/stable",
        Some(ADMIN),
        json!({"version": "0.1.0"}),
    )
    .await;
    let (s, a) = app
        .post(
            "/api/v1/advisories",
            Some(ADMIN),
            json!({"summary": "Old", "severity": "medium", "affected": [{"entry":
                {"kind": "module", "namespace": "alice", "name": "fmt"},
                "range": "<1.2.0", "fixed": ["1.2.0"]}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let refs = json!({"references": [
        {"kind": "module", "namespace": "alice", "name": "fmt", "range": "1.0.0"},
        {"kind": "module", "namespace": "alice", "name": "io", "range": "stable"},
        {"kind": "module", "namespace": "alice", "name": "fmt", "range": "^1"},
        {"kind": "module", "namespace": "secretco", "name": "internal"},
        {"kind": "module", "namespace": "alice", "name": "fmt", "range": ">=2.0.0-rc.0"}]});
    let (s, v) = app.post("/api/v1/resolve", None, refs).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(at(&v, 0)["resolved"]["version"], "1.0.0");
    assert_eq!(at(&v, 0)["resolved"]["next_fix"], "1.2.0");
    assert_eq!(at(&v, 1)["resolved"]["version"], "0.1.0");
    assert_eq!(at(&v, 2)["resolved"]["version"], "1.2.0");
    assert!(at(&v, 2)["resolved"]["source"]["url"]
        .as_str()
        .unwrap()
        .ends_with("/fmt/1.2.0"));
    assert_eq!(at(&v, 3)["error"]["code"], "not_found");
    assert_eq!(at(&v, 4)["resolved"]["version"], "2.0.0-rc.1");
    assert_eq!(v["failed"], 1);
}
