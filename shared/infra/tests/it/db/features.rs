//! Conformance of the [`FeatureStore`](climate_infra::db::FeatureStore) on both engines:
//! versions numbered from 1, an identical upload answered with the latest version, concurrent
//! uploads of one id numbered without collisions, listing the latest of each id.

use climate_infra::db::NewFeatureCollection;

use super::{TestDb, at};

db_conformance!(
    feature_collections_are_versioned_and_deduplicated,
    concurrent_uploads_of_one_id_get_distinct_versions,
);

fn upload(id: &str, text: &str) -> NewFeatureCollection {
    NewFeatureCollection {
        collection_id: id.to_owned(),
        title: format!("{id} title"),
        principal: "cak_test".to_owned(),
        feature_count: 2,
        bbox: [-13.3, 6.9, -10.2, 10.0],
        sha256: format!("sha-of-{text}"),
        geojson: text.to_owned(),
        created_at: at(0),
    }
}

async fn feature_collections_are_versioned_and_deduplicated(db: &TestDb) {
    let (v1, created) = db
        .put_feature_collection(&upload("districts", "one"))
        .await
        .expect("put");
    assert!(created);
    assert_eq!(
        (v1.version, v1.feature_count, v1.bbox),
        (1, 2, [-13.3, 6.9, -10.2, 10.0])
    );
    assert_eq!(v1.created_at, at(0));
    let (same, created) = db
        .put_feature_collection(&upload("districts", "one"))
        .await
        .expect("put");
    assert!(!created, "the same text stores nothing");
    assert_eq!(same, v1);
    let (v2, created) = db
        .put_feature_collection(&upload("districts", "two"))
        .await
        .expect("put");
    assert_eq!((v2.version, created), (2, true));
    // Back to the first text: a new version (only the latest is compared).
    let (v3, _) = db
        .put_feature_collection(&upload("districts", "one"))
        .await
        .expect("put");
    assert_eq!(v3.version, 3);
    db.put_feature_collection(&upload("chiefdoms", "c"))
        .await
        .expect("put");

    let (r, text) = db
        .get_feature_collection("districts", Some(2))
        .await
        .expect("get")
        .expect("v2");
    assert_eq!((r, text.as_str()), (v2, "two"));
    let (latest, text) = db
        .get_feature_collection("districts", None)
        .await
        .expect("get")
        .expect("latest");
    assert_eq!((latest.version, text.as_str()), (3, "one"));
    assert!(
        db.get_feature_collection("districts", Some(4))
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        db.get_feature_collection("nothing", None)
            .await
            .expect("get")
            .is_none()
    );
    let versions: Vec<u32> = db
        .feature_collection_versions("districts")
        .await
        .expect("versions")
        .iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(versions, vec![1, 2, 3]);
    let listed: Vec<(String, u32)> = db
        .list_feature_collections()
        .await
        .expect("list")
        .into_iter()
        .map(|r| (r.collection_id, r.version))
        .collect();
    assert_eq!(
        listed,
        vec![("chiefdoms".to_owned(), 1), ("districts".to_owned(), 3)]
    );
}

async fn concurrent_uploads_of_one_id_get_distinct_versions(db: &TestDb) {
    let uploads: Vec<NewFeatureCollection> = (0..4)
        .map(|i| upload("areas", &format!("text {i}")))
        .collect();
    let puts = uploads.iter().map(|u| db.put_feature_collection(u));
    let mut versions: Vec<u32> = futures::future::join_all(puts)
        .await
        .into_iter()
        .map(|r| r.expect("every upload is stored").0.version)
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, vec![1, 2, 3, 4]);
}
