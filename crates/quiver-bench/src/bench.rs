//! The benchmark of issue 3 on the 1.1M-package data set, with SQLite FTS5 and PostgreSQL
//! full-text + pg_trgm measured on the same rows and the same queries.
//!
//! quiver itself is measured as a black box: the `quiver` binary (found by
//! [`quiver_binary`]) runs `import` and `serve` in child processes, exactly as a user
//! runs them, so this crate links only the importer's data set reader (the peers get the
//! same rows), the relevance set and the index path, never the server.
//!
//! The run, in order (progress lines go to stderr):
//! 1. read the rows with the importer's own reader (the peers are fed exactly these) and
//!    draw a seeded query mix: exact names (popular and random), typos of popular names,
//!    the relevance set's descriptive/generic queries, and word pairs from summaries;
//! 2. `quiver import --json` in a child process: wall time to searchable (the import
//!    builds the index at its end), rate, the child's peak RSS, store and index sizes;
//! 3. `quiver serve` in a child process: time to `/readyz` 200, then through HTTP on
//!    loopback with one sequential keep-alive client: exact lookups, the search mix
//!    (client-side latency and the engine's own `took_us`), then N concurrent clients
//!    for a fixed time, the server's memory, and the relevance set;
//! 4. the peers, called in-process (no HTTP, no JSON: this flatters them);
//! 5. one table side by side, with the pass/fail of the quality bars.
//!
//! Child servers are stopped on every exit path (a guard that kills on drop), every wait
//! has a timeout, and the PostgreSQL schema is dropped also when a step fails.

mod attacks;
mod consumers;
mod data;
mod fts5;
mod http;
mod intel;
mod pg;
mod pipeline;
mod proc;
mod stats;
mod writes;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, ValueEnum};
use quiver_search::relevance::{self, RelevanceCase, RelevanceReport};
use serde::{Deserialize, Serialize};

use data::{encode_name, encode_query_value, QClass, Query, Rng, Row};
use http::Client;
use proc::ChildGuard;
use stats::{fmt_bytes, fmt_int, fmt_ms, fmt_ratio, fmt_secs, pct, Lat, LatSummary};

/// The data set files: `--data`, or the two of `../shared/data`.
fn data_files(a: &BenchArgs) -> Vec<PathBuf> {
    if a.data.is_empty() {
        vec![
            PathBuf::from("../shared/data/pypi.tsv.gz"),
            PathBuf::from("../shared/data/npm.tsv.gz"),
        ]
    } else {
        a.data.clone()
    }
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The `quiver` binary to measure [default: `quiver` next to this executable].
    #[arg(long, env = "QUIVER_BIN")]
    pub quiver: Option<PathBuf>,
    /// Data set files [default: ../shared/data/pypi.tsv.gz ../shared/data/npm.tsv.gz].
    #[arg(long, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Take only the first N rows of each file (a quick run).
    #[arg(long)]
    pub rows: Option<usize>,
    /// Work directory [default: a fresh temporary directory].
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Keep what the bench wrote in the work directory (store, index, peer databases).
    #[arg(long)]
    pub keep: bool,
    /// The relevance set.
    #[arg(long, default_value = "relevance/queries.tsv")]
    pub relevance: PathBuf,
    /// The need set (natural-language needs over the data set's packages), measured on
    /// quiver and on the peers alike; skipped when the file is absent.
    #[arg(long, default_value = "relevance/needs.tsv")]
    pub needs: PathBuf,
    /// How many change-feed events to read from position 0 (fewer when the feed is
    /// shorter: an import writes one event per entry and one per version).
    #[arg(long, default_value_t = 1_000_000)]
    pub feed_events: u64,
    /// Exact lookups to time.
    #[arg(long, default_value_t = 20_000)]
    pub lookups: usize,
    /// Website pages to time, of each of the search page and entry pages.
    #[arg(long, default_value_t = 1_000)]
    pub pages: usize,
    /// Search queries in the mix.
    #[arg(long, default_value_t = 2_000)]
    pub queries: usize,
    /// Concurrent keep-alive clients for the throughput test.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Seconds of the throughput test.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Do not measure the peers.
    #[arg(long)]
    pub skip_peers: bool,
    /// Which peers to measure.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    pub peers: Vec<PeerKind>,
    /// PostgreSQL for the PostgreSQL peer (a fresh schema is created and dropped).
    #[arg(
        long,
        env = "QUIVER_BENCH_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test",
        hide_env_values = true
    )]
    pub postgres_url: String,
    /// Also print every figure as JSON on stdout (the table then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Seed of the random draws (lookups, query mix).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Longest wait for the import, in seconds.
    #[arg(long, default_value_t = 1800)]
    pub import_timeout: u64,
    /// quiver's own store: the embedded SQLite, or PostgreSQL at `--postgres-url` (in a
    /// fresh schema, dropped at the end), where a second node is also measured.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: Backend,
    /// Run only the attacks (slowloris, large version lists) against a fresh server,
    /// probing `/healthz` and reading the server's peak memory; see `bench/attacks.rs`.
    #[arg(long)]
    pub attacks: bool,
    /// Seconds each attack lasts.
    #[arg(long, default_value_t = 20.0)]
    pub attack_seconds: f64,
    /// Run only the write benchmark: two nodes over PostgreSQL at `--postgres-url` (a fresh
    /// schema), `--writers` clients creating entries, then publishing versions; see
    /// `bench/writes.rs`.
    #[arg(long)]
    pub pg_writes: bool,
    /// Run only the tool-intelligence benchmark: a catalog of `--intel-tools` copies of
    /// the real ops profiles, selection through HTTP, `--intel-events` telemetry events,
    /// pattern reports and drift lists (on `--backend`); see `bench/intel.rs`.
    #[arg(long)]
    pub tool_intel: bool,
    /// The ops tool profiles the catalog is copied from.
    #[arg(long, default_value = "../shared/fixtures/opsconductor-ng")]
    pub profiles: PathBuf,
    #[arg(long, default_value_t = 100_000)]
    pub intel_tools: usize,
    #[arg(long, default_value_t = 5_000_000)]
    pub intel_events: usize,
    #[arg(long, default_value_t = 2_000)]
    pub intel_selects: usize,
    /// Run only the recipe pipeline benchmark: a synthetic queue of `--pipeline-items`
    /// items and `--pipeline-failures` failure records made from the seed's real queue
    /// and failure files (`--pipeline-fixtures`), loaded through HTTP, then claims,
    /// reports, the blockers report, item histories and failure queries (on
    /// `--backend`); see `bench/pipeline.rs`.
    #[arg(long)]
    pub pipeline: bool,
    #[arg(long, default_value_t = 1_000_000)]
    pub pipeline_items: usize,
    #[arg(long, default_value_t = 5_000_000)]
    pub pipeline_failures: usize,
    /// Claims of 100 timed one after the other (each followed by its report).
    #[arg(long, default_value_t = 2_000)]
    pub pipeline_claims: usize,
    /// The seed's tsuku data: `queues/priority-queue.json` and `failures/*.jsonl`.
    #[arg(long, default_value = "../shared/fixtures/tsuku/data")]
    pub pipeline_fixtures: PathBuf,
    /// Run only the consumers' benchmark: `--consumer-modules` synthetic modules made
    /// from the real ones (`--module-fixtures`), the data set and the skills
    /// (`--skill-fixtures`) imported, then lock sets of 100 references resolved, single
    /// resolutions, and skill suggestions for 50-dependency manifests; see
    /// `bench/consumers.rs`.
    #[arg(long)]
    pub consumers: bool,
    #[arg(long, default_value_t = 100_000)]
    pub consumer_modules: usize,
    /// Requests of each kind the consumers' benchmark times.
    #[arg(long, default_value_t = 500)]
    pub consumer_requests: usize,
    /// Seconds of the consumers' benchmark's download load (8 clients, then paced while
    /// lookups are timed).
    #[arg(long, default_value_t = 10.0)]
    pub download_seconds: f64,
    /// Module versions published with content for the download load.
    #[arg(long, default_value_t = 1_000)]
    pub download_modules: usize,
    /// The module registry's files (the mlld fixtures).
    #[arg(long, default_value = "../shared/fixtures/mlld-registry")]
    pub module_fixtures: PathBuf,
    /// The skills registry's files (the upskill fixtures).
    #[arg(long, default_value = "../shared/fixtures/upskill")]
    pub skill_fixtures: PathBuf,
    /// Writers of the write benchmark, split over the two nodes.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// Seconds of each phase of the write benchmark.
    #[arg(long, default_value_t = 10.0)]
    pub write_seconds: f64,
    /// Nodes to run over PostgreSQL (1 or 2): the second one joins after the first is
    /// measured, catches up from the change feed, and is measured alone and under load
    /// with the first.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub nodes: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerKind {
    Sqlite,
    Postgres,
}

// ---- progress -------------------------------------------------------------------------

static STARTED: OnceLock<Instant> = OnceLock::new();
/// Set on Ctrl-C: long loops on blocking threads stop early.
static CANCEL: AtomicBool = AtomicBool::new(false);

macro_rules! progress {
    ($($arg:tt)*) => {{
        let t = STARTED.get().map_or(0.0, |s| s.elapsed().as_secs_f64());
        eprintln!("bench [{t:7.1}s] {}", format!($($arg)*));
    }};
}

fn cancelled() -> anyhow::Result<()> {
    if CANCEL.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

// ---- the figures ----------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// quiver's own store.
    pub backend: Backend,
    pub files: Vec<PathBuf>,
    pub rows: u64,
    pub rows_pypi: u64,
    pub rows_npm: u64,
    pub rows_rejected_by_reader: u64,
    pub queries: usize,
    pub lookups: usize,
    pub concurrency: usize,
    pub duration_secs: f64,
    pub seed: u64,
    /// `--rows`: only the first N rows of each file were used.
    pub rows_limit: Option<usize>,
    pub cpus: usize,
    /// The 1-minute load average when the bench started and when quiver's measures ended:
    /// above the number of CPUs, other work competed with the bench.
    pub load_avg_start: f64,
    pub load_avg_after_quiver: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportFigures {
    /// Wall time of `quiver import` (store and index) until the process exited.
    pub secs: f64,
    pub records: u64,
    pub created: u64,
    pub rejected: u64,
    pub rows_per_sec: f64,
    /// CPU time of the import process (user + system): what it would take with a core
    /// to itself, when it runs on one thread.
    pub cpu_secs: f64,
    /// The import pipeline's own time for the store (from its report).
    pub store_phase_secs: Option<f64>,
    /// The index build at the end (from the import's report).
    pub index_phase_secs: Option<f64>,
    pub peak_rss_bytes: u64,
    pub store_bytes: u64,
    pub index_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ClassLatency {
    pub http: LatSummary,
    pub engine: LatSummary,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadFigures {
    pub concurrency: usize,
    pub secs: f64,
    pub requests: u64,
    pub errors: u64,
    pub requests_per_sec: f64,
    pub latency: LatSummary,
}

/// Reading the public change feed (`GET /api/v1/changes?since=…&limit=1000`) from
/// position 0 as an anonymous follower, one client, page after page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FeedFigures {
    pub events: u64,
    pub pages: u64,
    pub secs: f64,
    pub events_per_sec: f64,
    /// One page's latency.
    pub page: LatSummary,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct QuiverFigures {
    pub import: ImportFigures,
    pub cold_start_secs: f64,
    pub lookup: LatSummary,
    pub lookup_errors: u64,
    pub lookup_scoped: u64,
    pub lookup_npm: u64,
    pub search_http: LatSummary,
    pub search_engine: LatSummary,
    pub search_errors: u64,
    /// The server's CPU time per request (user + system, all threads), milliseconds:
    /// what competes with other work on a busy machine.
    pub lookup_server_cpu_ms: f64,
    pub search_server_cpu_ms: f64,
    pub search_per_class: BTreeMap<String, ClassLatency>,
    /// The website: the search page (`/search?q=…`, facets and highlights) and entry
    /// pages (`/package/…`), HTTP on loopback, one client.
    pub page_search: LatSummary,
    pub page_entry: LatSummary,
    pub page_errors: u64,
    pub load: LoadFigures,
    pub serving_peak_rss_bytes: u64,
    pub serving_rss_bytes: u64,
    pub relevance: RelevanceReport,
    /// The need set, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs: Option<RelevanceReport>,
    /// The need set's queries (natural-language sentences), HTTP on loopback, one client,
    /// each asked once more after the relevance pass warmed it.
    pub needs_http: LatSummary,
    /// Reading the public change feed from position 0 through HTTP.
    pub feed: FeedFigures,
    /// A second node over the same PostgreSQL database (with `--backend postgres`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second_node: Option<NodeFigures>,
}

/// The second node of a PostgreSQL deployment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeFigures {
    /// From its start (empty index) to `/readyz` 200: catching up from the change feed.
    pub catch_up_secs: f64,
    /// From a write acknowledged by node 1 to the entry found by search on node 2.
    pub propagation: LatSummary,
    /// Node 2's exact lookups and search mix (node 1 running, idle).
    pub lookup: LatSummary,
    pub search_http: LatSummary,
    pub errors: u64,
    /// The throughput test with the clients split between the two nodes.
    pub load: LoadFigures,
    pub serving_peak_rss_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerFigures {
    pub peer: String,
    /// Why the peer was not measured (or stopped).
    pub skipped: Option<String>,
    /// Inserting the rows (SQLite: one transaction; PostgreSQL: COPY).
    pub load_secs: f64,
    /// Building the indexes after the load (FTS5 optimize; the GIN indexes).
    pub index_secs: f64,
    pub disk_bytes: Option<u64>,
    pub search: LatSummary,
    pub search_errors: u64,
    pub search_per_class: BTreeMap<String, LatSummary>,
    pub relevance: Option<RelevanceReport>,
    pub needs: Option<RelevanceReport>,
}

impl PeerFigures {
    fn skipped(peer: &str, why: String) -> Self {
        PeerFigures {
            peer: peer.into(),
            skipped: Some(why),
            ..Default::default()
        }
    }

    fn measured(&self) -> bool {
        self.skipped.is_none()
    }

    fn total_secs(&self) -> f64 {
        self.load_secs + self.index_secs
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// Could not be judged (a peer was not measured).
    Unverified,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bar {
    pub bar: String,
    pub value: String,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub setup: Setup,
    pub quiver: QuiverFigures,
    pub peers: Vec<PeerFigures>,
    pub bars: Vec<Bar>,
}

// ---- the work directory ---------------------------------------------------------------

/// What the bench writes in the work directory (removed at the end unless `--keep`).
const OWNED: &[&str] = &[
    "input",
    "quiver",
    "import.json",
    "import.log",
    "serve.log",
    "quiver-node2",
    "serve-node2.log",
    "fts5.db",
    "fts5.db-wal",
    "fts5.db-shm",
    "pipeline",
    "serve-pipeline.log",
];

struct Work {
    dir: PathBuf,
    temp: Option<tempfile::TempDir>,
    keep: bool,
}

impl Work {
    fn new(a: &BenchArgs) -> anyhow::Result<Work> {
        match &a.work {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .with_context(|| format!("creating the work directory {}", d.display()))?;
                let w = Work {
                    dir: d.clone(),
                    temp: None,
                    keep: a.keep,
                };
                // A previous run's store would turn the import into a no-op.
                w.remove_owned();
                Ok(w)
            }
            None => {
                let t = tempfile::Builder::new().prefix("quiver-bench-").tempdir()?;
                Ok(Work {
                    dir: t.path().to_path_buf(),
                    temp: Some(t),
                    keep: a.keep,
                })
            }
        }
    }

    fn remove_owned(&self) {
        for name in OWNED {
            let p = self.dir.join(name);
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(&p);
            } else if p.exists() {
                let _ = std::fs::remove_file(&p);
            }
        }
    }

    fn finish(self) {
        if self.keep {
            let dir = match self.temp {
                Some(t) => t.keep(),
                None => self.dir,
            };
            progress!("kept the work directory {}", dir.display());
        } else if self.temp.is_none() {
            self.remove_owned();
        }
        // A TempDir removes itself when dropped.
    }
}

// ---- the run --------------------------------------------------------------------------

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    STARTED.get_or_init(Instant::now);
    let work = Work::new(&a)?;
    progress!("work directory {}", work.dir.display());
    if a.attacks {
        let exe = quiver_binary(a.quiver.as_deref())?;
        let result = attacks::run(&exe, &work.dir, a.attack_seconds, a.json).await;
        work.finish();
        return result;
    }
    if a.tool_intel {
        let exe = quiver_binary(a.quiver.as_deref())?;
        let result = intel::run(&exe, &work.dir, &a.profiles, &a).await;
        work.finish();
        return result;
    }
    if a.pipeline {
        let exe = quiver_binary(a.quiver.as_deref())?;
        let result = pipeline::run(&exe, &work.dir, &a).await;
        work.finish();
        return result;
    }
    if a.consumers {
        let exe = quiver_binary(a.quiver.as_deref())?;
        let result = consumers::run(&exe, &work.dir, &a).await;
        work.finish();
        return result;
    }
    if a.pg_writes {
        let exe = quiver_binary(a.quiver.as_deref())?;
        let result = writes::run(
            &exe,
            &work.dir,
            &a.postgres_url,
            a.writers.max(1),
            a.write_seconds,
            a.json,
        )
        .await;
        work.finish();
        return result;
    }
    let pg_schema: Arc<Mutex<Option<String>>> = Arc::default();
    let backend_schema: Arc<Mutex<Option<String>>> = Arc::default();
    let result = tokio::select! {
        r = bench(&a, &work.dir, pg_schema.clone(), backend_schema.clone()) => r,
        _ = interrupted() => {
            CANCEL.store(true, Ordering::Relaxed);
            Err(anyhow!("interrupted"))
        }
    };
    // The bench future is dropped by now: its child processes were stopped.
    let leftovers =
        [pg_schema, backend_schema].map(|s| s.lock().map(|mut s| s.take()).unwrap_or(None));
    for schema in leftovers.into_iter().flatten() {
        progress!("dropping the PostgreSQL schema {schema}");
        if let Err(e) = pg::drop_schema(&a.postgres_url, &schema).await {
            eprintln!("bench: could not drop the PostgreSQL schema {schema}: {e:#}");
        }
    }
    work.finish();
    result
}

/// The `quiver` binary to measure: `explicit` (`--quiver`, `QUIVER_BIN`; `quiver bench`
/// passes itself), else `quiver` in this executable's directory (cargo builds both into
/// the same `target/<profile>/`).
pub fn quiver_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!(
                "the quiver binary {} (--quiver, QUIVER_BIN) does not exist",
                p.display()
            );
        }
        return Ok(p.to_path_buf());
    }
    let me = std::env::current_exe().context("finding this executable's directory")?;
    let sibling = me.with_file_name(format!("quiver{}", std::env::consts::EXE_SUFFIX));
    if !sibling.is_file() {
        bail!(
            "no quiver binary at {}: build it with `cargo build --release -p quiver`, or pass --quiver PATH",
            sibling.display()
        );
    }
    Ok(sibling)
}

/// Ctrl-C or SIGTERM.
async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

async fn bench(
    a: &BenchArgs,
    work: &Path,
    pg_schema: Arc<Mutex<Option<String>>>,
    backend_schema: Arc<Mutex<Option<String>>>,
) -> anyhow::Result<()> {
    let exe = quiver_binary(a.quiver.as_deref())?;
    let files = data_files(a);
    for f in &files {
        if !f.is_file() {
            bail!(
                "data file {} not found (run from the repository root, or pass --data FILE...)",
                f.display()
            );
        }
    }
    let cases = Arc::new(relevance::load_set(&a.relevance)?);
    let needs = Arc::new(if a.needs.is_file() {
        relevance::load_set(&a.needs)?
    } else {
        shout(&format!(
            "the need set {} is absent: need relevance is NOT MEASURED",
            a.needs.display()
        ));
        Vec::new()
    });
    if a.concurrency == 0 || a.queries == 0 || a.duration.is_nan() || a.duration <= 0.0 {
        bail!("--concurrency, --queries and --duration must be positive");
    }

    // 0. The rows and the queries.
    let input_files = match a.rows {
        Some(n) => {
            let dir = work.join("input");
            std::fs::create_dir_all(&dir)?;
            let mut out = Vec::new();
            for f in &files {
                out.push(data::truncate_file(f, &dir, n)?);
            }
            out
        }
        None => files.clone(),
    };
    progress!("reading the rows of {}", show_paths(&input_files));
    let inputs = input_files.clone();
    let loaded = tokio::task::spawn_blocking(move || data::load_rows(&inputs)).await??;
    let rows = Arc::new(loaded.rows);
    if rows.is_empty() {
        bail!("no rows in {}", show_paths(&input_files));
    }
    let rows_npm = rows.iter().filter(|r| r.namespace == "npm").count() as u64;
    progress!(
        "{} rows ({} pypi, {} npm), {} rejected by the reader",
        fmt_int(rows.len() as u64),
        fmt_int(rows.len() as u64 - rows_npm),
        fmt_int(rows_npm),
        fmt_int(loaded.rejected)
    );
    let mut rng = Rng::new(a.seed);
    let mix = Arc::new(data::query_mix(&rows, &cases, a.queries, &mut rng));
    let warm = Arc::new(data::query_mix(&rows, &cases, 200, &mut Rng::new(!a.seed)));
    let setup = Setup {
        backend: a.backend,
        files: files.clone(),
        rows: rows.len() as u64,
        rows_pypi: rows.len() as u64 - rows_npm,
        rows_npm,
        rows_rejected_by_reader: loaded.rejected,
        queries: mix.len(),
        lookups: a.lookups,
        concurrency: a.concurrency,
        duration_secs: a.duration,
        seed: a.seed,
        rows_limit: a.rows,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_avg_start: load_avg(),
        load_avg_after_quiver: 0.0,
    };

    // 1-7. quiver.
    let database = match a.backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let schema = pg::schema_name(a.seed.rotate_left(17));
            let client = pg::connect(&a.postgres_url)
                .await
                .with_context(|| format!("connecting to {}", redact_url(&a.postgres_url)))?;
            client
                .batch_execute(&format!("CREATE SCHEMA {schema}"))
                .await
                .context("creating the bench's schema")?;
            if let Ok(mut s) = backend_schema.lock() {
                *s = Some(schema.clone());
            }
            progress!("backend: PostgreSQL schema {schema}");
            Some(pg::url_with_schema(&a.postgres_url, &schema))
        }
    };
    let mut import = run_import(
        &exe,
        work,
        &input_files,
        database.as_deref(),
        a.import_timeout,
    )
    .await?;
    if let (Some(schema), Backend::Postgres) = (
        backend_schema.lock().ok().and_then(|s| s.clone()),
        a.backend,
    ) {
        import.store_bytes = pg::schema_bytes(&a.postgres_url, &schema).await?;
    }
    let quiver = measure_quiver(
        &exe,
        work,
        a,
        database.as_deref(),
        &rows,
        &mix,
        &warm,
        &cases,
        &needs,
        &mut rng,
        import,
    )
    .await?;
    let mut setup = setup;
    setup.load_avg_after_quiver = load_avg();

    // 8. The peers.
    let mut peers = Vec::new();
    if !a.skip_peers {
        let mut kinds = a.peers.clone();
        kinds.dedup();
        for kind in kinds {
            cancelled()?;
            let fig = match kind {
                PeerKind::Sqlite => {
                    run_fts5(
                        work.join("fts5.db"),
                        rows.clone(),
                        mix.clone(),
                        warm.clone(),
                        cases.clone(),
                        needs.clone(),
                    )
                    .await
                }
                PeerKind::Postgres => {
                    run_pg(a, &rows, &mix, &warm, &cases, &needs, &pg_schema).await
                }
            };
            peers.push(fig);
        }
    }

    let bars = judge(&quiver, &peers);
    let report = Report {
        setup,
        quiver,
        peers,
        bars,
    };
    let table = render(&report);
    if a.json {
        eprintln!("{table}");
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{table}");
    }
    Ok(())
}

/// The 1-minute load average (0 where unknown).
fn load_avg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn show_paths(p: &[PathBuf]) -> String {
    p.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sleep between polls of a child process.
const POLL: Duration = Duration::from_millis(20);

async fn run_import(
    exe: &Path,
    work: &Path,
    files: &[PathBuf],
    database: Option<&str>,
    timeout_secs: u64,
) -> anyhow::Result<ImportFigures> {
    let data_dir = work.join("quiver");
    let out_path = work.join("import.json");
    let log_path = work.join("import.log");
    progress!(
        "import: {} import --data-dir {} --json ...",
        exe.display(),
        data_dir.display()
    );
    let started = Instant::now();
    let child = Command::new(exe)
        .arg("import")
        .arg("--data-dir")
        .arg(&data_dir)
        .args(database.map(|url| format!("--database={url}")))
        .arg("--json")
        .args(files)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()
        .context("starting quiver import")?;
    let mut guard = ChildGuard::new(child, "quiver import", log_path);
    let pid = guard.id();
    let timeout = Duration::from_secs(timeout_secs);
    let mut sampled_peak = 0u64;
    let mut last_note = Instant::now();
    let status = loop {
        if let Some(s) = guard.try_wait()? {
            break s;
        }
        if let Some((hwm, _)) = proc::memory(pid) {
            sampled_peak = sampled_peak.max(hwm);
        }
        if started.elapsed() > timeout {
            bail!(
                "quiver import did not finish within {timeout:?}; its log ends with:\n{}",
                guard.log_tail(20)
            );
        }
        if last_note.elapsed() >= Duration::from_secs(5) {
            last_note = Instant::now();
            progress!(
                "import: {:.0} s, peak RSS so far {}",
                started.elapsed().as_secs_f64(),
                fmt_bytes(sampled_peak)
            );
        }
        tokio::time::sleep(POLL).await;
    };
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!(
            "quiver import failed ({status}); its log ends with:\n{}",
            guard.log_tail(20)
        );
    }
    // The import is the first child this process reaps: RUSAGE_CHILDREN is its usage.
    let (rusage_peak, cpu_secs) = proc::children_usage();
    let peak_rss_bytes = rusage_peak.max(sampled_peak);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out_path)?)
        .context("reading the import's JSON report")?;
    let totals = &report["totals"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let index_note = report["index"].as_str().unwrap_or("");
    let index_path = quiver_engine::index_path(&data_dir);
    let index_bytes = proc::disk_size(&index_path);
    let fig = ImportFigures {
        secs,
        records: n(&totals["records"]),
        created: n(&totals["created"]),
        rejected: n(&totals["rejected"]),
        rows_per_sec: n(&totals["records"]) as f64 / secs.max(1e-9),
        cpu_secs,
        store_phase_secs: report["elapsed_secs"].as_f64(),
        index_phase_secs: parse_index_secs(index_note),
        peak_rss_bytes,
        store_bytes: proc::disk_size(&data_dir).saturating_sub(index_bytes),
        index_bytes,
    };
    if fig.index_phase_secs.is_none() {
        eprintln!("bench: WARNING: the import did not report building the index: {index_note:?}");
    }
    progress!(
        "import: {} in {} ({:.0} rows/s, CPU {}), {} created, {} rejected, peak RSS {}",
        fmt_int(fig.records),
        fmt_secs(secs),
        fig.rows_per_sec,
        fmt_secs(cpu_secs),
        fmt_int(fig.created),
        fmt_int(fig.rejected),
        fmt_bytes(peak_rss_bytes)
    );
    Ok(fig)
}

/// The index time out of the import's note, `search index: N events applied in 6.2s ...`.
fn parse_index_secs(note: &str) -> Option<f64> {
    let rest = note.split(" applied in ").nth(1)?;
    rest.split('s').next()?.trim().parse().ok()
}

/// The search response, as much of it as the bench reads.
#[derive(Deserialize)]
struct SearchResp {
    hits: Vec<HitLite>,
    took_us: u64,
}

#[derive(Deserialize)]
struct HitLite {
    namespace: String,
    name: String,
}

fn search_path(q: &str) -> String {
    format!("/api/v1/search?q={}&limit=10", encode_query_value(q))
}

/// Page through the public change feed from position 0 until `want` events were read or
/// the feed ends.
async fn read_feed(client: &mut Client, want: u64) -> anyhow::Result<FeedFigures> {
    #[derive(Deserialize)]
    struct Page {
        items: Vec<serde::de::IgnoredAny>,
        next: i64,
        head: i64,
    }
    let mut fig = FeedFigures::default();
    let mut lat = Lat::default();
    let mut since = 0i64;
    let started = Instant::now();
    while fig.events < want {
        let path = format!("/api/v1/changes?since={since}&limit=1000");
        let t = Instant::now();
        let (st, body) = client.get(&path).await?;
        if !st.is_success() {
            bail!("{path}: {st} {}", String::from_utf8_lossy(&body));
        }
        let page: Page =
            serde_json::from_slice(&body).with_context(|| format!("{path}: unreadable"))?;
        lat.record(t.elapsed());
        fig.pages += 1;
        fig.events += page.items.len() as u64;
        let done = page.next <= since || page.next >= page.head;
        since = page.next;
        if done {
            break;
        }
    }
    fig.secs = started.elapsed().as_secs_f64();
    fig.events_per_sec = fig.events as f64 / fig.secs.max(1e-9);
    fig.page = lat.summary();
    Ok(fig)
}

#[allow(clippy::too_many_arguments)]
async fn measure_quiver(
    exe: &Path,
    work: &Path,
    a: &BenchArgs,
    database: Option<&str>,
    rows: &Arc<Vec<Row>>,
    mix: &Arc<Vec<Query>>,
    warm: &[Query],
    cases: &[RelevanceCase],
    needs: &[RelevanceCase],
    rng: &mut Rng,
    import: ImportFigures,
) -> anyhow::Result<QuiverFigures> {
    let mut fig = QuiverFigures {
        import,
        ..Default::default()
    };

    // 2. Cold start.
    let port = proc::free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let log_path = work.join("serve.log");
    progress!("serve: starting on {addr}");
    let started = Instant::now();
    let mut server = start_node(exe, &work.join("quiver"), database, addr, log_path)?;
    wait_ready(&mut server, addr, Duration::from_secs(300)).await?;
    fig.cold_start_secs = started.elapsed().as_secs_f64();
    progress!(
        "serve: /readyz answered 200 after {}",
        fmt_secs(fig.cold_start_secs)
    );

    // 3. Exact lookups.
    let mut client = Client::new(addr);
    let picks = lookup_picks(rows, 1_000 + a.lookups, rng);
    let (warm_picks, picks) = picks.split_at(1_000.min(picks.len()));
    for &i in warm_picks {
        let _ = client.get(&lookup_path(&rows[i])).await;
    }
    progress!(
        "lookups: {} sequential GETs (after 1,000 to warm up)",
        fmt_int(picks.len() as u64)
    );
    let mut lat = Lat::default();
    let mut first_error = None;
    let cpu_before = proc::cpu_secs(server.id());
    for &i in picks {
        let r = &rows[i];
        let path = lookup_path(r);
        let t = Instant::now();
        let res = client.get(&path).await;
        lat.record(t.elapsed());
        if r.namespace == "npm" {
            fig.lookup_npm += 1;
            if r.name.starts_with('@') {
                fig.lookup_scoped += 1;
            }
        }
        match res {
            Ok((s, _)) if s.is_success() => {}
            Ok((s, body)) => {
                fig.lookup_errors += 1;
                first_error.get_or_insert_with(|| {
                    format!("{path}: {s} {}", String::from_utf8_lossy(&body))
                });
            }
            Err(e) => {
                fig.lookup_errors += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    fig.lookup = lat.summary();
    fig.lookup_server_cpu_ms = cpu_per_request(server.id(), cpu_before, picks.len());
    if let Some(e) = first_error {
        eprintln!(
            "bench: WARNING: {} lookups failed; the first: {e}",
            fig.lookup_errors
        );
    }
    progress!(
        "lookups: p50 {} p99 {} max {}",
        fmt_ms(fig.lookup.p50_ms),
        fmt_ms(fig.lookup.p99_ms),
        fmt_ms(fig.lookup.max_ms)
    );

    // 4. The search mix, sequentially.
    for q in warm {
        let _ = client.get(&search_path(&q.text)).await;
    }
    progress!(
        "search: {} queries, one client (after {} to warm up)",
        mix.len(),
        warm.len()
    );
    let (mut http_all, mut engine_all) = (Lat::default(), Lat::default());
    let mut per_class: BTreeMap<QClass, (Lat, Lat)> = BTreeMap::new();
    let mut first_error = None;
    let cpu_before = proc::cpu_secs(server.id());
    for q in mix.iter() {
        let path = search_path(&q.text);
        let t = Instant::now();
        let res = client.get(&path).await;
        let elapsed = t.elapsed();
        let took = match res {
            Ok((s, body)) if s.is_success() => serde_json::from_slice::<SearchResp>(&body)
                .map(|r| r.took_us)
                .map_err(|e| anyhow!("{path}: unreadable answer: {e}")),
            Ok((s, body)) => Err(anyhow!("{path}: {s} {}", String::from_utf8_lossy(&body))),
            Err(e) => Err(e),
        };
        match took {
            Ok(us) => {
                http_all.record(elapsed);
                engine_all.record_us(us);
                let c = per_class.entry(q.class).or_default();
                c.0.record(elapsed);
                c.1.record_us(us);
            }
            Err(e) => {
                fig.search_errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        eprintln!(
            "bench: WARNING: {} searches failed; the first: {e:#}",
            fig.search_errors
        );
    }
    fig.search_http = http_all.summary();
    fig.search_server_cpu_ms = cpu_per_request(server.id(), cpu_before, mix.len());
    fig.search_engine = engine_all.summary();
    fig.search_per_class = per_class
        .iter()
        .map(|(c, (h, e))| {
            (
                c.key().to_string(),
                ClassLatency {
                    http: h.summary(),
                    engine: e.summary(),
                },
            )
        })
        .collect();
    progress!(
        "search: p50 {} p95 {} p99 {} (engine p95 {})",
        fmt_ms(fig.search_http.p50_ms),
        fmt_ms(fig.search_http.p95_ms),
        fmt_ms(fig.search_http.p99_ms),
        fmt_ms(fig.search_engine.p95_ms)
    );

    // 4b. The website's pages: the search page over the same mix, entry pages of the
    //     looked-up packages.
    let pages: Vec<String> = mix
        .iter()
        .take(a.pages)
        .map(|q| format!("/search?q={}", encode_query_value(&q.text)))
        .collect();
    let entries: Vec<String> = picks
        .iter()
        .take(a.pages)
        .map(|&i| page_path(&rows[i]))
        .collect();
    for path in pages.iter().take(50).chain(entries.iter().take(50)) {
        let _ = client.get(path).await;
    }
    progress!(
        "pages: {} search pages, {} entry pages, one client",
        pages.len(),
        entries.len()
    );
    let mut first_error = None;
    for (paths, out) in [
        (&pages, &mut fig.page_search),
        (&entries, &mut fig.page_entry),
    ] {
        let mut lat = Lat::default();
        for path in paths.iter() {
            let t = Instant::now();
            let res = client.get(path).await;
            lat.record(t.elapsed());
            match res {
                Ok((s, body)) if s.is_success() && body.starts_with(b"<!doctype html>") => {}
                Ok((s, body)) => {
                    fig.page_errors += 1;
                    first_error.get_or_insert_with(|| {
                        format!(
                            "{path}: {s} {}",
                            String::from_utf8_lossy(&body[..body.len().min(200)])
                        )
                    });
                }
                Err(e) => {
                    fig.page_errors += 1;
                    first_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
        *out = lat.summary();
    }
    if let Some(e) = first_error {
        eprintln!(
            "bench: WARNING: {} pages failed; the first: {e}",
            fig.page_errors
        );
    }
    progress!(
        "pages: search p50 {} p95 {}; entry p50 {} p95 {}",
        fmt_ms(fig.page_search.p50_ms),
        fmt_ms(fig.page_search.p95_ms),
        fmt_ms(fig.page_entry.p50_ms),
        fmt_ms(fig.page_entry.p95_ms)
    );

    // 5. Throughput under concurrent load.
    fig.load = load_test(
        addr,
        mix,
        a.concurrency,
        Duration::from_secs_f64(a.duration),
    )
    .await?;
    progress!(
        "load: {:.0} requests/s with {} clients, p99 {}",
        fig.load.requests_per_sec,
        a.concurrency,
        fmt_ms(fig.load.latency.p99_ms)
    );

    // 6. Serving memory.
    let (hwm, rss) = proc::memory(server.id()).ok_or_else(|| {
        anyhow!(
            "the server is gone; its log ends with:\n{}",
            server.log_tail(20)
        )
    })?;
    fig.serving_peak_rss_bytes = hwm;
    fig.serving_rss_bytes = rss;
    progress!("serve: peak RSS {}, RSS {}", fmt_bytes(hwm), fmt_bytes(rss));

    // 7. Relevance through HTTP.
    let mut answers: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for c in cases.iter().chain(needs) {
        if answers.contains_key(&c.query) {
            continue;
        }
        let (s, body) = client.get(&search_path(&c.query)).await?;
        if !s.is_success() {
            bail!(
                "search {:?}: {s} {}",
                c.query,
                String::from_utf8_lossy(&body)
            );
        }
        let r: SearchResp = serde_json::from_slice(&body)?;
        answers.insert(
            c.query.clone(),
            r.hits.into_iter().map(|h| (h.namespace, h.name)).collect(),
        );
    }
    fig.relevance = relevance::evaluate(cases, |q| answers.get(q).cloned().unwrap_or_default());
    fig.needs = (!needs.is_empty())
        .then(|| relevance::evaluate(needs, |q| answers.get(q).cloned().unwrap_or_default()));
    progress!(
        "relevance: hit@1 {} hit@3 {} hit@10 {}",
        pct(fig.relevance.hit_at_1),
        pct(fig.relevance.hit_at_3),
        pct(fig.relevance.hit_at_10)
    );

    // 7b. The need set's latency: sentences are the slowest queries.
    let mut lat = Lat::default();
    for c in needs {
        let path = search_path(&c.query);
        let t = Instant::now();
        let (st, _) = client.get(&path).await?;
        lat.record(t.elapsed());
        if !st.is_success() {
            bail!("search {:?}: {st}", c.query);
        }
    }
    fig.needs_http = lat.summary();
    if !needs.is_empty() {
        progress!(
            "needs: {} sentences, p50 {} p95 {} max {}",
            needs.len(),
            fmt_ms(fig.needs_http.p50_ms),
            fmt_ms(fig.needs_http.p95_ms),
            fmt_ms(fig.needs_http.max_ms)
        );
    }

    // 7c. The change feed, read from the start.
    fig.feed = read_feed(&mut client, a.feed_events).await?;
    progress!(
        "feed: {} events in {} pages, {} ({:.0} events/s), page p95 {}",
        fmt_int(fig.feed.events),
        fig.feed.pages,
        fmt_secs(fig.feed.secs),
        fig.feed.events_per_sec,
        fmt_ms(fig.feed.page.p95_ms)
    );

    // 8. A second node over the same database.
    if let (Some(url), 2) = (database, a.nodes) {
        fig.second_node =
            Some(measure_second_node(exe, work, url, addr, a, rows, mix, warm, rng).await?);
    }

    if server.stop(Duration::from_secs(10)).is_none() {
        eprintln!("bench: WARNING: the server did not stop on SIGTERM within 10 s");
    }
    Ok(fig)
}

/// Start `quiver serve` on `addr` over `data_dir` (and PostgreSQL at `database`).
fn start_node(
    exe: &Path,
    data_dir: &Path,
    database: Option<&str>,
    addr: SocketAddr,
    log_path: PathBuf,
) -> anyhow::Result<ChildGuard> {
    start_node_with(exe, data_dir, database, addr, log_path, &[])
}

/// [`start_node`] with more arguments to `quiver serve`.
fn start_node_with(
    exe: &Path,
    data_dir: &Path,
    database: Option<&str>,
    addr: SocketAddr,
    log_path: PathBuf,
    extra: &[&str],
) -> anyhow::Result<ChildGuard> {
    let child = Command::new(exe)
        .arg("serve")
        .args(["--rate-limits", "off"])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .args(database.map(|url| format!("--database={url}")))
        .arg("--listen")
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()
        .context("starting quiver serve")?;
    Ok(ChildGuard::new(child, "quiver serve", log_path))
}

/// `writes` entries created on `node1`, each timed from its acknowledgement until
/// `node2`'s search finds it (at most 10 s each).
async fn time_propagation(
    node1: SocketAddr,
    node2: &mut Client,
    tag: u64,
    writes: usize,
) -> anyhow::Result<LatSummary> {
    let mut lat = Lat::default();
    for i in 0..writes {
        cancelled()?;
        let name = format!("bench-propagation-{tag:08x}-{i}");
        let body = serde_json::json!({
            "kind": "tool",
            "namespace": "bench",
            "name": name,
            "description": "a write made on node 1, searched for on node 2",
            "status": "published",
        });
        let (s, answer) = http::post_json(node1, "/api/v1/entries", &body).await?;
        if !s.is_success() {
            bail!(
                "node 1 refused a write: {s} {}",
                String::from_utf8_lossy(&answer)
            );
        }
        let t = Instant::now();
        let path = search_path(&name);
        loop {
            let (s, body) = node2.get(&path).await?;
            if s.is_success() {
                let r: SearchResp = serde_json::from_slice(&body)?;
                if r.hits.iter().any(|h| h.name == name) {
                    break;
                }
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!("node 2 did not find {name} within 10 s of its write on node 1");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        lat.record(t.elapsed());
    }
    Ok(lat.summary())
}

/// Writes timed from node 1's acknowledgement to a search hit on node 2.
const PROPAGATION_WRITES: usize = 50;

/// Start a second node over `database`, time its catch-up, the propagation of writes
/// from node 1, its own lookups and searches, and the load split over both nodes.
#[allow(clippy::too_many_arguments)]
async fn measure_second_node(
    exe: &Path,
    work: &Path,
    database: &str,
    node1: SocketAddr,
    a: &BenchArgs,
    rows: &Arc<Vec<Row>>,
    mix: &Arc<Vec<Query>>,
    warm: &[Query],
    rng: &mut Rng,
) -> anyhow::Result<NodeFigures> {
    let mut fig = NodeFigures::default();
    let addr = SocketAddr::from(([127, 0, 0, 1], proc::free_port()?));
    progress!("node 2: starting on {addr} with an empty index");
    let started = Instant::now();
    let mut node = start_node(
        exe,
        &work.join("quiver-node2"),
        Some(database),
        addr,
        work.join("serve-node2.log"),
    )?;
    wait_ready(&mut node, addr, Duration::from_secs(1800)).await?;
    fig.catch_up_secs = started.elapsed().as_secs_f64();
    progress!(
        "node 2: caught up from the feed and ready after {}",
        fmt_secs(fig.catch_up_secs)
    );

    // Propagation: create on node 1, search on node 2 until found.
    let mut client = Client::new(addr);
    let tag = rng.next_u64() & 0xffff_ffff;
    fig.propagation = time_propagation(node1, &mut client, tag, PROPAGATION_WRITES).await?;
    progress!(
        "node 2: writes on node 1 found by search on node 2 after p50 {} p99 {} max {}",
        fmt_ms(fig.propagation.p50_ms),
        fmt_ms(fig.propagation.p99_ms),
        fmt_ms(fig.propagation.max_ms)
    );

    // Lookups and searches on node 2.
    let picks = lookup_picks(rows, a.lookups / 2, rng);
    for q in warm {
        let _ = client.get(&search_path(&q.text)).await;
    }
    let mut lat = Lat::default();
    for &i in &picks {
        let t = Instant::now();
        match client.get(&lookup_path(&rows[i])).await {
            Ok((s, _)) if s.is_success() => lat.record(t.elapsed()),
            _ => fig.errors += 1,
        }
    }
    fig.lookup = lat.summary();
    let mut lat = Lat::default();
    for q in mix.iter() {
        let t = Instant::now();
        match client.get(&search_path(&q.text)).await {
            Ok((s, _)) if s.is_success() => lat.record(t.elapsed()),
            _ => fig.errors += 1,
        }
    }
    fig.search_http = lat.summary();
    progress!(
        "node 2: lookups p50 {} p99 {}; search p50 {} p95 {} p99 {}",
        fmt_ms(fig.lookup.p50_ms),
        fmt_ms(fig.lookup.p99_ms),
        fmt_ms(fig.search_http.p50_ms),
        fmt_ms(fig.search_http.p95_ms),
        fmt_ms(fig.search_http.p99_ms)
    );

    // Both nodes under load, the clients split between them.
    fig.load = load_test_on(
        &[node1, addr],
        mix,
        a.concurrency,
        Duration::from_secs_f64(a.duration),
    )
    .await?;
    progress!(
        "load on two nodes: {:.0} requests/s with {} clients, p99 {}",
        fig.load.requests_per_sec,
        a.concurrency,
        fmt_ms(fig.load.latency.p99_ms)
    );
    fig.serving_peak_rss_bytes = proc::memory(node.id()).map_or(0, |(hwm, _)| hwm);
    if node.stop(Duration::from_secs(10)).is_none() {
        eprintln!("bench: WARNING: node 2 did not stop on SIGTERM within 10 s");
    }
    Ok(fig)
}

/// Milliseconds of the process's CPU time since `before`, per request.
fn cpu_per_request(pid: u32, before: Option<f64>, requests: usize) -> f64 {
    match (before, proc::cpu_secs(pid)) {
        (Some(a), Some(b)) if requests > 0 => (b - a) * 1000.0 / requests as f64,
        _ => f64::NAN,
    }
}

async fn wait_ready(
    server: &mut ChildGuard,
    addr: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if let Some(s) = server.try_wait()? {
            bail!(
                "quiver serve exited ({s}) before it was ready; its log ends with:\n{}",
                server.log_tail(20)
            );
        }
        if started.elapsed() > timeout {
            bail!(
                "quiver serve was not ready within {timeout:?}; its log ends with:\n{}",
                server.log_tail(20)
            );
        }
        let mut c = Client::new(addr);
        if let Ok(Ok((s, _))) = tokio::time::timeout(Duration::from_secs(2), c.get("/readyz")).await
        {
            if s.is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The website's page of a package (a scoped npm name keeps its slash: two segments).
fn page_path(r: &Row) -> String {
    let name = match r.name.split_once('/') {
        Some((scope, rest)) => format!("{}/{}", encode_name(scope), encode_name(rest)),
        None => encode_name(&r.name),
    };
    format!("/package/{}/{name}", r.namespace)
}

fn lookup_path(r: &Row) -> String {
    format!(
        "/api/v1/entries/package/{}/{}",
        r.namespace,
        encode_name(&r.name)
    )
}

/// Rows to look up: half PyPI, 35% unscoped npm, 15% scoped npm (as far as there are).
fn lookup_picks(rows: &[Row], n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut pools: [Vec<usize>; 3] = Default::default();
    for (i, r) in rows.iter().enumerate() {
        let p = match (r.namespace, r.name.starts_with('@')) {
            ("npm", true) => 2,
            ("npm", false) => 1,
            _ => 0,
        };
        pools[p].push(i);
    }
    let weights = [50, 35, 15];
    let total: usize = (0..3)
        .filter(|&p| !pools[p].is_empty())
        .map(|p| weights[p])
        .sum();
    (0..n)
        .map(|_| {
            let mut x = rng.below(total.max(1));
            for p in 0..3 {
                if pools[p].is_empty() {
                    continue;
                }
                if x < weights[p] {
                    return *rng.pick(&pools[p]);
                }
                x -= weights[p];
            }
            rng.below(rows.len())
        })
        .collect()
}

async fn load_test(
    addr: SocketAddr,
    mix: &Arc<Vec<Query>>,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<LoadFigures> {
    load_test_on(&[addr], mix, concurrency, duration).await
}

/// The throughput test, client `w` talking to node `w % nodes.len()`.
async fn load_test_on(
    nodes: &[SocketAddr],
    mix: &Arc<Vec<Query>>,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<LoadFigures> {
    progress!(
        "load: {concurrency} keep-alive clients for {:.0} s",
        duration.as_secs_f64()
    );
    let paths: Arc<Vec<String>> = Arc::new(mix.iter().map(|q| search_path(&q.text)).collect());
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let paths = paths.clone();
        let addr = nodes[w % nodes.len()];
        tasks.push(tokio::spawn(async move {
            let mut c = Client::new(addr);
            let mut lat = Lat::default();
            let (mut n, mut errors) = (0u64, 0u64);
            let mut i = w * paths.len() / concurrency;
            while Instant::now() < deadline {
                let t = Instant::now();
                match c.get(&paths[i % paths.len()]).await {
                    Ok((s, _)) if s.is_success() => {
                        lat.record(t.elapsed());
                        n += 1;
                    }
                    _ => errors += 1,
                }
                i += 1;
            }
            (lat, n, errors)
        }));
    }
    let mut lat = Lat::default();
    let (mut n, mut errors) = (0u64, 0u64);
    let all = tokio::time::timeout(duration + Duration::from_secs(30), async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await);
        }
        out
    })
    .await
    .map_err(|_| anyhow!("the load clients did not stop in time"))?;
    let secs = started.elapsed().as_secs_f64();
    for r in all {
        let (l, k, e) = r?;
        lat.add(&l);
        n += k;
        errors += e;
    }
    Ok(LoadFigures {
        concurrency,
        secs,
        requests: n,
        errors,
        requests_per_sec: n as f64 / secs,
        latency: lat.summary(),
    })
}

// ---- the peers ------------------------------------------------------------------------

const FTS5: &str = "sqlite-fts5";
const POSTGRES: &str = "postgres";

async fn run_fts5(
    path: PathBuf,
    rows: Arc<Vec<Row>>,
    mix: Arc<Vec<Query>>,
    warm: Arc<Vec<Query>>,
    cases: Arc<Vec<RelevanceCase>>,
    needs: Arc<Vec<RelevanceCase>>,
) -> PeerFigures {
    let res = tokio::task::spawn_blocking(move || -> anyhow::Result<PeerFigures> {
        progress!(
            "sqlite-fts5: loading {} rows into {}",
            fmt_int(rows.len() as u64),
            path.display()
        );
        let (db, loaded) = fts5::Fts5::load(&path, &rows)?;
        let mut fig = PeerFigures {
            peer: FTS5.into(),
            load_secs: loaded.load_secs,
            index_secs: loaded.index_secs,
            ..Default::default()
        };
        let mut size = proc::disk_size(&path);
        for ext in ["-wal", "-shm"] {
            size += proc::disk_size(&PathBuf::from(format!("{}{ext}", path.display())));
        }
        fig.disk_bytes = Some(size);
        progress!(
            "sqlite-fts5: loaded in {} + optimize {}, {} on disk",
            fmt_secs(loaded.load_secs),
            fmt_secs(loaded.index_secs),
            fmt_bytes(size)
        );
        for q in warm.iter() {
            let _ = db.search(&q.text);
        }
        let mut progress_at = Instant::now();
        let (search, per_class) = time_queries(&mix, &mut fig.search_errors, |i, q| {
            cancelled()?;
            if progress_at.elapsed() > Duration::from_secs(10) {
                progress_at = Instant::now();
                progress!("sqlite-fts5: {i}/{} queries", mix.len());
            }
            db.search(q).map(|_| ())
        })?;
        fig.search = search;
        fig.search_per_class = per_class;
        fig.relevance = Some(relevance::evaluate(&cases, |q| {
            db.search(q).unwrap_or_default()
        }));
        fig.needs = (!needs.is_empty())
            .then(|| relevance::evaluate(&needs, |q| db.search(q).unwrap_or_default()));
        Ok(fig)
    })
    .await;
    finish_peer(FTS5, res.map_err(anyhow::Error::from).and_then(|r| r))
}

/// Time every query of the mix through `run`, overall and per class.
fn time_queries(
    mix: &[Query],
    errors: &mut u64,
    mut run: impl FnMut(usize, &str) -> anyhow::Result<()>,
) -> anyhow::Result<(LatSummary, BTreeMap<String, LatSummary>)> {
    let mut all = Lat::default();
    let mut per_class: BTreeMap<QClass, Lat> = BTreeMap::new();
    for (i, q) in mix.iter().enumerate() {
        let t = Instant::now();
        let res = run(i, &q.text);
        let elapsed = t.elapsed();
        match res {
            Ok(()) => {
                all.record(elapsed);
                per_class.entry(q.class).or_default().record(elapsed);
            }
            Err(e) if e.to_string() == "interrupted" => return Err(e),
            Err(_) => *errors += 1,
        }
    }
    Ok((
        all.summary(),
        per_class
            .iter()
            .map(|(c, l)| (c.key().to_string(), l.summary()))
            .collect(),
    ))
}

fn finish_peer(name: &str, res: anyhow::Result<PeerFigures>) -> PeerFigures {
    match res {
        Ok(fig) => {
            progress!(
                "{name}: search p50 {} p95 {} p99 {}; hit@3 {}",
                fmt_ms(fig.search.p50_ms),
                fmt_ms(fig.search.p95_ms),
                fmt_ms(fig.search.p99_ms),
                fig.relevance
                    .as_ref()
                    .map_or("-".into(), |r| pct(r.hit_at_3))
            );
            fig
        }
        Err(e) => {
            shout(&format!("the {name} peer FAILED and is left out: {e:#}"));
            PeerFigures::skipped(name, format!("failed: {e:#}"))
        }
    }
}

/// A message that must not be missed in the progress lines.
fn shout(msg: &str) {
    let line = "!".repeat(78);
    eprintln!("{line}\n!! bench: {msg}\n{line}");
}

/// The URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

async fn run_pg(
    a: &BenchArgs,
    rows: &[Row],
    mix: &[Query],
    warm: &[Query],
    cases: &[RelevanceCase],
    needs: &[RelevanceCase],
    schema_slot: &Mutex<Option<String>>,
) -> PeerFigures {
    let shown = redact_url(&a.postgres_url);
    progress!("postgres: connecting to {shown}");
    let client = match pg::connect(&a.postgres_url).await {
        Ok(c) => c,
        Err(e) => {
            shout(&format!(
                "PostgreSQL at {shown} is unreachable ({e:#}): the PostgreSQL peer is SKIPPED"
            ));
            return PeerFigures::skipped(POSTGRES, format!("unreachable: {e:#}"));
        }
    };
    let schema = pg::schema_name(a.seed);
    if let Ok(mut s) = schema_slot.lock() {
        *s = Some(schema.clone());
    }
    let res = measure_pg(client, &schema, rows, mix, warm, cases, needs).await;
    progress!("postgres: dropping the schema {schema}");
    match pg::drop_schema(&a.postgres_url, &schema).await {
        Ok(()) => {
            if let Ok(mut s) = schema_slot.lock() {
                *s = None;
            }
        }
        Err(e) => {
            eprintln!("bench: could not drop the PostgreSQL schema {schema} (will retry): {e:#}")
        }
    }
    finish_peer(POSTGRES, res)
}

async fn measure_pg(
    client: tokio_postgres::Client,
    schema: &str,
    rows: &[Row],
    mix: &[Query],
    warm: &[Query],
    cases: &[RelevanceCase],
    needs: &[RelevanceCase],
) -> anyhow::Result<PeerFigures> {
    progress!(
        "postgres: loading {} rows with COPY into schema {schema}",
        fmt_int(rows.len() as u64)
    );
    let (db, loaded) = pg::Pg::load(client, schema, rows).await?;
    progress!(
        "postgres: COPY {} + indexes {}, {} ({} of indexes)",
        fmt_secs(loaded.load_secs),
        fmt_secs(loaded.index_secs),
        fmt_bytes(loaded.total_bytes),
        fmt_bytes(loaded.index_bytes)
    );
    let mut fig = PeerFigures {
        peer: POSTGRES.into(),
        load_secs: loaded.load_secs,
        index_secs: loaded.index_secs,
        disk_bytes: Some(loaded.total_bytes),
        ..Default::default()
    };
    for q in warm {
        db.search(&q.text).await?;
    }
    let mut all = Lat::default();
    let mut per_class: BTreeMap<QClass, Lat> = BTreeMap::new();
    let mut progress_at = Instant::now();
    for (i, q) in mix.iter().enumerate() {
        if progress_at.elapsed() > Duration::from_secs(10) {
            progress_at = Instant::now();
            progress!("postgres: {i}/{} queries", mix.len());
        }
        let t = Instant::now();
        let res = db.search(&q.text).await;
        let elapsed = t.elapsed();
        match res {
            Ok(_) => {
                all.record(elapsed);
                per_class.entry(q.class).or_default().record(elapsed);
            }
            Err(e) => {
                if fig.search_errors == 0 {
                    eprintln!("bench: postgres: query {:?} failed: {e:#}", q.text);
                }
                fig.search_errors += 1;
            }
        }
    }
    fig.search = all.summary();
    fig.search_per_class = per_class
        .iter()
        .map(|(c, l)| (c.key().to_string(), l.summary()))
        .collect();
    let mut answers = HashMap::new();
    for c in cases.iter().chain(needs) {
        if !answers.contains_key(&c.query) {
            answers.insert(
                c.query.clone(),
                db.search(&c.query).await.unwrap_or_default(),
            );
        }
    }
    fig.relevance = Some(relevance::evaluate(cases, |q| {
        answers.get(q).cloned().unwrap_or_default()
    }));
    fig.needs = (!needs.is_empty())
        .then(|| relevance::evaluate(needs, |q| answers.get(q).cloned().unwrap_or_default()));
    Ok(fig)
}

// ---- bars and the table ---------------------------------------------------------------

const GB: u64 = 1_000_000_000;

fn judge(q: &QuiverFigures, peers: &[PeerFigures]) -> Vec<Bar> {
    let v = |ok: bool| if ok { Verdict::Pass } else { Verdict::Fail };
    let mut bars = vec![
        Bar {
            bar: "import of everything, searchable, < 30 s".into(),
            value: fmt_secs(q.import.secs),
            verdict: v(q.import.secs < 30.0),
        },
        Bar {
            bar: "search p95 < 5 ms (HTTP, loopback)".into(),
            value: fmt_ms(q.search_http.p95_ms),
            verdict: v(q.search_http.p95_ms < 5.0 && q.search_errors == 0),
        },
        Bar {
            bar: "lookup p99 < 1 ms (HTTP, loopback)".into(),
            value: fmt_ms(q.lookup.p99_ms),
            verdict: v(q.lookup.p99_ms < 1.0 && q.lookup_errors == 0),
        },
        Bar {
            bar: "search page p95 < 10 ms (website, HTTP, loopback)".into(),
            value: fmt_ms(q.page_search.p95_ms),
            verdict: v(q.page_search.p95_ms < 10.0 && q.page_errors == 0),
        },
        Bar {
            bar: "entry page p95 < 5 ms (website, HTTP, loopback)".into(),
            value: fmt_ms(q.page_entry.p95_ms),
            verdict: v(q.page_entry.p95_ms < 5.0 && q.page_errors == 0),
        },
        Bar {
            bar: "serving memory < 1 GB (peak RSS)".into(),
            value: fmt_bytes(q.serving_peak_rss_bytes),
            verdict: v(q.serving_peak_rss_bytes < GB),
        },
        Bar {
            bar: "need-set query p95 < 5 ms (HTTP, loopback)".into(),
            value: fmt_ms(q.needs_http.p95_ms),
            verdict: if q.needs_http.count == 0 {
                Verdict::Unverified
            } else {
                v(q.needs_http.p95_ms < 5.0)
            },
        },
        Bar {
            bar: "change feed read >= 200,000 events/s (HTTP, from position 0)".into(),
            value: format!(
                "{:.0}/s over {} events",
                q.feed.events_per_sec,
                fmt_int(q.feed.events)
            ),
            verdict: if q.feed.events < 1_000_000 {
                Verdict::Unverified
            } else {
                v(q.feed.events_per_sec >= 200_000.0)
            },
        },
        Bar {
            bar: "relevance hit@3 >= 90%".into(),
            value: pct(q.relevance.hit_at_3),
            verdict: v(q.relevance.hit_at_3 >= 0.9),
        },
    ];
    let mut ahead = Verdict::Pass;
    let mut vs = Vec::new();
    for want in [FTS5, POSTGRES] {
        match peers.iter().find(|p| p.peer == want && p.measured()) {
            Some(p) => {
                let h = p.relevance.as_ref().map_or(0.0, |r| r.hit_at_3);
                vs.push(format!("{want} {}", pct(h)));
                if q.relevance.hit_at_3 <= h {
                    ahead = Verdict::Fail;
                }
            }
            None => {
                vs.push(format!("{want} not measured"));
                if ahead == Verdict::Pass {
                    ahead = Verdict::Unverified;
                }
            }
        }
    }
    if let Some(n) = &q.second_node {
        bars.push(Bar {
            bar: "a write on one node found on another < 1 s".into(),
            value: format!("max {}", fmt_ms(n.propagation.max_ms)),
            verdict: v(n.propagation.count > 0 && n.propagation.max_ms < 1000.0),
        });
    }
    bars.push(Bar {
        bar: "hit@3 ahead of both peers".into(),
        value: format!("{} vs {}", pct(q.relevance.hit_at_3), vs.join(", ")),
        verdict: ahead,
    });
    if let Some(n) = &q.needs {
        let beside: Vec<String> = [FTS5, POSTGRES]
            .iter()
            .map(|want| {
                match peers
                    .iter()
                    .find(|p| p.peer == *want && p.measured())
                    .and_then(|p| p.needs.as_ref())
                {
                    Some(r) => format!("{want} {}", pct(r.hit_at_3)),
                    None => format!("{want} not measured"),
                }
            })
            .collect();
        bars.push(Bar {
            bar: "need set hit@3 >= 85%".into(),
            value: format!("{} ({})", pct(n.hit_at_3), beside.join(", ")),
            verdict: v(n.hit_at_3 >= 0.85),
        });
    }
    bars
}

fn peer_title(p: &str) -> &'static str {
    match p {
        FTS5 => "SQLite FTS5",
        POSTGRES => "PostgreSQL FTS+pg_trgm",
        _ => "peer",
    }
}

/// Misses listed in the text report.
const MAX_MISSES: usize = 20;

/// Rows of cells as text, each column as wide as its widest cell.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|x| x.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            let pad = widths[c].saturating_sub(cell.chars().count());
            line.push_str(cell);
            if c + 1 < r.len() {
                line.push_str(&" ".repeat(pad + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The report as text: the side-by-side table, quiver's own figures, the bars.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let q = &r.quiver;
    let measured: Vec<&PeerFigures> = r.peers.iter().filter(|p| p.measured()).collect();
    let _ = writeln!(
        s,
        "quiver bench ({} store): {} rows ({} pypi + {} npm), {} queries, {} CPUs",
        match r.setup.backend {
            Backend::Sqlite => "embedded SQLite",
            Backend::Postgres => "PostgreSQL",
        },
        fmt_int(r.setup.rows),
        fmt_int(r.setup.rows_pypi),
        fmt_int(r.setup.rows_npm),
        fmt_int(r.setup.queries as u64),
        r.setup.cpus
    );
    if let Some(n) = r.setup.rows_limit {
        let _ = writeln!(
            s,
            "!! only the first {} rows of each file (--rows): the bars are judged on the full set",
            fmt_int(n as u64)
        );
    }
    let busy = r.setup.load_avg_start.max(r.setup.load_avg_after_quiver);
    if busy > r.setup.cpus as f64 * 0.75 {
        let _ = writeln!(
            s,
            "!! the machine was busy (load average {:.1} at the start, {:.1} after quiver's \
             measures, on {} CPUs): latencies are inflated",
            r.setup.load_avg_start, r.setup.load_avg_after_quiver, r.setup.cpus
        );
    }
    let _ = writeln!(s);

    // Side by side.
    let mut t: Vec<Vec<String>> = Vec::new();
    let mut head = vec![String::new(), "quiver (HTTP)".to_string()];
    head.extend(
        measured
            .iter()
            .map(|p| format!("{} (in-process)", peer_title(&p.peer))),
    );
    t.push(head);
    let mut row = vec!["load + index".to_string(), fmt_secs(q.import.secs)];
    row.extend(measured.iter().map(|p| {
        format!(
            "{} {}",
            fmt_secs(p.total_secs()),
            fmt_ratio(p.total_secs(), q.import.secs)
        )
    }));
    t.push(row);
    let mut row = vec![
        "  rate".to_string(),
        format!("{} rows/s", fmt_int(q.import.rows_per_sec as u64)),
    ];
    row.extend(measured.iter().map(|p| {
        format!(
            "{} rows/s",
            fmt_int((r.setup.rows as f64 / p.total_secs().max(1e-9)) as u64)
        )
    }));
    t.push(row);
    let mut row = vec![
        "on disk".to_string(),
        fmt_bytes(q.import.store_bytes + q.import.index_bytes),
    ];
    row.extend(
        measured
            .iter()
            .map(|p| p.disk_bytes.map_or("-".into(), fmt_bytes)),
    );
    t.push(row);
    type Get = fn(&LatSummary) -> f64;
    let gets: [(&str, Get); 3] = [
        ("search p50", |l| l.p50_ms),
        ("search p95", |l| l.p95_ms),
        ("search p99", |l| l.p99_ms),
    ];
    for (label, get) in gets {
        let base = get(&q.search_http);
        let mut row = vec![label.to_string(), fmt_ms(base)];
        row.extend(measured.iter().map(|p| {
            format!(
                "{} {}",
                fmt_ms(get(&p.search)),
                fmt_ratio(get(&p.search), base)
            )
        }));
        t.push(row);
    }
    type Hit = fn(&RelevanceReport) -> f64;
    let hits: [(&str, Hit); 3] = [
        ("hit@1", |r| r.hit_at_1),
        ("hit@3", |r| r.hit_at_3),
        ("hit@10", |r| r.hit_at_10),
    ];
    for (label, get) in hits {
        let mut row = vec![label.to_string(), pct(get(&q.relevance))];
        row.extend(
            measured
                .iter()
                .map(|p| p.relevance.as_ref().map_or("-".into(), |x| pct(get(x)))),
        );
        t.push(row);
    }
    if let Some(n) = &q.needs {
        for (label, get) in hits {
            let mut row = vec![format!("needs {label}"), pct(get(n))];
            row.extend(
                measured
                    .iter()
                    .map(|p| p.needs.as_ref().map_or("-".into(), |x| pct(get(x)))),
            );
            t.push(row);
        }
    }
    s.push_str(&table(&t));
    let _ = writeln!(
        s,
        "(quiver is timed through HTTP on loopback, client included; the peers in-process, \
         with no HTTP and no JSON, which flatters them)"
    );
    for p in r.peers.iter().filter(|p| !p.measured()) {
        let _ = writeln!(
            s,
            "!! {} NOT MEASURED: {}",
            peer_title(&p.peer),
            p.skipped.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(s);

    // Search by class.
    let mut t: Vec<Vec<String>> = Vec::new();
    let mut head: Vec<String> = ["search p50 / p95", "n", "quiver HTTP", "quiver engine"]
        .map(String::from)
        .into();
    head.extend(measured.iter().map(|p| peer_title(&p.peer).to_string()));
    t.push(head);
    let pair = |l: &LatSummary| format!("{} / {}", fmt_ms(l.p50_ms), fmt_ms(l.p95_ms));
    for class in QClass::ALL {
        let Some(c) = q.search_per_class.get(class.key()) else {
            continue;
        };
        let mut row = vec![
            format!("  {}", class.label()),
            c.http.count.to_string(),
            pair(&c.http),
            pair(&c.engine),
        ];
        row.extend(
            measured
                .iter()
                .map(|p| p.search_per_class.get(class.key()).map_or("-".into(), pair)),
        );
        t.push(row);
    }
    s.push_str(&table(&t));
    let _ = writeln!(s);

    // Relevance by class.
    let mut t: Vec<Vec<String>> = Vec::new();
    let mut head: Vec<String> = ["hit@1 / @3 / @10", "cases", "quiver"]
        .map(String::from)
        .into();
    head.extend(measured.iter().map(|p| peer_title(&p.peer).to_string()));
    t.push(head);
    let three = |c: &relevance::ClassScore| {
        format!(
            "{} / {} / {}",
            pct(c.hit_at_1),
            pct(c.hit_at_3),
            pct(c.hit_at_10)
        )
    };
    for (class, c) in &q.relevance.per_class {
        let mut row = vec![format!("  {class}"), c.cases.to_string(), three(c)];
        row.extend(measured.iter().map(|p| {
            p.relevance
                .as_ref()
                .and_then(|r| r.per_class.get(class))
                .map_or("-".into(), three)
        }));
        t.push(row);
    }
    s.push_str(&table(&t));
    if !q.relevance.misses.is_empty() {
        let _ = writeln!(s, "quiver's misses (not in the first 3):");
        for m in q.relevance.misses.iter().take(MAX_MISSES) {
            let _ = writeln!(
                s,
                "  [{}] {:?}: want {} (rank {}), got {}",
                m.class,
                m.query,
                m.expected.join("|"),
                m.rank.map_or("-".to_string(), |r| r.to_string()),
                m.got.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            );
        }
        if q.relevance.misses.len() > MAX_MISSES {
            let _ = writeln!(
                s,
                "  ... and {} more (all in --json)",
                q.relevance.misses.len() - MAX_MISSES
            );
        }
    }
    let _ = writeln!(s);

    // quiver alone.
    let i = &q.import;
    let phases = match (i.store_phase_secs, i.index_phase_secs) {
        (Some(a), Some(b)) => format!(" (store {} + index {})", fmt_secs(a), fmt_secs(b)),
        (Some(a), None) => format!(" (store {a:.2} s, index not reported)"),
        _ => String::new(),
    };
    let _ = writeln!(s, "quiver");
    let _ = writeln!(
        s,
        "  import          {} to searchable{phases}, {} rows/s, CPU {}; {} created, {} rejected; peak RSS {}",
        fmt_secs(i.secs),
        fmt_int(i.rows_per_sec as u64),
        fmt_secs(i.cpu_secs),
        fmt_int(i.created),
        fmt_int(i.rejected),
        fmt_bytes(i.peak_rss_bytes)
    );
    let _ = writeln!(
        s,
        "  on disk         store {}, index {}",
        fmt_bytes(i.store_bytes),
        fmt_bytes(i.index_bytes)
    );
    let _ = writeln!(
        s,
        "  cold start      {} until /readyz answers 200 (page cache warm)",
        fmt_secs(q.cold_start_secs)
    );
    let _ = writeln!(
        s,
        "  lookup (HTTP)   p50 {}  p99 {}  max {}  over {} GETs ({} npm, {} scoped), {} errors",
        fmt_ms(q.lookup.p50_ms),
        fmt_ms(q.lookup.p99_ms),
        fmt_ms(q.lookup.max_ms),
        fmt_int(q.lookup.count),
        fmt_int(q.lookup_npm),
        fmt_int(q.lookup_scoped),
        q.lookup_errors
    );
    let _ = writeln!(
        s,
        "  website pages   search p50 {}  p95 {}  p99 {}; entry p50 {}  p95 {}  p99 {}; {} errors",
        fmt_ms(q.page_search.p50_ms),
        fmt_ms(q.page_search.p95_ms),
        fmt_ms(q.page_search.p99_ms),
        fmt_ms(q.page_entry.p50_ms),
        fmt_ms(q.page_entry.p95_ms),
        fmt_ms(q.page_entry.p99_ms),
        q.page_errors
    );
    let full = |l: &LatSummary| {
        format!(
            "p50 {}  p95 {}  p99 {}  max {}",
            fmt_ms(l.p50_ms),
            fmt_ms(l.p95_ms),
            fmt_ms(l.p99_ms),
            fmt_ms(l.max_ms)
        )
    };
    let _ = writeln!(
        s,
        "  search (HTTP)   {}  ({} errors)",
        full(&q.search_http),
        q.search_errors
    );

    let _ = writeln!(s, "  search (engine) {}  (took_us)", full(&q.search_engine));
    let _ = writeln!(s, "  need sentences  {}", full(&q.needs_http));
    let _ = writeln!(
        s,
        "  change feed     {} events in {} pages, {:.0} events/s, page {}",
        fmt_int(q.feed.events),
        q.feed.pages,
        q.feed.events_per_sec,
        full(&q.feed.page)
    );
    let _ = writeln!(
        s,
        "  server CPU      {} per lookup, {} per search (user + system, all threads)",
        fmt_ms(q.lookup_server_cpu_ms),
        fmt_ms(q.search_server_cpu_ms)
    );
    let _ = writeln!(
        s,
        "  throughput      {:.0} requests/s with {} clients for {:.0} s: p50 {}  p99 {}, {} errors",
        q.load.requests_per_sec,
        q.load.concurrency,
        q.load.secs,
        fmt_ms(q.load.latency.p50_ms),
        fmt_ms(q.load.latency.p99_ms),
        q.load.errors
    );
    let _ = writeln!(
        s,
        "  serving memory  peak RSS {}, RSS {} after the load",
        fmt_bytes(q.serving_peak_rss_bytes),
        fmt_bytes(q.serving_rss_bytes)
    );
    if let Some(n) = &q.second_node {
        let _ = writeln!(s);
        let _ = writeln!(s, "second node (same PostgreSQL database, its own index)");
        let _ = writeln!(
            s,
            "  catch-up        {} from an empty index to /readyz 200",
            fmt_secs(n.catch_up_secs)
        );
        let _ = writeln!(
            s,
            "  propagation     {}  ({} writes on node 1, found by search on node 2)",
            full(&n.propagation),
            n.propagation.count
        );
        let _ = writeln!(s, "  lookup (HTTP)   {}", full(&n.lookup));
        let _ = writeln!(
            s,
            "  search (HTTP)   {}  ({} errors)",
            full(&n.search_http),
            n.errors
        );
        let _ = writeln!(
            s,
            "  two nodes       {:.0} requests/s with {} clients split over both: p50 {}  p99 {}, {} errors",
            n.load.requests_per_sec,
            n.load.concurrency,
            fmt_ms(n.load.latency.p50_ms),
            fmt_ms(n.load.latency.p99_ms),
            n.load.errors
        );
        let _ = writeln!(
            s,
            "  serving memory  node 2 peak RSS {}",
            fmt_bytes(n.serving_peak_rss_bytes)
        );
    }
    let _ = writeln!(s);

    let _ = writeln!(s, "bars");
    for b in &r.bars {
        let v = match b.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Unverified => "N/A ",
        };
        let _ = writeln!(s, "  {v}  {:<42} {}", b.bar, b.value);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lat(p50: f64, p95: f64, p99: f64) -> LatSummary {
        LatSummary {
            count: 100,
            mean_ms: p50,
            p50_ms: p50,
            p95_ms: p95,
            p99_ms: p99,
            max_ms: p99 * 2.0,
        }
    }

    fn rel(h3: f64) -> RelevanceReport {
        RelevanceReport {
            cases: 10,
            hit_at_1: h3 - 0.1,
            hit_at_3: h3,
            hit_at_10: h3 + 0.05,
            ..Default::default()
        }
    }

    #[test]
    fn table_and_bars() {
        let mut q = QuiverFigures {
            import: ImportFigures {
                secs: 21.3,
                rows_per_sec: 52_000.0,
                store_phase_secs: Some(15.0),
                index_phase_secs: Some(6.3),
                ..Default::default()
            },
            lookup: lat(0.1, 0.2, 0.4),
            search_http: lat(0.9, 2.1, 3.0),
            page_search: lat(2.0, 5.0, 8.0),
            page_entry: lat(1.0, 1.5, 2.0),
            serving_peak_rss_bytes: 700 << 20,
            relevance: rel(0.93),
            needs_http: lat(1.5, 4.0, 6.0),
            feed: FeedFigures {
                events: 1_000_000,
                pages: 1_000,
                secs: 4.0,
                events_per_sec: 250_000.0,
                page: lat(3.0, 6.0, 9.0),
            },
            ..Default::default()
        };
        q.search_per_class.insert(
            "typo".into(),
            ClassLatency {
                http: lat(1.0, 2.0, 3.0),
                engine: lat(0.5, 1.0, 1.5),
            },
        );
        let fts = PeerFigures {
            peer: FTS5.into(),
            load_secs: 7.0,
            index_secs: 0.4,
            search: lat(6.0, 133.0, 200.0),
            relevance: Some(rel(0.4)),
            ..Default::default()
        };
        let pg = PeerFigures::skipped(POSTGRES, "unreachable: refused".into());
        let peers = vec![fts, pg];
        let bars = judge(&q, &peers);
        assert_eq!(bars.len(), 10);
        assert!(
            bars[..9].iter().all(|b| b.verdict == Verdict::Pass),
            "{bars:?}"
        );
        assert_eq!(bars[9].verdict, Verdict::Unverified);
        // Without a need set or a feed long enough, those two bars are unverified.
        let short = QuiverFigures {
            needs_http: LatSummary::default(),
            feed: FeedFigures {
                events: 10,
                ..Default::default()
            },
            ..q.clone()
        };
        let unverified = judge(&short, &peers)
            .iter()
            .filter(|b| b.verdict == Verdict::Unverified)
            .count();
        assert_eq!(unverified, 3);
        let report = Report {
            setup: Setup {
                backend: Backend::Sqlite,
                files: vec![],
                rows: 1_113_297,
                rows_pypi: 886_323,
                rows_npm: 226_974,
                rows_rejected_by_reader: 0,
                queries: 2000,
                lookups: 20_000,
                concurrency: 8,
                duration_secs: 10.0,
                seed: 42,
                rows_limit: None,
                cpus: 2,
                load_avg_start: 0.2,
                load_avg_after_quiver: 0.5,
            },
            quiver: q,
            peers,
            bars,
        };
        let t = render(&report);
        assert!(t.contains("1,113,297 rows"), "{t}");
        assert!(t.contains("133 ms (63x)"), "{t}");
        assert!(t.contains("7.40 s (0.35x)"), "{t}");
        assert!(
            t.contains("PostgreSQL FTS+pg_trgm NOT MEASURED: unreachable"),
            "{t}"
        );
        assert!(t.contains("PASS  search p95 < 5 ms"), "{t}");
        assert!(t.contains("N/A   hit@3 ahead of both peers"), "{t}");
        assert!(serde_json::to_string(&report).is_ok());
    }

    #[test]
    fn helpers() {
        assert_eq!(
            parse_index_secs("search index: 1113297 events applied in 6.2s (position 1113297)"),
            Some(6.2)
        );
        assert_eq!(parse_index_secs("search index not updated here"), None);
        assert_eq!(
            redact_url("postgres://u:secret@127.0.0.1:5432/test"),
            "postgres://u:***@127.0.0.1:5432/test"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres:***@127.0.0.1/test"
        );
        let rows: Vec<Row> = ["a", "@s/b", "c"]
            .iter()
            .enumerate()
            .map(|(i, n)| Row {
                namespace: if i == 0 { "pypi" } else { "npm" },
                name: n.to_string(),
                summary: String::new(),
                popularity: 0.0,
            })
            .collect();
        let picks = lookup_picks(&rows, 1000, &mut Rng::new(5));
        let scoped = picks.iter().filter(|&&i| i == 1).count();
        assert!((100..200).contains(&scoped), "{scoped}");
        assert_eq!(lookup_path(&rows[1]), "/api/v1/entries/package/npm/@s/b");
    }
}
