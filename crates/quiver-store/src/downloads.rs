//! Download and resolution counts (migration `0023_downloads` on both backends), behind
//! the [`DownloadStore`] trait.
//!
//! The engine buffers hits in memory and hands them over in batches
//! ([`DownloadStore::record_downloads`]); the store decides which count. A hit counts
//! unless the same client's hit of the same entry and version was counted less than a
//! window ago (an hour): the last counted time per client, entry and version is kept in
//! `download_clients` (pruned once older than the window), so the rule holds across
//! nodes and restarts. Counted hits add to `downloads_daily` (entry, version, UTC day).
//! Clients are only ever stored as salted hashes, and user agents only as counts per day
//! and agent name (`download_agents`).
//!
//! Popularity refreshed from downloads keeps, per entry, the score it started from (its
//! prior: the imported popularity) and the score it last wrote
//! ([`DownloadStore::popularity_inputs`]): an entry whose score was changed since by
//! someone else (a new import) takes that score as its new prior.

use async_trait::async_trait;
use jiff::Timestamp;
use quiver_model::{EntryKey, Result};
use serde::{Deserialize, Serialize};

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// The UTC day of a time, as days since 1970-01-01.
pub fn day_of(at: Timestamp) -> i32 {
    at.as_millisecond().div_euclid(DAY_MS) as i32
}

/// The date of a day number (`2026-12-04`).
pub fn day_date(day: i32) -> jiff::civil::Date {
    Timestamp::from_millisecond(i64::from(day) * DAY_MS)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

/// The day number of a date.
pub fn date_day(date: jiff::civil::Date) -> i32 {
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| day_of(z.timestamp()))
        .unwrap_or(0)
}

/// One download or resolution, as the engine buffered it.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadHit {
    pub entry: EntryKey,
    pub version: String,
    /// The client, as a salted hash of its address.
    pub client: String,
    pub at: Timestamp,
}

/// Hits of one user agent (its product name and version, nothing else) on one day.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AgentDay {
    pub day: i32,
    pub agent: String,
    pub count: u64,
}

/// Counted downloads of one version on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadDay {
    pub version: String,
    pub day: i32,
    pub count: u64,
}

/// An entry's counted downloads, and the popularity a refresh last derived for it.
#[derive(Debug, Clone, PartialEq)]
pub struct PopularityInput {
    pub entry: EntryKey,
    /// Counted downloads in the window asked for.
    pub counted: u64,
    /// The score the entry had before its first refresh (or when someone else last set it).
    pub prior: Option<f64>,
    /// The score the last refresh wrote.
    pub written: Option<f64>,
}

/// What a refresh wrote for an entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PopularityWritten {
    pub entry: EntryKey,
    pub prior: f64,
    pub score: f64,
    pub counted: u64,
}

#[async_trait]
pub trait DownloadStore: Send + Sync + 'static {
    /// Count a batch of hits (at most one per entry, version and client; the engine's
    /// buffer keeps the first) and add the agents' counts. A hit counts unless the same
    /// client's hit of the same entry and version was counted less than `window_ms`
    /// before it. Hits of entries that no longer exist are dropped. Answers how many
    /// counted. One transaction.
    async fn record_downloads(
        &self,
        hits: Vec<DownloadHit>,
        agents: Vec<AgentDay>,
        window_ms: i64,
    ) -> Result<u64>;
    /// An entry's counted downloads per version and day, days `from..=to`.
    async fn download_days(&self, key: &EntryKey, from: i32, to: i32) -> Result<Vec<DownloadDay>>;
    /// An entry's counted downloads per version, all time.
    async fn download_totals(&self, key: &EntryKey) -> Result<Vec<(String, u64)>>;
    /// A namespace's counted downloads per entry and day, days `from..=to`.
    async fn namespace_download_days(
        &self,
        namespace: &str,
        from: i32,
        to: i32,
    ) -> Result<Vec<(EntryKey, i32, u64)>>;
    /// The most downloaded entries over days `from..=to`, most first.
    async fn most_downloaded(
        &self,
        from: i32,
        to: i32,
        limit: usize,
    ) -> Result<Vec<(EntryKey, u64)>>;
    /// Hits per user agent and day, days `from..=to`.
    async fn agent_days(&self, from: i32, to: i32) -> Result<Vec<AgentDay>>;
    /// Forget when clients were last counted, for times before `before_ms` (epoch ms).
    async fn prune_download_clients(&self, before_ms: i64) -> Result<u64>;
    /// Every entry that has counted downloads over days `from..=to` or was refreshed
    /// before, with its downloads over those days and its refresh state.
    async fn popularity_inputs(&self, from: i32, to: i32) -> Result<Vec<PopularityInput>>;
    /// Keep what a refresh wrote (entries that no longer exist are skipped).
    async fn save_popularity(&self, rows: Vec<PopularityWritten>) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_across_midnight() {
        let before: Timestamp = "2026-12-03T23:59:59.999Z".parse().unwrap();
        let after: Timestamp = "2026-12-04T00:00:00Z".parse().unwrap();
        assert_eq!(day_of(after) - day_of(before), 1);
        assert_eq!(day_date(day_of(after)).to_string(), "2026-12-04");
        assert_eq!(date_day(day_date(day_of(before))), day_of(before));
        let early: Timestamp = "1969-12-31T23:00:00Z".parse().unwrap();
        assert_eq!(day_of(early), -1);
    }
}
