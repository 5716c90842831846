-- quiver schema, version 1 (PostgreSQL). Kept in step with migrations/sqlite/0001_init.sql
-- of quiver-store: same migration names, same tables, same column names (the test
-- `schemas_agree` fails if they drift). Timestamps are unix milliseconds (UTC).
--
-- JSON columns (tags, keywords, deprecation, manifest) stay TEXT holding the same
-- canonical JSON as SQLite: the import compares them as strings to tell "updated" from
-- "unchanged", and JSONB would reorder keys and whitespace.

CREATE TABLE namespaces (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT   NOT NULL UNIQUE,
    owner_kind   TEXT   NOT NULL,
    display_name TEXT,
    created_at   BIGINT NOT NULL
);

CREATE TABLE entries (
    id                BIGSERIAL PRIMARY KEY,
    kind              TEXT             NOT NULL,
    namespace         TEXT             NOT NULL,
    name              TEXT             NOT NULL,
    -- the name after the kind's normalization (PEP 503 for PyPI); unique per kind+namespace
    name_key          TEXT             NOT NULL,
    display_name      TEXT,
    description       TEXT             NOT NULL,
    category          TEXT,
    tags              TEXT             NOT NULL, -- JSON array
    keywords          TEXT             NOT NULL, -- JSON array
    status            TEXT             NOT NULL,
    visibility        TEXT             NOT NULL,
    deprecation       TEXT,                      -- JSON object
    popularity        DOUBLE PRECISION NOT NULL,
    monthly_downloads BIGINT,
    download_rank     BIGINT,
    latest_version    TEXT,
    created_at        BIGINT           NOT NULL,
    updated_at        BIGINT           NOT NULL,
    CONSTRAINT entries_kind_namespace_name_key UNIQUE (kind, namespace, name_key)
);
CREATE INDEX entries_namespace ON entries (namespace, id);

CREATE TABLE entry_tags (
    tag      TEXT   NOT NULL,
    entry_id BIGINT NOT NULL,
    PRIMARY KEY (tag, entry_id)
);

CREATE TABLE versions (
    id           BIGSERIAL PRIMARY KEY,
    entry_id     BIGINT  NOT NULL REFERENCES entries (id),
    version      TEXT    NOT NULL,
    manifest     TEXT    NOT NULL, -- canonical JSON
    sha256       TEXT    NOT NULL,
    changelog    TEXT,
    breaking     BOOLEAN NOT NULL,
    yanked       BOOLEAN NOT NULL DEFAULT FALSE,
    yank_reason  TEXT,
    published_at BIGINT  NOT NULL,
    CONSTRAINT versions_entry_id_version UNIQUE (entry_id, version)
);

CREATE TABLE relations (
    id         BIGSERIAL PRIMARY KEY,
    kind       TEXT             NOT NULL,
    from_id    BIGINT           NOT NULL REFERENCES entries (id),
    to_id      BIGINT           NOT NULL REFERENCES entries (id),
    confidence DOUBLE PRECISION,
    source     TEXT,
    step_order INTEGER,
    created_at BIGINT           NOT NULL,
    UNIQUE (kind, from_id, to_id)
);
CREATE INDEX relations_to ON relations (to_id);

-- The change feed: one row per committed change, in the change's own transaction.
-- `seq` is not a sequence: every write transaction takes the feed lock
-- (pg_advisory_xact_lock) first and numbers its rows from the committed head, so the
-- feed is gap-free (a rolled-back sequence value would leave a hole) and commits in seq
-- order (a follower reading `seq > position` never skips a row that commits later).
CREATE TABLE feed (
    seq       BIGINT PRIMARY KEY,
    entity    TEXT   NOT NULL,
    entity_id BIGINT NOT NULL,
    entry_id  BIGINT,
    op        TEXT   NOT NULL,
    at        BIGINT NOT NULL
);
