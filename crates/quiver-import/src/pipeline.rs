//! The import pipeline: sources in, batched upserts out, relations last, and a report.
//!
//! Design choices:
//! - **Formats are settled before anything is written.** Every source's format is
//!   detected (or forced) up front, so a wrong path or an unknown format fails the import
//!   with the file's name and leaves the store untouched.
//! - **Two stages, bounded in between.** Reading, decompressing, parsing and validating
//!   run on one blocking thread; the store's writes run on the async side (SQLite's
//!   writer, on its own blocking thread). Batches of `batch_size` records pass through a
//!   channel that holds two, so on two cores parsing of batch n+1 overlaps the write of
//!   batch n, and memory stays constant whatever the file size: at most four batches
//!   exist at once.
//! - **One transaction per batch.** Each batch is one [`Store::import_batch`] call, so an
//!   interrupted import leaves whole batches; re-running converges, because the store's
//!   upsert compares before it writes (an unchanged record costs a read and no feed row).
//! - **Relations after entries.** A relation may point at an entry later in the same (or
//!   another) file, so relations are collected (memory proportional to their count only)
//!   and applied once all entries are in. They are applied with `add_relation`, after a
//!   comparison with the entry's stored outgoing relations: an identical relation is
//!   counted unchanged and not written (`add_relation` would append a feed row even for a
//!   no-op), which keeps a re-run free of writes. A relation whose end does not exist is
//!   a [`Rejected`] with its line. Relations of a record the store rejected are dropped
//!   with it.
//! - **An entry once per run.** The reading stage remembers the identity of every record
//!   it has passed on (a 64-bit hash of kind, namespace and normalized name, with where it
//!   was seen: 16 bytes a record in a hash table, about 36 MB for the 1.1M-row data set,
//!   the only state that grows with the input) and rejects a later record of the same
//!   entry, naming the first occurrence, which is kept. Without this, two conflicting
//!   rows of one package (the npm snapshot has one such pair) would update the entry back
//!   and forth on every run, and a re-run could never report everything unchanged. (Two
//!   different keys with the same 64-bit hash would be taken as duplicates: odds of about
//!   3 in 10^8 for 1.1M records.)
//! - **Dry run compares, per record, with the store.** A dry run reads and validates
//!   everything and classifies each record as the store's upsert would: `get_entry` (not
//!   found: created), then the fields the upsert compares, then `list_versions` for new
//!   versions, yank changes and immutability conflicts (rejected). This costs two point
//!   reads per existing record, run eight at a time; a dry run over the data set is
//!   slower than a real re-import (which compares inside one transaction per batch) but
//!   exact. Relation targets that the import itself would create are found among the
//!   identities read.
//! - **Rejections are counted, and the first ones kept.** Each file keeps its first
//!   [`ImportOptions::max_rejected`] rejections (line, name, field, reason) and counts
//!   all of them, so a file of garbage cannot exhaust memory.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use quiver_model::names::name_key;
use quiver_model::validate::SemverVersion;
use quiver_model::{Context, EntryKey, Error, ErrorCode, Kind, NewVersion, Relation, Result};
use quiver_store::import::{self, StoredVersion};
use quiver_store::{
    valid_version, Direction, ImportOutcome, ImportRecord, ImportVersion, ImportedFields, Store,
    ValidVersion,
};
use serde::{Serialize, Serializer};
use tokio::sync::mpsc;

use crate::dataset::DatasetReader;
use crate::formats::{BundleDocument, BundleRecord, Origin, Reader};
use crate::input::{self, source_error, Format};
use crate::jsonl::{JsonlItem, JsonlReader};
use crate::plan::{plan_source, Plan, PlanItem};
use crate::Rejected;

/// One input of an import: a file (or `-` for standard input), with its format forced or
/// left to detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    /// Overrides [`ImportOptions::format`] and detection for this source.
    pub format: Option<Format>,
}

impl Source {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Source {
            path: path.into(),
            format: None,
        }
    }

    pub fn with_format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }
}

impl From<PathBuf> for Source {
    fn from(p: PathBuf) -> Self {
        Source::new(p)
    }
}

impl From<&Path> for Source {
    fn from(p: &Path) -> Self {
        Source::new(p)
    }
}

impl From<&str> for Source {
    fn from(p: &str) -> Self {
        Source::new(p)
    }
}

/// How to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// Records per store transaction.
    pub batch_size: usize,
    /// Read, validate and classify, but write nothing.
    pub dry_run: bool,
    /// Force this format for every source that does not force its own.
    pub format: Option<Format>,
    /// Rejections kept (with their reasons) per file; all are counted.
    pub max_rejected: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            batch_size: 10_000,
            dry_run: false,
            format: None,
            max_rejected: 1000,
        }
    }
}

/// Progress callbacks, for a progress bar. All default to nothing; calls come from the
/// task running [`import`], once per batch (not per record).
pub trait Progress: Send + Sync {
    /// The import starts; `total_bytes` is the sum of the sources' sizes on disk
    /// (compressed, for gzip; 0 when unknown, as for standard input).
    fn begin(&self, _total_bytes: u64) {}
    /// A source starts.
    fn file(&self, _path: &Path, _format: Format) {}
    /// Totals so far over all sources: records read (including rejected ones) and bytes
    /// read from disk (comparable with `total_bytes`, for a rate and an ETA).
    fn advance(&self, _records_read: u64, _bytes_read: u64) {}
    /// Relations are being applied: `done` of `total`.
    fn relations(&self, _done: u64, _total: u64) {}
    /// The import is over.
    fn finish(&self) {}
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// What happened to the relations of a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RelationCounts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
}

impl RelationCounts {
    pub fn total(&self) -> u64 {
        self.created + self.updated + self.unchanged + self.rejected
    }

    fn add(&mut self, o: &RelationCounts) {
        self.created += o.created;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.rejected += o.rejected;
    }
}

/// What an import did with one source. In a dry run, what it would have done.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileReport {
    pub path: PathBuf,
    pub format: Format,
    /// Records read: every non-blank line after any header, good or not.
    pub records: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Records rejected (by validation or by the store); their relations are not counted
    /// in `relations`.
    pub rejected_count: u64,
    /// The first rejections (of records and of relations), in order read.
    pub rejected: Vec<Rejected>,
    pub relations: RelationCounts,
    /// Documents (source systems' data beside their entries): what happened to them.
    /// Rejected documents are also in `rejected`.
    pub documents: RelationCounts,
    /// Records taken with a problem to look at (the first ones kept, all counted).
    pub warning_count: u64,
    pub warnings: Vec<Rejected>,
    /// The source system's own units as its reader counted them (`tool blocks`,
    /// `patterns`, `queue entries`...); empty for streamed formats.
    pub counts: std::collections::BTreeMap<String, u64>,
}

impl FileReport {
    fn new(path: PathBuf, format: Format) -> Self {
        FileReport {
            path,
            format,
            records: 0,
            created: 0,
            updated: 0,
            unchanged: 0,
            rejected_count: 0,
            rejected: Vec::new(),
            relations: RelationCounts::default(),
            documents: RelationCounts::default(),
            warning_count: 0,
            warnings: Vec::new(),
            counts: Default::default(),
        }
    }

    fn keep(&mut self, r: Rejected, max: usize) {
        if self.rejected.len() < max {
            self.rejected.push(r);
        }
    }

    /// Rejections counted but not kept.
    pub fn rejected_not_listed(&self) -> u64 {
        (self.rejected_count + self.relations.rejected + self.documents.rejected)
            .saturating_sub(self.rejected.len() as u64)
    }
}

/// Sums over all files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub records: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
    pub relations: RelationCounts,
    pub documents: RelationCounts,
    pub warnings: u64,
}

/// The outcome of an import: per file, totals, and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportReport {
    pub dry_run: bool,
    pub files: Vec<FileReport>,
    /// Files of a folder that no format reads, each with the reason.
    pub unread: Vec<Rejected>,
    pub totals: Totals,
    #[serde(rename = "elapsed_secs", serialize_with = "secs")]
    pub elapsed: Duration,
}

fn secs<S: Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl ImportReport {
    /// Records read per second.
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.totals.records as f64 / s
        } else {
            0.0
        }
    }

    /// Whether anything was (or, in a dry run, would be) rejected.
    pub fn has_rejections(&self) -> bool {
        self.totals.rejected > 0
            || self.totals.relations.rejected > 0
            || self.totals.documents.rejected > 0
            || !self.unread.is_empty()
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string().into_bytes();
    let groups: Vec<&str> = digits
        .rchunks(3)
        .rev()
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    groups.join(",")
}

/// Rejections shown per file in the human summary (the JSON report has them all, up to
/// [`ImportOptions::max_rejected`]).
const SHOWN_REJECTIONS: usize = 10;

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        let (created, updated) = if self.dry_run {
            ("would be created", "would be updated")
        } else {
            ("created", "updated")
        };
        writeln!(
            f,
            "{}{} file{}, {} records in {:.2} s ({} records/s)",
            if self.dry_run {
                "dry run: "
            } else {
                "imported "
            },
            self.files.len(),
            if self.files.len() == 1 { "" } else { "s" },
            thousands(t.records),
            self.elapsed.as_secs_f64(),
            thousands(self.rate().round() as u64),
        )?;
        for file in &self.files {
            writeln!(
                f,
                "  {} ({}): {} records: {} {created}, {} {updated}, {} unchanged, {} rejected",
                file.path.display(),
                file.format,
                thousands(file.records),
                thousands(file.created),
                thousands(file.updated),
                thousands(file.unchanged),
                thousands(file.rejected_count),
            )?;
            let r = &file.relations;
            if r.total() > 0 {
                writeln!(
                    f,
                    "    relations: {} {created}, {} {updated}, {} unchanged, {} rejected",
                    thousands(r.created),
                    thousands(r.updated),
                    thousands(r.unchanged),
                    thousands(r.rejected),
                )?;
            }
            let d = &file.documents;
            if d.total() > 0 {
                writeln!(
                    f,
                    "    documents: {} {created}, {} {updated}, {} unchanged, {} rejected",
                    thousands(d.created),
                    thousands(d.updated),
                    thousands(d.unchanged),
                    thousands(d.rejected),
                )?;
            }
            if !file.counts.is_empty() {
                let read: Vec<String> = file
                    .counts
                    .iter()
                    .map(|(unit, n)| format!("{} {unit}", thousands(*n)))
                    .collect();
                writeln!(f, "    read: {}", read.join(", "))?;
            }
            for rej in file.rejected.iter().take(SHOWN_REJECTIONS) {
                writeln!(f, "    rejected: {rej}")?;
            }
            let more = (file.rejected_count + r.rejected + d.rejected)
                .saturating_sub(SHOWN_REJECTIONS as u64);
            if more > 0 {
                writeln!(f, "    ... and {} more rejected", thousands(more))?;
            }
            for w in file.warnings.iter().take(SHOWN_REJECTIONS) {
                writeln!(f, "    warning: {w}")?;
            }
            let more = file.warning_count.saturating_sub(SHOWN_REJECTIONS as u64);
            if more > 0 {
                writeln!(f, "    ... and {} more warnings", thousands(more))?;
            }
        }
        if self.files.len() > 1 {
            writeln!(
                f,
                "  total: {} {created}, {} {updated}, {} unchanged, {} rejected",
                thousands(t.created),
                thousands(t.updated),
                thousands(t.unchanged),
                thousands(t.rejected),
            )?;
            if t.relations.total() > 0 {
                writeln!(
                    f,
                    "  total relations: {} {created}, {} {updated}, {} unchanged, {} rejected",
                    thousands(t.relations.created),
                    thousands(t.relations.updated),
                    thousands(t.relations.unchanged),
                    thousands(t.relations.rejected),
                )?;
            }
        }
        for u in &self.unread {
            writeln!(f, "  {u}")?;
        }
        if self.dry_run {
            writeln!(f, "dry run: nothing was written")?;
        }
        Ok(())
    }
}

/// A batch from the reading thread.
struct Batch {
    file: usize,
    records: Vec<ImportRecord>,
    /// Per record: where it was read (file within a folder source, line), its name for
    /// messages, its outgoing relations, and the manifest to publish as its next
    /// revision (for sources without versions).
    files: Vec<Option<PathBuf>>,
    lines: Vec<Option<u64>>,
    names: Vec<String>,
    relations: Vec<Vec<Relation>>,
    revisions: Vec<Option<ValidVersion>>,
    /// Records that failed to parse or validate.
    rejected: Vec<Rejected>,
}

impl Batch {
    fn new(file: usize, cap: usize) -> Self {
        Batch {
            file,
            records: Vec::with_capacity(cap),
            files: Vec::with_capacity(cap),
            lines: Vec::with_capacity(cap),
            names: Vec::with_capacity(cap),
            relations: Vec::with_capacity(cap),
            revisions: Vec::with_capacity(cap),
            rejected: Vec::new(),
        }
    }

    fn read(&self) -> u64 {
        (self.records.len() + self.rejected.len()) as u64
    }

    fn push(
        &mut self,
        rec: ImportRecord,
        rels: Vec<Relation>,
        origin: (Option<PathBuf>, Option<u64>),
        revision: Option<ValidVersion>,
    ) {
        self.names
            .push(format!("{}/{}", rec.entry.namespace, rec.entry.name));
        self.records.push(rec);
        self.files.push(origin.0);
        self.lines.push(origin.1);
        self.relations.push(rels);
        self.revisions.push(revision);
    }

    /// Pass the batch on once it holds `batch_size` records (read or rejected), starting
    /// a new one; false when the import is over (the receiver is gone).
    fn send_when_full(&mut self, batch_size: usize, tx: &mpsc::Sender<Msg>) -> bool {
        if (self.read() as usize) < batch_size {
            return true;
        }
        let full = std::mem::replace(self, Batch::new(self.file, batch_size));
        tx.blocking_send(Msg::Batch(full)).is_ok()
    }

    fn origin_of(&self, i: usize) -> (Option<PathBuf>, Option<u64>) {
        (self.files[i].clone(), self.lines[i])
    }
}

/// What a source system's reader produced besides entries.
struct Extras {
    documents: Vec<BundleDocument>,
    warnings: Vec<Rejected>,
    counts: std::collections::BTreeMap<String, u64>,
}

impl Extras {
    fn documents(documents: Vec<BundleDocument>) -> Self {
        Extras {
            documents,
            warnings: Vec::new(),
            counts: Default::default(),
        }
    }
}

enum Msg {
    File(usize),
    Batch(Batch),
    Extras(usize, Extras),
    Fatal(Error),
}

/// Identities (key hashes) of the records read so far, with where each was first seen
/// (file index in the top 16 bits, line in the low 48), and, for records of source
/// systems' folders, the file within the folder.
#[derive(Default)]
struct Seen {
    at: HashMap<u64, u64>,
    files: HashMap<u64, PathBuf>,
}

impl Seen {
    fn contains(&self, h: u64) -> bool {
        self.at.contains_key(&h)
    }
}

fn pack(file: usize, line: u64) -> u64 {
    ((file as u64) << 48) | (line & ((1 << 48) - 1))
}

/// Check a record's identity against those read before: the first occurrence is kept,
/// a later one is rejected naming it.
fn first_occurrence(
    seen: &mut Seen,
    names: &[String],
    i: usize,
    rec: &ImportRecord,
    origin: (Option<&Path>, Option<u64>),
) -> std::result::Result<(), Rejected> {
    let e = &rec.entry;
    let h = key_hash(e.kind, &e.namespace, &e.name);
    let Some(&first) = seen.at.get(&h) else {
        seen.at.insert(h, pack(i, origin.1.unwrap_or(0)));
        if let Some(f) = origin.0 {
            seen.files.insert(h, f.to_path_buf());
        }
        return Ok(());
    };
    let (file, first_line) = ((first >> 48) as usize, first & ((1 << 48) - 1));
    let at = match (seen.files.get(&h), first_line) {
        (Some(f), 0) => format!("{}", f.display()),
        (Some(f), l) => format!("{}:{l}", f.display()),
        (None, l) if file == i => format!("line {l}"),
        (None, l) => format!("line {l} of {}", names[file]),
    };
    Err(Rejected {
        file: origin.0.map(Path::to_path_buf),
        line: origin.1,
        name: Some(format!("{}/{}", e.namespace, e.name)),
        field: Some("name".into()),
        reason: format!(
            "name: {} is also at {at}; an entry is imported once per run and the first \
             occurrence is kept",
            EntryKey::new(e.kind, &e.namespace, &e.name)
        ),
    })
}

/// The reading stage: every plan item in turn, in batches, until done or the receiver is
/// gone (the import failed or was dropped). Returns the identities it read.
fn read_all(
    plan: Arc<Vec<PlanItem>>,
    batch_size: usize,
    bytes: Arc<AtomicU64>,
    tx: mpsc::Sender<Msg>,
) -> Seen {
    let mut seen = Seen::default();
    let names: Vec<String> = plan
        .iter()
        .map(|item| {
            let p = item.path();
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string())
        })
        .collect();
    for (i, item) in plan.iter().enumerate() {
        if tx.blocking_send(Msg::File(i)).is_err() {
            return seen;
        }
        let ok = match item {
            PlanItem::Stream { path, format } => {
                read_stream(i, path, *format, batch_size, &bytes, &names, &mut seen, &tx)
            }
            PlanItem::System {
                root,
                reader,
                files,
                ..
            } => read_system(
                i, root, *reader, files, batch_size, &bytes, &names, &mut seen, &tx,
            ),
        };
        if !ok {
            return seen;
        }
    }
    seen
}

/// Read one line-streamed file; false when the import is over (failed or dropped).
#[allow(clippy::too_many_arguments)]
fn read_stream(
    i: usize,
    path: &Path,
    format: Format,
    batch_size: usize,
    bytes: &Arc<AtomicU64>,
    names: &[String],
    seen: &mut Seen,
    tx: &mpsc::Sender<Msg>,
) -> bool {
    let input = match input::open(path, bytes.clone()) {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.blocking_send(Msg::Fatal(e));
            return false;
        }
    };
    let mut items: Box<dyn FnMut() -> Option<(StreamItem, u64)>> = match format {
        Format::Tsv => match DatasetReader::from_bufread(input) {
            Ok(mut r) => Box::new(move || {
                let item = r.next()?;
                Some((item.map(|rec| JsonlItem::Entry(rec, Vec::new())), r.line()))
            }),
            Err(e) => {
                let _ = tx.blocking_send(Msg::Fatal(source_error(path, e)));
                return false;
            }
        },
        Format::Jsonl => {
            let mut r = JsonlReader::from_bufread(input);
            Box::new(move || {
                let item = r.next()?;
                Some((item, r.line()))
            })
        }
        f => {
            let _ = tx.blocking_send(Msg::Fatal(source_error(
                path,
                format!("{f} is not a line-streamed format"),
            )));
            return false;
        }
    };
    let mut batch = Batch::new(i, batch_size);
    let mut documents = Documents::default();
    while let Some((item, line)) = items() {
        match item {
            Ok(JsonlItem::Document(d)) => {
                if let Err(r) = documents.add(BundleDocument {
                    origin: Origin::new(path, Some(line)),
                    document: d,
                }) {
                    batch.rejected.push(r);
                }
                if documents.ready.len() >= DOCUMENT_BATCH {
                    let extras = Extras::documents(std::mem::take(&mut documents.ready));
                    if tx.blocking_send(Msg::Extras(i, extras)).is_err() {
                        return false;
                    }
                }
                continue;
            }
            Ok(JsonlItem::Entry(rec, rels)) => {
                match first_occurrence(seen, names, i, &rec, (None, Some(line))) {
                    Ok(()) => batch.push(rec, rels, (None, Some(line)), None),
                    Err(r) => batch.rejected.push(r),
                }
            }
            Err(r) => batch.rejected.push(r),
        }
        if !batch.send_when_full(batch_size, tx) {
            return false;
        }
    }
    if batch.read() > 0 && tx.blocking_send(Msg::Batch(batch)).is_err() {
        return false;
    }
    documents.ready.is_empty()
        || tx
            .blocking_send(Msg::Extras(i, Extras::documents(documents.ready)))
            .is_ok()
}

/// Documents once per (collection, key) within a source: a later one with the same key
/// would make every run rewrite the first, so it is rejected naming the first.
#[derive(Default)]
struct Documents {
    first: HashMap<(String, String), Origin>,
    ready: Vec<BundleDocument>,
}

impl Documents {
    fn add(&mut self, d: BundleDocument) -> std::result::Result<(), Rejected> {
        let k = (d.document.collection.clone(), d.document.key.clone());
        if let Some(first) = self.first.get(&k) {
            return Err(d.origin.reject(
                Some(format!("{}/{}", k.0, k.1)),
                Some("key"),
                format!(
                    "key: document {} of {} is also at {}{}; the first is kept",
                    k.1,
                    k.0,
                    first.file.display(),
                    first.line.map(|l| format!(":{l}")).unwrap_or_default()
                ),
            ));
        }
        self.first.insert(k, d.origin.clone());
        self.ready.push(d);
        Ok(())
    }
}

/// Validate a source system's record into what the store takes: the entry, its versions,
/// the manifest of its next revision (numbered later, against the store), its relations.
fn validate_record(
    mut r: BundleRecord,
) -> std::result::Result<(ImportRecord, Vec<Relation>, Option<ValidVersion>), Error> {
    quiver_model::validate::imported_entry(&mut r.entry)?;
    let kind = r.entry.kind;
    let versions = r
        .versions
        .into_iter()
        .enumerate()
        .map(|(n, v)| {
            valid_version(kind, v)
                .map(ImportVersion::from)
                .map_err(|e| e.in_field(&format!("versions[{n}]")))
        })
        .collect::<Result<Vec<_>>>()?;
    let revision = r
        .revision
        .map(|manifest| {
            valid_version(
                kind,
                NewVersion {
                    version: FIRST_REVISION.into(),
                    manifest,
                    changelog: None,
                    breaking: false,
                },
            )
        })
        .transpose()?;
    for (n, rel) in r.relations.iter().enumerate() {
        quiver_model::validate::relation(rel)
            .map_err(|e| e.in_field(&format!("relations[{n}]")))?;
    }
    Ok((
        ImportRecord {
            entry: r.entry,
            deprecation: r.deprecation,
            versions,
        },
        r.relations,
        revision,
    ))
}

/// The version a source without versions gets first.
const FIRST_REVISION: &str = "1.0.0";

/// Read one source system's files with its reader; false when the import is over.
#[allow(clippy::too_many_arguments)]
fn read_system(
    i: usize,
    root: &Path,
    reader: &dyn Reader,
    files: &[PathBuf],
    batch_size: usize,
    bytes: &Arc<AtomicU64>,
    names: &[String],
    seen: &mut Seen,
    tx: &mpsc::Sender<Msg>,
) -> bool {
    let bundle = reader.read(root, files);
    let size: u64 = files
        .iter()
        .map(|f| {
            std::fs::metadata(root.join(f))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum();
    bytes.fetch_add(size, Ordering::Relaxed);

    let mut batch = Batch::new(i, batch_size);
    batch.rejected.extend(bundle.rejected);
    for r in bundle.records {
        let origin = (Some(r.origin.file.clone()), r.origin.line);
        let name = format!("{}/{}", r.entry.namespace, r.entry.name);
        let item = validate_record(r).map_err(|e| Rejected {
            file: origin.0.clone(),
            ..Rejected::from_error(origin.1, Some(name), &e)
        });
        match item.and_then(|(rec, rels, rev)| {
            first_occurrence(seen, names, i, &rec, (origin.0.as_deref(), origin.1))
                .map(|()| (rec, rels, rev))
        }) {
            Ok((rec, rels, rev)) => batch.push(rec, rels, origin, rev),
            Err(r) => batch.rejected.push(r),
        }
        if !batch.send_when_full(batch_size, tx) {
            return false;
        }
    }
    if batch.read() > 0 && tx.blocking_send(Msg::Batch(batch)).is_err() {
        return false;
    }

    let mut documents = Documents::default();
    let mut dup_rejections = Vec::new();
    for d in bundle.documents {
        if let Err(r) = documents.add(d) {
            dup_rejections.push(r);
        }
    }
    // Duplicate documents are rejections of the file's report, sent as a batch of their own.
    if !dup_rejections.is_empty() {
        let mut b = Batch::new(i, 0);
        b.rejected = dup_rejections;
        if tx.blocking_send(Msg::Batch(b)).is_err() {
            return false;
        }
    }
    tx.blocking_send(Msg::Extras(
        i,
        Extras {
            documents: documents.ready,
            warnings: bundle.warnings,
            counts: bundle.counts,
        },
    ))
    .is_ok()
}

type StreamItem = std::result::Result<JsonlItem, Rejected>;

/// A relation waiting for all entries to be in.
struct PendingRelation {
    file: usize,
    origin: (Option<PathBuf>, Option<u64>),
    /// Its index in the record's `relations`, for the field path of a rejection.
    index: usize,
    relation: Relation,
}

/// A 64-bit hash of an entry's identity (kind, namespace, normalized name).
fn key_hash(kind: Kind, namespace: &str, name: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    kind.hash(&mut h);
    namespace.hash(&mut h);
    name_key(kind, namespace, name).hash(&mut h);
    h.finish()
}

fn same_key(a: &EntryKey, b: &EntryKey) -> bool {
    a.kind == b.kind
        && a.namespace == b.namespace
        && name_key(a.kind, &a.namespace, &a.name) == name_key(b.kind, &b.namespace, &b.name)
}

/// Number the revisions of a batch against the store: a record's revision manifest is
/// published as the next patch of its highest stored version, or as 1.0.0 for a new
/// entry, and not at all when the highest stored version has the same manifest.
async fn number_revisions(store: &dyn Store, b: &mut Batch) -> Result<()> {
    for (rec, rev) in b.records.iter_mut().zip(b.revisions.iter_mut()) {
        let Some(mut rev) = rev.take() else { continue };
        let e = &rec.entry;
        let key = EntryKey::new(e.kind, &e.namespace, &e.name);
        let stored = match store.list_versions(&key).await {
            Ok(v) => v,
            Err(err) if err.code == ErrorCode::NotFound => Vec::new(),
            Err(err) => return Err(err),
        };
        let highest = stored
            .iter()
            .filter_map(|v| SemverVersion::parse(&v.version).ok().map(|s| (s, v)))
            .max_by(|a, b| a.0.cmp(&b.0));
        let next = match highest {
            Some((_, v)) if v.sha256 == rev.sha256 => continue,
            Some((s, _)) => SemverVersion::new(s.major, s.minor, s.patch + 1),
            None => rev.semver.clone(),
        };
        rev.version.version = next.to_string();
        rev.semver = next;
        rec.versions.push(rev.into());
    }
    Ok(())
}

/// Write (or, in a dry run, classify) a reader's documents; their outcomes go to the
/// file's report.
async fn apply_documents(
    store: &dyn Store,
    docs: Vec<BundleDocument>,
    report: &mut FileReport,
    opts: &ImportOptions,
) -> Result<()> {
    for chunk in docs.chunks(DOCUMENT_BATCH) {
        let outcomes = if opts.dry_run {
            let mut out = Vec::with_capacity(chunk.len());
            for d in chunk {
                out.push(match quiver_model::validate::document(&d.document) {
                    Err(e) => ImportOutcome::Rejected(e),
                    Ok(canonical) => {
                        let sha = quiver_model::manifest::sha256_hex(&canonical);
                        match store
                            .get_document(&d.document.collection, &d.document.key)
                            .await?
                        {
                            None => ImportOutcome::Created,
                            Some(old) if old.sha256 == sha => ImportOutcome::Unchanged,
                            Some(_) => ImportOutcome::Updated,
                        }
                    }
                });
            }
            out
        } else {
            store
                .put_documents(chunk.iter().map(|d| d.document.clone()).collect())
                .await
                .context(format_args!(
                    "writing documents of {}",
                    report.path.display()
                ))?
        };
        for (d, outcome) in chunk.iter().zip(outcomes) {
            match outcome {
                ImportOutcome::Created => report.documents.created += 1,
                ImportOutcome::Updated => report.documents.updated += 1,
                ImportOutcome::Unchanged => report.documents.unchanged += 1,
                ImportOutcome::Rejected(e) => {
                    report.documents.rejected += 1;
                    let name = format!("{}/{}", d.document.collection, d.document.key);
                    report.keep(
                        Rejected {
                            file: Some(d.origin.file.clone()),
                            ..Rejected::from_error(d.origin.line, Some(name), &e)
                        },
                        opts.max_rejected,
                    );
                }
            }
        }
    }
    Ok(())
}

/// Documents per store transaction.
const DOCUMENT_BATCH: usize = 2000;

/// Import `sources` into `store`. See the module documentation for how.
///
/// Returns an error (and stops) only when the import cannot go on: a source that cannot
/// be opened or whose format is unknown (checked before anything is written), or a store
/// failure. Bad records are never errors: they are in the report.
pub async fn import(
    store: &dyn Store,
    sources: Vec<Source>,
    opts: ImportOptions,
    progress: &dyn Progress,
) -> Result<ImportReport> {
    let started = Instant::now();
    let mut plan = Plan {
        items: Vec::new(),
        unread: Vec::new(),
    };
    for s in &sources {
        plan_source(&s.path, s.format.or(opts.format), &mut plan)?;
    }
    if plan.items.is_empty() {
        let shown: Vec<String> = sources
            .iter()
            .map(|s| s.path.display().to_string())
            .collect();
        return Err(Error::invalid(
            "path",
            format!(
                "nothing to import in {}: no file there is in a format quiver reads",
                shown.join(", ")
            ),
        ));
    }
    run(store, plan, opts, progress, started).await
}

/// What an import would write to, read without writing: the namespaces of its entries
/// (those that read and validate; rejected records are not written anyway) and how many
/// documents it carries. The server checks a caller's rights over these before an
/// import starts, so that a refused import writes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    pub namespaces: std::collections::BTreeSet<String>,
    pub documents: u64,
}

/// Read `sources` as [`import`] would, and tell what they would write to ([`Scan`]).
pub async fn scan(sources: &[Source], opts: &ImportOptions) -> Result<Scan> {
    let mut plan = Plan {
        items: Vec::new(),
        unread: Vec::new(),
    };
    for s in sources {
        plan_source(&s.path, s.format.or(opts.format), &mut plan)?;
    }
    let items = Arc::new(plan.items);
    let (tx, mut rx) = mpsc::channel::<Msg>(2);
    let batch_size = opts.batch_size.max(1);
    let reader = tokio::task::spawn_blocking(move || {
        read_all(items, batch_size, Arc::new(AtomicU64::new(0)), tx)
    });
    let mut scan = Scan::default();
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Fatal(e) => return Err(e),
            Msg::Batch(b) => {
                for r in &b.records {
                    if !scan.namespaces.contains(&r.entry.namespace) {
                        scan.namespaces.insert(r.entry.namespace.clone());
                    }
                }
            }
            Msg::Extras(_, extras) => scan.documents += extras.documents.len() as u64,
            Msg::File(_) => {}
        }
    }
    reader.await.context("the import's reading thread")?;
    Ok(scan)
}

/// Run a plan (see [`import`]).
async fn run(
    store: &dyn Store,
    plan: Plan,
    opts: ImportOptions,
    progress: &dyn Progress,
    started: Instant,
) -> Result<ImportReport> {
    let batch_size = opts.batch_size.max(1);
    let total_bytes: u64 = plan.items.iter().map(PlanItem::size).sum();
    progress.begin(total_bytes);
    let mut files: Vec<FileReport> = plan
        .items
        .iter()
        .map(|item| FileReport::new(item.path().to_path_buf(), item.format()))
        .collect();
    let items = Arc::new(plan.items);

    let bytes = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = mpsc::channel::<Msg>(2);
    let reader = tokio::task::spawn_blocking({
        let items = items.clone();
        let bytes = bytes.clone();
        move || read_all(items, batch_size, bytes, tx)
    });

    let mut pending: Vec<PendingRelation> = Vec::new();
    let mut records_read = 0u64;
    while let Some(msg) = rx.recv().await {
        let mut b = match msg {
            Msg::File(i) => {
                progress.file(items[i].path(), items[i].format());
                continue;
            }
            Msg::Fatal(e) => return Err(e),
            Msg::Extras(i, extras) => {
                let report = &mut files[i];
                for (unit, n) in extras.counts {
                    *report.counts.entry(unit).or_default() += n;
                }
                report.warning_count += extras.warnings.len() as u64;
                for w in extras.warnings {
                    if report.warnings.len() < opts.max_rejected {
                        report.warnings.push(w);
                    }
                }
                apply_documents(store, extras.documents, report, &opts).await?;
                continue;
            }
            Msg::Batch(b) => b,
        };
        records_read += b.read();
        let report = &mut files[b.file];
        report.records += b.read();
        report.rejected_count += b.rejected.len() as u64;
        for r in std::mem::take(&mut b.rejected) {
            report.keep(r, opts.max_rejected);
        }
        if b.records.is_empty() {
            progress.advance(records_read, bytes.load(Ordering::Relaxed));
            continue;
        }
        number_revisions(store, &mut b).await?;
        let where_ = match (
            b.lines.first().copied().flatten(),
            b.lines.last().copied().flatten(),
        ) {
            (Some(first), Some(last)) => format!("lines {first}-{last} of "),
            _ => String::new(),
        };
        let outcomes = if opts.dry_run {
            dry_run_batch(store, &b.records).await?
        } else {
            let records = std::mem::take(&mut b.records);
            store.import_batch(records).await.map_err(|e| {
                Error::internal(
                    format!("importing {where_}{}", items[b.file].path().display()),
                    e,
                )
            })?
        };
        let relations = std::mem::take(&mut b.relations);
        for (i, (outcome, rels)) in outcomes.into_iter().zip(relations).enumerate() {
            match outcome {
                ImportOutcome::Created => report.created += 1,
                ImportOutcome::Updated => report.updated += 1,
                ImportOutcome::Unchanged => report.unchanged += 1,
                ImportOutcome::Rejected(e) => {
                    report.rejected_count += 1;
                    let (file, line) = b.origin_of(i);
                    report.keep(
                        Rejected {
                            file,
                            ..Rejected::from_error(line, Some(b.names[i].clone()), &e)
                        },
                        opts.max_rejected,
                    );
                    continue;
                }
            }
            pending.extend(
                rels.into_iter()
                    .enumerate()
                    .map(|(index, relation)| PendingRelation {
                        file: b.file,
                        origin: b.origin_of(i),
                        index,
                        relation,
                    }),
            );
        }
        progress.advance(records_read, bytes.load(Ordering::Relaxed));
    }
    let seen = reader.await.context("the import's reading thread")?;

    if !pending.is_empty() {
        apply_relations(store, pending, &mut files, &opts, &seen, progress).await?;
    }
    progress.finish();

    let mut totals = Totals::default();
    for f in &files {
        totals.records += f.records;
        totals.created += f.created;
        totals.updated += f.updated;
        totals.unchanged += f.unchanged;
        totals.rejected += f.rejected_count;
        totals.relations.add(&f.relations);
        totals.documents.add(&f.documents);
        totals.warnings += f.warning_count;
    }
    Ok(ImportReport {
        dry_run: opts.dry_run,
        files,
        unread: plan.unread,
        totals,
        elapsed: started.elapsed(),
    })
}

/// Concurrent store lookups in a dry run: the size of SqliteStore's read pool. (Over the
/// data set, 8 took 42 s and 2 took 66 s: each lookup is a hop to a blocking thread, and
/// more of them in flight amortize the wake-ups.)
const DRY_RUN_LOOKUPS: usize = 8;

/// Classify a batch as the store's upsert would, without writing.
async fn dry_run_batch(store: &dyn Store, records: &[ImportRecord]) -> Result<Vec<ImportOutcome>> {
    // The lookups are made before they are streamed (not by a closure over `&record`), so
    // the import's future is `Send` for callers that spawn it (the HTTP import).
    let lookups: Vec<_> = records.iter().map(|rec| classify(store, rec)).collect();
    futures_util::stream::iter(lookups)
        .buffered(DRY_RUN_LOOKUPS)
        .collect::<Vec<Result<ImportOutcome>>>()
        .await
        .into_iter()
        .collect()
}

/// What the store's upsert would do with one record: the same rule
/// (`quiver_store::import::decide`) over what the `Store` trait reads.
async fn classify(store: &dyn Store, rec: &ImportRecord) -> Result<ImportOutcome> {
    let e = &rec.entry;
    let key = EntryKey::new(e.kind, &e.namespace, &e.name);
    // A record naming a version twice fails its batch in a real import; a dry run
    // reports it as rejected.
    let outcome = |d: Result<import::Decision>| match d {
        Ok(d) => d.outcome(),
        Err(e) => ImportOutcome::Rejected(e),
    };
    let Some(old) = store.get_entry(&key).await? else {
        return Ok(outcome(import::decide(rec, None)));
    };
    let listed = if rec.versions.is_empty() {
        vec![]
    } else {
        store.list_versions(&key).await?
    };
    let versions: Vec<Option<StoredVersion>> = rec
        .versions
        .iter()
        .map(|v| {
            listed
                .iter()
                .find(|s| s.version == v.version.version.version)
                .map(|s| StoredVersion {
                    id: 0, // not written by a dry run
                    sha256: s.sha256.clone(),
                    yanked: s.yanked,
                    yank_reason: s.yank_reason.clone(),
                })
        })
        .collect();
    let fields = ImportedFields::of_entry(&old);
    let stored = import::Stored {
        fields: &fields,
        versions: &versions,
    };
    Ok(outcome(import::decide(rec, Some(stored))))
}

enum RelationOutcome {
    Created,
    Updated,
    Unchanged,
    Rejected(Error),
}

/// Apply (or, in a dry run, classify) the collected relations, grouped by their `from`
/// entry so that each entry's stored relations are read once.
async fn apply_relations(
    store: &dyn Store,
    pending: Vec<PendingRelation>,
    files: &mut [FileReport],
    opts: &ImportOptions,
    seen: &Seen,
    progress: &dyn Progress,
) -> Result<()> {
    let total = pending.len() as u64;
    let mut group_of: HashMap<u64, usize> = HashMap::new();
    let mut groups: Vec<Vec<PendingRelation>> = Vec::new();
    for p in pending {
        let f = &p.relation.from;
        let g = *group_of
            .entry(key_hash(f.kind, &f.namespace, &f.name))
            .or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
        groups[g].push(p);
    }

    let (mut done, mut next_report) = (0u64, 1000u64);
    for group in groups {
        let from = group[0].relation.from.clone();
        let mut existing: Option<Vec<Relation>> =
            match store.list_relations(&from, Direction::Outgoing).await {
                Ok(v) => Some(v),
                Err(e) if e.code == ErrorCode::NotFound => None,
                Err(e) => return Err(e),
            };
        for p in group {
            let rel = &p.relation;
            let same = existing
                .iter()
                .flatten()
                .position(|r| r.kind == rel.kind && same_key(&r.to, &rel.to));
            let outcome = match same {
                Some(i)
                    if existing.as_ref().is_some_and(|ex| {
                        ex[i].confidence == rel.confidence
                            && ex[i].source == rel.source
                            && ex[i].step_order == rel.step_order
                    }) =>
                {
                    RelationOutcome::Unchanged
                }
                _ if opts.dry_run => {
                    let exists =
                        |k: &EntryKey| seen.contains(key_hash(k.kind, &k.namespace, &k.name));
                    let from_ok = existing.is_some() || exists(&rel.from);
                    let to_ok = exists(&rel.to) || store.get_entry(&rel.to).await?.is_some();
                    if !from_ok {
                        RelationOutcome::Rejected(Error::invalid(
                            "from",
                            format!("{} does not exist", rel.from),
                        ))
                    } else if !to_ok {
                        RelationOutcome::Rejected(Error::invalid(
                            "to",
                            format!("{} does not exist", rel.to),
                        ))
                    } else {
                        // Remember it, as the real run would have written it.
                        let list = existing.get_or_insert_with(Vec::new);
                        match same {
                            Some(i) => {
                                list[i] = rel.clone();
                                RelationOutcome::Updated
                            }
                            None => {
                                list.push(rel.clone());
                                RelationOutcome::Created
                            }
                        }
                    }
                }
                _ => match store.add_relation(rel.clone()).await {
                    Ok(stored) => {
                        let list = existing.get_or_insert_with(Vec::new);
                        match same {
                            Some(i) => {
                                list[i] = stored;
                                RelationOutcome::Updated
                            }
                            None => {
                                list.push(stored);
                                RelationOutcome::Created
                            }
                        }
                    }
                    Err(e) if e.code == ErrorCode::Internal => return Err(e),
                    Err(e) => RelationOutcome::Rejected(e),
                },
            };
            let report = &mut files[p.file];
            match outcome {
                RelationOutcome::Created => report.relations.created += 1,
                RelationOutcome::Updated => report.relations.updated += 1,
                RelationOutcome::Unchanged => report.relations.unchanged += 1,
                RelationOutcome::Rejected(e) => {
                    report.relations.rejected += 1;
                    let e = e.in_field(&format!("relations[{}]", p.index));
                    report.keep(
                        Rejected {
                            file: p.origin.0.clone(),
                            ..Rejected::from_error(
                                p.origin.1,
                                Some(format!("{}/{}", rel.from.namespace, rel.from.name)),
                                &e,
                            )
                        },
                        opts.max_rejected,
                    );
                }
            }
            done += 1;
            if done >= next_report || done == total {
                progress.relations(done, total);
                next_report = done + 1000;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{Bundle, BundleRecord, Origin};
    use quiver_model::{NewDocument, NewEntry};
    use serde_json::json;
    use std::sync::Mutex;

    /// A reader whose bundle the test sets: the pipeline's handling of any source
    /// system's output, without one.
    struct TestReader(Mutex<Bundle>);

    impl Reader for TestReader {
        fn format(&self) -> Format {
            Format::Skills
        }
        fn claims(&self, _: &Path, _: &[u8]) -> bool {
            true
        }
        fn read(&self, _: &Path, _: &[PathBuf]) -> Bundle {
            self.0.lock().unwrap().clone()
        }
    }

    fn skill(name: &str, line: u64, manifest: serde_json::Value) -> BundleRecord {
        let mut r = BundleRecord::new(
            Origin::new("reg/skills.json", Some(line)),
            NewEntry {
                kind: Kind::Skill,
                namespace: "acme".into(),
                name: name.into(),
                display_name: None,
                description: format!("the {name} skill"),
                category: None,
                tags: vec![],
                keywords: vec![],
                status: None,
                visibility: None,
                popularity: None,
            },
        );
        r.revision = Some(manifest);
        r
    }

    async fn run_bundle(
        store: &dyn Store,
        reader: &'static TestReader,
        bundle: Bundle,
        dry_run: bool,
    ) -> ImportReport {
        *reader.0.lock().unwrap() = bundle;
        let plan = Plan {
            items: vec![PlanItem::System {
                root: PathBuf::from("reg"),
                format: Format::Skills,
                reader,
                files: vec![PathBuf::from("skills.json")],
            }],
            unread: vec![],
        };
        let opts = ImportOptions {
            dry_run,
            ..ImportOptions::default()
        };
        run(store, plan, opts, &NoProgress, Instant::now())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn source_system_bundles_revisions_documents_and_rejections() {
        let dir = tempfile::tempdir().unwrap();
        let store = quiver_sqlite::SqliteStore::open(dir.path().join("q.db")).unwrap();
        let reader: &'static TestReader = Box::leak(Box::new(TestReader(Mutex::default())));
        let bundle = |title: &str| {
            let mut b = Bundle::default();
            b.records.push(skill("alpha", 2, json!({"title": title})));
            b.records.push(skill("beta", 9, json!({"title": "Beta"})));
            b.records
                .push(skill("alpha", 14, json!({"title": "again"})));
            b.records.push(skill("Not Valid", 20, json!({})));
            b.records.push(skill("gamma", 25, json!({"installs": -1})));
            let doc = |key: &str, line, v| BundleDocument {
                origin: Origin::new("reg/agents.json", Some(line)),
                document: NewDocument::new("test.agents", key, json!(v)),
            };
            b.documents = vec![doc("a", 1, 1), doc("b", 2, 2), doc("a", 3, 3)];
            b.warnings
                .push(Origin::new("reg/skills.json", Some(9)).reject(
                    Some("acme/beta".into()),
                    None,
                    "legacy layout mapped",
                ));
            b.count("skills", 5);
            b
        };

        // Dry run: everything classified, nothing written.
        let dry = run_bundle(&store, reader, bundle("Alpha"), true).await;
        let f = &dry.files[0];
        assert_eq!((f.created, f.rejected_count), (2, 4), "{:#?}", f.rejected);
        assert_eq!(store.stats().await.unwrap().entries, 0);
        assert_eq!(store.document_collections().await.unwrap(), vec![]);

        let first = run_bundle(&store, reader, bundle("Alpha"), false).await;
        let f = &first.files[0];
        assert_eq!((f.records, f.created, f.unchanged), (6, 2, 0));
        assert_eq!(f.documents.created, 2);
        assert_eq!(f.counts.get("skills"), Some(&5));
        assert_eq!(f.warning_count, 1);
        // Rejections: the duplicate (naming the first), the bad name, the manifest that
        // breaks the skill schema, and the duplicate document; each with its file.
        let reasons: Vec<String> = f.rejected.iter().map(ToString::to_string).collect();
        assert_eq!(f.rejected.len(), 4, "{reasons:#?}");
        assert!(
            reasons
                .iter()
                .any(|r| r.starts_with("reg/skills.json:14: acme/alpha: name:")
                    && r.contains("also at reg/skills.json:2")),
            "{reasons:#?}"
        );
        assert!(
            reasons.iter().any(|r| r.starts_with("reg/skills.json:20:")),
            "{reasons:#?}"
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.starts_with("reg/skills.json:25:") && r.contains("installs")),
            "{reasons:#?}"
        );
        assert!(
            reasons.iter().any(|r| r.starts_with("reg/agents.json:3:")),
            "{reasons:#?}"
        );
        let alpha = EntryKey::new(Kind::Skill, "acme", "alpha");
        let versions = store.list_versions(&alpha).await.unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].version, "1.0.0");
        assert_eq!(versions[0].manifest, json!({"title": "Alpha"}));

        // Unchanged input: nothing written, not even a feed row.
        let head = store.feed_head().await.unwrap();
        let again = run_bundle(&store, reader, bundle("Alpha"), false).await;
        let f = &again.files[0];
        assert_eq!((f.created, f.updated, f.unchanged), (0, 0, 2));
        assert_eq!(f.documents.unchanged, 2);
        assert_eq!(store.feed_head().await.unwrap(), head);

        // A changed manifest is the next revision; the old one stays.
        let changed = run_bundle(&store, reader, bundle("Alpha, revised"), false).await;
        assert_eq!(changed.files[0].updated, 1);
        let versions = store.list_versions(&alpha).await.unwrap();
        let numbers: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
        assert!(
            numbers.contains(&"1.0.0") && numbers.contains(&"1.0.1"),
            "{numbers:?}"
        );
        let e = store.get_entry(&alpha).await.unwrap().unwrap();
        assert_eq!(e.latest_version.as_deref(), Some("1.0.1"));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_113_297), "1,113,297");
    }
}
