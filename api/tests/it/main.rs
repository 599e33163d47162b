//! The in-process tier: the API's router over SQLite, the in-process queue and a directory
//! store in a temporary directory, driven request by request without sockets or child
//! processes. Request validation, the error envelope, the service documents and the published
//! OpenAPI document are checked here; what needs real processes (workers, restarts, faults,
//! external clients) stays in `tests/e2e`.

mod authz;
mod catalog;
mod envelope;
mod features;
mod processes;
mod resample;
mod snapshots;
mod support;
