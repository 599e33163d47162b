//! The authorisation matrix: every operation of the published OpenAPI document, called
//! anonymously and with a `read`, an `ingest` and an `admin` key, is refused exactly when the
//! caller lacks the scope the route list (`climate_api::router::ROUTES`) declares — with reads public,
//! and with `auth.protect_reads`. (`/credentials/*` authenticate by credentials of their own
//! and are left to the end-to-end security tests.)

use axum::http::Method;
use chrono::Utc;
use climate_api::router::access;
use climate_domain::auth::Scope;
use serde_json::Value;

use crate::support::InProcess;

/// Every (method, path) of the OpenAPI document.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                ops.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// The path with every `{param}` filled in (ids that name nothing: no handler changes state).
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                "nothing_here"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn matrix(protect_reads: bool) {
    let flag = if protect_reads { "true" } else { "false" };
    // The embedded configuration turns authentication off (a loopback instance): on here.
    let app = InProcess::start(&[
        ("CLIMATE_API__AUTH__ENABLED", "true"),
        ("CLIMATE_API__AUTH__PROTECT_READS", flag),
        ("CLIMATE_API__AUTH__REQUESTS_PER_MINUTE", "0"),
    ])
    .await;
    let mut callers: Vec<(Option<Scope>, Option<String>)> = vec![(None, None)];
    for scope in Scope::ALL {
        let (_, key) = climate_infra::auth::create_key(
            app.platform.db.as_ref(),
            scope.as_str(),
            &[scope],
            None,
            Utc::now(),
        )
        .await
        .expect("create a key");
        callers.push((Some(scope), Some(format!("Bearer {key}"))));
    }
    let admin = callers
        .last()
        .and_then(|(_, a)| a.clone())
        .expect("the admin key");
    let a = app
        .send(
            Method::GET,
            "/openapi.json",
            &[("authorization", &admin)],
            None,
        )
        .await;
    assert_eq!(a.status, 200);
    let doc = a.body;
    let ops = operations(&doc);
    assert!(ops.len() > 20, "the document lists the operations: {ops:?}");
    let mut checked = 0;
    // `/credentials/*` need no scope but credentials of their own (HTTP Basic, an OIDC
    // token): the end-to-end security tests cover them.
    let ops: Vec<_> = ops
        .into_iter()
        .filter(|(_, p)| !p.starts_with("/credentials/"))
        .collect();
    for (method, path) in &ops {
        // The OpenAPI form of the catch-all is `{path}`, the router's `{*path}`.
        let route = path.replace("{path}", "{*path}");
        let needed = access(method, &route).needed(protect_reads);
        let uri = concrete(path);
        for (held, auth) in &callers {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(a) = auth {
                headers.push(("authorization", a.as_str()));
            }
            let body = matches!(method.as_str(), "POST" | "PUT" | "PATCH").then(|| b"{}".to_vec());
            let m = Method::from_bytes(method.as_bytes()).expect("method");
            let a = app.send(m, &uri, &headers, body).await;
            let allowed = needed.is_none_or(|n| held.is_some_and(|h| h.grants(n)));
            let code = a.body["code"].as_str().unwrap_or_default().to_owned();
            let who = held.map_or("anonymous", Scope::as_str);
            if allowed {
                assert!(
                    !matches!(a.status, 401 | 403),
                    "{method} {uri} as {who} (needs {needed:?}) was refused: {} {}",
                    a.status,
                    a.body
                );
            } else if held.is_none() {
                assert_eq!(
                    (a.status, code.as_str()),
                    (401, "authentication_required"),
                    "{method} {uri} anonymously (needs {needed:?}): {}",
                    a.body
                );
            } else {
                assert_eq!(
                    (a.status, code.as_str()),
                    (403, "insufficient_scope"),
                    "{method} {uri} as {who} (needs {needed:?}): {}",
                    a.body
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, ops.len() * callers.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_needs_exactly_its_scope_with_public_reads() {
    matrix(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_needs_exactly_its_scope_with_protected_reads() {
    matrix(true).await;
}
