//! Process executions as durable jobs: [`ProcessWork`] is the [`Work`] of kind [`KIND`]. A
//! job's inputs are `{"process": id, "inputs": {…}}`; its result document is a [`ResultRef`] to
//! the output stored in the object store.

use std::sync::Arc;

use climate_domain::ids::JobId;
use climate_infra::store::Store;
use climate_jobs::{JobContext, Work, WorkError};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Env, Processes};

/// The process-execution job kind of a worker with `ingest`: [`ProcessWork`] over the
/// default processes, leased and retried as the configuration's workers are, kept for
/// `processes.result_retention_hours` once finished.
pub fn job_kind(ingest: &climate_ingest::Context) -> Arc<dyn climate_jobs::JobKind> {
    let platform = &ingest.platform;
    let w = &platform.config.worker;
    let lease = std::time::Duration::from_secs(w.lease_seconds.max(3));
    let env = Env::new(ingest, Arc::new(climate_catalog::Catalog::new(platform)));
    let settings = climate_jobs::DurableSettings {
        lease,
        heartbeat: lease / 3,
        retry: climate_domain::retry::RetryPolicy::STEPS,
        max_attempts: w.max_attempts.max(1),
        retention: platform.config.processes.retention(),
    };
    Arc::new(climate_jobs::Durable::new(
        platform.db.clone(),
        ProcessWork::new(Processes::default(), env, platform.store.clone()),
        settings,
    ))
}

/// The job kind of process executions.
pub const KIND: &str = "process";

/// Where a job's output lives in the object store.
pub fn result_key(job_id: JobId) -> String {
    format!("{}result", Store::job_prefix(job_id))
}

/// A job's result document: where its output is and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRef {
    /// Object-store key of the output.
    pub key: String,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Runs process executions.
#[derive(Debug, Clone)]
pub struct ProcessWork {
    processes: Processes,
    env: Env,
    store: Store,
}

impl ProcessWork {
    /// Process executions of `processes`, reading through `env`, writing outputs to `store`.
    pub fn new(processes: Processes, env: Env, store: Store) -> Self {
        Self {
            processes,
            env,
            store,
        }
    }

    /// The job inputs of an execution of `process` with `inputs`.
    pub fn job_inputs(process: &str, inputs: &Value) -> Value {
        serde_json::json!({"process": process, "inputs": inputs})
    }
}

fn failed(code: &str, message: impl Into<String>) -> WorkError {
    WorkError::Failed {
        code: code.to_owned(),
        message: message.into(),
    }
}

#[async_trait::async_trait]
impl Work for ProcessWork {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn execute(&self, ctx: &JobContext) -> Result<Value, WorkError> {
        let job = ctx.job();
        let id = job.inputs["process"].as_str().unwrap_or_default();
        let process: &Arc<dyn crate::Process> = self.processes.get(id).ok_or_else(|| {
            failed(
                "unknown_process",
                format!("no process '{id}' in this worker"),
            )
        })?;
        let output = process
            .execute(&self.env, ctx, &job.inputs["inputs"])
            .await?;
        let key = result_key(job.job_id);
        let size = output.body.len() as u64;
        self.store
            .object_store()
            .put(&Path::from(key.as_str()), PutPayload::from(output.body))
            .await
            .map_err(|e| WorkError::Transient(format!("storing the result: {e}")))?;
        serde_json::to_value(ResultRef {
            key,
            media_type: output.media_type.to_owned(),
            size,
        })
        .map_err(|e| failed("internal", e.to_string()))
    }
}
