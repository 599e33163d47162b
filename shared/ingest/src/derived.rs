//! Derived datasets (a managed dataset resampled in time, `DatasetTemplate::derived`): their
//! source is the platform's own stored dataset of the source template for the same extent.
//!
//! - [`locate`] gives the pipeline the source version's periods as fields ([`StoredSource`]
//!   reads them from the stored Zarr, a time chunk at a time); the pipeline aggregates them
//!   into the derived periods as for any template with `aggregate`.
//! - [`available`] is the newest derived period the source covers whole: what a sync of the
//!   derived dataset may reach (it plays the part of the provider's probe).
//! - [`follow`] starts the syncs of the derived datasets of a dataset that just published a
//!   version; the scheduler's `as_available` ticks start them too, so none is missed.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, NaiveDateTime, Utc};
use climate_catalog::{Catalog, Opened, Window};
use climate_domain::grid::Grid;
use climate_domain::{DatasetId, ExtentId, Period, PeriodType, RunId, TemplateId};
use climate_geodata::providers::{SourceSet, Step};
use climate_geodata::raster::{RasterError, RasterSource};

use crate::Context;
use crate::sync::{self, Started, SyncError};

/// Why a derived dataset's source cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source dataset has no version yet (or does not exist).
    #[error(
        "the source dataset '{0}' has no version yet: ingest it first (POST /ingestions with its template)"
    )]
    Missing(String),
    /// Reading the catalog failed.
    #[error("reading the source dataset: {0}")]
    Catalog(#[from] climate_catalog::CatalogError),
    /// Reading the database failed.
    #[error(transparent)]
    Db(#[from] climate_infra::db::DbError),
}

/// The source dataset of a derived template for `extent`.
pub fn source_dataset(source: &TemplateId, extent: &ExtentId) -> DatasetId {
    DatasetId::managed(source, extent)
}

/// Opens the current version of `dataset` (published or not).
async fn open(ctx: &Context, dataset: &DatasetId) -> Result<Opened, SourceError> {
    let db = &ctx.platform.db;
    let missing = || SourceError::Missing(dataset.to_string());
    let ds = db.get_dataset(dataset).await?.ok_or_else(missing)?;
    let n = ds.current_version.ok_or_else(missing)?;
    let v = db.get_version(dataset, n).await?.ok_or_else(missing)?;
    Ok(Catalog::new(&ctx.platform).open_version(ds, v).await?)
}

/// The source periods `start ..= end` (the source's own period type) that the current version
/// of `dataset` holds, as fields.
///
/// # Errors
/// [`SourceError`] when the source has no version or cannot be opened.
pub async fn locate(
    ctx: &Context,
    dataset: &DatasetId,
    start: Period,
    end: Option<Period>,
) -> Result<SourceSet, SourceError> {
    let opened = Arc::new(open(ctx, dataset).await?);
    let kind = opened.cube.period_type;
    let source: Arc<dyn RasterSource> = Arc::new(StoredSource::new(opened.clone(), dataset));
    let steps: BTreeMap<Period, Step> = opened
        .times
        .iter()
        .enumerate()
        .map(|(i, t)| (Period::containing(kind, *t), i))
        .filter(|(p, _)| *p >= start && end.is_none_or(|e| *p <= e))
        .map(|(p, i)| {
            (
                p,
                Step {
                    source: source.clone(),
                    time_index: i,
                },
            )
        })
        .collect();
    Ok(SourceSet { steps })
}

/// The first and the last period of type `target` that `first ..= last` covers whole.
pub fn complete_span(first: Period, last: Period, target: PeriodType) -> Option<(Period, Period)> {
    let a = Period::containing(target, first.start());
    let a = if a.start() == first.start() {
        a
    } else {
        a.next()
    };
    let b = Period::containing(target, last.start());
    let b = if b.end() == last.end() {
        b
    } else {
        b.previous()
    };
    (a <= b).then_some((a, b))
}

/// The derived periods (`target`) that the current version of `dataset` covers whole, first
/// and last; `None` when it covers none or has no version.
///
/// # Errors
/// Database errors.
pub async fn available(
    ctx: &Context,
    dataset: &DatasetId,
    target: PeriodType,
) -> Result<Option<(Period, Period)>, climate_infra::db::DbError> {
    let db = &ctx.platform.db;
    let Some(ds) = db.get_dataset(dataset).await? else {
        return Ok(None);
    };
    let Some(n) = ds.current_version else {
        return Ok(None);
    };
    let Some(v) = db.get_version(dataset, n).await? else {
        return Ok(None);
    };
    let Some(source) = ctx.platform.catalog.get(&ds.template_id) else {
        return Ok(None);
    };
    let kind = source.template.period_type;
    let (Ok(first), Ok(last)) = (
        Period::parse(kind, &v.coverage_start),
        Period::parse(kind, &v.coverage_end),
    ) else {
        return Ok(None);
    };
    Ok(complete_span(first, last, target))
}

/// Starts a sync of every derived dataset of `source` (for its extent) that exists; returns
/// the runs started. A failure to start one is logged, not returned: the scheduler's next
/// tick starts it.
pub async fn follow(ctx: &Context, source: &DatasetId, now: DateTime<Utc>) -> Vec<RunId> {
    let db = &ctx.platform.db;
    let Ok(Some(ds)) = db.get_dataset(source).await else {
        return Vec::new();
    };
    let mut started = Vec::new();
    for l in ctx.platform.catalog.derived_from(&ds.template_id) {
        let id = DatasetId::managed(&l.template.id, &ds.extent_id);
        let Ok(Some(derived)) = db.get_dataset(&id).await else {
            continue;
        };
        if derived.current_version.is_none() {
            continue;
        }
        let result: Result<Option<RunId>, SyncError> = async {
            let (d, derived) = sync::detail(ctx, id.as_str(), None, now).await?;
            Ok(
                match sync::start(ctx, d, &derived, derived.published, None, None, now).await? {
                    Started::Run(_, run) => Some(run.run_id),
                    Started::Nothing(_) | Started::AlreadyStarted(_) => None,
                },
            )
        }
        .await;
        match result {
            Ok(Some(run)) => {
                tracing::info!(dataset.id = %id, run.id = %run, source = %source, "derived dataset follows its source");
                started.push(run);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(dataset.id = %id, error = %e, "derived dataset not synced; the scheduler retries")
            }
        }
    }
    started
}

/// A stored version's fields, as a raster source: each read takes the whole time chunk that
/// holds the period (for the rows and columns asked) and keeps the last [`KEPT_BLOCKS`] for the
/// next periods (the pipeline decodes a few periods at once, which may straddle two chunks).
#[derive(Debug)]
pub struct StoredSource {
    opened: Arc<Opened>,
    label: String,
    handle: tokio::runtime::Handle,
    /// Periods per time chunk of the store.
    chunk: usize,
    /// The blocks last read, newest last.
    blocks: Mutex<Vec<Block>>,
}

/// Time-chunk blocks a [`StoredSource`] keeps.
pub const KEPT_BLOCKS: usize = 2;

#[derive(Debug)]
struct Block {
    t: Range<usize>,
    rows: Range<usize>,
    cols: Range<usize>,
    values: Arc<Vec<f32>>,
}

impl StoredSource {
    /// The source of `opened`, the current version of `dataset`. Must be created on a Tokio
    /// runtime (reads block on it, from the pipeline's blocking pool).
    pub fn new(opened: Arc<Opened>, dataset: &DatasetId) -> Self {
        let label = format!("dataset {dataset} version {}", opened.version.version);
        Self {
            chunk: usize::try_from(opened.cube.chunks[0]).unwrap_or(1).max(1),
            opened,
            label,
            handle: tokio::runtime::Handle::current(),
            blocks: Mutex::new(Vec::new()),
        }
    }
}

impl RasterSource for StoredSource {
    fn describe(&self) -> String {
        self.label.clone()
    }

    fn grid(&self) -> &Grid {
        &self.opened.grid
    }

    fn times(&self) -> &[NaiveDateTime] {
        &self.opened.times
    }

    fn read_window(
        &self,
        t: usize,
        rows: Range<usize>,
        cols: Range<usize>,
    ) -> Result<Vec<f32>, RasterError> {
        let cached = {
            let blocks = self.blocks.lock().unwrap_or_else(PoisonError::into_inner);
            blocks
                .iter()
                .find(|b| b.t.contains(&t) && b.rows == rows && b.cols == cols)
                .map(|b| (b.t.start, b.values.clone()))
        };
        let (start, values) = match cached {
            Some(c) => c,
            None => {
                let n = self.opened.times.len();
                let t0 = t - t % self.chunk;
                let window = Window {
                    t: t0..(t0 + self.chunk).min(n),
                    rows: rows.clone(),
                    cols: cols.clone(),
                    step: 1,
                };
                let values = Arc::new(self.handle.block_on(self.opened.read(&window)).map_err(
                    |e| RasterError {
                        path: self.label.clone(),
                        message: e.to_string(),
                        transient: true,
                    },
                )?);
                let mut blocks = self.blocks.lock().unwrap_or_else(PoisonError::into_inner);
                if blocks.len() == KEPT_BLOCKS {
                    blocks.remove(0);
                }
                blocks.push(Block {
                    t: window.t.clone(),
                    rows: rows.clone(),
                    cols: cols.clone(),
                    values: values.clone(),
                });
                (t0, values)
            }
        };
        let per = rows.len() * cols.len();
        let at = (t - start) * per;
        Ok(values[at..at + per].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> Period {
        Period::parse(PeriodType::Daily, s).expect("a day")
    }

    #[test]
    fn only_whole_target_periods_are_available() {
        let span =
            |a, b, t| complete_span(day(a), day(b), t).map(|(x, y)| (x.canonical(), y.canonical()));
        assert_eq!(
            span("2025-07-01", "2025-07-31", PeriodType::Monthly),
            Some(("2025-07".into(), "2025-07".into()))
        );
        assert_eq!(span("2025-07-02", "2025-07-31", PeriodType::Monthly), None);
        assert_eq!(
            span("2025-07-01", "2025-07-31", PeriodType::Weekly),
            Some(("2025-W28".into(), "2025-W30".into())),
            "30 June and 1 August are missing from the edge weeks"
        );
        assert_eq!(
            span("2024-12-30", "2026-01-04", PeriodType::Yearly),
            Some(("2025".into(), "2025".into()))
        );
    }
}
