//! Conformance of the [`Locks`] implementations (in-process and Redis).
//!
//! Covers acquisition, refusal to a second owner, re-acquisition by the owner (which extends
//! the TTL), release by a non-owner (ignored) and by the owner, expiry after the TTL, key and
//! namespace independence, and `ping`. Each Redis test uses the key prefix
//! `climate-test:<uuid>:` and deletes its keys when it ends.

use std::sync::Arc;
use std::time::Duration;

use climate_infra::locks::{self, Locks};

use crate::support::{self, Cleanup};

/// Long enough never to expire during a test.
const LONG: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Fixture

/// A lock service of one backend in a namespace of its own.
#[derive(Debug)]
pub struct TestLocks {
    locks: Arc<dyn Locks>,
    /// Redis key prefix (`None` for the in-process backend).
    prefix: Option<String>,
    _cleanup: Option<Cleanup>,
}

impl std::ops::Deref for TestLocks {
    type Target = dyn Locks;
    fn deref(&self) -> &Self::Target {
        self.locks.as_ref()
    }
}

impl TestLocks {
    async fn memory() -> Self {
        let locks = locks::connect(None, "unused:")
            .await
            .expect("open in-process locks");
        Self {
            locks,
            prefix: None,
            _cleanup: None,
        }
    }

    async fn redis() -> Self {
        let url = support::redis_url();
        let prefix = format!("climate-test:{}:", support::unique());
        let cleanup = Cleanup::new(format!("redis keys {prefix}*"), {
            let (url, prefix) = (url.clone(), prefix.clone());
            move || async move { delete_keys(&url, &prefix).await }
        });
        let locks = locks::connect(Some(&url), &prefix)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "connect to Redis at {url} ({}): {e}",
                    support::REDIS_URL_VAR
                )
            });
        Self {
            locks,
            prefix: Some(prefix),
            _cleanup: Some(cleanup),
        }
    }

    /// Another handle on the same backend in a different namespace: a new in-process service,
    /// or the same Redis server under another prefix.
    async fn other_namespace(&self) -> Self {
        match self.prefix {
            None => Self::memory().await,
            Some(_) => Self::redis().await,
        }
    }
}

async fn redis_connection(url: &str) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis")
}

async fn delete_keys(url: &str, prefix: &str) {
    let Ok(client) = ::redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        eprintln!("cleanup of {prefix}*: cannot connect");
        return;
    };
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let deleted: ::redis::RedisResult<i64> =
            ::redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
        if let Err(e) = deleted {
            eprintln!("cleanup of {prefix}*: {e}");
        }
    }
}

// Each conformance test below, on both backends.
conformance!(
    [
        memory => { let l = super::TestLocks::memory().await; assert_eq!(l.kind(), "memory"); l },
        redis => { let l = super::TestLocks::redis().await; assert_eq!(l.kind(), "redis"); l },
    ],
    [
        acquire_refuses_a_second_owner,
        owner_reacquire_extends_the_lock,
        release_by_a_non_owner_does_nothing,
        release_by_the_owner_frees_the_lock,
        ttl_expiry_frees_the_lock,
        keys_and_namespaces_are_independent,
        rate_windows_count_and_reset,
        ping_answers,
    ]
);

// ---------------------------------------------------------------------------------------------
// Conformance tests

async fn acquire(l: &TestLocks, key: &str, owner: &str, ttl: Duration) -> bool {
    l.try_acquire(key, owner, ttl).await.expect("try_acquire")
}

async fn acquire_refuses_a_second_owner(l: &TestLocks) {
    assert!(acquire(l, "ds-1", "w1", LONG).await, "a free lock is taken");
    assert!(
        !acquire(l, "ds-1", "w2", LONG).await,
        "a held lock is refused"
    );
    assert!(
        !acquire(l, "ds-1", "w3", LONG).await,
        "and refused again to anyone else"
    );
}

async fn owner_reacquire_extends_the_lock(l: &TestLocks) {
    assert!(acquire(l, "ds", "w1", Duration::from_millis(400)).await);
    assert!(
        acquire(l, "ds", "w1", LONG).await,
        "the owner may take its lock again"
    );
    // Past the first TTL: the extension keeps it held.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !acquire(l, "ds", "w2", LONG).await,
        "the re-acquisition extended the TTL"
    );
}

async fn release_by_a_non_owner_does_nothing(l: &TestLocks) {
    assert!(acquire(l, "ds", "w1", LONG).await);
    l.release("ds", "w2").await.expect("release by a non-owner");
    assert!(
        !acquire(l, "ds", "w2", LONG).await,
        "still held by w1 after w2's release"
    );
    l.release("never-taken", "w2")
        .await
        .expect("releasing a free key is fine");
}

async fn release_by_the_owner_frees_the_lock(l: &TestLocks) {
    assert!(acquire(l, "ds", "w1", LONG).await);
    l.release("ds", "w1").await.expect("release by the owner");
    assert!(
        acquire(l, "ds", "w2", LONG).await,
        "free after the owner's release"
    );
    // The first owner's late release must not free the new owner's lock.
    l.release("ds", "w1").await.expect("stale release");
    assert!(!acquire(l, "ds", "w3", LONG).await, "w2 still holds it");
}

async fn ttl_expiry_frees_the_lock(l: &TestLocks) {
    assert!(acquire(l, "ds", "w1", Duration::from_millis(200)).await);
    assert!(!acquire(l, "ds", "w2", LONG).await, "held before the TTL");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        acquire(l, "ds", "w2", LONG).await,
        "free once the TTL has passed"
    );
    assert!(!acquire(l, "ds", "w1", LONG).await, "and now w2's");
}

async fn keys_and_namespaces_are_independent(l: &TestLocks) {
    assert!(acquire(l, "ds-a", "w1", LONG).await);
    assert!(
        acquire(l, "ds-b", "w2", LONG).await,
        "another key is not affected"
    );
    let other = l.other_namespace().await;
    assert!(
        acquire(&other, "ds-a", "w3", LONG).await,
        "another namespace is not affected"
    );
    assert!(!acquire(l, "ds-a", "w3", LONG).await);
}

async fn rate_windows_count_and_reset(l: &TestLocks) {
    let window = Duration::from_millis(600);
    let (n, left) = l.rate_hit("key-a", window).await.expect("rate_hit");
    assert_eq!(n, 1, "the first hit opens the window");
    assert!(left <= window && left > Duration::ZERO, "{left:?}");
    assert_eq!(l.rate_hit("key-a", window).await.expect("hit").0, 2);
    let (n, _) = l.rate_hit("key-a", window).await.expect("hit");
    assert_eq!(n, 3, "hits add up within the window");
    assert_eq!(
        l.rate_hit("key-b", window).await.expect("hit").0,
        1,
        "another key has its own window"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        l.rate_hit("key-a", window).await.expect("hit").0,
        1,
        "a new window starts after the old one ends"
    );
}

async fn ping_answers(l: &TestLocks) {
    l.ping().await.expect("ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stores_locks_under_the_prefix_with_a_ttl() {
    let l = TestLocks::redis().await;
    let prefix = l.prefix.clone().expect("redis has a prefix");
    assert!(acquire(&l, "ds", "w1", LONG).await);

    let mut conn = redis_connection(&support::redis_url()).await;
    let key = format!("{prefix}lock:ds");
    let owner: Option<String> = ::redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(owner.as_deref(), Some("w1"));
    let pttl: i64 = ::redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    assert!(
        (1..=30_000).contains(&pttl),
        "the key expires with the TTL, got PTTL {pttl}"
    );

    l.release("ds", "w1").await.expect("release");
    let exists: i64 = ::redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("EXISTS");
    assert_eq!(exists, 0, "release deletes the key");
}
