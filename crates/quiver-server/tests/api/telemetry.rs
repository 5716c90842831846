//! Telemetry through the API: who may report, batches counted once by their keys, a bad
//! event refusing the batch with its field, a pattern's report from the roll-ups, and
//! drift found where the estimates are off.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::TestApp;

fn events(from: usize, n: usize, pattern: &str, time: f64) -> Value {
    let evs: Vec<Value> = (from..from + n)
        .map(|i| {
            json!({"idempotency_key": format!("{pattern}-{i}"), "tool": "alice/tcpdump",
                   "version": "1.0.0", "capability": "packet_capture", "pattern": pattern,
                   "environment": if i % 2 == 0 { "production" } else { "staging" },
                   "variables": {"packet_count": 5000}, "time_ms": time, "cost": 5,
                   "success": i % 10 != 0})
        })
        .collect();
    json!({ "events": evs })
}

#[tokio::test]
async fn telemetry_reports_and_drift() {
    let app = TestApp::builder()
        .user("alice")
        .user("bob")
        .token("bob", "ci", &["publish-new"])
        .token("bob", "reporter", &["telemetry"])
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
        "capture": {"time_estimate_ms": "800 + 0.3 * packet_count",
                    "preference_match": {"speed": 0.9, "accuracy": 0.9, "cost": 0.9,
                                         "complexity": 0.9, "completeness": 0.9}},
        "quick": {"time_estimate_ms": 100,
                  "preference_match": {"speed": 0.5, "accuracy": 0.5, "cost": 0.5,
                                       "complexity": 0.5, "completeness": 0.5}},
        "scan": {"time_estimate_ms": "800 + 0.3 * packet_count"}
    }}}});
    let (s, b) = app
        .post(
            "/api/v1/entries/tool/alice/tcpdump/versions",
            Some(&alice),
            json!({"version": "1.0.0", "manifest": manifest}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // Who may report.
    let (s, _) = app
        .post("/api/v1/telemetry", None, events(0, 1, "capture", 1.0))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = app
        .post(
            "/api/v1/telemetry",
            Some(app.token("ci")),
            events(0, 1, "capture", 1.0),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("telemetry"));
    let reporter = app.token("reporter").to_string();

    // 40 runs of `capture` at twice its estimate (800 + 0.3 × 5000 = 2300 ms), 40 of
    // `quick` on its estimate; a retried batch counts once.
    let (s, out) = app
        .post(
            "/api/v1/telemetry",
            Some(&reporter),
            events(0, 40, "capture", 4600.0),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out, json!({"accepted": 40, "duplicates": 0}));
    let (_, out) = app
        .post(
            "/api/v1/telemetry",
            Some(&reporter),
            events(0, 40, "capture", 4600.0),
        )
        .await;
    assert_eq!(out, json!({"accepted": 0, "duplicates": 40}));
    let (_, out) = app
        .post(
            "/api/v1/telemetry",
            Some(&reporter),
            events(0, 40, "quick", 100.0),
        )
        .await;
    assert_eq!(out["accepted"], 40);

    // A bad event refuses the whole batch, naming it.
    let mut bad = events(100, 3, "capture", 10.0);
    bad["events"][2]["pattern"] = json!("nope");
    let (s, b) = app.post("/api/v1/telemetry", Some(&reporter), bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "events[2].pattern");
    let mut bad = events(200, 1, "capture", 10.0);
    bad["events"][0]["tool"] = json!("alice/nothing");
    let (s, b) = app.post("/api/v1/telemetry", Some(&reporter), bad).await;
    assert_eq!(
        (s, b["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("events[0].tool"))
    );
    let (s, b) = app
        .post("/api/v1/telemetry", Some(&reporter), json!({"events": []}))
        .await;
    assert_eq!(
        (s, b["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("events"))
    );

    // The pattern's report: nothing from the refused batches.
    let (s, r) = app
        .get(
            "/api/v1/telemetry/patterns/alice/tcpdump/packet_capture/capture",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let all = &r["all"];
    assert_eq!(all["count"], 40);
    assert_eq!(all["successes"], 36);
    assert_eq!(all["time_mean_ms"], 4600.0);
    assert_eq!(all["ratio_count"], 40);
    assert!(
        (all["ratio_mean"].as_f64().unwrap() - 2.0).abs() < 1e-9,
        "{r}"
    );
    let median = all["ratio_median"].as_f64().unwrap();
    assert!((1.9..2.4).contains(&median), "{median}");
    assert_eq!(r["by_environment"]["production"]["count"], 20);
    assert_eq!(r["by_version"]["1.0.0"]["count"], 40);

    // Drift: `capture` runs twice as long as estimated; `quick` is on time.
    let (s, d) = app.get("/api/v1/telemetry/drift", None).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let found: Vec<(&str, &str)> = d
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["pattern"].as_str().unwrap(),
                x["direction"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(found, [("capture", "slower")], "{d}");
    // Every run had the same packet_count: the recommendation scales the expression.
    let rec = &d[0]["recommendation"];
    assert_eq!(rec["expression"], "2 * (800 + 0.3 * packet_count)", "{d}");
    assert_eq!(rec["samples"], 40);

    // Runs of `scan` over varied packet counts that truly take 500 + 0.9 × n ms: the
    // refit recovers both coefficients.
    let runs: Vec<Value> = (0..60)
        .map(|i| {
            let n = 1000.0 + 500.0 * f64::from(i);
            json!({"idempotency_key": format!("scan-{i}"), "tool": "alice/tcpdump",
                   "version": "1.0.0", "capability": "packet_capture", "pattern": "scan",
                   "variables": {"packet_count": n}, "time_ms": 500.0 + 0.9 * n,
                   "success": true})
        })
        .collect();
    let (s, b) = app
        .post(
            "/api/v1/telemetry",
            Some(&reporter),
            json!({"events": runs}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, d) = app.get("/api/v1/telemetry/drift", None).await;
    let scan = d
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["pattern"] == "scan")
        .unwrap_or_else(|| panic!("scan drifts: {d}"));
    let rec = &scan["recommendation"];
    assert_eq!(rec["expression"], "500 + 0.9 * packet_count", "{scan}");
    assert!(
        rec["rmse_recommended_ms"].as_f64().unwrap() < rec["rmse_current_ms"].as_f64().unwrap()
    );

    // One call turns the recommendation into the next version, which goes through the
    // publish rights (bob is no maintainer) like any other version.
    let apply = json!({"tool": "alice/tcpdump", "capability": "packet_capture",
                       "pattern": "scan"});
    let (s, b) = app
        .post(
            "/api/v1/telemetry/recommendations",
            Some(app.token("ci")),
            apply.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = app
        .post(
            "/api/v1/telemetry/recommendations",
            Some(&alice),
            apply.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["version"]["version"], "1.0.1");
    assert_eq!(
        b["version"]["manifest"]["capabilities"]["packet_capture"]["patterns"]["scan"]
            ["time_estimate_ms"],
        "500 + 0.9 * packet_count"
    );
    assert!(
        b["version"]["changelog"]
            .as_str()
            .unwrap()
            .contains("refitted"),
        "{b}"
    );
    let (_, e) = app.get("/api/v1/entries/tool/alice/tcpdump", None).await;
    assert_eq!(e["latest_version"], "1.0.1", "{e}");
    // The new latest has no executions of its own yet: nothing to refit.
    let (s, b) = app
        .post("/api/v1/telemetry/recommendations", Some(&alice), apply)
        .await;
    assert_eq!(
        (s, b["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("pattern")),
        "{b}"
    );
    let (_, d) = app.get("/api/v1/telemetry/drift?min_count=100", None).await;
    assert_eq!(d, json!([]), "not enough executions");
    let (s, _) = app
        .get(
            "/api/v1/telemetry/drift?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}
