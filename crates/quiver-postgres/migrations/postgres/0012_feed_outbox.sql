-- The feed's outbox: writers append unnumbered feed rows here inside their transaction
-- and commit without a global lock; the sequencer (PostgresStore::sequence, run by each
-- writer after its commit) moves the committed rows into `feed` with the next positions
-- under the feed lock. Kept in step with migrations/sqlite/0012_feed_outbox.sql of
-- quiver-sqlite.
CREATE TABLE feed_outbox (
    id        BIGSERIAL PRIMARY KEY,
    entity    TEXT   NOT NULL,
    entity_id BIGINT NOT NULL,
    entry_id  BIGINT,
    op        TEXT   NOT NULL,
    at        BIGINT NOT NULL
);
