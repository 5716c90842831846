//! The [`Store`] implementation: row mapping, the write transaction with its feed lock,
//! and every trait method except the bulk import (see `import.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use quiver_model::names::name_key;
use quiver_model::validate::SemverVersion;
use quiver_model::{
    Context, Deprecation, Disabled, Document, Entry, EntryKey, EntryPatch, Error, FeedEntity,
    FeedEvent, FeedOp, Namespace, NewDocument, NewEntry, OwnerKind, Popularity, Relation, Result,
    Status, Tombstone, Version, Visibility,
};
use quiver_store::{
    Audit, Direction, DistTag, EntryFilter, ImportOutcome, ImportRecord, NewTombstone, Page,
    PreferenceAction, SkillPreference, Store, StoreStats, ValidVersion,
};
use quiver_store::{CoInstall, EventsOutcome, Incoming, ResolutionSet, UsageEvent};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::accounts::{commit_audit, commit_audit_change};
use crate::{PostgresStore, FEED_LOCK};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn document_from_row(r: &Row) -> Result<Document> {
    let body: String = r.get(2);
    Ok(Document {
        collection: r.get(0),
        key: r.get(1),
        body: serde_json::from_str(&body).context("reading a stored document body")?,
        sha256: r.get(3),
        updated_at: ts(r.get(4)),
    })
}

/// A version by id, inside a write (after changing it).
async fn read_version(w: &Writer<'_>, vid: i64, what: &str) -> Result<Version> {
    let row =
        w.tx.query_one(
            &format!("SELECT {VERSION_COLS} FROM versions WHERE id = $1"),
            &[&vid],
        )
        .await
        .context(what)?;
    version_from_row(&row)
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// A write transaction.
///
/// Two ways to append to the feed (see the crate's notes on the feed):
/// - **through the outbox** (the default): [`Writer::feed`] inserts an unnumbered row into
///   `feed_outbox`; the transaction commits without any global lock (so commits of
///   concurrent writers are flushed together), and the caller then numbers the committed
///   rows with [`PostgresStore::sequence`], which every writer calls after its commit.
///   Writers that read, decide and write one entry lock that entry's row
///   ([`Writer::lock_entry`]), so two writes to one entry are serialized and writes to
///   different entries are not;
/// - **under the feed lock** ([`Writer::lock_feed`]): the transaction is serialized with
///   every other feed-locked writer and with the sequencer, and numbers its feed rows
///   itself (bulk imports, accounts and documents: rare writes whose checks span rows).
pub(crate) struct Writer<'a> {
    pub(crate) tx: deadpool_postgres::Transaction<'a>,
    lock_key: i32,
    /// Whether the feed lock is held (from [`Writer::lock_feed`] to the commit).
    locked: bool,
    /// The last seq written under the feed lock (or the committed head when taken).
    pub(crate) head: i64,
    start: i64,
    /// Whether rows went to the outbox, to be numbered after the commit.
    outboxed: bool,
}

impl<'a> Writer<'a> {
    pub(crate) async fn begin(
        client: &'a mut deadpool_postgres::Object,
        lock_key: i32,
    ) -> Result<Writer<'a>> {
        let tx = client
            .transaction()
            .await
            .context("beginning a write transaction")?;
        Ok(Writer {
            tx,
            lock_key,
            locked: false,
            head: 0,
            start: 0,
            outboxed: false,
        })
    }

    /// Serialize this transaction with every feed writer: take the feed lock (held to the
    /// commit) and read the committed head; feed rows are then numbered here.
    pub(crate) async fn lock_feed(&mut self) -> Result<()> {
        if self.locked {
            return Ok(());
        }
        self.head = take_feed_lock(&self.tx, self.lock_key).await?;
        self.start = self.head;
        self.locked = true;
        Ok(())
    }

    /// Lock one entry's row to the commit: writes that read and then change an entry
    /// (its latest version, its tags, a yank) are serialized per entry.
    pub(crate) async fn lock_entry(&self, id: i64) -> Result<()> {
        let stmt = self
            .tx
            .prepare_cached("SELECT 1 FROM entries WHERE id = $1 FOR UPDATE")
            .await
            .context("preparing an entry lock")?;
        self.tx
            .execute(&stmt, &[&id])
            .await
            .context("locking an entry")?;
        Ok(())
    }

    pub(crate) async fn feed(
        &mut self,
        entity: FeedEntity,
        entity_id: i64,
        entry_id: Option<i64>,
        op: FeedOp,
    ) -> Result<()> {
        if !self.locked {
            let stmt = self
                .tx
                .prepare_cached(
                    "INSERT INTO feed_outbox (entity, entity_id, entry_id, op, at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .await
                .context("preparing the feed outbox append")?;
            self.tx
                .execute(
                    &stmt,
                    &[
                        &entity.as_str(),
                        &entity_id,
                        &entry_id,
                        &op.as_str(),
                        &now_ms(),
                    ],
                )
                .await
                .context("appending to the feed outbox")?;
            self.outboxed = true;
            return Ok(());
        }
        let stmt = self
            .tx
            .prepare_cached(
                "INSERT INTO feed (seq, entity, entity_id, entry_id, op, at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .await
            .context("preparing the feed append")?;
        let seq = self.head + 1;
        self.tx
            .execute(
                &stmt,
                &[
                    &seq,
                    &entity.as_str(),
                    &entity_id,
                    &entry_id,
                    &op.as_str(),
                    &now_ms(),
                ],
            )
            .await
            .context("appending to the change feed")?;
        self.head = seq;
        Ok(())
    }

    /// Reserve `n` feed positions (for a bulk append, under the feed lock); returns the
    /// first.
    pub(crate) async fn reserve(&mut self, n: usize) -> Result<i64> {
        self.lock_feed().await?;
        let first = self.head + 1;
        self.head += n as i64;
        Ok(first)
    }

    /// Signal the new head (delivered on commit) and commit. Answers whether rows went to
    /// the outbox: then the caller numbers them with [`PostgresStore::sequence`] before
    /// it acknowledges the write.
    #[must_use = "rows in the outbox must be sequenced before the write is acknowledged"]
    pub(crate) async fn commit(self, channel: &str) -> Result<Committed> {
        if self.head > self.start {
            // This commit is flushed before it is seen: its head is durable with it.
            self.tx
                .execute(
                    "WITH d AS (INSERT INTO feed_durable (head) VALUES ($3)) \
                     SELECT pg_notify($1, $2)",
                    &[&channel, &self.head.to_string(), &self.head],
                )
                .await
                .context("notifying the feed")?;
        }
        self.tx.commit().await.context("committing")?;
        Ok(Committed {
            outboxed: self.outboxed,
        })
    }
}

/// A committed write: whether its feed rows still wait in the outbox.
pub(crate) struct Committed {
    pub(crate) outboxed: bool,
}

/// Take the feed lock in `tx` and read the committed head.
async fn take_feed_lock(tx: &deadpool_postgres::Transaction<'_>, lock_key: i32) -> Result<i64> {
    let lock = tx
        .prepare_cached("SELECT pg_advisory_xact_lock($1::int4, $2::int4)")
        .await
        .context("preparing the feed lock")?;
    tx.execute(&lock, &[&FEED_LOCK, &lock_key])
        .await
        .context("taking the feed lock")?;
    // A new statement, so a new snapshot: it sees every transaction that held the lock
    // before us (they released it only after their commit became visible).
    let head_stmt = tx
        .prepare_cached("SELECT COALESCE(MAX(seq), 0)::int8 FROM feed")
        .await
        .context("preparing the feed head")?;
    Ok(tx
        .query_one(&head_stmt, &[])
        .await
        .context("reading the feed head")?
        .get(0))
}

/// The highest durable head: readers of the feed see rows up to it (migration
/// `0013_feed_durable`).
pub(crate) const DURABLE_HEAD: &str = "(SELECT COALESCE(MAX(head), 0) FROM feed_durable)";

/// Number every committed outbox row, in outbox order, after the head (one statement).
const SEQUENCE: &str = "\
WITH moved AS (
    DELETE FROM feed_outbox RETURNING id, entity, entity_id, entry_id, op, at
), numbered AS (
    INSERT INTO feed (seq, entity, entity_id, entry_id, op, at)
    SELECT $1::int8 + row_number() OVER (ORDER BY id), entity, entity_id, entry_id, op, at
    FROM moved
    RETURNING seq
)
SELECT COALESCE(MAX(seq), 0)::int8 FROM numbered";

/// Sequencer runs of this process between two prunings of old durable heads.
const PRUNE_EVERY: u64 = 1_000;
static SEQUENCED: AtomicU64 = AtomicU64::new(0);

impl PostgresStore {
    /// The sequencer: under the feed lock, move every committed outbox row into the feed
    /// with the next positions, and notify the new head. A writer calls it after its
    /// commit and before acknowledging, so its rows are in the feed when it answers
    /// (whoever numbered them: a sequencer that ran after its commit moved them too).
    /// Rows left by a writer that crashed between its commit and this are numbered by the
    /// next write, or when a node starts ([`PostgresStore::connect_with`]).
    ///
    /// The sequencer's transaction is short (lock, head, one statement, commit) and
    /// numbers every writer's rows committed so far, so concurrent writers share its
    /// commit; a sequencer that finds the outbox empty writes nothing and its commit
    /// flushes nothing.
    pub(crate) async fn sequence(&self, client: &mut deadpool_postgres::Object) -> Result<()> {
        let tx = client
            .transaction()
            .await
            .context("beginning to number the feed")?;
        // Not flushed under the lock (that would serialize every writer's flush): the
        // durable head below makes the numbering visible once it is flushed.
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .await
            .context("numbering the feed without waiting for its flush")?;
        let head = take_feed_lock(&tx, self.inner.lock_key).await?;
        let stmt = tx
            .prepare_cached(SEQUENCE)
            .await
            .context("preparing the feed's numbering")?;
        let last: i64 = tx
            .query_one(&stmt, &[&head])
            .await
            .context("numbering the feed")?
            .get(0);
        tx.commit()
            .await
            .context("committing the feed's numbering")?;
        // A flushed commit after it (WAL is written in order) makes the numbering up to
        // here durable, and only then visible to readers, whom the NOTIFY wakes.
        let durable = last.max(head);
        let barrier = client
            .prepare_cached(
                "WITH d AS (INSERT INTO feed_durable (head) VALUES ($3)) \
                 SELECT pg_notify($1, $2)",
            )
            .await
            .context("preparing the feed's durable head")?;
        client
            .execute(
                &barrier,
                &[&self.inner.channel, &durable.to_string(), &durable],
            )
            .await
            .context("recording the feed's durable head")?;
        if SEQUENCED.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            client
                .execute(
                    "DELETE FROM feed_durable WHERE head < (SELECT MAX(head) FROM feed_durable)",
                    &[],
                )
                .await
                .context("pruning old durable heads")?;
        }
        Ok(())
    }

    /// Sequence the outbox when the commit left rows there.
    pub(crate) async fn after_commit(
        &self,
        client: &mut deadpool_postgres::Object,
        committed: Committed,
    ) -> Result<()> {
        if committed.outboxed {
            self.sequence(client).await?;
        }
        Ok(())
    }
}

fn parse_enum<T: std::str::FromStr>(s: &str) -> std::result::Result<T, BoxError> {
    s.parse::<T>()
        .map_err(|_| format!("bad enum value {s}").into())
}

pub(crate) const ENTRY_COLS: &str = "id, kind, namespace, name, display_name, description, \
     category, tags, keywords, status, visibility, deprecation, popularity, monthly_downloads, \
     download_rank, latest_version, created_at, updated_at, disabled";

fn decode_entry(r: &Row) -> std::result::Result<Entry, BoxError> {
    let tags: String = r.try_get(7)?;
    let keywords: String = r.try_get(8)?;
    let deprecation: Option<String> = r.try_get(11)?;
    let disabled: Option<String> = r.try_get(18)?;
    let kind: String = r.try_get(1)?;
    let status: String = r.try_get(9)?;
    let visibility: String = r.try_get(10)?;
    Ok(Entry {
        id: r.try_get(0)?,
        kind: parse_enum(&kind)?,
        namespace: r.try_get(2)?,
        name: r.try_get(3)?,
        display_name: r.try_get(4)?,
        description: r.try_get(5)?,
        category: r.try_get(6)?,
        tags: serde_json::from_str(&tags)?,
        keywords: serde_json::from_str(&keywords)?,
        status: parse_enum(&status)?,
        visibility: parse_enum(&visibility)?,
        deprecation: deprecation
            .as_deref()
            .map(serde_json::from_str::<Deprecation>)
            .transpose()?,
        popularity: Popularity {
            score: r.try_get(12)?,
            monthly_downloads: r.try_get::<_, Option<i64>>(13)?.map(|v| v as u64),
            rank: r.try_get::<_, Option<i64>>(14)?.map(|v| v as u32),
        },
        latest_version: r.try_get(15)?,
        created_at: ts(r.try_get(16)?),
        updated_at: ts(r.try_get(17)?),
        disabled: disabled
            .as_deref()
            .map(serde_json::from_str::<Disabled>)
            .transpose()?,
    })
}

pub(crate) fn entry_from_row(r: &Row) -> Result<Entry> {
    decode_entry(r).context("decoding an entry")
}

const VERSION_COLS: &str = "version, manifest, sha256, changelog, breaking, yanked, yank_reason, \
     published_at, validation, disabled";
/// How many columns [`VERSION_COLS`] names (a column after them is at this index).
const VERSION_COL_COUNT: usize = 10;
/// [`VERSION_COLS`] with a `null` manifest: a version's row without reading its manifest.
const VERSION_COLS_NO_MANIFEST: &str = "version, 'null'::text, sha256, changelog, breaking, \
     yanked, yank_reason, published_at, validation, disabled";

fn decode_version(r: &Row) -> std::result::Result<Version, BoxError> {
    let manifest: String = r.try_get(1)?;
    Ok(Version {
        version: r.try_get(0)?,
        manifest: serde_json::from_str(&manifest)?,
        sha256: r.try_get(2)?,
        changelog: r.try_get(3)?,
        breaking: r.try_get(4)?,
        yanked: r.try_get(5)?,
        yank_reason: r.try_get(6)?,
        published_at: ts(r.try_get(7)?),
        validation: r
            .try_get::<_, Option<String>>(8)?
            .as_deref()
            .map(serde_json::from_str)
            .transpose()?,
        disabled: r
            .try_get::<_, Option<String>>(9)?
            .as_deref()
            .map(serde_json::from_str::<Disabled>)
            .transpose()?,
    })
}

const TOMBSTONE_COLS: &str = "kind, namespace, name, version, entry_id, version_id, visibility, \
     reason, actor, by_admin, deleted_at";

fn decode_tombstone(r: &Row) -> std::result::Result<Tombstone, BoxError> {
    let kind: String = r.try_get(0)?;
    let visibility: String = r.try_get(6)?;
    Ok(Tombstone {
        kind: parse_enum(&kind)?,
        namespace: r.try_get(1)?,
        name: r.try_get(2)?,
        version: r.try_get(3)?,
        entry_id: r.try_get(4)?,
        version_id: r.try_get(5)?,
        visibility: parse_enum(&visibility)?,
        reason: r.try_get(7)?,
        actor: r.try_get(8)?,
        by_admin: r.try_get(9)?,
        deleted_at: ts(r.try_get(10)?),
    })
}

fn tombstone_from_row(r: &Row) -> Result<Tombstone> {
    decode_tombstone(r).context("decoding a tombstone")
}

/// Write a tombstone for `entry` (and `version`, with its id) and read it back.
async fn insert_tombstone(
    w: &Writer<'_>,
    entry: &Entry,
    version: Option<(&str, i64)>,
    t: &NewTombstone,
) -> Result<Tombstone> {
    let row =
        w.tx.query_one(
            &format!(
                "INSERT INTO tombstones (kind, namespace, name, name_key, version, entry_id, \
                 version_id, visibility, reason, actor, by_admin, deleted_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 RETURNING {TOMBSTONE_COLS}"
            ),
            &[
                &entry.kind.as_str(),
                &entry.namespace,
                &entry.name,
                &name_key(entry.kind, &entry.namespace, &entry.name),
                &version.map(|v| v.0),
                &entry.id,
                &version.map(|v| v.1),
                &entry.visibility.as_str(),
                &t.reason,
                &t.actor,
                &t.by_admin,
                &now_ms(),
            ],
        )
        .await
        .context("writing a tombstone")?;
    tombstone_from_row(&row)
}

#[test]
fn the_version_column_count_is_the_list() {
    assert_eq!(VERSION_COLS.split(", ").count(), VERSION_COL_COUNT);
    assert_eq!(
        VERSION_COLS_NO_MANIFEST.split(", ").count(),
        VERSION_COL_COUNT
    );
}

fn version_from_row(r: &Row) -> Result<Version> {
    decode_version(r).context("decoding a version")
}

fn decode_relation(r: &Row) -> std::result::Result<Relation, BoxError> {
    let kind: String = r.try_get(0)?;
    let from_kind: String = r.try_get(1)?;
    let to_kind: String = r.try_get(4)?;
    Ok(Relation {
        kind: parse_enum(&kind)?,
        from: EntryKey {
            kind: parse_enum(&from_kind)?,
            namespace: r.try_get(2)?,
            name: r.try_get(3)?,
        },
        to: EntryKey {
            kind: parse_enum(&to_kind)?,
            namespace: r.try_get(5)?,
            name: r.try_get(6)?,
        },
        confidence: r.try_get(7)?,
        source: r.try_get(8)?,
        step_order: r.try_get(9)?,
    })
}

async fn get_entry_conn<C: GenericClient>(c: &C, key: &EntryKey) -> Result<Option<Entry>> {
    let nk = name_key(key.kind, &key.namespace, &key.name);
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {ENTRY_COLS} FROM entries WHERE kind = $1 AND namespace = $2 AND name_key = $3"
        ))
        .await
        .context("preparing an entry lookup")?;
    c.query_opt(&stmt, &[&key.kind.as_str(), &key.namespace, &nk])
        .await
        .context("reading an entry")?
        .as_ref()
        .map(entry_from_row)
        .transpose()
}

pub(crate) async fn entry_id<C: GenericClient>(c: &C, key: &EntryKey) -> Result<Option<i64>> {
    let nk = name_key(key.kind, &key.namespace, &key.name);
    let stmt = c
        .prepare_cached(
            "SELECT id FROM entries WHERE kind = $1 AND namespace = $2 AND name_key = $3",
        )
        .await
        .context("preparing an entry lookup")?;
    Ok(
        c.query_opt(&stmt, &[&key.kind.as_str(), &key.namespace, &nk])
            .await
            .context("resolving an entry")?
            .map(|r| r.get(0)),
    )
}

async fn require_version_id<C: GenericClient>(
    c: &C,
    entry_id: i64,
    key: &EntryKey,
    version: &str,
) -> Result<i64> {
    c.query_opt(
        "SELECT id FROM versions WHERE entry_id = $1 AND version = $2",
        &[&entry_id, &version],
    )
    .await
    .context("resolving a version")?
    .map(|r| r.get(0))
    .ok_or_else(|| Error::not_found(format!("version {version} of {key}")))
}

/// The entries of many keys in one query: `(position in keys, entry)` for those that
/// exist.
async fn entries_of<C: GenericClient>(c: &C, keys: &[EntryKey]) -> Result<Vec<(usize, Entry)>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let kinds: Vec<&str> = keys.iter().map(|k| k.kind.as_str()).collect();
    let namespaces: Vec<&str> = keys.iter().map(|k| k.namespace.as_str()).collect();
    let name_keys: Vec<String> = keys
        .iter()
        .map(|k| name_key(k.kind, &k.namespace, &k.name))
        .collect();
    let sql = format!(
        "SELECT {}, k.ord FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY \
         AS k(kind, namespace, name_key, ord) JOIN entries e ON e.kind = k.kind AND \
         e.namespace = k.namespace AND e.name_key = k.name_key",
        ENTRY_COLS
            .split(", ")
            .map(|c| format!("e.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rows = c
        .query(&sql, &[&kinds, &namespaces, &name_keys])
        .await
        .context("reading entries")?;
    rows.iter()
        .map(|r| {
            let ord: i64 = r
                .try_get(ENTRY_COLS.split(", ").count())
                .context("decoding an entry")?;
            Ok((ord as usize - 1, entry_from_row(r)?))
        })
        .collect()
}

/// An entry's dist-tags, by tag (byte order, as SQLite sorts).
async fn read_dist_tags<C: GenericClient>(c: &C, entry_id: i64) -> Result<Vec<DistTag>> {
    let rows = c
        .query(
            "SELECT tag, version, updated_at FROM dist_tags WHERE entry_id = $1 \
             ORDER BY tag COLLATE \"C\"",
            &[&entry_id],
        )
        .await
        .context("reading dist-tags")?;
    rows.iter()
        .map(|r| {
            let decode = || -> std::result::Result<DistTag, BoxError> {
                Ok(DistTag {
                    tag: r.try_get(0)?,
                    version: r.try_get(1)?,
                    updated_at: jiff::Timestamp::from_millisecond(r.try_get(2)?)
                        .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                })
            };
            decode().context("decoding a dist-tag")
        })
        .collect()
}

pub(crate) async fn require_entry_id<C: GenericClient>(c: &C, key: &EntryKey) -> Result<i64> {
    entry_id(c, key).await?.ok_or_else(|| Error::not_found(key))
}

async fn get_entry_by_id<C: GenericClient>(c: &C, id: i64) -> Result<Entry> {
    let stmt = c
        .prepare_cached(&format!("SELECT {ENTRY_COLS} FROM entries WHERE id = $1"))
        .await
        .context("preparing an entry read")?;
    let row = c
        .query_one(&stmt, &[&id])
        .await
        .context("reading an entry by id")?;
    entry_from_row(&row)
}

/// A namespace by name (in a transaction when `c` is one).
pub(crate) async fn namespace_by_name(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<Namespace>> {
    let stmt = c
        .prepare_cached(
            "SELECT name, owner_kind, display_name, created_at FROM namespaces WHERE name = $1",
        )
        .await
        .context("preparing a namespace read")?;
    let Some(r) = c
        .query_opt(&stmt, &[&name])
        .await
        .context("reading a namespace")?
    else {
        return Ok(None);
    };
    let decode = || -> std::result::Result<Namespace, BoxError> {
        let owner: String = r.try_get(1)?;
        Ok(Namespace {
            name: r.try_get(0)?,
            owner_kind: parse_enum(&owner)?,
            display_name: r.try_get(2)?,
            created_at: ts(r.try_get(3)?),
        })
    };
    decode().context("decoding a namespace").map(Some)
}

pub(crate) async fn ensure_namespace_tx(
    w: &mut Writer<'_>,
    name: &str,
    owner: OwnerKind,
) -> Result<()> {
    let stmt =
        w.tx.prepare_cached(
            "INSERT INTO namespaces (name, owner_kind, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .await
        .context("preparing a namespace insert")?;
    let rows =
        w.tx.query(&stmt, &[&name, &owner.as_str(), &now_ms()])
            .await
            .context("creating a namespace")?;
    if let Some(r) = rows.first() {
        w.feed(FeedEntity::Namespace, r.get(0), None, FeedOp::Create)
            .await?;
    }
    Ok(())
}

async fn write_tags(w: &Writer<'_>, id: i64, tags: &[String], replace: bool) -> Result<()> {
    if replace {
        w.tx.execute("DELETE FROM entry_tags WHERE entry_id = $1", &[&id])
            .await
            .context("clearing tags")?;
    }
    if !tags.is_empty() {
        let stmt =
            w.tx.prepare_cached(
                "INSERT INTO entry_tags (tag, entry_id) SELECT t, $2 FROM unnest($1::text[]) AS t \
                 ON CONFLICT DO NOTHING",
            )
            .await
            .context("preparing tag insert")?;
        w.tx.execute(&stmt, &[&tags, &id])
            .await
            .context("writing tags")?;
    }
    Ok(())
}

fn json_text<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

async fn insert_entry(w: &mut Writer<'_>, e: &NewEntry, status: Status) -> Result<i64> {
    let now = now_ms();
    let pop = e.popularity.clone().unwrap_or_default();
    let stmt = w
        .tx
        .prepare_cached(
            "INSERT INTO entries (kind, namespace, name, name_key, display_name, description, \
             category, tags, keywords, status, visibility, deprecation, popularity, \
             monthly_downloads, download_rank, latest_version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12, $13, $14, NULL, $15, $15) \
             RETURNING id",
        )
        .await
        .context("preparing an entry insert")?;
    let res =
        w.tx.query_one(
            &stmt,
            &[
                &e.kind.as_str(),
                &e.namespace,
                &e.name,
                &name_key(e.kind, &e.namespace, &e.name),
                &e.display_name,
                &e.description,
                &e.category,
                &json_text(&e.tags),
                &json_text(&e.keywords),
                &status.as_str(),
                &e.visibility.unwrap_or(Visibility::Public).as_str(),
                &pop.score,
                &pop.monthly_downloads.map(|v| v as i64),
                &pop.rank.map(i64::from),
                &now,
            ],
        )
        .await;
    let id: i64 = match res {
        Ok(row) => row.get(0),
        Err(err) if is_unique_violation(&err) => {
            let key = EntryKey::new(e.kind, &e.namespace, &e.name);
            return Err(Error::conflict("name", format!("{key} already exists")));
        }
        Err(err) => return Err(Error::internal("creating an entry", err)),
    };
    write_tags(w, id, &e.tags, false).await?;
    w.feed(FeedEntity::Entry, id, Some(id), FeedOp::Create)
        .await?;
    Ok(id)
}

fn version_conflict(version: &str) -> Error {
    Error::conflict(
        "version",
        format!("version {version} is already published; versions are immutable"),
    )
}

async fn insert_version(w: &mut Writer<'_>, entry_id: i64, v: &ValidVersion) -> Result<i64> {
    let stmt =
        w.tx.prepare_cached(
            "INSERT INTO versions (entry_id, version, manifest, sha256, changelog, breaking, \
             yanked, yank_reason, published_at) VALUES ($1, $2, $3, $4, $5, $6, FALSE, NULL, $7) \
             RETURNING id",
        )
        .await
        .context("preparing a version insert")?;
    let res =
        w.tx.query_one(
            &stmt,
            &[
                &entry_id,
                &v.version.version,
                &v.canonical,
                &v.sha256,
                &v.version.changelog,
                &v.version.breaking,
                &now_ms(),
            ],
        )
        .await;
    let id: i64 = match res {
        Ok(row) => row.get(0),
        Err(err) if is_unique_violation(&err) => return Err(version_conflict(&v.version.version)),
        Err(err) => return Err(Error::internal("publishing a version", err)),
    };
    w.feed(FeedEntity::Version, id, Some(entry_id), FeedOp::Create)
        .await?;
    Ok(id)
}

/// The latest version among `versions` (unyanked ones): the highest release, else the
/// highest pre-release, else none. The same rule as the SQLite backend.
pub(crate) fn latest_of<'v>(versions: impl IntoIterator<Item = &'v str>) -> Option<String> {
    let parsed: Vec<SemverVersion> = versions
        .into_iter()
        .filter_map(|v| SemverVersion::parse(v).ok())
        .collect();
    quiver_store::latest_of(parsed.iter())
}

/// Recompute an entry's latest version.
async fn refresh_latest(w: &Writer<'_>, entry_id: i64) -> Result<Option<String>> {
    let stmt =
        w.tx.prepare_cached(
            "SELECT version FROM versions WHERE entry_id = $1 AND NOT yanked AND disabled IS NULL",
        )
        .await
        .context("preparing latest-version query")?;
    let rows =
        w.tx.query(&stmt, &[&entry_id])
            .await
            .context("reading versions")?;
    let latest = latest_of(rows.iter().map(|r| r.get::<_, &str>(0)));
    w.tx.execute(
        "UPDATE entries SET latest_version = $1, updated_at = $2 WHERE id = $3",
        &[&latest, &now_ms(), &entry_id],
    )
    .await
    .context("updating latest version")?;
    Ok(latest)
}

async fn set_yank_row(
    w: &Writer<'_>,
    vid: i64,
    yanked: bool,
    reason: Option<String>,
) -> Result<()> {
    w.tx.execute(
        "UPDATE versions SET yanked = $1, yank_reason = $2 WHERE id = $3",
        &[&yanked, &reason, &vid],
    )
    .await
    .context("yanking a version")?;
    Ok(())
}

pub(crate) fn encode_cursor(id: i64) -> String {
    quiver_model::cursor::encode("entries", &id)
}

pub(crate) fn decode_cursor(c: &str) -> Result<i64> {
    quiver_model::cursor::decode("entries", c)
}

impl PostgresStore {
    pub(crate) async fn pooled(&self) -> Result<deadpool_postgres::Object> {
        self.client().await
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ensure_namespace(&self, name: &str, owner_kind: OwnerKind) -> Result<Namespace> {
        {
            let mut client = self.pooled().await?;
            let mut w = Writer::begin(&mut client, self.inner.lock_key).await?;
            ensure_namespace_tx(&mut w, name, owner_kind).await?;
            let done = w.commit(&self.inner.channel).await?;
            self.after_commit(&mut client, done).await?;
        }
        self.get_namespace(name)
            .await?
            .ok_or_else(|| Error::internal("creating a namespace", "not found after insert"))
    }

    async fn get_namespace(&self, name: &str) -> Result<Option<Namespace>> {
        let c = self.read_client().await?;
        namespace_by_name(&c, name).await
    }

    async fn create_entry_audited(&self, entry: NewEntry, audit: Audit) -> Result<Entry> {
        let mut client = self.pooled().await?;
        let mut w = Writer::begin(&mut client, self.inner.lock_key).await?;
        ensure_namespace_tx(&mut w, &entry.namespace, OwnerKind::Organisation).await?;
        let id = insert_entry(&mut w, &entry, entry.status.unwrap_or(Status::Draft)).await?;
        let e = get_entry_by_id(&w.tx, id).await?;
        commit_audit(&w, audit, &e).await?;
        let done = w.commit(&self.inner.channel).await?;
        self.after_commit(&mut client, done).await?;
        Ok(e)
    }

    async fn update_entry_audited(
        &self,
        key: &EntryKey,
        patch: EntryPatch,
        audit: Audit,
    ) -> Result<Entry> {
        let mut client = self.pooled().await?;
        let mut w = Writer::begin(&mut client, self.inner.lock_key).await?;
        let id = require_entry_id(&w.tx, key).await?;
        w.lock_entry(id).await?;
        let mut e = get_entry_by_id(&w.tx, id).await?;
        let tags_changed = patch.apply_to(&mut e);
        let stmt = w
            .tx
            .prepare_cached(
                "UPDATE entries SET display_name = $1, description = $2, category = $3, tags = $4, \
                 keywords = $5, status = $6, visibility = $7, deprecation = $8, popularity = $9, \
                 monthly_downloads = $10, download_rank = $11, updated_at = $12, disabled = $14 \
                 WHERE id = $13",
            )
            .await
            .context("preparing an entry update")?;
        w.tx.execute(
            &stmt,
            &[
                &e.display_name,
                &e.description,
                &e.category,
                &json_text(&e.tags),
                &json_text(&e.keywords),
                &e.status.as_str(),
                &e.visibility.as_str(),
                &e.deprecation.as_ref().map(json_text),
                &e.popularity.score,
                &e.popularity.monthly_downloads.map(|v| v as i64),
                &e.popularity.rank.map(i64::from),
                &now_ms(),
                &e.id,
                &e.disabled.as_ref().map(json_text),
            ],
        )
        .await
        .context("updating an entry")?;
        if tags_changed {
            write_tags(&w, e.id, &e.tags, true).await?;
        }
        w.feed(FeedEntity::Entry, e.id, Some(e.id), FeedOp::Update)
            .await?;
        let out = get_entry_by_id(&w.tx, e.id).await?;
        commit_audit(&w, audit, &out).await?;
        let done = w.commit(&self.inner.channel).await?;
        self.after_commit(&mut client, done).await?;
        Ok(out)
    }

    async fn get_entry(&self, key: &EntryKey) -> Result<Option<Entry>> {
        let c = self.read_client().await?;
        get_entry_conn(&c, key).await
    }

    async fn version_names_by_id(&self, ids: &[i64]) -> Result<Vec<(i64, String)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.pooled().await?;
        let rows = c
            .query(
                "SELECT id, version FROM versions WHERE id = ANY($1)",
                &[&ids],
            )
            .await
            .context("reading versions by id")?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0).context("reading a version id")?,
                    r.try_get(1).context("reading a version")?,
                ))
            })
            .collect()
    }

    async fn get_entries_by_id(&self, ids: &[i64]) -> Result<Vec<Entry>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.pooled().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {ENTRY_COLS} FROM entries WHERE id = ANY($1)"
            ))
            .await
            .context("preparing entries by id")?;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(10_000) {
            let rows = c
                .query(&stmt, &[&chunk])
                .await
                .context("reading entries by id")?;
            for r in &rows {
                out.push(entry_from_row(r)?);
            }
        }
        Ok(out)
    }

    async fn list_entries(
        &self,
        filter: &EntryFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Entry>> {
        let after = cursor.map(decode_cursor).transpose()?.unwrap_or(0);
        let mut sql = format!("SELECT {ENTRY_COLS} FROM entries WHERE id > $1");
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(after)];
        let mut any_of = |col: &str, vals: Vec<String>, sql: &mut String| {
            if !vals.is_empty() {
                args.push(Box::new(vals));
                sql.push_str(&format!(" AND {col} = ANY(${})", args.len()));
            }
        };
        any_of(
            "kind",
            filter
                .kinds
                .iter()
                .map(|k| k.as_str().to_string())
                .collect(),
            &mut sql,
        );
        any_of("namespace", filter.namespaces.clone(), &mut sql);
        any_of("category", filter.categories.clone(), &mut sql);
        any_of(
            "status",
            filter
                .statuses
                .iter()
                .map(|s| s.as_str().to_string())
                .collect(),
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
            args.push(Box::new(granted.clone()));
            sql.push_str(&format!(
                " AND (visibility <> 'private' OR namespace = ANY(${}))",
                args.len()
            ));
        }
        for t in &filter.tags {
            args.push(Box::new(t.clone()));
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM entry_tags t WHERE t.tag = ${} AND t.entry_id = entries.id)",
                args.len()
            ));
        }
        args.push(Box::new(limit as i64 + 1));
        sql.push_str(&format!(" ORDER BY id LIMIT ${}", args.len()));
        let c = self.read_client().await?;
        let stmt = c
            .prepare_cached(&sql)
            .await
            .context("preparing a listing")?;
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = c.query(&stmt, &params).await.context("listing entries")?;
        let mut items = rows
            .iter()
            .map(entry_from_row)
            .collect::<Result<Vec<_>>>()?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|e| encode_cursor(e.id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn publish_version_audited(
        &self,
        key: &EntryKey,
        version: ValidVersion,
        audit: Audit,
    ) -> Result<Version> {
        let mut client = self.pooled().await?;
        let mut w = Writer::begin(&mut client, self.inner.lock_key).await?;
        let id = require_entry_id(&w.tx, key).await?;
        w.lock_entry(id).await?;
        let vid = insert_version(&mut w, id, &version).await?;
        refresh_latest(&w, id).await?;
        w.tx.execute(
            "UPDATE entries SET status = 'published' WHERE id = $1 AND status = 'draft'",
            &[&id],
        )
        .await
        .context("publishing a draft")?;
        let row =
            w.tx.query_one(
                &format!("SELECT {VERSION_COLS} FROM versions WHERE id = $1"),
                &[&vid],
            )
            .await
            .context("reading the new version")?;
        let v = version_from_row(&row)?;
        commit_audit(&w, audit, &v).await?;
        let done = w.commit(&self.inner.channel).await?;
        self.after_commit(&mut client, done).await?;
        Ok(v)
    }

    async fn list_versions(&self, key: &EntryKey) -> Result<Vec<Version>> {
        let c = self.read_client().await?;
        let id = require_entry_id(&c, key).await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {VERSION_COLS} FROM versions WHERE entry_id = $1 ORDER BY id"
            ))
            .await
            .context("preparing versions")?;
        let rows = c.query(&stmt, &[&id]).await.context("listing versions")?;
        let mut vs = rows
            .iter()
            .map(version_from_row)
            .collect::<Result<Vec<_>>>()?;
        vs.sort_by(|a, b| {
            let pa = SemverVersion::parse(&a.version).ok();
            let pb = SemverVersion::parse(&b.version).ok();
            pb.cmp(&pa)
        });
        Ok(vs)
    }

    async fn list_versions_page(
        &self,
        key: &EntryKey,
        cursor: Option<&str>,
        limit: usize,
        manifests: bool,
    ) -> Result<Page<Version>> {
        let c = self.read_client().await?;
        let id = require_entry_id(&c, key).await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {VERSION_COLS_NO_MANIFEST} FROM versions WHERE entry_id = $1"
            ))
            .await
            .context("preparing versions")?;
        let rows = c.query(&stmt, &[&id]).await.context("listing versions")?;
        let mut vs = rows
            .iter()
            .map(version_from_row)
            .collect::<Result<Vec<_>>>()?;
        quiver_store::sort_newest_first(&mut vs);
        let mut page = quiver_store::version_page(vs, cursor, limit)?;
        if manifests && !page.items.is_empty() {
            // Sizes first, so that only the manifests the page keeps are read.
            let names: Vec<&str> = page.items.iter().map(|v| v.version.as_str()).collect();
            let sizes: std::collections::HashMap<String, i64> = c
                .query(
                    "SELECT version, octet_length(manifest)::int8 FROM versions \
                     WHERE entry_id = $1 AND version = ANY($2)",
                    &[&id, &names],
                )
                .await
                .context("sizing manifests")?
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                .collect();
            let mut bytes = 0usize;
            let mut keep = page.items.len();
            for (i, v) in page.items.iter().enumerate() {
                if i > 0 && bytes >= quiver_store::MAX_PAGE_MANIFEST_BYTES {
                    keep = i;
                    break;
                }
                bytes += sizes.get(&v.version).copied().unwrap_or(0).max(0) as usize;
            }
            quiver_store::cut_version_page(&mut page, keep);
            let names: Vec<&str> = page.items.iter().map(|v| v.version.as_str()).collect();
            let rows = c
                .query(
                    "SELECT version, manifest FROM versions \
                     WHERE entry_id = $1 AND version = ANY($2)",
                    &[&id, &names],
                )
                .await
                .context("reading manifests")?;
            let mut found: std::collections::HashMap<String, String> = rows
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                .collect();
            for v in &mut page.items {
                if let Some(m) = found.remove(&v.version) {
                    v.manifest = serde_json::from_str(&m).context("decoding a manifest")?;
                }
            }
        }
        Ok(page)
    }

    async fn manifest_bytes(&self, key: &EntryKey) -> Result<u64> {
        let c = self.read_client().await?;
        let id = require_entry_id(&c, key).await?;
        let row = c
            .query_one(
                "SELECT COALESCE(SUM(octet_length(manifest)), 0)::bigint FROM versions \
                 WHERE entry_id = $1",
                &[&id],
            )
            .await
            .context("summing manifest sizes")?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    async fn get_version(&self, key: &EntryKey, version: &str) -> Result<Option<Version>> {
        let c = self.read_client().await?;
        let id = require_entry_id(&c, key).await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {VERSION_COLS} FROM versions WHERE entry_id = $1 AND version = $2"
            ))
            .await
            .context("preparing a version read")?;
        c.query_opt(&stmt, &[&id, &version])
            .await
            .context("reading a version")?
            .as_ref()
            .map(version_from_row)
            .transpose()
    }

    async fn latest_versions(&self, entry_ids: &[i64]) -> Result<Vec<(i64, Version)>> {
        if entry_ids.is_empty() {
            return Ok(vec![]);
        }
        let c = self.read_client().await?;
        let cols = VERSION_COLS
            .split(", ")
            .map(|col| format!("v.{}", col.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        // The entry's id last, so that the version's columns start at 0.
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {cols}, e.id FROM entries e JOIN versions v \
                 ON v.entry_id = e.id AND v.version = e.latest_version WHERE e.id = ANY($1)"
            ))
            .await
            .context("preparing latest versions")?;
        let mut out = Vec::with_capacity(entry_ids.len());
        for chunk in entry_ids.chunks(10_000) {
            for r in c
                .query(&stmt, &[&chunk])
                .await
                .context("reading latest versions")?
            {
                let id: i64 = r
                    .try_get(VERSION_COL_COUNT)
                    .context("decoding an entry id")?;
                out.push((id, version_from_row(&r)?));
            }
        }
        Ok(out)
    }

    async fn set_yanked_audited(
        &self,
        key: &EntryKey,
        version: &str,
        yanked: bool,
        reason: Option<String>,
        audit: Audit,
    ) -> Result<Version> {
        let mut client = self.pooled().await?;
        let mut w = Writer::begin(&mut client, self.inner.lock_key).await?;
        let id = require_entry_id(&w.tx, key).await?;
        w.lock_entry(id).await?;
        let vid = require_version_id(&w.tx, id, key, version).await?;
        let reason = if yanked { reason } else { None };
        set_yank_row(&w, vid, yanked, reason).await?;
        refresh_latest(&w, id).await?;
        w.feed(FeedEntity::Version, vid, Some(id), FeedOp::Update)
            .await?;
        let v = read_version(&w, vid, "reading the yanked version").await?;
        commit_audit(&w, audit, &v).await?;
        let done = w.commit(&self.inner.channel).await?;
        self.after_commit(&mut client, done).await?;
        Ok(v)
    }

    async fn set_version_disabled_audited(
        &self,
        key: &EntryKey,
        version: &str,
        disabled: Option<Disabled>,
        audit: Audit,
    ) -> Result<Version> {
        let mut client = self.pooled().await?;
        let mut w = Writer::begin(&mut client, self.inner.lock_key).await?;
        let id = require_entry_id(&w.tx, key).await?;
        w.lock_entry(id).await?;
        let vid = require_version_id(&w.tx, id, key, version).await?;
        let text = disabled
            .as_ref()
            .map(|d| serde_json::to_string(d).unwrap_or_default());
        w.tx.execute(
            "UPDATE versions SET disabled = $1 WHERE id = $2",
            &[&text, &vid],
        )
        .await
        .context("disabling a version")?;
        refresh_latest(&w, id).await?;
        w.feed(FeedEntity::Version, vid, Some(id), FeedOp::Update)
            .await?;
        let v = read_version(&w, vid, "reading the disabled version").await?;
        commit_audit(&w, audit, &v).await?;
        let done = w.commit(&self.inner.channel).await?;
        self.after_commit(&mut client, done).await?;
        Ok(v)
    }

    async fn delete_entry_audited(
        &self,
        key: &EntryKey,
        tombstone: NewTombstone,
        audit: Audit,
    ) -> Result<Tombstone> {
        let mut client = self.pooled().await?;
        let mut w = Writer::begin(&mut client, self.inner.lock_key).await?;
        let id = require_entry_id(&w.tx, key).await?;
        w.lock_entry(id).await?;
        let entry = get_entry_by_id(&w.tx, id).await?;
        for sql in [
            "DELETE FROM versions WHERE entry_id = $1",
            "DELETE FROM relations WHERE from_id = $1 OR to_id = $1",
            "DELETE FROM entry_tags WHERE entry_id = $1",
            "DELETE FROM entries WHERE id = $1",
        ] {
            w.tx.execute(sql, &[&id])
                .await
                .context("deleting an entry")?;
        }
        let t = insert_tombstone(&w, &entry, None, &tombstone).await?;
        w.feed(FeedEntity::Entry, id, Some(id), FeedOp::Delete)
            .await?;
        commit_audit_change(&w.tx, audit, Some(&entry), Some(&t)).await?;
        let done = w.commit(&self.inner.channel).await?;
        self.after_commit(&mut client, done).await?;
        Ok(t)
    }

    async fn delete_version_audited(
        &self,
        key: &EntryKey,
        version: &str,
        tombstone: NewTombstone,
        audit: Audit,
    ) -> Result<Tombstone> {
        let mut client = self.pooled().await?;
        let mut w = Writer::begin(&mut client, self.inner.lock_key).await?;
        let id = require_entry_id(&w.tx, key).await?;
        w.lock_entry(id).await?;
        let entry = get_entry_by_id(&w.tx, id).await?;
        let vid = require_version_id(&w.tx, id, key, version).await?;
        w.tx.execute(
            "DELETE FROM dist_tags WHERE entry_id = $1 AND version = $2",
            &[&id, &version],
        )
        .await
        .context("deleting a version's dist-tags")?;
        w.tx.execute("DELETE FROM versions WHERE id = $1", &[&vid])
            .await
            .context("deleting a version")?;
        refresh_latest(&w, id).await?;
        let t = insert_tombstone(&w, &entry, Some((version, vid)), &tombstone).await?;
        w.feed(FeedEntity::Version, vid, Some(id), FeedOp::Delete)
            .await?;
        commit_audit(&w, audit, &t).await?;
        let done = w.commit(&self.inner.channel).await?;
        self.after_commit(&mut client, done).await?;
        Ok(t)
    }

    async fn tombstones(&self, key: &EntryKey) -> Result<Vec<Tombstone>> {
        // The primary: registering a name checks its tombstones, which a replica's lag
        // must not hide.
        let c = self.client().await?;
        let nk = name_key(key.kind, &key.namespace, &key.name);
        let rows = c
            .query(
                &format!(
                    "SELECT {TOMBSTONE_COLS} FROM tombstones \
                     WHERE kind = $1 AND namespace = $2 AND name_key = $3 ORDER BY id DESC"
                ),
                &[&key.kind.as_str(), &key.namespace, &nk],
            )
            .await
            .context("reading tombstones")?;
        rows.iter().map(tombstone_from_row).collect()
    }

    async fn tombstones_of_entries(&self, entry_ids: &[i64]) -> Result<Vec<Tombstone>> {
        if entry_ids.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.read_client().await?;
        let ids = entry_ids.to_vec();
        let rows = c
            .query(
                &format!("SELECT {TOMBSTONE_COLS} FROM tombstones WHERE entry_id = ANY($1)"),
                &[&ids],
            )
            .await
            .context("reading tombstones")?;
        rows.iter().map(tombstone_from_row).collect()
    }

    async fn set_validation(
        &self,
        key: &EntryKey,
        version: &str,
        validation: quiver_model::Validation,
    ) -> Result<Version> {
        let mut client = self.pooled().await?;
        let mut w = Writer::begin(&mut client, self.inner.lock_key).await?;
        let id = require_entry_id(&w.tx, key).await?;
        w.lock_entry(id).await?;
        let vid = require_version_id(&w.tx, id, key, version).await?;
        let json = serde_json::to_string(&validation).unwrap_or_default();
        w.tx.execute(
            "UPDATE versions SET validation = $1 WHERE id = $2",
            &[&json, &vid],
        )
        .await
        .context("recording a validation")?;
        w.feed(FeedEntity::Version, vid, Some(id), FeedOp::Update)
            .await?;
        let v = read_version(&w, vid, "reading the validated version").await?;
        let done = w.commit(&self.inner.channel).await?;
        self.after_commit(&mut client, done).await?;
        Ok(v)
    }

    async fn add_relation_audited(&self, relation: Relation, audit: Audit) -> Result<Relation> {
        let mut client = self.pooled().await?;
        let mut w = Writer::begin(&mut client, self.inner.lock_key).await?;
        let from = entry_id(&w.tx, &relation.from)
            .await?
            .ok_or_else(|| Error::invalid("from", format!("{} does not exist", relation.from)))?;
        let to = entry_id(&w.tx, &relation.to)
            .await?
            .ok_or_else(|| Error::invalid("to", format!("{} does not exist", relation.to)))?;
        w.lock_entry(from).await?;
        let stored =
            w.tx.query_opt(
                "SELECT id, confidence, source, step_order FROM relations \
                 WHERE kind = $1 AND from_id = $2 AND to_id = $3",
                &[&relation.kind.as_str(), &from, &to],
            )
            .await
            .context("reading a relation")?
            .map(|r| {
                (
                    r.get::<_, i64>(0),
                    r.get::<_, Option<f64>>(1),
                    r.get::<_, Option<String>>(2),
                    r.get::<_, Option<i32>>(3),
                )
            });
        let (rid, op) = match stored {
            Some((_, confidence, source, step_order))
                if confidence == relation.confidence
                    && source == relation.source
                    && step_order == relation.step_order =>
            {
                // Identical: nothing changes, so nothing is written (no feed row).
                let from_key = get_entry_by_id(&w.tx, from).await?.key();
                let to_key = get_entry_by_id(&w.tx, to).await?.key();
                let done = w.commit(&self.inner.channel).await?;
                self.after_commit(&mut client, done).await?;
                return Ok(Relation {
                    from: from_key,
                    to: to_key,
                    ..relation
                });
            }
            Some((rid, ..)) => {
                w.tx.execute(
                    "UPDATE relations SET confidence = $1, source = $2, step_order = $3 WHERE id = $4",
                    &[&relation.confidence, &relation.source, &relation.step_order, &rid],
                )
                .await
                .context("updating a relation")?;
                (rid, FeedOp::Update)
            }
            None => {
                let rid: i64 =
                    w.tx.query_one(
                        "INSERT INTO relations (kind, from_id, to_id, confidence, source, \
                         step_order, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                        &[
                            &relation.kind.as_str(),
                            &from,
                            &to,
                            &relation.confidence,
                            &relation.source,
                            &relation.step_order,
                            &now_ms(),
                        ],
                    )
                    .await
                    .context("adding a relation")?
                    .get(0);
                (rid, FeedOp::Create)
            }
        };
        w.feed(FeedEntity::Relation, rid, Some(from), op).await?;
        let from_key = get_entry_by_id(&w.tx, from).await?.key();
        let to_key = get_entry_by_id(&w.tx, to).await?.key();
        let r = Relation {
            from: from_key,
            to: to_key,
            ..relation
        };
        commit_audit(&w, audit, &r).await?;
        let done = w.commit(&self.inner.channel).await?;
        self.after_commit(&mut client, done).await?;
        Ok(r)
    }

    async fn list_relations(&self, key: &EntryKey, direction: Direction) -> Result<Vec<Relation>> {
        let c = self.read_client().await?;
        let id = require_entry_id(&c, key).await?;
        let cond = match direction {
            Direction::Outgoing => "r.from_id = $1",
            Direction::Incoming => "r.to_id = $1",
            Direction::Both => "(r.from_id = $1 OR r.to_id = $1)",
        };
        // SQLite's order: byte-wise text, NULL step orders first.
        let sql = format!(
            "SELECT r.kind, f.kind, f.namespace, f.name, t.kind, t.namespace, t.name, \
             r.confidence, r.source, r.step_order FROM relations r \
             JOIN entries f ON f.id = r.from_id JOIN entries t ON t.id = r.to_id \
             WHERE {cond} ORDER BY r.kind COLLATE \"C\", r.step_order NULLS FIRST, r.id"
        );
        let stmt = c
            .prepare_cached(&sql)
            .await
            .context("preparing relations")?;
        let rows = c.query(&stmt, &[&id]).await.context("listing relations")?;
        rows.iter()
            .map(|r| decode_relation(r).context("decoding a relation"))
            .collect()
    }

    async fn resolution_sets(&self, keys: &[EntryKey]) -> Result<Vec<Option<ResolutionSet>>> {
        // Three queries whatever the number of keys: entries, versions, tags.
        let c = self.read_client().await?;
        let found = entries_of(&c, keys).await?;
        let ids: Vec<i64> = found.iter().map(|(_, e)| e.id).collect();
        let mut versions: HashMap<i64, Vec<Version>> = HashMap::new();
        let mut tags: HashMap<i64, Vec<DistTag>> = HashMap::new();
        if !ids.is_empty() {
            let rows = c
                .query(
                    &format!(
                        "SELECT {VERSION_COLS_NO_MANIFEST}, entry_id FROM versions \
                         WHERE entry_id = ANY($1)"
                    ),
                    &[&ids],
                )
                .await
                .context("listing versions")?;
            for r in &rows {
                let id: i64 = r.try_get(VERSION_COL_COUNT).context("decoding a version")?;
                versions.entry(id).or_default().push(version_from_row(r)?);
            }
            let rows = c
                .query(
                    "SELECT tag, version, updated_at, entry_id FROM dist_tags \
                     WHERE entry_id = ANY($1) ORDER BY tag COLLATE \"C\"",
                    &[&ids],
                )
                .await
                .context("reading dist-tags")?;
            for r in &rows {
                let decode = || -> std::result::Result<(i64, DistTag), BoxError> {
                    Ok((
                        r.try_get(3)?,
                        DistTag {
                            tag: r.try_get(0)?,
                            version: r.try_get(1)?,
                            updated_at: ts(r.try_get(2)?),
                        },
                    ))
                };
                let (id, t) = decode().context("decoding a dist-tag")?;
                tags.entry(id).or_default().push(t);
            }
        }
        let mut out: Vec<Option<ResolutionSet>> = vec![None; keys.len()];
        for (i, entry) in found {
            let mut vs = versions.remove(&entry.id).unwrap_or_default();
            quiver_store::sort_newest_first(&mut vs);
            let ts = tags.remove(&entry.id).unwrap_or_default();
            out[i] = Some(ResolutionSet {
                entry,
                versions: vs,
                tags: ts,
            });
        }
        Ok(out)
    }

    async fn versions_of(&self, wanted: &[(EntryKey, String)]) -> Result<Vec<Option<Version>>> {
        let c = self.read_client().await?;
        let keys: Vec<EntryKey> = wanted.iter().map(|(k, _)| k.clone()).collect();
        let mut ids: Vec<Option<i64>> = vec![None; wanted.len()];
        for (i, e) in entries_of(&c, &keys).await? {
            ids[i] = Some(e.id);
        }
        let (entry_ids, names): (Vec<i64>, Vec<&str>) = wanted
            .iter()
            .zip(&ids)
            .filter_map(|((_, v), id)| id.map(|id| (id, v.as_str())))
            .unzip();
        let mut found: HashMap<(i64, String), Version> = HashMap::new();
        if !entry_ids.is_empty() {
            let rows = c
                .query(
                    &format!(
                        "SELECT {}, v.entry_id FROM unnest($1::int8[], $2::text[]) AS \
                         w(entry_id, version) JOIN versions v ON v.entry_id = w.entry_id AND \
                         v.version = w.version",
                        VERSION_COLS
                            .split(", ")
                            .map(|c| format!("v.{}", c.trim()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    &[&entry_ids, &names],
                )
                .await
                .context("reading versions")?;
            for r in &rows {
                let id: i64 = r.try_get(VERSION_COL_COUNT).context("decoding a version")?;
                let v = version_from_row(r)?;
                found.insert((id, v.version.clone()), v);
            }
        }
        Ok(wanted
            .iter()
            .zip(ids)
            .map(|((_, v), id)| id.and_then(|id| found.get(&(id, v.clone())).cloned()))
            .collect())
    }

    async fn incoming(
        &self,
        keys: &[EntryKey],
        kind: quiver_model::RelationKind,
    ) -> Result<Vec<Option<Incoming>>> {
        // Three queries whatever the number of keys: targets, relations, sources.
        let c = self.read_client().await?;
        let found = entries_of(&c, keys).await?;
        let ids: Vec<i64> = found.iter().map(|(_, e)| e.id).collect();
        let mut by_target: HashMap<i64, Vec<(Relation, i64)>> = HashMap::new();
        let mut sources: HashMap<i64, Entry> = HashMap::new();
        if !ids.is_empty() {
            let rows = c
                .query(
                    "SELECT r.kind, f.kind, f.namespace, f.name, t.kind, t.namespace, t.name, \
                     r.confidence, r.source, r.step_order, r.to_id, r.from_id FROM relations r \
                     JOIN entries f ON f.id = r.from_id JOIN entries t ON t.id = r.to_id \
                     WHERE r.to_id = ANY($1) AND r.kind = $2 ORDER BY r.id",
                    &[&ids, &kind.as_str()],
                )
                .await
                .context("listing relations")?;
            let mut from_ids = Vec::new();
            for r in &rows {
                let rel = decode_relation(r).context("decoding a relation")?;
                let to: i64 = r.try_get(10).context("decoding a relation")?;
                let from: i64 = r.try_get(11).context("decoding a relation")?;
                from_ids.push(from);
                by_target.entry(to).or_default().push((rel, from));
            }
            from_ids.sort_unstable();
            from_ids.dedup();
            if !from_ids.is_empty() {
                let rows = c
                    .query(
                        &format!("SELECT {ENTRY_COLS} FROM entries WHERE id = ANY($1)"),
                        &[&from_ids],
                    )
                    .await
                    .context("reading relations' sources")?;
                for r in &rows {
                    let e = entry_from_row(r)?;
                    sources.insert(e.id, e);
                }
            }
        }
        let mut out: Vec<Option<Incoming>> = vec![None; keys.len()];
        for (i, entry) in found {
            let relations = by_target
                .remove(&entry.id)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(r, from)| sources.get(&from).map(|e| (r, e.clone())))
                .collect();
            out[i] = Some(Incoming { entry, relations });
        }
        Ok(out)
    }

    async fn dist_tags(&self, key: &EntryKey) -> Result<Vec<DistTag>> {
        let c = self.read_client().await?;
        let Some(id) = entry_id(&c, key).await? else {
            return Ok(Vec::new());
        };
        read_dist_tags(&c, id).await
    }

    async fn set_dist_tag_audited(
        &self,
        key: &EntryKey,
        tag: &str,
        version: Option<&str>,
        at: jiff::Timestamp,
        audit: Audit,
    ) -> Result<Vec<DistTag>> {
        let mut client = self.pooled().await?;
        let tx = client
            .transaction()
            .await
            .context("beginning a dist-tag change")?;
        let id = require_entry_id(&tx, key).await?;
        // Changes to one entry's tags take turns (its row is the lock writes to it take).
        tx.execute("SELECT 1 FROM entries WHERE id = $1 FOR UPDATE", &[&id])
            .await
            .context("locking the entry")?;
        let before = read_dist_tags(&tx, id).await?;
        let old = before
            .iter()
            .find(|t| t.tag == tag)
            .map(|t| t.version.clone());
        if old.as_deref() == version {
            return Ok(before);
        }
        match version {
            Some(v) => {
                require_version_id(&tx, id, key, v).await?;
                tx.execute(
                    "INSERT INTO dist_tags (entry_id, tag, version, updated_at) VALUES \
                     ($1, $2, $3, $4) ON CONFLICT (entry_id, tag) DO UPDATE SET \
                     version = EXCLUDED.version, updated_at = EXCLUDED.updated_at",
                    &[&id, &tag, &v, &at.as_millisecond()],
                )
                .await
                .context("setting a dist-tag")?;
            }
            None => {
                tx.execute(
                    "DELETE FROM dist_tags WHERE entry_id = $1 AND tag = $2",
                    &[&id, &tag],
                )
                .await
                .context("removing a dist-tag")?;
            }
        }
        let after = read_dist_tags(&tx, id).await?;
        let tag_of = |v: Option<&str>| v.map(|v| serde_json::json!({"tag": tag, "version": v}));
        crate::accounts::commit_audit_change(
            &tx,
            audit,
            tag_of(old.as_deref()).as_ref(),
            tag_of(version).as_ref(),
        )
        .await?;
        tx.commit().await.context("committing a dist-tag change")?;
        Ok(after)
    }

    async fn skill_preferences(&self, user_id: i64) -> Result<Vec<SkillPreference>> {
        let c = self.read_client().await?;
        let rows = c
            .query(
                "SELECT p.ecosystem, p.package, e.kind, e.namespace, e.name, p.action, \
                 p.updated_at FROM skill_preferences p JOIN entries e ON e.id = p.skill_id \
                 WHERE p.user_id = $1 ORDER BY p.ecosystem COLLATE \"C\", p.package COLLATE \"C\", \
                 e.namespace COLLATE \"C\", e.name COLLATE \"C\"",
                &[&user_id],
            )
            .await
            .context("reading skill preferences")?;
        rows.iter()
            .map(|r| {
                let decode = || -> std::result::Result<SkillPreference, BoxError> {
                    let kind: String = r.try_get(2)?;
                    let action: String = r.try_get(5)?;
                    Ok(SkillPreference {
                        ecosystem: r.try_get(0)?,
                        package: r.try_get(1)?,
                        skill: EntryKey::new(
                            parse_enum(&kind)?,
                            r.try_get::<_, String>(3)?,
                            r.try_get::<_, String>(4)?,
                        ),
                        action: PreferenceAction::parse(&action)
                            .ok_or_else(|| format!("unknown preference action {action}"))?,
                        updated_at: jiff::Timestamp::from_millisecond(r.try_get(6)?)
                            .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                    })
                };
                decode().context("decoding a skill preference")
            })
            .collect()
    }

    async fn set_skill_preference(
        &self,
        user_id: i64,
        ecosystem: &str,
        package: &str,
        skill: &EntryKey,
        action: Option<PreferenceAction>,
        at: jiff::Timestamp,
    ) -> Result<()> {
        let c = self.pooled().await?;
        let skill_id = require_entry_id(&c, skill).await?;
        let written = match action {
            Some(a) => {
                let (action, ms) = (a.as_str(), at.as_millisecond());
                c.execute(
                    "INSERT INTO skill_preferences (user_id, ecosystem, package, skill_id, \
                     action, updated_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT \
                     (user_id, ecosystem, package, skill_id) DO UPDATE SET action = \
                     EXCLUDED.action, updated_at = EXCLUDED.updated_at",
                    &[&user_id, &ecosystem, &package, &skill_id, &action, &ms],
                )
                .await
            }
            None => {
                c.execute(
                    "DELETE FROM skill_preferences WHERE user_id = $1 AND ecosystem = $2 AND \
                     package = $3 AND skill_id = $4",
                    &[&user_id, &ecosystem, &package, &skill_id],
                )
                .await
            }
        };
        written.context("writing a skill preference")?;
        Ok(())
    }

    async fn record_events(&self, events: Vec<UsageEvent>) -> Result<EventsOutcome> {
        let mut client = self.pooled().await?;
        let tx = client
            .transaction()
            .await
            .context("beginning an events batch")?;
        let mut out = EventsOutcome::default();
        for (i, e) in events.iter().enumerate() {
            let Some(id) = entry_id(&tx, &e.entry).await? else {
                out.unknown.push(i);
                continue;
            };
            let at = e.at.as_millisecond();
            let n = tx
                .execute(
                    "INSERT INTO usage_events (id, kind, entry_id, version, project, at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                    &[&e.id, &e.kind, &id, &e.version, &e.project, &at],
                )
                .await
                .context("recording an event")?;
            if n == 0 {
                out.duplicates += 1;
            } else {
                out.accepted += 1;
            }
        }
        tx.commit().await.context("committing an events batch")?;
        Ok(out)
    }

    async fn co_installed(
        &self,
        key: &EntryKey,
        min_projects: u64,
        limit: usize,
    ) -> Result<Vec<CoInstall>> {
        let c = self.read_client().await?;
        let Some(id) = entry_id(&c, key).await? else {
            return Ok(Vec::new());
        };
        let (min, lim) = (min_projects as i64, limit as i64);
        let rows = c
            .query(
                "SELECT e.kind, e.namespace, e.name, COUNT(DISTINCT b.project) AS n \
                 FROM usage_events a JOIN usage_events b ON b.project = a.project \
                 AND b.kind = 'install' AND b.entry_id <> a.entry_id \
                 JOIN entries e ON e.id = b.entry_id \
                 WHERE a.entry_id = $1 AND a.kind = 'install' AND a.project IS NOT NULL \
                 GROUP BY b.entry_id, e.kind, e.namespace, e.name \
                 HAVING COUNT(DISTINCT b.project) >= $2 \
                 ORDER BY n DESC, e.namespace COLLATE \"C\", e.name COLLATE \"C\" LIMIT $3",
                &[&id, &min, &lim],
            )
            .await
            .context("finding co-installed entries")?;
        rows.iter()
            .map(|r| {
                let decode = || -> std::result::Result<CoInstall, BoxError> {
                    let kind: String = r.try_get(0)?;
                    Ok(CoInstall {
                        entry: EntryKey::new(
                            parse_enum(&kind)?,
                            r.try_get::<_, String>(1)?,
                            r.try_get::<_, String>(2)?,
                        ),
                        projects: r.try_get::<_, i64>(3)?.max(0) as u64,
                    })
                };
                decode().context("decoding a co-install")
            })
            .collect()
    }

    async fn feed_since(&self, after: i64, limit: usize) -> Result<Vec<FeedEvent>> {
        let c = self.pooled().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT seq, entity, entity_id, entry_id, op, at FROM feed \
                     WHERE seq > $1 AND seq <= {DURABLE_HEAD} ORDER BY seq LIMIT $2"
            ))
            .await
            .context("preparing feed read")?;
        let rows = c
            .query(&stmt, &[&after, &(limit as i64)])
            .await
            .context("reading the feed")?;
        Ok(rows
            .iter()
            .map(|r| FeedEvent {
                seq: r.get(0),
                entity: FeedEntity::parse(r.get(1)).unwrap_or(FeedEntity::Entry),
                entity_id: r.get(2),
                entry_id: r.get(3),
                op: FeedOp::parse(r.get(4)).unwrap_or(FeedOp::Update),
                at: ts(r.get(5)),
            })
            .collect())
    }

    async fn entries_with_new_versions(
        &self,
        after: i64,
        through: i64,
        skip_namespaces: &[String],
    ) -> Result<Vec<i64>> {
        let c = self.pooled().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT DISTINCT f.entry_id FROM feed f JOIN entries e ON e.id = f.entry_id \
                 WHERE f.seq > $1 AND f.seq <= least($2, {DURABLE_HEAD}) \
                 AND f.entity = 'version' AND f.op = 'create' \
                 AND NOT (e.namespace = ANY($3)) ORDER BY f.entry_id"
            ))
            .await
            .context("preparing the feed's new versions")?;
        let rows = c
            .query(&stmt, &[&after, &through, &skip_namespaces])
            .await
            .context("reading the feed's new versions")?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn feed_head(&self) -> Result<i64> {
        let c = self.pooled().await?;
        let stmt = c
            .prepare_cached(&format!("SELECT {DURABLE_HEAD}::int8"))
            .await
            .context("preparing the feed head")?;
        Ok(c.query_one(&stmt, &[])
            .await
            .context("reading the feed head")?
            .get(0))
    }

    async fn import_batch(&self, batch: Vec<ImportRecord>) -> Result<Vec<ImportOutcome>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.pooled().await?;
        let mut w = Writer::begin(&mut client, self.inner.lock_key).await?;
        // The batch's outcomes are decided from rows read up front: serialized.
        w.lock_feed().await?;
        let outcomes = crate::import::import_batch(&mut w, &batch).await?;
        let done = w.commit(&self.inner.channel).await?;
        self.after_commit(&mut client, done).await?;
        Ok(outcomes)
    }

    async fn put_documents_audited(
        &self,
        docs: Vec<NewDocument>,
        audit: Audit,
    ) -> Result<Vec<ImportOutcome>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.pooled().await?;
        let mut w = Writer::begin(&mut client, self.inner.lock_key).await?;
        // Outcomes compare with the stored documents: serialized.
        w.lock_feed().await?;
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
            let old =
                w.tx.query_opt(
                    "SELECT id, sha256 FROM documents WHERE collection = $1 AND key = $2",
                    &[&d.collection, &d.key],
                )
                .await
                .context("reading a document")?;
            let outcome = match old {
                Some(row) if row.get::<_, String>(1) == sha => ImportOutcome::Unchanged,
                Some(row) => {
                    let id: i64 = row.get(0);
                    w.tx.execute(
                        "UPDATE documents SET body = $2, sha256 = $3, updated_at = $4 WHERE id = $1",
                        &[&id, &canonical, &sha, &now_ms()],
                    )
                    .await
                    .context("updating a document")?;
                    w.feed(FeedEntity::Document, id, None, FeedOp::Update)
                        .await?;
                    ImportOutcome::Updated
                }
                None => {
                    let id: i64 =
                        w.tx.query_one(
                            "INSERT INTO documents (collection, key, body, sha256, updated_at) \
                             VALUES ($1, $2, $3, $4, $5) RETURNING id",
                            &[&d.collection, &d.key, &canonical, &sha, &now_ms()],
                        )
                        .await
                        .context("inserting a document")?
                        .get(0);
                    w.feed(FeedEntity::Document, id, None, FeedOp::Create)
                        .await?;
                    ImportOutcome::Created
                }
            };
            outcomes.push(outcome);
        }
        if outcomes
            .iter()
            .any(|o| !matches!(o, ImportOutcome::Rejected(_)))
        {
            crate::accounts::commit_audit(&w, audit, &serde_json::Value::Null).await?;
        }
        let done = w.commit(&self.inner.channel).await?;
        self.after_commit(&mut client, done).await?;
        Ok(outcomes)
    }

    async fn get_document(&self, collection: &str, key: &str) -> Result<Option<Document>> {
        let c = self.read_client().await?;
        let row = c
            .query_opt(
                "SELECT collection, key, body, sha256, updated_at FROM documents \
                 WHERE collection = $1 AND key = $2",
                &[&collection, &key],
            )
            .await
            .context("reading a document")?;
        row.as_ref().map(document_from_row).transpose()
    }

    async fn list_documents(
        &self,
        collection: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Document>> {
        let after = cursor
            .map(quiver_store::decode_key_cursor)
            .transpose()?
            .unwrap_or_default();
        let limit = limit.clamp(1, 10_000);
        let c = self.read_client().await?;
        let rows = c
            .query(
                "SELECT collection, key, body, sha256, updated_at FROM documents \
                 WHERE collection = $1 AND key COLLATE \"C\" > $2 ORDER BY key COLLATE \"C\" LIMIT $3",
                &[&collection, &after, &(limit as i64 + 1)],
            )
            .await
            .context("listing documents")?;
        let items = rows
            .iter()
            .map(document_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(quiver_store::page_by_key(items, limit))
    }

    async fn document_collections(&self) -> Result<Vec<(String, u64)>> {
        let c = self.read_client().await?;
        let rows = c
            .query(
                "SELECT collection, COUNT(*)::int8 FROM documents GROUP BY collection \
                 ORDER BY collection COLLATE \"C\"",
                &[],
            )
            .await
            .context("listing collections")?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    async fn stats(&self) -> Result<StoreStats> {
        let c = self.pooled().await?;
        let row = c
            .query_one(
                "SELECT (SELECT COUNT(*) FROM entries)::int8, \
                        (SELECT COUNT(*) FROM versions)::int8, \
                        (SELECT COUNT(*) FROM relations)::int8, \
                        (SELECT COALESCE(MAX(head), 0) FROM feed_durable)::int8, \
                        (SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) \
                           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                          WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p'))::int8",
                &[],
            )
            .await
            .context("counting rows")?;
        Ok(StoreStats {
            entries: row.get::<_, i64>(0) as u64,
            versions: row.get::<_, i64>(1) as u64,
            relations: row.get::<_, i64>(2) as u64,
            feed_head: row.get(3),
            size_bytes: Some(row.get::<_, i64>(4) as u64),
        })
    }
}
