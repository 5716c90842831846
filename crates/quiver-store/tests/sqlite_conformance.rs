//! The conformance suite against the SQLite backend, one fresh database per test.

use std::sync::Arc;

use quiver_store::conformance::TestStore;
use quiver_store::SqliteStore;

async fn sqlite() -> Option<TestStore> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("quiver.db")).expect("open sqlite");
    Some(TestStore {
        store: Arc::new(store),
        guard: Box::new(dir),
    })
}

quiver_store::conformance_suite!(sqlite());

#[test]
fn reopening_runs_no_migration_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    drop(SqliteStore::open(&path).unwrap());
    SqliteStore::open(&path).unwrap();
}
