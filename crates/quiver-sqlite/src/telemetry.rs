//! [`TelemetryStore`] on SQLite: events and their hourly roll-ups (migration
//! `0016_telemetry`), and A/B tests with their arms' figures (`0017_experiments`), written
//! in the single writer's transaction.

use std::collections::BTreeMap;

use async_trait::async_trait;
use quiver_model::{Context, Error, Result};
use quiver_store::telemetry::{
    decode_buckets, decode_experiment, encode_buckets, ArmStats, Execution, Experiment,
    ExperimentChange, ExperimentFilter, ExperimentStatus, ExperimentSubject, FitSums,
    IngestOutcome, Rollup, RollupFilter, RollupKey, Sketch, TelemetryStore,
};
use quiver_store::Audit;
use rusqlite::{params, OptionalExtension, Transaction};

use super::SqliteStore;
use crate::accounts::{commit_audit, commit_audit_change};

const ROLLUP_COLS: &str = "namespace, name, capability, pattern, version, environment, hour, \
     count, successes, time_sum, time_min, time_max, cost_count, cost_sum, ratio_count, \
     ratio_sum, ratio_buckets, time_sketch, cost_sketch, fit";

fn rollup_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Rollup> {
    let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
    Ok(Rollup {
        namespace: r.get(0)?,
        name: r.get(1)?,
        capability: r.get(2)?,
        pattern: r.get(3)?,
        version: r.get(4)?,
        environment: r.get(5)?,
        hour: r.get(6)?,
        count: n(7)?,
        successes: n(8)?,
        time_sum: r.get(9)?,
        time_min: r.get(10)?,
        time_max: r.get(11)?,
        cost_count: n(12)?,
        cost_sum: r.get(13)?,
        ratio_count: n(14)?,
        ratio_sum: r.get(15)?,
        ratio_buckets: decode_buckets(&r.get::<_, String>(16)?),
        time_sketch: Sketch::decode(&r.get::<_, String>(17)?),
        cost_sketch: Sketch::decode(&r.get::<_, String>(18)?),
        fit: FitSums::decode(&r.get::<_, String>(19)?),
    })
}

fn read_rollup(tx: &Transaction<'_>, k: &RollupKey) -> Result<Option<Rollup>> {
    tx.prepare_cached(&format!(
        "SELECT {ROLLUP_COLS} FROM telemetry_rollups WHERE namespace = ?1 AND name = ?2 \
         AND capability = ?3 AND pattern = ?4 AND version = ?5 AND environment = ?6 AND hour = ?7"
    ))
    .and_then(|mut s| {
        s.query_row(params![k.0, k.1, k.2, k.3, k.4, k.5, k.6], rollup_from_row)
            .optional()
    })
    .context("reading a telemetry roll-up")
}

fn write_rollup(tx: &Transaction<'_>, r: &Rollup) -> Result<()> {
    tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO telemetry_rollups ({ROLLUP_COLS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
         ?18, ?19, ?20)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            r.namespace,
            r.name,
            r.capability,
            r.pattern,
            r.version,
            r.environment,
            r.hour,
            r.count as i64,
            r.successes as i64,
            r.time_sum,
            r.time_min,
            r.time_max,
            r.cost_count as i64,
            r.cost_sum,
            r.ratio_count as i64,
            r.ratio_sum,
            encode_buckets(&r.ratio_buckets),
            r.time_sketch.encode(),
            r.cost_sketch.encode(),
            r.fit.encode()
        ])
    })
    .context("writing a telemetry roll-up")?;
    Ok(())
}

#[async_trait]
impl TelemetryStore for SqliteStore {
    async fn ingest(&self, events: Vec<Execution>) -> Result<IngestOutcome> {
        self.write(move |tx| {
            let mut out = IngestOutcome::default();
            let mut fresh: BTreeMap<RollupKey, Vec<&Execution>> = BTreeMap::new();
            let mut arms: BTreeMap<(String, String), Vec<&Execution>> = BTreeMap::new();
            for e in &events {
                let n = tx
                    .prepare_cached(
                        "INSERT INTO telemetry_events (event_key, namespace, name, version, \
                         capability, pattern, environment, execution_id, at, time_ms, cost, \
                         estimate_ms, success, error, variables, experiment, arm) VALUES (?1, \
                         ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
                         ON CONFLICT (event_key) DO NOTHING",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            e.event_key,
                            e.namespace,
                            e.name,
                            e.version,
                            e.capability,
                            e.pattern,
                            e.environment,
                            e.execution_id,
                            e.at.as_millisecond(),
                            e.time_ms,
                            e.cost,
                            e.estimate_ms,
                            e.success,
                            e.error,
                            e.variables.to_string(),
                            e.experiment,
                            e.arm
                        ])
                    })
                    .context("recording a telemetry event")?;
                if n == 1 {
                    out.accepted += 1;
                    fresh.entry(e.rollup_key()).or_default().push(e);
                    if let (Some(x), Some(arm)) = (&e.experiment, &e.arm) {
                        arms.entry((x.clone(), arm.clone())).or_default().push(e);
                    }
                } else {
                    out.duplicates += 1;
                }
            }
            for (key, evs) in fresh {
                let mut r = read_rollup(tx, &key)?.unwrap_or_else(|| Rollup::empty(&key));
                for e in evs {
                    r.add(e);
                }
                write_rollup(tx, &r)?;
            }
            for ((x, arm), evs) in arms {
                let mut a = read_arms(tx, &x, Some(&arm))?
                    .pop()
                    .unwrap_or_else(|| ArmStats {
                        arm: arm.clone(),
                        ..ArmStats::default()
                    });
                for e in evs {
                    a.add(e);
                }
                write_arm(tx, &x, &a)?;
            }
            Ok(out)
        })
        .await
    }

    async fn executions(&self, f: &RollupFilter, limit: usize) -> Result<Vec<Execution>> {
        let Some((ns, name, cap, pat)) = f.pattern.clone() else {
            return Ok(vec![]);
        };
        let (since, until) = (f.since, f.until);
        self.read(move |c| {
            c.prepare_cached(
                "SELECT event_key, namespace, name, version, capability, pattern, environment, \
                 execution_id, at, time_ms, cost, estimate_ms, success, error, variables, \
                 experiment, arm FROM telemetry_events WHERE namespace = ?1 AND name = ?2 AND capability = ?3 \
                 AND pattern = ?4 AND at >= ?5 AND at < ?6 ORDER BY at DESC LIMIT ?7",
            )
            .and_then(|mut s| {
                s.query_map(
                    params![ns, name, cap, pat, since, until, limit as i64],
                    |r| {
                        let vars: String = r.get(14)?;
                        Ok(Execution {
                            event_key: r.get(0)?,
                            namespace: r.get(1)?,
                            name: r.get(2)?,
                            version: r.get(3)?,
                            capability: r.get(4)?,
                            pattern: r.get(5)?,
                            environment: r.get(6)?,
                            execution_id: r.get(7)?,
                            at: super::ts(r.get(8)?),
                            time_ms: r.get(9)?,
                            cost: r.get(10)?,
                            estimate_ms: r.get(11)?,
                            success: r.get(12)?,
                            error: r.get(13)?,
                            variables: serde_json::from_str(&vars).unwrap_or_default(),
                            experiment: r.get(15)?,
                            arm: r.get(16)?,
                            fit: None,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("reading telemetry events")
        })
        .await
    }

    async fn rollups(&self, f: &RollupFilter) -> Result<Vec<Rollup>> {
        let f = f.clone();
        self.read(move |c| {
            let order = "ORDER BY namespace, name, capability, pattern, version, environment, hour";
            let rows = match &f.pattern {
                Some((ns, name, cap, pat)) => c
                    .prepare_cached(&format!(
                        "SELECT {ROLLUP_COLS} FROM telemetry_rollups WHERE namespace = ?1 \
                         AND name = ?2 AND capability = ?3 AND pattern = ?4 AND hour >= ?5 \
                         AND hour < ?6 {order}"
                    ))
                    .and_then(|mut s| {
                        s.query_map(
                            params![ns, name, cap, pat, f.since, f.until],
                            rollup_from_row,
                        )?
                        .collect::<rusqlite::Result<Vec<_>>>()
                    }),
                None => c
                    .prepare_cached(&format!(
                        "SELECT {ROLLUP_COLS} FROM telemetry_rollups WHERE hour >= ?1 \
                         AND hour < ?2 {order}"
                    ))
                    .and_then(|mut s| {
                        s.query_map(params![f.since, f.until], rollup_from_row)?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    }),
            };
            rows.context("reading telemetry roll-ups")
        })
        .await
    }

    async fn prune_events(&self, before: i64, limit: usize) -> Result<u64> {
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "DELETE FROM telemetry_events WHERE rowid IN (SELECT rowid FROM \
                     telemetry_events WHERE at < ?1 ORDER BY at LIMIT ?2)",
                )
                .and_then(|mut s| s.execute(params![before, limit as i64]))
                .context("deleting old telemetry events")?;
            Ok(n as u64)
        })
        .await
    }

    async fn create_experiment(&self, e: Experiment, audit: Audit) -> Result<Experiment> {
        self.write(move |tx| {
            if read_experiment(tx, &e.name)?.is_some() {
                return Err(Error::conflict(
                    "name",
                    format!("an A/B test named {} exists", e.name),
                ));
            }
            write_experiment(tx, &e)?;
            commit_audit(tx, audit, &e)?;
            Ok(e)
        })
        .await
    }

    async fn change_experiment(
        &self,
        name: &str,
        change: ExperimentChange,
        audit: Audit,
    ) -> Result<Experiment> {
        let name = name.to_string();
        self.write(move |tx| {
            let before = read_experiment(tx, &name)?
                .ok_or_else(|| Error::not_found(format!("A/B test {name}")))?;
            let after = change.apply(&before)?;
            write_experiment(tx, &after)?;
            commit_audit_change(tx, audit, Some(&before), Some(&after))?;
            Ok(after)
        })
        .await
    }

    async fn experiment(&self, name: &str) -> Result<Option<Experiment>> {
        let name = name.to_string();
        self.read(move |c| read_experiment(c, &name)).await
    }

    async fn experiments(&self, f: &ExperimentFilter) -> Result<Vec<Experiment>> {
        let f = f.clone();
        self.read(move |c| {
            let (ns, tool) = f.tool.clone().unzip();
            c.prepare_cached(&format!(
                "SELECT {EXPERIMENT_COLS} FROM experiments WHERE (?1 IS NULL OR namespace = ?1) \
                 AND (?2 IS NULL OR tool = ?2) AND (?3 IS NULL OR capability = ?3) \
                 AND (?4 IS NULL OR status = ?4) ORDER BY name"
            ))
            .and_then(|mut s| {
                s.query_map(
                    params![ns, tool, f.capability, f.status.map(|s| s.as_str())],
                    experiment_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("listing A/B tests")?
            .into_iter()
            .collect()
        })
        .await
    }

    async fn arm_stats(&self, name: &str) -> Result<Vec<ArmStats>> {
        let name = name.to_string();
        self.read(move |c| read_arms(c, &name, None)).await
    }
}

const EXPERIMENT_COLS: &str = "name, description, namespace, tool, capability, subject, arm_a, \
     arm_b, split, environment, callers, status, min_samples, auto_complete, winner, \
     created_by, created_at, updated_at, completed_at";

/// A row of `experiments` (decoding its text columns is the caller's second step, so
/// that a bad value is an error with context rather than a panic).
fn experiment_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Experiment>> {
    let subject: String = r.get(5)?;
    let status: String = r.get(11)?;
    let callers: String = r.get(10)?;
    let completed: Option<i64> = r.get(18)?;
    let mut e = Experiment {
        name: r.get(0)?,
        description: r.get(1)?,
        namespace: r.get(2)?,
        tool: r.get(3)?,
        capability: r.get(4)?,
        subject: ExperimentSubject::Versions,
        arm_a: r.get(6)?,
        arm_b: r.get(7)?,
        split: r.get(8)?,
        environment: r.get(9)?,
        callers: vec![],
        status: ExperimentStatus::Draft,
        min_samples: r.get::<_, i64>(12)?.max(0) as u64,
        auto_complete: r.get(13)?,
        winner: r.get(14)?,
        created_by: r.get(15)?,
        created_at: super::ts(r.get(16)?),
        updated_at: super::ts(r.get(17)?),
        completed_at: completed.map(super::ts),
    };
    Ok(decode_experiment(&mut e, &subject, &status, &callers).map(|()| e))
}

fn read_experiment(c: &rusqlite::Connection, name: &str) -> Result<Option<Experiment>> {
    c.prepare_cached(&format!(
        "SELECT {EXPERIMENT_COLS} FROM experiments WHERE name = ?1"
    ))
    .and_then(|mut s| s.query_row(params![name], experiment_from_row).optional())
    .context("reading an A/B test")?
    .transpose()
}

fn write_experiment(tx: &Transaction<'_>, e: &Experiment) -> Result<()> {
    tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO experiments ({EXPERIMENT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, \
         ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            e.name,
            e.description,
            e.namespace,
            e.tool,
            e.capability,
            e.subject.as_str(),
            e.arm_a,
            e.arm_b,
            e.split,
            e.environment,
            serde_json::to_string(&e.callers).unwrap_or_else(|_| "[]".into()),
            e.status.as_str(),
            e.min_samples as i64,
            e.auto_complete,
            e.winner,
            e.created_by,
            e.created_at.as_millisecond(),
            e.updated_at.as_millisecond(),
            e.completed_at.map(|t| t.as_millisecond())
        ])
    })
    .context("writing an A/B test")?;
    Ok(())
}

const ARM_COLS: &str = "arm, count, successes, time_sum, time_sumsq, time_sketch, cost_count, \
     cost_sum, cost_sumsq, cost_sketch";

fn read_arms(c: &rusqlite::Connection, x: &str, arm: Option<&str>) -> Result<Vec<ArmStats>> {
    c.prepare_cached(&format!(
        "SELECT {ARM_COLS} FROM experiment_arms WHERE experiment = ?1 \
         AND (?2 IS NULL OR arm = ?2) ORDER BY arm"
    ))
    .and_then(|mut s| {
        s.query_map(params![x, arm], |r| {
            let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
            Ok(ArmStats {
                arm: r.get(0)?,
                count: n(1)?,
                successes: n(2)?,
                time_sum: r.get(3)?,
                time_sumsq: r.get(4)?,
                time_sketch: Sketch::decode(&r.get::<_, String>(5)?),
                cost_count: n(6)?,
                cost_sum: r.get(7)?,
                cost_sumsq: r.get(8)?,
                cost_sketch: Sketch::decode(&r.get::<_, String>(9)?),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
    })
    .context("reading an A/B test's arms")
}

fn write_arm(tx: &Transaction<'_>, x: &str, a: &ArmStats) -> Result<()> {
    tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO experiment_arms (experiment, {ARM_COLS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            x,
            a.arm,
            a.count as i64,
            a.successes as i64,
            a.time_sum,
            a.time_sumsq,
            a.time_sketch.encode(),
            a.cost_count as i64,
            a.cost_sum,
            a.cost_sumsq,
            a.cost_sketch.encode()
        ])
    })
    .context("writing an A/B test's arm")?;
    Ok(())
}
