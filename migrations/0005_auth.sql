-- Authentication and safe retries (expand-only).
--
-- api_keys: one row per key. The key itself is shown once at creation; only the SHA-256 of
-- its secret part is stored. Revoked keys stay for the audit trail.
CREATE TABLE api_keys (
    key_id       TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);

-- Tokens issued by /credentials/basic for a key (hashed), valid until expires_at and only
-- while the key is.
CREATE TABLE auth_tokens (
    token_hash TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL REFERENCES api_keys (key_id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Idempotency-Key: the first answer to a POST, replayed for retries with the same key and the
-- same request. status is NULL while the first request is being handled.
CREATE TABLE idempotency_keys (
    principal   TEXT NOT NULL,
    idem_key    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      INTEGER,
    response    TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (principal, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
