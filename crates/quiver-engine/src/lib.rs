//! quiver's engine: the registry service that the HTTP API and the CLI call.
//!
//! [`Registry`] owns a [`Store`] and a [`SearchIndex`] and is the one place where the
//! rules of a write are applied: input validation (names, semver, manifests against the
//! kind's schema), who may see and change what ([`Caller`]), and waking the derived views
//! after a commit. The index is never written directly: a follower task tails the store's
//! change feed (woken by writes in this process, polling for writes from other processes
//! such as `quiver import`), so every committed write reaches search, and a crash between
//! the commit and the index update is repaired by the catch-up at the next start.
//!
//! Visibility rule (until accounts land): public entries are seen by everyone; unlisted
//! entries by exact name only, never in lists or search; private entries only by an admin
//! caller — to everyone else they answer exactly like entries that do not exist.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quiver_model::{
    Context, Deprecation, Entry, EntryKey, EntryPatch, Error, Kind, NewEntry, NewVersion, Relation,
    Result, Status, Version, Visibility,
};
use quiver_postgres::{PostgresOptions, PostgresStore};
use quiver_search::{IndexStats, SearchIndex, SearchQuery, SearchResults};
use quiver_store::worker::{Handler, Worker, WorkerHandle, WorkerOptions};
use quiver_store::{
    Direction, EntryFilter, Job, JobCounts, JobFilter, JobId, JobQueue, NewJob, Page, SqliteStore,
    Store, StoreStats,
};
use serde::Serialize;
use tokio::sync::Notify;

pub use quiver_search as search;
pub use quiver_store as store;

/// Who is asking. Accounts and tokens refine this later; the engine already takes it on
/// every call so that no route can forget to pass it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Admin,
}

impl Caller {
    fn sees_private(self) -> bool {
        matches!(self, Caller::Admin)
    }
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where the embedded store (unless `database` names another) and the index live.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (`postgres://...`) to use instead of the embedded SQLite store.
    pub database: Option<String>,
    /// Whether callers that are not admins may write. Off once an admin token is set.
    pub open_writes: bool,
    /// How often the index follower polls the feed for writes made by other processes.
    pub poll_interval: Duration,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            database: None,
            open_writes: true,
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// Paths inside a data directory.
pub fn store_path(data_dir: &Path) -> PathBuf {
    data_dir.join("quiver.db")
}

pub fn index_path(data_dir: &Path) -> PathBuf {
    data_dir.join("index")
}

/// The store a configuration names: PostgreSQL when `database` is a PostgreSQL URL,
/// else SQLite in the data directory. The PostgreSQL handle is returned too, for its
/// change notifications.
pub async fn open_store(config: &EngineConfig) -> Result<(Arc<dyn Store>, Option<PostgresStore>)> {
    match config.database.as_deref() {
        Some(url) if quiver_postgres::is_postgres_url(url) => {
            let pg = PostgresStore::connect_with(PostgresOptions::new(url)).await?;
            Ok((Arc::new(pg.clone()), Some(pg)))
        }
        Some(other) => Err(Error::invalid(
            "database",
            format!(
                "'{}' is not a PostgreSQL URL (postgres://...); leave it unset for the embedded store",
                quiver_postgres::redact_url(other)
            ),
        )),
        None => {
            std::fs::create_dir_all(&config.data_dir).context(format!(
                "creating data directory {}",
                config.data_dir.display()
            ))?;
            Ok((Arc::new(SqliteStore::open(store_path(&config.data_dir))?), None))
        }
    }
}

/// Health of the engine's parts, for `/readyz` and `quiver bench`.
#[derive(Debug, Clone, Serialize)]
pub struct EngineStatus {
    pub backend: &'static str,
    pub store: StoreStats,
    pub index: IndexStats,
    /// Feed events the index has not applied yet.
    pub index_lag: i64,
    /// Jobs by state (the queue depth).
    pub jobs: Option<JobCounts>,
}

/// The job kind that rebuilds one node's search index from the store.
pub const REBUILD_INDEX: &str = "rebuild_index";

/// Runs `rebuild_index:<node>` jobs: this node's index, replayed from the feed. Idempotent:
/// a rebuild of a rebuilt index yields the same index.
struct RebuildIndex {
    kind: String,
    store: Arc<dyn Store>,
    index: Arc<SearchIndex>,
}

#[async_trait::async_trait]
impl Handler for RebuildIndex {
    fn kind(&self) -> &str {
        &self.kind
    }

    async fn run(&self, _job: &Job) -> std::result::Result<(), String> {
        let c = self
            .index
            .rebuild(&*self.store)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(
            events = c.applied_events,
            position = c.position,
            "search index rebuilt"
        );
        Ok(())
    }
}

/// The job kind that validates a published version and records the result on it.
pub const VALIDATE_VERSION: &str = "validate_version";

/// Runs `validate_version` jobs: checks the version's manifest against its kind's current
/// schema (and, for tools, that its input and output schemas are schemas) and records the
/// result on the version. Idempotent: a result already recorded for the same manifest hash
/// is left alone.
struct ValidateVersion {
    store: Arc<dyn Store>,
}

#[async_trait::async_trait]
impl Handler for ValidateVersion {
    fn kind(&self) -> &str {
        VALIDATE_VERSION
    }

    async fn run(&self, job: &Job) -> std::result::Result<(), String> {
        let key: EntryKey = serde_json::from_value(job.payload["entry"].clone())
            .map_err(|e| format!("payload.entry: {e}"))?;
        let version = job.payload["version"]
            .as_str()
            .ok_or("payload.version: missing")?
            .to_string();
        let v = match self.store.get_version(&key, &version).await {
            Ok(Some(v)) => v,
            // The entry or version is gone: nothing to validate.
            Ok(None) => return Ok(()),
            Err(e) if e.code == quiver_model::ErrorCode::NotFound => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        if v.validation.as_ref().is_some_and(|r| r.sha256 == v.sha256) {
            return Ok(());
        }
        let errors = match quiver_model::manifest::validate_manifest(key.kind, &v.manifest) {
            Ok(()) => vec![],
            Err(e) => vec![e.message],
        };
        let result = quiver_model::Validation {
            passed: errors.is_empty(),
            errors,
            sha256: v.sha256.clone(),
            checked_at: jiff::Timestamp::now(),
        };
        self.store
            .set_validation(&key, &version, result)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// A name for this node, stable across restarts: the host and the index directory.
fn node_id(config: &EngineConfig) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "local".to_string());
    let dir = std::fs::canonicalize(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    format!("{host}:{}", dir.display())
}

/// The registry service.
pub struct Registry {
    store: Arc<dyn Store>,
    index: Arc<SearchIndex>,
    changed: Notify,
    config: EngineConfig,
    /// The PostgreSQL store, when that is the backend: its NOTIFY wakes the follower when
    /// another node writes.
    pg: Option<PostgresStore>,
    /// The store's durable job queue.
    jobs: Option<Arc<dyn JobQueue>>,
    node: String,
    /// Wakes this process's worker when a job is queued here.
    worker_wake: std::sync::Mutex<Option<Arc<Notify>>>,
}

const MAX_PAGE: usize = 100;

impl Registry {
    /// Open the embedded store and index in `config.data_dir`, and bring the index up to
    /// the store's feed before returning.
    pub async fn open(config: EngineConfig) -> Result<Arc<Registry>> {
        let (store, pg) = open_store(&config).await?;
        let index = Arc::new(SearchIndex::open(&index_path(&config.data_dir))?);
        Self::assemble(store, index, config, pg).await
    }

    /// Assemble a registry from an existing store and index (catching the index up).
    pub async fn with_parts(
        store: Arc<dyn Store>,
        index: Arc<SearchIndex>,
        config: EngineConfig,
    ) -> Result<Arc<Registry>> {
        Self::assemble(store, index, config, None).await
    }

    /// Assemble a registry over a PostgreSQL store, whose notifications wake the follower
    /// when another node writes.
    pub async fn with_postgres(
        pg: PostgresStore,
        index: Arc<SearchIndex>,
        config: EngineConfig,
    ) -> Result<Arc<Registry>> {
        Self::assemble(Arc::new(pg.clone()), index, config, Some(pg)).await
    }

    async fn assemble(
        store: Arc<dyn Store>,
        index: Arc<SearchIndex>,
        config: EngineConfig,
        pg: Option<PostgresStore>,
    ) -> Result<Arc<Registry>> {
        let caught = index.catch_up(&*store).await?;
        tracing::info!(
            applied = caught.applied_events,
            position = caught.position,
            "search index caught up with the change feed"
        );
        Ok(Arc::new(Registry {
            jobs: store.clone().job_queue(),
            node: node_id(&config),
            worker_wake: std::sync::Mutex::new(None),
            store,
            index,
            changed: Notify::new(),
            config,
            pg,
        }))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn index(&self) -> &Arc<SearchIndex> {
        &self.index
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Tail the change feed into the index until the returned handle is aborted. Woken by
    /// writes in this process, by PostgreSQL notifications of other nodes' writes, and
    /// by a poll as the fallback.
    pub fn spawn_follower(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut listener = me.pg.as_ref().map(PostgresStore::listen);
            loop {
                let notified = async {
                    match listener.as_mut() {
                        Some(l) => {
                            l.next().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = me.changed.notified() => {}
                    _ = notified => {}
                    _ = tokio::time::sleep(me.config.poll_interval) => {}
                }
                if let Err(e) = me.index.catch_up(&*me.store).await {
                    tracing::warn!(error = %e, "index follower could not catch up; will retry");
                }
            }
        })
    }

    /// Apply every committed write to the index now (tests and tools use it for
    /// read-your-writes; the follower does the same in the background).
    pub async fn sync_index(&self) -> Result<i64> {
        Ok(self.index.catch_up(&*self.store).await?.position)
    }

    fn wrote(&self) {
        self.changed.notify_one();
    }

    fn wake_worker(&self) {
        if let Some(n) = self
            .worker_wake
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            n.notify_one();
        }
    }

    fn check_write(&self, caller: Caller) -> Result<()> {
        if self.config.open_writes || caller == Caller::Admin {
            Ok(())
        } else {
            Err(Error::forbidden(
                "writes need an admin token (Authorization: Bearer ...)",
            ))
        }
    }

    /// The entry, if the caller may see it; otherwise the same not-found as a missing one.
    async fn visible_entry(&self, caller: Caller, key: &EntryKey) -> Result<Entry> {
        match self.store.get_entry(key).await? {
            Some(e) if e.visibility != Visibility::Private || caller.sees_private() => Ok(e),
            _ => Err(Error::not_found(key)),
        }
    }

    // ---- entries -------------------------------------------------------------------

    pub async fn create_entry(&self, caller: Caller, mut entry: NewEntry) -> Result<Entry> {
        self.check_write(caller)?;
        quiver_model::validate::new_entry(&mut entry)?;
        let e = self.store.create_entry(entry).await?;
        self.wrote();
        Ok(e)
    }

    pub async fn get_entry(&self, caller: Caller, key: &EntryKey) -> Result<Entry> {
        self.visible_entry(caller, key).await
    }

    pub async fn update_entry(
        &self,
        caller: Caller,
        key: &EntryKey,
        mut patch: EntryPatch,
    ) -> Result<Entry> {
        self.check_write(caller)?;
        quiver_model::validate::entry_patch(&mut patch)?;
        if patch.deprecation.is_some() && patch.status.is_none() {
            patch.status = Some(Status::Deprecated);
        }
        if patch.deprecation.is_some() && patch.status != Some(Status::Deprecated) {
            return Err(Error::invalid(
                "deprecation",
                "only a deprecated entry carries a deprecation",
            ));
        }
        self.visible_entry(caller, key).await?;
        let e = self.store.update_entry(key, patch).await?;
        self.wrote();
        Ok(e)
    }

    /// Deprecate an entry with a message and an optional replacement.
    pub async fn deprecate(
        &self,
        caller: Caller,
        key: &EntryKey,
        message: String,
        replacement: Option<String>,
    ) -> Result<Entry> {
        if let Some(r) = &replacement {
            if r.trim().is_empty() || r.len() > 300 {
                return Err(Error::invalid(
                    "replacement",
                    "must be 1 to 300 characters when given",
                ));
            }
        }
        let patch = EntryPatch {
            status: Some(Status::Deprecated),
            deprecation: Some(Deprecation {
                message,
                replacement,
            }),
            ..Default::default()
        };
        self.update_entry(caller, key, patch).await
    }

    pub async fn list_entries(
        &self,
        caller: Caller,
        mut filter: EntryFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Entry>> {
        check_limit(limit)?;
        filter.visibilities = if caller.sees_private() {
            vec![Visibility::Public, Visibility::Private]
        } else {
            vec![Visibility::Public]
        };
        self.store.list_entries(&filter, cursor, limit).await
    }

    // ---- versions ------------------------------------------------------------------

    pub async fn publish_version(
        &self,
        caller: Caller,
        key: &EntryKey,
        version: NewVersion,
    ) -> Result<Version> {
        self.check_write(caller)?;
        let valid = quiver_store::valid_version(key.kind, version)?;
        let entry = self.visible_entry(caller, key).await?;
        if entry.status == Status::Archived {
            return Err(Error::invalid(
                "status",
                "an archived entry takes no new versions",
            ));
        }
        let v = self.store.publish_version(key, valid).await?;
        self.wrote();
        // The schema checks also run as a durable job that records its result on the
        // version (so a kind's schema change can be re-checked the same way).
        if let Some(q) = &self.jobs {
            let job = NewJob::new(
                VALIDATE_VERSION,
                serde_json::json!({"entry": key, "version": v.version}),
            )
            .dedup_key(format!("validate:{key}@{}", v.version))
            .max_attempts(5);
            q.enqueue(job).await?;
            self.wake_worker();
        }
        Ok(v)
    }

    pub async fn list_versions(&self, caller: Caller, key: &EntryKey) -> Result<Vec<Version>> {
        self.visible_entry(caller, key).await?;
        self.store.list_versions(key).await
    }

    pub async fn get_version(
        &self,
        caller: Caller,
        key: &EntryKey,
        version: &str,
    ) -> Result<Version> {
        self.visible_entry(caller, key).await?;
        self.store
            .get_version(key, version)
            .await?
            .ok_or_else(|| Error::not_found(format!("version {version} of {key}")))
    }

    pub async fn yank(
        &self,
        caller: Caller,
        key: &EntryKey,
        version: &str,
        reason: Option<String>,
    ) -> Result<Version> {
        self.check_write(caller)?;
        if let Some(r) = &reason {
            if r.len() > 1000 {
                return Err(Error::invalid("reason", "must be at most 1000 bytes"));
            }
        }
        self.visible_entry(caller, key).await?;
        let v = self.store.set_yanked(key, version, true, reason).await?;
        self.wrote();
        Ok(v)
    }

    pub async fn unyank(&self, caller: Caller, key: &EntryKey, version: &str) -> Result<Version> {
        self.check_write(caller)?;
        self.visible_entry(caller, key).await?;
        let v = self.store.set_yanked(key, version, false, None).await?;
        self.wrote();
        Ok(v)
    }

    // ---- relations -----------------------------------------------------------------

    pub async fn add_relation(&self, caller: Caller, relation: Relation) -> Result<Relation> {
        self.check_write(caller)?;
        quiver_model::validate::relation(&relation)?;
        for (field, key) in [("from", &relation.from), ("to", &relation.to)] {
            self.visible_entry(caller, key)
                .await
                .map_err(|_| Error::invalid(field, format!("{key} does not exist")))?;
        }
        let r = self.store.add_relation(relation).await?;
        self.wrote();
        Ok(r)
    }

    /// Relations of an entry, leaving out those whose other end the caller may not see.
    pub async fn list_relations(
        &self,
        caller: Caller,
        key: &EntryKey,
        direction: Direction,
    ) -> Result<Vec<Relation>> {
        self.visible_entry(caller, key).await?;
        let all = self.store.list_relations(key, direction).await?;
        let mut out = Vec::with_capacity(all.len());
        for r in all {
            let other = if r.from == *key { &r.to } else { &r.from };
            if self.visible_entry(caller, other).await.is_ok() {
                out.push(r);
            }
        }
        Ok(out)
    }

    // ---- search --------------------------------------------------------------------

    /// Search the index. Runs on the calling thread: it is fast and CPU-bound.
    pub fn search(&self, caller: Caller, mut query: SearchQuery) -> Result<SearchResults> {
        check_limit(query.limit)?;
        // Until accounts exist nobody is granted private namespaces in search; admins see
        // private entries by name and in lists.
        let _ = caller;
        query.private_namespaces.clear();
        self.index.search(&query)
    }

    // ---- jobs ---------------------------------------------------------------------

    fn job_queue(&self) -> Result<&Arc<dyn JobQueue>> {
        self.jobs
            .as_ref()
            .ok_or_else(|| Error::internal("jobs", "this store has no job queue"))
    }

    /// Start this process's job worker (one per process; on PostgreSQL, one per node).
    pub fn spawn_worker(self: &Arc<Self>) -> Result<WorkerHandle> {
        let queue = self.job_queue()?.clone();
        let worker_id = format!("{}:{}", self.node, std::process::id());
        let worker = Worker::new(queue, WorkerOptions::new(worker_id))
            .handler(RebuildIndex {
                kind: format!("{REBUILD_INDEX}:{}", self.node),
                store: self.store.clone(),
                index: self.index.clone(),
            })
            .handler(ValidateVersion {
                store: self.store.clone(),
            });
        let handle = worker.spawn();
        *self.worker_wake.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle.notifier());
        Ok(handle)
    }

    /// Queue a rebuild of this node's search index (deduplicated while one is pending).
    pub async fn request_index_rebuild(&self, caller: Caller) -> Result<Job> {
        self.check_write(caller)?;
        let kind = format!("{REBUILD_INDEX}:{}", self.node);
        let q = self.job_queue()?;
        let id = q
            .enqueue(
                NewJob::new(&kind, serde_json::json!({"node": self.node}))
                    .dedup_key(kind.clone())
                    .max_attempts(3),
            )
            .await?;
        self.wake_worker();
        q.get_job(id)
            .await?
            .ok_or_else(|| Error::internal("queueing a rebuild", "job vanished"))
    }

    /// Jobs, newest first. Payloads can name private entries, so this is for writers.
    pub async fn list_jobs(
        &self,
        caller: Caller,
        filter: JobFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Job>> {
        self.check_write(caller)?;
        check_limit(limit)?;
        self.job_queue()?.list_jobs(&filter, cursor, limit).await
    }

    pub async fn get_job(&self, caller: Caller, id: JobId) -> Result<Job> {
        self.check_write(caller)?;
        self.job_queue()?
            .get_job(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("job {id}")))
    }

    /// Put a dead job back in the queue with its attempts reset.
    pub async fn retry_job(&self, caller: Caller, id: JobId) -> Result<Job> {
        self.check_write(caller)?;
        self.job_queue()?.retry(id).await
    }

    // ---- health --------------------------------------------------------------------

    pub async fn status(&self) -> Result<EngineStatus> {
        let store = self.store.stats().await?;
        let index = self.index.stats();
        let jobs = match &self.jobs {
            Some(q) => Some(q.job_counts().await?),
            None => None,
        };
        Ok(EngineStatus {
            jobs,
            backend: self.store.backend(),
            index_lag: (store.feed_head - index.position).max(0),
            store,
            index,
        })
    }

    /// Ready when the store answers.
    pub async fn ready(&self) -> Result<()> {
        self.store.feed_head().await.map(|_| ())
    }

    /// The JSON Schema of a kind's manifest.
    pub fn kind_schema(kind: Kind) -> &'static serde_json::Value {
        quiver_model::manifest::kind_schema(kind)
    }
}

fn check_limit(limit: usize) -> Result<()> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(Error::invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    Ok(())
}
