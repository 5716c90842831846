//! The `validate_version` job: runs the quality gates (`quiver_model::gates`) on a
//! published version and stores the result on it, keyed by the manifest hash.
//!
//! Idempotent and never done twice for the same manifest: a version whose stored result
//! is for its manifest hash (by the current gate set) is left alone, and a version whose
//! manifest hash another version of the entry was already checked for takes that result.
//! Popular names for the confusable-name gate come from the search index: the most
//! popular entries of the kind, and the entries whose names match this one, with a
//! popularity of at least [`POPULAR_MIN`].

use std::sync::Arc;

use quiver_model::gates::{self, GateInput, GateLevel, PopularName, GATES_VERSION};
use quiver_model::{Entry, EntryKey, EntryPatch, ErrorCode, Result, Status, Validation, Version};
use quiver_search::{SearchIndex, SearchQuery, Sort};
use quiver_store::worker::Handler;
use quiver_store::{
    AuditDiff, AuditDraft, AuditFilter, AuditLog, Database, Job, NewAuditRecord, NewJob, Store,
};

use crate::VALIDATE_VERSION;

/// The popularity (0..1) from which a name is protected against look-alikes.
pub const POPULAR_MIN: f64 = 0.5;

/// Runs `validate_version` jobs.
pub(crate) struct ValidateVersion {
    pub store: Arc<dyn Store>,
    pub index: Arc<SearchIndex>,
    /// Where the gates learn whether a version was published here.
    pub audit: Arc<dyn AuditLog>,
}

/// The actor of the audit rows the gates write.
pub const GATES_ACTOR: &str = "quiver (quality gates)";

/// The consumer of the change feed that queues the quality gates (its position is in
/// `feed_cursors`, shared by every node).
pub const GATES_CONSUMER: &str = "validate_version";

/// Feed positions read per round of [`queue_gates`] (one set-based read each).
const GATES_WINDOW: i64 = 50_000;

/// The `validate_version` job of one version, deduplicated while one is unfinished.
pub(crate) fn validate_job(key: &EntryKey, version: &str) -> NewJob {
    NewJob::new(
        VALIDATE_VERSION,
        serde_json::json!({"entry": key, "version": version}),
    )
    .dedup_key(format!("validate:{key}@{version}"))
    .max_attempts(5)
}

/// Queue the quality gates of the versions written since this consumer's position,
/// whoever wrote them (the API, an import, another node), and move the position: for
/// each entry that got a version, every version of it that has no result yet. Answers
/// how many jobs were queued.
///
/// A crash before the position moves queues the same jobs again, which their dedup key
/// (while unfinished) and the handler's check for a current result make harmless; two
/// nodes running this at once both queue, and one moves the position.
///
/// Entries in `ecosystems` (the namespaces holding an outside registry's packages) are
/// left out: they are not authored here, their registry governs them, and a gate such as
/// the look-alike check would hold back real packages.
pub async fn queue_gates(db: &Database, ecosystems: &[String]) -> Result<u64> {
    let mut queued = 0;
    let head = db.store.feed_head().await?;
    loop {
        let from = db.cursors.cursor(GATES_CONSUMER).await?;
        if from >= head {
            return Ok(queued);
        }
        let through = head.min(from.saturating_add(GATES_WINDOW));
        let ids = db
            .store
            .entries_with_new_versions(from, through, ecosystems)
            .await?;
        let mut jobs = vec![];
        for entry in db.store.get_entries_by_id(&ids).await? {
            let key = entry.key();
            for v in db.store.list_versions(&key).await? {
                if v.validation.is_none() {
                    jobs.push(validate_job(&key, &v.version));
                }
            }
        }
        let n = jobs.len() as u64;
        if !jobs.is_empty() {
            db.jobs.enqueue_many(jobs).await?;
        }
        // Another node may have moved it meanwhile: then read it again and go on.
        if db
            .cursors
            .advance_cursor(GATES_CONSUMER, from, through)
            .await?
        {
            queued += n;
        }
    }
}

/// The audit row of a change the gates make, committed with it.
fn gates_audit(
    action: &str,
    key: &EntryKey,
    target: String,
    reason: String,
    diff: serde_json::Value,
) -> quiver_store::Audit {
    Some(AuditDraft {
        record: NewAuditRecord {
            actor: GATES_ACTOR.to_string(),
            action: action.to_string(),
            namespace: Some(key.namespace.clone()),
            target,
            outcome: "allowed".to_string(),
            reason: Some(reason),
            diff: Some(diff),
            client: None,
        },
        diff: AuditDiff::Given,
    })
}

/// Whether a stored result is current for this version.
fn current(v: &Version, r: &Validation) -> bool {
    r.sha256 == v.sha256 && r.gates_version == GATES_VERSION
}

/// Popular names of `entry`'s kind to compare its name against.
pub fn popular_names(index: &SearchIndex, entry: &Entry) -> Vec<PopularName> {
    popular_names_of(
        index,
        &EntryKey::new(entry.kind, &entry.namespace, &entry.name),
    )
}

/// Popular names of `key`'s kind to compare its name against (the name need not exist).
pub fn popular_names_of(index: &SearchIndex, entry: &EntryKey) -> Vec<PopularName> {
    let mut out: Vec<PopularName> = vec![];
    let queries = [
        SearchQuery {
            kinds: vec![entry.kind],
            sort: Sort::Popularity,
            limit: 100,
            ..Default::default()
        },
        SearchQuery {
            q: entry.name.clone(),
            kinds: vec![entry.kind],
            limit: 50,
            ..Default::default()
        },
    ];
    for q in queries {
        let Ok(res) = index.search(&q) else { continue };
        for h in res.hits {
            let same = h.namespace == entry.namespace && h.name == entry.name;
            let seen = out
                .iter()
                .any(|p| p.namespace == h.namespace && p.name == h.name);
            if h.popularity >= POPULAR_MIN && !same && !seen {
                out.push(PopularName {
                    namespace: h.namespace,
                    name: h.name,
                });
            }
        }
    }
    out
}

/// The gates' verdict on one version of an entry.
pub fn check_version(index: &SearchIndex, entry: &Entry, v: &Version) -> Validation {
    let popular = popular_names(index, entry);
    let results = gates::run_gates(&GateInput {
        kind: entry.kind,
        namespace: &entry.namespace,
        name: &entry.name,
        description: &entry.description,
        manifest: &v.manifest,
        popular: &popular,
    });
    Validation {
        passed: gates::all_required_pass(&results),
        errors: gates::failures(&results, GateLevel::Required),
        warnings: gates::failures(&results, GateLevel::Advisory),
        sha256: v.sha256.clone(),
        checked_at: jiff::Timestamp::now(),
        gates: results,
        gates_version: GATES_VERSION,
    }
}

#[async_trait::async_trait]
impl Handler for ValidateVersion {
    fn kind(&self) -> &str {
        VALIDATE_VERSION
    }

    async fn run(&self, job: &Job) -> std::result::Result<(), String> {
        self.validate(job).await
    }
}

impl ValidateVersion {
    /// The held-back rule: an entry with no version left that installs can use (its only
    /// versions were held back) is not listed or searched as published — a published
    /// entry goes back to `draft`, audited by the gates. Publishing a fixed version
    /// publishes it again (a draft's first good version does). Run after each hold-back;
    /// a run after a crash finds the entry already in draft and writes nothing.
    async fn unpublish_if_nothing_to_install(&self, key: &EntryKey) -> quiver_model::Result<()> {
        let Some(entry) = self.store.get_entry(key).await? else {
            return Ok(());
        };
        if entry.status != Status::Published || entry.latest_version.is_some() {
            return Ok(());
        }
        let audit = gates_audit(
            "entry.hold-back",
            key,
            key.to_string(),
            "every version is held back: nothing to install".into(),
            serde_json::json!({"status": {"before": "published", "after": "draft"}}),
        );
        self.store
            .update_entry_audited(
                key,
                EntryPatch {
                    status: Some(Status::Draft),
                    ..EntryPatch::default()
                },
                audit,
            )
            .await?;
        Ok(())
    }

    /// Whether `version` was published through quiver: its `version.publish` audit row
    /// commits with it, so the row is the version's provenance. Imported versions have
    /// none (an import leaves one row per run).
    async fn published_here(
        &self,
        key: &EntryKey,
        version: &str,
    ) -> std::result::Result<bool, String> {
        let filter = AuditFilter {
            action: Some("version.publish".into()),
            target: Some(format!("{key}@{version}")),
            outcome: Some("allowed".into()),
            ..AuditFilter::default()
        };
        let rows = self
            .audit
            .list_audit(&filter, None, 1)
            .await
            .map_err(|e| e.to_string())?;
        Ok(!rows.items.is_empty())
    }

    async fn validate(&self, job: &Job) -> std::result::Result<(), String> {
        let key: EntryKey = serde_json::from_value(job.payload["entry"].clone())
            .map_err(|e| format!("payload.entry: {e}"))?;
        let version = job.payload["version"]
            .as_str()
            .ok_or("payload.version: missing")?
            .to_string();
        let gone = |e: &quiver_model::Error| e.code == ErrorCode::NotFound;
        let entry = match self.store.get_entry(&key).await {
            Ok(Some(e)) => e,
            // The entry or version is gone: nothing to validate.
            Ok(None) => return Ok(()),
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let v = match self.store.get_version(&key, &version).await {
            Ok(Some(v)) => v,
            Ok(None) => return Ok(()),
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        if v.validation.as_ref().is_some_and(|r| current(&v, r)) {
            return Ok(());
        }
        // The same manifest, already checked on another version: its result stands.
        let earlier = self
            .store
            .list_versions(&key)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|o| o.version != v.version)
            .find_map(|o| o.validation.filter(|r| current(&v, r)));
        let result = match earlier {
            Some(r) => r,
            None => check_version(&self.index, &entry, &v),
        };
        // A failed required gate holds a version published here back: it is yanked (so
        // it is never the latest, and installs skip it) with the failures as the reason,
        // before the result is recorded, so whoever sees the result sees the version held
        // back. The publisher fixes the manifest and publishes a new version. An imported
        // version keeps its source system's decision: its result records the failures.
        if !result.passed && !v.yanked && self.published_here(&key, &version).await? {
            let reason = format!(
                "held back: a required quality gate failed ({})",
                result.errors.join("; ")
            );
            let reason: String = reason.chars().take(1000).collect();
            // The row commits with the yank; a job run again after a crash finds the
            // version yanked and writes neither twice.
            let audit = gates_audit(
                "version.hold-back",
                &key,
                format!("{key}@{version}"),
                reason.clone(),
                serde_json::json!({"yanked": {"before": false, "after": true}}),
            );
            self.store
                .set_yanked_audited(&key, &version, true, Some(reason), audit)
                .await
                .map_err(|e| e.to_string())?;
            self.unpublish_if_nothing_to_install(&key)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.store
            .set_validation(&key, &version, result)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
