//! Files over HTTP from a URL template per period.

use super::*;

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

/// `params` of [`HttpTemplateProvider`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpTemplateParams {
    url: Option<String>,
    variable: Option<String>,
}

#[async_trait]
impl TypedProvider for HttpTemplateProvider {
    const NAME: &'static str = "http_template";
    type Params = (String, Option<String>);

    fn params(template: &DatasetTemplate) -> Result<Self::Params, ParamError> {
        let p: HttpTemplateParams = params::decode("http_template", &template.ingestion.params)?;
        let url = p.url.ok_or_else(|| ParamError::invalid("param 'url' (an http(s) URL template with {year}, {month}, {day}, … placeholders) is required"))?;
        let sample = url
            .replace("{year}", "2000")
            .replace("{month}", "01")
            .replace("{day}", "01")
            .replace("{hour}", "00")
            .replace("{doy}", "001");
        let parsed = url::Url::parse(&sample)
            .map_err(|e| ParamError::invalid(format!("param 'url': {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ParamError::invalid("param 'url' must be an http(s) URL"));
        }
        let ext = parsed
            .path()
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !matches!(ext.as_str(), "nc" | "nc4" | "tif" | "tiff" | "cog") {
            return Err(ParamError::invalid(
                "param 'url' must end in .nc, .nc4, .tif, .tiff or .cog (the file type)",
            ));
        }
        Ok((url, p.variable))
    }

    async fn locate_with(
        &self,
        req: &LocateRequest<'_>,
        params: Self::Params,
    ) -> Result<SourceSet, ProviderError> {
        const NAME: &str = "http_template";
        let perm = |message: String| ProviderError::permanent(NAME, message);
        let (template_url, variable) = params;
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
