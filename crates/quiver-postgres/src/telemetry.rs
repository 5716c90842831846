//! [`TelemetryStore`] on PostgreSQL: events and their hourly roll-ups (migration
//! `0016_telemetry`) in one transaction per batch. A roll-up row is locked (`FOR UPDATE`,
//! after an `INSERT … ON CONFLICT DO NOTHING` makes sure it exists) while its batch adds
//! to it, so concurrent batches on any node add up exactly.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use quiver_model::{Context, Result};
use quiver_store::telemetry::{
    decode_buckets, encode_buckets, Execution, IngestOutcome, Rollup, RollupFilter, RollupKey,
    TelemetryStore, RATIO_BUCKETS,
};
use tokio_postgres::Row;

use crate::store::BoxError;
use crate::PostgresStore;

const ROLLUP_COLS: &str = "namespace, name, capability, pattern, version, environment, hour, \
     count, successes, time_sum, time_min, time_max, cost_count, cost_sum, ratio_count, \
     ratio_sum, ratio_buckets";

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
                 error, variables) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                 $13, $14, $15) ON CONFLICT (event_key) DO NOTHING",
            )
            .await
            .context("preparing a telemetry insert")?;
        let mut out = IngestOutcome::default();
        let mut fresh: BTreeMap<RollupKey, Vec<&Execution>> = BTreeMap::new();
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
                    ],
                )
                .await
                .context("recording a telemetry event")?;
            if n == 1 {
                out.accepted += 1;
                fresh.entry(e.rollup_key()).or_default().push(e);
            } else {
                out.duplicates += 1;
            }
        }
        let zero = encode_buckets(&[0; RATIO_BUCKETS]);
        for (k, evs) in fresh {
            tx.execute(
                "INSERT INTO telemetry_rollups (namespace, name, capability, pattern, version, \
                 environment, hour, count, successes, time_sum, time_min, time_max, cost_count, \
                 cost_sum, ratio_count, ratio_sum, ratio_buckets) VALUES ($1, $2, $3, $4, $5, \
                 $6, $7, 0, 0, 0, 'Infinity', '-Infinity', 0, 0, 0, 0, $8) \
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
                 ratio_count = $15, ratio_sum = $16, ratio_buckets = $17 WHERE namespace = $1 \
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
                ],
            )
            .await
            .context("updating a telemetry roll-up")?;
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
                 execution_id, at, time_ms, cost, estimate_ms, success, error, variables \
                 FROM telemetry_events WHERE namespace = $1 AND name = $2 AND capability = $3 \
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
}
