//! The recipe pipeline's claims across nodes: 8 workers on 2 nodes (each its own
//! connection pool and engine) claim from 10,000 items until the queue is empty. Every
//! item is reported exactly once, and the items of a worker killed mid-lease come back
//! when its lease runs out and are done by the others.
//!
//! Needs `QUIVER_TEST_POSTGRES_URL` (set by `.ci/run`); says so loudly and passes without.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_engine::pipeline::{ClaimRequest, ItemResults, NewItem, Report};
use quiver_engine::{Caller, EngineConfig, Registry};
use quiver_postgres::testing::{test_url, TestSchema};
use quiver_store::pipeline::{EnvResult, ItemStatus};

const ITEMS: usize = 10_000;

async fn node(schema: &TestSchema, dir: &std::path::Path) -> Arc<Registry> {
    Registry::open(schema.database().await.unwrap(), EngineConfig::new(dir))
        .await
        .unwrap()
}

fn pass() -> Vec<EnvResult> {
    vec![EnvResult {
        environment: "linux-glibc-x86_64".into(),
        passed: true,
        category: None,
        exit_code: None,
        message: None,
        blocked_by: vec![],
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_workers_on_two_nodes_take_every_item_once_and_a_killed_lease_comes_back() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(&schema, dir_a.path()).await;
    let b = node(&schema, dir_b.path()).await;
    let items: Vec<NewItem> = (0..ITEMS)
        .map(|i| NewItem {
            id: format!("homebrew:pkg{i:05}"),
            tier: Some(1 + (i % 3) as i32),
            popularity: Some((i % 97) as f64 / 100.0),
            monthly_downloads: None,
            confidence: None,
            recipe: None,
            status: None,
        })
        .collect();
    a.pipeline_add(&Caller::Operator, items, false)
        .await
        .unwrap();

    // The killed worker: claims a batch with a short lease and never reports.
    let killed = a
        .pipeline_claim(
            &Caller::Operator,
            ClaimRequest {
                worker: "killed".into(),
                limit: 50,
                ecosystems: vec![],
                lease_seconds: Some(2),
            },
        )
        .await
        .unwrap();
    let killed_ids: Vec<String> = killed.items.iter().map(|i| i.id.clone()).collect();
    assert_eq!(killed_ids.len(), 50);

    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let r = if w % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let worker = format!("w{w}");
            let mut done: Vec<(String, Instant)> = Vec::new();
            let mut idle_since: Option<Instant> = None;
            loop {
                let got = r
                    .pipeline_claim(
                        &Caller::Operator,
                        ClaimRequest {
                            worker: worker.clone(),
                            limit: 1 + (w * 7) % 50,
                            ecosystems: vec![],
                            lease_seconds: Some(60),
                        },
                    )
                    .await
                    .unwrap();
                if got.items.is_empty() {
                    // Nothing claimable: finished once nothing is pending or leased, else
                    // wait for the killed worker's lease to run out.
                    let st = r.pipeline_status().await.unwrap();
                    let open = st.totals["pending"] + st.totals["in_progress"];
                    if open == 0 {
                        break;
                    }
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    assert!(
                        since.elapsed() < Duration::from_secs(60),
                        "{open} items never came back"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                idle_since = None;
                let report = Report {
                    worker: worker.clone(),
                    batch_id: None,
                    items: got
                        .items
                        .iter()
                        .map(|i| ItemResults {
                            id: i.id.clone(),
                            results: pass(),
                            recipe: None,
                            version: None,
                            requires_manual: false,
                        })
                        .collect(),
                };
                for o in r.pipeline_report(&Caller::Operator, report).await.unwrap() {
                    assert!(o.applied, "{} held by {worker} was not applied", o.id);
                    done.push((o.id, Instant::now()));
                }
            }
            done
        }));
    }
    let mut reported: HashMap<String, usize> = HashMap::new();
    let mut killed_done_after = Duration::ZERO;
    for t in tasks {
        for (id, at) in t.await.unwrap() {
            if killed_ids.contains(&id) {
                killed_done_after = killed_done_after.max(at - started);
            }
            *reported.entry(id).or_default() += 1;
        }
    }
    let took = started.elapsed();
    assert_eq!(reported.len(), ITEMS, "every item reported");
    assert!(reported.values().all(|n| *n == 1), "no item reported twice");
    for id in &killed_ids {
        assert!(
            reported.contains_key(id),
            "{id} of the killed worker came back"
        );
    }
    assert!(
        killed_done_after >= Duration::from_secs(1),
        "the killed worker's items waited for its lease ({killed_done_after:?})"
    );
    let st = a.pipeline_status().await.unwrap();
    assert_eq!(st.totals[ItemStatus::Success.as_str()], ITEMS as u64);
    eprintln!(
        "{ITEMS} items through 8 workers on 2 nodes in {took:?} ({:.0} items/s)",
        ITEMS as f64 / took.as_secs_f64()
    );
}
