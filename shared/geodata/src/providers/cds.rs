//! The Copernicus CDS job API: submit, poll, download.

use super::*;
use crate::upstream::jobs::{
    self, Advance, AsyncUpstream, DownloadError, JobStatus, UpstreamState,
};

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

/// `params` of [`CdsProvider`], as given.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CdsInput {
    variable: Option<String>,
    base_url: Option<HttpUrl>,
    dataset: Option<String>,
    nc_variable: Option<String>,
    poll_seconds: Option<u64>,
}

/// The checked parameters of [`CdsProvider`].
#[derive(Debug)]
pub struct CdsParams {
    base: String,
    dataset: String,
    variable: String,
    nc_variable: Option<String>,
    poll: u64,
}

#[async_trait]
impl TypedProvider for CdsProvider {
    const NAME: &'static str = "era5_land_cds";
    type Params = CdsParams;

    fn params(template: &DatasetTemplate) -> Result<Self::Params, ParamError> {
        let p: CdsInput = params::decode("era5_land_cds", &template.ingestion.params)?;
        let variable = p.variable.ok_or_else(|| {
            ParamError::invalid(
                "param 'variable' (the CDS variable name, e.g. 2m_temperature) is required",
            )
        })?;
        if !matches!(template.period_type, PeriodType::Hourly) {
            return Err(ParamError::template(
                "era5_land_cds delivers hourly data: use period_type: hourly",
            ));
        }
        Ok(CdsParams {
            base: HttpUrl::or(p.base_url, CDS_BASE_URL),
            dataset: p.dataset.unwrap_or_else(|| "reanalysis-era5-land".into()),
            variable,
            nc_variable: p.nc_variable,
            poll: p.poll_seconds.unwrap_or(30).max(1),
        })
    }

    async fn locate_with(
        &self,
        req: &LocateRequest<'_>,
        params: Self::Params,
    ) -> Result<SourceSet, ProviderError> {
        let perm = |message: String| ProviderError::permanent(NAME, message);
        let c = params;
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
            .map(|s| UpstreamState::from_json(&s))
            .unwrap_or_default();
        let var = c
            .nc_variable
            .clone()
            .unwrap_or_else(|| req.template.variable.clone());
        let cds = Cds {
            params: &c,
            dl: &dl,
            key: &key,
            variable: &var,
        };

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
            let step = jobs::advance(&cds, &mut state, &cache, &inputs, chrono::Utc::now()).await;
            match step {
                Ok(Advance::Ready(path)) => files.push(path),
                Ok(Advance::Waiting(what)) => waiting.push(what),
                Err(e) => {
                    // What the other months' jobs are doing is kept for the next attempt.
                    store_state(req, &state);
                    return Err(e);
                }
            }
        }
        store_state(req, &state);
        if !waiting.is_empty() {
            let poll = std::time::Duration::from_secs(c.poll);
            return Err(jobs::pending(NAME, "CDS", &waiting, poll));
        }
        let kind = req.template.period_type;
        let mut steps = BTreeMap::new();
        for path in files {
            let v = var.clone();
            let source: Arc<dyn RasterSource> =
                tokio::task::spawn_blocking(move || raster::open(&path, Some(&v)))
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

/// The CDS job API as an [`AsyncUpstream`]: submit to the dataset's `execution`, poll
/// `jobs/{id}`, download the `results` asset into the download cache (validated as a field of
/// `variable`).
struct Cds<'a> {
    params: &'a CdsParams,
    dl: &'a crate::http::Downloader,
    key: &'a str,
    variable: &'a str,
}

const NAME: &str = "era5_land_cds";

impl Cds<'_> {
    async fn get(&self, url: &str) -> Result<(u16, serde_json::Value), ProviderError> {
        let auth = [("PRIVATE-TOKEN", self.key)];
        self.dl
            .request_json(NAME, reqwest::Method::GET, url, &auth, None)
            .await
    }

    /// What a CDS problem document says: its `title` and `detail`.
    fn title(body: &serde_json::Value) -> String {
        [body.get("title"), body.get("detail")]
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .collect::<Vec<_>>()
            .join(": ")
    }

    fn refused(what: &str, status: u16, body: &serde_json::Value) -> ProviderError {
        let title = Self::title(body);
        ProviderError::permanent(NAME, format!("CDS {what} ({status}): {title}"))
    }
}

#[async_trait]
impl AsyncUpstream for Cds<'_> {
    fn provider(&self) -> &'static str {
        NAME
    }

    fn label(&self) -> &'static str {
        "CDS"
    }

    async fn cached(&self, key: &str) -> Result<Option<PathBuf>, ProviderError> {
        Ok(self.dl.cached(NAME, key).await?.map(|f| f.path))
    }

    async fn submit(&self, request: &serde_json::Value) -> Result<String, ProviderError> {
        let c = self.params;
        let url = format!("{}/retrieve/v1/processes/{}/execution", c.base, c.dataset);
        let body = serde_json::json!({"inputs": request});
        let auth = [("PRIVATE-TOKEN", self.key)];
        let (status, resp) = self
            .dl
            .request_json(NAME, reqwest::Method::POST, &url, &auth, Some(&body))
            .await?;
        if status == 401 || status == 403 {
            return Err(Self::refused("rejected the API key", status, &resp));
        }
        if !(200..300).contains(&status) {
            return Err(Self::refused("refused the request", status, &resp));
        }
        resp["jobID"].as_str().map(str::to_owned).ok_or_else(|| {
            ProviderError::permanent(NAME, "CDS accepted the request without a jobID")
        })
    }

    async fn poll(&self, id: &str) -> Result<JobStatus, ProviderError> {
        let job_url = format!("{}/retrieve/v1/jobs/{id}", self.params.base);
        let (status, body) = self.get(&job_url).await?;
        if status == 404 {
            // Dismissed or expired upstream.
            return Ok(JobStatus::Gone);
        }
        if status == 401 || status == 403 {
            return Err(Self::refused("rejected the API key", status, &body));
        }
        match body["status"].as_str().unwrap_or_default() {
            s @ ("accepted" | "running") => Ok(JobStatus::Waiting(s.to_owned())),
            "successful" => {
                let results_url = body["links"]
                    .as_array()
                    .and_then(|l| l.iter().find(|x| x["rel"] == "results"))
                    .and_then(|x| x["href"].as_str())
                    // Links may be relative: resolve them against the job URL.
                    .and_then(|h| url::Url::parse(&job_url).and_then(|u| u.join(h)).ok())
                    .map_or_else(|| format!("{job_url}/results"), |u| u.to_string());
                let (rs, results) = self.get(&results_url).await?;
                let href = results["asset"]["value"]["href"]
                    .as_str()
                    .filter(|_| rs == 200)
                    .ok_or_else(|| {
                        ProviderError::permanent(
                            NAME,
                            format!("CDS job {id} has no downloadable result ({rs})"),
                        )
                    })?;
                let href = url::Url::parse(&results_url)
                    .and_then(|u| u.join(href))
                    .map_or_else(|_| href.to_owned(), |u| u.to_string());
                Ok(JobStatus::Ready(href))
            }
            "failed" | "rejected" => {
                let (_, err) = self
                    .get(&format!("{job_url}/results"))
                    .await
                    .unwrap_or((0, serde_json::Value::Null));
                Ok(JobStatus::Failed(Self::title(&err)))
            }
            other => Err(ProviderError::permanent(
                NAME,
                format!("CDS job {id} is in unknown state '{other}'"),
            )),
        }
    }

    async fn download(&self, key: &str, href: &str) -> Result<PathBuf, DownloadError> {
        let validate = |p: &Path| raster::open(p, Some(self.variable)).map(|_| ());
        match self.dl.fetch_keyed(NAME, href, key, &validate).await {
            Ok(f) => Ok(f.path),
            // Download links expire.
            Err(e) if e.message.contains("HTTP 404") || e.message.contains("HTTP 403") => {
                Err(DownloadError::Expired(e.message))
            }
            Err(e) => Err(DownloadError::Failed(e)),
        }
    }
}

/// Stores the upstream state with the run, for the next attempt.
fn store_state(req: &LocateRequest<'_>, state: &UpstreamState) {
    if let Ok(mut s) = req.state.lock() {
        *s = state.to_json();
    }
}

pub(super) fn rand_id() -> u64 {
    use rand::Rng;
    rand::rng().random()
}
