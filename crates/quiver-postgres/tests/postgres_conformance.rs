//! Every conformance suite against PostgreSQL, one fresh schema per test.
//!
//! Needs `QUIVER_TEST_POSTGRES_URL` (CI: `postgres://postgres@127.0.0.1:5432/test`);
//! without it every test prints `SKIPPED: QUIVER_TEST_POSTGRES_URL not set` and passes.

use std::time::Duration;

use quiver_conformance::{Opener, TestDatabase};
use quiver_postgres::testing::{test_url, TestSchema, TEST_URL_VAR};
use quiver_postgres::PostgresOptions;
use quiver_store::Database;

/// Connects more handles on the test's schema (other nodes, or a restart).
struct SchemaOpener(PostgresOptions);

#[async_trait::async_trait]
impl Opener for SchemaOpener {
    async fn open(&self) -> Database {
        quiver_postgres::open(self.0.clone())
            .await
            .unwrap_or_else(|e| panic!("connecting to {TEST_URL_VAR}: {e}"))
    }
}

/// A database in its own schema: every suite's factory. The feed listeners do not poll
/// (an hour between reads of the head), so only NOTIFY passes the feed waker's checks.
async fn test_database() -> Option<TestDatabase> {
    let url = test_url()?;
    let schema = TestSchema::new(&url);
    let opener = SchemaOpener(
        schema
            .options()
            .listen_poll_interval(Duration::from_secs(3600)),
    );
    Some(TestDatabase {
        db: opener.open().await,
        opener: Box::new(opener),
        guard: Box::new(schema),
    })
}

quiver_conformance::conformance_suite!(test_database());

quiver_conformance::jobs_suite!(test_database());

quiver_conformance::accounts_suite!(test_database());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_codes() {
    let Some(ts) = test_database().await else {
        return;
    };
    quiver_conformance::device::run(&ts.db).await;
}

/// The multi-node case: a write on one node's handle wakes the followers of another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_another_node_wakes_a_subscriber() {
    let Some(ts) = test_database().await else {
        return;
    };
    quiver_conformance::feed::a_write_on_another_handle_wakes_a_subscriber(&ts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_throttle() {
    let Some(ts) = test_database().await else {
        return;
    };
    quiver_conformance::throttle::run(&ts).await;
}
