//! [`Throttle`] on SQLite: the `throttles` table (migration `0011_throttles`), read and
//! written in the single writer's transaction, so concurrent attempts are serialized and
//! each is counted once. Credential attempts are rare next to reads, so a write each is
//! cheap; keys whose TAT has passed are deleted by the next attempt.

use std::time::Duration;

use async_trait::async_trait;
use quiver_model::{Context, Result};
use quiver_store::throttle::{forgiven, gcra, Charge, Throttle};
use rusqlite::OptionalExtension;

use super::{now_ms, SqliteStore};

const GET: &str = "SELECT tat_ms FROM throttles WHERE key = ?1";
const PUT: &str = "INSERT INTO throttles (key, tat_ms) VALUES (?1, ?2) \
     ON CONFLICT (key) DO UPDATE SET tat_ms = excluded.tat_ms";
const DELETE: &str = "DELETE FROM throttles WHERE key = ?1";
const SWEEP: &str = "DELETE FROM throttles WHERE tat_ms <= ?1";

#[async_trait]
impl Throttle for SqliteStore {
    async fn charge(&self, key: &str, period: Duration, burst: u32) -> Result<Charge> {
        let key = key.to_string();
        self.write(move |tx| {
            let now = now_ms();
            tx.prepare_cached(SWEEP)
                .and_then(|mut s| s.execute([now]))
                .context("deleting drained throttle keys")?;
            let prev: Option<i64> = tx
                .prepare_cached(GET)
                .and_then(|mut s| s.query_row([&key], |r| r.get(0)).optional())
                .context("reading a throttle key")?;
            let (next, charge) = gcra(prev, now, period, burst);
            if let Some(tat) = next {
                tx.prepare_cached(PUT)
                    .and_then(|mut s| s.execute(rusqlite::params![key, tat]))
                    .context("counting a throttled attempt")?;
            }
            Ok(charge)
        })
        .await
    }

    async fn forgive(&self, key: &str, period: Option<Duration>) -> Result<()> {
        let key = key.to_string();
        self.write(move |tx| {
            let now = now_ms();
            let prev: Option<i64> = tx
                .prepare_cached(GET)
                .and_then(|mut s| s.query_row([&key], |r| r.get(0)).optional())
                .context("reading a throttle key")?;
            let Some(prev) = prev else { return Ok(()) };
            match forgiven(prev, now, period) {
                Some(tat) => tx
                    .prepare_cached(PUT)
                    .and_then(|mut s| s.execute(rusqlite::params![key, tat])),
                None => tx
                    .prepare_cached(DELETE)
                    .and_then(|mut s| s.execute([&key])),
            }
            .context("forgiving a throttled attempt")?;
            Ok(())
        })
        .await
    }
}
