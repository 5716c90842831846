//! [`DownloadStore`] on PostgreSQL (migration `0023_downloads`): a batch of hits is one
//! statement. The clients' last counted times are upserted from arrays (`unnest`), the
//! upsert's guard (`WHERE … at <= excluded.at - window`) lets only the hits that count
//! through its `RETURNING`, and those are summed per entry, version and day into
//! `downloads_daily` in the same statement, so nodes counting at once never count a
//! client twice in a window.

use std::collections::HashMap;

use async_trait::async_trait;
use quiver_model::names::name_key;
use quiver_model::{Context, EntryKey, Kind, Result};
use quiver_store::downloads::{
    AgentDay, DownloadDay, DownloadHit, DownloadStore, PopularityInput, PopularityWritten,
};
use tokio_postgres::Row;

use crate::store::entry_id;
use crate::PostgresStore;

fn key_at(r: &Row, i: usize) -> Result<EntryKey> {
    let kind: String = r.try_get(i).context("reading a download row")?;
    Ok(EntryKey::new(
        kind.parse().unwrap_or(Kind::Package),
        r.try_get::<_, String>(i + 1)
            .context("reading a download row")?,
        r.try_get::<_, String>(i + 2)
            .context("reading a download row")?,
    ))
}

fn count(r: &Row, i: usize) -> Result<u64> {
    Ok(r.try_get::<_, i64>(i)
        .context("reading a download count")?
        .max(0) as u64)
}

/// The ids of entries (`None` for those that do not exist), in one query.
async fn entry_ids<C: deadpool_postgres::GenericClient>(
    c: &C,
    keys: &[EntryKey],
) -> Result<Vec<Option<i64>>> {
    let kinds: Vec<&str> = keys.iter().map(|k| k.kind.as_str()).collect();
    let namespaces: Vec<&str> = keys.iter().map(|k| k.namespace.as_str()).collect();
    let names: Vec<String> = keys
        .iter()
        .map(|k| name_key(k.kind, &k.namespace, &k.name))
        .collect();
    let rows = c
        .query(
            "SELECT k.ord, e.id FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY \
             AS k(kind, namespace, name_key, ord) JOIN entries e ON e.kind = k.kind AND \
             e.namespace = k.namespace AND e.name_key = k.name_key",
            &[&kinds, &namespaces, &names],
        )
        .await
        .context("resolving the downloaded entries")?;
    let mut out = vec![None; keys.len()];
    for r in rows {
        let ord: i64 = r.try_get(0).context("resolving an entry")?;
        if let Some(slot) = out.get_mut((ord - 1) as usize) {
            *slot = Some(r.try_get(1).context("resolving an entry")?);
        }
    }
    Ok(out)
}

#[async_trait]
impl DownloadStore for PostgresStore {
    async fn record_downloads(
        &self,
        hits: Vec<DownloadHit>,
        agents: Vec<AgentDay>,
        window_ms: i64,
    ) -> Result<u64> {
        if hits.is_empty() && agents.is_empty() {
            return Ok(0);
        }
        let mut client = self.pooled().await?;
        let tx = client
            .transaction()
            .await
            .context("beginning a download count")?;
        let mut counted = 0u64;
        if !hits.is_empty() {
            let mut keys: Vec<EntryKey> = Vec::new();
            let mut slot: HashMap<&EntryKey, usize> = HashMap::new();
            for h in &hits {
                slot.entry(&h.entry).or_insert_with(|| {
                    keys.push(h.entry.clone());
                    keys.len() - 1
                });
            }
            let ids = entry_ids(&tx, &keys).await?;
            // One row per entry, version and client: an upsert may not touch a row twice.
            let mut seen = std::collections::HashSet::new();
            let (mut e, mut v, mut c, mut at) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for h in &hits {
                let Some(id) = ids[slot[&h.entry]] else {
                    continue;
                };
                if !seen.insert((id, h.version.as_str(), h.client.as_str())) {
                    continue;
                }
                e.push(id);
                v.push(h.version.as_str());
                c.push(h.client.as_str());
                at.push(h.at.as_millisecond());
            }
            let row = tx
                .query_one(
                    "WITH counted AS ( \
                       INSERT INTO download_clients AS dc (entry_id, version, client, at) \
                       SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[]) \
                       ON CONFLICT (entry_id, version, client) DO UPDATE SET at = excluded.at \
                       WHERE dc.at <= excluded.at - $5 \
                       RETURNING entry_id, version, at), \
                     added AS ( \
                       INSERT INTO downloads_daily AS d (entry_id, version, day, count) \
                       SELECT entry_id, version, floor(at / 86400000.0)::int, count(*) \
                       FROM counted GROUP BY 1, 2, 3 \
                       ON CONFLICT (entry_id, version, day) \
                       DO UPDATE SET count = d.count + excluded.count RETURNING 1) \
                     SELECT (SELECT count(*) FROM counted)",
                    &[&e, &v, &c, &at, &window_ms],
                )
                .await
                .context("counting downloads")?;
            counted = count(&row, 0)?;
        }
        if !agents.is_empty() {
            let mut merged: HashMap<(i32, &str), i64> = HashMap::new();
            for a in &agents {
                *merged.entry((a.day, a.agent.as_str())).or_default() += a.count as i64;
            }
            let (mut d, mut n, mut k) = (Vec::new(), Vec::new(), Vec::new());
            for ((day, agent), c) in merged {
                d.push(day);
                n.push(agent);
                k.push(c);
            }
            tx.execute(
                "INSERT INTO download_agents AS a (day, agent, count) \
                 SELECT * FROM unnest($1::int4[], $2::text[], $3::int8[]) \
                 ON CONFLICT (day, agent) DO UPDATE SET count = a.count + excluded.count",
                &[&d, &n, &k],
            )
            .await
            .context("adding the agents' counts")?;
        }
        tx.commit().await.context("committing a download count")?;
        Ok(counted)
    }

    async fn download_days(&self, key: &EntryKey, from: i32, to: i32) -> Result<Vec<DownloadDay>> {
        let c = self.read_client().await?;
        let Some(id) = entry_id(&c, key).await? else {
            return Ok(Vec::new());
        };
        let rows = c
            .query(
                "SELECT version, day, count FROM downloads_daily \
                 WHERE entry_id = $1 AND day BETWEEN $2 AND $3 ORDER BY day, version",
                &[&id, &from, &to],
            )
            .await
            .context("reading an entry's downloads")?;
        rows.iter()
            .map(|r| {
                Ok(DownloadDay {
                    version: r.try_get(0).context("reading a download row")?,
                    day: r.try_get(1).context("reading a download row")?,
                    count: count(r, 2)?,
                })
            })
            .collect()
    }

    async fn download_totals(&self, key: &EntryKey) -> Result<Vec<(String, u64)>> {
        let c = self.read_client().await?;
        let Some(id) = entry_id(&c, key).await? else {
            return Ok(Vec::new());
        };
        let rows = c
            .query(
                "SELECT version, SUM(count)::int8 FROM downloads_daily WHERE entry_id = $1 \
                 GROUP BY version ORDER BY version",
                &[&id],
            )
            .await
            .context("reading an entry's download totals")?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0).context("reading a download row")?,
                    count(r, 1)?,
                ))
            })
            .collect()
    }

    async fn namespace_download_days(
        &self,
        namespace: &str,
        from: i32,
        to: i32,
    ) -> Result<Vec<(EntryKey, i32, u64)>> {
        let c = self.read_client().await?;
        let rows = c
            .query(
                "SELECT e.kind, e.namespace, e.name, d.day, SUM(d.count)::int8 \
                 FROM downloads_daily d JOIN entries e ON e.id = d.entry_id \
                 WHERE e.namespace = $1 AND d.day BETWEEN $2 AND $3 \
                 GROUP BY e.id, d.day ORDER BY d.day, e.kind, e.name",
                &[&namespace, &from, &to],
            )
            .await
            .context("reading a namespace's downloads")?;
        rows.iter()
            .map(|r| {
                Ok((
                    key_at(r, 0)?,
                    r.try_get(3).context("reading a download row")?,
                    count(r, 4)?,
                ))
            })
            .collect()
    }

    async fn most_downloaded(
        &self,
        from: i32,
        to: i32,
        limit: usize,
    ) -> Result<Vec<(EntryKey, u64)>> {
        let c = self.read_client().await?;
        let rows = c
            .query(
                "SELECT e.kind, e.namespace, e.name, t.n FROM \
                 (SELECT entry_id, SUM(count)::int8 AS n FROM downloads_daily \
                  WHERE day BETWEEN $1 AND $2 GROUP BY entry_id ORDER BY n DESC LIMIT $3) t \
                 JOIN entries e ON e.id = t.entry_id ORDER BY t.n DESC, e.namespace, e.name",
                &[&from, &to, &(limit as i64)],
            )
            .await
            .context("reading the most downloaded entries")?;
        rows.iter()
            .map(|r| Ok((key_at(r, 0)?, count(r, 3)?)))
            .collect()
    }

    async fn agent_days(&self, from: i32, to: i32) -> Result<Vec<AgentDay>> {
        let c = self.read_client().await?;
        let rows = c
            .query(
                "SELECT day, agent, count FROM download_agents WHERE day BETWEEN $1 AND $2 \
                 ORDER BY day, count DESC, agent",
                &[&from, &to],
            )
            .await
            .context("reading the user agents' counts")?;
        rows.iter()
            .map(|r| {
                Ok(AgentDay {
                    day: r.try_get(0).context("reading an agent row")?,
                    agent: r.try_get(1).context("reading an agent row")?,
                    count: count(r, 2)?,
                })
            })
            .collect()
    }

    async fn prune_download_clients(&self, before_ms: i64) -> Result<u64> {
        let c = self.pooled().await?;
        c.execute("DELETE FROM download_clients WHERE at < $1", &[&before_ms])
            .await
            .context("pruning download clients")
    }

    async fn popularity_inputs(&self, from: i32, to: i32) -> Result<Vec<PopularityInput>> {
        let c = self.pooled().await?;
        let rows = c
            .query(
                "WITH d AS (SELECT entry_id, SUM(count)::int8 AS n FROM downloads_daily \
                   WHERE day BETWEEN $1 AND $2 GROUP BY entry_id), \
                 ids AS (SELECT entry_id FROM d UNION SELECT entry_id FROM download_popularity) \
                 SELECT e.kind, e.namespace, e.name, COALESCE(d.n, 0), p.prior, p.score \
                 FROM ids JOIN entries e ON e.id = ids.entry_id \
                 LEFT JOIN d ON d.entry_id = ids.entry_id \
                 LEFT JOIN download_popularity p ON p.entry_id = ids.entry_id \
                 ORDER BY e.id",
                &[&from, &to],
            )
            .await
            .context("reading the popularity refresh's inputs")?;
        rows.iter()
            .map(|r| {
                Ok(PopularityInput {
                    entry: key_at(r, 0)?,
                    counted: count(r, 3)?,
                    prior: r.try_get(4).context("reading a popularity row")?,
                    written: r.try_get(5).context("reading a popularity row")?,
                })
            })
            .collect()
    }

    async fn save_popularity(&self, rows: Vec<PopularityWritten>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let c = self.pooled().await?;
        let keys: Vec<EntryKey> = rows.iter().map(|r| r.entry.clone()).collect();
        let ids = entry_ids(&c, &keys).await?;
        let (mut e, mut p, mut s, mut n) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut seen = std::collections::HashSet::new();
        for (r, id) in rows.iter().zip(ids) {
            let Some(id) = id else { continue };
            if !seen.insert(id) {
                continue;
            }
            e.push(id);
            p.push(r.prior);
            s.push(r.score);
            n.push(r.counted as i64);
        }
        c.execute(
            "INSERT INTO download_popularity AS p (entry_id, prior, score, counted) \
             SELECT * FROM unnest($1::int8[], $2::float8[], $3::float8[], $4::int8[]) \
             ON CONFLICT (entry_id) DO UPDATE SET prior = excluded.prior, \
             score = excluded.score, counted = excluded.counted",
            &[&e, &p, &s, &n],
        )
        .await
        .context("keeping the popularity state")?;
        Ok(())
    }
}
