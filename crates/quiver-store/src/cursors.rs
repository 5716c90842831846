//! Durable positions of the change feed's consumers (migration `0014_feed_cursors` on both
//! backends): work derived from the feed that must happen once per event whoever wrote it
//! (queueing the quality gates of every new version, later webhook deliveries) keeps its
//! position here, shared by every node, so a crash or a restart resumes where it was and
//! two nodes do not both move it.
//!
//! A consumer reads its position, does the work for the events after it (idempotently: a
//! crash before the move repeats it), then moves the position with a compare-and-set. A
//! move that finds the position already moved by another node answers `false`: the
//! caller reads again and goes on from there.

use async_trait::async_trait;
use quiver_model::Result;

#[async_trait]
pub trait FeedCursors: Send + Sync + 'static {
    /// The feed position `consumer` has done its work up to (0 when it never moved).
    async fn cursor(&self, consumer: &str) -> Result<i64>;
    /// Move `consumer` from `from` to `to` (`to > from`); `false`, with nothing changed,
    /// when its position is no longer `from`.
    async fn advance_cursor(&self, consumer: &str, from: i64, to: i64) -> Result<bool>;
}

/// Refuse a move backwards or nowhere (a consumer's position only grows).
pub fn check_move(from: i64, to: i64) -> Result<()> {
    if to <= from {
        return Err(quiver_model::Error::invalid(
            "to",
            format!("a feed cursor moves forward only ({from} to {to})"),
        ));
    }
    Ok(())
}
