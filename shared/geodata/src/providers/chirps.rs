//! CHC CHIRPS v3 daily COGs, read by HTTP range requests.

use super::*;

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
pub(super) const CHIRPS3_MAX_OPEN_DAYS: i64 = 400;

/// `params` of [`Chirps3Provider`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ChirpsParams {
    base_url: Option<HttpUrl>,
    stage: Option<String>,
    flavor: Option<String>,
}

impl Chirps3Provider {
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
impl TypedProvider for Chirps3Provider {
    const NAME: &'static str = "chirps3_daily";
    type Params = (String, String, String);

    fn params(template: &DatasetTemplate) -> Result<Self::Params, ParamError> {
        let p: ChirpsParams = params::decode("chirps3_daily", &template.ingestion.params)?;
        let base = HttpUrl::or(p.base_url, CHIRPS3_BASE_URL);
        let stage = p.stage.unwrap_or_else(|| "final".into());
        let flavor = p.flavor.unwrap_or_else(|| "rnl".into());
        match (stage.as_str(), flavor.as_str()) {
            ("final", "rnl" | "sat") | ("prelim", "sat") => {}
            ("prelim", _) => {
                return Err(ParamError::invalid(
                    "param 'flavor': prelim data exists only as sat",
                ));
            }
            _ => {
                return Err(ParamError::invalid(format!(
                    "params 'stage'/'flavor': expected final with rnl or sat, or prelim with sat (got {stage}/{flavor})"
                )));
            }
        }
        if template.period_type != PeriodType::Daily {
            return Err(ParamError::template(
                "chirps3_daily needs period_type: daily",
            ));
        }
        Ok((base, stage, flavor))
    }

    async fn locate_with(
        &self,
        req: &LocateRequest<'_>,
        params: Self::Params,
    ) -> Result<SourceSet, ProviderError> {
        const NAME: &str = "chirps3_daily";
        let perm = |message: String| ProviderError::permanent(NAME, message);
        let (base, stage, flavor) = params;
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
                .map_err(|e| ProviderError::permanent(NAME, format!("decoder task failed: {e}")))?
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
