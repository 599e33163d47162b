-- State a provider keeps between attempts while an asynchronous upstream job runs (e.g. CDS job
-- ids), so that waiting never holds a worker. Expand-only.
ALTER TABLE ingestion_runs ADD COLUMN provider_state {json};
