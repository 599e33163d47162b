//! Writing a planned run: one segment's time chunks, band by band, and the finalize step that
//! consolidates the store and publishes the version.

use super::*;
use climate_catalog::VersionMetadata;

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
            .map_err(|e| invalid(e.to_string()))?,
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
pub(super) struct BandRead {
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    transforms: Arc<Vec<Transform>>,
    deaccumulate: Option<bool>,
    resampler: Option<Arc<reproject::Resampler>>,
}

/// Reads, transforms (and reprojects) one band of `periods`' fields, in order, into one slab
/// `[periods, rows, cols]`; up to four fields are decoded at once.
pub(super) async fn read_band(
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
    ctx.worker
        .failpoints
        .hit(climate_jobs::FailPoint::BeforePublish);
    let t = l.template;
    let metadata = VersionMetadata {
        format_version: climate_catalog::FORMAT_VERSION,
        format: "zarr".into(),
        zarr_format: 3,
        variable: t.variable.clone(),
        units: t.units.clone(),
        period_type: t.period_type,
        crs,
        bbox,
        shape,
        chunks: plan.chunks.to_array(),
        transform,
        chunks_written,
        bases: plan.bases.clone(),
        first_chunk: plan.first_chunk,
        provider: t.ingestion.provider.clone(),
        request: run.request.clone(),
    }
    .to_json();
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
        .publish_version(&run.run_id, ctx.worker.id(), &version, Utc::now())
        .await?)
}
