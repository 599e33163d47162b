//! WorldPop per-country GeoTIFFs.

use super::*;

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

/// `params` of [`WorldPopProvider`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WorldPopParams {
    base_url: Option<HttpUrl>,
    product: Option<String>,
}

impl WorldPopProvider {
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
impl TypedProvider for WorldPopProvider {
    const NAME: &'static str = "worldpop_yearly";
    type Params = (String, &'static str, i32, i32);

    fn params(template: &DatasetTemplate) -> Result<Self::Params, ParamError> {
        let p: WorldPopParams = params::decode("worldpop_yearly", &template.ingestion.params)?;
        let base = HttpUrl::or(p.base_url, WORLDPOP_BASE_URL);
        let product = p.product.as_deref().unwrap_or("global2_100m");
        let (name, first, last) = WORLDPOP_PRODUCTS
            .iter()
            .find(|(n, ..)| *n == product)
            .copied()
            .ok_or_else(|| {
                ParamError::invalid(format!("param 'product': unknown WorldPop product '{product}': expected global2_100m, global2_1km or global1_100m"))
            })?;
        if template.period_type != PeriodType::Yearly {
            return Err(ParamError::template(
                "worldpop_yearly needs period_type: yearly",
            ));
        }
        Ok((base, name, first, last))
    }

    async fn locate_with(
        &self,
        req: &LocateRequest<'_>,
        params: Self::Params,
    ) -> Result<SourceSet, ProviderError> {
        let perm = |message: String| ProviderError::permanent("worldpop_yearly", message);
        let (base, product, first, last) = params;
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
        let validate = |p: &Path| GeoTiffSource::open(p).map(|_| ());
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
