//! API keys and the tokens issued for them (stored as hashes only).

use super::*;

/// An API key as stored: never the key itself, only the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public id, part of the key (`cak_{key_id}_{secret}`).
    pub key_id: String,
    /// Who or what the key is for.
    pub name: String,
    /// Granted scopes, space-separated (`read ingest`).
    pub scopes: String,
    /// Hex SHA-256 of the secret part.
    pub secret_hash: String,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Unusable from then on, if set.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revoked at, if revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last authenticated request (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKeyRecord {
    /// Whether the key may be used at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }
}

/// API keys and tokens. Part of [`Database`].
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a new API key.
    async fn create_api_key(&self, key: &ApiKeyRecord) -> DbResult<()>;
    /// A key by id (also revoked or expired ones).
    async fn get_api_key(&self, key_id: &str) -> DbResult<Option<ApiKeyRecord>>;
    /// Every key, oldest first.
    async fn list_api_keys(&self) -> DbResult<Vec<ApiKeyRecord>>;
    /// Revokes a key and its tokens: `false` when no active key has that id.
    async fn revoke_api_key(&self, key_id: &str, now: DateTime<Utc>) -> DbResult<bool>;
    /// Records that a key was used (at most one write a minute per key).
    async fn touch_api_key(&self, key_id: &str, now: DateTime<Utc>) -> DbResult<()>;
    /// Stores a token (its hash) issued for a key.
    async fn create_token(
        &self,
        token_hash: &str,
        key_id: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> DbResult<()>;
    /// The key a live token was issued for (the caller checks the key is still active).
    async fn token_key(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> DbResult<Option<ApiKeyRecord>>;
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    key_id: String,
    name: String,
    scopes: String,
    secret_hash: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
}

impl TryFrom<KeyRow> for ApiKeyRecord {
    type Error = DbError;

    fn try_from(row: KeyRow) -> DbResult<Self> {
        Ok(Self {
            key_id: row.key_id,
            name: row.name,
            scopes: row.scopes,
            secret_hash: row.secret_hash,
            created_at: from_ms(row.created_at)?,
            expires_at: opt_ms(row.expires_at)?,
            revoked_at: opt_ms(row.revoked_at)?,
            last_used_at: opt_ms(row.last_used_at)?,
        })
    }
}

macro_rules! impl_keys {
    ($name:ident, $db:ty) => {
        #[async_trait]
        impl KeyStore for $name {
            async fn create_api_key(&self, k: &ApiKeyRecord) -> DbResult<()> {
                sqlx::query(
                    "INSERT INTO api_keys (key_id, name, scopes, secret_hash, created_at, \
                     expires_at, revoked_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&k.key_id)
                .bind(&k.name)
                .bind(&k.scopes)
                .bind(&k.secret_hash)
                .bind(ms(k.created_at))
                .bind(k.expires_at.map(ms))
                .bind(k.revoked_at.map(ms))
                .bind(k.last_used_at.map(ms))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn get_api_key(&self, key_id: &str) -> DbResult<Option<ApiKeyRecord>> {
                sqlx::query_as::<_, KeyRow>(concat!(api_key_select!(), " WHERE key_id = $1"))
                    .bind(key_id)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(ApiKeyRecord::try_from)
                    .transpose()
            }

            async fn list_api_keys(&self) -> DbResult<Vec<ApiKeyRecord>> {
                sqlx::query_as::<_, KeyRow>(concat!(api_key_select!(), " ORDER BY created_at, key_id"))
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(ApiKeyRecord::try_from)
                    .collect()
            }

            async fn revoke_api_key(&self, key_id: &str, now: DateTime<Utc>) -> DbResult<bool> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL",
                )
                .bind(key_id)
                .bind(ms(now))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                sqlx::query("DELETE FROM auth_tokens WHERE key_id = $1")
                    .bind(key_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done == 1)
            }

            async fn touch_api_key(&self, key_id: &str, now: DateTime<Utc>) -> DbResult<()> {
                sqlx::query(
                    "UPDATE api_keys SET last_used_at = $2 WHERE key_id = $1 \
                     AND (last_used_at IS NULL OR last_used_at < $3)",
                )
                .bind(key_id)
                .bind(ms(now))
                .bind(ms(now) - 60_000)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn create_token(
                &self,
                token_hash: &str,
                key_id: &str,
                now: DateTime<Utc>,
                expires_at: DateTime<Utc>,
            ) -> DbResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM auth_tokens WHERE expires_at < $1")
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO auth_tokens (token_hash, key_id, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(token_hash)
                .bind(key_id)
                .bind(ms(now))
                .bind(ms(expires_at))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn token_key(
                &self,
                token_hash: &str,
                now: DateTime<Utc>,
            ) -> DbResult<Option<ApiKeyRecord>> {
                let row = sqlx::query(
                    "SELECT key_id FROM auth_tokens WHERE token_hash = $1 AND expires_at > $2",
                )
                .bind(token_hash)
                .bind(ms(now))
                .fetch_optional(&self.pool)
                .await?;
                match row {
                    Some(r) => self.get_api_key(&r.try_get::<String, _>("key_id")?).await,
                    None => Ok(None),
                }
            }
        }
    };
}

impl_keys!(SqliteDb, sqlx::Sqlite);
impl_keys!(PostgresDb, sqlx::Postgres);
