//! Authoring: checking a version before publishing it. [`Registry::validate_version`]
//! runs every check a publish runs (who may publish, the version and manifest rules, a
//! tool's estimate expressions, the entry's manifest budget, the content's hash, the
//! quality gates and the review rule) and answers each finding with its field, writing
//! nothing: no version, no audit row of a publish, no counter (a trusted publisher's
//! daily auto-publish allowance is read, not spent).

use quiver_auth::{Action, Target};
use quiver_model::gates::{self, GateInput, GateLevel, GateResult};
use quiver_model::{EntryKey, Error, ErrorCode, NewEntry, NewVersion, Result, Status, Visibility};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Caller, Registry};

/// The entry's own fields, for checking the first version of a name not created yet.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryDraft {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub visibility: Option<Visibility>,
}

/// What a publish would do with the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Stored and installable.
    Accepted,
    /// Stored; the entry waits for a moderator before it is listed (`why` in the
    /// findings).
    Review,
    /// Stored but held back by a required quality gate: not installable until fixed.
    HeldBack,
    /// Refused: nothing would be written.
    Refused,
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Refuses the publish, or holds the version back.
    Error,
    /// Advice: the publish goes through.
    Warning,
    /// What will happen (review, a new entry).
    Note,
}

/// One thing the checks found.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Finding {
    /// The field at fault (`version`, `manifest.patterns[0].estimate`, `description`, ...).
    pub field: String,
    pub severity: Severity,
    /// The quality gate that found it, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    pub message: String,
}

/// The answer of a check: the outcome a publish would have and every finding.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ValidationReport {
    pub outcome: Outcome,
    /// Whether the entry would be created by this publish (it does not exist yet).
    pub new_entry: bool,
    /// The canonical manifest's sha256, when the version is well formed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub findings: Vec<Finding>,
    /// Each quality gate's verdict, as the publish would record it.
    pub gates: Vec<GateResult>,
}

/// A version to check: what `POST …/versions` takes, and the entry's fields when the
/// name does not exist yet.
#[derive(Debug, Clone)]
pub struct VersionDraft {
    pub version: NewVersion,
    pub content: Option<Vec<u8>>,
    pub entry: Option<EntryDraft>,
}

fn finding(e: &Error, prefix: &str) -> Finding {
    let field = e.field.clone().unwrap_or_else(|| "version".into());
    let message = e
        .message
        .strip_prefix(&format!("{field}: "))
        .unwrap_or(&e.message)
        .to_string();
    Finding {
        field: format!("{prefix}{field}"),
        severity: Severity::Error,
        gate: None,
        message,
    }
}

/// The field a gate's finding is about.
fn gate_field(gate: &str) -> &'static str {
    match gate {
        "description" => "description",
        "naming" | "confusable" => "name",
        _ => "manifest",
    }
}

impl Registry {
    /// Check a version as a publish would, writing nothing. Errors only for what a
    /// publish would not get past before looking at the version (the entry unknown or
    /// hidden with no `entry` fields given, or the caller not allowed to publish it);
    /// everything about the version itself is a finding.
    pub async fn validate_version(
        &self,
        caller: &Caller,
        key: &EntryKey,
        draft: VersionDraft,
    ) -> Result<ValidationReport> {
        let mut findings = vec![];
        let (description, status, first, new_entry) = match self
            .publishable_entry(caller, key)
            .await
        {
            Ok((entry, action)) => (
                entry.description,
                entry.status,
                action == Action::CreateEntry,
                false,
            ),
            Err(e)
                if e.code == ErrorCode::NotFound
                    && self.db.store.get_entry(key).await?.is_none() =>
            {
                let Some(fields) = draft.entry.clone() else {
                    return Err(Error::not_found(format!(
                        "{key} (give the entry's fields in `entry` to check the first version of a new name)"
                    )));
                };
                let mut new = NewEntry {
                    kind: key.kind,
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    display_name: fields.display_name,
                    description: fields.description,
                    category: fields.category,
                    tags: fields.tags,
                    keywords: fields.keywords,
                    status: None,
                    visibility: fields.visibility,
                    popularity: None,
                };
                if let Err(e) = quiver_model::validate::new_entry(&mut new) {
                    let mut f = finding(&e, "entry.");
                    if e.field
                        .as_deref()
                        .is_some_and(|f| ["kind", "namespace", "name"].contains(&f))
                    {
                        f.field = e.field.clone().unwrap_or_default();
                    }
                    findings.push(f);
                }
                let target = Target::entry(
                    &new.namespace,
                    &new.name,
                    new.visibility.unwrap_or(Visibility::Public),
                );
                self.require(caller, Action::CreateEntry, &target, &"this")
                    .await?;
                findings.push(Finding {
                    field: "entry".into(),
                    severity: Severity::Note,
                    gate: None,
                    message: format!("{key} does not exist yet: publishing creates it"),
                });
                (new.description, Status::Draft, true, true)
            }
            Err(e) => return Err(e),
        };

        let mut version = draft.version;
        if let Some(bytes) = draft.content {
            if let Err(e) = crate::content::attach_content(&mut version.manifest, &bytes) {
                findings.push(finding(&e, ""));
            }
        }
        if key.kind == quiver_model::Kind::Tool {
            if let Err(e) = quiver_model::expr::check_tool_manifest(&version.manifest) {
                findings.push(finding(&e, ""));
            }
        }
        let manifest = version.manifest.clone();
        let number = version.version.clone();
        let mut sha256 = None;
        match quiver_store::valid_version(key.kind, version) {
            Ok(valid) => {
                if !new_entry {
                    if let Err(e) = self.check_manifest_budget(key, &valid).await {
                        findings.push(finding(&e, ""));
                    }
                }
                if !new_entry
                    && self
                        .db
                        .store
                        .get_version(key, &valid.version.version)
                        .await?
                        .is_some()
                {
                    findings.push(Finding {
                        field: "version".into(),
                        severity: Severity::Error,
                        gate: None,
                        message: format!(
                            "{} is already published (versions are immutable: publish a new one)",
                            valid.version.version
                        ),
                    });
                }
                sha256 = Some(valid.sha256);
            }
            Err(e) => findings.push(finding(&e, "")),
        }
        if status == Status::Archived {
            findings.push(Finding {
                field: "status".into(),
                severity: Severity::Error,
                gate: None,
                message: "an archived entry takes no new versions".into(),
            });
        }
        let refused = findings.iter().any(|f| f.severity == Severity::Error);

        let popular = crate::gates::popular_names_of(&self.index, key);
        let results = gates::run_gates(&GateInput {
            kind: key.kind,
            namespace: &key.namespace,
            name: &key.name,
            description: &description,
            manifest: &manifest,
            popular: &popular,
        });
        for g in results.iter().filter(|g| !g.passed) {
            for message in &g.findings {
                findings.push(Finding {
                    field: gate_field(&g.gate).into(),
                    severity: match g.level {
                        GateLevel::Required => Severity::Error,
                        GateLevel::Advisory => Severity::Warning,
                    },
                    gate: Some(g.gate.clone()),
                    message: message.clone(),
                });
            }
        }
        let held_back = !gates::all_required_pass(&results);

        let mut outcome = match (refused, held_back) {
            (true, _) => Outcome::Refused,
            (false, true) => Outcome::HeldBack,
            (false, false) => Outcome::Accepted,
        };
        if outcome == Outcome::Accepted && first && status == Status::Draft {
            if let Some(why) = self.review_preview(caller, key.kind, &manifest).await? {
                outcome = Outcome::Review;
                findings.push(Finding {
                    field: "status".into(),
                    severity: Severity::Note,
                    gate: None,
                    message: format!("the entry goes to review: {why}"),
                });
            }
        }
        tracing::debug!(%key, version = %number, ?outcome, "validated a version");
        Ok(ValidationReport {
            outcome,
            new_entry,
            sha256,
            findings,
            gates: results,
        })
    }
}

/// The longest reason for disabling an entry, in characters.
pub const MAX_REASON: usize = 500;

impl Registry {
    /// Disable an entry with a reason (its maintainers: those who may publish it). It
    /// stays readable by name and keeps its versions, but is marked disabled, never
    /// selected, suggested or resolved by a range, and left out of search unless asked
    /// for. Audited (`entry.disable`) and on the change feed. Disabling a disabled entry
    /// again replaces the reason.
    pub async fn disable_entry(
        &self,
        caller: &Caller,
        key: &EntryKey,
        reason: &str,
    ) -> Result<quiver_model::Entry> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON {
            return Err(Error::invalid(
                "reason",
                format!("say why, in 1 to {MAX_REASON} characters"),
            ));
        }
        if reason.chars().any(quiver_model::validate::is_invisible) {
            return Err(Error::invalid(
                "reason",
                "no control or invisible characters",
            ));
        }
        let disabled = quiver_model::Disabled {
            reason: reason.to_string(),
            since: jiff::Timestamp::now(),
        };
        self.set_disabled(caller, key, Some(disabled), "entry.disable", Some(reason))
            .await
    }

    /// Enable a disabled entry again (its maintainers). Audited (`entry.enable`); enabling
    /// an enabled entry changes nothing and writes nothing.
    pub async fn enable_entry(
        &self,
        caller: &Caller,
        key: &EntryKey,
    ) -> Result<quiver_model::Entry> {
        self.set_disabled(caller, key, None, "entry.enable", None)
            .await
    }

    async fn set_disabled(
        &self,
        caller: &Caller,
        key: &EntryKey,
        disabled: Option<quiver_model::Disabled>,
        action: &'static str,
        reason: Option<&str>,
    ) -> Result<quiver_model::Entry> {
        let before = self.writable_entry(caller, key, Action::Publish).await?;
        if before.disabled.is_none() && disabled.is_none() {
            return Ok(before);
        }
        let audit = self
            .draft(
                caller,
                crate::audit::Event {
                    action,
                    namespace: Some(&before.namespace),
                    target: key.to_string(),
                    denied: None,
                    reason: reason.map(str::to_string),
                    diff: Some(serde_json::json!({
                        "disabled": {
                            "before": before.disabled.as_ref().map(|d| &d.reason),
                            "after": disabled.as_ref().map(|d| &d.reason),
                        }
                    })),
                },
                quiver_store::AuditDiff::Given,
            )
            .await;
        let patch = quiver_model::EntryPatch {
            disabled: Some(disabled),
            ..Default::default()
        };
        self.db.store.update_entry_audited(key, patch, audit).await
    }
}

/// The most entries one bulk update may touch: a filter matching more is refused (narrow
/// it, or run several).
pub const MAX_BULK: usize = 1000;

/// Which entries a bulk update touches (at least one criterion; everyone but site admins
/// and moderators names a namespace).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkFilter {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub kind: Option<quiver_model::Kind>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
}

/// What a bulk update changes on each entry.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkPatch {
    /// Tags to add (kept once each).
    #[serde(default)]
    pub add_tags: Vec<String>,
    /// Tags to remove.
    #[serde(default)]
    pub remove_tags: Vec<String>,
    /// The new category (empty clears it).
    #[serde(default)]
    pub category: Option<String>,
    /// A lifecycle change with its reason, as `POST …/status` takes it.
    #[serde(default)]
    pub status: Option<crate::lifecycle::StatusChange>,
}

/// Body of `PATCH /api/v1/entries`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkUpdate {
    pub filter: BulkFilter,
    pub patch: BulkPatch,
    /// Only say what would change (default false: apply).
    #[serde(default)]
    pub dry_run: bool,
}

/// One field's value before and after.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct FieldChange<T> {
    pub before: T,
    pub after: T,
}

/// What a bulk update changes (or would change) on one entry.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct BulkChange {
    pub entry: EntryKey,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<FieldChange<Vec<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<FieldChange<Option<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<FieldChange<Status>>,
}

/// A matched entry left alone, and why.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct BulkSkip {
    pub entry: EntryKey,
    pub reason: String,
}

/// The answer of a bulk update: the same list for a dry run and for the run that applies
/// it (as long as nothing changed in between).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct BulkReport {
    pub dry_run: bool,
    /// Entries the filter matched among those the caller may see.
    pub matched: usize,
    pub changed: Vec<BulkChange>,
    /// Matched entries the patch leaves as they are (already so, not allowed, or a
    /// lifecycle change that does not apply to their status).
    pub skipped: Vec<BulkSkip>,
}

impl Registry {
    /// Change many entries at once: tags added or removed, the category, a lifecycle
    /// status (with its reason), over the entries a filter matches that the caller may
    /// change. `dry_run` answers the list without writing; otherwise each entry is
    /// written on its own with one audit row (`entry.bulk-update`) and appears on the
    /// feed. A failure part way leaves the entries before it changed and says which.
    pub async fn bulk_update(&self, caller: &Caller, req: BulkUpdate) -> Result<BulkReport> {
        let f = &req.filter;
        if f.namespace.is_none() && f.kind.is_none() && f.category.is_none() && f.tag.is_none() {
            return Err(Error::invalid(
                "filter",
                "give at least one of namespace, kind, category, tag",
            ));
        }
        let moderator = crate::lifecycle::is_moderator(caller);
        if f.namespace.is_none() && !moderator {
            return Err(Error::invalid(
                "filter.namespace",
                "name the namespace (only moderators and admins update across namespaces)",
            ));
        }
        let p = &req.patch;
        let mut probe = quiver_model::EntryPatch {
            tags: (!p.add_tags.is_empty()).then(|| p.add_tags.clone()),
            category: p.category.clone(),
            ..Default::default()
        };
        if p.add_tags.is_empty()
            && p.remove_tags.is_empty()
            && p.category.is_none()
            && p.status.is_none()
        {
            return Err(Error::invalid(
                "patch",
                "give add_tags, remove_tags, category or status",
            ));
        }
        if probe.tags.is_some() || probe.category.is_some() {
            quiver_model::validate::entry_patch(&mut probe).map_err(|e| {
                let field = e.field.clone().unwrap_or_default();
                let field = if field == "tags" {
                    "add_tags".into()
                } else {
                    field
                };
                Error::invalid(
                    format!("patch.{field}"),
                    e.message
                        .split_once(": ")
                        .map_or(e.message.clone(), |(_, m)| m.to_string()),
                )
            })?;
        }
        if let Some(s) = &p.status {
            if s.reason.trim().is_empty() {
                return Err(Error::invalid("patch.status.reason", "say why"));
            }
        }
        let filter = quiver_store::EntryFilter {
            kinds: f.kind.into_iter().collect(),
            namespaces: f.namespace.iter().cloned().collect(),
            categories: f.category.iter().cloned().collect(),
            tags: f.tag.iter().cloned().collect(),
            statuses: vec![],
            ..Default::default()
        };
        let mut entries = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .list_entries(caller, filter.clone(), cursor.as_deref(), 100)
                .await?;
            entries.extend(page.items);
            if entries.len() > MAX_BULK {
                return Err(Error::invalid(
                    "filter",
                    format!("matches more than {MAX_BULK} entries: narrow it"),
                ));
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }

        let mut report = BulkReport {
            dry_run: req.dry_run,
            matched: entries.len(),
            changed: vec![],
            skipped: vec![],
        };
        for e in entries {
            let key = e.key();
            let may_edit = self
                .decide(caller, Action::Publish, &crate::entry_target(&e))
                .await?
                .is_allowed();
            let mut change = BulkChange {
                entry: key.clone(),
                tags: None,
                category: None,
                status: None,
            };
            let mut why_not = None;
            if !p.add_tags.is_empty() || !p.remove_tags.is_empty() || p.category.is_some() {
                if !may_edit {
                    why_not = Some("you may not change this entry".to_string());
                } else {
                    let mut tags = e.tags.clone();
                    tags.retain(|t| !p.remove_tags.contains(t));
                    for t in probe.tags.iter().flatten() {
                        if !tags.contains(t) {
                            tags.push(t.clone());
                        }
                    }
                    if tags != e.tags {
                        change.tags = Some(FieldChange {
                            before: e.tags.clone(),
                            after: tags,
                        });
                    }
                    if let Some(c) = &probe.category {
                        let after = (!c.is_empty()).then(|| c.clone());
                        if after != e.category {
                            change.category = Some(FieldChange {
                                before: e.category.clone(),
                                after,
                            });
                        }
                    }
                }
            }
            if let (Some(s), None) = (&p.status, &why_not) {
                if s.status != e.status {
                    if !(may_edit || moderator) {
                        why_not = Some("you may not change this entry".into());
                    } else if let Err(err) = crate::lifecycle::check(e.status, s.status) {
                        why_not = Some(err.message);
                    } else if crate::lifecycle::needs_moderator(e.status, s.status) && !moderator {
                        why_not = Some("only a moderator may approve an entry in review".into());
                    } else {
                        change.status = Some(FieldChange {
                            before: e.status,
                            after: s.status,
                        });
                    }
                }
            }
            if let Some(reason) = why_not {
                report.skipped.push(BulkSkip { entry: key, reason });
                continue;
            }
            if change.tags.is_none() && change.category.is_none() && change.status.is_none() {
                report.skipped.push(BulkSkip {
                    entry: key,
                    reason: "already so".into(),
                });
                continue;
            }
            if !req.dry_run {
                self.apply_bulk_change(caller, &e, &change, p)
                    .await
                    .map_err(|err| Error {
                        message: format!(
                            "{key}: {} ({} entries were changed before it)",
                            err.message,
                            report.changed.len()
                        ),
                        ..err
                    })?;
            }
            report.changed.push(change);
        }
        Ok(report)
    }

    async fn apply_bulk_change(
        &self,
        caller: &Caller,
        before: &quiver_model::Entry,
        change: &BulkChange,
        p: &BulkPatch,
    ) -> Result<()> {
        let key = before.key();
        let status = change.status.as_ref().map(|s| s.after);
        let reason = p.status.as_ref().map(|s| s.reason.trim().to_string());
        let deprecation = match (&p.status, status) {
            (Some(s), Some(Status::Deprecated)) => Some(quiver_model::Deprecation {
                message: s
                    .message
                    .clone()
                    .unwrap_or_else(|| s.reason.trim().to_string()),
                replacement: s.replacement.clone(),
            }),
            _ => None,
        };
        let audit = self
            .draft(
                caller,
                crate::audit::Event {
                    action: "entry.bulk-update",
                    namespace: Some(&before.namespace),
                    target: key.to_string(),
                    denied: None,
                    reason: reason.clone().filter(|_| status.is_some()),
                    diff: Some(serde_json::to_value(change).unwrap_or_default()),
                },
                quiver_store::AuditDiff::Given,
            )
            .await;
        let patch = quiver_model::EntryPatch {
            tags: change.tags.as_ref().map(|t| t.after.clone()),
            category: change
                .category
                .as_ref()
                .map(|c| c.after.clone().unwrap_or_default()),
            status,
            deprecation,
            ..Default::default()
        };
        let after = self
            .db
            .store
            .update_entry_audited(&key, patch, audit)
            .await?;
        if let (Some(s), Some(reason)) = (change.status.as_ref(), reason) {
            self.note_review(caller, &key, s.before, after.status, &reason, vec![])
                .await?;
        }
        Ok(())
    }
}
