-- Per-version disable and deletion (quiver_model::Tombstone). A version a maintainer
-- disabled keeps its row: quiver_model::Disabled as JSON (reason, since), NULL while
-- enabled. A deleted entry or version leaves no row of its own but a tombstone: its
-- name (and version, for a version), the ids it had (the feed's delete events name it
-- from them), its visibility, why, who and when; an admin's tombstone of an entry keeps
-- the name reserved. Kept in step with the other backend's 0026_deletion.sql.
ALTER TABLE versions ADD COLUMN disabled TEXT;
CREATE TABLE tombstones (
    id         INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL,
    namespace  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    name_key   TEXT    NOT NULL,
    version    TEXT,
    entry_id   INTEGER NOT NULL,
    version_id INTEGER,
    visibility TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    by_admin   INTEGER NOT NULL,
    deleted_at INTEGER NOT NULL
);
CREATE INDEX tombstones_name ON tombstones (kind, namespace, name_key);
CREATE INDEX tombstones_entry ON tombstones (entry_id);
