-- The recipe pipeline's live records (quiver_store::pipeline): queue items, results per
-- item and environment, current blocks, per-ecosystem valves, observed checksums and
-- their alerts, and requests. Times are epoch milliseconds. Kept in step with
-- migrations/sqlite/0018_pipeline.sql of quiver-sqlite.
CREATE TABLE pipeline_items (
    id            TEXT    PRIMARY KEY,
    ecosystem     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    tier          INTEGER NOT NULL,
    popularity    DOUBLE PRECISION NOT NULL,
    requests      BIGINT  NOT NULL,
    score         DOUBLE PRECISION NOT NULL,
    status        TEXT    NOT NULL,
    confidence    TEXT,
    failure_count BIGINT  NOT NULL,
    retries       BIGINT  NOT NULL,
    next_retry_at BIGINT,
    lease_owner   TEXT,
    lease_until   BIGINT,
    recipe        TEXT,
    imported      TEXT,
    ord           BIGINT  NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);
CREATE INDEX pipeline_items_claim ON pipeline_items (status, tier, score DESC, created_at, id);
CREATE INDEX pipeline_items_eco_claim ON pipeline_items (ecosystem, status, tier, score DESC, created_at, id);
CREATE INDEX pipeline_items_lease ON pipeline_items (status, lease_until);
CREATE INDEX pipeline_items_ord ON pipeline_items (ord, id);

CREATE TABLE pipeline_results (
    id          BIGSERIAL PRIMARY KEY,
    item_id     TEXT    NOT NULL,
    ecosystem   TEXT    NOT NULL,
    batch_id    TEXT,
    worker      TEXT,
    environment TEXT    NOT NULL,
    passed      BOOLEAN NOT NULL,
    category    TEXT,
    exit_code   INTEGER,
    message     TEXT,
    blocked_by  TEXT    NOT NULL,
    at          BIGINT  NOT NULL
);
CREATE INDEX pipeline_results_item ON pipeline_results (item_id, id);
CREATE INDEX pipeline_results_failures ON pipeline_results (passed, id);
CREATE INDEX pipeline_results_eco ON pipeline_results (ecosystem, id);
CREATE INDEX pipeline_results_env ON pipeline_results (environment, id);
CREATE INDEX pipeline_results_category ON pipeline_results (category, id);
CREATE INDEX pipeline_results_at ON pipeline_results (at);

CREATE TABLE pipeline_blocks (
    item_id     TEXT NOT NULL,
    environment TEXT NOT NULL,
    dependency  TEXT NOT NULL,
    PRIMARY KEY (item_id, environment, dependency)
);
CREATE INDEX pipeline_blocks_dependency ON pipeline_blocks (dependency);

CREATE TABLE pipeline_env_states (
    item_id     TEXT    NOT NULL,
    environment TEXT    NOT NULL,
    passed      BOOLEAN NOT NULL,
    category    TEXT,
    at          BIGINT  NOT NULL,
    PRIMARY KEY (item_id, environment)
);
CREATE INDEX pipeline_env_states_env ON pipeline_env_states (environment, passed);

CREATE TABLE pipeline_controls (
    ecosystem       TEXT    PRIMARY KEY,
    paused          BOOLEAN NOT NULL,
    reason          TEXT,
    breaker         TEXT    NOT NULL,
    opened_at       BIGINT,
    recent          TEXT    NOT NULL,
    claims_per_hour BIGINT,
    window_start    BIGINT  NOT NULL,
    window_claims   BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

CREATE TABLE pipeline_claims (
    hour      BIGINT NOT NULL,
    ecosystem TEXT   NOT NULL,
    claimed   BIGINT NOT NULL,
    passed    BIGINT NOT NULL,
    failed    BIGINT NOT NULL,
    PRIMARY KEY (hour, ecosystem)
);

CREATE TABLE pipeline_checksums (
    recipe      TEXT   NOT NULL,
    version     TEXT   NOT NULL,
    environment TEXT   NOT NULL,
    asset       TEXT   NOT NULL,
    checksum    TEXT   NOT NULL,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    PRIMARY KEY (recipe, version, environment, asset)
);

CREATE TABLE pipeline_checksum_alerts (
    id          BIGSERIAL PRIMARY KEY,
    recipe      TEXT   NOT NULL,
    version     TEXT   NOT NULL,
    environment TEXT   NOT NULL,
    asset       TEXT   NOT NULL,
    expected    TEXT   NOT NULL,
    observed    TEXT   NOT NULL,
    at          BIGINT NOT NULL,
    UNIQUE (recipe, version, environment, asset, observed)
);

CREATE TABLE pipeline_requests (
    item_id TEXT   NOT NULL,
    day     BIGINT NOT NULL,
    client  TEXT   NOT NULL,
    PRIMARY KEY (item_id, day, client)
);
