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
use climate_domain::{Period, PeriodRange, PeriodType};
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
        dataset_id: &str,
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
        .get_str(&run.template_id)
        .ok_or_else(|| invalid(format!("template '{}' no longer exists", run.template_id)))?;
    let extent = p
        .config
        .extents
        .iter()
        .find(|e| e.extent_id.as_str() == run.extent_id)
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
    // With an aggregation the provider is asked for the finer periods covering the scope.
    let template = l.template.source_template();
    let (start, end) = match l.template.aggregate {
        Some(a) => (
            Period::containing(a.from, start.start()),
            end.map(|e| Period::containing(a.from, e.end() - chrono::Duration::seconds(1))),
        ),
        None => (start, end),
    };
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

/// Asks the provider which periods of `template` over `extent` are published from `from` on,
/// and returns the newest (`None`: nothing from `from` on). The `probe` availability policy.
///
/// # Errors
/// A message when the template cannot be probed (unknown provider, aggregation) or the
/// provider fails for another reason than the data being absent.
pub async fn probe_latest(
    ctx: &Context,
    template: &DatasetTemplate,
    base_dir: &std::path::Path,
    extent: &climate_domain::Extent,
    from: Period,
) -> Result<Option<Period>, String> {
    if template.aggregate.is_some() {
        return Err("the probe policy does not support aggregated templates yet".into());
    }
    let provider = ctx
        .providers
        .get(&template.ingestion.provider)
        .ok_or_else(|| format!("unknown provider '{}'", template.ingestion.provider))?;
    let state = std::sync::Mutex::new(serde_json::Value::Null);
    let located = provider
        .locate(&LocateRequest {
            template,
            base_dir,
            extent,
            start: from,
            end: None,
            env: &ctx.provider_env,
            state: &state,
        })
        .await;
    match located {
        Ok(sources) => Ok(sources.steps.keys().next_back().copied()),
        // Nothing published from `from` on reads as an error naming the missing period.
        Err(e) if e.retry == Retry::Permanent => {
            tracing::debug!(error = %e, "probe: nothing published yet");
            Ok(None)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Plans a claimed run and lays out its store.
///
/// # Errors
/// [`TaskError`]; whatever was written under the new prefix has been deleted.
pub async fn plan(ctx: &Context, run: &RunRecord) -> Result<Planned, TaskError> {
    let l = load(ctx, run)?;
    let kind = l.template.period_type;
    let start = Period::parse(kind, &l.request.start).map_err(|e| invalid(e.to_string()))?;
    let end = l
        .request
        .end
        .as_deref()
        .map(|e| Period::parse(kind, e))
        .transpose()
        .map_err(|e| invalid(e.to_string()))?;
    if !l.request.overwrite
        && let Some(end) = end
        && covered_by_current(ctx, &run.dataset_id, start, end).await?
    {
        return Ok(Planned::AlreadyCovered);
    }
    if l.request.append
        && let Some(end) = end
        && let Some(planned) = plan_append(ctx, run, &l, start, end).await?
    {
        return Ok(planned);
    }
    set_progress(ctx, run, 0, 0, "locating source data").await?;
    let sources = locate(ctx, &l, run, locate_start(l.template, start), end).await?;
    let range = check_scope(&sources, start, end)?;
    let grid = common_grid(&sources)?;
    let bbox = l.extent.bbox;
    let crs = l.extent.storage_crs();
    let (rows, cols, target) = if crs == grid.crs {
        let rows = grid.y.clip(bbox.south(), bbox.north());
        let cols = grid.x.clip(bbox.west(), bbox.east());
        let (Some(rows), Some(cols)) = (rows, cols) else {
            return Err(invalid(format!(
                "the source grid {:?} does not overlap extent '{}' {:?}",
                grid.edge_bounds(),
                l.extent.extent_id,
                bbox.to_array()
            )));
        };
        (rows, cols, None)
    } else {
        let t = reproject::target_grid(&grid, &bbox, crs, l.extent.resolution)
            .map_err(|e| invalid(format!("extent '{}' (crs {crs}): {e}", l.extent.extent_id)))?;
        (t.rows, t.cols, Some(t.grid))
    };
    let (ny, nx) = target
        .as_ref()
        .map_or((rows.len(), cols.len()), |g| (g.y.len, g.x.len));
    let chunks = ChunkShape::for_grid(kind, ny as u64, nx as u64, 4, l.template.chunks);
    let artifact_id = uuid::Uuid::now_v7().to_string();
    let plan = Plan {
        prefix: Store::version_prefix(&run.dataset_id, &artifact_id),
        artifact_id,
        start: range.start().canonical(),
        end: range.end().canonical(),
        source_grid: grid,
        rows: (rows.start, rows.end),
        cols: (cols.start, cols.end),
        chunks,
        target,
        bases: Vec::new(),
        first_chunk: 0,
    };
    lay_out(ctx, l.template, &run.dataset_id, plan).await
}

/// Creates the store a plan describes (metadata and coordinates) and the segments that write
/// its time chunks from `plan.first_chunk` on; on failure, deletes what it wrote.
async fn lay_out(
    ctx: &Context,
    template: &DatasetTemplate,
    dataset_id: &str,
    plan: Plan,
) -> Result<Planned, TaskError> {
    let layout = plan.layout(template, dataset_id)?;
    if let Err(e) = ZarrWriter::create(
        ctx.platform.store.object_store(),
        &plan.prefix,
        layout.clone(),
    )
    .await
    {
        collect_garbage(&ctx.platform.store, &plan.prefix).await;
        return Err(e.into());
    }
    let segments = segments(ctx, &layout, plan.first_chunk);
    Ok(Planned::Segments(Box::new(plan), segments))
}

/// Segments of `worker.segment_chunks` time chunks each, from chunk `first` on.
fn segments(ctx: &Context, layout: &StoreLayout, first: u64) -> Vec<NewSegment> {
    let per = ctx.platform.config.worker.segment_chunks.max(1);
    let n_chunks = layout.time_chunks();
    (0..n_chunks.saturating_sub(first).div_ceil(per))
        .map(|i| {
            let chunk_start = first + i * per;
            let chunk_end = (chunk_start + per).min(n_chunks);
            let periods = layout.time_chunk_range(chunk_end - 1).end
                - layout.time_chunk_range(chunk_start).start;
            NewSegment {
                segment: u32::try_from(i).unwrap_or(u32::MAX),
                chunk_start,
                chunk_end,
                periods,
            }
        })
        .collect()
}

/// Plans an append onto the current version: the same grid and chunking, a new store whose
/// metadata and coordinates cover `start ..= end`, and segments only for the time chunks from
/// the one holding the first period the base lacks (a partial last chunk of the base is
/// rewritten whole). `None` when the current version cannot be extended (none, another start,
/// another grid): the caller rebuilds the range instead.
async fn plan_append(
    ctx: &Context,
    run: &RunRecord,
    l: &Loaded<'_>,
    start: Period,
    end: Period,
) -> Result<Option<Planned>, TaskError> {
    let db = &ctx.platform.db;
    let Some(ds) = db.get_dataset(&run.dataset_id).await? else {
        return Ok(None);
    };
    let Some(n) = ds.current_version else {
        return Ok(None);
    };
    let Some(base) = db.get_version(&run.dataset_id, n).await? else {
        return Ok(None);
    };
    let kind = l.template.period_type;
    let (Ok(bs), Ok(be)) = (
        Period::parse(kind, &base.coverage_start),
        Period::parse(kind, &base.coverage_end),
    ) else {
        return Ok(None);
    };
    if bs != start || end <= be {
        return Ok(None);
    }
    let Some(base_plan) = db
        .get_run(&base.run_id)
        .await?
        .and_then(|r| r.plan)
        .and_then(|p| serde_json::from_value::<Plan>(p).ok())
    else {
        return Ok(None);
    };
    let base_len = base_plan.layout(l.template, &run.dataset_id)?.periods.len();
    // Sources only for the periods this version writes.
    let first_chunk = base_len / base_plan.chunks.t;
    let first_period = start.offset(i64::try_from(first_chunk * base_plan.chunks.t).unwrap_or(0));
    set_progress(ctx, run, 0, 0, "locating the new source data").await?;
    let sources = locate(
        ctx,
        l,
        run,
        locate_start(l.template, first_period),
        Some(end),
    )
    .await?;
    check_scope(&sources, first_period, Some(end))?;
    if !same_grid(&common_grid(&sources)?, &base_plan.source_grid) {
        tracing::info!(run.id = %run.run_id, "the source grid changed: rebuilding instead of appending");
        return Ok(None);
    }
    let mut bases = vec![base.storage_prefix.clone()];
    bases.extend(base_plan.bases.iter().cloned());
    let artifact_id = uuid::Uuid::now_v7().to_string();
    let plan = Plan {
        prefix: Store::version_prefix(&run.dataset_id, &artifact_id),
        artifact_id,
        start: start.canonical(),
        end: end.canonical(),
        bases,
        first_chunk,
        ..base_plan
    };
    tracing::info!(
        run.id = %run.run_id,
        base.version = n,
        first_chunk,
        "appending: earlier time chunks are reused from the current version"
    );
    lay_out(ctx, l.template, &run.dataset_id, plan)
        .await
        .map(Some)
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

/// Writes one segment's time chunks. Returns the number of chunk objects stored.
///
/// # Errors
/// [`TaskError`].
pub async fn write_segment(
    ctx: &Context,
    run: &RunRecord,
    segment: &SegmentRecord,
    cancel: &CancellationToken,
) -> Result<u64, TaskError> {
    let l = load(ctx, run)?;
    let plan = stored_plan(run)?;
    let layout = plan.layout(l.template, &run.dataset_id)?;
    let periods: Vec<Period> = layout.periods.iter().collect();
    let first = layout.time_chunk_range(segment.chunk_start).start as usize;
    let last = layout.time_chunk_range(segment.chunk_end - 1).end as usize - 1;
    let sources = locate(
        ctx,
        &l,
        run,
        locate_start(l.template, periods[first]),
        Some(periods[last]),
    )
    .await?;
    check_scope(&sources, periods[first], Some(periods[last]))?;
    let grid = common_grid(&sources)?;
    if !same_grid(&grid, &plan.source_grid) {
        return Err(invalid(
            "the source grid changed since the run was planned; run the ingestion again",
        ));
    }
    let writer = ZarrWriter::open(ctx.platform.store.object_store(), &plan.prefix, layout).await?;
    let transforms = Arc::new(l.template.transforms.clone());
    let deaccumulate = l.template.transforms.iter().find_map(|t| match t {
        Transform::Deaccumulate { clip_negative } => Some(*clip_negative),
        _ => None,
    });
    let (rows, cols) = (plan.rows.0..plan.rows.1, plan.cols.0..plan.cols.1);
    let resampler = match &plan.target {
        Some(target) => Some(Arc::new(
            reproject::Resampler::new(
                &plan.source_grid,
                rows.clone(),
                cols.clone(),
                target,
                l.template.resampling.unwrap_or_default(),
            )
            .map_err(invalid)?,
        )),
        None => None,
    };
    // A time chunk is read and written in bands of rows, so that a worker holds at most about
    // `worker.band_memory_mib` of values per task whatever the grid's size. A reprojected run
    // reads its whole source window (the target rows do not map to source rows).
    let ny = writer.layout().grid.y.len;
    let band = match plan.target {
        Some(_) => ny,
        None => writer.band_rows(ctx.platform.config.worker.band_memory_mib << 20),
    };
    let mut written = 0;
    for ci in segment.chunk_start..segment.chunk_end {
        let range = writer.layout().time_chunk_range(ci);
        let chunk_periods = &periods[range.start as usize..range.end as usize];
        for b0 in (0..ny.max(1)).step_by(band.max(1)) {
            if cancel.is_cancelled() {
                return Err(TaskError::LeaseLost);
            }
            let b1 = (b0 + band).min(ny);
            let rows = match plan.target {
                Some(_) => rows.clone(),
                None => rows.start + b0..rows.start + b1,
            };
            let slab = read_band(
                chunk_periods,
                &sources,
                &BandRead {
                    rows,
                    cols: cols.clone(),
                    transforms: transforms.clone(),
                    deaccumulate,
                    resampler: resampler.clone(),
                },
            )
            .await?;
            written += writer.write_band(ci, b0..b1, &slab).await?;
        }
    }
    Ok(written)
}

/// What every field of a band is read with.
struct BandRead {
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    transforms: Arc<Vec<Transform>>,
    deaccumulate: Option<bool>,
    resampler: Option<Arc<reproject::Resampler>>,
}

/// Reads, transforms (and reprojects) one band of `periods`' fields, in order, into one slab
/// `[periods, rows, cols]`; up to four fields are decoded at once.
async fn read_band(
    periods: &[Period],
    sources: &SourceSet,
    band: &BandRead,
) -> Result<Vec<f32>, TaskError> {
    let deaccumulate = band.deaccumulate;
    // The futures own what they read: collected first, no borrow is held across an await.
    let reads: Vec<_> = periods.iter().map(|p| {
        let p = *p;
        let step = sources.steps.get(&p).cloned();
        // De-accumulation needs the previous hour, except for the hour ending 01:00.
        let prev = deaccumulate
            .filter(|_| p.start().hour() != 1)
            .map(|_| sources.steps.get(&p.previous()).cloned());
        let (rows, cols, transforms) = (band.rows.clone(), band.cols.clone(), band.transforms.clone());
        let resampler = band.resampler.clone();
        async move {
            let step = step.ok_or_else(|| invalid(format!("no source data for {p}")))?;
            let prev = match prev {
                None => None,
                Some(Some(s)) => Some(s),
                Some(None) => {
                    return Err(invalid(format!(
                        "de-accumulating {p} needs the accumulation of the hour before ({}), which the source does not have: start at an hour ending 01:00 or include the previous hour",
                        p.previous()
                    )));
                }
            };
            // Decoding is blocking work: it runs on the blocking pool.
            tokio::task::spawn_blocking(move || {
                let mut values = step.source.read_window(step.time_index, rows.clone(), cols.clone())?;
                if let Some(clip) = deaccumulate {
                    let previous = prev
                        .map(|s| s.source.read_window(s.time_index, rows, cols))
                        .transpose()?;
                    Transform::deaccumulate(&mut values, previous.as_deref(), clip);
                }
                for t in transforms.iter() {
                    t.apply(&mut values);
                }
                // Transforms see source values; reprojection comes after them.
                if let Some(r) = &resampler {
                    values = r.apply(&values);
                }
                Ok::<_, TaskError>(values)
            })
            .await
            .map_err(|e| invalid(format!("reader task failed: {e}")))?
        }
    }).collect();
    let mut slab = Vec::new();
    let mut fields = futures::stream::iter(reads).buffered(4);
    while let Some(field) = fields.next().await {
        let field = field?;
        if slab.is_empty() {
            slab.reserve_exact(field.len() * periods.len());
        }
        slab.extend_from_slice(&field);
    }
    Ok(slab)
}

/// Consolidates the store's metadata and publishes the version (one transaction with the
/// run's status).
///
/// # Errors
/// [`TaskError`].
pub async fn finalize(
    ctx: &Context,
    run: &RunRecord,
    chunks_written: u64,
) -> Result<VersionRecord, TaskError> {
    let l = load(ctx, run)?;
    let plan = stored_plan(run)?;
    let layout = plan.layout(l.template, &run.dataset_id)?;
    let shape = [
        layout.periods.len(),
        layout.grid.y.len as u64,
        layout.grid.x.len as u64,
    ];
    let (crs, bbox, transform) = (
        layout.grid.crs.clone(),
        layout.grid.edge_bounds(),
        layout.grid.transform(),
    );
    let writer = ZarrWriter::open(ctx.platform.store.object_store(), &plan.prefix, layout).await?;
    writer.finish().await?;
    ctx.failpoints.hit("before_publish");
    let t = l.template;
    let metadata = json!({
        "format": "zarr",
        "zarr_format": 3,
        "variable": t.variable,
        "units": t.units,
        "period_type": t.period_type.as_str(),
        "crs": crs,
        "bbox": bbox,
        "shape": shape,
        "chunks": plan.chunks.to_array(),
        "transform": transform,
        "chunks_written": chunks_written,
        "bases": plan.bases,
        "first_chunk": plan.first_chunk,
        "provider": t.ingestion.provider,
        "request": run.request,
    });
    let version = NewVersion {
        dataset_id: run.dataset_id.clone(),
        template_id: run.template_id.clone(),
        extent_id: run.extent_id.clone(),
        artifact_id: plan.artifact_id.clone(),
        storage_prefix: plan.prefix.clone(),
        coverage_start: plan.start.clone(),
        coverage_end: plan.end.clone(),
        metadata,
        publish: l.request.publish,
    };
    Ok(ctx
        .platform
        .db
        .publish_version(&run.run_id, &ctx.worker_id, &version, Utc::now())
        .await?)
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
        .update_progress(&run.run_id, &ctx.worker_id, &progress)
        .await?;
    Ok(())
}

async fn covered_by_current(
    ctx: &Context,
    dataset_id: &str,
    start: Period,
    end: Period,
) -> Result<bool, TaskError> {
    let db = &ctx.platform.db;
    let Some(ds) = db.get_dataset(dataset_id).await? else {
        return Ok(false);
    };
    let Some(n) = ds.current_version else {
        return Ok(false);
    };
    let Some(v) = db.get_version(dataset_id, n).await? else {
        return Ok(false);
    };
    let kind = start.kind();
    let (Ok(cs), Ok(ce)) = (
        Period::parse(kind, &v.coverage_start),
        Period::parse(kind, &v.coverage_end),
    ) else {
        return Ok(false);
    };
    Ok(cs <= start && end <= ce)
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
