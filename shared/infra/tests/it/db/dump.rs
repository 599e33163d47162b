//! Conformance of the [`DumpStore`](climate_infra::db::DumpStore) on both engines: the schema
//! parsed from the migrations is the one each engine has, and a dump loads into an empty
//! database of either engine (so a standalone instance's backup restores into a distributed
//! one), reads back the same, refuses a database that holds rows unless told to replace them,
//! and leaves auto-numbered keys past the restored ones.

use climate_infra::db::{ColumnKind, Dump, LoadError, schema};

use super::{TestDb, at, claim, create, dsid, key, new_version};

db_conformance!(
    the_parsed_schema_is_the_one_the_engine_has,
    a_dump_loads_into_an_empty_database_of_either_engine,
);

async fn the_parsed_schema_is_the_one_the_engine_has(db: &TestDb) {
    let engine = db.columns().await.expect("columns");
    let parsed = schema();
    assert_eq!(engine.len(), parsed.len());
    for ((name, cols), t) in engine.iter().zip(&parsed) {
        assert_eq!(name, &t.name);
        let want: Vec<(String, ColumnKind)> =
            t.columns.iter().map(|c| (c.name.clone(), c.kind)).collect();
        let got: Vec<(String, ColumnKind)> = cols
            .iter()
            .map(|(c, ty)| {
                let kind = match (db.engine(), ty.to_ascii_lowercase().as_str()) {
                    (_, "text") if is_json(&t.name, c) => ColumnKind::Json,
                    (_, "text") => ColumnKind::Text,
                    ("postgres", "jsonb") => ColumnKind::Json,
                    (_, "bigint") => ColumnKind::BigInt,
                    ("sqlite", "integer") if t.serial.as_deref() == Some(c) => ColumnKind::BigInt,
                    (_, "integer") => ColumnKind::Int,
                    (_, "boolean") => ColumnKind::Bool,
                    (e, other) => panic!("{e}: column {name}.{c} has type {other}"),
                };
                (c.clone(), kind)
            })
            .collect();
        assert_eq!(got, want, "table {name}");
    }
    // SQLite stores JSON as TEXT: the parse is what tells them apart.
    fn is_json(table: &str, column: &str) -> bool {
        schema().iter().any(|t| {
            t.name == table
                && t.columns
                    .iter()
                    .any(|c| c.name == column && c.kind == ColumnKind::Json)
        })
    }
}

/// Rows sorted, so dumps of two engines compare whatever order each scans in.
fn sorted(mut d: Dump) -> Dump {
    for t in &mut d.tables {
        t.rows
            .sort_by_key(|r| serde_json::to_string(r).unwrap_or_default());
    }
    d
}

async fn a_dump_loads_into_an_empty_database_of_either_engine(db: &TestDb) {
    for i in 1..=3 {
        let run = create(db, "ds", at(i * 100)).await;
        claim(db, &run.run_id, "w", at(i * 100 + 1)).await;
        db.publish_version(
            &run.run_id,
            "w",
            &new_version("ds", &format!("art-{i}"), true),
            at(i * 100 + 2),
        )
        .await
        .expect("publish_version");
    }
    db.rollback(&dsid("ds"), 2, "key:ops", at(500))
        .await
        .expect("rollback");
    db.create_api_key(&key("k1", at(600))).await.expect("key");
    create(db, "queued", at(700)).await;

    let dump = db.dump().await.expect("dump");
    assert_eq!(dump.schema_version, 10);
    let count = |d: &Dump, t: &str| {
        d.tables
            .iter()
            .find(|r| r.table == t)
            .map_or(0, |r| r.rows.len())
    };
    assert_eq!(count(&dump, "dataset_versions"), 3);
    assert_eq!(
        count(&dump, "catalog_events"),
        5,
        "3 versions, publish, rollback"
    );
    assert_eq!(count(&dump, "ingestion_runs"), 4);
    assert_eq!(count(&dump, "api_keys"), 1);
    let versions = dump
        .tables
        .iter()
        .find(|t| t.table == "dataset_versions")
        .expect("versions");
    let metadata = versions
        .columns
        .iter()
        .position(|c| c.name == "metadata")
        .expect("metadata column");
    assert!(
        versions.rows[0][metadata].is_object(),
        "JSON columns are JSON documents, not text: {:?}",
        versions.rows[0][metadata]
    );

    for target in [TestDb::sqlite().await, TestDb::postgres().await] {
        let engine = target.engine();
        let written = target.load(&dump, false).await.expect("load");
        assert_eq!(
            written as usize,
            dump.tables.iter().map(|t| t.rows.len()).sum::<usize>()
        );
        let again = target.dump().await.expect("dump the restored database");
        assert_eq!(sorted(again), sorted(dump.clone()), "{engine}");
        let ds = target
            .get_dataset(&dsid("ds"))
            .await
            .expect("get")
            .expect("restored");
        assert_eq!(ds.current_version, Some(2), "{engine}");

        // Auto-numbered keys continue after the restored ones.
        target
            .rollback(&dsid("ds"), 3, "key:ops", at(800))
            .await
            .expect("a change after the restore");
        let h = target
            .history(&dsid("ds"), None, 10)
            .await
            .expect("history");
        assert_eq!(h.len(), 6, "{engine}");
        assert!(h[0].event_id > h[1].event_id, "{engine}: {h:?}");

        match target.load(&dump, false).await {
            Err(LoadError::NotEmpty { table, rows }) => {
                assert!(rows > 0 && !table.is_empty(), "{engine}");
            }
            other => panic!("{engine}: a database with rows must be refused, got {other:?}"),
        }
        target.load(&dump, true).await.expect("replace");
        let replaced = target.dump().await.expect("dump");
        assert_eq!(sorted(replaced), sorted(dump.clone()), "{engine}: replaced");
    }

    // A column this release does not know (a newer release's backup) is refused by name.
    let mut newer = dump.clone();
    newer.tables[0].columns.push(climate_infra::db::Column {
        name: "from_the_future".into(),
        kind: ColumnKind::Text,
    });
    let fresh = TestDb::sqlite().await;
    let err = fresh.load(&newer, false).await.expect_err("unknown column");
    assert!(
        err.to_string().contains("managed_datasets.from_the_future"),
        "{err}"
    );
}
