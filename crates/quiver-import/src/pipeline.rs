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
use quiver_model::{
    Context, EntryKey, Error, ErrorCode, Kind, Relation, Result, Status, Visibility,
};
use quiver_store::{Direction, ImportOutcome, ImportRecord, Store};
use serde::{Serialize, Serializer};
use tokio::sync::mpsc;

use crate::dataset::DatasetReader;
use crate::input::{self, detect_format, source_error, Format};
use crate::jsonl::JsonlReader;
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
        }
    }

    fn keep(&mut self, r: Rejected, max: usize) {
        if self.rejected.len() < max {
            self.rejected.push(r);
        }
    }

    /// Rejections counted but not kept.
    pub fn rejected_not_listed(&self) -> u64 {
        (self.rejected_count + self.relations.rejected).saturating_sub(self.rejected.len() as u64)
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
}

/// The outcome of an import: per file, totals, and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportReport {
    pub dry_run: bool,
    pub files: Vec<FileReport>,
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
        self.totals.rejected > 0 || self.totals.relations.rejected > 0
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
            for rej in file.rejected.iter().take(SHOWN_REJECTIONS) {
                writeln!(f, "    {rej}")?;
            }
            let more = (file.rejected_count + r.rejected).saturating_sub(SHOWN_REJECTIONS as u64);
            if more > 0 {
                writeln!(f, "    ... and {} more rejected", thousands(more))?;
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
    /// Per record: its line, its name for messages, its outgoing relations.
    lines: Vec<u64>,
    names: Vec<String>,
    relations: Vec<Vec<Relation>>,
    /// Lines that failed to parse or validate.
    rejected: Vec<Rejected>,
}

impl Batch {
    fn new(file: usize, cap: usize) -> Self {
        Batch {
            file,
            records: Vec::with_capacity(cap),
            lines: Vec::with_capacity(cap),
            names: Vec::with_capacity(cap),
            relations: Vec::with_capacity(cap),
            rejected: Vec::new(),
        }
    }

    fn read(&self) -> u64 {
        (self.records.len() + self.rejected.len()) as u64
    }

    fn add(
        &mut self,
        item: std::result::Result<(ImportRecord, Vec<Relation>), Rejected>,
        line: u64,
    ) {
        match item {
            Ok((rec, rels)) => {
                self.names
                    .push(format!("{}/{}", rec.entry.namespace, rec.entry.name));
                self.records.push(rec);
                self.lines.push(line);
                self.relations.push(rels);
            }
            Err(r) => self.rejected.push(r),
        }
    }
}

enum Msg {
    File(usize),
    Batch(Batch),
    Fatal(Error),
}

/// Identities (key hashes) of the records read so far, with where each was first seen
/// (file index in the top 16 bits, line in the low 48).
type Seen = HashMap<u64, u64>;

fn pack(file: usize, line: u64) -> u64 {
    ((file as u64) << 48) | (line & ((1 << 48) - 1))
}

/// The reading stage: every source in turn, in batches, until done or the receiver is
/// gone (the import failed or was dropped). Returns the identities it read.
fn read_all(
    plan: Vec<(PathBuf, Format)>,
    batch_size: usize,
    bytes: Arc<AtomicU64>,
    tx: mpsc::Sender<Msg>,
) -> Seen {
    let mut seen = Seen::new();
    let names: Vec<String> = plan
        .iter()
        .map(|(p, _)| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string())
        })
        .collect();
    for (i, (path, format)) in plan.into_iter().enumerate() {
        if tx.blocking_send(Msg::File(i)).is_err() {
            return seen;
        }
        let input = match input::open(&path, bytes.clone()) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Msg::Fatal(e));
                return seen;
            }
        };
        let mut items: Box<dyn FnMut() -> Option<(ItemResult, u64)>> = match format {
            Format::Tsv => match DatasetReader::from_bufread(input) {
                Ok(mut r) => Box::new(move || {
                    let item = r.next()?;
                    Some((item.map(|rec| (rec, Vec::new())), r.line()))
                }),
                Err(e) => {
                    let _ = tx.blocking_send(Msg::Fatal(source_error(&path, e)));
                    return seen;
                }
            },
            Format::Jsonl => {
                let mut r = JsonlReader::from_bufread(input);
                Box::new(move || {
                    let item = r.next()?;
                    Some((item, r.line()))
                })
            }
        };
        let mut batch = Batch::new(i, batch_size);
        while let Some((item, line)) = items() {
            let item = match item {
                Ok((rec, rels)) => {
                    let e = &rec.entry;
                    let h = key_hash(e.kind, &e.namespace, &e.name);
                    match seen.get(&h) {
                        None => {
                            seen.insert(h, pack(i, line));
                            Ok((rec, rels))
                        }
                        Some(&first) => {
                            let (file, first_line) =
                                ((first >> 48) as usize, first & ((1 << 48) - 1));
                            let at = if file == i {
                                format!("line {first_line}")
                            } else {
                                format!("line {first_line} of {}", names[file])
                            };
                            Err(Rejected {
                                line: Some(line),
                                name: Some(format!("{}/{}", e.namespace, e.name)),
                                field: Some("name".into()),
                                reason: format!(
                                    "name: {} is also at {at}; an entry is imported once per \
                                     run and the first occurrence is kept",
                                    EntryKey::new(e.kind, &e.namespace, &e.name)
                                ),
                            })
                        }
                    }
                }
                Err(r) => Err(r),
            };
            batch.add(item, line);
            if batch.read() as usize >= batch_size {
                let full = std::mem::replace(&mut batch, Batch::new(i, batch_size));
                if tx.blocking_send(Msg::Batch(full)).is_err() {
                    return seen;
                }
            }
        }
        if batch.read() > 0 && tx.blocking_send(Msg::Batch(batch)).is_err() {
            return seen;
        }
    }
    seen
}

type ItemResult = std::result::Result<(ImportRecord, Vec<Relation>), Rejected>;

/// A relation waiting for all entries to be in.
struct PendingRelation {
    file: usize,
    line: u64,
    /// Its index in the line's `relations`, for the field path of a rejection.
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
    let batch_size = opts.batch_size.max(1);

    let mut plan: Vec<(PathBuf, Format)> = Vec::with_capacity(sources.len());
    let mut total_bytes = 0u64;
    for s in sources {
        let format = match s.format.or(opts.format) {
            Some(f) => f,
            None => detect_format(&s.path)?,
        };
        if s.path.as_os_str() != "-" {
            total_bytes += std::fs::metadata(&s.path)
                .map_err(|e| source_error(&s.path, e))?
                .len();
        }
        plan.push((s.path, format));
    }
    progress.begin(total_bytes);
    let mut files: Vec<FileReport> = plan
        .iter()
        .map(|(p, f)| FileReport::new(p.clone(), *f))
        .collect();

    let bytes = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = mpsc::channel::<Msg>(2);
    let reader = tokio::task::spawn_blocking({
        let plan = plan.clone();
        let bytes = bytes.clone();
        move || read_all(plan, batch_size, bytes, tx)
    });

    let mut pending: Vec<PendingRelation> = Vec::new();
    let mut records_read = 0u64;
    while let Some(msg) = rx.recv().await {
        let b = match msg {
            Msg::File(i) => {
                progress.file(&plan[i].0, plan[i].1);
                continue;
            }
            Msg::Fatal(e) => return Err(e),
            Msg::Batch(b) => b,
        };
        records_read += b.read();
        let report = &mut files[b.file];
        report.records += b.read();
        report.rejected_count += b.rejected.len() as u64;
        for r in b.rejected {
            report.keep(r, opts.max_rejected);
        }
        let (first, last) = (
            b.lines.first().copied().unwrap_or(0),
            b.lines.last().copied().unwrap_or(0),
        );
        let outcomes = if opts.dry_run {
            dry_run_batch(store, &b.records).await?
        } else {
            store.import_batch(b.records).await.map_err(|e| {
                Error::internal(
                    format!(
                        "importing lines {first}-{last} of {}",
                        plan[b.file].0.display()
                    ),
                    e,
                )
            })?
        };
        for (i, (outcome, rels)) in outcomes.into_iter().zip(b.relations).enumerate() {
            match outcome {
                ImportOutcome::Created => report.created += 1,
                ImportOutcome::Updated => report.updated += 1,
                ImportOutcome::Unchanged => report.unchanged += 1,
                ImportOutcome::Rejected(e) => {
                    report.rejected_count += 1;
                    report.keep(
                        Rejected::from_error(Some(b.lines[i]), Some(b.names[i].clone()), &e),
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
                        line: b.lines[i],
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
    }
    Ok(ImportReport {
        dry_run: opts.dry_run,
        files,
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
    futures_util::stream::iter(records)
        .map(|rec| classify(store, rec))
        .buffered(DRY_RUN_LOOKUPS)
        .collect::<Vec<Result<ImportOutcome>>>()
        .await
        .into_iter()
        .collect()
}

/// What the store's upsert would do with one record (it compares the same fields).
async fn classify(store: &dyn Store, rec: &ImportRecord) -> Result<ImportOutcome> {
    let e = &rec.entry;
    let key = EntryKey::new(e.kind, &e.namespace, &e.name);
    let Some(old) = store.get_entry(&key).await? else {
        return Ok(ImportOutcome::Created);
    };
    let mut changed = old.display_name != e.display_name
        || old.description != e.description
        || old.category != e.category
        || old.tags != e.tags
        || old.keywords != e.keywords
        || old.status != e.status.unwrap_or(Status::Published)
        || old.visibility != e.visibility.unwrap_or(Visibility::Public)
        || old.deprecation != rec.deprecation
        || old.popularity != e.popularity.clone().unwrap_or_default();
    if !rec.versions.is_empty() {
        let stored = store.list_versions(&key).await?;
        for v in &rec.versions {
            let want = &v.version.version.version;
            match stored.iter().find(|s| &s.version == want) {
                None => changed = true,
                Some(s) if s.sha256 != v.version.sha256 => {
                    return Ok(ImportOutcome::Rejected(Error::conflict(
                        "version",
                        format!(
                            "version {want} of {key} is already published with another \
                             manifest; versions are immutable"
                        ),
                    )))
                }
                Some(s) => {
                    let reason = if v.yanked {
                        v.yank_reason.clone()
                    } else {
                        None
                    };
                    if s.yanked != v.yanked || s.yank_reason != reason {
                        changed = true;
                    }
                }
            }
        }
    }
    Ok(if changed {
        ImportOutcome::Updated
    } else {
        ImportOutcome::Unchanged
    })
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
                        |k: &EntryKey| seen.contains_key(&key_hash(k.kind, &k.namespace, &k.name));
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
                        Rejected::from_error(
                            Some(p.line),
                            Some(format!("{}/{}", rel.from.namespace, rel.from.name)),
                            &e,
                        ),
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

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_113_297), "1,113,297");
    }
}
