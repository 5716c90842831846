//! Tool selection: which tool, which pattern, for a capability under constraints.
//!
//! A tool's manifest lists capabilities, each with patterns (the ops profiles' shape,
//! which any tool published through the API may use): `time_estimate_ms` and
//! `cost_estimate` (numbers or expressions of [`quiver_model::expr`]), a `policy`
//! (`max_cost`, `max_execution_time` in seconds, `production_safe`, `requires_approval`),
//! `preference_match` (how well the pattern does on `speed`, `accuracy`, `cost`,
//! `complexity` and `completeness`, each 0 to 1) and `required_inputs`.
//!
//! For a request, every tool the caller may see with the capability in its latest
//! version is a candidate per pattern: its expressions are evaluated with the request's
//! variables, then the hard constraints are applied (the request's `max_cost` and
//! `max_time_ms`, the pattern's own policy limits, `production_safe_only` in a production
//! environment, `approval_allowed`); what survives is scored
//! `Σ weight × preference_match / Σ weight` and ranked by score, then estimated time,
//! then name and pattern, so the answer is the same for the same inputs and data. Tools
//! that are not published (drafts, in review, archived, deprecated: the latter with their
//! replacement), and tools without a selectable version, are listed as excluded with the
//! reason, as is a pattern whose estimate needs a variable the request did not give when
//! a constraint depends on it.
//!
//! Candidates come from a catalog of the tools' capabilities that the engine keeps in
//! memory, with every estimate expression parsed once. Before each use it is brought up
//! to the change feed's head: the tools that the new feed events touch are read again and
//! their offers replaced (a bulk change of thousands of events rebuilds it whole). A
//! request reads a shared snapshot, so selections run in parallel and never wait for
//! each other, only for an update in progress.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use quiver_model::expr;
use quiver_model::{EntryKey, Error, Kind, Result, Status};
use quiver_store::EntryFilter;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::{experiments, Caller, Registry};
use quiver_store::telemetry::{Experiment, ExperimentFilter, ExperimentStatus, ExperimentSubject};

/// A candidate while ranking: what orders it, and what its answer needs, without the
/// allocations of a whole [`Candidate`] (made for the ranked few only).
struct Light {
    /// The offer's index in the capability's offers (their tools' order).
    idx: usize,
    pattern: String,
    /// An A/B test arm's version, when it stands in for the offer's.
    version: Option<String>,
    time_ms: Option<f64>,
    cost: Option<f64>,
    score: f64,
    notes: Vec<String>,
    calibration: Option<Calibration>,
    experiment: Option<Assignment>,
    details: Option<(BTreeMap<String, f64>, Vec<String>)>,
}

/// A pattern's score: `Σ weight × preference_match / Σ weight`.
fn score_of(p: &Value, weights: &[(&str, f64)], total: f64) -> f64 {
    if total <= 0.0 {
        return 0.0;
    }
    let prefs = p.get("preference_match");
    weights
        .iter()
        .map(|(k, w)| {
            let m = number(prefs.and_then(|x| x.get(*k)))
                .unwrap_or(0.0)
                .clamp(0.0, 1.0);
            w * m / total
        })
        .sum()
}

/// A pattern's score breakdown (each preference's part) and the required inputs that
/// `vars` does not give.
fn details_of(
    p: &Value,
    weights: &[(&str, f64)],
    total: f64,
    vars: &BTreeMap<String, f64>,
) -> (BTreeMap<String, f64>, Vec<String>) {
    let prefs = p.get("preference_match");
    let breakdown = weights
        .iter()
        .map(|(k, w)| {
            let m = number(prefs.and_then(|x| x.get(*k)))
                .unwrap_or(0.0)
                .clamp(0.0, 1.0);
            let part = if total > 0.0 { w * m / total } else { 0.0 };
            (k.to_string(), part)
        })
        .collect();
    let missing = p
        .get("required_inputs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("name").and_then(Value::as_str))
        .filter(|n| !vars.contains_key(*n))
        .map(str::to_string)
        .collect();
    (breakdown, missing)
}

/// The preferences a pattern is scored on.
pub const PREFERENCES: [&str; 5] = ["speed", "accuracy", "cost", "complexity", "completeness"];

/// What to select for.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectRequest {
    /// The capability (`packet_capture`); or give `need` instead.
    #[serde(default)]
    pub capability: String,
    /// What you need, in words (`capture network packets on an interface`): resolved to
    /// the capability whose name, patterns, descriptions and typical uses match it best
    /// (the answer lists the matches as `resolved`). Give this or `capability`.
    #[serde(default)]
    pub need: Option<String>,
    /// Values of the context variables and inputs (`{"packet_count": 5000}`).
    #[serde(default)]
    pub variables: BTreeMap<String, f64>,
    /// `production` applies `production_safe_only`; anything else does not.
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub constraints: Constraints,
    /// Weights of `speed`, `accuracy`, `cost`, `complexity`, `completeness` (each 0 to
    /// 1; missing ones weigh 0, and all missing weigh 1 each).
    #[serde(default)]
    pub preferences: BTreeMap<String, f64>,
    /// Candidates to answer (default 10, at most 100).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Scale each pattern's time estimate by its observed mean actual/estimate over the
    /// last 30 days of telemetry, where at least 30 executions had an estimate.
    #[serde(default)]
    pub calibrated: bool,
    /// Who or what the selection is for (a user, a session, a job): the key active A/B
    /// tests assign to an arm, the same arm every time. Without it no test takes part.
    #[serde(default)]
    pub subject: Option<String>,
}

/// Executions a calibration needs, at least.
pub const CALIBRATION_MIN: u64 = 30;

/// How a candidate's time estimate was calibrated by telemetry.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Calibration {
    /// The mean observed actual/estimate the expression's value was multiplied by.
    pub ratio: f64,
    pub samples: u64,
    /// The expression's own value, before calibration.
    pub uncalibrated_time_ms: f64,
}

/// Hard constraints: a pattern that breaks one is excluded, with the reason.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    #[serde(default)]
    pub max_cost: Option<f64>,
    #[serde(default)]
    pub max_time_ms: Option<f64>,
    /// In a `production` environment, only patterns marked `production_safe` (default
    /// true).
    #[serde(default = "yes")]
    pub production_safe_only: bool,
    /// Whether patterns that require approval may be chosen (default true).
    #[serde(default = "yes")]
    pub approval_allowed: bool,
}

fn yes() -> bool {
    true
}

impl Default for Constraints {
    fn default() -> Self {
        Constraints {
            max_cost: None,
            max_time_ms: None,
            production_safe_only: true,
            approval_allowed: true,
        }
    }
}

/// One ranked answer.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Candidate {
    pub tool: EntryKey,
    pub version: String,
    pub capability: String,
    pub pattern: String,
    /// The evaluated time estimate, ms (`None`: it needs a variable not given).
    pub time_ms: Option<f64>,
    pub cost: Option<f64>,
    pub score: f64,
    /// Each preference's part of the score: weight × match / Σ weights.
    pub breakdown: BTreeMap<String, f64>,
    /// Required inputs of the pattern that the request's variables do not give.
    pub missing_inputs: Vec<String>,
    /// What else the caller should know (an estimate that could not be evaluated).
    pub notes: Vec<String>,
    /// Set when `calibrated` was asked and telemetry had enough executions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// The A/B test that chose this candidate's version or pattern, and its arm: name the
    /// test in the execution's telemetry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment: Option<Assignment>,
}

/// An A/B test's choice for the request's subject.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Assignment {
    pub experiment: String,
    pub tool: EntryKey,
    /// `versions` or `patterns`.
    pub subject: String,
    pub arm: String,
}

/// A candidate that was not selected, and why.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Excluded {
    pub tool: EntryKey,
    pub version: Option<String>,
    pub pattern: Option<String>,
    pub reason: String,
}

/// The answer of [`Registry::select`].
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Selection {
    pub capability: String,
    pub candidates: Vec<Candidate>,
    pub excluded: Vec<Excluded>,
    /// The active A/B tests the subject takes part in, and the arm each chose.
    pub experiments: Vec<Assignment>,
    /// For a `need`: the capabilities it matched, best first (the first was selected for).
    pub resolved: Vec<NeedMatch>,
}

/// A capability a free-text need matched.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct NeedMatch {
    pub capability: String,
    /// Higher is better: the need's words found in the capability, each weighted by where
    /// (name, pattern names, descriptions and uses) and by how rare it is among
    /// capabilities, over the need's word count.
    pub score: f64,
    /// The need's words (stemmed) that matched.
    pub matched: Vec<String>,
}

/// How much a word counts by where a capability has it.
const NAME_WEIGHT: f64 = 3.0;
const PATTERN_WEIGHT: f64 = 2.0;
const TEXT_WEIGHT: f64 = 1.0;
/// Capabilities a need's answer lists, at most.
const NEED_MATCHES: usize = 5;

/// A tool's capability, as the catalog keeps it.
#[derive(Debug, Clone)]
struct Offer {
    entry: quiver_model::Entry,
    version: Option<String>,
    /// The capability's description in this tool's manifest.
    description: Option<String>,
    /// The tool's `platform` (`linux`, `network`, `database`...), when it names one.
    platform: Option<String>,
    /// The capability's patterns, by name.
    patterns: serde_json::Map<String, Value>,
    /// Each pattern's time and cost estimates, parsed once when the catalog is built.
    estimates: BTreeMap<String, (Estimate, Estimate)>,
}

/// An estimate field as the catalog keeps it: parsed once, evaluated per request.
#[derive(Debug, Clone)]
enum Estimate {
    Absent,
    Number(f64),
    Expr(Arc<expr::Expr>, String),
    /// Not a number nor a valid expression (an import keeps what it was given).
    Invalid(String),
}

impl Estimate {
    fn of(v: Option<&Value>) -> Estimate {
        match v {
            None | Some(Value::Null) => Estimate::Absent,
            Some(Value::Number(n)) => n.as_f64().map_or(Estimate::Absent, Estimate::Number),
            Some(Value::String(s)) => match expr::parse(s) {
                Ok((tree, _)) => Estimate::Expr(Arc::new(tree), s.clone()),
                Err(e) => Estimate::Invalid(format!("`{s}`: {e}")),
            },
            Some(other) => Estimate::Invalid(format!("not a number or an expression: {other}")),
        }
    }

    fn pair(p: &Value) -> (Estimate, Estimate) {
        (
            Estimate::of(p.get("time_estimate_ms")),
            Estimate::of(p.get("cost_estimate")),
        )
    }

    /// The value with `vars` (`Ok(None)` when there is no estimate).
    fn eval(&self, vars: &BTreeMap<String, f64>) -> std::result::Result<Option<f64>, String> {
        match self {
            Estimate::Absent => Ok(None),
            Estimate::Number(x) => Ok(Some(*x)),
            Estimate::Invalid(e) => Err(e.clone()),
            Estimate::Expr(tree, s) => match tree.eval(&|name| vars.get(name).copied()) {
                Ok(x) => Ok(Some(x)),
                Err(expr::EvalError::UnknownVariable(name)) => Err(format!("`{s}` needs `{name}`")),
                Err(e) => Err(format!("`{s}`: {e}")),
            },
        }
    }
}

/// A capability as `GET /api/v1/capabilities` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct CapabilitySummary {
    pub name: String,
    /// The first tool's description of it.
    pub description: Option<String>,
    pub tools: u64,
    pub patterns: u64,
    pub platforms: Vec<String>,
}

/// One capability with its tools and their patterns.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct CapabilityDetail {
    pub name: String,
    pub description: Option<String>,
    pub tools: Vec<CapabilityTool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct CapabilityTool {
    pub tool: EntryKey,
    /// The selectable version (none when every one is yanked or held back).
    pub version: Option<String>,
    pub status: Status,
    pub platform: Option<String>,
    pub patterns: Vec<PatternSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PatternSummary {
    pub name: String,
    pub description: Option<String>,
    /// A number or an expression.
    pub time_estimate_ms: Value,
    pub cost_estimate: Value,
    pub typical_use_cases: Vec<String>,
    pub required_inputs: Vec<String>,
}

/// The catalog of capabilities: a snapshot shared by the requests that read it, brought
/// up to the feed's head before each use (see [`Registry::fresh_catalog`]).
#[derive(Default)]
pub(crate) struct Catalog {
    built_at: Option<i64>,
    snapshot: Arc<Snapshot>,
}

/// One state of the catalog.
#[derive(Default, Clone)]
struct Snapshot {
    /// Each capability's offers, in the order of their tools' keys.
    by_capability: BTreeMap<String, Arc<Vec<Arc<Offer>>>>,
    /// Each capability's words (stemmed), with the weight of where they occur best.
    terms: BTreeMap<String, BTreeMap<String, f64>>,
    /// The capabilities each tool (by entry id) offers.
    by_entry: HashMap<i64, Vec<String>>,
}

/// Feed events past which the catalog is rebuilt rather than brought up to date.
const CATALOG_INCREMENTAL_MAX: i64 = 5_000;

pub(crate) type SharedCatalog = Arc<Mutex<Catalog>>;

/// The words of a capability for [`Registry::resolve_need`]: its name, its patterns'
/// names, and every description and typical use, stemmed, each with the weight of the
/// best place it occurs.
fn capability_terms(name: &str, offers: &[Arc<Offer>]) -> BTreeMap<String, f64> {
    let mut analyzer = quiver_search::analysis::english();
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    let mut add = |text: &str, weight: f64| {
        for (_, _, t) in quiver_search::analysis::analyze(&mut analyzer, &text.replace('_', " ")) {
            let e = out.entry(t).or_insert(0.0);
            *e = e.max(weight);
        }
    };
    add(name, NAME_WEIGHT);
    for o in offers {
        if let Some(d) = &o.description {
            add(d, TEXT_WEIGHT);
        }
        for (pname, p) in &o.patterns {
            add(pname, PATTERN_WEIGHT);
            if let Some(d) = p.get("description").and_then(Value::as_str) {
                add(d, TEXT_WEIGHT);
            }
            for u in p
                .get("typical_use_cases")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                add(u, TEXT_WEIGHT);
            }
        }
    }
    out
}

/// Whether the caller may read the entry (the rule `get_entry` applies).
fn readable(caller: &Caller, e: &quiver_model::Entry) -> bool {
    quiver_auth::authorize(
        caller,
        quiver_auth::Action::Read,
        &quiver_auth::Target::entry(&e.namespace, &e.name, e.visibility),
    )
    .is_allowed()
}

fn number(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

impl Registry {
    /// Rank the patterns of the tools that offer `r.capability` (see the module's
    /// documentation). Private tools count only for callers who may read them.
    pub async fn select(&self, caller: &Caller, mut r: SelectRequest) -> Result<Selection> {
        let mut resolved = vec![];
        if let Some(need) = r.need.clone() {
            if !r.capability.is_empty() {
                return Err(Error::invalid(
                    "need",
                    "give a capability or a need, not both",
                ));
            }
            if need.trim().is_empty() || need.chars().count() > 500 {
                return Err(Error::invalid("need", "1 to 500 characters"));
            }
            resolved = self.resolve_need(caller, &need).await?;
            let best = resolved.first().ok_or_else(|| {
                Error::invalid(
                    "need",
                    format!("no capability matches '{need}' (GET /api/v1/capabilities lists them)"),
                )
            })?;
            r.capability = best.capability.clone();
        }
        if r.capability.trim().is_empty() || r.capability.len() > 200 {
            return Err(Error::invalid(
                "capability",
                "name a capability (1 to 200 characters)",
            ));
        }
        let limit = r.limit.unwrap_or(10);
        if !(1..=100).contains(&limit) {
            return Err(Error::invalid("limit", "must be between 1 and 100"));
        }
        for (k, w) in &r.preferences {
            if !PREFERENCES.contains(&k.as_str()) {
                return Err(Error::invalid(
                    format!("preferences.{k}"),
                    format!("not a preference ({})", PREFERENCES.join(", ")),
                ));
            }
            if !(0.0..=1.0).contains(w) {
                return Err(Error::invalid(
                    format!("preferences.{k}"),
                    "must be between 0 and 1",
                ));
            }
        }
        for (k, v) in &r.variables {
            if !v.is_finite() {
                return Err(Error::invalid(
                    format!("variables.{k}"),
                    "must be a finite number",
                ));
            }
        }
        if let Some(subject) = &r.subject {
            if subject.is_empty() || subject.len() > 200 || subject.chars().any(char::is_control) {
                return Err(Error::invalid(
                    "subject",
                    "1 to 200 characters, no control characters",
                ));
            }
        }
        let offers = self.offers(&r.capability).await?;
        let assignments = self.assignments(caller, &r).await?;
        let assigned = |key: &EntryKey| {
            assignments
                .iter()
                .find(|(_, a)| a.tool == *key)
                .map(|(e, a)| (e, a))
        };
        let weights: Vec<(&str, f64)> = if r.preferences.is_empty() {
            PREFERENCES.iter().map(|p| (*p, 1.0)).collect()
        } else {
            PREFERENCES
                .iter()
                .map(|p| (*p, r.preferences.get(*p).copied().unwrap_or(0.0)))
                .collect()
        };
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        let production = r.environment.as_deref() == Some("production");
        let c = &r.constraints;
        let mut candidates: Vec<Light> = Vec::new();
        let mut excluded = Vec::new();
        // The catalog keeps each capability's offers in the order of their tools' keys,
        // so an offer's index orders ties by tool name without comparing strings.
        let mut excluded_order: Vec<usize> = Vec::new();
        for (idx, offer) in offers.iter().enumerate() {
            let key = offer.entry.key();
            // The caller's view: a private tool of someone else is not there. (The catalog
            // is current with the feed, so its copy of the entry is the stored one.)
            if !readable(caller, &offer.entry) {
                continue;
            }
            let entry = &offer.entry;
            let out = |reason: String, pattern: Option<&str>| Excluded {
                tool: key.clone(),
                version: offer.version.clone(),
                pattern: pattern.map(str::to_string),
                reason,
            };
            let unpublished = match entry.status {
                _ if entry.disabled.is_some() => Some(format!(
                    "disabled: {}",
                    entry.disabled.as_ref().map_or("", |d| d.reason.as_str())
                )),
                Status::Published => None,
                Status::Deprecated => Some(match &entry.deprecation {
                    Some(d) => match &d.replacement {
                        Some(rep) => format!("deprecated: {} (use {rep})", d.message),
                        None => format!("deprecated: {}", d.message),
                    },
                    None => "deprecated".to_string(),
                }),
                other => Some(format!("{other}, not published")),
            };
            if let Some(why) = unpublished {
                excluded_order.push(idx);
                excluded.push(out(why, None));
                continue;
            }
            let Some(mut version) = offer.version.clone() else {
                excluded_order.push(idx);
                excluded.push(out(
                    "no selectable version (every one is yanked or held back)".into(),
                    None,
                ));
                continue;
            };
            let test = assigned(&key);
            let mut test_applies = test.is_some();
            // The catalog's patterns, or an A/B test arm's (parsed here, not cached).
            let mut arm_patterns: Option<serde_json::Map<String, Value>> = None;
            if let Some((e, a)) = test {
                if e.subject == ExperimentSubject::Versions && a.arm != version {
                    // The arm's version stands in for the latest, when it still offers
                    // the capability (a yanked arm leaves the latest, outside the test).
                    let arm = self.db.store.get_version(&key, &a.arm).await?;
                    let patterns = arm.as_ref().filter(|v| !v.yanked).and_then(|v| {
                        v.manifest["capabilities"][&r.capability]["patterns"]
                            .as_object()
                            .cloned()
                    });
                    match patterns {
                        Some(p) => {
                            version = a.arm.clone();
                            arm_patterns = Some(p);
                        }
                        None => test_applies = false,
                    }
                }
            }
            for (name, p) in arm_patterns.as_ref().unwrap_or(&offer.patterns) {
                if let Some((e, a)) = test.filter(|(e, _)| {
                    e.subject == ExperimentSubject::Patterns
                        && (*name == e.arm_a || *name == e.arm_b)
                }) {
                    if *name != a.arm {
                        excluded_order.push(idx);
                        excluded.push(Excluded {
                            tool: key.clone(),
                            version: Some(version.clone()),
                            pattern: Some(name.clone()),
                            reason: format!(
                                "A/B test {} chose pattern {} for this subject",
                                e.name, a.arm
                            ),
                        });
                        continue;
                    }
                }
                let experiment = test
                    .filter(|(e, _)| {
                        test_applies
                            && match e.subject {
                                ExperimentSubject::Versions => true,
                                ExperimentSubject::Patterns => *name == e.arm_a || *name == e.arm_b,
                            }
                    })
                    .map(|(_, a)| a.clone());
                let policy = p.get("policy");
                let limit_of = |k: &str| number(policy.and_then(|x| x.get(k)));
                let flag = |k: &str| policy.and_then(|x| x.get(k)).and_then(Value::as_bool);
                let time_limited =
                    c.max_time_ms.is_some() || limit_of("max_execution_time").is_some();
                let cost_limited = c.max_cost.is_some() || limit_of("max_cost").is_some();
                let parsed;
                let (time_est, cost_est) = match (&arm_patterns, offer.estimates.get(name)) {
                    (None, Some(pair)) => pair,
                    _ => {
                        parsed = Estimate::pair(p);
                        &parsed
                    }
                };
                let time_res = time_est.eval(&r.variables);
                let cost_res = cost_est.eval(&r.variables);
                let mut notes = vec![];
                if let Err(e) = &time_res {
                    notes.push(format!("time estimate {e}"));
                }
                if let Err(e) = &cost_res {
                    notes.push(format!("cost estimate {e}"));
                }
                if (time_res.is_err() && time_limited) || (cost_res.is_err() && cost_limited) {
                    let why = format!("{}, which a constraint needs", notes.join("; "));
                    excluded_order.push(idx);
                    excluded.push(out(why, Some(name)));
                    continue;
                }
                let mut time_ms = time_res.ok().flatten();
                let mut calibration = None;
                if r.calibrated {
                    if let Some(t) = time_ms {
                        if let Some((ratio, samples)) =
                            self.observed_ratio(&key, &r.capability, name).await?
                        {
                            calibration = Some(Calibration {
                                ratio,
                                samples,
                                uncalibrated_time_ms: t,
                            });
                            time_ms = Some(t * ratio);
                        }
                    }
                }
                let cost = cost_res.ok().flatten();
                let over = |value: Option<f64>, max: Option<f64>| match (value, max) {
                    (Some(v), Some(m)) if v > m => Some((v, m)),
                    _ => None,
                };
                let reason = over(time_ms, c.max_time_ms)
                    .map(|(t, m)| format!("time {t} ms is over max_time_ms {m}"))
                    .or_else(|| {
                        over(cost, c.max_cost)
                            .map(|(x, m)| format!("cost {x} is over max_cost {m}"))
                    })
                    .or_else(|| {
                        over(cost, limit_of("max_cost")).map(|(x, m)| {
                            format!("cost {x} is over the pattern's own max_cost {m}")
                        })
                    })
                    .or_else(|| {
                        over(time_ms, limit_of("max_execution_time").map(|s| s * 1000.0)).map(
                            |(t, m)| {
                                format!(
                                    "time {t} ms is over the pattern's own max_execution_time {} s",
                                    m / 1000.0
                                )
                            },
                        )
                    })
                    .or_else(|| {
                        (production
                            && c.production_safe_only
                            && flag("production_safe") == Some(false))
                        .then(|| {
                            "not production_safe, and the environment is production".to_string()
                        })
                    })
                    .or_else(|| {
                        (!c.approval_allowed && flag("requires_approval") == Some(true))
                            .then(|| "requires approval, and approval_allowed is false".to_string())
                    });
                if let Some(reason) = reason {
                    excluded_order.push(idx);
                    excluded.push(out(reason, Some(name)));
                    continue;
                }
                let score = score_of(p, &weights, total);
                // The breakdown and missing inputs are made for the ranked few only; an
                // A/B test arm's patterns are not the catalog's, so theirs are made now.
                let details = arm_patterns
                    .is_some()
                    .then(|| details_of(p, &weights, total, &r.variables));
                candidates.push(Light {
                    idx,
                    pattern: name.clone(),
                    version: arm_patterns.is_some().then(|| version.clone()),
                    time_ms,
                    cost,
                    score,
                    notes,
                    calibration,
                    experiment,
                    details,
                });
            }
        }
        // Rank: score, then time, then tool (the catalog's order), then pattern; only the
        // first `limit` are sorted and made whole.
        let better = |a: &Light, b: &Light| {
            b.score
                .total_cmp(&a.score)
                .then(
                    a.time_ms
                        .unwrap_or(f64::MAX)
                        .total_cmp(&b.time_ms.unwrap_or(f64::MAX)),
                )
                .then(a.idx.cmp(&b.idx))
                .then_with(|| a.pattern.cmp(&b.pattern))
        };
        if candidates.len() > limit {
            candidates.select_nth_unstable_by(limit - 1, better);
            candidates.truncate(limit);
        }
        candidates.sort_by(better);
        let candidates: Vec<Candidate> = candidates
            .into_iter()
            .map(|l| {
                let offer = &offers[l.idx];
                let (breakdown, missing_inputs) = l.details.unwrap_or_else(|| {
                    offer
                        .patterns
                        .get(&l.pattern)
                        .map(|p| details_of(p, &weights, total, &r.variables))
                        .unwrap_or_default()
                });
                Candidate {
                    tool: offer.entry.key(),
                    version: l
                        .version
                        .or_else(|| offer.version.clone())
                        .unwrap_or_default(),
                    capability: r.capability.clone(),
                    pattern: l.pattern,
                    time_ms: l.time_ms,
                    cost: l.cost,
                    score: l.score,
                    breakdown,
                    missing_inputs,
                    notes: l.notes,
                    calibration: l.calibration,
                    experiment: l.experiment,
                }
            })
            .collect();
        let mut excluded: Vec<(usize, Excluded)> =
            excluded_order.into_iter().zip(excluded).collect();
        excluded.sort_by(|a, b| (a.0, &a.1.pattern).cmp(&(b.0, &b.1.pattern)));
        let excluded: Vec<Excluded> = excluded.into_iter().map(|(_, e)| e).collect();
        Ok(Selection {
            capability: r.capability,
            candidates,
            excluded,
            experiments: assignments.into_iter().map(|(_, a)| a).collect(),
            resolved,
        })
    }

    /// The capabilities (of tools the caller may see) that match a free-text need, best
    /// first (see [`NeedMatch`]).
    pub async fn resolve_need(&self, caller: &Caller, need: &str) -> Result<Vec<NeedMatch>> {
        let mut analyzer = quiver_search::analysis::english();
        let mut words: Vec<String> = quiver_search::analysis::analyze(&mut analyzer, need)
            .into_iter()
            .map(|t| t.2)
            .collect();
        words.sort();
        words.dedup();
        if words.is_empty() {
            return Ok(vec![]);
        }
        let catalog = self.fresh_catalog().await?;
        // A capability whose tools changed since the catalog was built has its words made
        // here (an update does not make them, so that selection never waits for it).
        let made: BTreeMap<&String, BTreeMap<String, f64>> = catalog
            .by_capability
            .iter()
            .filter(|(name, _)| !catalog.terms.contains_key(*name))
            .map(|(name, offers)| (name, capability_terms(name, offers)))
            .collect();
        let visible: Vec<(&String, &BTreeMap<String, f64>)> = catalog
            .by_capability
            .iter()
            .filter(|(_, offers)| offers.iter().any(|o| readable(caller, &o.entry)))
            .filter_map(|(name, _)| {
                catalog
                    .terms
                    .get(name)
                    .or_else(|| made.get(name))
                    .map(|t| (name, t))
            })
            .collect();
        let n = visible.len() as f64;
        let df = |w: &str| visible.iter().filter(|(_, t)| t.contains_key(w)).count() as f64;
        let idf: BTreeMap<&str, f64> = words
            .iter()
            .map(|w| (w.as_str(), (1.0 + n / df(w).max(1.0)).ln()))
            .collect();
        let mut out: Vec<NeedMatch> = visible
            .into_iter()
            .filter_map(|(name, terms)| {
                let mut score = 0.0;
                let mut matched = vec![];
                for w in &words {
                    if let Some(weight) = terms.get(w) {
                        score += weight * idf[w.as_str()];
                        matched.push(w.clone());
                    }
                }
                (score > 0.0).then(|| NeedMatch {
                    capability: name.clone(),
                    score: score / words.len() as f64,
                    matched,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.capability.cmp(&b.capability))
        });
        out.truncate(NEED_MATCHES);
        Ok(out)
    }

    /// The active A/B tests of the capability that the request's subject takes part in
    /// (none without a subject), each with the arm it assigns.
    async fn assignments(
        &self,
        caller: &Caller,
        r: &SelectRequest,
    ) -> Result<Vec<(Experiment, Assignment)>> {
        let Some(subject) = &r.subject else {
            return Ok(vec![]);
        };
        let active = self
            .db
            .telemetry
            .experiments(&ExperimentFilter {
                tool: None,
                capability: Some(r.capability.clone()),
                status: Some(ExperimentStatus::Active),
            })
            .await?;
        let mut out = Vec::new();
        for e in active {
            if !experiments::enrolls(&e, caller, r.environment.as_deref()) {
                continue;
            }
            let tool = EntryKey::new(Kind::Tool, &e.namespace, &e.tool);
            // A test of a tool the caller may not read is not there for it.
            if self.visible_entry(caller, &tool).await.is_err() {
                continue;
            }
            let a = Assignment {
                experiment: e.name.clone(),
                tool,
                subject: e.subject.as_str().to_string(),
                arm: experiments::assign(&e, subject),
            };
            out.push((e, a));
        }
        Ok(out)
    }

    /// The mean observed actual/estimate of a pattern over the last 30 days, and its
    /// sample count, when there are at least [`CALIBRATION_MIN`] samples.
    async fn observed_ratio(
        &self,
        tool: &EntryKey,
        capability: &str,
        pattern: &str,
    ) -> Result<Option<(f64, u64)>> {
        let now = jiff::Timestamp::now().as_millisecond();
        let rows = self
            .db
            .telemetry
            .rollups(&quiver_store::RollupFilter {
                pattern: Some((
                    tool.namespace.clone(),
                    tool.name.clone(),
                    capability.to_string(),
                    pattern.to_string(),
                )),
                since: now - 30 * 24 * 3_600_000,
                until: now + 3_600_000,
            })
            .await?;
        let (n, sum) = rows.iter().fold((0u64, 0.0), |(n, s), r| {
            (n + r.ratio_count, s + r.ratio_sum)
        });
        Ok((n >= CALIBRATION_MIN && sum > 0.0).then(|| (sum / n as f64, n)))
    }

    /// The catalog, current with the feed: when the feed moved since it was last
    /// brought up to date, the tools its new events touch are read again (or, after a
    /// bulk change of more than [`CATALOG_INCREMENTAL_MAX`] events, the whole catalog is
    /// rebuilt). Requests share the snapshot; an update makes a new one.
    async fn fresh_catalog(&self) -> Result<Arc<Snapshot>> {
        let head = self.db.store.feed_head().await?;
        let mut catalog = self.catalog.lock().await;
        match catalog.built_at {
            Some(at) if at == head => {}
            Some(at) if at < head && head - at <= CATALOG_INCREMENTAL_MAX => {
                let mut touched = BTreeSet::new();
                let mut seen = at;
                while seen < head {
                    let events = self
                        .db
                        .store
                        .feed_since(seen, (head - seen) as usize)
                        .await?;
                    let Some(last) = events.last() else { break };
                    seen = last.seq;
                    touched.extend(events.iter().filter_map(|e| e.entry_id));
                }
                // In place when no request holds the snapshot; a copy otherwise (its
                // maps of offers are shared, not copied).
                self.refresh_tools(Arc::make_mut(&mut catalog.snapshot), touched)
                    .await?;
                catalog.built_at = Some(seen);
            }
            _ => {
                let mut snapshot = Snapshot::default();
                self.build_catalog(&mut snapshot).await?;
                catalog.snapshot = Arc::new(snapshot);
                catalog.built_at = Some(head);
            }
        }
        Ok(catalog.snapshot.clone())
    }

    /// The tools offering `capability`, from the catalog (brought up to date first).
    async fn offers(&self, capability: &str) -> Result<Arc<Vec<Arc<Offer>>>> {
        let catalog = self.fresh_catalog().await?;
        Ok(catalog
            .by_capability
            .get(capability)
            .cloned()
            .unwrap_or_default())
    }

    /// Every capability of the tools the caller may see: name, description, how many
    /// tools and patterns, the tools' platforms.
    pub async fn capabilities(&self, caller: &Caller) -> Result<Vec<CapabilitySummary>> {
        let catalog = self.fresh_catalog().await?;
        Ok(catalog
            .by_capability
            .iter()
            .filter_map(|(name, offers)| {
                let seen: Vec<&Offer> = offers
                    .iter()
                    .map(|o| &**o)
                    .filter(|o| readable(caller, &o.entry))
                    .collect();
                if seen.is_empty() {
                    return None;
                }
                let mut platforms: Vec<String> =
                    seen.iter().filter_map(|o| o.platform.clone()).collect();
                platforms.sort();
                platforms.dedup();
                Some(CapabilitySummary {
                    name: name.clone(),
                    description: seen.iter().find_map(|o| o.description.clone()),
                    tools: seen.len() as u64,
                    patterns: seen.iter().map(|o| o.patterns.len() as u64).sum(),
                    platforms,
                })
            })
            .collect())
    }

    /// One capability: its tools (that the caller may see) and their patterns. Not
    /// found when no such tool is visible.
    pub async fn capability(&self, caller: &Caller, name: &str) -> Result<CapabilityDetail> {
        let all = self.offers(name).await?;
        let offers: Vec<&Offer> = all
            .iter()
            .map(|o| &**o)
            .filter(|o| readable(caller, &o.entry))
            .collect();
        if offers.is_empty() {
            return Err(Error::not_found(format!("capability {name}")));
        }
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let names = |v: Option<&Value>, key: Option<&str>| -> Vec<String> {
            v.and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|x| match key {
                    Some(k) => x.get(k).and_then(Value::as_str),
                    None => x.as_str(),
                })
                .map(str::to_string)
                .collect()
        };
        Ok(CapabilityDetail {
            name: name.to_string(),
            description: offers.iter().find_map(|o| o.description.clone()),
            tools: offers
                .into_iter()
                .map(|o| CapabilityTool {
                    tool: o.entry.key(),
                    version: o.version.clone(),
                    status: o.entry.status,
                    platform: o.platform.clone(),
                    patterns: o
                        .patterns
                        .iter()
                        .map(|(pname, p)| PatternSummary {
                            name: pname.clone(),
                            description: text(p.get("description")),
                            time_estimate_ms: p
                                .get("time_estimate_ms")
                                .cloned()
                                .unwrap_or(Value::Null),
                            cost_estimate: p.get("cost_estimate").cloned().unwrap_or(Value::Null),
                            typical_use_cases: names(p.get("typical_use_cases"), None),
                            required_inputs: names(p.get("required_inputs"), Some("name")),
                        })
                        .collect(),
                })
                .collect(),
        })
    }

    /// A tool's offers, from its latest version (or, for a tool without one, its newest
    /// version: so that it can be listed as excluded). `latest`: the latest version when
    /// the caller has read it already.
    async fn offers_of(
        &self,
        entry: &quiver_model::Entry,
        latest: Option<quiver_model::Version>,
    ) -> Result<Vec<(String, Offer)>> {
        let store = &self.db.store;
        let key = entry.key();
        let (v, selectable) = match (&entry.latest_version, latest) {
            (Some(_), Some(v)) => (Some(v), true),
            (Some(v), None) => (store.get_version(&key, v).await?, true),
            (None, _) => {
                let newest = store.list_versions_page(&key, None, 1, true).await?;
                (newest.items.into_iter().next(), false)
            }
        };
        let Some(v) = v else { return Ok(vec![]) };
        let Some(caps) = v.manifest.get("capabilities").and_then(Value::as_object) else {
            return Ok(vec![]);
        };
        let platform = v
            .manifest
            .get("platform")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(caps
            .iter()
            .filter_map(|(cap, c)| {
                let patterns = c.get("patterns").and_then(Value::as_object)?;
                let offer = Offer {
                    entry: entry.clone(),
                    version: selectable.then(|| v.version.clone()),
                    description: c
                        .get("description")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    platform: platform.clone(),
                    estimates: patterns
                        .iter()
                        .map(|(name, p)| (name.clone(), Estimate::pair(p)))
                        .collect(),
                    patterns: patterns.clone(),
                };
                Some((cap.clone(), offer))
            })
            .collect())
    }

    /// Every tool's offers, into an empty snapshot.
    async fn build_catalog(&self, snap: &mut Snapshot) -> Result<()> {
        let mut by_capability: BTreeMap<String, Vec<Arc<Offer>>> = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let filter = EntryFilter {
                kinds: vec![Kind::Tool],
                ..EntryFilter::default()
            };
            let page = self
                .db
                .store
                .list_entries(&filter, cursor.as_deref(), 500)
                .await?;
            // The page's latest versions in one read.
            let ids: Vec<i64> = page.items.iter().map(|e| e.id).collect();
            let mut latest: HashMap<i64, quiver_model::Version> = self
                .db
                .store
                .latest_versions(&ids)
                .await?
                .into_iter()
                .collect();
            for entry in page.items {
                let v = latest.remove(&entry.id);
                for (cap, offer) in self.offers_of(&entry, v).await? {
                    snap.by_entry.entry(entry.id).or_default().push(cap.clone());
                    by_capability.entry(cap).or_default().push(Arc::new(offer));
                }
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        for (cap, mut offers) in by_capability {
            offers.sort_by_cached_key(|o| o.entry.key().to_string());
            snap.terms
                .insert(cap.clone(), capability_terms(&cap, &offers));
            snap.by_capability.insert(cap, Arc::new(offers));
        }
        Ok(())
    }

    /// Read the entries `ids` again (those the feed says changed) and replace their
    /// offers in `snap`: a tool that changed, a new one, one that lost its capabilities,
    /// or an entry that is not a tool (nothing to do).
    async fn refresh_tools(&self, snap: &mut Snapshot, ids: BTreeSet<i64>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut touched: BTreeSet<String> = BTreeSet::new();
        for id in &ids {
            for cap in snap.by_entry.remove(id).unwrap_or_default() {
                if let Some(offers) = snap.by_capability.get_mut(&cap) {
                    Arc::make_mut(offers).retain(|o| o.entry.id != *id);
                }
                touched.insert(cap);
            }
        }
        let ids: Vec<i64> = ids.into_iter().collect();
        for chunk in ids.chunks(500) {
            let mut latest: HashMap<i64, quiver_model::Version> = self
                .db
                .store
                .latest_versions(chunk)
                .await?
                .into_iter()
                .collect();
            for entry in self.db.store.get_entries_by_id(chunk).await? {
                if entry.kind != Kind::Tool {
                    continue;
                }
                let v = latest.remove(&entry.id);
                for (cap, offer) in self.offers_of(&entry, v).await? {
                    snap.by_entry.entry(entry.id).or_default().push(cap.clone());
                    let offers = snap.by_capability.entry(cap.clone()).or_default();
                    Arc::make_mut(offers).push(Arc::new(offer));
                    touched.insert(cap);
                }
            }
        }
        for cap in touched {
            match snap.by_capability.get_mut(&cap) {
                Some(offers) if !offers.is_empty() => {
                    Arc::make_mut(offers).sort_by_cached_key(|o| o.entry.key().to_string());
                    // Its words are made again when a need asks (resolve_need).
                    snap.terms.remove(&cap);
                }
                _ => {
                    snap.by_capability.remove(&cap);
                    snap.terms.remove(&cap);
                }
            }
        }
        Ok(())
    }
}
