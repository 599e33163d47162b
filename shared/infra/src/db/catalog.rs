//! The catalog: managed datasets and their immutable versions, published in one transaction
//! with the run that wrote them.

use super::*;

/// A managed dataset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetRecord {
    /// Public id.
    pub dataset_id: DatasetId,
    /// Template.
    pub template_id: TemplateId,
    /// Extent.
    pub extent_id: ExtentId,
    /// Version number of the current version.
    pub current_version: Option<i64>,
    /// Visible on the public catalog.
    pub published: bool,
    /// First version published at.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// An immutable version (artifact) as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRecord {
    /// Dataset.
    pub dataset_id: DatasetId,
    /// 1, 2, 3, … per dataset.
    pub version: i64,
    /// Internal artifact id (never shown publicly).
    pub artifact_id: String,
    /// Object-store prefix of the Zarr store.
    pub storage_prefix: String,
    /// Run that wrote it.
    pub run_id: RunId,
    /// First period covered (canonical).
    pub coverage_start: String,
    /// Last period covered (canonical).
    pub coverage_end: String,
    /// Grid, chunking, format and provenance.
    pub metadata: serde_json::Value,
    /// Published at.
    pub created_at: DateTime<Utc>,
    /// Kept out of public view: written with `publish: false` while the dataset was public;
    /// it becomes current when the dataset is published (`PATCH`) or rolled back to.
    pub held: bool,
    /// Taken off the public catalog at (its objects are deleted after the retention).
    pub pruned_at: Option<DateTime<Utc>>,
}

/// A version to publish.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// Dataset.
    pub dataset_id: DatasetId,
    /// Template.
    pub template_id: TemplateId,
    /// Extent.
    pub extent_id: ExtentId,
    /// Internal artifact id.
    pub artifact_id: String,
    /// Object-store prefix.
    pub storage_prefix: String,
    /// First period covered.
    pub coverage_start: String,
    /// Last period covered.
    pub coverage_end: String,
    /// Grid, chunking, format and provenance.
    pub metadata: serde_json::Value,
    /// Make the dataset visible on the public catalog (a dataset once published stays so).
    pub publish: bool,
}

/// A row of `managed_datasets`; [`DatasetRecord`] is its checked form.
#[derive(sqlx::FromRow)]
pub(super) struct DatasetRow {
    dataset_id: String,
    template_id: String,
    extent_id: String,
    current_version: Option<i64>,
    published: bool,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<DatasetRow> for DatasetRecord {
    type Error = DbError;

    fn try_from(row: DatasetRow) -> DbResult<Self> {
        Ok(Self {
            dataset_id: checked(DatasetId::new(row.dataset_id))?,
            template_id: checked(TemplateId::new(row.template_id))?,
            extent_id: checked(ExtentId::new(row.extent_id))?,
            current_version: row.current_version,
            published: row.published,
            created_at: from_ms(row.created_at)?,
            updated_at: from_ms(row.updated_at)?,
        })
    }
}

/// A row of `dataset_versions`; [`VersionRecord`] is its checked form.
#[derive(sqlx::FromRow)]
pub(super) struct VersionRow {
    dataset_id: String,
    version: i64,
    artifact_id: String,
    storage_prefix: String,
    run_id: String,
    coverage_start: String,
    coverage_end: String,
    metadata: Json<serde_json::Value>,
    created_at: i64,
    held: bool,
    pruned_at: Option<i64>,
}

impl TryFrom<VersionRow> for VersionRecord {
    type Error = DbError;

    fn try_from(row: VersionRow) -> DbResult<Self> {
        Ok(Self {
            dataset_id: checked(DatasetId::new(row.dataset_id))?,
            version: row.version,
            artifact_id: row.artifact_id,
            storage_prefix: row.storage_prefix,
            run_id: checked(RunId::new(&row.run_id))?,
            coverage_start: row.coverage_start,
            coverage_end: row.coverage_end,
            metadata: row.metadata.0,
            created_at: from_ms(row.created_at)?,
            held: row.held,
            pruned_at: opt_ms(row.pruned_at)?,
        })
    }
}

/// Managed datasets and versions. Part of [`Database`].
#[async_trait]
pub trait CatalogStore: Send + Sync {
    /// Publishes a version: creates the dataset if new, inserts the version with the next
    /// number, makes it current and marks the run succeeded — one transaction.
    ///
    /// # Errors
    /// [`DbError::LeaseLost`] (and nothing is written) when `owner` no longer holds the run.
    async fn publish_version(
        &self,
        run_id: &RunId,
        owner: &str,
        version: &NewVersion,
        now: DateTime<Utc>,
    ) -> DbResult<VersionRecord>;
    /// Managed datasets with at least one version, by id.
    async fn list_datasets(&self) -> DbResult<Vec<DatasetRecord>>;
    /// One managed dataset.
    async fn get_dataset(&self, dataset_id: &DatasetId) -> DbResult<Option<DatasetRecord>>;
    /// Versions of a dataset, oldest first.
    async fn list_versions(&self, dataset_id: &DatasetId) -> DbResult<Vec<VersionRecord>>;
    /// One version.
    async fn get_version(
        &self,
        dataset_id: &DatasetId,
        version: i64,
    ) -> DbResult<Option<VersionRecord>>;
}

macro_rules! impl_catalog {
    ($name:ident, $db:ty) => {
        #[async_trait]
        impl CatalogStore for $name {
            async fn publish_version(
                &self,
                run_id: &RunId,
                owner: &str,
                v: &NewVersion,
                now: DateTime<Utc>,
            ) -> DbResult<VersionRecord> {
                let now_ms = ms(now);
                let mut tx = self.pool.begin().await?;
                // The event's actor is whoever asked for the run.
                let requester: Option<String> = sqlx::query_scalar(
                    "SELECT principal FROM ingestion_runs WHERE run_id = $1",
                )
                .bind(run_id.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .flatten();
                let was_published: Option<bool> = sqlx::query_scalar(
                    "SELECT published FROM managed_datasets WHERE dataset_id = $1",
                )
                .bind(v.dataset_id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO managed_datasets (dataset_id, template_id, extent_id, published, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (dataset_id) DO NOTHING",
                )
                .bind(v.dataset_id.as_str())
                .bind(v.template_id.as_str())
                .bind(v.extent_id.as_str())
                .bind(v.publish)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                // Touching the row first takes its lock on PostgreSQL, so concurrent publishers
                // of one dataset serialise here and number their versions without collisions.
                sqlx::query("UPDATE managed_datasets SET updated_at = $2 WHERE dataset_id = $1")
                    .bind(v.dataset_id.as_str())
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                let next: i64 = sqlx::query(
                    "SELECT COALESCE(MAX(version), 0) + 1 AS next FROM dataset_versions WHERE dataset_id = $1",
                )
                .bind(v.dataset_id.as_str())
                .fetch_one(&mut *tx)
                .await?
                .try_get("next")?;
                // `publish: false` on a public dataset keeps the version out of view.
                let hold = !v.publish && was_published == Some(true);
                sqlx::query(
                    "INSERT INTO dataset_versions (dataset_id, version, artifact_id, storage_prefix, run_id, \
                     coverage_start, coverage_end, metadata, created_at, held) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(v.dataset_id.as_str())
                .bind(next)
                .bind(&v.artifact_id)
                .bind(&v.storage_prefix)
                .bind(run_id.to_string())
                .bind(&v.coverage_start)
                .bind(&v.coverage_end)
                .bind(Json(&v.metadata))
                .bind(now_ms)
                .bind(hold)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE managed_datasets SET current_version = CASE WHEN $4 THEN current_version ELSE $2 END, \
                     published = (published OR $3) WHERE dataset_id = $1",
                )
                    .bind(v.dataset_id.as_str())
                    .bind(next)
                    .bind(v.publish)
                    .bind(hold)
                    .execute(&mut *tx)
                    .await?;
                let done = sqlx::query(
                    "UPDATE ingestion_runs SET status = 'succeeded', version = $3, finished_at = $4, \
                     updated_at = $4, lease_owner = NULL, lease_expires_at = NULL, error_code = NULL, \
                     error_message = NULL, progress_done = progress_total \
                     WHERE run_id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(run_id.to_string())
                .bind(owner)
                .bind(next)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                // Dropping the transaction rolls it back.
                held(done.rows_affected(), run_id)?;
                let event = |action| NewEvent {
                    dataset_id: &v.dataset_id,
                    version: Some(next),
                    action,
                    actor: requester.as_deref().unwrap_or(SYSTEM_ACTOR),
                    cause: Some(run_id.to_string()),
                    detail: serde_json::json!({"coverage": [v.coverage_start, v.coverage_end], "held": hold}),
                    at: now,
                };
                Self::record_event(&mut tx, &event(CatalogAction::NewVersion)).await?;
                if v.publish && was_published != Some(true) {
                    Self::record_event(&mut tx, &event(CatalogAction::Publish)).await?;
                }
                tx.commit().await?;
                self.get_version(&v.dataset_id, next)
                    .await?
                    .ok_or_else(|| DbError::Corrupt("published version vanished".into()))
            }

            async fn list_datasets(&self) -> DbResult<Vec<DatasetRecord>> {
                let rows = sqlx::query_as::<_, DatasetRow>(dataset_select!(
                    "WHERE current_version IS NOT NULL ORDER BY dataset_id"
                ))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(DatasetRecord::try_from).collect()
            }

            async fn get_dataset(&self, dataset_id: &DatasetId) -> DbResult<Option<DatasetRecord>> {
                sqlx::query_as::<_, DatasetRow>(dataset_select!("WHERE dataset_id = $1"))
                    .bind(dataset_id.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(DatasetRecord::try_from)
                    .transpose()
            }

            async fn list_versions(&self, dataset_id: &DatasetId) -> DbResult<Vec<VersionRecord>> {
                let rows = sqlx::query_as::<_, VersionRow>(version_select!(
                    "WHERE dataset_id = $1 ORDER BY version"
                ))
                .bind(dataset_id.as_str())
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(VersionRecord::try_from).collect()
            }

            async fn get_version(&self, dataset_id: &DatasetId, version: i64) -> DbResult<Option<VersionRecord>> {
                sqlx::query_as::<_, VersionRow>(version_select!(
                    "WHERE dataset_id = $1 AND version = $2"
                ))
                .bind(dataset_id.as_str())
                .bind(version)
                .fetch_optional(&self.pool)
                .await?
                .map(VersionRecord::try_from)
                .transpose()
            }
        }
    };
}

impl_catalog!(SqliteDb, sqlx::Sqlite);
impl_catalog!(PostgresDb, sqlx::Postgres);
