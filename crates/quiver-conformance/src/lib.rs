//! The conformance suites: what every quiver storage backend must do, one module per
//! capability. Used only by the backends' tests (`quiver-sqlite` and `quiver-postgres`
//! take it as a dev-dependency and run every suite), so no shipped binary links it.
//!
//! - [`store`]: entries, versions, relations, the feed, imports, documents, durable
//!   counters ([`conformance_suite!`]);
//! - [`accounts`]: users, organisations, memberships, tokens, the audit log
//!   ([`accounts_suite!`]);
//! - [`jobs`]: the durable job queue and its worker ([`jobs_suite!`]);
//! - [`device`]: device codes and outside identities ([`device::run`]).
//!
//! Each check takes a fresh, empty database from a factory the backend's test file passes
//! to the suite's macro; the factory returns `None` (after printing why) to skip.

pub mod accounts;
pub mod device;
pub mod jobs;
pub mod store;

pub use store::{new_entry, TestStore};
