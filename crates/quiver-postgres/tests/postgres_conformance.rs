//! Every conformance suite against PostgreSQL, one fresh schema per test.
//!
//! Needs `QUIVER_TEST_POSTGRES_URL` (CI: `postgres://postgres@127.0.0.1:5432/test`);
//! without it every test prints `SKIPPED: QUIVER_TEST_POSTGRES_URL not set` and passes.

use std::sync::Arc;

use quiver_conformance::jobs::{JobsOpener, JobsTestStore};
use quiver_conformance::TestStore;
use quiver_postgres::testing::{test_url, TestSchema, TEST_URL_VAR};
use quiver_postgres::{PostgresOptions, PostgresStore};

/// A test store in its own schema: the conformance suite's factory.
async fn test_store() -> Option<TestStore> {
    let url = test_url()?;
    let schema = TestSchema::new(&url);
    let store = schema
        .store()
        .await
        .unwrap_or_else(|e| panic!("connecting to {TEST_URL_VAR}: {e}"));
    Some(TestStore {
        store: Arc::new(store),
        guard: Box::new(schema),
    })
}

struct SchemaOpener(PostgresOptions);

#[async_trait::async_trait]
impl JobsOpener for SchemaOpener {
    async fn open(&self) -> Arc<dyn quiver_store::JobQueue> {
        let store = PostgresStore::connect_with(self.0.clone())
            .await
            .unwrap_or_else(|e| panic!("connecting to {TEST_URL_VAR}: {e}"));
        Arc::new(store)
    }
}

/// A job queue in its own schema, with an opener of more stores on that schema (other
/// nodes, or a restart): the jobs suite's factory.
async fn jobs_test_store() -> Option<JobsTestStore> {
    let url = test_url()?;
    let schema = TestSchema::new(&url);
    let store = schema
        .store()
        .await
        .unwrap_or_else(|e| panic!("connecting to {TEST_URL_VAR}: {e}"));
    Some(JobsTestStore {
        queue: Arc::new(store),
        opener: Box::new(SchemaOpener(schema.options())),
        guard: Box::new(schema),
    })
}

quiver_conformance::conformance_suite!(test_store());

quiver_conformance::jobs_suite!(jobs_test_store());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_exposes_its_job_queue() {
    let Some(ts) = test_store().await else {
        return;
    };
    let q = ts.store.clone().job_queue().expect("postgres has jobs");
    let id = q
        .enqueue(quiver_store::NewJob::new("k", serde_json::json!({})))
        .await
        .unwrap();
    assert!(q.get_job(id).await.unwrap().is_some());
}

quiver_conformance::accounts_suite!(test_store());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_codes() {
    let Some(ts) = test_store().await else {
        return;
    };
    quiver_conformance::device::run(ts.store.clone()).await;
}
