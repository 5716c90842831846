//! [`PipelineStore`] on SQLite (migration `0018_pipeline`). Every write is one of the
//! single writer's transactions, so a claim's select-then-update takes each item once.

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::Timestamp;
use quiver_model::{Context, Error, Result};
use quiver_store::pipeline::{
    Activity, Block, BreakerConfig, BreakerState, Checksum, ChecksumAlert, ChecksumOutcome, Claim,
    Control, ControlChange, Depth, EnvResult, EnvState, HistoryRecord, ItemFilter, ItemReport,
    ItemStatus, PipelineStore, QueueItem, ResultFilter, ResultRecord, UpsertOutcome,
};
use quiver_store::Audit;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use super::{ts, SqliteStore};
use crate::accounts::commit_audit_change;

const ITEM_COLS: &str = "id, ecosystem, name, tier, popularity, requests, status, confidence, \
     failure_count, retries, next_retry_at, lease_owner, lease_until, recipe, imported, ord, \
     created_at, updated_at";

fn item_from_row(r: &Row<'_>) -> rusqlite::Result<QueueItem> {
    let status: String = r.get(6)?;
    let imported: Option<String> = r.get(14)?;
    Ok(QueueItem {
        id: r.get(0)?,
        ecosystem: r.get(1)?,
        name: r.get(2)?,
        tier: r.get(3)?,
        popularity: r.get(4)?,
        requests: r.get(5)?,
        status: ItemStatus::parse(&status).unwrap_or(ItemStatus::Pending),
        confidence: r.get(7)?,
        failure_count: r.get(8)?,
        retries: r.get(9)?,
        next_retry_at: r.get::<_, Option<i64>>(10)?.map(ts),
        lease_owner: r.get(11)?,
        lease_until: r.get::<_, Option<i64>>(12)?.map(ts),
        recipe: r.get(13)?,
        imported: imported.and_then(|s| serde_json::from_str(&s).ok()),
        ord: r.get(15)?,
        created_at: ts(r.get(16)?),
        updated_at: ts(r.get(17)?),
    })
}

fn write_item(c: &Connection, i: &QueueItem) -> Result<()> {
    c.prepare_cached(&format!(
        "INSERT OR REPLACE INTO pipeline_items ({ITEM_COLS}, score) VALUES (?1, ?2, ?3, ?4, \
         ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            i.id,
            i.ecosystem,
            i.name,
            i.tier,
            i.popularity,
            i.requests,
            i.status.as_str(),
            i.confidence,
            i.failure_count,
            i.retries,
            i.next_retry_at.map(|t| t.as_millisecond()),
            i.lease_owner,
            i.lease_until.map(|t| t.as_millisecond()),
            i.recipe,
            i.imported.as_ref().map(|v| v.to_string()),
            i.ord,
            i.created_at.as_millisecond(),
            i.updated_at.as_millisecond(),
            i.score(),
        ])
    })
    .context("writing a queue item")?;
    Ok(())
}

fn read_item(c: &Connection, id: &str) -> Result<Option<QueueItem>> {
    c.prepare_cached(&format!(
        "SELECT {ITEM_COLS} FROM pipeline_items WHERE id = ?1"
    ))
    .and_then(|mut s| s.query_row([id], item_from_row).optional())
    .context("reading a queue item")
}

const RESULT_COLS: &str = "id, item_id, ecosystem, batch_id, worker, environment, passed, \
     category, exit_code, message, blocked_by, at";

fn result_from_row(r: &Row<'_>) -> rusqlite::Result<ResultRecord> {
    let blocked: String = r.get(10)?;
    Ok(ResultRecord {
        id: r.get(0)?,
        item_id: r.get(1)?,
        ecosystem: r.get(2)?,
        batch_id: r.get(3)?,
        worker: r.get(4)?,
        result: EnvResult {
            environment: r.get(5)?,
            passed: r.get(6)?,
            category: r.get(7)?,
            exit_code: r.get(8)?,
            message: r.get(9)?,
            blocked_by: serde_json::from_str(&blocked).unwrap_or_default(),
        },
        at: ts(r.get(11)?),
    })
}

const CONTROL_COLS: &str = "ecosystem, paused, reason, breaker, opened_at, recent, \
     claims_per_hour, window_start, window_claims, updated_at";

fn control_from_row(r: &Row<'_>) -> rusqlite::Result<Control> {
    let breaker: String = r.get(3)?;
    Ok(Control {
        ecosystem: r.get(0)?,
        paused: r.get(1)?,
        reason: r.get(2)?,
        breaker: BreakerState::parse(&breaker).unwrap_or_default(),
        opened_at: r.get::<_, Option<i64>>(4)?.map(ts),
        recent: r.get(5)?,
        claims_per_hour: r.get(6)?,
        window_start: r.get(7)?,
        window_claims: r.get(8)?,
        updated_at: ts(r.get(9)?),
    })
}

fn read_control(c: &Connection, eco: &str, at: Timestamp) -> Result<Control> {
    Ok(c.prepare_cached(&format!(
        "SELECT {CONTROL_COLS} FROM pipeline_controls WHERE ecosystem = ?1"
    ))
    .and_then(|mut s| s.query_row([eco], control_from_row).optional())
    .context("reading a pipeline control")?
    .unwrap_or_else(|| Control::new(eco, at)))
}

fn write_control(c: &Connection, k: &Control) -> Result<()> {
    c.prepare_cached(&format!(
        "INSERT OR REPLACE INTO pipeline_controls ({CONTROL_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, \
         ?6, ?7, ?8, ?9, ?10)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            k.ecosystem,
            k.paused,
            k.reason,
            k.breaker.as_str(),
            k.opened_at.map(|t| t.as_millisecond()),
            k.recent,
            k.claims_per_hour,
            k.window_start,
            k.window_claims,
            k.updated_at.as_millisecond(),
        ])
    })
    .context("writing a pipeline control")?;
    Ok(())
}

/// Store one environment's result of an item and, when it is at least as new as the
/// item's known outcome there, make it that outcome and replace the blocks there.
#[allow(clippy::too_many_arguments)]
fn store_result(
    c: &Connection,
    item_id: &str,
    ecosystem: &str,
    batch_id: Option<&str>,
    worker: Option<&str>,
    e: &EnvResult,
    at: Timestamp,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO pipeline_results (item_id, ecosystem, batch_id, worker, environment, \
         passed, category, exit_code, message, blocked_by, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, \
         ?7, ?8, ?9, ?10, ?11)",
    )
    .and_then(|mut s| {
        s.execute(params![
            item_id,
            ecosystem,
            batch_id,
            worker,
            e.environment,
            e.passed,
            e.category,
            e.exit_code,
            e.message,
            serde_json::to_string(&e.blocked_by).unwrap_or_default(),
            at.as_millisecond(),
        ])
    })
    .context("recording a result")?;
    let newer = c
        .prepare_cached(
            "INSERT INTO pipeline_env_states (item_id, environment, passed, category, at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (item_id, environment) DO UPDATE SET \
             passed = excluded.passed, category = excluded.category, at = excluded.at \
             WHERE excluded.at >= pipeline_env_states.at",
        )
        .and_then(|mut s| {
            s.execute(params![
                item_id,
                e.environment,
                e.passed,
                e.category,
                at.as_millisecond()
            ])
        })
        .context("recording an item's state on an environment")?;
    if newer == 0 {
        return Ok(());
    }
    c.prepare_cached("DELETE FROM pipeline_blocks WHERE item_id = ?1 AND environment = ?2")
        .and_then(|mut s| s.execute(params![item_id, e.environment]))
        .context("replacing blocks")?;
    if !e.passed {
        for d in &e.blocked_by {
            c.prepare_cached(
                "INSERT OR IGNORE INTO pipeline_blocks (item_id, environment, dependency) \
                 VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![item_id, e.environment, d]))
            .context("recording a block")?;
        }
    }
    Ok(())
}

fn hour_of(at: Timestamp) -> i64 {
    at.as_millisecond().div_euclid(3_600_000) * 3_600_000
}

fn add_activity(
    c: &Connection,
    at: Timestamp,
    eco: &str,
    claimed: i64,
    passed: i64,
    failed: i64,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO pipeline_claims (hour, ecosystem, claimed, passed, failed) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (hour, ecosystem) DO UPDATE SET \
         claimed = claimed + excluded.claimed, passed = passed + excluded.passed, \
         failed = failed + excluded.failed",
    )
    .and_then(|mut s| s.execute(params![hour_of(at), eco, claimed, passed, failed]))
    .context("counting pipeline activity")?;
    Ok(())
}

fn block_from_row(r: &Row<'_>) -> rusqlite::Result<Block> {
    let status: String = r.get(4)?;
    Ok(Block {
        item_id: r.get(0)?,
        ecosystem: r.get(1)?,
        name: r.get(2)?,
        popularity: r.get(3)?,
        status: ItemStatus::parse(&status).unwrap_or(ItemStatus::Pending),
        environment: r.get(5)?,
        dependency: r.get(6)?,
    })
}

const BLOCK_SELECT: &str = "SELECT b.item_id, i.ecosystem, i.name, i.popularity, i.status, \
     b.environment, b.dependency FROM pipeline_blocks b JOIN pipeline_items i ON i.id = b.item_id";

fn alert_from_row(r: &Row<'_>) -> rusqlite::Result<ChecksumAlert> {
    Ok(ChecksumAlert {
        id: r.get(0)?,
        recipe: r.get(1)?,
        version: r.get(2)?,
        environment: r.get(3)?,
        asset: r.get(4)?,
        expected: r.get(5)?,
        observed: r.get(6)?,
        at: ts(r.get(7)?),
    })
}

/// `?, ?, …` for `n` parameters.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

#[async_trait]
impl PipelineStore for SqliteStore {
    async fn upsert_items(&self, items: Vec<QueueItem>, replace: bool) -> Result<UpsertOutcome> {
        for i in &items {
            quiver_store::pipeline::check_item(i)?;
        }
        self.write(move |tx| {
            let mut out = UpsertOutcome::default();
            for mut i in items {
                match read_item(tx, &i.id)? {
                    None => {
                        write_item(tx, &i)?;
                        out.inserted += 1;
                    }
                    Some(before) if replace => {
                        i.lease_owner = before.lease_owner.clone();
                        i.lease_until = before.lease_until;
                        i.requests = i.requests.max(before.requests);
                        i.created_at = before.created_at;
                        i.updated_at = before.updated_at;
                        if i == before {
                            out.unchanged += 1;
                        } else {
                            i.updated_at = Timestamp::now().max(before.updated_at);
                            write_item(tx, &i)?;
                            out.updated += 1;
                        }
                    }
                    Some(_) => out.unchanged += 1,
                }
            }
            Ok(out)
        })
        .await
    }

    async fn item(&self, id: &str) -> Result<Option<QueueItem>> {
        let id = id.to_string();
        self.read(move |c| read_item(c, &id)).await
    }

    async fn items_by_id(&self, ids: &[String]) -> Result<Vec<QueueItem>> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        self.read(move |c| {
            let mut out = Vec::with_capacity(ids.len());
            // Chunks stay well under SQLite's limit on a statement's parameters.
            for chunk in ids.chunks(500) {
                let rows = c
                    .prepare_cached(&format!(
                        "SELECT {ITEM_COLS} FROM pipeline_items WHERE id IN ({}) ORDER BY id",
                        marks(chunk.len())
                    ))
                    .and_then(|mut s| {
                        s.query_map(params_from_iter(chunk.iter()), item_from_row)?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .context("reading queue items")?;
                out.extend(rows);
            }
            Ok(out)
        })
        .await
    }

    async fn items(&self, f: &ItemFilter) -> Result<Vec<QueueItem>> {
        let f = f.clone();
        self.read(move |c| {
            let mut sql = format!("SELECT {ITEM_COLS} FROM pipeline_items WHERE 1 = 1");
            let mut args: Vec<String> = Vec::new();
            if let Some(s) = f.status {
                sql.push_str(" AND status = ?");
                args.push(s.as_str().to_string());
            }
            if let Some(e) = &f.ecosystem {
                sql.push_str(" AND ecosystem = ?");
                args.push(e.clone());
            }
            if let Some(a) = &f.after {
                sql.push_str(" AND id > ?");
                args.push(a.clone());
            }
            sql.push_str(&format!(" ORDER BY id LIMIT {}", f.limit.max(1)));
            c.prepare(&sql)
                .and_then(|mut s| {
                    s.query_map(params_from_iter(args.iter()), item_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .context("listing queue items")
        })
        .await
    }

    async fn all_items(&self) -> Result<Vec<QueueItem>> {
        self.read(|c| {
            c.prepare(&format!(
                "SELECT {ITEM_COLS} FROM pipeline_items ORDER BY ord, id"
            ))
            .and_then(|mut s| {
                s.query_map([], item_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("reading every queue item")
        })
        .await
    }

    async fn claim(&self, c: &Claim) -> Result<Vec<QueueItem>> {
        let c = c.clone();
        self.write(move |tx| {
            let now = c.now.as_millisecond();
            // Leases that ran out return their items to the queue.
            tx.prepare_cached(
                "UPDATE pipeline_items SET status = 'pending', lease_owner = NULL, \
                 lease_until = NULL WHERE status = 'in_progress' AND lease_until < ?1",
            )
            .and_then(|mut s| s.execute([now]))
            .context("returning expired leases")?;
            let mut sql = format!(
                "SELECT {ITEM_COLS} FROM pipeline_items WHERE status = 'pending' AND \
                 (next_retry_at IS NULL OR next_retry_at <= ?)"
            );
            let mut args: Vec<rusqlite::types::Value> = vec![now.into()];
            if !c.only.is_empty() {
                sql.push_str(&format!(" AND ecosystem IN ({})", marks(c.only.len())));
                args.extend(c.only.iter().map(|e| e.clone().into()));
            }
            if !c.except.is_empty() {
                sql.push_str(&format!(
                    " AND ecosystem NOT IN ({})",
                    marks(c.except.len())
                ));
                args.extend(c.except.iter().map(|e| e.clone().into()));
            }
            sql.push_str(&format!(
                " ORDER BY tier, score DESC, created_at, id LIMIT {}",
                c.limit
            ));
            let mut items = tx
                .prepare_cached(&sql)
                .and_then(|mut s| {
                    s.query_map(params_from_iter(args.iter()), item_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .context("choosing items to claim")?;
            let mut per_eco: BTreeMap<String, i64> = BTreeMap::new();
            for i in &mut items {
                i.status = ItemStatus::InProgress;
                i.lease_owner = Some(c.worker.clone());
                i.lease_until = Some(c.lease_until);
                i.updated_at = c.now;
                tx.prepare_cached(
                    "UPDATE pipeline_items SET status = 'in_progress', lease_owner = ?2, \
                     lease_until = ?3, updated_at = ?4 WHERE id = ?1",
                )
                .and_then(|mut s| {
                    s.execute(params![i.id, c.worker, c.lease_until.as_millisecond(), now])
                })
                .context("claiming an item")?;
                *per_eco.entry(i.ecosystem.clone()).or_default() += 1;
            }
            for (eco, n) in per_eco {
                add_activity(tx, c.now, &eco, n, 0, 0)?;
            }
            Ok(items)
        })
        .await
    }

    async fn report(&self, reports: Vec<ItemReport>, cfg: &BreakerConfig) -> Result<Vec<bool>> {
        for r in &reports {
            quiver_store::pipeline::check_item(&r.after)?;
        }
        let cfg = *cfg;
        self.write(move |tx| {
            let mut applied = Vec::with_capacity(reports.len());
            let mut outcomes: BTreeMap<String, Vec<bool>> = BTreeMap::new();
            let mut at = None;
            let mut activity: BTreeMap<(i64, String), (i64, i64)> = BTreeMap::new();
            for r in reports {
                let item = &r.after;
                match &r.lease_of {
                    // One guarded update both checks the lease and writes what a report
                    // changes (no read, and the item's indexes move only for the columns
                    // that did).
                    Some(worker) => {
                        let n = tx
                            .prepare_cached(
                                "UPDATE pipeline_items SET status = ?3, confidence = ?4, \
                                 failure_count = ?5, retries = ?6, next_retry_at = ?7, \
                                 lease_owner = ?8, lease_until = ?9, recipe = ?10, \
                                 updated_at = ?11 WHERE id = ?1 AND status = 'in_progress' \
                                 AND lease_owner = ?2",
                            )
                            .and_then(|mut s| {
                                s.execute(params![
                                    item.id,
                                    worker,
                                    item.status.as_str(),
                                    item.confidence,
                                    item.failure_count,
                                    item.retries,
                                    item.next_retry_at.map(|t| t.as_millisecond()),
                                    item.lease_owner,
                                    item.lease_until.map(|t| t.as_millisecond()),
                                    item.recipe,
                                    item.updated_at.as_millisecond(),
                                ])
                            })
                            .context("applying a report to its item")?;
                        if n == 0 {
                            applied.push(false);
                            continue;
                        }
                    }
                    None => write_item(tx, item)?,
                }
                for e in &r.results {
                    store_result(
                        tx,
                        &item.id,
                        &item.ecosystem,
                        r.batch_id.as_deref(),
                        r.lease_of.as_deref(),
                        e,
                        r.at,
                    )?;
                }
                if item.status == ItemStatus::Success {
                    tx.prepare_cached("DELETE FROM pipeline_blocks WHERE item_id = ?1")
                        .and_then(|mut s| s.execute([&item.id]))
                        .context("clearing blocks")?;
                }
                if !r.results.is_empty() {
                    let ok = r.results.iter().any(|e| e.passed);
                    outcomes.entry(item.ecosystem.clone()).or_default().push(ok);
                    let n = activity
                        .entry((hour_of(r.at), item.ecosystem.clone()))
                        .or_default();
                    n.0 += i64::from(ok);
                    n.1 += i64::from(!ok);
                }
                at = Some(at.map_or(r.at, |a: Timestamp| a.max(r.at)));
                applied.push(true);
            }
            for ((hour, eco), (passed, failed)) in activity {
                add_activity(tx, ts(hour), &eco, 0, passed, failed)?;
            }
            if let Some(at) = at {
                for (eco, oks) in outcomes {
                    let mut k = read_control(tx, &eco, at)?;
                    k.record(&oks, at, &cfg);
                    write_control(tx, &k)?;
                }
            }
            Ok(applied)
        })
        .await
    }

    async fn results(&self, f: &ResultFilter) -> Result<Vec<ResultRecord>> {
        let f = f.clone();
        self.read(move |c| {
            let mut sql = format!("SELECT {RESULT_COLS} FROM pipeline_results WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            let mut text = |sql: &mut String, col: &str, v: &Option<String>| {
                if let Some(v) = v {
                    sql.push_str(&format!(" AND {col} = ?"));
                    args.push(v.clone().into());
                }
            };
            text(&mut sql, "item_id", &f.item);
            text(&mut sql, "ecosystem", &f.ecosystem);
            text(&mut sql, "environment", &f.environment);
            text(&mut sql, "category", &f.category);
            if f.failures_only {
                sql.push_str(" AND passed = 0");
            }
            if let Some(s) = f.since {
                sql.push_str(" AND at >= ?");
                args.push(s.as_millisecond().into());
            }
            if let Some(b) = f.before {
                sql.push_str(" AND id < ?");
                args.push(b.into());
            }
            sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", f.limit.max(1)));
            c.prepare(&sql)
                .and_then(|mut s| {
                    s.query_map(params_from_iter(args.iter()), result_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .context("reading pipeline results")
        })
        .await
    }

    async fn record_history(&self, records: Vec<HistoryRecord>) -> Result<()> {
        self.write(move |tx| {
            let mut ecosystems: BTreeMap<String, String> = BTreeMap::new();
            for r in records {
                let eco = match ecosystems.get(&r.item_id) {
                    Some(e) => e.clone(),
                    None => {
                        let e = read_item(tx, &r.item_id)?
                            .ok_or_else(|| Error::not_found(format!("queue item {}", r.item_id)))?
                            .ecosystem;
                        ecosystems.insert(r.item_id.clone(), e.clone());
                        e
                    }
                };
                store_result(
                    tx,
                    &r.item_id,
                    &eco,
                    r.batch_id.as_deref(),
                    None,
                    &r.result,
                    r.at,
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn env_states(&self, environment: Option<&str>) -> Result<Vec<EnvState>> {
        let environment = environment.map(str::to_string);
        self.read(move |c| {
            c.prepare(
                "SELECT s.item_id, s.environment, s.passed, s.category, i.popularity, s.at \
                 FROM pipeline_env_states s JOIN pipeline_items i ON i.id = s.item_id \
                 WHERE (?1 IS NULL OR s.environment = ?1)",
            )
            .and_then(|mut s| {
                s.query_map([environment], |r| {
                    Ok(EnvState {
                        item_id: r.get(0)?,
                        environment: r.get(1)?,
                        passed: r.get(2)?,
                        category: r.get(3)?,
                        popularity: r.get(4)?,
                        at: ts(r.get(5)?),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("reading items' states per environment")
        })
        .await
    }

    async fn blocks(&self) -> Result<Vec<Block>> {
        self.read(|c| {
            c.prepare(&format!("{BLOCK_SELECT} WHERE i.status <> 'success'"))
                .and_then(|mut s| {
                    s.query_map([], block_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .context("reading blocks")
        })
        .await
    }

    async fn blocks_of(&self, deps: &[String]) -> Result<Vec<Block>> {
        if deps.is_empty() {
            return Ok(Vec::new());
        }
        let deps = deps.to_vec();
        self.read(move |c| {
            c.prepare(&format!(
                "{BLOCK_SELECT} WHERE b.item_id IN (SELECT item_id FROM pipeline_blocks \
                 WHERE dependency IN ({})) ORDER BY b.item_id",
                marks(deps.len())
            ))
            .and_then(|mut s| {
                s.query_map(params_from_iter(deps.iter()), block_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("reading the blocks of dependencies")
        })
        .await
    }

    async fn requeue(
        &self,
        ids: &[String],
        from: &[ItemStatus],
        at: Timestamp,
        audit: Audit,
    ) -> Result<Vec<String>> {
        let ids = ids.to_vec();
        let from: Vec<&'static str> = from.iter().map(|s| s.as_str()).collect();
        self.write(move |tx| {
            let mut changed = Vec::new();
            for id in ids {
                let Some(before) = read_item(tx, &id)? else {
                    continue;
                };
                if !from.contains(&before.status.as_str()) {
                    continue;
                }
                let mut after = before;
                after.status = ItemStatus::Pending;
                after.next_retry_at = None;
                after.lease_owner = None;
                after.lease_until = None;
                after.retries = 0;
                after.updated_at = at;
                write_item(tx, &after)?;
                tx.prepare_cached("DELETE FROM pipeline_blocks WHERE item_id = ?1")
                    .and_then(|mut s| s.execute([&id]))
                    .context("clearing blocks")?;
                changed.push(id);
            }
            if !changed.is_empty() {
                commit_audit_change::<(), _>(
                    tx,
                    audit,
                    None,
                    Some(&serde_json::json!({
                        "requeued": changed,
                    })),
                )?;
            }
            Ok(changed)
        })
        .await
    }

    async fn controls(&self) -> Result<Vec<Control>> {
        self.read(|c| {
            c.prepare(&format!(
                "SELECT {CONTROL_COLS} FROM pipeline_controls ORDER BY ecosystem"
            ))
            .and_then(|mut s| {
                s.query_map([], control_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("reading pipeline controls")
        })
        .await
    }

    async fn change_control(
        &self,
        ecosystem: &str,
        change: ControlChange,
        at: Timestamp,
        audit: Audit,
    ) -> Result<Control> {
        if ecosystem.is_empty() {
            return Err(Error::invalid("ecosystem", "must not be empty"));
        }
        let eco = ecosystem.to_string();
        self.write(move |tx| {
            let before = read_control(tx, &eco, at)?;
            let mut after = before.clone();
            change.apply(&mut after, at);
            write_control(tx, &after)?;
            commit_audit_change(tx, audit, Some(&before), Some(&after))?;
            Ok(after)
        })
        .await
    }

    async fn count_claims(&self, counts: &[(String, i64)], at: Timestamp) -> Result<()> {
        let counts = counts.to_vec();
        self.write(move |tx| {
            for (eco, n) in counts {
                let mut k = read_control(tx, &eco, at)?;
                k.count_claims(n, at);
                write_control(tx, &k)?;
            }
            Ok(())
        })
        .await
    }

    async fn record_checksum(
        &self,
        c: &Checksum,
        at: Timestamp,
        audit: Audit,
    ) -> Result<ChecksumOutcome> {
        let c = c.clone();
        self.write(move |tx| {
            let key = params![c.recipe, c.version, c.environment, c.asset];
            let known: Option<String> = tx
                .prepare_cached(
                    "SELECT checksum FROM pipeline_checksums WHERE recipe = ?1 AND version = ?2 \
                     AND environment = ?3 AND asset = ?4",
                )
                .and_then(|mut s| s.query_row(key, |r| r.get(0)).optional())
                .context("reading a checksum")?;
            let ms = at.as_millisecond();
            match known {
                None => {
                    tx.execute(
                        "INSERT INTO pipeline_checksums (recipe, version, environment, asset, \
                         checksum, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                        params![c.recipe, c.version, c.environment, c.asset, c.checksum, ms],
                    )
                    .context("recording a checksum")?;
                    Ok(ChecksumOutcome::New)
                }
                Some(k) if k == c.checksum => {
                    tx.execute(
                        "UPDATE pipeline_checksums SET last_seen = ?5 WHERE recipe = ?1 AND \
                         version = ?2 AND environment = ?3 AND asset = ?4",
                        params![c.recipe, c.version, c.environment, c.asset, ms],
                    )
                    .context("recording a checksum")?;
                    Ok(ChecksumOutcome::Same)
                }
                Some(expected) => {
                    let n = tx
                        .execute(
                            "INSERT OR IGNORE INTO pipeline_checksum_alerts (recipe, version, \
                             environment, asset, expected, observed, at) VALUES (?1, ?2, ?3, \
                             ?4, ?5, ?6, ?7)",
                            params![
                                c.recipe,
                                c.version,
                                c.environment,
                                c.asset,
                                expected,
                                c.checksum,
                                ms
                            ],
                        )
                        .context("raising a checksum alert")?;
                    let alert = tx
                        .query_row(
                            "SELECT id, recipe, version, environment, asset, expected, \
                             observed, at FROM pipeline_checksum_alerts WHERE recipe = ?1 AND \
                             version = ?2 AND environment = ?3 AND asset = ?4 AND observed = ?5",
                            params![c.recipe, c.version, c.environment, c.asset, c.checksum],
                            alert_from_row,
                        )
                        .context("reading a checksum alert")?;
                    if n > 0 {
                        commit_audit_change::<(), _>(tx, audit, None, Some(&alert))?;
                    }
                    Ok(ChecksumOutcome::Drift(alert))
                }
            }
        })
        .await
    }

    async fn checksum_alerts(
        &self,
        recipe: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChecksumAlert>> {
        let recipe = recipe.map(str::to_string);
        self.read(move |c| {
            c.prepare(&format!(
                "SELECT id, recipe, version, environment, asset, expected, observed, at FROM \
                 pipeline_checksum_alerts WHERE (?1 IS NULL OR recipe = ?1) ORDER BY id DESC \
                 LIMIT {}",
                limit.max(1)
            ))
            .and_then(|mut s| {
                s.query_map([recipe], alert_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("reading checksum alerts")
        })
        .await
    }

    async fn record_request(&self, item: QueueItem, client: &str, day: i64) -> Result<bool> {
        quiver_store::pipeline::check_item(&item)?;
        let client = client.to_string();
        self.write(move |tx| {
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO pipeline_requests (item_id, day, client) \
                     VALUES (?1, ?2, ?3)",
                    params![item.id, day, client],
                )
                .context("recording a request")?;
            if n == 0 {
                return Ok(false);
            }
            let mut i = read_item(tx, &item.id)?.unwrap_or(item);
            i.requests += 1;
            write_item(tx, &i)?;
            Ok(true)
        })
        .await
    }

    async fn depth(&self) -> Result<Vec<Depth>> {
        self.read(|c| {
            c.prepare(
                "SELECT ecosystem, status, COUNT(*) FROM pipeline_items GROUP BY ecosystem, \
                 status ORDER BY ecosystem, status",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    let status: String = r.get(1)?;
                    Ok(Depth {
                        ecosystem: r.get(0)?,
                        status: ItemStatus::parse(&status).unwrap_or(ItemStatus::Pending),
                        count: r.get::<_, i64>(2)?.max(0) as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("counting queue items")
        })
        .await
    }

    async fn activity(&self, since: i64) -> Result<Vec<Activity>> {
        self.read(move |c| {
            c.prepare(
                "SELECT hour, SUM(claimed), SUM(passed), SUM(failed) FROM pipeline_claims \
                 WHERE hour >= ?1 GROUP BY hour ORDER BY hour",
            )
            .and_then(|mut s| {
                s.query_map([since], |r| {
                    Ok(Activity {
                        hour: r.get(0)?,
                        claimed: r.get::<_, i64>(1)?.max(0) as u64,
                        passed: r.get::<_, i64>(2)?.max(0) as u64,
                        failed: r.get::<_, i64>(3)?.max(0) as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("reading pipeline activity")
        })
        .await
    }
}
