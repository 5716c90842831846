//! Commands that work on the embedded store directly: serve, import, export, relevance.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use quiver_engine::bulk::Bulk;
use quiver_engine::{index_path, Caller, Registry};
use quiver_import::pipeline::{ImportOptions, NoProgress, Progress, Source};
use quiver_import::Format;
use quiver_model::{Kind, Status};
use quiver_search::{SearchIndex, SearchQuery};
use quiver_server::AppState;
use quiver_store::EntryFilter;

use crate::DataDir;

/// The demo data set compiled into the binary: a few dozen entries of all five kinds.
pub const DEMO_JSONL: &str = include_str!("../demo/demo.jsonl");

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// Address to listen on.
    #[arg(long, env = "QUIVER_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// Load the demo data set (idempotent) before serving.
    #[arg(long)]
    pub demo: bool,
    /// Bearer token of the admin. When set, only the admin may write.
    #[arg(long, env = "QUIVER_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Serve an open registry (no admin token, no users: anyone may write) on an address
    /// other than loopback. Without it, such a server refuses to start.
    #[arg(long)]
    pub insecure_open: bool,
    /// Namespaces holding an outside ecosystem's packages (comma-separated): only admins
    /// and imports write to them, and no user or organisation may take their names.
    #[arg(
        long,
        env = "QUIVER_ECOSYSTEM_NAMESPACES",
        value_delimiter = ',',
        default_value = "npm,pypi"
    )]
    pub ecosystem_namespaces: Vec<String>,
    /// Days raw telemetry events are kept (their hourly roll-ups are kept for good).
    #[arg(long, env = "QUIVER_TELEMETRY_RETENTION_DAYS", default_value_t = 30)]
    pub telemetry_retention_days: u64,
    /// How often counted downloads are written to the store, in milliseconds: the most a
    /// crash can lose (a clean shutdown loses none).
    #[arg(long, env = "QUIVER_DOWNLOAD_FLUSH_MS", default_value_t = 1000)]
    pub download_flush_ms: u64,
    /// How often popularity is refreshed from counted downloads, in seconds.
    #[arg(long, env = "QUIVER_POPULARITY_REFRESH_SECS", default_value_t = 3600)]
    pub popularity_refresh_secs: u64,
    /// How long after publishing an owner may still delete an entry or version, in hours
    /// (the deletion policy; site admins may delete at any time).
    #[arg(long, env = "QUIVER_DELETE_GRACE_HOURS", default_value_t = 72)]
    pub delete_grace_hours: u64,
    /// The most counted downloads an entry (all versions) or a version may have for its
    /// owner to delete it.
    #[arg(long, env = "QUIVER_DELETE_MAX_DOWNLOADS", default_value_t = 100)]
    pub delete_max_downloads: u64,
    /// Where published content is kept, addressed by its sha256 (default: `content` in
    /// the data directory; on several nodes, a folder they all share).
    #[arg(long, env = "QUIVER_CONTENT_DIR")]
    pub content_dir: Option<PathBuf>,
    /// Let webhook targets be loopback and private addresses (a closed network, tests).
    /// Off by default, so that webhooks cannot be used to probe the inside network.
    #[arg(long, env = "QUIVER_WEBHOOKS_ALLOW_PRIVATE")]
    pub webhooks_allow_private: bool,
    /// Milliseconds before a failed webhook delivery is tried again, doubled after each
    /// further failure (capped at an hour).
    #[arg(long, env = "QUIVER_WEBHOOKS_BACKOFF_MS", default_value_t = 10_000)]
    pub webhooks_backoff_ms: u64,
    /// Attempts per webhook delivery before it is dead-lettered.
    #[arg(long, env = "QUIVER_WEBHOOKS_MAX_ATTEMPTS", default_value_t = 8)]
    pub webhooks_max_attempts: u32,
    /// Failed webhook attempts in a row that disable a subscription (0: never).
    #[arg(long, env = "QUIVER_WEBHOOKS_DISABLE_AFTER", default_value_t = 20)]
    pub webhooks_disable_after: u32,
    /// Workers sending webhook deliveries on this node.
    #[arg(long, env = "QUIVER_WEBHOOKS_WORKERS", default_value_t = 4)]
    pub webhooks_workers: usize,
    /// Origins allowed to call the API from a browser (comma-separated
    /// `scheme://host[:port]`, or `*` for any). Off by default; cookies are never sent
    /// across origins (a browser client sends its token in `Authorization`).
    #[arg(long, env = "QUIVER_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Seconds a CDN or shared cache may serve a public answer (to a caller without
    /// credentials) before revalidating it with its ETag; 0 to always revalidate.
    #[arg(long, env = "QUIVER_PUBLIC_MAX_AGE", default_value_t = 60)]
    pub public_max_age: u64,
    /// Rate limits per client: the defaults (empty), `off`, or `class=limit` pairs over the
    /// defaults, e.g. `search=60/min,download=off` (classes: read, search, write,
    /// registration, download; limits like `20/s`, `100/min`, `50/day`).
    #[arg(long, env = "QUIVER_RATE_LIMITS", default_value = "")]
    pub rate_limits: quiver_server::limits::RateLimits,
    /// Count the last `X-Forwarded-For` address instead of the connection's (only behind a
    /// reverse proxy that sets it).
    #[arg(long)]
    pub trust_forwarded_for: bool,
    /// Review first publishes by the publisher's trust level (new and standard publishers
    /// go to the moderation queue; trusted ones auto-publish up to --daily-auto-publish).
    #[arg(long, env = "QUIVER_REVIEW")]
    pub review: bool,
    /// New entries a trusted publisher may publish a day without review.
    #[arg(long, default_value_t = 10)]
    pub daily_auto_publish: u64,
    /// Open connections in all (0: no limit); a connection beyond it is answered 503.
    #[arg(long, env = "QUIVER_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Open connections per client address (0: no limit; use 0 behind a reverse proxy,
    /// where every client has the proxy's address).
    #[arg(long, env = "QUIVER_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256)]
    pub max_connections_per_client: usize,
    /// Seconds a client has to send a request's head, and a kept-alive connection to
    /// start its next request, before the connection is closed.
    #[arg(long, env = "QUIVER_HEADER_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,
    /// Seconds a client has to send a request's body.
    #[arg(long, env = "QUIVER_BODY_TIMEOUT", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout: u64,
    /// Also serve `GET /metrics` to anyone on this address (say `127.0.0.1:9464`, for a
    /// scraper); on the API's address `/metrics` needs an admin.
    #[arg(long, env = "QUIVER_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Seconds a device sign-in code (`quiver login`) waits for approval.
    #[arg(long, env = "QUIVER_DEVICE_CODE_LIFETIME", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(60..=86_400))]
    pub device_code_lifetime: u64,
    /// Seconds a device sign-in client is told to wait between polls.
    #[arg(long, env = "QUIVER_DEVICE_POLL_INTERVAL", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=60))]
    pub device_poll_interval: u64,
    /// The page users enter device codes at, when the server is reached under another
    /// address than its own (behind a proxy); default: `<the server's address>/device`.
    #[arg(long, env = "QUIVER_DEVICE_VERIFICATION_URI")]
    pub device_verification_uri: Option<String>,
}

/// Import the embedded demo data, as the operator (one `import.run` audit row).
pub async fn load_demo(registry: &Registry, data_dir: &Path) -> anyhow::Result<()> {
    let path = data_dir.join(".demo.jsonl");
    std::fs::write(&path, DEMO_JSONL).context("writing the demo data")?;
    let run = registry
        .bulk()
        .import(
            &Caller::Operator,
            vec![Source::new(&path).with_format(Format::Jsonl)],
            ImportOptions::default(),
            &NoProgress,
        )
        .await;
    let _ = std::fs::remove_file(&path);
    let report = run?.report;
    let t = &report.totals;
    if t.rejected > 0 {
        bail!("the demo data was rejected in part:\n{report}");
    }
    tracing::info!(
        created = t.created,
        updated = t.updated,
        unchanged = t.unchanged,
        "demo data loaded"
    );
    Ok(())
}

/// The connection limit, lowered to fit the open-file limit (raised to its hard limit
/// first), so that the server refuses connections with a 503 before `accept` runs out of
/// descriptors. The margin covers the database, the index and the log.
fn fit_to_open_files(max_connections: usize) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    const MARGIN: u64 = 256;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return max_connections;
    };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let fits = soft.saturating_sub(MARGIN).max(1) as usize;
    if max_connections == 0 || max_connections > fits {
        tracing::warn!(
            requested = max_connections,
            open_files = soft,
            using = fits,
            "--max-connections lowered to fit the open-file limit"
        );
        return fits;
    }
    max_connections
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

pub async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut config = a.data.config();
    config.open_writes = a.admin_token.is_none();
    config.review.enabled = a.review;
    config.review.daily_limit = a.daily_auto_publish;
    config.device.lifetime = std::time::Duration::from_secs(a.device_code_lifetime);
    config.device.interval = std::time::Duration::from_secs(a.device_poll_interval);
    config.device.verification_uri = a.device_verification_uri;
    if a.device_poll_interval >= a.device_code_lifetime {
        bail!("--device-poll-interval must be shorter than --device-code-lifetime");
    }
    let http = quiver_server::http_policy::HttpPolicy {
        public_max_age: a.public_max_age,
        cors_origins: a
            .cors_origins
            .iter()
            .map(|o| o.trim().to_string())
            .filter(|o| !o.is_empty())
            .collect(),
    };
    http.check()
        .map_err(|e| anyhow::anyhow!("--cors-origins: {e}"))?;
    if a.telemetry_retention_days == 0 {
        bail!("--telemetry-retention-days must be at least 1");
    }
    config.telemetry_retention =
        std::time::Duration::from_secs(a.telemetry_retention_days * 24 * 3600);
    if a.download_flush_ms == 0 || a.popularity_refresh_secs == 0 {
        bail!("--download-flush-ms and --popularity-refresh-secs must be at least 1");
    }
    config.downloads.flush_interval = std::time::Duration::from_millis(a.download_flush_ms);
    config.downloads.refresh_interval = std::time::Duration::from_secs(a.popularity_refresh_secs);
    config.content_dir = a.content_dir.clone();
    config.deletion.grace = std::time::Duration::from_secs(a.delete_grace_hours * 3600);
    config.deletion.max_downloads = a.delete_max_downloads;
    if a.webhooks_max_attempts == 0 || a.webhooks_workers == 0 {
        bail!("--webhooks-max-attempts and --webhooks-workers must be at least 1");
    }
    config.webhooks.allow_private = a.webhooks_allow_private;
    config.webhooks.backoff_base = std::time::Duration::from_millis(a.webhooks_backoff_ms);
    config.webhooks.max_attempts = a.webhooks_max_attempts;
    config.webhooks.disable_after = a.webhooks_disable_after;
    config.webhooks.workers = a.webhooks_workers;
    config.ecosystem_namespaces = a
        .ecosystem_namespaces
        .iter()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    let db = a.data.database().await.context("opening the database")?;
    let registry = Registry::open(db, config)
        .await
        .with_context(|| format!("opening the index in {}", a.data.data_dir.display()))?;
    if a.demo {
        load_demo(&registry, &a.data.data_dir).await?;
        registry.sync_index().await?;
    }
    let follower = registry.spawn_follower();
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    let addr = listener.local_addr()?;
    if registry.is_open().await? {
        if !addr.ip().is_loopback() && !a.insecure_open {
            bail!(
                "refusing to serve an open registry (no --admin-token and no users: anyone \
                 could write) on {addr}; set --admin-token, listen on a loopback address, or \
                 pass --insecure-open"
            );
        }
        tracing::warn!(
            "no admin token set and no users yet: anyone who can reach {addr} may write \
             until the first user registers"
        );
    }
    if let Some(code) = registry.setup_code() {
        println!(
            "quiver setup code (registers the first site admin, once): {code}\n  \
             quiver register --server http://{addr} --name NAME --setup-code {code} \
             --password-stdin"
        );
    }
    let status = registry.status().await?;
    tracing::info!(
        entries = status.store.entries,
        indexed = status.index.docs,
        ready_in_ms = started.elapsed().as_millis() as u64,
        "quiver listening on http://{addr}"
    );
    println!("quiver listening on http://{addr}");
    let worker = registry.spawn_worker();
    let flusher = registry.spawn_download_flusher();
    let state = AppState {
        registry: registry.clone(),
        admin_token: a.admin_token,
        http: std::sync::Arc::new(http),
    };
    let mut limits = a.rate_limits;
    limits.trust_forwarded_for = a.trust_forwarded_for;
    let connections = quiver_server::conn::ConnectionLimits {
        max_connections: fit_to_open_files(a.max_connections),
        max_per_client: a.max_connections_per_client,
        header_timeout: std::time::Duration::from_secs(a.header_timeout),
        body_timeout: std::time::Duration::from_secs(a.body_timeout),
    };
    let metrics_server = match &a.metrics_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for metrics on {addr}"))?;
            println!("quiver metrics on http://{}/metrics", l.local_addr()?);
            Some(tokio::spawn(quiver_server::serve_metrics(l, state.clone())))
        }
        None => None,
    };
    quiver_server::serve_limited(listener, state, limits, connections, shutdown_signal()).await?;
    if let Some(m) = metrics_server {
        m.abort();
    }
    // In-flight requests are done: write the counts they buffered.
    flusher.abort();
    if let Err(e) = registry.flush_downloads().await {
        tracing::error!(error = %e, "the last flush of download counts failed");
    }
    // Let the worker finish the job in hand.
    worker.shutdown().await;
    follower.abort();
    Ok(())
}

#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// Files or folders to import: data set TSV (gzip or plain), quiver JSONL (`-` for
    /// stdin), or a source system's own files (a folder is walked and each file read by
    /// the format that claims it).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Force the format instead of detecting it (tsv, jsonl, blocks, ops-tools, recipes,
    /// skills, modules).
    #[arg(long)]
    pub format: Option<Format>,
    /// Show what would be created, updated, unchanged and rejected; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Records per transaction.
    #[arg(long, default_value_t = 10_000)]
    pub batch_size: usize,
    /// Do not bring the search index up to date at the end (a running server does it
    /// from the change feed).
    #[arg(long)]
    pub no_index: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A progress bar on a terminal: records read, bytes of the input, rate and ETA.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn begin(&self, total_bytes: u64) {
        self.0.set_length(total_bytes);
    }
    fn file(&self, path: &Path, format: Format) {
        self.0.set_message(format!("{} ({format})", path.display()));
    }
    fn advance(&self, records: u64, bytes: u64) {
        self.0.set_position(bytes);
        self.0.set_prefix(format!("{records} records"));
    }
    fn relations(&self, done: u64, total: u64) {
        self.0.set_message(format!("relations {done}/{total}"));
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

pub async fn import(a: ImportArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    // A bulk import reads each row once: memory-mapping the embedded database would
    // only add its pages (up to 256 MiB per reader connection) to the resident memory.
    quiver_backends::set_sqlite_mmap_size(0);
    let db = a.data.primary_database().await?;
    let store = db.store.clone();
    // Through the engine, as the operator: authorized, one audit row for the run, and
    // the gates of the new versions queued from the change feed.
    let bulk = Bulk::new(db.clone(), &a.data.config());
    let opts = ImportOptions {
        batch_size: a.batch_size,
        dry_run: a.dry_run,
        format: a.format,
        ..Default::default()
    };
    let sources = a.files.iter().map(Source::new).collect();
    let report = if std::io::stderr().is_terminal() && !a.json {
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {prefix} ({bytes_per_sec}, ETA {eta}) {msg}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bulk.import(&Caller::Operator, sources, opts, &Bar(bar))
            .await?
    } else {
        bulk.import(&Caller::Operator, sources, opts, &NoProgress)
            .await?
    };
    let (report, gates) = (report.report, report.gates_queued);
    let mut index_note = String::new();
    if !a.dry_run && !a.no_index {
        let index_started = Instant::now();
        match SearchIndex::open(&index_path(&a.data.data_dir)) {
            Ok(index) => match index.catch_up(&*store).await {
                Ok(c) => {
                    index_note = format!(
                        "search index: {} events applied in {:.1}s (position {})",
                        c.applied_events,
                        index_started.elapsed().as_secs_f64(),
                        c.position
                    )
                }
                Err(e) => {
                    index_note = format!(
                        "search index not updated here ({e}); a running server indexes the new entries from the change feed"
                    )
                }
            },
            Err(e) => index_note = format!("search index not opened: {e}"),
        }
    }
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["index"] = serde_json::Value::String(index_note);
        v["gates_queued"] = serde_json::json!(gates);
        v["total_secs"] = serde_json::json!(started.elapsed().as_secs_f64());
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{report}");
        if let Some(n) = gates {
            println!("quality gates queued: {n} versions (a server's job worker runs them)");
        }
        if !index_note.is_empty() {
            println!("{index_note}");
        }
        println!("total time: {:.1}s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// Write to this file instead of standard output (a folder, for the source systems'
    /// formats other than a single blocks.yml).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// The format: quiver JSONL (everything, lossless), or a source system's own files
    /// (blocks, ops-tools, recipes, skills, modules).
    #[arg(long, default_value = "jsonl")]
    pub format: Format,
    /// Only entries in these categories (comma-separated; source systems' formats).
    #[arg(long, value_delimiter = ',')]
    pub category: Vec<String>,
    /// Only entries of these kinds (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub kind: Vec<Kind>,
    /// Only entries in these namespaces (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub namespace: Vec<String>,
    /// Only entries with these statuses (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub status: Vec<Status>,
}

pub async fn export(a: ExportArgs) -> anyhow::Result<()> {
    if let Some(path) = a.data.embedded_store().filter(|p| !p.exists()) {
        bail!("no store at {}", path.display());
    }
    let db = a.data.database().await?;
    let bulk = Bulk::new(db, &a.data.config());
    if a.format.is_system() {
        let Some(out) = &a.output else {
            bail!(
                "--output is required for the {} format (a file or folder to write)",
                a.format
            );
        };
        if !a.kind.is_empty() || !a.namespace.is_empty() {
            bail!("--kind and --namespace filter JSONL exports; the {} format takes --category and --status", a.format);
        }
        let filter = quiver_import::formats::ExportFilter {
            categories: a.category,
            statuses: a.status,
            ..Default::default()
        };
        let s = bulk
            .export_format(&Caller::Operator, a.format, &filter, out)
            .await?;
        eprintln!(
            "exported {} entries and {} documents as {} ({} files) to {}",
            s.entries,
            s.documents,
            a.format,
            s.files,
            out.display()
        );
        return Ok(());
    }
    if a.format != Format::Jsonl {
        bail!(
            "export writes JSONL or a source system's format, not {}",
            a.format
        );
    }
    if !a.category.is_empty() {
        bail!("--category filters the source systems' formats; for JSONL use --kind, --namespace or --status");
    }
    let filter = EntryFilter {
        kinds: a.kind,
        namespaces: a.namespace,
        statuses: a.status,
        ..Default::default()
    };
    let n = match &a.output {
        Some(p) => {
            let f =
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
            let mut w = std::io::BufWriter::new(f);
            let n = bulk.export_jsonl(&Caller::Operator, filter, &mut w).await?;
            w.flush()?;
            n
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            let n = bulk.export_jsonl(&Caller::Operator, filter, &mut w).await?;
            w.flush()?;
            n
        }
    };
    eprintln!(
        "exported {} entries and {} documents",
        n.entries, n.documents
    );
    Ok(())
}

#[derive(Args)]
pub struct RelevanceArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// The relevance sets (TSV: query, expected namespace/name alternatives, class, and
    /// an optional kind filter); each is reported on its own. Default: the name set, the
    /// need set and the cross-kind set under `relevance/` (those present).
    #[arg(long = "set")]
    pub sets: Vec<PathBuf>,
    /// Print the reports as JSON (an object keyed by set file).
    #[arg(long)]
    pub json: bool,
    /// Ranking weights to try instead of the built-in ones, as a JSON object of the
    /// fields to change (`{"popularity_exponent": 3}`); for tuning, nothing is saved.
    #[arg(long)]
    pub ranking: Option<String>,
}

/// The relevance sets `quiver relevance` runs when none is named.
pub const DEFAULT_RELEVANCE_SETS: [&str; 3] = [
    "relevance/queries.tsv",
    "relevance/needs.tsv",
    "relevance/kinds.tsv",
];

pub async fn relevance(a: RelevanceArgs) -> anyhow::Result<()> {
    let sets: Vec<PathBuf> = if a.sets.is_empty() {
        DEFAULT_RELEVANCE_SETS
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .collect()
    } else {
        a.sets.clone()
    };
    if sets.is_empty() {
        bail!("no relevance set found (run from the repository root, or pass --set FILE)");
    }
    let registry = open_registry(&a.data).await?;
    if let Some(r) = &a.ranking {
        let changes: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r).context("--ranking: not a JSON object")?;
        let mut current = serde_json::to_value(registry.index().ranking())?;
        for (k, v) in changes {
            if current.get(&k).is_none() {
                bail!("--ranking: no ranking weight is called `{k}`");
            }
            current[&k] = v;
        }
        let tried = serde_json::from_value(current).context("--ranking")?;
        registry.index().set_ranking(tried);
    }
    let mut reports = serde_json::Map::new();
    for set in &sets {
        let cases = quiver_search::relevance::load_set(set)?;
        let report = quiver_search::relevance::evaluate_cases(&cases, |c| {
            registry
                .index()
                .search(&SearchQuery {
                    limit: 10,
                    kinds: c.kind.into_iter().collect(),
                    ..SearchQuery::text(&c.query)
                })
                .map(|r| r.hits.into_iter().map(|h| (h.namespace, h.name)).collect())
                .unwrap_or_default()
        });
        if a.json {
            reports.insert(set.display().to_string(), serde_json::to_value(&report)?);
        } else {
            println!(
                "== {} (lexicon {})",
                set.display(),
                quiver_search::lexicon::Lexicon::builtin().version()
            );
            println!("{report}");
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(())
}

/// Open the registry of a data directory (or database) that must already hold a store.
pub async fn open_registry(data: &DataDir) -> anyhow::Result<Arc<Registry>> {
    if let Some(path) = data.embedded_store().filter(|p| !p.exists()) {
        bail!(
            "no store at {} (import data first, or pass --data-dir)",
            path.display()
        );
    }
    Ok(Registry::open(data.database().await?, data.config()).await?)
}

#[derive(Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub data: DataDir,
    #[command(subcommand)]
    pub action: JobsAction,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(clap::Subcommand)]
pub enum JobsAction {
    /// Jobs, newest first.
    List {
        /// Only these states (queued, running, succeeded, dead; comma-separated).
        #[arg(long, value_delimiter = ',')]
        state: Vec<quiver_store::JobState>,
        /// Only these kinds (comma-separated).
        #[arg(long, value_delimiter = ',')]
        kind: Vec<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One job.
    Show { id: quiver_store::JobId },
    /// Put a dead job back in the queue with its attempts reset.
    Retry { id: quiver_store::JobId },
}

pub async fn jobs(a: JobsArgs) -> anyhow::Result<()> {
    let queue = a.data.database().await?.jobs;
    let show = |job: &quiver_store::Job| {
        println!(
            "{:>6}  {:<9} {:<40} attempts {}/{}  run_at {}{}",
            job.id,
            job.state.as_str(),
            job.kind,
            job.attempts,
            job.max_attempts,
            job.run_at,
            job.last_error
                .as_deref()
                .map(|e| format!("  last error: {e}"))
                .unwrap_or_default()
        )
    };
    match a.action {
        JobsAction::List {
            state,
            kind,
            limit,
            cursor,
        } => {
            let filter = quiver_store::JobFilter {
                states: state,
                kinds: kind,
            };
            let page = queue.list_jobs(&filter, cursor.as_deref(), limit).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                page.items.iter().for_each(show);
                if let Some(c) = page.next_cursor {
                    println!("more: --cursor {c}");
                }
            }
        }
        JobsAction::Show { id } => {
            let job = queue
                .get_job(id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("job {id} not found"))?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                show(&job);
            }
        }
        JobsAction::Retry { id } => {
            let job = queue.retry(id).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                show(&job);
            }
        }
    }
    Ok(())
}
