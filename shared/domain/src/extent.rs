//! Extents: the named areas an instance serves, and their WGS84 bounding boxes.

use serde::{Deserialize, Serialize};

use crate::crs::Crs;
use crate::ids::ExtentId;

/// The CRS every extent is stored in unless it names another.
pub static DEFAULT_CRS: Crs = Crs::WGS84;

/// Why a bounding box or extent was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExtentError {
    /// A coordinate is outside the WGS84 domain or not finite.
    #[error(
        "bbox {0:?} is outside WGS84: longitudes must be within -180..180 and latitudes within -90..90"
    )]
    OutOfRange([f64; 4]),
    /// The box has no area.
    #[error(
        "bbox {0:?} is empty: expected [west, south, east, north] with west < east and south < north"
    )]
    Empty([f64; 4]),
    /// The ISO country code is malformed.
    #[error(
        "country_code '{0}' is not an ISO 3166-1 alpha-3 code (three upper-case letters, e.g. SLE)"
    )]
    CountryCode(String),
    /// The target resolution is not a positive number.
    #[error("resolution {0} must be a positive number of CRS units (metres for UTM)")]
    Resolution(f64),
}

/// A WGS84 bounding box `[west, south, east, north]` in degrees, west < east, south < north.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "[f64; 4]", into = "[f64; 4]")]
pub struct Bbox {
    west: f64,
    south: f64,
    east: f64,
    north: f64,
}

impl Bbox {
    /// Validates a box given as west, south, east, north.
    ///
    /// # Errors
    /// [`ExtentError::OutOfRange`] for non-finite or out-of-domain values,
    /// [`ExtentError::Empty`] when the box has no area.
    pub fn new(west: f64, south: f64, east: f64, north: f64) -> Result<Self, ExtentError> {
        let raw = [west, south, east, north];
        if raw.iter().any(|v| !v.is_finite())
            || !(-180.0..=180.0).contains(&west)
            || !(-180.0..=180.0).contains(&east)
            || !(-90.0..=90.0).contains(&south)
            || !(-90.0..=90.0).contains(&north)
        {
            return Err(ExtentError::OutOfRange(raw));
        }
        if west >= east || south >= north {
            return Err(ExtentError::Empty(raw));
        }
        Ok(Self {
            west,
            south,
            east,
            north,
        })
    }

    /// Western edge (minimum longitude).
    pub fn west(&self) -> f64 {
        self.west
    }
    /// Southern edge (minimum latitude).
    pub fn south(&self) -> f64 {
        self.south
    }
    /// Eastern edge (maximum longitude).
    pub fn east(&self) -> f64 {
        self.east
    }
    /// Northern edge (maximum latitude).
    pub fn north(&self) -> f64 {
        self.north
    }
    /// The box as `[west, south, east, north]`.
    pub fn to_array(&self) -> [f64; 4] {
        [self.west, self.south, self.east, self.north]
    }
}

impl TryFrom<[f64; 4]> for Bbox {
    type Error = ExtentError;
    fn try_from(v: [f64; 4]) -> Result<Self, ExtentError> {
        Self::new(v[0], v[1], v[2], v[3])
    }
}

impl From<Bbox> for [f64; 4] {
    fn from(b: Bbox) -> Self {
        b.to_array()
    }
}

/// A named area configured for the instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extent {
    /// Stable id used in dataset ids and URLs.
    pub extent_id: ExtentId,
    /// Human-readable name.
    pub name: String,
    /// Free text shown to users.
    #[serde(default)]
    pub description: String,
    /// WGS84 bounding box; pixels whose centre lies inside it belong to the extent.
    pub bbox: Bbox,
    /// ISO 3166-1 alpha-3 code, used by country-based providers (WorldPop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    /// Storage CRS; [`DEFAULT_CRS`] when absent. Another CRS (e.g. `EPSG:32629`, UTM 29N)
    /// makes the pipeline reproject onto a north-up grid in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crs: Option<Crs>,
    /// Pixel size of that grid in the CRS's units (metres for UTM); by default the source's
    /// pixel size at the extent's centre, rounded to two significant digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<f64>,
}

impl Extent {
    /// Checks the parts that serde cannot (country code shape).
    ///
    /// # Errors
    /// [`ExtentError::CountryCode`] when the country code is not three upper-case letters.
    pub fn validate(&self) -> Result<(), ExtentError> {
        if let Some(code) = &self.country_code
            && !(code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(ExtentError::CountryCode(code.clone()));
        }
        if let Some(r) = self.resolution
            && !(r.is_finite() && r > 0.0)
        {
            return Err(ExtentError::Resolution(r));
        }
        Ok(())
    }

    /// The CRS data for this extent is stored in.
    pub fn storage_crs(&self) -> &Crs {
        self.crs.as_ref().unwrap_or(&DEFAULT_CRS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bbox_rejects_inverted_and_out_of_range_boxes() {
        assert!(matches!(
            Bbox::new(10.0, 0.0, 5.0, 1.0),
            Err(ExtentError::Empty(_))
        ));
        assert!(matches!(
            Bbox::new(-190.0, 0.0, 5.0, 1.0),
            Err(ExtentError::OutOfRange(_))
        ));
        assert!(matches!(
            Bbox::new(0.0, f64::NAN, 5.0, 1.0),
            Err(ExtentError::OutOfRange(_))
        ));
        assert!(Bbox::new(-13.5, 6.9, -10.1, 10.0).is_ok());
    }

    #[test]
    fn bbox_round_trips_as_an_array() {
        let b: Bbox = serde_json::from_str("[-13.5, 6.9, -10.1, 10.0]").expect("valid");
        assert_eq!(
            serde_json::to_string(&b).expect("json"),
            "[-13.5,6.9,-10.1,10.0]"
        );
        assert!(serde_json::from_str::<Bbox>("[1, 1, 0, 2]").is_err());
    }

    #[test]
    fn country_code_must_be_alpha3() {
        let mut e: Extent = serde_json::from_value(serde_json::json!({
            "extent_id": "sle", "name": "Sierra Leone", "bbox": [-13.5, 6.9, -10.1, 10.0],
            "country_code": "SLE"
        }))
        .expect("valid");
        assert!(e.validate().is_ok());
        assert_eq!(e.storage_crs(), &DEFAULT_CRS);
        e.country_code = Some("sl".into());
        assert!(e.validate().is_err());
    }
}
