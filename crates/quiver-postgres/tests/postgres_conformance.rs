//! The conformance suite against PostgreSQL, one fresh schema per test.
//!
//! Needs `QUIVER_TEST_POSTGRES_URL` (CI: `postgres://postgres@127.0.0.1:5432/test`);
//! without it every test prints `SKIPPED: QUIVER_TEST_POSTGRES_URL not set` and passes.

quiver_store::conformance_suite!(quiver_postgres::testing::test_store());

quiver_store::jobs_suite!(quiver_postgres::testing::jobs_test_store());
