//! Download and resolution counts (seeds 004, 000, 003), their statistics, and the
//! popularity that search blends in, refreshed from them.
//!
//! Counting is off the request path: a download or resolution adds its hits to an
//! in-memory buffer ([`Registry::count_downloads`], a mutex held for a map insert, never a
//! database lock) and a task flushes the buffer every [`DownloadSettings::flush_interval`]
//! (sooner when it fills) in one store batch, which decides what counts: a client (its
//! address hashed with the registry's salt) counts once per entry, version and
//! [`DownloadSettings::window`]. A clean shutdown flushes what is buffered; a crash loses
//! at most the hits of the last flush interval. A flush that fails keeps its hits for the
//! next one, up to [`DownloadSettings::max_pending`] distinct hits (past that, new hits
//! are dropped and counted in the log rather than growing memory without bound).
//!
//! User agents are kept as hits per day of their product token (`quiver/0.4`,
//! `curl/8.5`), nothing else of them.
//!
//! The popularity refresh ([`REFRESH_POPULARITY`], a durable job that queues its next
//! run) turns each entry's counted downloads of the last 30 days into monthly downloads
//! added to its prior (the imported popularity, as estimated monthly downloads) and
//! rescores it on the import's log scale; an entry nobody has downloaded keeps its
//! imported score.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use quiver_model::{EntryKey, EntryPatch, Error, Popularity, Result};
use quiver_store::downloads::{
    date_day, day_date, day_of, AgentDay, DownloadHit, DownloadStore, PopularityWritten,
};
use quiver_store::worker::Handler;
use quiver_store::{Job, JobQueue, NewJob, Store};
use serde::Serialize;
use tokio::sync::Notify;

use crate::{Caller, Registry};

/// The job kind that refreshes popularity from downloads.
pub const REFRESH_POPULARITY: &str = "refresh_popularity";

/// How downloads are counted and popularity refreshed.
#[derive(Debug, Clone)]
pub struct DownloadSettings {
    /// How often the buffer is written to the store (the most a crash can lose).
    pub flush_interval: Duration,
    /// A client counts once per entry and version within this window.
    pub window: Duration,
    /// The most distinct hits held in memory between flushes.
    pub max_pending: usize,
    /// How often popularity is refreshed from downloads.
    pub refresh_interval: Duration,
}

impl Default for DownloadSettings {
    fn default() -> Self {
        DownloadSettings {
            flush_interval: Duration::from_secs(1),
            window: Duration::from_secs(3600),
            max_pending: 200_000,
            refresh_interval: Duration::from_secs(3600),
        }
    }
}

/// Hits waiting for the next flush.
#[derive(Default)]
struct Pending {
    /// The first hit of each entry, version and client since the last flush.
    hits: HashMap<(EntryKey, String, String), Timestamp>,
    agents: HashMap<(i32, String), u64>,
}

/// The in-memory buffer of hits.
#[derive(Default)]
pub(crate) struct Buffer {
    pending: Mutex<Pending>,
    /// Wakes the flusher early when the buffer fills.
    wake: Notify,
    /// Hits dropped because the buffer was full (logged at the next flush).
    dropped: AtomicU64,
    /// When download clients were last pruned (ms since the epoch).
    pruned: AtomicU64,
}

/// The product token of a user agent, for counting: `quiver/0.4.1 (linux)` →
/// `quiver/0.4`; no version → the name; nothing readable → `other`.
pub fn agent_of(user_agent: Option<&str>) -> String {
    let Some(first) = user_agent.and_then(|u| u.split_whitespace().next()) else {
        return "other".into();
    };
    let (name, version) = first.split_once('/').unwrap_or((first, ""));
    let clean = |s: &str, n: usize| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(n)
            .collect()
    };
    let name = clean(name, 32).to_ascii_lowercase();
    if name.is_empty() {
        return "other".into();
    }
    // Major and minor only: patch levels would split one client into many rows.
    let version = clean(version, 16);
    let short: Vec<&str> = version.split('.').take(2).collect();
    let version = short.join(".");
    if version.is_empty() {
        name
    } else {
        format!("{name}/{version}")
    }
}

/// Counted downloads on one day.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct DayCount {
    /// The UTC day (`2026-12-04`).
    pub date: String,
    pub count: u64,
}

/// One version's counted downloads.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct VersionCount {
    pub version: String,
    pub total: u64,
    /// In the window asked for.
    pub in_window: u64,
}

/// One entry's counted downloads in a namespace.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct EntryCount {
    pub entry: EntryKey,
    /// In the window asked for.
    pub in_window: u64,
}

/// Counted downloads and resolutions of an entry or a namespace. Counts are as of the
/// last flush (about a second behind).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct DownloadStats {
    /// The entry, for an entry's statistics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<EntryKey>,
    /// The namespace, for a namespace's statistics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// All time (for a namespace: over its entries the caller may see, in the window's
    /// longest span read, the last 30 days or the window).
    pub total: u64,
    /// The last 7 UTC days, today included.
    pub last_7_days: u64,
    /// The last 30 UTC days, today included.
    pub last_30_days: u64,
    /// The window's first and last day.
    pub from: String,
    pub to: String,
    /// Every day of the window, oldest first (days without downloads as 0).
    pub daily: Vec<DayCount>,
    /// Per version, most downloaded first (an entry's statistics).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<VersionCount>,
    /// Per entry, most downloaded first (a namespace's statistics).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<EntryCount>,
}

/// Hits of user agents per day (admins).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct AgentStats {
    pub from: String,
    pub to: String,
    /// Per day (`day` is days since 1970-01-01) and product token, most first per day.
    pub items: Vec<AgentDay>,
}

/// The most days one statistics answer covers.
pub const MAX_WINDOW_DAYS: i32 = 366;

/// The window of days asked for: `to` defaults to today, `from` to 29 days before `to`.
pub fn window(
    from: Option<jiff::civil::Date>,
    to: Option<jiff::civil::Date>,
    now: Timestamp,
) -> Result<(i32, i32)> {
    let to = to.map(date_day).unwrap_or_else(|| day_of(now));
    let from = from.map(date_day).unwrap_or(to - 29);
    if from > to {
        return Err(Error::invalid("from", "after `to`"));
    }
    if to - from + 1 > MAX_WINDOW_DAYS {
        return Err(Error::invalid(
            "from",
            format!("a window of at most {MAX_WINDOW_DAYS} days"),
        ));
    }
    Ok((from, to))
}

fn series(from: i32, to: i32, counts: &HashMap<i32, u64>) -> Vec<DayCount> {
    (from..=to)
        .map(|d| DayCount {
            date: day_date(d).to_string(),
            count: counts.get(&d).copied().unwrap_or(0),
        })
        .collect()
}

/// Estimated monthly downloads of a popularity score (the inverse of
/// [`quiver_import::dataset::popularity_score`]).
pub fn score_downloads(score: f64) -> f64 {
    let top = (1.0 + quiver_import::dataset::MAX_MONTHLY_DOWNLOADS).log10();
    (10f64.powf(score.clamp(0.0, 1.0) * top) - 1.0).max(0.0)
}

impl Registry {
    /// Count downloads or resolutions of `hits` (entry and version) by the current
    /// request's client. Never waits on the store: the hits go to the buffer.
    pub async fn count_downloads(&self, hits: &[(EntryKey, String)], user_agent: Option<&str>) {
        if hits.is_empty() {
            return;
        }
        let client = self
            .client_hash()
            .await
            .unwrap_or_else(|| "unknown".to_string());
        let now = Timestamp::now();
        let agent = agent_of(user_agent);
        let full = {
            let mut p = self
                .downloads
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let cap = self.config.downloads.max_pending;
            for (entry, version) in hits {
                let k = (entry.clone(), version.clone(), client.clone());
                if p.hits.len() >= cap && !p.hits.contains_key(&k) {
                    self.downloads.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                p.hits.entry(k).or_insert(now);
            }
            *p.agents.entry((day_of(now), agent)).or_default() += hits.len() as u64;
            p.hits.len() >= cap / 2
        };
        if full {
            self.downloads.wake.notify_one();
        }
    }

    /// Write the buffered hits to the store; answers how many counted. On failure the
    /// hits stay buffered for the next flush.
    pub async fn flush_downloads(&self) -> Result<u64> {
        let taken = std::mem::take(
            &mut *self
                .downloads
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let dropped = self.downloads.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "download hits dropped: the buffer was full (the store is slow or down)"
            );
        }
        if taken.hits.is_empty() && taken.agents.is_empty() {
            return Ok(0);
        }
        let mut hits: Vec<DownloadHit> = taken
            .hits
            .iter()
            .map(|((entry, version, client), at)| DownloadHit {
                entry: entry.clone(),
                version: version.clone(),
                client: client.clone(),
                at: *at,
            })
            .collect();
        hits.sort_by_key(|h| h.at);
        let agents: Vec<AgentDay> = taken
            .agents
            .iter()
            .map(|((day, agent), count)| AgentDay {
                day: *day,
                agent: agent.clone(),
                count: *count,
            })
            .collect();
        let window = self.config.downloads.window.as_millis() as i64;
        match self
            .db
            .downloads
            .record_downloads(hits, agents, window)
            .await
        {
            Ok(n) => {
                self.prune_download_clients(window).await;
                Ok(n)
            }
            Err(e) => {
                // Put them back (newer hits of the same key keep their own first time).
                let mut p = self
                    .downloads
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let cap = self.config.downloads.max_pending;
                for (k, at) in taken.hits {
                    if p.hits.len() < cap || p.hits.contains_key(&k) {
                        let slot = p.hits.entry(k).or_insert(at);
                        *slot = (*slot).min(at);
                    }
                }
                for (k, n) in taken.agents {
                    *p.agents.entry(k).or_default() += n;
                }
                Err(e)
            }
        }
    }

    /// Forget clients counted more than a window ago, at most once a minute.
    async fn prune_download_clients(&self, window_ms: i64) {
        let now = Timestamp::now().as_millisecond();
        let last = self.downloads.pruned.load(Ordering::Relaxed) as i64;
        if now - last < 60_000 {
            return;
        }
        self.downloads.pruned.store(now as u64, Ordering::Relaxed);
        if let Err(e) = self
            .db
            .downloads
            .prune_download_clients(now - window_ms)
            .await
        {
            tracing::warn!(error = %e, "pruning download clients failed");
        }
    }

    /// The task that flushes the buffer every flush interval, or sooner when it fills.
    /// Abort it after a last [`Registry::flush_downloads`] at shutdown.
    pub fn spawn_download_flusher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let every = me.config.downloads.flush_interval;
            let mut scheduled: Option<std::time::Instant> = None;
            loop {
                // A popularity refresh is always queued (deduplicated: one at a time).
                if scheduled.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    scheduled = Some(std::time::Instant::now());
                    if let Err(e) = me.schedule_popularity_refresh().await {
                        tracing::warn!(error = %e, "queueing the popularity refresh failed");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = me.downloads.wake.notified() => {}
                }
                if let Err(e) = me.flush_downloads().await {
                    tracing::error!(error = %e, "flushing download counts failed; kept for the next flush");
                }
            }
        })
    }

    /// An entry's counted downloads: total, last 7 and 30 days, the window's daily
    /// series and each version's.
    pub async fn entry_download_stats(
        &self,
        caller: &Caller,
        key: &EntryKey,
        from: Option<jiff::civil::Date>,
        to: Option<jiff::civil::Date>,
    ) -> Result<DownloadStats> {
        let entry = self.visible_entry(caller, key).await?;
        let key = entry.key();
        let now = Timestamp::now();
        let today = day_of(now);
        let (from, to) = window(from, to, now)?;
        let lo = from.min(today - 29);
        let hi = to.max(today);
        let (days, totals) = tokio::try_join!(
            self.db.downloads.download_days(&key, lo, hi),
            self.db.downloads.download_totals(&key),
        )?;
        let mut per_day: HashMap<i32, u64> = HashMap::new();
        let mut per_version: HashMap<&str, u64> = HashMap::new();
        let (mut last7, mut last30) = (0, 0);
        for d in &days {
            if (from..=to).contains(&d.day) {
                *per_day.entry(d.day).or_default() += d.count;
                *per_version.entry(d.version.as_str()).or_default() += d.count;
            }
            if d.day > today - 7 && d.day <= today {
                last7 += d.count;
            }
            if d.day > today - 30 && d.day <= today {
                last30 += d.count;
            }
        }
        let mut versions: Vec<VersionCount> = totals
            .iter()
            .map(|(v, total)| VersionCount {
                version: v.clone(),
                total: *total,
                in_window: per_version.get(v.as_str()).copied().unwrap_or(0),
            })
            .collect();
        versions.sort_by(|a, b| b.total.cmp(&a.total).then(a.version.cmp(&b.version)));
        Ok(DownloadStats {
            entry: Some(key),
            namespace: None,
            total: totals.iter().map(|(_, n)| n).sum(),
            last_7_days: last7,
            last_30_days: last30,
            from: day_date(from).to_string(),
            to: day_date(to).to_string(),
            daily: series(from, to, &per_day),
            versions,
            entries: Vec::new(),
        })
    }

    /// A namespace's counted downloads over the entries the caller may see.
    pub async fn namespace_download_stats(
        &self,
        caller: &Caller,
        namespace: &str,
        from: Option<jiff::civil::Date>,
        to: Option<jiff::civil::Date>,
    ) -> Result<DownloadStats> {
        if self.db.store.get_namespace(namespace).await?.is_none() {
            return Err(Error::not_found(format!("namespace {namespace}")));
        }
        let now = Timestamp::now();
        let today = day_of(now);
        let (from, to) = window(from, to, now)?;
        let lo = from.min(today - 29);
        let hi = to.max(today);
        let rows = self
            .db
            .downloads
            .namespace_download_days(namespace, lo, hi)
            .await?;
        let mut visible: HashMap<EntryKey, bool> = HashMap::new();
        let mut per_day: HashMap<i32, u64> = HashMap::new();
        let mut per_entry: HashMap<EntryKey, u64> = HashMap::new();
        let (mut total, mut last7, mut last30) = (0, 0, 0);
        for (key, day, n) in rows {
            let ok = match visible.get(&key) {
                Some(ok) => *ok,
                None => {
                    let ok = self.visible_entry(caller, &key).await.is_ok();
                    visible.insert(key.clone(), ok);
                    ok
                }
            };
            if !ok {
                continue;
            }
            total += n;
            if (from..=to).contains(&day) {
                *per_day.entry(day).or_default() += n;
                *per_entry.entry(key).or_default() += n;
            }
            if day > today - 7 && day <= today {
                last7 += n;
            }
            if day > today - 30 && day <= today {
                last30 += n;
            }
        }
        let mut entries: Vec<EntryCount> = per_entry
            .into_iter()
            .map(|(entry, in_window)| EntryCount { entry, in_window })
            .collect();
        entries.sort_by(|a, b| {
            b.in_window
                .cmp(&a.in_window)
                .then_with(|| a.entry.to_string().cmp(&b.entry.to_string()))
        });
        Ok(DownloadStats {
            entry: None,
            namespace: Some(namespace.to_string()),
            total,
            last_7_days: last7,
            last_30_days: last30,
            from: day_date(from).to_string(),
            to: day_date(to).to_string(),
            daily: series(from, to, &per_day),
            versions: Vec::new(),
            entries,
        })
    }

    /// Hits per user agent and day (site admins).
    pub async fn agent_stats(
        &self,
        caller: &Caller,
        from: Option<jiff::civil::Date>,
        to: Option<jiff::civil::Date>,
    ) -> Result<AgentStats> {
        self.require_admin(caller).await?;
        let (from, to) = window(from, to, Timestamp::now())?;
        Ok(AgentStats {
            from: day_date(from).to_string(),
            to: day_date(to).to_string(),
            items: self.db.downloads.agent_days(from, to).await?,
        })
    }

    /// The most downloaded entries of the last 30 days that the caller may see.
    pub async fn most_downloaded(&self, caller: &Caller, limit: usize) -> Result<Vec<EntryCount>> {
        let today = day_of(Timestamp::now());
        let mut out = Vec::new();
        for (entry, n) in self
            .db
            .downloads
            .most_downloaded(today - 29, today, limit.saturating_mul(2))
            .await?
        {
            if self.visible_entry(caller, &entry).await.is_ok() {
                out.push(EntryCount {
                    entry,
                    in_window: n,
                });
            }
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Queue the next popularity refresh (one at a time, whichever node queues it).
    async fn schedule_popularity_refresh(&self) -> Result<()> {
        schedule(&*self.db.jobs, self.config.downloads.refresh_interval).await
    }

    /// Refresh popularity from downloads now (what the periodic job does); answers how
    /// many entries changed.
    pub async fn refresh_popularity(&self) -> Result<u64> {
        refresh(&*self.db.store, &*self.db.downloads).await
    }
}

async fn schedule(jobs: &dyn JobQueue, every: Duration) -> Result<()> {
    let at = Timestamp::now()
        .checked_add(jiff::SignedDuration::try_from(every).unwrap_or_default())
        .unwrap_or_else(|_| Timestamp::now());
    jobs.enqueue(
        NewJob::new(REFRESH_POPULARITY, serde_json::json!({}))
            .dedup_key(REFRESH_POPULARITY)
            .run_at(at),
    )
    .await?;
    Ok(())
}

/// Rescore every entry with downloads in the last 30 days (or refreshed before): the
/// prior's estimated monthly downloads plus the counted ones, on the import's scale.
async fn refresh(store: &dyn Store, downloads: &dyn DownloadStore) -> Result<u64> {
    let today = day_of(Timestamp::now());
    let inputs = downloads.popularity_inputs(today - 29, today).await?;
    let mut written = Vec::with_capacity(inputs.len());
    let mut changed = 0;
    for i in inputs {
        let Some(entry) = store.get_entry(&i.entry).await? else {
            continue;
        };
        let current = entry.popularity.clone();
        // Someone else (an import) set the score since the last refresh: that is the
        // new prior.
        let prior = match (i.prior, i.written) {
            (Some(p), Some(w)) if (w - current.score).abs() < 1e-9 => p,
            _ => current.score,
        };
        let score =
            quiver_import::dataset::popularity_score(score_downloads(prior) + i.counted as f64);
        if (score - current.score).abs() >= 1e-9 {
            store
                .update_entry(
                    &i.entry,
                    EntryPatch {
                        popularity: Some(Popularity { score, ..current }),
                        ..EntryPatch::default()
                    },
                )
                .await?;
            changed += 1;
        }
        written.push(PopularityWritten {
            entry: i.entry,
            prior,
            score,
            counted: i.counted,
        });
    }
    downloads.save_popularity(written).await?;
    Ok(changed)
}

/// Runs [`REFRESH_POPULARITY`] jobs.
pub(crate) struct RefreshPopularity {
    pub store: Arc<dyn Store>,
    pub downloads: Arc<dyn DownloadStore>,
}

#[async_trait::async_trait]
impl Handler for RefreshPopularity {
    fn kind(&self) -> &str {
        REFRESH_POPULARITY
    }

    async fn run(&self, _job: &Job) -> std::result::Result<(), String> {
        let changed = refresh(&*self.store, &*self.downloads)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(changed, "popularity refreshed from downloads");
        // The next run is queued by the download flusher, which makes sure one is queued
        // every minute (this one still holds the dedup key while it runs).
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_keep_the_product_and_major_minor() {
        assert_eq!(agent_of(Some("quiver/0.4.1 (linux)")), "quiver/0.4");
        assert_eq!(agent_of(Some("curl/8.5.0")), "curl/8.5");
        assert_eq!(agent_of(Some("Mozilla/5.0 (X11)")), "mozilla/5.0");
        assert_eq!(agent_of(Some("python-requests")), "python-requests");
        assert_eq!(agent_of(Some("<script>/1")), "script/1");
        assert_eq!(agent_of(Some("   ")), "other");
        assert_eq!(agent_of(None), "other");
        assert!(agent_of(Some(&"x".repeat(500))).len() <= 32);
    }

    #[test]
    fn windows_default_to_30_days_and_are_bounded() {
        let now: Timestamp = "2026-12-04T10:00:00Z".parse().unwrap();
        let (f, t) = window(None, None, now).unwrap();
        assert_eq!(t - f, 29);
        assert_eq!(day_date(t).to_string(), "2026-12-04");
        let d = |s: &str| Some(s.parse::<jiff::civil::Date>().unwrap());
        assert!(window(d("2026-12-05"), d("2026-12-04"), now).is_err());
        assert!(window(d("2025-01-01"), d("2026-12-04"), now).is_err());
        assert_eq!(
            window(d("2026-12-01"), d("2026-12-01"), now).unwrap().0,
            f + 26
        );
    }

    #[test]
    fn scores_invert() {
        for d in [0.0, 100.0, 12_345.0, 1e9] {
            let s = quiver_import::dataset::popularity_score(d);
            let back = score_downloads(s);
            assert!((back - d).abs() <= d * 1e-4 + 1e-3, "{d} -> {s} -> {back}");
        }
    }
}
