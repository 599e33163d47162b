//! The Copernicus CDS job API: submit, poll, download.

use super::*;

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

struct CdsParams {
    base: String,
    dataset: String,
    variable: String,
    nc_variable: Option<String>,
    poll: u64,
}

impl CdsProvider {
    fn params(template: &DatasetTemplate) -> Result<CdsParams, String> {
        let p: CdsInput = params::decode("era5_land_cds", &template.ingestion.params)?;
        let variable = p
            .variable
            .ok_or("param 'variable' (the CDS variable name, e.g. 2m_temperature) is required")?;
        if !matches!(template.period_type, PeriodType::Hourly) {
            return Err("era5_land_cds delivers hourly data: use period_type: hourly".into());
        }
        Ok(CdsParams {
            base: HttpUrl::or(p.base_url, CDS_BASE_URL),
            dataset: p.dataset.unwrap_or_else(|| "reanalysis-era5-land".into()),
            variable,
            nc_variable: p.nc_variable,
            poll: p.poll_seconds.unwrap_or(30).max(1),
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

pub(super) fn rand_id() -> u64 {
    use rand::Rng;
    rand::rng().random()
}
