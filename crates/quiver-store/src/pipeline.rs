//! The recipe pipeline's live records (migration `0018_pipeline` on both backends): queue
//! items, the results workers report per item and target environment (the failure
//! records), the dependencies that block an item on each environment, the safety valves
//! of each ecosystem (pause, circuit breaker, claim rate), the asset checksums observed
//! per recipe version and the alerts when one changes, and the requests for packages that
//! have no recipe.
//!
//! The decisions are the engine's (`quiver-engine/src/pipeline.rs`: what a result does to
//! an item, which recipe a dependency names); the store keeps the records and makes the
//! few steps that must be atomic across nodes atomic: a claim takes each item once
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer on SQLite), a report applies
//! only while the reporting worker still holds the item's lease, and a breaker's window
//! is read and written in the report's transaction ([`Control::record`], arithmetic both
//! backends share).

use async_trait::async_trait;
use jiff::Timestamp;
use quiver_model::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Audit;

/// The state of a queue item.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Pending,
    InProgress,
    Success,
    Failed,
    Blocked,
    RequiresManual,
    Excluded,
}

impl ItemStatus {
    pub const ALL: [ItemStatus; 7] = [
        ItemStatus::Pending,
        ItemStatus::InProgress,
        ItemStatus::Success,
        ItemStatus::Failed,
        ItemStatus::Blocked,
        ItemStatus::RequiresManual,
        ItemStatus::Excluded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Pending => "pending",
            ItemStatus::InProgress => "in_progress",
            ItemStatus::Success => "success",
            ItemStatus::Failed => "failed",
            ItemStatus::Blocked => "blocked",
            ItemStatus::RequiresManual => "requires_manual",
            ItemStatus::Excluded => "excluded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl std::str::FromStr for ItemStatus {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::parse(s).ok_or_else(|| {
            format!(
                "'{s}' is not a queue status ({})",
                Self::ALL.map(|x| x.as_str()).join(", ")
            )
        })
    }
}

/// How much a user request weighs against popularity in the claim order: the score is
/// `popularity + REQUEST_BOOST * ln(1 + requests)`.
pub const REQUEST_BOOST: f64 = 0.1;

/// The claim score of an item (higher first within a tier).
pub fn claim_score(popularity: f64, requests: i64) -> f64 {
    popularity + REQUEST_BOOST * (1.0 + requests.max(0) as f64).ln()
}

/// One package in the generation queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QueueItem {
    /// `<ecosystem>:<name>` (`homebrew:node`, `cargo:ripgrep`, `github:sharkdp/bat`).
    pub id: String,
    pub ecosystem: String,
    pub name: String,
    /// Priority tier: 1 critical, 2 popular, 3 standard (lower is claimed first).
    pub tier: i32,
    /// Popularity on the cross-ecosystem scale of the data-set import (0 to 1).
    pub popularity: f64,
    /// Distinct requests for the package (one per client per day).
    pub requests: i64,
    pub status: ItemStatus,
    /// How the package's source was decided (`auto`, `curated`, …).
    pub confidence: Option<String>,
    /// Failed attempts so far.
    pub failure_count: i64,
    /// Transient failures in a row (reset by any other outcome).
    pub retries: i64,
    /// Not claimed before this time (a transient failure's backoff).
    pub next_retry_at: Option<Timestamp>,
    /// The worker holding the item and until when.
    pub lease_owner: Option<String>,
    pub lease_until: Option<Timestamp>,
    /// The recipe the item produced (`tsuku/<name>`'s name).
    pub recipe: Option<String>,
    /// The entry of the queue file the item was imported from, kept so that an export
    /// writes it back as it was, with the live fields updated.
    #[serde(skip)]
    #[schemars(skip)]
    pub imported: Option<Value>,
    /// Position in the queue file it came from (export order).
    #[serde(skip)]
    #[schemars(skip)]
    pub ord: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl QueueItem {
    /// A new pending item.
    pub fn new(ecosystem: &str, name: &str, tier: i32, at: Timestamp) -> QueueItem {
        QueueItem {
            id: format!("{ecosystem}:{name}"),
            ecosystem: ecosystem.to_string(),
            name: name.to_string(),
            tier,
            popularity: 0.0,
            requests: 0,
            status: ItemStatus::Pending,
            confidence: None,
            failure_count: 0,
            retries: 0,
            next_retry_at: None,
            lease_owner: None,
            lease_until: None,
            recipe: None,
            imported: None,
            ord: i64::MAX,
            created_at: at,
            updated_at: at,
        }
    }

    pub fn score(&self) -> f64 {
        claim_score(self.popularity, self.requests)
    }
}

/// Split a package id into ecosystem and name (`homebrew:node` → `homebrew`, `node`).
pub fn split_id(id: &str) -> Option<(&str, &str)> {
    let (eco, name) = id.split_once(':')?;
    (!eco.is_empty() && !name.is_empty()).then_some((eco, name))
}

/// What `upsert_items` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct UpsertOutcome {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// Which items to list (`None`: any), by id after `after`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemFilter {
    pub status: Option<ItemStatus>,
    pub ecosystem: Option<String>,
    pub after: Option<String>,
    pub limit: usize,
}

/// A worker's request for work.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub worker: String,
    /// Only these ecosystems (any when empty).
    pub only: Vec<String>,
    /// Never these ecosystems (paused, breaker open, rate spent).
    pub except: Vec<String>,
    pub limit: usize,
    pub now: Timestamp,
    pub lease_until: Timestamp,
}

/// One environment's outcome for one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EnvResult {
    /// The target environment (`linux-glibc-x86_64`, `darwin-arm64`, …).
    pub environment: String,
    pub passed: bool,
    /// Why it failed (`missing_dependency`, `no_bottles`, `network`, …).
    pub category: Option<String>,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    /// The dependencies without a recipe that blocked it here.
    #[serde(default)]
    pub blocked_by: Vec<String>,
}

/// A stored result: one environment's outcome of one attempt at one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ResultRecord {
    pub id: i64,
    pub item_id: String,
    pub ecosystem: String,
    pub batch_id: Option<String>,
    pub worker: Option<String>,
    #[serde(flatten)]
    pub result: EnvResult,
    pub at: Timestamp,
}

/// Which results to read, newest first, by id before `before`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultFilter {
    pub item: Option<String>,
    pub ecosystem: Option<String>,
    pub environment: Option<String>,
    pub category: Option<String>,
    /// Only failures (else passes too).
    pub failures_only: bool,
    pub since: Option<Timestamp>,
    pub before: Option<i64>,
    pub limit: usize,
}

/// A result of a run outside a claim (imported history): stored as a result; it updates
/// the item's state on its environment (and the blocks there) only when it is newer than
/// what is known.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRecord {
    pub item_id: String,
    pub batch_id: Option<String>,
    pub result: EnvResult,
    pub at: Timestamp,
}

/// An item's latest outcome on one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EnvState {
    pub item_id: String,
    pub environment: String,
    pub passed: bool,
    pub category: Option<String>,
    pub popularity: f64,
    pub at: Timestamp,
}

/// A report's effect on one item, decided by the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemReport {
    /// The item as it is after the report (status, counts, retry time, recipe).
    pub after: QueueItem,
    /// Apply only while this worker holds the item's lease (`None`: unconditionally,
    /// for records of runs outside a claim).
    pub lease_of: Option<String>,
    pub batch_id: Option<String>,
    pub results: Vec<EnvResult>,
    pub at: Timestamp,
}

/// One dependency blocking one item on one environment, with the item's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Block {
    pub item_id: String,
    pub ecosystem: String,
    pub name: String,
    pub popularity: f64,
    pub status: ItemStatus,
    pub environment: String,
    pub dependency: String,
}

/// The state of an ecosystem's circuit breaker.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// When a breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// The outcomes remembered (the last N results).
    pub window: usize,
    /// Outcomes needed before the rate is judged.
    pub min_results: usize,
    /// The failure rate (0 to 1) at or above which the breaker opens.
    pub threshold: f64,
    /// How long an open breaker waits before it lets a probe through.
    pub cooldown_ms: i64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: 20,
            min_results: 10,
            threshold: 0.8,
            cooldown_ms: 15 * 60 * 1000,
        }
    }
}

/// The name of the control row that stops the whole pipeline.
pub const ALL_ECOSYSTEMS: &str = "*";

/// The safety valves of one ecosystem (or of all: [`ALL_ECOSYSTEMS`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Control {
    pub ecosystem: String,
    pub paused: bool,
    pub reason: Option<String>,
    /// The breaker as stored: an open one reads as half-open once its cooldown is over
    /// ([`Control::breaker_at`]).
    pub breaker: BreakerState,
    pub opened_at: Option<Timestamp>,
    /// The last outcomes, oldest first: `1` a success, `0` a failure.
    pub recent: String,
    /// Items that may be claimed an hour (no limit when `None`).
    pub claims_per_hour: Option<i64>,
    /// The hour (epoch ms) the count below is of.
    pub window_start: i64,
    pub window_claims: i64,
    pub updated_at: Timestamp,
}

impl Control {
    pub fn new(ecosystem: &str, at: Timestamp) -> Control {
        Control {
            ecosystem: ecosystem.to_string(),
            paused: false,
            reason: None,
            breaker: BreakerState::Closed,
            opened_at: None,
            recent: String::new(),
            claims_per_hour: None,
            window_start: 0,
            window_claims: 0,
            updated_at: at,
        }
    }

    /// The breaker's state at `now`: open turns half-open after the cooldown.
    pub fn breaker_at(&self, now: Timestamp, cfg: &BreakerConfig) -> BreakerState {
        match (self.breaker, self.opened_at) {
            (BreakerState::Open, Some(at))
                if now.as_millisecond() - at.as_millisecond() >= cfg.cooldown_ms =>
            {
                BreakerState::HalfOpen
            }
            (s, _) => s,
        }
    }

    /// The failure rate of the remembered outcomes.
    pub fn failure_rate(&self) -> Option<f64> {
        let n = self.recent.len();
        (n > 0).then(|| self.recent.bytes().filter(|b| *b == b'0').count() as f64 / n as f64)
    }

    /// Record outcomes (true: success) at `now`: a success while half-open closes the
    /// breaker and forgets the window; a failure while half-open opens it again; a closed
    /// breaker opens when the window's failure rate reaches the threshold.
    pub fn record(&mut self, outcomes: &[bool], now: Timestamp, cfg: &BreakerConfig) {
        for &ok in outcomes {
            match self.breaker_at(now, cfg) {
                BreakerState::HalfOpen | BreakerState::Open if ok => {
                    self.breaker = BreakerState::Closed;
                    self.opened_at = None;
                    self.recent.clear();
                    self.recent.push('1');
                }
                BreakerState::HalfOpen => {
                    self.breaker = BreakerState::Open;
                    self.opened_at = Some(now);
                }
                BreakerState::Open => {}
                BreakerState::Closed => {
                    self.recent.push(if ok { '1' } else { '0' });
                    let extra = self.recent.len().saturating_sub(cfg.window);
                    self.recent.drain(..extra);
                    if self.recent.len() >= cfg.min_results
                        && self.failure_rate().unwrap_or(0.0) >= cfg.threshold
                    {
                        self.breaker = BreakerState::Open;
                        self.opened_at = Some(now);
                    }
                }
            }
        }
        self.updated_at = now;
    }

    /// Count `n` claims at `now`, in the current hour's window.
    pub fn count_claims(&mut self, n: i64, now: Timestamp) {
        let hour = now.as_millisecond().div_euclid(3_600_000) * 3_600_000;
        if self.window_start != hour {
            self.window_start = hour;
            self.window_claims = 0;
        }
        self.window_claims += n;
    }

    /// Claims still allowed this hour (`None`: no limit).
    pub fn claims_left(&self, now: Timestamp) -> Option<i64> {
        let hour = now.as_millisecond().div_euclid(3_600_000) * 3_600_000;
        let used = if self.window_start == hour {
            self.window_claims
        } else {
            0
        };
        self.claims_per_hour.map(|l| (l - used).max(0))
    }
}

/// An operator's change to an ecosystem's valves.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlChange {
    Pause {
        reason: String,
    },
    Resume,
    /// Set or lift (`None`) the hourly claim limit.
    RateLimit(Option<i64>),
    /// Close the breaker by hand (forgets the window).
    ResetBreaker,
}

impl ControlChange {
    pub fn apply(&self, c: &mut Control, now: Timestamp) {
        match self {
            ControlChange::Pause { reason } => {
                c.paused = true;
                c.reason = Some(reason.clone());
            }
            ControlChange::Resume => {
                c.paused = false;
                c.reason = None;
            }
            ControlChange::RateLimit(l) => c.claims_per_hour = *l,
            ControlChange::ResetBreaker => {
                c.breaker = BreakerState::Closed;
                c.opened_at = None;
                c.recent.clear();
            }
        }
        c.updated_at = now;
    }
}

/// An observed checksum of a recipe version's downloaded asset on one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Checksum {
    pub recipe: String,
    pub version: String,
    pub environment: String,
    /// The asset (file name or URL) the checksum is of.
    pub asset: String,
    /// `sha256:<hex>` or the bare hex.
    pub checksum: String,
}

/// A checksum that changed for the same recipe version, environment and asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChecksumAlert {
    pub id: i64,
    pub recipe: String,
    pub version: String,
    pub environment: String,
    pub asset: String,
    /// The checksum first recorded.
    pub expected: String,
    pub observed: String,
    pub at: Timestamp,
}

/// What recording a checksum found.
#[derive(Debug, Clone, PartialEq)]
pub enum ChecksumOutcome {
    /// First observation of this asset.
    New,
    /// The same checksum as before.
    Same,
    /// A different one: the alert raised (or raised before for this same value).
    Drift(ChecksumAlert),
}

/// Items per status and ecosystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Depth {
    pub ecosystem: String,
    pub status: ItemStatus,
    pub count: u64,
}

/// Claims and results per hour (epoch ms), for rates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Activity {
    pub hour: i64,
    pub claimed: u64,
    pub passed: u64,
    pub failed: u64,
}

#[async_trait]
pub trait PipelineStore: Send + Sync + 'static {
    /// Write items: new ids are inserted; existing ones are replaced when `replace` (their
    /// lease, requests and creation time kept), else left alone.
    async fn upsert_items(&self, items: Vec<QueueItem>, replace: bool) -> Result<UpsertOutcome>;
    async fn item(&self, id: &str) -> Result<Option<QueueItem>>;
    /// The items of these ids that exist, in id order (one read for a whole report).
    async fn items_by_id(&self, ids: &[String]) -> Result<Vec<QueueItem>>;
    /// Items by id, in id order.
    async fn items(&self, f: &ItemFilter) -> Result<Vec<QueueItem>>;
    /// Every item, in queue-file order (then id), with what it was imported from.
    async fn all_items(&self) -> Result<Vec<QueueItem>>;
    /// Take up to `limit` claimable items for `worker`: pending ones whose retry time has
    /// come, and in-progress ones whose lease has run out, in priority order (tier, score
    /// descending, age); each is taken by exactly one claim, whatever the concurrency.
    async fn claim(&self, c: &Claim) -> Result<Vec<QueueItem>>;
    /// Apply reports in one transaction. A report with `lease_of` applies only while that
    /// worker holds the item (answered `false` otherwise, nothing written for it). Each
    /// result is stored and becomes the item's outcome on its environment; an
    /// environment's blocks are replaced by its result's `blocked_by`; an item that succeeds loses all its blocks. Each ecosystem's breaker
    /// records the outcomes (`true`: passed somewhere) of the applied reports.
    async fn report(&self, reports: Vec<ItemReport>, breaker: &BreakerConfig) -> Result<Vec<bool>>;
    async fn results(&self, f: &ResultFilter) -> Result<Vec<ResultRecord>>;
    /// Store results of runs outside a claim (the items must exist): each is a result
    /// row; where it is newer than the item's known outcome on its environment it becomes
    /// that outcome and replaces the blocks there. Items' states and breakers are left
    /// alone.
    async fn record_history(&self, records: Vec<HistoryRecord>) -> Result<()>;
    /// Every item's latest outcome per environment (of one environment when given).
    async fn env_states(&self, environment: Option<&str>) -> Result<Vec<EnvState>>;
    /// Every block of every item that is not `success`.
    async fn blocks(&self) -> Result<Vec<Block>>;
    /// Every block of the items that any of `dependencies` blocks.
    async fn blocks_of(&self, dependencies: &[String]) -> Result<Vec<Block>>;
    /// Put items back to `pending` (no retry time, no lease, no blocks), only those in
    /// one of `from`; the ids changed.
    async fn requeue(
        &self,
        ids: &[String],
        from: &[ItemStatus],
        at: Timestamp,
        audit: Audit,
    ) -> Result<Vec<String>>;
    async fn controls(&self) -> Result<Vec<Control>>;
    async fn change_control(
        &self,
        ecosystem: &str,
        change: ControlChange,
        at: Timestamp,
        audit: Audit,
    ) -> Result<Control>;
    /// Count claims per ecosystem in their hourly windows.
    async fn count_claims(&self, counts: &[(String, i64)], at: Timestamp) -> Result<()>;
    /// Record a checksum; a different one for the same asset raises an alert (once per
    /// distinct value), with `audit` appended in the same transaction.
    async fn record_checksum(
        &self,
        c: &Checksum,
        at: Timestamp,
        audit: Audit,
    ) -> Result<ChecksumOutcome>;
    async fn checksum_alerts(
        &self,
        recipe: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChecksumAlert>>;
    /// Count a request for `item` by `client` on `day` (days since the epoch): once per
    /// client and day. A package with no item gets a pending one (`item` as given).
    /// `true` when counted.
    async fn record_request(&self, item: QueueItem, client: &str, day: i64) -> Result<bool>;
    async fn depth(&self) -> Result<Vec<Depth>>;
    /// Claims and results per hour since `since` (epoch ms), oldest first.
    async fn activity(&self, since: i64) -> Result<Vec<Activity>>;
}

/// Check an item's fields as stored.
pub fn check_item(i: &QueueItem) -> Result<()> {
    if split_id(&i.id) != Some((i.ecosystem.as_str(), i.name.as_str())) {
        return Err(Error::invalid(
            "id",
            format!(
                "`{}` must be `<ecosystem>:<name>` and agree with ecosystem `{}` and name `{}`",
                i.id, i.ecosystem, i.name
            ),
        ));
    }
    if !(1..=3).contains(&i.tier) {
        return Err(Error::invalid("tier", "a tier is 1, 2 or 3"));
    }
    if !i.popularity.is_finite() || i.popularity < 0.0 {
        return Err(Error::invalid(
            "popularity",
            "must be a finite number, 0 or more",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).unwrap()
    }

    #[test]
    fn breaker_opens_half_opens_and_closes() {
        let cfg = BreakerConfig {
            window: 10,
            min_results: 5,
            threshold: 0.8,
            cooldown_ms: 1000,
        };
        let mut c = Control::new("homebrew", t(0));
        c.record(&[true, false, false, false], t(0), &cfg);
        assert_eq!(c.breaker, BreakerState::Closed, "too few results to judge");
        c.record(&[false, false, false], t(10), &cfg);
        // 6 of 7 failed: 0.857 >= 0.8.
        assert_eq!(c.breaker_at(t(10), &cfg), BreakerState::Open);
        assert_eq!(c.breaker_at(t(1009), &cfg), BreakerState::Open);
        assert_eq!(c.breaker_at(t(1010), &cfg), BreakerState::HalfOpen);
        c.record(&[false], t(1010), &cfg);
        assert_eq!(
            c.breaker_at(t(1011), &cfg),
            BreakerState::Open,
            "a failed probe"
        );
        c.record(&[true], t(2010), &cfg);
        assert_eq!(c.breaker_at(t(2010), &cfg), BreakerState::Closed);
        assert_eq!(c.recent, "1");
    }

    #[test]
    fn claim_window_resets_each_hour() {
        let mut c = Control::new("npm", t(0));
        c.claims_per_hour = Some(10);
        c.count_claims(7, t(1000));
        assert_eq!(c.claims_left(t(2000)), Some(3));
        assert_eq!(c.claims_left(t(3_600_000)), Some(10));
        c.count_claims(4, t(3_600_001));
        assert_eq!(c.window_claims, 4);
    }

    #[test]
    fn ids_split() {
        assert_eq!(split_id("homebrew:node"), Some(("homebrew", "node")));
        assert_eq!(
            split_id("github:sharkdp/bat"),
            Some(("github", "sharkdp/bat"))
        );
        assert_eq!(split_id("node"), None);
        assert_eq!(split_id(":x"), None);
    }
}
