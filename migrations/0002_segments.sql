-- Runs are split into segments (ranges of whole time chunks) that any worker may execute.
-- Expand-only: a new table and a nullable column; releases without segments ignore both.

ALTER TABLE ingestion_runs ADD COLUMN plan {json};

CREATE TABLE ingestion_segments (
    run_id           TEXT NOT NULL REFERENCES ingestion_runs (run_id),
    segment          INTEGER NOT NULL,
    chunk_start      BIGINT NOT NULL,
    chunk_end        BIGINT NOT NULL,
    periods          BIGINT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    chunks_written   BIGINT NOT NULL DEFAULT 0,
    error_code       TEXT,
    error_message    TEXT,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (run_id, segment)
);
CREATE INDEX ingestion_segments_status ON ingestion_segments (status, lease_expires_at);
