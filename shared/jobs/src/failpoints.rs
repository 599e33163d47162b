//! Failure points: places in a job's steps where a test can make the process die as if it were
//! SIGKILLed, to prove that a retry converges to the same result.
//!
//! Configured once per process from `CLIMATE_API_FAILPOINTS` (read by `main`, never deep in the
//! code): a comma-separated list of `name` (die at the first hit) or `name@N` (die at the Nth
//! hit), names as in [`FailPoint::name`]. An unknown name or malformed count is ignored with a
//! warning (this is a test hook, not configuration).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// A place where a test may kill the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailPoint {
    /// Ingestion: the plan is committed, its segments not yet announced.
    AfterPlan,
    /// Ingestion: a segment's chunks are written, its completion not yet committed.
    AfterSegmentWrite,
    /// Ingestion: the store is consolidated, the version not yet published.
    BeforePublish,
    /// A durable job: the attempt answered (a process stored its output), its outcome not
    /// yet recorded.
    BeforeJobFinish,
}

impl FailPoint {
    /// Every failure point.
    pub const ALL: [Self; 4] = [
        Self::AfterPlan,
        Self::AfterSegmentWrite,
        Self::BeforePublish,
        Self::BeforeJobFinish,
    ];

    /// The name used in `CLIMATE_API_FAILPOINTS`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::AfterPlan => "after_plan",
            Self::AfterSegmentWrite => "after_segment_write",
            Self::BeforePublish => "before_publish",
            Self::BeforeJobFinish => "before_job_finish",
        }
    }

    /// The failure point with this name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// Failure points armed in this process.
#[derive(Debug, Clone, Default)]
pub struct FailPoints {
    armed: Arc<HashMap<FailPoint, (u32, AtomicU32)>>,
}

impl FailPoints {
    /// Parses `name[@N],…`.
    #[must_use]
    pub fn parse(spec: &str) -> Self {
        let mut armed = HashMap::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, n) = match item.split_once('@') {
                Some((name, n)) => match n.parse::<u32>() {
                    Ok(n) if n > 0 => (name, n),
                    _ => {
                        tracing::warn!(failpoint = item, "ignoring malformed failure point");
                        continue;
                    }
                },
                None => (item, 1),
            };
            let Some(point) = FailPoint::from_name(name) else {
                tracing::warn!(
                    failpoint = item,
                    known = ?FailPoint::ALL.map(FailPoint::name),
                    "ignoring unknown failure point"
                );
                continue;
            };
            armed.insert(point, (n, AtomicU32::new(0)));
        }
        if !armed.is_empty() {
            tracing::warn!(points = ?armed.keys().map(|p| p.name()).collect::<Vec<_>>(), "failure points armed");
        }
        Self {
            armed: Arc::new(armed),
        }
    }

    /// Whether the point fires now (counts the hit).
    #[must_use]
    pub fn fires(&self, point: FailPoint) -> bool {
        self.armed
            .get(&point)
            .is_some_and(|(n, hits)| hits.fetch_add(1, Ordering::SeqCst) + 1 == *n)
    }

    /// Dies here, like a SIGKILL, when the point fires: no destructors, no cleanup, no
    /// goodbye to the broker or the database.
    pub fn hit(&self, point: FailPoint) {
        if self.fires(point) {
            eprintln!("failure point {} fired: aborting the process", point.name());
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_on_the_configured_hit_only() {
        let f = FailPoints::parse("after_plan, after_segment_write@2, bad@x, no_such_point");
        assert!(f.fires(FailPoint::AfterPlan));
        assert!(!f.fires(FailPoint::AfterPlan));
        assert!(!f.fires(FailPoint::AfterSegmentWrite));
        assert!(f.fires(FailPoint::AfterSegmentWrite));
        assert!(!f.fires(FailPoint::AfterSegmentWrite));
        assert!(!f.fires(FailPoint::BeforePublish));
        assert!(!FailPoints::default().fires(FailPoint::AfterPlan));
    }

    #[test]
    fn names_round_trip() {
        for p in FailPoint::ALL {
            assert_eq!(FailPoint::from_name(p.name()), Some(p));
        }
        assert_eq!(FailPoint::from_name("after-plan"), None);
    }
}
