//! [`FeedCursors`] on SQLite: the `feed_cursors` table (migration `0014_feed_cursors`),
//! moved in the single writer's transaction.

use async_trait::async_trait;
use quiver_model::{Context, Result};
use quiver_store::cursors::{check_move, FeedCursors};
use rusqlite::OptionalExtension;

use super::{now_ms, SqliteStore};

#[async_trait]
impl FeedCursors for SqliteStore {
    async fn cursor(&self, consumer: &str) -> Result<i64> {
        let consumer = consumer.to_string();
        self.read(move |c| {
            c.prepare_cached("SELECT position FROM feed_cursors WHERE consumer = ?1")
                .and_then(|mut s| s.query_row([&consumer], |r| r.get(0)).optional())
                .map(Option::unwrap_or_default)
                .context("reading a feed cursor")
        })
        .await
    }

    async fn advance_cursor(&self, consumer: &str, from: i64, to: i64) -> Result<bool> {
        check_move(from, to)?;
        let consumer = consumer.to_string();
        self.write(move |tx| {
            // No row is position 0: the first move inserts it.
            let sql = if from == 0 {
                "INSERT INTO feed_cursors (consumer, position, updated_at) VALUES (?1, ?3, ?4) \
                 ON CONFLICT (consumer) DO UPDATE SET position = excluded.position, \
                 updated_at = excluded.updated_at WHERE feed_cursors.position = ?2"
            } else {
                "UPDATE feed_cursors SET position = ?3, updated_at = ?4 \
                 WHERE consumer = ?1 AND position = ?2"
            };
            let n = tx
                .prepare_cached(sql)
                .and_then(|mut s| s.execute(rusqlite::params![consumer, from, to, now_ms()]))
                .context("moving a feed cursor")?;
            Ok(n == 1)
        })
        .await
    }
}
