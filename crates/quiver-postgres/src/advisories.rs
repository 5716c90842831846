//! [`AdvisoryStore`] on PostgreSQL (migration `0021_advisories`): each advisory whole as
//! JSON, numbered per year under a transaction-scoped advisory lock (so that two nodes
//! publishing at once never take one number), with the entries it affects indexed.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use quiver_model::{Context, EntryKey, Error, Result};
use quiver_store::advisories::{advisory_id, Advisory, AdvisoryFilter, AdvisoryStore, NewAdvisory};
use quiver_store::Audit;
use tokio_postgres::types::ToSql;

use crate::accounts::commit_audit_change;
use crate::store::{entry_id, require_entry_id};
use crate::PostgresStore;

/// The advisory lock that serializes numbering (an arbitrary constant of this table).
const NUMBERING_LOCK: i64 = 0x0adf_5017;

fn decode(body: &str) -> Result<Advisory> {
    serde_json::from_str(body).context("decoding an advisory")
}

async fn read<C: GenericClient>(c: &C, id: &str, lock: bool) -> Result<Option<Advisory>> {
    let sql = format!(
        "SELECT body FROM advisories WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    match c
        .query_opt(&sql, &[&id])
        .await
        .context("reading an advisory")?
    {
        Some(r) => Ok(Some(decode(
            &r.try_get::<_, String>(0).context("reading an advisory")?,
        )?)),
        None => Ok(None),
    }
}

#[async_trait]
impl AdvisoryStore for PostgresStore {
    async fn create_advisory(
        &self,
        new: NewAdvisory,
        at: Timestamp,
        audit: Audit,
    ) -> Result<Advisory> {
        let mut client = self.pooled().await?;
        let tx = client
            .transaction()
            .await
            .context("beginning an advisory")?;
        let mut ids = Vec::with_capacity(new.affected.len());
        for (i, a) in new.affected.iter().enumerate() {
            let id = require_entry_id(&tx, &a.entry).await.map_err(|_| {
                Error::invalid(
                    format!("affected[{i}].entry"),
                    format!("{} does not exist", a.entry),
                )
            })?;
            ids.push(id);
        }
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&NUMBERING_LOCK])
            .await
            .context("taking the numbering lock")?;
        let year = at.to_zoned(jiff::tz::TimeZone::UTC).year();
        let year64 = i64::from(year);
        let number: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(number), 0) + 1 FROM advisories WHERE year = $1",
                &[&year64],
            )
            .await
            .context("numbering an advisory")?
            .try_get(0)
            .context("numbering an advisory")?;
        let advisory = new.publish(advisory_id(year, number), at);
        let severity = advisory.severity.as_str();
        let body = serde_json::to_string(&advisory).unwrap_or_default();
        let ms = at.as_millisecond();
        tx.execute(
            "INSERT INTO advisories (id, year, number, severity, body, published_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&advisory.id, &year64, &number, &severity, &body, &ms],
        )
        .await
        .context("writing an advisory")?;
        tx.execute(
            "INSERT INTO advisory_entries (advisory_id, entry_id) SELECT $1, e FROM \
             unnest($2::int8[]) AS e ON CONFLICT DO NOTHING",
            &[&advisory.id, &ids],
        )
        .await
        .context("indexing an advisory")?;
        commit_audit_change::<_, Advisory, _>(&tx, audit, None, Some(&advisory)).await?;
        tx.commit().await.context("committing an advisory")?;
        Ok(advisory)
    }

    async fn advisory(&self, id: &str) -> Result<Option<Advisory>> {
        let c = self.read_client().await?;
        read(&c, id, false).await
    }

    async fn advisories(&self, f: &AdvisoryFilter) -> Result<Vec<Advisory>> {
        let c = self.read_client().await?;
        let mut sql = String::from("SELECT a.body FROM advisories a WHERE TRUE");
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        if let Some(key) = &f.entry {
            let Some(id) = entry_id(&c, key).await? else {
                return Ok(Vec::new());
            };
            params.push(Box::new(id));
            sql.push_str(&format!(
                " AND a.id IN (SELECT advisory_id FROM advisory_entries WHERE entry_id = ${})",
                params.len()
            ));
        }
        if !f.include_withdrawn {
            sql.push_str(" AND a.withdrawn_at IS NULL");
        }
        sql.push_str(&format!(
            " ORDER BY a.published_at DESC, a.year DESC, a.number DESC LIMIT {}",
            f.limit.max(1)
        ));
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as _).collect();
        let rows = c.query(&sql, &refs).await.context("listing advisories")?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let a = decode(&r.try_get::<_, String>(0).context("reading an advisory")?)?;
            if f.min_severity.is_none_or(|m| a.severity >= m) {
                out.push(a);
            }
        }
        Ok(out)
    }

    async fn advisories_of(&self, keys: &[EntryKey]) -> Result<Vec<Advisory>> {
        let c = self.read_client().await?;
        let mut ids = Vec::new();
        for k in keys {
            if let Some(id) = entry_id(&c, k).await? {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = c
            .query(
                "SELECT DISTINCT a.body, a.id FROM advisory_entries x JOIN advisories a ON \
                 a.id = x.advisory_id WHERE x.entry_id = ANY($1) AND a.withdrawn_at IS NULL \
                 ORDER BY a.id",
                &[&ids],
            )
            .await
            .context("finding advisories")?;
        rows.iter()
            .map(|r| decode(&r.try_get::<_, String>(0).context("reading an advisory")?))
            .collect()
    }

    async fn withdraw_advisory(
        &self,
        id: &str,
        reason: String,
        at: Timestamp,
        audit: Audit,
    ) -> Result<Advisory> {
        let mut client = self.pooled().await?;
        let tx = client
            .transaction()
            .await
            .context("beginning a withdrawal")?;
        let before = read(&tx, id, true)
            .await?
            .ok_or_else(|| Error::not_found(format!("advisory {id}")))?;
        let mut after = before.clone();
        after.withdrawn_at = Some(before.withdrawn_at.unwrap_or(at));
        after.withdrawn_reason = Some(reason);
        let body = serde_json::to_string(&after).unwrap_or_default();
        let ms = after.withdrawn_at.map(|t| t.as_millisecond());
        tx.execute(
            "UPDATE advisories SET body = $2, withdrawn_at = $3 WHERE id = $1",
            &[&id, &body, &ms],
        )
        .await
        .context("withdrawing an advisory")?;
        commit_audit_change(&tx, audit, Some(&before), Some(&after)).await?;
        tx.commit().await.context("committing a withdrawal")?;
        Ok(after)
    }
}
