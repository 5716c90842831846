//! [`TelemetryStore`] on SQLite: events and their hourly roll-ups (migration
//! `0016_telemetry`) written in the single writer's transaction.

use std::collections::BTreeMap;

use async_trait::async_trait;
use quiver_model::{Context, Result};
use quiver_store::telemetry::{
    decode_buckets, encode_buckets, Execution, IngestOutcome, Rollup, RollupFilter, RollupKey,
    TelemetryStore,
};
use rusqlite::{params, OptionalExtension, Transaction};

use super::SqliteStore;

const ROLLUP_COLS: &str = "namespace, name, capability, pattern, version, environment, hour, \
     count, successes, time_sum, time_min, time_max, cost_count, cost_sum, ratio_count, \
     ratio_sum, ratio_buckets";

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
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
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
            encode_buckets(&r.ratio_buckets)
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
            for e in &events {
                let n = tx
                    .prepare_cached(
                        "INSERT INTO telemetry_events (event_key, namespace, name, version, \
                         capability, pattern, environment, execution_id, at, time_ms, cost, \
                         estimate_ms, success, error, variables) VALUES (?1, ?2, ?3, ?4, ?5, \
                         ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
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
                            e.variables.to_string()
                        ])
                    })
                    .context("recording a telemetry event")?;
                if n == 1 {
                    out.accepted += 1;
                    fresh.entry(e.rollup_key()).or_default().push(e);
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
                 execution_id, at, time_ms, cost, estimate_ms, success, error, variables \
                 FROM telemetry_events WHERE namespace = ?1 AND name = ?2 AND capability = ?3 \
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
}
