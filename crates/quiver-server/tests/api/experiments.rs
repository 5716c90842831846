//! A/B tests through the API: who may create and run them, stable assignment that follows
//! the split, telemetry attributed to arms, the minimum sample before a winner, the right
//! winner on synthetic data (by success rate, and by time with auto-completion), and the
//! audit trail.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::TestApp;

const PREFS: &str =
    r#"{"speed": 0.5, "accuracy": 0.5, "cost": 0.5, "complexity": 0.5, "completeness": 0.5}"#;

fn manifest(capture_ms: f64) -> Value {
    let prefs: Value = serde_json::from_str(PREFS).unwrap();
    json!({"capabilities": {"packet_capture": {"patterns": {
        "capture": {"time_estimate_ms": capture_ms, "preference_match": prefs},
        "quick": {"time_estimate_ms": 100, "preference_match": prefs},
        "scan": {"time_estimate_ms": 50, "preference_match": prefs}
    }}}})
}

async fn tool(app: &TestApp, session: &str, versions: &[&str]) {
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(session),
            json!({"kind": "tool", "namespace": "alice", "name": "tcpdump"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    for v in versions {
        let (s, b) = app
            .post(
                "/api/v1/entries/tool/alice/tcpdump/versions",
                Some(session),
                json!({"version": v, "manifest": manifest(1000.0)}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
}

/// `n` executions from `from` of `version`/`pattern` attributed to `test`, succeeding
/// unless `i % fail_every == 0`, taking `time + (i % 7) * 10` ms.
fn batch(
    test: &str,
    version: &str,
    pattern: &str,
    (from, n): (usize, usize),
    fail_every: usize,
    time: f64,
) -> Value {
    let evs: Vec<Value> = (from..from + n)
        .map(|i| {
            json!({"idempotency_key": format!("{test}-{version}-{pattern}-{i}"),
                   "tool": "alice/tcpdump", "version": version,
                   "capability": "packet_capture", "pattern": pattern,
                   "time_ms": time + (i % 7) as f64 * 10.0, "cost": 1,
                   "success": i % fail_every != 0, "experiment": test})
        })
        .collect();
    json!({ "events": evs })
}

async fn select(app: &TestApp, token: Option<&str>, subject: &str) -> Value {
    let (s, b) = app
        .post(
            "/api/v1/select",
            token,
            json!({"capability": "packet_capture", "subject": subject}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

#[tokio::test]
async fn a_pattern_test_assigns_stably_and_declares_the_winner_after_the_minimum() {
    let app = TestApp::builder()
        .user("alice")
        .user("bob")
        .token("alice", "reporter", &["telemetry"])
        .start()
        .await;
    let alice = app.session("alice").to_string();
    let bob = app.session("bob").to_string();
    tool(&app, &alice, &["1.0.0"]).await;
    let new = json!({"name": "quick-vs-capture", "tool": "alice/tcpdump",
                     "capability": "packet_capture", "subject": "patterns",
                     "arm_a": "capture", "arm_b": "quick", "split": 0.3,
                     "min_samples": 200, "description": "is quick good enough?"});

    // Who may create, and what is checked.
    let (s, b) = app
        .post("/api/v1/experiments", Some(&bob), new.clone())
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    for (field, value) in [
        ("split", json!(1.0)),
        ("arm_b", json!("nope")),
        ("arm_b", json!("capture")),
        ("name", json!("Not A Slug")),
        ("min_samples", json!(2)),
        ("tool", json!("alice")),
    ] {
        let mut bad = new.clone();
        bad[field] = value;
        let (s, b) = app.post("/api/v1/experiments", Some(&alice), bad).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {b}");
        assert_eq!(b["error"]["field"], field, "{b}");
    }
    let (s, x) = app
        .post("/api/v1/experiments", Some(&alice), new.clone())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{x}");
    assert_eq!(
        (x["status"].as_str(), x["split"].as_f64()),
        (Some("draft"), Some(0.3))
    );
    let (s, _) = app.post("/api/v1/experiments", Some(&alice), new).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // A draft assigns nobody.
    let sel = select(&app, None, "user-1").await;
    assert!(sel["experiments"] == json!([]), "{sel}");
    assert_eq!(sel["candidates"].as_array().unwrap().len(), 3);

    let (s, b) = app
        .post(
            "/api/v1/experiments/quick-vs-capture/start",
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = app
        .post(
            "/api/v1/experiments/quick-vs-capture/start",
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("active")),
        "{b}"
    );
    let (s, _) = app
        .post(
            "/api/v1/experiments/quick-vs-capture/start",
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "started twice");

    // The same subject always gets the same arm; the other arm's pattern is excluded
    // with the reason; patterns outside the test stay candidates.
    let mut in_b = 0;
    let subjects = 1_000;
    for i in 0..subjects {
        let sel = select(&app, None, &format!("user-{i}")).await;
        let arm = sel["experiments"][0]["arm"].as_str().unwrap().to_string();
        assert_eq!(sel["experiments"][0]["experiment"], "quick-vs-capture");
        let patterns: Vec<&str> = sel["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["pattern"].as_str().unwrap())
            .collect();
        assert!(patterns.contains(&arm.as_str()) && patterns.contains(&"scan"));
        let other = if arm == "quick" { "capture" } else { "quick" };
        assert!(!patterns.contains(&other), "{sel}");
        let why = sel["excluded"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["pattern"] == other)
            .unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(why.contains("A/B test quick-vs-capture"), "{why}");
        let chosen = sel["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["pattern"] == arm.as_str())
            .unwrap();
        assert_eq!(chosen["experiment"]["arm"], arm.as_str());
        if i < 20 {
            let again = select(&app, None, &format!("user-{i}")).await;
            assert_eq!(again["experiments"][0]["arm"], arm.as_str(), "stable");
        }
        in_b += usize::from(arm == "quick");
    }
    let share = in_b as f64 / subjects as f64;
    assert!((0.25..=0.35).contains(&share), "split 0.3 gave {share}");

    // Telemetry names the test; an event whose pattern is no arm is refused.
    let reporter = app.token("reporter").to_string();
    let (s, b) = app
        .post(
            "/api/v1/telemetry",
            Some(&reporter),
            batch("quick-vs-capture", "1.0.0", "scan", (0, 1), 5, 10.0),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "events[0].experiment");
    // Capture fails one run in 5, quick one in 50: 150 each is below the minimum.
    for (pattern, fail) in [("capture", 5), ("quick", 50)] {
        let (s, b) = app
            .post(
                "/api/v1/telemetry",
                Some(&reporter),
                batch("quick-vs-capture", "1.0.0", pattern, (0, 150), fail, 100.0),
            )
            .await;
        assert_eq!(
            (s, b["accepted"].as_u64()),
            (StatusCode::OK, Some(150)),
            "{b}"
        );
    }
    let (s, r) = app.get("/api/v1/experiments/quick-vs-capture", None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["ready"], false, "{r}");
    assert!(r["winner"].is_null());
    assert!(r["verdict"].as_str().unwrap().contains("200"), "{r}");
    assert_eq!(r["arms"][0]["arm"], "capture");
    assert_eq!(r["arms"][0]["count"], 150);
    assert_eq!(r["arms"][0]["successes"], 120);
    assert!(r["success"]["significant"].as_bool().unwrap(), "{r}");

    for (pattern, fail) in [("capture", 5), ("quick", 50)] {
        app.post(
            "/api/v1/telemetry",
            Some(&reporter),
            batch(
                "quick-vs-capture",
                "1.0.0",
                pattern,
                (150, 100),
                fail,
                100.0,
            ),
        )
        .await;
    }
    let (_, r) = app.get("/api/v1/experiments/quick-vs-capture", None).await;
    assert_eq!(
        (r["ready"].as_bool(), r["winner"].as_str()),
        (Some(true), Some("quick")),
        "{r}"
    );
    assert_eq!(r["success"]["better"], "quick");
    assert!(r["success"]["p_value"].as_f64().unwrap() < 0.05);
    assert_eq!(r["time"]["significant"], false, "same times: {r}");
    let p50 = r["arms"][1]["time_p50_ms"].as_f64().unwrap();
    assert!((120.0..=140.0).contains(&p50), "median of 100..160: {p50}");
    assert_eq!(r["arms"][0]["share"], 0.7);

    // Completing without a winner takes the results' one; it is in the list and the log.
    let (s, done) = app
        .post(
            "/api/v1/experiments/quick-vs-capture/complete",
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(
        (done["status"].as_str(), done["winner"].as_str()),
        (Some("completed"), Some("quick"))
    );
    let sel = select(&app, None, "user-1").await;
    assert!(
        sel["experiments"] == json!([]),
        "a completed test assigns nobody: {sel}"
    );
    let (_, list) = app
        .get(
            "/api/v1/experiments?status=completed&tool=alice/tcpdump",
            None,
        )
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let (s, b) = app.get("/api/v1/experiments?status=finished", None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, log) = app
        .get(
            "/api/v1/audit?namespace=alice&target=A/B%20test%20quick-vs-capture",
            Some(&alice),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{log}");
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "experiment.complete",
            "experiment.start",
            "experiment.create"
        ]
    );
    assert_eq!(log["items"][0]["diff"]["winner"]["after"], "quick");
}

#[tokio::test]
async fn a_version_test_selects_the_arms_version_and_completes_itself_on_time() {
    let app = TestApp::builder()
        .user("alice")
        .token("alice", "reporter", &["telemetry"])
        .start()
        .await;
    let alice = app.session("alice").to_string();
    tool(&app, &alice, &["1.0.0", "1.1.0"]).await;
    let (s, x) = app
        .post(
            "/api/v1/experiments",
            Some(&alice),
            json!({"name": "v11", "tool": "alice/tcpdump", "capability": "packet_capture",
                   "subject": "versions", "arm_a": "1.0.0", "arm_b": "1.1.0",
                   "min_samples": 30, "auto_complete": true, "start": true,
                   "environment": "production"}),
        )
        .await;
    assert_eq!(
        (s, x["status"].as_str()),
        (StatusCode::CREATED, Some("active")),
        "{x}"
    );
    // A second active test of the same capability would put a subject in two.
    let (s, b) = app
        .post(
            "/api/v1/experiments",
            Some(&alice),
            json!({"name": "other", "tool": "alice/tcpdump", "capability": "packet_capture",
                   "subject": "patterns", "arm_a": "capture", "arm_b": "quick", "start": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");

    // Outside its environment the test assigns nobody; inside, the candidates are of the
    // arm's version, the older one included.
    let (_, sel) = app
        .post(
            "/api/v1/select",
            None,
            json!({"capability": "packet_capture", "subject": "s1", "environment": "staging"}),
        )
        .await;
    assert!(sel["experiments"] == json!([]), "{sel}");
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..40 {
        let (_, sel) = app
            .post(
                "/api/v1/select",
                None,
                json!({"capability": "packet_capture", "subject": format!("s{i}"),
                       "environment": "production"}),
            )
            .await;
        let arm = sel["experiments"][0]["arm"].as_str().unwrap().to_string();
        for c in sel["candidates"].as_array().unwrap() {
            assert_eq!(c["version"], arm.as_str(), "{sel}");
            assert_eq!(c["experiment"]["experiment"], "v11");
        }
        seen.insert(arm);
    }
    assert_eq!(seen.len(), 2, "both arms are used: {seen:?}");

    // 1.1.0 is twice as fast; both always succeed. Not complete before 30 each.
    let reporter = app.token("reporter").to_string();
    let post = |v: &'static str, range: (usize, usize), time: f64| {
        let body = batch("v11", v, "capture", range, usize::MAX, time);
        let app = &app;
        let reporter = reporter.clone();
        async move {
            let (s, b) = app.post("/api/v1/telemetry", Some(&reporter), body).await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
    };
    post("1.0.0", (0, 20), 1000.0).await;
    post("1.1.0", (0, 20), 500.0).await;
    let (_, r) = app.get("/api/v1/experiments/v11", None).await;
    assert_eq!(r["experiment"]["status"], "active", "{r}");
    assert!(r["time"]["significant"].as_bool().unwrap());
    post("1.0.0", (20, 10), 1000.0).await;
    post("1.1.0", (20, 10), 500.0).await;
    let (_, r) = app.get("/api/v1/experiments/v11", None).await;
    assert_eq!(r["experiment"]["status"], "completed", "{r}");
    assert_eq!(r["experiment"]["winner"], "1.1.0");
    assert!(r["verdict"].as_str().unwrap().contains("faster"), "{r}");
    // A completed test takes no more executions.
    let (s, b) = app
        .post(
            "/api/v1/telemetry",
            Some(&reporter),
            batch("v11", "1.0.0", "capture", (99, 1), usize::MAX, 1.0),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, _) = app
        .post("/api/v1/experiments/v11/cancel", Some(&alice), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "a completed test is not cancelled");
    let (s, _) = app.get("/api/v1/experiments/nope", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
