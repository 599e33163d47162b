//! A mock upstream for provider tests: serves files over HTTP under the real providers' URL
//! layouts and injects faults on demand, counting requests per path.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// A fault served instead of the file, once.
#[derive(Debug, Clone)]
pub enum Fault {
    /// This status, with `Retry-After: N` seconds when given.
    Status(u16, Option<u64>),
    /// The headers promise the whole file, the connection dies after this many bytes.
    Truncate(usize),
    /// Headers, then silence for this long before the body.
    Stall(Duration),
    /// 200 with bytes that are not the file (a maintenance page).
    Corrupt,
}

#[derive(Debug, Default)]
struct MockState {
    files: Mutex<HashMap<String, bytes::Bytes>>,
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    hits: Mutex<HashMap<String, Vec<std::time::Instant>>>,
    bytes: Mutex<HashMap<String, u64>>,
    /// Honour `Range` (CHC) or ignore it (WorldPop).
    ranges: Mutex<bool>,
    /// Delay before every response (a slow upstream).
    latency: Mutex<Duration>,
    /// The CDS API, when enabled.
    cds: Mutex<Option<CdsMock>>,
    /// Paths under this prefix need one of these `Authorization` header values (HTTP Basic),
    /// as the DestinE Earth Data Hub does on every path, metadata included.
    basic_auth: Mutex<Option<(String, Vec<String>)>>,
}

/// A minimal, faithful CDS retrieve API: submit → poll → results → download.
#[derive(Debug, Default, Clone)]
struct CdsMock {
    key: String,
    polls_before_success: u32,
    netcdf: bytes::Bytes,
    jobs: HashMap<String, u32>,
    submitted: Vec<serde_json::Value>,
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn serve_cds(
    state: &MockState,
    method: &axum::http::Method,
    headers: &axum::http::HeaderMap,
    path: &str,
    body: &[u8],
) -> Option<Response> {
    let mut guard = lock(&state.cds);
    let cds = guard.as_mut()?;
    if let Some(id) = path
        .strip_prefix("/download/")
        .and_then(|p| p.strip_suffix(".nc"))
    {
        return Some(if cds.jobs.contains_key(id) {
            (StatusCode::OK, cds.netcdf.clone()).into_response()
        } else {
            StatusCode::NOT_FOUND.into_response()
        });
    }
    let rest = path.strip_prefix("/api/retrieve/v1/")?;
    if headers.get("PRIVATE-TOKEN").and_then(|v| v.to_str().ok()) != Some(cds.key.as_str()) {
        return Some(json_response(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"type": "permission denied", "title": "permission denied", "status": 401, "detail": "authentication required"}),
        ));
    }
    if method == axum::http::Method::POST && rest.ends_with("/execution") {
        let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        cds.submitted.push(request);
        let id = format!("5f0c0e2e-0000-4000-8000-{:012}", cds.jobs.len() + 1);
        cds.jobs.insert(id.clone(), cds.polls_before_success);
        return Some(json_response(
            StatusCode::CREATED,
            serde_json::json!({"processID": "reanalysis-era5-land", "type": "process", "jobID": id, "status": "accepted",
                "links": [{"href": format!("/api/retrieve/v1/jobs/{id}"), "rel": "monitor"}]}),
        ));
    }
    let job = rest.strip_prefix("jobs/")?;
    let (id, results) = match job.strip_suffix("/results") {
        Some(id) => (id.to_owned(), true),
        None => (job.to_owned(), false),
    };
    let remaining = cds.jobs.get_mut(&id)?;
    if results {
        return Some(if *remaining == 0 {
            // A relative href, as the protocol allows: resolved against the results URL.
            json_response(
                StatusCode::OK,
                serde_json::json!({"asset": {"value": {"type": "application/netcdf", "href": format!("../../../../../download/{id}.nc"), "file:size": cds.netcdf.len()}}}),
            )
        } else {
            json_response(
                StatusCode::NOT_FOUND,
                serde_json::json!({"title": "result not ready"}),
            )
        });
    }
    let status = if *remaining == 0 {
        "successful"
    } else {
        *remaining -= 1;
        if *remaining + 1 == cds.polls_before_success {
            "accepted"
        } else {
            "running"
        }
    };
    let mut links =
        vec![serde_json::json!({"href": format!("/api/retrieve/v1/jobs/{id}"), "rel": "self"})];
    if status == "successful" {
        links.push(serde_json::json!({"href": format!("/api/retrieve/v1/jobs/{id}/results"), "rel": "results"}));
    }
    Some(json_response(
        StatusCode::OK,
        serde_json::json!({"jobID": id, "status": status, "links": links}),
    ))
}

/// A running mock upstream on a free loopback port; stops when dropped.
#[derive(Debug)]
pub struct MockUpstream {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    state: Arc<MockState>,
    task: tokio::task::JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn serve(
    State(state): State<Arc<MockState>>,
    method: axum::http::Method,
    headers: axum::http::HeaderMap,
    uri: Uri,
    body: bytes::Bytes,
) -> Response {
    let path = uri.path().to_owned();
    lock(&state.hits)
        .entry(format!("{method} {path}"))
        .or_default()
        .push(std::time::Instant::now());
    if let Some(r) = serve_cds(&state, &method, &headers, &path, &body).await {
        return r;
    }
    let latency = *lock(&state.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    lock(&state.hits)
        .entry(path.clone())
        .or_default()
        .push(std::time::Instant::now());
    if let Some((prefix, accepted)) = lock(&state.basic_auth).as_ref()
        && path.starts_with(prefix.as_str())
    {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !accepted.iter().any(|a| a == given) {
            let mut r = (StatusCode::UNAUTHORIZED, "401 Unauthorized").into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"earthdatahub\""),
            );
            return r;
        }
    }
    let fault = lock(&state.faults)
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    let Some(file) = lock(&state.files).get(&path).cloned() else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let len = file.len();
    let full = |body: Body| {
        let mut r = Response::new(body);
        let h = r.headers_mut();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        // Advertised, but ignored (as WorldPop does).
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/tiff"));
        r
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
    let count = |n: usize| {
        if method != axum::http::Method::HEAD {
            *lock(&state.bytes).entry(path.clone()).or_default() += n as u64;
        }
    };
    match fault {
        None if *lock(&state.ranges) && range.is_some() => {
            let (a, b) = range.unwrap_or_default();
            if a >= len || b < a {
                let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                r.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{len}"))
                        .unwrap_or(HeaderValue::from_static("bytes */0")),
                );
                return r;
            }
            let part = file.slice(a..(b + 1).min(len));
            count(part.len());
            let mut r = Response::new(Body::from(part.clone()));
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = r.headers_mut();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(part.len()));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{}/{len}", a + part.len() - 1))
            {
                h.insert(header::CONTENT_RANGE, v);
            }
            r
        }
        None => {
            count(len);
            full(Body::from(file))
        }
        Some(Fault::Status(code, retry_after)) => {
            let mut r = (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "injected fault",
            )
                .into_response();
            if let Some(s) = retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            r
        }
        Some(Fault::Truncate(n)) => {
            let part = file.slice(0..n.min(len));
            let stream = futures::stream::iter(vec![
                Ok::<_, std::io::Error>(part),
                Err(std::io::Error::other("injected disconnect")),
            ]);
            full(Body::from_stream(stream))
        }
        Some(Fault::Stall(d)) => {
            let stream = futures::stream::once(async move {
                tokio::time::sleep(d).await;
                Ok::<_, std::io::Error>(file)
            });
            full(Body::from_stream(stream))
        }
        Some(Fault::Corrupt) => (
            StatusCode::OK,
            "<html><body>Down for maintenance</body></html>",
        )
            .into_response(),
    }
}

impl MockUpstream {
    /// Starts an empty mock.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(MockState::default());
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { base, state, task })
    }

    /// Serves `bytes` at `path`.
    pub fn serve_file(&self, path: &str, bytes: impl Into<bytes::Bytes>) {
        lock(&self.state.files).insert(path.to_owned(), bytes.into());
    }

    /// Serves every file under `dir` at `prefix` + its relative path (a static Zarr store).
    ///
    /// # Errors
    /// When the directory cannot be read.
    pub fn serve_dir(&self, prefix: &str, dir: &std::path::Path) -> anyhow::Result<usize> {
        let files = crate::files_under(dir)?;
        for (rel, path) in &files {
            let url = format!("{}/{rel}", prefix.trim_end_matches('/'));
            self.serve_file(&url, std::fs::read(path)?);
        }
        Ok(files.len())
    }

    /// Requires HTTP Basic credentials on every path under `prefix`: user `login` (or an empty
    /// user, as EDH also accepts) with `password`; anything else gets 401.
    pub fn require_basic_auth(&self, prefix: &str, login: &str, password: &str) {
        use base64::Engine as _;
        let encode = |u: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{password}"))
            )
        };
        *lock(&self.state.basic_auth) = Some((prefix.to_owned(), vec![encode(login), encode("")]));
    }

    /// Arrival times of every request so far, in order.
    pub fn all_hit_times(&self) -> Vec<std::time::Instant> {
        let mut v: Vec<std::time::Instant> = lock(&self.state.hits)
            .iter()
            .filter(|(k, _)| !k.starts_with('/'))
            .flat_map(|(_, times)| times.iter().copied())
            .collect();
        v.sort();
        v
    }

    /// Paths requested so far (each once), sorted.
    pub fn requested_paths(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.state.hits)
            .keys()
            .filter(|k| k.starts_with('/'))
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Serves these faults, in order, to the next requests of `path`.
    pub fn fail_next(&self, path: &str, faults: Vec<Fault>) {
        lock(&self.state.faults)
            .entry(path.to_owned())
            .or_default()
            .extend(faults);
    }

    /// Serves the CDS retrieve API under `/api` with this key; jobs succeed after
    /// `polls_before_success` status polls and deliver `netcdf`.
    pub fn enable_cds(
        &self,
        key: &str,
        polls_before_success: u32,
        netcdf: impl Into<bytes::Bytes>,
    ) {
        *lock(&self.state.cds) = Some(CdsMock {
            key: key.to_owned(),
            polls_before_success,
            netcdf: netcdf.into(),
            ..CdsMock::default()
        });
    }

    /// Changes the key the CDS mock accepts.
    pub fn set_cds_key(&self, key: &str) {
        if let Some(c) = lock(&self.state.cds).as_mut() {
            c.key = key.to_owned();
        }
    }

    /// Request bodies submitted to the CDS mock.
    pub fn cds_submissions(&self) -> Vec<serde_json::Value> {
        lock(&self.state.cds)
            .as_ref()
            .map(|c| c.submitted.clone())
            .unwrap_or_default()
    }

    /// Honour `Range` requests (206) instead of ignoring them.
    pub fn honour_ranges(&self) {
        *lock(&self.state.ranges) = true;
    }

    /// Delays every response.
    pub fn set_latency(&self, d: Duration) {
        *lock(&self.state.latency) = d;
    }

    /// Body bytes sent for `path` (HEAD excluded).
    pub fn bytes_served(&self, path: &str) -> u64 {
        lock(&self.state.bytes).get(path).copied().unwrap_or(0)
    }

    /// Requests received for `path`.
    pub fn hits(&self, path: &str) -> u32 {
        lock(&self.state.hits)
            .get(path)
            .map_or(0, |v| u32::try_from(v.len()).unwrap_or(u32::MAX))
    }

    /// When each request for `path` arrived.
    pub fn hit_times(&self, path: &str) -> Vec<std::time::Instant> {
        lock(&self.state.hits)
            .get(path)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
