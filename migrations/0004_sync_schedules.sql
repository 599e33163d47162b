-- Periodic syncs (expand-only).
--
-- sync_ticks: one row per dataset and due time (a cron occurrence, or "available:<period>" for
-- as-soon-as-available schedules). Scheduler replicas race to insert it in the same transaction
-- as the run it starts, so exactly one run exists per dataset per due time.
CREATE TABLE sync_ticks (
    dataset_id TEXT NOT NULL,
    due_key    TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (dataset_id, due_key)
);

-- Per-dataset overrides of the template's schedule, and pausing.
CREATE TABLE dataset_schedules (
    dataset_id TEXT PRIMARY KEY,
    paused     BOOLEAN NOT NULL DEFAULT FALSE,
    schedule   TEXT,
    updated_at BIGINT NOT NULL
);
