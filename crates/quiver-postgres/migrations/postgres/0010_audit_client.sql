-- The hashed client address of each audit row, and an index for listings by time. Kept
-- in step with migrations/sqlite/0010_audit_client.sql of quiver-store.
ALTER TABLE audit_log ADD COLUMN client TEXT;
CREATE INDEX audit_log_at ON audit_log (at);
