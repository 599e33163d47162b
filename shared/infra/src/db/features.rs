//! Stored feature collections: each upload of an id is a new immutable version (numbered from
//! 1), unless its GeoJSON is byte-identical to the latest version's, which is then returned.

use super::*;

/// A stored version of a feature collection, without its GeoJSON.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureCollectionRecord {
    /// Its id (`sierra_leone_districts`).
    pub collection_id: String,
    /// Its version, from 1.
    pub version: u32,
    /// A human title.
    pub title: String,
    /// Who uploaded it.
    pub principal: String,
    /// How many features it holds.
    pub feature_count: u64,
    /// West, south, east, north (WGS84).
    pub bbox: [f64; 4],
    /// Hex SHA-256 of the stored GeoJSON.
    pub sha256: String,
    /// Stored at.
    pub created_at: DateTime<Utc>,
}

/// A version to store.
#[derive(Debug, Clone)]
pub struct NewFeatureCollection {
    /// Its id.
    pub collection_id: String,
    /// A human title.
    pub title: String,
    /// Who uploads it.
    pub principal: String,
    /// How many features it holds.
    pub feature_count: u64,
    /// West, south, east, north (WGS84).
    pub bbox: [f64; 4],
    /// Hex SHA-256 of `geojson`.
    pub sha256: String,
    /// The validated FeatureCollection.
    pub geojson: String,
    /// Uploaded at.
    pub created_at: DateTime<Utc>,
}

/// Feature collections. Part of [`Database`].
#[async_trait]
pub trait FeatureStore: Send + Sync {
    /// Stores `new` as the next version of its id: `(record, true)`; or, when the latest
    /// version holds the same GeoJSON, that version: `(record, false)`.
    async fn put_feature_collection(
        &self,
        new: &NewFeatureCollection,
    ) -> DbResult<(FeatureCollectionRecord, bool)>;
    /// A version (the latest when `version` is `None`) and its GeoJSON.
    async fn get_feature_collection(
        &self,
        collection_id: &str,
        version: Option<u32>,
    ) -> DbResult<Option<(FeatureCollectionRecord, String)>>;
    /// Every version of a collection, oldest first.
    async fn feature_collection_versions(
        &self,
        collection_id: &str,
    ) -> DbResult<Vec<FeatureCollectionRecord>>;
    /// The latest version of every collection, by id.
    async fn list_feature_collections(&self) -> DbResult<Vec<FeatureCollectionRecord>>;
}

#[derive(sqlx::FromRow)]
struct FeatureRow {
    collection_id: String,
    version: i32,
    title: String,
    principal: String,
    feature_count: i64,
    bbox: Json<[f64; 4]>,
    sha256: String,
    created_at: i64,
}

impl TryFrom<FeatureRow> for FeatureCollectionRecord {
    type Error = DbError;

    fn try_from(row: FeatureRow) -> DbResult<Self> {
        Ok(Self {
            collection_id: row.collection_id,
            version: checked(u32::try_from(row.version))?,
            title: row.title,
            principal: row.principal,
            feature_count: checked(u64::try_from(row.feature_count))?,
            bbox: row.bbox.0,
            sha256: row.sha256,
            created_at: from_ms(row.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct FeatureRowWithBody {
    #[sqlx(flatten)]
    row: FeatureRow,
    geojson: String,
}

macro_rules! feature_columns {
    () => {
        "collection_id, version, title, principal, feature_count, bbox, sha256, created_at"
    };
}

/// Attempts at numbering a version when concurrent uploads of one id collide.
const PUT_ATTEMPTS: usize = 5;

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

macro_rules! impl_features {
    ($name:ident, $db:ty) => {
        #[async_trait]
        impl FeatureStore for $name {
            async fn put_feature_collection(
                &self,
                new: &NewFeatureCollection,
            ) -> DbResult<(FeatureCollectionRecord, bool)> {
                for _ in 0..PUT_ATTEMPTS {
                    let latest = sqlx::query_as::<_, FeatureRow>(concat!(
                        "SELECT ",
                        feature_columns!(),
                        " FROM feature_collections WHERE collection_id = $1 ORDER BY version DESC LIMIT 1"
                    ))
                    .bind(&new.collection_id)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(FeatureCollectionRecord::try_from)
                    .transpose()?;
                    if let Some(latest) = &latest
                        && latest.sha256 == new.sha256
                    {
                        return Ok((latest.clone(), false));
                    }
                    let version = latest.map_or(1, |l| l.version + 1);
                    let inserted = sqlx::query(
                        "INSERT INTO feature_collections (collection_id, version, title, principal, \
                         feature_count, bbox, sha256, geojson, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(&new.collection_id)
                    .bind(i64::from(version))
                    .bind(&new.title)
                    .bind(&new.principal)
                    .bind(checked(i64::try_from(new.feature_count))?)
                    .bind(Json(new.bbox))
                    .bind(&new.sha256)
                    .bind(&new.geojson)
                    .bind(ms(new.created_at))
                    .execute(&self.pool)
                    .await;
                    match inserted {
                        Ok(_) => {
                            return Ok((
                                FeatureCollectionRecord {
                                    collection_id: new.collection_id.clone(),
                                    version,
                                    title: new.title.clone(),
                                    principal: new.principal.clone(),
                                    feature_count: new.feature_count,
                                    bbox: new.bbox,
                                    sha256: new.sha256.clone(),
                                    created_at: from_ms(ms(new.created_at))?,
                                },
                                true,
                            ));
                        }
                        // Another upload took this number: number again.
                        Err(e) if is_unique_violation(&e) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(DbError::Corrupt(format!(
                    "feature collection '{}': {PUT_ATTEMPTS} concurrent uploads kept taking the next version number",
                    new.collection_id
                )))
            }

            async fn get_feature_collection(
                &self,
                collection_id: &str,
                version: Option<u32>,
            ) -> DbResult<Option<(FeatureCollectionRecord, String)>> {
                let row = match version {
                    Some(v) => {
                        sqlx::query_as::<_, FeatureRowWithBody>(concat!(
                            "SELECT ",
                            feature_columns!(),
                            ", geojson FROM feature_collections WHERE collection_id = $1 AND version = $2"
                        ))
                        .bind(collection_id)
                        .bind(i64::from(v))
                        .fetch_optional(&self.pool)
                        .await?
                    }
                    None => {
                        sqlx::query_as::<_, FeatureRowWithBody>(concat!(
                            "SELECT ",
                            feature_columns!(),
                            ", geojson FROM feature_collections WHERE collection_id = $1 \
                             ORDER BY version DESC LIMIT 1"
                        ))
                        .bind(collection_id)
                        .fetch_optional(&self.pool)
                        .await?
                    }
                };
                row.map(|r| Ok((FeatureCollectionRecord::try_from(r.row)?, r.geojson)))
                    .transpose()
            }

            async fn feature_collection_versions(
                &self,
                collection_id: &str,
            ) -> DbResult<Vec<FeatureCollectionRecord>> {
                sqlx::query_as::<_, FeatureRow>(concat!(
                    "SELECT ",
                    feature_columns!(),
                    " FROM feature_collections WHERE collection_id = $1 ORDER BY version"
                ))
                .bind(collection_id)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(FeatureCollectionRecord::try_from)
                .collect()
            }

            async fn list_feature_collections(&self) -> DbResult<Vec<FeatureCollectionRecord>> {
                sqlx::query_as::<_, FeatureRow>(concat!(
                    "SELECT ",
                    feature_columns!(),
                    " FROM feature_collections f WHERE version = \
                     (SELECT MAX(version) FROM feature_collections g WHERE g.collection_id = f.collection_id) \
                     ORDER BY collection_id"
                ))
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(FeatureCollectionRecord::try_from)
                .collect()
            }
        }
    };
}

impl_features!(SqliteDb, sqlx::Sqlite);
impl_features!(PostgresDb, sqlx::Postgres);
