//! Conformance of the [`HistoryStore`](climate_infra::db::HistoryStore) on both engines: a
//! published version writes its events in the publishing transaction; rollback and
//! publication change the dataset with their event, refuse what does not exist, and write
//! nothing when there is nothing to change; the history pages newest first.

use climate_infra::db::{CatalogAction, ChangeError};

use super::{TestDb, at, claim, create, dsid, new_version};

db_conformance!(
    versions_rollbacks_and_publication_are_events,
    changes_to_what_does_not_exist_are_refused,
);

/// Publishes versions 1 ..= n of `ds` (the first unpublished when `publish` is false).
async fn publish(db: &TestDb, ds: &str, n: i64, publish: bool) {
    for i in 1..=n {
        let run = create(db, ds, at(i * 100)).await;
        claim(db, &run.run_id, "w", at(i * 100 + 1)).await;
        db.publish_version(
            &run.run_id,
            "w",
            &new_version(ds, &format!("{ds}-art-{i}"), publish),
            at(i * 100 + 2),
        )
        .await
        .expect("publish_version");
    }
}

async fn versions_rollbacks_and_publication_are_events(db: &TestDb) {
    publish(db, "ds", 3, true).await;
    let actions =
        |events: &[climate_infra::db::CatalogEvent]| -> Vec<(CatalogAction, Option<i64>)> {
            events.iter().map(|e| (e.action, e.version)).collect()
        };
    let h = db.history(&dsid("ds"), None, 100).await.expect("history");
    assert_eq!(
        actions(&h),
        vec![
            (CatalogAction::NewVersion, Some(3)),
            (CatalogAction::NewVersion, Some(2)),
            (CatalogAction::Publish, Some(1)),
            (CatalogAction::NewVersion, Some(1)),
        ]
    );
    assert!(
        h.iter().all(|e| e.actor == "key:ops" && e.cause.is_some()),
        "the actor is whoever asked for the run: {h:?}"
    );
    assert_eq!(h[0].created_at, at(302));

    let ds = db
        .rollback(&dsid("ds"), 1, "key:ops", at(400))
        .await
        .expect("rollback");
    assert_eq!(ds.current_version, Some(1));
    assert_eq!(
        db.get_dataset(&dsid("ds"))
            .await
            .expect("get")
            .expect("ds")
            .current_version,
        Some(1)
    );
    db.rollback(&dsid("ds"), 1, "key:ops", at(401))
        .await
        .expect("no change");
    let ds = db
        .set_published(&dsid("ds"), false, "key:ops", at(402))
        .await
        .expect("unpublish");
    assert!(!ds.published);
    db.set_published(&dsid("ds"), false, "key:ops", at(403))
        .await
        .expect("no change");
    let h = db.history(&dsid("ds"), None, 2).await.expect("history");
    assert_eq!(
        actions(&h),
        vec![
            (CatalogAction::Unpublish, Some(1)),
            (CatalogAction::Rollback, Some(1))
        ],
        "nothing written when nothing changed"
    );
    assert_eq!(
        (h[1].actor.as_str(), h[1].detail["from"].as_i64()),
        ("key:ops", Some(3))
    );
    let older = db
        .history(&dsid("ds"), Some(h[1].event_id), 100)
        .await
        .expect("history");
    assert_eq!(older.len(), 4, "the next page holds the rest");
    assert!(older.iter().all(|e| e.event_id < h[1].event_id));

    // A dataset whose first version was not published gets its publish event later.
    publish(db, "quiet", 1, false).await;
    assert_eq!(
        actions(&db.history(&dsid("quiet"), None, 10).await.expect("history")),
        vec![(CatalogAction::NewVersion, Some(1))]
    );
}

async fn changes_to_what_does_not_exist_are_refused(db: &TestDb) {
    publish(db, "ds", 1, true).await;
    assert!(matches!(
        db.rollback(&dsid("ds"), 7, "a", at(500)).await,
        Err(ChangeError::UnknownVersion { version: 7, .. })
    ));
    assert!(matches!(
        db.rollback(&dsid("other"), 1, "a", at(500)).await,
        Err(ChangeError::UnknownDataset(_))
    ));
    assert!(matches!(
        db.set_published(&dsid("other"), true, "a", at(500)).await,
        Err(ChangeError::UnknownDataset(_))
    ));
    assert_eq!(
        db.history(&dsid("ds"), None, 10)
            .await
            .expect("history")
            .len(),
        2
    );
}
