//! `Idempotency-Key`s: the first answer to a POST, replayed to its retries.

use super::*;

/// What [`IdempotencyStore::idempotency_begin`] found for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// First use (or a forgotten or abandoned one): handle the request, then finish or abort.
    Started,
    /// The first request with this key is still being handled.
    InFlight,
    /// The key was used for a different request.
    Mismatch,
    /// The first request's answer, to replay.
    Replay {
        /// HTTP status.
        status: u16,
        /// The stored answer (headers and body, as the caller stored it).
        response: String,
    },
}

/// Idempotency keys. Part of [`Database`].
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Starts handling a request under an `Idempotency-Key` of `principal`. A key whose
    /// request has been in flight since before `stale_before` was abandoned (its process died)
    /// and is taken over; one created before `expired_before` is forgotten.
    async fn idempotency_begin(
        &self,
        principal: &str,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
        expired_before: DateTime<Utc>,
    ) -> DbResult<IdempotencyBegin>;
    /// Stores the answer to replay for the key.
    async fn idempotency_finish(
        &self,
        principal: &str,
        key: &str,
        status: u16,
        response: &str,
    ) -> DbResult<()>;
    /// Forgets an unfinished key (the request failed in a way a retry may fix).
    async fn idempotency_abort(&self, principal: &str, key: &str) -> DbResult<()>;
    /// Deletes keys created before `before`.
    async fn purge_idempotency(&self, before: DateTime<Utc>) -> DbResult<u64>;
}

macro_rules! impl_idempotency {
    ($name:ident, $db:ty, $row:ty) => {
        #[async_trait]
        impl IdempotencyStore for $name {
            async fn idempotency_begin(
                &self,
                principal: &str,
                key: &str,
                fingerprint: &str,
                now: DateTime<Utc>,
                stale_before: DateTime<Utc>,
                expired_before: DateTime<Utc>,
            ) -> DbResult<IdempotencyBegin> {
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_keys (principal, idem_key, fingerprint, status, \
                     response, created_at) VALUES ($1, $2, $3, NULL, NULL, $4) \
                     ON CONFLICT (principal, idem_key) DO NOTHING",
                )
                .bind(principal)
                .bind(key)
                .bind(fingerprint)
                .bind(ms(now))
                .execute(&self.pool)
                .await?
                .rows_affected();
                if inserted == 1 {
                    return Ok(IdempotencyBegin::Started);
                }
                let Some(row) = sqlx::query(
                    "SELECT fingerprint, status, response, created_at FROM idempotency_keys \
                     WHERE principal = $1 AND idem_key = $2",
                )
                .bind(principal)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?
                else {
                    // Purged in between: a fresh start is right.
                    return self
                        .idempotency_begin(
                            principal,
                            key,
                            fingerprint,
                            now,
                            stale_before,
                            expired_before,
                        )
                        .await;
                };
                let created: i64 = row.try_get("created_at")?;
                let status: Option<i32> = row.try_get("status")?;
                let forgotten = created < ms(expired_before);
                let abandoned = status.is_none() && created < ms(stale_before);
                if forgotten || abandoned {
                    // Take the key over, unless another request just did.
                    let took = sqlx::query(
                        "UPDATE idempotency_keys SET fingerprint = $3, status = NULL, \
                         response = NULL, created_at = $4 \
                         WHERE principal = $1 AND idem_key = $2 AND created_at = $5",
                    )
                    .bind(principal)
                    .bind(key)
                    .bind(fingerprint)
                    .bind(ms(now))
                    .bind(created)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                    return Ok(if took == 1 {
                        IdempotencyBegin::Started
                    } else {
                        IdempotencyBegin::InFlight
                    });
                }
                if row.try_get::<String, _>("fingerprint")? != fingerprint {
                    return Ok(IdempotencyBegin::Mismatch);
                }
                Ok(match status {
                    None => IdempotencyBegin::InFlight,
                    Some(status) => IdempotencyBegin::Replay {
                        status: u16::try_from(status)
                            .map_err(|_| DbError::Corrupt(format!("status {status}")))?,
                        response: row
                            .try_get::<Option<String>, _>("response")?
                            .unwrap_or_default(),
                    },
                })
            }

            async fn idempotency_finish(
                &self,
                principal: &str,
                key: &str,
                status: u16,
                response: &str,
            ) -> DbResult<()> {
                sqlx::query(
                    "UPDATE idempotency_keys SET status = $3, response = $4 \
                     WHERE principal = $1 AND idem_key = $2",
                )
                .bind(principal)
                .bind(key)
                .bind(i32::from(status))
                .bind(response)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn idempotency_abort(&self, principal: &str, key: &str) -> DbResult<()> {
                sqlx::query(
                    "DELETE FROM idempotency_keys WHERE principal = $1 AND idem_key = $2 \
                     AND status IS NULL",
                )
                .bind(principal)
                .bind(key)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn purge_idempotency(&self, before: DateTime<Utc>) -> DbResult<u64> {
                Ok(
                    sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                        .bind(ms(before))
                        .execute(&self.pool)
                        .await?
                        .rows_affected(),
                )
            }
        }
    };
}

impl_idempotency!(SqliteDb, sqlx::Sqlite, sqlx::sqlite::SqliteRow);
impl_idempotency!(PostgresDb, sqlx::Postgres, sqlx::postgres::PgRow);
