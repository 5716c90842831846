//! The recipe pipeline as live operations (the third seed's generation pipeline): a
//! priority queue that workers claim from with leases, results per item and target
//! environment that make recipes (with platform constraints derived from the whole
//! matrix, `constraints.rs`) or failure records, the "blocked by" analysis
//! (`blockers.rs`), re-queue when a blocking dependency gets its recipe (followed from the
//! change feed), safety valves per ecosystem (pause, circuit breaker, hourly claim limit)
//! and an emergency stop, checksum drift alerts, and requests for missing packages.
//!
//! The records are the store's ([`quiver_store::PipelineStore`]); this module decides.
//! Who may do what: reads are public (the seed publishes its pipeline dashboard);
//! operating the pipeline (adding items, claiming, reporting, re-queueing, valves,
//! checksums) takes the right to publish in the recipes' namespace (`tsuku`): its
//! maintainers are the pipeline's operators, and a worker's token needs the
//! `publish-update` scope there (`publish-new` to create recipes). Requests are open
//! to anyone, counted once per client (hashed address) and day.

pub mod blockers;
pub mod constraints;
pub mod sync;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use quiver_auth::{Action, Target};
use quiver_model::{EntryKey, Error, Kind, NewEntry, NewVersion, Result, Status};
use quiver_store::pipeline::{
    Activity, BreakerConfig, BreakerState, Checksum, ChecksumAlert, ChecksumOutcome, Claim,
    Control, ControlChange, Depth, EnvResult, ItemFilter, ItemReport, ItemStatus, QueueItem,
    ResultFilter, ResultRecord, UpsertOutcome, ALL_ECOSYSTEMS,
};
use quiver_store::AuditDiff;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::Event;
use crate::{Caller, Registry};
pub use blockers::{BlockedItem, Blocker};
pub use constraints::Constraints;
pub use sync::QUEUE_COLLECTION;

/// The namespace whose maintainers operate the pipeline and where its recipes go.
pub const NAMESPACE: &str = "tsuku";
/// The namespace of the recipes embedded in the seed's binary (dependencies count too).
pub const EMBEDDED_NAMESPACE: &str = "tsuku-embedded";
/// The feed consumer that re-queues items when their dependencies get recipes.
pub const REQUEUE_CONSUMER: &str = "pipeline_requeue";
/// Feed positions read per step by the re-queue follower.
const REQUEUE_WINDOW: i64 = 5000;
/// Most items one claim, report or add may carry.
pub const MAX_BATCH: usize = 1000;
/// Most items one add may carry (bulk loads).
pub const MAX_ADD: usize = 10_000;

/// Settings of the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSettings {
    /// The target environments results are expected for.
    pub environments: Vec<String>,
    /// How long a claim holds its items unless the worker reports.
    pub lease: Duration,
    /// Transient failures retried before an item counts as failed.
    pub max_retries: i64,
    /// The first retry's delay; each next one doubles it.
    pub backoff: Duration,
    pub breaker: BreakerConfig,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            environments: [
                "linux-glibc-x86_64",
                "linux-glibc-arm64",
                "linux-musl-x86_64",
                "darwin-x86_64",
                "darwin-arm64",
            ]
            .map(String::from)
            .to_vec(),
            lease: Duration::from_secs(30 * 60),
            max_retries: 3,
            backoff: Duration::from_secs(60),
            breaker: BreakerConfig::default(),
        }
    }
}

/// Failure categories that are transient (retried with backoff), besides exit code 5.
const TRANSIENT: [&str; 3] = ["network", "timeout", "rate_limited"];
/// The exit code of a network failure in the seed's CLI (`ExitNetwork`).
const EXIT_NETWORK: i32 = 5;

/// Whether a failure is transient: its category says so or its exit code is 5.
pub fn is_transient(r: &EnvResult) -> bool {
    !r.passed
        && (r.exit_code == Some(EXIT_NETWORK)
            || r.category
                .as_deref()
                .is_some_and(|c| TRANSIENT.contains(&c)))
}

/// Whether a failure is a missing dependency (the seed writes `missing_dep` too).
pub fn is_missing_dependency(r: &EnvResult) -> bool {
    !r.passed
        && (!r.blocked_by.is_empty()
            || matches!(
                r.category.as_deref(),
                Some("missing_dependency" | "missing_dep")
            ))
}

// ---- requests and answers ----------------------------------------------------------

/// An item to add or replace.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    /// `<ecosystem>:<name>` (`homebrew:node`).
    pub id: String,
    /// 1 critical, 2 popular, 3 standard (default).
    #[serde(default)]
    pub tier: Option<i32>,
    /// Popularity on the 0–1 scale; or give `monthly_downloads` and it is computed with
    /// the data-set import's formula.
    #[serde(default)]
    pub popularity: Option<f64>,
    #[serde(default)]
    pub monthly_downloads: Option<f64>,
    #[serde(default)]
    pub confidence: Option<String>,
    /// The recipe name the item produces (default: its name).
    #[serde(default)]
    pub recipe: Option<String>,
    /// Default `pending`.
    #[serde(default)]
    pub status: Option<ItemStatus>,
}

/// A worker's claim.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The worker's name, unique among the caller's workers (`ci-runner-3`).
    pub worker: String,
    /// How many items (1 to 1000).
    pub limit: usize,
    /// Only these ecosystems (any when empty).
    #[serde(default)]
    pub ecosystems: Vec<String>,
    /// The lease in seconds (default the server's, at most a day).
    #[serde(default)]
    pub lease_seconds: Option<u64>,
}

/// Why an ecosystem gave nothing.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct HeldBack {
    pub ecosystem: String,
    pub reason: String,
}

/// A claim's answer.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Claimed {
    /// The worker's lease holder name (`<caller>/<worker>`), to report with.
    pub worker: String,
    pub items: Vec<QueueItem>,
    pub lease_until: Timestamp,
    /// Ecosystems that gave nothing and why (paused, breaker open, hourly limit).
    pub held_back: Vec<HeldBack>,
    /// Set when the whole pipeline is stopped.
    pub stopped: Option<String>,
    /// The environments to validate each item on.
    pub environments: Vec<String>,
}

/// One item's results in a report.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemResults {
    pub id: String,
    /// One per environment tried.
    pub results: Vec<EnvResult>,
    /// The recipe generated (its manifest: the recipe TOML as JSON), when it passed
    /// somewhere; quiver writes the platform constraints into its metadata.
    #[serde(default)]
    pub recipe: Option<Value>,
    /// The recipe's version to publish (default: the next patch, or 1.0.0).
    #[serde(default)]
    pub version: Option<String>,
    /// Mark the item as needing a human (`requires_manual`) whatever the results say.
    #[serde(default)]
    pub requires_manual: bool,
}

/// A worker's report of a batch.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The worker name the claim was made with.
    pub worker: String,
    #[serde(default)]
    pub batch_id: Option<String>,
    pub items: Vec<ItemResults>,
}

/// What a report did to one item.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ItemOutcome {
    pub id: String,
    /// False when the worker no longer held the item (its lease ran out and another
    /// worker may have it): nothing was recorded.
    pub applied: bool,
    pub status: Option<ItemStatus>,
    pub next_retry_at: Option<Timestamp>,
    /// The platform constraints derived from the matrix (when it passed somewhere).
    pub constraints: Option<Constraints>,
    /// The recipe version written, and whether it went live or to review.
    pub recipe: Option<RecipeOutcome>,
    /// Problems that did not stop the report (a recipe refused, and why).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RecipeOutcome {
    pub name: String,
    pub version: String,
    /// `published`, `review` (waiting for a moderator) or `requires_manual`.
    pub state: String,
}

/// Failure records to read.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
pub struct FailureQuery {
    #[serde(default)]
    pub ecosystem: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub since: Option<Timestamp>,
    /// Records older than this id (the previous page's `next`).
    #[serde(default)]
    pub before: Option<i64>,
    #[serde(default)]
    pub limit: Option<usize>,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ResultPage {
    pub items: Vec<ResultRecord>,
    /// Pass as `before` for the next page.
    pub next: Option<i64>,
}

/// An item with its history.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ItemDetail {
    pub item: QueueItem,
    /// What blocks it on each environment now.
    pub blocked_by: BTreeMap<String, Vec<String>>,
    /// Its latest result per environment.
    pub environments: BTreeMap<String, ResultRecord>,
    /// Its results, newest first.
    pub history: Vec<ResultRecord>,
}

/// Failures of one category on one environment: a capability gap.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Gap {
    pub category: String,
    pub environment: String,
    /// Items whose latest result there failed this way.
    pub items: u64,
    /// Their summed popularity.
    pub impact: f64,
    /// The most popular of them.
    pub examples: Vec<String>,
}

/// A re-queue by query.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequeueQuery {
    /// These items.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Items of this ecosystem…
    #[serde(default)]
    pub ecosystem: Option<String>,
    /// …in this state (`blocked`, `failed`, `requires_manual`, `excluded`; default
    /// `blocked` and `failed`).
    #[serde(default)]
    pub status: Option<ItemStatus>,
    /// …blocked by this dependency.
    #[serde(default)]
    pub dependency: Option<String>,
    /// Why (kept in the audit row).
    #[serde(default)]
    pub reason: Option<String>,
}

/// An operator's valve change.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum ValveChange {
    Pause { reason: String },
    // `{}` rather than unit variants: serde ignores `deny_unknown_fields` on the unit
    // variants of an internally tagged enum, so `{"action":"resume","x":1}` would pass.
    Resume {},
    RateLimit { claims_per_hour: Option<i64> },
    ResetBreaker {},
}

/// An ecosystem's valves as they stand now.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Valve {
    pub ecosystem: String,
    pub paused: bool,
    pub reason: Option<String>,
    /// The breaker now (an open one half-opens after its cooldown).
    pub breaker: BreakerState,
    pub opened_at: Option<Timestamp>,
    pub failure_rate: Option<f64>,
    pub recent_results: usize,
    pub claims_per_hour: Option<i64>,
    pub claims_left: Option<i64>,
}

/// The pipeline at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PipelineStatus {
    /// The emergency stop's reason, when the whole pipeline is stopped.
    pub stopped: Option<String>,
    pub depth: Vec<Depth>,
    pub totals: BTreeMap<String, u64>,
    pub valves: Vec<Valve>,
    /// Claims and results per hour, the last 48 hours.
    pub activity: Vec<Activity>,
    pub environments: Vec<String>,
}

/// A checksum's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ChecksumVerdict {
    /// `new`, `same` or `drift`.
    pub outcome: String,
    pub alert: Option<ChecksumAlert>,
}

/// A request for a package with no recipe.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageRequest {
    /// `<ecosystem>:<name>`.
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RequestOutcome {
    pub id: String,
    /// False when this client already asked today (counted once a day).
    pub counted: bool,
    pub requests: i64,
    pub status: ItemStatus,
}

/// A failure record of a run outside a claim (imported history, a legacy run).
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureRecord {
    /// The item (`homebrew:node`); created pending when unknown.
    pub id: String,
    #[serde(flatten)]
    pub result: EnvResult,
    #[serde(default)]
    pub batch_id: Option<String>,
    #[serde(default)]
    pub at: Option<Timestamp>,
}

// ---- checks -------------------------------------------------------------------------

fn short(field: &str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() || s.len() > max || s.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("must be 1 to {max} characters, without control characters"),
        ));
    }
    Ok(())
}

fn check_id(field: &str, id: &str) -> Result<()> {
    short(field, id, 200)?;
    if quiver_store::pipeline::split_id(id).is_none() {
        return Err(Error::invalid(
            field,
            format!("`{id}` is not `<ecosystem>:<name>`"),
        ));
    }
    Ok(())
}

fn check_env_result(field: &str, r: &EnvResult) -> Result<()> {
    short(&format!("{field}.environment"), &r.environment, 100)?;
    if let Some(c) = &r.category {
        short(&format!("{field}.category"), c, 100)?;
    }
    if let Some(m) = &r.message {
        if m.len() > 16 * 1024 {
            return Err(Error::invalid(format!("{field}.message"), "at most 16 KiB"));
        }
    }
    if r.blocked_by.len() > 100 {
        return Err(Error::invalid(
            format!("{field}.blocked_by"),
            "at most 100 dependencies",
        ));
    }
    for (j, d) in r.blocked_by.iter().enumerate() {
        short(&format!("{field}.blocked_by[{j}]"), d, 200)?;
    }
    if r.passed && (!r.blocked_by.is_empty() || r.category.is_some()) {
        return Err(Error::invalid(
            field,
            "a passing result has no category or blocked_by",
        ));
    }
    Ok(())
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::ZERO))
        .unwrap_or(t)
}

impl Registry {
    fn pipeline_settings(&self) -> &PipelineSettings {
        &self.config.pipeline
    }

    /// Operating the pipeline: the right to publish in its namespace.
    async fn require_operator(&self, caller: &Caller) -> Result<()> {
        self.require(
            caller,
            Action::Publish,
            &Target::namespace(NAMESPACE),
            &"the recipe pipeline",
        )
        .await
    }

    async fn pipeline_audit(
        &self,
        caller: &Caller,
        action: &str,
        target: String,
        reason: Option<String>,
        diff: AuditDiff,
    ) -> quiver_store::Audit {
        self.draft(
            caller,
            Event {
                action,
                namespace: Some(NAMESPACE),
                target,
                denied: None,
                reason,
                diff: None,
            },
            diff,
        )
        .await
    }

    // ---- items --------------------------------------------------------------------

    /// Add items, or replace those that exist when `replace`.
    pub async fn pipeline_add(
        &self,
        caller: &Caller,
        items: Vec<NewItem>,
        replace: bool,
    ) -> Result<UpsertOutcome> {
        self.require_operator(caller).await?;
        if items.is_empty() || items.len() > MAX_ADD {
            return Err(Error::invalid(
                "items",
                format!("1 to {MAX_ADD} items a call"),
            ));
        }
        let at = now();
        let mut out = Vec::with_capacity(items.len());
        let mut seen = BTreeSet::new();
        for (i, n) in items.into_iter().enumerate() {
            let f = format!("items[{i}]");
            check_id(&format!("{f}.id"), &n.id)?;
            if !seen.insert(n.id.clone()) {
                return Err(Error::invalid(
                    format!("{f}.id"),
                    format!("`{}` is given twice", n.id),
                ));
            }
            let (eco, name) = quiver_store::pipeline::split_id(&n.id).expect("checked");
            let mut item = QueueItem::new(eco, name, n.tier.unwrap_or(3), at);
            item.popularity = match (n.popularity, n.monthly_downloads) {
                (Some(p), _) => p,
                (None, Some(d)) if d.is_finite() && d >= 0.0 => {
                    quiver_import::dataset::popularity_score(d)
                }
                (None, Some(_)) => {
                    return Err(Error::invalid(
                        format!("{f}.monthly_downloads"),
                        "must be a finite number, 0 or more",
                    ))
                }
                (None, None) => 0.0,
            };
            if !(0.0..=1.0).contains(&item.popularity) {
                return Err(Error::invalid(
                    format!("{f}.popularity"),
                    "must be between 0 and 1",
                ));
            }
            item.confidence = n.confidence;
            item.recipe = n.recipe;
            if let Some(s) = n.status {
                if s == ItemStatus::InProgress {
                    return Err(Error::invalid(
                        format!("{f}.status"),
                        "only a claim puts an item in progress",
                    ));
                }
                item.status = s;
            }
            quiver_store::pipeline::check_item(&item)?;
            out.push(item);
        }
        self.db.pipeline.upsert_items(out, replace).await
    }

    pub async fn pipeline_items(&self, filter: ItemFilter) -> Result<Vec<QueueItem>> {
        crate::check_limit(filter.limit)?;
        self.db.pipeline.items(&filter).await
    }

    /// An item with its history and what blocks it where.
    pub async fn pipeline_item(&self, id: &str) -> Result<ItemDetail> {
        let item = self
            .db
            .pipeline
            .item(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("queue item {id}")))?;
        let history = self
            .db
            .pipeline
            .results(&ResultFilter {
                item: Some(id.to_string()),
                limit: 200,
                ..Default::default()
            })
            .await?;
        let mut environments: BTreeMap<String, ResultRecord> = BTreeMap::new();
        for r in &history {
            environments
                .entry(r.result.environment.clone())
                .or_insert_with(|| r.clone());
        }
        let mut blocked_by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if item.status != ItemStatus::Success {
            for (env, r) in &environments {
                if !r.result.passed && !r.result.blocked_by.is_empty() {
                    blocked_by.insert(env.clone(), r.result.blocked_by.clone());
                }
            }
        }
        Ok(ItemDetail {
            item,
            blocked_by,
            environments,
            history,
        })
    }

    // ---- claims -------------------------------------------------------------------

    /// Take up to `limit` items for a worker, in priority order, with a lease; paused
    /// ecosystems, open breakers and spent hourly limits give nothing (and say so).
    pub async fn pipeline_claim(&self, caller: &Caller, req: ClaimRequest) -> Result<Claimed> {
        self.require_operator(caller).await?;
        short("worker", &req.worker, 100)?;
        if req.limit == 0 || req.limit > MAX_BATCH {
            return Err(Error::invalid(
                "limit",
                format!("must be between 1 and {MAX_BATCH}"),
            ));
        }
        for (i, e) in req.ecosystems.iter().enumerate() {
            short(&format!("ecosystems[{i}]"), e, 50)?;
        }
        let settings = self.pipeline_settings();
        let lease = match req.lease_seconds {
            Some(s) if s == 0 || s > 86_400 => {
                return Err(Error::invalid(
                    "lease_seconds",
                    "must be between 1 and 86400",
                ))
            }
            Some(s) => Duration::from_secs(s),
            None => settings.lease,
        };
        let worker = format!("{}/{}", caller.actor(), req.worker);
        let at = now();
        let lease_until = after(at, lease);
        let controls = self.db.pipeline.controls().await?;
        let mut answer = Claimed {
            worker: worker.clone(),
            items: vec![],
            lease_until,
            held_back: vec![],
            stopped: None,
            environments: settings.environments.clone(),
        };
        if let Some(stop) = controls
            .iter()
            .find(|c| c.ecosystem == ALL_ECOSYSTEMS && c.paused)
        {
            answer.stopped = Some(
                stop.reason
                    .clone()
                    .unwrap_or_else(|| "the pipeline is stopped".into()),
            );
            return Ok(answer);
        }
        // Ecosystems closed to this claim, and those that may give only a few.
        let mut except = Vec::new();
        let mut capped: Vec<(String, usize)> = Vec::new();
        for c in controls.iter().filter(|c| c.ecosystem != ALL_ECOSYSTEMS) {
            if !req.ecosystems.is_empty() && !req.ecosystems.contains(&c.ecosystem) {
                continue;
            }
            let reason = if c.paused {
                Some(format!(
                    "paused: {}",
                    c.reason.as_deref().unwrap_or("by an operator")
                ))
            } else {
                match c.breaker_at(at, &settings.breaker) {
                    BreakerState::Open => Some(format!(
                        "circuit breaker open since {} (failure rate {:.0}% of the last {} \
                         results); it half-opens after its cooldown",
                        c.opened_at.map(|t| t.to_string()).unwrap_or_default(),
                        c.failure_rate().unwrap_or(0.0) * 100.0,
                        c.recent.len()
                    )),
                    _ => match c.claims_left(at) {
                        Some(0) => Some(format!(
                            "hourly claim limit ({}) reached",
                            c.claims_per_hour.unwrap_or(0)
                        )),
                        _ => None,
                    },
                }
            };
            if let Some(reason) = reason {
                except.push(c.ecosystem.clone());
                answer.held_back.push(HeldBack {
                    ecosystem: c.ecosystem.clone(),
                    reason,
                });
                continue;
            }
            let half_open = c.breaker_at(at, &settings.breaker) == BreakerState::HalfOpen;
            let left = c.claims_left(at).map(|l| l as usize);
            // A half-open breaker lets one probe through.
            let cap = match (half_open, left) {
                (true, l) => Some(l.unwrap_or(1).min(1)),
                (false, l) => l,
            };
            if let Some(cap) = cap.filter(|cap| *cap < req.limit) {
                except.push(c.ecosystem.clone());
                capped.push((c.ecosystem.clone(), cap));
            }
        }
        let mut items = Vec::new();
        for (eco, cap) in &capped {
            let want = (*cap).min(req.limit - items.len());
            if want == 0 {
                continue;
            }
            items.extend(
                self.db
                    .pipeline
                    .claim(&Claim {
                        worker: worker.clone(),
                        only: vec![eco.clone()],
                        except: vec![],
                        limit: want,
                        now: at,
                        lease_until,
                    })
                    .await?,
            );
        }
        if items.len() < req.limit {
            items.extend(
                self.db
                    .pipeline
                    .claim(&Claim {
                        worker: worker.clone(),
                        only: req.ecosystems.clone(),
                        except,
                        limit: req.limit - items.len(),
                        now: at,
                        lease_until,
                    })
                    .await?,
            );
        }
        // Count claims against the limits of the ecosystems that have one.
        let limited: BTreeSet<&str> = controls
            .iter()
            .filter(|c| c.claims_per_hour.is_some())
            .map(|c| c.ecosystem.as_str())
            .collect();
        if !limited.is_empty() {
            let mut counts: BTreeMap<String, i64> = BTreeMap::new();
            for i in items
                .iter()
                .filter(|i| limited.contains(i.ecosystem.as_str()))
            {
                *counts.entry(i.ecosystem.clone()).or_default() += 1;
            }
            if !counts.is_empty() {
                self.db
                    .pipeline
                    .count_claims(&counts.into_iter().collect::<Vec<_>>(), at)
                    .await?;
            }
        }
        answer.items = items;
        Ok(answer)
    }

    // ---- reports ------------------------------------------------------------------

    /// Apply a worker's report: each item's new state from its results, recipes for
    /// the items that passed somewhere (constraints from the matrix; published, or to
    /// review when they run commands or fail a gate), failure records and blocks.
    pub async fn pipeline_report(
        &self,
        caller: &Caller,
        report: Report,
    ) -> Result<Vec<ItemOutcome>> {
        self.require_operator(caller).await?;
        short("worker", &report.worker, 100)?;
        if let Some(b) = &report.batch_id {
            short("batch_id", b, 100)?;
        }
        if report.items.is_empty() || report.items.len() > MAX_BATCH {
            return Err(Error::invalid(
                "items",
                format!("1 to {MAX_BATCH} items a report"),
            ));
        }
        let mut ids = BTreeSet::new();
        for (i, it) in report.items.iter().enumerate() {
            check_id(&format!("items[{i}].id"), &it.id)?;
            if !ids.insert(it.id.as_str()) {
                return Err(Error::invalid(
                    format!("items[{i}].id"),
                    format!("`{}` is reported twice", it.id),
                ));
            }
            if it.results.is_empty() && !it.requires_manual {
                return Err(Error::invalid(
                    format!("items[{i}].results"),
                    "at least one environment's result",
                ));
            }
            let mut envs = BTreeSet::new();
            for (j, r) in it.results.iter().enumerate() {
                let f = format!("items[{i}].results[{j}]");
                check_env_result(&f, r)?;
                if !envs.insert(r.environment.as_str()) {
                    return Err(Error::invalid(
                        format!("{f}.environment"),
                        format!("`{}` is given twice", r.environment),
                    ));
                }
            }
            if let Some(r) = &it.recipe {
                if !r.is_object() {
                    return Err(Error::invalid(
                        format!("items[{i}].recipe"),
                        "a recipe manifest is an object",
                    ));
                }
                if !it.results.iter().any(|r| r.passed) {
                    return Err(Error::invalid(
                        format!("items[{i}].recipe"),
                        "a recipe comes only with a result that passed somewhere",
                    ));
                }
            }
        }
        let worker = format!("{}/{}", caller.actor(), report.worker);
        let at = now();
        let settings = self.pipeline_settings().clone();
        let mut reports = Vec::new();
        let mut outcomes = Vec::new();
        let mut recipes: Vec<(usize, String, Value, Option<String>, Constraints)> = Vec::new();
        let ids: Vec<String> = report.items.iter().map(|i| i.id.clone()).collect();
        let mut known: BTreeMap<String, QueueItem> = self
            .db
            .pipeline
            .items_by_id(&ids)
            .await?
            .into_iter()
            .map(|i| (i.id.clone(), i))
            .collect();
        for it in report.items {
            let Some(before) = known.remove(&it.id) else {
                outcomes.push(ItemOutcome {
                    id: it.id.clone(),
                    applied: false,
                    status: None,
                    next_retry_at: None,
                    constraints: None,
                    recipe: None,
                    notes: vec![format!("no queue item {}", it.id)],
                });
                continue;
            };
            if before.status != ItemStatus::InProgress
                || before.lease_owner.as_deref() != Some(worker.as_str())
            {
                outcomes.push(ItemOutcome {
                    id: it.id.clone(),
                    applied: false,
                    status: Some(before.status),
                    next_retry_at: None,
                    constraints: None,
                    recipe: None,
                    notes: vec![format!(
                        "{worker} does not hold the lease of {} (its lease ran out, or it \
                         was never claimed by this worker)",
                        it.id
                    )],
                });
                continue;
            }
            let mut item = before.clone();
            item.lease_owner = None;
            item.lease_until = None;
            item.updated_at = at;
            let matrix: Vec<(String, bool)> = it
                .results
                .iter()
                .map(|r| (r.environment.clone(), r.passed))
                .collect();
            let derived = constraints::derive(&matrix);
            let mut out = ItemOutcome {
                id: it.id.clone(),
                applied: true,
                status: None,
                next_retry_at: None,
                constraints: derived.clone(),
                recipe: None,
                notes: vec![],
            };
            if it.requires_manual {
                item.status = ItemStatus::RequiresManual;
            } else if derived.is_some() {
                item.status = ItemStatus::Success;
                item.retries = 0;
                item.next_retry_at = None;
            } else if it.results.iter().all(is_transient) {
                // Transient everywhere: retry with backoff, up to the limit.
                item.failure_count += 1;
                item.retries += 1;
                if item.retries > settings.max_retries {
                    item.status = ItemStatus::Failed;
                    item.next_retry_at = None;
                } else {
                    let delay = settings
                        .backoff
                        .saturating_mul(1u32 << (item.retries - 1).clamp(0, 16) as u32);
                    item.status = ItemStatus::Pending;
                    item.next_retry_at = Some(after(at, delay));
                }
            } else if it.results.iter().any(is_missing_dependency) {
                item.failure_count += 1;
                item.retries = 0;
                item.status = ItemStatus::Blocked;
                item.next_retry_at = None;
            } else {
                item.failure_count += 1;
                item.retries = 0;
                item.status = ItemStatus::Failed;
                item.next_retry_at = None;
            }
            out.status = Some(item.status);
            out.next_retry_at = item.next_retry_at;
            if let (Some(manifest), Some(c)) = (it.recipe, derived) {
                let name = item.recipe.clone().unwrap_or_else(|| {
                    item.name
                        .rsplit('/')
                        .next()
                        .unwrap_or(&item.name)
                        .to_string()
                });
                item.recipe = Some(name.clone());
                recipes.push((outcomes.len(), name, manifest, it.version, c));
            }
            // Blocked results name what blocks them; keep the category spelled as sent.
            let results = it
                .results
                .into_iter()
                .map(|mut r| {
                    r.blocked_by.sort();
                    r.blocked_by.dedup();
                    r
                })
                .collect();
            reports.push(ItemReport {
                after: item,
                lease_of: Some(worker.clone()),
                batch_id: report.batch_id.clone(),
                results,
                at,
            });
            outcomes.push(out);
        }
        let applied = self.db.pipeline.report(reports, &settings.breaker).await?;
        // Outcomes of items the store refused (a lease lost between the read and the
        // write) say so.
        for (k, o) in outcomes.iter_mut().filter(|o| o.applied).enumerate() {
            if !applied.get(k).copied().unwrap_or(false) {
                o.applied = false;
                o.notes
                    .push("the lease ran out before the report was written".into());
            }
        }
        for (ix, name, manifest, version, c) in recipes {
            if !outcomes[ix].applied {
                continue;
            }
            match self
                .publish_pipeline_recipe(caller, &name, manifest, version, &c, &outcomes[ix])
                .await
            {
                Ok(r) => {
                    if r.state == "requires_manual" {
                        if let Some(mut item) = self.db.pipeline.item(&outcomes[ix].id).await? {
                            item.status = ItemStatus::RequiresManual;
                            self.db.pipeline.upsert_items(vec![item], true).await?;
                        }
                        outcomes[ix].status = Some(ItemStatus::RequiresManual);
                        outcomes[ix].notes.push(
                            "the recipe runs commands or fails a required gate and a live \
                             version exists: a human must merge it"
                                .into(),
                        );
                    }
                    outcomes[ix].recipe = Some(r);
                }
                Err(e) => outcomes[ix]
                    .notes
                    .push(format!("the recipe was not written: {e}")),
            }
        }
        Ok(outcomes)
    }

    /// Write a recipe the pipeline generated: constraints in its metadata, the matrix in
    /// `derived.validation`, as the entry's next version. New entries go through the
    /// publish decision (review for commands and new publishers); a recipe that runs
    /// commands or fails a required gate is never published over a live one: the item
    /// needs a human (`requires_manual`).
    async fn publish_pipeline_recipe(
        &self,
        caller: &Caller,
        name: &str,
        mut manifest: Value,
        version: Option<String>,
        c: &Constraints,
        outcome: &ItemOutcome,
    ) -> Result<RecipeOutcome> {
        let key = EntryKey::new(Kind::Recipe, NAMESPACE, name);
        c.apply(&mut manifest);
        if let Some(m) = manifest.as_object_mut() {
            m.remove("derived");
            let (derived, _) = quiver_import::formats::recipes::derive_recipe(m);
            let mut derived = derived;
            if let Some(d) = derived.as_object_mut() {
                d.insert(
                    "validation".into(),
                    serde_json::json!({
                        "constraints": c.to_json(),
                        "item": outcome.id,
                    }),
                );
            }
            m.insert("derived".into(), derived);
        }
        let description = manifest["metadata"]["description"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let runs_commands = quiver_model::gates::has_run_command(&manifest);
        let gates = quiver_model::gates::run_gates(&quiver_model::gates::GateInput {
            kind: Kind::Recipe,
            namespace: NAMESPACE,
            name,
            description: &description,
            manifest: &manifest,
            popular: &[],
        });
        let gates_pass = quiver_model::gates::all_required_pass(&gates);
        let existing = self.db.store.get_entry(&key).await?;
        let live = existing
            .as_ref()
            .is_some_and(|e| e.status == Status::Published);
        if live && (runs_commands || !gates_pass) {
            return Ok(RecipeOutcome {
                name: name.to_string(),
                version: version.unwrap_or_default(),
                state: "requires_manual".into(),
            });
        }
        if existing.is_none() {
            let entry = NewEntry {
                kind: Kind::Recipe,
                namespace: NAMESPACE.into(),
                name: name.into(),
                display_name: None,
                description: if description.is_empty() {
                    format!("Install {name}")
                } else {
                    description.clone()
                },
                category: None,
                tags: vec![],
                keywords: vec![],
                status: None,
                visibility: None,
                popularity: None,
            };
            self.create_entry(caller, entry).await?;
        }
        // A new recipe that runs commands or fails a required gate waits for a moderator,
        // even where review is off (the publish would otherwise make it live).
        if !live && (runs_commands || !gates_pass) {
            let status = self.db.store.get_entry(&key).await?.map(|e| e.status);
            if status == Some(Status::Draft) {
                let why = if runs_commands {
                    "the recipe runs arbitrary commands (run_command)".to_string()
                } else {
                    format!(
                        "a required quality gate failed: {}",
                        quiver_model::gates::failures(
                            &gates,
                            quiver_model::gates::GateLevel::Required
                        )
                        .join("; ")
                    )
                };
                self.submit_for_review(caller, &key, why).await?;
            }
        }
        let version = match version {
            Some(v) => v,
            None => match self
                .db
                .store
                .get_entry(&key)
                .await?
                .and_then(|e| e.latest_version)
            {
                Some(v) => semver::Version::parse(&v)
                    .map(|mut s| {
                        s.patch += 1;
                        s.pre = semver::Prerelease::EMPTY;
                        s.build = semver::BuildMetadata::EMPTY;
                        s.to_string()
                    })
                    .unwrap_or_else(|_| "1.0.0".into()),
                None => "1.0.0".into(),
            },
        };
        let v = self
            .publish_version(
                caller,
                &key,
                NewVersion {
                    version,
                    manifest,
                    changelog: Some(format!("generated by the recipe pipeline ({})", outcome.id)),
                    breaking: false,
                },
            )
            .await?;
        let status = self.db.store.get_entry(&key).await?.map(|e| e.status);
        let state = match status {
            Some(Status::Published) => "published",
            _ => "review",
        };
        Ok(RecipeOutcome {
            name: name.to_string(),
            version: v.version,
            state: state.into(),
        })
    }

    // ---- records of outside runs ------------------------------------------------------

    /// Record failures of runs outside a claim (history): results and blocks only; the
    /// items' states and the breakers are left alone.
    pub async fn pipeline_record_failures(
        &self,
        caller: &Caller,
        records: Vec<FailureRecord>,
    ) -> Result<u64> {
        self.require_operator(caller).await?;
        if records.is_empty() || records.len() > MAX_ADD {
            return Err(Error::invalid(
                "records",
                format!("1 to {MAX_ADD} records a call"),
            ));
        }
        for (i, r) in records.iter().enumerate() {
            check_id(&format!("records[{i}].id"), &r.id)?;
            check_env_result(&format!("records[{i}]"), &r.result)?;
        }
        self.store_history(records).await
    }

    pub(crate) async fn store_history(&self, records: Vec<FailureRecord>) -> Result<u64> {
        let at = now();
        let mut fresh = Vec::new();
        let mut seen = BTreeSet::new();
        for r in &records {
            if seen.insert(r.id.clone()) {
                let (eco, name) = quiver_store::pipeline::split_id(&r.id).expect("checked");
                fresh.push(QueueItem::new(eco, name, 3, at));
            }
        }
        self.db.pipeline.upsert_items(fresh, false).await?;
        let n = records.len() as u64;
        let history = records
            .into_iter()
            .map(|r| quiver_store::pipeline::HistoryRecord {
                item_id: r.id,
                batch_id: r.batch_id,
                result: r.result,
                at: r.at.unwrap_or(at),
            })
            .collect();
        self.db.pipeline.record_history(history).await?;
        Ok(n)
    }

    // ---- analysis -------------------------------------------------------------------

    pub async fn pipeline_failures(&self, q: FailureQuery) -> Result<ResultPage> {
        let limit = q.limit.unwrap_or(50);
        crate::check_limit(limit)?;
        let items = self
            .db
            .pipeline
            .results(&ResultFilter {
                item: None,
                ecosystem: q.ecosystem,
                environment: q.environment,
                category: q.category,
                failures_only: true,
                since: q.since,
                before: q.before,
                limit,
            })
            .await?;
        let next = (items.len() == limit)
            .then(|| items.last().map(|r| r.id))
            .flatten();
        Ok(ResultPage { items, next })
    }

    /// The dependency mapping (`tsuku.dep_mapping`): `(ecosystem, dependency)` → the
    /// recipe it names (`None` for one marked pending).
    async fn dependency_mapping(&self) -> Result<HashMap<(String, String), Option<String>>> {
        let mut out = HashMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .db
                .store
                .list_documents(sync::DEP_MAPPING, cursor.as_deref(), 500)
                .await?;
            for d in page.items {
                let (Some(eco), Some(dep)) =
                    (d.body["ecosystem"].as_str(), d.body["dependency"].as_str())
                else {
                    continue;
                };
                out.insert(
                    (eco.to_string(), dep.to_string()),
                    d.body["recipe"].as_str().map(str::to_string),
                );
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Missing dependencies ranked by the popularity of what they block, directly and
    /// transitively.
    pub async fn pipeline_blockers(&self, limit: usize, items_each: usize) -> Result<Vec<Blocker>> {
        crate::check_limit(limit)?;
        let blocks = self.db.pipeline.blocks().await?;
        let mapping = self.dependency_mapping().await?;
        let recipe_of = |eco: &str, dep: &str| -> Option<String> {
            mapping
                .get(&(eco.to_string(), dep.to_string()))
                .cloned()
                .flatten()
        };
        Ok(blockers::rank(
            &blocks,
            &recipe_of,
            limit,
            items_each.min(100),
        ))
    }

    /// Capability gaps: per failure category and environment, the items whose latest
    /// result there failed that way, by popularity.
    pub async fn pipeline_gaps(&self, environment: Option<&str>) -> Result<Vec<Gap>> {
        let states = self.db.pipeline.env_states(environment).await?;
        // (category, environment) → (items, impact, (popularity, item) of each).
        type Tally = (u64, f64, Vec<(f64, String)>);
        let mut gaps: BTreeMap<(String, String), Tally> = BTreeMap::new();
        for s in states.into_iter().filter(|s| !s.passed) {
            let g = gaps
                .entry((
                    s.category.unwrap_or_else(|| "unknown".into()),
                    s.environment,
                ))
                .or_default();
            g.0 += 1;
            g.1 += s.popularity;
            g.2.push((s.popularity, s.item_id));
        }
        let mut out: Vec<Gap> = gaps
            .into_iter()
            .map(|((category, environment), (items, impact, mut ex))| {
                ex.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                Gap {
                    category,
                    environment,
                    items,
                    impact,
                    examples: ex.into_iter().take(5).map(|(_, id)| id).collect(),
                }
            })
            .collect();
        out.sort_by(|a, b| b.impact.total_cmp(&a.impact).then(b.items.cmp(&a.items)));
        Ok(out)
    }

    // ---- re-queue -------------------------------------------------------------------

    /// Re-queue items by query (operators), audited.
    pub async fn pipeline_requeue(&self, caller: &Caller, q: RequeueQuery) -> Result<Vec<String>> {
        self.require_operator(caller).await?;
        let from = match q.status {
            Some(ItemStatus::InProgress | ItemStatus::Pending) => {
                return Err(Error::invalid(
                    "status",
                    "only blocked, failed, requires_manual or excluded items are re-queued",
                ))
            }
            Some(s) => vec![s],
            None => vec![ItemStatus::Blocked, ItemStatus::Failed],
        };
        let mut ids: BTreeSet<String> = BTreeSet::new();
        for (i, id) in q.ids.iter().enumerate() {
            check_id(&format!("ids[{i}]"), id)?;
            ids.insert(id.clone());
        }
        if let Some(d) = &q.dependency {
            short("dependency", d, 200)?;
            for b in self.db.pipeline.blocks_of(std::slice::from_ref(d)).await? {
                if q.ecosystem.as_deref().is_none_or(|e| e == b.ecosystem) {
                    ids.insert(b.item_id);
                }
            }
        } else if q.ids.is_empty() {
            let Some(eco) = &q.ecosystem else {
                return Err(Error::invalid(
                    "ids",
                    "name items, an ecosystem or a dependency",
                ));
            };
            for status in &from {
                let mut after = None;
                loop {
                    let page = self
                        .db
                        .pipeline
                        .items(&ItemFilter {
                            status: Some(*status),
                            ecosystem: Some(eco.clone()),
                            after: after.clone(),
                            limit: 1000,
                        })
                        .await?;
                    let done = page.len() < 1000;
                    after = page.last().map(|i| i.id.clone());
                    ids.extend(page.into_iter().map(|i| i.id));
                    if done {
                        break;
                    }
                }
            }
        }
        let ids: Vec<String> = ids.into_iter().collect();
        let audit = self
            .pipeline_audit(
                caller,
                "pipeline.requeue",
                "recipe pipeline queue".into(),
                q.reason.clone(),
                AuditDiff::Stored,
            )
            .await;
        self.db.pipeline.requeue(&ids, &from, now(), audit).await
    }

    /// Follow the feed: for each recipe that got a version since the last time, put back
    /// every blocked item whose blocks all resolve to recipes that now exist.
    pub async fn pipeline_follow(&self) -> Result<u64> {
        let head = self.db.store.feed_head().await?;
        let mut moved = 0;
        loop {
            let from = self.db.cursors.cursor(REQUEUE_CONSUMER).await?;
            if from >= head {
                return Ok(moved);
            }
            let through = head.min(from.saturating_add(REQUEUE_WINDOW));
            let ids = self
                .db
                .store
                .entries_with_new_versions(from, through, &self.config.ecosystem_namespaces)
                .await?;
            let recipes: Vec<String> = self
                .db
                .store
                .get_entries_by_id(&ids)
                .await?
                .into_iter()
                .filter(|e| e.kind == Kind::Recipe && e.status == Status::Published)
                .map(|e| e.name)
                .collect();
            let n = if recipes.is_empty() {
                0
            } else {
                self.requeue_unblocked(&recipes).await?.len() as u64
            };
            if self
                .db
                .cursors
                .advance_cursor(REQUEUE_CONSUMER, from, through)
                .await?
            {
                moved += n;
            }
        }
    }

    /// Re-queue the items that `recipes` (names of recipes that now exist) unblock:
    /// those all of whose blocks resolve, through the dependency mapping, to existing
    /// recipes, and at least one to one of these.
    pub async fn requeue_unblocked(&self, recipes: &[String]) -> Result<Vec<String>> {
        let mapping = self.dependency_mapping().await?;
        // Every dependency name that resolves to one of the recipes: mapped to it, or
        // spelled as it and not mapped to something else.
        let wanted: BTreeSet<&str> = recipes.iter().map(String::as_str).collect();
        let mut deps: BTreeSet<String> = recipes.iter().cloned().collect();
        for ((_, dep), r) in &mapping {
            if r.as_deref().is_some_and(|r| wanted.contains(r)) {
                deps.insert(dep.clone());
            }
        }
        let blocks = self
            .db
            .pipeline
            .blocks_of(&deps.into_iter().collect::<Vec<_>>())
            .await?;
        let resolve = |eco: &str, dep: &str| -> Option<String> {
            match mapping.get(&(eco.to_string(), dep.to_string())) {
                Some(r) => r.clone(),
                None => Some(dep.to_string()),
            }
        };
        let mut by_item: BTreeMap<&str, Vec<&quiver_store::pipeline::Block>> = BTreeMap::new();
        for b in &blocks {
            by_item.entry(&b.item_id).or_default().push(b);
        }
        let mut exists: HashMap<String, bool> = HashMap::new();
        let mut ids = Vec::new();
        'items: for (id, bs) in by_item {
            if bs[0].status != ItemStatus::Blocked {
                continue;
            }
            let mut hit = false;
            for b in bs {
                let Some(recipe) = resolve(&b.ecosystem, &b.dependency) else {
                    continue 'items;
                };
                hit |= wanted.contains(recipe.as_str());
                let ok = match exists.get(&recipe) {
                    Some(ok) => *ok,
                    None => {
                        let mut ok = false;
                        for ns in [NAMESPACE, EMBEDDED_NAMESPACE] {
                            let key = EntryKey::new(Kind::Recipe, ns, &recipe);
                            ok |= self.db.store.get_entry(&key).await?.is_some_and(|e| {
                                e.status == Status::Published && e.latest_version.is_some()
                            });
                        }
                        exists.insert(recipe.clone(), ok);
                        ok
                    }
                };
                if !ok {
                    continue 'items;
                }
            }
            if hit {
                ids.push(id.to_string());
            }
        }
        if ids.is_empty() {
            return Ok(ids);
        }
        let audit = Some(quiver_store::AuditDraft {
            record: quiver_store::NewAuditRecord {
                actor: "pipeline".into(),
                action: "pipeline.requeue".into(),
                namespace: Some(NAMESPACE.into()),
                target: "recipe pipeline queue".into(),
                outcome: "allowed".into(),
                reason: Some(format!(
                    "dependencies now have recipes: {}",
                    recipes.join(", ")
                )),
                diff: None,
                client: None,
            },
            diff: AuditDiff::Stored,
        });
        self.db
            .pipeline
            .requeue(&ids, &[ItemStatus::Blocked], now(), audit)
            .await
    }

    // ---- valves -------------------------------------------------------------------

    /// Change an ecosystem's valves (`*`: the whole pipeline's emergency stop).
    pub async fn pipeline_valve(
        &self,
        caller: &Caller,
        ecosystem: &str,
        change: ValveChange,
    ) -> Result<Valve> {
        self.require_operator(caller).await?;
        short("ecosystem", ecosystem, 50)?;
        let change = match change {
            ValveChange::Pause { reason } => {
                short("reason", &reason, 500)?;
                ControlChange::Pause { reason }
            }
            ValveChange::Resume {} => ControlChange::Resume,
            ValveChange::RateLimit { claims_per_hour } => {
                if claims_per_hour.is_some_and(|l| l < 0) {
                    return Err(Error::invalid("claims_per_hour", "must be 0 or more"));
                }
                ControlChange::RateLimit(claims_per_hour)
            }
            ValveChange::ResetBreaker {} => ControlChange::ResetBreaker,
        };
        let action = match &change {
            ControlChange::Pause { .. } if ecosystem == ALL_ECOSYSTEMS => "pipeline.stop",
            ControlChange::Pause { .. } => "pipeline.pause",
            ControlChange::Resume => "pipeline.resume",
            ControlChange::RateLimit(_) => "pipeline.rate_limit",
            ControlChange::ResetBreaker => "pipeline.reset_breaker",
        };
        let audit = self
            .pipeline_audit(
                caller,
                action,
                format!("pipeline ecosystem {ecosystem}"),
                None,
                AuditDiff::Stored,
            )
            .await;
        let c = self
            .db
            .pipeline
            .change_control(ecosystem, change, now(), audit)
            .await?;
        Ok(self.valve(&c, now()))
    }

    fn valve(&self, c: &Control, at: Timestamp) -> Valve {
        let cfg = &self.pipeline_settings().breaker;
        Valve {
            ecosystem: c.ecosystem.clone(),
            paused: c.paused,
            reason: c.reason.clone(),
            breaker: c.breaker_at(at, cfg),
            opened_at: c.opened_at,
            failure_rate: c.failure_rate(),
            recent_results: c.recent.len(),
            claims_per_hour: c.claims_per_hour,
            claims_left: c.claims_left(at),
        }
    }

    pub async fn pipeline_status(&self) -> Result<PipelineStatus> {
        let at = now();
        let depth = self.db.pipeline.depth().await?;
        let mut totals: BTreeMap<String, u64> = ItemStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        for d in &depth {
            *totals.entry(d.status.as_str().to_string()).or_default() += d.count;
        }
        let controls = self.db.pipeline.controls().await?;
        let stopped = controls
            .iter()
            .find(|c| c.ecosystem == ALL_ECOSYSTEMS && c.paused)
            .map(|c| c.reason.clone().unwrap_or_else(|| "stopped".into()));
        let valves = controls
            .iter()
            .filter(|c| c.ecosystem != ALL_ECOSYSTEMS)
            .map(|c| self.valve(c, at))
            .collect();
        let since = at.as_millisecond() - 48 * 3_600_000;
        Ok(PipelineStatus {
            stopped,
            depth,
            totals,
            valves,
            activity: self.db.pipeline.activity(since).await?,
            environments: self.pipeline_settings().environments.clone(),
        })
    }

    // ---- checksums and requests -------------------------------------------------------

    pub async fn pipeline_checksum(&self, caller: &Caller, c: Checksum) -> Result<ChecksumVerdict> {
        self.require_operator(caller).await?;
        short("recipe", &c.recipe, 200)?;
        short("version", &c.version, 100)?;
        short("environment", &c.environment, 100)?;
        short("asset", &c.asset, 1000)?;
        short("checksum", &c.checksum, 200)?;
        let hex = c
            .checksum
            .strip_prefix("sha256:")
            .unwrap_or(&c.checksum)
            .to_ascii_lowercase();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(
                "checksum",
                "a sha256 as 64 hex digits, optionally after `sha256:`",
            ));
        }
        let mut c = c;
        c.checksum = format!("sha256:{hex}");
        let audit = self
            .pipeline_audit(
                caller,
                "pipeline.checksum_drift",
                format!("recipe {NAMESPACE}/{}@{}", c.recipe, c.version),
                Some(format!(
                    "the checksum of {} on {} changed",
                    c.asset, c.environment
                )),
                AuditDiff::Stored,
            )
            .await;
        let out = self.db.pipeline.record_checksum(&c, now(), audit).await?;
        Ok(match out {
            ChecksumOutcome::New => ChecksumVerdict {
                outcome: "new".into(),
                alert: None,
            },
            ChecksumOutcome::Same => ChecksumVerdict {
                outcome: "same".into(),
                alert: None,
            },
            ChecksumOutcome::Drift(a) => ChecksumVerdict {
                outcome: "drift".into(),
                alert: Some(a),
            },
        })
    }

    pub async fn pipeline_checksum_alerts(
        &self,
        recipe: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChecksumAlert>> {
        crate::check_limit(limit)?;
        self.db.pipeline.checksum_alerts(recipe, limit).await
    }

    /// Count a request for a package (anyone; once per client and day).
    pub async fn pipeline_request(
        &self,
        caller: &Caller,
        req: PackageRequest,
    ) -> Result<RequestOutcome> {
        check_id("id", &req.id)?;
        let (eco, name) = quiver_store::pipeline::split_id(&req.id).expect("checked");
        let at = now();
        let client = match self.client_hash().await {
            Some(h) => h,
            None => caller.actor(),
        };
        let day = at.as_millisecond().div_euclid(86_400_000);
        let counted = self
            .db
            .pipeline
            .record_request(QueueItem::new(eco, name, 3, at), &client, day)
            .await?;
        let item = self
            .db
            .pipeline
            .item(&req.id)
            .await?
            .ok_or_else(|| Error::not_found(format!("queue item {}", req.id)))?;
        Ok(RequestOutcome {
            id: item.id,
            counted,
            requests: item.requests,
            status: item.status,
        })
    }
}
