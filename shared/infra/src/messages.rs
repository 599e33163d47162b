//! Queue messages: the only wire format between the API, the scheduler and the workers.
//!
//! Messages are versioned (`v`) so that workers of two releases can share a queue during a
//! rolling upgrade. They carry ids only; the state lives in the database.

use climate_domain::ids::{RunId, UuidIdError};
use serde::{Deserialize, Serialize};

/// Why a queue payload is not a task message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Not JSON of the message's shape.
    #[error("undecodable {what} message: {reason}")]
    Undecodable {
        /// `task` or `job`.
        what: &'static str,
        /// What serde said.
        reason: String,
    },
    /// A format version this release does not read.
    #[error("unsupported {what} message version {v}")]
    Version {
        /// `task` or `job`.
        what: &'static str,
        /// The version the message carries.
        v: u32,
    },
    /// A step that does not exist, or a segment number where none belongs (or none where one
    /// does).
    #[error("invalid task step {step:?} with segment {segment:?}")]
    Step {
        /// The step named.
        step: Option<String>,
        /// The segment named.
        segment: Option<u32>,
    },
    /// The run id is not a run id.
    #[error("undecodable task message: {0}")]
    RunId(#[from] UuidIdError),
}

/// Outbox topic of task messages.
pub const TASK_TOPIC: &str = "task";

/// Current message version.
pub const TASK_MESSAGE_VERSION: u32 = 1;

/// Which step of a run a message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Plan the run: locate sources, lay out the store, split into segments.
    Plan,
    /// Write one segment (a range of whole time chunks).
    Segment(u32),
    /// Consolidate metadata and publish the version.
    Finalize,
}

/// "Work on this step of this run."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMessage {
    /// Message format version.
    pub v: u32,
    /// The run to work on.
    pub run_id: RunId,
    /// The step.
    pub step: Step,
}

/// Wire shape: `{"v":1,"run_id":"…","step":"plan"|"segment"|"finalize","segment":3}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u32,
    run_id: String,
    #[serde(default)]
    step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    segment: Option<u32>,
}

impl TaskMessage {
    /// A plan message for `run_id` in the current format.
    pub fn new(run_id: RunId) -> Self {
        Self::step(run_id, Step::Plan)
    }

    /// A message for one step of `run_id`.
    pub fn step(run_id: RunId, step: Step) -> Self {
        Self {
            v: TASK_MESSAGE_VERSION,
            run_id,
            step,
        }
    }

    /// As a JSON value (outbox payload).
    pub fn to_json(&self) -> serde_json::Value {
        let (step, segment) = match self.step {
            Step::Plan => ("plan", None),
            Step::Segment(i) => ("segment", Some(i)),
            Step::Finalize => ("finalize", None),
        };
        let mut v = serde_json::json!({"v": self.v, "run_id": self.run_id, "step": step});
        if let Some(i) = segment {
            v["segment"] = i.into();
        }
        v
    }

    /// Decodes a queue payload. A message without `step` is a plan message.
    ///
    /// # Errors
    /// [`MessageError`] naming what is wrong; such deliveries are dead-lettered.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let w: Wire = decode("task", bytes, |w: &Wire| w.v)?;
        let run_id = RunId::new(&w.run_id)?;
        let step = match (w.step.as_deref(), w.segment) {
            (None | Some("plan"), None) => Step::Plan,
            (Some("segment"), Some(i)) => Step::Segment(i),
            (Some("finalize"), None) => Step::Finalize,
            (step, segment) => {
                return Err(MessageError::Step {
                    step: step.map(str::to_owned),
                    segment,
                });
            }
        };
        Ok(Self {
            v: w.v,
            run_id,
            step,
        })
    }
}

/// "Run this job": the message of every durable job kind but ingestion, whose messages
/// predate kinds. Wire shape: `{"v":1,"kind":"…","job_id":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobMessage {
    /// Message format version.
    pub v: u32,
    /// The job kind (the engine dispatches on it).
    pub kind: String,
    /// The job.
    pub job_id: climate_domain::ids::JobId,
}

impl JobMessage {
    /// The message of job `job_id` of `kind`, in the current format.
    pub fn new(kind: &str, job_id: climate_domain::ids::JobId) -> Self {
        Self {
            v: TASK_MESSAGE_VERSION,
            kind: kind.to_owned(),
            job_id,
        }
    }

    /// As a JSON value (outbox payload).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"v": self.v, "kind": self.kind, "job_id": self.job_id})
    }

    /// Decodes a queue payload.
    ///
    /// # Errors
    /// [`MessageError`] naming what is wrong; such deliveries are dead-lettered.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        decode("job", bytes, |m: &Self| m.v)
    }
}

/// Decodes a `what` message whose format version `version` reads, refusing other versions.
fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    version: impl Fn(&T) -> u32,
) -> Result<T, MessageError> {
    let message: T = serde_json::from_slice(bytes).map_err(|e| MessageError::Undecodable {
        what,
        reason: e.to_string(),
    })?;
    match version(&message) {
        TASK_MESSAGE_VERSION => Ok(message),
        v => Err(MessageError::Version { what, v }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_messages_round_trip_and_name_what_is_wrong() {
        let id = climate_domain::ids::JobId::new("0193a5c2-7b1e-7c3d-9f00-1a2b3c4d5e6f")
            .expect("a UUID");
        let m = JobMessage::new("process", id);
        let bytes = serde_json::to_vec(&m.to_json()).expect("json");
        assert_eq!(JobMessage::decode(&bytes), Ok(m));
        let wrong_version =
            br#"{"v":2,"kind":"process","job_id":"0193a5c2-7b1e-7c3d-9f00-1a2b3c4d5e6f"}"#;
        assert!(
            JobMessage::decode(wrong_version).is_err_and(|e| e.to_string().contains("version 2"))
        );
        let bad_id = br#"{"v":1,"kind":"process","job_id":"r1"}"#;
        assert!(JobMessage::decode(bad_id).is_err_and(|e| e.to_string().contains("job id")));
    }

    const RUN: RunId = RunId::from_u128(0x0193a5c2_7b1e_7c3d_9f00_1a2b3c4d5e6f);

    #[test]
    fn round_trips_and_rejects_unknown_versions() {
        let m = TaskMessage::new(RUN);
        let bytes = serde_json::to_vec(&m.to_json()).expect("json");
        assert_eq!(TaskMessage::decode(&bytes), Ok(m));
        assert!(TaskMessage::decode(br#"{"v":2,"run_id":"r"}"#).is_err());
        assert!(TaskMessage::decode(b"nonsense").is_err());
        for step in [Step::Plan, Step::Segment(3), Step::Finalize] {
            let m = TaskMessage::step(RUN, step);
            let bytes = serde_json::to_vec(&m.to_json()).expect("json");
            assert_eq!(TaskMessage::decode(&bytes), Ok(m));
        }
        assert_eq!(
            TaskMessage::decode(br#"{"v":1,"run_id":"0193a5c2-7b1e-7c3d-9f00-1a2b3c4d5e6f"}"#)
                .map(|m| m.step),
            Ok(Step::Plan)
        );
        assert!(
            TaskMessage::decode(
                br#"{"v":1,"run_id":"0193a5c2-7b1e-7c3d-9f00-1a2b3c4d5e6f","step":"segment"}"#
            )
            .is_err()
        );
        let not_a_run = TaskMessage::decode(br#"{"v":1,"run_id":"r"}"#).expect_err("no UUID");
        assert!(not_a_run.to_string().contains("run id"), "{not_a_run}");
    }
}
