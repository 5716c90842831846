//! [`AdvisoryStore`] on SQLite (migration `0021_advisories`): each advisory whole as
//! JSON, numbered per year inside the writer's transaction, with the entries it affects
//! indexed.

use async_trait::async_trait;
use jiff::Timestamp;
use quiver_model::{Context, EntryKey, Error, Result};
use quiver_store::advisories::{advisory_id, Advisory, AdvisoryFilter, AdvisoryStore, NewAdvisory};
use quiver_store::Audit;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::{entry_id, require_entry_id, SqliteStore};
use crate::accounts::commit_audit_change;

fn decode(body: &str) -> rusqlite::Result<Advisory> {
    serde_json::from_str(body).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn read(c: &Connection, id: &str) -> Result<Option<Advisory>> {
    c.prepare_cached("SELECT body FROM advisories WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([id], |r| decode(&r.get::<_, String>(0)?))
                .optional()
        })
        .context("reading an advisory")
}

#[async_trait]
impl AdvisoryStore for SqliteStore {
    async fn create_advisory(
        &self,
        new: NewAdvisory,
        at: Timestamp,
        audit: Audit,
    ) -> Result<Advisory> {
        self.write(move |tx| {
            let mut ids = Vec::with_capacity(new.affected.len());
            for (i, a) in new.affected.iter().enumerate() {
                let id = require_entry_id(tx, &a.entry).map_err(|_| {
                    Error::invalid(format!("affected[{i}].entry"), format!("{} does not exist", a.entry))
                })?;
                ids.push(id);
            }
            let year = at.to_zoned(jiff::tz::TimeZone::UTC).year();
            let number: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(number), 0) + 1 FROM advisories WHERE year = ?1",
                    [i64::from(year)],
                    |r| r.get(0),
                )
                .context("numbering an advisory")?;
            let advisory = new.publish(advisory_id(year, number), at);
            tx.execute(
                "INSERT INTO advisories (id, year, number, severity, body, published_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    advisory.id,
                    i64::from(year),
                    number,
                    advisory.severity.as_str(),
                    serde_json::to_string(&advisory).unwrap_or_default(),
                    at.as_millisecond()
                ],
            )
            .context("writing an advisory")?;
            for id in ids {
                tx.execute(
                    "INSERT OR IGNORE INTO advisory_entries (advisory_id, entry_id) VALUES (?1, ?2)",
                    params![advisory.id, id],
                )
                .context("indexing an advisory")?;
            }
            commit_audit_change::<Advisory, _>(tx, audit, None, Some(&advisory))?;
            Ok(advisory)
        })
        .await
    }

    async fn advisory(&self, id: &str) -> Result<Option<Advisory>> {
        let id = id.to_string();
        self.read(move |c| read(c, &id)).await
    }

    async fn advisories(&self, f: &AdvisoryFilter) -> Result<Vec<Advisory>> {
        let f = f.clone();
        self.read(move |c| {
            let mut sql = String::from("SELECT a.body FROM advisories a WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(key) = &f.entry {
                let Some(id) = entry_id(c, key)? else {
                    return Ok(Vec::new());
                };
                sql.push_str(
                    " AND a.id IN (SELECT advisory_id FROM advisory_entries WHERE entry_id = ?)",
                );
                args.push(id.into());
            }
            if !f.include_withdrawn {
                sql.push_str(" AND a.withdrawn_at IS NULL");
            }
            sql.push_str(&format!(
                " ORDER BY a.published_at DESC, a.year DESC, a.number DESC LIMIT {}",
                f.limit.max(1)
            ));
            let all = c
                .prepare(&sql)
                .and_then(|mut s| {
                    s.query_map(params_from_iter(args.iter()), |r| {
                        decode(&r.get::<_, String>(0)?)
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .context("listing advisories")?;
            Ok(all
                .into_iter()
                .filter(|a| f.min_severity.is_none_or(|m| a.severity >= m))
                .collect())
        })
        .await
    }

    async fn advisories_of(&self, keys: &[EntryKey]) -> Result<Vec<Advisory>> {
        let keys = keys.to_vec();
        self.read(move |c| {
            let mut ids = Vec::new();
            for k in &keys {
                if let Some(id) = entry_id(c, k)? {
                    ids.push(id);
                }
            }
            let mut out: Vec<Advisory> = Vec::new();
            let mut stmt = c
                .prepare_cached(
                    "SELECT a.body FROM advisory_entries x JOIN advisories a ON a.id = \
                     x.advisory_id WHERE x.entry_id = ?1 AND a.withdrawn_at IS NULL",
                )
                .context("preparing an advisory lookup")?;
            for id in ids {
                let found = stmt
                    .query_map([id], |r| decode(&r.get::<_, String>(0)?))
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    .context("finding advisories")?;
                for a in found {
                    if !out.iter().any(|o| o.id == a.id) {
                        out.push(a);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn withdraw_advisory(
        &self,
        id: &str,
        reason: String,
        at: Timestamp,
        audit: Audit,
    ) -> Result<Advisory> {
        let id = id.to_string();
        self.write(move |tx| {
            let before =
                read(tx, &id)?.ok_or_else(|| Error::not_found(format!("advisory {id}")))?;
            let mut after = before.clone();
            after.withdrawn_at = Some(before.withdrawn_at.unwrap_or(at));
            after.withdrawn_reason = Some(reason);
            tx.execute(
                "UPDATE advisories SET body = ?2, withdrawn_at = ?3 WHERE id = ?1",
                params![
                    id,
                    serde_json::to_string(&after).unwrap_or_default(),
                    after.withdrawn_at.map(|t| t.as_millisecond())
                ],
            )
            .context("withdrawing an advisory")?;
            commit_audit_change(tx, audit, Some(&before), Some(&after))?;
            Ok(after)
        })
        .await
    }
}
