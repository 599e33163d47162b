-- One row per dataset, upserted first in the transaction that admits a run
-- (Database::create_run_coalescing). The upsert holds the row (PostgreSQL) or the write lock
-- (SQLite) until commit, so concurrent requests for one dataset are admitted one at a time and
-- identical ones coalesce into a single run. Expand-only: earlier releases ignore the table.
CREATE TABLE run_admissions (
    dataset_id  TEXT PRIMARY KEY,
    admitted_at BIGINT NOT NULL
);
