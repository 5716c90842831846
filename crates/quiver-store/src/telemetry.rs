//! Telemetry of tool executions (migration `0016_telemetry` on both backends): the raw
//! events, each once by its idempotency key, and roll-ups per tool, version, capability,
//! pattern, environment and hour, maintained at ingest in the same transaction, so that
//! reports read roll-ups and never scan events. A roll-up keeps counts, sums, minimums and
//! maximums of the actual time and cost, and the ratio actual/estimate as a sum and as a
//! histogram of [`RATIO_BUCKETS`] logarithmic buckets (for its median), and quantile
//! [`Sketch`]es of the actual time and cost.
//!
//! A/B tests ([`Experiment`], migration `0017_experiments`) live here too: an event
//! attributed to a test's arm adds, in the ingest's transaction, to that arm's running
//! figures ([`ArmStats`]: counts, sums, sums of squares and sketches), so that a test's
//! results are read from two rows, however many events it had.

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::Timestamp;
use quiver_model::Result;
use serde::{Deserialize, Serialize};

use crate::Audit;

/// Buckets of the ratio actual/estimate: bucket `i` holds ratios in
/// `[2^((i - 16) / 4), 2^((i - 15) / 4))` (quarter powers of two from 1/16 to 16; the
/// first and last take what is beyond).
pub const RATIO_BUCKETS: usize = 33;

/// The bucket of a ratio.
pub fn ratio_bucket(ratio: f64) -> usize {
    if ratio.is_nan() || ratio <= 0.0 {
        return 0;
    }
    let i = (ratio.log2() * 4.0).floor() + 16.0;
    i.clamp(0.0, (RATIO_BUCKETS - 1) as f64) as usize
}

/// The middle of a bucket, as a ratio.
pub fn bucket_ratio(i: usize) -> f64 {
    2f64.powf((i as f64 - 16.0 + 0.5) / 4.0)
}

/// The median ratio of a histogram (`None` when empty).
pub fn median_ratio(buckets: &[u64]) -> Option<f64> {
    let n: u64 = buckets.iter().sum();
    if n == 0 {
        return None;
    }
    let mut seen = 0;
    for (i, c) in buckets.iter().enumerate() {
        seen += c;
        if seen * 2 >= n {
            return Some(bucket_ratio(i));
        }
    }
    None
}

/// One execution to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// The caller's idempotency key: a retried batch counts once.
    pub event_key: String,
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub capability: String,
    pub pattern: String,
    pub environment: String,
    pub execution_id: Option<String>,
    pub at: Timestamp,
    pub time_ms: f64,
    pub cost: Option<f64>,
    /// The pattern's time estimate for the event's variables, when it could be evaluated.
    pub estimate_ms: Option<f64>,
    pub success: bool,
    pub error: Option<String>,
    /// The context variables, as JSON.
    pub variables: serde_json::Value,
    /// The A/B test this execution was chosen by, and its arm.
    #[serde(default)]
    pub experiment: Option<String>,
    #[serde(default)]
    pub arm: Option<String>,
    /// The values of the variables the pattern's time expression uses, in the order it
    /// names them, when the event gives them all: the roll-up adds them to its
    /// [`FitSums`]. Not kept with the raw event.
    #[serde(default, skip)]
    pub fit: Option<FitRow>,
}

/// One execution's row of a least-squares refit: the expression's variables and their
/// values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FitRow {
    pub vars: Vec<String>,
    pub x: Vec<f64>,
}

/// The sums a least-squares refit of a time expression needs, kept in the roll-ups at
/// ingest so that a refit reads sums, not events: for rows `[1, x1 … xk]` of the
/// expression's variables and actual times `y`, the normal equations' `XᵀX` and `Xᵀy`,
/// and `Σy²`, `Σŷ²`, `Σŷy` of the expression's own estimates `ŷ` (for its error and its
/// best scaling). Sums of rows of different variables are not added together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FitSums {
    pub vars: Vec<String>,
    pub n: u64,
    /// Row-major, (k+1)².
    pub xtx: Vec<f64>,
    pub xty: Vec<f64>,
    pub yy: f64,
    pub ee: f64,
    pub ey: f64,
}

impl FitSums {
    /// Add a row (`x` the variables' values, `y` the actual time, `est` the estimate).
    pub fn add(&mut self, row: &FitRow, y: f64, est: f64) {
        if self.n == 0 {
            let k = row.vars.len() + 1;
            *self = FitSums {
                vars: row.vars.clone(),
                xtx: vec![0.0; k * k],
                xty: vec![0.0; k],
                ..FitSums::default()
            };
        } else if self.vars != row.vars {
            return;
        }
        let k = self.vars.len() + 1;
        let full: Vec<f64> = std::iter::once(1.0).chain(row.x.iter().copied()).collect();
        if full.len() != k {
            return;
        }
        for i in 0..k {
            self.xty[i] += full[i] * y;
            for j in 0..k {
                self.xtx[i * k + j] += full[i] * full[j];
            }
        }
        self.n += 1;
        self.yy += y * y;
        self.ee += est * est;
        self.ey += est * y;
    }

    /// Another roll-up's sums, when they are of the same variables.
    pub fn merge(&mut self, o: &FitSums) {
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = o.clone();
            return;
        }
        if self.vars != o.vars || self.xtx.len() != o.xtx.len() {
            return;
        }
        self.n += o.n;
        for (a, b) in self.xtx.iter_mut().zip(&o.xtx) {
            *a += b;
        }
        for (a, b) in self.xty.iter_mut().zip(&o.xty) {
            *a += b;
        }
        self.yy += o.yy;
        self.ee += o.ee;
        self.ey += o.ey;
    }

    /// The text form in the database (empty when there are no rows).
    pub fn encode(&self) -> String {
        if self.n == 0 {
            return String::new();
        }
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(s: &str) -> FitSums {
        serde_json::from_str(s).unwrap_or_default()
    }
}

impl Execution {
    /// actual / estimate, when the estimate is positive.
    pub fn ratio(&self) -> Option<f64> {
        self.estimate_ms
            .filter(|e| *e > 0.0)
            .map(|e| self.time_ms / e)
            .filter(|r| r.is_finite())
    }

    /// The start of the event's hour, ms since the epoch.
    pub fn hour_ms(&self) -> i64 {
        self.at.as_millisecond().div_euclid(3_600_000) * 3_600_000
    }
}

/// What an ingest did.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct IngestOutcome {
    pub accepted: u64,
    /// Events whose key was recorded before (not counted again).
    pub duplicates: u64,
}

/// One roll-up row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub capability: String,
    pub pattern: String,
    pub environment: String,
    /// The hour's start, ms since the epoch.
    pub hour: i64,
    pub count: u64,
    pub successes: u64,
    pub time_sum: f64,
    pub time_min: f64,
    pub time_max: f64,
    pub cost_count: u64,
    pub cost_sum: f64,
    pub ratio_count: u64,
    pub ratio_sum: f64,
    pub ratio_buckets: Vec<u64>,
    /// Quantile sketches of the actual time (ms) and cost.
    pub time_sketch: Sketch,
    pub cost_sketch: Sketch,
    /// The refit sums of the pattern's time expression.
    pub fit: FitSums,
}

/// Which roll-ups to read: a window of hours, and optionally one pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollupFilter {
    /// `(namespace, name, capability, pattern)`; all patterns when `None`.
    pub pattern: Option<(String, String, String, String)>,
    /// Hours starting at or after this (ms).
    pub since: i64,
    /// Hours starting before this (ms).
    pub until: i64,
}

/// A quantile sketch of non-negative values: a sparse histogram of logarithmic buckets,
/// eight per power of two, so a quantile is known to within about 4.4% of its value
/// whatever the spread (the idea of DDSketch, with a fixed base so that sketches of every
/// roll-up merge exactly). Zero and negative values are counted apart, as zero. Written
/// here rather than taken from a crate because it must be stored as a short text in a
/// row on both backends and merged bucket by bucket, which the sketch crates do not offer
/// in a stable form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    pub zeros: u64,
    /// Bucket `i` holds values in `[2^(i/8), 2^((i+1)/8))`.
    pub buckets: BTreeMap<i32, u64>,
}

/// Buckets per power of two in a [`Sketch`].
const SKETCH_STEPS: f64 = 8.0;
/// The bucket indexes a sketch keeps (2^-50 to 2^50); beyond goes to the last one.
const SKETCH_RANGE: i32 = 400;

impl Sketch {
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() || x <= 0.0 {
            // Non-finite values are refused upstream; a stray one counts as zero.
            self.zeros += 1;
            return;
        }
        let i = ((x.log2() * SKETCH_STEPS).floor() as i64)
            .clamp(-SKETCH_RANGE as i64, SKETCH_RANGE as i64) as i32;
        *self.buckets.entry(i).or_default() += 1;
    }

    pub fn merge(&mut self, o: &Sketch) {
        self.zeros += o.zeros;
        for (i, c) in &o.buckets {
            *self.buckets.entry(*i).or_default() += c;
        }
    }

    pub fn count(&self) -> u64 {
        self.zeros + self.buckets.values().sum::<u64>()
    }

    /// The value at quantile `q` (0 to 1): the geometric middle of its bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        if rank <= self.zeros {
            return Some(0.0);
        }
        let mut seen = self.zeros;
        for (i, c) in &self.buckets {
            seen += c;
            if seen >= rank {
                return Some(2f64.powf((*i as f64 + 0.5) / SKETCH_STEPS));
            }
        }
        None
    }

    /// The text form in the database: `zeros;index:count,index:count`.
    pub fn encode(&self) -> String {
        let body: Vec<String> = self
            .buckets
            .iter()
            .map(|(i, c)| format!("{i}:{c}"))
            .collect();
        format!("{};{}", self.zeros, body.join(","))
    }

    /// The sketch of [`Self::encode`]'s text (empty for text that is not one: a row
    /// written before sketches existed).
    pub fn decode(s: &str) -> Sketch {
        let Some((zeros, body)) = s.split_once(';') else {
            return Sketch::default();
        };
        Sketch {
            zeros: zeros.parse().unwrap_or(0),
            buckets: body
                .split(',')
                .filter_map(|p| {
                    let (i, c) = p.split_once(':')?;
                    Some((i.parse().ok()?, c.parse().ok()?))
                })
                .collect(),
        }
    }
}

/// What an A/B test compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentSubject {
    /// Two versions of the tool (the arms are version numbers).
    Versions,
    /// Two patterns of the capability (the arms are pattern names).
    Patterns,
}

/// An A/B test's state: `draft` → `active` → `completed`, or `cancelled` from either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentStatus {
    Draft,
    Active,
    Completed,
    Cancelled,
}

impl ExperimentSubject {
    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentSubject::Versions => "versions",
            ExperimentSubject::Patterns => "patterns",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [ExperimentSubject::Versions, ExperimentSubject::Patterns]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

impl ExperimentStatus {
    pub const ALL: [ExperimentStatus; 4] = [
        ExperimentStatus::Draft,
        ExperimentStatus::Active,
        ExperimentStatus::Completed,
        ExperimentStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentStatus::Draft => "draft",
            ExperimentStatus::Active => "active",
            ExperimentStatus::Completed => "completed",
            ExperimentStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl std::str::FromStr for ExperimentStatus {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::parse(s).ok_or_else(|| {
            format!("'{s}' is not a test status (draft, active, completed, cancelled)")
        })
    }
}

/// An A/B test between two versions of a tool, or two patterns of one capability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Experiment {
    /// Unique on the registry (`tcpdump-verbose-vs-quick`).
    pub name: String,
    pub description: String,
    /// The tool's namespace and name.
    pub namespace: String,
    pub tool: String,
    pub capability: String,
    pub subject: ExperimentSubject,
    /// The two arms: versions or pattern names. `a` is the control.
    pub arm_a: String,
    pub arm_b: String,
    /// The share of subjects assigned to arm `b` (0 to 1, exclusive).
    pub split: f64,
    /// Only selections in this environment take part (any when `None`).
    pub environment: Option<String>,
    /// Only these callers (actor names) take part (anyone when empty).
    pub callers: Vec<String>,
    pub status: ExperimentStatus,
    /// Executions each arm needs before a winner can be declared.
    pub min_samples: u64,
    /// Complete the test by itself once the results are significant.
    pub auto_complete: bool,
    pub winner: Option<String>,
    pub created_by: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

/// The running figures of one arm of an A/B test.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmStats {
    pub arm: String,
    pub count: u64,
    pub successes: u64,
    pub time_sum: f64,
    pub time_sumsq: f64,
    pub time_sketch: Sketch,
    pub cost_count: u64,
    pub cost_sum: f64,
    pub cost_sumsq: f64,
    pub cost_sketch: Sketch,
}

impl ArmStats {
    pub fn add(&mut self, e: &Execution) {
        self.count += 1;
        self.successes += u64::from(e.success);
        self.time_sum += e.time_ms;
        self.time_sumsq += e.time_ms * e.time_ms;
        self.time_sketch.add(e.time_ms);
        if let Some(c) = e.cost {
            self.cost_count += 1;
            self.cost_sum += c;
            self.cost_sumsq += c * c;
            self.cost_sketch.add(c);
        }
    }
}

/// Which A/B tests to list (`None`: any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExperimentFilter {
    /// The tool's namespace and name.
    pub tool: Option<(String, String)>,
    pub capability: Option<String>,
    pub status: Option<ExperimentStatus>,
}

/// A state change of an A/B test.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentChange {
    /// The states the test may be in for the change to apply (a conflict otherwise).
    pub from: Vec<ExperimentStatus>,
    pub to: ExperimentStatus,
    pub winner: Option<String>,
    pub at: Timestamp,
}

impl ExperimentChange {
    /// The test after this change, or a conflict when it is not in a state the change
    /// applies to.
    pub fn apply(&self, before: &Experiment) -> Result<Experiment> {
        if !self.from.contains(&before.status) {
            return Err(quiver_model::Error::conflict(
                "status",
                format!(
                    "A/B test {} is {}, not {}",
                    before.name,
                    before.status.as_str(),
                    self.from
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            ));
        }
        let mut after = before.clone();
        after.status = self.to;
        after.updated_at = self.at;
        if self.to == ExperimentStatus::Completed {
            after.winner = self.winner.clone();
            after.completed_at = Some(self.at);
        }
        Ok(after)
    }
}

/// Fill the text-coded fields of a stored test (subject, status, callers as JSON).
pub fn decode_experiment(
    e: &mut Experiment,
    subject: &str,
    status: &str,
    callers: &str,
) -> Result<()> {
    use quiver_model::Error;
    e.subject = ExperimentSubject::parse(subject)
        .ok_or_else(|| Error::internal("reading an A/B test", format!("subject {subject}")))?;
    e.status = ExperimentStatus::parse(status)
        .ok_or_else(|| Error::internal("reading an A/B test", format!("status {status}")))?;
    e.callers = serde_json::from_str(callers)
        .map_err(|err| Error::internal("reading an A/B test's callers", err))?;
    Ok(())
}

#[async_trait]
pub trait TelemetryStore: Send + Sync + 'static {
    /// Record `events` in one transaction: each new key once, with its roll-up updated;
    /// a key seen before is a duplicate and changes nothing.
    async fn ingest(&self, events: Vec<Execution>) -> Result<IngestOutcome>;
    /// The roll-ups in the window, ordered by pattern, version, environment and hour.
    async fn rollups(&self, filter: &RollupFilter) -> Result<Vec<Rollup>>;
    /// The raw events of the filter's pattern (required) whose time is in the window
    /// (`since`..`until`, ms), newest first, at most `limit`.
    async fn executions(&self, filter: &RollupFilter, limit: usize) -> Result<Vec<Execution>>;
    /// Delete up to `limit` raw events older than `before` (ms since the epoch), oldest
    /// first; the roll-ups keep their figures. Answers how many were deleted.
    async fn prune_events(&self, before: i64, limit: usize) -> Result<u64>;

    /// Store a new A/B test with its audit row (a conflict when the name is taken).
    async fn create_experiment(&self, e: Experiment, audit: Audit) -> Result<Experiment>;
    /// Change a test's state with its audit row, when it is in one of `change.from`
    /// (a conflict otherwise; not found when there is no such test).
    async fn change_experiment(
        &self,
        name: &str,
        change: ExperimentChange,
        audit: Audit,
    ) -> Result<Experiment>;
    async fn experiment(&self, name: &str) -> Result<Option<Experiment>>;
    /// Tests by name.
    async fn experiments(&self, filter: &ExperimentFilter) -> Result<Vec<Experiment>>;
    /// The arms' running figures (arms without executions are absent).
    async fn arm_stats(&self, name: &str) -> Result<Vec<ArmStats>>;
}

/// The roll-up an event belongs to: (namespace, name, capability, pattern, version,
/// environment, hour).
pub type RollupKey = (String, String, String, String, String, String, i64);

impl Execution {
    pub fn rollup_key(&self) -> RollupKey {
        (
            self.namespace.clone(),
            self.name.clone(),
            self.capability.clone(),
            self.pattern.clone(),
            self.version.clone(),
            self.environment.clone(),
            self.hour_ms(),
        )
    }
}

impl Rollup {
    /// A roll-up with nothing in it yet, for `key`.
    pub fn empty(key: &RollupKey) -> Rollup {
        Rollup {
            namespace: key.0.clone(),
            name: key.1.clone(),
            capability: key.2.clone(),
            pattern: key.3.clone(),
            version: key.4.clone(),
            environment: key.5.clone(),
            hour: key.6,
            count: 0,
            successes: 0,
            time_sum: 0.0,
            time_min: f64::INFINITY,
            time_max: f64::NEG_INFINITY,
            cost_count: 0,
            cost_sum: 0.0,
            ratio_count: 0,
            ratio_sum: 0.0,
            ratio_buckets: vec![0; RATIO_BUCKETS],
            time_sketch: Sketch::default(),
            cost_sketch: Sketch::default(),
            fit: FitSums::default(),
        }
    }

    /// This roll-up with one more event (of its key).
    pub fn add(&mut self, e: &Execution) {
        self.count += 1;
        self.successes += u64::from(e.success);
        self.time_sum += e.time_ms;
        self.time_min = self.time_min.min(e.time_ms);
        self.time_max = self.time_max.max(e.time_ms);
        self.time_sketch.add(e.time_ms);
        if let Some(c) = e.cost {
            self.cost_count += 1;
            self.cost_sum += c;
            self.cost_sketch.add(c);
        }
        if let Some(r) = e.ratio() {
            self.ratio_count += 1;
            self.ratio_sum += r;
            self.ratio_buckets.resize(RATIO_BUCKETS, 0);
            self.ratio_buckets[ratio_bucket(r)] += 1;
        }
        if let (Some(row), Some(est)) = (&e.fit, e.estimate_ms) {
            self.fit.add(row, e.time_ms, est);
        }
    }

    /// Another roll-up of the same pattern folded into this one (a report's sums).
    pub fn merge(&mut self, o: &Rollup) {
        self.count += o.count;
        self.successes += o.successes;
        self.time_sum += o.time_sum;
        self.time_min = self.time_min.min(o.time_min);
        self.time_max = self.time_max.max(o.time_max);
        self.cost_count += o.cost_count;
        self.cost_sum += o.cost_sum;
        self.ratio_count += o.ratio_count;
        self.ratio_sum += o.ratio_sum;
        self.time_sketch.merge(&o.time_sketch);
        self.cost_sketch.merge(&o.cost_sketch);
        self.fit.merge(&o.fit);
        self.ratio_buckets.resize(RATIO_BUCKETS, 0);
        for (a, b) in self.ratio_buckets.iter_mut().zip(&o.ratio_buckets) {
            *a += b;
        }
    }
}

/// The buckets' text form in the database: counts joined by commas.
pub fn encode_buckets(b: &[u64]) -> String {
    b.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

pub fn decode_buckets(s: &str) -> Vec<u64> {
    let mut v: Vec<u64> = s.split(',').filter_map(|x| x.parse().ok()).collect();
    v.resize(RATIO_BUCKETS, 0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_medians() {
        assert_eq!(ratio_bucket(1.0), 16);
        assert_eq!(ratio_bucket(2.0), 20);
        assert_eq!(ratio_bucket(0.5), 12);
        assert_eq!(ratio_bucket(1e9), RATIO_BUCKETS - 1);
        assert_eq!(ratio_bucket(0.0), 0);
        assert_eq!(ratio_bucket(f64::NAN), 0);
        let mut b = vec![0; RATIO_BUCKETS];
        b[ratio_bucket(2.0)] = 3;
        b[ratio_bucket(1.0)] = 1;
        let m = median_ratio(&b).unwrap();
        assert!((1.9..2.4).contains(&m), "{m}");
        assert_eq!(median_ratio(&[0; 3]), None);
        assert_eq!(decode_buckets(&encode_buckets(&b)), b);
    }

    #[test]
    fn sketches_answer_quantiles_within_their_accuracy() {
        let mut s = Sketch::default();
        for i in 1..=1000 {
            s.add(i as f64);
        }
        s.add(0.0);
        for (q, want) in [(0.5, 500.0), (0.9, 900.0), (0.99, 990.0)] {
            let got = s.quantile(q).unwrap();
            assert!((got / want - 1.0).abs() < 0.05, "q{q}: {got} vs {want}");
        }
        assert_eq!(s.quantile(0.0), Some(0.0));
        assert_eq!(Sketch::decode(&s.encode()), s);
        assert_eq!(Sketch::decode(""), Sketch::default());
        let mut a = Sketch::default();
        a.add(3.0);
        let mut b = Sketch::default();
        b.add(3.0);
        b.add(1e300);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(Sketch::default().quantile(0.5), None);
    }
}
