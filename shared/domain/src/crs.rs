//! Coordinate reference systems, named the way PROJ and the OGC APIs name them.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a CRS name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid CRS '{0}': name it as AUTHORITY:CODE, e.g. EPSG:4326 (WGS 84) or EPSG:32629 (UTM 29N)"
)]
pub struct CrsError(pub String);

/// A coordinate reference system as `AUTHORITY:CODE` (`EPSG:4326`, `EPSG:32629`, `ESRI:54009`).
///
/// The form is checked on construction and the authority upper-cased; whether PROJ knows the
/// code is a question for the place that transforms coordinates, which names the CRS in its
/// error.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Crs(Cow<'static, str>);

impl Crs {
    /// WGS 84 longitude/latitude, the storage CRS of an extent that names none.
    pub const WGS84: Crs = Crs(Cow::Borrowed("EPSG:4326"));

    /// Parses `AUTHORITY:CODE`.
    ///
    /// # Errors
    /// [`CrsError`] when the value is not a letter authority, a colon and an alphanumeric code.
    pub fn new(value: &str) -> Result<Self, CrsError> {
        let parts = value.split_once(':').filter(|(authority, code)| {
            !authority.is_empty()
                && authority.len() <= 16
                && authority.bytes().all(|b| b.is_ascii_alphabetic())
                && !code.is_empty()
                && code.len() <= 32
                && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
        });
        match parts {
            Some((authority, code)) => Ok(Self(Cow::Owned(format!(
                "{}:{code}",
                authority.to_ascii_uppercase()
            )))),
            None => Err(CrsError(value.to_owned())),
        }
    }

    /// The name, e.g. `EPSG:4326`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The EPSG code, when the authority is EPSG and the code a number.
    pub fn epsg(&self) -> Option<u32> {
        self.0.strip_prefix("EPSG:")?.parse().ok()
    }

    /// Whether this is WGS 84 longitude/latitude (`EPSG:4326`), which needs no reprojection
    /// from the GeoJSON and STAC coordinates the platform receives.
    pub fn is_wgs84(&self) -> bool {
        self.0 == Self::WGS84.0
    }

    /// The OGC URI of the CRS, e.g. `http://www.opengis.net/def/crs/EPSG/0/4326`.
    pub fn uri(&self) -> String {
        let (authority, code) = self.0.split_once(':').unwrap_or(("EPSG", &self.0));
        format!("http://www.opengis.net/def/crs/{authority}/0/{code}")
    }
}

impl Default for Crs {
    fn default() -> Self {
        Self::WGS84
    }
}

impl TryFrom<String> for Crs {
    type Error = CrsError;
    fn try_from(value: String) -> Result<Self, CrsError> {
        Self::new(&value)
    }
}

impl From<Crs> for String {
    fn from(value: Crs) -> String {
        value.0.into_owned()
    }
}

impl std::str::FromStr for Crs {
    type Err = CrsError;
    fn from_str(s: &str) -> Result<Self, CrsError> {
        Self::new(s)
    }
}

impl fmt::Display for Crs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A `Crs` reads as its name wherever a `&str` is wanted (PROJ calls, JSON, logs).
impl std::ops::Deref for Crs {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Crs {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Crs {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Crs {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_is_upper_cased_and_the_epsg_code_read() {
        let utm = Crs::new("epsg:32629").expect("valid");
        assert_eq!(utm.as_str(), "EPSG:32629");
        assert_eq!(utm.epsg(), Some(32629));
        assert!(!utm.is_wgs84());
        assert_eq!(utm.uri(), "http://www.opengis.net/def/crs/EPSG/0/32629");
        assert!(Crs::new("EPSG:4326").expect("valid").is_wgs84());
        assert_eq!(Crs::new("ESRI:54009").expect("valid").epsg(), None);
        assert_eq!(Crs::default(), Crs::WGS84);
    }

    #[test]
    fn malformed_names_are_refused_with_an_example() {
        for bad in [
            "",
            "4326",
            "EPSG:",
            ":4326",
            "EPSG 4326",
            "+proj=longlat",
            "EP5G:1",
        ] {
            let err = Crs::new(bad).expect_err(bad);
            assert!(err.to_string().contains("e.g. EPSG:4326"), "{err}");
        }
    }

    #[test]
    fn serialises_as_its_name() {
        let crs: Crs = serde_json::from_str("\"epsg:3857\"").expect("valid");
        assert_eq!(serde_json::to_string(&crs).expect("json"), "\"EPSG:3857\"");
        assert!(serde_json::from_str::<Crs>("\"nonsense\"").is_err());
    }
}
