//! Providers turn (template params, extent, period range) into decoded source fields.
//!
//! Each provider is one implementation of [`Provider`]; the pipeline only sees the resulting
//! [`SourceSet`]: for each period, which file and time step hold its field. Adding a provider
//! never touches the pipeline.
//!
//! One module per provider: [`file`](FileProvider), [`worldpop`](WorldPopProvider),
//! [`chirps`](Chirps3Provider), [`http_template`](HttpTemplateProvider),
//! [`command`](CommandProvider), [`cds`](CdsProvider) (on the asynchronous-upstream machine,
//! [`crate::upstream::jobs`]) and [`era5_zarr`](RemoteZarrProvider) (reading through
//! [`crate::remote_zarr`]).

mod cds;
mod chirps;
mod command;
mod era5_zarr;
mod file;
mod http_template;
pub(crate) mod params;
mod worldpop;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{Datelike, NaiveDate};
use climate_domain::template::{DatasetTemplate, ParamError};
use climate_domain::{Extent, Period, PeriodType};

use crate::http::ProviderEnv;
use crate::raster::{self, GeoTiffSource, RangeFetch, RasterSource, RemoteTiff, TRANSIENT_IO};
pub use crate::upstream::{ProviderError, Retry};
use params::{HttpUrl, Text};

pub use cds::*;
pub use chirps::*;
pub use command::*;
pub use era5_zarr::*;
pub use file::*;
pub use http_template::*;
pub use worldpop::*;

/// What a provider is asked for.
#[derive(Debug, Clone, Copy)]
pub struct LocateRequest<'a> {
    /// The template (params, period type, variable).
    pub template: &'a DatasetTemplate,
    /// Directory relative paths resolve against.
    pub base_dir: &'a Path,
    /// The extent being materialised.
    pub extent: &'a Extent,
    /// First period wanted.
    pub start: Period,
    /// Last period wanted; `None` means "up to the latest available".
    pub end: Option<Period>,
    /// Download cache and HTTP settings.
    pub env: &'a ProviderEnv,
    /// State kept between attempts (upstream job ids), `null` at first. The provider reads it
    /// to resume and updates it before answering [`Retry::Pending`]; the worker stores it.
    pub state: &'a std::sync::Mutex<serde_json::Value>,
}

/// Where one period's field lives.
#[derive(Debug, Clone)]
pub struct Step {
    /// The decoded file.
    pub source: Arc<dyn RasterSource>,
    /// Time step within it (0 for files without a time axis).
    pub time_index: usize,
}

/// The fields found for a request, by period (periods outside the request are left out).
#[derive(Debug, Clone, Default)]
pub struct SourceSet {
    /// Fields by period, ascending.
    pub steps: BTreeMap<Period, Step>,
}

/// A source of gridded data.
#[async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// Name used in templates (`ingestion.provider`).
    fn name(&self) -> &'static str;
    /// Checks `ingestion.params` at start-up.
    ///
    /// # Errors
    /// [`ParamError`] naming the parameter and how to fix it.
    fn validate_params(&self, template: &DatasetTemplate) -> Result<(), ParamError>;
    /// Finds (and for remote providers, fetches) the fields for the request.
    ///
    /// # Errors
    /// [`ProviderError`] classified as transient or permanent.
    async fn locate(&self, req: &LocateRequest<'_>) -> Result<SourceSet, ProviderError>;
}

/// A provider written against its own parameters: it decodes and checks a template's
/// `ingestion.params` into [`TypedProvider::Params`] once, in one place, and every
/// `TypedProvider` is a [`Provider`] (the start-up check is that decoding; a locate decodes
/// again and fails permanently on what the check would have refused).
#[async_trait]
pub trait TypedProvider: Send + Sync + std::fmt::Debug {
    /// Name used in templates (`ingestion.provider`).
    const NAME: &'static str;
    /// The decoded parameters.
    type Params: Send;
    /// Decodes and checks `ingestion.params` of `template` (for an aggregating template, its
    /// source template).
    ///
    /// # Errors
    /// [`ParamError`] naming the parameter and how to fix it.
    fn params(template: &DatasetTemplate) -> Result<Self::Params, ParamError>;
    /// Finds (and for remote providers, fetches) the fields for the request.
    ///
    /// # Errors
    /// [`ProviderError`] classified as transient or permanent.
    async fn locate_with(
        &self,
        req: &LocateRequest<'_>,
        params: Self::Params,
    ) -> Result<SourceSet, ProviderError>;
}

#[async_trait]
impl<P: TypedProvider> Provider for P {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn validate_params(&self, template: &DatasetTemplate) -> Result<(), ParamError> {
        P::params(template).map(drop)
    }

    async fn locate(&self, req: &LocateRequest<'_>) -> Result<SourceSet, ProviderError> {
        let params = P::params(req.template)
            .map_err(|e| ProviderError::permanent(P::NAME, e.to_string()))?;
        self.locate_with(req, params).await
    }
}

/// The providers compiled into this build, by name.
#[derive(Debug, Clone)]
pub struct Registry {
    providers: BTreeMap<&'static str, Arc<dyn Provider>>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut providers: BTreeMap<&'static str, Arc<dyn Provider>> = BTreeMap::new();
        providers.insert("file", Arc::new(FileProvider));
        providers.insert("worldpop_yearly", Arc::new(WorldPopProvider));
        providers.insert("chirps3_daily", Arc::new(Chirps3Provider));
        providers.insert("http_template", Arc::new(HttpTemplateProvider));
        providers.insert("command", Arc::new(CommandProvider));
        providers.insert("era5_land_cds", Arc::new(CdsProvider));
        providers.insert("era5_land_zarr", Arc::new(RemoteZarrProvider));
        Self { providers }
    }
}

impl Registry {
    /// A provider by name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.get(name)
    }

    /// Names of all providers.
    pub fn names(&self) -> Vec<&'static str> {
        self.providers.keys().copied().collect()
    }

    /// Checks a template's provider and params (the catalogue's start-up check).
    ///
    /// # Errors
    /// [`ParamError`] naming the provider or parameter.
    pub fn check(&self, template: &DatasetTemplate) -> Result<(), ParamError> {
        let p =
            self.get(&template.ingestion.provider)
                .ok_or_else(|| ParamError::UnknownProvider {
                    name: template.ingestion.provider.clone(),
                    available: self.names().join(", "),
                })?;
        // Providers see the source period type of an aggregating template.
        p.validate_params(&template.source_template())
    }
}

pub(crate) fn perm(message: impl Into<String>) -> ProviderError {
    ProviderError::permanent("file", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_extracted_from_paths() {
        let parts = parse_template("/d/samples/worldpop_sle_{year}_1km.tif");
        let v = extract(&parts, "/d/samples/worldpop_sle_2026_1km.tif").expect("matches");
        assert_eq!(v.get("{year}"), Some(&2026));
        assert!(extract(&parts, "/d/samples/worldpop_sle_20x6_1km.tif").is_none());

        let parts = parse_template("/c/{year}/chirps.{year}.{month}.{day}.cog");
        let v = extract(&parts, "/c/2024/chirps.2024.01.03.cog").expect("matches");
        assert_eq!(
            placeholder_period(PeriodType::Daily, &v).map(|p| p.canonical()),
            Some("2024-01-03".to_owned())
        );
        // Inconsistent repeated placeholders do not match.
        assert!(extract(&parts, "/c/2023/chirps.2024.01.03.cog").is_none());
    }

    #[test]
    fn worldpop_urls_follow_the_upstream_layout() {
        assert_eq!(
            WorldPopProvider::url("https://data.worldpop.org/GIS/", "global2_1km", 2026, "SLE"),
            "https://data.worldpop.org/GIS/Population/Global_2015_2030/R2025A/2026/SLE/v1/1km_ua/constrained/sle_pop_2026_CN_1km_R2025A_UA_v1.tif"
        );
        assert_eq!(
            WorldPopProvider::url("http://mock/GIS", "global1_100m", 2020, "sle"),
            "http://mock/GIS/Population/Global_2000_2020/2020/SLE/sle_ppp_2020_UNadj.tif"
        );
        assert!(
            WorldPopProvider::url("http://m", "global2_100m", 2024, "SLE")
                .ends_with("/2024/SLE/v1/100m/constrained/sle_pop_2024_CN_100m_R2025A_v1.tif")
        );
    }

    #[test]
    fn chirps_urls_follow_the_chc_layout() {
        let day = NaiveDate::from_ymd_opt(2024, 1, 3).expect("date");
        assert_eq!(
            Chirps3Provider::url(CHIRPS3_BASE_URL, "final", "rnl", day),
            "https://data.chc.ucsb.edu/products/CHIRPS/v3.0/daily/final/rnl/cogs/2024/chirps-v3.0.rnl.2024.01.03.cog"
        );
        assert_eq!(
            Chirps3Provider::url("http://m/v3.0/", "prelim", "sat", day),
            "http://m/v3.0/daily/prelim/sat/2024/chirps-v3.0.prelim.2024.01.03.tif"
        );
    }

    #[test]
    fn glob_literals_are_skipped() {
        let parts = parse_template("/d/*/pop_{year}.tif");
        let v = extract(&parts, "/d/any/dir/pop_2020.tif").expect("matches");
        assert_eq!(v.get("{year}"), Some(&2020));
    }
}
