-- The durable head of the feed: the sequencer numbers outbox rows in a transaction that
-- commits without waiting for its flush (it holds the feed lock, and a flush under the
-- lock would serialize every writer's flush); the writer then commits a row here, with a
-- normal (flushed) commit, naming the head its rows are under. WAL is written in order,
-- so that commit being flushed means the numbering is too. Readers of the feed see rows
-- only up to the highest durable head, so no follower ever reads a numbering that a crash
-- of PostgreSQL could take back. Kept in step with migrations/sqlite/0013_feed_durable.sql.
CREATE TABLE feed_durable (
    head BIGINT NOT NULL
);
CREATE INDEX feed_durable_head ON feed_durable (head);
INSERT INTO feed_durable (head) SELECT COALESCE(MAX(seq), 0) FROM feed;
