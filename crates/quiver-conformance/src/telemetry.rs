//! The telemetry suite: what every backend's [`TelemetryStore`](quiver_store::TelemetryStore)
//! must do. Events count once by their key, across batches and within one; roll-ups hold
//! the counts, sums, extremes and ratio histogram of their pattern, version, environment
//! and hour; reads select by pattern and by a window of hours.

use jiff::Timestamp;
use quiver_model::ErrorCode;
use quiver_store::telemetry::{
    ratio_bucket, Execution, Experiment, ExperimentChange, ExperimentFilter, ExperimentStatus,
    ExperimentSubject, FitRow, RollupFilter,
};
use quiver_store::{AuditDiff, AuditDraft, AuditFilter, Database, NewAuditRecord};
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
        experiment: None,
        arm: None,
        fit: estimate.map(|_| FitRow {
            vars: vec!["packet_count".into()],
            x: vec![5000.0],
        }),
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
    assert_eq!(r.time_sketch.count(), 2, "the time sketch has every event");
    let p50 = r.time_sketch.quantile(0.5).unwrap();
    assert!((p50 / 100.0 - 1.0).abs() < 0.05, "median time {p50}");
    assert_eq!(r.cost_sketch.count(), 1, "and the cost sketch every cost");
    assert_eq!(
        (r.fit.n, r.fit.vars.as_slice(), r.fit.yy),
        (2, ["packet_count".to_string()].as_slice(), 100_000.0),
        "the refit sums of the events with an estimate: {:?}",
        r.fit
    );
    assert_eq!(r.fit.xtx, [2.0, 10_000.0, 10_000.0, 50_000_000.0]);
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

    // Retention deletes old raw events, oldest first, and leaves the roll-ups whole.
    let cutoff = at(1, 0).as_millisecond();
    assert_eq!(t.prune_events(cutoff, 1).await.unwrap(), 1, "one at a time");
    assert_eq!(
        t.prune_events(cutoff, 100).await.unwrap(),
        2,
        "the other two before the cutoff, of any pattern"
    );
    assert_eq!(t.prune_events(cutoff, 100).await.unwrap(), 0);
    let left: Vec<String> = t
        .executions(&all, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_key)
        .collect();
    assert_eq!(left, ["c"]);
    assert_eq!(t.rollups(&all).await.unwrap()[0].count, 2, "roll-ups stay");
    let mut again = event("a", "capture", 100.0, Some(100.0), true);
    again.at = at(5, 0);
    let out = t.ingest(vec![again]).await.unwrap();
    assert_eq!(
        out.accepted, 1,
        "a pruned key is forgotten: retention bounds how long a retry is recognised"
    );
}

fn audit(action: &str) -> quiver_store::Audit {
    Some(AuditDraft {
        record: NewAuditRecord {
            actor: "tester".into(),
            action: action.into(),
            namespace: Some("ops".into()),
            target: "A/B test quick-vs-full".into(),
            outcome: "allowed".into(),
            reason: None,
            diff: None,
            client: None,
        },
        diff: AuditDiff::Stored,
    })
}

/// A/B tests: created once by name, changed only from the states a change allows, listed
/// by tool, capability and status, each write with its audit row; events attributed to an
/// arm add up per arm, once per key.
pub async fn experiments(db: &Database) {
    let t = &db.telemetry;
    let now = Timestamp::now();
    let x = Experiment {
        name: "quick-vs-full".into(),
        description: "capture: quick or full?".into(),
        namespace: "ops".into(),
        tool: "tcpdump".into(),
        capability: "packet_capture".into(),
        subject: ExperimentSubject::Patterns,
        arm_a: "capture".into(),
        arm_b: "capture_verbose".into(),
        split: 0.3,
        environment: Some("production".into()),
        callers: vec!["alice".into()],
        status: ExperimentStatus::Draft,
        min_samples: 50,
        auto_complete: true,
        winner: None,
        created_by: "alice".into(),
        created_at: now,
        updated_at: now,
        completed_at: None,
    };
    let made = t
        .create_experiment(x.clone(), audit("experiment.create"))
        .await
        .unwrap();
    assert_eq!(made, x);
    let again = t
        .create_experiment(x.clone(), audit("experiment.create"))
        .await
        .unwrap_err();
    assert_eq!(again.code, ErrorCode::Conflict, "a name is taken once");
    let stored = t.experiment("quick-vs-full").await.unwrap().unwrap();
    assert_eq!(
        (
            stored.name.as_str(),
            stored.split,
            &stored.callers,
            stored.subject
        ),
        (
            "quick-vs-full",
            0.3,
            &x.callers,
            ExperimentSubject::Patterns
        )
    );
    assert_eq!(stored.created_at.as_millisecond(), now.as_millisecond());
    assert!(t.experiment("nope").await.unwrap().is_none());

    let start = ExperimentChange {
        from: vec![ExperimentStatus::Draft],
        to: ExperimentStatus::Active,
        winner: None,
        at: now,
    };
    let active = t
        .change_experiment("quick-vs-full", start.clone(), audit("experiment.start"))
        .await
        .unwrap();
    assert_eq!(active.status, ExperimentStatus::Active);
    let twice = t
        .change_experiment("quick-vs-full", start.clone(), audit("experiment.start"))
        .await
        .unwrap_err();
    assert_eq!(twice.code, ErrorCode::Conflict, "{twice}");
    let missing = t.change_experiment("nope", start, None).await.unwrap_err();
    assert_eq!(missing.code, ErrorCode::NotFound);

    // Events attributed to arms add up per arm, once per key.
    let mut evs = vec![];
    for i in 0..10 {
        let (pattern, arm) = if i % 2 == 0 {
            ("capture", "capture")
        } else {
            ("capture_verbose", "capture_verbose")
        };
        let mut e = event(&format!("x{i}"), pattern, 100.0 + i as f64, None, i != 3);
        e.experiment = Some("quick-vs-full".into());
        e.arm = Some(arm.into());
        evs.push(e);
    }
    evs.push(event("plain", "capture", 5.0, None, true));
    t.ingest(evs.clone()).await.unwrap();
    t.ingest(evs).await.unwrap();
    let arms = t.arm_stats("quick-vs-full").await.unwrap();
    assert_eq!(arms.len(), 2, "{arms:?}");
    let a = &arms[0];
    assert_eq!(
        (a.arm.as_str(), a.count, a.successes),
        ("capture", 5, 5),
        "an event without a test adds to no arm; a retried batch counts once"
    );
    assert_eq!(a.time_sum, 100.0 + 102.0 + 104.0 + 106.0 + 108.0);
    let sq: f64 = [100.0f64, 102.0, 104.0, 106.0, 108.0]
        .iter()
        .map(|v| v * v)
        .sum();
    assert_eq!(a.time_sumsq, sq);
    assert_eq!((a.cost_count, a.cost_sum), (5, 10.0));
    assert_eq!(a.time_sketch.count(), 5);
    let b = &arms[1];
    assert_eq!(
        (b.arm.as_str(), b.count, b.successes),
        ("capture_verbose", 5, 4)
    );
    let stored_events = t
        .executions(
            &RollupFilter {
                pattern: Some((
                    "ops".into(),
                    "tcpdump".into(),
                    "packet_capture".into(),
                    "capture_verbose".into(),
                )),
                since: 0,
                until: i64::MAX,
            },
            100,
        )
        .await
        .unwrap();
    assert!(stored_events
        .iter()
        .all(|e| e.experiment.as_deref() == Some("quick-vs-full")
            && e.arm.as_deref() == Some("capture_verbose")));

    // Completing records the winner and the time; listing filters.
    let done = t
        .change_experiment(
            "quick-vs-full",
            ExperimentChange {
                from: vec![ExperimentStatus::Active],
                to: ExperimentStatus::Completed,
                winner: Some("capture".into()),
                at: now,
            },
            audit("experiment.complete"),
        )
        .await
        .unwrap();
    assert_eq!(done.winner.as_deref(), Some("capture"));
    assert!(done.completed_at.is_some());
    let mut other = x.clone();
    other.name = "v1-vs-v2".into();
    other.subject = ExperimentSubject::Versions;
    other.capability = "port_scan".into();
    t.create_experiment(other, None).await.unwrap();
    let by = |f: ExperimentFilter| async move {
        t.experiments(&f)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        by(ExperimentFilter::default()).await,
        ["quick-vs-full", "v1-vs-v2"]
    );
    assert_eq!(
        by(ExperimentFilter {
            status: Some(ExperimentStatus::Completed),
            ..Default::default()
        })
        .await,
        ["quick-vs-full"]
    );
    assert_eq!(
        by(ExperimentFilter {
            tool: Some(("ops".into(), "tcpdump".into())),
            capability: Some("port_scan".into()),
            ..Default::default()
        })
        .await,
        ["v1-vs-v2"]
    );
    assert!(by(ExperimentFilter {
        tool: Some(("ops".into(), "nmap".into())),
        ..Default::default()
    })
    .await
    .is_empty());

    // Each audited write left its row, with the change as a diff.
    let rows = db
        .audit
        .list_audit(&AuditFilter::default(), None, 100)
        .await
        .unwrap()
        .items;
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "experiment.complete",
            "experiment.start",
            "experiment.create"
        ],
        "one row per audited write, none for refused ones"
    );
    assert_eq!(
        rows[0].diff.as_ref().unwrap()["winner"]["after"],
        json!("capture"),
        "{:?}",
        rows[0].diff
    );
}
