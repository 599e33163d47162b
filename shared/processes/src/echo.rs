//! `echo`: returns its inputs as its outputs (the OGC API – Processes test suite executes it).

use async_trait::async_trait;
use climate_jobs::{JobContext, WorkError};
use serde_json::{Value, json};

use crate::{CheckError, Checked, Env, InputError, Output, Process};

/// The echo process.
#[derive(Debug)]
pub struct Echo;

#[async_trait]
impl Process for Echo {
    fn id(&self) -> &'static str {
        "echo"
    }

    fn title(&self) -> &'static str {
        "Echo"
    }

    fn summary(&self) -> &'static str {
        "Returns the value of its input `message` as its output `echo`."
    }

    fn interface(&self) -> Value {
        json!({
            "inputs": {
                "message": {
                    "title": "Message",
                    "description": "Any JSON value; it comes back unchanged.",
                    "schema": {}
                }
            },
            "outputs": {
                "echo": {"title": "Echo", "schema": {}}
            }
        })
    }

    async fn check(&self, _env: &Env, inputs: &Value) -> Result<Checked, CheckError> {
        let object = inputs
            .as_object()
            .ok_or_else(|| InputError::new("inputs", "must be an object of named inputs"))?;
        if let Some(other) = object.keys().find(|k| *k != "message") {
            return Err(InputError::new(other, "echo takes only `message`").into());
        }
        Ok(Checked {
            cells: 0,
            inputs: inputs.clone(),
        })
    }

    async fn execute(
        &self,
        _env: &Env,
        _ctx: &JobContext,
        inputs: &Value,
    ) -> Result<Output, WorkError> {
        let body = json!({"echo": inputs.get("message").cloned().unwrap_or(Value::Null)});
        Ok(Output {
            media_type: "application/json",
            body: body.to_string().into_bytes(),
        })
    }
}
