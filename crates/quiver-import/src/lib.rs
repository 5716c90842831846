//! Streaming importers into a quiver store.
//!
//! Each reader yields `Result<ImportRecord, Rejected>` lazily; [`run`](crate) feeds them to
//! the store in batched transactions, so memory stays constant and an interrupted import
//! leaves the store consistent (every committed batch is whole) and can simply be re-run.

pub mod dataset;

use serde::Serialize;

/// A record an importer could not take, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// 1-based line in the source file, where known.
    pub line: Option<u64>,
    /// The record's name, where it could be read.
    pub name: Option<String>,
    pub reason: String,
}
