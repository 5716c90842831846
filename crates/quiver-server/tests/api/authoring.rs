//! Checking a version before publishing it (`POST …/versions/validate`): the same
//! findings a publish would give, each with its field, the outcome a publish would have,
//! and nothing written (no version, no change on the feed).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::TestApp;

const DESCRIPTION: &str = "Capture packets on an interface and write them to a file";

fn manifest(time: &str) -> Value {
    json!({"capabilities": {"packet_capture": {
        "description": "capture packets",
        "patterns": {"capture": {
            "time_estimate_ms": time,
            "cost_estimate": "ceil(packet_count / 1000)",
            "required_inputs": [{"name": "iface", "type": "string"}]
        }}
    }}})
}

/// The feed's head: the position of the last change.
async fn head(app: &TestApp, token: &str) -> Value {
    let (s, b) = app.get("/api/v1/changes?limit=1", Some(token)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["head"].clone()
}

#[tokio::test]
async fn a_check_finds_what_a_publish_would_and_writes_nothing() {
    let app = TestApp::builder().user("alice").start().await;
    let alice = app.session("alice").to_string();
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(&alice),
            json!({"kind": "tool", "namespace": "alice", "name": "tcpdump", "description": DESCRIPTION}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let versions = "/api/v1/entries/tool/alice/tcpdump/versions";
    let validate = format!("{versions}/validate");
    let before = head(&app, &alice).await;

    // An undeclared variable: the check names the field a publish would refuse.
    let bad = json!({"version": "1.0.0", "manifest": manifest("800 + 0.3 * packets")});
    let (s, report) = app.post(&validate, Some(&alice), bad.clone()).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(report["outcome"], "refused", "{report}");
    let (s, refused) = app.post(versions, Some(&alice), bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let errors: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "{report}");
    assert_eq!(errors[0]["field"], refused["error"]["field"], "{report}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with(errors[0]["message"].as_str().unwrap()),
        "{report} vs {refused}"
    );

    // A bad version number and a good manifest: one finding on `version`.
    let (_, report) = app
        .post(
            &validate,
            Some(&alice),
            json!({"version": "one", "manifest": manifest("800")}),
        )
        .await;
    assert_eq!(report["outcome"], "refused");
    assert_eq!(report["findings"][0]["field"], "version", "{report}");

    // A good version: accepted, with the sha256 the publish then records.
    let good = json!({"version": "1.0.0", "manifest": manifest("800 + 0.3 * packet_count")});
    let (s, report) = app.post(&validate, Some(&alice), good.clone()).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(report["outcome"], "accepted", "{report}");
    assert_eq!(report["new_entry"], false);
    assert!(report["gates"].as_array().unwrap().len() >= 5, "{report}");

    // Nothing was written by any check.
    assert_eq!(head(&app, &alice).await, before, "the feed did not move");
    let (_, listed) = app.get(versions, Some(&alice)).await;
    assert_eq!(listed["items"], json!([]));

    let (s, published) = app.post(versions, Some(&alice), good.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{published}");
    assert_eq!(published["sha256"], report["sha256"]);

    // The same number again: a publish would conflict, and the check says so.
    let (_, report) = app.post(&validate, Some(&alice), good).await;
    assert_eq!(report["outcome"], "refused", "{report}");
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["field"] == "version"
            && f["message"].as_str().unwrap().contains("already published")));
}

#[tokio::test]
async fn a_new_name_is_checked_with_its_entry_fields_and_gates() {
    let app = TestApp::builder().user("alice").user("bob").start().await;
    let alice = app.session("alice").to_string();
    let bob = app.session("bob").to_string();
    let validate = "/api/v1/entries/tool/alice/newtool/versions/validate";
    let body = |description: &str| {
        json!({"version": "1.0.0", "manifest": manifest("800"),
               "entry": {"description": description, "tags": ["network"]}})
    };

    // Without the entry's fields, the name is not found.
    let (s, b) = app
        .post(
            validate,
            Some(&alice),
            json!({"version": "1.0.0", "manifest": manifest("800")}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");

    // A description too short: the description gate would hold the version back.
    let (s, report) = app.post(validate, Some(&alice), body("pcap")).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(report["new_entry"], true);
    assert_eq!(report["outcome"], "held_back", "{report}");
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["field"] == "description"
            && f["gate"] == "description"
            && f["severity"] == "error"));

    let (_, report) = app.post(validate, Some(&alice), body(DESCRIPTION)).await;
    assert!(
        ["accepted", "review"].contains(&report["outcome"].as_str().unwrap()),
        "{report}"
    );

    // Someone who may not publish in the namespace is refused, as a publish would be.
    let (s, b) = app.post(validate, Some(&bob), body(DESCRIPTION)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");

    // Still nothing there.
    let (s, _) = app
        .get("/api/v1/entries/tool/alice/newtool", Some(&alice))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// Poll `check` until it holds (the search index and the selection catalog follow the
/// change feed, a moment behind the write).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen");
}

#[tokio::test]
async fn a_disabled_tool_is_kept_but_not_selected_searched_or_resolved() {
    let app = TestApp::builder().user("alice").user("bob").start().await;
    let alice = app.session("alice").to_string();
    let bob = app.session("bob").to_string();
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(&alice),
            json!({"kind": "tool", "namespace": "alice", "name": "tcpdump", "description": DESCRIPTION}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let entry = "/api/v1/entries/tool/alice/tcpdump";
    let (s, b) = app
        .post(
            &format!("{entry}/versions"),
            Some(&alice),
            json!({"version": "1.0.0", "manifest": manifest("800 + 0.3 * packet_count")}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let select = json!({"capability": "packet_capture", "variables": {"packet_count": 10}});
    let selected = |body: Value| {
        let app = &app;
        async move {
            let (_, b) = app.post("/api/v1/select", None, body).await;
            b["candidates"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["tool"]["name"] == "tcpdump"))
        }
    };
    let found = |path: &'static str| {
        let app = &app;
        async move {
            let (_, b) = app.get(path, None).await;
            b["hits"]
                .as_array()
                .is_some_and(|h| h.iter().any(|h| h["name"] == "tcpdump"))
        }
    };
    eventually("the tool is selectable", || selected(select.clone())).await;
    eventually("the tool is found", || found("/api/v1/search?q=tcpdump")).await;

    // Only its maintainers may disable it, and only with a reason.
    let (s, b) = app
        .post(
            &format!("{entry}/disable"),
            Some(&bob),
            json!({"reason": "no"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = app
        .post(
            &format!("{entry}/disable"),
            Some(&alice),
            json!({"reason": "  "}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "reason");
    let (s, e) = app
        .post(
            &format!("{entry}/disable"),
            Some(&alice),
            json!({"reason": "captures too much on busy hosts"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["disabled"]["reason"], "captures too much on busy hosts");

    // Readable by name and marked; not selected, not searched unless asked, not
    // resolved by a range; an exact pin still resolves, warned.
    let (s, e) = app.get(entry, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(e["disabled"].is_object(), "{e}");
    eventually("the tool leaves the selection", || async {
        !selected(select.clone()).await
    })
    .await;
    let (_, sel) = app.post("/api/v1/select", None, select.clone()).await;
    assert!(
        sel["excluded"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["tool"]["name"] == "tcpdump"
                && x["reason"].as_str().unwrap().contains("disabled")),
        "{sel}"
    );
    eventually("the tool leaves search", || async {
        !found("/api/v1/search?q=tcpdump").await
    })
    .await;
    let (_, b) = app
        .get("/api/v1/search?q=tcpdump&include_disabled=true", None)
        .await;
    assert_eq!(b["hits"][0]["disabled"], true, "{b}");
    let (s, b) = app.get("/api/v1/resolve/tool/alice/tcpdump", None).await;
    assert_ne!(s, StatusCode::OK, "{b}");
    assert!(b.to_string().contains("disabled"), "{b}");
    let (s, b) = app
        .get("/api/v1/resolve/tool/alice/tcpdump?range=1.0.0", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["warnings"].to_string().contains("disabled"), "{b}");

    // Enabled again: back everywhere. Both changes are audited.
    let (s, e) = app
        .post(&format!("{entry}/enable"), Some(&alice), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert!(e.get("disabled").is_none(), "{e}");
    eventually("the tool is selectable again", || selected(select.clone())).await;
    eventually("the tool is found again", || {
        found("/api/v1/search?q=tcpdump")
    })
    .await;
    let (s, log) = app.get("/api/v1/audit?namespace=alice", Some(&alice)).await;
    assert_eq!(s, StatusCode::OK, "{log}");
    let actions = log.to_string();
    assert!(
        actions.contains("entry.disable") && actions.contains("entry.enable"),
        "{log}"
    );
}

#[tokio::test]
async fn a_bulk_update_dry_run_lists_exactly_what_the_run_changes() {
    let app = TestApp::builder().user("alice").user("bob").start().await;
    let alice = app.session("alice").to_string();
    let bob = app.session("bob").to_string();
    for (ns, name, token, tags) in [
        ("alice", "fmt", &alice, json!(["text"])),
        ("alice", "io", &alice, json!(["legacy", "files"])),
        ("alice", "net", &alice, json!(["legacy"])),
        ("bob", "other", &bob, json!(["legacy"])),
    ] {
        let (s, b) = app
            .post(
                "/api/v1/entries",
                Some(token),
                json!({"kind": "module", "namespace": ns, "name": name, "tags": tags,
                       "description": "a module for the bulk update test", "status": "published"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let body = |dry_run: bool| {
        json!({"filter": {"namespace": "alice", "tag": "legacy"},
               "patch": {"add_tags": ["old"], "remove_tags": ["legacy"], "category": "archive",
                         "status": {"status": "deprecated", "reason": "replaced by alice/io2"}},
               "dry_run": dry_run})
    };
    let (s, dry) = app
        .call(
            reqwest::Method::PATCH,
            "/api/v1/entries",
            Some(&alice),
            Some(body(true)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{dry}");
    assert_eq!(dry["matched"], 2, "{dry}");
    assert_eq!(dry["changed"].as_array().unwrap().len(), 2, "{dry}");
    // Nothing written by the dry run.
    let (_, io) = app.get("/api/v1/entries/module/alice/io", None).await;
    assert_eq!(io["tags"], json!(["legacy", "files"]));
    assert_eq!(io["status"], "published");

    let (s, done) = app
        .call(
            reqwest::Method::PATCH,
            "/api/v1/entries",
            Some(&alice),
            Some(body(false)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(
        done["changed"], dry["changed"],
        "the run changes what the dry run listed"
    );
    let (_, io) = app.get("/api/v1/entries/module/alice/io", None).await;
    assert_eq!(io["tags"], json!(["files", "old"]));
    assert_eq!(io["category"], "archive");
    assert_eq!(io["status"], "deprecated");
    assert_eq!(io["deprecation"]["message"], "replaced by alice/io2");
    let (_, fmt) = app.get("/api/v1/entries/module/alice/fmt", None).await;
    assert_eq!(fmt["tags"], json!(["text"]), "not matched, not changed");
    let (_, other) = app.get("/api/v1/entries/module/bob/other", None).await;
    assert_eq!(
        other["tags"],
        json!(["legacy"]),
        "another namespace is not touched"
    );

    // Again: everything is already so.
    let (_, again) = app
        .call(
            reqwest::Method::PATCH,
            "/api/v1/entries",
            Some(&alice),
            Some(json!({
            "filter": {"namespace": "alice", "tag": "old"},
            "patch": {"add_tags": ["old"]}})),
        )
        .await;
    assert_eq!(again["changed"], json!([]), "{again}");
    assert_eq!(again["skipped"].as_array().unwrap().len(), 2, "{again}");

    // One audit row per changed entry.
    let (_, log) = app
        .get(
            "/api/v1/audit?namespace=alice&action=entry.bulk-update",
            Some(&alice),
        )
        .await;
    let rows = log["items"].as_array().unwrap();
    assert_eq!(
        rows.iter()
            .filter(|r| r["action"] == "entry.bulk-update")
            .count(),
        2,
        "{log}"
    );

    // Bad requests change nothing and name the field; others may not cross namespaces.
    for (body, field) in [
        (
            json!({"filter": {}, "patch": {"add_tags": ["x"]}}),
            "filter",
        ),
        (
            json!({"filter": {"namespace": "alice"}, "patch": {}}),
            "patch",
        ),
        (
            json!({"filter": {"tag": "old"}, "patch": {"add_tags": ["x"]}}),
            "filter.namespace",
        ),
    ] {
        let (s, b) = app
            .call(
                reqwest::Method::PATCH,
                "/api/v1/entries",
                Some(&alice),
                Some(body),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["error"]["field"], field, "{b}");
    }
    let (_, b) = app
        .call(
            reqwest::Method::PATCH,
            "/api/v1/entries",
            Some(&bob),
            Some(json!({
            "filter": {"namespace": "alice"}, "patch": {"add_tags": ["mine"]}})),
        )
        .await;
    assert_eq!(b["changed"], json!([]), "{b}");
}
