-- The credential throttle (quiver_store::throttle): one theoretical arrival time per key
-- (a hash of an account name, a client address, or both), in unix milliseconds. Kept in
-- step with migrations/postgres/0011_throttles.sql of quiver-postgres.
CREATE TABLE throttles (
    key    TEXT    PRIMARY KEY,
    tat_ms INTEGER NOT NULL
);
CREATE INDEX throttles_tat ON throttles (tat_ms);
