//! The conformance suite against PostgreSQL, one fresh schema per test.
//!
//! Needs `QUIVER_TEST_POSTGRES_URL` (CI: `postgres://postgres@127.0.0.1:5432/test`);
//! without it every test prints `SKIPPED: QUIVER_TEST_POSTGRES_URL not set` and passes.

quiver_store::conformance_suite!(quiver_postgres::testing::test_store());

quiver_store::jobs_suite!(quiver_postgres::testing::jobs_test_store());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_exposes_its_job_queue() {
    let Some(ts) = quiver_postgres::testing::test_store().await else {
        return;
    };
    let q = ts.store.clone().job_queue().expect("postgres has jobs");
    let id = q
        .enqueue(quiver_store::NewJob::new("k", serde_json::json!({})))
        .await
        .unwrap();
    assert!(q.get_job(id).await.unwrap().is_some());
}

quiver_store::accounts_suite!(quiver_postgres::testing::test_store());
