-- Accounts: users, namespace memberships and API tokens (see quiver-store's accounts.rs).
-- No secret is stored in clear: users keep an argon2id PHC string, tokens a sha256 digest.
-- Timestamps are unix milliseconds.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    email         TEXT,
    password_hash TEXT    NOT NULL,
    site_role     TEXT,             -- admin | moderator | NULL
    created_at    INTEGER NOT NULL
);

CREATE TABLE memberships (
    namespace  TEXT    NOT NULL REFERENCES namespaces (name),
    user_id    INTEGER NOT NULL REFERENCES users (id),
    role       TEXT    NOT NULL,    -- owner | maintainer | viewer
    created_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    name         TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE, -- sha256 hex of the token
    scopes       TEXT    NOT NULL,        -- JSON array of scope names
    pattern      TEXT,                    -- entry-name glob, NULL for any
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    created_at   INTEGER NOT NULL
);
CREATE INDEX api_tokens_user ON api_tokens (user_id, id);
