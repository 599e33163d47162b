//! `era5_land_zarr`: ERA5-Land hourly fields from a remote Zarr store (the DestinE Earth Data
//! Hub's), read through [`crate::remote_zarr`].

use super::*;
use crate::remote_zarr::{CubeRequest, EDH_BASE_URL, EDH_STORE, open_cube};

const NAME: &str = "era5_land_zarr";

/// ERA5-Land hourly fields from a remote Zarr store: `params: {base_url?, store?, variable?}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RemoteZarrProvider;

/// `params` of [`RemoteZarrProvider`], as given.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteZarrInput {
    base_url: Option<HttpUrl>,
    store: Option<String>,
    variable: Option<String>,
}

/// The checked parameters of [`RemoteZarrProvider`].
#[derive(Debug)]
pub struct RemoteZarrParams {
    url: String,
    variable: String,
}

#[async_trait]
impl TypedProvider for RemoteZarrProvider {
    const NAME: &'static str = NAME;
    type Params = RemoteZarrParams;

    fn params(template: &DatasetTemplate) -> Result<Self::Params, ParamError> {
        let p: RemoteZarrInput = params::decode(NAME, &template.ingestion.params)?;
        let base = HttpUrl::or(p.base_url, EDH_BASE_URL);
        let get = |k: &str, given: Option<String>, default: &str| -> Result<String, ParamError> {
            match given {
                None => Ok(default.to_owned()),
                Some(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
                Some(_) => Err(ParamError::invalid(format!(
                    "param '{k}' must be a non-empty string"
                ))),
            }
        };
        let store = get("store", p.store, EDH_STORE)?;
        let variable = get("variable", p.variable, &template.variable)?;
        if template.period_type != PeriodType::Hourly {
            return Err(ParamError::template(format!(
                "{NAME} reads hourly fields: it needs period_type: hourly (got {})",
                template.period_type.as_str()
            )));
        }
        Ok(RemoteZarrParams {
            url: format!("{base}/{}", store.trim_matches('/')),
            variable,
        })
    }

    async fn locate_with(
        &self,
        req: &LocateRequest<'_>,
        params: Self::Params,
    ) -> Result<SourceSet, ProviderError> {
        let p = params;
        let wanted = format!(
            "from {}{}",
            req.start.canonical(),
            req.end
                .map(|e| format!(" to {}", e.canonical()))
                .unwrap_or_default()
        );
        let cube = CubeRequest {
            variable: &p.variable,
            from: req.start.start(),
            to: req.end.map(|e| e.start()),
            wanted: &wanted,
            bbox: &req.extent.bbox,
            extent_id: req.extent.extent_id.as_str(),
        };
        let source = open_cube(req.env.downloader(NAME).clone(), &p.url, &cube).await?;
        let mut steps = BTreeMap::new();
        for (k, t) in source.times().iter().enumerate() {
            steps.insert(
                Period::containing(PeriodType::Hourly, *t),
                Step {
                    source: source.clone(),
                    time_index: k,
                },
            );
        }
        Ok(SourceSet { steps })
    }
}
