//! Security advisories (seed 004): what is known to be wrong with which versions of which
//! entries, and what fixes it. Stored whole as JSON beside an index of the entries each
//! affects, so that resolution finds the advisories of many entries in one read.

use jiff::Timestamp;
use quiver_model::{EntryKey, Result};
use serde::{Deserialize, Serialize};

use crate::Audit;

/// How bad an advisory is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// One entry an advisory affects: the versions (a semver range) and those that fix it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Affected {
    pub entry: EntryKey,
    /// The affected versions, a semver range (`<1.2.3`, `>=2.0.0, <2.1.4`).
    pub range: String,
    /// The versions that fix it.
    #[serde(default)]
    pub fixed: Vec<String>,
}

/// An advisory as it is published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Advisory {
    /// `QVR-2026-0001`.
    pub id: String,
    /// Other ids for the same problem (a CVE, a GHSA-style id).
    pub aliases: Vec<String>,
    pub summary: String,
    pub description: String,
    pub severity: Severity,
    /// A CVSS vector, when one was given.
    pub cvss: Option<String>,
    /// What kind of problem (`vulnerability`, `malicious`, `unmaintained`, …).
    pub advisory_type: String,
    /// What to do.
    pub recommendation: Option<String>,
    pub affected: Vec<Affected>,
    pub reporter: Option<String>,
    pub verified: bool,
    pub published_at: Timestamp,
    pub withdrawn_at: Option<Timestamp>,
    pub withdrawn_reason: Option<String>,
}

/// An advisory to publish (its id and times are the store's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdvisory {
    #[serde(default)]
    pub aliases: Vec<String>,
    pub summary: String,
    #[serde(default)]
    pub description: String,
    pub severity: Severity,
    #[serde(default)]
    pub cvss: Option<String>,
    /// Default `vulnerability`.
    #[serde(default)]
    pub advisory_type: Option<String>,
    #[serde(default)]
    pub recommendation: Option<String>,
    pub affected: Vec<Affected>,
    #[serde(default)]
    pub reporter: Option<String>,
    #[serde(default)]
    pub verified: bool,
}

impl NewAdvisory {
    /// The advisory as published under `id` at `at` (both backends number and time it).
    pub fn publish(self, id: String, at: Timestamp) -> Advisory {
        Advisory {
            id,
            aliases: self.aliases,
            summary: self.summary,
            description: self.description,
            severity: self.severity,
            cvss: self.cvss,
            advisory_type: self.advisory_type.unwrap_or_else(|| "vulnerability".into()),
            recommendation: self.recommendation,
            affected: self.affected,
            reporter: self.reporter,
            verified: self.verified,
            published_at: at,
            withdrawn_at: None,
            withdrawn_reason: None,
        }
    }
}

/// Which advisories to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdvisoryFilter {
    /// Only those affecting this entry.
    pub entry: Option<EntryKey>,
    pub min_severity: Option<Severity>,
    pub include_withdrawn: bool,
    pub limit: usize,
}

#[async_trait::async_trait]
pub trait AdvisoryStore: Send + Sync {
    /// Publish an advisory with the next id of its year (`QVR-<year>-<n>`, numbered from
    /// 0001), with its audit row. Every affected entry must exist.
    async fn create_advisory(
        &self,
        new: NewAdvisory,
        at: Timestamp,
        audit: Audit,
    ) -> Result<Advisory>;
    async fn advisory(&self, id: &str) -> Result<Option<Advisory>>;
    /// Newest first.
    async fn advisories(&self, filter: &AdvisoryFilter) -> Result<Vec<Advisory>>;
    /// The advisories (not withdrawn) that affect any of these entries.
    async fn advisories_of(&self, keys: &[EntryKey]) -> Result<Vec<Advisory>>;
    /// Withdraw an advisory (it stays listed with `include_withdrawn`), with its audit row.
    async fn withdraw_advisory(
        &self,
        id: &str,
        reason: String,
        at: Timestamp,
        audit: Audit,
    ) -> Result<Advisory>;
}

/// The id of the `n`th advisory of `year`.
pub fn advisory_id(year: i16, n: i64) -> String {
    format!("QVR-{year}-{n:04}")
}
