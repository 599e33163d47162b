//! `zonal-statistics`: statistics of a dataset per feature (district) and period.
//!
//! The features' coverage of the dataset's grid is computed once (after projecting them into
//! the grid's CRS) and reused for every period; the periods are read a bounded block at a
//! time over the one window all features fall in. With `period_type` and `temporal_method` the
//! fields are first aggregated in time, cell by cell, to that DHIS2 period type; incomplete
//! periods are dropped and listed.

use async_trait::async_trait;
use chrono::NaiveDateTime;
use climate_catalog::Opened;
use climate_compute::{
    Coverage, MultiPolygon, NoValue, Statistic, Summary, TargetPeriodType, TemporalMethod, coverage,
};
use climate_jobs::{JobContext, WorkError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::features::{self, Area, LoadError};
use crate::output::{Format, Row, Table};
use crate::series::{
    Cells, Fields, Plan, format, interval, open_for, reading_interface, span, temporal, work_error,
};
use crate::{CheckError, Checked, Env, InputError, Output, Process};

/// The zonal-statistics process.
#[derive(Debug)]
pub struct ZonalStatistics;

/// The request as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    dataset_id: String,
    #[serde(default)]
    features: Option<Value>,
    #[serde(default)]
    feature_collection: Option<String>,
    #[serde(default)]
    feature_collection_version: Option<u32>,
    datetime: String,
    statistics: Vec<String>,
    #[serde(default)]
    period_type: Option<String>,
    #[serde(default)]
    temporal_method: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    data_element: Option<String>,
    #[serde(default)]
    org_unit_property: Option<String>,
}

/// A feature of the request.
#[derive(Debug, Clone)]
pub struct Feature {
    /// Its id (the GeoJSON feature's `id`, else its position).
    pub id: String,
    /// Its DHIS2 organisation unit (the `org_unit_property`, else its id).
    pub org_unit: String,
    /// Its shape, WGS84.
    pub shape: MultiPolygon,
}

/// Where a request's areas come from.
#[derive(Debug, Clone)]
pub enum Areas {
    /// Sent with it (`features`).
    Inline(Vec<Area>),
    /// A stored collection (`feature_collection`), at a version or the latest.
    Stored {
        /// Its id.
        id: String,
        /// The version asked (`feature_collection_version`).
        version: Option<u32>,
    },
}

/// A checked request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The dataset.
    pub dataset_id: String,
    /// The areas.
    pub areas: Areas,
    /// The feature property holding the DHIS2 organisation unit (else the feature id).
    pub org_unit_property: Option<String>,
    /// Periods starting at or after this instant…
    pub from: NaiveDateTime,
    /// …and before this one.
    pub until: NaiveDateTime,
    /// The statistics, in the order asked.
    pub statistics: Vec<Statistic>,
    /// Aggregate in time first.
    pub temporal: Option<(TargetPeriodType, TemporalMethod)>,
    /// The output format.
    pub format: Format,
}

fn bad(input: &str, message: impl Into<String>) -> InputError {
    InputError::new(input, message)
}

/// The features of `areas`, with their organisation units.
fn with_org_units(
    areas: Vec<Area>,
    org_unit_property: Option<&str>,
) -> Result<Vec<Feature>, InputError> {
    areas
        .into_iter()
        .map(|a| {
            let org_unit = match org_unit_property {
                None => a.id.clone(),
                Some(p) => a.property(p).ok_or_else(|| {
                    bad(
                        "org_unit_property",
                        format!("feature '{}' has no property '{p}'", a.id),
                    )
                })?,
            };
            Ok(Feature {
                id: a.id,
                org_unit,
                shape: a.shape,
            })
        })
        .collect()
}

/// The request's features: inline, or read from the stored collection (the version asked,
/// else the latest), with the version read.
///
/// # Errors
/// [`CheckError`]: an unknown collection or version (404), bad features (400), a database
/// that cannot be read now (503).
pub async fn resolve(env: &Env, r: &Request) -> Result<(Vec<Feature>, Option<u32>), CheckError> {
    match &r.areas {
        Areas::Inline(areas) => Ok((
            with_org_units(areas.clone(), r.org_unit_property.as_deref())?,
            None,
        )),
        Areas::Stored { id, version } => {
            let (record, areas) = features::load(env.db.as_ref(), id, *version)
                .await
                .map_err(|e| match e {
                    LoadError::Unknown(m) => CheckError::UnknownFeatures(m),
                    other => CheckError::Unavailable(other.to_string()),
                })?;
            Ok((
                with_org_units(areas, r.org_unit_property.as_deref())?,
                Some(record.version),
            ))
        }
    }
}

/// Reads and checks the inputs (no catalog lookup).
///
/// # Errors
/// [`InputError`] naming the input.
pub fn parse(inputs: &Value) -> Result<Request, InputError> {
    let raw: Raw =
        serde_json::from_value(inputs.clone()).map_err(|e| bad("inputs", e.to_string()))?;
    let areas = match (&raw.features, &raw.feature_collection) {
        (Some(f), None) => Areas::Inline(features::areas(f, "features")?),
        (None, Some(id)) => Areas::Stored {
            id: id.clone(),
            version: raw.feature_collection_version,
        },
        (Some(_), Some(_)) => {
            return Err(bad(
                "features",
                "give either `features` or `feature_collection`, not both",
            ));
        }
        (None, None) => {
            return Err(bad(
                "features",
                "required: a GeoJSON FeatureCollection of the areas",
            ));
        }
    };
    if raw.feature_collection_version.is_some() && raw.feature_collection.is_none() {
        return Err(bad(
            "feature_collection_version",
            "only used with feature_collection",
        ));
    }
    let (from, until) = interval(&raw.datetime)?;
    if raw.statistics.is_empty() {
        return Err(bad(
            "statistics",
            "name at least one: mean, sum, count, min, max, stdev, median, majority",
        ));
    }
    let statistics = raw
        .statistics
        .iter()
        .map(|s| {
            s.parse::<Statistic>()
                .map_err(|e| bad("statistics", e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let temporal = temporal(raw.period_type.as_deref(), raw.temporal_method.as_deref())?;
    let format = format(raw.format.as_deref(), raw.data_element.as_deref())?;
    if matches!(format, Format::Dhis2 { .. }) && statistics.len() != 1 {
        return Err(bad(
            "statistics",
            "format dhis2 takes exactly one statistic (a data value holds one number)",
        ));
    }
    Ok(Request {
        dataset_id: raw.dataset_id,
        areas,
        org_unit_property: raw.org_unit_property,
        from,
        until,
        statistics,
        temporal,
        format,
    })
}

/// The features' shapes in the grid's CRS.
fn project(features: &[Feature], opened: &Opened) -> Result<Vec<MultiPolygon>, String> {
    if opened.grid.crs.is_wgs84() {
        return Ok(features.iter().map(|f| f.shape.clone()).collect());
    }
    features
        .iter()
        .map(|f| {
            let mut points: Vec<(f64, f64)> = f
                .shape
                .rings()
                .flat_map(|(r, _)| r.points().iter().map(|p| (p[0], p[1])))
                .collect();
            climate_geodata::reproject::from_wgs84(&opened.grid.crs, &mut points)
                .map_err(|e| e.to_string())?;
            let mut projected = points.into_iter();
            f.shape
                .map(|_| {
                    let (x, y) = projected.next().unwrap_or((f64::NAN, f64::NAN));
                    [x, y]
                })
                .map_err(|e| {
                    format!(
                        "feature '{}' cannot be projected into {}: {e}",
                        f.id, opened.grid.crs
                    )
                })
        })
        .collect()
}

/// The smallest window holding every coverage (rows, columns), or `None` when none covers a
/// cell.
fn union(coverages: &[Coverage]) -> Option<Cells> {
    span(
        coverages
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| (c.rows.clone(), c.cols.clone())),
    )
}

#[async_trait]
impl Process for ZonalStatistics {
    fn id(&self) -> &'static str {
        "zonal-statistics"
    }

    fn title(&self) -> &'static str {
        "Zonal statistics"
    }

    fn summary(&self) -> &'static str {
        "Statistics of a dataset per area (district) and period, each grid cell weighted by the exact fraction the area covers (the exactextract method: areas smaller than a cell are never empty), optionally aggregated in time to a DHIS2 period type first; as JSON rows, CSV or a DHIS2 dataValueSet."
    }

    fn interface(&self) -> Value {
        let stat_names: Vec<&str> = Statistic::ALL.iter().map(|s| s.as_str()).collect();
        reading_interface(
            json!({
                "dataset_id": {"title": "Dataset", "description": "A published dataset (GET /datasets).", "schema": {"type": "string"}},
                "features": {"title": "Areas", "description": "A GeoJSON FeatureCollection (WGS84) of Polygon and MultiPolygon features; each feature's `id` names its row.", "minOccurs": 0, "schema": {"type": "object", "contentMediaType": "application/geo+json"}},
                "feature_collection": {"title": "Stored areas", "description": "The id of a stored feature collection (POST /features; instead of `features`). The job records the version it read.", "minOccurs": 0, "schema": {"type": "string"}},
                "feature_collection_version": {"title": "Stored areas' version", "description": "The version of `feature_collection` to read (default: the latest).", "minOccurs": 0, "schema": {"type": "integer", "minimum": 1}},
                "statistics": {"title": "Statistics", "schema": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": stat_names}}},
            }),
            "Statistics",
            "<statistic>: number|null",
        )
    }

    async fn check(&self, env: &Env, inputs: &Value) -> Result<Checked, CheckError> {
        let r = parse(inputs)?;
        let (features, version) = resolve(env, &r).await?;
        let (opened, periods) = open_for(env, &r.dataset_id, r.from, r.until, r.temporal).await?;
        let shapes = project(&features, &opened).map_err(|m| bad("features", m))?;
        let coverages: Vec<Coverage> = shapes.iter().map(|s| coverage(s, &opened.grid)).collect();
        let cells = union(&coverages).map_or(0, |(rows, cols)| rows.len() * cols.len());
        let mut pinned = inputs.clone();
        if let (Some(v), Some(o)) = (version, pinned.as_object_mut()) {
            o.insert("feature_collection_version".into(), v.into());
        }
        Ok(Checked {
            cells: (cells * periods.len()) as u64,
            inputs: pinned,
        })
    }

    async fn execute(
        &self,
        env: &Env,
        ctx: &JobContext,
        inputs: &Value,
    ) -> Result<Output, WorkError> {
        let failed = |code: &str, message: String| WorkError::Failed {
            code: code.to_owned(),
            message,
        };
        let r = parse(inputs).map_err(|e| failed("invalid_inputs", e.to_string()))?;
        let (features, _) = resolve(env, &r).await.map_err(|e| match e {
            CheckError::Unavailable(m) => WorkError::Transient(m),
            other => failed("invalid_inputs", other.to_string()),
        })?;
        let opened = env.catalog.open(&r.dataset_id).await.map_err(work_error)?;
        let shapes = project(&features, &opened).map_err(|m| failed("invalid_inputs", m))?;
        let coverages: Vec<Coverage> = shapes.iter().map(|s| coverage(s, &opened.grid)).collect();
        let plan = Plan::new(&opened, r.from, r.until, r.temporal)
            .map_err(|m| failed("invalid_inputs", m))?;
        let mut table = Table {
            dataset_id: r.dataset_id.clone(),
            period_type: plan.period_type.clone(),
            columns: r.statistics.iter().map(|s| s.as_str().to_owned()).collect(),
            rows: Vec::new(),
            dropped_periods: plan.dropped.clone(),
            warnings: Vec::new(),
        };
        let Some((rows, cols)) = union(&coverages) else {
            table.warnings.push(format!(
                "no feature covers a cell of the grid of '{}'",
                r.dataset_id
            ));
            for f in &features {
                for step in &plan.steps {
                    table.rows.push(Row::empty(f, step, r.statistics.len()));
                }
            }
            return table.render(&r.format).map_err(|m| failed("internal", m));
        };
        let width = cols.len();
        let origin = (rows.start, cols.start);
        let mut no_value = vec![None::<NoValue>; features.len()];
        let mut fields = Fields::new(&opened, &plan, rows, cols);
        let steps = plan.steps.len();
        for (k, step) in plan.steps.iter().enumerate() {
            if ctx.stopped().is_cancelled() {
                return Err(WorkError::Transient("stopped".into()));
            }
            ctx.report(
                k as u64,
                steps as u64,
                format!("{} ({} of {steps})", step.iso, k + 1),
            );
            let field = fields.field(k).await.map_err(work_error)?;
            for (i, f) in features.iter().enumerate() {
                let s = Summary::of(field, width, origin, &coverages[i]);
                if s.is_empty() {
                    no_value[i] = Some(if coverages[i].is_empty() {
                        NoValue::OutsideGrid
                    } else {
                        NoValue::NoData
                    });
                }
                table.rows.push(Row {
                    feature_id: f.id.clone(),
                    org_unit: f.org_unit.clone(),
                    period: step.iso.clone(),
                    dhis2_period: step.dhis2.clone(),
                    values: r.statistics.iter().map(|st| s.value(*st)).collect(),
                });
            }
        }
        for (f, why) in features.iter().zip(no_value) {
            if let Some(why) = why {
                table.warnings.push(format!(
                    "feature '{}' has no value in some periods: {}",
                    f.id,
                    why.reason()
                ));
            }
        }
        ctx.report(steps as u64, steps as u64, "done");
        table.render(&r.format).map_err(|m| failed("internal", m))
    }
}
