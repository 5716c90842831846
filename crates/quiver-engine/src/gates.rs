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
use quiver_model::{Entry, EntryKey, EntryPatch, ErrorCode, Status, Validation, Version};
use quiver_search::{SearchIndex, SearchQuery, Sort};
use quiver_store::worker::Handler;
use quiver_store::{AuditLog, Job, NewAuditRecord, Store};

use crate::VALIDATE_VERSION;

/// The popularity (0..1) from which a name is protected against look-alikes.
pub const POPULAR_MIN: f64 = 0.5;

/// Runs `validate_version` jobs.
pub(crate) struct ValidateVersion {
    pub store: Arc<dyn Store>,
    pub index: Arc<SearchIndex>,
    /// Where a hold-back is recorded.
    pub audit: Arc<dyn AuditLog>,
}

/// The actor of the audit rows the gates write.
pub const GATES_ACTOR: &str = "quiver (quality gates)";

/// Whether a stored result is current for this version.
fn current(v: &Version, r: &Validation) -> bool {
    r.sha256 == v.sha256 && r.gates_version == GATES_VERSION
}

/// Popular names of `entry`'s kind to compare its name against.
pub fn popular_names(index: &SearchIndex, entry: &Entry) -> Vec<PopularName> {
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
        self.store
            .update_entry(
                key,
                EntryPatch {
                    status: Some(Status::Draft),
                    ..EntryPatch::default()
                },
            )
            .await?;
        self.audit
            .append_audit(NewAuditRecord {
                actor: GATES_ACTOR.to_string(),
                action: "entry.hold-back".to_string(),
                namespace: Some(key.namespace.clone()),
                target: key.to_string(),
                outcome: "allowed".to_string(),
                reason: Some("every version is held back: nothing to install".into()),
                diff: Some(
                    serde_json::json!({"status": {"before": "published", "after": "draft"}}),
                ),
                client: None,
            })
            .await?;
        Ok(())
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
        // A failed required gate holds the version back: it is yanked (so it is never
        // the latest, and installs skip it) with the failures as the reason, before the
        // result is recorded, so whoever sees the result sees the version held back. The
        // publisher fixes the manifest and publishes a new version.
        if !result.passed && !v.yanked {
            let reason = format!(
                "held back: a required quality gate failed ({})",
                result.errors.join("; ")
            );
            let reason: String = reason.chars().take(1000).collect();
            self.store
                .set_yanked(&key, &version, true, Some(reason.clone()))
                .await
                .map_err(|e| e.to_string())?;
            // The job may run again after a crash here; the version is then already
            // yanked and no second row is written.
            {
                self.audit
                    .append_audit(NewAuditRecord {
                        actor: GATES_ACTOR.to_string(),
                        action: "version.hold-back".to_string(),
                        namespace: Some(key.namespace.clone()),
                        target: format!("{key}@{version}"),
                        outcome: "allowed".to_string(),
                        reason: Some(reason),
                        diff: Some(serde_json::json!({"yanked": {"before": false, "after": true}})),
                        client: None,
                    })
                    .await
                    .map_err(|e| e.to_string())?;
            }
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
