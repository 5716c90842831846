-- Telemetry of tool executions (quiver_store::telemetry): the raw events, once per
-- idempotency key, and hourly roll-ups per tool, version, capability, pattern and
-- environment, updated in the ingest's transaction. Kept in step with
-- migrations/sqlite/0016_telemetry.sql of quiver-sqlite.
CREATE TABLE telemetry_events (
    event_key    TEXT    PRIMARY KEY,
    namespace    TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    capability   TEXT    NOT NULL,
    pattern      TEXT    NOT NULL,
    environment  TEXT    NOT NULL,
    execution_id TEXT,
    at           BIGINT NOT NULL,
    time_ms      DOUBLE PRECISION    NOT NULL,
    cost         DOUBLE PRECISION,
    estimate_ms  DOUBLE PRECISION,
    success      BOOLEAN NOT NULL,
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
    hour          BIGINT NOT NULL,
    count         BIGINT NOT NULL,
    successes     BIGINT NOT NULL,
    time_sum      DOUBLE PRECISION    NOT NULL,
    time_min      DOUBLE PRECISION    NOT NULL,
    time_max      DOUBLE PRECISION    NOT NULL,
    cost_count    BIGINT NOT NULL,
    cost_sum      DOUBLE PRECISION    NOT NULL,
    ratio_count   BIGINT NOT NULL,
    ratio_sum     DOUBLE PRECISION    NOT NULL,
    ratio_buckets TEXT    NOT NULL,
    PRIMARY KEY (namespace, name, capability, pattern, version, environment, hour)
);
CREATE INDEX telemetry_rollups_hour ON telemetry_rollups (hour);
