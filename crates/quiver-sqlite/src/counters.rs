//! [`RateLimiter`] on SQLite: durable counters in the `rate_limits` table (migration
//! `0008_rate_limits`), for rare events that must be counted exactly (a trusted
//! publisher's daily auto-publishes), through [`Database::counters`](quiver_store::Database::counters).
//!
//! Each hit is one upsert with `RETURNING` in the single writer's transaction, so
//! concurrent hits are serialized and each is counted once. Request rate limits do not
//! come here (a write per request would queue reads behind the write lock; the server
//! counts those in memory). Windows are aligned to the epoch (a 24 h window is the UTC
//! day); ended windows are deleted by the next hit.

use std::time::Duration;

use async_trait::async_trait;
use quiver_model::{Context, Result};

use super::{now_ms, SqliteStore};
use quiver_store::limits::{window_ms, window_start, RateLimiter, Verdict};

const HIT: &str = "\
INSERT INTO rate_limits (subject, class, window_start, hits, expires_at) VALUES (?1, ?2, ?3, 1, ?4)
ON CONFLICT (subject, class, window_start) DO UPDATE SET hits = hits + 1
RETURNING hits";

const SWEEP: &str = "DELETE FROM rate_limits WHERE expires_at <= ?1";

#[async_trait]
impl RateLimiter for SqliteStore {
    async fn hit(
        &self,
        subject: &str,
        class: &str,
        window: Duration,
        limit: u64,
    ) -> Result<Verdict> {
        let (subject, class) = (subject.to_string(), class.to_string());
        let w = window_ms(window);
        self.write(move |tx| {
            let now = now_ms();
            let start = window_start(now, w);
            let end = start.saturating_add(w);
            tx.prepare_cached(SWEEP)
                .and_then(|mut s| s.execute([now]))
                .context("deleting ended counter windows")?;
            let hits: i64 = tx
                .prepare_cached(HIT)
                .and_then(|mut s| {
                    s.query_row(rusqlite::params![subject, class, start, end], |r| r.get(0))
                })
                .context("counting a hit")?;
            Ok(Verdict::of(
                u64::try_from(hits).unwrap_or(0),
                limit,
                Duration::from_millis(u64::try_from(end - now).unwrap_or(0)),
            ))
        })
        .await
    }
}
