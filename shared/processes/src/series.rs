//! What the reading processes share: the inputs `datetime`, `period_type` +
//! `temporal_method` and `format`; the periods a request yields (the dataset's own, or
//! complete groups of them aggregated in time to a DHIS2 period type, with the incomplete
//! ones dropped and listed) and a reader that gives each yielded period's field over one
//! window, reading a bounded block of periods at a time.

use std::ops::Range;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use climate_catalog::{CatalogError, Opened, Window};
use climate_compute::temporal::Grouping;
use climate_compute::{TargetPeriodType, TemporalMethod, combine, group};
use climate_domain::Period;

use crate::InputError;
use crate::output::Format;

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

/// The input `datetime`, `start/end` with both ends included, as `[from, until)`.
///
/// # Errors
/// [`InputError`] about `datetime`.
pub fn interval(text: &str) -> Result<(NaiveDateTime, NaiveDateTime), InputError> {
    let (from, until) = text.split_once('/').ok_or_else(|| {
        bad(
            "datetime",
            "an interval start/end, e.g. 2025-01-01/2025-12-31",
        )
    })?;
    let (from, until) = (instant(from, false)?, instant(until, true)?);
    if until <= from {
        return Err(bad("datetime", "the end is before the start"));
    }
    Ok((from, until))
}

/// The inputs `period_type` and `temporal_method`: both or neither.
///
/// # Errors
/// [`InputError`] naming the unknown or missing one.
pub fn temporal(
    period_type: Option<&str>,
    method: Option<&str>,
) -> Result<Option<(TargetPeriodType, TemporalMethod)>, InputError> {
    match (period_type, method) {
        (None, None) => Ok(None),
        (Some(p), Some(m)) => Ok(Some((
            p.parse()
                .map_err(|e: climate_compute::temporal::UnknownPeriodType| {
                    bad("period_type", e.to_string())
                })?,
            m.parse()
                .map_err(|e: climate_compute::temporal::UnknownMethod| {
                    bad("temporal_method", e.to_string())
                })?,
        ))),
        (Some(_), None) => Err(bad(
            "temporal_method",
            "required with period_type: mean, sum, min or max",
        )),
        (None, Some(_)) => Err(bad(
            "period_type",
            "required with temporal_method: daily, weekly, monthly, quarterly or yearly",
        )),
    }
}

/// The inputs `format` (default `json`) and `data_element` (with `dhis2` only).
///
/// # Errors
/// [`InputError`] naming the input.
pub fn format(format: Option<&str>, data_element: Option<&str>) -> Result<Format, InputError> {
    let format = match format.unwrap_or("json") {
        "json" => Format::Json,
        "csv" => Format::Csv,
        "dhis2" => Format::Dhis2 {
            data_element: data_element
                .ok_or_else(|| {
                    bad(
                        "data_element",
                        "required with format dhis2: the DHIS2 data element's id",
                    )
                })?
                .to_owned(),
        },
        other => {
            return Err(bad(
                "format",
                format!("'{other}' is not json, csv or dhis2"),
            ));
        }
    };
    if data_element.is_some() && !matches!(format, Format::Dhis2 { .. }) {
        return Err(bad("data_element", "only used with format dhis2"));
    }
    Ok(format)
}

/// Most grid values held in memory at once while reading.
pub const BLOCK_CELLS: usize = 16 << 20;

/// One period of the output: the dataset periods it is made of (indices into
/// [`Plan::periods`]) and its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The source periods, as indices from the start of [`Plan::periods`].
    pub members: Range<usize>,
    /// Its ISO label (`2025-07-03`, `2025-W27`, `2025-07`, `2025-Q3`, `2025`).
    pub iso: String,
    /// Its DHIS2 period identifier (`20250703`, `2025W27`, `202507`, `2025Q3`, `2025`).
    pub dhis2: String,
}

/// The output periods of a request.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The dataset's periods starting in the interval (indices into `Opened::times`).
    pub periods: Range<usize>,
    /// The output periods, in order.
    pub steps: Vec<Step>,
    /// The period type of the output (`daily`, … or the dataset's own).
    pub period_type: String,
    /// Output periods left out because some of their source periods are missing.
    pub dropped: Vec<String>,
    /// How the members of a step are combined (`None`: one member a step).
    pub method: Option<TemporalMethod>,
}

/// The indices of `opened`'s periods starting in `[from, until)`.
pub fn periods_in(opened: &Opened, from: NaiveDateTime, until: NaiveDateTime) -> Range<usize> {
    let start = opened.times.partition_point(|t| *t < from);
    let end = opened.times.partition_point(|t| *t < until);
    start..end.max(start)
}

impl Plan {
    /// The output periods of `opened` in `[from, until)`, aggregated to `temporal` if given.
    ///
    /// # Errors
    /// When the dataset's periods cannot be grouped into the target type (they do not nest).
    pub fn new(
        opened: &Opened,
        from: NaiveDateTime,
        until: NaiveDateTime,
        temporal: Option<(TargetPeriodType, TemporalMethod)>,
    ) -> Result<Self, String> {
        let periods = periods_in(opened, from, until);
        let kind = opened.cube.period_type;
        let all: Vec<Period> = opened.times[periods.clone()]
            .iter()
            .map(|t| Period::containing(kind, *t))
            .collect();
        Ok(match temporal {
            None => Self {
                steps: all
                    .iter()
                    .enumerate()
                    .map(|(i, p)| Step {
                        members: i..i + 1,
                        iso: p.canonical(),
                        dhis2: p.dhis2_code(),
                    })
                    .collect(),
                periods,
                period_type: kind.as_str().to_owned(),
                dropped: Vec::new(),
                method: None,
            },
            Some((target, method)) => {
                let Grouping { complete, dropped } =
                    group(&all, target).map_err(|e| e.to_string())?;
                Self {
                    steps: complete
                        .into_iter()
                        .map(|(p, members)| {
                            let first = members.first().copied().unwrap_or(0);
                            Step {
                                members: first..first + members.len(),
                                iso: p.iso(),
                                dhis2: p.dhis2(),
                            }
                        })
                        .collect(),
                    periods,
                    period_type: target.as_str().to_owned(),
                    dropped: dropped.iter().map(|p| p.iso()).collect(),
                    method: Some(method),
                }
            }
        })
    }
}

/// Reads the fields of a plan's steps over one window (`rows` × `cols` of the grid).
#[derive(Debug)]
pub struct Fields<'a> {
    opened: &'a Opened,
    plan: &'a Plan,
    rows: Range<usize>,
    cols: Range<usize>,
    /// The source periods last read (indices from the start of the plan's periods) and their
    /// fields, kept for the following steps.
    read: (Range<usize>, Vec<f32>),
    combined: Vec<f32>,
}

impl<'a> Fields<'a> {
    /// A reader of `plan`'s fields of `opened` over `rows` × `cols`.
    pub fn new(opened: &'a Opened, plan: &'a Plan, rows: Range<usize>, cols: Range<usize>) -> Self {
        Self {
            opened,
            plan,
            rows,
            cols,
            read: (0..0, Vec::new()),
            combined: Vec::new(),
        }
    }

    fn per_field(&self) -> usize {
        self.rows.len() * self.cols.len()
    }

    fn window(&self, members: Range<usize>) -> Window {
        let at = self.plan.periods.start;
        Window {
            t: at + members.start..at + members.end,
            rows: self.rows.clone(),
            cols: self.cols.clone(),
            step: 1,
        }
    }

    /// The field of step `k` over the window, row-major.
    ///
    /// # Errors
    /// [`CatalogError`] when the data cannot be read.
    pub async fn field(&mut self, k: usize) -> Result<&[f32], CatalogError> {
        let per_field = self.per_field().max(1);
        let members = self.plan.steps[k].members.clone();
        let Some(method) = self.plan.method else {
            // One period a step: read as many periods at once as fit and keep them for the
            // next steps (a time chunk is decompressed once, not once per period).
            let i = members.start;
            if !self.read.0.contains(&i) {
                let last = self.plan.steps.last().map_or(i + 1, |s| s.members.end);
                let end = (i + (BLOCK_CELLS / per_field).max(1)).min(last);
                let data = self.opened.read(&self.window(i..end)).await?;
                self.read = (i..end, data);
            }
            let at = (i - self.read.0.start) * per_field;
            return Ok(&self.read.1[at..at + per_field]);
        };
        // Combine in sub-blocks: partial results of sum/min/max combine again; the mean is the
        // sum over the number of fields with data, so sum values and counts separately.
        let chunk = (BLOCK_CELLS / per_field).max(1);
        let inner = if method == TemporalMethod::Mean {
            TemporalMethod::Sum
        } else {
            method
        };
        let mut acc: Vec<f32> = Vec::new();
        let mut counts: Vec<u32> = vec![0; per_field];
        let mut start = members.start;
        while start < members.end {
            let end = (start + chunk).min(members.end);
            let data = self.opened.read(&self.window(start..end)).await?;
            let fields: Vec<&[f32]> = data.chunks(per_field).collect();
            let part = combine(&fields, inner);
            for f in &fields {
                for (c, v) in counts.iter_mut().zip(f.iter()) {
                    if !v.is_nan() {
                        *c += 1;
                    }
                }
            }
            acc = if acc.is_empty() {
                part
            } else {
                combine(&[&acc, &part], inner)
            };
            start = end;
        }
        if method == TemporalMethod::Mean {
            for (v, n) in acc.iter_mut().zip(&counts) {
                if *n > 0 {
                    *v /= *n as f32;
                }
            }
        }
        self.combined = acc;
        Ok(&self.combined)
    }
}

/// A catalog failure while checking a request: an unknown dataset is a 404, anything else a
/// catalog that cannot be read now.
pub fn catalog_error(e: CatalogError) -> crate::CheckError {
    match e {
        CatalogError::UnknownDataset(id) => crate::CheckError::UnknownDataset(format!(
            "no published dataset '{id}'; GET /datasets lists them"
        )),
        other => crate::CheckError::Unavailable(other.to_string()),
    }
}

/// A catalog failure while running: an unknown dataset fails the job, anything else is
/// retried.
pub fn work_error(e: CatalogError) -> climate_jobs::WorkError {
    match e {
        CatalogError::UnknownDataset(id) => climate_jobs::WorkError::Failed {
            code: "unknown_dataset".into(),
            message: format!("no published dataset '{id}'"),
        },
        other => climate_jobs::WorkError::Transient(other.to_string()),
    }
}

/// Opens `dataset_id` for a request over `[from, until)` (aggregated to `temporal` if
/// given): the cube and the indices of its periods in the interval.
///
/// # Errors
/// [`crate::CheckError`]: an unknown dataset (404), no period in the interval or periods that
/// do not nest in the target type (400 naming the input), a catalog that cannot be read (503).
pub async fn open_for(
    env: &crate::Env,
    dataset_id: &str,
    from: NaiveDateTime,
    until: NaiveDateTime,
    temporal: Option<(TargetPeriodType, TemporalMethod)>,
) -> Result<(Opened, Range<usize>), crate::CheckError> {
    let opened = env.catalog.open(dataset_id).await.map_err(catalog_error)?;
    let periods = periods_in(&opened, from, until);
    if periods.is_empty() {
        let (first, last) = opened.cube.time;
        return Err(bad(
            "datetime",
            format!(
                "no period of '{dataset_id}' starts in it: the dataset covers {first} to {last}"
            ),
        )
        .into());
    }
    if let Some((target, _)) = temporal
        && !target.nests(opened.cube.period_type)
    {
        return Err(bad(
            "period_type",
            format!(
                "{} periods of '{dataset_id}' do not nest in {target} periods",
                opened.cube.period_type.as_str()
            ),
        )
        .into());
    }
    Ok((opened, periods))
}

/// The interface of a reading process: its `own` inputs and the reading inputs, and one
/// output `result` titled `title`, whose JSON rows are `{feature_id, period, <columns>}`.
pub fn reading_interface(own: serde_json::Value, title: &str, columns: &str) -> serde_json::Value {
    let mut inputs = match own {
        serde_json::Value::Object(o) => o,
        _ => serde_json::Map::new(),
    };
    inputs.extend(reading_inputs());
    serde_json::json!({
        "inputs": inputs,
        "outputs": {
            "result": {
                "title": title,
                "description": format!("json: {{dataset_id, period_type, rows: [{{feature_id, period, {columns}}}], dropped_periods, warnings}}; csv: the same rows; dhis2: a dataValueSet."),
                "schema": {"oneOf": [
                    {"type": "object", "contentMediaType": "application/json"},
                    {"type": "string", "contentMediaType": "text/csv"}
                ]}
            }
        }
    })
}

/// The descriptions of the inputs every reading process takes: `datetime`, `period_type`,
/// `temporal_method`, `format`, `data_element` and `org_unit_property`.
fn reading_inputs() -> serde_json::Map<String, serde_json::Value> {
    use serde_json::json;
    let period_types: Vec<&str> = TargetPeriodType::ALL.iter().map(|p| p.as_str()).collect();
    [
        ("datetime", json!({"title": "Interval", "description": "start/end, dates or RFC 3339 instants, both included: the periods starting in it.", "schema": {"type": "string", "example": "2025-01-01/2025-12-31"}})),
        ("period_type", json!({"title": "Aggregate to", "description": "A DHIS2 period type to aggregate to first (with temporal_method); incomplete periods are dropped and listed.", "minOccurs": 0, "schema": {"type": "string", "enum": period_types}})),
        ("temporal_method", json!({"title": "Aggregation", "minOccurs": 0, "schema": {"type": "string", "enum": ["mean", "sum", "min", "max"]}})),
        ("format", json!({"title": "Format", "minOccurs": 0, "schema": {"type": "string", "enum": ["json", "csv", "dhis2"], "default": "json"}})),
        ("data_element", json!({"title": "DHIS2 data element", "description": "Required with format dhis2.", "minOccurs": 0, "schema": {"type": "string"}})),
        ("org_unit_property", json!({"title": "Organisation unit property", "description": "The feature property holding the DHIS2 organisation unit (default: the feature's id).", "minOccurs": 0, "schema": {"type": "string"}})),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A window of the grid: rows and columns.
pub type Cells = (Range<usize>, Range<usize>);

/// The smallest window holding every one of `windows`, or `None` when there are none.
pub fn span(windows: impl Iterator<Item = Cells>) -> Option<Cells> {
    windows.reduce(|(r, c), (r2, c2)| {
        (
            r.start.min(r2.start)..r.end.max(r2.end),
            c.start.min(c2.start)..c.end.max(c2.end),
        )
    })
}
