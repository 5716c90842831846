-- The hashed client address of each audit row (see quiver-store's audit.rs), and an index
-- for listings by time. Kept in step with quiver-postgres's
-- migrations/postgres/0010_audit_client.sql.
ALTER TABLE audit_log ADD COLUMN client TEXT;
CREATE INDEX audit_log_at ON audit_log (at);
