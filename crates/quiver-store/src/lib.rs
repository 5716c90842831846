//! quiver's storage: the [`Store`] trait and its companions (jobs, accounts, audit log,
//! device codes, rate limits), with the types they share. Backend-neutral: the backends
//! are the crates `quiver-sqlite` (embedded, the default) and `quiver-postgres`, and both
//! pass the suites of `quiver-conformance`.
//!
//! Design decisions:
//! - **One write path with a change feed.** Every write commits, in the same transaction, a
//!   row to the feed (monotonic sequence, entity, id, operation). Derived views (the search
//!   index, caches, other nodes) follow the feed from their last position, so they can be
//!   rebuilt at any time and never miss a committed write.
//! - **No SQL dialect in the trait.** Methods speak the model's types; filters are plain
//!   structs. Both backends implement the same traits and pass the same conformance
//!   suites (the crate `quiver-conformance`, used only by the backends' tests).
//! - **One handle, no optional parts.** A backend hands out a [`Database`]: the store, the
//!   job queue, accounts, audit log, rate limits, durable counters, device codes, outside
//!   identities and a [`FeedWaker`], all always present.
//! - **Durable jobs in the same database.** [`JobQueue`] (see [`jobs`]) keeps background
//!   work (validation of published versions, index rebuilds) in a `jobs` table with
//!   leases, backoff and dead letters; [`worker`] runs handlers for it. Job writes are not
//!   in the change feed.
//! - **Validation is the engine's, integrity is the store's.** Callers pass inputs already
//!   validated by `quiver_model::validate`; the store enforces uniqueness, existence of
//!   referenced rows and immutability of versions, and reports each as an engine error.

use async_trait::async_trait;
use quiver_model::validate::SemverVersion;
use quiver_model::{
    Deprecation, Document, Entry, EntryKey, EntryPatch, FeedEvent, Kind, Namespace, NewDocument,
    NewEntry, NewVersion, OwnerKind, Relation, Result, Status, Tombstone, Version, Visibility,
};
use serde::{Deserialize, Serialize};

pub mod accounts;
pub mod advisories;
pub mod audit;
pub mod cursors;
pub mod database;
pub mod device;
pub mod downloads;
pub mod import;
pub mod jobs;
pub mod limits;
pub mod pipeline;
pub mod telemetry;
pub mod throttle;
pub mod webhooks;
pub mod worker;

pub use accounts::{AccountStore, ApiToken, Membership, NewToken, NewUser, User, UserRecord};
pub use audit::{AuditDiff, AuditDraft, AuditFilter, AuditLog, AuditRecord, NewAuditRecord};
pub use cursors::FeedCursors;
pub use database::{Database, FeedSubscription, FeedWaker, LocalFeed};
pub use device::{
    DeviceCode, DeviceCodeStore, DeviceStatus, DeviceToken, ExternalIdentityStore, NewDeviceCode,
};
pub use jobs::{Job, JobCounts, JobFilter, JobId, JobQueue, JobState, NewJob};
pub use limits::{MemoryLimiter, RateLimiter, Verdict};
pub use pipeline::PipelineStore;
pub use telemetry::{
    ArmStats, Execution, Experiment, ExperimentChange, ExperimentFilter, ExperimentStatus,
    ExperimentSubject, FitRow, FitSums, IngestOutcome, Rollup, RollupFilter, Sketch,
    TelemetryStore,
};
pub use throttle::{Charge, Throttle};

/// Which entries a listing returns. Empty vectors mean "any".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntryFilter {
    pub kinds: Vec<Kind>,
    pub namespaces: Vec<String>,
    pub categories: Vec<String>,
    pub tags: Vec<String>,
    pub statuses: Vec<Status>,
    /// Visibilities the caller may list. The engine always sets this; an empty list here
    /// means "any" and is only for trusted callers (export, index rebuild).
    pub visibilities: Vec<Visibility>,
    /// When set, private entries pass only in these namespaces (a member's grants); other
    /// visibilities are unaffected. `None` leaves private entries to `visibilities` alone.
    pub private_namespaces: Option<Vec<String>>,
}

/// A name an entry's maintainers point at one of its versions (`stable`, `beta`, or
/// `latest` to override the highest release).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DistTag {
    pub tag: String,
    pub version: String,
    pub updated_at: jiff::Timestamp,
}

/// An install or use a client reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UsageEvent {
    /// The client's id for the event: a second report of it is a duplicate.
    pub id: String,
    /// `install` or `use`.
    pub kind: String,
    pub entry: EntryKey,
    pub version: Option<String>,
    /// The project it happened in, as an opaque id.
    pub project: Option<String>,
    pub at: jiff::Timestamp,
}

/// What a batch of events did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EventsOutcome {
    pub accepted: usize,
    /// Already reported (same id).
    pub duplicates: usize,
    /// For entries the registry does not hold, by index in the batch.
    pub unknown: Vec<usize>,
}

/// An entry installed in the same projects as another, with how many.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CoInstall {
    pub entry: EntryKey,
    /// Projects that installed both.
    pub projects: u64,
}

/// What a user asked of one skill's suggestion for one package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PreferenceAction {
    /// Always suggest it first for the package.
    Pin,
    /// Never suggest it for the package.
    Hide,
}

impl PreferenceAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PreferenceAction::Pin => "pin",
            PreferenceAction::Hide => "hide",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pin" => Some(PreferenceAction::Pin),
            "hide" => Some(PreferenceAction::Hide),
            _ => None,
        }
    }
}

/// A user's pin or hide of a skill for a package (`*`: every package).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SkillPreference {
    pub ecosystem: String,
    /// The package's name as its ecosystem compares names, or `*`.
    pub package: String,
    pub skill: EntryKey,
    pub action: PreferenceAction,
    pub updated_at: jiff::Timestamp,
}

/// An entry and the relations of one kind that point at it, each with the entry it
/// starts from.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub entry: Entry,
    pub relations: Vec<(Relation, Entry)>,
}

/// What resolving an entry to a version needs: the entry, every version (manifests
/// `null`, newest first) and its dist-tags.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolutionSet {
    pub entry: Entry,
    pub versions: Vec<Version>,
    pub tags: Vec<DistTag>,
}

/// A page of results and the cursor that continues after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Opaque; pass back to get the next page. `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A version ready to store: validated, with its manifest hash computed.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidVersion {
    pub version: NewVersion,
    pub semver: SemverVersion,
    pub sha256: String,
    /// The canonical JSON of the manifest (what is stored, and what `sha256` hashes).
    pub canonical: String,
}

/// Which relations of an entry to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Outgoing,
    Incoming,
    Both,
}

/// One record of a bulk import: an entry with its versions.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRecord {
    pub entry: NewEntry,
    pub deprecation: Option<Deprecation>,
    pub versions: Vec<ImportVersion>,
}

/// A version in an import record, with its yank state.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportVersion {
    pub version: ValidVersion,
    pub yanked: bool,
    pub yank_reason: Option<String>,
}

impl From<ValidVersion> for ImportVersion {
    fn from(version: ValidVersion) -> Self {
        ImportVersion {
            version,
            yanked: false,
            yank_reason: None,
        }
    }
}

/// What an import did with one record.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportOutcome {
    Created,
    Updated,
    Unchanged,
    /// The record conflicts with the store (for example a published version whose
    /// manifest differs: versions are immutable). Nothing of the record was written.
    Rejected(quiver_model::Error),
}

/// Counts of import outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportCounts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
}

impl ImportCounts {
    pub fn add(&mut self, o: &ImportOutcome) {
        match o {
            ImportOutcome::Created => self.created += 1,
            ImportOutcome::Updated => self.updated += 1,
            ImportOutcome::Unchanged => self.unchanged += 1,
            ImportOutcome::Rejected(_) => self.rejected += 1,
        }
    }
}

impl std::ops::AddAssign for ImportCounts {
    fn add_assign(&mut self, o: Self) {
        self.created += o.created;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.rejected += o.rejected;
    }
}

/// The fields an import sets, as stored, to tell "updated" from "unchanged".
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedFields {
    pub display_name: Option<String>,
    pub description: String,
    pub category: Option<String>,
    pub tags: String,
    pub keywords: String,
    pub status: String,
    pub visibility: String,
    pub deprecation: Option<String>,
    pub popularity: f64,
    pub monthly_downloads: Option<i64>,
    pub download_rank: Option<i64>,
}

impl ImportedFields {
    /// The fields of a record, as the store keeps them (JSON columns as text).
    pub fn of(rec: &ImportRecord) -> Self {
        let e = &rec.entry;
        let pop = e.popularity.clone().unwrap_or_default();
        ImportedFields {
            display_name: e.display_name.clone(),
            description: e.description.clone(),
            category: e.category.clone(),
            tags: serde_json::to_string(&e.tags).unwrap_or_default(),
            keywords: serde_json::to_string(&e.keywords).unwrap_or_default(),
            status: e.status.unwrap_or(Status::Published).as_str().to_string(),
            visibility: e
                .visibility
                .unwrap_or(Visibility::Public)
                .as_str()
                .to_string(),
            deprecation: rec
                .deprecation
                .as_ref()
                .map(|d| serde_json::to_string(d).unwrap_or_default()),
            popularity: pop.score,
            monthly_downloads: pop.monthly_downloads.map(|v| v as i64),
            download_rank: pop.rank.map(i64::from),
        }
    }
}

/// The latest of some unyanked versions: the highest release, else the highest
/// pre-release.
pub fn latest_of<'a>(versions: impl Iterator<Item = &'a SemverVersion>) -> Option<String> {
    let (mut release, mut pre): (Option<&SemverVersion>, Option<&SemverVersion>) = (None, None);
    for v in versions {
        let slot = if v.pre.is_empty() {
            &mut release
        } else {
            &mut pre
        };
        if slot.is_none_or(|best| v > best) {
            *slot = Some(v);
        }
    }
    release.or(pre).map(ToString::to_string)
}

/// Row counts, for health pages and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    pub entries: u64,
    pub versions: u64,
    pub relations: u64,
    pub feed_head: i64,
    /// Bytes on disk, where the backend can tell.
    pub size_bytes: Option<u64>,
}

/// What the engine decides about a deletion; the store adds the entry's (or version's)
/// name, ids, visibility and time to make the [`Tombstone`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewTombstone {
    pub reason: String,
    /// Who deletes it (an account name, `admin`, `operator`).
    pub actor: String,
    /// A site admin's deletion: the name stays reserved.
    pub by_admin: bool,
}

/// The audit row a write commits with, if any (see [`AuditDraft`]).
pub type Audit = Option<AuditDraft>;

/// The storage trait. Every write appends to the change feed in the same transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name of the backend (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    async fn ensure_namespace(&self, name: &str, owner_kind: OwnerKind) -> Result<Namespace>;
    async fn get_namespace(&self, name: &str) -> Result<Option<Namespace>>;

    /// Create an entry (creating its namespace as an organisation if it does not exist).
    /// Conflict if (kind, namespace, name) is taken, after the kind's name normalization.
    async fn create_entry(&self, entry: NewEntry) -> Result<Entry> {
        self.create_entry_audited(entry, None).await
    }
    /// [`Self::create_entry`], committing `audit` (finished with the new entry) in the
    /// same transaction. The `*_audited` methods are what the engine calls: a write and
    /// its audit row are committed together or not at all.
    async fn create_entry_audited(&self, entry: NewEntry, audit: Audit) -> Result<Entry>;
    async fn update_entry(&self, key: &EntryKey, patch: EntryPatch) -> Result<Entry> {
        self.update_entry_audited(key, patch, None).await
    }
    /// [`Self::update_entry`] with its audit row (finished with the updated entry).
    async fn update_entry_audited(
        &self,
        key: &EntryKey,
        patch: EntryPatch,
        audit: Audit,
    ) -> Result<Entry>;
    /// Exact lookup by key (name compared after the kind's normalization).
    async fn get_entry(&self, key: &EntryKey) -> Result<Option<Entry>>;
    /// Entries by id, in no particular order; unknown ids are skipped.
    async fn get_entries_by_id(&self, ids: &[i64]) -> Result<Vec<Entry>>;
    /// The version strings of version rows by id (`(id, version)`), in no particular
    /// order; unknown ids are skipped. For naming the versions of feed events.
    async fn version_names_by_id(&self, ids: &[i64]) -> Result<Vec<(i64, String)>>;
    /// Entries matching the filter, in creation order, `limit` at a time.
    async fn list_entries(
        &self,
        filter: &EntryFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Entry>>;

    /// Publish a new version. Conflict if the version exists (versions are immutable).
    /// Publishing the first version of a draft entry makes it published.
    async fn publish_version(&self, key: &EntryKey, version: ValidVersion) -> Result<Version> {
        self.publish_version_audited(key, version, None).await
    }
    /// [`Self::publish_version`] with its audit row (finished with the new version).
    async fn publish_version_audited(
        &self,
        key: &EntryKey,
        version: ValidVersion,
        audit: Audit,
    ) -> Result<Version>;
    /// Versions of an entry, newest (semver) first.
    async fn list_versions(&self, key: &EntryKey) -> Result<Vec<Version>>;
    /// Versions of an entry, newest first, a page at a time (`cursor`: the previous
    /// page's `next_cursor`, see [`version_page`]). Manifests are read only when
    /// `manifests`; otherwise each is `null`, so a page costs little whatever they hold.
    async fn list_versions_page(
        &self,
        key: &EntryKey,
        cursor: Option<&str>,
        limit: usize,
        manifests: bool,
    ) -> Result<Page<Version>>;
    /// The bytes of an entry's stored manifests, all versions together.
    async fn manifest_bytes(&self, key: &EntryKey) -> Result<u64>;
    async fn get_version(&self, key: &EntryKey, version: &str) -> Result<Option<Version>>;
    /// The latest version of each of these entries (by id) that has one, with the entry's
    /// id: many at once, for derived views that read every tool.
    async fn latest_versions(&self, entry_ids: &[i64]) -> Result<Vec<(i64, Version)>>;
    /// Yank (with a reason) or unyank a version. Only the yank flag changes.
    async fn set_yanked(
        &self,
        key: &EntryKey,
        version: &str,
        yanked: bool,
        reason: Option<String>,
    ) -> Result<Version> {
        self.set_yanked_audited(key, version, yanked, reason, None)
            .await
    }
    /// [`Self::set_yanked`] with its audit row (finished with the version).
    async fn set_yanked_audited(
        &self,
        key: &EntryKey,
        version: &str,
        yanked: bool,
        reason: Option<String>,
        audit: Audit,
    ) -> Result<Version>;

    /// Disable (`Some`, with its reason) or enable (`None`) one version, with the audit
    /// row of the change; a feed row (version update) and the entry's latest version
    /// recomputed (a disabled version is never the latest).
    async fn set_version_disabled_audited(
        &self,
        key: &EntryKey,
        version: &str,
        disabled: Option<quiver_model::Disabled>,
        audit: Audit,
    ) -> Result<Version>;

    /// Delete an entry for good, in one transaction: its versions, relations (both
    /// ways), tags, dist-tags, download counts, usage events, skill preferences and
    /// advisory links go; a [`Tombstone`] stays, and a feed row (entry delete) tells the
    /// derived views and the public feed. `NotFound` when there is no such entry.
    async fn delete_entry_audited(
        &self,
        key: &EntryKey,
        tombstone: NewTombstone,
        audit: Audit,
    ) -> Result<Tombstone>;

    /// Delete one version for good, in one transaction: its row and the dist-tags that
    /// point at it go, the entry's latest version is recomputed, a [`Tombstone`] keeps
    /// its number from being published again, and a feed row (version delete) is written.
    async fn delete_version_audited(
        &self,
        key: &EntryKey,
        version: &str,
        tombstone: NewTombstone,
        audit: Audit,
    ) -> Result<Tombstone>;

    /// The tombstones of a name (the entry's and its versions'; the name compared after
    /// the kind's normalization), newest first.
    async fn tombstones(&self, key: &EntryKey) -> Result<Vec<Tombstone>>;

    /// The tombstones of deleted entries and versions by the deleted entry's id, in no
    /// particular order: for naming the feed's delete events.
    async fn tombstones_of_entries(&self, entry_ids: &[i64]) -> Result<Vec<Tombstone>>;

    /// Record the validation job's result on a version (a feed row: version update).
    async fn set_validation(
        &self,
        key: &EntryKey,
        version: &str,
        validation: quiver_model::Validation,
    ) -> Result<Version>;

    /// Add a relation between two existing entries (idempotent on kind, from, to).
    async fn add_relation(&self, relation: Relation) -> Result<Relation> {
        self.add_relation_audited(relation, None).await
    }
    /// [`Self::add_relation`] with its audit row (finished with the relation), written
    /// only when the relation changed (an identical one writes nothing).
    async fn add_relation_audited(&self, relation: Relation, audit: Audit) -> Result<Relation>;
    async fn list_relations(&self, key: &EntryKey, direction: Direction) -> Result<Vec<Relation>>;
    /// An entry's dist-tags, by tag.
    async fn dist_tags(&self, key: &EntryKey) -> Result<Vec<DistTag>>;
    /// For each key, its entry (`None`: no such entry) with the relations of `kind` that
    /// point at it and their source entries, in the order of `keys`. The default reads
    /// one by one; a backend that can answer in one read overrides it.
    async fn incoming(
        &self,
        keys: &[EntryKey],
        kind: quiver_model::RelationKind,
    ) -> Result<Vec<Option<Incoming>>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(entry) = self.get_entry(key).await? else {
                out.push(None);
                continue;
            };
            let mut relations = Vec::new();
            for r in self
                .list_relations(&entry.key(), Direction::Incoming)
                .await?
            {
                if r.kind != kind {
                    continue;
                }
                if let Some(from) = self.get_entry(&r.from).await? {
                    relations.push((r, from));
                }
            }
            out.push(Some(Incoming { entry, relations }));
        }
        Ok(out)
    }
    /// Record reported events (one transaction; ids already seen are duplicates).
    async fn record_events(&self, events: Vec<UsageEvent>) -> Result<EventsOutcome>;
    /// The entries installed in the most projects that also installed `key`, with at
    /// least `min_projects` such projects, most first.
    async fn co_installed(
        &self,
        key: &EntryKey,
        min_projects: u64,
        limit: usize,
    ) -> Result<Vec<CoInstall>>;
    /// A user's skill preferences, by ecosystem, package and skill.
    async fn skill_preferences(&self, user_id: i64) -> Result<Vec<SkillPreference>>;
    /// Set (`Some`) or clear (`None`) a user's preference for a skill (which must exist)
    /// for a package.
    async fn set_skill_preference(
        &self,
        user_id: i64,
        ecosystem: &str,
        package: &str,
        skill: &EntryKey,
        action: Option<PreferenceAction>,
        at: jiff::Timestamp,
    ) -> Result<()>;
    /// [`ResolutionSet`]s of many entries (`None` for a key with no entry), in the order
    /// of `keys`. The default reads entry by entry; a backend that can answer in one
    /// read overrides it.
    async fn resolution_sets(&self, keys: &[EntryKey]) -> Result<Vec<Option<ResolutionSet>>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(entry) = self.get_entry(key).await? else {
                out.push(None);
                continue;
            };
            let key = entry.key();
            let mut versions = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = self
                    .list_versions_page(&key, cursor.as_deref(), 1_000, false)
                    .await?;
                versions.extend(page.items);
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            let tags = self.dist_tags(&key).await?;
            out.push(Some(ResolutionSet {
                entry,
                versions,
                tags,
            }));
        }
        Ok(out)
    }
    /// Versions with their manifests, many at once (`None` for one that does not exist),
    /// in the order asked. The default reads them one by one.
    async fn versions_of(&self, wanted: &[(EntryKey, String)]) -> Result<Vec<Option<Version>>> {
        let mut out = Vec::with_capacity(wanted.len());
        for (key, version) in wanted {
            out.push(match self.get_version(key, version).await {
                Ok(v) => v,
                Err(e) if e.code == quiver_model::ErrorCode::NotFound => None,
                Err(e) => return Err(e),
            });
        }
        Ok(out)
    }
    /// Point `tag` at `version` (which must exist), or remove it (`None`), with the audit
    /// row of the change (none when nothing changed); the entry's tags as they are after.
    async fn set_dist_tag_audited(
        &self,
        key: &EntryKey,
        tag: &str,
        version: Option<&str>,
        at: jiff::Timestamp,
        audit: Audit,
    ) -> Result<Vec<DistTag>>;

    /// Feed events after `after`, oldest first, at most `limit`.
    async fn feed_since(&self, after: i64, limit: usize) -> Result<Vec<FeedEvent>>;
    /// The newest feed position (0 when the feed is empty).
    async fn feed_head(&self) -> Result<i64>;
    /// The ids of the entries that got a new version at feed positions after `after` up
    /// to `through`, each once, leaving out entries in `skip_namespaces`: one set-based
    /// read for derived work over many events (the quality gates of an import of a
    /// million packages read it in a few windows, not a thousand pages of events).
    async fn entries_with_new_versions(
        &self,
        after: i64,
        through: i64,
        skip_namespaces: &[String],
    ) -> Result<Vec<i64>>;

    /// Upsert a batch in one transaction: create what is new, update what differs, leave
    /// what is the same untouched (no feed row). Records must be validated. One outcome per
    /// record, in order; a rejected record writes nothing and does not stop the others.
    async fn import_batch(&self, batch: Vec<ImportRecord>) -> Result<Vec<ImportOutcome>>;

    /// Upsert documents by (collection, key) in one transaction, with a feed row for each
    /// one created or changed. Each outcome says what happened; an invalid document (see
    /// `quiver_model::validate::document`) is `Rejected` and the others are still written.
    async fn put_documents(&self, docs: Vec<NewDocument>) -> Result<Vec<ImportOutcome>> {
        self.put_documents_audited(docs, None).await
    }
    /// `put_documents` with one audit row for the call (its diff as given), committed
    /// with the documents unless every one was rejected.
    async fn put_documents_audited(
        &self,
        docs: Vec<NewDocument>,
        audit: Audit,
    ) -> Result<Vec<ImportOutcome>>;
    async fn get_document(&self, collection: &str, key: &str) -> Result<Option<Document>>;
    /// A collection's documents in key order, a page at a time (`cursor` is the
    /// previous page's `next_cursor`).
    async fn list_documents(
        &self,
        collection: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Document>>;
    /// Every collection with its number of documents, by name.
    async fn document_collections(&self) -> Result<Vec<(String, u64)>>;

    async fn stats(&self) -> Result<StoreStats>;
}

/// Validate a version for `kind` and compute its manifest hash: the one way to make a
/// [`ValidVersion`].
/// A cursor over a collection's keys (opaque to callers; the key itself, encoded).
pub fn encode_key_cursor(key: &str) -> String {
    quiver_model::cursor::encode("documents", key)
}

/// The key a cursor of [`encode_key_cursor`] holds.
pub fn decode_key_cursor(c: &str) -> Result<String> {
    quiver_model::cursor::decode("documents", c)
}

/// Sort versions newest (semver) first; versions that do not parse go last.
pub fn sort_newest_first(versions: &mut [Version]) {
    versions.sort_by_cached_key(|v| std::cmp::Reverse(SemverVersion::parse(&v.version).ok()));
}

/// The page after `cursor` of `versions` (all of an entry's, newest first): the one
/// paging rule of [`Store::list_versions_page`] on every backend. The cursor names the
/// last version of the previous page.
pub fn version_page(
    mut versions: Vec<Version>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<Version>> {
    let start = match cursor {
        None => 0,
        Some(c) => {
            let after: String = quiver_model::cursor::decode("versions", c)?;
            versions
                .iter()
                .position(|v| v.version == after)
                .map(|i| i + 1)
                .ok_or_else(|| {
                    quiver_model::Error::invalid(
                        "cursor",
                        "names a version this entry does not have",
                    )
                })?
        }
    };
    let rest = versions.split_off(start.min(versions.len()));
    let more = rest.len() > limit;
    let items: Vec<Version> = rest.into_iter().take(limit).collect();
    let next_cursor = if more {
        items
            .last()
            .map(|v| quiver_model::cursor::encode("versions", &v.version))
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

/// The most manifest bytes one page of versions carries: a page with manifests ends
/// early (with a `next_cursor`) once its manifests reach this, after at least one version.
pub const MAX_PAGE_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// End `page` after its first `keep` versions, continuing after the last one kept.
pub fn cut_version_page(page: &mut Page<Version>, keep: usize) {
    if keep < page.items.len() {
        page.items.truncate(keep);
        page.next_cursor = page
            .items
            .last()
            .map(|v| quiver_model::cursor::encode("versions", &v.version));
    }
}

/// A page from `limit + 1` documents read in key order.
pub fn page_by_key(mut items: Vec<Document>, limit: usize) -> Page<Document> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|d| encode_key_cursor(&d.key))
    } else {
        None
    };
    Page { items, next_cursor }
}

pub fn valid_version(kind: Kind, mut version: NewVersion) -> Result<ValidVersion> {
    let (parsed, canonical) = quiver_model::validate::new_version(kind, &mut version)?;
    let sha256 = quiver_model::manifest::sha256_hex(&canonical);
    Ok(ValidVersion {
        version,
        semver: parsed,
        sha256,
        canonical,
    })
}
