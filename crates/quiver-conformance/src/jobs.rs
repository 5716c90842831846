//! The job queue's conformance suite: what every [`JobQueue`] backend must do.
//!
//! A backend's test file instantiates every check with [`jobs_suite!`](crate::jobs_suite),
//! passing an async factory of [`TestDatabase`]s (a fresh, empty database each). Time is
//! passed explicitly (`*_at` methods), so backoff and lease expiry are stepped through
//! without sleeping.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use quiver_model::ErrorCode;
use serde_json::json;

use quiver_store::jobs::{backoff, Job, JobCounts, JobFilter, JobQueue, JobState, NewJob};
use quiver_store::worker::{Handler, Worker, WorkerOptions};

use crate::TestDatabase;

const LEASE: Duration = Duration::from_secs(60);

fn t0() -> Timestamp {
    // A fixed "now", well in the future of any real clock used by enqueue defaults.
    Timestamp::from_second(2_000_000_000).unwrap()
}

fn plus(t: Timestamp, ms: i64) -> Timestamp {
    t + SignedDuration::from_millis(ms)
}

fn kinds(k: &[&str]) -> Vec<String> {
    k.iter().map(|s| s.to_string()).collect()
}

pub async fn enqueue_take_complete(t: &TestDatabase) {
    let q = &*t.db.jobs;
    let now = t0();
    let id = q
        .enqueue_at(NewJob::new("validate", json!({"entry": 7})), now)
        .await
        .unwrap();
    let job = q.get_job(id).await.unwrap().expect("job exists");
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.payload, json!({"entry": 7}));
    assert_eq!((job.attempts, job.run_at, job.created_at), (0, now, now));
    assert!(q.get_job(id + 1000).await.unwrap().is_none());

    // Another kind's worker does not see it; a job due later is not taken yet.
    assert!(q
        .take_at("w1", &kinds(&["reindex"]), LEASE, now)
        .await
        .unwrap()
        .is_none());
    let later = q
        .enqueue_at(
            NewJob::new("validate", json!(2)).run_at(plus(now, 5_000)),
            now,
        )
        .await
        .unwrap();

    let taken = q
        .take_at("w1", &kinds(&["validate", "reindex"]), LEASE, now)
        .await
        .unwrap()
        .expect("a due job");
    assert_eq!(taken.id, id);
    assert_eq!(taken.state, JobState::Running);
    assert_eq!(taken.attempts, 1);
    assert_eq!(taken.locked_by.as_deref(), Some("w1"));
    assert_eq!(taken.locked_until, Some(plus(now, 60_000)));
    assert!(
        q.take_at("w2", &[], LEASE, now).await.unwrap().is_none(),
        "the held job is not handed out twice, the later one is not due"
    );

    let err = q.complete_at(id, "w2", now).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict, "only the holder completes");
    let err = q.complete_at(id + 1000, "w1", now).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    let done = q.complete_at(id, "w1", plus(now, 10)).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.finished_at, Some(plus(now, 10)));
    assert_eq!(done.locked_by, None);
    let err = q.complete_at(id, "w1", now).await.unwrap_err();
    assert_eq!(
        err.code,
        ErrorCode::Conflict,
        "a finished job is held by nobody"
    );

    let next = q
        .take_at("w2", &[], LEASE, plus(now, 5_000))
        .await
        .unwrap()
        .expect("due now");
    assert_eq!(next.id, later);

    let counts = q.job_counts().await.unwrap();
    assert_eq!(
        (counts.queued, counts.running, counts.succeeded, counts.dead),
        (0, 1, 1, 0)
    );
    let succeeded = q
        .list_jobs(
            &JobFilter {
                states: vec![JobState::Succeeded],
                kinds: vec![],
            },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        succeeded.items.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![id]
    );

    // Pruning drops succeeded jobs finished before the cutoff, nothing else.
    assert_eq!(q.prune_jobs(plus(now, 10)).await.unwrap(), 0);
    assert_eq!(q.prune_jobs(plus(now, 11)).await.unwrap(), 1);
    assert!(q.get_job(id).await.unwrap().is_none());
    assert!(q.get_job(later).await.unwrap().is_some());
}

pub async fn listing_pages_newest_first(t: &TestDatabase) {
    let q = &*t.db.jobs;
    let mut ids = Vec::new();
    for i in 0..5 {
        let kind = if i % 2 == 0 { "a" } else { "b" };
        ids.push(
            q.enqueue_at(NewJob::new(kind, json!(i)), t0())
                .await
                .unwrap(),
        );
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = q
            .list_jobs(&JobFilter::default(), cursor.as_deref(), 2)
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|j| j.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);
    let only_b = q
        .list_jobs(
            &JobFilter {
                states: vec![JobState::Queued, JobState::Dead],
                kinds: vec!["b".into()],
            },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(only_b.items.len(), 2);
    assert!(only_b.items.iter().all(|j| j.kind == "b"));
    let err = q
        .list_jobs(&JobFilter::default(), Some("bogus"), 10)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidInput);
}

pub async fn dedup_returns_the_unfinished_job(t: &TestDatabase) {
    let q = &*t.db.jobs;
    let now = t0();
    let job = || NewJob::new("reindex", json!({})).dedup_key("reindex:node-1");
    let a = q.enqueue_at(job(), now).await.unwrap();
    assert_eq!(q.enqueue_at(job(), now).await.unwrap(), a, "queued dedups");
    let other = q
        .enqueue_at(
            NewJob::new("reindex", json!({})).dedup_key("reindex:node-2"),
            now,
        )
        .await
        .unwrap();
    assert_ne!(other, a);
    let plain = q
        .enqueue_at(NewJob::new("reindex", json!({})), now)
        .await
        .unwrap();
    let plain2 = q
        .enqueue_at(NewJob::new("reindex", json!({})), now)
        .await
        .unwrap();
    assert_ne!(plain, plain2, "no key, no dedup");

    let taken = q.take_at("w", &[], LEASE, now).await.unwrap().unwrap();
    assert_eq!(taken.id, a);
    assert_eq!(q.enqueue_at(job(), now).await.unwrap(), a, "running dedups");
    q.complete_at(a, "w", now).await.unwrap();
    let b = q.enqueue_at(job(), now).await.unwrap();
    assert_ne!(b, a, "a finished job's key is free again");
    assert_eq!(q.job_counts().await.unwrap().queued, 4);
}

pub async fn priority_then_run_at_order(t: &TestDatabase) {
    let q = &*t.db.jobs;
    let now = t0();
    let low_new = q
        .enqueue_at(
            NewJob::new("k", json!("low-new")).run_at(plus(now, -1_000)),
            now,
        )
        .await
        .unwrap();
    let low_old = q
        .enqueue_at(
            NewJob::new("k", json!("low-old")).run_at(plus(now, -5_000)),
            now,
        )
        .await
        .unwrap();
    let high = q
        .enqueue_at(NewJob::new("k", json!("high")).priority(10), now)
        .await
        .unwrap();
    let mid = q
        .enqueue_at(NewJob::new("k", json!("mid")).priority(5), now)
        .await
        .unwrap();
    let _future_top = q
        .enqueue_at(
            NewJob::new("k", json!("future"))
                .priority(100)
                .run_at(plus(now, 1_000)),
            now,
        )
        .await
        .unwrap();
    let mut order = Vec::new();
    while let Some(j) = q.take_at("w", &[], LEASE, now).await.unwrap() {
        order.push(j.id);
    }
    assert_eq!(order, vec![high, mid, low_old, low_new]);
}

pub async fn failures_back_off_then_dead_letter(t: &TestDatabase) {
    let q = &*t.db.jobs;
    let mut now = t0();
    let id = q
        .enqueue_at(NewJob::new("flaky", json!({})).max_attempts(3), now)
        .await
        .unwrap();
    for attempt in 1..=2u32 {
        let j = q.take_at("w", &[], LEASE, now).await.unwrap().expect("due");
        assert_eq!((j.id, j.attempts), (id, attempt));
        let failed = q
            .fail_at(id, "w", &format!("boom {attempt}"), now)
            .await
            .unwrap();
        let delay = backoff(attempt).as_millis() as i64;
        assert_eq!(failed.state, JobState::Queued);
        assert_eq!(failed.run_at, plus(now, delay));
        assert_eq!(
            failed.last_error.as_deref(),
            Some(&*format!("boom {attempt}"))
        );
        assert_eq!(failed.locked_by, None);
        assert!(
            q.take_at("w", &[], LEASE, plus(now, delay - 1))
                .await
                .unwrap()
                .is_none(),
            "not before its backoff"
        );
        now = plus(now, delay);
    }
    assert!(backoff(2) > backoff(1), "the backoff grows");
    let j = q.take_at("w", &[], LEASE, now).await.unwrap().expect("due");
    assert_eq!(j.attempts, 3);
    let err = q.fail_at(id, "other", "x", now).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict, "only the holder fails it");
    let dead = q.fail_at(id, "w", "boom 3", now).await.unwrap();
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(dead.finished_at, Some(now));
    assert!(q
        .take_at("w", &[], LEASE, plus(now, 86_400_000))
        .await
        .unwrap()
        .is_none());
    let counts = q.job_counts().await.unwrap();
    assert_eq!((counts.dead, counts.queued, counts.running), (1, 0, 0));
}

pub async fn expired_lease_is_taken_again(t: &TestDatabase) {
    let q = &*t.db.jobs;
    let now = t0();
    let lease = Duration::from_secs(30);
    let id = q
        .enqueue_at(NewJob::new("k", json!({})), now)
        .await
        .unwrap();
    let first = q.take_at("w1", &[], lease, now).await.unwrap().unwrap();
    assert_eq!(first.id, id);
    // w1 dies. Until its lease ends nobody else gets the job.
    assert!(q
        .take_at("w2", &[], lease, plus(now, 29_999))
        .await
        .unwrap()
        .is_none());
    let later = plus(now, 30_000);
    let second = q.take_at("w2", &[], lease, later).await.unwrap().unwrap();
    assert_eq!(second.id, id);
    assert_eq!(second.attempts, 2);
    assert_eq!(second.locked_by.as_deref(), Some("w2"));
    assert_eq!(
        q.complete_at(id, "w1", later).await.unwrap_err().code,
        ErrorCode::Conflict,
        "the worker that lost its lease cannot complete"
    );
    assert_eq!(
        q.fail_at(id, "w1", "late", later).await.unwrap_err().code,
        ErrorCode::Conflict
    );
    q.complete_at(id, "w2", later).await.unwrap();

    // A job whose worker died during its last attempt is dead-lettered, not run again.
    let poison = q
        .enqueue_at(NewJob::new("k", json!({})).max_attempts(1), now)
        .await
        .unwrap();
    q.take_at("w1", &[], lease, now).await.unwrap().unwrap();
    assert!(q.take_at("w2", &[], lease, later).await.unwrap().is_none());
    let dead = q.get_job(poison).await.unwrap().unwrap();
    assert_eq!(dead.state, JobState::Dead);
    assert!(dead.last_error.unwrap().contains("lease expired"));
}

/// A node that restarts takes back at once what its last run held (its worker ids share a
/// prefix), and leaves other nodes' jobs alone.
pub async fn a_restarted_node_reclaims_its_jobs_at_once(t: &TestDatabase) {
    let q = &*t.db.jobs;
    let now = t0();
    let lease = Duration::from_secs(60);
    let mine = q
        .enqueue_at(NewJob::new("k", json!({})), now)
        .await
        .unwrap();
    let theirs = q
        .enqueue_at(NewJob::new("k", json!({})), now)
        .await
        .unwrap();
    assert_eq!(
        q.take_at("n1:100", &[], lease, now)
            .await
            .unwrap()
            .unwrap()
            .id,
        mine
    );
    assert_eq!(
        q.take_at("n10:7", &[], lease, now)
            .await
            .unwrap()
            .unwrap()
            .id,
        theirs
    );
    // n1 restarts as n1:200, a second later: its last run's job is due again at once.
    let restart = plus(now, 1_000);
    assert_eq!(q.reclaim_at("n1:", "n1:200", restart).await.unwrap(), 1);
    let again = q
        .take_at("n1:200", &[], lease, restart)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.id, mine);
    assert_eq!(again.attempts, 2);
    // The other node's job keeps its lease (`n10:` does not start with `n1:`), and the
    // restarted run does not release what it holds itself.
    assert!(q
        .take_at("n1:200", &[], lease, restart)
        .await
        .unwrap()
        .is_none());
    assert_eq!(q.reclaim_at("n1:", "n1:200", restart).await.unwrap(), 0);
    let held = q.get_job(theirs).await.unwrap().unwrap();
    assert_eq!(held.locked_by.as_deref(), Some("n10:7"));
}

pub async fn two_workers_never_hold_the_same_job(t: &TestDatabase) {
    const JOBS: usize = 100;
    for i in 0..JOBS {
        t.db.jobs
            .enqueue(NewJob::new("k", json!(i)).priority((i % 3) as i32))
            .await
            .unwrap();
    }
    let handles = [t.open_another().await.jobs, t.open_another().await.jobs];
    let mut tasks = Vec::new();
    for (h, q) in handles.iter().enumerate() {
        for task in 0..4 {
            let q = q.clone();
            let worker = format!("worker-{h}-{task}");
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    match q.take(&worker, &[], LEASE).await.unwrap() {
                        Some(j) => {
                            assert_eq!(j.locked_by.as_deref(), Some(&*worker));
                            got.push(j.id);
                        }
                        // SKIP LOCKED may miss a row another taker holds for an instant:
                        // stop only when nothing is queued any more.
                        None if q.job_counts().await.unwrap().queued == 0 => break,
                        None => tokio::task::yield_now().await,
                    }
                }
                got
            }));
        }
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "a job was handed to two workers");
    assert_eq!(all.len(), JOBS);
    assert_eq!(t.db.jobs.job_counts().await.unwrap().running, JOBS as u64);
}

pub async fn dead_jobs_are_retried(t: &TestDatabase) {
    let q = &*t.db.jobs;
    let now = t0();
    let id = q
        .enqueue_at(
            NewJob::new("k", json!({}))
                .max_attempts(1)
                .dedup_key("only-one"),
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        q.retry_at(id, now).await.unwrap_err().code,
        ErrorCode::Conflict,
        "a queued job is not retried"
    );
    q.take_at("w", &[], LEASE, now).await.unwrap().unwrap();
    let dead = q.fail_at(id, "w", "broken", now).await.unwrap();
    assert_eq!(dead.state, JobState::Dead);

    let later = plus(now, 1_000);
    let retried = q.retry_at(id, later).await.unwrap();
    assert_eq!(retried.state, JobState::Queued);
    assert_eq!(retried.attempts, 0);
    assert_eq!(retried.run_at, later);
    assert_eq!(retried.finished_at, None);
    let again = q.take_at("w", &[], LEASE, later).await.unwrap().unwrap();
    assert_eq!((again.id, again.attempts), (id, 1));
    q.fail_at(id, "w", "still broken", later).await.unwrap();

    // While a newer job holds the key, the dead one cannot come back.
    let newer = q
        .enqueue_at(NewJob::new("k", json!({})).dedup_key("only-one"), later)
        .await
        .unwrap();
    assert_ne!(newer, id);
    assert_eq!(
        q.retry_at(id, later).await.unwrap_err().code,
        ErrorCode::Conflict
    );
    assert_eq!(
        q.retry_at(id + 1000, later).await.unwrap_err().code,
        ErrorCode::NotFound
    );
}

pub async fn jobs_survive_reopening(t: &TestDatabase) {
    let now = t0();
    let (queued, running) = {
        let q = t.open_another().await.jobs;
        let queued = q.enqueue_at(NewJob::new("a", json!(1)), now).await.unwrap();
        let running = q
            .enqueue_at(NewJob::new("b", json!(2)).priority(1), now)
            .await
            .unwrap();
        let j = q.take_at("w1", &[], LEASE, now).await.unwrap().unwrap();
        assert_eq!(j.id, running);
        (queued, running)
    };
    let q = t.open_another().await.jobs;
    assert_eq!(
        q.get_job(queued).await.unwrap().unwrap().state,
        JobState::Queued
    );
    let r = q.get_job(running).await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.locked_by.as_deref()),
        (JobState::Running, Some("w1"))
    );
    q.complete_at(running, "w1", now).await.unwrap();
    let j = q.take_at("w2", &[], LEASE, now).await.unwrap().unwrap();
    assert_eq!(j.id, queued);
}

/// A test handler: records the payload's `n`, fails on `fail`, panics on `panic`, sleeps
/// `sleep_ms` after signalling `started`.
struct Recorder {
    ran: Arc<std::sync::Mutex<Vec<i64>>>,
    started: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl Handler for Recorder {
    fn kind(&self) -> &str {
        "rec"
    }

    async fn run(&self, job: &Job) -> Result<(), String> {
        let p = &job.payload;
        self.started.notify_one();
        if let Some(ms) = p["sleep_ms"].as_u64() {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if p["panic"].as_bool() == Some(true) {
            panic!("test handler asked to panic");
        }
        if p["fail"].as_bool() == Some(true) {
            return Err("asked to fail".into());
        }
        self.ran.lock().unwrap().push(p["n"].as_i64().unwrap_or(-1));
        Ok(())
    }
}

fn recorder() -> (
    Recorder,
    Arc<std::sync::Mutex<Vec<i64>>>,
    Arc<tokio::sync::Notify>,
) {
    let ran = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Arc::new(tokio::sync::Notify::new());
    (
        Recorder {
            ran: ran.clone(),
            started: started.clone(),
        },
        ran,
        started,
    )
}

fn fast(id: &str) -> WorkerOptions {
    WorkerOptions::new(id).poll_interval(Duration::from_millis(20))
}

/// Wait (bounded, generously) until the counts satisfy `done`.
async fn wait_for(q: &dyn JobQueue, done: impl Fn(&JobCounts) -> bool) {
    for _ in 0..3000 {
        let c = q.job_counts().await.unwrap();
        if done(&c) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("jobs did not finish: {:?}", q.job_counts().await.unwrap());
}

pub async fn worker_runs_handlers_and_records_outcomes(t: &TestDatabase) {
    let (h, ran, _) = recorder();
    let worker = Worker::new(t.db.jobs.clone(), fast("w1")).handler(h);
    assert_eq!(worker.kinds(), ["rec".to_string()]);
    let q = &*t.db.jobs;
    let ok = q
        .enqueue(NewJob::new("rec", json!({"n": 1})))
        .await
        .unwrap();
    let failing = q
        .enqueue(NewJob::new("rec", json!({"fail": true})).max_attempts(1))
        .await
        .unwrap();
    let panicking = q
        .enqueue(NewJob::new("rec", json!({"panic": true})).max_attempts(1))
        .await
        .unwrap();
    let other_kind = q.enqueue(NewJob::new("other", json!({}))).await.unwrap();
    let handle = worker.spawn();
    handle.wake();
    wait_for(q, |c| c.succeeded == 1 && c.dead == 2).await;
    handle.shutdown().await;
    assert_eq!(*ran.lock().unwrap(), vec![1]);
    assert_eq!(
        q.get_job(ok).await.unwrap().unwrap().state,
        JobState::Succeeded
    );
    let f = q.get_job(failing).await.unwrap().unwrap();
    assert_eq!(f.last_error.as_deref(), Some("asked to fail"));
    let p = q.get_job(panicking).await.unwrap().unwrap();
    assert!(p.last_error.unwrap().contains("panicked"));
    assert_eq!(
        q.get_job(other_kind).await.unwrap().unwrap().state,
        JobState::Queued,
        "a worker takes only its handlers' kinds"
    );
}

pub async fn worker_shutdown_finishes_the_job_in_hand(t: &TestDatabase) {
    let (h, ran, started) = recorder();
    let handle = Worker::new(t.db.jobs.clone(), fast("w1"))
        .handler(h)
        .spawn();
    let id =
        t.db.jobs
            .enqueue(NewJob::new("rec", json!({"n": 7, "sleep_ms": 300})))
            .await
            .unwrap();
    handle.wake();
    started.notified().await;
    handle.shutdown().await;
    assert_eq!(*ran.lock().unwrap(), vec![7]);
    let job = t.db.jobs.get_job(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Succeeded, "finished before stopping");
}

pub async fn workers_on_two_handles_run_each_job_once(t: &TestDatabase) {
    const JOBS: i64 = 30;
    let ran = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for node in 0..2 {
        let q = t.open_another().await.jobs;
        for w in 0..2 {
            let h = Recorder {
                ran: ran.clone(),
                started: Arc::new(tokio::sync::Notify::new()),
            };
            handles.push(
                Worker::new(q.clone(), fast(&format!("node{node}-w{w}")))
                    .handler(h)
                    .spawn(),
            );
        }
    }
    for n in 0..JOBS {
        t.db.jobs
            .enqueue(NewJob::new("rec", json!({"n": n})))
            .await
            .unwrap();
    }
    for h in &handles {
        h.wake();
    }
    wait_for(&*t.db.jobs, |c| c.succeeded == JOBS as u64).await;
    for h in handles {
        h.shutdown().await;
    }
    let mut ran = ran.lock().unwrap().clone();
    ran.sort_unstable();
    assert_eq!(
        ran,
        (0..JOBS).collect::<Vec<_>>(),
        "every job ran exactly once"
    );
}

/// Instantiate every job-queue check as a `#[tokio::test]` for one backend.
#[macro_export]
macro_rules! jobs_suite {
    ($factory:expr) => {
        $crate::jobs_suite!(@each $factory;
            enqueue_take_complete,
            listing_pages_newest_first,
            dedup_returns_the_unfinished_job,
            priority_then_run_at_order,
            failures_back_off_then_dead_letter,
            expired_lease_is_taken_again,
            a_restarted_node_reclaims_its_jobs_at_once,
            two_workers_never_hold_the_same_job,
            dead_jobs_are_retried,
            jobs_survive_reopening,
            worker_runs_handlers_and_records_outcomes,
            worker_shutdown_finishes_the_job_in_hand,
            workers_on_two_handles_run_each_job_once
        );
    };
    (@each $factory:expr; $($name:ident),+) => {
        mod jobs_suite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(ts) = $factory.await else { return };
                    $crate::jobs::$name(&ts).await;
                    drop(ts);
                }
            )+
        }
    };
}
