//! Accepting an ingestion: what `POST /ingestions` and the `ingestion` process share. The
//! request is checked against the template and the extents; a request the current version
//! already covers is answered with it; anything else becomes a run stored with its announcement
//! in one transaction (an identical run already queued or running is the answer instead).

use chrono::{DateTime, Utc};
use climate_domain::run::{RunKind, RunRequest};
use climate_domain::{DatasetId, Period, PeriodRange, RunId};
use climate_infra::Platform;
use climate_infra::db::{
    Admission, DatasetRecord, DbError, NewOutbox, NewRun, RunRecord, VersionRecord,
};
use climate_infra::messages::{TASK_TOPIC, TaskMessage};

/// An ingestion as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestionRequest {
    /// The template to ingest.
    pub template: String,
    /// First period (canonical or an ISO date, floored to the template's period type).
    pub start: String,
    /// Last period (inclusive); up to the latest available when absent.
    pub end: Option<String>,
    /// The extent; the default extent when absent.
    pub extent_id: Option<String>,
    /// Re-materialise even when the current version already covers the scope.
    pub overwrite: bool,
    /// Make the dataset visible on the public catalog.
    pub publish: bool,
    /// Who asks (the credentials' subject); `None` for the platform's own runs.
    pub principal: Option<String>,
}

/// Why an ingestion cannot be accepted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// No template with this id (404).
    #[error(
        "dataset_id: unknown dataset template '{0}'; GET /dataset-templates lists the available ones"
    )]
    UnknownTemplate(String),
    /// No extent with this id (404).
    #[error("extent_id: unknown extent '{0}'; GET /extent lists the configured ones")]
    UnknownExtent(String),
    /// A field is wrong (400): `field: message`.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The periods are out of order (400).
    #[error("{0}")]
    Range(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What an accepted ingestion is.
#[derive(Debug, Clone)]
pub enum Admitted {
    /// The current version already covers the scope: nothing to do.
    Covered {
        /// The dataset.
        dataset: Box<DatasetRecord>,
        /// Its current version.
        version: Box<VersionRecord>,
    },
    /// A run: new (`created`), or an identical one already queued or running.
    Run {
        /// The run.
        run: Box<RunRecord>,
        /// Whether this request created it.
        created: bool,
    },
}

/// A checked request: its template, extent, periods and dataset.
struct Resolved<'a> {
    template: &'a climate_domain::template::DatasetTemplate,
    extent: &'a climate_domain::Extent,
    start: Period,
    end: Option<Period>,
    dataset_id: DatasetId,
}

/// Checks `req` against the templates and extents, admitting nothing.
///
/// # Errors
/// [`AdmitError`] naming the field at fault.
pub fn validate(platform: &Platform, req: &IngestionRequest) -> Result<(), AdmitError> {
    resolve(platform, req).map(|_| ())
}

fn resolve<'a>(platform: &'a Platform, req: &IngestionRequest) -> Result<Resolved<'a>, AdmitError> {
    let loaded = platform
        .catalog
        .get_str(&req.template)
        .ok_or_else(|| AdmitError::UnknownTemplate(req.template.clone()))?;
    let template = &loaded.template;
    let extent = match &req.extent_id {
        Some(id) => platform
            .config
            .extents
            .iter()
            .find(|e| e.extent_id.as_str() == id)
            .ok_or_else(|| AdmitError::UnknownExtent(id.clone()))?,
        None => platform.config.default_extent(),
    };
    let kind = template.period_type;
    let invalid = |field: &'static str, message: String| AdmitError::Invalid { field, message };
    let start = Period::parse(kind, &req.start).map_err(|e| invalid("start", e.to_string()))?;
    let end = req
        .end
        .as_deref()
        .map(|e| Period::parse(kind, e))
        .transpose()
        .map_err(|e| invalid("end", e.to_string()))?;
    if let Some(end) = end {
        PeriodRange::new(start, end).map_err(|e| AdmitError::Range(e.to_string()))?;
    }
    let dataset_id = DatasetId::managed(&template.id, &extent.extent_id);
    Ok(Resolved {
        template,
        extent,
        start,
        end,
        dataset_id,
    })
}

/// Accepts `req` at `now` (see the module documentation).
///
/// # Errors
/// [`AdmitError`].
pub async fn ingestion(
    platform: &Platform,
    req: &IngestionRequest,
    now: DateTime<Utc>,
) -> Result<Admitted, AdmitError> {
    let Resolved {
        template,
        extent,
        start,
        end,
        dataset_id,
    } = resolve(platform, req)?;
    let kind = template.period_type;
    let db = &platform.db;
    if !req.overwrite
        && let Some(end) = end
        && let Some(ds) = db.get_dataset(&dataset_id).await?
        && let Some(n) = ds.current_version
        && let Some(v) = db.get_version(&dataset_id, n).await?
    {
        let covered = Period::parse(kind, &v.coverage_start)
            .ok()
            .zip(Period::parse(kind, &v.coverage_end).ok())
            .is_some_and(|(cs, ce)| cs <= start && end <= ce);
        if covered {
            return Ok(Admitted::Covered {
                dataset: Box::new(ds),
                version: Box::new(v),
            });
        }
    }
    let request = RunRequest {
        start: start.canonical(),
        end: end.map(|e| e.canonical()),
        overwrite: req.overwrite,
        prefer_zarr: true,
        publish: req.publish,
        append: false,
    };
    let request_json =
        serde_json::to_value(&request).map_err(|e| DbError::Corrupt(e.to_string()))?;
    // Coalescing: an identical request already queued or running is the answer, also when
    // identical requests arrive at once (the database admits a dataset's runs one at a time).
    let run_id = RunId::generate();
    let admitted = db
        .admit_run(
            &NewRun {
                run_id,
                kind: RunKind::Ingestion,
                dataset_id: dataset_id.clone(),
                template_id: template.id.clone(),
                extent_id: extent.extent_id.clone(),
                request: request_json,
                principal: req.principal.clone(),
                created_at: now,
            },
            &NewOutbox {
                topic: TASK_TOPIC.into(),
                payload: TaskMessage::new(run_id).to_json(),
                available_at: now,
            },
            Admission::Coalesce,
        )
        .await?;
    let (run, created) = admitted
        .run_and_created()
        .ok_or_else(|| DbError::Corrupt("an unscheduled admission reported a due time".into()))?;
    if created {
        platform.outbox_notify.notify_one();
        tracing::info!(run.id = %run.run_id, dataset.id = %dataset_id, "ingestion accepted");
    } else {
        tracing::info!(run.id = %run.run_id, dataset.id = %dataset_id, "identical ingestion already active; coalesced");
    }
    Ok(Admitted::Run {
        run: Box::new(run),
        created,
    })
}
