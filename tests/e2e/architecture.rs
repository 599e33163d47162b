//! The architecture invariants of ARCHITECTURE.md, checked mechanically so they cannot erode:
//! crate dependency edges (from the manifests) and the "domain does no I/O" rule (from sources).

use std::collections::BTreeSet;

use climate_tests::repo_root;

/// Names under `[dependencies]` of a crate manifest (dev-dependencies do not count).
fn dependencies(krate: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join(krate).join("Cargo.toml"))
        .unwrap_or_else(|e| panic!("{krate}/Cargo.toml: {e}"));
    let mut in_deps = false;
    let mut deps = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once(['=', '.']) {
            let name = name.trim();
            if !name.is_empty() && !name.starts_with('#') {
                deps.insert(name.to_owned());
            }
        }
    }
    deps
}

#[test]
fn domain_depends_only_on_plain_data_crates() {
    let allowed: BTreeSet<String> = ["chrono", "serde", "serde_json", "thiserror"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let deps = dependencies("shared/domain");
    // The parser must see the real list, or the subset check would pass vacuously.
    assert!(
        deps.contains("chrono") && deps.contains("serde"),
        "parsed {deps:?}"
    );
    assert!(
        dependencies("api").contains("axum"),
        "the manifest parser misses dependencies"
    );
    assert!(
        deps.is_subset(&allowed),
        "climate-domain must stay I/O-free, but depends on {:?}",
        deps.difference(&allowed).collect::<Vec<_>>()
    );
}

#[test]
fn only_the_api_knows_http_servers() {
    for krate in [
        "shared/domain",
        "shared/infra",
        "shared/geodata",
        "worker",
        "scheduler",
    ] {
        let deps = dependencies(krate);
        for forbidden in ["axum", "tower", "tower-http", "utoipa", "hyper"] {
            assert!(
                !deps.contains(forbidden),
                "{krate} depends on {forbidden}: only api/ knows HTTP"
            );
        }
    }
}

#[test]
fn geodata_knows_no_database_queue_or_cache() {
    let deps = dependencies("shared/geodata");
    for forbidden in ["sqlx", "lapin", "redis", "climate-infra"] {
        assert!(
            !deps.contains(forbidden),
            "climate-geodata depends on {forbidden}"
        );
    }
}

#[test]
fn domain_sources_do_no_io() {
    let dir = repo_root().join("shared/domain/src");
    for entry in std::fs::read_dir(&dir).expect("domain sources") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("source");
        for forbidden in [
            "std::fs",
            "std::net",
            "std::env",
            "std::process",
            "Utc::now",
            "Local::now",
            "SystemTime::now",
        ] {
            assert!(
                !text.contains(forbidden),
                "{} uses {forbidden}: the domain does no I/O and takes time as an argument",
                path.display()
            );
        }
    }
}
