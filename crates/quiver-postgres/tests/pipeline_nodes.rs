//! The recipe pipeline's claims on PostgreSQL under concurrency (the bar): 8
//! workers on 2 nodes claim from 10,000 items until the queue is empty; every item is
//! claimed and reported exactly once, and none is lost when a worker is killed mid-lease
//! (its items come back once the lease has run out, and not before).
//!
//! Twice: on the store (`PipelineStore::claim` / `report`), where every claim and every
//! report's per-item answer is recorded and checked against the store's items, results and
//! activity counts; and through the engine (`Registry::pipeline_claim` /
//! `pipeline_report`). Two nodes are two handles (two connection pools) on one test schema.
//!
//! On the store, worker `a0` claims a batch with a short lease and is killed (its task
//! aborted) without reporting; a restarted worker with a new identity takes its place, so
//! 8 workers keep draining the queue. The checks: every item ends `success`; each item's
//! success is applied exactly once; the killed worker's items are each claimed again by
//! another worker, only after its lease; no two claims of an item overlap in their leases;
//! a late report of the killed worker is refused.
//!
//! Needs `QUIVER_TEST_POSTGRES_URL` (set by `.ci/run`); says so loudly and passes without.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use quiver_engine::pipeline::{ClaimRequest, ItemResults, NewItem, Report};
use quiver_engine::{Caller, EngineConfig, Registry};
use quiver_postgres::testing::{test_url, TestSchema};
use quiver_postgres::PostgresStore;
use quiver_store::pipeline::{
    BreakerConfig, Claim, EnvResult, ItemFilter, ItemReport, ItemStatus, PipelineStore, QueueItem,
    ResultFilter,
};
use quiver_store::Database;

const ITEMS: usize = 10_000;
const CHUNK: usize = 1_000;
const ECOSYSTEMS: [&str; 4] = ["homebrew", "cargo", "npm", "pypi"];
const ENVIRONMENT: &str = "linux-glibc-x86_64";
/// The lease of the workers that report.
const LEASE_MS: i64 = 30_000;
/// The lease of the batch the killed worker never reports.
const KILLED_LEASE_MS: i64 = 2_000;
const KILLED_BATCH: usize = 40;
/// The whole run (claims until empty) must end within this.
const DEADLINE: Duration = Duration::from_secs(120);

/// One claim of one item.
#[derive(Debug, Clone)]
struct Claimed {
    item: String,
    worker: String,
    at: i64,
    lease_until: i64,
}

#[derive(Default)]
struct Log {
    claims: Vec<Claimed>,
    /// (item, worker) of every report the store applied.
    applied: Vec<(String, String)>,
    /// (item, worker) of every report the store refused.
    refused: Vec<(String, String)>,
    claim_calls: u64,
    empty_claims: u64,
}

type SharedLog = Arc<Mutex<Log>>;

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn after(t: Timestamp, millis: i64) -> Timestamp {
    Timestamp::from_millisecond(t.as_millisecond() + millis).unwrap()
}

/// A small deterministic generator (no `rand` dependency): batch sizes per worker.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// A node: its own pool (a few connections more than its 4 workers use at once).
async fn node(schema: &TestSchema) -> Database {
    PostgresStore::connect_with(schema.options().max_connections(6))
        .await
        .unwrap()
        .database()
}

fn queue(at: Timestamp) -> Vec<QueueItem> {
    (0..ITEMS)
        .map(|i| {
            let eco = ECOSYSTEMS[i % ECOSYSTEMS.len()];
            let mut q = QueueItem::new(eco, &format!("pkg-{i:05}"), 1 + (i % 3) as i32, at);
            // Varied, with ties (the claim order breaks them by age, then id).
            q.popularity = ((i * 7919) % 1000) as f64 / 1000.0;
            q.requests = (i % 7) as i64;
            q.ord = i as i64;
            q
        })
        .collect()
}

/// Items still to be done (pending or leased).
async fn open_items(p: &dyn PipelineStore) -> u64 {
    p.depth()
        .await
        .unwrap()
        .iter()
        .filter(|d| matches!(d.status, ItemStatus::Pending | ItemStatus::InProgress))
        .map(|d| d.count)
        .sum()
}

/// Claim with a lease of `lease_ms`, recording what was taken.
async fn claim(
    p: &dyn PipelineStore,
    log: &SharedLog,
    worker: &str,
    limit: usize,
    lease_ms: i64,
) -> Vec<QueueItem> {
    let now = Timestamp::now();
    let lease_until = after(now, lease_ms);
    let items = p
        .claim(&Claim {
            worker: worker.to_string(),
            only: vec![],
            except: vec![],
            limit,
            now,
            lease_until,
        })
        .await
        .unwrap();
    assert!(items.len() <= limit, "a claim returned more than its limit");
    let mut l = log.lock().unwrap();
    l.claim_calls += 1;
    if items.is_empty() {
        l.empty_claims += 1;
    }
    for i in &items {
        assert_eq!(i.status, ItemStatus::InProgress);
        assert_eq!(i.lease_owner.as_deref(), Some(worker));
        assert_eq!(i.lease_until, Some(lease_until));
        l.claims.push(Claimed {
            item: i.id.clone(),
            worker: worker.to_string(),
            at: ms(now),
            lease_until: ms(lease_until),
        });
    }
    items
}

/// A worker: claims batches of 1 to 50, "processes" them and reports each a success,
/// until a claim finds nothing and nothing is pending or leased any more.
async fn worker(db: Database, log: SharedLog, name: String, seed: u64) {
    let p = &*db.pipeline;
    let breaker = BreakerConfig::default();
    let mut rng = Lcg(seed);
    let mut batch = 0u64;
    loop {
        let limit = 1 + (rng.next() % 50) as usize;
        let items = claim(p, &log, &name, limit, LEASE_MS).await;
        if items.is_empty() {
            if open_items(p).await == 0 {
                return;
            }
            // Others hold leases (a live worker's, or the killed one's until it runs out).
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        batch += 1;
        // Processing: a yield now and then so the workers interleave.
        if batch.is_multiple_of(3) {
            tokio::task::yield_now().await;
        }
        let at = Timestamp::now();
        let reports: Vec<ItemReport> = items
            .into_iter()
            .map(|mut after| {
                after.status = ItemStatus::Success;
                after.lease_owner = None;
                after.lease_until = None;
                after.retries = 0;
                after.next_retry_at = None;
                after.recipe = Some(after.name.clone());
                after.updated_at = at;
                ItemReport {
                    after,
                    lease_of: Some(name.clone()),
                    batch_id: Some(format!("{name}/{batch}")),
                    results: vec![EnvResult {
                        environment: ENVIRONMENT.to_string(),
                        passed: true,
                        category: None,
                        exit_code: Some(0),
                        message: None,
                        blocked_by: vec![],
                    }],
                    at,
                }
            })
            .collect();
        let ids: Vec<String> = reports.iter().map(|r| r.after.id.clone()).collect();
        let applied = p.report(reports, &breaker).await.unwrap();
        assert_eq!(applied.len(), ids.len(), "one answer per report");
        let mut l = log.lock().unwrap();
        for (id, ok) in ids.into_iter().zip(applied) {
            if ok {
                l.applied.push((id, name.clone()));
            } else {
                l.refused.push((id, name.clone()));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_eight_workers_on_two_nodes_claim_each_item_once_and_a_killed_workers_items_return() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let a = node(&schema).await;
    let b = node(&schema).await;

    // 1. The queue, in chunks, half through each node.
    let loaded = Instant::now();
    let created = Timestamp::now();
    let all = queue(created);
    let all_ids: BTreeSet<String> = all.iter().map(|i| i.id.clone()).collect();
    for (n, chunk) in all.chunks(CHUNK).enumerate() {
        let db = if n.is_multiple_of(2) { &a } else { &b };
        let out = db
            .pipeline
            .upsert_items(chunk.to_vec(), false)
            .await
            .unwrap();
        assert_eq!(out.inserted, chunk.len() as u64);
    }
    eprintln!(
        "loaded {ITEMS} items in {:.2}s",
        loaded.elapsed().as_secs_f64()
    );
    assert_eq!(open_items(&*a.pipeline).await, ITEMS as u64);

    // 2. The workers. `a0` claims with a short lease and is killed before it reports.
    let log: SharedLog = Arc::new(Mutex::new(Log::default()));
    let started = Instant::now();
    let (claimed_tx, claimed_rx) = tokio::sync::oneshot::channel::<Vec<QueueItem>>();
    let victim = {
        let db = a.clone();
        let log = log.clone();
        tokio::spawn(async move {
            let items = claim(&*db.pipeline, &log, "a0", KILLED_BATCH, KILLED_LEASE_MS).await;
            let _ = claimed_tx.send(items);
            // "Processing" forever: killed before it reports.
            std::future::pending::<()>().await;
        })
    };
    let mut tasks = Vec::new();
    for w in 1..8u64 {
        let (db, name) = if w < 4 {
            (a.clone(), format!("a{w}"))
        } else {
            (b.clone(), format!("b{}", w - 4))
        };
        tasks.push(tokio::spawn(worker(db, log.clone(), name, w)));
    }
    let killed_items = claimed_rx.await.unwrap();
    victim.abort();
    assert!(victim.await.unwrap_err().is_cancelled());
    assert_eq!(
        killed_items.len(),
        KILLED_BATCH,
        "the killed worker got a full batch"
    );
    let killed_lease_until = ms(killed_items[0].lease_until.unwrap());
    // The worker comes back under a new identity: 8 workers keep draining the queue.
    tasks.push(tokio::spawn(worker(
        a.clone(),
        log.clone(),
        "a0-restarted".to_string(),
        0,
    )));
    // While the lease runs, nobody else holds the killed worker's items.
    tokio::time::sleep(Duration::from_millis(KILLED_LEASE_MS as u64 / 2)).await;
    if ms(Timestamp::now()) < killed_lease_until {
        for i in &killed_items {
            let now = a.pipeline.item(&i.id).await.unwrap().unwrap();
            assert!(
                now.status == ItemStatus::InProgress && now.lease_owner.as_deref() == Some("a0")
                    || ms(Timestamp::now()) > killed_lease_until,
                "{} changed hands during the killed worker's lease: {now:?}",
                i.id
            );
        }
    }
    let joined = tokio::time::timeout(DEADLINE, futures_join(tasks)).await;
    assert!(
        joined.is_ok(),
        "the workers did not drain the queue in {DEADLINE:?}"
    );
    let took = started.elapsed();
    eprintln!(
        "8 workers on 2 nodes drained {ITEMS} items in {:.2}s: {:.0} items/s",
        took.as_secs_f64(),
        ITEMS as f64 / took.as_secs_f64(),
    );

    // 3. The checks.
    let log = std::mem::take(&mut *log.lock().unwrap());
    eprintln!(
        "{} claim calls ({} empty), {} item claims, {} reports applied, {} refused",
        log.claim_calls,
        log.empty_claims,
        log.claims.len(),
        log.applied.len(),
        log.refused.len()
    );

    // Every item ended a success, with no lease left, read through the other node.
    let items = b.pipeline.all_items().await.unwrap();
    assert_eq!(items.len(), ITEMS);
    for i in &items {
        assert_eq!(
            i.status,
            ItemStatus::Success,
            "{} did not end a success",
            i.id
        );
        assert_eq!(i.lease_owner, None, "{} kept a lease", i.id);
        assert_eq!(i.lease_until, None, "{} kept a lease", i.id);
        assert_eq!(i.recipe.as_deref(), Some(i.name.as_str()));
    }
    assert_eq!(open_items(&*b.pipeline).await, 0);

    // Each item's success was applied exactly once, and nothing was refused (no live
    // worker's 30 s lease ran out).
    assert!(log.refused.is_empty(), "reports refused: {:?}", log.refused);
    let mut applied_by: BTreeMap<&str, &str> = BTreeMap::new();
    for (item, w) in &log.applied {
        if let Some(first) = applied_by.insert(item, w) {
            panic!("{item} was reported a success twice (by {first} and {w})");
        }
    }
    assert_eq!(
        applied_by
            .keys()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>(),
        all_ids,
        "the items successfully reported are all the items"
    );

    // Claims: each item claimed once, except the killed worker's, claimed twice — the
    // second time by another worker, only after the lease had run out. No two claims of
    // an item overlap in their leases, and the last claim is the one that reported.
    let mut claims_of: BTreeMap<&str, Vec<&Claimed>> = BTreeMap::new();
    for c in &log.claims {
        claims_of.entry(&c.item).or_default().push(c);
    }
    assert_eq!(claims_of.len(), ITEMS, "every item was claimed");
    let killed: BTreeSet<&str> = killed_items.iter().map(|i| i.id.as_str()).collect();
    for (item, cs) in &mut claims_of {
        cs.sort_by_key(|c| c.at);
        for pair in cs.windows(2) {
            assert!(
                pair[1].at > pair[0].lease_until,
                "{item} was claimed by {} at {} while {}'s lease ran until {}",
                pair[1].worker,
                pair[1].at,
                pair[0].worker,
                pair[0].lease_until
            );
        }
        let last = cs.last().unwrap();
        assert_eq!(
            applied_by[item], last.worker,
            "{item}'s success came from its last claim"
        );
        if killed.contains(item) {
            assert_eq!(cs.len(), 2, "{item} (killed worker's): {cs:?}");
            assert_eq!(cs[0].worker, "a0");
            assert_ne!(cs[1].worker, "a0");
            assert!(cs[1].at > killed_lease_until);
        } else {
            assert_eq!(cs.len(), 1, "{item} was claimed more than once: {cs:?}");
            assert_ne!(cs[0].worker, "a0");
        }
    }
    // Who took the killed worker's items back, and when.
    let takers: BTreeSet<&str> = killed
        .iter()
        .map(|i| claims_of[i][1].worker.as_str())
        .collect();
    let back: Vec<i64> = killed
        .iter()
        .map(|i| claims_of[i][1].at - claims_of[i][0].at)
        .collect();
    eprintln!(
        "the killed worker's items (lease {KILLED_LEASE_MS} ms) were claimed again \
         {}..{} ms after its claim, by {takers:?}",
        back.iter().min().unwrap(),
        back.iter().max().unwrap()
    );
    // Work was spread over both nodes.
    let per_worker = log.applied.iter().fold(BTreeMap::new(), |mut m, (_, w)| {
        *m.entry(w.as_str()).or_insert(0u64) += 1;
        m
    });
    eprintln!("items per worker: {per_worker:?}");
    assert!(per_worker.keys().any(|w| w.starts_with('a')));
    assert!(per_worker.keys().any(|w| w.starts_with('b')));

    // The store's records agree: one passing result per item, by the worker whose report
    // applied; the hourly counts saw every claim and every success.
    let results = a
        .pipeline
        .results(&ResultFilter {
            limit: 2 * ITEMS,
            ..ResultFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(results.len(), ITEMS, "one result per item");
    for r in &results {
        assert!(r.result.passed);
        assert_eq!(
            r.worker.as_deref(),
            Some(applied_by[r.item_id.as_str()]),
            "{}'s result",
            r.item_id
        );
    }
    let activity = a.pipeline.activity(0).await.unwrap();
    let claimed: u64 = activity.iter().map(|x| x.claimed).sum();
    let passed: u64 = activity.iter().map(|x| x.passed).sum();
    let failed: u64 = activity.iter().map(|x| x.failed).sum();
    assert_eq!(claimed, (ITEMS + KILLED_BATCH) as u64);
    assert_eq!(passed, ITEMS as u64);
    assert_eq!(failed, 0);

    // A zombie: the killed worker's report arriving late is refused for every item.
    let zombie: Vec<ItemReport> = killed_items
        .iter()
        .map(|i| {
            let mut after = i.clone();
            after.status = ItemStatus::Failed;
            after.lease_owner = None;
            after.lease_until = None;
            ItemReport {
                after,
                lease_of: Some("a0".into()),
                batch_id: None,
                results: vec![],
                at: Timestamp::now(),
            }
        })
        .collect();
    let applied = b
        .pipeline
        .report(zombie, &BreakerConfig::default())
        .await
        .unwrap();
    assert!(
        applied.iter().all(|ok| !ok),
        "a stale lease's report applied"
    );
    let still = a
        .pipeline
        .items(&ItemFilter {
            status: Some(ItemStatus::Success),
            limit: 2 * ITEMS,
            ..ItemFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(still.len(), ITEMS, "the refused report changed nothing");
}

/// Wait for every task, re-raising a panic of any.
async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        t.await.unwrap();
    }
}

// The same through the engine (`Registry::pipeline_claim` / `pipeline_report`), each node
// with its own pool and engine.

async fn engine_node(schema: &TestSchema, dir: &std::path::Path) -> Arc<Registry> {
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
    let a = engine_node(&schema, dir_a.path()).await;
    let b = engine_node(&schema, dir_b.path()).await;
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
