//! SIGKILL in the middle of a bulk import: afterwards the store holds whole batches only,
//! the feed has no gap, a re-run completes the import, and the index agrees with the
//! store. Runs on SQLite, and on PostgreSQL when `QUIVER_TEST_POSTGRES_URL` is set.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_engine::{EngineConfig, Registry};
use quiver_store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_quiver");
const RECORDS: usize = 30_000;
const BATCH: usize = 500;

fn write_jsonl(path: &Path) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..RECORDS {
        writeln!(
            f,
            r#"{{"kind":"tool","namespace":"bulk","name":"bulk.tool{i}","description":"heron feather {i}","status":"published","versions":[{{"version":"1.0.{i}","manifest":{{}}}}]}}"#
        )
        .unwrap();
    }
}

fn import_cmd(data_dir: &Path, database: Option<&str>, file: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "import",
        "--no-index",
        "--json",
        "--batch-size",
        &BATCH.to_string(),
        "--data-dir",
    ])
    .arg(data_dir)
    .arg(file)
    .env("QUIVER_LOG", "warn")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some(db) = database {
        c.args(["--database", db]);
    }
    c
}

async fn kill_during_import(store: Arc<dyn Store>, data_dir: &Path, database: Option<&str>) {
    let file = data_dir.join("bulk.jsonl");
    std::fs::create_dir_all(data_dir).unwrap();
    write_jsonl(&file);

    let mut child = import_cmd(data_dir, database, &file).spawn().unwrap();
    // Kill it once a few batches are in, while it is still writing.
    let started = Instant::now();
    loop {
        let head = store.feed_head().await.unwrap();
        if head > (3 * BATCH) as i64 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the import ended before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the import never started writing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let stats = store.stats().await.unwrap();
    assert!(
        stats.entries < RECORDS as u64,
        "killed before the end: {stats:?}"
    );
    assert_eq!(
        stats.entries % BATCH as u64,
        0,
        "only whole batches were committed: {stats:?}"
    );
    assert_eq!(stats.entries, stats.versions);
    let feed = store.feed_since(0, 10 * RECORDS).await.unwrap();
    for (i, ev) in feed.iter().enumerate() {
        assert_eq!(ev.seq, i as i64 + 1, "the feed has no gap");
    }
    assert_eq!(feed.len() as i64, stats.feed_head);

    // Run it again: it completes, keeping what the first run committed.
    let out = import_cmd(data_dir, database, &file).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["totals"]["created"],
        RECORDS as u64 - stats.entries,
        "{report}"
    );
    assert_eq!(report["totals"]["unchanged"], stats.entries, "{report}");
    let after = store.stats().await.unwrap();
    assert_eq!(after.entries, RECORDS as u64);

    // A node starting on this store indexes everything: index and store agree.
    let db = match database {
        Some(url) => quiver_backends::open_database(url).await.unwrap(),
        None => quiver_backends::open(quiver_backends::Location::in_data_dir(data_dir), None)
            .await
            .unwrap(),
    };
    let registry = Registry::open(db, EngineConfig::new(data_dir))
        .await
        .unwrap();
    let status = registry.status().await.unwrap();
    assert_eq!(status.index_lag, 0);
    assert_eq!(status.index.docs, RECORDS as u64, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_import_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let store: Arc<dyn Store> =
        Arc::new(quiver_sqlite::SqliteStore::open(quiver_backends::store_path(&data)).unwrap());
    kill_during_import(store, &data, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_import_on_postgres() {
    let Some(url) = quiver_postgres::testing::test_url() else {
        return;
    };
    let schema = quiver_postgres::testing::TestSchema::new(&url);
    let store = schema.store().await.unwrap(); // creates and migrates the schema
    let sep = if url.contains('?') { '&' } else { '?' };
    let db = format!("{url}{sep}options=-csearch_path%3D{}", schema.name());
    let dir = tempfile::tempdir().unwrap();
    kill_during_import(Arc::new(store), dir.path(), Some(&db)).await;
}
