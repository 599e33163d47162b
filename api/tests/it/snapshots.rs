//! The published OpenAPI document, against its snapshot: a change to any route, parameter or
//! schema shows in the diff of `snapshots/openapi.json` (update it with `UPDATE_SNAPSHOTS=1`).

use std::path::Path;

use crate::support::InProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_its_snapshot() {
    let app = InProcess::start(&[]).await;
    let (status, doc) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/snapshots/openapi.json");
    climate_tests::assert_json_snapshot(&path, &doc);
}
