-- Accounts: users, namespace memberships and API tokens. Kept in step with
-- migrations/sqlite/0005_accounts.sql of quiver-store. No secret is stored in clear:
-- users keep an argon2id PHC string, tokens a sha256 digest. Timestamps are unix ms.

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT   NOT NULL UNIQUE,
    email         TEXT,
    password_hash TEXT   NOT NULL,
    site_role     TEXT,             -- admin | moderator | NULL
    created_at    BIGINT NOT NULL
);

CREATE TABLE memberships (
    namespace  TEXT   NOT NULL REFERENCES namespaces (name),
    user_id    BIGINT NOT NULL REFERENCES users (id),
    role       TEXT   NOT NULL,    -- owner | maintainer | viewer
    created_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE api_tokens (
    id           BIGSERIAL PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id),
    name         TEXT   NOT NULL,
    token_hash   TEXT   NOT NULL UNIQUE, -- sha256 hex of the token
    scopes       TEXT   NOT NULL,        -- JSON array of scope names
    pattern      TEXT,                   -- entry-name glob, NULL for any
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX api_tokens_user ON api_tokens (user_id, id);
