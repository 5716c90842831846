//! Every conformance suite against the SQLite backend, one fresh database per test.

use std::sync::Arc;

use quiver_conformance::jobs::{JobsOpener, JobsTestStore};
use quiver_conformance::TestStore;
use quiver_sqlite::SqliteStore;
use quiver_store::{JobQueue, JobState, NewJob};

async fn sqlite() -> Option<TestStore> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("quiver.db")).expect("open sqlite");
    Some(TestStore {
        store: Arc::new(store),
        guard: Box::new(dir),
    })
}

quiver_conformance::conformance_suite!(sqlite());

#[test]
fn reopening_runs_no_migration_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    drop(SqliteStore::open(&path).unwrap());
    SqliteStore::open(&path).unwrap();
}

struct SqliteOpener(std::path::PathBuf);

#[async_trait::async_trait]
impl JobsOpener for SqliteOpener {
    async fn open(&self) -> Arc<dyn JobQueue> {
        Arc::new(SqliteStore::open(&self.0).expect("reopen sqlite"))
    }
}

async fn sqlite_jobs() -> Option<JobsTestStore> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("quiver.db");
    let store = SqliteStore::open(&path).expect("open sqlite");
    Some(JobsTestStore {
        queue: Arc::new(store),
        opener: Box::new(SqliteOpener(path)),
        guard: Box::new(dir),
    })
}

quiver_conformance::jobs_suite!(sqlite_jobs());

#[tokio::test]
async fn jobs_survive_closing_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let store = SqliteStore::open(&path).unwrap();
    let id = store
        .enqueue(NewJob::new("validate", serde_json::json!({"v": 1})).dedup_key("k"))
        .await
        .unwrap();
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    let job = store.get_job(id).await.unwrap().expect("job survived");
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(
        store
            .enqueue(NewJob::new("validate", serde_json::json!({})).dedup_key("k"))
            .await
            .unwrap(),
        id
    );
}

#[tokio::test]
async fn the_store_exposes_its_job_queue() {
    let ts = sqlite().await.unwrap();
    let q = ts.store.clone().job_queue().expect("sqlite has jobs");
    let id = q
        .enqueue(NewJob::new("k", serde_json::json!({})))
        .await
        .unwrap();
    assert!(q.get_job(id).await.unwrap().is_some());
}

quiver_conformance::accounts_suite!(sqlite());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_codes() {
    let ts = sqlite().await.unwrap();
    quiver_conformance::device::run(ts.store.clone()).await;
}
