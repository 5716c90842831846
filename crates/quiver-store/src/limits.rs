//! Rate-limit counters: fixed windows counted per (subject, class).
//!
//! A [`RateLimiter`] counts one hit of a subject (a hashed token, user or client address)
//! in a route class's current window and says whether it is still within the limit. The
//! window is fixed and aligned to the epoch (`start = now - now % window`), so every node
//! computes the same window for the same instant and counts in one row.
//!
//! Three implementations: [`MemoryLimiter`] (one process; what the SQLite mode uses for
//! request rate limits — a write to the database file per read request would serialize
//! reads behind its write lock), the PostgreSQL store's, which keeps the counters in the
//! `rate_limits` table (migration `0008_rate_limits`) with one atomic upsert per hit, so
//! that every node shares the counts, and the SQLite store's over the same table, offered
//! only as [`Database::counters`](crate::Database::counters): durable counts of rare
//! events (a trusted publisher's daily auto-publishes), one upsert in the writer's
//! transaction.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use quiver_model::Result;

/// The answer to one hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: `remaining` hits are left in this window, which ends in `reset_after`.
    Allowed {
        remaining: u64,
        reset_after: Duration,
    },
    /// Over the limit until the window ends, in `retry_after`.
    Limited { retry_after: Duration },
}

impl Verdict {
    /// The verdict for the `count`th hit of a window that ends in `reset_after`.
    pub fn of(count: u64, limit: u64, reset_after: Duration) -> Verdict {
        if count > limit {
            Verdict::Limited {
                retry_after: reset_after,
            }
        } else {
            Verdict::Allowed {
                remaining: limit - count,
                reset_after,
            }
        }
    }

    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed { .. })
    }
}

/// Counts hits in fixed windows.
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Count one hit of `subject` in `class` in the current window of length `window`, and
    /// say whether it is within `limit` hits per window. Hits over the limit are counted
    /// too (they do not extend the window).
    async fn hit(
        &self,
        subject: &str,
        class: &str,
        window: Duration,
        limit: u64,
    ) -> Result<Verdict>;
}

/// The window's length in milliseconds (at least 1).
pub fn window_ms(window: Duration) -> i64 {
    i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// The start of the window containing `now_ms` (unix milliseconds).
pub fn window_start(now_ms: i64, window_ms: i64) -> i64 {
    now_ms - now_ms.rem_euclid(window_ms)
}

/// One counter: (window start, window end, hits), times in unix milliseconds.
type Counter = (i64, i64, u64);

/// An in-process limiter: counts live in this process only.
#[derive(Default)]
pub struct MemoryLimiter {
    /// (subject, class) -> its counter.
    counts: Mutex<HashMap<(String, String), Counter>>,
}

/// Above this many counters, a hit first drops the counters of ended windows.
const PRUNE_ABOVE: usize = 50_000;

impl MemoryLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Count a hit at `now_ms` (unix milliseconds): the clock is a parameter for tests.
    pub fn hit_at(
        &self,
        now_ms: i64,
        subject: &str,
        class: &str,
        window: Duration,
        limit: u64,
    ) -> Verdict {
        let w = window_ms(window);
        let start = window_start(now_ms, w);
        let end = start.saturating_add(w);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() > PRUNE_ABOVE {
            counts.retain(|_, (_, e, _)| *e > now_ms);
        }
        let slot = counts
            .entry((subject.to_string(), class.to_string()))
            .or_insert((start, end, 0));
        if slot.0 != start {
            *slot = (start, end, 0);
        }
        slot.2 += 1;
        let reset = Duration::from_millis(u64::try_from(end - now_ms).unwrap_or(0));
        Verdict::of(slot.2, limit, reset)
    }
}

#[async_trait]
impl RateLimiter for MemoryLimiter {
    async fn hit(
        &self,
        subject: &str,
        class: &str,
        window: Duration,
        limit: u64,
    ) -> Result<Verdict> {
        let now = jiff::Timestamp::now().as_millisecond();
        Ok(self.hit_at(now, subject, class, window, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn counts_per_subject_and_class_and_resets_with_the_window() {
        let l = MemoryLimiter::new();
        let t0 = 1_000 * 60_000 + 15_000; // 15 s into a minute
        assert_eq!(
            l.hit_at(t0, "a", "read", MIN, 2),
            Verdict::Allowed {
                remaining: 1,
                reset_after: Duration::from_secs(45)
            }
        );
        assert!(l.hit_at(t0, "a", "read", MIN, 2).is_allowed());
        assert_eq!(
            l.hit_at(t0 + 5_000, "a", "read", MIN, 2),
            Verdict::Limited {
                retry_after: Duration::from_secs(40)
            }
        );
        // Other subjects and other classes have their own counts.
        assert!(l.hit_at(t0, "b", "read", MIN, 2).is_allowed());
        assert!(l.hit_at(t0, "a", "search", MIN, 2).is_allowed());
        // The next window starts from zero.
        assert!(l.hit_at(t0 + 45_000, "a", "read", MIN, 2).is_allowed());
    }

    #[test]
    fn windows_align_to_the_epoch() {
        assert_eq!(window_start(125_000, 60_000), 120_000);
        assert_eq!(window_start(120_000, 60_000), 120_000);
        assert_eq!(window_ms(Duration::ZERO), 1);
    }
}
