-- quiver schema, version 1. Timestamps are unix milliseconds (UTC).

CREATE TABLE namespaces (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    owner_kind   TEXT    NOT NULL,
    display_name TEXT,
    created_at   INTEGER NOT NULL
);

CREATE TABLE entries (
    id                INTEGER PRIMARY KEY,
    kind              TEXT    NOT NULL,
    namespace         TEXT    NOT NULL,
    name              TEXT    NOT NULL,
    -- the name after the kind's normalization (PEP 503 for PyPI); unique per kind+namespace
    name_key          TEXT    NOT NULL,
    display_name      TEXT,
    description       TEXT    NOT NULL,
    category          TEXT,
    tags              TEXT    NOT NULL, -- JSON array
    keywords          TEXT    NOT NULL, -- JSON array
    status            TEXT    NOT NULL,
    visibility        TEXT    NOT NULL,
    deprecation       TEXT,             -- JSON object
    popularity        REAL    NOT NULL,
    monthly_downloads INTEGER,
    download_rank     INTEGER,
    latest_version    TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    UNIQUE (kind, namespace, name_key)
);
CREATE INDEX entries_namespace ON entries (namespace, id);

CREATE TABLE entry_tags (
    tag      TEXT    NOT NULL,
    entry_id INTEGER NOT NULL,
    PRIMARY KEY (tag, entry_id)
) WITHOUT ROWID;

CREATE TABLE versions (
    id           INTEGER PRIMARY KEY,
    entry_id     INTEGER NOT NULL REFERENCES entries (id),
    version      TEXT    NOT NULL,
    manifest     TEXT    NOT NULL, -- canonical JSON
    sha256       TEXT    NOT NULL,
    changelog    TEXT,
    breaking     INTEGER NOT NULL,
    yanked       INTEGER NOT NULL DEFAULT 0,
    yank_reason  TEXT,
    published_at INTEGER NOT NULL,
    UNIQUE (entry_id, version)
);

CREATE TABLE relations (
    id         INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL,
    from_id    INTEGER NOT NULL REFERENCES entries (id),
    to_id      INTEGER NOT NULL REFERENCES entries (id),
    confidence REAL,
    source     TEXT,
    step_order INTEGER,
    created_at INTEGER NOT NULL,
    UNIQUE (kind, from_id, to_id)
);
CREATE INDEX relations_to ON relations (to_id);

-- The change feed: one row per committed change, in the change's own transaction.
CREATE TABLE feed (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    entity    TEXT    NOT NULL,
    entity_id INTEGER NOT NULL,
    entry_id  INTEGER,
    op        TEXT    NOT NULL,
    at        INTEGER NOT NULL
);
