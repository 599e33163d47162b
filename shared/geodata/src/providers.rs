//! Providers turn (template params, extent, period range) into decoded source fields.
//!
//! Each provider is one implementation of [`Provider`]; the pipeline only sees the resulting
//! [`SourceSet`]: for each period, which file and time step hold its field. Adding a provider
//! never touches the pipeline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{Datelike, NaiveDate};
use climate_domain::template::DatasetTemplate;
use climate_domain::{Extent, Period, PeriodType};

use crate::http::ProviderEnv;
use crate::raster::{self, GeoTiffSource, RangeFetch, RasterSource, RemoteTiff, TRANSIENT_IO};

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Upstream hiccup (5xx, timeout, truncated download): retry with backoff.
    Transient,
    /// Bad parameters, missing data, corrupt files: fail the run.
    Permanent,
    /// An upstream job is still running: come back after this many milliseconds, resuming
    /// from the state the provider left in [`LocateRequest::state`]. Waiting never holds a
    /// worker and uses no attempt.
    Pending {
        /// Suggested delay before the next attempt.
        after_ms: u64,
    },
}

/// A provider failure, naming the provider and the cause (never credentials).
#[derive(Debug, Clone, thiserror::Error)]
#[error("provider {provider}: {message}")]
pub struct ProviderError {
    /// Provider name.
    pub provider: &'static str,
    /// What went wrong.
    pub message: String,
    /// Retry classification.
    pub retry: Retry,
}

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
    /// A message naming the parameter and how to fix it.
    fn validate_params(&self, template: &DatasetTemplate) -> Result<(), String>;
    /// Finds (and for remote providers, fetches) the fields for the request.
    ///
    /// # Errors
    /// [`ProviderError`] classified as transient or permanent.
    async fn locate(&self, req: &LocateRequest<'_>) -> Result<SourceSet, ProviderError>;
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
        providers.insert(
            "era5_land_zarr",
            Arc::new(crate::remote_zarr::RemoteZarrProvider),
        );
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
    /// A message naming the provider or parameter.
    pub fn check(&self, template: &DatasetTemplate) -> Result<(), String> {
        let p = self.get(&template.ingestion.provider).ok_or_else(|| {
            format!(
                "unknown provider '{}': available providers are {}",
                template.ingestion.provider,
                self.names().join(", ")
            )
        })?;
        // Providers see the source period type of an aggregating template.
        p.validate_params(&template.source_template())
    }
}

/// Rejects parameters a provider does not know, naming them and the accepted ones.
pub(crate) fn check_param_names(
    provider: &str,
    params: &serde_json::Map<String, serde_json::Value>,
    allowed: &[&str],
) -> Result<(), String> {
    match params.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(format!(
            "unknown param '{key}' for provider {provider}: expected {}",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

/// The `base_url` parameter (an http(s) URL), or `default`.
pub(crate) fn base_url_param(
    params: &serde_json::Map<String, serde_json::Value>,
    default: &str,
) -> Result<String, String> {
    let base = match params.get("base_url") {
        None => default.to_owned(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => return Err("param 'base_url' must be a string".into()),
    };
    let parsed = url::Url::parse(&base).map_err(|e| format!("param 'base_url': {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("param 'base_url' must be an http(s) URL".into());
    }
    Ok(base)
}

// ---------------------------------------------------------------------------------------------
// file

/// Local files by glob or period template: `params: {path, variable?, period?}`.
///
/// `path` may contain glob characters (several NetCDF files are merged along time) and the
/// placeholders `{year}`, `{month}`, `{day}`, `{hour}`, which give the period of files without
/// a time axis. Otherwise such files take their period from the `period` param.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileProvider;

const PLACEHOLDERS: [(&str, usize); 4] =
    [("{year}", 4), ("{month}", 2), ("{day}", 2), ("{hour}", 2)];

fn perm(message: impl Into<String>) -> ProviderError {
    ProviderError {
        provider: "file",
        message: message.into(),
        retry: Retry::Permanent,
    }
}

/// Splits a path template into literal text and placeholders.
#[derive(Debug)]
enum Part {
    Lit(String),
    Ph(&'static str, usize),
}

fn parse_template(t: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = t;
    'outer: while !rest.is_empty() {
        if let Some(pos) = rest.find('{') {
            for (name, width) in PLACEHOLDERS {
                if rest[pos..].starts_with(name) {
                    if pos > 0 {
                        parts.push(Part::Lit(rest[..pos].to_owned()));
                    }
                    parts.push(Part::Ph(name, width));
                    rest = &rest[pos + name.len()..];
                    continue 'outer;
                }
            }
            parts.push(Part::Lit(rest[..=pos].to_owned()));
            rest = &rest[pos + 1..];
        } else {
            parts.push(Part::Lit(rest.to_owned()));
            break;
        }
    }
    parts
}

/// Extracts placeholder values from a concrete path matching the template. Literal parts may
/// hold glob characters, so only placeholders adjacent to plain literals are supported, which is
/// every practical layout (`…_{year}_1km.tif`, `…/{year}/{month}/x.{year}.{month}.{day}.tif`).
fn extract(parts: &[Part], path: &str) -> Option<BTreeMap<&'static str, u32>> {
    let mut values = BTreeMap::new();
    let mut pos = 0;
    for (i, part) in parts.iter().enumerate() {
        match part {
            Part::Lit(l) => {
                if l.contains(['*', '?', '[']) {
                    // Skip a glob literal by finding the next literal after the next placeholder.
                    let next_lit = parts[i + 1..].iter().find_map(|p| match p {
                        Part::Lit(l) => Some(l.as_str()),
                        Part::Ph(..) => None,
                    });
                    let width: usize = match parts.get(i + 1) {
                        Some(Part::Ph(_, w)) => *w,
                        _ => 0,
                    };
                    let after_ph = next_lit.unwrap_or("");
                    // Search from the end for "placeholder digits + next literal".
                    let hay = &path[pos..];
                    let found = (0..=hay.len().saturating_sub(width)).rev().find(|&k| {
                        hay.get(k..k + width)
                            .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
                            && hay[k + width..].starts_with(after_ph)
                    })?;
                    pos += found;
                } else {
                    if !path[pos..].starts_with(l.as_str()) {
                        return None;
                    }
                    pos += l.len();
                }
            }
            Part::Ph(name, width) => {
                let digits = path.get(pos..pos + width)?;
                if !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let v: u32 = digits.parse().ok()?;
                if let Some(prev) = values.insert(*name, v)
                    && prev != v
                {
                    return None;
                }
                pos += width;
            }
        }
    }
    (pos == path.len()).then_some(values)
}

fn placeholder_period(kind: PeriodType, values: &BTreeMap<&'static str, u32>) -> Option<Period> {
    let year = i32::try_from(*values.get("{year}")?).ok()?;
    let month = values.get("{month}").copied().unwrap_or(1);
    let day = values.get("{day}").copied().unwrap_or(1);
    let hour = values.get("{hour}").copied().unwrap_or(0);
    let t = NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(hour, 0, 0)?;
    Some(Period::containing(kind, t))
}

impl FileProvider {
    fn params(
        template: &DatasetTemplate,
    ) -> Result<(String, Option<String>, Option<String>), String> {
        let p = &template.ingestion.params;
        check_param_names("file", p, &["path", "variable", "period"])?;
        let path = p
            .get("path")
            .and_then(|v| v.as_str())
            .ok_or("param 'path' (a file path, glob or {year}/{month}/{day} template) is required")?
            .to_owned();
        let s = |k: &str| -> Result<Option<String>, String> {
            match p.get(k) {
                None => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err(format!("param '{k}' must be a string")),
            }
        };
        Ok((path, s("variable")?, s("period")?))
    }
}

#[async_trait]
impl Provider for FileProvider {
    fn name(&self) -> &'static str {
        "file"
    }

    fn validate_params(&self, template: &DatasetTemplate) -> Result<(), String> {
        let (_, _, period) = Self::params(template)?;
        if let Some(p) = period {
            Period::parse(template.period_type, &p).map_err(|e| format!("param 'period': {e}"))?;
        }
        Ok(())
    }

    async fn locate(&self, req: &LocateRequest<'_>) -> Result<SourceSet, ProviderError> {
        let (path, variable, period) = Self::params(req.template).map_err(perm)?;
        let full = if Path::new(&path).is_absolute() {
            PathBuf::from(&path)
        } else {
            req.base_dir.join(&path)
        };
        // Globbing returns normalised paths; match placeholders against the same form.
        let full = std::path::absolute(&full).unwrap_or(full);
        let full = full.to_string_lossy().into_owned();
        let kind = req.template.period_type;
        let fixed_period = period
            .map(|p| Period::parse(kind, &p).map_err(|e| perm(format!("param 'period': {e}"))))
            .transpose()?;
        locate_files(
            "file",
            full,
            variable.or_else(|| Some(req.template.variable.clone())),
            fixed_period,
            kind,
            req.start,
            req.end,
        )
        .await
    }
}

/// Finds the fields of `start ..= end` (or up to the last available) in local files matching
/// `full` (an absolute path that may hold glob characters and `{year}`-style placeholders).
/// Shared by the providers whose data ends up in local files (`file`, `command`).
async fn locate_files(
    provider: &'static str,
    full: String,
    var: Option<String>,
    fixed_period: Option<Period>,
    kind: PeriodType,
    req_start: Period,
    req_end: Option<Period>,
) -> Result<SourceSet, ProviderError> {
    let perm = |message: String| ProviderError {
        provider,
        message,
        retry: Retry::Permanent,
    };
    let parts = parse_template(&full);
    let has_placeholders = parts.iter().any(|p| matches!(p, Part::Ph(..)));
    let mut pattern = full.clone();
    for (name, width) in PLACEHOLDERS {
        pattern = pattern.replace(name, &"[0-9]".repeat(width));
    }
    // Globbing and decoding headers is blocking file I/O.
    tokio::task::spawn_blocking(move || {
        let files: Vec<PathBuf> = glob::glob(&pattern)
            .map_err(|e| perm(format!("invalid path pattern '{full}': {e}")))?
            .filter_map(Result::ok)
            .collect();
        if files.is_empty() {
            return Err(perm(format!("no file matches '{full}'")));
        }
        let mut steps: BTreeMap<Period, Step> = BTreeMap::new();
        let mut origin: BTreeMap<Period, String> = BTreeMap::new();
        for file in files {
            let file_period = if has_placeholders {
                let values = extract(&parts, &file.to_string_lossy())
                    .ok_or_else(|| perm(format!("{}: does not match '{full}'", file.display())))?;
                Some(placeholder_period(kind, &values).ok_or_else(|| {
                    perm(format!("{}: placeholders do not form a valid date", file.display()))
                })?)
            } else {
                fixed_period
            };
            // Skip files wholly outside the request before decoding them.
            if let Some(p) = file_period
                && (p < req_start || req_end.is_some_and(|e| p > e))
            {
                continue;
            }
            let name = var.clone();
            let source: Arc<dyn RasterSource> = match raster::open(&file, name.as_deref()) {
                Ok(s) => Arc::from(s),
                // The template's variable name is only a hint for NetCDF; retry without it.
                Err(_) if name.is_some() && file_period.is_none() => {
                    Arc::from(raster::open(&file, None).map_err(|e| perm(e.to_string()))?)
                }
                Err(e) => return Err(perm(e.to_string())),
            };
            let found: Vec<(Period, usize)> = if source.times().is_empty() {
                let p = file_period.ok_or_else(|| {
                    perm(format!(
                        "{}: the file has no time axis: set the 'period' param or put {{year}}/{{month}}/{{day}} in the path",
                        file.display()
                    ))
                })?;
                vec![(p, 0)]
            } else {
                source
                    .times()
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (Period::containing(kind, *t), i))
                    .collect()
            };
            for (p, i) in found {
                if p < req_start || req_end.is_some_and(|e| p > e) {
                    continue;
                }
                let here = format!("{} step {i}", file.display());
                if let Some(prev) = origin.insert(p, here.clone()) {
                    return Err(perm(format!(
                        "two source fields fall in {kind} period {p} ({prev} and {here}): the source is finer than the template's period type"
                    )));
                }
                steps.insert(
                    p,
                    Step {
                        source: source.clone(),
                        time_index: i,
                    },
                );
            }
        }
        Ok(SourceSet { steps })
    })
    .await
    .map_err(|e| perm(format!("{provider} provider task failed: {e}")))?
}

// ---------------------------------------------------------------------------------------------
// worldpop_yearly

/// WorldPop population counts, one GeoTIFF per country and year, downloaded whole (the server
/// advertises but ignores HTTP ranges):
/// `params: {base_url?, product?}` with `product` one of `global2_100m` (default, R2025A
/// constrained 100 m), `global2_1km` (R2025A constrained 1 km) or `global1_100m` (2000–2020
/// unconstrained, UN-adjusted). The country is the extent's `country_code`.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorldPopProvider;

/// Real upstream root.
pub const WORLDPOP_BASE_URL: &str = "https://data.worldpop.org/GIS/";

const WORLDPOP_PRODUCTS: [(&str, i32, i32); 3] = [
    ("global2_100m", 2015, 2030),
    ("global2_1km", 2015, 2030),
    ("global1_100m", 2000, 2020),
];

impl WorldPopProvider {
    fn params(template: &DatasetTemplate) -> Result<(String, &'static str, i32, i32), String> {
        let p = &template.ingestion.params;
        check_param_names("worldpop_yearly", p, &["base_url", "product"])?;
        let base = base_url_param(p, WORLDPOP_BASE_URL)?;
        let product = p
            .get("product")
            .and_then(|v| v.as_str())
            .unwrap_or("global2_100m");
        let (name, first, last) = WORLDPOP_PRODUCTS
            .iter()
            .find(|(n, ..)| *n == product)
            .copied()
            .ok_or_else(|| {
                format!("param 'product': unknown WorldPop product '{product}': expected global2_100m, global2_1km or global1_100m")
            })?;
        if template.period_type != PeriodType::Yearly {
            return Err("worldpop_yearly needs period_type: yearly".into());
        }
        Ok((base, name, first, last))
    }

    /// The file URL of a product, year and country (ISO3 upper case in directories, lower case
    /// in file names).
    pub fn url(base: &str, product: &str, year: i32, iso3: &str) -> String {
        let base = base.trim_end_matches('/');
        let (up, low) = (iso3.to_ascii_uppercase(), iso3.to_ascii_lowercase());
        match product {
            "global2_1km" => format!(
                "{base}/Population/Global_2015_2030/R2025A/{year}/{up}/v1/1km_ua/constrained/{low}_pop_{year}_CN_1km_R2025A_UA_v1.tif"
            ),
            "global1_100m" => {
                format!("{base}/Population/Global_2000_2020/{year}/{up}/{low}_ppp_{year}_UNadj.tif")
            }
            _ => format!(
                "{base}/Population/Global_2015_2030/R2025A/{year}/{up}/v1/100m/constrained/{low}_pop_{year}_CN_100m_R2025A_v1.tif"
            ),
        }
    }
}

#[async_trait]
impl Provider for WorldPopProvider {
    fn name(&self) -> &'static str {
        "worldpop_yearly"
    }

    fn validate_params(&self, template: &DatasetTemplate) -> Result<(), String> {
        Self::params(template).map(|_| ())
    }

    async fn locate(&self, req: &LocateRequest<'_>) -> Result<SourceSet, ProviderError> {
        let (base, product, first, last) =
            Self::params(req.template).map_err(|m| ProviderError {
                provider: "worldpop_yearly",
                message: m,
                retry: Retry::Permanent,
            })?;
        let perm = |message: String| ProviderError {
            provider: "worldpop_yearly",
            message,
            retry: Retry::Permanent,
        };
        let iso3 = req.extent.country_code.as_deref().ok_or_else(|| {
            perm(format!(
                "extent '{}' has no country_code: WorldPop files are per country, set the extent's ISO 3166-1 alpha-3 code (e.g. SLE)",
                req.extent.extent_id
            ))
        })?;
        let year = |p: &Period| p.start().date().year();
        let (y0, open_end) = (year(&req.start), req.end.is_none());
        let y1 = req.end.as_ref().map_or(last, year);
        if y0 < first || (y1 > last && !open_end) {
            return Err(perm(format!(
                "WorldPop {product} covers {first} to {last}; the request asks for {y0} to {y1}"
            )));
        }
        let validate = |p: &Path| GeoTiffSource::open(p).map(|_| ()).map_err(|e| e.message);
        let mut steps = BTreeMap::new();
        for y in y0..=y1.min(last) {
            let url = Self::url(&base, product, y, iso3);
            let fetched = match req
                .env
                .downloader("worldpop_yearly")
                .fetch("worldpop_yearly", &url, &validate)
                .await
            {
                Ok(f) => f,
                // With an open end, the first year not published yet ends the range.
                Err(e) if open_end && y > y0 && e.message.contains("HTTP 404") => break,
                Err(e) => return Err(e),
            };
            let path = fetched.path.clone();
            let source = tokio::task::spawn_blocking(move || GeoTiffSource::open(&path))
                .await
                .map_err(|e| perm(format!("decoder task failed: {e}")))?
                .map_err(|e| perm(e.to_string()))?;
            let p = Period::containing(
                PeriodType::Yearly,
                NaiveDate::from_ymd_opt(y, 1, 1)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .ok_or_else(|| perm(format!("invalid year {y}")))?,
            );
            steps.insert(
                p,
                Step {
                    source: Arc::new(source),
                    time_index: 0,
                },
            );
        }
        Ok(SourceSet { steps })
    }
}

// ---------------------------------------------------------------------------------------------
// chirps3_daily

/// CHIRPS v3 daily rainfall from CHC: one Cloud-Optimised GeoTIFF per day, read by HTTP range
/// requests so that only the header and the tiles intersecting the extent are fetched.
/// `params: {base_url?, stage?: final|prelim, flavor?: rnl|sat}`. −9999 is always missing,
/// tagged or not (real files carry it as a value).
#[derive(Debug, Clone, Copy, Default)]
pub struct Chirps3Provider;

/// Real upstream root.
pub const CHIRPS3_BASE_URL: &str = "https://data.chc.ucsb.edu/products/CHIRPS/v3.0";

/// Days looked up at once (HEAD + header each).
const CHIRPS3_LOOKAHEAD: usize = 8;

/// Longest open-ended run, in days, when probing for the latest published day.
const CHIRPS3_MAX_OPEN_DAYS: i64 = 400;

impl Chirps3Provider {
    fn params(template: &DatasetTemplate) -> Result<(String, String, String), String> {
        let p = &template.ingestion.params;
        check_param_names("chirps3_daily", p, &["base_url", "stage", "flavor"])?;
        let get = |k: &str, default: &str| -> Result<String, String> {
            match p.get(k) {
                None => Ok(default.to_owned()),
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(format!("param '{k}' must be a string")),
            }
        };
        let base = base_url_param(p, CHIRPS3_BASE_URL)?;
        let stage = get("stage", "final")?;
        let flavor = get("flavor", "rnl")?;
        match (stage.as_str(), flavor.as_str()) {
            ("final", "rnl" | "sat") | ("prelim", "sat") => {}
            ("prelim", _) => return Err("param 'flavor': prelim data exists only as sat".into()),
            _ => {
                return Err(format!(
                    "params 'stage'/'flavor': expected final with rnl or sat, or prelim with sat (got {stage}/{flavor})"
                ));
            }
        }
        if template.period_type != PeriodType::Daily {
            return Err("chirps3_daily needs period_type: daily".into());
        }
        Ok((base, stage, flavor))
    }

    /// The URL of one day's file, following CHC's layout.
    pub fn url(base: &str, stage: &str, flavor: &str, day: NaiveDate) -> String {
        let base = base.trim_end_matches('/');
        let (y, m, d) = (day.year(), day.month(), day.day());
        if stage == "prelim" {
            format!("{base}/daily/prelim/sat/{y}/chirps-v3.0.prelim.{y}.{m:02}.{d:02}.tif")
        } else {
            format!(
                "{base}/daily/final/{flavor}/cogs/{y}/chirps-v3.0.{flavor}.{y}.{m:02}.{d:02}.cog"
            )
        }
    }
}

#[async_trait]
impl Provider for Chirps3Provider {
    fn name(&self) -> &'static str {
        "chirps3_daily"
    }

    fn validate_params(&self, template: &DatasetTemplate) -> Result<(), String> {
        Self::params(template).map(|_| ())
    }

    async fn locate(&self, req: &LocateRequest<'_>) -> Result<SourceSet, ProviderError> {
        const NAME: &str = "chirps3_daily";
        let perm = |message: String| ProviderError {
            provider: NAME,
            message,
            retry: Retry::Permanent,
        };
        let (base, stage, flavor) = Self::params(req.template).map_err(perm)?;
        let dl = req.env.downloader(NAME).clone();
        let first = req.start.start().date();
        let (last, open_end) = match req.end {
            Some(e) => (e.start().date(), false),
            None => (
                first + chrono::Duration::days(CHIRPS3_MAX_OPEN_DAYS - 1),
                true,
            ),
        };
        let handle = tokio::runtime::Handle::current();
        // Each day costs a HEAD and a header read: look days up concurrently (the downloader's
        // per-provider limit still bounds the connections), in order.
        let days: Vec<NaiveDate> = first.iter_days().take_while(|d| *d <= last).collect();
        let lookups = days.into_iter().map(|day| {
            let (dl, handle) = (dl.clone(), handle.clone());
            let (base, stage, flavor) = (base.clone(), stage.clone(), flavor.clone());
            async move {
                let url = Self::url(&base, &stage, &flavor, day);
                let shown = crate::http::redact_url(&url);
                let Some(len) = dl.head(NAME, &url).await? else {
                    return Ok::<_, ProviderError>((day, shown, None));
                };
                let fetch: RangeFetch = {
                    let url = url.clone();
                    Arc::new(move |offset, n| {
                        handle
                            .block_on(dl.fetch_range(NAME, &url, offset, n))
                            .map_err(|e| {
                                let kind = if e.retry == Retry::Transient {
                                    TRANSIENT_IO
                                } else {
                                    std::io::ErrorKind::Other
                                };
                                std::io::Error::new(kind, e.message)
                            })
                    })
                };
                let label = shown.clone();
                let source = tokio::task::spawn_blocking(move || {
                    RemoteTiff::open(&label, len, fetch, &[-9999.0])
                })
                .await
                .map_err(|e| ProviderError {
                    provider: NAME,
                    message: format!("decoder task failed: {e}"),
                    retry: Retry::Permanent,
                })?
                .map_err(|e| ProviderError {
                    provider: NAME,
                    retry: if e.transient {
                        Retry::Transient
                    } else {
                        Retry::Permanent
                    },
                    message: e.to_string(),
                })?;
                Ok((day, shown, Some(source)))
            }
        });
        let mut found =
            futures::StreamExt::buffered(futures::stream::iter(lookups), CHIRPS3_LOOKAHEAD);
        let mut steps = BTreeMap::new();
        while let Some(result) = futures::StreamExt::next(&mut found).await {
            let (day, shown, source) = result?;
            let Some(source) = source else {
                // With an open end, the first day not published yet ends the range.
                if open_end && day > first {
                    break;
                }
                return Err(perm(format!(
                    "{shown}: HTTP 404 Not Found: day {day} is not published"
                )));
            };
            let p = Period::containing(
                PeriodType::Daily,
                day.and_hms_opt(0, 0, 0)
                    .ok_or_else(|| perm(format!("invalid day {day}")))?,
            );
            steps.insert(
                p,
                Step {
                    source: Arc::new(source),
                    time_index: 0,
                },
            );
        }
        Ok(SourceSet { steps })
    }
}

// ---------------------------------------------------------------------------------------------
// http_template

/// Any HTTP(S) URL template with period placeholders (`{year}`, `{month}`, `{day}`, `{hour}`,
/// `{doy}`), NetCDF or GeoTIFF: `params: {url, variable?}`. Files are downloaded whole through
/// the cache; a URL may hold several periods (a monthly NetCDF of daily steps), each fetched
/// once. Open-ended runs stop at the first period whose file is not published (404).
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpTemplateProvider;

/// Fills `{year}`, `{month}`, `{day}`, `{hour}` and `{doy}` from a period's start.
pub fn fill_period_template(template: &str, p: &Period) -> String {
    let t = p.start();
    template
        .replace("{year}", &format!("{:04}", t.date().year()))
        .replace("{month}", &format!("{:02}", t.date().month()))
        .replace("{day}", &format!("{:02}", t.date().day()))
        .replace("{hour}", &format!("{:02}", chrono::Timelike::hour(&t)))
        .replace("{doy}", &format!("{:03}", t.date().ordinal()))
}

impl HttpTemplateProvider {
    fn params(template: &DatasetTemplate) -> Result<(String, Option<String>), String> {
        let p = &template.ingestion.params;
        check_param_names("http_template", p, &["url", "variable"])?;
        let url = p
            .get("url")
            .and_then(|v| v.as_str())
            .ok_or("param 'url' (an http(s) URL template with {year}, {month}, {day}, … placeholders) is required")?
            .to_owned();
        let sample = url
            .replace("{year}", "2000")
            .replace("{month}", "01")
            .replace("{day}", "01")
            .replace("{hour}", "00")
            .replace("{doy}", "001");
        let parsed = url::Url::parse(&sample).map_err(|e| format!("param 'url': {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("param 'url' must be an http(s) URL".into());
        }
        let ext = parsed
            .path()
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !matches!(ext.as_str(), "nc" | "nc4" | "tif" | "tiff" | "cog") {
            return Err(
                "param 'url' must end in .nc, .nc4, .tif, .tiff or .cog (the file type)".into(),
            );
        }
        let variable = p
            .get("variable")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        Ok((url, variable))
    }
}

#[async_trait]
impl Provider for HttpTemplateProvider {
    fn name(&self) -> &'static str {
        "http_template"
    }

    fn validate_params(&self, template: &DatasetTemplate) -> Result<(), String> {
        Self::params(template).map(|_| ())
    }

    async fn locate(&self, req: &LocateRequest<'_>) -> Result<SourceSet, ProviderError> {
        const NAME: &str = "http_template";
        let perm = |message: String| ProviderError {
            provider: NAME,
            message,
            retry: Retry::Permanent,
        };
        let (template_url, variable) = Self::params(req.template).map_err(perm)?;
        let variable = variable.or_else(|| Some(req.template.variable.clone()));
        let kind = req.template.period_type;
        let (last, open_end) = match req.end {
            Some(e) => (e, false),
            None => (req.start.offset(CHIRPS3_MAX_OPEN_DAYS - 1), true),
        };
        let dl = req.env.downloader(NAME).clone();
        let validate = {
            let variable = variable.clone();
            move |p: &Path| {
                raster::open(p, variable.as_deref())
                    .map(|_| ())
                    .or_else(|_| raster::open(p, None).map(|_| ()))
                    .map_err(|e| e.message)
            }
        };
        let mut steps: BTreeMap<Period, Step> = BTreeMap::new();
        let mut previous: Option<String> = None;
        let mut p = req.start;
        while p <= last {
            let url = fill_period_template(&template_url, &p);
            if previous.as_deref() == Some(url.as_str()) {
                if !steps.contains_key(&p) {
                    return Err(perm(format!(
                        "{}: the URL does not change between {kind} periods and the file has no step for {p}",
                        crate::http::redact_url(&url)
                    )));
                }
                p = p.next();
                continue;
            }
            let fetched = match dl.fetch(NAME, &url, &validate).await {
                Ok(f) => f,
                Err(e) if open_end && p > req.start && e.message.contains("HTTP 404") => break,
                Err(e) => return Err(e),
            };
            let (path, var) = (fetched.path.clone(), variable.clone());
            let source: Arc<dyn RasterSource> = tokio::task::spawn_blocking(move || {
                raster::open(&path, var.as_deref()).or_else(|_| raster::open(&path, None))
            })
            .await
            .map_err(|e| perm(format!("decoder task failed: {e}")))?
            .map(Arc::from)
            .map_err(|e| perm(e.to_string()))?;
            if source.times().is_empty() {
                steps.insert(
                    p,
                    Step {
                        source: source.clone(),
                        time_index: 0,
                    },
                );
            } else {
                for (i, t) in source.times().iter().enumerate() {
                    let q = Period::containing(kind, *t);
                    if q >= req.start && q <= last {
                        steps.insert(
                            q,
                            Step {
                                source: source.clone(),
                                time_index: i,
                            },
                        );
                    }
                }
            }
            previous = Some(url);
            p = p.next();
        }
        Ok(SourceSet { steps })
    }
}

// ---------------------------------------------------------------------------------------------
// command

/// An external program (any language) that writes NetCDF or GeoTIFF files into a directory:
/// `params: {program, args?, pattern?, variable?, period?, timeout_seconds?}`. It is run as
/// `program --start S --end E --bbox W,S,E,N --dir DIR [args…]`; the files matching `pattern`
/// (default `*`, with `{year}`-style placeholders for files without a time axis) are then read
/// like the `file` provider's. A non-zero exit fails the run with the tail of its stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommandProvider;

impl CommandProvider {
    fn params(template: &DatasetTemplate) -> Result<CommandParams, String> {
        let p = &template.ingestion.params;
        check_param_names(
            "command",
            p,
            &[
                "program",
                "args",
                "pattern",
                "variable",
                "period",
                "timeout_seconds",
            ],
        )?;
        let s = |k: &str| p.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let program = s("program").ok_or("param 'program' (the executable to run) is required")?;
        let args = match p.get("args") {
            None => Vec::new(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or("param 'args' must be a list of strings")
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("param 'args' must be a list of strings".into()),
        };
        let pattern = s("pattern").unwrap_or_else(|| "*".into());
        if pattern.contains("..") || pattern.starts_with('/') {
            return Err(
                "param 'pattern' is a file name pattern inside the output directory".into(),
            );
        }
        let timeout = p
            .get("timeout_seconds")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(3600);
        Ok(CommandParams {
            program,
            args,
            pattern,
            variable: s("variable"),
            period: s("period"),
            timeout: std::time::Duration::from_secs(timeout.max(1)),
        })
    }
}

#[derive(Debug)]
struct CommandParams {
    program: String,
    args: Vec<String>,
    pattern: String,
    variable: Option<String>,
    period: Option<String>,
    timeout: std::time::Duration,
}

#[async_trait]
impl Provider for CommandProvider {
    fn name(&self) -> &'static str {
        "command"
    }

    fn validate_params(&self, template: &DatasetTemplate) -> Result<(), String> {
        let c = Self::params(template)?;
        if let Some(p) = c.period {
            Period::parse(template.period_type, &p).map_err(|e| format!("param 'period': {e}"))?;
        }
        Ok(())
    }

    async fn locate(&self, req: &LocateRequest<'_>) -> Result<SourceSet, ProviderError> {
        const NAME: &str = "command";
        let err = |retry: Retry, message: String| ProviderError {
            provider: NAME,
            message,
            retry,
        };
        let c = Self::params(req.template).map_err(|m| err(Retry::Permanent, m))?;
        let end = req.end.ok_or_else(|| {
            err(
                Retry::Permanent,
                "the command provider needs an end period: give `end` in the request".into(),
            )
        })?;
        let program = if c.program.contains('/') && !Path::new(&c.program).is_absolute() {
            req.base_dir.join(&c.program)
        } else {
            PathBuf::from(&c.program)
        };
        let dir = req.env.scratch_dir(&format!("command/{:016x}", rand_id()));
        tokio::fs::create_dir_all(&dir).await.map_err(|e| {
            err(
                Retry::Transient,
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
        let b = req.extent.bbox;
        let mut cmd = tokio::process::Command::new(&program);
        cmd.arg("--start")
            .arg(req.start.canonical())
            .arg("--end")
            .arg(end.canonical())
            .arg("--bbox")
            .arg(format!(
                "{},{},{},{}",
                b.west(),
                b.south(),
                b.east(),
                b.north()
            ))
            .arg("--dir")
            .arg(&dir)
            .args(&c.args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let shown = program.display().to_string();
        let child = cmd
            .spawn()
            .map_err(|e| err(Retry::Permanent, format!("cannot run {shown}: {e}")))?;
        let out = match tokio::time::timeout(c.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(err(Retry::Transient, format!("{shown}: {e}"))),
            Err(_) => {
                return Err(err(
                    Retry::Transient,
                    format!("{shown} timed out after {} s", c.timeout.as_secs()),
                ));
            }
        };
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: String = stderr
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(err(
                Retry::Permanent,
                format!("{shown} exited with {}: {}", out.status, tail.trim()),
            ));
        }
        let kind = req.template.period_type;
        let fixed = c
            .period
            .map(|p| {
                Period::parse(kind, &p)
                    .map_err(|e| err(Retry::Permanent, format!("param 'period': {e}")))
            })
            .transpose()?;
        let full = dir.join(&c.pattern).to_string_lossy().into_owned();
        locate_files(
            NAME,
            full,
            c.variable.or_else(|| Some(req.template.variable.clone())),
            fixed,
            kind,
            req.start,
            Some(end),
        )
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// era5_land_cds

/// ERA5-Land from the Copernicus Climate Data Store: one asynchronous CDS job per month of the
/// scope (submit → poll → results → download). While a job runs the provider answers
/// [`Retry::Pending`] with the job ids in its state, so no worker waits; the next attempt
/// resumes polling. Downloads are cached by the request's content, so a later sync or a segment
/// reads them without asking CDS again. A vanished job or an expired download link is requested
/// again. `params: {variable, base_url?, dataset?, nc_variable?, poll_seconds?}`; the API key is
/// `providers.era5_land_cds.api_key`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CdsProvider;

/// Real CDS API root.
pub const CDS_BASE_URL: &str = "https://cds.climate.copernicus.eu/api";

struct CdsParams {
    base: String,
    dataset: String,
    variable: String,
    nc_variable: Option<String>,
    poll: u64,
}

impl CdsProvider {
    fn params(template: &DatasetTemplate) -> Result<CdsParams, String> {
        let p = &template.ingestion.params;
        check_param_names(
            "era5_land_cds",
            p,
            &[
                "variable",
                "base_url",
                "dataset",
                "nc_variable",
                "poll_seconds",
            ],
        )?;
        let s = |k: &str| p.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let base = base_url_param(p, CDS_BASE_URL)?;
        let variable = s("variable")
            .ok_or("param 'variable' (the CDS variable name, e.g. 2m_temperature) is required")?;
        if !matches!(template.period_type, PeriodType::Hourly) {
            return Err("era5_land_cds delivers hourly data: use period_type: hourly".into());
        }
        Ok(CdsParams {
            base: base.trim_end_matches('/').to_owned(),
            dataset: s("dataset").unwrap_or_else(|| "reanalysis-era5-land".into()),
            variable,
            nc_variable: s("nc_variable"),
            poll: p
                .get("poll_seconds")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(30)
                .max(1),
        })
    }
}

/// What a month's job is doing.
enum JobState {
    Ready(PathBuf),
    Waiting(String),
}

#[async_trait]
impl Provider for CdsProvider {
    fn name(&self) -> &'static str {
        "era5_land_cds"
    }

    fn validate_params(&self, template: &DatasetTemplate) -> Result<(), String> {
        Self::params(template).map(|_| ())
    }

    async fn locate(&self, req: &LocateRequest<'_>) -> Result<SourceSet, ProviderError> {
        const NAME: &str = "era5_land_cds";
        let perm = |message: String| ProviderError {
            provider: NAME,
            message,
            retry: Retry::Permanent,
        };
        let c = Self::params(req.template).map_err(perm)?;
        let dl = req.env.downloader(NAME).clone();
        let key = dl
            .api_key()
            .ok_or_else(|| perm("no CDS API key: set providers.era5_land_cds.api_key (from your CDS profile page)".into()))?
            .to_owned();
        let end = req.end.ok_or_else(|| {
            perm("era5_land_cds needs an end period: give `end` in the request".into())
        })?;
        let b = req.extent.bbox;
        let mut state = req
            .state
            .lock()
            .map(|s| s.clone())
            .unwrap_or(serde_json::Value::Null);
        if !state.is_object() {
            state = serde_json::json!({"jobs": {}});
        }

        // One request per calendar month of the scope.
        let mut months: BTreeMap<(i32, u32), Vec<NaiveDate>> = BTreeMap::new();
        let mut p = req.start;
        while p <= end {
            let d = p.start().date();
            let days = months.entry((d.year(), d.month())).or_default();
            if days.last() != Some(&d) {
                days.push(d);
            }
            p = p.next();
        }
        let mut files = Vec::new();
        let mut waiting = Vec::new();
        for ((year, month), days) in &months {
            let inputs = serde_json::json!({
                "variable": [c.variable],
                "year": format!("{year:04}"),
                "month": format!("{month:02}"),
                "day": days.iter().map(|d| format!("{:02}", d.day())).collect::<Vec<_>>(),
                "time": (0..24).map(|h| format!("{h:02}:00")).collect::<Vec<_>>(),
                "data_format": "netcdf",
                "download_format": "unarchived",
                "area": [b.north(), b.west(), b.south(), b.east()],
            });
            let digest = inputs
                .to_string()
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325_u64, |h, x| {
                    (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
                });
            let cache = format!(
                "cache/cds/{}/{year:04}-{month:02}-{digest:016x}.nc",
                c.dataset
            );
            let var = c
                .nc_variable
                .clone()
                .unwrap_or_else(|| req.template.variable.clone());
            match self
                .month(&c, &dl, &key, &inputs, &cache, &var, &mut state)
                .await?
            {
                JobState::Ready(path) => files.push(path),
                JobState::Waiting(what) => waiting.push(what),
            }
        }
        if let Ok(mut s) = req.state.lock() {
            *s = state;
        }
        if !waiting.is_empty() {
            return Err(ProviderError {
                provider: NAME,
                message: format!("waiting for CDS: {}", waiting.join("; ")),
                retry: Retry::Pending {
                    after_ms: c.poll * 1000,
                },
            });
        }
        let kind = req.template.period_type;
        let var = c
            .nc_variable
            .clone()
            .or_else(|| Some(req.template.variable.clone()));
        let mut steps = BTreeMap::new();
        for path in files {
            let v = var.clone();
            let source: Arc<dyn RasterSource> =
                tokio::task::spawn_blocking(move || raster::open(&path, v.as_deref()))
                    .await
                    .map_err(|e| perm(format!("decoder task failed: {e}")))?
                    .map(Arc::from)
                    .map_err(|e| perm(e.to_string()))?;
            for (i, t) in source.times().iter().enumerate() {
                let q = Period::containing(kind, *t);
                if q >= req.start && q <= end {
                    steps.insert(
                        q,
                        Step {
                            source: source.clone(),
                            time_index: i,
                        },
                    );
                }
            }
        }
        Ok(SourceSet { steps })
    }
}

impl CdsProvider {
    /// Advances one month's job: cached file, or poll/submit/download. Job ids live in
    /// `state.jobs[cache key]`.
    #[expect(clippy::too_many_arguments, reason = "private helper with one caller")]
    async fn month(
        &self,
        c: &CdsParams,
        dl: &crate::http::Downloader,
        key: &str,
        inputs: &serde_json::Value,
        cache: &str,
        variable: &str,
        state: &mut serde_json::Value,
    ) -> Result<JobState, ProviderError> {
        const NAME: &str = "era5_land_cds";
        let perm = |message: String| ProviderError {
            provider: NAME,
            message,
            retry: Retry::Permanent,
        };
        if let Some(f) = dl.cached(NAME, cache).await? {
            return Ok(JobState::Ready(f.path));
        }
        let auth = [("PRIVATE-TOKEN", key)];
        let title = |v: &serde_json::Value| {
            [v.get("title"), v.get("detail")]
                .into_iter()
                .flatten()
                .filter_map(serde_json::Value::as_str)
                .collect::<Vec<_>>()
                .join(": ")
        };
        let job = state["jobs"][cache].as_str().map(str::to_owned);
        if let Some(id) = job {
            let job_url = format!("{}/retrieve/v1/jobs/{id}", c.base);
            let (status, body) = dl
                .request_json(NAME, reqwest::Method::GET, &job_url, &auth, None)
                .await?;
            if status == 404 {
                // Dismissed or expired upstream: request again.
                tracing::warn!(job = %id, "CDS job vanished; submitting again");
                forget_job(state, cache, &format!("job {id} vanished"))?;
            } else if status == 401 || status == 403 {
                return Err(perm(format!(
                    "CDS rejected the API key ({status}): {}",
                    title(&body)
                )));
            } else {
                match body["status"].as_str().unwrap_or_default() {
                    "accepted" | "running" => {
                        return Ok(JobState::Waiting(format!(
                            "job {id} {}",
                            body["status"].as_str().unwrap_or_default()
                        )));
                    }
                    "successful" => {
                        let results_url = body["links"]
                            .as_array()
                            .and_then(|l| l.iter().find(|x| x["rel"] == "results"))
                            .and_then(|x| x["href"].as_str())
                            // Links may be relative: resolve them against the job URL.
                            .and_then(|h| url::Url::parse(&job_url).and_then(|u| u.join(h)).ok())
                            .map_or_else(|| format!("{job_url}/results"), |u| u.to_string());
                        let (rs, results) = dl
                            .request_json(NAME, reqwest::Method::GET, &results_url, &auth, None)
                            .await?;
                        let href = results["asset"]["value"]["href"]
                            .as_str()
                            .map(str::to_owned);
                        let Some(href) = href.filter(|_| rs == 200) else {
                            return Err(perm(format!(
                                "CDS job {id} has no downloadable result ({rs})"
                            )));
                        };
                        let href = url::Url::parse(&results_url)
                            .and_then(|u| u.join(&href))
                            .map(|u| u.to_string())
                            .unwrap_or(href);
                        let validate = |p: &Path| {
                            raster::open(p, Some(variable))
                                .map(|_| ())
                                .map_err(|e| e.message)
                        };
                        match dl.fetch_keyed(NAME, &href, cache, &validate).await {
                            Ok(f) => {
                                state["jobs"].as_object_mut().map(|m| m.remove(cache));
                                return Ok(JobState::Ready(f.path));
                            }
                            // Download links expire: ask CDS for the data again.
                            Err(e)
                                if e.message.contains("HTTP 404")
                                    || e.message.contains("HTTP 403") =>
                            {
                                tracing::warn!(job = %id, error = %e, "CDS download link expired; submitting again");
                                forget_job(state, cache, &e.message)?;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    "failed" | "rejected" => {
                        let (_, err) = dl
                            .request_json(
                                NAME,
                                reqwest::Method::GET,
                                &format!("{job_url}/results"),
                                &auth,
                                None,
                            )
                            .await
                            .unwrap_or((0, serde_json::Value::Null));
                        return Err(perm(format!("CDS job {id} failed: {}", title(&err))));
                    }
                    other => {
                        return Err(perm(format!("CDS job {id} is in unknown state '{other}'")));
                    }
                }
            }
        }
        // Submit.
        let url = format!("{}/retrieve/v1/processes/{}/execution", c.base, c.dataset);
        let body = serde_json::json!({"inputs": inputs});
        let (status, resp) = dl
            .request_json(NAME, reqwest::Method::POST, &url, &auth, Some(&body))
            .await?;
        if status == 401 || status == 403 {
            return Err(perm(format!(
                "CDS rejected the API key ({status}): {}",
                title(&resp)
            )));
        }
        if !(200..300).contains(&status) {
            return Err(perm(format!(
                "CDS refused the request ({status}): {}",
                title(&resp)
            )));
        }
        let id = resp["jobID"]
            .as_str()
            .ok_or_else(|| perm("CDS accepted the request without a jobID".into()))?
            .to_owned();
        tracing::info!(job = %id, "CDS job submitted");
        if !state["jobs"].is_object() {
            state["jobs"] = serde_json::json!({});
        }
        state["jobs"][cache] = serde_json::Value::String(id.clone());
        Ok(JobState::Waiting(format!("job {id} submitted")))
    }
}

/// How often one month's request may be submitted again (vanished job, expired link) before
/// the run fails: waiting uses no attempt, so this bounds an upstream that keeps failing.
const CDS_MAX_RESUBMITS: u64 = 3;

/// Drops a month's job so it is submitted again, counting resubmissions in the state.
fn forget_job(state: &mut serde_json::Value, cache: &str, why: &str) -> Result<(), ProviderError> {
    if let Some(m) = state["jobs"].as_object_mut() {
        m.remove(cache);
    }
    if !state["resubmits"].is_object() {
        state["resubmits"] = serde_json::json!({});
    }
    let n = state["resubmits"][cache].as_u64().unwrap_or(0) + 1;
    state["resubmits"][cache] = n.into();
    if n > CDS_MAX_RESUBMITS {
        return Err(ProviderError {
            provider: "era5_land_cds",
            message: format!(
                "the CDS request was submitted {n} times without a usable result ({why})"
            ),
            retry: Retry::Permanent,
        });
    }
    Ok(())
}

fn rand_id() -> u64 {
    use rand::Rng;
    rand::rng().random()
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
    fn parameters_are_checked_with_clear_messages() {
        let params = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        let e = check_param_names(
            "chirps3_daily",
            &params(serde_json::json!({"stage": "final", "colour": 1})),
            &["base_url", "stage", "flavor"],
        )
        .expect_err("unknown");
        assert_eq!(
            e,
            "unknown param 'colour' for provider chirps3_daily: expected base_url, stage, flavor"
        );
        assert_eq!(
            base_url_param(&params(serde_json::json!({})), "https://x.org/a").as_deref(),
            Ok("https://x.org/a")
        );
        assert!(base_url_param(&params(serde_json::json!({"base_url": 3})), "https://x").is_err());
        assert!(
            base_url_param(
                &params(serde_json::json!({"base_url": "ftp://x"})),
                "https://x"
            )
            .expect_err("scheme")
            .contains("http(s)")
        );
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
