-- Telemetry of tool executions (quiver_store::telemetry): the raw events, once per
-- idempotency key, and hourly roll-ups per tool, version, capability, pattern and
-- environment, updated in the ingest's transaction. Kept in step with
-- migrations/postgres/0016_telemetry.sql of quiver-postgres.
CREATE TABLE telemetry_events (
    event_key    TEXT    PRIMARY KEY,
    namespace    TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    capability   TEXT    NOT NULL,
    pattern      TEXT    NOT NULL,
    environment  TEXT    NOT NULL,
    execution_id TEXT,
    at           INTEGER NOT NULL,
    time_ms      REAL    NOT NULL,
    cost         REAL,
    estimate_ms  REAL,
    success      INTEGER NOT NULL,
    error        TEXT,
    variables    TEXT    NOT NULL
);
CREATE INDEX telemetry_events_at ON telemetry_events (at);

CREATE TABLE telemetry_rollups (
    namespace     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    capability    TEXT    NOT NULL,
    pattern       TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    environment   TEXT    NOT NULL,
    hour          INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    successes     INTEGER NOT NULL,
    time_sum      REAL    NOT NULL,
    time_min      REAL    NOT NULL,
    time_max      REAL    NOT NULL,
    cost_count    INTEGER NOT NULL,
    cost_sum      REAL    NOT NULL,
    ratio_count   INTEGER NOT NULL,
    ratio_sum     REAL    NOT NULL,
    ratio_buckets TEXT    NOT NULL,
    PRIMARY KEY (namespace, name, capability, pattern, version, environment, hour)
);
CREATE INDEX telemetry_rollups_hour ON telemetry_rollups (hour);
