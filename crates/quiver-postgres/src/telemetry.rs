//! [`TelemetryStore`] on PostgreSQL: events and their hourly roll-ups (migration
//! `0016_telemetry`) in one transaction per batch. A roll-up row is locked (`FOR UPDATE`,
//! after an `INSERT … ON CONFLICT DO NOTHING` makes sure it exists) while its batch adds
//! to it, so concurrent batches on any node add up exactly. A/B tests and their arms'
//! figures (`0017_experiments`) are written the same way, an arm's row locked while a
//! batch adds to it and a test's row while its state changes.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use quiver_model::Error;
use quiver_model::{Context, Result};
use quiver_store::telemetry::{
    decode_buckets, decode_experiment, encode_buckets, ArmStats, Execution, Experiment,
    ExperimentChange, ExperimentFilter, ExperimentStatus, ExperimentSubject, FitSums,
    IngestOutcome, Rollup, RollupFilter, RollupKey, Sketch, TelemetryStore, RATIO_BUCKETS,
};
use quiver_store::Audit;
use tokio_postgres::Row;

use crate::accounts::commit_audit_change;
use crate::store::BoxError;
use crate::PostgresStore;

const ROLLUP_COLS: &str = "namespace, name, capability, pattern, version, environment, hour, \
     count, successes, time_sum, time_min, time_max, cost_count, cost_sum, ratio_count, \
     ratio_sum, ratio_buckets, time_sketch, cost_sketch, fit";

fn rollup_from_row(r: &Row) -> Result<Rollup> {
    let decode = || -> std::result::Result<Rollup, BoxError> {
        let n = |i: usize| -> std::result::Result<u64, BoxError> {
            Ok(r.try_get::<_, i64>(i)?.max(0) as u64)
        };
        Ok(Rollup {
            namespace: r.try_get(0)?,
            name: r.try_get(1)?,
            capability: r.try_get(2)?,
            pattern: r.try_get(3)?,
            version: r.try_get(4)?,
            environment: r.try_get(5)?,
            hour: r.try_get(6)?,
            count: n(7)?,
            successes: n(8)?,
            time_sum: r.try_get(9)?,
            time_min: r.try_get(10)?,
            time_max: r.try_get(11)?,
            cost_count: n(12)?,
            cost_sum: r.try_get(13)?,
            ratio_count: n(14)?,
            ratio_sum: r.try_get(15)?,
            ratio_buckets: decode_buckets(&r.try_get::<_, String>(16)?),
            time_sketch: Sketch::decode(&r.try_get::<_, String>(17)?),
            cost_sketch: Sketch::decode(&r.try_get::<_, String>(18)?),
            fit: FitSums::decode(&r.try_get::<_, String>(19)?),
        })
    };
    decode().context("decoding a telemetry roll-up")
}

#[async_trait]
impl TelemetryStore for PostgresStore {
    async fn ingest(&self, events: Vec<Execution>) -> Result<IngestOutcome> {
        let mut c = self.pooled().await?;
        let tx = c
            .transaction()
            .await
            .context("beginning a telemetry batch")?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO telemetry_events (event_key, namespace, name, version, capability, \
                 pattern, environment, execution_id, at, time_ms, cost, estimate_ms, success, \
                 error, variables, experiment, arm) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                 $9, $10, $11, $12, $13, $14, $15, $16, $17) ON CONFLICT (event_key) DO NOTHING",
            )
            .await
            .context("preparing a telemetry insert")?;
        let mut out = IngestOutcome::default();
        let mut fresh: BTreeMap<RollupKey, Vec<&Execution>> = BTreeMap::new();
        let mut arms: BTreeMap<(String, String), Vec<&Execution>> = BTreeMap::new();
        for e in &events {
            let n = tx
                .execute(
                    &insert,
                    &[
                        &e.event_key,
                        &e.namespace,
                        &e.name,
                        &e.version,
                        &e.capability,
                        &e.pattern,
                        &e.environment,
                        &e.execution_id,
                        &e.at.as_millisecond(),
                        &e.time_ms,
                        &e.cost,
                        &e.estimate_ms,
                        &e.success,
                        &e.error,
                        &e.variables.to_string(),
                        &e.experiment,
                        &e.arm,
                    ],
                )
                .await
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
        let zero = encode_buckets(&[0; RATIO_BUCKETS]);
        for (k, evs) in fresh {
            tx.execute(
                "INSERT INTO telemetry_rollups (namespace, name, capability, pattern, version, \
                 environment, hour, count, successes, time_sum, time_min, time_max, cost_count, \
                 cost_sum, ratio_count, ratio_sum, ratio_buckets, time_sketch, cost_sketch, fit) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0, 'Infinity', '-Infinity', 0, 0, 0, \
                 0, $8, '', '', '') \
                 ON CONFLICT DO NOTHING",
                &[&k.0, &k.1, &k.2, &k.3, &k.4, &k.5, &k.6, &zero],
            )
            .await
            .context("creating a telemetry roll-up")?;
            let row = tx
                .query_one(
                    &format!(
                        "SELECT {ROLLUP_COLS} FROM telemetry_rollups WHERE namespace = $1 \
                         AND name = $2 AND capability = $3 AND pattern = $4 AND version = $5 \
                         AND environment = $6 AND hour = $7 FOR UPDATE"
                    ),
                    &[&k.0, &k.1, &k.2, &k.3, &k.4, &k.5, &k.6],
                )
                .await
                .context("locking a telemetry roll-up")?;
            let mut r = rollup_from_row(&row)?;
            for e in evs {
                r.add(e);
            }
            tx.execute(
                "UPDATE telemetry_rollups SET count = $8, successes = $9, time_sum = $10, \
                 time_min = $11, time_max = $12, cost_count = $13, cost_sum = $14, \
                 ratio_count = $15, ratio_sum = $16, ratio_buckets = $17, time_sketch = $18, \
                 cost_sketch = $19, fit = $20 WHERE namespace = $1 \
                 AND name = $2 AND capability = $3 AND pattern = $4 AND version = $5 \
                 AND environment = $6 AND hour = $7",
                &[
                    &k.0,
                    &k.1,
                    &k.2,
                    &k.3,
                    &k.4,
                    &k.5,
                    &k.6,
                    &(r.count as i64),
                    &(r.successes as i64),
                    &r.time_sum,
                    &r.time_min,
                    &r.time_max,
                    &(r.cost_count as i64),
                    &r.cost_sum,
                    &(r.ratio_count as i64),
                    &r.ratio_sum,
                    &encode_buckets(&r.ratio_buckets),
                    &r.time_sketch.encode(),
                    &r.cost_sketch.encode(),
                    &r.fit.encode(),
                ],
            )
            .await
            .context("updating a telemetry roll-up")?;
        }
        for ((x, arm), evs) in arms {
            tx.execute(
                "INSERT INTO experiment_arms (experiment, arm, count, successes, time_sum, \
                 time_sumsq, time_sketch, cost_count, cost_sum, cost_sumsq, cost_sketch) \
                 VALUES ($1, $2, 0, 0, 0, 0, '', 0, 0, 0, '') ON CONFLICT DO NOTHING",
                &[&x, &arm],
            )
            .await
            .context("creating an A/B test's arm")?;
            let mut a = read_arms(&tx, &x, Some(&arm), true)
                .await?
                .pop()
                .ok_or_else(|| Error::internal("locking an A/B test's arm", "row not found"))?;
            for e in evs {
                a.add(e);
            }
            tx.execute(
                "UPDATE experiment_arms SET count = $3, successes = $4, time_sum = $5, \
                 time_sumsq = $6, time_sketch = $7, cost_count = $8, cost_sum = $9, \
                 cost_sumsq = $10, cost_sketch = $11 WHERE experiment = $1 AND arm = $2",
                &[
                    &x,
                    &arm,
                    &(a.count as i64),
                    &(a.successes as i64),
                    &a.time_sum,
                    &a.time_sumsq,
                    &a.time_sketch.encode(),
                    &(a.cost_count as i64),
                    &a.cost_sum,
                    &a.cost_sumsq,
                    &a.cost_sketch.encode(),
                ],
            )
            .await
            .context("updating an A/B test's arm")?;
        }
        tx.commit().await.context("committing a telemetry batch")?;
        Ok(out)
    }

    async fn executions(&self, f: &RollupFilter, limit: usize) -> Result<Vec<Execution>> {
        let Some((ns, name, cap, pat)) = &f.pattern else {
            return Ok(vec![]);
        };
        let c = self.pooled().await?;
        let rows = c
            .query(
                "SELECT event_key, namespace, name, version, capability, pattern, environment, \
                 execution_id, at, time_ms, cost, estimate_ms, success, error, variables, \
                 experiment, arm FROM telemetry_events WHERE namespace = $1 AND name = $2 AND capability = $3 \
                 AND pattern = $4 AND at >= $5 AND at < $6 ORDER BY at DESC LIMIT $7",
                &[ns, name, cap, pat, &f.since, &f.until, &(limit as i64)],
            )
            .await
            .context("reading telemetry events")?;
        rows.iter()
            .map(|r| {
                let decode = || -> std::result::Result<Execution, BoxError> {
                    let vars: String = r.try_get(14)?;
                    Ok(Execution {
                        event_key: r.try_get(0)?,
                        namespace: r.try_get(1)?,
                        name: r.try_get(2)?,
                        version: r.try_get(3)?,
                        capability: r.try_get(4)?,
                        pattern: r.try_get(5)?,
                        environment: r.try_get(6)?,
                        execution_id: r.try_get(7)?,
                        at: jiff::Timestamp::from_millisecond(r.try_get(8)?)?,
                        time_ms: r.try_get(9)?,
                        cost: r.try_get(10)?,
                        estimate_ms: r.try_get(11)?,
                        success: r.try_get(12)?,
                        error: r.try_get(13)?,
                        variables: serde_json::from_str(&vars)?,
                        experiment: r.try_get(15)?,
                        arm: r.try_get(16)?,
                        fit: None,
                    })
                };
                decode().context("decoding a telemetry event")
            })
            .collect()
    }

    async fn rollups(&self, f: &RollupFilter) -> Result<Vec<Rollup>> {
        let c = self.pooled().await?;
        let order = "ORDER BY namespace, name, capability, pattern, version, environment, hour";
        let rows = match &f.pattern {
            Some((ns, name, cap, pat)) => {
                c.query(
                    &format!(
                        "SELECT {ROLLUP_COLS} FROM telemetry_rollups WHERE namespace = $1 \
                         AND name = $2 AND capability = $3 AND pattern = $4 AND hour >= $5 \
                         AND hour < $6 {order}"
                    ),
                    &[ns, name, cap, pat, &f.since, &f.until],
                )
                .await
            }
            None => {
                c.query(
                    &format!(
                        "SELECT {ROLLUP_COLS} FROM telemetry_rollups WHERE hour >= $1 \
                         AND hour < $2 {order}"
                    ),
                    &[&f.since, &f.until],
                )
                .await
            }
        }
        .context("reading telemetry roll-ups")?;
        rows.iter().map(rollup_from_row).collect()
    }

    async fn prune_events(&self, before: i64, limit: usize) -> Result<u64> {
        let c = self.pooled().await?;
        let n = c
            .execute(
                "DELETE FROM telemetry_events WHERE event_key IN (SELECT event_key FROM \
                 telemetry_events WHERE at < $1 ORDER BY at LIMIT $2)",
                &[&before, &(limit as i64)],
            )
            .await
            .context("deleting old telemetry events")?;
        Ok(n)
    }

    async fn create_experiment(&self, e: Experiment, audit: Audit) -> Result<Experiment> {
        let mut c = self.pooled().await?;
        let tx = c
            .transaction()
            .await
            .context("beginning an A/B test write")?;
        let n = tx
            .execute(
                &format!(
                    "INSERT INTO experiments ({EXPERIMENT_COLS}) VALUES ($1, $2, $3, $4, $5, \
                     $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
                     ON CONFLICT (name) DO NOTHING"
                ),
                &experiment_params(&e)
                    .iter()
                    .map(|p| &**p as _)
                    .collect::<Vec<_>>(),
            )
            .await
            .context("creating an A/B test")?;
        if n == 0 {
            return Err(Error::conflict(
                "name",
                format!("an A/B test named {} exists", e.name),
            ));
        }
        commit_audit_change::<_, serde_json::Value, _>(&tx, audit, None, Some(&e)).await?;
        tx.commit().await.context("committing an A/B test")?;
        Ok(e)
    }

    async fn change_experiment(
        &self,
        name: &str,
        change: ExperimentChange,
        audit: Audit,
    ) -> Result<Experiment> {
        let mut c = self.pooled().await?;
        let tx = c
            .transaction()
            .await
            .context("beginning an A/B test write")?;
        let before = read_experiments(&tx, "WHERE name = $1 FOR UPDATE", &[&name])
            .await?
            .pop()
            .ok_or_else(|| Error::not_found(format!("A/B test {name}")))?;
        let after = change.apply(&before)?;
        tx.execute(
            "UPDATE experiments SET status = $2, winner = $3, updated_at = $4, \
             completed_at = $5 WHERE name = $1",
            &[
                &name,
                &after.status.as_str(),
                &after.winner,
                &after.updated_at.as_millisecond(),
                &after.completed_at.map(|t| t.as_millisecond()),
            ],
        )
        .await
        .context("changing an A/B test")?;
        commit_audit_change(&tx, audit, Some(&before), Some(&after)).await?;
        tx.commit().await.context("committing an A/B test")?;
        Ok(after)
    }

    async fn experiment(&self, name: &str) -> Result<Option<Experiment>> {
        let c = self.pooled().await?;
        Ok(read_experiments(&c, "WHERE name = $1", &[&name])
            .await?
            .pop())
    }

    async fn experiments(&self, f: &ExperimentFilter) -> Result<Vec<Experiment>> {
        let c = self.pooled().await?;
        let (ns, tool) = f.tool.clone().unzip();
        let status = f.status.map(|s| s.as_str());
        read_experiments(
            &c,
            "WHERE ($1::text IS NULL OR namespace = $1) AND ($2::text IS NULL OR tool = $2) \
             AND ($3::text IS NULL OR capability = $3) AND ($4::text IS NULL OR status = $4) \
             ORDER BY name",
            &[&ns, &tool, &f.capability, &status],
        )
        .await
    }

    async fn arm_stats(&self, name: &str) -> Result<Vec<ArmStats>> {
        let c = self.pooled().await?;
        read_arms(&c, name, None, false).await
    }
}

const EXPERIMENT_COLS: &str = "name, description, namespace, tool, capability, subject, arm_a, \
     arm_b, split, environment, callers, status, min_samples, auto_complete, winner, \
     created_by, created_at, updated_at, completed_at";

type Param = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;

/// The parameters of an insert of `e`, in [`EXPERIMENT_COLS`]' order.
fn experiment_params(e: &Experiment) -> Vec<Param> {
    vec![
        Box::new(e.name.clone()),
        Box::new(e.description.clone()),
        Box::new(e.namespace.clone()),
        Box::new(e.tool.clone()),
        Box::new(e.capability.clone()),
        Box::new(e.subject.as_str()),
        Box::new(e.arm_a.clone()),
        Box::new(e.arm_b.clone()),
        Box::new(e.split),
        Box::new(e.environment.clone()),
        Box::new(serde_json::to_string(&e.callers).unwrap_or_else(|_| "[]".into())),
        Box::new(e.status.as_str()),
        Box::new(e.min_samples as i64),
        Box::new(e.auto_complete),
        Box::new(e.winner.clone()),
        Box::new(e.created_by.clone()),
        Box::new(e.created_at.as_millisecond()),
        Box::new(e.updated_at.as_millisecond()),
        Box::new(e.completed_at.map(|t| t.as_millisecond())),
    ]
}

async fn read_experiments<C: GenericClient>(
    c: &C,
    clause: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Experiment>> {
    let rows = c
        .query(
            &format!("SELECT {EXPERIMENT_COLS} FROM experiments {clause}"),
            params,
        )
        .await
        .context("reading A/B tests")?;
    rows.iter()
        .map(|r| {
            let raw = || -> std::result::Result<(Experiment, String, String, String), BoxError> {
                let ts = |i: usize| -> std::result::Result<jiff::Timestamp, BoxError> {
                    Ok(jiff::Timestamp::from_millisecond(r.try_get(i)?)?)
                };
                let completed: Option<i64> = r.try_get(18)?;
                Ok((
                    Experiment {
                        name: r.try_get(0)?,
                        description: r.try_get(1)?,
                        namespace: r.try_get(2)?,
                        tool: r.try_get(3)?,
                        capability: r.try_get(4)?,
                        subject: ExperimentSubject::Versions,
                        arm_a: r.try_get(6)?,
                        arm_b: r.try_get(7)?,
                        split: r.try_get(8)?,
                        environment: r.try_get(9)?,
                        callers: vec![],
                        status: ExperimentStatus::Draft,
                        min_samples: r.try_get::<_, i64>(12)?.max(0) as u64,
                        auto_complete: r.try_get(13)?,
                        winner: r.try_get(14)?,
                        created_by: r.try_get(15)?,
                        created_at: ts(16)?,
                        updated_at: ts(17)?,
                        completed_at: completed
                            .map(jiff::Timestamp::from_millisecond)
                            .transpose()?,
                    },
                    r.try_get(5)?,
                    r.try_get(11)?,
                    r.try_get(10)?,
                ))
            };
            let (mut e, subject, status, callers) = raw().context("decoding an A/B test")?;
            decode_experiment(&mut e, &subject, &status, &callers)?;
            Ok(e)
        })
        .collect()
}

/// An A/B test's arms (one when `arm` is given), locked for update when `lock`.
async fn read_arms<C: GenericClient>(
    c: &C,
    x: &str,
    arm: Option<&str>,
    lock: bool,
) -> Result<Vec<ArmStats>> {
    let rows = c
        .query(
            &format!(
                "SELECT arm, count, successes, time_sum, time_sumsq, time_sketch, cost_count, \
                 cost_sum, cost_sumsq, cost_sketch FROM experiment_arms WHERE experiment = $1 \
                 AND ($2::text IS NULL OR arm = $2) ORDER BY arm{}",
                if lock { " FOR UPDATE" } else { "" }
            ),
            &[&x, &arm],
        )
        .await
        .context("reading an A/B test's arms")?;
    rows.iter()
        .map(|r| {
            let decode = || -> std::result::Result<ArmStats, BoxError> {
                let n = |i: usize| -> std::result::Result<u64, BoxError> {
                    Ok(r.try_get::<_, i64>(i)?.max(0) as u64)
                };
                Ok(ArmStats {
                    arm: r.try_get(0)?,
                    count: n(1)?,
                    successes: n(2)?,
                    time_sum: r.try_get(3)?,
                    time_sumsq: r.try_get(4)?,
                    time_sketch: Sketch::decode(&r.try_get::<_, String>(5)?),
                    cost_count: n(6)?,
                    cost_sum: r.try_get(7)?,
                    cost_sumsq: r.try_get(8)?,
                    cost_sketch: Sketch::decode(&r.try_get::<_, String>(9)?),
                })
            };
            decode().context("decoding an A/B test's arm")
        })
        .collect()
}
