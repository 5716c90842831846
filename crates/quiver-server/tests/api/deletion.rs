//! The deletion policy and per-version disable through the API: an owner's deletion
//! inside the grace period (and its refusal outside it, with a dependent, or past the
//! download threshold), someone outside the namespace refused, an admin's deletion leaving a tombstone that
//! keeps the name from anyone but admins, what the feed and the audit log say, deleted
//! version numbers never published again, and a disabled version that only an exact pin
//! resolves.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{assert_envelope, TestApp, TestAppBuilder};

const ROOT: &str = "root-token-for-deletion-tests";

fn manifest(name: &str, v: &str) -> Value {
    json!({"source": {"type": "github", "url": format!("https://example.invalid/{name}/{v}"),
        "content_hash": "ab".repeat(32)}})
}

/// Create `alice/{name}` (a module) as `token` with `versions`.
async fn module(app: &TestApp, token: &str, name: &str, versions: &[&str]) {
    let (s, e) = app
        .post(
            "/api/v1/entries",
            Some(token),
            json!({"kind": "module", "namespace": "alice", "name": name,
                   "description": format!("{name} module")}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    for v in versions {
        let (s, e) = app
            .post(
                &format!("/api/v1/entries/module/alice/{name}/versions"),
                Some(token),
                json!({"version": v, "manifest": manifest(name, v)}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}: {e}");
    }
}

fn path(name: &str) -> String {
    format!("/api/v1/entries/module/alice/{name}")
}

async fn audit_actions(app: &TestApp) -> Vec<(String, String, String)> {
    let (s, log) = app.get("/api/v1/audit?limit=100", Some(ROOT)).await;
    assert_eq!(s, StatusCode::OK, "{log}");
    log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap_or("").to_string(),
                r["target"].as_str().unwrap_or("").to_string(),
                r["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The public feed's changes, oldest first, as anyone sees them.
async fn public_changes(app: &TestApp) -> Vec<Value> {
    let (s, b) = app.get("/api/v1/changes?limit=1000", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["items"].as_array().unwrap().clone()
}

fn base(builder: TestAppBuilder) -> TestAppBuilder {
    builder.admin_token(ROOT).user("alice").user("bob")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_deletes_within_the_grace_period() {
    let app = base(TestApp::builder()).start().await;
    let alice = app.session("alice").to_string();
    let bob = app.session("bob").to_string();
    module(&app, &alice, "fmt", &["1.0.0", "1.1.0"]).await;
    module(&app, &alice, "scratch", &["0.1.0"]).await;

    // Someone else may not delete it (not even see the difference to a missing right).
    let (s, b) = app.delete(&path("fmt"), Some(&bob)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = app.delete(&path("fmt"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");

    // One version, with a reason: gone, its number never published again.
    let (s, t) = app
        .call(
            reqwest::Method::DELETE,
            &format!("{}/versions/1.1.0", path("fmt")),
            Some(&alice),
            Some(json!({"reason": "published by mistake"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["version"], "1.1.0");
    assert_eq!(t["reason"], "published by mistake");
    assert_eq!(t["by_admin"], false);
    let (s, b) = app
        .get(&format!("{}/versions/1.1.0", path("fmt")), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("was deleted"),
        "{b}"
    );
    let (s, b) = app
        .get(&format!("{}/versions/1.1.0/content", path("fmt")), None)
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "the content is no longer served: {b}"
    );
    let (_, e) = app.get(&path("fmt"), None).await;
    assert_eq!(e["latest_version"], "1.0.0", "{e}");
    let (s, b) = app
        .post(
            &format!("{}/versions", path("fmt")),
            Some(&alice),
            json!({"version": "1.1.0", "manifest": manifest("fmt", "1.1.0")}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_envelope(&b, "conflict", Some("version"));

    // The whole entry, without a reason: gone, and the name is free for its namespace.
    let (s, t) = app.delete(&path("scratch"), Some(&alice)).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["version"], Value::Null);
    assert_eq!(t["by_admin"], false);
    let (s, b) = app.get(&path("scratch"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_envelope(&b, "not_found", None);
    let (s, b) = app
        .get(&format!("{}/versions", path("scratch")), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    module(&app, &alice, "scratch", &["0.2.0"]).await;

    // The feed says so, by name, to anyone.
    let changes = public_changes(&app).await;
    let deleted: Vec<(String, String, Value)> = changes
        .iter()
        .filter(|c| c["op"] == "delete")
        .map(|c| {
            (
                c["entity"].as_str().unwrap().to_string(),
                c["name"].as_str().unwrap().to_string(),
                c["version"].clone(),
            )
        })
        .collect();
    assert_eq!(
        deleted,
        vec![
            ("version".into(), "fmt".into(), json!("1.1.0")),
            ("entry".into(), "scratch".into(), Value::Null),
        ],
        "{changes:?}"
    );
    // A private entry's deletion is on the feed only for those who could read it.
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(&alice),
            json!({"kind": "module", "namespace": "alice", "name": "hush",
                   "description": "a private module", "visibility": "private"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = app.delete(&path("hush"), Some(&alice)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(
        !public_changes(&app)
            .await
            .iter()
            .any(|c| c["name"] == "hush"),
        "a private entry's deletion is hidden from anonymous followers"
    );
    let (_, mine) = app.get("/api/v1/changes?limit=1000", Some(&alice)).await;
    assert!(
        mine["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "hush" && c["op"] == "delete"),
        "{mine}"
    );
    let (s, b) = app.get(&path("hush"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        !b["error"]["message"].as_str().unwrap().contains("deleted"),
        "nothing about a private entry to outsiders: {b}"
    );
    // And the audit log.
    let rows = audit_actions(&app).await;
    for (action, target) in [
        ("version.delete", "module alice/fmt@1.1.0"),
        ("entry.delete", "module alice/scratch"),
    ] {
        assert!(
            rows.iter()
                .any(|r| r.0 == action && r.1 == target && r.2 == "allowed"),
            "{action} {target}: {rows:?}"
        );
    }
    assert!(
        rows.iter()
            .any(|r| r.0 == "entry.delete" && r.2 == "denied"),
        "bob's refusal is audited: {rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_grace_period_or_with_a_dependent_the_answer_says_what_to_do() {
    // A grace period already over for everything.
    let app = base(TestApp::builder())
        .config(|c| c.deletion.grace = Duration::ZERO)
        .start()
        .await;
    let alice = app.session("alice").to_string();
    module(&app, &alice, "old", &["1.0.0"]).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (s, b) = app.delete(&path("old"), Some(&alice)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_envelope(&b, "delete_refused", None);
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("grace period") && msg.contains("yank") && msg.contains("deprecate"),
        "{msg}"
    );
    let (s, b) = app
        .delete(&format!("{}/versions/1.0.0", path("old")), Some(&alice))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_envelope(&b, "delete_refused", None);
    let (s, _) = app.get(&path("old"), None).await;
    assert_eq!(s, StatusCode::OK, "a refused delete leaves it in place");

    // Inside the grace period, a dependent refuses it just the same.
    let app = base(TestApp::builder()).start().await;
    let alice = app.session("alice").to_string();
    module(&app, &alice, "base", &["1.0.0"]).await;
    module(&app, &alice, "app", &["1.0.0"]).await;
    let (s, b) = app
        .post(
            &format!("{}/relations", path("app")),
            Some(&alice),
            json!({"kind": "depends_on", "to": {"kind": "module", "namespace": "alice", "name": "base"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = app.delete(&path("base"), Some(&alice)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_envelope(&b, "delete_refused", None);
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("module alice/app") && msg.contains("depend"),
        "{msg}"
    );
    let (s, b) = app
        .delete(&format!("{}/versions/1.0.0", path("base")), Some(&alice))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    // The dependent itself may go (nothing depends on it), and then the base may too.
    let (s, b) = app.delete(&path("app"), Some(&alice)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app.delete(&path("base"), Some(&alice)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let rows = audit_actions(&app).await;
    assert!(
        rows.iter()
            .any(|r| r.0 == "entry.delete" && r.1 == "module alice/base" && r.2 == "denied"),
        "{rows:?}"
    );
}

/// An admin deletes for legal or security reasons at any time, with a reason; the
/// tombstone keeps the name from its old owner (and everyone but admins).
async fn admin_deletion_reserves_the_name(app: TestApp) {
    let alice = app.session("alice").to_string();
    module(&app, &alice, "evil", &["1.0.0"]).await;
    module(&app, &alice, "user-of-evil", &["1.0.0"]).await;
    let (s, b) = app
        .post(
            &format!("{}/relations", path("user-of-evil")),
            Some(&alice),
            json!({"kind": "depends_on", "to": {"kind": "module", "namespace": "alice", "name": "evil"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // Searchable before.
    let started = std::time::Instant::now();
    loop {
        let (_, found) = app
            .get("/api/v1/search?q=evil&kind=module", Some(ROOT))
            .await;
        if found["hits"]
            .as_array()
            .is_some_and(|h| h.iter().any(|h| h["name"] == "evil"))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "search never found the entry: {found}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // An admin's deletion needs a reason, and ignores the dependent.
    let (s, b) = app.delete(&path("evil"), Some(ROOT)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_envelope(&b, "invalid_input", Some("reason"));
    let (s, t) = app
        .call(
            reqwest::Method::DELETE,
            &path("evil"),
            Some(ROOT),
            Some(json!({"reason": "malware (security report 12)"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["by_admin"], true);
    assert_eq!(t["reason"], "malware (security report 12)");
    let (s, b) = app.get(&path("evil"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malware (security report 12)"),
        "{b}"
    );
    // The dependent stays, without its relation.
    let (s, rels) = app
        .get(
            &format!("{}/relations?direction=both", path("user-of-evil")),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rels}");
    assert_eq!(rels, json!([]));

    // Search drops it (the index follows the feed's delete).
    let started = std::time::Instant::now();
    loop {
        let (s, found) = app
            .get("/api/v1/search?q=evil&kind=module", Some(ROOT))
            .await;
        assert_eq!(s, StatusCode::OK, "{found}");
        let hit = found["hits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == "evil");
        if !hit {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "search still finds the deleted entry: {found}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The old owner may not register the name again; an admin may.
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(&alice),
            json!({"kind": "module", "namespace": "alice", "name": "evil", "description": "again"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_envelope(&b, "conflict", Some("name"));
    assert!(
        b["error"]["message"].as_str().unwrap().contains("reserved"),
        "{b}"
    );
    // The feed and its followers see the deletion.
    let changes = public_changes(&app).await;
    assert!(
        changes
            .iter()
            .any(|c| c["entity"] == "entry" && c["op"] == "delete" && c["name"] == "evil"),
        "{changes:?}"
    );
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(ROOT),
            json!({"kind": "module", "namespace": "alice", "name": "evil", "description": "placeholder"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let rows = audit_actions(&app).await;
    assert!(
        rows.iter()
            .any(|r| r.0 == "entry.delete" && r.1 == "module alice/evil" && r.2 == "allowed"),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_deletion_leaves_a_tombstone_that_reserves_the_name() {
    admin_deletion_reserves_the_name(base(TestApp::builder()).start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_deletion_leaves_a_tombstone_that_reserves_the_name_on_postgres() {
    let Some(builder) = TestApp::builder().postgres() else {
        return;
    };
    admin_deletion_reserves_the_name(base(builder).start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_version_answers_only_an_exact_pin() {
    let app = base(TestApp::builder()).start().await;
    let alice = app.session("alice").to_string();
    let bob = app.session("bob").to_string();
    module(&app, &alice, "fmt", &["1.0.0", "1.1.0"]).await;
    let v = format!("{}/versions/1.1.0", path("fmt"));
    let (s, b) = app
        .post(
            &format!("{v}/disable"),
            Some(&bob),
            json!({"reason": "nope"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = app
        .post(
            &format!("{v}/disable"),
            Some(&alice),
            json!({"reason": " "}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_envelope(&b, "invalid_input", Some("reason"));
    let (s, b) = app
        .post(
            &format!("{v}/disable"),
            Some(&alice),
            json!({"reason": "corrupts files on Windows"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["disabled"]["reason"], "corrupts files on Windows");

    // Readable and marked; never the latest, never a range's or a tag's answer.
    let (s, got) = app.get(&v, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["disabled"]["reason"], "corrupts files on Windows");
    let (_, e) = app.get(&path("fmt"), None).await;
    assert_eq!(e["latest_version"], "1.0.0", "{e}");
    let html = app
        .http
        .get(app.url("/module/alice/fmt"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(">disabled</span> corrupts files on Windows"),
        "the entry's page marks the version"
    );
    let resolve = "/api/v1/resolve/module/alice/fmt";
    let (s, r) = app.get(&format!("{resolve}?range=%5E1"), None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["version"], "1.0.0");
    let (_, r) = app.get(resolve, None).await;
    assert_eq!(r["version"], "1.0.0", "latest: {r}");
    let (s, r) = app.get(&format!("{resolve}?range=1.1.0"), None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["version"], "1.1.0");
    assert!(
        r["warnings"].to_string().contains("disabled"),
        "an exact pin warns: {r}"
    );
    let (s, b) = app
        .put(
            &format!("{}/dist-tags/stable", path("fmt")),
            Some(&alice),
            json!({"version": "1.1.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, r) = app.get(&format!("{resolve}?range=stable"), None).await;
    assert_ne!(
        s,
        StatusCode::OK,
        "a tag never answers a disabled version: {r}"
    );

    // On the feed (a version update) and in the audit log; enabled again, all is back.
    let changes = public_changes(&app).await;
    let last = changes.last().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c["entity"] == "version" && c["op"] == "update" && c["version"] == "1.1.0"),
        "{last}"
    );
    let (s, b) = app
        .post(&format!("{v}/enable"), Some(&alice), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["disabled"], Value::Null);
    let (_, e) = app.get(&path("fmt"), None).await;
    assert_eq!(e["latest_version"], "1.1.0", "{e}");
    let (_, r) = app.get(&format!("{resolve}?range=%5E1"), None).await;
    assert_eq!(r["version"], "1.1.0");
    let rows = audit_actions(&app).await;
    for action in ["version.disable", "version.enable"] {
        assert!(
            rows.iter()
                .any(|r| r.0 == action && r.1 == "module alice/fmt@1.1.0"),
            "{action}: {rows:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_past_the_threshold_refuse_an_owners_delete() {
    let app = base(TestApp::builder())
        .config(|c| c.deletion.max_downloads = 0)
        .start()
        .await;
    let alice = app.session("alice").to_string();
    let (s, e) = app
        .post(
            "/api/v1/entries",
            Some(&alice),
            json!({"kind": "module", "namespace": "alice", "name": "popular",
                   "description": "a popular module"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    let (s, e) = app
        .post(
            &format!("{}/versions", path("popular")),
            Some(&alice),
            json!({"version": "1.0.0", "content": "/var @x = 1\n"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    let r = app
        .http
        .get(app.url(&format!("{}/versions/1.0.0/content", path("popular"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for p in [
        format!("{}/versions/1.0.0", path("popular")),
        path("popular"),
    ] {
        let (s, b) = app.delete(&p, Some(&alice)).await;
        assert_eq!(s, StatusCode::CONFLICT, "{p}: {b}");
        assert_envelope(&b, "delete_refused", None);
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains("1 counted download,"),
            "{b}"
        );
    }
    let (s, b) = app
        .call(
            reqwest::Method::DELETE,
            &path("popular"),
            Some(ROOT),
            Some(json!({"reason": "legal request"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "an admin is not bound by the threshold: {b}"
    );
}
