-- The feed's durable head, kept in step with migrations/postgres/0013_feed_durable.sql of
-- quiver-postgres. Unused on SQLite: every commit there is flushed before it is seen.
CREATE TABLE feed_durable (
    head INTEGER NOT NULL
);
CREATE INDEX feed_durable_head ON feed_durable (head);
