-- Initial schema. Timestamps are epoch milliseconds (BIGINT) in both engines so that the same
-- SQL compares and orders them correctly on PostgreSQL and SQLite.

CREATE TABLE managed_datasets (
    dataset_id      TEXT PRIMARY KEY,
    template_id     TEXT NOT NULL,
    extent_id       TEXT NOT NULL,
    current_version BIGINT,
    published       BOOLEAN NOT NULL DEFAULT TRUE,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE dataset_versions (
    dataset_id     TEXT NOT NULL REFERENCES managed_datasets (dataset_id),
    version        BIGINT NOT NULL,
    artifact_id    TEXT NOT NULL UNIQUE,
    storage_prefix TEXT NOT NULL,
    run_id         TEXT NOT NULL,
    coverage_start TEXT NOT NULL,
    coverage_end   TEXT NOT NULL,
    metadata       {json} NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (dataset_id, version)
);

CREATE TABLE ingestion_runs (
    run_id           TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    status           TEXT NOT NULL,
    dataset_id       TEXT NOT NULL,
    template_id      TEXT NOT NULL,
    extent_id        TEXT NOT NULL,
    request          {json} NOT NULL,
    progress_done    BIGINT NOT NULL DEFAULT 0,
    progress_total   BIGINT NOT NULL DEFAULT 0,
    progress_message TEXT NOT NULL DEFAULT '',
    attempts         INTEGER NOT NULL DEFAULT 0,
    error_code       TEXT,
    error_message    TEXT,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    version          BIGINT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX ingestion_runs_status ON ingestion_runs (status, lease_expires_at);
CREATE INDEX ingestion_runs_dataset ON ingestion_runs (dataset_id, run_id);

-- Transactional outbox: a row is written in the same transaction as the state it announces and
-- published to the queue by a relay once committed.
CREATE TABLE outbox (
    id           {serial_key},
    topic        TEXT NOT NULL,
    payload      {json} NOT NULL,
    available_at BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    published_at BIGINT
);
CREATE INDEX outbox_pending ON outbox (available_at) WHERE published_at IS NULL;
