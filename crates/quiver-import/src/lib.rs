//! Streaming importers into a quiver store, and the export that feeds them back.
//!
//! - [`dataset`]: the benchmark data set (gzip or plain TSV snapshots of PyPI and npm).
//! - [`jsonl`]: quiver's own lossless JSONL format, one entry per line with its versions
//!   and outgoing relations.
//! - [`pipeline`]: [`import`] detects each source's format, streams its records to
//!   [`Store::import_batch`](quiver_store::Store::import_batch) in batched transactions
//!   (parsing on a blocking thread, overlapping the store's writes) and applies relations
//!   once every entry is in.
//! - [`export`](mod@export): [`export()`] writes a store back out as JSONL.
//! - [`source`]: one kind's own source file (an mlld module file, a skill, or a file a
//!   source system's reader claims) read into drafts for `quiver publish`.
//!
//! Every reader yields `Result<record, Rejected>` lazily, so memory stays constant, and
//! a bad line is a [`Rejected`] with its line number, the field at fault and the reason,
//! never a panic and never the end of the import. An interrupted import leaves the store
//! consistent (every committed batch is whole) and can simply be re-run: the store's
//! upsert makes the second run converge, and a run over unchanged data writes nothing.

pub mod dataset;
pub mod export;
pub mod formats;
mod input;
pub mod jsonl;
pub mod pipeline;
mod plan;
pub mod source;

use std::fmt;

use serde::Serialize;

pub use export::export;
pub use input::{detect_format, Format};
pub use pipeline::{
    import, FileReport, ImportOptions, ImportReport, NoProgress, Progress, RelationCounts, Source,
    Totals,
};

/// A record an importer could not take, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// The file the record came from, when a source is a folder of files (the report of
    /// a single-file source names the file already).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<std::path::PathBuf>,
    /// 1-based line in the source file, where known.
    pub line: Option<u64>,
    /// The record's name, where it could be read.
    pub name: Option<String>,
    /// The field at fault (`name`, `versions[0].version`, `relations[1].to`...), where
    /// one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong; starts with the field when there is one.
    pub reason: String,
}

impl Rejected {
    /// A rejection from an engine error, which carries the field and the reason.
    pub fn from_error(line: Option<u64>, name: Option<String>, err: &quiver_model::Error) -> Self {
        Rejected {
            file: None,
            line,
            name,
            field: err.field.clone(),
            reason: err.message.clone(),
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        if let Some(name) = &self.name {
            write!(f, "{name}: ")?;
        }
        f.write_str(&self.reason)
    }
}
