//! The device-code store checks on PostgreSQL (skipped loudly without
//! `QUIVER_TEST_POSTGRES_URL`).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_codes_on_postgres() {
    let Some(t) = quiver_postgres::testing::test_store().await else {
        return;
    };
    quiver_store::device::conformance::run(t.store.clone()).await;
}
