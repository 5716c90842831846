-- Device authorization requests (RFC 8628). Kept in step with quiver-store's
-- migrations/sqlite/0009_device_codes.sql. Both codes are
-- stored as sha256 digests only; no token is ever stored here (it is minted when an
-- approved request is redeemed). Timestamps are unix milliseconds.

CREATE TABLE device_codes (
    id               BIGSERIAL PRIMARY KEY,
    device_code_hash TEXT    NOT NULL UNIQUE,
    user_code_hash   TEXT    NOT NULL UNIQUE,
    client_name      TEXT    NOT NULL,
    scopes           TEXT    NOT NULL,       -- JSON array of scope names
    status           TEXT    NOT NULL,       -- pending | approved | denied | redeemed
    user_id          BIGINT  REFERENCES users (id),
    token_id         BIGINT  REFERENCES api_tokens (id),
    interval_secs    BIGINT  NOT NULL,
    expires_at       BIGINT  NOT NULL,
    last_polled_at   BIGINT,
    created_at       BIGINT  NOT NULL
);
CREATE INDEX device_codes_expires ON device_codes (expires_at);

-- Accounts signed in through an outside OAuth2/OIDC provider: the provider's subject
-- (its stable user id) linked to the quiver user it created.
CREATE TABLE external_identities (
    provider   TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    user_id    BIGINT  NOT NULL REFERENCES users (id),
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (provider, subject)
);
