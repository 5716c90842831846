//! Helpers shared by the format tests (`blocks`, `ops`, `recipes`, `skills`, `modules`):
//! the small files and the real ones, a store, an import, a report summed over its files,
//! the files a reader claims, and a whole store as one comparable value.
//!
//! Each test file uses part of these, so the ones it does not use are not dead code.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use quiver_import::formats::{self, Bundle};
use quiver_import::{
    import, Format, ImportOptions, ImportReport, NoProgress, Rejected, RelationCounts, Source,
};
use quiver_model::Kind;
use quiver_sqlite::SqliteStore;
use quiver_store::{Direction, EntryFilter, Store};
use serde_json::{json, Value};

/// The small invented files of a format: `tests/data/<dir>`.
pub fn data(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir)
}

/// The real files of a system in the shared fixtures folder, or `None` (saying SKIPPED)
/// when that folder is not on this machine.
pub fn real(system: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures")
        .join(system);
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("SKIPPED: {} not found", p.display());
        None
    }
}

pub fn store(dir: &Path, name: &str) -> SqliteStore {
    SqliteStore::open(dir.join(name)).unwrap()
}

/// Imports `path` with the default options (but `dry_run`).
pub async fn run(store: &SqliteStore, path: &Path, dry_run: bool) -> ImportReport {
    run_with(
        store,
        path,
        ImportOptions {
            dry_run,
            ..Default::default()
        },
    )
    .await
}

/// Imports `path` keeping (up to 100 000) every rejection in the report.
pub async fn run_keeping_rejections(
    store: &SqliteStore,
    path: &Path,
    dry_run: bool,
) -> ImportReport {
    run_with(
        store,
        path,
        ImportOptions {
            dry_run,
            max_rejected: 100_000,
            ..Default::default()
        },
    )
    .await
}

pub async fn run_with(store: &SqliteStore, path: &Path, opts: ImportOptions) -> ImportReport {
    import(store, vec![Source::new(path)], opts, &NoProgress)
        .await
        .unwrap()
}

/// The report's figures, summed over its files (all of which must be of `format`, and no
/// file may be left unread).
#[derive(Debug, Default)]
pub struct Sum {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: Vec<Rejected>,
    pub rejected_count: u64,
    pub relations: RelationCounts,
    pub documents: RelationCounts,
    pub warnings: Vec<Rejected>,
    pub warning_count: u64,
    pub counts: BTreeMap<String, u64>,
}

pub fn sum(report: &ImportReport, format: Format) -> Sum {
    assert!(
        report.unread.is_empty(),
        "files not read: {:?}",
        report.unread
    );
    let mut s = Sum::default();
    for f in &report.files {
        assert_eq!(f.format, format, "{}", f.path.display());
        s.created += f.created;
        s.updated += f.updated;
        s.unchanged += f.unchanged;
        s.rejected.extend(f.rejected.iter().cloned());
        s.rejected_count += f.rejected_count;
        s.relations.created += f.relations.created;
        s.relations.unchanged += f.relations.unchanged;
        s.relations.updated += f.relations.updated;
        s.relations.rejected += f.relations.rejected;
        s.documents.created += f.documents.created;
        s.documents.unchanged += f.documents.unchanged;
        s.documents.updated += f.documents.updated;
        s.documents.rejected += f.documents.rejected;
        s.warnings.extend(f.warnings.iter().cloned());
        s.warning_count += f.warning_count;
        for (k, v) in &f.counts {
            *s.counts.entry(k.clone()).or_default() += v;
        }
    }
    s
}

/// The rejections of a sum, as text.
pub fn reasons(s: &Sum) -> Vec<String> {
    s.rejected.iter().map(|r| r.to_string()).collect()
}

/// The files of a folder that the reader of `format` claims, relative to it.
pub fn claimed(format: Format, root: &Path) -> Vec<PathBuf> {
    let reader = formats::reader(format).unwrap();
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        if !e.file_type().is_file() {
            continue;
        }
        let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
        let bytes = std::fs::read(e.path()).unwrap();
        if reader.claims(&rel, &bytes[..bytes.len().min(8192)]) {
            out.push(rel);
        }
    }
    out
}

/// What the reader of `format` reads from the files of `root` it claims.
pub fn read_dir(format: Format, root: &Path) -> Bundle {
    formats::reader(format)
        .unwrap()
        .read(root, &claimed(format, root))
}

fn line_where(file: &Path, found: impl Fn(&str) -> bool) -> u64 {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines().position(found).unwrap() as u64 + 1
}

/// The 1-based line of the first line of `file` that starts with `prefix`.
pub fn line_starting(file: &Path, prefix: &str) -> u64 {
    line_where(file, |l| l.starts_with(prefix))
}

/// The 1-based line of the first line of `file` containing `needle`.
pub fn line_containing(file: &Path, needle: &str) -> u64 {
    line_where(file, |l| l.contains(needle))
}

/// A YAML file as a value, to compare files by meaning.
pub fn yaml_file(path: &Path) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A JSON file as a value, to compare files by meaning.
pub fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The records of a bundle, as `<namespace>/<name>`.
/// A bundle's rejections as (file, line, reason).
pub fn rejections(b: &Bundle) -> Vec<(String, Option<u64>, String)> {
    b.rejected
        .iter()
        .map(|r| {
            (
                r.file.as_ref().unwrap().display().to_string(),
                r.line,
                r.reason.clone(),
            )
        })
        .collect()
}

pub fn record_names(b: &Bundle) -> Vec<String> {
    b.records
        .iter()
        .map(|r| format!("{}/{}", r.entry.namespace, r.entry.name))
        .collect()
}

/// Asserts that a store holds no entries of `kinds` (none at all when empty) and no
/// documents, as after a dry run.
pub async fn assert_empty(store: &dyn Store, kinds: &[Kind]) {
    assert!(snapshot(store, kinds).await["entries"]
        .as_object()
        .unwrap()
        .is_empty());
    assert!(store.document_collections().await.unwrap().is_empty());
}

/// Everything a store holds, as one comparable value: the entries of `kinds` (all entries
/// when empty) with their fields, latest manifest, every version's manifest and their relations
/// both ways;
/// documents by collection and key.
pub async fn snapshot(store: &dyn Store, kinds: &[Kind]) -> Value {
    let filter = EntryFilter {
        kinds: kinds.to_vec(),
        ..Default::default()
    };
    let mut entries = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_entries(&filter, cursor.as_deref(), 200)
            .await
            .unwrap();
        for e in page.items {
            let key = e.key();
            let versions: Vec<Value> = store
                .list_versions(&key)
                .await
                .unwrap()
                .into_iter()
                .map(|v| json!([v.version, v.manifest]))
                .collect();
            let manifest = match &e.latest_version {
                Some(v) => store.get_version(&key, v).await.unwrap().unwrap().manifest,
                None => Value::Null,
            };
            let relations = store.list_relations(&key, Direction::Both).await.unwrap();
            entries.insert(
                format!("{}/{}/{}", e.kind, e.namespace, e.name),
                json!({
                    "display_name": e.display_name, "description": e.description,
                    "category": e.category, "tags": e.tags, "keywords": e.keywords,
                    "status": e.status, "visibility": e.visibility,
                    "deprecation": e.deprecation, "popularity": e.popularity,
                    "latest_version": e.latest_version, "manifest": manifest,
                    "versions": versions,
                    "relations": serde_json::to_value(relations).unwrap(),
                }),
            );
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut documents = BTreeMap::new();
    for (collection, _) in store.document_collections().await.unwrap() {
        let mut docs = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = store
                .list_documents(&collection, cursor.as_deref(), 200)
                .await
                .unwrap();
            for d in page.items {
                docs.insert(d.key, d.body);
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        documents.insert(collection, docs);
    }
    json!({ "entries": entries, "documents": documents })
}
