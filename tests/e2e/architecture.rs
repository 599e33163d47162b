//! The architecture invariants of ARCHITECTURE.md, checked mechanically so they cannot erode:
//! crate dependency edges (from `cargo metadata`), the "domain does no I/O" rule (from sources),
//! and that nothing in the repository reads the project kit beside it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::OnceLock;

use climate_tests::repo_root;

/// One workspace package as `cargo metadata` describes it.
#[derive(Debug)]
struct Package {
    /// Directory of its manifest, relative to the repository root (`shared/domain`).
    dir: String,
    /// Names of its normal dependencies (not dev- or build-dependencies).
    normal: BTreeSet<String>,
    /// Names of every dependency, of any kind.
    all: BTreeSet<String>,
}

/// The workspace's packages by name, read once from `cargo metadata --no-deps`.
fn workspace() -> &'static BTreeMap<String, Package> {
    static PACKAGES: OnceLock<BTreeMap<String, Package>> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
        let out = std::process::Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .current_dir(repo_root())
            .output()
            .expect("running cargo metadata");
        assert!(
            out.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
        let root = repo_root();
        let mut packages = BTreeMap::new();
        for p in meta["packages"].as_array().expect("packages") {
            let manifest = PathBuf::from(p["manifest_path"].as_str().expect("manifest_path"));
            let dir = manifest
                .parent()
                .and_then(|d| d.strip_prefix(&root).ok())
                .map(|d| d.to_string_lossy().into_owned())
                .expect("a workspace package under the repository");
            let deps = p["dependencies"].as_array().expect("dependencies");
            let names = |normal_only: bool| {
                deps.iter()
                    .filter(|d| !normal_only || d["kind"].is_null())
                    .map(|d| d["name"].as_str().expect("name").to_owned())
                    .collect::<BTreeSet<_>>()
            };
            packages.insert(
                p["name"].as_str().expect("name").to_owned(),
                Package {
                    dir,
                    normal: names(true),
                    all: names(false),
                },
            );
        }
        packages
    })
}

/// Names of the normal dependencies of the workspace crate in `krate` (a directory).
/// Asserts that the crate in `krate` depends on none of `forbidden`.
fn assert_no_dependency(krate: &str, forbidden: &[&str]) {
    let deps = dependencies(krate);
    for name in forbidden {
        assert!(!deps.contains(*name), "{krate} depends on {name}");
    }
}

fn dependencies(krate: &str) -> BTreeSet<String> {
    workspace()
        .values()
        .find(|p| p.dir == krate)
        .unwrap_or_else(|| panic!("no workspace crate in {krate}/"))
        .normal
        .clone()
}

#[test]
fn domain_depends_only_on_plain_data_crates() {
    // uuid: job ids are UUIDs (parsed and shown here; the callers make them, so the domain
    // still reads no clock).
    let allowed: BTreeSet<String> = ["chrono", "serde", "serde_json", "thiserror", "uuid"]
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
    // Every production crate, including ones added later: no HTTP-server crate outside api/
    // (the test-support crate runs mock upstreams and is not shipped).
    let servers = [
        "axum",
        "tower-http",
        "utoipa",
        "hyper",
        "actix-web",
        "warp",
        "tiny_http",
    ];
    for (name, p) in workspace() {
        if name == "climate-api" || name == "climate-tests" {
            continue;
        }
        for forbidden in servers {
            assert!(
                !p.normal.contains(forbidden),
                "{name} ({}) depends on {forbidden}: only api/ knows HTTP servers",
                p.dir
            );
        }
    }
}

#[test]
fn nothing_depends_on_the_binaries() {
    let packages = workspace();
    for krate in ["climate-worker", "climate-scheduler"] {
        assert!(packages.contains_key(krate), "{krate} is a workspace crate");
    }
    assert!(
        packages["climate-api"].normal.contains("climate-ingest"),
        "the parsed dependencies miss climate-ingest"
    );
    for (name, p) in packages {
        for binary in ["climate-worker", "climate-scheduler", "climate-api"] {
            assert!(
                !p.all.contains(binary),
                "{name} depends on {binary}: the binaries are thin; what they run lives in \
                 library crates (climate-ingest)"
            );
        }
    }
}

#[test]
fn nothing_reads_the_project_kit() {
    // The kit (../shared beside the repository) is not part of a user's clone.
    let out = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(repo_root())
        .output()
        .expect("git ls-files");
    assert!(out.status.success(), "git ls-files failed");
    let files: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(
        files.iter().any(|f| f == "tests/e2e/architecture.rs"),
        "git ls-files lists the sources"
    );
    let kit_var = ["CLIMATE", "SHARED", "DIR"].join("_");
    // Only the kit's data and schemas: fuzz/ is a workspace one level down, whose ../shared is
    // the project's own crates.
    let kit_path = ["..", "shared", "data"].join("/");
    let kit_schemas = ["..", "shared", "schemas"].join("/");
    let unset = format!("unset {kit_var}");
    for file in files {
        let code = [
            ".rs", ".py", ".sh", ".toml", ".yaml", ".yml", "Makefile", ".ci/run",
        ]
        .iter()
        .any(|ext| file.ends_with(ext));
        if !code {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(repo_root().join(&file)) else {
            continue;
        };
        // Unsetting it (.ci/run, before the isolated run) is the one use allowed.
        assert!(
            !text
                .lines()
                .any(|l| l.contains(&kit_var) && l.trim() != unset),
            "{file} reads {kit_var}: tests and tools use the fixtures in the repository"
        );
        assert!(
            !text.contains(&kit_path) && !text.contains(&kit_schemas),
            "{file} reads the project kit: copy what it needs into tests/fixtures"
        );
    }
}

#[test]
fn geodata_knows_no_database_queue_or_cache() {
    assert_no_dependency(
        "shared/geodata",
        &["sqlx", "lapin", "redis", "climate-infra"],
    );
}

#[test]
fn computation_is_pure() {
    // climate-compute takes values and returns values: no backend, no runtime, no network.
    assert_no_dependency(
        "shared/compute",
        &[
            "climate-infra",
            "climate-geodata",
            "climate-catalog",
            "climate-jobs",
            "tokio",
            "sqlx",
            "reqwest",
            "object_store",
            "axum",
        ],
    );
}

#[test]
fn the_read_model_does_not_depend_on_the_writer() {
    // The catalog reads what the pipeline writes through one type (VersionMetadata); the
    // pipeline depends on the catalog for it, never the other way round.
    let packages = workspace();
    assert!(
        packages["climate-ingest"]
            .normal
            .contains("climate-catalog"),
        "the pipeline writes version metadata through climate-catalog's type"
    );
    assert_no_dependency("shared/catalog", &["climate-ingest", "lapin", "redis"]);
}

#[test]
fn the_job_engine_knows_no_particular_job() {
    // Ingestion is a job kind of the engine, not part of it: the engine depends on the
    // backends only, and ingestion on the engine.
    let packages = workspace();
    assert!(
        packages["climate-ingest"].normal.contains("climate-jobs"),
        "ingestion runs as a job kind of climate-jobs"
    );
    assert_no_dependency(
        "shared/jobs",
        &[
            "climate-ingest",
            "climate-geodata",
            "climate-catalog",
            "axum",
        ],
    );
}

/// The Rust sources under `dir` (relative to the repository), also in module directories.
fn rust_sources(dir: &str) -> Vec<std::path::PathBuf> {
    let files: Vec<_> = climate_tests::files_under(&repo_root().join(dir))
        .expect("sources")
        .into_iter()
        .map(|(_, path)| path)
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    assert!(!files.is_empty(), "no sources under {dir}");
    files
}

#[test]
fn downloads_and_remote_reads_know_no_providers() {
    // The download layer, the remote Zarr reader and the upstream machine serve the
    // providers; none of them uses a provider (no module cycle).
    for dir in [
        "shared/geodata/src/http",
        "shared/geodata/src/remote_zarr",
        "shared/geodata/src/upstream",
    ] {
        for path in rust_sources(dir) {
            let text = std::fs::read_to_string(&path).expect("source");
            assert!(
                !text.contains("crate::providers"),
                "{} uses crate::providers",
                path.display()
            );
        }
    }
}

#[test]
fn domain_sources_do_no_io() {
    let files = rust_sources("shared/domain/src");
    assert!(files.len() > 10, "the walk found the sources: {files:?}");
    for path in files {
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
