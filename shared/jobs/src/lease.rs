//! [`Worker`]: one worker process as the engine and its job kinds see it — its id (the lease
//! owner), the leases it holds (so a shutdown that cannot wait for its tasks hands them back at
//! once instead of leaving them to expire) and its armed failure points.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_util::sync::CancellationToken;

use crate::FailPoints;

/// What a lease is on: a job of a kind, or one part of it (an ingestion's segment).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseKey {
    /// The job kind's name.
    pub kind: &'static str,
    /// The job.
    pub job_id: String,
    /// `None`: the job's own steps; `Some(i)`: part `i`, leased on its own.
    pub part: Option<u32>,
}

/// One worker process: cheap to clone, shared by the engine and the job kinds' steps.
#[derive(Debug, Clone)]
pub struct Worker {
    id: Arc<str>,
    leases: Arc<Leases>,
    /// Failure points armed for tests (none in production).
    pub failpoints: FailPoints,
}

#[derive(Debug, Default)]
struct Leases {
    held: Mutex<HashMap<u64, Held>>,
    next: AtomicU64,
    /// Cancelled when the leases are handed back: heartbeats stop renewing them.
    released: CancellationToken,
}

#[derive(Debug)]
struct Held {
    key: LeaseKey,
    /// The claim has succeeded (until then only the delivery guards the step).
    claimed: bool,
}

impl Worker {
    /// A worker with this id (the owner written on every lease it takes).
    #[must_use]
    pub fn new(id: impl Into<String>, failpoints: FailPoints) -> Self {
        Self {
            id: Arc::from(id.into()),
            leases: Arc::new(Leases::default()),
            failpoints,
        }
    }

    /// The worker's id, the owner of its leases.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    fn held(&self) -> MutexGuard<'_, HashMap<u64, Held>> {
        self.leases
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a lease about to be claimed (before the claim, so a shutdown racing with the
    /// claim still hands it back); `None` once the leases were handed back: take no new work.
    #[must_use]
    pub fn hold(&self, key: LeaseKey) -> Option<HeldLease> {
        let mut held = self.held();
        if self.leases.released.is_cancelled() {
            return None;
        }
        let id = self.leases.next.fetch_add(1, Ordering::Relaxed);
        held.insert(
            id,
            Held {
                key,
                claimed: false,
            },
        );
        Some(HeldLease(self.leases.clone(), id))
    }

    /// Whether this process holds the claimed lease `key`.
    #[must_use]
    pub fn is_claimed(&self, key: &LeaseKey) -> bool {
        self.held().values().any(|h| h.claimed && h.key == *key)
    }

    /// Cancelled once the leases were handed back (shutdown): heartbeats must stop renewing.
    #[must_use]
    pub fn released(&self) -> CancellationToken {
        self.leases.released.clone()
    }

    /// Marks the leases handed back: no new lease is taken from now on.
    pub(crate) fn release(&self) {
        let _held = self.held();
        self.leases.released.cancel();
    }

    /// The leases held now.
    pub(crate) fn leases(&self) -> Vec<LeaseKey> {
        self.held().values().map(|h| h.key.clone()).collect()
    }
}

/// A lease recorded in its [`Worker`]; unregisters it when dropped (also when the step's task
/// is aborted).
#[derive(Debug)]
pub struct HeldLease(Arc<Leases>, u64);

impl HeldLease {
    /// The claim succeeded: from now on the lease, not the delivery, guards the step.
    pub fn claimed(&self) {
        if let Some(entry) = self
            .0
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&self.1)
        {
            entry.claimed = true;
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.0
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(part: Option<u32>) -> LeaseKey {
        LeaseKey {
            kind: "test",
            job_id: "j1".into(),
            part,
        }
    }

    #[test]
    fn a_lease_counts_as_claimed_only_after_its_claim_and_until_dropped() {
        let w = Worker::new("w1", FailPoints::default());
        let held = w.hold(key(Some(2))).expect("not released");
        assert!(!w.is_claimed(&key(Some(2))));
        held.claimed();
        assert!(w.is_claimed(&key(Some(2))));
        assert!(!w.is_claimed(&key(None)), "another part is another lease");
        assert_eq!(w.leases(), vec![key(Some(2))]);
        drop(held);
        assert!(!w.is_claimed(&key(Some(2))));
        assert!(w.leases().is_empty());
    }

    #[test]
    fn no_lease_is_taken_once_they_were_handed_back() {
        let w = Worker::new("w1", FailPoints::default());
        w.release();
        assert!(w.released().is_cancelled());
        assert!(w.hold(key(None)).is_none());
    }
}
