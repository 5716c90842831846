//! Measure `import_batch` throughput on PostgreSQL with the real data set.
//!
//! ```text
//! cargo run --release -p quiver-postgres --example pg_import -- \
//!     [--url postgres://postgres@127.0.0.1:5432/test] [--schema quiver_bench_import] \
//!     [--batch-size 10000] [--keep] [--reimport] [FILE...]
//! ```
//!
//! Files default to `../shared/data/{pypi,npm}.tsv.gz` (from the repository root) (or `$QUIVER_DATA/...`); the URL
//! to `$QUIVER_DATABASE_URL`, then `$QUIVER_TEST_POSTGRES_URL`. The schema is dropped
//! first (a fresh import) unless `--keep`, and left in place afterwards for inspection.
//! `--reimport` runs the same files a second time (every record unchanged, no writes).
//!
//! Reading (gunzip, parse, validate) runs on its own thread and hands batches through a
//! channel of two, as quiver's import pipeline does, so the figure is the end-to-end rate
//! of a real import; the time spent inside `import_batch` is reported separately.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use quiver_import::dataset::DatasetReader;
use quiver_postgres::{PostgresOptions, PostgresStore};
use quiver_store::{ImportCounts, ImportRecord, Store};

struct Args {
    url: String,
    schema: String,
    batch_size: usize,
    keep: bool,
    reimport: bool,
    files: Vec<PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        url: std::env::var("QUIVER_DATABASE_URL")
            .or_else(|_| std::env::var("QUIVER_TEST_POSTGRES_URL"))
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        schema: "quiver_bench_import".into(),
        batch_size: 10_000,
        keep: false,
        reimport: false,
        files: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--url" => a.url = it.next().ok_or("--url URL")?,
            "--schema" => a.schema = it.next().ok_or("--schema NAME")?,
            "--batch-size" => {
                a.batch_size = it
                    .next()
                    .ok_or("--batch-size N")?
                    .parse()
                    .map_err(|e| format!("--batch-size: {e}"))?
            }
            "--keep" => a.keep = true,
            "--reimport" => a.reimport = true,
            _ => a.files.push(arg.into()),
        }
    }
    if a.files.is_empty() {
        let dir = std::env::var("QUIVER_DATA").unwrap_or_else(|_| "../shared/data".into());
        for f in ["pypi.tsv.gz", "npm.tsv.gz"] {
            let p = PathBuf::from(&dir).join(f);
            if p.exists() {
                a.files.push(p);
            }
        }
        if a.files.is_empty() {
            return Err(format!("no data set in {dir}; pass files"));
        }
    }
    Ok(a)
}

struct Pass {
    records: u64,
    rejected_lines: u64,
    counts: ImportCounts,
    elapsed: Duration,
    in_store: Duration,
}

async fn run(store: &PostgresStore, a: &Args) -> Result<Pass, Box<dyn std::error::Error>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<ImportRecord>>(2);
    let files = a.files.clone();
    let batch_size = a.batch_size;
    let reader = std::thread::spawn(move || -> Result<u64, String> {
        let mut bad = 0u64;
        for f in files {
            let mut batch = Vec::with_capacity(batch_size);
            for r in DatasetReader::open(&f)? {
                match r {
                    Ok(rec) => batch.push(rec),
                    Err(_) => bad += 1,
                }
                if batch.len() >= batch_size {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
                    if tx.blocking_send(full).is_err() {
                        return Ok(bad);
                    }
                }
            }
            if !batch.is_empty() && tx.blocking_send(batch).is_err() {
                return Ok(bad);
            }
        }
        Ok(bad)
    });
    let started = Instant::now();
    let mut in_store = Duration::ZERO;
    let mut counts = ImportCounts::default();
    let mut records = 0u64;
    let mut next_report = 100_000u64;
    while let Some(batch) = rx.recv().await {
        records += batch.len() as u64;
        let t = Instant::now();
        let outcomes = store.import_batch(batch).await?;
        in_store += t.elapsed();
        outcomes.iter().for_each(|o| counts.add(o));
        if records >= next_report {
            eprintln!(
                "  {records} records, {:.1} s, {:.0} records/s",
                started.elapsed().as_secs_f64(),
                records as f64 / started.elapsed().as_secs_f64()
            );
            next_report += 100_000;
        }
    }
    let rejected_lines = reader.join().map_err(|_| "reader panicked")??;
    Ok(Pass {
        records,
        rejected_lines,
        counts,
        elapsed: started.elapsed(),
        in_store,
    })
}

fn print(label: &str, p: &Pass) {
    println!(
        "{label}: {} records in {:.2} s = {:.0} records/s end to end \
         ({:.2} s inside import_batch = {:.0} records/s); created {}, updated {}, \
         unchanged {}, rejected {}; {} unreadable lines",
        p.records,
        p.elapsed.as_secs_f64(),
        p.records as f64 / p.elapsed.as_secs_f64(),
        p.in_store.as_secs_f64(),
        p.records as f64 / p.in_store.as_secs_f64(),
        p.counts.created,
        p.counts.updated,
        p.counts.unchanged,
        p.counts.rejected,
        p.rejected_lines,
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args()?;
    if !a.keep {
        let store = PostgresStore::connect(&a.url).await?;
        store
            .client()
            .await?
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", a.schema))
            .await?;
    }
    let store = PostgresStore::connect_with(PostgresOptions::new(&a.url).schema(&a.schema)).await?;
    eprintln!(
        "importing {:?} into schema {} of {}",
        a.files,
        a.schema,
        quiver_postgres::redact_url(&a.url)
    );
    let first = run(&store, &a).await?;
    print("import", &first);
    if a.reimport {
        let second = run(&store, &a).await?;
        print("re-import", &second);
    }
    let stats = store.stats().await?;
    println!(
        "store: {} entries, {} versions, feed head {}, {:.0} MB",
        stats.entries,
        stats.versions,
        stats.feed_head,
        stats.size_bytes.unwrap_or(0) as f64 / 1e6
    );
    Ok(())
}
