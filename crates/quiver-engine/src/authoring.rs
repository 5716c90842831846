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
