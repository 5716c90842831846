-- Documents: data a source system keeps beside its entries (queues, failure records,
-- philosophy, domain entities, advisories), unique by key within a named collection.
CREATE TABLE documents (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    collection  TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    sha256      TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (collection, key)
);
