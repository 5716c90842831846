-- Rate-limit counters: hits of one subject (a hashed token, user or client address) in
-- one route class during one fixed window. Kept in step with quiver-postgres's
-- migrations/postgres/0008_rate_limits.sql. The SQLite mode counts in memory (one
-- process); the table is here so that both schemas agree. Times are unix milliseconds.
CREATE TABLE rate_limits (
    subject      TEXT    NOT NULL,
    class        TEXT    NOT NULL,
    window_start INTEGER NOT NULL,
    hits         INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (subject, class, window_start)
);
CREATE INDEX rate_limits_expires ON rate_limits (expires_at);
