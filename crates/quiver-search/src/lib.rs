//! quiver's embedded full-text search: a [tantivy] index derived from the store's change
//! feed.
//!
//! # Design
//!
//! **Why tantivy.** The index must hold 1.1M entries on a 2-core machine, answer in a few
//! milliseconds and live inside the server process (no second service to run). tantivy
//! is an embedded Lucene-like library: memory-mapped immutable segments, FST term
//! dictionaries (cheap prefix and Levenshtein-automaton lookups), columnar fast fields
//! for per-document values, and atomic commits that carry a user payload. That last
//! point gives crash safety for free: the feed position is written *in* the commit, so
//! the index can never claim a position it does not hold.
//!
//! **Derived from the feed.** [`SearchIndex::catch_up`] reads the feed after the
//! committed position in batches, re-reads every touched entry by id, deletes its
//! document and adds it back if it is indexable (unlisted entries never are), then
//! commits with the new position. A large backlog (a fresh index) uses a big writer
//! budget and two indexing threads, skips the per-document deletes an empty index does
//! not need, and commits rarely; afterwards the writer is dropped so the serving
//! process keeps only the memory-mapped segments.
//!
//! **Fields.** Names are indexed three ways (see [`analysis`]): `name_sort` (a fast
//! column of the lowercase name, PEP 503 form for PyPI: name sort and exact matches),
//! `name_joined` (letters and digits only, so `scikit-learn`, `scikit learn` and
//! `scikitlearn` meet; prefix and fuzzy matching run on this field), and the name words
//! (split on separators and camelCase, `beautifulsoup4` also as `beautifulsoup`) at the
//! head of `description`. `description` is the searchable text: name words, keywords,
//! tags and the description, through an English analyzer (stop words, stemming), so
//! that each query word is a single term lookup. (A separate, boosted field of name
//! words was measured: it cost 10% of indexing time and did not improve the relevance
//! set.) `keywords` (keywords, tags, category) is a booster.
//! Kind, status, namespace, category and tags are raw terms and fast columns; a packed
//! `flags` column (status, kind, private bit), `popularity` and `updated` are fast
//! values; everything a hit shows is one stored JSON payload, so search never reads the
//! store.
//!
//! **Visibility.** Only public and private entries are indexed. Every search runs one
//! collector ([`collect`]) that checks, per matching document, the flags column and
//! the namespace column: a private document passes only when the caller may read every
//! private entry ([`SearchQuery::all_private`]: admins and moderators) or its namespace is
//! in [`SearchQuery::private_namespaces`]. Hits, totals, facet counts and suggestions all go
//! through that same collector, so none of them can leak a private entry.
//!
//! **Ranking.** One boolean query whose clause scores add up, then popularity:
//! - exact name (`name_sort`, checked per candidate in the collector) and joined name
//!   (`name_joined`) matches carry large constant scores, so typing a name finds it
//!   first;
//! - joined-name prefix completions (`beautifulsoup` -> `beautifulsoup4`), scored higher
//!   for short completions, bounded in length so short prefixes stay cheap;
//! - Levenshtein matching on the joined name (distance 0 for <= 4 chars, 1 for 5-8,
//!   2 beyond, transpositions cost 1, first letter fixed; see `expand`) and per word for
//!   words (almost) unknown to the index. Prefix and fuzzy expansion are skipped when a
//!   visible, popular package has exactly the joined name (`django`): they are the
//!   costly part and add nothing then, while `expresss` (an unused package) still leads
//!   to `express`;
//! - text: every query word must be in `description` (AND, BM25), with the word among
//!   the keywords as an optional boost; when no document holds all words
//!   the query falls back to OR. The conjunction is an intersection of plain posting
//!   lists driven by the rarest word, so common words ("python") are never scored
//!   exhaustively on their own;
//! - popularity `p` (0..1, normalized across ecosystems) blends in the collector:
//!   `score * p^4 + 10 * p`. The multiplicative part makes a used package that matches
//!   well beat an unused one that matches slightly better (the registry is full of
//!   squatted and abandoned names such as `http-client`, `orm`, `matplot`); the additive
//!   part orders weak matches by use.
//!
//! Weights live in [`Ranking`]; `relevance/queries.tsv` with [`relevance::evaluate`] is
//! the yardstick they were tuned on.

pub mod analysis;
mod collect;
mod expand;
pub mod lexicon;
pub mod relevance;
mod schema;
mod search;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::RwLock;

use quiver_model::{Context, Kind, Result, Status};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::schema::Fields;

pub use crate::search::Ranking;

/// How results are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Best match first (text relevance blended with popularity).
    #[default]
    Relevance,
    /// Most used first.
    Popularity,
    /// Most recently updated first.
    Recent,
    /// By name, A to Z.
    Name,
}

/// A search request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SearchQuery {
    /// Free text: names (exact, split, prefix, with typos) and descriptions.
    pub q: String,
    pub kinds: Vec<Kind>,
    pub namespaces: Vec<String>,
    pub categories: Vec<String>,
    pub tags: Vec<String>,
    /// Only entries that run on one of these (a tool's `platform`, a recipe's operating
    /// systems: `linux`, `darwin`, ...).
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Empty means `published` and `deprecated`.
    pub statuses: Vec<Status>,
    pub sort: Sort,
    /// 1 to 100 (0 means the default, 20).
    pub limit: usize,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Whether to count facets.
    pub facets: bool,
    /// Whether to return highlighted description snippets.
    pub highlight: bool,
    /// Namespaces whose private entries the caller may see (filled by the engine from
    /// the caller's rights; empty for anonymous callers).
    pub private_namespaces: Vec<String>,
    /// Whether the caller may see every private entry, in any namespace (filled by the
    /// engine: admins and moderators; false for everyone else). Never read from input.
    #[serde(skip)]
    pub all_private: bool,
    /// Include disabled entries (left out by default).
    #[serde(default)]
    pub include_disabled: bool,
}

impl Default for SearchQuery {
    fn default() -> Self {
        SearchQuery {
            q: String::new(),
            kinds: vec![],
            namespaces: vec![],
            categories: vec![],
            tags: vec![],
            platforms: vec![],
            statuses: vec![],
            sort: Sort::Relevance,
            limit: DEFAULT_LIMIT,
            cursor: None,
            facets: false,
            highlight: false,
            private_namespaces: vec![],
            all_private: false,
            include_disabled: false,
        }
    }
}

impl SearchQuery {
    /// A query for `q` with default settings.
    pub fn text(q: impl Into<String>) -> Self {
        SearchQuery {
            q: q.into(),
            ..Default::default()
        }
    }
}

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Hit {
    pub id: i64,
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub display_name: Option<String>,
    pub description: String,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub status: Status,
    pub latest_version: Option<String>,
    /// Normalized popularity, 0..1.
    pub popularity: f64,
    /// Whether a maintainer disabled the entry (returned only when asked for with
    /// `include_disabled`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// The ranking score (relevance sort), for debugging and explanations.
    pub score: f32,
    /// The description with matched words wrapped in `<mark>..</mark>` (HTML-escaped).
    pub highlight: Option<String>,
    /// Why it matched, in a few words (`exact name`, `name matches "pandas"`,
    /// `matches capability packet_capture`, `description`); relevance sort only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A facet value and how many matching entries have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FacetCount {
    pub value: String,
    pub count: u64,
}

/// Counts of matching entries per value, top values first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Facets {
    pub kind: Vec<FacetCount>,
    pub namespace: Vec<FacetCount>,
    pub category: Vec<FacetCount>,
    pub tags: Vec<FacetCount>,
    pub status: Vec<FacetCount>,
    /// Tools' platforms and recipes' operating systems.
    pub platform: Vec<FacetCount>,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SearchResults {
    pub hits: Vec<Hit>,
    /// How many entries match in all (visible to the caller).
    pub total: u64,
    pub facets: Option<Facets>,
    /// Pass as `cursor` to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
    /// "Did you mean": the closest popular name, when nothing matched.
    pub suggestion: Option<String>,
}

/// What a [`SearchIndex::catch_up`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CatchUp {
    /// Feed events read and applied.
    pub applied_events: u64,
    /// The feed position the index has now reached.
    pub position: i64,
}

/// Size and progress of the index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IndexStats {
    pub docs: u64,
    pub size_bytes: u64,
    pub position: i64,
    pub segments: u64,
}

/// Default page size.
pub const DEFAULT_LIMIT: usize = 20;
/// Largest page size.
pub const MAX_LIMIT: usize = 100;
/// Deepest result reachable by paging (offset + limit).
pub const MAX_WINDOW: usize = 1000;

/// Bumped when the schema or the analysis changes: an index of another version is
/// rebuilt from the feed.
const INDEX_VERSION: u32 = 8;
/// Feed events read per batch.
const FEED_BATCH: usize = 20_000;
/// A backlog above this is a bulk load (big writer, rare commits).
const BULK_THRESHOLD: i64 = 50_000;
/// In a bulk load, commit (and so persist progress) every this many events.
const BULK_COMMIT_EVERY: u64 = 4_000_000;

#[derive(Debug, Serialize, Deserialize)]
struct CommitPayload {
    version: u32,
    position: i64,
}

/// The search index. Cheap to share (`Arc`); searches run concurrently with catch-ups.
pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    dir: PathBuf,
    position: AtomicI64,
    write_lock: tokio::sync::Mutex<()>,
    ranking: RwLock<Ranking>,
}

fn register_tokenizers(index: &Index) {
    let t = index.tokenizers();
    t.register(analysis::EN_TOKENIZER, analysis::english());
}

impl SearchIndex {
    /// Open the index in `dir`, creating it if missing. An index written by another
    /// version of this crate is discarded (it is rebuilt by the next catch-up).
    pub fn open(dir: &Path) -> Result<SearchIndex> {
        std::fs::create_dir_all(dir)
            .context(format!("creating index directory {}", dir.display()))?;
        let (schema, fields) = schema::build();
        let meta = dir.join("meta.json");
        let mut index = None;
        if meta.exists() {
            let existing = Index::open_in_dir(dir)
                .context(format!("opening search index {}", dir.display()))?;
            let payload = read_payload(&existing)?;
            let same = existing.schema() == schema
                && payload.as_ref().is_none_or(|p| p.version == INDEX_VERSION);
            if same {
                index = Some(existing);
            } else {
                tracing::warn!(dir = %dir.display(), "search index of another version: rebuilding");
                drop(existing);
                for e in std::fs::read_dir(dir).context("listing the index directory")? {
                    let p = e.context("listing the index directory")?.path();
                    if p.is_file() {
                        std::fs::remove_file(&p).context(format!("removing {}", p.display()))?;
                    }
                }
            }
        }
        let index = match index {
            Some(i) => i,
            None => Index::create_in_dir(dir, schema)
                .context(format!("creating search index {}", dir.display()))?,
        };
        register_tokenizers(&index);
        let position = read_payload(&index)?.map_or(0, |p| p.position);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .context("opening the index reader")?;
        Ok(SearchIndex {
            index,
            reader,
            fields,
            dir: dir.to_path_buf(),
            position: AtomicI64::new(position),
            write_lock: tokio::sync::Mutex::new(()),
            ranking: RwLock::new(Ranking::default()),
        })
    }

    /// The feed position the index has reached (and committed).
    pub fn position(&self) -> i64 {
        self.position.load(Ordering::Acquire)
    }

    /// The ranking weights in use.
    pub fn ranking(&self) -> Ranking {
        *self.ranking.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Replace the ranking weights (for tuning experiments).
    pub fn set_ranking(&self, r: Ranking) {
        *self.ranking.write().unwrap_or_else(|e| e.into_inner()) = r;
    }

    /// Apply the feed after [`position`](Self::position) up to its head, and commit.
    /// Concurrent calls are serialized.
    pub async fn catch_up(&self, store: &dyn quiver_store::Store) -> Result<CatchUp> {
        let _guard = self.write_lock.lock().await;
        let start = self.position();
        let head = store.feed_head().await?;
        if head <= start {
            return Ok(CatchUp {
                applied_events: 0,
                position: start,
            });
        }
        let bulk = head - start > BULK_THRESHOLD;
        let (threads, budget) = if bulk {
            (2, 2 * 180_000_000)
        } else {
            (1, 50_000_000)
        };
        let mut writer: IndexWriter<TantivyDocument> = self
            .index
            .writer_with_num_threads(threads, budget)
            .context("opening the index writer")?;
        // A bulk load into an empty index needs no delete before the first add of an
        // entry; remember which ids it added instead.
        let fresh = bulk && self.reader.searcher().num_docs() == 0;
        let mut added: std::collections::HashSet<i64> = Default::default();

        let mut pos = start;
        let mut applied = 0u64;
        let mut since_commit = 0u64;
        let started = std::time::Instant::now();
        let mut index_time = std::time::Duration::ZERO;
        // A two-stage pipeline: while batch N is indexed, the entries of batch N+1 and
        // the events of batch N+2 are read from the store.
        let result: Result<()> = async {
            let mut cur_events = store.feed_since(pos, FEED_BATCH).await?;
            let mut cur_entries = fetch_entries(store, &cur_events).await?;
            let mut next_events = match cur_events.last() {
                Some(l) => store.feed_since(l.seq, FEED_BATCH).await?,
                None => vec![],
            };
            while let Some(last) = cur_events.last() {
                let last_seq = last.seq;
                let after_next = next_events.last().map(|e| e.seq);
                let fetch = async {
                    tokio::join!(fetch_entries(store, &next_events), async {
                        match after_next {
                            Some(s) => store.feed_since(s, FEED_BATCH).await,
                            None => Ok(vec![]),
                        }
                    })
                };
                let index = async {
                    blocking(|| -> Result<()> {
                        let t = std::time::Instant::now();
                        let mut ids: Vec<i64> =
                            cur_events.iter().filter_map(|e| e.entry_id).collect();
                        ids.sort_unstable();
                        ids.dedup();
                        for id in &ids {
                            if !fresh || added.contains(id) {
                                writer.delete_term(Term::from_field_i64(self.fields.id, *id));
                            }
                        }
                        for (e, manifest) in &cur_entries {
                            if schema::indexable(e) {
                                writer
                                    .add_document(schema::document(
                                        &self.fields,
                                        e,
                                        manifest.as_ref(),
                                    ))
                                    .context("indexing an entry")?;
                                if fresh {
                                    added.insert(e.id);
                                }
                            }
                        }
                        index_time += t.elapsed();
                        Ok(())
                    })
                };
                let ((entries, events), indexed) = tokio::join!(fetch, index);
                indexed?;
                pos = last_seq;
                applied += cur_events.len() as u64;
                since_commit += cur_events.len() as u64;
                cur_events = std::mem::take(&mut next_events);
                cur_entries = entries?;
                next_events = events?;
                if bulk && since_commit >= BULK_COMMIT_EVERY && !cur_events.is_empty() {
                    blocking(|| self.commit(&mut writer, pos))?;
                    since_commit = 0;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            // Nothing past the last commit is kept: the next catch-up redoes it.
            let _ = writer.rollback();
            return Err(e);
        }
        let before_commit = started.elapsed();
        blocking(|| -> Result<()> {
            self.commit(&mut writer, pos)?;
            writer
                .wait_merging_threads()
                .context("merging index segments")?;
            self.reader.reload().context("reloading the index reader")
        })?;
        tracing::info!(
            events = applied,
            position = pos,
            feeding_ms = before_commit.as_millis() as u64,
            adding_ms = index_time.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "search index caught up"
        );
        Ok(CatchUp {
            applied_events: applied,
            position: pos,
        })
    }

    /// Rebuild the index from the store: drop every document, then replay the whole feed.
    /// Searches answer from the emptied index until the replay commits (seconds for a
    /// million entries); use it to repair an index, not routinely.
    pub async fn rebuild(&self, store: &dyn quiver_store::Store) -> Result<CatchUp> {
        {
            let _guard = self.write_lock.lock().await;
            let mut writer: IndexWriter<TantivyDocument> = self
                .index
                .writer_with_num_threads(1, 50_000_000)
                .context("opening the index writer")?;
            blocking(|| -> Result<()> {
                writer
                    .delete_all_documents()
                    .context("emptying the index")?;
                self.commit(&mut writer, 0)
            })?;
        }
        self.catch_up(store).await
    }

    /// Commit with `pos` in the payload, then publish it to readers.
    fn commit(&self, writer: &mut IndexWriter<TantivyDocument>, pos: i64) -> Result<()> {
        let payload = serde_json::to_string(&CommitPayload {
            version: INDEX_VERSION,
            position: pos,
        })
        .context("encoding the commit payload")?;
        let mut prepared = writer.prepare_commit().context("preparing a commit")?;
        prepared.set_payload(&payload);
        prepared.commit().context("committing the index")?;
        self.position.store(pos, Ordering::Release);
        self.reader.reload().context("reloading the index reader")?;
        Ok(())
    }

    /// Search. Synchronous and fast (a few milliseconds on a million entries).
    pub fn search(&self, q: &SearchQuery) -> Result<SearchResults> {
        search::run(self, q)
    }

    /// Documents, bytes on disk, position.
    pub fn stats(&self) -> IndexStats {
        let searcher = self.reader.searcher();
        let size_bytes = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        IndexStats {
            docs: searcher.num_docs(),
            size_bytes,
            position: self.position(),
            segments: searcher.segment_readers().len() as u64,
        }
    }
}

/// The entries touched by `events` (deleted ones are absent).
/// The entries the events touch, each with its latest manifest when its kind's manifest
/// adds to its document (every kind but packages: [`schema::manifest_terms`]).
async fn fetch_entries(
    store: &dyn quiver_store::Store,
    events: &[quiver_model::FeedEvent],
) -> Result<Vec<(quiver_model::Entry, Option<serde_json::Value>)>> {
    let mut ids: Vec<i64> = events.iter().filter_map(|e| e.entry_id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let entries = store.get_entries_by_id(&ids).await?;
    let described: Vec<i64> = entries
        .iter()
        .filter(|e| e.kind != quiver_model::Kind::Package && e.latest_version.is_some())
        .map(|e| e.id)
        .collect();
    let mut manifests: std::collections::HashMap<i64, serde_json::Value> = store
        .latest_versions(&described)
        .await?
        .into_iter()
        .map(|(id, v)| (id, v.manifest))
        .collect();
    Ok(entries
        .into_iter()
        .map(|e| {
            let m = manifests.remove(&e.id);
            (e, m)
        })
        .collect())
}

/// Run CPU-heavy or blocking work from async code: on a multi-threaded runtime the
/// worker hands its other tasks away first; elsewhere it just runs.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn read_payload(index: &Index) -> Result<Option<CommitPayload>> {
    let metas = index.load_metas().context("reading index metadata")?;
    Ok(metas
        .payload
        .as_deref()
        .and_then(|p| serde_json::from_str::<CommitPayload>(p).ok()))
}

/// Encode an offset as an opaque cursor.
fn encode_cursor(offset: usize) -> String {
    quiver_model::cursor::encode("search", &offset)
}

/// Decode a cursor made by [`encode_cursor`].
fn decode_cursor(c: &str) -> Result<usize> {
    quiver_model::cursor::decode("search", c)
}
