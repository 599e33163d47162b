//! The materialisation pipeline, in three steps that may run on different workers:
//!
//! 1. [`plan`]: locate the sources for the whole scope, check it is complete (no gaps), clip
//!    the grid to the extent (pixel-centre rule), choose the chunking, lay out the Zarr v3 store
//!    under a fresh prefix (coordinates, array metadata) and split the time axis into segments
//!    of whole time chunks.
//! 2. [`write_segment`]: for one segment, locate its sources, read and transform one time chunk
//!    at a time and write its chunk objects. Segments touch disjoint chunk objects, so they run
//!    in parallel, and writing one again after a crash rewrites the same bytes.
//! 3. [`finalize`]: write the root `zarr.json` with consolidated metadata, then publish the
//!    version and the run's status in one transaction.
//!
//! Nothing is visible to readers until the publish transaction commits; a failed run deletes
//! what it wrote.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Timelike;
use chrono::Utc;
use climate_domain::chunking::ChunkShape;
use climate_domain::grid::Grid;
use climate_domain::run::{Progress, RunRequest};
use climate_domain::template::{Aggregate, DatasetTemplate, Transform};
use climate_domain::{DatasetId, Period, PeriodRange, PeriodType};
use climate_geodata::providers::{LocateRequest, Retry, SourceSet, Step};
use climate_geodata::raster::{AggregatedSource, RasterSource};
use climate_geodata::reproject;
use climate_geodata::zarr::{StoreLayout, ZarrWriter};
use climate_infra::db::{DbError, NewSegment, NewVersion, RunRecord, SegmentRecord, VersionRecord};
use climate_infra::store::Store;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::Context;

mod plan;
mod write;

pub use plan::{plan, probe_latest};
pub use write::{finalize, write_segment};

/// How planning ended well.
#[derive(Debug)]
pub enum Planned {
    /// The store is laid out; these segments remain to be written.
    Segments(Box<Plan>, Vec<NewSegment>),
    /// The current version already covers the scope; nothing was written.
    AlreadyCovered,
}

/// The plan of a run, stored on the run row: enough for any worker to write a segment or
/// finalize without planning again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Internal artifact id of the version being written.
    pub artifact_id: String,
    /// Object-store prefix of the store.
    pub prefix: String,
    /// First period (canonical).
    pub start: String,
    /// Last period (canonical).
    pub end: String,
    /// The sources' grid, before clipping (segments check their sources against it).
    pub source_grid: Grid,
    /// Rows of the source grid inside the extent.
    pub rows: (usize, usize),
    /// Columns of the source grid inside the extent.
    pub cols: (usize, usize),
    /// Chunk shape of the data array.
    pub chunks: ChunkShape,
    /// The grid in the extent's CRS when the run reprojects (the source window above feeds
    /// it); `None` when the store keeps the source grid, clipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Grid>,
    /// An append: the prefixes of earlier versions (newest first) whose objects this version
    /// reuses; a key missing under `prefix` is read from the first of them that has it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bases: Vec<String>,
    /// An append: the first time chunk this version writes (earlier ones are the base's).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub first_chunk: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Plan {
    /// The store layout this plan describes, rebuilt from the template.
    ///
    /// # Errors
    /// [`TaskError::Invalid`] when the stored periods no longer parse.
    pub fn layout(
        &self,
        template: &DatasetTemplate,
        dataset_id: &DatasetId,
    ) -> Result<StoreLayout, TaskError> {
        let kind = template.period_type;
        let start = Period::parse(kind, &self.start).map_err(|e| invalid(e.to_string()))?;
        let end = Period::parse(kind, &self.end).map_err(|e| invalid(e.to_string()))?;
        Ok(StoreLayout {
            variable: template.variable.clone(),
            units: template.units.clone(),
            long_name: template.long_name().to_owned(),
            period_type: kind,
            periods: PeriodRange::new(start, end).map_err(|e| invalid(e.to_string()))?,
            grid: self.target.clone().unwrap_or_else(|| Grid {
                crs: self.source_grid.crs.clone(),
                x: self.source_grid.x.slice(self.cols.0..self.cols.1),
                y: self.source_grid.y.slice(self.rows.0..self.rows.1),
            }),
            chunks: self.chunks,
            shard: template.chunks.and_then(|c| c.shard),
            attributes: serde_json::Map::from_iter([
                ("title".to_owned(), json!(template.name)),
                ("dataset_id".to_owned(), json!(dataset_id)),
                ("source".to_owned(), json!(template.source)),
            ]),
        })
    }
}

/// How a pipeline run ended badly.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The request cannot succeed as asked (bad scope, missing data, unsupported source).
    #[error("{0}")]
    Invalid(String),
    /// The provider failed.
    #[error("{0}")]
    Provider(#[from] climate_geodata::providers::ProviderError),
    /// A source file could not be decoded.
    #[error("{0}")]
    Raster(#[from] climate_geodata::raster::RasterError),
    /// Writing the store failed (usually transient).
    #[error("writing the Zarr store failed: {0}")]
    Write(#[from] climate_geodata::zarr::ZarrError),
    /// The database failed (transient).
    #[error("database: {0}")]
    Db(DbError),
    /// Another worker took the run over (our lease expired).
    #[error("lease lost")]
    LeaseLost,
    /// An upstream job is still running: suspend and come back later with this state.
    #[error("{message}")]
    Pending {
        /// What is awaited.
        message: String,
        /// When to look again.
        after: std::time::Duration,
        /// The provider's state to resume from.
        state: serde_json::Value,
    },
}

impl From<DbError> for TaskError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::LeaseLost(_) => Self::LeaseLost,
            other => Self::Db(other),
        }
    }
}

impl TaskError {
    /// Stable error code stored on the run.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_request",
            Self::Provider(e) if e.retry == Retry::Transient => "upstream_unavailable",
            Self::Provider(_) => "source_error",
            Self::Raster(e) if e.transient => "upstream_unavailable",
            Self::Raster(_) => "source_error",
            Self::Write(_) => "store_error",
            Self::Db(_) => "database_error",
            Self::LeaseLost => "lease_lost",
            Self::Pending { .. } => "pending_upstream",
        }
    }

    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Provider(e) => e.retry == Retry::Transient,
            Self::Raster(e) => e.transient,
            Self::Write(_) | Self::Db(_) => true,
            Self::Invalid(_) | Self::LeaseLost | Self::Pending { .. } => false,
        }
    }
}

fn invalid(msg: impl Into<String>) -> TaskError {
    TaskError::Invalid(msg.into())
}

struct Loaded<'a> {
    template: &'a DatasetTemplate,
    base_dir: &'a std::path::Path,
    extent: &'a climate_domain::Extent,
    request: RunRequest,
}

fn load<'a>(ctx: &'a Context, run: &RunRecord) -> Result<Loaded<'a>, TaskError> {
    let p = &ctx.platform;
    let loaded = p
        .catalog
        .get(&run.template_id)
        .ok_or_else(|| invalid(format!("template '{}' no longer exists", run.template_id)))?;
    let extent = p
        .config
        .extents
        .iter()
        .find(|e| e.extent_id == run.extent_id)
        .ok_or_else(|| invalid(format!("extent '{}' no longer exists", run.extent_id)))?;
    let request: RunRequest = serde_json::from_value(run.request.clone())
        .map_err(|e| invalid(format!("stored request is unreadable: {e}")))?;
    Ok(Loaded {
        template: &loaded.template,
        base_dir: &loaded.base_dir,
        extent,
        request,
    })
}

async fn locate(
    ctx: &Context,
    l: &Loaded<'_>,
    run: &RunRecord,
    start: Period,
    end: Option<Period>,
) -> Result<SourceSet, TaskError> {
    // With an aggregation the provider is asked for the finer periods covering the scope.
    let template = l.template.source_template();
    let (start, end) = match l.template.aggregate {
        Some(a) => (
            Period::containing(a.from, start.start()),
            end.map(|e| Period::containing(a.from, e.end() - chrono::Duration::seconds(1))),
        ),
        None => (start, end),
    };
    // A derived template reads the platform's own stored dataset of its source.
    if let Some(source) = l.template.derived_from() {
        let dataset = crate::derived::source_dataset(&source, &l.extent.extent_id);
        let sources = crate::derived::locate(ctx, &dataset, start, end)
            .await
            .map_err(|e| match e {
                crate::derived::SourceError::Missing(_) => invalid(e.to_string()),
                crate::derived::SourceError::Db(e) => e.into(),
                crate::derived::SourceError::Catalog(c) => {
                    TaskError::Raster(climate_geodata::raster::RasterError {
                        path: dataset.to_string(),
                        message: c.to_string(),
                        transient: true,
                    })
                }
            })?;
        return Ok(match l.template.aggregate {
            Some(a) => aggregate(sources, l.template.period_type, a),
            None => sources,
        });
    }
    let provider = ctx
        .providers
        .get(&l.template.ingestion.provider)
        .ok_or_else(|| {
            invalid(format!(
                "unknown provider '{}'",
                l.template.ingestion.provider
            ))
        })?;
    let state = std::sync::Mutex::new(run.provider_state.clone().unwrap_or_default());
    let result = provider
        .locate(&LocateRequest {
            template: &template,
            base_dir: l.base_dir,
            extent: l.extent,
            start,
            end,
            env: &ctx.provider_env,
            state: &state,
        })
        .await;
    match result {
        Ok(sources) => Ok(match l.template.aggregate {
            Some(a) => aggregate(sources, l.template.period_type, a),
            None => sources,
        }),
        Err(e) => match e.retry {
            Retry::Pending { after_ms } => Err(TaskError::Pending {
                message: e.to_string(),
                after: std::time::Duration::from_millis(after_ms),
                state: state
                    .into_inner()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            }),
            _ => Err(e.into()),
        },
    }
}

/// Reads a run's stored plan.
///
/// # Errors
/// [`TaskError::Invalid`] when the run has no readable plan.
pub fn stored_plan(run: &RunRecord) -> Result<Plan, TaskError> {
    let v = run
        .plan
        .clone()
        .ok_or_else(|| invalid("the run has no plan"))?;
    serde_json::from_value(v).map_err(|e| invalid(format!("stored plan is unreadable: {e}")))
}

/// Where to start locating sources: one period early when de-accumulating, whose first field
/// needs the accumulation of the hour before.
/// Groups finer source fields into the template's periods, each an [`AggregatedSource`].
/// A period lacking any of its finer periods is left out (the scope check then names it).
fn aggregate(sources: SourceSet, kind: PeriodType, a: Aggregate) -> SourceSet {
    let mut groups: BTreeMap<Period, Vec<(Period, Step)>> = BTreeMap::new();
    for (p, step) in sources.steps {
        groups
            .entry(Period::containing(kind, p.start()))
            .or_default()
            .push((p, step));
    }
    let steps = groups
        .into_iter()
        .filter_map(|(period, parts)| {
            let expected =
                std::iter::successors(Some(Period::containing(a.from, period.start())), |q| {
                    Some(q.next())
                })
                .take_while(|q| q.start() < period.end())
                .count();
            (parts.len() == expected).then(|| {
                let parts = parts
                    .into_iter()
                    .map(|(_, s)| (s.source, s.time_index))
                    .collect();
                let source: Arc<dyn RasterSource> =
                    Arc::new(AggregatedSource::new(parts, a.method));
                (
                    period,
                    Step {
                        source,
                        time_index: 0,
                    },
                )
            })
        })
        .collect();
    SourceSet { steps }
}

fn locate_start(template: &DatasetTemplate, start: Period) -> Period {
    if template.transforms.iter().any(Transform::is_temporal) {
        start.previous()
    } else {
        start
    }
}

fn same_grid(g: &Grid, first: &Grid) -> bool {
    g.crs == first.crs
        && g.x.len == first.x.len
        && g.y.len == first.y.len
        && (g.x.first - first.x.first).abs() < first.x.step.abs() * 1e-3
        && (g.y.first - first.y.first).abs() < first.y.step.abs() * 1e-3
        && (g.x.step - first.x.step).abs() < first.x.step.abs() * 1e-6
        && (g.y.step - first.y.step).abs() < first.y.step.abs() * 1e-6
}

async fn set_progress(
    ctx: &Context,
    run: &RunRecord,
    done: u64,
    total: u64,
    message: &str,
) -> Result<(), TaskError> {
    let progress = Progress {
        done,
        total,
        message: message.to_owned(),
    };
    ctx.platform
        .db
        .update_progress(&run.run_id, ctx.worker.id(), &progress)
        .await?;
    Ok(())
}

/// The grid shared by every field; sources on different grids cannot be stacked.
fn common_grid(sources: &SourceSet) -> Result<Grid, TaskError> {
    let mut iter = sources.steps.values();
    let first = iter
        .next()
        .ok_or_else(|| invalid("no source data"))?
        .source
        .grid()
        .clone();
    for step in iter {
        if !same_grid(step.source.grid(), &first) {
            return Err(invalid(format!(
                "{} is on a different grid than the other source files",
                step.source.describe()
            )));
        }
    }
    Ok(first)
}

/// Deletes everything under a failed run's prefix. Best effort: leftovers are unreachable (no
/// version points at them) and a later sweep can remove them.
pub async fn collect_garbage(store: &Store, prefix: &str) {
    let os = store.object_store();
    let path = object_store::path::Path::from(prefix);
    let objects: Vec<_> = os.list(Some(&path)).collect().await;
    let mut deleted = 0;
    for meta in objects.into_iter().flatten() {
        if os.delete(&meta.location).await.is_ok() {
            deleted += 1;
        }
    }
    tracing::info!(prefix, deleted, "removed objects of an unpublished version");
}

/// The range to write: `start ..= end` (or up to the last available period), every period of
/// which must have a field. Gaps are never published.
fn check_scope(
    sources: &SourceSet,
    start: Period,
    end: Option<Period>,
) -> Result<PeriodRange, TaskError> {
    let available = || match (sources.steps.keys().next(), sources.steps.keys().last()) {
        (Some(a), Some(b)) => format!("the source has {a} to {b} in the requested range"),
        _ => "the source has nothing in the requested range".to_owned(),
    };
    let end =
        match end {
            Some(e) => e,
            None => *sources.steps.keys().last().ok_or_else(|| {
                invalid(format!("no source data from {start} on: {}", available()))
            })?,
        };
    let range = PeriodRange::new(start, end).map_err(|e| invalid(e.to_string()))?;
    if let Some(missing) = range.iter().find(|p| !sources.steps.contains_key(p)) {
        return Err(invalid(format!(
            "no source data for {missing} ({}); the requested scope {start} to {end} cannot be covered without gaps",
            available()
        )));
    }
    Ok(range)
}
