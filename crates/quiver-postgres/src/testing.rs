//! Test support: one PostgreSQL schema per test, dropped when the test ends.
//!
//! Tests read the server's URL from `QUIVER_TEST_POSTGRES_URL` ([`test_url`]); without it
//! they skip loudly. [`TestSchema`] names a fresh schema (`quiver_test_<unix secs>_<pid>_<n>`,
//! unique across parallel tests and processes) and drops it, with everything in it, when
//! it is dropped — from a thread of its own, since `Drop` cannot await and may run inside
//! an async runtime. Schemas left behind by killed runs are dropped by the first
//! [`TestSchema`] of a later run once they are more than three hours old.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quiver_model::Result;

use crate::{PostgresOptions, PostgresStore};

/// The environment variable naming the test server.
pub const TEST_URL_VAR: &str = "QUIVER_TEST_POSTGRES_URL";

/// The test server's URL, or `None` after printing a loud `SKIPPED` line to stderr.
///
/// The line is written to the stderr handle itself, not through `eprintln!`, so the test
/// harness's output capture does not hide it: a skipped run shows in CI logs.
pub fn test_url() -> Option<String> {
    match std::env::var(TEST_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "SKIPPED: {TEST_URL_VAR} not set");
            None
        }
    }
}

const PREFIX: &str = "quiver_test_";
const STALE_AFTER: Duration = Duration::from_secs(3 * 3600);

/// A schema that exists for one test. Dropping it drops the schema (`CASCADE`).
pub struct TestSchema {
    url: String,
    name: String,
}

impl TestSchema {
    /// A fresh schema name on the server at `url` (created by the first store that
    /// connects with it).
    pub fn new(url: &str) -> TestSchema {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static SWEPT: OnceLock<()> = OnceLock::new();
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        SWEPT.get_or_init(|| sweep_stale(url, secs));
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TestSchema {
            url: url.to_string(),
            name: format!("{PREFIX}{secs}_{}_{n}", std::process::id()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Options for a store in this schema, with a small pool (tests run in parallel and the
    /// server has a limited number of connections).
    pub fn options(&self) -> PostgresOptions {
        PostgresOptions::new(&self.url)
            .schema(&self.name)
            .max_connections(4)
            .listen_poll_interval(Duration::from_secs(1))
    }

    /// Connect a store in this schema (several may share it).
    pub async fn store(&self) -> Result<PostgresStore> {
        PostgresStore::connect_with(self.options()).await
    }

    /// Connect a whole database handle in this schema (a node; several may share it).
    pub async fn database(&self) -> Result<quiver_store::Database> {
        Ok(self.store().await?.database())
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let sql = format!(
            "SET lock_timeout = '20s'; DROP SCHEMA IF EXISTS {} CASCADE",
            self.name
        );
        if let Err(e) = run_blocking(&self.url, sql) {
            eprintln!("warning: could not drop test schema {}: {e}", self.name);
        }
    }
}

/// Drop `quiver_test_<secs>_…` schemas older than [`STALE_AFTER`] (left by killed runs).
fn sweep_stale(url: &str, now_secs: u64) {
    let cutoff = now_secs.saturating_sub(STALE_AFTER.as_secs());
    let sql = format!(
        "DO $$ DECLARE s text; BEGIN \
           FOR s IN SELECT nspname FROM pg_namespace \
                     WHERE nspname ~ '^{PREFIX}[0-9]+_' \
                       AND split_part(substr(nspname, {}), '_', 1)::bigint < {cutoff} LOOP \
             EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', s); \
           END LOOP; END $$",
        PREFIX.len() + 1
    );
    if let Err(e) = run_blocking(url, sql) {
        eprintln!("warning: could not sweep stale test schemas: {e}");
    }
}

/// Run `sql` on a fresh connection from a thread of its own (usable from `Drop`, inside
/// or outside an async runtime), waiting for it to finish.
fn run_blocking(url: &str, sql: String) -> std::result::Result<(), String> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            let driver = tokio::spawn(conn);
            let out = client.batch_execute(&sql).await.map_err(|e| e.to_string());
            drop(client);
            let _ = driver.await;
            out
        })
    })
    .join()
    .map_err(|_| "the cleanup thread panicked".to_string())?
}
