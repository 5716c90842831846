//! Import files into a SQLite store and print the report, elapsed time and rate.
//!
//! ```text
//! cargo run --release -p quiver-import --example import_dataset -- \
//!     [--dry-run] [--batch-size N] [--json] [--export OUT.jsonl] /tmp/quiver.db FILE...
//! ```
//!
//! Run it twice on the same store to see a re-import: everything unchanged, no writes.

use std::path::PathBuf;
use std::time::Instant;

use quiver_import::{import, ImportOptions, Progress, Source};
use quiver_sqlite::SqliteStore;
use quiver_store::{EntryFilter, Store};

/// Prints a line per file and per ~100k records on stderr.
struct Log {
    total: std::sync::atomic::AtomicU64,
    last: std::sync::atomic::AtomicU64,
}

impl Progress for Log {
    fn begin(&self, total_bytes: u64) {
        self.total
            .store(total_bytes, std::sync::atomic::Ordering::Relaxed);
    }
    fn file(&self, path: &std::path::Path, format: quiver_import::Format) {
        eprintln!("reading {} ({format})", path.display());
    }
    fn advance(&self, records: u64, bytes: u64) {
        let last = self.last.load(std::sync::atomic::Ordering::Relaxed);
        if records - last >= 100_000 {
            self.last
                .store(records, std::sync::atomic::Ordering::Relaxed);
            let total = self.total.load(std::sync::atomic::Ordering::Relaxed).max(1);
            eprintln!(
                "  {records} records, {:.0}% of bytes",
                100.0 * bytes as f64 / total as f64
            );
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut opts = ImportOptions::default();
    let mut json = false;
    let mut export: Option<PathBuf> = None;
    let mut positional = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dry-run" => opts.dry_run = true,
            "--json" => json = true,
            "--batch-size" => opts.batch_size = args.next().ok_or("--batch-size N")?.parse()?,
            "--export" => export = Some(args.next().ok_or("--export FILE")?.into()),
            "--parse-only" => {
                // Time the reading stage alone: decompress, parse, validate; no store.
                for path in args.by_ref() {
                    let started = Instant::now();
                    let (mut ok, mut bad) = (0u64, 0u64);
                    for r in quiver_import::dataset::DatasetReader::open(path.as_ref())? {
                        if r.is_ok() {
                            ok += 1
                        } else {
                            bad += 1
                        }
                    }
                    println!(
                        "{path}: {ok} records, {bad} rejected, parsed in {:.2} s",
                        started.elapsed().as_secs_f64()
                    );
                }
                return Ok(());
            }
            _ => positional.push(a),
        }
    }
    if positional.len() < 2 && export.is_none() {
        return Err("usage: import_dataset [--dry-run] [--batch-size N] [--json] [--export OUT] STORE.db FILE...".into());
    }
    let store = SqliteStore::open(&positional[0])?;
    let sources: Vec<Source> = positional[1..]
        .iter()
        .map(|p| Source::new(p.as_str()))
        .collect();
    let head_before = store.feed_head().await?;
    if !sources.is_empty() {
        let log = Log {
            total: Default::default(),
            last: Default::default(),
        };
        let report = import(&store, sources, opts, &log).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{report}");
        }
        let stats = store.stats().await?;
        println!(
            "elapsed {:.2} s, {:.0} records/s; store: {} entries, {} versions, {} relations, \
             feed head {} (was {head_before}), {:.0} MB",
            report.elapsed.as_secs_f64(),
            report.rate(),
            stats.entries,
            stats.versions,
            stats.relations,
            stats.feed_head,
            stats.size_bytes.unwrap_or(0) as f64 / 1e6,
        );
    }
    if let Some(path) = export {
        let started = Instant::now();
        let file = std::fs::File::create(&path)?;
        let n = quiver_import::export(&store, EntryFilter::default(), file).await?;
        println!(
            "exported {} entries and {} documents to {} in {:.2} s",
            n.entries,
            n.documents,
            path.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
