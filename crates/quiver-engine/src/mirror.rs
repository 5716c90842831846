//! Mirroring another quiver (issue 17): what `quiver mirror --from URL` writes locally.
//!
//! The command-line crate follows the other server's public change feed over HTTP and,
//! for each entry a page of events touches, reads the entry as that server answers it now
//! (fields, lifecycle state, every version with its manifest, its relations and the
//! content of its versions) into a [`Snapshot`]. This module applies snapshots to the
//! local store and keeps the mirror's position in the other server's feed; it knows no
//! HTTP.
//!
//! Design choices:
//! - **Snapshots, not replayed events.** An event says only *that* an entry changed; the
//!   mirror reads the entry's current state and applies it as an import record
//!   ([`Store::import_batch`], the write path of `quiver import`): entry fields, status,
//!   visibility, deprecation, new versions and yank states, compared before written. So
//!   applying a snapshot twice writes nothing the second time, and a mirror killed
//!   between a write and the move of its position repeats the batch harmlessly.
//! - **Only what anyone may read.** A snapshot of a private entry is skipped, whatever
//!   the feed answered (a mirror given a token that sees private entries still never
//!   copies them). Public and unlisted entries are copied with their visibility.
//! - **The position is durable and per source.** It is a [`FeedCursors`] position named
//!   `mirror:<source>` in the local store, moved after each applied batch by
//!   compare-and-set; positions are the other server's feed numbers.
//! - **Relations once both ends are here.** A relation is added when both of its ends
//!   exist locally; snapshots carry relations in both directions, so a relation whose
//!   target is mirrored later is added when the target's snapshot is applied.
//! - **Content is checked.** A version's content is kept in the content store only when
//!   its sha256 is the hash its manifest declares; content the source does not hold is
//!   simply absent, as on the source.
//! - **Deletions follow.** An entry (or version) the source's feed names as deleted, and
//!   that the source no longer answers, is deleted here too, leaving a tombstone that
//!   does not reserve the name ([`Mirror::apply_deletions`]).
//! - **One audit row per batch that changed something** (`mirror.apply`, with counts),
//!   and the quality gates of the new versions queued from the local feed, as for an
//!   import.
//!
//! [`Store::import_batch`]: quiver_store::Store::import_batch
//! [`FeedCursors`]: quiver_store::FeedCursors

use std::collections::HashMap;
use std::sync::Arc;

use quiver_import::jsonl::JsonlEntry;
use quiver_model::names::name_key;
use quiver_model::{validate, Visibility};
use quiver_model::{Entry, EntryKey, EntryPatch, Error, ErrorCode, Relation, Result, Version};
use quiver_store::{Database, Direction, ImportOutcome, NewAuditRecord, NewTombstone};
use serde::Serialize;

use crate::content::{declared_hash, sha256_hex, ContentStore, FileContentStore};
use crate::{Caller, EngineConfig};

/// An entry of the source as it stands: what one snapshot applies.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub entry: Entry,
    /// Every version, with its manifest.
    pub versions: Vec<Version>,
    /// Its relations, outgoing and incoming.
    pub relations: Vec<Relation>,
    /// The content of its versions, by sha256 (hex), for those the source holds.
    pub contents: HashMap<String, Vec<u8>>,
}

/// What applying a batch of snapshots did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Applied {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Private entries left out.
    pub skipped_private: u64,
    /// Entries the local store refused (a version published here with another manifest,
    /// a name the local rules refuse after renaming), each with the reason.
    pub rejected: Vec<String>,
    pub relations_added: u64,
    /// Relations with an end not (yet) here.
    pub relations_waiting: u64,
    pub contents_stored: u64,
    pub gates_queued: u64,
    /// Entries and versions deleted here because the source deleted them.
    pub deleted: u64,
}

impl Applied {
    /// Whether anything was written.
    pub fn wrote(&self) -> bool {
        self.created + self.updated + self.relations_added + self.contents_stored + self.deleted > 0
    }
}

/// Mirroring one source into the local database.
pub struct Mirror {
    db: Database,
    content: Arc<dyn ContentStore>,
    ecosystems: Vec<String>,
    consumer: String,
    prefix: String,
}

/// The name of a source's position among the feed cursors: the URL without credentials,
/// query or trailing slash.
pub fn consumer_name(source: &str) -> String {
    let s = source.trim().trim_end_matches('/');
    let s = s.split(['?', '#']).next().unwrap_or(s);
    let (scheme, rest) = s.split_once("://").unwrap_or(("", s));
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    if scheme.is_empty() {
        format!("mirror:{rest}")
    } else {
        format!("mirror:{scheme}://{rest}")
    }
}

impl Mirror {
    /// Mirror `source` (its base URL, which names the position) into `db`, prefixing
    /// namespaces with `prefix` (empty: keep them).
    pub fn new(db: Database, config: &EngineConfig, source: &str, prefix: &str) -> Result<Mirror> {
        if !prefix.is_empty() {
            // A prefix must make valid namespaces of valid ones.
            quiver_model::names::validate_namespace(&format!("{prefix}a"))
                .map_err(|_| Error::invalid("prefix", "lowercase letters, digits, '-' or '_'"))?;
        }
        let content: Arc<dyn ContentStore> = Arc::new(FileContentStore::new(
            config
                .content_dir
                .clone()
                .unwrap_or_else(|| config.data_dir.join("content")),
        ));
        Ok(Mirror {
            db,
            content,
            ecosystems: config.ecosystem_namespaces.clone(),
            consumer: consumer_name(source),
            prefix: prefix.to_string(),
        })
    }

    /// The name of this source's position in the local feed cursors.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The source's feed position the mirror has applied up to.
    pub async fn position(&self) -> Result<i64> {
        self.db.cursors.cursor(&self.consumer).await
    }

    /// Move the position from `from` to `to` after a batch is applied; `false` when
    /// another mirror of the same source moved it meanwhile.
    pub async fn advance(&self, from: i64, to: i64) -> Result<bool> {
        if to <= from {
            return Ok(true);
        }
        self.db
            .cursors
            .advance_cursor(&self.consumer, from, to)
            .await
    }

    /// Whether the local content store holds the blob of this sha256 (hex) already.
    pub async fn has_content(&self, hash: &str) -> Result<bool> {
        Ok(self.content.get(hash).await?.is_some())
    }

    /// The local name of a source's entry.
    pub fn local_key(&self, key: &EntryKey) -> EntryKey {
        EntryKey::new(
            key.kind,
            format!("{}{}", self.prefix, key.namespace),
            &key.name,
        )
    }

    /// Apply `snapshots` (one per entry) as the command-line operator: entries and
    /// versions in one import batch, then content, disabled states (the entry's and its
    /// versions') and relations.
    pub async fn apply(&self, caller: &Caller, snapshots: Vec<Snapshot>) -> Result<Applied> {
        if !crate::setup::site_admin(caller) {
            return Err(Error::forbidden("only site admins may mirror into a store"));
        }
        let mut out = Applied::default();
        let mut records = Vec::new();
        let mut kept = Vec::new();
        for s in snapshots {
            if s.entry.visibility == Visibility::Private {
                out.skipped_private += 1;
                continue;
            }
            let key = self.local_key(&s.entry.key());
            let mut entry = s.entry.clone();
            entry.namespace = key.namespace.clone();
            let outgoing: Vec<Relation> = Vec::new();
            let line = JsonlEntry::from_store(&entry, &s.versions, &outgoing);
            let (record, _) = match line.into_record() {
                Ok(r) => r,
                Err(e) => {
                    out.rejected.push(format!("{key}: {e}"));
                    continue;
                }
            };
            // Content first, as a publish stores it before the version naming it.
            for v in &s.versions {
                let Some(hash) = declared_hash(&v.manifest) else {
                    continue;
                };
                let Some(bytes) = s.contents.get(&hash) else {
                    continue;
                };
                if sha256_hex(bytes) != hash {
                    out.rejected.push(format!(
                        "{key}@{}: content whose sha256 is not the declared {hash}",
                        v.version
                    ));
                    continue;
                }
                if self.content.get(&hash).await?.is_none() {
                    self.content.put(&hash, bytes.clone()).await?;
                    out.contents_stored += 1;
                }
            }
            records.push(record);
            kept.push((key, s));
        }
        let outcomes = if records.is_empty() {
            Vec::new()
        } else {
            self.db.store.import_batch(records).await?
        };
        let mut applied = Vec::new();
        for (outcome, (key, s)) in outcomes.into_iter().zip(kept) {
            match outcome {
                ImportOutcome::Created => out.created += 1,
                ImportOutcome::Updated => out.updated += 1,
                ImportOutcome::Unchanged => out.unchanged += 1,
                ImportOutcome::Rejected(e) => {
                    out.rejected.push(format!("{key}: {e}"));
                    continue;
                }
            }
            applied.push((key, s));
        }
        for (key, s) in &applied {
            // The disabled state is not an import field: set it as the engine does.
            if let Some(local) = self.db.store.get_entry(key).await? {
                let same = match (&local.disabled, &s.entry.disabled) {
                    (None, None) => true,
                    (Some(a), Some(b)) => a.reason == b.reason,
                    _ => false,
                };
                if !same {
                    let patch = EntryPatch {
                        disabled: Some(s.entry.disabled.clone()),
                        ..Default::default()
                    };
                    self.db.store.update_entry(key, patch).await?;
                    out.updated += 1;
                }
                // Versions' disabled states, likewise.
                for v in &s.versions {
                    let Some(here) = self.db.store.get_version(key, &v.version).await? else {
                        continue;
                    };
                    let same = match (&here.disabled, &v.disabled) {
                        (None, None) => true,
                        (Some(a), Some(b)) => a.reason == b.reason,
                        _ => false,
                    };
                    if !same {
                        self.db
                            .store
                            .set_version_disabled_audited(key, &v.version, v.disabled.clone(), None)
                            .await?;
                        out.updated += 1;
                    }
                }
            }
            for r in &s.relations {
                let rel = Relation {
                    from: self.local_key(&r.from),
                    to: self.local_key(&r.to),
                    ..r.clone()
                };
                if self.add_relation(rel, &mut out).await? {
                    out.relations_added += 1;
                }
            }
        }
        if out.wrote() || !out.rejected.is_empty() {
            out.gates_queued = crate::gates::queue_gates(&self.db, &self.ecosystems).await?;
            self.audit(caller, &out).await;
        }
        Ok(out)
    }

    /// Delete here what the source deleted: `entries` its feed named as deleted that the
    /// source no longer answers, `versions` likewise (the caller checks the source).
    /// Each leaves a tombstone (`deleted at the mirror's source`, not reserving the
    /// name); what is not here is skipped. One audit row (`mirror.apply`) when anything
    /// went.
    pub async fn apply_deletions(
        &self,
        caller: &Caller,
        entries: &[EntryKey],
        versions: &[(EntryKey, String)],
    ) -> Result<Applied> {
        if !crate::setup::site_admin(caller) {
            return Err(Error::forbidden("only site admins may mirror into a store"));
        }
        let mut out = Applied::default();
        let tombstone = || NewTombstone {
            reason: "deleted at the mirror's source".into(),
            actor: caller.actor(),
            by_admin: false,
        };
        for (key, version) in versions {
            let key = self.local_key(key);
            match self
                .db
                .store
                .delete_version_audited(&key, version, tombstone(), None)
                .await
            {
                Ok(_) => out.deleted += 1,
                Err(e) if e.code == ErrorCode::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        for key in entries {
            let key = self.local_key(key);
            match self
                .db
                .store
                .delete_entry_audited(&key, tombstone(), None)
                .await
            {
                Ok(_) => out.deleted += 1,
                Err(e) if e.code == ErrorCode::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if out.wrote() {
            self.audit(caller, &out).await;
        }
        Ok(out)
    }

    /// Add a relation unless it is stored already (an add would write a feed row even
    /// for a no-op); `false` when nothing was written.
    async fn add_relation(&self, rel: Relation, out: &mut Applied) -> Result<bool> {
        if validate::relation(&rel).is_err() {
            out.relations_waiting += 1;
            return Ok(false);
        }
        let existing = match self
            .db
            .store
            .list_relations(&rel.from, Direction::Outgoing)
            .await
        {
            Ok(v) => v,
            Err(e) if e.code == ErrorCode::NotFound => {
                out.relations_waiting += 1;
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let same = |a: &EntryKey, b: &EntryKey| {
            a.kind == b.kind
                && a.namespace == b.namespace
                && name_key(a.kind, &a.namespace, &a.name)
                    == name_key(b.kind, &b.namespace, &b.name)
        };
        if existing.iter().any(|r| {
            r.kind == rel.kind
                && same(&r.to, &rel.to)
                && r.confidence == rel.confidence
                && r.source == rel.source
                && r.step_order == rel.step_order
        }) {
            return Ok(false);
        }
        match self.db.store.add_relation(rel).await {
            Ok(_) => Ok(true),
            Err(e) if e.code == ErrorCode::Internal => Err(e),
            Err(_) => {
                // An end that is not here (yet): added with that end's snapshot.
                out.relations_waiting += 1;
                Ok(false)
            }
        }
    }

    async fn audit(&self, caller: &Caller, out: &Applied) {
        let row = NewAuditRecord {
            actor: caller.actor(),
            action: "mirror.apply".into(),
            namespace: None,
            target: self.consumer.clone(),
            outcome: "allowed".into(),
            reason: None,
            diff: serde_json::to_value(out).ok(),
            client: crate::audit::current_client(),
        };
        if let Err(e) = self.db.audit.append_audit(row).await {
            tracing::error!(error = %e, "could not append to the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::consumer_name;

    #[test]
    fn positions_are_named_by_the_source_without_credentials() {
        assert_eq!(
            consumer_name("https://user:secret@registry.example/"),
            "mirror:https://registry.example"
        );
        assert_eq!(
            consumer_name("http://127.0.0.1:7070?x=1"),
            "mirror:http://127.0.0.1:7070"
        );
    }
}
