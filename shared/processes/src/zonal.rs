//! `zonal-statistics`: statistics of a dataset per feature (district) and period.
//!
//! The features' coverage of the dataset's grid is computed once (after projecting them into
//! the grid's CRS) and reused for every period; the periods are read a bounded block at a
//! time over the one window all features fall in. With `period_type` and `temporal_method` the
//! fields are first aggregated in time, cell by cell, to that DHIS2 period type; incomplete
//! periods are dropped and listed.

use std::ops::Range;

use async_trait::async_trait;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use climate_catalog::{CatalogError, Opened, Window};
use climate_compute::temporal::Grouping;
use climate_compute::{
    Coverage, MultiPolygon, NoValue, Statistic, Summary, TargetPeriodType, TemporalMethod, combine,
    coverage, group,
};
use climate_domain::Period;
use climate_jobs::{JobContext, WorkError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::output::{Format, Row, Table};
use crate::{CheckError, Checked, Env, InputError, Output, Process};

/// The zonal-statistics process.
#[derive(Debug)]
pub struct ZonalStatistics;

/// Most grid values held in memory at once while reading.
const BLOCK_CELLS: usize = 16 << 20;

/// The request as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    dataset_id: String,
    #[serde(default)]
    features: Option<Value>,
    #[serde(default)]
    feature_collection: Option<String>,
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

/// A checked request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The dataset.
    pub dataset_id: String,
    /// The features.
    pub features: Vec<Feature>,
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

/// `2025-01-01` (the whole day) or an RFC 3339 instant, as the start of the interval or the
/// end of it (exclusive).
fn instant(text: &str, end: bool) -> Result<NaiveDateTime, InputError> {
    let text = text.trim();
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let d = if end { d.succ_opt().unwrap_or(d) } else { d };
        return Ok(d.and_time(NaiveTime::MIN));
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| {
            let t = t.naive_utc();
            if end { t + chrono::Duration::nanoseconds(1) } else { t }
        })
        .map_err(|_| {
            bad(
                "datetime",
                format!("'{text}' is not a date (2025-01-31) or an RFC 3339 instant (2025-01-31T00:00:00Z)"),
            )
        })
}

fn features(
    collection: &Value,
    org_unit_property: Option<&str>,
) -> Result<Vec<Feature>, InputError> {
    if collection.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
        return Err(bad("features", "must be a GeoJSON FeatureCollection"));
    }
    let list = collection
        .get("features")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("features", "a FeatureCollection has a `features` array"))?;
    if list.is_empty() {
        return Err(bad("features", "the collection has no features"));
    }
    list.iter()
        .enumerate()
        .map(|(i, f)| {
            let id = match f.get("id") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => format!("feature-{i}"),
            };
            let shape = MultiPolygon::from_geojson(f.get("geometry").unwrap_or(&Value::Null))
                .and_then(|s| s.validate().map(|()| s))
                .map_err(|e| bad("features", format!("feature '{id}': {e}")))?;
            let org_unit = match org_unit_property {
                None => id.clone(),
                Some(p) => f
                    .get("properties")
                    .and_then(|props| props.get(p))
                    .and_then(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .or_else(|| v.as_number().map(ToString::to_string))
                    })
                    .ok_or_else(|| {
                        bad(
                            "org_unit_property",
                            format!("feature '{id}' has no property '{p}'"),
                        )
                    })?,
            };
            Ok(Feature {
                id,
                org_unit,
                shape,
            })
        })
        .collect()
}

/// Reads and checks the inputs (no catalog lookup).
///
/// # Errors
/// [`InputError`] naming the input.
pub fn parse(inputs: &Value) -> Result<Request, InputError> {
    let raw: Raw =
        serde_json::from_value(inputs.clone()).map_err(|e| bad("inputs", e.to_string()))?;
    let collection = match (&raw.features, &raw.feature_collection) {
        (Some(f), None) => f,
        (None, Some(_)) => {
            return Err(bad(
                "feature_collection",
                "stored feature collections are not available on this instance yet: send the features inline as `features`",
            ));
        }
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
    let features = features(collection, raw.org_unit_property.as_deref())?;
    let (from, until) = raw.datetime.split_once('/').ok_or_else(|| {
        bad(
            "datetime",
            "an interval start/end, e.g. 2025-01-01/2025-12-31",
        )
    })?;
    let (from, until) = (instant(from, false)?, instant(until, true)?);
    if until <= from {
        return Err(bad("datetime", "the end is before the start"));
    }
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
    let temporal = match (&raw.period_type, &raw.temporal_method) {
        (None, None) => None,
        (Some(p), Some(m)) => Some((
            p.parse()
                .map_err(|e: climate_compute::temporal::UnknownPeriodType| {
                    bad("period_type", e.to_string())
                })?,
            m.parse()
                .map_err(|e: climate_compute::temporal::UnknownMethod| {
                    bad("temporal_method", e.to_string())
                })?,
        )),
        (Some(_), None) => {
            return Err(bad(
                "temporal_method",
                "required with period_type: mean, sum, min or max",
            ));
        }
        (None, Some(_)) => {
            return Err(bad(
                "period_type",
                "required with temporal_method: daily, weekly, monthly, quarterly or yearly",
            ));
        }
    };
    let format = match raw.format.as_deref().unwrap_or("json") {
        "json" => Format::Json,
        "csv" => Format::Csv,
        "dhis2" => {
            let data_element = raw.data_element.clone().ok_or_else(|| {
                bad(
                    "data_element",
                    "required with format dhis2: the DHIS2 data element's id",
                )
            })?;
            if statistics.len() != 1 {
                return Err(bad(
                    "statistics",
                    "format dhis2 takes exactly one statistic (a data value holds one number)",
                ));
            }
            Format::Dhis2 { data_element }
        }
        other => {
            return Err(bad(
                "format",
                format!("'{other}' is not json, csv or dhis2"),
            ));
        }
    };
    if raw.data_element.is_some() && !matches!(format, Format::Dhis2 { .. }) {
        return Err(bad("data_element", "only used with format dhis2"));
    }
    Ok(Request {
        dataset_id: raw.dataset_id,
        features,
        from,
        until,
        statistics,
        temporal,
        format,
    })
}

/// The indices of `opened`'s periods starting in the request's interval.
fn periods_in(opened: &Opened, r: &Request) -> Range<usize> {
    let start = opened.times.partition_point(|t| *t < r.from);
    let end = opened.times.partition_point(|t| *t < r.until);
    start..end.max(start)
}

fn catalog_error(e: CatalogError) -> CheckError {
    match e {
        CatalogError::UnknownDataset(id) => CheckError::UnknownDataset(format!(
            "no published dataset '{id}'; GET /datasets lists them"
        )),
        other => CheckError::Unavailable(other.to_string()),
    }
}

fn work_error(e: CatalogError) -> WorkError {
    match e {
        CatalogError::UnknownDataset(id) => WorkError::Failed {
            code: "unknown_dataset".into(),
            message: format!("no published dataset '{id}'"),
        },
        other => WorkError::Transient(other.to_string()),
    }
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
fn union(coverages: &[Coverage]) -> Option<(Range<usize>, Range<usize>)> {
    coverages
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| (c.rows.clone(), c.cols.clone()))
        .reduce(|(r, c), (r2, c2)| {
            (
                r.start.min(r2.start)..r.end.max(r2.end),
                c.start.min(c2.start)..c.end.max(c2.end),
            )
        })
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
        let period_types: Vec<&str> = TargetPeriodType::ALL.iter().map(|p| p.as_str()).collect();
        json!({
            "inputs": {
                "dataset_id": {"title": "Dataset", "description": "A published dataset (GET /datasets).", "schema": {"type": "string"}},
                "features": {"title": "Areas", "description": "A GeoJSON FeatureCollection (WGS84) of Polygon and MultiPolygon features; each feature's `id` names its row.", "minOccurs": 0, "schema": {"type": "object", "contentMediaType": "application/geo+json"}},
                "feature_collection": {"title": "Stored areas", "description": "The id of a stored feature collection (instead of `features`).", "minOccurs": 0, "schema": {"type": "string"}},
                "datetime": {"title": "Interval", "description": "start/end, dates or RFC 3339 instants, both included: the periods starting in it.", "schema": {"type": "string", "example": "2025-01-01/2025-12-31"}},
                "statistics": {"title": "Statistics", "schema": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": stat_names}}},
                "period_type": {"title": "Aggregate to", "description": "A DHIS2 period type to aggregate to first (with temporal_method); incomplete periods are dropped and listed.", "minOccurs": 0, "schema": {"type": "string", "enum": period_types}},
                "temporal_method": {"title": "Aggregation", "minOccurs": 0, "schema": {"type": "string", "enum": ["mean", "sum", "min", "max"]}},
                "format": {"title": "Format", "minOccurs": 0, "schema": {"type": "string", "enum": ["json", "csv", "dhis2"], "default": "json"}},
                "data_element": {"title": "DHIS2 data element", "description": "Required with format dhis2.", "minOccurs": 0, "schema": {"type": "string"}},
                "org_unit_property": {"title": "Organisation unit property", "description": "The feature property holding the DHIS2 organisation unit (default: the feature's id).", "minOccurs": 0, "schema": {"type": "string"}}
            },
            "outputs": {
                "result": {
                    "title": "Statistics",
                    "description": "json: {dataset_id, period_type, rows: [{feature_id, period, <statistic>: number|null}], dropped_periods, warnings}; csv: the same rows; dhis2: a dataValueSet.",
                    "schema": {"oneOf": [
                        {"type": "object", "contentMediaType": "application/json"},
                        {"type": "string", "contentMediaType": "text/csv"}
                    ]}
                }
            }
        })
    }

    async fn check(&self, env: &Env, inputs: &Value) -> Result<Checked, CheckError> {
        let r = parse(inputs)?;
        let opened = env
            .catalog
            .open(&r.dataset_id)
            .await
            .map_err(catalog_error)?;
        let periods = periods_in(&opened, &r);
        if periods.is_empty() {
            let (first, last) = opened.cube.time;
            return Err(bad(
                "datetime",
                format!(
                    "no period of '{}' starts in it: the dataset covers {first} to {last}",
                    r.dataset_id
                ),
            )
            .into());
        }
        if let Some((target, _)) = r.temporal
            && !target.nests(opened.cube.period_type)
        {
            return Err(bad(
                "period_type",
                format!(
                    "{} periods of '{}' do not nest in {target} periods",
                    opened.cube.period_type.as_str(),
                    r.dataset_id
                ),
            )
            .into());
        }
        let shapes = project(&r.features, &opened).map_err(|m| bad("features", m))?;
        let coverages: Vec<Coverage> = shapes.iter().map(|s| coverage(s, &opened.grid)).collect();
        let cells = union(&coverages).map_or(0, |(rows, cols)| rows.len() * cols.len());
        Ok(Checked {
            cells: (cells * periods.len()) as u64,
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
        let opened = env.catalog.open(&r.dataset_id).await.map_err(work_error)?;
        let shapes = project(&r.features, &opened).map_err(|m| failed("invalid_inputs", m))?;
        let coverages: Vec<Coverage> = shapes.iter().map(|s| coverage(s, &opened.grid)).collect();
        let periods = periods_in(&opened, &r);
        let kind = opened.cube.period_type;
        let all: Vec<Period> = opened.times[periods.clone()]
            .iter()
            .map(|t| Period::containing(kind, *t))
            .collect();
        // The blocks of periods read together and what each yields: one period each, or one
        // aggregated period per complete group.
        let (blocks, period_type, dropped): (Vec<(Range<usize>, String)>, &str, Vec<String>) =
            match r.temporal {
                None => (
                    (0..all.len())
                        .map(|i| (i..i + 1, all[i].canonical()))
                        .collect(),
                    kind.as_str(),
                    Vec::new(),
                ),
                Some((target, _)) => {
                    let Grouping { complete, dropped } =
                        group(&all, target).map_err(|e| failed("invalid_inputs", e.to_string()))?;
                    let blocks = complete
                        .into_iter()
                        .map(|(p, members)| {
                            let first = members.first().copied().unwrap_or(0);
                            (first..first + members.len(), p.iso())
                        })
                        .collect();
                    (
                        blocks,
                        target.as_str(),
                        dropped.iter().map(|p| p.iso()).collect(),
                    )
                }
            };
        let dhis2_labels: Vec<String> = match r.temporal {
            None => blocks
                .iter()
                .map(|(b, _)| all[b.start].dhis2_code())
                .collect(),
            Some((target, _)) => blocks
                .iter()
                .map(|(b, _)| target.containing(all[b.start].start()).dhis2())
                .collect(),
        };
        let mut table = Table {
            dataset_id: r.dataset_id.clone(),
            period_type: period_type.to_owned(),
            statistics: r.statistics.clone(),
            rows: Vec::new(),
            dropped_periods: dropped,
            warnings: Vec::new(),
        };
        let Some((rows, cols)) = union(&coverages) else {
            table.warnings.push(format!(
                "no feature covers a cell of the grid of '{}'",
                r.dataset_id
            ));
            for f in &r.features {
                for (k, (_, label)) in blocks.iter().enumerate() {
                    table
                        .rows
                        .push(Row::empty(f, label, &dhis2_labels[k], r.statistics.len()));
                }
            }
            return table.render(&r.format).map_err(|m| failed("internal", m));
        };
        let width = cols.len();
        let per_field = rows.len() * width;
        let mut no_value = vec![None::<NoValue>; r.features.len()];
        // The periods last read (indices into `all`) and their fields.
        let mut read: (Range<usize>, Vec<f32>) = (0..0, Vec::new());
        for (k, (block, label)) in blocks.iter().enumerate() {
            if ctx.stopped().is_cancelled() {
                return Err(WorkError::Transient("stopped".into()));
            }
            ctx.report(
                k as u64,
                blocks.len() as u64,
                format!("{label} ({} of {})", k + 1, blocks.len()),
            );
            let combined;
            let field: &[f32] = match r.temporal {
                // One period a block: read as many periods at once as fit, keep them for the
                // next blocks (a time chunk is decompressed once, not once per period).
                None => {
                    let i = block.start;
                    if !read.0.contains(&i) {
                        let end = (i + (BLOCK_CELLS / per_field.max(1)).max(1)).min(all.len());
                        let t = periods.start + i..periods.start + end;
                        let w = Window {
                            t,
                            rows: rows.clone(),
                            cols: cols.clone(),
                            step: 1,
                        };
                        read = (i..end, opened.read(&w).await.map_err(work_error)?);
                    }
                    let at = (i - read.0.start) * per_field;
                    &read.1[at..at + per_field]
                }
                Some((_, method)) => {
                    combined = read_block(
                        &opened,
                        periods.start,
                        block,
                        &rows,
                        &cols,
                        per_field,
                        method,
                    )
                    .await
                    .map_err(work_error)?;
                    &combined
                }
            };
            for (i, f) in r.features.iter().enumerate() {
                let s = Summary::of(field, width, (rows.start, cols.start), &coverages[i]);
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
                    period: label.clone(),
                    dhis2_period: dhis2_labels[k].clone(),
                    values: r.statistics.iter().map(|st| s.value(*st)).collect(),
                });
            }
        }
        for (f, why) in r.features.iter().zip(no_value) {
            if let Some(why) = why {
                table.warnings.push(format!(
                    "feature '{}' has no value in some periods: {}",
                    f.id,
                    why.reason()
                ));
            }
        }
        ctx.report(blocks.len() as u64, blocks.len() as u64, "done");
        table.render(&r.format).map_err(|m| failed("internal", m))
    }
}

/// The field of one group of periods combined by `method` over the window, read at most
/// [`BLOCK_CELLS`] values at a time.
async fn read_block(
    opened: &Opened,
    offset: usize,
    block: &Range<usize>,
    rows: &Range<usize>,
    cols: &Range<usize>,
    per_field: usize,
    method: TemporalMethod,
) -> Result<Vec<f32>, CatalogError> {
    let t = offset + block.start..offset + block.end;
    // Combine in sub-blocks: partial results of sum/min/max combine again; the mean is the
    // sum over the number of fields with data, so sum values and counts separately.
    let chunk = (BLOCK_CELLS / per_field.max(1)).max(1);
    let mut sums: Vec<f32> = Vec::new();
    let mut counts: Vec<u32> = vec![0; per_field];
    let mut start = t.start;
    while start < t.end {
        let end = (start + chunk).min(t.end);
        let data = opened
            .read(&Window {
                t: start..end,
                rows: rows.clone(),
                cols: cols.clone(),
                step: 1,
            })
            .await?;
        let fields: Vec<&[f32]> = data.chunks(per_field).collect();
        let inner = if method == TemporalMethod::Mean {
            TemporalMethod::Sum
        } else {
            method
        };
        let part = combine(&fields, inner);
        for f in &fields {
            for (c, v) in counts.iter_mut().zip(f.iter()) {
                if !v.is_nan() {
                    *c += 1;
                }
            }
        }
        sums = if sums.is_empty() {
            part
        } else {
            combine(&[&sums, &part], inner)
        };
        start = end;
    }
    if method == TemporalMethod::Mean {
        for (v, n) in sums.iter_mut().zip(&counts) {
            if *n > 0 {
                *v /= *n as f32;
            }
        }
    }
    Ok(sums)
}
