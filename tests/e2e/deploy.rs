//! The deployment artefacts (`deploy/`, `helm/`), checked offline by `tests/deploy/*.py`: the
//! Helm chart linted and rendered by Helm's own engine and validated against Kubernetes schemas,
//! the compose stack against the Compose Specification, the Dockerfile's runtime packages
//! against the libraries the built binaries load, and the rendered configuration files against
//! the product itself.

use climate_tests::{bin, python};

/// Every check ran and passed: the scripts print `N passed, 0 failed` and never skip.
fn assert_all_passed(out: &str) {
    assert!(
        out.lines().any(|l| l.ends_with(" passed, 0 failed")) && !out.contains("skip "),
        "{out}"
    );
}

#[test]
fn helm_chart_lints_renders_validates_and_keeps_its_essentials() -> anyhow::Result<()> {
    let api = bin("climate-api").display().to_string();
    assert_all_passed(&python("../deploy/check_chart.py", &["--product", &api])?);
    Ok(())
}

#[test]
fn compose_stack_and_image_recipe_match_the_built_binaries() -> anyhow::Result<()> {
    let bins: Vec<String> = ["climate-api", "climate-worker", "climate-scheduler"]
        .iter()
        .map(|b| bin(b).display().to_string())
        .collect();
    let mut args = Vec::new();
    for b in &bins {
        args.extend(["--binary", b.as_str()]);
    }
    assert_all_passed(&python("../deploy/check_compose.py", &args)?);
    Ok(())
}
