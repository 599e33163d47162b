//! Dataset templates: the stateless blueprint of a source (what variable, which provider with
//! which parameters, which transforms, how it syncs, how it is chunked and displayed).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::chunking::ChunkOverride;
use crate::ids::TemplateId;
use crate::period::PeriodType;

mod derived;
mod params;
#[cfg(test)]
mod tests;

pub use derived::{DATASET_PROVIDER, METHODS, TARGETS};
pub use params::ParamError;

/// Why a template is invalid. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template '{template}': {field}: {message}")]
pub struct TemplateError {
    /// Template id (or `?` when the id itself is unreadable).
    pub template: String,
    /// Dotted path of the offending field, e.g. `transforms[1]`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A dataset template as written in YAML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetTemplate {
    /// Stable id; managed datasets are `{id}_{extent_id}`.
    pub id: TemplateId,
    /// Display name.
    pub name: String,
    /// Short display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_name: Option<String>,
    /// Longer description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Name of the data variable in the written store.
    pub variable: String,
    /// CF `long_name` of the variable; defaults to `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_name: Option<String>,
    /// Temporal resolution.
    pub period_type: PeriodType,
    /// Units after transforms (CF/UDUNITS spelling, e.g. `degC`, `mm`).
    pub units: String,
    /// Who publishes the source data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Where users can read about the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    /// Nominal spatial resolution, for display (e.g. `0.1°`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// Which provider fetches the data, with its parameters.
    pub ingestion: IngestionSpec,
    /// Value transforms applied to source values, in order, before reprojection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<Transform>,
    /// How the dataset is kept current.
    #[serde(default)]
    pub sync: SyncSpec,
    /// Chunk policy overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<ChunkOverride>,
    /// Display hints (colormap, range) for map tiles and the STAC render extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<Display>,
    /// How values are resampled when an extent asks for another CRS (default bilinear; use
    /// nearest for counts and classes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resampling: Option<Resampling>,
    /// Temporal aggregation: the provider is asked for `from` periods (e.g. hourly) and each of
    /// this template's periods is their `method` (e.g. the daily mean of 24 hours). Periods
    /// are UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Aggregate>,
}

/// How a dataset is drawn on maps: values over `range` spread along `colormap`; values
/// outside are clamped, missing ones transparent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Display {
    /// A colormap name of [`COLORMAPS`] (matplotlib names, any case; `_r` reverses).
    #[serde(default = "default_colormap")]
    pub colormap: String,
    /// Values mapped onto the first and the last colour.
    pub range: [f64; 2],
}

fn default_colormap() -> String {
    "viridis".to_owned()
}

/// The colormaps the platform draws with, as evenly spaced RGB stops (matplotlib's, sampled).
pub const COLORMAPS: &[(&str, &[[u8; 3]])] = &[
    (
        "viridis",
        &[
            [68, 1, 84],
            [72, 40, 120],
            [62, 73, 137],
            [49, 104, 142],
            [38, 130, 142],
            [31, 158, 137],
            [53, 183, 121],
            [109, 205, 89],
            [180, 222, 44],
            [253, 231, 37],
        ],
    ),
    (
        "rdylbu",
        &[
            [165, 0, 38],
            [215, 48, 39],
            [244, 109, 67],
            [253, 174, 97],
            [254, 224, 144],
            [224, 243, 248],
            [171, 217, 233],
            [116, 173, 209],
            [69, 117, 180],
            [49, 54, 149],
        ],
    ),
    (
        "blues",
        &[
            [247, 251, 255],
            [222, 235, 247],
            [198, 219, 239],
            [158, 202, 225],
            [107, 174, 214],
            [66, 146, 198],
            [33, 113, 181],
            [8, 81, 156],
            [8, 48, 107],
        ],
    ),
    (
        "ylgnbu",
        &[
            [255, 255, 217],
            [237, 248, 177],
            [199, 233, 180],
            [127, 205, 187],
            [65, 182, 196],
            [29, 145, 192],
            [34, 94, 168],
            [37, 52, 148],
            [8, 29, 88],
        ],
    ),
    (
        "ylorrd",
        &[
            [255, 255, 204],
            [255, 237, 160],
            [254, 217, 118],
            [254, 178, 76],
            [253, 141, 60],
            [252, 78, 42],
            [227, 26, 28],
            [189, 0, 38],
            [128, 0, 38],
        ],
    ),
    (
        "greys",
        &[
            [255, 255, 255],
            [240, 240, 240],
            [217, 217, 217],
            [189, 189, 189],
            [150, 150, 150],
            [115, 115, 115],
            [82, 82, 82],
            [37, 37, 37],
            [0, 0, 0],
        ],
    ),
];

impl Display {
    /// The colormap's stops, reversed for a `_r` name; `None` for an unknown name.
    pub fn stops(&self) -> Option<Vec<[u8; 3]>> {
        let name = self.colormap.to_ascii_lowercase();
        let (base, reversed) = match name.strip_suffix("_r") {
            Some(b) => (b.to_owned(), true),
            None => (name, false),
        };
        let (_, stops) = COLORMAPS.iter().find(|(n, _)| *n == base)?;
        let mut v = stops.to_vec();
        if reversed {
            v.reverse();
        }
        Some(v)
    }

    /// The colour of `value`: linear between the stops over `range`, clamped at its ends;
    /// `None` for a missing value (drawn transparent).
    pub fn colour(&self, stops: &[[u8; 3]], value: f32) -> Option<[u8; 3]> {
        if value.is_nan() || stops.is_empty() {
            return None;
        }
        let [lo, hi] = self.range;
        let f = if hi > lo {
            ((f64::from(value) - lo) / (hi - lo)).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let pos = f * (stops.len() - 1) as f64;
        let i = (pos.floor() as usize).min(stops.len() - 1);
        let j = (i + 1).min(stops.len() - 1);
        let w = pos - i as f64;
        let mut out = [0u8; 3];
        for (k, o) in out.iter_mut().enumerate() {
            let a = f64::from(stops[i][k]);
            let b = f64::from(stops[j][k]);
            *o = (a + (b - a) * w).round() as u8;
        }
        Some(out)
    }
}

/// Temporal aggregation of finer source periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregate {
    /// Period type the provider delivers (finer than the template's).
    pub from: PeriodType,
    /// How the fields of one period are combined.
    pub method: AggregateMethod,
}

/// How [`Aggregate`] combines fields. A cell missing in any of them is missing in the result:
/// a partial mean would silently mix different parts of the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateMethod {
    /// Arithmetic mean.
    Mean,
    /// Sum (totals of amounts).
    Sum,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
}

impl AggregateMethod {
    /// The name used in templates and metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Sum => "sum",
            Self::Min => "min",
            Self::Max => "max",
        }
    }

    /// Combines equally sized fields cell by cell (see the type's rule for missing cells).
    pub fn combine(self, fields: &[Vec<f32>]) -> Vec<f32> {
        let Some(first) = fields.first() else {
            return Vec::new();
        };
        let mut out = first.clone();
        for field in &fields[1..] {
            self.accumulate(&mut out, field);
        }
        self.finish(&mut out, fields.len());
        out
    }

    /// Folds `field` into the running combination `acc` (which started as the first field),
    /// so that only one field besides the result is held at a time.
    pub fn accumulate(self, acc: &mut [f32], field: &[f32]) {
        for (o, v) in acc.iter_mut().zip(field) {
            // f32::min/max skip NaN; missing must stay missing.
            *o = if o.is_nan() || v.is_nan() {
                f32::NAN
            } else {
                match self {
                    Self::Mean | Self::Sum => *o + *v,
                    Self::Min => o.min(*v),
                    Self::Max => o.max(*v),
                }
            };
        }
    }

    /// Completes a combination of `n` fields built with [`Self::accumulate`].
    pub fn finish(self, acc: &mut [f32], n: usize) {
        if self == Self::Mean && n > 0 {
            let n = n as f32;
            acc.iter_mut().for_each(|o| *o /= n);
        }
    }
}

/// Resampling method of a reprojection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resampling {
    /// The source pixel whose centre is nearest.
    Nearest,
    /// Bilinear interpolation between the four nearest source centres (missing ones left out,
    /// the other weights renormalised).
    #[default]
    Bilinear,
}

impl Resampling {
    /// The name used in templates and metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nearest => "nearest",
            Self::Bilinear => "bilinear",
        }
    }
}

/// Provider and parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestionSpec {
    /// Provider name, e.g. `file`, `chirps3_daily`.
    pub provider: String,
    /// Provider-specific parameters, validated by the provider at start-up.
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// Sync behaviour of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSpec {
    /// `temporal`, `release` or `static`.
    pub kind: SyncKind,
    /// For temporal syncs: append new periods or rebuild.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<SyncExecution>,
    /// When the provider publishes a period ([`crate::sync::Availability`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<crate::sync::Availability>,
    /// When the scheduler syncs: `as_available` or a 5-field cron expression in UTC
    /// ([`crate::sync::Schedule`]); absent, the dataset is synced only on request (a dataset
    /// may override it through the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

impl Default for SyncSpec {
    fn default() -> Self {
        Self {
            kind: SyncKind::Static,
            execution: None,
            availability: None,
            schedule: None,
        }
    }
}

/// Kinds of sync (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncKind {
    /// New periods appear over time.
    Temporal,
    /// New releases replace the data.
    Release,
    /// Never changes.
    Static,
}

/// How a temporal sync writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncExecution {
    /// Write only the new periods.
    Append,
    /// Rebuild the whole dataset.
    Rematerialize,
}

/// A named, parameterised value transform. Point-wise transforms see one source value at a
/// time; missing values (NaN) stay missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TransformSpec", into = "TransformSpec")]
pub enum Transform {
    /// `v - 273.15`.
    KelvinToCelsius,
    /// `v * 1000`.
    MetresToMm,
    /// `v * scale + offset`.
    ScaleOffset {
        /// Multiplier.
        scale: f64,
        /// Addend, applied after scaling.
        offset: f64,
    },
    /// Values equal to any of these become missing.
    MaskValues {
        /// Sentinel values (e.g. -9999).
        values: Vec<f64>,
    },
    /// ERA5-Land accumulations since 00 UTC to hourly amounts, keyed on the hour of day:
    /// `a(t) = A(t)` for the hour ending 01:00, else `A(t) − A(t − 1 h)` (the 00:00 value closes
    /// the previous day). Temporal: the pipeline applies it, with the previous hour's field,
    /// before the point-wise transforms; it must come first and needs hourly data.
    Deaccumulate {
        /// Clip the small negative differences of GRIB packing to 0 (for non-negative
        /// quantities such as precipitation; not for signed fluxes).
        clip_negative: bool,
    },
}

/// The YAML spelling of a transform: a bare name or a one-key map of name to parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TransformSpec {
    /// `kelvin_to_celsius`
    Name(String),
    /// `{scale_offset: {scale: 0.1, offset: 0}}`
    WithParams(BTreeMap<String, serde_json::Value>),
}

const TRANSFORM_NAMES: &str =
    "kelvin_to_celsius, metres_to_mm, scale_offset, mask_values, deaccumulate";

/// Why a transform spec was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// A map with no key.
    #[error("empty transform")]
    Empty,
    /// A map with more than one key.
    #[error(
        "a transform with parameters is a map with exactly one key, e.g. {{scale_offset: {{scale: 0.1}}}}"
    )]
    Shape,
    /// A parameter that must be a number is not.
    #[error("{transform}.{key} must be a number")]
    NotANumber {
        /// The transform.
        transform: String,
        /// The parameter.
        key: &'static str,
    },
    /// A required parameter is missing.
    #[error("{transform} needs parameter '{key}'")]
    Missing {
        /// The transform.
        transform: String,
        /// The parameter.
        key: &'static str,
    },
    /// `mask_values` without a list of numbers.
    #[error("mask_values needs parameter 'values' (a list of numbers)")]
    MaskValues,
    /// `mask_values.values` holds something other than numbers.
    #[error("mask_values.values must be numbers")]
    MaskValueNotANumber,
    /// `deaccumulate.clip_negative` is not a boolean.
    #[error("deaccumulate.clip_negative must be true or false")]
    ClipNegative,
    /// No transform of that name.
    #[error("unknown transform '{0}': expected one of {TRANSFORM_NAMES}")]
    Unknown(String),
}

impl TryFrom<TransformSpec> for Transform {
    type Error = TransformError;
    fn try_from(spec: TransformSpec) -> Result<Self, TransformError> {
        let (name, params) = match spec {
            TransformSpec::Name(n) => (n, serde_json::Value::Null),
            TransformSpec::WithParams(m) if m.len() == 1 => {
                let Some((k, v)) = m.into_iter().next() else {
                    return Err(TransformError::Empty);
                };
                (k, v)
            }
            TransformSpec::WithParams(_) => return Err(TransformError::Shape),
        };
        let num = |key: &'static str, default: Option<f64>| -> Result<f64, TransformError> {
            match params.get(key) {
                Some(v) => v.as_f64().ok_or_else(|| TransformError::NotANumber {
                    transform: name.clone(),
                    key,
                }),
                None => default.ok_or_else(|| TransformError::Missing {
                    transform: name.clone(),
                    key,
                }),
            }
        };
        match name.as_str() {
            "kelvin_to_celsius" => Ok(Self::KelvinToCelsius),
            "metres_to_mm" => Ok(Self::MetresToMm),
            "scale_offset" => Ok(Self::ScaleOffset {
                scale: num("scale", Some(1.0))?,
                offset: num("offset", Some(0.0))?,
            }),
            "mask_values" => {
                let values = params
                    .get("values")
                    .and_then(|v| v.as_array())
                    .ok_or(TransformError::MaskValues)?
                    .iter()
                    .map(|v| v.as_f64().ok_or(TransformError::MaskValueNotANumber))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Self::MaskValues { values })
            }
            "deaccumulate" => Ok(Self::Deaccumulate {
                clip_negative: match params.get("clip_negative") {
                    None => true,
                    Some(v) => v.as_bool().ok_or(TransformError::ClipNegative)?,
                },
            }),
            _ => Err(TransformError::Unknown(name)),
        }
    }
}

impl From<Transform> for TransformSpec {
    fn from(t: Transform) -> Self {
        let with = |name: &str, v: serde_json::Value| {
            Self::WithParams(BTreeMap::from([(name.to_owned(), v)]))
        };
        match t {
            Transform::KelvinToCelsius => Self::Name("kelvin_to_celsius".into()),
            Transform::MetresToMm => Self::Name("metres_to_mm".into()),
            Transform::ScaleOffset { scale, offset } => with(
                "scale_offset",
                serde_json::json!({"scale": scale, "offset": offset}),
            ),
            Transform::MaskValues { values } => {
                with("mask_values", serde_json::json!({ "values": values }))
            }
            Transform::Deaccumulate { clip_negative } => with(
                "deaccumulate",
                serde_json::json!({ "clip_negative": clip_negative }),
            ),
        }
    }
}

impl Transform {
    /// Whether the transform needs neighbouring periods (applied by the pipeline, not by
    /// [`Transform::apply`]).
    pub fn is_temporal(&self) -> bool {
        matches!(self, Self::Deaccumulate { .. })
    }

    /// De-accumulates one hourly field in place: `current` holds `A(t)`, `previous` holds
    /// `A(t − 1 h)` or is `None` for the hour ending 01:00 (whose accumulation is its amount).
    pub fn deaccumulate(current: &mut [f32], previous: Option<&[f32]>, clip_negative: bool) {
        if let Some(prev) = previous {
            for (v, p) in current.iter_mut().zip(prev) {
                *v -= *p;
            }
        }
        if clip_negative {
            for v in current.iter_mut() {
                if *v < 0.0 {
                    *v = 0.0;
                }
            }
        }
    }

    /// Applies a point-wise transform in place. NaN means missing and stays missing. Temporal
    /// transforms are no-ops here.
    pub fn apply(&self, values: &mut [f32]) {
        match self {
            Self::Deaccumulate { .. } => {}
            Self::KelvinToCelsius => values.iter_mut().for_each(|v| *v -= 273.15),
            Self::MetresToMm => values.iter_mut().for_each(|v| *v *= 1000.0),
            Self::ScaleOffset { scale, offset } => values
                .iter_mut()
                .for_each(|v| *v = (f64::from(*v) * scale + offset) as f32),
            Self::MaskValues { values: sentinels } => {
                for v in values.iter_mut() {
                    if sentinels.iter().any(|s| f64::from(*v) == *s) {
                        *v = f32::NAN;
                    }
                }
            }
        }
    }
}

impl DatasetTemplate {
    /// Checks rules serde cannot express. Provider parameters are checked by the provider.
    ///
    /// # Errors
    /// [`TemplateError`] naming the field.
    pub fn validate(&self) -> Result<(), TemplateError> {
        let err = |field: &str, message: &str| TemplateError {
            template: self.id.to_string(),
            field: field.to_owned(),
            message: message.to_owned(),
        };
        if self.name.trim().is_empty() {
            return Err(err("name", "must not be empty"));
        }
        if self.units.trim().is_empty() {
            return Err(err(
                "units",
                "must not be empty (use \"1\" for dimensionless)",
            ));
        }
        let var_ok = self
            .variable
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && self
                .variable
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !var_ok || matches!(self.variable.as_str(), "t" | "x" | "y") {
            return Err(err(
                "variable",
                "must be a letter followed by letters, digits or '_', and not t, x or y (the coordinate names)",
            ));
        }
        if self.ingestion.provider.trim().is_empty() {
            return Err(err("ingestion.provider", "must name a provider"));
        }
        if let Some(d) = &self.display {
            if d.stops().is_none() {
                let names: Vec<&str> = COLORMAPS.iter().map(|(n, _)| *n).collect();
                return Err(err(
                    "display.colormap",
                    &format!(
                        "unknown colormap '{}': use one of {} (append _r to reverse)",
                        d.colormap,
                        names.join(", ")
                    ),
                ));
            }
            if !(d.range[0].is_finite() && d.range[1].is_finite() && d.range[0] < d.range[1]) {
                return Err(err(
                    "display.range",
                    "must be [min, max] with finite min < max",
                ));
            }
        }
        if let Some(a) = &self.sync.availability
            && let Err((field, message)) = a.validate()
        {
            return Err(err(&format!("sync.availability.{field}"), &message));
        }
        if let Some(sched) = &self.sync.schedule
            && let Err(e) = crate::sync::Schedule::parse(sched)
        {
            return Err(err("sync.schedule", &e.to_string()));
        }
        if self.sync.execution.is_some() && self.sync.kind != SyncKind::Temporal {
            return Err(err(
                "sync.execution",
                "only temporal syncs have an execution (append or rematerialize)",
            ));
        }
        if let Some(i) = self.transforms.iter().position(Transform::is_temporal) {
            if i != 0 {
                return Err(err(
                    &format!("transforms[{i}]"),
                    "deaccumulate must be the first transform (it works on the source's accumulations)",
                ));
            }
            if self.period_type != PeriodType::Hourly {
                return Err(err(
                    "transforms[0]",
                    "deaccumulate needs period_type: hourly (ERA5-Land accumulations are hourly)",
                ));
            }
        }
        if let Some(a) = self.aggregate {
            if a.from >= self.period_type {
                return Err(err(
                    "aggregate.from",
                    &format!(
                        "must be a finer period type than period_type ({}), e.g. hourly for daily",
                        self.period_type.as_str()
                    ),
                ));
            }
            if a.from == PeriodType::Weekly
                && matches!(self.period_type, PeriodType::Monthly | PeriodType::Yearly)
            {
                return Err(err(
                    "aggregate.from",
                    "weeks do not fit inside months or years: aggregate from daily instead",
                ));
            }
            if self.transforms.iter().any(Transform::is_temporal) {
                return Err(err(
                    "aggregate",
                    "cannot be combined with deaccumulate yet; aggregate the accumulated source with method max or read a daily product",
                ));
            }
        }
        if let Some(c) = self.chunks
            && [c.t, c.y, c.x].into_iter().flatten().any(|v| v == 0)
        {
            return Err(err("chunks", "chunk sizes must be at least 1"));
        }
        if let Some(shard) = self.chunks.and_then(|c| c.shard)
            && shard.contains(&0)
        {
            return Err(err(
                "chunks.shard",
                "shards hold at least one chunk along each axis",
            ));
        }
        Ok(())
    }

    /// The template providers are asked with: this one, or with an [`Aggregate`] the same
    /// template at the source period type (the aggregation happens in the pipeline).
    pub fn source_template(&self) -> std::borrow::Cow<'_, Self> {
        match self.aggregate {
            Some(a) => std::borrow::Cow::Owned(Self {
                period_type: a.from,
                aggregate: None,
                ..self.clone()
            }),
            None => std::borrow::Cow::Borrowed(self),
        }
    }

    /// The CF `long_name` of the variable.
    pub fn long_name(&self) -> &str {
        self.long_name.as_deref().unwrap_or(&self.name)
    }
}
