//! [`FeedCursors`] on PostgreSQL: the `feed_cursors` table (migration
//! `0014_feed_cursors`), shared by every node; a move is one conditional statement, so of
//! two nodes moving a consumer from the same position exactly one succeeds.

use async_trait::async_trait;
use quiver_model::{Context, Result};
use quiver_store::cursors::{check_move, FeedCursors};

use crate::store::now_ms;
use crate::PostgresStore;

#[async_trait]
impl FeedCursors for PostgresStore {
    async fn cursor(&self, consumer: &str) -> Result<i64> {
        let c = self.pooled().await?;
        Ok(c.query_opt(
            "SELECT position FROM feed_cursors WHERE consumer = $1",
            &[&consumer],
        )
        .await
        .context("reading a feed cursor")?
        .map(|r| r.get(0))
        .unwrap_or_default())
    }

    async fn advance_cursor(&self, consumer: &str, from: i64, to: i64) -> Result<bool> {
        check_move(from, to)?;
        let c = self.pooled().await?;
        // No row is position 0: the first move inserts it.
        let sql = if from == 0 {
            "INSERT INTO feed_cursors AS f (consumer, position, updated_at) VALUES ($1, $3, $4) \
             ON CONFLICT (consumer) DO UPDATE SET position = excluded.position, \
             updated_at = excluded.updated_at WHERE f.position = $2"
        } else {
            "UPDATE feed_cursors SET position = $3, updated_at = $4 \
             WHERE consumer = $1 AND position = $2"
        };
        let n = c
            .execute(sql, &[&consumer, &from, &to, &now_ms()])
            .await
            .context("moving a feed cursor")?;
        Ok(n == 1)
    }
}
