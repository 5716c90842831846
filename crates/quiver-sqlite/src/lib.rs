//! quiver's SQLite store: the embedded default backend of the `quiver_store` traits.
//!
//! One writer connection behind a mutex (SQLite serializes writers anyway, and one
//! connection keeps the feed sequence gap-free) and a small pool of read connections. WAL
//! mode lets readers run beside the writer; `synchronous=FULL` makes a commit durable
//! before it is acknowledged. rusqlite is blocking, so every call runs on tokio's blocking
//! pool. The WAL is checkpointed by a thread of its own (`checkpoint_loop`), never inside a
//! writer's commit.
//!
//! [`open`] hands out the whole [`Database`]: every part is the one [`SqliteStore`],
//! except the request rate limits, counted in memory. Its feed waker is in-process: a
//! write transaction reads the feed's head before it commits and, after the commit,
//! wakes the subscribers if the head grew. Other processes writing the same file wake
//! nobody; followers poll for them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::Timestamp;
use quiver_model::names::name_key;
use quiver_model::validate::SemverVersion;
use quiver_model::{
    Context, Deprecation, Disabled, Document, Entry, EntryKey, EntryPatch, Error, FeedEntity,
    FeedEvent, FeedOp, Namespace, NewDocument, NewEntry, OwnerKind, Popularity, Relation, Result,
    Status, Tombstone, Validation, Version, Visibility,
};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use accounts::{commit_audit, commit_audit_change};
use quiver_store::import::{self, Decision, StoredVersion};
use quiver_store::{
    latest_of, Audit, Database, Direction, DistTag, EntryFilter, ImportOutcome, ImportRecord,
    ImportedFields, Incoming, LocalFeed, MemoryLimiter, NewTombstone, Page, PreferenceAction,
    ResolutionSet, SkillPreference, Store, StoreStats, ValidVersion,
};
use quiver_store::{CoInstall, EventsOutcome, UsageEvent};

mod accounts;
mod advisories;
mod counters;
mod cursors;
mod device;
mod downloads;
mod jobs;
mod pipeline;
mod telemetry;
mod throttle;
mod webhooks;

const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    ),
    (
        "0002_jobs",
        include_str!("../migrations/sqlite/0002_jobs.sql"),
    ),
    (
        "0003_version_validation",
        include_str!("../migrations/sqlite/0003_version_validation.sql"),
    ),
    (
        "0004_documents",
        include_str!("../migrations/sqlite/0004_documents.sql"),
    ),
    (
        "0005_accounts",
        include_str!("../migrations/sqlite/0005_accounts.sql"),
    ),
    (
        "0006_audit",
        include_str!("../migrations/sqlite/0006_audit.sql"),
    ),
    (
        "0008_rate_limits",
        include_str!("../migrations/sqlite/0008_rate_limits.sql"),
    ),
    (
        "0009_device_codes",
        include_str!("../migrations/sqlite/0009_device_codes.sql"),
    ),
    (
        "0010_audit_client",
        include_str!("../migrations/sqlite/0010_audit_client.sql"),
    ),
    (
        "0011_throttles",
        include_str!("../migrations/sqlite/0011_throttles.sql"),
    ),
    (
        "0012_feed_outbox",
        include_str!("../migrations/sqlite/0012_feed_outbox.sql"),
    ),
    (
        "0013_feed_durable",
        include_str!("../migrations/sqlite/0013_feed_durable.sql"),
    ),
    (
        "0014_feed_cursors",
        include_str!("../migrations/sqlite/0014_feed_cursors.sql"),
    ),
    (
        "0015_audit_target",
        include_str!("../migrations/sqlite/0015_audit_target.sql"),
    ),
    (
        "0016_telemetry",
        include_str!("../migrations/sqlite/0016_telemetry.sql"),
    ),
    (
        "0017_experiments",
        include_str!("../migrations/sqlite/0017_experiments.sql"),
    ),
    (
        "0018_pipeline",
        include_str!("../migrations/sqlite/0018_pipeline.sql"),
    ),
    (
        "0019_dist_tags",
        include_str!("../migrations/sqlite/0019_dist_tags.sql"),
    ),
    (
        "0020_skill_preferences",
        include_str!("../migrations/sqlite/0020_skill_preferences.sql"),
    ),
    (
        "0021_advisories",
        include_str!("../migrations/sqlite/0021_advisories.sql"),
    ),
    (
        "0022_usage_events",
        include_str!("../migrations/sqlite/0022_usage_events.sql"),
    ),
    (
        "0023_downloads",
        include_str!("../migrations/sqlite/0023_downloads.sql"),
    ),
    (
        "0024_disabled",
        include_str!("../migrations/sqlite/0024_disabled.sql"),
    ),
    (
        "0025_webhooks",
        include_str!("../migrations/sqlite/0025_webhooks.sql"),
    ),
    (
        "0026_deletion",
        include_str!("../migrations/sqlite/0026_deletion.sql"),
    ),
];

/// Open (creating if needed) the database file at `path`, run pending migrations, and
/// hand out the whole [`Database`] (see [`SqliteStore::database`]).
pub fn open(path: impl AsRef<Path>) -> Result<Database> {
    Ok(SqliteStore::open(path)?.database())
}

/// The feed's newest sequence number (0 when empty).
fn feed_head(c: &Connection) -> Result<i64> {
    c.query_row("SELECT COALESCE(MAX(seq), 0) FROM feed", [], |r| r.get(0))
        .context("reading the feed head")
}

/// Names of the SQLite migrations, in order (the PostgreSQL set must match them).
pub fn migration_names() -> Vec<&'static str> {
    MIGRATIONS.iter().map(|(n, _)| *n).collect()
}

struct Inner {
    writer: Mutex<Connection>,
    readers: r2d2::Pool<SqliteConnectionManager>,
    path: PathBuf,
    /// Wakes this process's feed followers after a commit that appended to the feed.
    feed: Arc<LocalFeed>,
}

/// A store in one SQLite database file.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

/// How often the checkpoint thread copies committed WAL pages into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Checkpoint the WAL every [`CHECKPOINT_EVERY`] until the store is dropped.
fn checkpoint_loop(conn: Connection, alive: std::sync::Weak<Inner>) {
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        if alive.strong_count() == 0 {
            return;
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "checkpointing the SQLite WAL");
        }
    }
}

/// Bytes of the database file each connection memory-maps for its reads (SQLite's
/// `mmap_size`), for connections opened after [`set_mmap_size`].
static MMAP_BYTES: std::sync::atomic::AtomicI64 =
    std::sync::atomic::AtomicI64::new(256 * 1024 * 1024);

/// How much of the database file each connection opened from now on memory-maps for
/// reads (256 MiB unless changed; 0 reads through SQLite's page cache alone). A server's
/// lookups gain from the map; a bulk import, which reads each row once, does not, and
/// the mapped pages of every reader connection count toward the process's resident
/// memory.
pub fn set_mmap_size(bytes: i64) {
    MMAP_BYTES.store(bytes.max(0), std::sync::atomic::Ordering::Relaxed);
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -32_000)?; // 32 MB page cache per connection
    conn.pragma_update(
        None,
        "mmap_size",
        MMAP_BYTES.load(std::sync::atomic::Ordering::Relaxed),
    )?;
    Ok(())
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path` and run pending migrations.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .context(format!("creating data directory {}", dir.display()))?;
            }
        }
        let mut writer = Connection::open(&path)
            .context(format!("opening SQLite database {}", path.display()))?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .context("enabling WAL")?;
        writer
            .pragma_update(None, "synchronous", "FULL")
            .context("setting synchronous=FULL")?;
        configure(&writer).context("configuring SQLite")?;
        migrate(&mut writer)?;
        let head = feed_head(&writer)?;

        let manager = SqliteConnectionManager::file(&path).with_init(|c| {
            configure(c)?;
            c.pragma_update(None, "query_only", "ON")
        });
        let readers = r2d2::Pool::builder()
            .max_size(8)
            .min_idle(Some(2))
            .build(manager)
            .context("opening SQLite read pool")?;
        // Checkpoints run on their own thread and connection, not in the writer's commits
        // (SQLite's default runs one inside the commit that pushes the WAL past 1,000
        // pages, which a write-heavy load such as the recipe pipeline's pays for in
        // every few commits). A PASSIVE checkpoint never blocks the writer or readers.
        let checkpointer = Connection::open(&path)
            .and_then(|c| {
                configure(&c)?;
                c.pragma_update(None, "synchronous", "FULL")?;
                Ok(c)
            })
            .context("opening the checkpoint connection")?;
        let inner = Arc::new(Inner {
            writer: Mutex::new(writer),
            readers,
            path,
            feed: Arc::new(LocalFeed::new(head)),
        });
        let alive = Arc::downgrade(&inner);
        let spawned = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, alive));
        if spawned.is_ok() {
            inner
                .writer
                .lock()
                .map_err(|_| Error::internal("opening", "writer lock poisoned"))?
                .pragma_update(None, "wal_autocheckpoint", 0)
                .context("handing checkpoints to their thread")?;
        }
        Ok(SqliteStore { inner })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The whole handle on this database: every part is this store, except the request
    /// rate limits, counted in memory (one process is the whole server, and a write per
    /// request would queue reads behind the write lock).
    pub fn database(&self) -> Database {
        let me = Arc::new(self.clone());
        Database {
            store: me.clone(),
            jobs: me.clone(),
            accounts: me.clone(),
            audit: me.clone(),
            rate_limiter: Arc::new(MemoryLimiter::new()),
            counters: me.clone(),
            throttle: me.clone(),
            device_codes: me.clone(),
            identities: me.clone(),
            cursors: me.clone(),
            telemetry: me.clone(),
            pipeline: me.clone(),
            advisories: me.clone(),
            downloads: me.clone(),
            webhooks: me,
            feed: self.inner.feed.clone(),
        }
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.readers.get().context("taking a read connection")?;
            f(&conn)
        })
        .await
        .context("read task")?
    }

    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner
                .writer
                .lock()
                .map_err(|_| Error::internal("writing", "writer lock poisoned"))?;
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .context("beginning a write transaction")?;
            let out = f(&tx)?;
            // The head as this transaction leaves it (the feed's last rowid: one b-tree
            // step), so the followers wake only when a commit appended to the feed.
            let head = feed_head(&tx)?;
            tx.commit().context("committing")?;
            inner.feed.advanced(head);
            Ok(out)
        })
        .await
        .context("write task")?
    }
}

/// Apply the migrations this database has not seen, each in its own transaction.
///
/// Hand-written rather than a migration crate: it is twenty lines, and the same file-list
/// runner serves both backends, which keeps their migration sets in step by name.
fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .context("creating schema_migrations")?;
    for (name, sql) in MIGRATIONS {
        let done: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE name = ?1)",
                [name],
                |r| r.get(0),
            )
            .context("reading schema_migrations")?;
        if done {
            continue;
        }
        let tx = conn.transaction().context("beginning migration")?;
        tx.execute_batch(sql)
            .context(format!("applying migration {name}"))?;
        tx.execute(
            "INSERT INTO schema_migrations (name, applied_at) VALUES (?1, ?2)",
            params![name, now_ms()],
        )
        .context("recording migration")?;
        tx.commit()
            .context(format!("committing migration {name}"))?;
        tracing::info!(migration = name, "applied migration");
    }
    Ok(())
}

fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

fn feed(
    tx: &Transaction<'_>,
    entity: FeedEntity,
    entity_id: i64,
    entry_id: Option<i64>,
    op: FeedOp,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO feed (entity, entity_id, entry_id, op, at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            entity.as_str(),
            entity_id,
            entry_id,
            op.as_str(),
            now_ms()
        ])
    })
    .context("appending to the change feed")?;
    Ok(())
}

const ENTRY_COLS: &str = "id, kind, namespace, name, display_name, description, category, tags, \
     keywords, status, visibility, deprecation, popularity, monthly_downloads, download_rank, \
     latest_version, created_at, updated_at, disabled";

fn parse_enum<T: std::str::FromStr>(s: String) -> rusqlite::Result<T> {
    s.parse::<T>().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("bad enum value {s}").into(),
        )
    })
}

fn json_col<T: serde::de::DeserializeOwned>(s: &str) -> rusqlite::Result<T> {
    serde_json::from_str(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let tags: String = r.get(7)?;
    let keywords: String = r.get(8)?;
    let deprecation: Option<String> = r.get(11)?;
    let disabled: Option<String> = r.get(18)?;
    Ok(Entry {
        id: r.get(0)?,
        kind: parse_enum(r.get(1)?)?,
        namespace: r.get(2)?,
        name: r.get(3)?,
        display_name: r.get(4)?,
        description: r.get(5)?,
        category: r.get(6)?,
        tags: json_col(&tags)?,
        keywords: json_col(&keywords)?,
        status: parse_enum(r.get(9)?)?,
        visibility: parse_enum(r.get(10)?)?,
        deprecation: deprecation
            .as_deref()
            .map(json_col::<Deprecation>)
            .transpose()?,
        popularity: Popularity {
            score: r.get(12)?,
            monthly_downloads: r.get::<_, Option<i64>>(13)?.map(|v| v as u64),
            rank: r.get::<_, Option<i64>>(14)?.map(|v| v as u32),
        },
        latest_version: r.get(15)?,
        created_at: ts(r.get(16)?),
        updated_at: ts(r.get(17)?),
        disabled: disabled.as_deref().map(json_col::<Disabled>).transpose()?,
    })
}

fn version_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Version> {
    version_from_row_at(r, 0)
}

/// A version from [`VERSION_COLS`] starting at column `at`.
fn version_from_row_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Version> {
    let manifest: String = r.get(at + 1)?;
    Ok(Version {
        version: r.get(at)?,
        manifest: json_col(&manifest)?,
        sha256: r.get(at + 2)?,
        changelog: r.get(at + 3)?,
        breaking: r.get(at + 4)?,
        yanked: r.get(at + 5)?,
        yank_reason: r.get(at + 6)?,
        published_at: ts(r.get(at + 7)?),
        validation: r
            .get::<_, Option<String>>(at + 8)?
            .as_deref()
            .map(json_col)
            .transpose()?,
        disabled: r
            .get::<_, Option<String>>(at + 9)?
            .as_deref()
            .map(json_col::<Disabled>)
            .transpose()?,
    })
}

const VERSION_COLS: &str = "version, manifest, sha256, changelog, breaking, yanked, yank_reason, \
     published_at, validation, disabled";
/// [`VERSION_COLS`] with a `null` manifest: a version's row without reading its manifest.
const VERSION_COLS_NO_MANIFEST: &str = "version, 'null', sha256, changelog, breaking, yanked, \
     yank_reason, published_at, validation, disabled";

fn get_entry_conn(conn: &Connection, key: &EntryKey) -> Result<Option<Entry>> {
    let nk = name_key(key.kind, &key.namespace, &key.name);
    conn.prepare_cached(&format!(
        "SELECT {ENTRY_COLS} FROM entries WHERE kind = ?1 AND namespace = ?2 AND name_key = ?3"
    ))
    .and_then(|mut s| {
        s.query_row(
            params![key.kind.as_str(), key.namespace, nk],
            entry_from_row,
        )
        .optional()
    })
    .context("reading an entry")
}

fn entry_id(conn: &Connection, key: &EntryKey) -> Result<Option<i64>> {
    let nk = name_key(key.kind, &key.namespace, &key.name);
    conn.prepare_cached(
        "SELECT id FROM entries WHERE kind = ?1 AND namespace = ?2 AND name_key = ?3",
    )
    .and_then(|mut s| {
        s.query_row(params![key.kind.as_str(), key.namespace, nk], |r| r.get(0))
            .optional()
    })
    .context("resolving an entry")
}

fn read_dist_tags(c: &Connection, entry_id: i64) -> Result<Vec<DistTag>> {
    c.prepare_cached(
        "SELECT tag, version, updated_at FROM dist_tags WHERE entry_id = ?1 ORDER BY tag",
    )
    .and_then(|mut s| {
        s.query_map([entry_id], |r| {
            Ok(DistTag {
                tag: r.get(0)?,
                version: r.get(1)?,
                updated_at: ts(r.get(2)?),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
    })
    .context("reading dist-tags")
}

fn require_entry_id(conn: &Connection, key: &EntryKey) -> Result<i64> {
    entry_id(conn, key)?.ok_or_else(|| Error::not_found(key))
}

fn require_version_id(
    conn: &Connection,
    entry_id: i64,
    key: &EntryKey,
    version: &str,
) -> Result<i64> {
    conn.prepare_cached("SELECT id FROM versions WHERE entry_id = ?1 AND version = ?2")
        .and_then(|mut s| {
            s.query_row(params![entry_id, version], |r| r.get(0))
                .optional()
        })
        .context("resolving a version")?
        .ok_or_else(|| Error::not_found(format!("version {version} of {key}")))
}

fn get_entry_by_id(conn: &Connection, id: i64) -> Result<Entry> {
    conn.prepare_cached(&format!("SELECT {ENTRY_COLS} FROM entries WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id], entry_from_row))
        .context("reading an entry by id")
}

fn ensure_namespace_tx(tx: &Transaction<'_>, name: &str, owner: OwnerKind) -> Result<()> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO namespaces (name, owner_kind, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .and_then(|mut s| s.execute(params![name, owner.as_str(), now_ms()]))
        .context("creating a namespace")?;
    if inserted > 0 {
        feed(
            tx,
            FeedEntity::Namespace,
            tx.last_insert_rowid(),
            None,
            FeedOp::Create,
        )?;
    }
    Ok(())
}

fn write_tags(tx: &Transaction<'_>, id: i64, tags: &[String], replace: bool) -> Result<()> {
    if replace {
        tx.prepare_cached("DELETE FROM entry_tags WHERE entry_id = ?1")
            .and_then(|mut s| s.execute([id]))
            .context("clearing tags")?;
    }
    let mut stmt = tx
        .prepare_cached("INSERT OR IGNORE INTO entry_tags (tag, entry_id) VALUES (?1, ?2)")
        .context("preparing tag insert")?;
    for t in tags {
        stmt.execute(params![t, id]).context("writing tags")?;
    }
    Ok(())
}

fn insert_entry(
    tx: &Transaction<'_>,
    e: &NewEntry,
    status: Status,
    latest_version: Option<&str>,
) -> Result<i64> {
    let now = now_ms();
    let pop = e.popularity.clone().unwrap_or_default();
    let res = tx
        .prepare_cached(
            "INSERT INTO entries (kind, namespace, name, name_key, display_name, description, \
             category, tags, keywords, status, visibility, deprecation, popularity, \
             monthly_downloads, download_rank, latest_version, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL, ?12, ?13, ?14, ?16, ?15, ?15)",
        )
        .and_then(|mut s| {
            s.execute(params![
                e.kind.as_str(),
                e.namespace,
                e.name,
                name_key(e.kind, &e.namespace, &e.name),
                e.display_name,
                e.description,
                e.category,
                serde_json::to_string(&e.tags).unwrap_or_else(|_| "[]".into()),
                serde_json::to_string(&e.keywords).unwrap_or_else(|_| "[]".into()),
                status.as_str(),
                e.visibility.unwrap_or(Visibility::Public).as_str(),
                pop.score,
                pop.monthly_downloads.map(|v| v as i64),
                pop.rank.map(i64::from),
                now,
                latest_version,
            ])
        });
    match res {
        Ok(_) => {}
        Err(err) if is_unique_violation(&err) => {
            let key = EntryKey::new(e.kind, &e.namespace, &e.name);
            return Err(Error::conflict("name", format!("{key} already exists")));
        }
        Err(err) => return Err(Error::internal("creating an entry", err)),
    }
    let id = tx.last_insert_rowid();
    if !e.tags.is_empty() {
        write_tags(tx, id, &e.tags, false)?;
    }
    feed(tx, FeedEntity::Entry, id, Some(id), FeedOp::Create)?;
    Ok(id)
}

fn insert_version(tx: &Transaction<'_>, entry_id: i64, v: &ValidVersion) -> Result<i64> {
    let res = tx
        .prepare_cached(
            "INSERT INTO versions (entry_id, version, manifest, sha256, changelog, breaking, \
             yanked, yank_reason, published_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, NULL, ?7)",
        )
        .and_then(|mut s| {
            s.execute(params![
                entry_id,
                v.version.version,
                v.canonical,
                v.sha256,
                v.version.changelog,
                v.version.breaking,
                now_ms(),
            ])
        });
    match res {
        Ok(_) => {}
        Err(err) if is_unique_violation(&err) => {
            return Err(Error::conflict(
                "version",
                format!(
                    "version {} is already published; versions are immutable",
                    v.version.version
                ),
            ))
        }
        Err(err) => return Err(Error::internal("publishing a version", err)),
    }
    let id = tx.last_insert_rowid();
    feed(tx, FeedEntity::Version, id, Some(entry_id), FeedOp::Create)?;
    Ok(id)
}

/// Recompute an entry's latest version: the highest unyanked, enabled release, else the
/// highest unyanked, enabled pre-release, else none.
fn refresh_latest(tx: &Transaction<'_>, entry_id: i64) -> Result<Option<String>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT version FROM versions WHERE entry_id = ?1 AND yanked = 0 AND disabled IS NULL",
        )
        .context("preparing latest-version query")?;
    let versions: Vec<String> = stmt
        .query_map([entry_id], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .context("reading versions")?;
    let parsed: Vec<SemverVersion> = versions
        .iter()
        .filter_map(|v| SemverVersion::parse(v).ok())
        .collect();
    let latest = latest_of(parsed.iter());
    tx.prepare_cached("UPDATE entries SET latest_version = ?1, updated_at = ?2 WHERE id = ?3")
        .and_then(|mut s| s.execute(params![latest, now_ms(), entry_id]))
        .context("updating latest version")?;
    Ok(latest)
}

fn document_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Document> {
    let body: String = r.get(2)?;
    Ok(Document {
        collection: r.get(0)?,
        key: r.get(1)?,
        body: json_col(&body)?,
        sha256: r.get(3)?,
        updated_at: ts(r.get(4)?),
    })
}

fn relation_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Relation> {
    Ok(Relation {
        kind: parse_enum(r.get(0)?)?,
        from: EntryKey {
            kind: parse_enum(r.get(1)?)?,
            namespace: r.get(2)?,
            name: r.get(3)?,
        },
        to: EntryKey {
            kind: parse_enum(r.get(4)?)?,
            namespace: r.get(5)?,
            name: r.get(6)?,
        },
        confidence: r.get(7)?,
        source: r.get(8)?,
        step_order: r.get(9)?,
    })
}

fn encode_cursor(id: i64) -> String {
    quiver_model::cursor::encode("entries", &id)
}

fn decode_cursor(c: &str) -> Result<i64> {
    quiver_model::cursor::decode("entries", c)
}

/// A stored version's id and yank state.
fn write_imported_fields(tx: &Transaction<'_>, id: i64, f: &ImportedFields) -> Result<()> {
    tx.prepare_cached(
        "UPDATE entries SET display_name = ?1, description = ?2, category = ?3, tags = ?4, \
         keywords = ?5, status = ?6, visibility = ?7, deprecation = ?8, popularity = ?9, \
         monthly_downloads = ?10, download_rank = ?11, updated_at = ?12 WHERE id = ?13",
    )
    .and_then(|mut s| {
        s.execute(params![
            f.display_name,
            f.description,
            f.category,
            f.tags,
            f.keywords,
            f.status,
            f.visibility,
            f.deprecation,
            f.popularity,
            f.monthly_downloads,
            f.download_rank,
            now_ms(),
            id
        ])
    })
    .context("updating an imported entry")?;
    Ok(())
}

/// Import one record inside the batch transaction. Conflicts are checked before anything
/// is written, so a rejected record leaves no trace.
fn import_one(tx: &Transaction<'_>, rec: &ImportRecord) -> Result<ImportOutcome> {
    let e = &rec.entry;
    let nk = name_key(e.kind, &e.namespace, &e.name);
    let fields = ImportedFields::of(rec);
    let existing: Option<(i64, ImportedFields)> = tx
        .prepare_cached(
            "SELECT id, display_name, description, category, tags, keywords, status, visibility, \
             deprecation, popularity, monthly_downloads, download_rank FROM entries \
             WHERE kind = ?1 AND namespace = ?2 AND name_key = ?3",
        )
        .and_then(|mut s| {
            s.query_row(params![e.kind.as_str(), e.namespace, nk], |r| {
                Ok((
                    r.get(0)?,
                    ImportedFields {
                        display_name: r.get(1)?,
                        description: r.get(2)?,
                        category: r.get(3)?,
                        tags: r.get(4)?,
                        keywords: r.get(5)?,
                        status: r.get(6)?,
                        visibility: r.get(7)?,
                        deprecation: r.get(8)?,
                        popularity: r.get(9)?,
                        monthly_downloads: r.get(10)?,
                        download_rank: r.get(11)?,
                    },
                ))
            })
            .optional()
        })
        .context("looking up an imported entry")?;

    // What is stored of the record's versions, then the one import rule.
    let mut versions = Vec::with_capacity(rec.versions.len());
    if let Some((id, _)) = &existing {
        for v in &rec.versions {
            let row = tx
                .prepare_cached(
                    "SELECT id, sha256, yanked, yank_reason FROM versions \
                     WHERE entry_id = ?1 AND version = ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![id, v.version.version.version], |r| {
                        Ok(StoredVersion {
                            id: r.get(0)?,
                            sha256: r.get(1)?,
                            yanked: r.get(2)?,
                            yank_reason: r.get(3)?,
                        })
                    })
                    .optional()
                })
                .context("checking an imported version")?;
            versions.push(row);
        }
    }
    let stored = existing.as_ref().map(|(_, old)| import::Stored {
        fields: old,
        versions: &versions,
    });
    let decision = import::decide(rec, stored)?;
    let outcome = decision.outcome();
    match (decision, existing) {
        (Decision::Reject(_), _) => {}
        (Decision::Create, _) => {
            // A new entry: its latest version follows from the record alone, so it is
            // written with the row instead of being read back.
            let latest = latest_of(
                rec.versions
                    .iter()
                    .filter(|v| !v.yanked)
                    .map(|v| &v.version.semver),
            );
            let id = insert_entry(
                tx,
                e,
                e.status.unwrap_or(Status::Published),
                latest.as_deref(),
            )?;
            if rec.deprecation.is_some() {
                write_imported_fields(tx, id, &fields)?;
            }
            for v in &rec.versions {
                let vid = insert_version(tx, id, &v.version)?;
                if v.yanked {
                    set_yank_row(tx, vid, true, v.yank_reason.clone())?;
                }
            }
        }
        (Decision::Apply(c), Some((id, _))) => {
            if c.fields {
                write_imported_fields(tx, id, &fields)?;
                if c.tags {
                    write_tags(tx, id, &e.tags, true)?;
                }
                feed(tx, FeedEntity::Entry, id, Some(id), FeedOp::Update)?;
            }
            // In the record's order (the feed rows follow it on every backend).
            for (i, v) in rec.versions.iter().enumerate() {
                if c.new_versions.contains(&i) {
                    let vid = insert_version(tx, id, &v.version)?;
                    if v.yanked {
                        set_yank_row(tx, vid, true, v.yank_reason.clone())?;
                    }
                } else if let Some((_, vid, yanked, reason)) =
                    c.yanks.iter().find(|(at, ..)| *at == i)
                {
                    set_yank_row(tx, *vid, *yanked, reason.clone())?;
                    feed(tx, FeedEntity::Version, *vid, Some(id), FeedOp::Update)?;
                }
            }
            if c.versions_changed() {
                refresh_latest(tx, id)?;
            }
        }
        (Decision::Apply(_), None) => {
            return Err(Error::internal(
                "importing",
                "changes to an entry not stored",
            ))
        }
    }
    Ok(outcome)
}

fn set_yank_row(
    tx: &Transaction<'_>,
    vid: i64,
    yanked: bool,
    reason: Option<String>,
) -> Result<()> {
    tx.prepare_cached("UPDATE versions SET yanked = ?1, yank_reason = ?2 WHERE id = ?3")
        .and_then(|mut s| s.execute(params![yanked, reason, vid]))
        .context("yanking a version")?;
    Ok(())
}

const TOMBSTONE_COLS: &str = "kind, namespace, name, version, entry_id, version_id, visibility, \
     reason, actor, by_admin, deleted_at";

fn tombstone_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Tombstone> {
    Ok(Tombstone {
        kind: parse_enum(r.get(0)?)?,
        namespace: r.get(1)?,
        name: r.get(2)?,
        version: r.get(3)?,
        entry_id: r.get(4)?,
        version_id: r.get(5)?,
        visibility: parse_enum(r.get(6)?)?,
        reason: r.get(7)?,
        actor: r.get(8)?,
        by_admin: r.get(9)?,
        deleted_at: ts(r.get(10)?),
    })
}

/// Write a tombstone for `entry` (and `version`, with its id) and read it back.
fn insert_tombstone(
    tx: &Transaction<'_>,
    entry: &Entry,
    version: Option<(&str, i64)>,
    t: &NewTombstone,
) -> Result<Tombstone> {
    tx.prepare_cached(
        "INSERT INTO tombstones (kind, namespace, name, name_key, version, entry_id, \
         version_id, visibility, reason, actor, by_admin, deleted_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )
    .and_then(|mut s| {
        s.execute(params![
            entry.kind.as_str(),
            entry.namespace,
            entry.name,
            name_key(entry.kind, &entry.namespace, &entry.name),
            version.map(|v| v.0),
            entry.id,
            version.map(|v| v.1),
            entry.visibility.as_str(),
            t.reason,
            t.actor,
            t.by_admin,
            now_ms(),
        ])
    })
    .context("writing a tombstone")?;
    let id = tx.last_insert_rowid();
    tx.query_row(
        &format!("SELECT {TOMBSTONE_COLS} FROM tombstones WHERE id = ?1"),
        [id],
        tombstone_from_row,
    )
    .context("reading a tombstone")
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ensure_namespace(&self, name: &str, owner_kind: OwnerKind) -> Result<Namespace> {
        let n = name.to_string();
        self.write(move |tx| ensure_namespace_tx(tx, &n, owner_kind))
            .await?;
        self.get_namespace(name)
            .await?
            .ok_or_else(|| Error::internal("creating a namespace", "not found after insert"))
    }

    async fn get_namespace(&self, name: &str) -> Result<Option<Namespace>> {
        let name = name.to_string();
        self.read(move |c| {
            c.query_row(
                "SELECT name, owner_kind, display_name, created_at FROM namespaces WHERE name = ?1",
                [name],
                |r| {
                    Ok(Namespace {
                        name: r.get(0)?,
                        owner_kind: parse_enum(r.get(1)?)?,
                        display_name: r.get(2)?,
                        created_at: ts(r.get(3)?),
                    })
                },
            )
            .optional()
            .context("reading a namespace")
        })
        .await
    }

    async fn create_entry_audited(&self, entry: NewEntry, audit: Audit) -> Result<Entry> {
        self.write(move |tx| {
            ensure_namespace_tx(tx, &entry.namespace, OwnerKind::Organisation)?;
            let id = insert_entry(tx, &entry, entry.status.unwrap_or(Status::Draft), None)?;
            let e = get_entry_by_id(tx, id)?;
            commit_audit(tx, audit, &e)?;
            Ok(e)
        })
        .await
    }

    async fn update_entry_audited(
        &self,
        key: &EntryKey,
        patch: EntryPatch,
        audit: Audit,
    ) -> Result<Entry> {
        let key = key.clone();
        self.write(move |tx| {
            let mut e = get_entry_conn(tx, &key)?.ok_or_else(|| Error::not_found(&key))?;
            let tags_changed = patch.apply_to(&mut e);
            tx.prepare_cached(
                "UPDATE entries SET display_name = ?1, description = ?2, category = ?3, tags = ?4, \
                 keywords = ?5, status = ?6, visibility = ?7, deprecation = ?8, popularity = ?9, \
                 monthly_downloads = ?10, download_rank = ?11, updated_at = ?12, disabled = ?14 \
                 WHERE id = ?13",
            )
            .and_then(|mut s| {
                s.execute(params![
                    e.display_name,
                    e.description,
                    e.category,
                    serde_json::to_string(&e.tags).unwrap_or_default(),
                    serde_json::to_string(&e.keywords).unwrap_or_default(),
                    e.status.as_str(),
                    e.visibility.as_str(),
                    e.deprecation
                        .as_ref()
                        .map(|d| serde_json::to_string(d).unwrap_or_default()),
                    e.popularity.score,
                    e.popularity.monthly_downloads.map(|v| v as i64),
                    e.popularity.rank.map(i64::from),
                    now_ms(),
                    e.id,
                    e.disabled
                        .as_ref()
                        .map(|d| serde_json::to_string(d).unwrap_or_default()),
                ])
            })
            .context("updating an entry")?;
            if tags_changed {
                write_tags(tx, e.id, &e.tags, true)?;
            }
            feed(tx, FeedEntity::Entry, e.id, Some(e.id), FeedOp::Update)?;
            let e = get_entry_by_id(tx, e.id)?;
            commit_audit(tx, audit, &e)?;
            Ok(e)
        })
        .await
    }

    async fn get_entry(&self, key: &EntryKey) -> Result<Option<Entry>> {
        let key = key.clone();
        self.read(move |c| get_entry_conn(c, &key)).await
    }

    async fn version_names_by_id(&self, ids: &[i64]) -> Result<Vec<(i64, String)>> {
        let ids = ids.to_vec();
        self.read(move |c| {
            let mut out = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(500) {
                let placeholders = vec!["?"; chunk.len()].join(",");
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT id, version FROM versions WHERE id IN ({placeholders})"
                    ))
                    .context("preparing versions by id")?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(chunk.iter()), |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    .context("reading versions by id")?;
                out.extend(rows);
            }
            Ok(out)
        })
        .await
    }

    async fn get_entries_by_id(&self, ids: &[i64]) -> Result<Vec<Entry>> {
        let ids = ids.to_vec();
        self.read(move |c| {
            let mut out = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(500) {
                let placeholders = vec!["?"; chunk.len()].join(",");
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {ENTRY_COLS} FROM entries WHERE id IN ({placeholders})"
                    ))
                    .context("preparing entries by id")?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(chunk.iter()), entry_from_row)
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    .context("reading entries by id")?;
                out.extend(rows);
            }
            Ok(out)
        })
        .await
    }

    async fn list_entries(
        &self,
        filter: &EntryFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Entry>> {
        let after = cursor.map(decode_cursor).transpose()?.unwrap_or(0);
        let filter = filter.clone();
        self.read(move |c| {
            use rusqlite::types::Value as V;
            let mut sql = format!("SELECT {ENTRY_COLS} FROM entries WHERE id > ?");
            let mut args: Vec<V> = vec![V::Integer(after)];
            let mut any_of = |col: &str, vals: Vec<String>, sql: &mut String| {
                if !vals.is_empty() {
                    sql.push_str(&format!(
                        " AND {col} IN ({})",
                        vec!["?"; vals.len()].join(",")
                    ));
                    args.extend(vals.into_iter().map(V::Text));
                }
            };
            any_of(
                "kind",
                filter.kinds.iter().map(|k| k.as_str().to_string()).collect(),
                &mut sql,
            );
            any_of("namespace", filter.namespaces.clone(), &mut sql);
            any_of("category", filter.categories.clone(), &mut sql);
            any_of(
                "status",
                filter.statuses.iter().map(|s| s.as_str().to_string()).collect(),
                &mut sql,
            );
            any_of(
                "visibility",
                filter
                    .visibilities
                    .iter()
                    .map(|s| s.as_str().to_string())
                    .collect(),
                &mut sql,
            );
            if let Some(granted) = &filter.private_namespaces {
                sql.push_str(" AND (visibility <> 'private'");
                if !granted.is_empty() {
                    sql.push_str(&format!(
                        " OR namespace IN ({})",
                        vec!["?"; granted.len()].join(",")
                    ));
                    args.extend(granted.iter().cloned().map(V::Text));
                }
                sql.push(')');
            }
            for t in &filter.tags {
                sql.push_str(
                    " AND EXISTS (SELECT 1 FROM entry_tags t WHERE t.tag = ? AND t.entry_id = entries.id)",
                );
                args.push(V::Text(t.clone()));
            }
            sql.push_str(" ORDER BY id LIMIT ?");
            args.push(V::Integer(limit as i64 + 1));
            let mut stmt = c.prepare_cached(&sql).context("preparing a listing")?;
            let mut items = stmt
                .query_map(rusqlite::params_from_iter(args), entry_from_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .context("listing entries")?;
            let next_cursor = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|e| encode_cursor(e.id))
            } else {
                None
            };
            Ok(Page { items, next_cursor })
        })
        .await
    }

    async fn publish_version_audited(
        &self,
        key: &EntryKey,
        version: ValidVersion,
        audit: Audit,
    ) -> Result<Version> {
        let key = key.clone();
        self.write(move |tx| {
            let id = require_entry_id(tx, &key)?;
            insert_version(tx, id, &version)?;
            refresh_latest(tx, id)?;
            tx.prepare_cached(
                "UPDATE entries SET status = 'published' WHERE id = ?1 AND status = 'draft'",
            )
            .and_then(|mut s| s.execute([id]))
            .context("publishing a draft")?;
            let v = tx
                .prepare_cached(&format!(
                    "SELECT {VERSION_COLS} FROM versions WHERE entry_id = ?1 AND version = ?2"
                ))
                .and_then(|mut s| {
                    s.query_row(params![id, version.version.version], version_from_row)
                })
                .context("reading the new version")?;
            commit_audit(tx, audit, &v)?;
            Ok(v)
        })
        .await
    }

    async fn list_versions(&self, key: &EntryKey) -> Result<Vec<Version>> {
        let key = key.clone();
        self.read(move |c| {
            let id = require_entry_id(c, &key)?;
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {VERSION_COLS} FROM versions WHERE entry_id = ?1"
                ))
                .context("preparing versions")?;
            let mut vs = stmt
                .query_map([id], version_from_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .context("listing versions")?;
            vs.sort_by(|a, b| {
                let pa = SemverVersion::parse(&a.version).ok();
                let pb = SemverVersion::parse(&b.version).ok();
                pb.cmp(&pa)
            });
            Ok(vs)
        })
        .await
    }

    async fn list_versions_page(
        &self,
        key: &EntryKey,
        cursor: Option<&str>,
        limit: usize,
        manifests: bool,
    ) -> Result<Page<Version>> {
        let key = key.clone();
        let cursor = cursor.map(str::to_string);
        self.read(move |c| {
            let id = require_entry_id(c, &key)?;
            let mut vs = c
                .prepare_cached(&format!(
                    "SELECT {VERSION_COLS_NO_MANIFEST} FROM versions WHERE entry_id = ?1"
                ))
                .and_then(|mut stmt| {
                    stmt.query_map([id], version_from_row)
                        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                })
                .context("listing versions")?;
            quiver_store::sort_newest_first(&mut vs);
            let mut page = quiver_store::version_page(vs, cursor.as_deref(), limit)?;
            if manifests {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT manifest FROM versions WHERE entry_id = ?1 AND version = ?2",
                    )
                    .context("preparing a manifest read")?;
                let mut bytes = 0;
                for i in 0..page.items.len() {
                    if i > 0 && bytes >= quiver_store::MAX_PAGE_MANIFEST_BYTES {
                        quiver_store::cut_version_page(&mut page, i);
                        break;
                    }
                    let v = &mut page.items[i];
                    let m: String = stmt
                        .query_row(params![id, v.version], |r| r.get(0))
                        .context("reading a manifest")?;
                    bytes += m.len();
                    v.manifest = json_col(&m).context("decoding a manifest")?;
                }
            }
            Ok(page)
        })
        .await
    }

    async fn manifest_bytes(&self, key: &EntryKey) -> Result<u64> {
        let key = key.clone();
        self.read(move |c| {
            let id = require_entry_id(c, &key)?;
            c.prepare_cached(
                "SELECT COALESCE(SUM(length(CAST(manifest AS BLOB))), 0) FROM versions \
                 WHERE entry_id = ?1",
            )
            .and_then(|mut s| s.query_row([id], |r| r.get::<_, i64>(0)))
            .map(|n| n.max(0) as u64)
            .context("summing manifest sizes")
        })
        .await
    }

    async fn get_version(&self, key: &EntryKey, version: &str) -> Result<Option<Version>> {
        let key = key.clone();
        let version = version.to_string();
        self.read(move |c| {
            let id = require_entry_id(c, &key)?;
            c.prepare_cached(&format!(
                "SELECT {VERSION_COLS} FROM versions WHERE entry_id = ?1 AND version = ?2"
            ))
            .and_then(|mut s| {
                s.query_row(params![id, version], version_from_row)
                    .optional()
            })
            .context("reading a version")
        })
        .await
    }

    async fn latest_versions(&self, entry_ids: &[i64]) -> Result<Vec<(i64, Version)>> {
        let ids = entry_ids.to_vec();
        self.read(move |c| {
            let mut out = Vec::with_capacity(ids.len());
            let cols = VERSION_COLS
                .split(", ")
                .map(|col| format!("v.{}", col.trim()))
                .collect::<Vec<_>>()
                .join(", ");
            for chunk in ids.chunks(500) {
                let placeholders = vec!["?"; chunk.len()].join(",");
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT e.id, {cols} FROM entries e JOIN versions v \
                         ON v.entry_id = e.id AND v.version = e.latest_version \
                         WHERE e.id IN ({placeholders})"
                    ))
                    .context("preparing latest versions")?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(chunk.iter()), |r| {
                        let id: i64 = r.get(0)?;
                        Ok((id, version_from_row_at(r, 1)?))
                    })
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    .context("reading latest versions")?;
                out.extend(rows);
            }
            Ok(out)
        })
        .await
    }

    async fn set_yanked_audited(
        &self,
        key: &EntryKey,
        version: &str,
        yanked: bool,
        reason: Option<String>,
        audit: Audit,
    ) -> Result<Version> {
        let key = key.clone();
        let version = version.to_string();
        self.write(move |tx| {
            let id = require_entry_id(tx, &key)?;
            let vid = require_version_id(tx, id, &key, &version)?;
            let reason = if yanked { reason } else { None };
            set_yank_row(tx, vid, yanked, reason)?;
            refresh_latest(tx, id)?;
            feed(tx, FeedEntity::Version, vid, Some(id), FeedOp::Update)?;
            let v = tx
                .query_row(
                    &format!("SELECT {VERSION_COLS} FROM versions WHERE id = ?1"),
                    [vid],
                    version_from_row,
                )
                .context("reading the yanked version")?;
            commit_audit(tx, audit, &v)?;
            Ok(v)
        })
        .await
    }

    async fn set_version_disabled_audited(
        &self,
        key: &EntryKey,
        version: &str,
        disabled: Option<Disabled>,
        audit: Audit,
    ) -> Result<Version> {
        let key = key.clone();
        let version = version.to_string();
        self.write(move |tx| {
            let id = require_entry_id(tx, &key)?;
            let vid = require_version_id(tx, id, &key, &version)?;
            tx.prepare_cached("UPDATE versions SET disabled = ?1 WHERE id = ?2")
                .and_then(|mut s| {
                    s.execute(params![
                        disabled
                            .as_ref()
                            .map(|d| serde_json::to_string(d).unwrap_or_default()),
                        vid
                    ])
                })
                .context("disabling a version")?;
            refresh_latest(tx, id)?;
            feed(tx, FeedEntity::Version, vid, Some(id), FeedOp::Update)?;
            let v = tx
                .query_row(
                    &format!("SELECT {VERSION_COLS} FROM versions WHERE id = ?1"),
                    [vid],
                    version_from_row,
                )
                .context("reading the disabled version")?;
            commit_audit(tx, audit, &v)?;
            Ok(v)
        })
        .await
    }

    async fn delete_entry_audited(
        &self,
        key: &EntryKey,
        tombstone: NewTombstone,
        audit: Audit,
    ) -> Result<Tombstone> {
        let key = key.clone();
        self.write(move |tx| {
            let entry = get_entry_conn(tx, &key)?.ok_or_else(|| Error::not_found(&key))?;
            let id = entry.id;
            for sql in [
                "DELETE FROM versions WHERE entry_id = ?1",
                "DELETE FROM relations WHERE from_id = ?1 OR to_id = ?1",
                "DELETE FROM entry_tags WHERE entry_id = ?1",
                "DELETE FROM entries WHERE id = ?1",
            ] {
                tx.prepare_cached(sql)
                    .and_then(|mut s| s.execute([id]))
                    .context("deleting an entry")?;
            }
            let t = insert_tombstone(tx, &entry, None, &tombstone)?;
            feed(tx, FeedEntity::Entry, id, Some(id), FeedOp::Delete)?;
            commit_audit_change(tx, audit, Some(&entry), Some(&t))?;
            Ok(t)
        })
        .await
    }

    async fn delete_version_audited(
        &self,
        key: &EntryKey,
        version: &str,
        tombstone: NewTombstone,
        audit: Audit,
    ) -> Result<Tombstone> {
        let key = key.clone();
        let version = version.to_string();
        self.write(move |tx| {
            let entry = get_entry_conn(tx, &key)?.ok_or_else(|| Error::not_found(&key))?;
            let vid = require_version_id(tx, entry.id, &key, &version)?;
            tx.prepare_cached("DELETE FROM dist_tags WHERE entry_id = ?1 AND version = ?2")
                .and_then(|mut s| s.execute(params![entry.id, version]))
                .context("deleting a version's dist-tags")?;
            tx.prepare_cached("DELETE FROM versions WHERE id = ?1")
                .and_then(|mut s| s.execute([vid]))
                .context("deleting a version")?;
            refresh_latest(tx, entry.id)?;
            let t = insert_tombstone(tx, &entry, Some((&version, vid)), &tombstone)?;
            feed(tx, FeedEntity::Version, vid, Some(entry.id), FeedOp::Delete)?;
            commit_audit(tx, audit, &t)?;
            Ok(t)
        })
        .await
    }

    async fn tombstones(&self, key: &EntryKey) -> Result<Vec<Tombstone>> {
        let key = key.clone();
        self.read(move |c| {
            let nk = name_key(key.kind, &key.namespace, &key.name);
            c.prepare_cached(&format!(
                "SELECT {TOMBSTONE_COLS} FROM tombstones \
                 WHERE kind = ?1 AND namespace = ?2 AND name_key = ?3 ORDER BY id DESC"
            ))
            .and_then(|mut s| {
                s.query_map(
                    params![key.kind.as_str(), key.namespace, nk],
                    tombstone_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("reading tombstones")
        })
        .await
    }

    async fn tombstones_of_entries(&self, entry_ids: &[i64]) -> Result<Vec<Tombstone>> {
        let ids = entry_ids.to_vec();
        self.read(move |c| {
            let mut out = Vec::new();
            for chunk in ids.chunks(500) {
                let placeholders = vec!["?"; chunk.len()].join(",");
                let rows = c
                    .prepare(&format!(
                        "SELECT {TOMBSTONE_COLS} FROM tombstones WHERE entry_id IN ({placeholders})"
                    ))
                    .and_then(|mut s| {
                        s.query_map(rusqlite::params_from_iter(chunk.iter()), tombstone_from_row)?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .context("reading tombstones")?;
                out.extend(rows);
            }
            Ok(out)
        })
        .await
    }

    async fn incoming(
        &self,
        keys: &[EntryKey],
        kind: quiver_model::RelationKind,
    ) -> Result<Vec<Option<Incoming>>> {
        let keys = keys.to_vec();
        // One read connection for every key (a manifest's 50 packages and their skills).
        self.read(move |c| {
            let mut out = Vec::with_capacity(keys.len());
            for key in &keys {
                let Some(entry) = get_entry_conn(c, key)? else {
                    out.push(None);
                    continue;
                };
                let relations = c
                    .prepare_cached(
                        "SELECT r.kind, f.kind, f.namespace, f.name, t.kind, t.namespace, \
                         t.name, r.confidence, r.source, r.step_order FROM relations r \
                         JOIN entries f ON f.id = r.from_id JOIN entries t ON t.id = r.to_id \
                         WHERE r.to_id = ?1 AND r.kind = ?2 ORDER BY r.id",
                    )
                    .and_then(|mut stmt| {
                        stmt.query_map(params![entry.id, kind.as_str()], relation_from_row)
                            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    })
                    .context("listing relations")?;
                let mut with_sources = Vec::with_capacity(relations.len());
                for r in relations {
                    if let Some(from) = get_entry_conn(c, &r.from)? {
                        with_sources.push((r, from));
                    }
                }
                out.push(Some(Incoming {
                    entry,
                    relations: with_sources,
                }));
            }
            Ok(out)
        })
        .await
    }

    async fn skill_preferences(&self, user_id: i64) -> Result<Vec<SkillPreference>> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT p.ecosystem, p.package, e.kind, e.namespace, e.name, p.action, \
                 p.updated_at FROM skill_preferences p JOIN entries e ON e.id = p.skill_id \
                 WHERE p.user_id = ?1 ORDER BY p.ecosystem, p.package, e.namespace, e.name",
            )
            .and_then(|mut s| {
                s.query_map([user_id], |r| {
                    let kind: String = r.get(2)?;
                    let action: String = r.get(5)?;
                    Ok(SkillPreference {
                        ecosystem: r.get(0)?,
                        package: r.get(1)?,
                        skill: EntryKey::new(
                            kind.parse().unwrap_or(quiver_model::Kind::Skill),
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                        ),
                        action: PreferenceAction::parse(&action).unwrap_or(PreferenceAction::Hide),
                        updated_at: ts(r.get(6)?),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("reading skill preferences")
        })
        .await
    }

    async fn set_skill_preference(
        &self,
        user_id: i64,
        ecosystem: &str,
        package: &str,
        skill: &EntryKey,
        action: Option<PreferenceAction>,
        at: Timestamp,
    ) -> Result<()> {
        let (ecosystem, package, skill) =
            (ecosystem.to_string(), package.to_string(), skill.clone());
        self.write(move |tx| {
            let skill_id = require_entry_id(tx, &skill)?;
            match action {
                Some(a) => tx.execute(
                    "INSERT INTO skill_preferences (user_id, ecosystem, package, skill_id, \
                     action, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT \
                     (user_id, ecosystem, package, skill_id) DO UPDATE SET action = \
                     excluded.action, updated_at = excluded.updated_at",
                    params![
                        user_id,
                        ecosystem,
                        package,
                        skill_id,
                        a.as_str(),
                        at.as_millisecond()
                    ],
                ),
                None => tx.execute(
                    "DELETE FROM skill_preferences WHERE user_id = ?1 AND ecosystem = ?2 AND \
                     package = ?3 AND skill_id = ?4",
                    params![user_id, ecosystem, package, skill_id],
                ),
            }
            .context("writing a skill preference")?;
            Ok(())
        })
        .await
    }

    async fn record_events(&self, events: Vec<UsageEvent>) -> Result<EventsOutcome> {
        self.write(move |tx| {
            let mut out = EventsOutcome::default();
            for (i, e) in events.iter().enumerate() {
                let Some(id) = entry_id(tx, &e.entry)? else {
                    out.unknown.push(i);
                    continue;
                };
                let n = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO usage_events (id, kind, entry_id, version, \
                         project, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            e.id,
                            e.kind,
                            id,
                            e.version,
                            e.project,
                            e.at.as_millisecond()
                        ])
                    })
                    .context("recording an event")?;
                if n == 0 {
                    out.duplicates += 1;
                } else {
                    out.accepted += 1;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn co_installed(
        &self,
        key: &EntryKey,
        min_projects: u64,
        limit: usize,
    ) -> Result<Vec<CoInstall>> {
        let key = key.clone();
        self.read(move |c| {
            let Some(id) = entry_id(c, &key)? else {
                return Ok(Vec::new());
            };
            c.prepare_cached(
                "SELECT e.kind, e.namespace, e.name, COUNT(DISTINCT b.project) AS n \
                 FROM usage_events a JOIN usage_events b ON b.project = a.project \
                 AND b.kind = 'install' AND b.entry_id <> a.entry_id \
                 JOIN entries e ON e.id = b.entry_id \
                 WHERE a.entry_id = ?1 AND a.kind = 'install' AND a.project IS NOT NULL \
                 GROUP BY b.entry_id HAVING n >= ?2 ORDER BY n DESC, e.namespace, e.name \
                 LIMIT ?3",
            )
            .and_then(|mut s| {
                s.query_map(params![id, min_projects as i64, limit as i64], |r| {
                    let kind: String = r.get(0)?;
                    Ok(CoInstall {
                        entry: EntryKey::new(
                            kind.parse().unwrap_or(quiver_model::Kind::Package),
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                        ),
                        projects: r.get::<_, i64>(3)?.max(0) as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("finding co-installed entries")
        })
        .await
    }

    async fn resolution_sets(&self, keys: &[EntryKey]) -> Result<Vec<Option<ResolutionSet>>> {
        let keys = keys.to_vec();
        // One read connection for the whole set: a lock set of 100 references is 300
        // cached statements in-process, not 300 round trips through the blocking pool.
        self.read(move |c| {
            let mut out = Vec::with_capacity(keys.len());
            for key in &keys {
                let Some(entry) = get_entry_conn(c, key)? else {
                    out.push(None);
                    continue;
                };
                let mut versions = c
                    .prepare_cached(&format!(
                        "SELECT {VERSION_COLS_NO_MANIFEST} FROM versions WHERE entry_id = ?1"
                    ))
                    .and_then(|mut stmt| {
                        stmt.query_map([entry.id], version_from_row)
                            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    })
                    .context("listing versions")?;
                quiver_store::sort_newest_first(&mut versions);
                let tags = read_dist_tags(c, entry.id)?;
                out.push(Some(ResolutionSet {
                    entry,
                    versions,
                    tags,
                }));
            }
            Ok(out)
        })
        .await
    }

    async fn versions_of(&self, wanted: &[(EntryKey, String)]) -> Result<Vec<Option<Version>>> {
        let wanted = wanted.to_vec();
        self.read(move |c| {
            let mut out = Vec::with_capacity(wanted.len());
            for (key, version) in &wanted {
                let Some(id) = entry_id(c, key)? else {
                    out.push(None);
                    continue;
                };
                out.push(
                    c.prepare_cached(&format!(
                        "SELECT {VERSION_COLS} FROM versions WHERE entry_id = ?1 AND version = ?2"
                    ))
                    .and_then(|mut s| {
                        s.query_row(params![id, version], version_from_row)
                            .optional()
                    })
                    .context("reading a version")?,
                );
            }
            Ok(out)
        })
        .await
    }

    async fn dist_tags(&self, key: &EntryKey) -> Result<Vec<DistTag>> {
        let key = key.clone();
        self.read(move |c| {
            let Some(id) = entry_id(c, &key)? else {
                return Ok(Vec::new());
            };
            read_dist_tags(c, id)
        })
        .await
    }

    async fn set_dist_tag_audited(
        &self,
        key: &EntryKey,
        tag: &str,
        version: Option<&str>,
        at: Timestamp,
        audit: Audit,
    ) -> Result<Vec<DistTag>> {
        let key = key.clone();
        let tag = tag.to_string();
        let version = version.map(str::to_string);
        self.write(move |tx| {
            let id = require_entry_id(tx, &key)?;
            let before = read_dist_tags(tx, id)?;
            let old = before
                .iter()
                .find(|t| t.tag == tag)
                .map(|t| t.version.clone());
            if old == version {
                return Ok(before);
            }
            match &version {
                Some(v) => {
                    require_version_id(tx, id, &key, v)?;
                    tx.execute(
                        "INSERT INTO dist_tags (entry_id, tag, version, updated_at) VALUES \
                         (?1, ?2, ?3, ?4) ON CONFLICT (entry_id, tag) DO UPDATE SET \
                         version = excluded.version, updated_at = excluded.updated_at",
                        params![id, tag, v, at.as_millisecond()],
                    )
                    .context("setting a dist-tag")?;
                }
                None => {
                    tx.execute(
                        "DELETE FROM dist_tags WHERE entry_id = ?1 AND tag = ?2",
                        params![id, tag],
                    )
                    .context("removing a dist-tag")?;
                }
            }
            let after = read_dist_tags(tx, id)?;
            let tag_of = |v: &Option<String>| {
                v.as_ref()
                    .map(|v| serde_json::json!({"tag": tag, "version": v}))
            };
            accounts::commit_audit_change(
                tx,
                audit,
                tag_of(&old).as_ref(),
                tag_of(&version).as_ref(),
            )?;
            Ok(after)
        })
        .await
    }

    async fn set_validation(
        &self,
        key: &EntryKey,
        version: &str,
        validation: Validation,
    ) -> Result<Version> {
        let key = key.clone();
        let version = version.to_string();
        self.write(move |tx| {
            let id = require_entry_id(tx, &key)?;
            let vid = require_version_id(tx, id, &key, &version)?;
            tx.execute(
                "UPDATE versions SET validation = ?1 WHERE id = ?2",
                params![serde_json::to_string(&validation).unwrap_or_default(), vid],
            )
            .context("recording a validation")?;
            feed(tx, FeedEntity::Version, vid, Some(id), FeedOp::Update)?;
            tx.query_row(
                &format!("SELECT {VERSION_COLS} FROM versions WHERE id = ?1"),
                [vid],
                version_from_row,
            )
            .context("reading the validated version")
        })
        .await
    }

    async fn add_relation_audited(&self, relation: Relation, audit: Audit) -> Result<Relation> {
        self.write(move |tx| {
            let from = entry_id(tx, &relation.from)?.ok_or_else(|| {
                Error::invalid("from", format!("{} does not exist", relation.from))
            })?;
            let to = entry_id(tx, &relation.to)?
                .ok_or_else(|| Error::invalid("to", format!("{} does not exist", relation.to)))?;
            type Stored = (i64, Option<f64>, Option<String>, Option<i32>);
            let existing: Option<Stored> = tx
                .query_row(
                    "SELECT id, confidence, source, step_order FROM relations \
                     WHERE kind = ?1 AND from_id = ?2 AND to_id = ?3",
                    params![relation.kind.as_str(), from, to],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .context("reading a relation")?;
            let (rid, op) = match existing {
                Some((_, confidence, source, step_order))
                    if confidence == relation.confidence
                        && source == relation.source
                        && step_order == relation.step_order =>
                {
                    // Identical: nothing changes, so nothing is written (no feed row).
                    let from_key = get_entry_by_id(tx, from)?.key();
                    let to_key = get_entry_by_id(tx, to)?.key();
                    return Ok(Relation {
                        from: from_key,
                        to: to_key,
                        ..relation
                    });
                }
                Some((rid, ..)) => {
                    tx.execute(
                        "UPDATE relations SET confidence = ?1, source = ?2, step_order = ?3 WHERE id = ?4",
                        params![relation.confidence, relation.source, relation.step_order, rid],
                    )
                    .context("updating a relation")?;
                    (rid, FeedOp::Update)
                }
                None => {
                    tx.execute(
                        "INSERT INTO relations (kind, from_id, to_id, confidence, source, step_order, created_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            relation.kind.as_str(),
                            from,
                            to,
                            relation.confidence,
                            relation.source,
                            relation.step_order,
                            now_ms()
                        ],
                    )
                    .context("adding a relation")?;
                    (tx.last_insert_rowid(), FeedOp::Create)
                }
            };
            feed(tx, FeedEntity::Relation, rid, Some(from), op)?;
            let from_key = get_entry_by_id(tx, from)?.key();
            let to_key = get_entry_by_id(tx, to)?.key();
            let r = Relation {
                from: from_key,
                to: to_key,
                ..relation
            };
            commit_audit(tx, audit, &r)?;
            Ok(r)
        })
        .await
    }

    async fn list_relations(&self, key: &EntryKey, direction: Direction) -> Result<Vec<Relation>> {
        let key = key.clone();
        self.read(move |c| {
            let id = require_entry_id(c, &key)?;
            let cond = match direction {
                Direction::Outgoing => "r.from_id = ?1",
                Direction::Incoming => "r.to_id = ?1",
                Direction::Both => "(r.from_id = ?1 OR r.to_id = ?1)",
            };
            let sql = format!(
                "SELECT r.kind, f.kind, f.namespace, f.name, t.kind, t.namespace, t.name, \
                 r.confidence, r.source, r.step_order FROM relations r \
                 JOIN entries f ON f.id = r.from_id JOIN entries t ON t.id = r.to_id \
                 WHERE {cond} ORDER BY r.kind, r.step_order, r.id"
            );
            let mut stmt = c.prepare_cached(&sql).context("preparing relations")?;
            let rows = stmt
                .query_map([id], relation_from_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .context("listing relations")?;
            Ok(rows)
        })
        .await
    }

    async fn feed_since(&self, after: i64, limit: usize) -> Result<Vec<FeedEvent>> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, entity, entity_id, entry_id, op, at FROM feed \
                     WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .context("preparing feed read")?;
            let rows = stmt
                .query_map(params![after, limit as i64], |r| {
                    let entity: String = r.get(1)?;
                    let op: String = r.get(4)?;
                    Ok(FeedEvent {
                        seq: r.get(0)?,
                        entity: FeedEntity::parse(&entity).unwrap_or(FeedEntity::Entry),
                        entity_id: r.get(2)?,
                        entry_id: r.get(3)?,
                        op: FeedOp::parse(&op).unwrap_or(FeedOp::Update),
                        at: ts(r.get(5)?),
                    })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .context("reading the feed")?;
            Ok(rows)
        })
        .await
    }

    async fn entries_with_new_versions(
        &self,
        after: i64,
        through: i64,
        skip_namespaces: &[String],
    ) -> Result<Vec<i64>> {
        let skip = serde_json::to_string(skip_namespaces).unwrap_or_default();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT DISTINCT f.entry_id FROM feed f JOIN entries e ON e.id = f.entry_id \
                 WHERE f.seq > ?1 AND f.seq <= ?2 AND f.entity = 'version' AND f.op = 'create' \
                 AND e.namespace NOT IN (SELECT value FROM json_each(?3)) ORDER BY f.entry_id",
            )
            .and_then(|mut s| {
                s.query_map(params![after, through, skip], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<i64>>>()
            })
            .context("reading the feed's new versions")
        })
        .await
    }

    async fn feed_head(&self) -> Result<i64> {
        self.read(|c| {
            c.query_row("SELECT COALESCE(MAX(seq), 0) FROM feed", [], |r| r.get(0))
                .context("reading the feed head")
        })
        .await
    }

    async fn import_batch(&self, batch: Vec<ImportRecord>) -> Result<Vec<ImportOutcome>> {
        self.write(move |tx| {
            let mut outcomes = Vec::with_capacity(batch.len());
            let mut namespaces: Vec<String> = Vec::new();
            for rec in &batch {
                if !namespaces.contains(&rec.entry.namespace) {
                    ensure_namespace_tx(tx, &rec.entry.namespace, OwnerKind::Organisation)?;
                    namespaces.push(rec.entry.namespace.clone());
                }
                outcomes.push(import_one(tx, rec)?);
            }
            Ok(outcomes)
        })
        .await
    }

    async fn put_documents_audited(
        &self,
        docs: Vec<NewDocument>,
        audit: Audit,
    ) -> Result<Vec<ImportOutcome>> {
        self.write(move |tx| {
            let mut outcomes = Vec::with_capacity(docs.len());
            for d in &docs {
                let canonical = match quiver_model::validate::document(d) {
                    Ok(c) => c,
                    Err(e) => {
                        outcomes.push(ImportOutcome::Rejected(e));
                        continue;
                    }
                };
                let sha = quiver_model::manifest::sha256_hex(&canonical);
                let old: Option<(i64, String)> = tx
                    .prepare_cached("SELECT id, sha256 FROM documents WHERE collection = ?1 AND key = ?2")
                    .and_then(|mut st| {
                        st.query_row(params![d.collection, d.key], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()
                    })
                    .context("reading a document")?;
                let outcome = match old {
                    Some((_, old_sha)) if old_sha == sha => ImportOutcome::Unchanged,
                    Some((id, _)) => {
                        tx.prepare_cached(
                            "UPDATE documents SET body = ?2, sha256 = ?3, updated_at = ?4 WHERE id = ?1",
                        )
                        .and_then(|mut st| st.execute(params![id, canonical, sha, now_ms()]))
                        .context("updating a document")?;
                        feed(tx, FeedEntity::Document, id, None, FeedOp::Update)?;
                        ImportOutcome::Updated
                    }
                    None => {
                        let id: i64 = tx
                            .prepare_cached(
                                "INSERT INTO documents (collection, key, body, sha256, updated_at) \
                                 VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                            )
                            .and_then(|mut st| {
                                st.query_row(
                                    params![d.collection, d.key, canonical, sha, now_ms()],
                                    |r| r.get(0),
                                )
                            })
                            .context("inserting a document")?;
                        feed(tx, FeedEntity::Document, id, None, FeedOp::Create)?;
                        ImportOutcome::Created
                    }
                };
                outcomes.push(outcome);
            }
            if outcomes.iter().any(|o| !matches!(o, ImportOutcome::Rejected(_))) {
                accounts::commit_audit(tx, audit, &serde_json::Value::Null)?;
            }
            Ok(outcomes)
        })
        .await
    }

    async fn get_document(&self, collection: &str, key: &str) -> Result<Option<Document>> {
        let (collection, key) = (collection.to_string(), key.to_string());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT collection, key, body, sha256, updated_at FROM documents \
                 WHERE collection = ?1 AND key = ?2",
            )
            .and_then(|mut st| {
                st.query_row(params![collection, key], document_from_row)
                    .optional()
            })
            .context("reading a document")
        })
        .await
    }

    async fn list_documents(
        &self,
        collection: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Document>> {
        let after = cursor.map(quiver_store::decode_key_cursor).transpose()?;
        let collection = collection.to_string();
        let limit = limit.clamp(1, 10_000);
        self.read(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT collection, key, body, sha256, updated_at FROM documents \
                     WHERE collection = ?1 AND key > ?2 ORDER BY key LIMIT ?3",
                )
                .context("preparing a document list")?;
            let items = st
                .query_map(
                    params![collection, after.unwrap_or_default(), limit as i64 + 1],
                    document_from_row,
                )
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .context("listing documents")?;
            Ok(quiver_store::page_by_key(items, limit))
        })
        .await
    }

    async fn document_collections(&self) -> Result<Vec<(String, u64)>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT collection, COUNT(*) FROM documents GROUP BY collection ORDER BY collection",
                )
                .context("preparing the collection list")?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .context("listing collections")?;
            Ok(rows)
        })
        .await
    }

    async fn stats(&self) -> Result<StoreStats> {
        let path = self.inner.path.clone();
        self.read(move |c| {
            let count = |sql: &str| -> Result<u64> {
                c.query_row(sql, [], |r| r.get::<_, i64>(0))
                    .map(|v| v as u64)
                    .context("counting rows")
            };
            let size = ["", "-wal", "-shm"]
                .iter()
                .filter_map(|suffix| {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    std::fs::metadata(p).ok().map(|m| m.len())
                })
                .sum();
            Ok(StoreStats {
                entries: count("SELECT COUNT(*) FROM entries")?,
                versions: count("SELECT COUNT(*) FROM versions")?,
                relations: count("SELECT COUNT(*) FROM relations")?,
                feed_head: c
                    .query_row("SELECT COALESCE(MAX(seq), 0) FROM feed", [], |r| r.get(0))
                    .context("reading the feed head")?,
                size_bytes: Some(size),
            })
        })
        .await
    }
}
