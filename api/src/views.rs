//! Response shapes of the native API and their conversion from stored records. Artifact ids,
//! storage prefixes and provider internals never appear here.

use crate::error::ErrorCode;
use chrono::{DateTime, Utc};
use climate_domain::DatasetId;
use climate_infra::db::{DatasetRecord, RunRecord, VersionRecord};
use climate_infra::templates::LoadedTemplate;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::state::{AppState, BaseUrl};

/// A link.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Link {
    /// Relation: `self`, `zarr`, `dataset`, `next`, …
    pub rel: String,
    /// Absolute URL.
    pub href: String,
    /// Media type.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

impl Link {
    /// A link without media type.
    pub fn new(rel: &str, href: String) -> Self {
        Self {
            rel: rel.to_owned(),
            href,
            media_type: None,
        }
    }

    /// A link with a media type.
    pub fn typed(rel: &str, href: String, media_type: &str) -> Self {
        Self {
            rel: rel.to_owned(),
            href,
            media_type: Some(media_type.to_owned()),
        }
    }
}

/// Run progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgressView {
    /// Periods written.
    pub done: u64,
    /// Periods to write (0 until known).
    pub total: u64,
    /// Percentage.
    pub percent: f64,
    /// Current step.
    pub message: String,
    /// Per segment (time chunks written in parallel) once the run is planned; only on a
    /// single run and its event stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments: Option<Vec<SegmentView>>,
}

/// One segment of a planned run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SegmentView {
    /// Index, from 0.
    pub segment: u32,
    /// `queued`, `running`, `retrying`, `done` or `failed`.
    pub status: String,
    /// Periods it writes.
    pub periods: u64,
    /// Claims so far.
    pub attempts: u32,
}

impl From<&climate_infra::db::SegmentRecord> for SegmentView {
    fn from(s: &climate_infra::db::SegmentRecord) -> Self {
        Self {
            segment: s.segment,
            status: s.status.as_str().to_owned(),
            periods: s.periods,
            attempts: s.attempts,
        }
    }
}

/// Run error.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunErrorView {
    /// Stable code.
    pub code: String,
    /// Explanation.
    pub message: String,
}

/// An ingestion run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunView {
    /// Run id.
    pub ingestion_id: String,
    /// `ingestion` or `sync`.
    pub kind: String,
    /// `queued`, `running`, `retrying`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// Managed dataset written by the run.
    pub dataset_id: String,
    /// Template.
    pub template_id: String,
    /// Extent.
    pub extent_id: String,
    /// The request as accepted (canonical periods).
    #[schema(value_type = Object)]
    pub request: Value,
    /// Progress.
    pub progress: ProgressView,
    /// Claims so far.
    pub attempts: u32,
    /// Last error.
    pub error: Option<RunErrorView>,
    /// Accepted at.
    pub created_at: DateTime<Utc>,
    /// First started at.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished at.
    pub finished_at: Option<DateTime<Utc>>,
    /// The dataset, once the run succeeded.
    pub dataset: Option<DatasetSummary>,
    /// Links.
    pub links: Vec<Link>,
}

impl RunView {
    /// Builds the view; `dataset` is attached for succeeded runs.
    pub fn new(run: RunRecord, dataset: Option<DatasetSummary>, base: &BaseUrl) -> Self {
        let percent = run.progress.percent();
        let mut links = vec![Link::typed(
            "self",
            base.join(&format!("/ingestions/{}", run.run_id)),
            "application/json",
        )];
        if run.status == climate_domain::run::RunStatus::Succeeded {
            links.push(Link::typed(
                "dataset",
                base.join(&format!("/datasets/{}", run.dataset_id)),
                "application/json",
            ));
        }
        Self {
            ingestion_id: run.run_id.to_string(),
            kind: run.kind.as_str().to_owned(),
            status: run.status.as_str().to_owned(),
            dataset_id: run.dataset_id.into(),
            template_id: run.template_id.into(),
            extent_id: run.extent_id.into(),
            request: run.request,
            progress: ProgressView {
                done: run.progress.done,
                total: run.progress.total,
                percent,
                message: run.progress.message,
                segments: None,
            },
            attempts: run.attempts,
            error: run.error.map(|e| RunErrorView {
                code: e.code,
                message: e.message,
            }),
            created_at: run.created_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            dataset,
            links,
        }
    }
}

/// Spatial extent of a dataset.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SpatialView {
    /// Pixel-edge bounds of the stored grid `[xmin, ymin, xmax, ymax]`.
    pub bbox: Vec<f64>,
    /// CRS of the stored grid.
    pub crs: String,
}

/// Temporal extent of a dataset (canonical periods).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemporalView {
    /// First period.
    pub start: String,
    /// Last period.
    pub end: String,
}

/// Spatial and temporal extent.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExtentView {
    /// Spatial.
    pub spatial: SpatialView,
    /// Temporal.
    pub temporal: TemporalView,
}

/// Publication state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublicationView {
    /// `published` or `unpublished`.
    pub status: String,
    /// When the current version was published.
    pub published_at: DateTime<Utc>,
}

/// Summary of a managed dataset.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DatasetSummary {
    /// Public id `{template_id}_{extent_id}`.
    pub dataset_id: String,
    /// Template id.
    pub source_dataset_id: String,
    /// Extent id.
    pub extent_id: String,
    /// Display name.
    pub dataset_name: String,
    /// Short display name.
    pub short_name: String,
    /// Variable name in the store.
    pub variable: String,
    /// Period type.
    pub period_type: String,
    /// Units.
    pub units: String,
    /// Nominal resolution.
    pub resolution: Option<String>,
    /// Data source.
    pub source: Option<String>,
    /// Source documentation.
    pub source_url: Option<String>,
    /// Extent of the current version.
    pub extent: ExtentView,
    /// Current version number.
    pub version: i64,
    /// When the current version was published.
    pub last_updated: DateTime<Utc>,
    /// Links.
    pub links: Vec<Link>,
    /// Publication state.
    pub publication: PublicationView,
}

impl DatasetSummary {
    /// Builds the summary of a dataset from its current version and template.
    pub fn new(
        ds: &DatasetRecord,
        current: &VersionRecord,
        template: Option<&LoadedTemplate>,
        base: &BaseUrl,
    ) -> Self {
        let t = template.map(|t| &t.template);
        // Unreadable metadata leaves the cube's fields empty rather than hiding the dataset.
        let meta = climate_catalog::VersionMetadata::of(current).ok();
        let field = |f: fn(&climate_catalog::VersionMetadata) -> String| {
            meta.as_ref().map(f).unwrap_or_default()
        };
        let bbox = meta.as_ref().map(|m| m.bbox.to_vec()).unwrap_or_default();
        let id = &ds.dataset_id;
        Self {
            dataset_id: id.to_string(),
            source_dataset_id: ds.template_id.to_string(),
            extent_id: ds.extent_id.to_string(),
            dataset_name: t.map_or_else(|| ds.template_id.to_string(), |t| t.name.clone()),
            short_name: t
                .and_then(|t| t.short_name.clone().or_else(|| Some(t.name.clone())))
                .unwrap_or_else(|| ds.template_id.to_string()),
            variable: field(|m| m.variable.clone()),
            period_type: field(|m| m.period_type.as_str().to_owned()),
            units: field(|m| m.units.clone()),
            resolution: t.and_then(|t| t.resolution.clone()),
            source: t.and_then(|t| t.source.clone()),
            source_url: t.and_then(|t| t.source_url.clone()),
            extent: ExtentView {
                spatial: SpatialView {
                    bbox,
                    crs: meta
                        .as_ref()
                        .map_or_else(|| "EPSG:4326".to_owned(), |m| m.crs.to_string()),
                },
                temporal: TemporalView {
                    start: current.coverage_start.clone(),
                    end: current.coverage_end.clone(),
                },
            },
            version: current.version,
            last_updated: current.created_at,
            links: vec![
                Link::typed(
                    "self",
                    base.join(&format!("/datasets/{id}")),
                    "application/json",
                ),
                Link::typed(
                    "zarr",
                    base.join(&format!("/zarr/{id}")),
                    "application/vnd+zarr",
                ),
            ]
            .into_iter()
            // Only published datasets are in the STAC catalog, OGC API and downloads.
            .chain(
                [
                    (
                        "stac",
                        format!("/stac/collections/{id}"),
                        "application/json",
                    ),
                    (
                        "ogc-collection",
                        format!("/ogcapi/collections/{id}"),
                        "application/json",
                    ),
                    (
                        "download",
                        format!("/datasets/{id}/download?format=netcdf"),
                        "application/x-netcdf",
                    ),
                ]
                .into_iter()
                .filter(|_| ds.published)
                .map(|(rel, path, ty)| Link::typed(rel, base.join(&path), ty)),
            )
            .collect(),
            publication: PublicationView {
                status: if ds.published {
                    "published"
                } else {
                    "unpublished"
                }
                .to_owned(),
                published_at: current.created_at,
            },
        }
    }
}

/// One version of a dataset.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VersionView {
    /// Version number.
    pub version: i64,
    /// Whether it is the current version.
    pub current: bool,
    /// Published at.
    pub created_at: DateTime<Utc>,
    /// Temporal coverage.
    pub coverage: TemporalView,
    /// Ingestion run that wrote it.
    pub ingestion_id: String,
    /// Held out of public view (written with `publish: false`; only admins see it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// Links.
    pub links: Vec<Link>,
}

impl VersionView {
    /// Builds the view.
    pub fn new(v: &VersionRecord, current: Option<i64>, base: &BaseUrl) -> Self {
        Self {
            version: v.version,
            current: current == Some(v.version),
            created_at: v.created_at,
            coverage: TemporalView {
                start: v.coverage_start.clone(),
                end: v.coverage_end.clone(),
            },
            ingestion_id: v.run_id.to_string(),
            held: v.held,
            links: vec![
                Link::typed(
                    "ingestion",
                    base.join(&format!("/ingestions/{}", v.run_id)),
                    "application/json",
                ),
                Link::typed(
                    "zarr",
                    base.join(&format!(
                        "/datasets/{}/versions/{}/zarr",
                        v.dataset_id, v.version
                    )),
                    "application/vnd+zarr",
                ),
            ],
        }
    }
}

/// Loads the summary of a dataset's current version, if it has one.
///
/// # Errors
/// Database errors.
pub async fn dataset_summary(
    state: &AppState,
    ds: &DatasetRecord,
    base: &BaseUrl,
) -> Result<Option<DatasetSummary>, climate_infra::db::DbError> {
    let Some(n) = ds.current_version else {
        return Ok(None);
    };
    let Some(v) = state.platform.db.get_version(&ds.dataset_id, n).await? else {
        return Ok(None);
    };
    let template = state.platform.catalog.get(&ds.template_id);
    Ok(Some(DatasetSummary::new(ds, &v, template, base)))
}

/// 404 for a dataset that does not exist or has no version yet.
pub fn unknown_dataset(id: &str) -> crate::error::ApiError {
    crate::error::ApiError::not_found(
        ErrorCode::UnknownDataset,
        format!("no dataset '{id}'; GET /datasets lists the published ones"),
    )
}

/// The dataset a path names; an id that is not a dataset id names none.
///
/// # Errors
/// [`unknown_dataset`] when `id` is not a dataset id.
pub fn dataset_id(id: &str) -> Result<DatasetId, crate::error::ApiError> {
    DatasetId::new(id).map_err(|_| unknown_dataset(id))
}

/// Who may see unpublished datasets: callers with the `admin` scope.
pub fn sees_unpublished(principal: Option<&crate::auth::Principal>) -> bool {
    principal.is_some_and(|p| p.can(climate_domain::auth::Scope::Admin))
}

/// A dataset the caller may see: a published one, or any with `admin` (`see_unpublished`);
/// an unpublished one is not found for anyone else.
///
/// # Errors
/// [`unknown_dataset`]; database errors.
pub async fn visible_dataset(
    state: &AppState,
    id: &str,
    see_unpublished: bool,
) -> Result<DatasetRecord, crate::error::ApiError> {
    state
        .platform
        .db
        .get_dataset(&dataset_id(id)?)
        .await?
        .filter(|ds| ds.published || see_unpublished)
        .ok_or_else(|| unknown_dataset(id))
}

/// A dataset the caller may see (see [`visible_dataset`]) and its current version.
///
/// # Errors
/// [`unknown_dataset`] when either is missing; database errors.
pub async fn current_version(
    state: &AppState,
    id: &str,
    see_unpublished: bool,
) -> Result<(DatasetRecord, VersionRecord), crate::error::ApiError> {
    let db = &state.platform.db;
    let ds = visible_dataset(state, id, see_unpublished).await?;
    let dataset = ds.dataset_id.clone();
    let n = ds.current_version.ok_or_else(|| unknown_dataset(id))?;
    let v = db
        .get_version(&dataset, n)
        .await?
        .ok_or_else(|| unknown_dataset(id))?;
    Ok((ds, v))
}
