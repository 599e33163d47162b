//! `point-timeseries`: a dataset's values at points (health facilities, sentinel sites) over a
//! time interval: the value of the grid cell holding each point, per period, optionally
//! aggregated in time to a DHIS2 period type first (incomplete periods dropped and listed).

use async_trait::async_trait;
use climate_catalog::{Opened, nearest};
use climate_compute::{TargetPeriodType, TemporalMethod};
use climate_jobs::{JobContext, WorkError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::output::{Format, Row, Table};
use crate::series::{
    Cells, Fields, Plan, format, interval, open_for, reading_interface, span, temporal, work_error,
};
use crate::{CheckError, Checked, Env, InputError, Output, Process};

/// The point-timeseries process.
#[derive(Debug)]
pub struct PointTimeseries;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    dataset_id: String,
    #[serde(default)]
    points: Option<Value>,
    #[serde(default)]
    location: Option<[f64; 2]>,
    datetime: String,
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

/// A point of the request.
#[derive(Debug, Clone, PartialEq)]
struct Site {
    id: String,
    org_unit: String,
    lon: f64,
    lat: f64,
}

#[derive(Debug)]
struct Request {
    dataset_id: String,
    sites: Vec<Site>,
    from: chrono::NaiveDateTime,
    until: chrono::NaiveDateTime,
    temporal: Option<(TargetPeriodType, TemporalMethod)>,
    format: Format,
}

fn bad(input: &str, message: impl Into<String>) -> InputError {
    InputError::new(input, message)
}

fn position(v: &Value, named: &str) -> Result<(f64, f64), InputError> {
    let c = v
        .as_array()
        .filter(|c| c.len() >= 2)
        .and_then(|c| Some((c[0].as_f64()?, c[1].as_f64()?)))
        .ok_or_else(|| bad("points", format!("{named}: coordinates are [lon, lat]")))?;
    if !(-180.0..=180.0).contains(&c.0) || !(-90.0..=90.0).contains(&c.1) {
        return Err(bad(
            "points",
            format!(
                "{named}: [{}, {}] is not a WGS84 longitude and latitude",
                c.0, c.1
            ),
        ));
    }
    Ok(c)
}

fn sites(raw: &Raw) -> Result<Vec<Site>, InputError> {
    let collection = match (&raw.points, raw.location) {
        (None, Some([lon, lat])) => {
            let (lon, lat) =
                position(&json!([lon, lat]), "location").map_err(|e| bad("location", e.message))?;
            return Ok(vec![Site {
                id: "location".into(),
                org_unit: "location".into(),
                lon,
                lat,
            }]);
        }
        (Some(p), None) => p,
        (Some(_), Some(_)) => {
            return Err(bad(
                "points",
                "give either `points` or `location`, not both",
            ));
        }
        (None, None) => {
            return Err(bad(
                "points",
                "required: a GeoJSON FeatureCollection of Point features (or `location`: [lon, lat])",
            ));
        }
    };
    crate::features::members(collection, "points")?
        .into_iter()
        .map(|m| {
            let (id, named) = (m.id(), m.named());
            let g = m.feature.get("geometry").unwrap_or(&Value::Null);
            if g.get("type").and_then(Value::as_str) != Some("Point") {
                return Err(bad(
                    "points",
                    format!("{named}: the geometry must be a Point"),
                ));
            }
            let (lon, lat) = position(g.get("coordinates").unwrap_or(&Value::Null), &named)?;
            let org_unit = match raw.org_unit_property.as_deref() {
                None => id.clone(),
                Some(p) => m.property(p).ok_or_else(|| {
                    bad(
                        "org_unit_property",
                        format!("{named} has no property '{p}'"),
                    )
                })?,
            };
            Ok(Site {
                id,
                org_unit,
                lon,
                lat,
            })
        })
        .collect()
}

fn parse(inputs: &Value) -> Result<Request, InputError> {
    let raw: Raw =
        serde_json::from_value(inputs.clone()).map_err(|e| bad("inputs", e.to_string()))?;
    let sites = sites(&raw)?;
    let (from, until) = interval(&raw.datetime)?;
    Ok(Request {
        dataset_id: raw.dataset_id.clone(),
        sites,
        from,
        until,
        temporal: temporal(raw.period_type.as_deref(), raw.temporal_method.as_deref())?,
        format: format(raw.format.as_deref(), raw.data_element.as_deref())?,
    })
}

/// Each site's cell (row, column), `None` outside the grid.
fn cells(sites: &[Site], opened: &Opened) -> Result<Vec<Option<(usize, usize)>>, String> {
    let mut xy: Vec<(f64, f64)> = sites.iter().map(|s| (s.lon, s.lat)).collect();
    if !opened.grid.crs.is_wgs84() {
        climate_geodata::reproject::from_wgs84(&opened.grid.crs, &mut xy).map_err(|e| {
            format!(
                "the points cannot be projected into {}: {e}",
                opened.grid.crs
            )
        })?;
    }
    Ok(xy
        .into_iter()
        .map(|(x, y)| Some((nearest(&opened.grid.y, y)?, nearest(&opened.grid.x, x)?)))
        .collect())
}

/// The smallest window holding every cell, or `None` when no site is on the grid.
fn window(cells: &[Option<(usize, usize)>]) -> Option<Cells> {
    span(cells.iter().flatten().map(|&(r, c)| (r..r + 1, c..c + 1)))
}

#[async_trait]
impl Process for PointTimeseries {
    fn id(&self) -> &'static str {
        "point-timeseries"
    }

    fn title(&self) -> &'static str {
        "Point time series"
    }

    fn summary(&self) -> &'static str {
        "A dataset's values at points (health facilities, sentinel sites): the value of the grid cell holding each point per period, optionally aggregated in time to a DHIS2 period type first; as JSON rows, CSV or a DHIS2 dataValueSet."
    }

    fn interface(&self) -> Value {
        reading_interface(
            json!({
                "dataset_id": {"title": "Dataset", "description": "A published dataset (GET /datasets).", "schema": {"type": "string"}},
                "points": {"title": "Points", "description": "A GeoJSON FeatureCollection (WGS84) of Point features; each feature's `id` names its rows.", "minOccurs": 0, "schema": {"type": "object", "contentMediaType": "application/geo+json"}},
                "location": {"title": "Location", "description": "One point, [lon, lat] (instead of `points`); its rows are named `location`.", "minOccurs": 0, "schema": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}},
            }),
            "Series",
            "value: number|null",
        )
    }

    async fn check(&self, env: &Env, inputs: &Value) -> Result<Checked, CheckError> {
        let r = parse(inputs)?;
        let (opened, periods) = open_for(env, &r.dataset_id, r.from, r.until, r.temporal).await?;
        let cells = cells(&r.sites, &opened).map_err(|m| bad("points", m))?;
        if cells.iter().all(Option::is_none) {
            let [w, s, e, n] = opened.cube.wgs84_bbox();
            return Err(bad(
                "points",
                format!(
                    "no point is on the grid of '{}', which covers lon {w}..{e}, lat {s}..{n}",
                    r.dataset_id
                ),
            )
            .into());
        }
        let read = window(&cells).map_or(0, |(rows, cols)| rows.len() * cols.len());
        Ok(Checked {
            cells: (read * periods.len()) as u64,
            inputs: inputs.clone(),
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
        let cells = cells(&r.sites, &opened).map_err(|m| failed("invalid_inputs", m))?;
        let plan = Plan::new(&opened, r.from, r.until, r.temporal)
            .map_err(|m| failed("invalid_inputs", m))?;
        let mut table = Table {
            dataset_id: r.dataset_id.clone(),
            period_type: plan.period_type.clone(),
            columns: vec!["value".into()],
            rows: Vec::new(),
            dropped_periods: plan.dropped.clone(),
            warnings: Vec::new(),
        };
        for (s, c) in r.sites.iter().zip(&cells) {
            if c.is_none() {
                table.warnings.push(format!(
                    "point '{}' ({}, {}) is outside the grid of '{}': its values are null",
                    s.id, s.lon, s.lat, r.dataset_id
                ));
            }
        }
        let Some((rows, cols)) = window(&cells) else {
            return Err(failed(
                "invalid_inputs",
                format!("no point is on the grid of '{}'", r.dataset_id),
            ));
        };
        let (r0, c0, width) = (rows.start, cols.start, cols.len());
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
            for (s, c) in r.sites.iter().zip(&cells) {
                let value = c
                    .map(|(row, col)| f64::from(field[(row - r0) * width + (col - c0)]))
                    .filter(|v| !v.is_nan());
                table.rows.push(Row {
                    feature_id: s.id.clone(),
                    org_unit: s.org_unit.clone(),
                    period: step.iso.clone(),
                    dhis2_period: step.dhis2.clone(),
                    values: vec![value],
                });
            }
        }
        ctx.report(steps as u64, steps as u64, "done");
        table.render(&r.format).map_err(|m| failed("internal", m))
    }
}
