//! The telemetry suite: what every backend's [`TelemetryStore`](quiver_store::TelemetryStore)
//! must do. Events count once by their key, across batches and within one; roll-ups hold
//! the counts, sums, extremes and ratio histogram of their pattern, version, environment
//! and hour; reads select by pattern and by a window of hours.

use jiff::Timestamp;
use quiver_store::telemetry::{ratio_bucket, Execution, RollupFilter};
use quiver_store::Database;
use serde_json::json;

/// An hour boundary, plus `minutes`.
fn at(hour: i64, minutes: i64) -> Timestamp {
    Timestamp::from_millisecond(1_700_002_800_000 + hour * 3_600_000 + minutes * 60_000).unwrap()
}

fn event(key: &str, pattern: &str, time: f64, estimate: Option<f64>, ok: bool) -> Execution {
    Execution {
        event_key: key.into(),
        namespace: "ops".into(),
        name: "tcpdump".into(),
        version: "1.0.0".into(),
        capability: "packet_capture".into(),
        pattern: pattern.into(),
        environment: "production".into(),
        execution_id: Some(format!("run-{key}")),
        at: at(0, 5),
        time_ms: time,
        cost: ok.then_some(2.0),
        estimate_ms: estimate,
        success: ok,
        error: (!ok).then(|| "timed out".to_string()),
        variables: json!({"packet_count": 5000}),
    }
}

pub async fn run(db: &Database) {
    let t = &db.telemetry;
    let batch = vec![
        event("a", "capture", 100.0, Some(100.0), true),
        event("b", "capture", 300.0, Some(100.0), false),
        event("a", "capture", 999.0, Some(1.0), true),
    ];
    let out = t.ingest(batch.clone()).await.unwrap();
    assert_eq!(
        (out.accepted, out.duplicates),
        (2, 1),
        "a key counts once in a batch"
    );
    let again = t.ingest(batch).await.unwrap();
    assert_eq!(
        (again.accepted, again.duplicates),
        (0, 3),
        "and across batches"
    );

    let mut later = event("c", "capture", 50.0, None, true);
    later.at = at(1, 30);
    let mut other = event("d", "capture_verbose", 70.0, Some(35.0), true);
    other.environment = "staging".into();
    t.ingest(vec![later, other]).await.unwrap();

    let pattern = |p: &str| {
        Some((
            "ops".to_string(),
            "tcpdump".to_string(),
            "packet_capture".to_string(),
            p.to_string(),
        ))
    };
    let all = RollupFilter {
        pattern: pattern("capture"),
        since: 0,
        until: i64::MAX,
    };
    let rows = t.rollups(&all).await.unwrap();
    assert_eq!(rows.len(), 2, "one per hour: {rows:?}");
    let r = &rows[0];
    assert_eq!(r.hour, at(0, 0).as_millisecond());
    assert_eq!((r.count, r.successes), (2, 1));
    assert_eq!((r.time_sum, r.time_min, r.time_max), (400.0, 100.0, 300.0));
    assert_eq!((r.cost_count, r.cost_sum), (1, 2.0));
    assert_eq!((r.ratio_count, r.ratio_sum), (2, 4.0));
    assert_eq!(r.ratio_buckets[ratio_bucket(1.0)], 1);
    assert_eq!(r.ratio_buckets[ratio_bucket(3.0)], 1);
    assert_eq!(
        (rows[1].count, rows[1].ratio_count),
        (1, 0),
        "no estimate, no ratio"
    );

    // A window of hours, and every pattern at once.
    let first_hour = RollupFilter {
        pattern: pattern("capture"),
        since: at(0, 0).as_millisecond(),
        until: at(1, 0).as_millisecond(),
    };
    assert_eq!(t.rollups(&first_hour).await.unwrap().len(), 1);
    let everything = t
        .rollups(&RollupFilter {
            pattern: None,
            since: 0,
            until: i64::MAX,
        })
        .await
        .unwrap();
    assert_eq!(everything.len(), 3);
    assert!(everything
        .iter()
        .any(|r| r.pattern == "capture_verbose" && r.environment == "staging"));

    // The raw events of one pattern, newest first, each once, with their variables.
    let evs = t.executions(&all, 10).await.unwrap();
    let keys: Vec<&str> = evs.iter().map(|e| e.event_key.as_str()).collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_eq!(keys[0], "c", "newest first");
    assert_eq!(evs[0].variables, json!({"packet_count": 5000}));
    let a = evs.iter().find(|e| e.event_key == "a").unwrap();
    assert_eq!(
        (a.time_ms, a.estimate_ms, a.success),
        (100.0, Some(100.0), true)
    );
    assert_eq!(t.executions(&all, 1).await.unwrap().len(), 1);
    assert_eq!(t.executions(&first_hour, 10).await.unwrap().len(), 2);
}
