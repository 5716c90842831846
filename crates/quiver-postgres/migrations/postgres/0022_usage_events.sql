-- Install and use events that clients report (the skills CLI's analytics/track),
-- idempotent by the client's event id, and the project each came from (an opaque id
-- the client hashes) for co-install recommendations. Times are epoch milliseconds. Kept in
-- step with the other backend's 0022_usage_events.sql.
CREATE TABLE usage_events (
    id       TEXT    PRIMARY KEY,
    kind     TEXT    NOT NULL,
    entry_id BIGINT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    version  TEXT,
    project  TEXT,
    at       BIGINT NOT NULL
);
CREATE INDEX usage_events_entry ON usage_events (entry_id, kind, project);
CREATE INDEX usage_events_project ON usage_events (project, kind, entry_id);
