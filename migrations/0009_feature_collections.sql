-- Stored feature collections (areas such as districts, uploaded as GeoJSON and validated):
-- every upload of an id is a new immutable version, numbered from 1, so a job can record and
-- reread exactly the version it used. The GeoJSON is kept whole beside what listings show.
-- Expand-only.
CREATE TABLE feature_collections (
    collection_id TEXT NOT NULL,
    version       INTEGER NOT NULL,
    title         TEXT NOT NULL,
    principal     TEXT NOT NULL,
    feature_count BIGINT NOT NULL,
    bbox          {json} NOT NULL,
    sha256        TEXT NOT NULL,
    geojson       TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (collection_id, version)
);
