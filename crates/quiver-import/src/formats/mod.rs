//! The five source systems' own formats, read as they are and written back.
//!
//! Each format has a [`Reader`]: it claims the files it understands (by name and first
//! bytes) and reads a set of claimed files into a [`Bundle`] of entries (with versions and
//! relations), documents, and rejections that name the file, the line where known, and a
//! reason a person can act on. The pipeline ([`crate::pipeline`]) does the rest the same
//! way for every format: validation, duplicate detection, dry runs, writes in batches,
//! relations once every entry is in, documents, and the report.
//!
//! A reader never panics and never fails: a file it cannot parse is one rejection naming
//! the file (and the line and column of the syntax error), and the other files go on.
//!
//! | format | what it reads | entries | documents |
//! |---|---|---|---|
//! | [`blocks`] | `blocks.yml` and npm manifests with a `tpmjs` field | `tool` (tpmjs), `package` (npm) | philosophy, entities, signals, measures, shared rules, validators |
//! | [`ops`] | ops tool profiles (`tool_name` YAML) | `tool` (opsconductor) | optimization profiles, shared JSON Schemas |
//! | [`recipes`] | install recipes (TOML) and their pipeline data | `recipe` (tsuku) | queues, failures, discovery, dependency mapping, seeds |
//! | [`skills`] | skill registries, package mappings, the scraped leaderboard | `skill`, `package` (npm) | agents |
//! | [`modules`] | the mlld module registry, its per-module files and legacy files | `module` | allowlist, advisories, legacy registries |
//!
//! Exports ([`export_format`]) read the same entries and documents back into the
//! system's own files; a round trip (import, export, import) changes nothing.

pub mod blocks;
mod files;
pub mod modules;
pub mod ops;
pub mod recipes;
pub mod skills;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use quiver_model::{Deprecation, NewDocument, NewEntry, NewVersion, Relation, Status};
use quiver_store::Store;

use crate::{Format, Rejected};

/// Where a record was read: the file (relative to the import's root when the source is a
/// folder) and the 1-based line, where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: Option<u64>,
}

impl Origin {
    pub fn new(file: impl Into<PathBuf>, line: Option<u64>) -> Self {
        Origin {
            file: file.into(),
            line,
        }
    }

    /// A rejection at this origin.
    pub fn reject(
        &self,
        name: Option<String>,
        field: Option<&str>,
        reason: impl Into<String>,
    ) -> Rejected {
        Rejected {
            file: Some(self.file.clone()),
            line: self.line,
            name,
            field: field.map(str::to_string),
            reason: reason.into(),
        }
    }
}

/// An entry as a source system describes it, before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleRecord {
    pub origin: Origin,
    pub entry: NewEntry,
    pub deprecation: Option<Deprecation>,
    /// Versions the source names, each with its manifest (validated by the pipeline
    /// against the kind's JSON Schema; a bad one rejects the record).
    pub versions: Vec<NewVersion>,
    /// For a source without versions: the manifest as it stands now. The pipeline
    /// publishes it as a new revision (1.0.0, then the next patch) only when it differs
    /// from the latest stored manifest, so re-importing unchanged input changes nothing.
    pub revision: Option<serde_json::Value>,
    /// Outgoing relations; applied once every entry of the import is in.
    pub relations: Vec<Relation>,
}

impl BundleRecord {
    pub fn new(origin: Origin, entry: NewEntry) -> Self {
        BundleRecord {
            origin,
            entry,
            deprecation: None,
            versions: Vec::new(),
            revision: None,
            relations: Vec::new(),
        }
    }
}

/// A document as a source system holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleDocument {
    pub origin: Origin,
    pub document: NewDocument,
}

/// What a reader made of its files.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Bundle {
    pub records: Vec<BundleRecord>,
    pub documents: Vec<BundleDocument>,
    /// Records (or whole files) that could not be taken, each with its file and reason.
    pub rejected: Vec<Rejected>,
    /// Records taken, but with a problem a person should look at (an expression naming
    /// an unknown variable, a legacy layout mapped to the current one).
    pub warnings: Vec<Rejected>,
    /// The source's own units as read, for the report: `tool blocks`, `capabilities`,
    /// `patterns`, `recipes`, `queue entries`... (everything read, taken or not).
    pub counts: BTreeMap<String, u64>,
}

impl Bundle {
    /// Count one more of `unit`.
    pub fn count(&mut self, unit: &str, n: u64) {
        *self.counts.entry(unit.to_string()).or_default() += n;
    }

    /// Add another bundle's contents to this one.
    pub fn merge(&mut self, other: Bundle) {
        self.records.extend(other.records);
        self.documents.extend(other.documents);
        self.rejected.extend(other.rejected);
        self.warnings.extend(other.warnings);
        for (k, v) in other.counts {
            *self.counts.entry(k).or_default() += v;
        }
    }
}

/// A source system's format: which files it reads, and how.
pub trait Reader: Send + Sync {
    fn format(&self) -> Format;
    /// Whether this format reads the file `rel` (its path relative to the import's root,
    /// or its name for a single file), given its first bytes (up to 8 KiB).
    fn claims(&self, rel: &Path, head: &[u8]) -> bool;
    /// Read the claimed `files` (paths relative to `root`). Never fails: a file that
    /// cannot be read or parsed is a rejection naming it.
    fn read(&self, root: &Path, files: &[PathBuf]) -> Bundle;
}

/// Every source system's reader, in the order they are asked to claim a file.
pub fn readers() -> [&'static dyn Reader; 5] {
    [
        &blocks::BlocksReader,
        &ops::OpsReader,
        &recipes::RecipesReader,
        &skills::SkillsReader,
        &modules::ModulesReader,
    ]
}

/// The reader of a format, if it is a source system's.
pub fn reader(format: Format) -> Option<&'static dyn Reader> {
    readers().into_iter().find(|r| r.format() == format)
}

/// What an export writes: only entries in these categories and with these statuses
/// (empty = all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportFilter {
    pub categories: Vec<String>,
    pub statuses: Vec<Status>,
    /// Collections written from these documents (key, body) instead of the store's: live
    /// records that have moved on since their file was imported (the pipeline's queue).
    pub live: std::collections::BTreeMap<String, Vec<(String, serde_json::Value)>>,
}

impl ExportFilter {
    pub fn admits(&self, category: Option<&str>, status: Status) -> bool {
        (self.categories.is_empty()
            || category.is_some_and(|c| self.categories.iter().any(|x| x == c)))
            && (self.statuses.is_empty() || self.statuses.contains(&status))
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExportSummary {
    /// Files written.
    pub files: u64,
    /// Entries written.
    pub entries: u64,
    /// Documents written.
    pub documents: u64,
}

/// Write the store's data of one source system back in its own files under `out` (a
/// file for `blocks`, a folder for the others).
pub async fn export_format(
    store: &dyn Store,
    format: Format,
    filter: &ExportFilter,
    out: &Path,
) -> quiver_model::Result<ExportSummary> {
    match format {
        Format::Blocks => blocks::export(store, filter, out).await,
        Format::OpsTools => ops::export(store, filter, out).await,
        Format::Recipes => recipes::export(store, filter, out).await,
        Format::Skills => skills::export(store, filter, out).await,
        Format::Modules => modules::export(store, filter, out).await,
        Format::Tsv | Format::Jsonl => Err(quiver_model::Error::invalid(
            "format",
            format!("{format} is not a source system's format; use `quiver export` for JSONL"),
        )),
    }
}
