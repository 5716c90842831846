//! [`Throttle`] on PostgreSQL: the `throttles` table (migration `0011_throttles`), shared
//! by every node. One statement per attempt does the GCRA step of
//! [`quiver_store::throttle::gcra`] on the database's clock (nodes with skewed clocks
//! agree): `ON CONFLICT … DO UPDATE … WHERE` locks the key's row, so concurrent attempts
//! on one key are counted one after the other and none slips past the burst. Keys whose
//! TAT has passed are deleted now and then.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use quiver_model::{Context, Result};
use quiver_store::throttle::{period_ms, standing, Charge, Throttle};

use crate::PostgresStore;

/// $1 key, $2 period (ms), $3 burst × period (ms). Answers the new TAT (null when
/// refused), the TAT before, and the clock.
const CHARGE: &str = "\
WITH clock AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now_ms),
prev AS (SELECT tat_ms FROM throttles WHERE key = $1),
up AS (
    INSERT INTO throttles AS t (key, tat_ms) SELECT $1, now_ms + $2 FROM clock
    ON CONFLICT (key) DO UPDATE SET tat_ms = greatest(t.tat_ms, (SELECT now_ms FROM clock)) + $2
    WHERE greatest(t.tat_ms, (SELECT now_ms FROM clock)) + $2 - (SELECT now_ms FROM clock) <= $3
    RETURNING t.tat_ms)
SELECT (SELECT tat_ms FROM up), (SELECT tat_ms FROM prev), (SELECT now_ms FROM clock)";

/// $1 key, $2 period (ms): one period back. A TAT no longer ahead means the same as no
/// row (the charge takes `greatest(TAT, now)`); the sweep deletes it later.
const FORGIVE_ONE: &str = "UPDATE throttles SET tat_ms = tat_ms - $2 WHERE key = $1";

const FORGIVE_ALL: &str = "DELETE FROM throttles WHERE key = $1";

const SWEEP: &str = "DELETE FROM throttles \
     WHERE tat_ms < (extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// Attempts of this process between two sweeps of drained keys.
const SWEEP_EVERY: u64 = 500;

static CHARGES: AtomicU64 = AtomicU64::new(0);

#[async_trait]
impl Throttle for PostgresStore {
    async fn charge(&self, key: &str, period: Duration, burst: u32) -> Result<Charge> {
        let c = self.pooled().await?;
        if CHARGES.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            c.execute(SWEEP, &[])
                .await
                .context("deleting drained throttle keys")?;
        }
        let p = period_ms(period);
        let limit = p.saturating_mul(i64::from(burst.max(1)));
        let row = c
            .query_one(CHARGE, &[&key, &p, &limit])
            .await
            .context("counting a throttled attempt")?;
        let next: Option<i64> = row.get(0);
        let prev: Option<i64> = row.get(1);
        let now: i64 = row.get(2);
        Ok(match next {
            Some(tat) => Charge {
                allowed: true,
                standing: standing(tat - now, p),
                retry_after: Duration::ZERO,
            },
            None => {
                // `prev` is the statement's snapshot: a row another attempt inserted just
                // now is not in it, and then one period is the honest wait.
                let base = prev.map_or(now, |t| t.max(now));
                let wait = (base + p - limit - now).max(1);
                Charge {
                    allowed: false,
                    standing: standing(base - now, p).max(1),
                    retry_after: Duration::from_millis(u64::try_from(wait).unwrap_or(1)),
                }
            }
        })
    }

    async fn forgive(&self, key: &str, period: Option<Duration>) -> Result<()> {
        let c = self.pooled().await?;
        match period {
            Some(p) => c.execute(FORGIVE_ONE, &[&key, &period_ms(p)]).await,
            None => c.execute(FORGIVE_ALL, &[&key]).await,
        }
        .context("forgiving a throttled attempt")?;
        Ok(())
    }
}
