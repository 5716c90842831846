//! Every conformance suite against the SQLite backend, one fresh database per test.

use std::path::PathBuf;

use quiver_conformance::{Opener, TestDatabase};
use quiver_sqlite::SqliteStore;
use quiver_store::{Database, JobQueue, JobState, NewJob};

/// Opens the test's database file again (another handle, or a restart).
struct SqliteOpener(PathBuf);

#[async_trait::async_trait]
impl Opener for SqliteOpener {
    async fn open(&self) -> Database {
        quiver_sqlite::open(&self.0).expect("reopen sqlite")
    }
}

/// A database in a fresh temporary directory: every suite's factory.
async fn sqlite() -> Option<TestDatabase> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("quiver.db");
    Some(TestDatabase {
        db: quiver_sqlite::open(&path).expect("open sqlite"),
        opener: Box::new(SqliteOpener(path)),
        guard: Box::new(dir),
    })
}

quiver_conformance::conformance_suite!(sqlite());

quiver_conformance::jobs_suite!(sqlite());

quiver_conformance::accounts_suite!(sqlite());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_codes() {
    let ts = sqlite().await.unwrap();
    quiver_conformance::device::run(&ts.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_throttle() {
    let ts = sqlite().await.unwrap();
    quiver_conformance::throttle::run(&ts).await;
}

#[test]
fn reopening_runs_no_migration_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    drop(SqliteStore::open(&path).unwrap());
    SqliteStore::open(&path).unwrap();
}

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
