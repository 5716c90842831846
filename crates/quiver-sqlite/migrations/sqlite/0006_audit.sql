-- The audit log: one row per write and per denied write (see quiver-store's audit.rs).
-- Timestamps are unix milliseconds.
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    namespace TEXT,
    target    TEXT    NOT NULL,
    outcome   TEXT    NOT NULL, -- allowed | denied
    reason    TEXT,
    diff      TEXT              -- JSON object: field -> {before, after}
);
CREATE INDEX audit_log_namespace ON audit_log (namespace, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
