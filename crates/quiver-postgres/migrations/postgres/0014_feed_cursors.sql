-- Durable positions of the change feed's consumers (quiver_store::cursors): one row per
-- consumer (`validate_version`: the quality gates queued for every new version), moved
-- forward with a compare-and-set. Kept in step with migrations/sqlite/0014_feed_cursors.sql
-- of quiver-sqlite.
CREATE TABLE feed_cursors (
    consumer   TEXT   PRIMARY KEY,
    position   BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
