//! The device-code store checks on SQLite.

use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_codes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = quiver_sqlite::SqliteStore::open(dir.path().join("q.db")).unwrap();
    quiver_store::device::conformance::run(Arc::new(store)).await;
}
