//! [`DownloadStore`] on SQLite (migration `0023_downloads`): a batch of hits in one write
//! transaction, each a guarded upsert of the client's last counted time whose
//! `RETURNING` says whether it counted; the counted ones summed per entry, version and
//! day before they are added.

use std::collections::HashMap;

use async_trait::async_trait;
use quiver_model::{Context, EntryKey, Kind, Result};
use quiver_store::downloads::{
    day_of, AgentDay, DownloadDay, DownloadHit, DownloadStore, PopularityInput, PopularityWritten,
};
use rusqlite::{params, OptionalExtension, Row};

use super::{entry_id, SqliteStore};

fn key_at(r: &Row<'_>, i: usize) -> rusqlite::Result<EntryKey> {
    let kind: String = r.get(i)?;
    Ok(EntryKey::new(
        kind.parse().unwrap_or(Kind::Package),
        r.get::<_, String>(i + 1)?,
        r.get::<_, String>(i + 2)?,
    ))
}

fn count(v: i64) -> u64 {
    v.max(0) as u64
}

#[async_trait]
impl DownloadStore for SqliteStore {
    async fn record_downloads(
        &self,
        hits: Vec<DownloadHit>,
        agents: Vec<AgentDay>,
        window_ms: i64,
    ) -> Result<u64> {
        if hits.is_empty() && agents.is_empty() {
            return Ok(0);
        }
        self.write(move |tx| {
            let mut ids: HashMap<EntryKey, Option<i64>> = HashMap::new();
            let mut days: HashMap<(i64, String, i32), i64> = HashMap::new();
            let mut counted = 0u64;
            {
                let mut upsert = tx
                    .prepare_cached(
                        "INSERT INTO download_clients (entry_id, version, client, at) \
                         VALUES (?1, ?2, ?3, ?4) \
                         ON CONFLICT (entry_id, version, client) DO UPDATE SET at = excluded.at \
                         WHERE download_clients.at <= excluded.at - ?5 RETURNING 1",
                    )
                    .context("preparing the download count")?;
                for h in &hits {
                    let id = match ids.get(&h.entry) {
                        Some(id) => *id,
                        None => {
                            let id = entry_id(tx, &h.entry)?;
                            ids.insert(h.entry.clone(), id);
                            id
                        }
                    };
                    let Some(id) = id else { continue };
                    let at = h.at.as_millisecond();
                    let fresh = upsert
                        .query_row(params![id, h.version, h.client, at, window_ms], |_| Ok(()))
                        .optional()
                        .context("counting a download")?
                        .is_some();
                    if fresh {
                        counted += 1;
                        *days
                            .entry((id, h.version.clone(), day_of(h.at)))
                            .or_default() += 1;
                    }
                }
            }
            let mut add = tx
                .prepare_cached(
                    "INSERT INTO downloads_daily (entry_id, version, day, count) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (entry_id, version, day) \
                     DO UPDATE SET count = count + excluded.count",
                )
                .context("preparing the daily counts")?;
            for ((id, version, day), n) in days {
                add.execute(params![id, version, day, n])
                    .context("adding to a day's downloads")?;
            }
            let mut agent = tx
                .prepare_cached(
                    "INSERT INTO download_agents (day, agent, count) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (day, agent) DO UPDATE SET count = count + excluded.count",
                )
                .context("preparing the agents' counts")?;
            for a in agents {
                agent
                    .execute(params![a.day, a.agent, a.count as i64])
                    .context("adding to an agent's count")?;
            }
            Ok(counted)
        })
        .await
    }

    async fn download_days(&self, key: &EntryKey, from: i32, to: i32) -> Result<Vec<DownloadDay>> {
        let key = key.clone();
        self.read(move |c| {
            let Some(id) = entry_id(c, &key)? else {
                return Ok(Vec::new());
            };
            c.prepare_cached(
                "SELECT version, day, count FROM downloads_daily \
                 WHERE entry_id = ?1 AND day BETWEEN ?2 AND ?3 ORDER BY day, version",
            )
            .and_then(|mut s| {
                s.query_map(params![id, from, to], |r| {
                    Ok(DownloadDay {
                        version: r.get(0)?,
                        day: r.get(1)?,
                        count: count(r.get(2)?),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("reading an entry's downloads")
        })
        .await
    }

    async fn download_totals(&self, key: &EntryKey) -> Result<Vec<(String, u64)>> {
        let key = key.clone();
        self.read(move |c| {
            let Some(id) = entry_id(c, &key)? else {
                return Ok(Vec::new());
            };
            c.prepare_cached(
                "SELECT version, SUM(count) FROM downloads_daily WHERE entry_id = ?1 \
                 GROUP BY version ORDER BY version",
            )
            .and_then(|mut s| {
                s.query_map([id], |r| Ok((r.get(0)?, count(r.get(1)?))))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("reading an entry's download totals")
        })
        .await
    }

    async fn namespace_download_days(
        &self,
        namespace: &str,
        from: i32,
        to: i32,
    ) -> Result<Vec<(EntryKey, i32, u64)>> {
        let namespace = namespace.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT e.kind, e.namespace, e.name, d.day, SUM(d.count) \
                 FROM downloads_daily d JOIN entries e ON e.id = d.entry_id \
                 WHERE e.namespace = ?1 AND d.day BETWEEN ?2 AND ?3 \
                 GROUP BY d.entry_id, d.day ORDER BY d.day, e.kind, e.name",
            )
            .and_then(|mut s| {
                s.query_map(params![namespace, from, to], |r| {
                    Ok((key_at(r, 0)?, r.get(3)?, count(r.get(4)?)))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("reading a namespace's downloads")
        })
        .await
    }

    async fn most_downloaded(
        &self,
        from: i32,
        to: i32,
        limit: usize,
    ) -> Result<Vec<(EntryKey, u64)>> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT e.kind, e.namespace, e.name, t.n FROM \
                 (SELECT entry_id, SUM(count) AS n FROM downloads_daily \
                  WHERE day BETWEEN ?1 AND ?2 GROUP BY entry_id ORDER BY n DESC LIMIT ?3) t \
                 JOIN entries e ON e.id = t.entry_id ORDER BY t.n DESC, e.namespace, e.name",
            )
            .and_then(|mut s| {
                s.query_map(params![from, to, limit as i64], |r| {
                    Ok((key_at(r, 0)?, count(r.get(3)?)))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("reading the most downloaded entries")
        })
        .await
    }

    async fn agent_days(&self, from: i32, to: i32) -> Result<Vec<AgentDay>> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT day, agent, count FROM download_agents WHERE day BETWEEN ?1 AND ?2 \
                 ORDER BY day, count DESC, agent",
            )
            .and_then(|mut s| {
                s.query_map(params![from, to], |r| {
                    Ok(AgentDay {
                        day: r.get(0)?,
                        agent: r.get(1)?,
                        count: count(r.get(2)?),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("reading the user agents' counts")
        })
        .await
    }

    async fn prune_download_clients(&self, before_ms: i64) -> Result<u64> {
        self.write(move |tx| {
            Ok(tx
                .execute("DELETE FROM download_clients WHERE at < ?1", [before_ms])
                .context("pruning download clients")? as u64)
        })
        .await
    }

    async fn popularity_inputs(&self, from: i32, to: i32) -> Result<Vec<PopularityInput>> {
        self.read(move |c| {
            c.prepare_cached(
                "WITH d AS (SELECT entry_id, SUM(count) AS n FROM downloads_daily \
                   WHERE day BETWEEN ?1 AND ?2 GROUP BY entry_id), \
                 ids AS (SELECT entry_id FROM d UNION SELECT entry_id FROM download_popularity) \
                 SELECT e.kind, e.namespace, e.name, COALESCE(d.n, 0), p.prior, p.score \
                 FROM ids JOIN entries e ON e.id = ids.entry_id \
                 LEFT JOIN d ON d.entry_id = ids.entry_id \
                 LEFT JOIN download_popularity p ON p.entry_id = ids.entry_id \
                 ORDER BY e.id",
            )
            .and_then(|mut s| {
                s.query_map(params![from, to], |r| {
                    Ok(PopularityInput {
                        entry: key_at(r, 0)?,
                        counted: count(r.get(3)?),
                        prior: r.get(4)?,
                        written: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("reading the popularity refresh's inputs")
        })
        .await
    }

    async fn save_popularity(&self, rows: Vec<PopularityWritten>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write(move |tx| {
            let mut put = tx
                .prepare_cached(
                    "INSERT INTO download_popularity (entry_id, prior, score, counted) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (entry_id) DO UPDATE SET \
                     prior = excluded.prior, score = excluded.score, counted = excluded.counted",
                )
                .context("preparing the popularity state")?;
            for r in rows {
                let Some(id) = entry_id(tx, &r.entry)? else {
                    continue;
                };
                put.execute(params![id, r.prior, r.score, r.counted as i64])
                    .context("keeping the popularity state")?;
            }
            Ok(())
        })
        .await
    }
}
