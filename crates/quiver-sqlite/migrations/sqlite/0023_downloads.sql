-- Counted downloads and resolutions (quiver_store::downloads). A hit counts unless the
-- same client (a salted hash of its address) was counted for the same entry and version
-- less than an hour before: download_clients keeps the last counted time (epoch ms) and
-- is pruned past the window. Days are UTC days since 1970-01-01. User agents are kept as
-- counts per day only. download_popularity keeps, per entry, the score a popularity
-- refresh started from (prior) and the one it last wrote. Kept in step with the other
-- backend's 0023_downloads.sql.
CREATE TABLE downloads_daily (
    entry_id INTEGER NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    version  TEXT    NOT NULL,
    day      INTEGER NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (entry_id, version, day)
);
CREATE INDEX downloads_daily_day ON downloads_daily (day, entry_id);
CREATE TABLE download_clients (
    entry_id INTEGER NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    version  TEXT    NOT NULL,
    client   TEXT    NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (entry_id, version, client)
);
CREATE INDEX download_clients_at ON download_clients (at);
CREATE TABLE download_agents (
    day   INTEGER NOT NULL,
    agent TEXT    NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (day, agent)
);
CREATE TABLE download_popularity (
    entry_id INTEGER PRIMARY KEY REFERENCES entries (id) ON DELETE CASCADE,
    prior    REAL    NOT NULL,
    score    REAL    NOT NULL,
    counted  INTEGER NOT NULL
);
