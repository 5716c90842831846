-- The audit log: one row per write and per denied write. Kept in step with
-- migrations/sqlite/0006_audit.sql of quiver-store. Timestamps are unix milliseconds.
CREATE TABLE audit_log (
    id        BIGSERIAL PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    namespace TEXT,
    target    TEXT   NOT NULL,
    outcome   TEXT   NOT NULL, -- allowed | denied
    reason    TEXT,
    diff      TEXT             -- JSON object: field -> {before, after}
);
CREATE INDEX audit_log_namespace ON audit_log (namespace, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
