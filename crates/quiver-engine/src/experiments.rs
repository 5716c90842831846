//! A/B tests: two versions of a tool, or two patterns of one of its capabilities, compared
//! on real executions.
//!
//! A maintainer of the tool's namespace creates a test (`draft`), starts it (`active`),
//! and completes it with a winner or cancels it; each change is in the audit log, in the
//! write's transaction. While a test is active, [`Registry::select`] assigns every
//! *subject* (a key the caller passes: a user, a session, a job) to one arm by a stable
//! hash of the test's name and the subject, so the same subject always gets the same arm
//! and a split of 0.3 sends 30% of subjects to arm `b`. The selection says which test and
//! arm chose each candidate; telemetry that names the test is attributed to the arm (the
//! event's version or pattern says which) and adds, in the ingest's transaction, to that
//! arm's running figures.
//!
//! Results compare the arms: success rates by a two-proportion z-test, mean times by
//! Welch's t-test, both two-sided at [`ALPHA`]. A winner is declared only when each arm has
//! at least `min_samples` executions and a test is significant: the arm with the higher
//! success rate when success rates differ, else the faster arm when times differ. With
//! `auto_complete`, the ingest that makes a winner declarable completes the test.

use std::collections::BTreeMap;

use jiff::Timestamp;
use quiver_auth::{Action, Target};
use quiver_model::{EntryKey, Error, Kind, Result, Visibility};
use quiver_store::telemetry::{
    ArmStats, Experiment, ExperimentChange, ExperimentFilter, ExperimentStatus, ExperimentSubject,
};
use quiver_store::AuditDiff;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

use crate::audit::Event;
use crate::telemetry::{text, tool_key};
use crate::{Caller, Registry};

/// The significance level of both tests.
pub const ALPHA: f64 = 0.05;
/// Executions per arm before a winner can be declared, unless the test says otherwise.
pub const DEFAULT_MIN_SAMPLES: u64 = 100;

/// A test to create.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewExperiment {
    /// Unique on the registry: 1 to 100 of `a-z 0-9 - _ .`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The tool, `namespace/name`.
    pub tool: String,
    pub capability: String,
    /// `versions` (the arms are two versions of the tool) or `patterns` (two patterns of
    /// the capability in the tool's latest version).
    pub subject: ExperimentSubject,
    /// The control.
    pub arm_a: String,
    /// The challenger.
    pub arm_b: String,
    /// The share of subjects assigned to arm `b` (between 0 and 1, exclusive; default 0.5).
    #[serde(default)]
    pub split: Option<f64>,
    /// Only selections in this environment take part (any when absent).
    #[serde(default)]
    pub environment: Option<String>,
    /// Only these users take part (anyone when empty).
    #[serde(default)]
    pub callers: Vec<String>,
    /// Executions each arm needs before a winner can be declared (10 to 1,000,000;
    /// default 100).
    #[serde(default)]
    pub min_samples: Option<u64>,
    /// Complete the test by itself when a winner can be declared.
    #[serde(default)]
    pub auto_complete: bool,
    /// Start it at once (otherwise it is a `draft`).
    #[serde(default)]
    pub start: bool,
}

/// A change of a test's state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "action", deny_unknown_fields)]
pub enum ExperimentAction {
    /// `draft` → `active`.
    Start,
    /// `active` → `completed`, with the given winner (an arm) or, when none is given, the
    /// winner the results declare (none if they declare none).
    Complete {
        #[serde(default)]
        winner: Option<String>,
    },
    /// `draft` or `active` → `cancelled`.
    Cancel,
}

/// One arm's figures.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ArmResult {
    pub arm: String,
    /// The share of subjects it gets.
    pub share: f64,
    pub count: u64,
    pub successes: u64,
    pub success_rate: Option<f64>,
    pub time_mean_ms: Option<f64>,
    pub time_sd_ms: Option<f64>,
    pub time_p50_ms: Option<f64>,
    pub time_p90_ms: Option<f64>,
    pub time_p99_ms: Option<f64>,
    pub cost_mean: Option<f64>,
    pub cost_p50: Option<f64>,
    pub cost_p90: Option<f64>,
}

/// A significance test between the arms.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Significance {
    /// `two-proportion z-test` or `Welch's t-test`.
    pub test: String,
    pub statistic: f64,
    /// Two-sided.
    pub p_value: f64,
    pub significant: bool,
    /// The better arm by this measure (higher success rate, lower mean time).
    pub better: String,
}

/// A test and how its arms compare.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ExperimentResults {
    pub experiment: Experiment,
    /// Arm `a`, then arm `b`.
    pub arms: Vec<ArmResult>,
    pub alpha: f64,
    /// Whether each arm has at least `min_samples` executions.
    pub ready: bool,
    pub success: Option<Significance>,
    pub time: Option<Significance>,
    /// The arm the results declare the winner (only when `ready`).
    pub winner: Option<String>,
    /// Why there is a winner, or what is missing for one.
    pub verdict: String,
}

/// The arm a subject is in: a stable hash of the test's name and the subject, as a
/// fraction of 2^64, below `split` → `b`.
pub fn assign(e: &Experiment, subject: &str) -> String {
    let digest = Sha256::new()
        .chain_update(e.name.as_bytes())
        .chain_update([0u8])
        .chain_update(subject.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let fraction = u64::from_be_bytes(first) as f64 / 2f64.powi(64);
    if fraction < e.split {
        e.arm_b.clone()
    } else {
        e.arm_a.clone()
    }
}

/// Whether a selection by `caller` in `environment` takes part in `e`.
pub fn enrolls(e: &Experiment, caller: &Caller, environment: Option<&str>) -> bool {
    let env_ok = e.environment.is_none() || e.environment.as_deref() == environment;
    let caller_ok = e.callers.is_empty()
        || caller
            .account()
            .is_some_and(|a| e.callers.iter().any(|c| c == &a.name));
    e.status == ExperimentStatus::Active && env_ok && caller_ok
}

fn mean_sd(n: u64, sum: f64, sumsq: f64) -> (Option<f64>, Option<f64>) {
    if n == 0 {
        return (None, None);
    }
    let mean = sum / n as f64;
    let sd = (n > 1).then(|| {
        ((sumsq - n as f64 * mean * mean) / (n as f64 - 1.0))
            .max(0.0)
            .sqrt()
    });
    (Some(mean), sd)
}

fn arm_result(arm: &str, share: f64, s: Option<&ArmStats>) -> ArmResult {
    let empty = ArmStats::default();
    let s = s.unwrap_or(&empty);
    let (time_mean_ms, time_sd_ms) = mean_sd(s.count, s.time_sum, s.time_sumsq);
    ArmResult {
        arm: arm.to_string(),
        share,
        count: s.count,
        successes: s.successes,
        success_rate: (s.count > 0).then(|| s.successes as f64 / s.count as f64),
        time_mean_ms,
        time_sd_ms,
        time_p50_ms: s.time_sketch.quantile(0.5),
        time_p90_ms: s.time_sketch.quantile(0.9),
        time_p99_ms: s.time_sketch.quantile(0.99),
        cost_mean: (s.cost_count > 0).then(|| s.cost_sum / s.cost_count as f64),
        cost_p50: s.cost_sketch.quantile(0.5),
        cost_p90: s.cost_sketch.quantile(0.9),
    }
}

/// Two-sided p-value of a standard normal statistic.
fn normal_p(z: f64) -> f64 {
    let n = Normal::standard();
    (2.0 * (1.0 - n.cdf(z.abs()))).clamp(0.0, 1.0)
}

/// The two-proportion z-test of the arms' success rates (`None` without executions in
/// both, or when neither arm ever failed or ever succeeded: nothing to tell apart).
pub fn success_test(a: &ArmResult, b: &ArmResult) -> Option<Significance> {
    if a.count == 0 || b.count == 0 {
        return None;
    }
    let (n1, n2) = (a.count as f64, b.count as f64);
    let (p1, p2) = (a.successes as f64 / n1, b.successes as f64 / n2);
    let pooled = (a.successes + b.successes) as f64 / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se <= 0.0 || !se.is_finite() {
        return None;
    }
    let z = (p2 - p1) / se;
    let p_value = normal_p(z);
    Some(Significance {
        test: "two-proportion z-test".into(),
        statistic: z,
        p_value,
        significant: p_value < ALPHA,
        better: if p2 > p1 { &b.arm } else { &a.arm }.clone(),
    })
}

/// Welch's t-test of the arms' mean times (`None` with fewer than two executions in an
/// arm, or no variance in either).
pub fn time_test(a: &ArmResult, b: &ArmResult) -> Option<Significance> {
    let (m1, s1, m2, s2) = (
        a.time_mean_ms?,
        a.time_sd_ms?,
        b.time_mean_ms?,
        b.time_sd_ms?,
    );
    let (n1, n2) = (a.count as f64, b.count as f64);
    let (v1, v2) = (s1 * s1 / n1, s2 * s2 / n2);
    let se = (v1 + v2).sqrt();
    if se <= 0.0 || !se.is_finite() {
        return None;
    }
    let t = (m2 - m1) / se;
    // Welch–Satterthwaite degrees of freedom.
    let df = (v1 + v2).powi(2) / (v1 * v1 / (n1 - 1.0) + v2 * v2 / (n2 - 1.0));
    let p_value = match StudentsT::new(0.0, 1.0, df.max(1.0)) {
        Ok(dist) => (2.0 * (1.0 - dist.cdf(t.abs()))).clamp(0.0, 1.0),
        Err(_) => normal_p(t),
    };
    Some(Significance {
        test: "Welch's t-test".into(),
        statistic: t,
        p_value,
        significant: p_value < ALPHA,
        better: if m2 < m1 { &b.arm } else { &a.arm }.clone(),
    })
}

/// The results of `e` from its arms' figures (see the module's documentation).
pub fn results(e: Experiment, stats: &[ArmStats]) -> ExperimentResults {
    let of = |arm: &str| stats.iter().find(|s| s.arm == arm);
    let a = arm_result(&e.arm_a, 1.0 - e.split, of(&e.arm_a));
    let b = arm_result(&e.arm_b, e.split, of(&e.arm_b));
    let ready = a.count >= e.min_samples && b.count >= e.min_samples;
    let success = success_test(&a, &b);
    let time = time_test(&a, &b);
    let (winner, verdict) = if !ready {
        (
            None,
            format!(
                "not yet: each arm needs {} executions ({} has {}, {} has {})",
                e.min_samples, a.arm, a.count, b.arm, b.count
            ),
        )
    } else if let Some(s) = success.as_ref().filter(|s| s.significant) {
        (
            Some(s.better.clone()),
            format!(
                "{} succeeds more often (p = {:.4} < {ALPHA})",
                s.better, s.p_value
            ),
        )
    } else if let Some(t) = time.as_ref().filter(|t| t.significant) {
        (
            Some(t.better.clone()),
            format!(
                "{} is faster at equal success (p = {:.4} < {ALPHA})",
                t.better, t.p_value
            ),
        )
    } else {
        (
            None,
            "no significant difference in success rate or time yet".to_string(),
        )
    };
    ExperimentResults {
        experiment: e,
        arms: vec![a, b],
        alpha: ALPHA,
        ready,
        success,
        time,
        winner,
        verdict,
    }
}

fn target(e: &Experiment) -> String {
    format!("A/B test {}", e.name)
}

impl Registry {
    /// Create an A/B test (maintainers of the tool's namespace). The arms must exist: two
    /// unyanked versions of the tool with the capability, or two patterns of the
    /// capability in its latest version.
    pub async fn create_experiment(
        &self,
        caller: &Caller,
        new: NewExperiment,
    ) -> Result<Experiment> {
        let name_ok = !new.name.is_empty()
            && new.name.len() <= 100
            && new
                .name
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_.".contains(&c));
        if !name_ok {
            return Err(Error::invalid(
                "name",
                "1 to 100 characters of a-z, 0-9, '-', '_' and '.'",
            ));
        }
        if new.description.chars().count() > 2_000 {
            return Err(Error::invalid("description", "at most 2000 characters"));
        }
        text("capability", &new.capability, 200)?;
        text("arm_a", &new.arm_a, 200)?;
        text("arm_b", &new.arm_b, 200)?;
        if new.arm_a == new.arm_b {
            return Err(Error::invalid("arm_b", "must differ from arm_a"));
        }
        let split = new.split.unwrap_or(0.5);
        if !(split.is_finite() && split > 0.0 && split < 1.0) {
            return Err(Error::invalid(
                "split",
                "the share of subjects in arm b: between 0 and 1, exclusive",
            ));
        }
        if let Some(env) = &new.environment {
            text("environment", env, 100)?;
        }
        if new.callers.len() > 1_000 {
            return Err(Error::invalid("callers", "at most 1000 users"));
        }
        for (i, c) in new.callers.iter().enumerate() {
            text(&format!("callers[{i}]"), c, 100)?;
        }
        let min_samples = new.min_samples.unwrap_or(DEFAULT_MIN_SAMPLES);
        if !(10..=1_000_000).contains(&min_samples) {
            return Err(Error::invalid("min_samples", "between 10 and 1000000"));
        }
        let key = tool_key("tool", &new.tool)?;
        let entry = self.visible_entry(caller, &key).await?;
        self.require(
            caller,
            Action::Publish,
            &Target::entry(&entry.namespace, &entry.name, entry.visibility),
            &key,
        )
        .await?;
        let has = |manifest: &Value, pattern: Option<&str>| {
            let cap = &manifest["capabilities"][&new.capability];
            match pattern {
                Some(p) => cap["patterns"][p].is_object(),
                None => cap["patterns"].is_object(),
            }
        };
        match new.subject {
            ExperimentSubject::Versions => {
                for (field, v) in [("arm_a", &new.arm_a), ("arm_b", &new.arm_b)] {
                    let version = self.db.store.get_version(&key, v).await?.ok_or_else(|| {
                        Error::invalid(field, format!("{key} has no version {v}"))
                    })?;
                    if version.yanked {
                        return Err(Error::invalid(field, format!("{key}@{v} is yanked")));
                    }
                    if !has(&version.manifest, None) {
                        return Err(Error::invalid(
                            field,
                            format!("{key}@{v} has no capability '{}'", new.capability),
                        ));
                    }
                }
            }
            ExperimentSubject::Patterns => {
                let latest = entry.latest_version.clone().ok_or_else(|| {
                    Error::invalid("tool", format!("{key} has no selectable version"))
                })?;
                let manifest = self
                    .db
                    .store
                    .get_version(&key, &latest)
                    .await?
                    .map(|v| v.manifest)
                    .unwrap_or(Value::Null);
                for (field, p) in [("arm_a", &new.arm_a), ("arm_b", &new.arm_b)] {
                    if !has(&manifest, Some(p)) {
                        return Err(Error::invalid(
                            field,
                            format!(
                                "{key}@{latest} has no pattern '{p}' of capability '{}'",
                                new.capability
                            ),
                        ));
                    }
                }
            }
        }
        if new.start {
            self.only_active_test(&key, &new.capability).await?;
        }
        let now = Timestamp::now();
        let e = Experiment {
            name: new.name,
            description: new.description,
            namespace: key.namespace.clone(),
            tool: key.name.clone(),
            capability: new.capability,
            subject: new.subject,
            arm_a: new.arm_a,
            arm_b: new.arm_b,
            split,
            environment: new.environment,
            callers: new.callers,
            status: if new.start {
                ExperimentStatus::Active
            } else {
                ExperimentStatus::Draft
            },
            min_samples,
            auto_complete: new.auto_complete,
            winner: None,
            created_by: caller.actor(),
            created_at: now,
            updated_at: now,
            completed_at: None,
        };
        let audit = self
            .draft(
                caller,
                Event {
                    action: "experiment.create",
                    namespace: Some(&key.namespace),
                    target: target(&e),
                    denied: None,
                    reason: None,
                    diff: None,
                },
                AuditDiff::Created,
            )
            .await;
        self.db.telemetry.create_experiment(e, audit).await
    }

    /// A conflict when another test of the tool's capability is active: a subject is in
    /// one test at a time.
    async fn only_active_test(&self, key: &EntryKey, capability: &str) -> Result<()> {
        let active = self
            .db
            .telemetry
            .experiments(&ExperimentFilter {
                tool: Some((key.namespace.clone(), key.name.clone())),
                capability: Some(capability.to_string()),
                status: Some(ExperimentStatus::Active),
            })
            .await?;
        match active.first() {
            Some(other) => Err(Error::conflict(
                "status",
                format!(
                    "A/B test {} of {key}'s {capability} is active: complete or cancel it first",
                    other.name
                ),
            )),
            None => Ok(()),
        }
    }

    /// A test, if the caller may read its tool (the same not-found otherwise).
    async fn visible_experiment(&self, caller: &Caller, name: &str) -> Result<Experiment> {
        let missing = || Error::not_found(format!("A/B test {name}"));
        let e = self
            .db
            .telemetry
            .experiment(name)
            .await?
            .ok_or_else(missing)?;
        let key = EntryKey::new(Kind::Tool, &e.namespace, &e.tool);
        match self.visible_entry(caller, &key).await {
            Ok(_) => Ok(e),
            Err(err) if err.code == quiver_model::ErrorCode::NotFound => Err(missing()),
            Err(err) => Err(err),
        }
    }

    /// The tests of the tools the caller may read, by name.
    pub async fn experiments(
        &self,
        caller: &Caller,
        filter: ExperimentFilter,
    ) -> Result<Vec<Experiment>> {
        let all = self.db.telemetry.experiments(&filter).await?;
        let mut seen: BTreeMap<(String, String), bool> = BTreeMap::new();
        let mut out = Vec::new();
        for e in all {
            let k = (e.namespace.clone(), e.tool.clone());
            let visible = match seen.get(&k) {
                Some(v) => *v,
                None => {
                    let key = EntryKey::new(Kind::Tool, &e.namespace, &e.tool);
                    let v = self.visible_entry(caller, &key).await.is_ok();
                    seen.insert(k, v);
                    v
                }
            };
            if visible {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// A test's results (see the module's documentation).
    pub async fn experiment_results(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<ExperimentResults> {
        let e = self.visible_experiment(caller, name).await?;
        let stats = self.db.telemetry.arm_stats(name).await?;
        Ok(results(e, &stats))
    }

    /// Start, complete or cancel a test (maintainers of the tool's namespace).
    pub async fn change_experiment(
        &self,
        caller: &Caller,
        name: &str,
        action: ExperimentAction,
    ) -> Result<Experiment> {
        let e = self.visible_experiment(caller, name).await?;
        let key = EntryKey::new(Kind::Tool, &e.namespace, &e.tool);
        self.require(
            caller,
            Action::Publish,
            &Target::entry(&e.namespace, &e.tool, Visibility::Public),
            &key,
        )
        .await?;
        let (verb, change, reason) = match action {
            ExperimentAction::Start => {
                self.only_active_test(&key, &e.capability).await?;
                (
                    "experiment.start",
                    (
                        vec![ExperimentStatus::Draft],
                        ExperimentStatus::Active,
                        None,
                    ),
                    None,
                )
            }
            ExperimentAction::Complete { winner } => {
                let (winner, reason) = match winner {
                    Some(w) if w == e.arm_a || w == e.arm_b => (Some(w), None),
                    Some(w) => {
                        return Err(Error::invalid(
                            "winner",
                            format!("'{w}' is not an arm ({} or {})", e.arm_a, e.arm_b),
                        ))
                    }
                    None => {
                        let r = results(e.clone(), &self.db.telemetry.arm_stats(name).await?);
                        (r.winner, Some(r.verdict))
                    }
                };
                (
                    "experiment.complete",
                    (
                        vec![ExperimentStatus::Active],
                        ExperimentStatus::Completed,
                        winner,
                    ),
                    reason,
                )
            }
            ExperimentAction::Cancel => (
                "experiment.cancel",
                (
                    vec![ExperimentStatus::Draft, ExperimentStatus::Active],
                    ExperimentStatus::Cancelled,
                    None,
                ),
                None,
            ),
        };
        let audit = self
            .draft(
                caller,
                Event {
                    action: verb,
                    namespace: Some(&e.namespace),
                    target: target(&e),
                    denied: None,
                    reason,
                    diff: None,
                },
                AuditDiff::Stored,
            )
            .await;
        let (from, to, winner) = change;
        self.db
            .telemetry
            .change_experiment(
                name,
                ExperimentChange {
                    from,
                    to,
                    winner,
                    at: Timestamp::now(),
                },
                audit,
            )
            .await
    }

    /// Complete the `auto_complete` tests among `names` whose results declare a winner
    /// (after an ingest that added to them). A test another request completed meanwhile
    /// is left as it is.
    pub(crate) async fn auto_complete(&self, caller: &Caller, names: &[String]) -> Result<()> {
        for name in names {
            let Some(e) = self.db.telemetry.experiment(name).await? else {
                continue;
            };
            if !e.auto_complete || e.status != ExperimentStatus::Active {
                continue;
            }
            let r = results(e.clone(), &self.db.telemetry.arm_stats(name).await?);
            let Some(winner) = r.winner else { continue };
            let audit = self
                .draft(
                    caller,
                    Event {
                        action: "experiment.complete",
                        namespace: Some(&e.namespace),
                        target: target(&e),
                        denied: None,
                        reason: Some(format!("auto_complete: {}", r.verdict)),
                        diff: None,
                    },
                    AuditDiff::Stored,
                )
                .await;
            let change = ExperimentChange {
                from: vec![ExperimentStatus::Active],
                to: ExperimentStatus::Completed,
                winner: Some(winner),
                at: Timestamp::now(),
            };
            match self
                .db
                .telemetry
                .change_experiment(name, change, audit)
                .await
            {
                Ok(_) => {}
                Err(err) if err.code == quiver_model::ErrorCode::Conflict => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(split: f64) -> Experiment {
        let now = Timestamp::now();
        Experiment {
            name: "t".into(),
            description: String::new(),
            namespace: "ops".into(),
            tool: "tcpdump".into(),
            capability: "packet_capture".into(),
            subject: ExperimentSubject::Patterns,
            arm_a: "a".into(),
            arm_b: "b".into(),
            split,
            environment: None,
            callers: vec![],
            status: ExperimentStatus::Active,
            min_samples: 100,
            auto_complete: false,
            winner: None,
            created_by: "x".into(),
            created_at: now,
            updated_at: now,
            completed_at: None,
        }
    }

    #[test]
    fn assignment_is_stable_and_follows_the_split() {
        let e = experiment(0.3);
        let n = 10_000;
        let b = (0..n)
            .filter(|i| assign(&e, &format!("user-{i}")) == "b")
            .count();
        let share = b as f64 / n as f64;
        assert!((0.28..=0.32).contains(&share), "{share}");
        for i in 0..100 {
            let s = format!("session-{i}");
            assert_eq!(assign(&e, &s), assign(&e, &s));
        }
    }

    fn stats(arm: &str, n: u64, ok: u64, times: impl Iterator<Item = f64>) -> ArmStats {
        let mut s = ArmStats {
            arm: arm.into(),
            count: n,
            successes: ok,
            ..ArmStats::default()
        };
        for t in times {
            s.time_sum += t;
            s.time_sumsq += t * t;
            s.time_sketch.add(t);
        }
        s
    }

    #[test]
    fn significance_matches_hand_computed_values() {
        // 2-proportion: 80/100 vs 90/100 → pooled 0.85, se = sqrt(.85*.15*.02) = 0.050498,
        // z = 0.1 / 0.050498 = 1.9803, p = 0.0477.
        let a = arm_result("a", 0.5, Some(&stats("a", 100, 80, std::iter::empty())));
        let b = arm_result("b", 0.5, Some(&stats("b", 100, 90, std::iter::empty())));
        let s = success_test(&a, &b).unwrap();
        assert!((s.statistic - 1.9803).abs() < 1e-3, "{s:?}");
        assert!((s.p_value - 0.0477).abs() < 1e-3, "{s:?}");
        assert_eq!(s.better, "b");
        // Welch: a = 1..=10 (mean 5.5, var 9.1667), b = 3..=12 (mean 7.5): t = 2 /
        // sqrt(2 * 0.91667) = 1.4771, df = 18, p = 0.1569.
        let a = arm_result("a", 0.5, Some(&stats("a", 10, 10, (1..=10).map(f64::from))));
        let b = arm_result("b", 0.5, Some(&stats("b", 10, 10, (3..=12).map(f64::from))));
        let t = time_test(&a, &b).unwrap();
        assert!((t.statistic - 1.4771).abs() < 1e-3, "{t:?}");
        assert!((t.p_value - 0.1569).abs() < 1e-3, "{t:?}");
        assert_eq!(t.better, "a");
        assert!(!t.significant);
    }
}
