//! Authentication and authorisation: API keys with scopes (created by `climate-api keys`),
//! HTTP Basic → token, OIDC bearer tokens against a local JWKS, rate limits, and no secrets in
//! logs.

use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use climate_tests::mock::MockUpstream;
use climate_tests::{Options, Shape, TestApp, create_key, env, keys_command, says};
use serde_json::{Value, json};

fn body() -> Value {
    json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-03", "end": "2025-07-04"})
}

/// A client sending `auth` as the Authorization header (none when `None`).
fn client(auth: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(a) = auth {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(a).expect("header"),
        );
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn post(c: &reqwest::Client, app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let r = c.post(app.url(path)).json(body).send().await.expect("POST");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(c: &reqwest::Client, app: &TestApp, path: &str) -> (u16, Value) {
    let r = c.get(app.url(path)).send().await.expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn keys(app: &TestApp, args: &[&str]) -> anyhow::Result<String> {
    keys_command(&app.config_path, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_endpoints_need_keys_with_the_right_scope() -> anyhow::Result<()> {
    let app = TestApp::standalone().await?;
    let anonymous = client(None);

    // Reads are public; writes are not.
    assert_eq!(get(&anonymous, &app, "/datasets").await.0, 200);
    let r = anonymous
        .post(app.url("/ingestions"))
        .json(&body())
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()?
            .starts_with("Bearer"),
        "a 401 names the scheme"
    );
    let err: Value = r.json().await?;
    assert_eq!(err["code"], "authentication_required", "{err}");
    assert!(says(&err, "ingest"), "{err}");
    assert!(err["id"].as_str().is_some_and(|s| !s.is_empty()), "{err}");

    // Wrong keys are refused, even on public routes, without saying which part was wrong.
    let forged = format!("Bearer cak_0123456789abcdef_{}", "A".repeat(43));
    let (status, err) = get(&client(Some(&forged)), &app, "/datasets").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (401, Some("invalid_credentials")),
        "{err}"
    );
    let (status, err) = get(&client(Some("Bearer not-a-key")), &app, "/me").await;
    assert_eq!(status, 401, "{err}");
    let (status, err) = get(&client(Some("Digest abc")), &app, "/me").await;
    assert_eq!(status, 401, "{err}");
    assert!(says(&err, "Bearer"), "{err}");

    // Scopes: read < ingest < admin.
    let reader = create_key(&app.config_path, "dashboard", "read")?;
    let ingester = create_key(&app.config_path, "dhis2-sync", "ingest")?;
    let (status, err) = post(
        &client(Some(&format!("Bearer {reader}"))),
        &app,
        "/ingestions",
        &body(),
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (403, Some("insufficient_scope")),
        "{err}"
    );
    let ingest_client = client(Some(&format!("Bearer {ingester}")));
    let (status, run) = post(&ingest_client, &app, "/ingestions", &body()).await;
    assert_eq!(status, 202, "{run}");
    let (status, me) = get(&ingest_client, &app, "/me").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["name"], "dhis2-sync");
    assert_eq!(me["scopes"], json!(["ingest"]));
    assert_eq!(me["authentication"], "api_key");
    let r = ingest_client
        .patch(app.url("/datasets/sample_era5land_t2m_daily_sle/schedule"))
        .json(&json!({"paused": true}))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 403, "schedules need admin");
    // The X-API-Key header is accepted too.
    let r = anonymous
        .get(app.url("/me"))
        .header("x-api-key", &reader)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 200);

    // HTTP Basic (name + key) → token → `Bearer basic//TOKEN`.
    let r = anonymous
        .get(app.url("/credentials/basic"))
        .basic_auth("dhis2-sync", Some(&ingester))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 200);
    let token = r.json::<Value>().await?["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let token_client = client(Some(&format!("Bearer basic//{token}")));
    let (status, me) = get(&token_client, &app, "/me").await;
    assert_eq!(
        (status, me["authentication"].as_str()),
        (200, Some("basic")),
        "{me}"
    );
    let r = anonymous
        .get(app.url("/credentials/basic"))
        .basic_auth("dhis2-sync", Some(&reader))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 401, "the user must own the key");
    let r = anonymous.get(app.url("/credentials/basic")).send().await?;
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()?
            .starts_with("Basic")
    );

    // Keys are listed without secrets; revoking one stops it and its tokens.
    let listing = keys(&app, &["list"])?;
    assert!(
        listing.contains("dhis2-sync") && listing.contains("dashboard"),
        "{listing}"
    );
    let id = ingester.split('_').nth(1).expect("key id");
    let secret = &ingester[4 + id.len() + 1..];
    assert!(!listing.contains(secret), "a listing never shows a secret");
    let line = listing
        .lines()
        .find(|l| l.contains("dhis2-sync"))
        .expect("row");
    assert!(
        line.contains("active") && !line.contains(" - "),
        "last use recorded: {line}"
    );
    keys(&app, &["revoke", id])?;
    assert_eq!(get(&ingest_client, &app, "/me").await.0, 401, "revoked key");
    assert_eq!(
        get(&token_client, &app, "/me").await.0,
        401,
        "token of a revoked key"
    );
    assert!(
        keys(&app, &["list"])?
            .lines()
            .any(|l| l.contains(id) && l.contains("revoked"))
    );
    assert!(
        keys(&app, &["revoke", id]).is_err(),
        "revoking twice is an error"
    );

    // Nothing secret reaches the logs.
    let logs = app.full_logs();
    for s in [
        &ingester,
        &reader,
        &token,
        app.api_key.as_ref().expect("admin key"),
    ] {
        let tail = &s[s.len() - 20..];
        assert!(!logs.contains(tail), "a secret appears in the logs");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_per_key_and_answer_429() -> anyhow::Result<()> {
    // Limits live in Redis, shared by every API replica.
    let redis = env("CLIMATE_TEST_REDIS_URL", Some("redis://127.0.0.1:6379"));
    let prefix = format!("e2e:{}:", uuid::Uuid::now_v7().simple());
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            auth_yaml: Some("auth:\n  requests_per_minute: 5\n".into()),
            extra_yaml: format!("cache:\n  url: \"{redis}\"\n  prefix: \"{prefix}\"\n"),
            ..Options::default()
        },
    )
    .await?;
    let (key_a, key_b) = (
        create_key(&app.config_path, "a", "read")?,
        create_key(&app.config_path, "b", "read")?,
    );
    let a = client(Some(&format!("Bearer {key_a}")));
    let b = client(Some(&format!("Bearer {key_b}")));
    for i in 0..5 {
        assert_eq!(
            get(&a, &app, "/me").await.0,
            200,
            "request {i} is within the limit"
        );
    }
    let r = a.get(app.url("/me")).send().await?;
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str()?.parse()?;
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let err: Value = r.json().await?;
    assert_eq!(err["code"], "rate_limited", "{err}");
    assert_eq!(
        get(&b, &app, "/me").await.0,
        200,
        "another key has its own budget"
    );
    assert_eq!(
        get(&client(None), &app, "/datasets").await.0,
        200,
        "anonymous reads are not limited"
    );
    // The counter is in Redis under the configured prefix.
    let out = std::process::Command::new("redis-cli")
        .args([
            "-u",
            &redis,
            "--scan",
            "--pattern",
            &format!("{prefix}rate:*"),
        ])
        .output()?;
    anyhow::ensure!(out.status.success(), "redis-cli failed");
    let stored = String::from_utf8_lossy(&out.stdout).into_owned();
    for key in [&key_a, &key_b] {
        let id = key.split('_').nth(1).expect("key id");
        assert!(stored.contains(&format!("rate:key:{id}")), "{stored}");
    }
    Ok(())
}

/// A P-256 signing key published in a JWKS.
struct Signer {
    kid: String,
    pkcs8: Vec<u8>,
    jwk: Value,
}

impl Signer {
    fn new(kid: &str) -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("key generation");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("key pair");
        let point = pair.public_key().as_ref();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        Self {
            kid: kid.to_owned(),
            pkcs8: pkcs8.as_ref().to_vec(),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                        "y": URL_SAFE_NO_PAD.encode(&point[33..65])}),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8),
        )
        .expect("sign")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_tokens_are_verified_against_the_issuers_jwks() -> anyhow::Result<()> {
    let idp = MockUpstream::start().await?;
    let issuer = format!("{}/realms/health", idp.base);
    idp.serve_file(
        "/realms/health/.well-known/openid-configuration",
        json!({"issuer": issuer, "jwks_uri": format!("{}/realms/health/certs", idp.base)})
            .to_string(),
    );
    let first = Signer::new("key-1");
    idp.serve_file(
        "/realms/health/certs",
        json!({"keys": [first.jwk]}).to_string(),
    );
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            auth_yaml: Some(format!(
                "auth:\n  oidc:\n    - id: local\n      issuer: \"{issuer}\"\n      audience: climate-api\n      default_scopes: [read]\n"
            )),
            ..Options::default()
        },
    )
    .await?;
    let now = chrono::Utc::now().timestamp();
    let claims = |sub: &str, scope: &str, exp: i64, aud: &str| {
        json!({"iss": issuer, "sub": sub, "aud": aud, "exp": exp, "iat": now,
               "scope": scope, "preferred_username": format!("{sub}@moh")})
    };
    let (status, providers) = get(&client(None), &app, "/credentials/oidc").await;
    assert_eq!(status, 200);
    assert_eq!(providers["providers"][0]["id"], "local", "{providers}");

    // openEO form and bare JWT; the scope claim grants `ingest`.
    let token = first.sign(&claims(
        "alice",
        "openid climate:ingest",
        now + 300,
        "climate-api",
    ));
    let alice = client(Some(&format!("Bearer oidc/local/{token}")));
    let (status, me) = get(&alice, &app, "/me").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user_id"], "oidc:local:alice");
    assert_eq!(me["name"], "alice@moh");
    assert_eq!(me["scopes"], json!(["read", "ingest"]));
    assert_eq!(post(&alice, &app, "/ingestions", &body()).await.0, 202);
    assert_eq!(
        get(&client(Some(&format!("Bearer {token}"))), &app, "/me")
            .await
            .0,
        200
    );

    // Default scopes only: reading yes, ingesting no.
    let bob = client(Some(&format!(
        "Bearer oidc/local/{}",
        first.sign(&claims("bob", "openid", now + 300, "climate-api"))
    )));
    assert_eq!(post(&bob, &app, "/ingestions", &body()).await.0, 403);

    // Refused: expired, wrong audience, forged signature, unknown provider.
    for (why, auth) in [
        (
            "expired",
            format!(
                "Bearer oidc/local/{}",
                first.sign(&claims("c", "climate:ingest", now - 120, "climate-api"))
            ),
        ),
        (
            "audience",
            format!(
                "Bearer oidc/local/{}",
                first.sign(&claims("c", "climate:ingest", now + 300, "other-app"))
            ),
        ),
        (
            "forged",
            format!(
                "Bearer oidc/local/{}",
                Signer::new("key-1").sign(&claims("c", "climate:admin", now + 300, "climate-api"))
            ),
        ),
        ("provider", format!("Bearer oidc/elsewhere/{token}")),
    ] {
        let (status, err) = get(&client(Some(&auth)), &app, "/me").await;
        assert_eq!(status, 401, "{why}: {err}");
        assert_eq!(err["code"], "invalid_credentials", "{why}: {err}");
    }

    // Key rotation: a token signed by a key the cached JWKS does not have makes the API
    // fetch the JWKS again (at most every 2 s, so random key ids cannot flood the issuer).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let second = Signer::new("key-2");
    idp.serve_file(
        "/realms/health/certs",
        json!({"keys": [first.jwk, second.jwk]}).to_string(),
    );
    let rotated = client(Some(&format!(
        "Bearer oidc/local/{}",
        second.sign(&claims("carol", "climate:admin", now + 300, "climate-api"))
    )));
    let (status, me) = get(&rotated, &app, "/me").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me["scopes"],
        json!(["read", "admin"]),
        "granted scopes (admin implies ingest)"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_disabled_every_request_may_write() -> anyhow::Result<()> {
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            auth_yaml: Some("auth:\n  enabled: false\n".into()),
            ..Options::default()
        },
    )
    .await?;
    let anonymous = client(None);
    assert_eq!(post(&anonymous, &app, "/ingestions", &body()).await.0, 202);
    let (_, info) = get(&anonymous, &app, "/info").await;
    assert_eq!(info["auth"]["enabled"], false, "{info}");
    assert!(
        app.full_logs().contains("AUTHENTICATION IS DISABLED"),
        "the process says so loudly"
    );
    Ok(())
}
