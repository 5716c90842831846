//! Telemetry of tool executions: what an orchestrator reports after running a tool's
//! pattern (`POST /api/v1/telemetry`), and the reports read from the store's hourly
//! roll-ups (never from the raw events): one pattern's figures over a window, and the
//! patterns whose estimates drift from what actually happens.
//!
//! Each event names the tool version and pattern it ran; the engine evaluates the
//! pattern's `time_estimate_ms` with the event's variables, so every roll-up keeps the
//! ratio actual/estimate. Drift is a median ratio outside [0.67, 1.5] over at least
//! `min_count` executions in the window.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};
use quiver_model::{EntryKey, Error, Kind, Result};
use quiver_store::telemetry::{
    median_ratio, Execution, Experiment, ExperimentStatus, ExperimentSubject, FitRow, FitSums,
    IngestOutcome, Rollup, RollupFilter,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Caller, Registry};

/// Events per batch, at most.
pub const MAX_BATCH: usize = 1_000;
/// How long raw events are kept unless configured otherwise.
pub const DEFAULT_RETENTION: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);
/// How often a node prunes raw events, at most.
const PRUNE_EVERY_MS: i64 = 5 * 60 * 1000;
/// Events one pruning statement deletes, at most (short write transactions).
const PRUNE_CHUNK: usize = 10_000;

/// The drift band: a median actual/estimate outside it is drift.
pub const DRIFT_BAND: (f64, f64) = (0.67, 1.5);

/// One execution, as reported.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetryEvent {
    /// The caller's key for this event (1 to 200 characters): a retried batch counts once.
    pub idempotency_key: String,
    /// The tool, `namespace/name`.
    pub tool: String,
    pub version: String,
    pub capability: String,
    pub pattern: String,
    /// Where it ran (default `default`).
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub execution_id: Option<String>,
    /// The context variables it ran with (`{"packet_count": 5000}`).
    #[serde(default)]
    pub variables: BTreeMap<String, f64>,
    /// How long it took, ms.
    pub time_ms: f64,
    #[serde(default)]
    pub cost: Option<f64>,
    pub success: bool,
    #[serde(default)]
    pub error: Option<String>,
    /// When it ran (default: now).
    #[serde(default)]
    pub at: Option<Timestamp>,
    /// The active A/B test whose selection chose this execution (the answer of `select`
    /// names it): the execution counts for the arm its version or pattern is.
    #[serde(default)]
    pub experiment: Option<String>,
}

/// A batch of executions.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetryBatch {
    pub events: Vec<TelemetryEvent>,
}

/// Figures of executions.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Figures {
    pub count: u64,
    pub successes: u64,
    pub success_rate: Option<f64>,
    pub time_mean_ms: Option<f64>,
    pub time_min_ms: Option<f64>,
    pub time_max_ms: Option<f64>,
    pub cost_mean: Option<f64>,
    /// Quantiles of the time and cost, from the roll-ups' sketches (within about 4.4%).
    pub time_p50_ms: Option<f64>,
    pub time_p90_ms: Option<f64>,
    pub time_p99_ms: Option<f64>,
    pub cost_p50: Option<f64>,
    pub cost_p90: Option<f64>,
    /// actual / estimate: the mean, and the median (to a quarter power of two).
    pub ratio_mean: Option<f64>,
    pub ratio_median: Option<f64>,
    /// Executions with an estimate to compare with.
    pub ratio_count: u64,
}

impl Figures {
    fn of(r: &Rollup) -> Figures {
        let per = |sum: f64, n: u64| (n > 0).then(|| sum / n as f64);
        Figures {
            count: r.count,
            successes: r.successes,
            success_rate: per(r.successes as f64, r.count),
            time_mean_ms: per(r.time_sum, r.count),
            time_min_ms: (r.count > 0).then_some(r.time_min),
            time_max_ms: (r.count > 0).then_some(r.time_max),
            cost_mean: per(r.cost_sum, r.cost_count),
            time_p50_ms: r.time_sketch.quantile(0.5),
            time_p90_ms: r.time_sketch.quantile(0.9),
            time_p99_ms: r.time_sketch.quantile(0.99),
            cost_p50: r.cost_sketch.quantile(0.5),
            cost_p90: r.cost_sketch.quantile(0.9),
            ratio_mean: per(r.ratio_sum, r.ratio_count),
            ratio_median: median_ratio(&r.ratio_buckets),
            ratio_count: r.ratio_count,
        }
    }
}

/// One pattern's figures over a window, in all and per version and environment.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PatternReport {
    pub tool: EntryKey,
    pub capability: String,
    pub pattern: String,
    pub since: Timestamp,
    pub until: Timestamp,
    pub all: Figures,
    pub by_version: BTreeMap<String, Figures>,
    pub by_environment: BTreeMap<String, Figures>,
    /// Each hour of the window that had executions, oldest first (for charts).
    pub by_hour: Vec<HourFigures>,
}

/// One hour's figures.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct HourFigures {
    pub hour: Timestamp,
    pub figures: Figures,
}

/// A pattern whose estimates are off.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Drift {
    pub tool: EntryKey,
    pub capability: String,
    pub pattern: String,
    pub figures: Figures,
    /// `slower` (actual above the estimate) or `faster`.
    pub direction: String,
    /// A better expression, fitted to the window's executions.
    pub recommendation: Option<Recommendation>,
}

/// A refitted time estimate: the linear form `c0 + c1 * x1 + …` over the variables the
/// current expression uses, by least squares on the executions that give them all (or,
/// when they do not vary enough to fit, the current expression scaled by the mean ratio).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Recommendation {
    /// The version whose expression was refitted.
    pub version: String,
    pub current: String,
    pub expression: String,
    /// Root-mean-square error over the executions, ms: of the current expression and of
    /// the recommended one.
    pub rmse_current_ms: f64,
    pub rmse_recommended_ms: f64,
    pub samples: u64,
}

/// A number for an expression: 6 significant digits, no trailing zeros.
fn coefficient(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return "0".into();
    }
    let digits = (5 - x.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let s = format!("{x:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// Solve `a x = b` (Gaussian elimination with partial pivoting); `None` when singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        let scale = a.iter().map(|r| r[col].abs()).fold(0.0, f64::max).max(1.0);
        if a[pivot][col].abs() <= 1e-9 * scale {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (pivot_row, pivot_b) = (a[col].clone(), b[col]);
        for (row, b_row) in a.iter_mut().zip(b.iter_mut()).skip(col + 1) {
            let f = row[col] / pivot_row[col];
            for (v, p) in row.iter_mut().zip(&pivot_row).skip(col) {
                *v -= f * p;
            }
            *b_row -= f * pivot_b;
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// The refit of `current` from a roll-up's sums (see [`Recommendation`]): `None` with
/// fewer than k + 2 rows for k variables.
pub fn refit_sums(version: &str, current: &str, fit: &FitSums) -> Option<Recommendation> {
    let k = fit.vars.len() + 1;
    if fit.n < k as u64 + 2 || fit.xtx.len() != k * k || fit.xty.len() != k {
        return None;
    }
    let n = fit.n as f64;
    let rmse = |sse: f64| (sse.max(0.0) / n).sqrt();
    let rmse_current = rmse(fit.ee - 2.0 * fit.ey + fit.yy);
    let ata: Vec<Vec<f64>> = fit.xtx.chunks(k).map(<[f64]>::to_vec).collect();
    let (expression, rmse_new) = match solve(ata, fit.xty.clone()) {
        Some(c) => {
            let mut text = coefficient(c[0]);
            for (v, ci) in fit.vars.iter().zip(&c[1..]) {
                text.push_str(&format!(" + {} * {v}", coefficient(*ci)));
            }
            // At the least-squares solution, SSE = yᵀy − cᵀXᵀy.
            let explained: f64 = c.iter().zip(&fit.xty).map(|(a, b)| a * b).sum();
            (text, rmse(fit.yy - explained))
        }
        None => {
            // Too little variety to fit a line: the current expression, scaled by the
            // factor that fits best (Σŷy / Σŷ²).
            if fit.ee <= 0.0 {
                return None;
            }
            let r = fit.ey / fit.ee;
            (
                format!("{} * ({current})", coefficient(r)),
                rmse(r * r * fit.ee - 2.0 * r * fit.ey + fit.yy),
            )
        }
    };
    Some(Recommendation {
        version: version.to_string(),
        current: current.to_string(),
        expression,
        rmse_current_ms: rmse_current,
        rmse_recommended_ms: rmse_new,
        samples: fit.n,
    })
}

/// The estimate of a pattern's time and the refit row of an event's variables.
fn estimate_and_row(
    estimate: &Estimator,
    vars: &BTreeMap<String, f64>,
) -> (Option<f64>, Option<FitRow>) {
    match estimate {
        Estimator::None => (None, None),
        Estimator::Number(x) => (Some(*x), None),
        Estimator::Expr(tree, names) => {
            let est = tree.eval(&|name| vars.get(name).copied()).ok();
            let x: Option<Vec<f64>> = names.iter().map(|n| vars.get(n).copied()).collect();
            let row = x.map(|x| FitRow {
                vars: names.clone(),
                x,
            });
            (est, row.filter(|_| est.is_some()))
        }
    }
}

/// A pattern's time estimate, parsed once per batch.
#[derive(Clone)]
enum Estimator {
    None,
    Number(f64),
    /// The expression and the variables it uses.
    Expr(std::sync::Arc<quiver_model::expr::Expr>, Vec<String>),
}

impl Estimator {
    fn of(v: &Value) -> Estimator {
        match v {
            Value::Number(n) => n.as_f64().map_or(Estimator::None, Estimator::Number),
            Value::String(s) => match quiver_model::expr::parse(s) {
                Ok((tree, used)) => Estimator::Expr(std::sync::Arc::new(tree), used.variables),
                Err(_) => Estimator::None,
            },
            _ => Estimator::None,
        }
    }
}

/// The arm of `test` that an event of tool `key` ran (`ran`: its version or its pattern,
/// as the test compares). Only
/// an active test's executions count, and only those of its tool, capability and arms.
fn arm_of(
    test: &Experiment,
    key: &EntryKey,
    capability: &str,
    ran: &str,
    field: &str,
) -> Result<String> {
    if test.status != ExperimentStatus::Active {
        return Err(Error::invalid(
            field,
            format!(
                "A/B test {} is {}, not active",
                test.name,
                test.status.as_str()
            ),
        ));
    }
    if (test.namespace.as_str(), test.tool.as_str()) != (key.namespace.as_str(), key.name.as_str())
        || test.capability != capability
    {
        return Err(Error::invalid(
            field,
            format!(
                "A/B test {} is about {}/{}'s {}",
                test.name, test.namespace, test.tool, test.capability
            ),
        ));
    }
    if ran != test.arm_a && ran != test.arm_b {
        return Err(Error::invalid(
            field,
            format!(
                "{} {ran} is not an arm of A/B test {} ({} or {})",
                test.subject.as_str().trim_end_matches('s'),
                test.name,
                test.arm_a,
                test.arm_b
            ),
        ));
    }
    Ok(ran.to_string())
}

/// A required short text: 1 to `max` characters, not blank, no control characters.
pub(crate) fn text(field: &str, v: &str, max: usize) -> Result<()> {
    if v.trim().is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("1 to {max} characters, no control characters"),
        ));
    }
    Ok(())
}

/// A tool written as `namespace/name`.
pub fn tool_key(field: &str, tool: &str) -> Result<EntryKey> {
    let (ns, name) = tool
        .split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
        .ok_or_else(|| Error::invalid(field, "write the tool as namespace/name"))?;
    Ok(EntryKey::new(Kind::Tool, ns, name))
}

/// A window: `since` (default a day before `until`) to `until` (default now).
pub fn window(
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<(Timestamp, Timestamp)> {
    let until = until.unwrap_or_else(Timestamp::now);
    let since = since.unwrap_or(until - SignedDuration::from_hours(24));
    if since >= until {
        return Err(Error::invalid("until", "must be later than since"));
    }
    Ok((since, until))
}

impl Registry {
    /// One pattern's roll-ups for the hours of `[since, until)` (the first hour whole).
    async fn pattern_rollups(
        &self,
        tool: &EntryKey,
        capability: &str,
        pattern: &str,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Rollup>> {
        self.db
            .telemetry
            .rollups(&RollupFilter {
                pattern: Some((
                    tool.namespace.clone(),
                    tool.name.clone(),
                    capability.to_string(),
                    pattern.to_string(),
                )),
                since: since.as_millisecond().div_euclid(3_600_000) * 3_600_000,
                until: until.as_millisecond(),
            })
            .await
    }

    /// Delete raw events past the retention in a background task, when this node has not
    /// done so in the last few minutes (every node may; the deletes are idempotent).
    fn prune_telemetry_soon(&self) {
        use std::sync::atomic::Ordering;
        let now = Timestamp::now().as_millisecond();
        let last = self.telemetry_pruned.load(Ordering::Relaxed);
        if now - last < PRUNE_EVERY_MS
            || self
                .telemetry_pruned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let retention =
            i64::try_from(self.config.telemetry_retention.as_millis()).unwrap_or(i64::MAX);
        let before = now.saturating_sub(retention);
        let telemetry = self.db.telemetry.clone();
        tokio::spawn(async move {
            let mut total = 0;
            loop {
                match telemetry.prune_events(before, PRUNE_CHUNK).await {
                    Ok(n) => {
                        total += n;
                        if n < PRUNE_CHUNK as u64 {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "pruning old telemetry events");
                        break;
                    }
                }
            }
            if total > 0 {
                tracing::info!(
                    deleted = total,
                    "pruned telemetry events past the retention"
                );
            }
        });
    }

    /// Record a batch of executions (signed-in callers; tokens need the `telemetry`
    /// scope). Every event must name a version and pattern the caller can see; the batch
    /// is refused whole, naming the event's field, when one does not.
    pub async fn record_telemetry(
        &self,
        caller: &Caller,
        batch: TelemetryBatch,
    ) -> Result<IngestOutcome> {
        // An anonymous caller of an open server writes, as everywhere.
        let open = Caller::Open;
        let who = if *caller == Caller::Anonymous && self.is_open().await? {
            &open
        } else {
            caller
        };
        if !quiver_auth::may_report_telemetry(who) {
            return Err(match who {
                Caller::Anonymous => Error::unauthorized(
                    "sign in to report telemetry (Authorization: Bearer <token>)",
                ),
                _ => Error::forbidden("this token lacks the 'telemetry' scope"),
            });
        }
        if batch.events.is_empty() || batch.events.len() > MAX_BATCH {
            return Err(Error::invalid(
                "events",
                format!("send 1 to {MAX_BATCH} events"),
            ));
        }
        let mut manifests: HashMap<(EntryKey, String), Value> = HashMap::new();
        let mut tests: HashMap<String, Experiment> = HashMap::new();
        let mut estimators: HashMap<(EntryKey, String, String, String), Estimator> = HashMap::new();
        let mut out = Vec::with_capacity(batch.events.len());
        for (i, e) in batch.events.into_iter().enumerate() {
            let f = |name: &str| format!("events[{i}].{name}");
            text(&f("idempotency_key"), &e.idempotency_key, 200)?;
            for (name, v) in [
                ("version", &e.version),
                ("capability", &e.capability),
                ("pattern", &e.pattern),
            ] {
                text(&f(name), v, 200)?;
            }
            let environment = e.environment.unwrap_or_else(|| "default".into());
            text(&f("environment"), &environment, 100)?;
            if !(e.time_ms.is_finite() && e.time_ms >= 0.0) {
                return Err(Error::invalid(
                    f("time_ms"),
                    "a number of milliseconds, 0 or more",
                ));
            }
            if e.cost.is_some_and(|c| !(c.is_finite() && c >= 0.0)) {
                return Err(Error::invalid(f("cost"), "a number, 0 or more"));
            }
            if let Some((k, _)) = e.variables.iter().find(|(_, v)| !v.is_finite()) {
                return Err(Error::invalid(
                    f(&format!("variables.{k}")),
                    "a finite number",
                ));
            }
            let key = tool_key(&f("tool"), &e.tool)?;
            let manifest = match manifests.get(&(key.clone(), e.version.clone())) {
                Some(m) => m.clone(),
                None => {
                    let v = self
                        .get_version(caller, &key, &e.version)
                        .await
                        .map_err(|err| match err.code {
                            quiver_model::ErrorCode::NotFound => Error::invalid(
                                f("tool"),
                                format!("no version {} of {key} that you can see", e.version),
                            ),
                            _ => err,
                        })?;
                    manifests.insert((key.clone(), e.version.clone()), v.manifest.clone());
                    v.manifest
                }
            };
            let pattern_key = (
                key.clone(),
                e.version.clone(),
                e.capability.clone(),
                e.pattern.clone(),
            );
            let estimator = match estimators.get(&pattern_key) {
                Some(x) => x,
                None => {
                    let pattern = &manifest["capabilities"][&e.capability]["patterns"][&e.pattern];
                    if pattern.is_null() {
                        return Err(Error::invalid(
                            f("pattern"),
                            format!(
                                "{key}@{} has no pattern '{}' of capability '{}'",
                                e.version, e.pattern, e.capability
                            ),
                        ));
                    }
                    estimators
                        .entry(pattern_key)
                        .or_insert(Estimator::of(&pattern["time_estimate_ms"]))
                }
            };
            let (estimate_ms, fit) = estimate_and_row(estimator, &e.variables);
            let arm = match &e.experiment {
                None => None,
                Some(x) => {
                    let test = match tests.get(x) {
                        Some(t) => t.clone(),
                        None => {
                            let t = self.db.telemetry.experiment(x).await?.ok_or_else(|| {
                                Error::invalid(f("experiment"), format!("no A/B test {x}"))
                            })?;
                            tests.insert(x.clone(), t.clone());
                            t
                        }
                    };
                    let ran = match test.subject {
                        ExperimentSubject::Versions => &e.version,
                        ExperimentSubject::Patterns => &e.pattern,
                    };
                    Some(arm_of(&test, &key, &e.capability, ran, &f("experiment"))?)
                }
            };
            out.push(Execution {
                event_key: e.idempotency_key,
                namespace: key.namespace,
                name: key.name,
                version: e.version,
                capability: e.capability,
                pattern: e.pattern,
                environment,
                execution_id: e.execution_id.filter(|x| !x.is_empty()),
                at: e.at.unwrap_or_else(Timestamp::now),
                time_ms: e.time_ms,
                cost: e.cost,
                estimate_ms,
                success: e.success,
                error: e.error.map(|m| m.chars().take(2_000).collect()),
                variables: serde_json::to_value(&e.variables).unwrap_or(Value::Null),
                experiment: e.experiment,
                arm,
                fit,
            });
        }
        let outcome = self.db.telemetry.ingest(out).await?;
        self.prune_telemetry_soon();
        let auto: Vec<String> = tests
            .into_values()
            .filter(|t| t.auto_complete)
            .map(|t| t.name)
            .collect();
        if outcome.accepted > 0 && !auto.is_empty() {
            self.auto_complete(who, &auto).await?;
        }
        Ok(outcome)
    }

    /// One pattern's figures over `[since, until)` (by the hour), for those who may read
    /// the tool.
    pub async fn pattern_report(
        &self,
        caller: &Caller,
        tool: &EntryKey,
        capability: &str,
        pattern: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<PatternReport> {
        self.get_entry(caller, tool).await?;
        let (since, until) = window(since, until)?;
        let rows = self
            .pattern_rollups(tool, capability, pattern, since, until)
            .await?;
        let key = (
            tool.namespace.clone(),
            tool.name.clone(),
            capability.to_string(),
            pattern.to_string(),
            String::new(),
            String::new(),
            0,
        );
        let mut all = Rollup::empty(&key);
        let mut by_version: BTreeMap<String, Rollup> = BTreeMap::new();
        let mut by_environment: BTreeMap<String, Rollup> = BTreeMap::new();
        let mut by_hour: BTreeMap<i64, Rollup> = BTreeMap::new();
        for r in &rows {
            all.merge(r);
            by_hour
                .entry(r.hour)
                .or_insert_with(|| Rollup::empty(&key))
                .merge(r);
            by_version
                .entry(r.version.clone())
                .or_insert_with(|| Rollup::empty(&key))
                .merge(r);
            by_environment
                .entry(r.environment.clone())
                .or_insert_with(|| Rollup::empty(&key))
                .merge(r);
        }
        Ok(PatternReport {
            tool: tool.clone(),
            capability: capability.to_string(),
            pattern: pattern.to_string(),
            since,
            until,
            all: Figures::of(&all),
            by_version: by_version
                .iter()
                .map(|(k, r)| (k.clone(), Figures::of(r)))
                .collect(),
            by_environment: by_environment
                .iter()
                .map(|(k, r)| (k.clone(), Figures::of(r)))
                .collect(),
            by_hour: by_hour
                .iter()
                .map(|(h, r)| HourFigures {
                    hour: Timestamp::from_millisecond(*h).unwrap_or(Timestamp::UNIX_EPOCH),
                    figures: Figures::of(r),
                })
                .collect(),
        })
    }

    /// The patterns whose median actual/estimate is outside [`DRIFT_BAND`] over at least
    /// `min_count` executions with an estimate in the window, worst first (tools the
    /// caller may read).
    pub async fn drift(
        &self,
        caller: &Caller,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        min_count: u64,
    ) -> Result<Vec<Drift>> {
        let (since, until) = window(since, until)?;
        let rows = self
            .db
            .telemetry
            .rollups(&RollupFilter {
                pattern: None,
                since: since.as_millisecond().div_euclid(3_600_000) * 3_600_000,
                until: until.as_millisecond(),
            })
            .await?;
        let mut per: BTreeMap<(String, String, String, String), Rollup> = BTreeMap::new();
        // The refit sums per pattern and version (a refit is of one version's expression).
        let mut fits: HashMap<(String, String, String, String, String), FitSums> = HashMap::new();
        for r in rows {
            let k = (
                r.namespace.clone(),
                r.name.clone(),
                r.capability.clone(),
                r.pattern.clone(),
            );
            if r.fit.n > 0 {
                fits.entry((
                    k.0.clone(),
                    k.1.clone(),
                    k.2.clone(),
                    k.3.clone(),
                    r.version.clone(),
                ))
                .or_default()
                .merge(&r.fit);
            }
            match per.get_mut(&k) {
                Some(acc) => acc.merge(&r),
                None => {
                    per.insert(k, r);
                }
            }
        }
        let mut out = Vec::new();
        let mut manifests: HashMap<(EntryKey, String), Value> = HashMap::new();
        let mut entries: HashMap<EntryKey, Option<quiver_model::Entry>> = HashMap::new();
        for ((ns, name, capability, pattern), r) in per {
            if r.ratio_count < min_count.max(1) {
                continue;
            }
            let Some(median) = median_ratio(&r.ratio_buckets) else {
                continue;
            };
            if (DRIFT_BAND.0..=DRIFT_BAND.1).contains(&median) {
                continue;
            }
            let tool = EntryKey::new(Kind::Tool, &ns, &name);
            // One read of each tool, however many of its patterns drift.
            let entry = match entries.get(&tool) {
                Some(e) => e.clone(),
                None => {
                    let e = match self.get_entry(caller, &tool).await {
                        Ok(e) => Some(e),
                        Err(e) if e.code == quiver_model::ErrorCode::NotFound => None,
                        Err(e) => return Err(e),
                    };
                    entries.insert(tool.clone(), e.clone());
                    e
                }
            };
            let Some(entry) = entry else { continue };
            let recommendation = match &entry.latest_version {
                Some(v) => {
                    let manifest = match manifests.get(&(tool.clone(), v.clone())) {
                        Some(m) => m,
                        None => {
                            let m = self.get_version(caller, &tool, v).await?.manifest;
                            manifests.entry((tool.clone(), v.clone())).or_insert(m)
                        }
                    };
                    let fit = fits.get(&(
                        ns.clone(),
                        name.clone(),
                        capability.clone(),
                        pattern.clone(),
                        v.clone(),
                    ));
                    match (
                        manifest["capabilities"][&capability]["patterns"][&pattern]
                            ["time_estimate_ms"]
                            .as_str(),
                        fit,
                    ) {
                        (Some(current), Some(fit)) => refit_sums(v, current, fit),
                        _ => None,
                    }
                }
                None => None,
            };
            out.push(Drift {
                tool,
                capability,
                pattern,
                direction: if median > 1.0 { "slower" } else { "faster" }.into(),
                figures: Figures::of(&r),
                recommendation,
            });
        }
        let off = |d: &Drift| d.figures.ratio_median.map_or(0.0, |m| m.ln().abs());
        out.sort_by(|a, b| off(b).total_cmp(&off(a)));
        Ok(out)
    }
}

/// Body of `POST /api/v1/telemetry/recommendations`: turn a pattern's refitted time
/// estimate into a new version of the tool.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRecommendation {
    /// The tool, `namespace/name`.
    pub tool: String,
    pub capability: String,
    pub pattern: String,
    /// The executions to fit: from (default a day before `until`) ...
    #[serde(default)]
    pub since: Option<Timestamp>,
    /// ... until (default now).
    #[serde(default)]
    pub until: Option<Timestamp>,
    /// The new version (default: the next patch of the latest).
    #[serde(default)]
    pub version: Option<String>,
}

/// What [`Registry::apply_recommendation`] published.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct AppliedRecommendation {
    pub recommendation: Recommendation,
    /// The new version, as any publish answers it: gated and, where the publisher's trust
    /// asks for it, held for review.
    pub version: quiver_model::Version,
}

impl Registry {
    /// The refit of `version`'s time expression `current` for a pattern, from the
    /// window's roll-ups of that version (`None` when too few executions give the
    /// variables it uses).
    #[allow(clippy::too_many_arguments)]
    async fn recommendation(
        &self,
        tool: &EntryKey,
        capability: &str,
        pattern: &str,
        version: &str,
        current: &str,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Option<Recommendation>> {
        let rows = self
            .pattern_rollups(tool, capability, pattern, since, until)
            .await?;
        let mut fit = FitSums::default();
        for r in rows.iter().filter(|r| r.version == version) {
            fit.merge(&r.fit);
        }
        Ok(refit_sums(version, current, &fit))
    }

    /// Publish a new version of a tool whose pattern's time estimate is the refit of the
    /// latest version's (a maintainer's call: the publish rights apply, and the version
    /// goes through the gates and review as any other). A 422 names what is missing
    /// when there is nothing to refit.
    pub async fn apply_recommendation(
        &self,
        caller: &Caller,
        r: ApplyRecommendation,
    ) -> Result<AppliedRecommendation> {
        let key = tool_key("tool", &r.tool)?;
        text("capability", &r.capability, 200)?;
        text("pattern", &r.pattern, 200)?;
        let (since, until) = window(r.since, r.until)?;
        let entry = self.get_entry(caller, &key).await?;
        let latest = entry
            .latest_version
            .clone()
            .ok_or_else(|| Error::invalid("tool", format!("{key} has no selectable version")))?;
        let base = self.get_version(caller, &key, &latest).await?;
        let estimate = &base.manifest["capabilities"][&r.capability]["patterns"][&r.pattern]
            ["time_estimate_ms"];
        let nothing = || {
            Error::invalid(
                "pattern",
                format!(
                    "nothing to refit: {key}@{latest}'s estimate of '{}' is no expression, \
                     or too few executions in the window give its variables",
                    r.pattern
                ),
            )
        };
        if estimate.is_null() {
            return Err(Error::invalid(
                "pattern",
                format!(
                    "{key}@{latest} has no time estimate for pattern '{}' of '{}'",
                    r.pattern, r.capability
                ),
            ));
        }
        let current = estimate.as_str().ok_or_else(nothing)?;
        let rec = self
            .recommendation(
                &key,
                &r.capability,
                &r.pattern,
                &latest,
                current,
                since,
                until,
            )
            .await?
            .ok_or_else(nothing)?;
        let version = match r.version {
            Some(v) => v,
            None => {
                let v = semver::Version::parse(&latest).map_err(|_| {
                    Error::invalid(
                        "version",
                        format!("{latest} is no semver: name the version"),
                    )
                })?;
                semver::Version::new(v.major, v.minor, v.patch + 1).to_string()
            }
        };
        let mut manifest = base.manifest.clone();
        manifest["capabilities"][&r.capability]["patterns"][&r.pattern]["time_estimate_ms"] =
            Value::String(rec.expression.clone());
        let changelog = format!(
            "{} / {}: time_estimate_ms refitted to {} executions of {latest}: `{}` -> `{}` \
             (RMSE {:.1} -> {:.1} ms)",
            r.capability,
            r.pattern,
            rec.samples,
            rec.current,
            rec.expression,
            rec.rmse_current_ms,
            rec.rmse_recommended_ms
        );
        let published = self
            .publish_version(
                caller,
                &key,
                quiver_model::NewVersion {
                    version,
                    manifest,
                    changelog: Some(changelog),
                    breaking: false,
                },
            )
            .await?;
        Ok(AppliedRecommendation {
            recommendation: rec,
            version: published,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(i: usize, n: f64, time: f64) -> Execution {
        Execution {
            event_key: format!("e{i}"),
            namespace: "ops".into(),
            name: "t".into(),
            version: "1.0.0".into(),
            capability: "c".into(),
            pattern: "p".into(),
            environment: "default".into(),
            execution_id: None,
            at: Timestamp::UNIX_EPOCH,
            time_ms: time,
            cost: None,
            estimate_ms: None,
            success: true,
            error: None,
            variables: serde_json::json!({"packet_count": n}),
            experiment: None,
            arm: None,
            fit: None,
        }
    }

    /// The refit sums of executions of `800 + 0.3 * packet_count`.
    fn sums(evs: &[Execution]) -> FitSums {
        let mut f = FitSums::default();
        for e in evs {
            let n = e.variables["packet_count"].as_f64().unwrap();
            let row = FitRow {
                vars: vec!["packet_count".into()],
                x: vec![n],
            };
            f.add(&row, e.time_ms, 800.0 + 0.3 * n);
        }
        f
    }

    #[test]
    fn refits_recover_the_true_line() {
        let evs: Vec<Execution> = (0..50)
            .map(|i| {
                let n = 1000.0 + 1000.0 * i as f64;
                run(i, n, 500.0 + 0.9 * n)
            })
            .collect();
        let r = refit_sums("1.0.0", "800 + 0.3 * packet_count", &sums(&evs)).unwrap();
        assert_eq!(r.expression, "500 + 0.9 * packet_count", "{r:?}");
        assert!(
            r.rmse_recommended_ms < 0.01 && r.rmse_current_ms > 1000.0,
            "{r:?}"
        );
        // No variety to fit a line: the current expression, scaled.
        let flat: Vec<Execution> = (0..10).map(|i| run(i, 5000.0, 4600.0)).collect();
        let r = refit_sums("1.0.0", "800 + 0.3 * packet_count", &sums(&flat)).unwrap();
        assert_eq!(r.expression, "2 * (800 + 0.3 * packet_count)");
        assert!(r.rmse_recommended_ms < 0.01, "{r:?}");
        assert!(refit_sums("1.0.0", "800 + 0.3 * packet_count", &sums(&flat[..2])).is_none());
        assert_eq!(coefficient(0.30000000004), "0.3");
        assert_eq!(coefficient(123456.7), "123457");
    }
}
