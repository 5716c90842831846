-- Security advisories: each stored whole as JSON (quiver_store::advisories::Advisory),
-- numbered per year (QVR-<year>-<number>), with the entries it affects indexed for
-- resolution. Times are epoch milliseconds. Kept in step with the other backend's
-- 0021_advisories.sql.
CREATE TABLE advisories (
    id           TEXT    PRIMARY KEY,
    year         INTEGER NOT NULL,
    number       INTEGER NOT NULL,
    severity     TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    published_at INTEGER NOT NULL,
    withdrawn_at INTEGER,
    UNIQUE (year, number)
);
CREATE TABLE advisory_entries (
    advisory_id TEXT    NOT NULL REFERENCES advisories (id) ON DELETE CASCADE,
    entry_id    INTEGER NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    PRIMARY KEY (advisory_id, entry_id)
);
CREATE INDEX advisory_entries_entry ON advisory_entries (entry_id);
