//! quiver's engine: the registry service that the HTTP API and the CLI call.
//!
//! [`Registry`] owns a [`Database`] (every part present: store, jobs, accounts, audit log,
//! limits, device codes, identities, feed waker) and a [`SearchIndex`], and is the one
//! place where the rules of a write are applied: input validation (names, semver,
//! manifests against the kind's schema) and who may see and change what ([`Caller`]). It
//! knows no backend: the caller opens the database (the binary with `quiver_backends`)
//! and passes it to [`Registry::open`]. The index is never written directly: a follower
//! task tails the change feed (woken by the database's feed waker: this process's writes,
//! and on PostgreSQL every node's; polling for other processes writing an SQLite file,
//! such as `quiver import`), so every committed write reaches search, and a crash between
//! the commit and the index update is repaired by the catch-up at the next start.
//!
//! Access: every method takes the [`Caller`] (a `quiver_auth::Principal`, resolved from a
//! bearer token by [`Registry::resolve_token`]) and asks `quiver_auth::authorize` before it
//! touches the store — reads and writes alike. Public entries are seen by everyone;
//! unlisted entries by exact name only, never in lists or search; private entries only by
//! those with rights in their namespace — to everyone else they answer exactly like
//! entries that do not exist. A server with no admin token and no accounts is "open":
//! anonymous callers may write, as before accounts existed (the laptop demo). Accounts,
//! tokens and memberships are in [`accounts`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quiver_auth::{authorize, Action, Decision, Principal, Target};

use quiver_model::{
    Context, Entry, EntryKey, EntryPatch, Error, Kind, NewEntry, NewVersion, Relation, Result,
    Status, Version, Visibility,
};
use quiver_search::{IndexStats, SearchIndex, SearchQuery, SearchResults};
use quiver_store::worker::{Handler, Worker, WorkerHandle, WorkerOptions};
use quiver_store::{
    AuditDiff, Database, Direction, EntryFilter, Job, JobCounts, JobFilter, JobId, NewJob, Page,
    Store, StoreStats, ValidVersion,
};
use serde::Serialize;
use tokio::sync::Notify;

pub use quiver_auth as auth;
pub use quiver_search as search;
pub use quiver_store as store;

pub mod accounts;
pub mod advisories;
pub mod audit;
pub mod authoring;
pub mod bulk;
pub mod changes;
pub mod content;
pub mod deletion;
pub mod device;
pub mod downloads;
pub mod events;
pub mod experiments;
pub mod gates;
pub mod lifecycle;
pub mod mirror;
pub mod oidc;
pub mod pipeline;
pub mod resolve;
pub mod review;
pub mod select;
pub mod setup;
pub mod suggest;
pub mod telemetry;
pub mod throttle;
pub mod transfer;
pub mod webhooks;

use audit::Event;

/// Who is asking: anonymous, the bootstrap admin (the server's admin token), or a user
/// through one of their API tokens. The engine takes it on every call so that no route
/// can forget to pass it.
pub type Caller = Principal;

/// Settings of the engine. Its `Debug` hides the outside provider's client secret (the
/// database URL is not here: the binary opens the database).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Where this node's search index lives (the database is passed to
    /// [`Registry::open`] apart: the binary opens it with `quiver_backends`).
    pub data_dir: PathBuf,
    /// Whether anonymous callers may write while no account exists (the laptop demo). Off
    /// once an admin token is set; ends by itself when the first user registers.
    pub open_writes: bool,
    /// How long a password login's session token lives.
    pub session_ttl: Duration,
    /// How often the index follower polls the feed for writes made by other processes.
    pub poll_interval: Duration,
    /// Device-code sign-in (`quiver login`): code lifetime, polling interval, page.
    pub device: device::DeviceSettings,
    /// An outside OAuth2/OIDC sign-in provider, when one is configured.
    pub oidc: Option<oidc::OidcConfig>,
    /// Review and publisher trust (`review.rs`); off unless enabled.
    pub review: review::ReviewSettings,
    /// The most manifest bytes one entry may hold, all its versions together: a publish
    /// past it is refused (422 on `manifest`), so no entry's version list grows without
    /// bound.
    pub max_entry_manifest_bytes: u64,
    /// The credential throttle's limits (`throttle.rs`).
    pub credentials: throttle::CredentialLimits,
    /// Namespaces holding an outside ecosystem's packages: only admins and imports write
    /// to them, and nobody may register their names (`setup.rs`).
    pub ecosystem_namespaces: Vec<String>,
    /// How long raw telemetry events are kept (the hourly roll-ups stay): older ones are
    /// deleted, in the background, at most every few minutes after an ingest.
    pub telemetry_retention: Duration,
    /// The recipe pipeline's environments, lease, retries and circuit breaker.
    pub pipeline: pipeline::PipelineSettings,
    /// How downloads are counted and popularity refreshed from them (`downloads.rs`).
    pub downloads: downloads::DownloadSettings,
    /// Where published content is kept, addressed by its hash (default: `content` in
    /// the data directory).
    pub content_dir: Option<PathBuf>,
    /// The deletion policy's grace period and download threshold (`deletion.rs`).
    pub deletion: deletion::DeletionSettings,
    /// How webhooks are delivered: private targets, backoff, attempts, disabling.
    pub webhooks: webhooks::WebhookSettings,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            open_writes: true,
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            poll_interval: Duration::from_millis(500),
            device: device::DeviceSettings::default(),
            oidc: None,
            review: review::ReviewSettings::default(),
            max_entry_manifest_bytes: DEFAULT_MAX_ENTRY_MANIFEST_BYTES,
            credentials: throttle::CredentialLimits::default(),
            telemetry_retention: telemetry::DEFAULT_RETENTION,
            pipeline: pipeline::PipelineSettings::default(),
            downloads: downloads::DownloadSettings::default(),
            content_dir: None,
            deletion: deletion::DeletionSettings::default(),
            webhooks: webhooks::WebhookSettings::default(),
            ecosystem_namespaces: setup::DEFAULT_ECOSYSTEMS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// The default of [`EngineConfig::max_entry_manifest_bytes`]: 16 MiB.
pub const DEFAULT_MAX_ENTRY_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// Where a data directory keeps this node's search index.
pub fn index_path(data_dir: &Path) -> PathBuf {
    data_dir.join("index")
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
    pub jobs: JobCounts,
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

/// A name for this node, stable across restarts: the host and a digest of its data
/// directory.
fn node_id(config: &EngineConfig) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "local".to_string());
    let dir = std::fs::canonicalize(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    // The directory is hashed: node names show in job records, which must not reveal
    // the server's file system.
    let digest = quiver_model::manifest::sha256_hex(&dir.to_string_lossy());
    format!("{host}:{}", &digest[..12])
}

/// The registry service.
pub struct Registry {
    /// Every part of the database: store, jobs, accounts, audit log, limits, device
    /// codes, identities, and the feed waker that drives the index follower.
    db: Database,
    index: Arc<SearchIndex>,
    config: EngineConfig,
    node: String,
    /// Wakes this process's worker when a job is queued here.
    worker_wake: std::sync::Mutex<Option<Arc<Notify>>>,
    /// Wakes this process's webhook delivery workers (`webhooks.rs`).
    webhook_wake: std::sync::Mutex<Vec<Arc<Notify>>>,
    /// The salt of the audit log's client-address hashes, read from the store once.
    audit_salt: tokio::sync::OnceCell<String>,
    /// When raw telemetry was last pruned (ms since the epoch).
    telemetry_pruned: std::sync::atomic::AtomicI64,
    /// Set once a user account has been seen: the open mode has ended for good.
    accounts_exist: AtomicBool,
    /// The one-time code that registers the first admin, while unused (`setup.rs`).
    setup: std::sync::Mutex<Option<String>>,
    /// The tools' capabilities for selection, brought up to the feed before each use (`select.rs`).
    catalog: select::SharedCatalog,
    /// The feed's newest head as this node hears of it, for the public feed's long polls
    /// and streams (`changes.rs`); the follower moves it.
    heads: tokio::sync::watch::Sender<i64>,
    /// Download hits waiting for the next flush (`downloads.rs`).
    downloads: downloads::Buffer,
    /// Published content, addressed by its hash (`content.rs`).
    content: Arc<dyn content::ContentStore>,
}

/// The largest page any list answers.
pub const MAX_PAGE: usize = 100;

impl Registry {
    /// The registry over `db`, with this node's search index in `config.data_dir`
    /// (created if missing), brought up to the database's feed before returning.
    pub async fn open(db: Database, config: EngineConfig) -> Result<Arc<Registry>> {
        std::fs::create_dir_all(&config.data_dir).context(format!(
            "creating data directory {}",
            config.data_dir.display()
        ))?;
        let index = Arc::new(SearchIndex::open(&index_path(&config.data_dir))?);
        let caught = index.catch_up(&*db.store).await?;
        tracing::info!(
            applied = caught.applied_events,
            position = caught.position,
            "search index caught up with the change feed"
        );
        let setup = setup::draw_setup_code(&db, &config).await?;
        let content: Arc<dyn content::ContentStore> = Arc::new(content::FileContentStore::new(
            config
                .content_dir
                .clone()
                .unwrap_or_else(|| config.data_dir.join("content")),
        ));
        Ok(Arc::new(Registry {
            setup: std::sync::Mutex::new(setup),
            audit_salt: tokio::sync::OnceCell::new(),
            telemetry_pruned: std::sync::atomic::AtomicI64::new(0),
            catalog: Default::default(),
            downloads: Default::default(),
            heads: tokio::sync::watch::Sender::new(caught.position),
            content,
            accounts_exist: AtomicBool::new(false),
            node: node_id(&config),
            worker_wake: std::sync::Mutex::new(None),
            webhook_wake: std::sync::Mutex::new(Vec::new()),
            db,
            index,
            config,
        }))
    }

    /// The database, every part of it.
    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.db.store
    }

    pub fn index(&self) -> &Arc<SearchIndex> {
        &self.index
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Tail the change feed into the index, and queue the quality gates of new versions
    /// from it, until the returned handle is aborted. Woken by
    /// the database's feed waker (this process's writes; on PostgreSQL every node's), and
    /// by a poll as the fallback (another process writing an SQLite file).
    pub fn spawn_follower(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut feed = me.db.feed.subscribe();
            loop {
                tokio::select! {
                    head = feed.changed() => me.advance_head(head),
                    _ = tokio::time::sleep(me.config.poll_interval) => {}
                }
                match me.index.catch_up(&*me.db.store).await {
                    // Writes found by the poll (another process) wake the feed's readers too.
                    Ok(c) => me.advance_head(c.position),
                    Err(e) => {
                        tracing::warn!(error = %e, "index follower could not catch up; will retry")
                    }
                }
                if let Err(e) = me.queue_gates().await {
                    tracing::warn!(error = %e, "could not queue the quality gates; will retry");
                }
                if let Err(e) = me.pipeline_follow().await {
                    tracing::warn!(error = %e, "could not re-queue unblocked pipeline items; will retry");
                }
                if let Err(e) = me.fan_out_webhooks().await {
                    tracing::warn!(error = %e, "could not add webhook deliveries; will retry");
                }
            }
        })
    }

    /// Queue the quality gates of every version written since the last time, whoever
    /// wrote it (`gates::queue_gates`), and wake this node's worker if any were queued.
    pub async fn queue_gates(&self) -> Result<u64> {
        let n = gates::queue_gates(&self.db, &self.config.ecosystem_namespaces).await?;
        if n > 0 {
            self.wake_worker();
        }
        Ok(n)
    }

    /// Apply every committed write to the index now (tests and tools use it for
    /// read-your-writes; the follower does the same in the background).
    pub async fn sync_index(&self) -> Result<i64> {
        Ok(self.index.catch_up(&*self.db.store).await?.position)
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

    /// Whether anonymous callers may write: no admin token configured and no account yet.
    pub async fn is_open(&self) -> Result<bool> {
        if !self.config.open_writes || self.accounts_exist.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let users = self.db.accounts.count_users().await?;
        if users > 0 {
            self.accounts_exist.store(true, Ordering::Relaxed);
        }
        Ok(users == 0)
    }

    /// The policy's decision for this caller (anonymous callers of an open server write).
    async fn decide(&self, caller: &Caller, action: Action, target: &Target) -> Result<Decision> {
        let open = Principal::Open;
        let p = if *caller == Principal::Anonymous
            && !matches!(action, Action::Read | Action::List)
            && self.is_open().await?
        {
            &open
        } else {
            caller
        };
        let decision = authorize(p, action, target);
        Ok(setup::ecosystem_rule(
            &self.config,
            p,
            action.is_write(),
            &target.namespace,
            decision,
        ))
    }

    /// Allow `action` on `target`, or the policy's error (`what` names a hidden target).
    async fn require(
        &self,
        caller: &Caller,
        action: Action,
        target: &Target,
        what: &(dyn std::fmt::Display + Sync),
    ) -> Result<()> {
        let decision = self.decide(caller, action, target).await?;
        if !decision.is_allowed() && !matches!(action, Action::Read | Action::List) {
            let reason = match &decision {
                quiver_auth::Decision::Unauthenticated(m) | quiver_auth::Decision::Forbidden(m) => {
                    m.clone()
                }
                _ => "the target is hidden from the caller".to_string(),
            };
            let target_name = match &target.name {
                Some(n) => format!("{}/{n}", target.namespace),
                None if target.namespace.is_empty() => "site".to_string(),
                None => format!("namespace {}", target.namespace),
            };
            self.record(
                caller,
                Event {
                    action: audit::action_name(action),
                    namespace: Some(&target.namespace),
                    target: target_name,
                    denied: Some(reason),
                    reason: None,
                    diff: None,
                },
            )
            .await;
        }
        decision.check(what)
    }

    /// Allow only the site's admins (or anyone on an open server): for surfaces outside
    /// the engine that show the whole registry, such as metrics.
    pub async fn require_site_admin(&self, caller: &Caller) -> Result<()> {
        self.require_admin(caller).await
    }

    /// Site operations: the admin (or anyone on an open server).
    async fn require_admin(&self, caller: &Caller) -> Result<()> {
        self.require(caller, Action::Administer, &Target::site(), &"this")
            .await
    }

    /// The entry, if the caller may see it; otherwise the same not-found as a missing one.
    async fn visible_entry(&self, caller: &Caller, key: &EntryKey) -> Result<Entry> {
        let Some(e) = self.db.store.get_entry(key).await? else {
            return Err(self.missing_entry(caller, key).await);
        };
        self.require(caller, Action::Read, &entry_target(&e), key)
            .await?;
        Ok(e)
    }

    /// The entry, if the caller may see it and do `action` to it.
    async fn writable_entry(
        &self,
        caller: &Caller,
        key: &EntryKey,
        action: Action,
    ) -> Result<Entry> {
        let e = self.visible_entry(caller, key).await?;
        self.require(caller, action, &entry_target(&e), key).await?;
        Ok(e)
    }

    // ---- entries -------------------------------------------------------------------

    pub async fn create_entry(&self, caller: &Caller, mut entry: NewEntry) -> Result<Entry> {
        quiver_model::validate::new_entry(&mut entry)?;
        self.check_initial_status(caller, entry.status)?;
        let target = Target::entry(
            &entry.namespace,
            &entry.name,
            entry.visibility.unwrap_or(Visibility::Public),
        );
        self.require(caller, Action::CreateEntry, &target, &"this")
            .await?;
        self.check_reserved(
            caller,
            &EntryKey::new(entry.kind, &entry.namespace, &entry.name),
        )
        .await?;
        let audit = self
            .draft(
                caller,
                Event {
                    action: "entry.create",
                    namespace: Some(&entry.namespace),
                    target: EntryKey::new(entry.kind, &entry.namespace, &entry.name).to_string(),
                    denied: None,
                    reason: None,
                    diff: None,
                },
                AuditDiff::Created,
            )
            .await;
        self.db.store.create_entry_audited(entry, audit).await
    }

    pub async fn get_entry(&self, caller: &Caller, key: &EntryKey) -> Result<Entry> {
        self.visible_entry(caller, key).await
    }

    pub async fn update_entry(
        &self,
        caller: &Caller,
        key: &EntryKey,
        mut patch: EntryPatch,
    ) -> Result<Entry> {
        let before = self.writable_entry(caller, key, Action::Publish).await?;
        quiver_model::validate::entry_patch(&mut patch)?;
        // Status changes follow the lifecycle and carry a reason (`lifecycle.rs`).
        if patch.deprecation.is_some() || patch.status.is_some_and(|s| s != before.status) {
            return Err(Error::invalid(
                "status",
                "a status change (and a deprecation) needs a reason: POST .../status with {\"status\", \"reason\"}, or POST .../deprecate",
            ));
        }
        // Gate results are keyed by the manifest, so an edit does not re-run them; the one
        // gate that reads the entry is applied to the edit instead, once a version is out.
        if let (Some(d), Some(_)) = (&patch.description, &before.latest_version) {
            if let Some(why) = quiver_model::gates::description_problem(d) {
                return Err(Error::invalid(
                    "description",
                    format!("{why}: the entry has published versions, which must keep passing the `description` quality gate"),
                ));
            }
        }
        let audit = self
            .draft(
                caller,
                Event {
                    action: "entry.update",
                    namespace: Some(&before.namespace),
                    target: key.to_string(),
                    denied: None,
                    reason: None,
                    diff: None,
                },
                AuditDiff::Changed(serde_json::to_value(&before).unwrap_or_default()),
            )
            .await;
        self.db.store.update_entry_audited(key, patch, audit).await
    }

    /// Deprecate an entry with a message and an optional replacement.
    pub async fn deprecate(
        &self,
        caller: &Caller,
        key: &EntryKey,
        message: String,
        replacement: Option<String>,
    ) -> Result<Entry> {
        // The message is the reason of the change.
        let change = lifecycle::StatusChange {
            status: Status::Deprecated,
            reason: message.clone(),
            message: Some(message),
            replacement,
        };
        self.change_status(caller, key, change).await
    }

    /// Entries matching the filter. Private ones are listed to admins and moderators in
    /// every namespace, and to members in the namespaces where they may read every private
    /// entry (with or without a namespace filter); every item then passes the policy once
    /// more (so nothing is listed that a read by name would hide).
    pub async fn list_entries(
        &self,
        caller: &Caller,
        mut filter: EntryFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Entry>> {
        check_limit(limit)?;
        // Never unlisted; private ones everywhere or only in the caller's namespaces (for
        // anonymous callers and outsiders, none).
        filter.visibilities = vec![Visibility::Public, Visibility::Private];
        filter.private_namespaces =
            (!caller.reads_all_private()).then(|| caller.private_namespaces());
        let mut page = self.db.store.list_entries(&filter, cursor, limit).await?;
        page.items
            .retain(|e| authorize(caller, Action::List, &entry_target(e)).is_allowed());
        Ok(page)
    }

    // ---- versions ------------------------------------------------------------------

    pub async fn publish_version(
        &self,
        caller: &Caller,
        key: &EntryKey,
        version: NewVersion,
    ) -> Result<Version> {
        let (entry, action) = self.publishable_entry(caller, key).await?;
        if key.kind == Kind::Tool {
            // Every estimate expression parses, calls known functions and uses declared
            // variables (an import takes undeclared ones with a warning; a publish not).
            quiver_model::expr::check_tool_manifest(&version.manifest)?;
        }
        let valid = quiver_store::valid_version(key.kind, version)?;
        self.check_manifest_budget(key, &valid).await?;
        self.check_version_number(key, &valid.version.version)
            .await?;
        if entry.status == Status::Archived {
            return Err(Error::invalid(
                "status",
                "an archived entry takes no new versions",
            ));
        }
        // The first version of a draft: published, or sent to review (`review.rs`).
        if action == Action::CreateEntry && entry.status == Status::Draft {
            if let Some(why) = self
                .publish_decision(caller, key.kind, &valid.version.manifest)
                .await?
            {
                self.submit_for_review(caller, key, why).await?;
            }
        }
        let audit = self
            .draft(
                caller,
                Event {
                    action: "version.publish",
                    namespace: Some(&key.namespace),
                    target: format!("{key}@{}", valid.version.version),
                    denied: None,
                    reason: None,
                    diff: Some(serde_json::json!({
                        "version": {"before": null, "after": valid.version.version},
                        "sha256": {"before": null, "after": valid.sha256},
                    })),
                },
                AuditDiff::Given,
            )
            .await;
        let v = self
            .db
            .store
            .publish_version_audited(key, valid, audit)
            .await?;
        // The quality gates run as a durable job that records its result on the version,
        // queued from the change feed (`gates::queue_gates`, run by the follower), so
        // every new version gets them whoever wrote it and a crash cannot lose one.
        Ok(v)
    }

    /// The entry, if the caller may publish a version of it, and which action that is:
    /// the first version of a name is part of publishing it new (`publish-new`), later
    /// ones are updates (`publish-update`).
    async fn publishable_entry(&self, caller: &Caller, key: &EntryKey) -> Result<(Entry, Action)> {
        let entry = self.visible_entry(caller, key).await?;
        let action = if entry.latest_version.is_none()
            && self
                .db
                .store
                .list_versions_page(key, None, 1, false)
                .await?
                .items
                .is_empty()
        {
            Action::CreateEntry
        } else {
            Action::Publish
        };
        self.require(caller, action, &entry_target(&entry), key)
            .await?;
        Ok((entry, action))
    }

    /// Refuse a version that would take the entry past
    /// [`EngineConfig::max_entry_manifest_bytes`]. (Two publishes racing may both pass by
    /// one version's worth; the bound still holds within one manifest.)
    async fn check_manifest_budget(&self, key: &EntryKey, valid: &ValidVersion) -> Result<()> {
        let cap = self.config.max_entry_manifest_bytes;
        let stored = self.db.store.manifest_bytes(key).await?;
        let total = stored.saturating_add(valid.canonical.len() as u64);
        if total > cap {
            return Err(Error::invalid(
                "manifest",
                format!(
                    "this version's manifest ({} bytes) would bring the entry's manifests to \
                     {total} bytes; an entry may hold at most {cap}",
                    valid.canonical.len()
                ),
            ));
        }
        Ok(())
    }

    /// Versions newest first, a page at a time; manifests only when asked for.
    pub async fn list_versions(
        &self,
        caller: &Caller,
        key: &EntryKey,
        cursor: Option<&str>,
        limit: usize,
        manifests: bool,
    ) -> Result<Page<Version>> {
        self.visible_entry(caller, key).await?;
        check_limit(limit)?;
        self.db
            .store
            .list_versions_page(key, cursor, limit, manifests)
            .await
    }

    pub async fn get_version(
        &self,
        caller: &Caller,
        key: &EntryKey,
        version: &str,
    ) -> Result<Version> {
        self.visible_entry(caller, key).await?;
        match self.db.store.get_version(key, version).await? {
            Some(v) => Ok(v),
            None => Err(self.missing_version(caller, key, version).await),
        }
    }

    pub async fn yank(
        &self,
        caller: &Caller,
        key: &EntryKey,
        version: &str,
        reason: Option<String>,
    ) -> Result<Version> {
        self.writable_entry(caller, key, Action::Yank).await?;
        if let Some(r) = &reason {
            if r.len() > 1000 {
                return Err(Error::invalid("reason", "must be at most 1000 bytes"));
            }
        }
        let audit = self
            .yank_draft(caller, key, version, true, reason.clone())
            .await;
        self.db
            .store
            .set_yanked_audited(key, version, true, reason, audit)
            .await
    }

    pub async fn unyank(&self, caller: &Caller, key: &EntryKey, version: &str) -> Result<Version> {
        self.writable_entry(caller, key, Action::Yank).await?;
        let audit = self.yank_draft(caller, key, version, false, None).await;
        self.db
            .store
            .set_yanked_audited(key, version, false, None, audit)
            .await
    }

    async fn yank_draft(
        &self,
        caller: &Caller,
        key: &EntryKey,
        version: &str,
        yanked: bool,
        reason: Option<String>,
    ) -> quiver_store::Audit {
        self.draft(
            caller,
            Event {
                action: if yanked {
                    "version.yank"
                } else {
                    "version.unyank"
                },
                namespace: Some(&key.namespace),
                target: format!("{key}@{version}"),
                denied: None,
                reason,
                diff: Some(serde_json::json!({"yanked": {"before": !yanked, "after": yanked}})),
            },
            AuditDiff::Given,
        )
        .await
    }

    // ---- relations -----------------------------------------------------------------

    pub async fn add_relation(&self, caller: &Caller, relation: Relation) -> Result<Relation> {
        quiver_model::validate::relation(&relation)?;
        // An edge is a change to the entry it starts from; its other end need only be
        // visible.
        self.writable_entry(caller, &relation.from, Action::Publish)
            .await?;
        for (field, key) in [("from", &relation.from), ("to", &relation.to)] {
            self.visible_entry(caller, key)
                .await
                .map_err(|_| Error::invalid(field, format!("{key} does not exist")))?;
        }
        let audit = self
            .draft(
                caller,
                Event {
                    action: "relation.add",
                    namespace: Some(&relation.from.namespace),
                    target: format!("{} {} {}", relation.from, relation.kind, relation.to),
                    denied: None,
                    reason: None,
                    diff: None,
                },
                AuditDiff::Created,
            )
            .await;
        self.db.store.add_relation_audited(relation, audit).await
    }

    /// Relations of an entry, leaving out those whose other end the caller may not see.
    pub async fn list_relations(
        &self,
        caller: &Caller,
        key: &EntryKey,
        direction: Direction,
    ) -> Result<Vec<Relation>> {
        self.visible_entry(caller, key).await?;
        let all = self.db.store.list_relations(key, direction).await?;
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
    /// Private entries are found by admins and moderators in every namespace, and by
    /// members in the namespaces where they may read every private entry (their
    /// memberships; a token needs `read-private` and no name pattern). Both grants are set
    /// here from the caller, whatever the query said; the index applies them in its one
    /// collector, so hits, totals, facets and suggestions agree.
    pub fn search(&self, caller: &Caller, mut query: SearchQuery) -> Result<SearchResults> {
        check_limit(query.limit)?;
        query.all_private = caller.reads_all_private();
        query.private_namespaces = caller.private_namespaces();
        self.index.search(&query)
    }

    // ---- jobs ---------------------------------------------------------------------

    /// Start this process's job worker (one per process; on PostgreSQL, one per node).
    pub fn spawn_worker(self: &Arc<Self>) -> WorkerHandle {
        let queue = self.db.jobs.clone();
        let worker_id = format!("{}:{}", self.node, std::process::id());
        let mut options = WorkerOptions::new(worker_id);
        options.reclaim_prefix = Some(format!("{}:", self.node));
        let worker = Worker::new(queue, options)
            .handler(RebuildIndex {
                kind: format!("{REBUILD_INDEX}:{}", self.node),
                store: self.db.store.clone(),
                index: self.index.clone(),
            })
            .handler(downloads::RefreshPopularity {
                store: self.db.store.clone(),
                downloads: self.db.downloads.clone(),
            })
            .handler(gates::ValidateVersion {
                store: self.db.store.clone(),
                index: self.index.clone(),
                audit: self.db.audit.clone(),
            })
            .handler(transfer::ImportUploads {
                db: self.db.clone(),
                content: self.content.clone(),
                config: self.config.clone(),
            });
        let handle = worker.spawn();
        self.spawn_webhook_workers();
        *self.worker_wake.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle.notifier());
        handle
    }

    /// Queue a rebuild of this node's search index (deduplicated while one is pending).
    pub async fn request_index_rebuild(&self, caller: &Caller) -> Result<Job> {
        self.require_admin(caller).await?;
        let kind = format!("{REBUILD_INDEX}:{}", self.node);
        let q = &self.db.jobs;
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
        caller: &Caller,
        filter: JobFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Job>> {
        self.require_admin(caller).await?;
        check_limit(limit)?;
        self.db.jobs.list_jobs(&filter, cursor, limit).await
    }

    /// One job: for admins, or for the caller who submitted it (a queued import).
    pub async fn get_job(&self, caller: &Caller, id: JobId) -> Result<Job> {
        let job = self.db.jobs.get_job(id).await?;
        if let Some(j) = job.as_ref().filter(|j| transfer::submitted_by(j, caller)) {
            return Ok(j.clone());
        }
        self.require_admin(caller).await?;
        job.ok_or_else(|| Error::not_found(format!("job {id}")))
    }

    /// Put a dead job back in the queue with its attempts reset.
    pub async fn retry_job(&self, caller: &Caller, id: JobId) -> Result<Job> {
        self.require_admin(caller).await?;
        self.db.jobs.retry(id).await
    }

    // ---- health --------------------------------------------------------------------

    pub async fn status(&self) -> Result<EngineStatus> {
        let store = self.db.store.stats().await?;
        let index = self.index.stats();
        let jobs = self.db.jobs.job_counts().await?;
        Ok(EngineStatus {
            jobs,
            backend: self.db.store.backend(),
            index_lag: (store.feed_head - index.position).max(0),
            store,
            index,
        })
    }

    /// Ready when the store answers.
    pub async fn ready(&self) -> Result<()> {
        self.db.store.feed_head().await.map(|_| ())
    }

    /// The JSON Schema of a kind's manifest.
    pub fn kind_schema(kind: Kind) -> &'static serde_json::Value {
        quiver_model::manifest::kind_schema(kind)
    }
}

/// What the policy needs to know about an entry.
pub(crate) fn entry_target(e: &Entry) -> Target {
    Target::entry(&e.namespace, &e.name, e.visibility)
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

/// Compile-time check: the engine's futures are `Send` (axum handlers need it).
#[allow(dead_code)]
fn _send_check(r: &Registry, c: &Caller, e: NewEntry, k: &EntryKey) {
    fn is_send<T: Send>(_: T) {}
    is_send(r.create_entry(c, e));
    is_send(r.get_entry(c, k));
    is_send(r.resolve_token("x"));
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    /// No secret reaches `Debug` output (logs, panics, `{:?}` in errors): the outside provider's client secret, passwords, tokens and device
    /// codes.
    #[test]
    fn debug_output_holds_no_secret() {
        const SECRET: &str = "hunter2-Very-Secret";
        let mut config = EngineConfig::new("/data");
        config.oidc = Some(oidc::OidcConfig {
            provider: "sso".into(),
            authorize_url: "https://sso.example/authorize".into(),
            token_url: "https://sso.example/token".into(),
            userinfo_url: "https://sso.example/userinfo".into(),
            client_id: "quiver-client".into(),
            client_secret: SECRET.into(),
            scopes: "openid".into(),
            redirect_uri: None,
        });
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains(SECRET), "{shown}");
        // The rest is still there to debug with.
        assert!(
            shown.contains("quiver-client") && shown.contains("<redacted>"),
            "{shown}"
        );

        let now = jiff::Timestamp::now();
        let shown = [
            format!(
                "{:?}",
                accounts::Registration {
                    name: "ann".into(),
                    email: None,
                    password: SECRET.into(),
                    setup_code: Some(SECRET.into()),
                }
            ),
            format!(
                "{:?}",
                accounts::Login {
                    name: "ann".into(),
                    password: SECRET.into(),
                }
            ),
            format!(
                "{:?}",
                accounts::NewTokenSecret {
                    token: SECRET.into(),
                    info: store::ApiToken {
                        id: 1,
                        user_id: 1,
                        name: "ci".into(),
                        scopes: vec![],
                        pattern: None,
                        expires_at: None,
                        revoked_at: None,
                        last_used_at: None,
                        created_at: now,
                    },
                }
            ),
            format!(
                "{:?}",
                device::DeviceAuthorization {
                    device_code: SECRET.into(),
                    user_code: "BCDF-GHJK".into(),
                    verification_uri: "http://q/device".into(),
                    verification_uri_complete: "http://q/device?user_code=BCDF-GHJK".into(),
                    expires_in: 600,
                    interval: 5,
                }
            ),
            format!(
                "{:?}",
                device::DeviceTokenRequest {
                    device_code: SECRET.into(),
                    grant_type: None,
                }
            ),
            format!(
                "{:?}",
                store::NewUser {
                    name: "ann".into(),
                    email: None,
                    password_hash: SECRET.into(),
                    site_role: None,
                }
            ),
        ];
        for s in shown {
            assert!(!s.contains(SECRET), "{s}");
            assert!(s.contains("<redacted>"), "{s}");
        }
    }
}
