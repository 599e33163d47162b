//! Authentication, authorisation and rate limits at the HTTP boundary.
//!
//! Credentials, in `Authorization: Bearer …` (or `X-API-Key`):
//! - an API key `cak_{id}_{secret}` (`climate-api keys create`), checked against its stored hash;
//! - `basic//TOKEN`, a token from `GET /credentials/basic` (HTTP Basic: user = key name or id,
//!   password = the key), valid `auth.token_hours` and only while its key is;
//! - `oidc/{provider}/JWT` (openEO) or a bare JWT from a configured OpenID Connect issuer,
//!   verified against the issuer's JWKS (fetched, cached, refetched for an unknown `kid`).
//!
//! [`guard`] runs on every routed request: it resolves the caller ([`Principal`]), answers 401
//! when credentials are missing or wrong and 403 when they lack the route's scope
//! (the access the route declares in [`crate::router::ROUTES`]), and counts the caller's requests against
//! `auth.requests_per_minute` (429 with `Retry-After`). Presented secrets are never logged.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use climate_domain::auth::{Access, Scope, allows, parse_scopes};
use climate_infra::auth::{hash_secret, parse_key, verify_secret};
use climate_infra::config::{AuthConfig, OidcProviderConfig};
use climate_infra::db::ApiKeyRecord;
use jsonwebtoken::jwk::JwkSet;
use serde::Serialize;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// How long a fetched JWKS is trusted before it is fetched again.
const JWKS_TTL: Duration = Duration::from_secs(600);
/// Least time between two fetches of a JWKS prompted by an unknown `kid`.
const JWKS_REFETCH: Duration = Duration::from_secs(2);
/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;

/// Who is calling.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Principal {
    /// Stable id: `key:{id}`, `oidc:{provider}:{sub}`, or `local` when authentication is off.
    pub subject: String,
    /// Display name.
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
    /// How the caller authenticated: `api_key`, `basic`, `oidc` or `disabled`.
    pub method: &'static str,
}

impl Principal {
    /// Whether the caller may do what `scope` allows.
    pub fn can(&self, scope: Scope) -> bool {
        allows(&self.scopes, scope)
    }

    /// Whom a request acts as: the caller's subject, or `anonymous` without credentials (jobs,
    /// idempotency keys and history events are recorded under it).
    pub fn subject_of(principal: Option<&Self>) -> String {
        principal.map_or_else(|| "anonymous".to_owned(), |p| p.subject.clone())
    }
}

/// The authentication settings and OIDC verifiers of the process.
#[derive(Debug)]
pub struct Auth {
    /// `auth.*`.
    pub config: AuthConfig,
    oidc: Vec<OidcVerifier>,
}

impl Auth {
    /// Builds the verifiers of `config`.
    ///
    /// # Errors
    /// When the HTTP client for JWKS cannot be built.
    pub fn new(config: AuthConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()?;
        let oidc = config
            .oidc
            .iter()
            .map(|c| OidcVerifier {
                config: c.clone(),
                http: http.clone(),
                jwks: Mutex::new(None),
                fetch: tokio::sync::Mutex::new(None),
            })
            .collect();
        Ok(Self { config, oidc })
    }

    /// The configured OIDC providers.
    pub fn oidc_providers(&self) -> impl Iterator<Item = &OidcProviderConfig> {
        self.oidc.iter().map(|v| &v.config)
    }
}

/// 401 with the challenge naming the accepted schemes.
fn unauthorized(code: ErrorCode, message: impl Into<String>) -> Response {
    (
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="climate-api""#),
        )],
        ApiError::new(code, message),
    )
        .into_response()
}

/// Why credentials were not accepted.
#[derive(Debug)]
pub enum Denied {
    /// Wrong, unknown, revoked or expired credentials: 401 `invalid_credentials`.
    Invalid(String),
    /// They could not be checked (a backend failed): 503 or 500.
    Error(ApiError),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Self::Invalid(message) => unauthorized(ErrorCode::InvalidCredentials, message),
            Self::Error(e) => e.into_response(),
        }
    }
}

fn invalid(message: impl Into<String>) -> Denied {
    Denied::Invalid(message.into())
}

fn backend(e: climate_infra::db::DbError) -> Denied {
    Denied::Error(ApiError::from(e))
}

/// The principal of an active key, or why not.
fn key_principal(key: ApiKeyRecord, method: &'static str) -> Result<Principal, Denied> {
    if !key.is_active(Utc::now()) {
        return Err(invalid(format!(
            "API key {} is revoked or expired; ask an administrator for a new one",
            key.key_id
        )));
    }
    let scopes = parse_scopes(&key.scopes).map_err(|e| Denied::Error(ApiError::internal(e)))?;
    Ok(Principal {
        subject: format!("key:{}", key.key_id),
        name: key.name,
        scopes,
        method,
    })
}

/// Verifies an API key `cak_{id}_{secret}`.
pub async fn verify_api_key(state: &AppState, presented: &str) -> Result<Principal, Denied> {
    let Some((id, secret)) = parse_key(presented) else {
        return Err(invalid(
            "malformed API key: expected cak_<id>_<secret> as printed by `climate-api keys create`",
        ));
    };
    let db = &state.platform.db;
    let key = db.get_api_key(id).await.map_err(backend)?;
    let Some(key) = key.filter(|k| verify_secret(secret, &k.secret_hash)) else {
        return Err(invalid("unknown API key or wrong secret"));
    };
    let principal = key_principal(key, "api_key")?;
    if let Err(e) = db.touch_api_key(id, Utc::now()).await {
        tracing::debug!(error = %e, "could not record the key's last use");
    }
    Ok(principal)
}

/// Resolves the credentials of a request: `Ok(None)` when it carries none.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Option<Principal>, Denied> {
    fn text(v: &HeaderValue) -> Result<&str, Denied> {
        v.to_str()
            .map(str::trim)
            .map_err(|_| invalid("the Authorization header is not ASCII"))
    }
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = text(v)?;
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            return Err(invalid(
                "HTTP Basic is accepted only by GET /credentials/basic, which returns a token to send as `Authorization: Bearer basic//TOKEN`",
            ));
        }
        if !scheme.eq_ignore_ascii_case("bearer") || rest.is_empty() {
            return Err(invalid(
                "unsupported Authorization scheme: send `Bearer <API key>`, `Bearer basic//TOKEN` or `Bearer oidc/<provider>/<JWT>`",
            ));
        }
        if let Some(token) = rest.strip_prefix("basic//") {
            let key = state
                .platform
                .db
                .token_key(&hash_secret(token), Utc::now())
                .await
                .map_err(backend)?;
            let Some(key) = key else {
                return Err(invalid(
                    "unknown or expired token; get a new one from GET /credentials/basic",
                ));
            };
            return key_principal(key, "basic").map(Some);
        }
        if let Some(rest) = rest.strip_prefix("oidc/") {
            let Some((provider, jwt)) = rest.split_once('/') else {
                return Err(invalid("expected `Bearer oidc/<provider>/<JWT>`"));
            };
            let Some(v) = state.auth.oidc.iter().find(|v| v.config.id == provider) else {
                return Err(invalid(format!(
                    "unknown OIDC provider '{provider}'; GET /credentials/oidc lists the accepted ones"
                )));
            };
            return v.verify(jwt).await.map(Some);
        }
        if rest.starts_with(climate_infra::auth::KEY_PREFIX) {
            return verify_api_key(state, rest).await.map(Some);
        }
        if rest.split('.').count() == 3 {
            let issuer = unverified_issuer(rest);
            let Some(v) = state.auth.oidc.iter().find(|v| {
                Some(v.config.issuer.trim_end_matches('/'))
                    == issuer.as_deref().map(|i| i.trim_end_matches('/'))
            }) else {
                return Err(invalid(
                    "the token's issuer is not a configured OIDC provider (auth.oidc)",
                ));
            };
            return v.verify(rest).await.map(Some);
        }
        return Err(invalid(
            "unrecognised bearer token: send an API key (cak_…), basic//TOKEN or oidc/<provider>/<JWT>",
        ));
    }
    if let Some(v) = headers.get("x-api-key") {
        return verify_api_key(state, text(v)?).await.map(Some);
    }
    Ok(None)
}

/// The `iss` claim of a JWT, read without verification (only to pick the provider).
fn unverified_issuer(jwt: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// The middleware guarding every routed request (see the module documentation).
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_owned(), |m| m.as_str().to_owned());
    let cfg = &state.auth.config;
    if !cfg.enabled {
        req.extensions_mut().insert(Principal {
            subject: "local".into(),
            name: "local (authentication disabled)".into(),
            scopes: Scope::ALL.to_vec(),
            method: "disabled",
        });
        return next.run(req).await;
    }
    let access = crate::router::access(req.method().as_str(), &route);
    if access == Access::OwnCredentials {
        // The handler reads the credentials itself.
        return next.run(req).await;
    }
    let needed = access.needed(cfg.protect_reads);
    let principal = match authenticate(&state, req.headers()).await {
        Ok(p) => p,
        Err(denied) => return denied.into_response(),
    };
    match (&principal, needed) {
        (None, Some(scope)) => {
            return unauthorized(
                ErrorCode::AuthenticationRequired,
                format!(
                    "{} {route} needs credentials with scope '{scope}': send `Authorization: Bearer <API key>` (created with `climate-api keys create`)",
                    req.method()
                ),
            );
        }
        (Some(p), Some(scope)) if !p.can(scope) => {
            return ApiError::new(
                ErrorCode::InsufficientScope,
                format!(
                    "{} {route} needs scope '{scope}'; these credentials have '{}'",
                    req.method(),
                    climate_domain::auth::format_scopes(&p.scopes)
                ),
            )
            .into_response();
        }
        _ => {}
    }
    if let Some(p) = &principal
        && cfg.requests_per_minute > 0
    {
        match state
            .platform
            .locks
            .rate_hit(&p.subject, Duration::from_secs(60))
            .await
        {
            Ok((n, left)) if n > cfg.requests_per_minute => {
                let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                return (
                    [(header::RETRY_AFTER, HeaderValue::from(secs.max(1)))],
                    ApiError::new(
                        ErrorCode::RateLimited,
                        format!(
                            "more than {} requests in a minute for these credentials; retry after {} s",
                            cfg.requests_per_minute,
                            secs.max(1)
                        ),
                    ),
                )
                    .into_response();
            }
            Ok(_) => {}
            // Limits protect the service; a cache outage must not take the API down with it.
            Err(e) => tracing::warn!(error = %e, "rate limiter unavailable; request let through"),
        }
    }
    if let Some(p) = principal {
        req.extensions_mut().insert(p);
    }
    next.run(req).await
}

/// An OIDC provider and its cached signing keys.
#[derive(Debug)]
struct OidcVerifier {
    config: OidcProviderConfig,
    http: reqwest::Client,
    jwks: Mutex<Option<(JwkSet, Instant)>>,
    /// Serialises fetches; holds when the last one happened.
    fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl OidcVerifier {
    fn cached(&self) -> Option<(JwkSet, Instant)> {
        self.jwks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn jwks_url(&self) -> Result<String, String> {
        if let Some(u) = &self.config.jwks_url {
            return Ok(u.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let doc: serde_json::Value = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("{url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        doc.get("jwks_uri")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("{url} has no jwks_uri"))
    }

    /// The key set, fetched when absent, stale, or (at most every [`JWKS_REFETCH`]) when
    /// `force`d because a token names an unknown key.
    async fn keys(&self, force: bool) -> Result<JwkSet, Denied> {
        if let Some((set, at)) = self.cached()
            && !force
            && at.elapsed() < JWKS_TTL
        {
            return Ok(set);
        }
        let mut last = self.fetch.lock().await;
        if let Some((set, at)) = self.cached()
            && last.is_some_and(|l| l.elapsed() < JWKS_REFETCH)
            && at.elapsed() < JWKS_TTL
        {
            return Ok(set);
        }
        *last = Some(Instant::now());
        let fetched = async {
            let url = self.jwks_url().await?;
            self.http
                .get(&url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| format!("{url}: {e}"))?
                .json::<JwkSet>()
                .await
                .map_err(|e| format!("{url}: {e}"))
        }
        .await;
        match fetched {
            Ok(set) => {
                *self
                    .jwks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some((set.clone(), Instant::now()));
                Ok(set)
            }
            Err(e) => {
                tracing::warn!(provider = %self.config.id, error = %e, "cannot fetch the OIDC provider's JWKS");
                // A stale set still verifies tokens signed by keys that were not rotated.
                self.cached()
                    .map(|(set, _)| set)
                    .ok_or_else(|| Denied::Error(ApiError::unavailable("OIDC provider", e)))
            }
        }
    }

    async fn verify(&self, jwt: &str) -> Result<Principal, Denied> {
        let bad = |why: String| {
            invalid(format!(
                "invalid OIDC token from '{}': {why}",
                self.config.id
            ))
        };
        let head = jsonwebtoken::decode_header(jwt).map_err(|e| bad(e.to_string()))?;
        let kid = head.kid.clone().unwrap_or_default();
        let mut set = self.keys(false).await?;
        let find = |set: &JwkSet| {
            if kid.is_empty() {
                set.keys.first().cloned()
            } else {
                set.find(&kid).cloned()
            }
        };
        let jwk = match find(&set) {
            Some(k) => k,
            None => {
                set = self.keys(true).await?;
                find(&set).ok_or_else(|| bad(format!("no key '{kid}' in the provider's JWKS")))?
            }
        };
        // The algorithm must suit the key: never a shared secret, never a family other than
        // the key's (algorithm-confusion attacks).
        use jsonwebtoken::Algorithm as A;
        use jsonwebtoken::jwk::AlgorithmParameters as P;
        let suits = match &jwk.algorithm {
            P::RSA(_) => matches!(
                head.alg,
                A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512
            ),
            P::EllipticCurve(_) => matches!(head.alg, A::ES256 | A::ES384),
            P::OctetKeyPair(_) => head.alg == A::EdDSA,
            _ => false,
        };
        if !suits {
            return Err(bad(format!(
                "algorithm {:?} does not suit key '{kid}'",
                head.alg
            )));
        }
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|e| bad(e.to_string()))?;
        let mut validation = jsonwebtoken::Validation::new(head.alg);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_issuer(&[&self.config.issuer]);
        match &self.config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &validation)
            .map_err(|e| bad(e.to_string()))?;
        let claims = data.claims;
        let sub = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let mut scopes = self.config.default_scopes.clone();
        let granted: Vec<String> = match claims.get(&self.config.scopes_claim) {
            Some(serde_json::Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        for g in granted {
            if let Ok(s) = g.strip_prefix("climate:").unwrap_or(&g).parse::<Scope>() {
                scopes.push(s);
            }
        }
        scopes.sort();
        scopes.dedup();
        let name = ["preferred_username", "email", "name"]
            .iter()
            .find_map(|c| claims.get(*c).and_then(|v| v.as_str()))
            .unwrap_or(&sub)
            .to_owned();
        Ok(Principal {
            subject: format!("oidc:{}:{sub}", self.config.id),
            name,
            scopes,
            method: "oidc",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_is_read_from_the_payload() {
        use base64::Engine as _;
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let jwt = format!(
            "{}.{}.sig",
            enc(r#"{"alg":"ES256"}"#),
            enc(r#"{"iss":"https://id.example.org","sub":"u"}"#)
        );
        assert_eq!(
            unverified_issuer(&jwt).as_deref(),
            Some("https://id.example.org")
        );
        assert_eq!(unverified_issuer("a.b.c"), None);
    }
}
