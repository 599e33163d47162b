-- The catalog's history: every change of what the public catalog shows — a new version,
-- publish, unpublish, rollback, prune, restore — is an immutable event written in the same
-- transaction as the change, with who made it and the run or job that caused it; a run
-- records who asked for it.
-- Expand-only.
CREATE TABLE catalog_events (
    event_id   {serial_key},
    dataset_id TEXT NOT NULL,
    version    BIGINT,
    action     TEXT NOT NULL,
    actor      TEXT NOT NULL,
    cause      TEXT,
    detail     {json},
    created_at BIGINT NOT NULL
);
CREATE INDEX catalog_events_dataset ON catalog_events (dataset_id, event_id);
-- Who asked for a run, so that the version it publishes names its actor.
ALTER TABLE ingestion_runs ADD COLUMN principal TEXT;
-- A version written with `publish: false` while its dataset is public is held out of view
-- until the dataset is published again (or rolled back to it).
ALTER TABLE dataset_versions ADD COLUMN held BOOLEAN NOT NULL DEFAULT FALSE;
-- Pruning takes a version (or a whole dataset) off the public catalog at once; its objects
-- are deleted after the retention, unless a retained version still reads them.
ALTER TABLE dataset_versions ADD COLUMN pruned_at BIGINT;
ALTER TABLE dataset_versions ADD COLUMN collected_at BIGINT;
