-- The feed's outbox, kept in step with migrations/postgres/0012_feed_outbox.sql of
-- quiver-postgres. Unused on SQLite: its single writer numbers feed rows in its own
-- transaction, in commit order, with no lock to wait for.
CREATE TABLE feed_outbox (
    id        INTEGER PRIMARY KEY,
    entity    TEXT    NOT NULL,
    entity_id INTEGER NOT NULL,
    entry_id  INTEGER,
    op        TEXT    NOT NULL,
    at        INTEGER NOT NULL
);
