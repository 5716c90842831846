//! The pipeline suite: what every backend's [`PipelineStore`] must do. Items are upserted
//! by id; claims come in priority order and take each item once, also under concurrent
//! claims from two handles; an expired lease returns its item; a report applies only
//! while its worker holds the lease, stores its results, replaces the environment's
//! blocks and feeds the ecosystem's breaker; requeue moves only the states asked for;
//! checksums raise one alert per changed value; requests count once per client and day.

use std::collections::HashSet;
use std::time::Duration;

use jiff::Timestamp;
use quiver_store::pipeline::{
    BreakerConfig, BreakerState, Checksum, ChecksumOutcome, Claim, ControlChange, EnvResult,
    HistoryRecord, ItemFilter, ItemReport, ItemStatus, QueueItem, ResultFilter,
};
use quiver_store::{AuditDiff, AuditDraft, AuditFilter, Database, NewAuditRecord};

fn t(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(1_700_000_000_000 + ms).unwrap()
}

fn item(eco: &str, name: &str, tier: i32, popularity: f64, age: i64) -> QueueItem {
    let mut i = QueueItem::new(eco, name, tier, t(age));
    i.popularity = popularity;
    i
}

fn audit(action: &str) -> quiver_store::Audit {
    Some(AuditDraft {
        record: NewAuditRecord {
            actor: "operator".into(),
            action: action.into(),
            namespace: None,
            target: "pipeline".into(),
            outcome: "allowed".into(),
            reason: None,
            diff: None,
            client: None,
        },
        diff: AuditDiff::Stored,
    })
}

fn claim(worker: &str, limit: usize, now: i64) -> Claim {
    Claim {
        worker: worker.into(),
        only: vec![],
        except: vec![],
        limit,
        now: t(now),
        lease_until: t(now + 60_000),
    }
}

fn env(environment: &str, passed: bool, blocked_by: &[&str]) -> EnvResult {
    EnvResult {
        environment: environment.into(),
        passed,
        category: (!passed).then(|| {
            if blocked_by.is_empty() {
                "no_bottles".to_string()
            } else {
                "missing_dependency".to_string()
            }
        }),
        exit_code: (!passed).then_some(1),
        message: None,
        blocked_by: blocked_by.iter().map(|s| s.to_string()).collect(),
    }
}

fn report(after: QueueItem, worker: &str, results: Vec<EnvResult>, at: i64) -> ItemReport {
    ItemReport {
        after,
        lease_of: Some(worker.into()),
        batch_id: Some("b1".into()),
        results,
        at: t(at),
    }
}

/// Queue order, leases, reports and blocks on one handle.
pub async fn run(db: &Database) {
    let p = &db.pipeline;
    let items = vec![
        item("homebrew", "low", 3, 0.9, 0),
        item("homebrew", "top", 1, 0.1, 5),
        item("cargo", "popular", 2, 0.8, 1),
        item("cargo", "older", 2, 0.5, 0),
        item("npm", "newer", 2, 0.5, 9),
    ];
    let out = p.upsert_items(items.clone(), false).await.unwrap();
    assert_eq!(out.inserted, 5);
    // Insert-if-absent leaves existing items alone; replace updates them.
    let mut changed = items[0].clone();
    changed.tier = 2;
    assert_eq!(
        p.upsert_items(vec![changed.clone()], false)
            .await
            .unwrap()
            .unchanged,
        1
    );
    assert_eq!(p.item("homebrew:low").await.unwrap().unwrap().tier, 3);
    assert_eq!(
        p.upsert_items(vec![changed], true).await.unwrap().updated,
        1
    );
    assert_eq!(p.item("homebrew:low").await.unwrap().unwrap().tier, 2);
    let mut bad = item("homebrew", "x", 1, 0.1, 0);
    bad.id = "x".into();
    assert!(p.upsert_items(vec![bad], false).await.is_err());

    // Tier first, then score (popularity), then age.
    let got = p.claim(&claim("w1", 3, 100)).await.unwrap();
    let ids: Vec<&str> = got.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["homebrew:top", "homebrew:low", "cargo:popular"]);
    assert!(got
        .iter()
        .all(|i| i.status == ItemStatus::InProgress && i.lease_owner.as_deref() == Some("w1")));
    // Filters by ecosystem, and ties broken by age.
    let mut c = claim("w2", 10, 100);
    c.only = vec!["cargo".into(), "npm".into()];
    c.except = vec!["npm".into()];
    let got = p.claim(&c).await.unwrap();
    assert_eq!(
        got.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["cargo:older"]
    );
    // A request raises an item within its tier.
    let mut fresh = item("npm", "asked", 2, 0.45, 0);
    fresh.requests = 0;
    assert!(p
        .record_request(fresh.clone(), "client-a", 1)
        .await
        .unwrap());
    assert!(!p
        .record_request(fresh.clone(), "client-a", 1)
        .await
        .unwrap());
    assert!(p
        .record_request(fresh.clone(), "client-b", 1)
        .await
        .unwrap());
    assert_eq!(p.item("npm:asked").await.unwrap().unwrap().requests, 2);
    let got = p.claim(&claim("w3", 1, 100)).await.unwrap();
    assert_eq!(got[0].id, "npm:asked", "0.45 + requests beats 0.5");

    // A lease that runs out returns the item; the old worker's report is then refused.
    let got = p.claim(&claim("w4", 10, 70_000)).await.unwrap();
    let ids: HashSet<String> = got.iter().map(|i| i.id.clone()).collect();
    assert!(
        ids.contains("homebrew:top") && ids.contains("npm:newer"),
        "{ids:?}"
    );
    let mut top = p.item("homebrew:top").await.unwrap().unwrap();
    assert_eq!(top.lease_owner.as_deref(), Some("w4"));
    top.status = ItemStatus::Success;
    let stale = report(top.clone(), "w1", vec![env("linux", true, &[])], 70_001);
    assert_eq!(
        p.report(vec![stale], &BreakerConfig::default())
            .await
            .unwrap(),
        [false]
    );
    assert!(p
        .results(&ResultFilter {
            item: Some("homebrew:top".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .is_empty());

    // Mixed results: one item blocked on two environments, another passing.
    let mut low = p.item("homebrew:low").await.unwrap().unwrap();
    low.status = ItemStatus::Blocked;
    low.failure_count += 1;
    low.lease_owner = None;
    low.lease_until = None;
    let r1 = report(
        low.clone(),
        "w4",
        vec![
            env("linux-glibc-x86_64", false, &["libpng", "zlib"]),
            env("darwin-arm64", false, &["libpng"]),
        ],
        70_002,
    );
    top.lease_owner = None;
    top.lease_until = None;
    top.recipe = Some("top".into());
    let r2 = report(
        top.clone(),
        "w4",
        vec![
            env("linux-glibc-x86_64", true, &[]),
            env("darwin-arm64", false, &[]),
        ],
        70_002,
    );
    assert_eq!(
        p.report(vec![r1, r2], &BreakerConfig::default())
            .await
            .unwrap(),
        [true, true]
    );
    let low_now = p.item("homebrew:low").await.unwrap().unwrap();
    assert_eq!(low_now.status, ItemStatus::Blocked);
    assert_eq!(low_now.lease_owner, None);
    assert_eq!(low_now.recipe, None);
    assert_eq!(
        p.item("homebrew:top")
            .await
            .unwrap()
            .unwrap()
            .recipe
            .as_deref(),
        Some("top"),
        "a report writes the item's recipe"
    );
    // Items by id: those that exist, in id order, each once.
    let got = p
        .items_by_id(&[
            "homebrew:top".into(),
            "nope:missing".into(),
            "homebrew:low".into(),
            "homebrew:top".into(),
        ])
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["homebrew:low", "homebrew:top"]
    );
    assert_eq!(got[0], low_now);
    assert!(p.items_by_id(&[]).await.unwrap().is_empty());
    let history = p
        .results(&ResultFilter {
            item: Some("homebrew:low".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].batch_id.as_deref(), Some("b1"));
    let failures = p
        .results(&ResultFilter {
            failures_only: true,
            environment: Some("darwin-arm64".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failures.len(), 2);
    assert!(failures.iter().all(|f| !f.result.passed));
    let by_cat = p
        .results(&ResultFilter {
            category: Some("missing_dependency".into()),
            ecosystem: Some("homebrew".into()),
            since: Some(t(70_000)),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_cat.len(), 2);
    let mut blocks = p.blocks().await.unwrap();
    blocks.sort_by(|a, b| (&a.environment, &a.dependency).cmp(&(&b.environment, &b.dependency)));
    let deps: Vec<(&str, &str)> = blocks
        .iter()
        .map(|b| (b.environment.as_str(), b.dependency.as_str()))
        .collect();
    assert_eq!(
        deps,
        [
            ("darwin-arm64", "libpng"),
            ("linux-glibc-x86_64", "libpng"),
            ("linux-glibc-x86_64", "zlib")
        ]
    );
    assert!(blocks
        .iter()
        .all(|b| b.item_id == "homebrew:low" && b.popularity == 0.9));
    assert_eq!(
        p.blocks_of(&["zlib".into()]).await.unwrap().len(),
        3,
        "every block of the item"
    );
    assert!(p.blocks_of(&["openssl".into()]).await.unwrap().is_empty());

    // History older than an item's known outcome is kept as a result and changes nothing;
    // newer history becomes the outcome and replaces the blocks there.
    let old = HistoryRecord {
        item_id: "homebrew:low".into(),
        batch_id: Some("imported".into()),
        result: env("darwin-arm64", false, &["zlib"]),
        at: t(1),
    };
    p.record_history(vec![old.clone()]).await.unwrap();
    let darwin: Vec<String> = p
        .blocks()
        .await
        .unwrap()
        .into_iter()
        .filter(|b| b.environment == "darwin-arm64")
        .map(|b| b.dependency)
        .collect();
    assert_eq!(darwin, ["libpng"]);
    let states = p.env_states(Some("darwin-arm64")).await.unwrap();
    assert_eq!(states.len(), 2);
    assert!(states.iter().all(|s| !s.passed && s.at == t(70_002)));
    let newer = HistoryRecord {
        at: t(75_000),
        result: env("darwin-arm64", true, &[]),
        ..old
    };
    p.record_history(vec![newer]).await.unwrap();
    assert!(p
        .blocks()
        .await
        .unwrap()
        .iter()
        .all(|b| b.environment != "darwin-arm64"));
    let low = p
        .env_states(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.item_id == "homebrew:low")
        .count();
    assert_eq!(low, 2, "one state per environment");
    assert_eq!(
        p.results(&ResultFilter {
            item: Some("homebrew:low".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .len(),
        4
    );
    assert!(
        p.record_history(vec![HistoryRecord {
            item_id: "nowhere:x".into(),
            batch_id: None,
            result: env("linux", false, &[]),
            at: t(2),
        }])
        .await
        .is_err(),
        "history needs its item"
    );

    // Requeue moves only the states asked for, clears blocks, and is audited.
    let moved = p
        .requeue(
            &["homebrew:low".into(), "homebrew:top".into()],
            &[ItemStatus::Blocked],
            t(80_000),
            audit("pipeline.requeue"),
        )
        .await
        .unwrap();
    assert_eq!(moved, ["homebrew:low"]);
    assert_eq!(
        p.item("homebrew:low").await.unwrap().unwrap().status,
        ItemStatus::Pending
    );
    assert!(p.blocks().await.unwrap().is_empty());
    let rows = db
        .audit
        .list_audit(
            &AuditFilter {
                action: Some("pipeline.requeue".into()),
                ..Default::default()
            },
            None,
            50,
        )
        .await
        .unwrap()
        .items;
    assert_eq!(rows.len(), 1);

    let listed = p
        .items(&ItemFilter {
            ecosystem: Some("homebrew".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed[0].id < listed[1].id);
    let depth = p.depth().await.unwrap();
    let total: u64 = depth.iter().map(|d| d.count).sum();
    assert_eq!(total, 6);
    let act = p.activity(0).await.unwrap();
    assert!(act.iter().map(|a| a.claimed).sum::<u64>() >= 6);
    assert_eq!(act.iter().map(|a| a.passed).sum::<u64>(), 1);
    assert_eq!(act.iter().map(|a| a.failed).sum::<u64>(), 1);
    assert_eq!(p.all_items().await.unwrap().len(), 6);
}

/// Breakers, valves, checksums.
pub async fn valves(db: &Database) {
    let p = &db.pipeline;
    let cfg = BreakerConfig {
        window: 10,
        min_results: 4,
        threshold: 0.75,
        cooldown_ms: 1000,
    };
    let mut items = Vec::new();
    for n in 0..6 {
        items.push(item("pypi", &format!("p{n}"), 2, 0.1, n));
    }
    p.upsert_items(items, false).await.unwrap();
    let got = p.claim(&claim("w", 6, 0)).await.unwrap();
    assert_eq!(got.len(), 6);
    let reports: Vec<ItemReport> = got
        .iter()
        .take(4)
        .map(|i| {
            let mut a = i.clone();
            a.status = ItemStatus::Failed;
            report(a, "w", vec![env("linux", false, &[])], 10)
        })
        .collect();
    p.report(reports, &cfg).await.unwrap();
    let k = p
        .controls()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.ecosystem == "pypi")
        .unwrap();
    assert_eq!(k.breaker, BreakerState::Open);
    assert_eq!(k.breaker_at(t(1010), &cfg), BreakerState::HalfOpen);
    let mut a = got[4].clone();
    a.status = ItemStatus::Success;
    p.report(
        vec![report(a, "w", vec![env("linux", true, &[])], 1010)],
        &cfg,
    )
    .await
    .unwrap();
    let k = p
        .controls()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.ecosystem == "pypi")
        .unwrap();
    assert_eq!(k.breaker, BreakerState::Closed);

    let k = p
        .change_control(
            "pypi",
            ControlChange::Pause {
                reason: "upstream outage".into(),
            },
            t(2000),
            audit("pipeline.pause"),
        )
        .await
        .unwrap();
    assert!(k.paused);
    assert_eq!(k.reason.as_deref(), Some("upstream outage"));
    let k = p
        .change_control(
            "pypi",
            ControlChange::RateLimit(Some(5)),
            t(2001),
            audit("pipeline.rate"),
        )
        .await
        .unwrap();
    assert!(k.paused, "other valves kept");
    p.count_claims(&[("pypi".into(), 3)], t(2002))
        .await
        .unwrap();
    let k = p
        .controls()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.ecosystem == "pypi")
        .unwrap();
    assert_eq!(k.claims_left(t(2003)), Some(2));
    let k = p
        .change_control(
            "pypi",
            ControlChange::Resume,
            t(2004),
            audit("pipeline.resume"),
        )
        .await
        .unwrap();
    assert!(!k.paused && k.claims_per_hour == Some(5));
    let rows = db
        .audit
        .list_audit(
            &AuditFilter {
                action: Some("pipeline.pause".into()),
                ..Default::default()
            },
            None,
            50,
        )
        .await
        .unwrap()
        .items;
    assert_eq!(rows.len(), 1);

    let c = Checksum {
        recipe: "ripgrep".into(),
        version: "14.1.0".into(),
        environment: "linux-glibc-x86_64".into(),
        asset: "ripgrep-14.1.0-x86_64.tar.gz".into(),
        checksum: "sha256:aa".into(),
    };
    assert_eq!(
        p.record_checksum(&c, t(1), audit("pipeline.checksum"))
            .await
            .unwrap(),
        ChecksumOutcome::New
    );
    assert_eq!(
        p.record_checksum(&c, t(2), audit("pipeline.checksum"))
            .await
            .unwrap(),
        ChecksumOutcome::Same
    );
    let drifted = Checksum {
        checksum: "sha256:bb".into(),
        ..c.clone()
    };
    let ChecksumOutcome::Drift(alert) = p
        .record_checksum(&drifted, t(3), audit("pipeline.checksum"))
        .await
        .unwrap()
    else {
        panic!("a changed checksum is drift");
    };
    assert_eq!(
        (alert.expected.as_str(), alert.observed.as_str()),
        ("sha256:aa", "sha256:bb")
    );
    // The same drift again is the same alert, not a second one.
    assert!(matches!(
        p.record_checksum(&drifted, t(4), audit("pipeline.checksum"))
            .await
            .unwrap(),
        ChecksumOutcome::Drift(_)
    ));
    // Another asset is its own observation.
    let other = Checksum {
        environment: "darwin-arm64".into(),
        ..drifted
    };
    assert_eq!(
        p.record_checksum(&other, t(5), None).await.unwrap(),
        ChecksumOutcome::New
    );
    assert_eq!(
        p.checksum_alerts(Some("ripgrep"), 10).await.unwrap().len(),
        1
    );
    assert!(p.checksum_alerts(Some("fd"), 10).await.unwrap().is_empty());
    let rows = db
        .audit
        .list_audit(
            &AuditFilter {
                action: Some("pipeline.checksum".into()),
                ..Default::default()
            },
            None,
            50,
        )
        .await
        .unwrap()
        .items;
    assert_eq!(rows.len(), 1, "one audit row per alert");
}

/// Concurrent claims from two handles take every item exactly once.
pub async fn concurrent_claims(a: Database, b: Database) {
    let n = 300;
    let items: Vec<QueueItem> = (0..n)
        .map(|i| item("cargo", &format!("c{i:04}"), 2, (i % 7) as f64 / 10.0, i))
        .collect();
    a.pipeline.upsert_items(items, false).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..6 {
        let db = if w % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = db
                    .pipeline
                    .claim(&claim(&format!("w{w}"), 7, 0))
                    .await
                    .unwrap();
                if got.is_empty() {
                    break;
                }
                mine.extend(got.into_iter().map(|i| i.id));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), n as usize, "every item claimed once");
    assert_eq!(unique.len(), n as usize);
}
