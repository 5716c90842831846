-- The durable job queue (see quiver-store's jobs.rs). Timestamps are unix milliseconds.

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY,
    kind         TEXT    NOT NULL,
    payload      TEXT    NOT NULL, -- JSON
    priority     INTEGER NOT NULL DEFAULT 0,
    dedup_key    TEXT,
    state        TEXT    NOT NULL, -- queued | running | succeeded | dead
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_at       INTEGER NOT NULL, -- next attempt not before
    locked_by    TEXT,             -- the worker holding a running job
    locked_until INTEGER,          -- end of its lease
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    finished_at  INTEGER
);
-- Due jobs by urgency (queued ones by run_at, running ones by lease end).
CREATE INDEX jobs_queued ON jobs (priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_running ON jobs (locked_until) WHERE state = 'running';
CREATE INDEX jobs_state_kind ON jobs (state, kind, id);
-- One unfinished job per dedup key.
CREATE UNIQUE INDEX jobs_dedup ON jobs (dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('queued', 'running');
