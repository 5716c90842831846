-- The audit rows of one target (an entry's or a version's history; the quality gates ask
-- whether a version was published here). Kept in step with
-- migrations/sqlite/0015_audit_target.sql of quiver-sqlite.
CREATE INDEX audit_log_target ON audit_log (target, id);
