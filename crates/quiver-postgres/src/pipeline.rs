//! [`PipelineStore`] on PostgreSQL (migration `0018_pipeline`), for workers and operators
//! on any number of nodes.
//!
//! - A claim returns expired leases and takes its items with `FOR UPDATE SKIP LOCKED` in
//!   one transaction: concurrent claims skip each other's rows instead of waiting for
//!   them, and a row another claim took meanwhile is rechecked and skipped, so each item
//!   is taken by exactly one claim.
//! - A report locks its items (`FOR UPDATE`) and applies only while the reporting worker
//!   still holds the lease; an ecosystem's breaker row is locked (after an
//!   `INSERT … ON CONFLICT DO NOTHING` makes sure it exists) while the report's outcomes
//!   are recorded in it, so concurrent reports on any node add up. Valve changes and
//!   claim counts lock the row the same way, and a checksum's row is locked while it is
//!   compared.
//! - Writes that lock several items lock them in id order (byte order, `COLLATE "C"`),
//!   then hourly counts, then valves, so that concurrent writers never wait for each other
//!   in a cycle.
//! - The decisions and arithmetic are the shared ones of `quiver_store::pipeline`
//!   ([`Control::record`], [`ControlChange::apply`], [`Control::count_claims`],
//!   [`QueueItem::score`]); the behaviour is the SQLite backend's.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use quiver_model::{Context, Error, Result};
use quiver_store::pipeline::{
    check_item, Activity, Block, BreakerConfig, BreakerState, Checksum, ChecksumAlert,
    ChecksumOutcome, Claim, Control, ControlChange, Depth, EnvResult, EnvState, HistoryRecord,
    ItemFilter, ItemReport, ItemStatus, PipelineStore, QueueItem, ResultFilter, ResultRecord,
    UpsertOutcome,
};
use quiver_store::Audit;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::accounts::commit_audit_change;
use crate::store::BoxError;
use crate::PostgresStore;

type Param = Box<dyn ToSql + Sync + Send>;

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| &**p as _).collect()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn limit_of(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn hour_of(at: Timestamp) -> i64 {
    at.as_millisecond().div_euclid(3_600_000) * 3_600_000
}

const ITEM_COLS: &str = "id, ecosystem, name, tier, popularity, requests, status, confidence, \
     failure_count, retries, next_retry_at, lease_owner, lease_until, recipe, imported, ord, \
     created_at, updated_at";

/// The claim order (tier, score descending, age, id in byte order).
const CLAIM_ORDER: &str = "tier, score DESC, created_at, id COLLATE \"C\"";

fn item_from_row(r: &Row) -> Result<QueueItem> {
    let decode = || -> std::result::Result<QueueItem, BoxError> {
        let status: String = r.try_get(6)?;
        let imported: Option<String> = r.try_get(14)?;
        Ok(QueueItem {
            id: r.try_get(0)?,
            ecosystem: r.try_get(1)?,
            name: r.try_get(2)?,
            tier: r.try_get(3)?,
            popularity: r.try_get(4)?,
            requests: r.try_get(5)?,
            status: ItemStatus::parse(&status).unwrap_or(ItemStatus::Pending),
            confidence: r.try_get(7)?,
            failure_count: r.try_get(8)?,
            retries: r.try_get(9)?,
            next_retry_at: r.try_get::<_, Option<i64>>(10)?.map(ts),
            lease_owner: r.try_get(11)?,
            lease_until: r.try_get::<_, Option<i64>>(12)?.map(ts),
            recipe: r.try_get(13)?,
            imported: imported.and_then(|s| serde_json::from_str(&s).ok()),
            ord: r.try_get(15)?,
            created_at: ts(r.try_get(16)?),
            updated_at: ts(r.try_get(17)?),
        })
    };
    decode().context("decoding a queue item")
}

/// The insert of a whole item (and its score): replacing an existing row when `replace`,
/// else doing nothing when the id exists.
fn item_write_sql(replace: bool) -> String {
    let conflict = if replace {
        let set: Vec<String> = ITEM_COLS
            .split(", ")
            .map(str::trim)
            .filter(|c| *c != "id")
            .chain(["score"])
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        format!("DO UPDATE SET {}", set.join(", "))
    } else {
        "DO NOTHING".to_string()
    };
    format!(
        "INSERT INTO pipeline_items ({ITEM_COLS}, score) VALUES ($1, $2, $3, $4, $5, $6, $7, \
         $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) ON CONFLICT (id) {conflict}"
    )
}

/// Write `i` whole (replacing the row when `replace`, else only if the id is new); the
/// rows written.
async fn put_item<C: GenericClient>(c: &C, i: &QueueItem, replace: bool) -> Result<u64> {
    let stmt = c
        .prepare_cached(&item_write_sql(replace))
        .await
        .context("preparing a queue item write")?;
    let status = i.status.as_str();
    let next_retry_at = i.next_retry_at.map(|t| t.as_millisecond());
    let lease_until = i.lease_until.map(|t| t.as_millisecond());
    let imported = i.imported.as_ref().map(|v| v.to_string());
    let created_at = i.created_at.as_millisecond();
    let updated_at = i.updated_at.as_millisecond();
    let score = i.score();
    c.execute(
        &stmt,
        &[
            &i.id,
            &i.ecosystem,
            &i.name,
            &i.tier,
            &i.popularity,
            &i.requests,
            &status,
            &i.confidence,
            &i.failure_count,
            &i.retries,
            &next_retry_at,
            &i.lease_owner,
            &lease_until,
            &i.recipe,
            &imported,
            &i.ord,
            &created_at,
            &updated_at,
            &score,
        ],
    )
    .await
    .context("writing a queue item")
}

/// One item, locked for update when `lock`.
async fn read_item<C: GenericClient>(c: &C, id: &str, lock: bool) -> Result<Option<QueueItem>> {
    let sql = format!(
        "SELECT {ITEM_COLS} FROM pipeline_items WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let stmt = c
        .prepare_cached(&sql)
        .await
        .context("preparing a queue item read")?;
    c.query_opt(&stmt, &[&id])
        .await
        .context("reading a queue item")?
        .as_ref()
        .map(item_from_row)
        .transpose()
}

/// Lock the items of `ids` that exist, in id order (the order every writer locks items
/// in); their ids and ecosystems.
async fn lock_items<C: GenericClient>(c: &C, ids: &[&str]) -> Result<BTreeMap<String, String>> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let rows = c
        .query(
            "SELECT id, ecosystem FROM pipeline_items WHERE id = ANY($1) \
             ORDER BY id COLLATE \"C\" FOR UPDATE",
            &[&ids],
        )
        .await
        .context("locking queue items")?;
    rows.iter()
        .map(|r| {
            let decode = || -> std::result::Result<(String, String), BoxError> {
                Ok((r.try_get(0)?, r.try_get(1)?))
            };
            decode().context("decoding a queue item")
        })
        .collect()
}

/// Lock the items of `ids` that exist, in id order, as [`lock_items`] does; their status
/// and lease holder.
async fn lock_leases<C: GenericClient>(
    c: &C,
    ids: &[&str],
) -> Result<BTreeMap<String, (String, Option<String>)>> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let rows = c
        .query(
            "SELECT id, status, lease_owner FROM pipeline_items WHERE id = ANY($1) \
             ORDER BY id COLLATE \"C\" FOR UPDATE",
            &[&ids],
        )
        .await
        .context("locking queue items")?;
    rows.iter()
        .map(|r| {
            let decode = || -> std::result::Result<(String, (String, Option<String>)), BoxError> {
                Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?)))
            };
            decode().context("decoding a queue item")
        })
        .collect()
}

/// Write what reports change of their (locked, leased) items, in one statement.
async fn apply_reports<C: GenericClient>(c: &C, items: &[&QueueItem]) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    // An UPDATE … FROM takes one source row per target row: the last report of an item.
    let last: BTreeMap<&str, &QueueItem> = items.iter().map(|i| (i.id.as_str(), *i)).collect();
    let items: Vec<&QueueItem> = last.into_values().collect();
    let id: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let status: Vec<&str> = items.iter().map(|i| i.status.as_str()).collect();
    let confidence: Vec<Option<&str>> = items.iter().map(|i| i.confidence.as_deref()).collect();
    let failure_count: Vec<i64> = items.iter().map(|i| i.failure_count).collect();
    let retries: Vec<i64> = items.iter().map(|i| i.retries).collect();
    let next_retry_at: Vec<Option<i64>> = items
        .iter()
        .map(|i| i.next_retry_at.map(|t| t.as_millisecond()))
        .collect();
    let lease_owner: Vec<Option<&str>> = items.iter().map(|i| i.lease_owner.as_deref()).collect();
    let lease_until: Vec<Option<i64>> = items
        .iter()
        .map(|i| i.lease_until.map(|t| t.as_millisecond()))
        .collect();
    let recipe: Vec<Option<&str>> = items.iter().map(|i| i.recipe.as_deref()).collect();
    let updated_at: Vec<i64> = items
        .iter()
        .map(|i| i.updated_at.as_millisecond())
        .collect();
    c.execute(
        "UPDATE pipeline_items p SET status = u.status, confidence = u.confidence, \
         failure_count = u.failure_count, retries = u.retries, next_retry_at = \
         u.next_retry_at, lease_owner = u.lease_owner, lease_until = u.lease_until, recipe = \
         u.recipe, updated_at = u.updated_at FROM unnest($1::text[], $2::text[], $3::text[], \
         $4::int8[], $5::int8[], $6::int8[], $7::text[], $8::int8[], $9::text[], $10::int8[]) \
         AS u(id, status, confidence, failure_count, retries, next_retry_at, lease_owner, \
         lease_until, recipe, updated_at) WHERE p.id = u.id",
        &[
            &id,
            &status,
            &confidence,
            &failure_count,
            &retries,
            &next_retry_at,
            &lease_owner,
            &lease_until,
            &recipe,
            &updated_at,
        ],
    )
    .await
    .context("applying reports to their items")?;
    Ok(())
}

const RESULT_COLS: &str = "id, item_id, ecosystem, batch_id, worker, environment, passed, \
     category, exit_code, message, blocked_by, at";

fn result_from_row(r: &Row) -> Result<ResultRecord> {
    let decode = || -> std::result::Result<ResultRecord, BoxError> {
        let blocked: String = r.try_get(10)?;
        Ok(ResultRecord {
            id: r.try_get(0)?,
            item_id: r.try_get(1)?,
            ecosystem: r.try_get(2)?,
            batch_id: r.try_get(3)?,
            worker: r.try_get(4)?,
            result: EnvResult {
                environment: r.try_get(5)?,
                passed: r.try_get(6)?,
                category: r.try_get(7)?,
                exit_code: r.try_get(8)?,
                message: r.try_get(9)?,
                blocked_by: serde_json::from_str(&blocked).unwrap_or_default(),
            },
            at: ts(r.try_get(11)?),
        })
    };
    decode().context("decoding a pipeline result")
}

const CONTROL_COLS: &str = "ecosystem, paused, reason, breaker, opened_at, recent, \
     claims_per_hour, window_start, window_claims, updated_at";

fn control_from_row(r: &Row) -> Result<Control> {
    let decode = || -> std::result::Result<Control, BoxError> {
        let breaker: String = r.try_get(3)?;
        Ok(Control {
            ecosystem: r.try_get(0)?,
            paused: r.try_get(1)?,
            reason: r.try_get(2)?,
            breaker: BreakerState::parse(&breaker).unwrap_or_default(),
            opened_at: r.try_get::<_, Option<i64>>(4)?.map(ts),
            recent: r.try_get(5)?,
            claims_per_hour: r.try_get(6)?,
            window_start: r.try_get(7)?,
            window_claims: r.try_get(8)?,
            updated_at: ts(r.try_get(9)?),
        })
    };
    decode().context("decoding a pipeline control")
}

/// Write a control whole (replacing the row when `replace`, else only if it is new).
async fn put_control<C: GenericClient>(c: &C, k: &Control, replace: bool) -> Result<()> {
    let conflict = if replace {
        "DO UPDATE SET paused = EXCLUDED.paused, reason = EXCLUDED.reason, \
         breaker = EXCLUDED.breaker, opened_at = EXCLUDED.opened_at, recent = EXCLUDED.recent, \
         claims_per_hour = EXCLUDED.claims_per_hour, window_start = EXCLUDED.window_start, \
         window_claims = EXCLUDED.window_claims, updated_at = EXCLUDED.updated_at"
    } else {
        "DO NOTHING"
    };
    let stmt = c
        .prepare_cached(&format!(
            "INSERT INTO pipeline_controls ({CONTROL_COLS}) VALUES ($1, $2, $3, $4, $5, $6, \
             $7, $8, $9, $10) ON CONFLICT (ecosystem) {conflict}"
        ))
        .await
        .context("preparing a pipeline control write")?;
    c.execute(
        &stmt,
        &[
            &k.ecosystem,
            &k.paused,
            &k.reason,
            &k.breaker.as_str(),
            &k.opened_at.map(|t| t.as_millisecond()),
            &k.recent,
            &k.claims_per_hour,
            &k.window_start,
            &k.window_claims,
            &k.updated_at.as_millisecond(),
        ],
    )
    .await
    .context("writing a pipeline control")?;
    Ok(())
}

/// An ecosystem's control, locked for the rest of the transaction: a new one (as of `at`)
/// is inserted first when there is none, so that concurrent writers queue on the row.
async fn lock_control<C: GenericClient>(c: &C, eco: &str, at: Timestamp) -> Result<Control> {
    put_control(c, &Control::new(eco, at), false).await?;
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {CONTROL_COLS} FROM pipeline_controls WHERE ecosystem = $1 FOR UPDATE"
        ))
        .await
        .context("preparing a pipeline control read")?;
    let row = c
        .query_one(&stmt, &[&eco])
        .await
        .context("locking a pipeline control")?;
    control_from_row(&row)
}

/// One environment's result of an item, to be stored.
struct ResultRow<'a> {
    item_id: &'a str,
    ecosystem: &'a str,
    batch_id: Option<&'a str>,
    worker: Option<&'a str>,
    result: &'a EnvResult,
    at: i64,
}

/// Store results, each also made its item's known outcome on its environment when it is
/// at least as new as that outcome (its blocks there then replaced): a handful of
/// statements over arrays whatever the number of rows, as a row-at-a-time loop would
/// cost a round trip per statement and row.
async fn store_results<C: GenericClient>(c: &C, rows: &[ResultRow<'_>]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let n = rows.len();
    let mut item_id = Vec::with_capacity(n);
    let mut ecosystem = Vec::with_capacity(n);
    let mut batch_id = Vec::with_capacity(n);
    let mut worker = Vec::with_capacity(n);
    let mut environment = Vec::with_capacity(n);
    let mut passed = Vec::with_capacity(n);
    let mut category = Vec::with_capacity(n);
    let mut exit_code = Vec::with_capacity(n);
    let mut message = Vec::with_capacity(n);
    let mut blocked_by = Vec::with_capacity(n);
    let mut at = Vec::with_capacity(n);
    for r in rows {
        item_id.push(r.item_id);
        ecosystem.push(r.ecosystem);
        batch_id.push(r.batch_id);
        worker.push(r.worker);
        environment.push(r.result.environment.as_str());
        passed.push(r.result.passed);
        category.push(r.result.category.as_deref());
        exit_code.push(r.result.exit_code);
        message.push(r.result.message.as_deref());
        blocked_by.push(serde_json::to_string(&r.result.blocked_by).unwrap_or_default());
        at.push(r.at);
    }
    c.execute(
        "INSERT INTO pipeline_results (item_id, ecosystem, batch_id, worker, environment, \
         passed, category, exit_code, message, blocked_by, at) SELECT * FROM \
         unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[], \
         $7::text[], $8::int4[], $9::text[], $10::text[], $11::int8[])",
        &[
            &item_id,
            &ecosystem,
            &batch_id,
            &worker,
            &environment,
            &passed,
            &category,
            &exit_code,
            &message,
            &blocked_by,
            &at,
        ],
    )
    .await
    .context("recording results")?;
    // One row per item and environment for the upsert (it may touch a row once): the
    // newest, the later of equals, as applying the rows one by one would leave it.
    let mut newest: BTreeMap<(&str, &str), &ResultRow<'_>> = BTreeMap::new();
    for r in rows {
        let key = (r.item_id, r.result.environment.as_str());
        match newest.get(&key) {
            Some(seen) if seen.at > r.at => {}
            _ => {
                newest.insert(key, r);
            }
        }
    }
    let (mut s_item, mut s_env, mut s_passed, mut s_category, mut s_at) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((item, env), r) in &newest {
        s_item.push(*item);
        s_env.push(*env);
        s_passed.push(r.result.passed);
        s_category.push(r.result.category.as_deref());
        s_at.push(r.at);
    }
    let changed = c
        .query(
            "INSERT INTO pipeline_env_states (item_id, environment, passed, category, at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::bool[], $4::text[], $5::int8[]) \
             ON CONFLICT (item_id, environment) DO UPDATE SET passed = EXCLUDED.passed, \
             category = EXCLUDED.category, at = EXCLUDED.at \
             WHERE EXCLUDED.at >= pipeline_env_states.at RETURNING item_id, environment",
            &[&s_item, &s_env, &s_passed, &s_category, &s_at],
        )
        .await
        .context("recording items' states per environment")?;
    if changed.is_empty() {
        return Ok(());
    }
    let mut d_item: Vec<String> = Vec::with_capacity(changed.len());
    let mut d_env: Vec<String> = Vec::with_capacity(changed.len());
    for r in &changed {
        d_item.push(r.try_get(0).context("decoding a state")?);
        d_env.push(r.try_get(1).context("decoding a state")?);
    }
    c.execute(
        "DELETE FROM pipeline_blocks b USING unnest($1::text[], $2::text[]) AS u(item_id, \
         environment) WHERE b.item_id = u.item_id AND b.environment = u.environment",
        &[&d_item, &d_env],
    )
    .await
    .context("replacing blocks")?;
    let (mut b_item, mut b_env, mut b_dep) = (Vec::new(), Vec::new(), Vec::new());
    for (item, env) in d_item.iter().zip(&d_env) {
        let Some(r) = newest.get(&(item.as_str(), env.as_str())) else {
            continue;
        };
        if r.result.passed {
            continue;
        }
        for d in &r.result.blocked_by {
            b_item.push(item.as_str());
            b_env.push(env.as_str());
            b_dep.push(d.as_str());
        }
    }
    if !b_item.is_empty() {
        c.execute(
            "INSERT INTO pipeline_blocks (item_id, environment, dependency) SELECT * FROM \
             unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING",
            &[&b_item, &b_env, &b_dep],
        )
        .await
        .context("recording blocks")?;
    }
    Ok(())
}

/// Add claims and outcomes to the hourly counts, in key order.
async fn add_activity<C: GenericClient>(
    c: &C,
    counts: &BTreeMap<(i64, String), (i64, i64, i64)>,
) -> Result<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let stmt = c
        .prepare_cached(
            "INSERT INTO pipeline_claims (hour, ecosystem, claimed, passed, failed) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (hour, ecosystem) DO UPDATE SET \
             claimed = pipeline_claims.claimed + EXCLUDED.claimed, \
             passed = pipeline_claims.passed + EXCLUDED.passed, \
             failed = pipeline_claims.failed + EXCLUDED.failed",
        )
        .await
        .context("preparing a pipeline activity count")?;
    for ((hour, eco), (claimed, passed, failed)) in counts {
        c.execute(&stmt, &[hour, eco, claimed, passed, failed])
            .await
            .context("counting pipeline activity")?;
    }
    Ok(())
}

fn block_from_row(r: &Row) -> Result<Block> {
    let decode = || -> std::result::Result<Block, BoxError> {
        let status: String = r.try_get(4)?;
        Ok(Block {
            item_id: r.try_get(0)?,
            ecosystem: r.try_get(1)?,
            name: r.try_get(2)?,
            popularity: r.try_get(3)?,
            status: ItemStatus::parse(&status).unwrap_or(ItemStatus::Pending),
            environment: r.try_get(5)?,
            dependency: r.try_get(6)?,
        })
    };
    decode().context("decoding a block")
}

const BLOCK_SELECT: &str = "SELECT b.item_id, i.ecosystem, i.name, i.popularity, i.status, \
     b.environment, b.dependency FROM pipeline_blocks b JOIN pipeline_items i ON i.id = b.item_id";

const ALERT_COLS: &str = "id, recipe, version, environment, asset, expected, observed, at";

fn alert_from_row(r: &Row) -> Result<ChecksumAlert> {
    let decode = || -> std::result::Result<ChecksumAlert, BoxError> {
        Ok(ChecksumAlert {
            id: r.try_get(0)?,
            recipe: r.try_get(1)?,
            version: r.try_get(2)?,
            environment: r.try_get(3)?,
            asset: r.try_get(4)?,
            expected: r.try_get(5)?,
            observed: r.try_get(6)?,
            at: ts(r.try_get(7)?),
        })
    };
    decode().context("decoding a checksum alert")
}

#[async_trait]
impl PipelineStore for PostgresStore {
    async fn upsert_items(&self, items: Vec<QueueItem>, replace: bool) -> Result<UpsertOutcome> {
        for i in &items {
            check_item(i)?;
        }
        // In id order (a stable sort: the items of one id keep theirs), the order every
        // writer locks items in; the outcome is the same as in the given order.
        let mut items = items;
        items.sort_by(|a, b| a.id.cmp(&b.id));
        let mut c = self.pooled().await?;
        let tx = c.transaction().await.context("beginning a queue write")?;
        let mut out = UpsertOutcome::default();
        for mut i in items {
            if put_item(&tx, &i, false).await? == 1 {
                out.inserted += 1;
                continue;
            }
            if !replace {
                out.unchanged += 1;
                continue;
            }
            let before = read_item(&tx, &i.id, true).await?.ok_or_else(|| {
                Error::internal("replacing a queue item", "row not found after a conflict")
            })?;
            i.lease_owner = before.lease_owner.clone();
            i.lease_until = before.lease_until;
            i.requests = i.requests.max(before.requests);
            i.created_at = before.created_at;
            i.updated_at = before.updated_at;
            if i == before {
                out.unchanged += 1;
            } else {
                i.updated_at = Timestamp::now().max(before.updated_at);
                put_item(&tx, &i, true).await?;
                out.updated += 1;
            }
        }
        tx.commit().await.context("committing a queue write")?;
        Ok(out)
    }

    async fn item(&self, id: &str) -> Result<Option<QueueItem>> {
        let c = self.pooled().await?;
        read_item(&c, id, false).await
    }

    async fn items_by_id(&self, ids: &[String]) -> Result<Vec<QueueItem>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.pooled().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {ITEM_COLS} FROM pipeline_items WHERE id = ANY($1) ORDER BY id COLLATE \"C\""
            ))
            .await
            .context("preparing a queue items read")?;
        c.query(&stmt, &[&ids])
            .await
            .context("reading queue items")?
            .iter()
            .map(item_from_row)
            .collect()
    }

    async fn items(&self, f: &ItemFilter) -> Result<Vec<QueueItem>> {
        let mut sql = format!("SELECT {ITEM_COLS} FROM pipeline_items WHERE TRUE");
        let mut params: Vec<Param> = Vec::new();
        if let Some(s) = f.status {
            params.push(Box::new(s.as_str()));
            sql.push_str(&format!(" AND status = ${}", params.len()));
        }
        if let Some(e) = &f.ecosystem {
            params.push(Box::new(e.clone()));
            sql.push_str(&format!(" AND ecosystem = ${}", params.len()));
        }
        if let Some(a) = &f.after {
            params.push(Box::new(a.clone()));
            sql.push_str(&format!(" AND id COLLATE \"C\" > ${}", params.len()));
        }
        params.push(Box::new(limit_of(f.limit.max(1))));
        sql.push_str(&format!(
            " ORDER BY id COLLATE \"C\" LIMIT ${}",
            params.len()
        ));
        let c = self.pooled().await?;
        c.query(&sql, &refs(&params))
            .await
            .context("listing queue items")?
            .iter()
            .map(item_from_row)
            .collect()
    }

    async fn all_items(&self) -> Result<Vec<QueueItem>> {
        let c = self.pooled().await?;
        c.query(
            &format!("SELECT {ITEM_COLS} FROM pipeline_items ORDER BY ord, id COLLATE \"C\""),
            &[],
        )
        .await
        .context("reading every queue item")?
        .iter()
        .map(item_from_row)
        .collect()
    }

    async fn claim(&self, c: &Claim) -> Result<Vec<QueueItem>> {
        let now = c.now.as_millisecond();
        let mut client = self.pooled().await?;
        let tx = client.transaction().await.context("beginning a claim")?;
        // Leases that ran out return their items to the queue. Rows another transaction
        // holds are skipped rather than waited for: a concurrent claim is returning them
        // (or took them), or their worker is reporting on them.
        tx.execute(
            "UPDATE pipeline_items SET status = 'pending', lease_owner = NULL, \
             lease_until = NULL WHERE id IN (SELECT id FROM pipeline_items \
             WHERE status = 'in_progress' AND lease_until < $1 FOR UPDATE SKIP LOCKED)",
            &[&now],
        )
        .await
        .context("returning expired leases")?;
        let mut params: Vec<Param> = vec![
            Box::new(now),
            Box::new(c.worker.clone()),
            Box::new(c.lease_until.as_millisecond()),
        ];
        let mut cond =
            String::from("status = 'pending' AND (next_retry_at IS NULL OR next_retry_at <= $1)");
        if !c.only.is_empty() {
            params.push(Box::new(c.only.clone()));
            cond.push_str(&format!(" AND ecosystem = ANY(${})", params.len()));
        }
        if !c.except.is_empty() {
            params.push(Box::new(c.except.clone()));
            cond.push_str(&format!(" AND NOT (ecosystem = ANY(${}))", params.len()));
        }
        params.push(Box::new(limit_of(c.limit)));
        // Rows locked by a concurrent claim are skipped, and a row it took and committed
        // meanwhile no longer passes the recheck of `cond`: each item is taken once.
        let sql = format!(
            "WITH picked AS (SELECT id FROM pipeline_items WHERE {cond} ORDER BY {CLAIM_ORDER} \
             LIMIT ${} FOR UPDATE SKIP LOCKED), \
             taken AS (UPDATE pipeline_items i SET status = 'in_progress', lease_owner = $2, \
             lease_until = $3, updated_at = $1 FROM picked WHERE i.id = picked.id \
             RETURNING i.*) \
             SELECT {ITEM_COLS} FROM taken ORDER BY {CLAIM_ORDER}",
            params.len()
        );
        let items = tx
            .query(&sql, &refs(&params))
            .await
            .context("claiming queue items")?
            .iter()
            .map(item_from_row)
            .collect::<Result<Vec<_>>>()?;
        let mut counts: BTreeMap<(i64, String), (i64, i64, i64)> = BTreeMap::new();
        for i in &items {
            counts
                .entry((hour_of(c.now), i.ecosystem.clone()))
                .or_default()
                .0 += 1;
        }
        add_activity(&tx, &counts).await?;
        tx.commit().await.context("committing a claim")?;
        Ok(items)
    }

    async fn report(&self, reports: Vec<ItemReport>, cfg: &BreakerConfig) -> Result<Vec<bool>> {
        for r in &reports {
            check_item(&r.after)?;
        }
        let mut c = self.pooled().await?;
        let tx = c.transaction().await.context("beginning a report")?;
        let ids: Vec<&str> = reports.iter().map(|r| r.after.id.as_str()).collect();
        let mut held = lock_leases(&tx, &ids).await?;
        let mut applied = Vec::with_capacity(reports.len());
        let mut outcomes: BTreeMap<String, Vec<bool>> = BTreeMap::new();
        let mut counts: BTreeMap<(i64, String), (i64, i64, i64)> = BTreeMap::new();
        let mut at: Option<Timestamp> = None;
        let mut leased: Vec<&QueueItem> = Vec::new();
        let mut rows: Vec<ResultRow<'_>> = Vec::new();
        let mut succeeded: Vec<&str> = Vec::new();
        for r in &reports {
            let item = &r.after;
            match &r.lease_of {
                Some(worker) => {
                    let holds = held.get(&item.id).is_some_and(|(status, owner)| {
                        status == ItemStatus::InProgress.as_str()
                            && owner.as_deref() == Some(worker.as_str())
                    });
                    if !holds {
                        applied.push(false);
                        continue;
                    }
                    // As the item will stand for a later report of it in this batch.
                    held.insert(
                        item.id.clone(),
                        (item.status.as_str().to_string(), item.lease_owner.clone()),
                    );
                    leased.push(item);
                }
                None => {
                    put_item(&tx, item, true).await?;
                }
            }
            rows.extend(r.results.iter().map(|e| ResultRow {
                item_id: &item.id,
                ecosystem: &item.ecosystem,
                batch_id: r.batch_id.as_deref(),
                worker: r.lease_of.as_deref(),
                result: e,
                at: r.at.as_millisecond(),
            }));
            if item.status == ItemStatus::Success {
                succeeded.push(&item.id);
            }
            if !r.results.is_empty() {
                let ok = r.results.iter().any(|e| e.passed);
                outcomes.entry(item.ecosystem.clone()).or_default().push(ok);
                let n = counts
                    .entry((hour_of(r.at), item.ecosystem.clone()))
                    .or_default();
                n.1 += i64::from(ok);
                n.2 += i64::from(!ok);
            }
            at = Some(at.map_or(r.at, |a| a.max(r.at)));
            applied.push(true);
        }
        apply_reports(&tx, &leased).await?;
        store_results(&tx, &rows).await?;
        if !succeeded.is_empty() {
            tx.execute(
                "DELETE FROM pipeline_blocks WHERE item_id = ANY($1)",
                &[&succeeded],
            )
            .await
            .context("clearing blocks")?;
        }
        add_activity(&tx, &counts).await?;
        if let Some(at) = at {
            for (eco, oks) in outcomes {
                let mut k = lock_control(&tx, &eco, at).await?;
                k.record(&oks, at, cfg);
                put_control(&tx, &k, true).await?;
            }
        }
        tx.commit().await.context("committing a report")?;
        Ok(applied)
    }

    async fn results(&self, f: &ResultFilter) -> Result<Vec<ResultRecord>> {
        let mut sql = format!("SELECT {RESULT_COLS} FROM pipeline_results WHERE TRUE");
        let mut params: Vec<Param> = Vec::new();
        for (col, v) in [
            ("item_id", &f.item),
            ("ecosystem", &f.ecosystem),
            ("environment", &f.environment),
            ("category", &f.category),
        ] {
            if let Some(v) = v {
                params.push(Box::new(v.clone()));
                sql.push_str(&format!(" AND {col} = ${}", params.len()));
            }
        }
        if f.failures_only {
            sql.push_str(" AND NOT passed");
        }
        if let Some(s) = f.since {
            params.push(Box::new(s.as_millisecond()));
            sql.push_str(&format!(" AND at >= ${}", params.len()));
        }
        if let Some(b) = f.before {
            params.push(Box::new(b));
            sql.push_str(&format!(" AND id < ${}", params.len()));
        }
        params.push(Box::new(limit_of(f.limit.max(1))));
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", params.len()));
        let c = self.pooled().await?;
        c.query(&sql, &refs(&params))
            .await
            .context("reading pipeline results")?
            .iter()
            .map(result_from_row)
            .collect()
    }

    async fn record_history(&self, records: Vec<HistoryRecord>) -> Result<()> {
        let mut c = self.pooled().await?;
        let tx = c.transaction().await.context("beginning a history write")?;
        // The items are locked, as a report locks them, so that a report and history on
        // one item do not interleave their outcomes and blocks.
        let ids: Vec<&str> = records.iter().map(|r| r.item_id.as_str()).collect();
        let ecosystems = lock_items(&tx, &ids).await?;
        let mut rows = Vec::with_capacity(records.len());
        for r in &records {
            let eco = ecosystems
                .get(&r.item_id)
                .ok_or_else(|| Error::not_found(format!("queue item {}", r.item_id)))?;
            rows.push(ResultRow {
                item_id: &r.item_id,
                ecosystem: eco,
                batch_id: r.batch_id.as_deref(),
                worker: None,
                result: &r.result,
                at: r.at.as_millisecond(),
            });
        }
        store_results(&tx, &rows).await?;
        tx.commit().await.context("committing a history write")?;
        Ok(())
    }

    async fn env_states(&self, environment: Option<&str>) -> Result<Vec<EnvState>> {
        let c = self.pooled().await?;
        c.query(
            "SELECT s.item_id, s.environment, s.passed, s.category, i.popularity, s.at \
             FROM pipeline_env_states s JOIN pipeline_items i ON i.id = s.item_id \
             WHERE ($1::text IS NULL OR s.environment = $1)",
            &[&environment],
        )
        .await
        .context("reading items' states per environment")?
        .iter()
        .map(|r| {
            let decode = || -> std::result::Result<EnvState, BoxError> {
                Ok(EnvState {
                    item_id: r.try_get(0)?,
                    environment: r.try_get(1)?,
                    passed: r.try_get(2)?,
                    category: r.try_get(3)?,
                    popularity: r.try_get(4)?,
                    at: ts(r.try_get(5)?),
                })
            };
            decode().context("decoding an item's state on an environment")
        })
        .collect()
    }

    async fn blocks(&self) -> Result<Vec<Block>> {
        let c = self.pooled().await?;
        c.query(&format!("{BLOCK_SELECT} WHERE i.status <> 'success'"), &[])
            .await
            .context("reading blocks")?
            .iter()
            .map(block_from_row)
            .collect()
    }

    async fn blocks_of(&self, deps: &[String]) -> Result<Vec<Block>> {
        if deps.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.pooled().await?;
        c.query(
            &format!(
                "{BLOCK_SELECT} WHERE b.item_id IN (SELECT item_id FROM pipeline_blocks \
                 WHERE dependency = ANY($1)) ORDER BY b.item_id COLLATE \"C\""
            ),
            &[&deps],
        )
        .await
        .context("reading the blocks of dependencies")?
        .iter()
        .map(block_from_row)
        .collect()
    }

    async fn requeue(
        &self,
        ids: &[String],
        from: &[ItemStatus],
        at: Timestamp,
        audit: Audit,
    ) -> Result<Vec<String>> {
        let mut c = self.pooled().await?;
        let tx = c.transaction().await.context("beginning a requeue")?;
        let locked: Vec<&str> = ids.iter().map(String::as_str).collect();
        lock_items(&tx, &locked).await?;
        let mut changed = Vec::new();
        for id in ids {
            let Some(before) = read_item(&tx, id, true).await? else {
                continue;
            };
            if !from.contains(&before.status) {
                continue;
            }
            let mut after = before;
            after.status = ItemStatus::Pending;
            after.next_retry_at = None;
            after.lease_owner = None;
            after.lease_until = None;
            after.retries = 0;
            after.updated_at = at;
            put_item(&tx, &after, true).await?;
            tx.execute("DELETE FROM pipeline_blocks WHERE item_id = $1", &[id])
                .await
                .context("clearing blocks")?;
            changed.push(id.clone());
        }
        if !changed.is_empty() {
            commit_audit_change::<_, (), _>(
                &tx,
                audit,
                None,
                Some(&serde_json::json!({
                    "requeued": changed,
                })),
            )
            .await?;
        }
        tx.commit().await.context("committing a requeue")?;
        Ok(changed)
    }

    async fn controls(&self) -> Result<Vec<Control>> {
        let c = self.pooled().await?;
        c.query(
            &format!(
                "SELECT {CONTROL_COLS} FROM pipeline_controls ORDER BY ecosystem COLLATE \"C\""
            ),
            &[],
        )
        .await
        .context("reading pipeline controls")?
        .iter()
        .map(control_from_row)
        .collect()
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
        let mut c = self.pooled().await?;
        let tx = c
            .transaction()
            .await
            .context("beginning a pipeline control change")?;
        let before = lock_control(&tx, ecosystem, at).await?;
        let mut after = before.clone();
        change.apply(&mut after, at);
        put_control(&tx, &after, true).await?;
        commit_audit_change(&tx, audit, Some(&before), Some(&after)).await?;
        tx.commit()
            .await
            .context("committing a pipeline control change")?;
        Ok(after)
    }

    async fn count_claims(&self, counts: &[(String, i64)], at: Timestamp) -> Result<()> {
        // In ecosystem order (the order every writer locks controls in); additions to one
        // ecosystem keep theirs.
        let mut counts = counts.to_vec();
        counts.sort_by(|a, b| a.0.cmp(&b.0));
        let mut c = self.pooled().await?;
        let tx = c.transaction().await.context("beginning a claim count")?;
        for (eco, n) in counts {
            let mut k = lock_control(&tx, &eco, at).await?;
            k.count_claims(n, at);
            put_control(&tx, &k, true).await?;
        }
        tx.commit().await.context("committing a claim count")?;
        Ok(())
    }

    async fn record_checksum(
        &self,
        c: &Checksum,
        at: Timestamp,
        audit: Audit,
    ) -> Result<ChecksumOutcome> {
        let ms = at.as_millisecond();
        let mut client = self.pooled().await?;
        let tx = client
            .transaction()
            .await
            .context("beginning a checksum write")?;
        // A first observation inserts the row; a concurrent one for the same asset waits
        // for it and then compares with what it recorded.
        let inserted = tx
            .execute(
                "INSERT INTO pipeline_checksums (recipe, version, environment, asset, \
                 checksum, first_seen, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $6) \
                 ON CONFLICT (recipe, version, environment, asset) DO NOTHING",
                &[
                    &c.recipe,
                    &c.version,
                    &c.environment,
                    &c.asset,
                    &c.checksum,
                    &ms,
                ],
            )
            .await
            .context("recording a checksum")?;
        if inserted == 1 {
            tx.commit().await.context("committing a checksum")?;
            return Ok(ChecksumOutcome::New);
        }
        let key: [&(dyn ToSql + Sync); 4] = [&c.recipe, &c.version, &c.environment, &c.asset];
        let expected: String = tx
            .query_one(
                "SELECT checksum FROM pipeline_checksums WHERE recipe = $1 AND version = $2 \
                 AND environment = $3 AND asset = $4 FOR UPDATE",
                &key,
            )
            .await
            .context("reading a checksum")?
            .try_get(0)
            .context("decoding a checksum")?;
        if expected == c.checksum {
            tx.execute(
                "UPDATE pipeline_checksums SET last_seen = $5 WHERE recipe = $1 AND \
                 version = $2 AND environment = $3 AND asset = $4",
                &[&c.recipe, &c.version, &c.environment, &c.asset, &ms],
            )
            .await
            .context("recording a checksum")?;
            tx.commit().await.context("committing a checksum")?;
            return Ok(ChecksumOutcome::Same);
        }
        let raised = tx
            .execute(
                "INSERT INTO pipeline_checksum_alerts (recipe, version, environment, asset, \
                 expected, observed, at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (recipe, version, environment, asset, observed) DO NOTHING",
                &[
                    &c.recipe,
                    &c.version,
                    &c.environment,
                    &c.asset,
                    &expected,
                    &c.checksum,
                    &ms,
                ],
            )
            .await
            .context("raising a checksum alert")?;
        let row = tx
            .query_one(
                &format!(
                    "SELECT {ALERT_COLS} FROM pipeline_checksum_alerts WHERE recipe = $1 AND \
                     version = $2 AND environment = $3 AND asset = $4 AND observed = $5"
                ),
                &[&c.recipe, &c.version, &c.environment, &c.asset, &c.checksum],
            )
            .await
            .context("reading a checksum alert")?;
        let alert = alert_from_row(&row)?;
        if raised > 0 {
            commit_audit_change::<_, (), _>(&tx, audit, None, Some(&alert)).await?;
        }
        tx.commit().await.context("committing a checksum")?;
        Ok(ChecksumOutcome::Drift(alert))
    }

    async fn checksum_alerts(
        &self,
        recipe: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChecksumAlert>> {
        let c = self.pooled().await?;
        c.query(
            &format!(
                "SELECT {ALERT_COLS} FROM pipeline_checksum_alerts \
                 WHERE ($1::text IS NULL OR recipe = $1) ORDER BY id DESC LIMIT $2"
            ),
            &[&recipe, &limit_of(limit.max(1))],
        )
        .await
        .context("reading checksum alerts")?
        .iter()
        .map(alert_from_row)
        .collect()
    }

    async fn record_request(&self, item: QueueItem, client: &str, day: i64) -> Result<bool> {
        check_item(&item)?;
        let mut c = self.pooled().await?;
        let tx = c.transaction().await.context("beginning a request count")?;
        let n = tx
            .execute(
                "INSERT INTO pipeline_requests (item_id, day, client) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
                &[&item.id, &day, &client],
            )
            .await
            .context("recording a request")?;
        if n == 0 {
            return Ok(false);
        }
        put_item(&tx, &item, false).await?;
        let mut i = read_item(&tx, &item.id, true)
            .await?
            .ok_or_else(|| Error::internal("counting a request", "item not found after insert"))?;
        i.requests += 1;
        tx.execute(
            "UPDATE pipeline_items SET requests = $2, score = $3 WHERE id = $1",
            &[&i.id, &i.requests, &i.score()],
        )
        .await
        .context("counting a request")?;
        tx.commit().await.context("committing a request count")?;
        Ok(true)
    }

    async fn depth(&self) -> Result<Vec<Depth>> {
        let c = self.pooled().await?;
        c.query(
            "SELECT ecosystem, status, COUNT(*) FROM pipeline_items GROUP BY ecosystem, status \
             ORDER BY ecosystem COLLATE \"C\", status COLLATE \"C\"",
            &[],
        )
        .await
        .context("counting queue items")?
        .iter()
        .map(|r| {
            let decode = || -> std::result::Result<Depth, BoxError> {
                let status: String = r.try_get(1)?;
                Ok(Depth {
                    ecosystem: r.try_get(0)?,
                    status: ItemStatus::parse(&status).unwrap_or(ItemStatus::Pending),
                    count: r.try_get::<_, i64>(2)?.max(0) as u64,
                })
            };
            decode().context("decoding a queue count")
        })
        .collect()
    }

    async fn activity(&self, since: i64) -> Result<Vec<Activity>> {
        let c = self.pooled().await?;
        c.query(
            "SELECT hour, SUM(claimed)::BIGINT, SUM(passed)::BIGINT, SUM(failed)::BIGINT \
             FROM pipeline_claims WHERE hour >= $1 GROUP BY hour ORDER BY hour",
            &[&since],
        )
        .await
        .context("reading pipeline activity")?
        .iter()
        .map(|r| {
            let decode = || -> std::result::Result<Activity, BoxError> {
                let n = |i: usize| -> std::result::Result<u64, BoxError> {
                    Ok(r.try_get::<_, i64>(i)?.max(0) as u64)
                };
                Ok(Activity {
                    hour: r.try_get(0)?,
                    claimed: n(1)?,
                    passed: n(2)?,
                    failed: n(3)?,
                })
            };
            decode().context("decoding pipeline activity")
        })
        .collect()
    }
}
