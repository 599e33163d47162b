//! Short-lived distributed locks with owners and TTLs (per-dataset serialisation): in-process
//! for standalone mode, Redis for distributed mode.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

/// Errors of the lock backend.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Redis failed or is unreachable.
    #[error("lock backend error: {0}")]
    Backend(String),
}

impl From<redis::RedisError> for LockError {
    fn from(e: redis::RedisError) -> Self {
        Self::Backend(e.to_string())
    }
}

/// Result alias of this module.
pub type LockResult<T> = Result<T, LockError>;

/// A lock service.
#[async_trait]
pub trait Locks: Send + Sync + std::fmt::Debug {
    /// `memory` or `redis`.
    fn kind(&self) -> &'static str;
    /// Takes `key` for `owner` for `ttl` if free (or already held by `owner`, which extends it).
    async fn try_acquire(&self, key: &str, owner: &str, ttl: Duration) -> LockResult<bool>;
    /// Releases `key` if `owner` holds it.
    async fn release(&self, key: &str, owner: &str) -> LockResult<()>;
    /// Counts one hit against `key` in its current fixed window of length `window` (which
    /// starts with the first hit): the hits so far in the window, and how long until it ends.
    async fn rate_hit(&self, key: &str, window: Duration) -> LockResult<(u64, Duration)>;
    /// Checks the backend.
    async fn ping(&self) -> LockResult<()>;
}

/// Opens the lock service for `url` (`None` → in-process).
///
/// # Errors
/// [`LockError`] when Redis is unreachable.
pub async fn connect(url: Option<&str>, prefix: &str) -> LockResult<Arc<dyn Locks>> {
    match url {
        None => Ok(Arc::new(MemoryLocks::default())),
        Some(url) => Ok(Arc::new(RedisLocks::connect(url, prefix).await?)),
    }
}

/// In-process locks.
#[derive(Debug, Default)]
pub struct MemoryLocks {
    held: Mutex<HashMap<String, (String, Instant)>>,
    windows: Mutex<HashMap<String, (u64, Instant)>>,
}

#[async_trait]
impl Locks for MemoryLocks {
    fn kind(&self) -> &'static str {
        "memory"
    }
    async fn try_acquire(&self, key: &str, owner: &str, ttl: Duration) -> LockResult<bool> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        match held.get(key) {
            Some((o, until)) if o != owner && *until > now => Ok(false),
            _ => {
                held.insert(key.to_owned(), (owner.to_owned(), now + ttl));
                Ok(true)
            }
        }
    }
    async fn release(&self, key: &str, owner: &str) -> LockResult<()> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.get(key).is_some_and(|(o, _)| o == owner) {
            held.remove(key);
        }
        Ok(())
    }
    async fn rate_hit(&self, key: &str, window: Duration) -> LockResult<(u64, Duration)> {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if windows.len() > 10_000 {
            windows.retain(|_, (_, end)| *end > now);
        }
        let entry = windows.entry(key.to_owned()).or_insert((0, now + window));
        if entry.1 <= now {
            *entry = (0, now + window);
        }
        entry.0 += 1;
        Ok((entry.0, entry.1 - now))
    }
    async fn ping(&self) -> LockResult<()> {
        Ok(())
    }
}

/// Redis locks: `SET key owner NX PX ttl`, extended and released only by their owner through
/// compare-and-set scripts, so a lock that expired and was taken by another owner is never
/// released by the first.
pub struct RedisLocks {
    conn: redis::aio::ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLocks")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

const ACQUIRE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

const RATE_HIT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
";

impl RedisLocks {
    /// Connects to Redis.
    ///
    /// # Errors
    /// [`LockError::Backend`] when Redis is unreachable.
    pub async fn connect(url: &str, prefix: &str) -> LockResult<Self> {
        let client = redis::Client::open(url)?;
        let conn = redis::aio::ConnectionManager::new(client).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
        })
    }
}

#[async_trait]
impl Locks for RedisLocks {
    fn kind(&self) -> &'static str {
        "redis"
    }
    async fn try_acquire(&self, key: &str, owner: &str, ttl: Duration) -> LockResult<bool> {
        let mut conn = self.conn.clone();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let got: i64 = redis::Script::new(ACQUIRE)
            .key(format!("{}lock:{key}", self.prefix))
            .arg(owner)
            .arg(ttl_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(got == 1)
    }
    async fn release(&self, key: &str, owner: &str) -> LockResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::Script::new(RELEASE)
            .key(format!("{}lock:{key}", self.prefix))
            .arg(owner)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
    async fn rate_hit(&self, key: &str, window: Duration) -> LockResult<(u64, Duration)> {
        let mut conn = self.conn.clone();
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let (n, ttl): (u64, u64) = redis::Script::new(RATE_HIT)
            .key(format!("{}rate:{key}", self.prefix))
            .arg(window_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok((n, Duration::from_millis(ttl)))
    }
    async fn ping(&self) -> LockResult<()> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}
