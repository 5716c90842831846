-- Durable positions of the change feed's consumers (quiver_store::cursors): one row per
-- consumer (`validate_version`: the quality gates queued for every new version), moved
-- forward with a compare-and-set. Kept in step with migrations/postgres/0014_feed_cursors.sql
-- of quiver-postgres.
CREATE TABLE feed_cursors (
    consumer   TEXT   PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
