//! Named failure points: places in the pipeline where a test can make the process die as if it
//! were SIGKILLed, to prove that a retry converges to the same result.
//!
//! Configured once per process from `CLIMATE_API_FAILPOINTS` (read by `main`, never deep in the
//! code): a comma-separated list of `name` (die at the first hit) or `name@N` (die at the Nth
//! hit). Names: `after_plan`, `after_segment_write`, `before_publish`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Failure points armed in this process.
#[derive(Debug, Clone, Default)]
pub struct FailPoints {
    armed: Arc<HashMap<String, (u32, AtomicU32)>>,
}

impl FailPoints {
    /// Parses `name[@N],…`. Unknown syntax is ignored with a warning (this is a test hook).
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
            armed.insert(name.to_owned(), (n, AtomicU32::new(0)));
        }
        if !armed.is_empty() {
            tracing::warn!(points = ?armed.keys().collect::<Vec<_>>(), "failure points armed");
        }
        Self {
            armed: Arc::new(armed),
        }
    }

    /// Whether the point fires now (counts the hit).
    pub fn fires(&self, name: &str) -> bool {
        self.armed
            .get(name)
            .is_some_and(|(n, hits)| hits.fetch_add(1, Ordering::SeqCst) + 1 == *n)
    }

    /// Dies here, like a SIGKILL, when the point fires: no destructors, no cleanup, no
    /// goodbye to the broker or the database.
    pub fn hit(&self, name: &str) {
        if self.fires(name) {
            eprintln!("failure point {name} fired: aborting the process");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_on_the_configured_hit_only() {
        let f = FailPoints::parse("after_plan, after_segment_write@2, bad@x");
        assert!(f.fires("after_plan"));
        assert!(!f.fires("after_plan"));
        assert!(!f.fires("after_segment_write"));
        assert!(f.fires("after_segment_write"));
        assert!(!f.fires("after_segment_write"));
        assert!(!f.fires("bad"));
        assert!(!FailPoints::default().fires("after_plan"));
    }
}
