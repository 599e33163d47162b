-- Durable jobs of every kind but ingestion, whose runs keep their own tables: process
-- executions (OGC API Processes, openEO) and maintenance jobs. The worker running a job holds
-- a lease renewed by heartbeats; its result is a small JSON document (bulk results live in the
-- object store and the document references them), kept until expires_at. Expand-only.
CREATE TABLE jobs (
    job_id           TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    principal        TEXT NOT NULL,
    status           TEXT NOT NULL,
    inputs           {json} NOT NULL,
    progress_done    BIGINT NOT NULL DEFAULT 0,
    progress_total   BIGINT NOT NULL DEFAULT 0,
    progress_message TEXT NOT NULL DEFAULT '',
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    result           {json},
    error_code       TEXT,
    error_message    TEXT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    updated_at       BIGINT NOT NULL,
    expires_at       BIGINT
);
CREATE INDEX jobs_status ON jobs (status, lease_expires_at);
CREATE INDEX jobs_principal ON jobs (principal, job_id);
