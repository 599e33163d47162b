//! `processes.*`: the limits of OGC API – Processes executions; `catalog.*`: the versioned
//! catalog's retention.

use serde::{Deserialize, Serialize};

/// `processes.*`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessesConfig {
    /// Grid values (cells × periods) a synchronous execution may read; a larger request is a
    /// 413 that names the asynchronous route.
    #[serde(default = "default_sync_max_cells")]
    pub sync_max_cells: u64,
    /// How long a synchronous execution waits for its job before answering 201 with the
    /// job's `Location`, as an asynchronous one does.
    #[serde(default = "default_sync_wait_seconds")]
    pub sync_wait_seconds: u64,
    /// Unfinished jobs one principal may have (429 beyond), so that one caller cannot fill the
    /// workers.
    #[serde(default = "default_max_active_jobs")]
    pub max_active_jobs: u64,
    /// How long a finished job and its result are kept (then housekeeping removes both).
    #[serde(default = "default_result_retention_hours")]
    pub result_retention_hours: u64,
}

impl Default for ProcessesConfig {
    fn default() -> Self {
        Self {
            sync_max_cells: default_sync_max_cells(),
            sync_wait_seconds: default_sync_wait_seconds(),
            max_active_jobs: default_max_active_jobs(),
            result_retention_hours: default_result_retention_hours(),
        }
    }
}

impl ProcessesConfig {
    /// [`Self::sync_wait_seconds`] as a duration.
    pub fn sync_wait(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.sync_wait_seconds)
    }

    /// [`Self::result_retention_hours`] as a duration.
    pub fn retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.result_retention_hours * 3600)
    }

    /// The first setting that cannot work, as `(key, message)`.
    pub(super) fn problem(&self) -> Option<(&'static str, &'static str)> {
        if self.sync_wait_seconds == 0 {
            Some(("processes.sync_wait_seconds", "must be at least 1"))
        } else if self.max_active_jobs == 0 {
            Some((
                "processes.max_active_jobs",
                "must be at least 1 (0 would refuse every execution)",
            ))
        } else if self.result_retention_hours == 0 {
            Some((
                "processes.result_retention_hours",
                "must be at least 1 (results would be gone before they are fetched)",
            ))
        } else {
            None
        }
    }
}

fn default_sync_max_cells() -> u64 {
    20_000_000
}
fn default_sync_wait_seconds() -> u64 {
    120
}
fn default_max_active_jobs() -> u64 {
    4
}
fn default_result_retention_hours() -> u64 {
    7 * 24
}

/// `catalog.*`: the versioned catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// How long a pruned version's objects are kept before they are deleted (0: at the next
    /// housekeeping pass).
    #[serde(default = "default_catalog_retention_hours")]
    pub retention_hours: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            retention_hours: default_catalog_retention_hours(),
        }
    }
}

impl CatalogConfig {
    /// [`Self::retention_hours`] as a duration.
    pub fn retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.retention_hours * 3600)
    }
}

fn default_catalog_retention_hours() -> u64 {
    7 * 24
}
