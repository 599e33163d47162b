//! Stored feature collections: uploads validated (a bad geometry is a 400 naming the feature),
//! kept as numbered versions (an identical upload stores nothing), listed and read back at any
//! version.

use axum::http::Method;
use serde_json::{Value, json};

use crate::processes::districts;
use crate::support::InProcess;

async fn upload(app: &InProcess, query: &str, collection: &Value) -> crate::support::Answer {
    app.send(
        Method::POST,
        &format!("/features{query}"),
        &[("content-type", "application/geo+json")],
        Some(collection.to_string().into_bytes()),
    )
    .await
}

/// The districts without the last one.
pub fn twelve_districts() -> Value {
    let mut d = districts();
    d["features"].as_array_mut().expect("features").pop();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_validated_versioned_and_read_back() {
    let app = InProcess::start(&[]).await;
    let first = upload(
        &app,
        "?id=sle_districts&title=Sierra%20Leone%20districts",
        &districts(),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(
        (
            first.body["version"].as_u64(),
            first.body["feature_count"].as_u64(),
            first.body["title"].as_str()
        ),
        (Some(1), Some(13), Some("Sierra Leone districts"))
    );
    assert!(
        first.headers["location"]
            .to_str()
            .is_ok_and(|l| l.ends_with("/features/sle_districts"))
    );
    let bbox: Vec<f64> = serde_json::from_value(first.body["bbox"].clone()).expect("a bbox");
    assert!(
        bbox[0] < -13.0 && bbox[2] > -10.5 && bbox[1] > 6.5 && bbox[3] < 10.1,
        "{bbox:?}"
    );

    let again = upload(&app, "?id=sle_districts", &districts()).await;
    assert_eq!(
        (again.status, again.body["version"].as_u64()),
        (200, Some(1)),
        "the same GeoJSON stores nothing"
    );
    let second = upload(&app, "?id=sle_districts", &twelve_districts()).await;
    assert_eq!(
        (second.status, second.body["version"].as_u64()),
        (201, Some(2))
    );
    assert_ne!(second.body["sha256"], first.body["sha256"]);

    // An id from the document itself.
    let mut named = json!({"type": "FeatureCollection", "id": "one_square", "features": [
        {"type": "Feature", "id": "sq", "geometry": {"type": "Polygon", "coordinates": [[[-12.0, 8.0], [-11.5, 8.0], [-11.5, 8.5], [-12.0, 8.5], [-12.0, 8.0]]]}}
    ]});
    let third = upload(&app, "", &named).await;
    assert_eq!(
        (third.status, third.body["id"].as_str()),
        (201, Some("one_square"))
    );

    let (status, list) = app.get_json("/features").await;
    assert_eq!(status, 200, "{list}");
    let listed: Vec<(&str, u64)> = list["collections"]
        .as_array()
        .expect("collections")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default(),
                c["version"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(listed, vec![("one_square", 1), ("sle_districts", 2)]);

    let old = app
        .send(Method::GET, "/features/sle_districts?version=1", &[], None)
        .await;
    assert_eq!(old.status, 200);
    assert_eq!(old.headers["content-type"], "application/geo+json");
    assert_eq!(old.body["type"], "FeatureCollection");
    assert_eq!(old.body["version"], 1);
    assert_eq!(old.body["features"].as_array().map(Vec::len), Some(13));
    assert_eq!(
        old.body["features"],
        districts()["features"],
        "read back as uploaded"
    );
    assert_eq!(old.body["versions"].as_array().map(Vec::len), Some(2));
    let (_, latest) = app.get_json("/features/sle_districts").await;
    assert_eq!(latest["version"], 2);
    assert_eq!(latest["features"].as_array().map(Vec::len), Some(12));

    // Refusals name what is wrong.
    named["features"][0]["geometry"]["coordinates"] =
        json!([[[0.0, 0.0], [2.0, 2.0], [2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]]);
    named["features"][0]["id"] = json!("bow_tie");
    let cases: [(&str, Value, u16, &str); 6] = [
        ("?id=bad", named.clone(), 400, "feature 0 ('bow_tie')"),
        (
            "?id=Bad%20Id",
            districts(),
            400,
            "'Bad Id' is not a collection id",
        ),
        ("", districts(), 400, "name the collection"),
        (
            "?id=points",
            json!({"type": "FeatureCollection", "features": [{"type": "Feature", "id": "p", "geometry": {"type": "Point", "coordinates": [0, 0]}}]}),
            400,
            "Point",
        ),
        (
            "?id=empty",
            json!({"type": "FeatureCollection", "features": []}),
            400,
            "no features",
        ),
        (
            "?id=geometry",
            json!({"type": "Polygon", "coordinates": []}),
            400,
            "FeatureCollection",
        ),
    ];
    for (query, body, status, named) in cases {
        let a = upload(&app, query, &body).await;
        assert_eq!(a.status, status, "{query}: {}", a.body);
        let message = a.body["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{query}: {message}");
    }
    let not_json = app
        .send(
            Method::POST,
            "/features?id=x",
            &[],
            Some(b"{\"type\":".to_vec()),
        )
        .await;
    assert_eq!(
        (not_json.status, not_json.body["code"].as_str()),
        (400, Some("invalid_body"))
    );
    let (_, list) = app.get_json("/features").await;
    assert_eq!(
        list["collections"].as_array().map(Vec::len),
        Some(2),
        "nothing refused was stored"
    );

    for path in ["/features/nope", "/features/sle_districts?version=3"] {
        let (status, e) = app.get_json(path).await;
        assert_eq!(
            (status, e["code"].as_str()),
            (404, Some("unknown_feature_collection")),
            "{path}"
        );
    }
}
