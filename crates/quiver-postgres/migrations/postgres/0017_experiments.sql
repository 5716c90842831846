-- A/B tests (quiver_store::telemetry::Experiment) and their arms' running figures,
-- updated in the telemetry ingest's transaction; events keep the test and arm they were
-- chosen by; roll-ups gain quantile sketches of time and cost, and the sums of a
-- least-squares refit of the time expression. Kept in step with
-- migrations/sqlite/0017_experiments.sql of quiver-sqlite.
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
    split         DOUBLE PRECISION    NOT NULL,
    environment   TEXT,
    callers       TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    min_samples   BIGINT NOT NULL,
    auto_complete BOOLEAN NOT NULL,
    winner        TEXT,
    created_by    TEXT    NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    completed_at  BIGINT
);
CREATE INDEX experiments_tool ON experiments (namespace, tool, capability);

CREATE TABLE experiment_arms (
    experiment  TEXT    NOT NULL REFERENCES experiments (name),
    arm         TEXT    NOT NULL,
    count       BIGINT NOT NULL,
    successes   BIGINT NOT NULL,
    time_sum    DOUBLE PRECISION    NOT NULL,
    time_sumsq  DOUBLE PRECISION    NOT NULL,
    time_sketch TEXT    NOT NULL,
    cost_count  BIGINT NOT NULL,
    cost_sum    DOUBLE PRECISION    NOT NULL,
    cost_sumsq  DOUBLE PRECISION    NOT NULL,
    cost_sketch TEXT    NOT NULL,
    PRIMARY KEY (experiment, arm)
);
