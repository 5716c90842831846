-- Webhook subscriptions and their deliveries (quiver_store::webhooks). A subscription's
-- fields are stored whole as JSON in `body`; its signing secrets have columns of their
-- own and are never in the body. A delivery is unique per subscription and event key, so
-- the feed consumer that adds them may repeat itself. Times are epoch milliseconds.
-- Kept in step with the other backend's 0025_webhooks.sql.
CREATE TABLE webhooks (
    id              INTEGER PRIMARY KEY,
    owner_user_id   INTEGER REFERENCES users (id) ON DELETE CASCADE,
    owner_namespace TEXT,
    body            TEXT    NOT NULL,
    secret          TEXT    NOT NULL,
    previous_secret TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX webhooks_owner_user ON webhooks (owner_user_id);
CREATE INDEX webhooks_owner_namespace ON webhooks (owner_namespace);
CREATE TABLE webhook_deliveries (
    id         INTEGER PRIMARY KEY,
    webhook_id INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_key  TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (webhook_id, event_key)
);
