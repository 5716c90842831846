-- Rate-limit counters shared by every node: hits of one subject (a hashed token, user or
-- client address) in one route class during one fixed window, counted with one atomic
-- upsert per request. Kept in step with migrations/sqlite/0008_rate_limits.sql of
-- quiver-store. Times are unix milliseconds.
CREATE TABLE rate_limits (
    subject      TEXT   NOT NULL,
    class        TEXT   NOT NULL,
    window_start BIGINT NOT NULL,
    hits         BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (subject, class, window_start)
);
CREATE INDEX rate_limits_expires ON rate_limits (expires_at);
