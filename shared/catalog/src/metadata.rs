//! What a published version says about itself: [`VersionMetadata`], written by the pipeline at
//! publication and read by every surface, through this one type.

use chrono::NaiveDateTime;
use climate_domain::{Crs, Period, PeriodRange, PeriodType};
use climate_infra::db::VersionRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::CatalogError;

/// The format version this code writes. Readers accept this one and every earlier one; rows
/// written before the field existed read as version 1.
pub const FORMAT_VERSION: u32 = 1;

/// Why a stored metadata document cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// A part is missing or malformed.
    #[error("{0}")]
    Malformed(#[from] serde_json::Error),
    /// A newer release wrote it.
    #[error("metadata format {0} is newer than this release reads ({FORMAT_VERSION})")]
    Newer(u32),
}

const fn format_v1() -> u32 {
    1
}

fn wgs84() -> Crs {
    Crs::WGS84
}

/// The metadata of a version, stored as JSON with the version's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionMetadata {
    /// Layout version of this document ([`FORMAT_VERSION`] when written by this code).
    #[serde(default = "format_v1")]
    pub format_version: u32,
    /// Storage format (`zarr`).
    pub format: String,
    /// Zarr format of the store (3).
    pub zarr_format: u8,
    /// Data variable.
    pub variable: String,
    /// Units of the variable.
    #[serde(default)]
    pub units: String,
    /// Period type of the time axis.
    pub period_type: PeriodType,
    /// CRS of the grid, e.g. `EPSG:4326`.
    #[serde(default = "wgs84")]
    pub crs: Crs,
    /// Pixel-edge bounds `[west, south, east, north]` in `crs`.
    pub bbox: [f64; 4],
    /// Array shape `[t, y, x]`.
    pub shape: [u64; 3],
    /// Chunk shape `[t, y, x]`.
    pub chunks: [u64; 3],
    /// Affine transform `[a, b, c, d, e, f]` (GDAL order, rasterio's `Affine`).
    pub transform: [f64; 6],
    /// Time chunks this version wrote itself (an appended version writes only its new ones).
    #[serde(default)]
    pub chunks_written: u64,
    /// Prefixes of earlier versions this one reads the chunks it did not write from, newest
    /// first (empty for a version written whole). None of them may be deleted while this
    /// version is kept.
    #[serde(default)]
    pub bases: Vec<String>,
    /// The first time chunk this version wrote.
    #[serde(default)]
    pub first_chunk: u64,
    /// The provider the data came from.
    #[serde(default)]
    pub provider: String,
    /// The request of the run that wrote the version.
    #[serde(default)]
    pub request: Value,
}

impl VersionMetadata {
    /// The JSON stored with the version.
    #[must_use]
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Reads a stored document.
    ///
    /// # Errors
    /// [`MetadataError`] when a part is missing or malformed or the document was written by a
    /// newer release.
    pub fn from_json(v: &Value) -> Result<Self, MetadataError> {
        let m = Self::deserialize(v)?;
        if m.format_version > FORMAT_VERSION {
            return Err(MetadataError::Newer(m.format_version));
        }
        Ok(m)
    }

    /// The metadata of a stored version.
    ///
    /// # Errors
    /// [`CatalogError::Metadata`] naming the version when its metadata is unreadable.
    pub fn of(v: &VersionRecord) -> Result<Self, CatalogError> {
        Self::from_json(&v.metadata).map_err(|e| CatalogError::Metadata {
            dataset: v.dataset_id.clone(),
            version: v.version,
            reason: e.to_string(),
        })
    }

    /// The EPSG code of the CRS, if it is one.
    #[must_use]
    pub fn epsg(&self) -> Option<u32> {
        self.crs.epsg()
    }

    /// The bbox in WGS84 longitude/latitude (the CRS's own when geographic; otherwise the
    /// bounds of its projected corners and edge midpoints).
    #[must_use]
    pub fn wgs84_bbox(&self) -> [f64; 4] {
        if self.crs.is_wgs84() {
            return self.bbox;
        }
        climate_geodata::reproject::project_bounds(self.bbox, &self.crs, "EPSG:4326", 9)
            .ok()
            .flatten()
            .unwrap_or([-180.0, -90.0, 180.0, 90.0])
    }
}

/// A version's cube: its metadata with the period range it covers.
#[derive(Debug, Clone)]
pub struct CubeMeta {
    /// What the version says about itself.
    pub meta: VersionMetadata,
    /// The periods covered, in order.
    pub range: PeriodRange,
    /// First and last period start.
    pub time: (NaiveDateTime, NaiveDateTime),
}

impl std::ops::Deref for CubeMeta {
    type Target = VersionMetadata;
    fn deref(&self) -> &VersionMetadata {
        &self.meta
    }
}

impl CubeMeta {
    /// The cube of a stored version.
    ///
    /// # Errors
    /// [`CatalogError::Metadata`] when its metadata or coverage is unreadable.
    pub fn of(v: &VersionRecord) -> Result<Self, CatalogError> {
        let meta = VersionMetadata::of(v)?;
        let kind = meta.period_type;
        let range = Period::parse(kind, &v.coverage_start)
            .and_then(|s| Period::parse(kind, &v.coverage_end).and_then(|e| PeriodRange::new(s, e)))
            .map_err(|e| CatalogError::Metadata {
                dataset: v.dataset_id.clone(),
                version: v.version,
                reason: format!("coverage: {e}"),
            })?;
        let time = (range.start().start(), range.end().start());
        Ok(Self { meta, range, time })
    }

    /// Period starts, in order.
    #[must_use]
    pub fn times(&self) -> Vec<NaiveDateTime> {
        self.range.iter().map(|p| p.start()).collect()
    }
}

/// ISO 8601 duration of one period.
#[must_use]
pub fn iso_step(kind: PeriodType) -> &'static str {
    match kind {
        PeriodType::Hourly => "PT1H",
        PeriodType::Daily => "P1D",
        PeriodType::Weekly => "P7D",
        PeriodType::Monthly => "P1M",
        PeriodType::Yearly => "P1Y",
    }
}

/// RFC 3339 UTC timestamp.
#[must_use]
pub fn rfc3339(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// 31 daily CHIRPS fields over Sierra Leone, as the pipeline describes them.
    pub(crate) fn sample() -> VersionMetadata {
        VersionMetadata {
            format_version: FORMAT_VERSION,
            format: "zarr".into(),
            zarr_format: 3,
            variable: "precip".into(),
            units: "mm".into(),
            period_type: PeriodType::Daily,
            crs: Crs::WGS84,
            bbox: [-13.5, 6.9, -10.2, 10.0],
            shape: [31, 62, 66],
            chunks: [8, 62, 66],
            transform: [0.05, 0.0, -13.5, 0.0, -0.05, 10.0],
            chunks_written: 4,
            bases: vec!["datasets/a/v1".into()],
            first_chunk: 0,
            provider: "chirps3_daily".into(),
            request: json!({"start": "2025-01-01"}),
        }
    }

    #[test]
    fn written_metadata_reads_back_identically() {
        let m = sample();
        assert_eq!(
            VersionMetadata::from_json(&m.to_json()).expect("accepted"),
            m
        );
        assert_eq!(m.to_json()["format_version"], json!(FORMAT_VERSION));
    }

    #[test]
    fn documents_from_before_the_format_version_read_as_version_1() {
        // The shape versions were stored in before the field existed.
        let old = json!({
            "format": "zarr", "zarr_format": 3, "variable": "t2m", "units": "K",
            "period_type": "hourly", "crs": "EPSG:4326", "bbox": [0.0, 0.0, 1.0, 1.0],
            "shape": [24, 10, 10], "chunks": [24, 10, 10],
            "transform": [0.1, 0.0, 0.0, 0.0, -0.1, 1.0], "chunks_written": 1,
            "bases": [], "first_chunk": 0, "provider": "file", "request": {},
        });
        let m = VersionMetadata::from_json(&old).expect("accepted");
        assert_eq!((m.format_version, m.period_type), (1, PeriodType::Hourly));
    }

    #[test]
    fn newer_or_broken_documents_are_refused_with_the_reason() {
        let mut newer = sample().to_json();
        newer["format_version"] = json!(FORMAT_VERSION + 1);
        assert!(
            VersionMetadata::from_json(&newer)
                .expect_err("refused")
                .to_string()
                .contains("newer")
        );
        let mut broken = sample().to_json();
        broken["shape"] = json!([1, 2]);
        assert!(VersionMetadata::from_json(&broken).is_err());
        let missing = json!({"format": "zarr"});
        assert!(
            VersionMetadata::from_json(&missing)
                .expect_err("refused")
                .to_string()
                .contains("zarr_format")
        );
    }
}
