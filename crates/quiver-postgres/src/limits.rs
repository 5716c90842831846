//! [`RateLimiter`] on PostgreSQL: the counters of every node in the `rate_limits` table
//! (migration `0008_rate_limits`), one atomic upsert per hit.
//!
//! The window comes from the database's clock, not the node's, so nodes with skewed clocks
//! still count in the same row. Rows of ended windows are deleted now and then (every
//! [`SWEEP_EVERY`] hits of this process), which keeps the table at about one row per active
//! subject and class.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use quiver_model::{Context, Result};
use quiver_store::limits::{window_ms, RateLimiter, Verdict};

use crate::PostgresStore;

/// Count the hit and return (hits in the window, milliseconds until the window ends).
/// The window starts at `now - now % window` on the database's clock.
const HIT: &str = "\
WITH clock AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now_ms)
INSERT INTO rate_limits AS r (subject, class, window_start, hits, expires_at)
SELECT $1, $2, now_ms - now_ms % $3, 1, now_ms - now_ms % $3 + $3 FROM clock
ON CONFLICT (subject, class, window_start) DO UPDATE SET hits = r.hits + 1
RETURNING r.hits, r.expires_at - (SELECT now_ms FROM clock)";

const SWEEP: &str = "DELETE FROM rate_limits \
     WHERE expires_at < (extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// Hits of this process between two sweeps of ended windows.
const SWEEP_EVERY: u64 = 1_000;

static HITS: AtomicU64 = AtomicU64::new(0);

#[async_trait]
impl RateLimiter for PostgresStore {
    async fn hit(
        &self,
        subject: &str,
        class: &str,
        window: Duration,
        limit: u64,
    ) -> Result<Verdict> {
        let c = self.pooled().await?;
        if HITS.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            c.execute(SWEEP, &[])
                .await
                .context("deleting ended rate-limit windows")?;
        }
        let row = c
            .query_one(HIT, &[&subject, &class, &window_ms(window)])
            .await
            .context("counting a rate-limit hit")?;
        let hits: i64 = row.get(0);
        let reset_ms: i64 = row.get(1);
        Ok(Verdict::of(
            u64::try_from(hits).unwrap_or(0),
            limit,
            Duration::from_millis(u64::try_from(reset_ms).unwrap_or(0)),
        ))
    }
}
