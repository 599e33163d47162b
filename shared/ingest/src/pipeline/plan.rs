//! Planning a run: locate the whole scope, check it, clip the grid, lay out the store and
//! split it into segments (or, for an append, plan only the new time chunks); and the probe
//! syncs use to learn the latest published period.

use super::*;

/// Asks the provider which periods of `template` over `extent` are published from `from` on,
/// and returns the newest (`None`: nothing from `from` on). The `probe` availability policy.
/// For a derived template the "provider" is the stored source dataset: what it covers whole.
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
    if let Some(source) = template.derived_from() {
        let source = crate::derived::source_dataset(&source, &extent.extent_id);
        return Ok(
            crate::derived::available(ctx, &source, template.period_type)
                .await
                .map_err(|e| e.to_string())?
                .map(|(_, last)| last)
                .filter(|last| *last >= from),
        );
    }
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
    let (rows, cols, target) = if *crs == grid.crs {
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
pub(super) async fn lay_out(
    ctx: &Context,
    template: &DatasetTemplate,
    dataset_id: &DatasetId,
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
pub(super) fn segments(ctx: &Context, layout: &StoreLayout, first: u64) -> Vec<NewSegment> {
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
pub(super) async fn plan_append(
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

pub(super) async fn covered_by_current(
    ctx: &Context,
    dataset_id: &DatasetId,
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
