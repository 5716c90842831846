//! The public change feed (issue 17): what changed, for a caller, after a position.
//!
//! Every write appends to the store's gap-free feed in its own transaction; this service
//! reads it and keeps what the caller may see. An event that touches an entry (the entry
//! itself, one of its versions, a relation from it) is shown when the caller may read
//! that entry *now* (visibility is decided at read time, so an entry made private hides
//! its earlier events too); events of namespaces and documents are shown to site admins
//! only. Positions are the feed's own sequence numbers, the same for every caller, so a
//! client resumes from the `next` it was given whoever it is: events hidden from it are
//! skipped, never renumbered.
//!
//! A deleted entry's events (and a deleted version's) are named from its tombstone, with
//! the visibility it had when it was deleted: a follower sees `entity: entry, op:
//! delete` (or `version`/`delete` with the version) and a mirror drops it.
//!
//! Guarantees: events come oldest first in commit order; a caller following from any
//! position with `next` sees every event of its view exactly once per read, with no gap
//! (at-least-once across retries: a client that loses an answer asks again from its last
//! position). Long polls and streams wake on the engine's head watch, which the follower
//! moves as soon as the database's feed waker (or its poll) reports a new head, so a
//! waiting client hears of a write within about the time the write takes to commit.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use quiver_auth::{authorize, Action};
use quiver_model::{Error, FeedEntity, FeedOp, Kind, Result};
use serde::Serialize;

use crate::{entry_target, Caller, Registry};

/// The most events one answer holds.
pub const MAX_LIMIT: usize = 1_000;
/// The longest long poll.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Feed events examined per answer at most, however many are hidden from the caller.
const SCAN: usize = 10_000;

/// One change, as a follower sees it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Change {
    /// The feed position: resume after it.
    pub seq: i64,
    pub at: Timestamp,
    /// What changed: `entry`, `version`, `relation`, `namespace` or `document`.
    pub entity: String,
    /// `create`, `update` or `delete` (a version's update: yanked, unyanked, validated).
    pub op: String,
    /// The entry it touches (for a relation: the entry it starts from).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The version, for a version's event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A page of changes.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Changes {
    pub items: Vec<Change>,
    /// Where to resume (`since=next`): past every event examined, shown or not.
    pub next: i64,
    /// The feed's newest position when this was read.
    pub head: i64,
}

/// A stand-in entry naming a deleted one in the feed (only its key is used).
pub(crate) fn tombstone_entry(t: &quiver_model::Tombstone) -> quiver_model::Entry {
    quiver_model::Entry {
        id: t.entry_id,
        kind: t.kind,
        namespace: t.namespace.clone(),
        name: t.name.clone(),
        display_name: None,
        description: String::new(),
        category: None,
        tags: Vec::new(),
        keywords: Vec::new(),
        status: quiver_model::Status::Archived,
        visibility: t.visibility,
        deprecation: None,
        popularity: Default::default(),
        latest_version: None,
        created_at: t.deleted_at,
        updated_at: t.deleted_at,
        disabled: None,
    }
}

impl Registry {
    /// The changes after `since` that the caller may see, at most `limit`, oldest first.
    pub async fn changes(&self, caller: &Caller, since: i64, limit: usize) -> Result<Changes> {
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::invalid("limit", format!("1 to {MAX_LIMIT}")));
        }
        if since < 0 {
            return Err(Error::invalid("since", "a feed position, 0 or more"));
        }
        let admin =
            authorize(caller, Action::Administer, &quiver_auth::Target::site()).is_allowed();
        let head = self.db.store.feed_head().await?;
        let mut items = Vec::new();
        let mut next = since;
        let mut scanned = 0;
        while items.len() < limit && scanned < SCAN && next < head {
            let events = self.db.store.feed_since(next, limit).await?;
            let Some(last) = events.last() else { break };
            let last = last.seq;
            scanned += events.len();
            let mut entry_ids: Vec<i64> = events.iter().filter_map(|e| e.entry_id).collect();
            entry_ids.sort_unstable();
            entry_ids.dedup();
            let found = self.db.store.get_entries_by_id(&entry_ids).await?;
            // Deleted entries and versions are named from their tombstones (to whoever
            // could read the entry when it was deleted), so followers and mirrors see
            // the deletion.
            let mut gone_ids: Vec<i64> = entry_ids
                .iter()
                .copied()
                .filter(|id| !found.iter().any(|e| e.id == *id))
                .collect();
            gone_ids.extend(
                events
                    .iter()
                    .filter(|e| e.entity == FeedEntity::Version && e.op == FeedOp::Delete)
                    .filter_map(|e| e.entry_id),
            );
            let tombstones = if gone_ids.is_empty() {
                Vec::new()
            } else {
                self.db.store.tombstones_of_entries(&gone_ids).await?
            };
            let mut entries: HashMap<i64, quiver_model::Entry> = found
                .into_iter()
                .filter(|e| authorize(caller, Action::Read, &entry_target(e)).is_allowed())
                .map(|e| (e.id, e))
                .collect();
            let mut deleted_versions: HashMap<i64, String> = HashMap::new();
            for t in tombstones {
                let target = quiver_auth::Target::entry(&t.namespace, &t.name, t.visibility);
                if !authorize(caller, Action::Read, &target).is_allowed() {
                    continue;
                }
                match (t.version_id, &t.version) {
                    (Some(vid), Some(v)) => {
                        deleted_versions.insert(vid, v.clone());
                    }
                    _ => {
                        entries
                            .entry(t.entry_id)
                            .or_insert_with(|| tombstone_entry(&t));
                    }
                }
            }
            let version_ids: Vec<i64> = events
                .iter()
                .filter(|e| e.entity == FeedEntity::Version)
                .filter(|e| e.entry_id.is_some_and(|id| entries.contains_key(&id)))
                .map(|e| e.entity_id)
                .collect();
            let mut versions: HashMap<i64, String> = self
                .db
                .store
                .version_names_by_id(&version_ids)
                .await?
                .into_iter()
                .collect();
            versions.extend(deleted_versions);
            for ev in events {
                if items.len() == limit {
                    break;
                }
                next = ev.seq;
                let change =
                    |entry: Option<&quiver_model::Entry>, version: Option<String>| Change {
                        seq: ev.seq,
                        at: ev.at,
                        entity: ev.entity.as_str().to_string(),
                        op: ev.op.as_str().to_string(),
                        kind: entry.map(|e| e.kind),
                        namespace: entry.map(|e| e.namespace.clone()),
                        name: entry.map(|e| e.name.clone()),
                        version,
                    };
                match ev.entry_id {
                    Some(id) => {
                        if let Some(entry) = entries.get(&id) {
                            let version = (ev.entity == FeedEntity::Version)
                                .then(|| versions.get(&ev.entity_id).cloned())
                                .flatten();
                            items.push(change(Some(entry), version));
                        }
                    }
                    None if admin => items.push(change(None, None)),
                    None => {}
                }
            }
            if items.len() < limit {
                next = last;
            }
        }
        Ok(Changes { items, next, head })
    }

    /// [`Registry::changes`], waiting up to `wait` for a first change the caller may see.
    pub async fn wait_changes(
        &self,
        caller: &Caller,
        since: i64,
        limit: usize,
        wait: Duration,
    ) -> Result<Changes> {
        let wait = wait.min(MAX_WAIT);
        let deadline = tokio::time::Instant::now() + wait;
        let mut heads = self.heads.subscribe();
        let mut since = since;
        let mut woke = 0;
        loop {
            let page = self.changes(caller, since, limit).await?;
            if !page.items.is_empty() || wait.is_zero() {
                return Ok(page);
            }
            since = page.next;
            // Wait for the head to pass what was read (or the deadline).
            let seen = page.head.max(since);
            loop {
                let cur = *heads.borrow_and_update();
                if cur > seen {
                    if cur > woke {
                        woke = cur;
                    } else {
                        // Heard of, not readable yet (PostgreSQL numbers a commit a
                        // moment before it is durable): look again shortly.
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Ok(Changes {
                        next: since,
                        ..page
                    });
                }
                match tokio::time::timeout_at(deadline, heads.changed()).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(_)) => return Ok(page),
                    Err(_) => {
                        return Ok(Changes {
                            next: since,
                            ..page
                        })
                    }
                }
            }
        }
    }

    /// A receiver of the feed's newest head as this node hears of it (for streams).
    pub fn feed_heads(&self) -> tokio::sync::watch::Receiver<i64> {
        self.heads.subscribe()
    }

    /// Tell waiting followers of the public feed that the head is now `head`.
    pub(crate) fn advance_head(&self, head: i64) {
        self.heads.send_if_modified(|cur| {
            if head > *cur {
                *cur = head;
                true
            } else {
                false
            }
        });
    }
}
