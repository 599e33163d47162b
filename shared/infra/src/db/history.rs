//! The catalog's history: immutable events, one per change of what the public catalog shows,
//! written in the transaction of the change; and the changes made by hand — rollback and
//! publication — each with its event.

use super::*;

/// The actor of the platform's own changes (a run publishing a version).
pub const SYSTEM_ACTOR: &str = "system";

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogAction {
    /// A run published a new version.
    NewVersion,
    /// The dataset became public.
    Publish,
    /// The dataset left the public catalog.
    Unpublish,
    /// An earlier version became current.
    Rollback,
    /// One version left the catalog (its objects go after the retention).
    PruneVersion,
    /// The whole dataset left the catalog.
    Prune,
}

impl CatalogAction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewVersion => "new_version",
            Self::Publish => "publish",
            Self::Unpublish => "unpublish",
            Self::Rollback => "rollback",
            Self::PruneVersion => "prune_version",
            Self::Prune => "prune",
        }
    }
}

impl FromStr for CatalogAction {
    type Err = DbError;

    fn from_str(s: &str) -> DbResult<Self> {
        [
            Self::NewVersion,
            Self::Publish,
            Self::Unpublish,
            Self::Rollback,
            Self::PruneVersion,
            Self::Prune,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
        .ok_or_else(|| DbError::Corrupt(format!("unknown catalog action '{s}'")))
    }
}

/// An event of the catalog's history.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogEvent {
    /// Its number, increasing with time.
    pub event_id: i64,
    /// The dataset.
    pub dataset_id: DatasetId,
    /// The version concerned (the new, the restored, the current one).
    pub version: Option<i64>,
    /// What changed.
    pub action: CatalogAction,
    /// Who changed it: the credentials' subject, or `system` for the platform's own work.
    pub actor: String,
    /// The run or job that caused it.
    pub cause: Option<String>,
    /// More about it (`{"from": 3}` for a rollback).
    pub detail: serde_json::Value,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Why a change by hand was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// No such dataset.
    #[error("no dataset '{0}'")]
    UnknownDataset(String),
    /// No such version of it.
    #[error("dataset '{dataset}' has no version {version}")]
    UnknownVersion {
        /// The dataset.
        dataset: String,
        /// The version asked for.
        version: i64,
    },
    /// The version was pruned: its data is going or gone.
    #[error("version {version} of '{dataset}' was pruned")]
    Pruned {
        /// The dataset.
        dataset: String,
        /// The version.
        version: i64,
    },
    /// The version is the current one, which is never pruned alone.
    #[error("version {version} is the current version of '{dataset}'")]
    Current {
        /// The dataset.
        dataset: String,
        /// The version.
        version: i64,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for ChangeError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e.into())
    }
}

/// The catalog's history and the changes made by hand. Part of [`Database`].
#[async_trait]
pub trait HistoryStore: Send + Sync {
    /// A dataset's events, newest first, before event `before` when given.
    async fn history(
        &self,
        dataset_id: &DatasetId,
        before: Option<i64>,
        limit: u32,
    ) -> DbResult<Vec<CatalogEvent>>;
    /// Makes `version` the current version of `dataset_id` (its data stays where it is), with
    /// a `rollback` event by `actor`; the dataset as it is now. Rolling back to the current
    /// version changes nothing and writes no event.
    async fn rollback(
        &self,
        dataset_id: &DatasetId,
        version: i64,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<DatasetRecord, ChangeError>;
    /// Takes version `version` (never the current one) off the catalog with a
    /// `prune_version` event; pruning it again changes nothing.
    async fn prune_version(
        &self,
        dataset_id: &DatasetId,
        version: i64,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ChangeError>;
    /// Takes the whole dataset off the catalog (no current version; every version pruned)
    /// with a `prune` event. A later ingestion starts it afresh.
    async fn prune_dataset(
        &self,
        dataset_id: &DatasetId,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ChangeError>;
    /// Versions pruned before `cutoff` whose objects are not collected yet, oldest first.
    async fn collectable_versions(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> DbResult<Vec<VersionRecord>>;
    /// Records that a pruned version's objects were deleted.
    async fn mark_collected(
        &self,
        dataset_id: &DatasetId,
        version: i64,
        now: DateTime<Utc>,
    ) -> DbResult<()>;
    /// Publishes or unpublishes `dataset_id`, with a `publish` or `unpublish` event by
    /// `actor`; the dataset as it is now. Publishing makes the newest held version (written
    /// with `publish: false` while the dataset was public) current. Asking for what it is
    /// already changes nothing.
    async fn set_published(
        &self,
        dataset_id: &DatasetId,
        published: bool,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<DatasetRecord, ChangeError>;
}

#[derive(sqlx::FromRow)]
struct EventRow {
    event_id: i64,
    dataset_id: String,
    version: Option<i64>,
    action: String,
    actor: String,
    cause: Option<String>,
    detail: Option<Json<serde_json::Value>>,
    created_at: i64,
}

impl TryFrom<EventRow> for CatalogEvent {
    type Error = DbError;

    fn try_from(row: EventRow) -> DbResult<Self> {
        Ok(Self {
            event_id: row.event_id,
            dataset_id: checked(DatasetId::new(&row.dataset_id))?,
            version: row.version,
            action: row.action.parse()?,
            actor: row.actor,
            cause: row.cause,
            detail: row.detail.map_or(serde_json::Value::Null, |d| d.0),
            created_at: from_ms(row.created_at)?,
        })
    }
}

/// An event to record with a change.
pub(super) struct NewEvent<'a> {
    pub dataset_id: &'a DatasetId,
    pub version: Option<i64>,
    pub action: CatalogAction,
    pub actor: &'a str,
    pub cause: Option<String>,
    pub detail: serde_json::Value,
    pub at: DateTime<Utc>,
}

macro_rules! impl_history {
    ($name:ident, $db:ty) => {
        impl $name {
            /// Records `e` in the transaction of its change.
            pub(super) async fn record_event(
                tx: &mut sqlx::Transaction<'_, $db>,
                e: &NewEvent<'_>,
            ) -> DbResult<()> {
                sqlx::query(
                    "INSERT INTO catalog_events (dataset_id, version, action, actor, cause, detail, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(e.dataset_id.as_str())
                .bind(e.version)
                .bind(e.action.as_str())
                .bind(e.actor)
                .bind(e.cause.as_deref())
                .bind(Json(&e.detail))
                .bind(ms(e.at))
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            /// Whether `version` of `dataset_id` was pruned.
            async fn is_pruned(
                tx: &mut sqlx::Transaction<'_, $db>,
                dataset_id: &DatasetId,
                version: i64,
            ) -> Result<bool, ChangeError> {
                let pruned_at: Option<Option<i64>> = sqlx::query_scalar(
                    "SELECT pruned_at FROM dataset_versions WHERE dataset_id = $1 AND version = $2",
                )
                .bind(dataset_id.as_str())
                .bind(version)
                .fetch_optional(&mut **tx)
                .await?;
                pruned_at
                    .map(|p| p.is_some())
                    .ok_or_else(|| ChangeError::UnknownVersion {
                        dataset: dataset_id.to_string(),
                        version,
                    })
            }

            /// The dataset row, locked for the rest of the transaction on PostgreSQL.
            async fn lock_dataset(
                tx: &mut sqlx::Transaction<'_, $db>,
                dataset_id: &DatasetId,
            ) -> Result<DatasetRecord, ChangeError> {
                // Touching the row takes its lock, as publish_version does.
                sqlx::query("UPDATE managed_datasets SET updated_at = updated_at WHERE dataset_id = $1")
                    .bind(dataset_id.as_str())
                    .execute(&mut **tx)
                    .await?;
                let row = sqlx::query_as::<_, DatasetRow>(dataset_select!("WHERE dataset_id = $1"))
                    .bind(dataset_id.as_str())
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or_else(|| ChangeError::UnknownDataset(dataset_id.to_string()))?;
                Ok(DatasetRecord::try_from(row)?)
            }
        }

        #[async_trait]
        impl HistoryStore for $name {
            async fn history(
                &self,
                dataset_id: &DatasetId,
                before: Option<i64>,
                limit: u32,
            ) -> DbResult<Vec<CatalogEvent>> {
                sqlx::query_as::<_, EventRow>(
                    "SELECT event_id, dataset_id, version, action, actor, cause, detail, created_at \
                     FROM catalog_events WHERE dataset_id = $1 AND event_id < $2 \
                     ORDER BY event_id DESC LIMIT $3",
                )
                .bind(dataset_id.as_str())
                .bind(before.unwrap_or(i64::MAX))
                .bind(i64::from(limit.clamp(1, 1000)))
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(CatalogEvent::try_from)
                .collect()
            }

            async fn rollback(
                &self,
                dataset_id: &DatasetId,
                version: i64,
                actor: &str,
                now: DateTime<Utc>,
            ) -> Result<DatasetRecord, ChangeError> {
                let mut tx = self.pool.begin().await?;
                let ds = Self::lock_dataset(&mut tx, dataset_id).await?;
                if Self::is_pruned(&mut tx, dataset_id, version).await? {
                    return Err(ChangeError::Pruned {
                        dataset: dataset_id.to_string(),
                        version,
                    });
                }
                if ds.current_version == Some(version) {
                    return Ok(ds);
                }
                sqlx::query(
                    "UPDATE managed_datasets SET current_version = $2, updated_at = $3 WHERE dataset_id = $1",
                )
                .bind(dataset_id.as_str())
                .bind(version)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                // A held version rolled back to is in view from now on.
                sqlx::query("UPDATE dataset_versions SET held = FALSE WHERE dataset_id = $1 AND version = $2")
                    .bind(dataset_id.as_str())
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
                Self::record_event(
                    &mut tx,
                    &NewEvent {
                        dataset_id,
                        version: Some(version),
                        action: CatalogAction::Rollback,
                        actor,
                        cause: None,
                        detail: serde_json::json!({"from": ds.current_version}),
                        at: now,
                    },
                )
                .await?;
                tx.commit().await?;
                Ok(DatasetRecord {
                    current_version: Some(version),
                    updated_at: from_ms(ms(now))?,
                    ..ds
                })
            }

            async fn prune_version(
                &self,
                dataset_id: &DatasetId,
                version: i64,
                actor: &str,
                now: DateTime<Utc>,
            ) -> Result<(), ChangeError> {
                let mut tx = self.pool.begin().await?;
                let ds = Self::lock_dataset(&mut tx, dataset_id).await?;
                if Self::is_pruned(&mut tx, dataset_id, version).await? {
                    return Ok(());
                }
                if ds.current_version == Some(version) {
                    return Err(ChangeError::Current {
                        dataset: dataset_id.to_string(),
                        version,
                    });
                }
                sqlx::query("UPDATE dataset_versions SET pruned_at = $3 WHERE dataset_id = $1 AND version = $2")
                    .bind(dataset_id.as_str())
                    .bind(version)
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await?;
                Self::record_event(
                    &mut tx,
                    &NewEvent {
                        dataset_id,
                        version: Some(version),
                        action: CatalogAction::PruneVersion,
                        actor,
                        cause: None,
                        detail: serde_json::Value::Null,
                        at: now,
                    },
                )
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn prune_dataset(
                &self,
                dataset_id: &DatasetId,
                actor: &str,
                now: DateTime<Utc>,
            ) -> Result<(), ChangeError> {
                let mut tx = self.pool.begin().await?;
                let ds = Self::lock_dataset(&mut tx, dataset_id).await?;
                if ds.current_version.is_none() {
                    return Ok(());
                }
                sqlx::query("UPDATE managed_datasets SET current_version = NULL, updated_at = $2 WHERE dataset_id = $1")
                    .bind(dataset_id.as_str())
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE dataset_versions SET pruned_at = $2 WHERE dataset_id = $1 AND pruned_at IS NULL")
                    .bind(dataset_id.as_str())
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await?;
                Self::record_event(
                    &mut tx,
                    &NewEvent {
                        dataset_id,
                        version: ds.current_version,
                        action: CatalogAction::Prune,
                        actor,
                        cause: None,
                        detail: serde_json::Value::Null,
                        at: now,
                    },
                )
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn collectable_versions(
                &self,
                cutoff: DateTime<Utc>,
                limit: u32,
            ) -> DbResult<Vec<VersionRecord>> {
                sqlx::query_as::<_, VersionRow>(version_select!(
                    "WHERE pruned_at IS NOT NULL AND pruned_at < $1 AND collected_at IS NULL \
                     ORDER BY pruned_at LIMIT $2"
                ))
                .bind(ms(cutoff))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(VersionRecord::try_from)
                .collect()
            }

            async fn mark_collected(
                &self,
                dataset_id: &DatasetId,
                version: i64,
                now: DateTime<Utc>,
            ) -> DbResult<()> {
                sqlx::query("UPDATE dataset_versions SET collected_at = $3 WHERE dataset_id = $1 AND version = $2")
                    .bind(dataset_id.as_str())
                    .bind(version)
                    .bind(ms(now))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn set_published(
                &self,
                dataset_id: &DatasetId,
                published: bool,
                actor: &str,
                now: DateTime<Utc>,
            ) -> Result<DatasetRecord, ChangeError> {
                let mut tx = self.pool.begin().await?;
                let ds = Self::lock_dataset(&mut tx, dataset_id).await?;
                // Publishing brings the newest held version (if any) into view, as current.
                let held: Option<i64> = if published {
                    sqlx::query_scalar(
                        "SELECT MAX(version) FROM dataset_versions WHERE dataset_id = $1 AND held",
                    )
                    .bind(dataset_id.as_str())
                    .fetch_one(&mut *tx)
                    .await?
                } else {
                    None
                };
                if ds.published == published && held.is_none() {
                    return Ok(ds);
                }
                if let Some(n) = held {
                    sqlx::query(
                        "UPDATE managed_datasets SET current_version = $2 WHERE dataset_id = $1",
                    )
                    .bind(dataset_id.as_str())
                    .bind(n)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE dataset_versions SET held = FALSE WHERE dataset_id = $1 AND held",
                    )
                    .bind(dataset_id.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                let current = held.or(ds.current_version);
                sqlx::query(
                    "UPDATE managed_datasets SET published = $2, updated_at = $3 WHERE dataset_id = $1",
                )
                .bind(dataset_id.as_str())
                .bind(published)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                Self::record_event(
                    &mut tx,
                    &NewEvent {
                        dataset_id,
                        version: current,
                        action: if published {
                            CatalogAction::Publish
                        } else {
                            CatalogAction::Unpublish
                        },
                        actor,
                        cause: None,
                        detail: serde_json::json!({"held_version": held}),
                        at: now,
                    },
                )
                .await?;
                tx.commit().await?;
                Ok(DatasetRecord {
                    published,
                    current_version: current,
                    updated_at: from_ms(ms(now))?,
                    ..ds
                })
            }
        }
    };
}

impl_history!(SqliteDb, sqlx::Sqlite);
impl_history!(PostgresDb, sqlx::Postgres);
