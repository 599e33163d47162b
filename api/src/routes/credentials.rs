//! openEO-style credentials: HTTP Basic → token, the accepted OIDC providers, and `/me`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use climate_infra::auth::{hash_secret, new_token};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Principal, verify_api_key};
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::state::AppState;

/// Answer of `GET /credentials/basic`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessToken {
    /// Send as `Authorization: Bearer basic//{access_token}`.
    pub access_token: String,
}

/// `GET /credentials/basic`: exchanges HTTP Basic credentials (user = the key's name or id,
/// password = the API key) for a token valid `auth.token_hours`, to send as
/// `Authorization: Bearer basic//TOKEN`. Revoking the key revokes its tokens.
#[utoipa::path(get, path = "/credentials/basic", tag = "credentials",
    responses((status = 200, body = AccessToken), (status = 401, body = ErrorBody)))]
pub async fn basic(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let challenge = || {
        (
            [(header::WWW_AUTHENTICATE, r#"Basic realm="climate-api""#)],
            ApiError::new(
                ErrorCode::AuthenticationRequired,
                "send HTTP Basic credentials: user = the API key's name or id, password = the API key",
            ),
        )
            .into_response()
    };
    let Some((user, password)) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
    else {
        return challenge();
    };
    let principal = match verify_api_key(&state, &password).await {
        Ok(p) => p,
        Err(denied) => return denied.into_response(),
    };
    let key_id = principal.subject.trim_start_matches("key:").to_owned();
    if user != principal.name && user != key_id {
        return challenge();
    }
    let token = new_token();
    let now = Utc::now();
    let hours = i64::try_from(state.auth.config.token_hours).unwrap_or(24);
    let saved = state
        .platform
        .db
        .create_token(
            &hash_secret(&token),
            &key_id,
            now,
            now + chrono::TimeDelta::hours(hours),
        )
        .await;
    if let Err(e) = saved {
        return ApiError::from(e).into_response();
    }
    tracing::info!(key.id = %key_id, "token issued");
    Json(AccessToken {
        access_token: token,
    })
    .into_response()
}

/// An accepted OIDC provider.
#[derive(Debug, Serialize, ToSchema)]
pub struct OidcProvider {
    /// Id used in `Bearer oidc/{id}/TOKEN`.
    pub id: String,
    /// Issuer URL.
    pub issuer: String,
    /// Display name.
    pub title: String,
    /// Scopes a client should request.
    pub scopes: Vec<String>,
}

/// Answer of `GET /credentials/oidc`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OidcProviders {
    /// The configured providers (`auth.oidc`).
    pub providers: Vec<OidcProvider>,
}

/// `GET /credentials/oidc`: the OpenID Connect providers whose tokens are accepted.
#[utoipa::path(get, path = "/credentials/oidc", tag = "credentials",
    responses((status = 200, body = OidcProviders)))]
pub async fn oidc(State(state): State<AppState>) -> Json<OidcProviders> {
    Json(OidcProviders {
        providers: state
            .auth
            .oidc_providers()
            .map(|p| OidcProvider {
                id: p.id.clone(),
                issuer: p.issuer.clone(),
                title: p.title.clone().unwrap_or_else(|| p.id.clone()),
                scopes: vec!["openid".into()],
            })
            .collect(),
    })
}

/// Answer of `GET /me`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// Stable id of the caller.
    pub user_id: String,
    /// Display name.
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// `api_key`, `basic`, `oidc` or `disabled`.
    pub authentication: String,
}

/// `GET /me`: who the credentials belong to and what they may do.
#[utoipa::path(get, path = "/me", tag = "credentials",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(principal: Option<axum::Extension<Principal>>) -> Result<Json<Me>, ApiError> {
    let axum::Extension(p) = principal.ok_or_else(|| {
        ApiError::new(
            ErrorCode::AuthenticationRequired,
            "GET /me needs credentials",
        )
    })?;
    Ok(Json(Me {
        user_id: p.subject,
        name: p.name,
        scopes: p.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        authentication: p.method.to_owned(),
    }))
}
