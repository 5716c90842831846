//! The credential throttle's store: a generic cell rate algorithm (GCRA) per key.
//!
//! Each key keeps one number, its *theoretical arrival time* (TAT, unix milliseconds).
//! An attempt costs `period`: it is allowed when `max(TAT, now) + period - now <= burst ×
//! period`, and then moves the TAT to `max(TAT, now) + period`. So `burst` attempts may
//! come at once, then one per `period`; there is no window edge to time guesses around
//! (a fixed window lets twice its limit through across an edge). A refused attempt does
//! not move the TAT.
//!
//! Both backends keep the TATs in their `throttles` table (migration `0011_throttles`), so
//! every PostgreSQL node shares them and a restart forgets no lockout. Rows whose TAT has
//! passed carry no information and are deleted now and then.

use std::time::Duration;

use async_trait::async_trait;
use quiver_model::Result;

/// The answer to one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// Whether the attempt may go ahead (it has been counted).
    pub allowed: bool,
    /// Attempts standing against the key after this one (counted attempts whose cost has
    /// not drained yet): 1 for a first attempt, `burst` when the next will be refused.
    pub standing: u32,
    /// When refused: how long until one attempt is allowed again.
    pub retry_after: Duration,
}

/// Counts attempts per key with GCRA (see the module's notes).
#[async_trait]
pub trait Throttle: Send + Sync + 'static {
    /// Count one attempt of `key` costing `period`, unless more than `burst` would then
    /// be standing; say which.
    async fn charge(&self, key: &str, period: Duration, burst: u32) -> Result<Charge>;

    /// Give back one attempt's `period` (a success after failures), or with `None`
    /// forget the key altogether.
    async fn forgive(&self, key: &str, period: Option<Duration>) -> Result<()>;
}

/// A period in whole milliseconds (at least 1).
pub fn period_ms(period: Duration) -> i64 {
    i64::try_from(period.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// The GCRA step: given the key's stored TAT (if any) and the time, the TAT to store
/// (`None`: refused, store nothing) and the answer. Backends that compute in Rust call
/// this inside their write transaction; PostgreSQL's statement does the same arithmetic.
pub fn gcra(
    prev_tat: Option<i64>,
    now_ms: i64,
    period: Duration,
    burst: u32,
) -> (Option<i64>, Charge) {
    let p = period_ms(period);
    let limit = p.saturating_mul(i64::from(burst.max(1)));
    let base = prev_tat.map_or(now_ms, |t| t.max(now_ms));
    let next = base.saturating_add(p);
    if next - now_ms <= limit {
        let charge = Charge {
            allowed: true,
            standing: standing(next - now_ms, p),
            retry_after: Duration::ZERO,
        };
        (Some(next), charge)
    } else {
        let wait = next - limit - now_ms;
        let charge = Charge {
            allowed: false,
            standing: standing(base - now_ms, p),
            retry_after: Duration::from_millis(u64::try_from(wait).unwrap_or(0).max(1)),
        };
        (None, charge)
    }
}

/// Attempts whose cost has not drained, for a TAT `ahead_ms` past now.
pub fn standing(ahead_ms: i64, period_ms: i64) -> u32 {
    let (ahead, p) = (ahead_ms.max(0), period_ms.max(1));
    u32::try_from(ahead.div_euclid(p) + i64::from(ahead.rem_euclid(p) > 0)).unwrap_or(u32::MAX)
}

/// The TAT after forgiving one `period` (or everything): `None` deletes the row.
pub fn forgiven(prev_tat: i64, now_ms: i64, period: Option<Duration>) -> Option<i64> {
    let p = period.map(period_ms)?;
    let tat = prev_tat.saturating_sub(p);
    (tat > now_ms).then_some(tat)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn run(tat: &mut Option<i64>, now: i64, burst: u32) -> Charge {
        let (next, c) = gcra(*tat, now, MIN, burst);
        if next.is_some() {
            *tat = next;
        }
        c
    }

    #[test]
    fn a_burst_then_one_attempt_per_period() {
        let mut tat = None;
        for i in 1..=5 {
            let c = run(&mut tat, 1_000_000, 5);
            assert!(c.allowed, "attempt {i}");
            assert_eq!(c.standing, i);
        }
        let c = run(&mut tat, 1_000_000, 5);
        assert!(!c.allowed);
        assert_eq!(c.retry_after, MIN);
        assert_eq!(c.standing, 5);
        // Half a period on, still refused, for the other half.
        let c = run(&mut tat, 1_030_000, 5);
        assert!(!c.allowed);
        assert_eq!(c.retry_after, Duration::from_secs(30));
        // One period on, exactly one more.
        assert!(run(&mut tat, 1_060_000, 5).allowed);
        assert!(!run(&mut tat, 1_060_001, 5).allowed);
    }

    #[test]
    fn no_window_edge_lets_a_double_burst_through() {
        // A fixed window of 5/min lets 10 through across its edge; GCRA does not.
        let mut tat = None;
        let allowed = (0..20)
            .filter(|i| run(&mut tat, 59_900 + i * 10, 5).allowed)
            .count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn forgiving_gives_back_one_period_or_everything() {
        let now = 1_000_000;
        assert_eq!(forgiven(now + 120_000, now, Some(MIN)), Some(now + 60_000));
        assert_eq!(forgiven(now + 60_000, now, Some(MIN)), None);
        assert_eq!(forgiven(now + 600_000, now, None), None);
    }

    #[test]
    fn standing_rounds_up() {
        assert_eq!(standing(0, 100), 0);
        assert_eq!(standing(1, 100), 1);
        assert_eq!(standing(100, 100), 1);
        assert_eq!(standing(101, 100), 2);
        assert_eq!(standing(-5, 100), 0);
    }
}
