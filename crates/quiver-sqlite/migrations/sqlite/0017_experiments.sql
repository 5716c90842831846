-- A/B tests (quiver_store::telemetry::Experiment) and their arms' running figures,
-- updated in the telemetry ingest's transaction; events keep the test and arm they were
-- chosen by; roll-ups gain quantile sketches of time and cost, and the sums of a
-- least-squares refit of the time expression. Kept in step with
-- migrations/postgres/0017_experiments.sql of quiver-postgres.
ALTER TABLE telemetry_events ADD COLUMN experiment TEXT;
ALTER TABLE telemetry_events ADD COLUMN arm TEXT;
ALTER TABLE telemetry_rollups ADD COLUMN time_sketch TEXT NOT NULL DEFAULT '';
ALTER TABLE telemetry_rollups ADD COLUMN cost_sketch TEXT NOT NULL DEFAULT '';
ALTER TABLE telemetry_rollups ADD COLUMN fit TEXT NOT NULL DEFAULT '';

CREATE TABLE experiments (
    name          TEXT    PRIMARY KEY,
    description   TEXT    NOT NULL,
    namespace     TEXT    NOT NULL,
    tool          TEXT    NOT NULL,
    capability    TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    arm_a         TEXT    NOT NULL,
    arm_b         TEXT    NOT NULL,
    split         REAL    NOT NULL,
    environment   TEXT,
    callers       TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    min_samples   INTEGER NOT NULL,
    auto_complete INTEGER NOT NULL,
    winner        TEXT,
    created_by    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    completed_at  INTEGER
);
CREATE INDEX experiments_tool ON experiments (namespace, tool, capability);

CREATE TABLE experiment_arms (
    experiment  TEXT    NOT NULL REFERENCES experiments (name),
    arm         TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    successes   INTEGER NOT NULL,
    time_sum    REAL    NOT NULL,
    time_sumsq  REAL    NOT NULL,
    time_sketch TEXT    NOT NULL,
    cost_count  INTEGER NOT NULL,
    cost_sum    REAL    NOT NULL,
    cost_sumsq  REAL    NOT NULL,
    cost_sketch TEXT    NOT NULL,
    PRIMARY KEY (experiment, arm)
);
