-- Device authorization requests (RFC 8628), see quiver-store's device.rs. Both codes are
-- stored as sha256 digests only; no token is ever stored here (it is minted when an
-- approved request is redeemed). Timestamps are unix milliseconds.

CREATE TABLE device_codes (
    id               INTEGER PRIMARY KEY,
    device_code_hash TEXT    NOT NULL UNIQUE,
    user_code_hash   TEXT    NOT NULL UNIQUE,
    client_name      TEXT    NOT NULL,
    scopes           TEXT    NOT NULL,       -- JSON array of scope names
    status           TEXT    NOT NULL,       -- pending | approved | denied | redeemed
    user_id          INTEGER REFERENCES users (id),
    token_id         INTEGER REFERENCES api_tokens (id),
    interval_secs    INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    last_polled_at   INTEGER,
    created_at       INTEGER NOT NULL
);
CREATE INDEX device_codes_expires ON device_codes (expires_at);

-- Accounts signed in through an outside OAuth2/OIDC provider: the provider's subject
-- (its stable user id) linked to the quiver user it created.
CREATE TABLE external_identities (
    provider   TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (provider, subject)
);
