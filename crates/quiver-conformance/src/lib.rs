//! The conformance suites: what every quiver storage backend must do, one module per
//! capability. Used only by the backends' tests (`quiver-sqlite` and `quiver-postgres`
//! take it as a dev-dependency and run every suite), so no shipped binary links it.
//!
//! - [`store`]: entries, versions, relations, the feed, imports, documents, durable
//!   counters, the feed waker ([`conformance_suite!`]);
//! - [`accounts`]: users, organisations, memberships, tokens, the audit log
//!   ([`accounts_suite!`]);
//! - [`jobs`]: the durable job queue and its worker ([`jobs_suite!`]);
//! - [`device`]: device codes and outside identities ([`device::run`]);
//! - [`throttle`]: the credential throttle's GCRA counts ([`throttle::run`]);
//! - [`pipeline`]: the recipe pipeline's queue, results, blocks and valves (in
//!   [`conformance_suite!`]);
//! - [`downloads`]: counted downloads, their series and the popularity state (in
//!   [`conformance_suite!`]);
//! - [`telemetry`]: tool executions and their roll-ups (in [`conformance_suite!`]);
//! - [`derived`]: writes committed with their audit rows, feed-consumer positions, and
//!   bulk enqueueing (in [`conformance_suite!`]);
//! - [`deletion`]: per-version disable, deleting versions and entries, tombstones (in
//!   [`conformance_suite!`]);
//! - [`feed`]: the feed waker, on one handle (in [`conformance_suite!`]) and across two
//!   handles on one database ([`feed::a_write_on_another_handle_wakes_a_subscriber`],
//!   for backends shared by several nodes).
//!
//! Each check takes a fresh, empty database from a factory that the backend's test file
//! passes to the suite's macro: an async expression yielding `Option<TestDatabase>`
//! (`None`, after printing why, skips the test).

use std::any::Any;

use async_trait::async_trait;
use quiver_store::Database;

pub mod accounts;
pub mod deletion;
pub mod derived;
pub mod device;
pub mod downloads;
pub mod feed;
pub mod jobs;
pub mod pipeline;
pub mod store;
pub mod telemetry;
pub mod throttle;
pub mod webhooks;

pub use store::new_entry;

/// Opens another handle on a test's database: another node, or the same one restarted.
#[async_trait]
pub trait Opener: Send + Sync {
    async fn open(&self) -> Database;
}

/// A database for one test, a way to open more handles on it, and whatever keeps it
/// alive (a temporary directory, a schema to drop), dropped last.
pub struct TestDatabase {
    pub db: Database,
    pub opener: Box<dyn Opener>,
    pub guard: Box<dyn Any + Send>,
}

impl TestDatabase {
    /// Another handle on the same database.
    pub async fn open_another(&self) -> Database {
        self.opener.open().await
    }
}
