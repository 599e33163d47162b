//! Ingestion runs: their kinds, statuses and progress.

use serde::{Deserialize, Serialize};

/// What a run was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// An explicit `POST /ingestions`.
    Ingestion,
    /// A sync (explicit or scheduled).
    Sync,
}

/// Lifecycle of a run. `succeeded`, `failed` and `cancelled` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Accepted and waiting for a worker.
    Queued,
    /// Claimed by a worker holding a lease.
    Running,
    /// Failed transiently; waiting for its next attempt.
    Retrying,
    /// A version was published (or the request was already covered).
    Succeeded,
    /// Failed for good; `error` says why.
    Failed,
    /// Cancelled by a client.
    Cancelled,
}

impl RunStatus {
    /// All statuses, in lifecycle order.
    pub const ALL: [RunStatus; 6] = [
        Self::Queued,
        Self::Running,
        Self::Retrying,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The wire name (`queued`, `running`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether no further transition can happen.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// A run status or kind name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownName {
    /// Not a [`RunStatus`].
    #[error(
        "unknown run status '{0}': expected one of queued, running, retrying, succeeded, failed, cancelled"
    )]
    Status(String),
    /// Not a [`RunKind`].
    #[error("unknown run kind '{0}'")]
    Kind(String),
}

impl std::str::FromStr for RunStatus {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownName::Status(s.to_owned()))
    }
}

impl RunKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingestion => "ingestion",
            Self::Sync => "sync",
        }
    }
}

impl std::str::FromStr for RunKind {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "ingestion" => Ok(Self::Ingestion),
            "sync" => Ok(Self::Sync),
            _ => Err(UnknownName::Kind(s.to_owned())),
        }
    }
}

/// How far a run has got.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Units of work done (periods written).
    pub done: u64,
    /// Units of work in total; 0 until known.
    pub total: u64,
    /// Human-readable step.
    pub message: String,
}

impl Progress {
    /// `done / total` as a percentage with one decimal, 0 when the total is unknown.
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            ((self.done as f64 / self.total as f64) * 1000.0).round() / 10.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_know_terminality() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(s));
        }
        assert!(RunStatus::Failed.is_terminal() && !RunStatus::Retrying.is_terminal());
        assert!("done".parse::<RunStatus>().is_err());
    }

    #[test]
    fn percent_is_rounded_and_safe_for_unknown_totals() {
        let p = Progress {
            done: 1,
            total: 3,
            message: String::new(),
        };
        assert!((p.percent() - 33.3).abs() < 1e-9);
        assert!(Progress::default().percent().abs() < f64::EPSILON);
    }
}

/// The scope and flags of an ingestion, as accepted by the API and stored on the run. Periods
/// are canonical strings of the template's period type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// First period.
    pub start: String,
    /// Last period; `None` means "up to the latest available".
    pub end: Option<String>,
    /// Re-materialise even when the current version covers the scope.
    pub overwrite: bool,
    /// Write Zarr (the only artifact format so far).
    pub prefer_zarr: bool,
    /// Make the dataset visible on the public catalog.
    pub publish: bool,
    /// A sync append: keep the current version's whole time chunks and write only the periods
    /// after them (when the current version starts at `start` on the same grid; otherwise the
    /// run rebuilds the range).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub append: bool,
}
