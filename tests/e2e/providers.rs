//! Upstream providers against a mock upstream that speaks their protocol and serves the real
//! sample files: transient faults are retried and succeed, permanent ones fail the run with an
//! error naming provider, URL and cause, and nothing is downloaded twice.

use std::time::Duration;

use climate_tests::mock::{Fault, MockUpstream};
use climate_tests::{Options, Shape, TestApp, chirps_cog, python, repo_root};
use serde_json::json;

const WORLDPOP_2026: &str = "/GIS/Population/Global_2015_2030/R2025A/2026/SLE/v1/1km_ua/constrained/sle_pop_2026_CN_1km_R2025A_UA_v1.tif";

fn worldpop_template(mock: &MockUpstream) -> String {
    format!(
        "- id: worldpop_test\n  name: WorldPop (mock)\n  variable: pop_total\n  period_type: yearly\n  units: people\n  ingestion:\n    provider: worldpop_yearly\n    params: {{base_url: \"{}/GIS/\", product: global2_1km}}\n  sync: {{kind: release}}\n",
        mock.base
    )
}

async fn app_with(mock: &MockUpstream) -> anyhow::Result<TestApp> {
    TestApp::start(
        Shape::Standalone,
        Options {
            templates: vec![worldpop_template(mock)],
            extents_yaml: Some(
                "extents:\n  - extent_id: sle\n    name: Sierra Leone\n    bbox: [-13.5, 6.9, -10.1, 10.0]\n    country_code: SLE\n  - extent_id: nocc\n    name: No country\n    bbox: [-13.5, 6.9, -10.1, 10.0]\n".into(),
            ),
            // Fast retries and a short stall timeout keep the test quick; the behaviour is the
            // production one.
            extra_yaml: "providers:\n  worldpop_yearly:\n    base_delay_ms: 50\n    max_delay_ms: 2000\n    read_timeout_seconds: 1\n    max_attempts: 6\n".into(),
            ..Options::default()
        },
    )
    .await
}

fn sample() -> Vec<u8> {
    std::fs::read(repo_root().join("config/samples/worldpop_sle_2026_1km.tif")).expect("sample")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worldpop_survives_transient_faults_and_downloads_once() -> anyhow::Result<()> {
    let mock = MockUpstream::start().await?;
    mock.serve_file(WORLDPOP_2026, sample());
    mock.fail_next(
        WORLDPOP_2026,
        vec![
            Fault::Status(503, Some(1)),
            Fault::Status(429, None),
            Fault::Truncate(10_000),
            Fault::Stall(Duration::from_secs(3)),
        ],
    );
    let app = app_with(&mock).await?;
    let run = app
        .ingest(&json!({"dataset_id": "worldpop_test", "start": "2026", "end": "2026"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    assert_eq!(mock.hits(WORLDPOP_2026), 5, "four faults, then the file");
    let times = mock.hit_times(WORLDPOP_2026);
    assert!(
        times[1] - times[0] >= Duration::from_millis(950),
        "Retry-After: 1 must be honoured, waited {:?}",
        times[1] - times[0]
    );

    let id = "worldpop_test_sle";
    python(
        "check_zarr.py",
        &[
            "--url",
            &app.url(&format!("/zarr/{id}")),
            "--source",
            &repo_root()
                .join("config/samples/worldpop_sle_2026_1km.tif")
                .to_string_lossy(),
            "--var",
            "pop_total",
            "--bbox=-13.5,6.9,-10.1,10.0",
            "--nodata=-99999",
        ],
    )?;

    // A rebuild reads the download cache: no new request upstream.
    app.ingest_ok(
        &json!({"dataset_id": "worldpop_test", "start": "2026", "end": "2026", "overwrite": true}),
    )
    .await?;
    assert_eq!(
        mock.hits(WORLDPOP_2026),
        5,
        "served from the download cache"
    );
    let cached = app
        .dir
        .path()
        .join("data/store/cache/http")
        .join(mock.base.trim_start_matches("http://").replace(':', "_"))
        .join(WORLDPOP_2026.trim_start_matches('/'));
    assert_eq!(
        std::fs::metadata(&cached)?.len(),
        sample().len() as u64,
        "{}",
        cached.display()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worldpop_permanent_faults_fail_the_run_clearly() -> anyhow::Result<()> {
    let mock = MockUpstream::start().await?;
    let corrupt = WORLDPOP_2026.replace("2026", "2024");
    mock.serve_file(&corrupt, sample());
    mock.fail_next(&corrupt, vec![Fault::Corrupt]);
    let app = app_with(&mock).await?;

    // Not published upstream: one request, no retries, an error naming provider, URL, cause.
    let run = app
        .ingest(&json!({"dataset_id": "worldpop_test", "start": "2025", "end": "2025"}))
        .await?;
    assert_eq!(run["status"], "failed", "{run}");
    let msg = run["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("worldpop_yearly") && msg.contains("HTTP 404") && msg.contains("/2025/SLE/"),
        "{msg}"
    );
    assert_eq!(
        mock.hits(&WORLDPOP_2026.replace("2026", "2025")),
        1,
        "404 is not retried"
    );

    // A corrupt file fails the run and is not cached: a fixed upstream then works.
    let run = app
        .ingest(&json!({"dataset_id": "worldpop_test", "start": "2024", "end": "2024"}))
        .await?;
    assert_eq!(run["status"], "failed", "{run}");
    let msg = run["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("not usable") && msg.contains("/2024/SLE/"),
        "{msg}"
    );
    let run = app
        .ingest(&json!({"dataset_id": "worldpop_test", "start": "2024", "end": "2024"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    assert_eq!(mock.hits(&corrupt), 2);

    // Outside the release's years: refused before any request.
    let run = app
        .ingest(&json!({"dataset_id": "worldpop_test", "start": "2031", "end": "2031"}))
        .await?;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("covers 2015 to 2030"),
        "{run}"
    );

    // WorldPop is per country: an extent without one is a clear error.
    let run = app
        .ingest(&json!({"dataset_id": "worldpop_test", "start": "2026", "end": "2026", "extent_id": "nocc"}))
        .await?;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("has no country_code"),
        "{run}"
    );

    // Nothing was published from the failed runs.
    let (_, list) = app.get_json("/datasets").await?;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    Ok(())
}

pub(crate) const CHIRPS_ROOT: &str = "/products/CHIRPS/v3.0";

pub(crate) fn chirps_path(day: u32) -> String {
    format!("{CHIRPS_ROOT}/daily/final/rnl/cogs/2024/chirps-v3.0.rnl.2024.01.{day:02}.cog")
}

pub(crate) fn chirps_mock(mock: &MockUpstream, days: u32) {
    mock.honour_ranges();
    for d in 1..=days {
        mock.serve_file(
            &chirps_path(d),
            std::fs::read(chirps_cog(d)).expect("generated CHIRPS fixture"),
        );
    }
}

/// The `chirps_test` template reading CHIRPS from `mock`, with `extra` YAML lines appended.
pub(crate) fn chirps_template(mock: &MockUpstream, extra: &str) -> String {
    format!(
        "- id: chirps_test\n  name: CHIRPS (mock)\n  variable: precip\n  period_type: daily\n  units: mm\n  ingestion:\n    provider: chirps3_daily\n    params: {{base_url: \"{}{CHIRPS_ROOT}\", stage: final, flavor: rnl}}\n{extra}",
        mock.base
    )
}

async fn chirps_app(mock: &MockUpstream, shape: Shape) -> anyhow::Result<TestApp> {
    TestApp::start(
        shape,
        Options {
            templates: vec![chirps_template(
                mock,
                "  sync: {kind: temporal, execution: append}\n",
            )],
            ..Options::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chirps_reads_only_the_tiles_covering_the_extent() -> anyhow::Result<()> {
    let mock = MockUpstream::start().await?;
    chirps_mock(&mock, 10);
    let app = chirps_app(&mock, Shape::Standalone).await?;
    let run = app
        .ingest(&json!({"dataset_id": "chirps_test", "start": "2024-01-01", "end": "2024-01-10"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    for d in 1..=10 {
        let size = std::fs::metadata(chirps_cog(d))?.len();
        let served = mock.bytes_served(&chirps_path(d));
        assert!(served > 0, "day {d} was read");
        assert!(
            served * 20 < size,
            "day {d}: {served} of {size} bytes fetched; only the header and the extent's tiles should be"
        );
    }

    // Values: each day equals its source file's window, −9999 masked.
    let id = "chirps_test_sle";
    for d in 1..=3u32 {
        let t = (d - 1).to_string();
        python(
            "check_zarr.py",
            &[
                "--url",
                &app.url(&format!("/zarr/{id}")),
                "--source",
                &chirps_cog(d).to_string_lossy(),
                "--var",
                "precip",
                "--bbox=-13.5,6.9,-10.1,10.0",
                "--nodata=-9999",
                "--time-index",
                &t,
            ],
        )?;
    }

    // A rebuild is served from the download cache: not one more byte upstream.
    let before: u64 = (1..=10).map(|d| mock.bytes_served(&chirps_path(d))).sum();
    app.ingest_ok(&json!({"dataset_id": "chirps_test", "start": "2024-01-01", "end": "2024-01-10", "overwrite": true})).await?;
    let after: u64 = (1..=10).map(|d| mock.bytes_served(&chirps_path(d))).sum();
    assert_eq!(before, after, "range reads come from the cache");

    // No end: up to the last published day (the first 404 ends the range).
    let open = app
        .ingest_ok(&json!({"dataset_id": "chirps_test", "start": "2024-01-08", "overwrite": true}))
        .await?;
    assert_eq!(
        open["dataset"]["extent"]["temporal"],
        json!({"start": "2024-01-08", "end": "2024-01-10"})
    );

    // A day that is not published fails the run, naming provider, URL and cause.
    let missing = app.ingest(&json!({"dataset_id": "chirps_test", "start": "2024-01-09", "end": "2024-01-12", "overwrite": true})).await?;
    assert_eq!(missing["status"], "failed", "{missing}");
    let msg = missing["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("chirps3_daily") && msg.contains("2024.01.11.cog") && msg.contains("404"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chirps_files_in_the_real_chc_variant_lzw_512_tiles_no_nodata_tag() -> anyhow::Result<()> {
    // CHC's own files are reported to use 512² LZW tiles and to store −9999 as a plain value
    // with no nodata tag (PROTOCOLS.md §4): the kit's COGs are rewritten that way and served.
    let dir = tempfile::tempdir()?;
    let mock = MockUpstream::start().await?;
    mock.honour_ranges();
    let mut variants = Vec::new();
    for d in 1..=3u32 {
        let out = dir.path().join(format!("variant-{d}.tif"));
        python(
            "make_chirps_variant.py",
            &[
                "--src",
                &chirps_cog(d).to_string_lossy(),
                "--out",
                &out.to_string_lossy(),
            ],
        )?;
        mock.serve_file(&chirps_path(d), std::fs::read(&out)?);
        variants.push(out);
    }
    let app = chirps_app(&mock, Shape::Standalone).await?;
    let run = app
        .ingest(&json!({"dataset_id": "chirps_test", "start": "2024-01-01", "end": "2024-01-03"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    for (i, file) in variants.iter().enumerate() {
        let size = std::fs::metadata(file)?.len();
        let served = mock.bytes_served(&chirps_path(i as u32 + 1));
        assert!(
            served > 0 && served * 4 < size,
            "day {}: {served} of {size} bytes fetched; only the extent's tiles should be",
            i + 1
        );
        // The values equal the file's window with −9999 masked although nothing tags it.
        python(
            "check_zarr.py",
            &[
                "--url",
                &app.url("/zarr/chirps_test_sle"),
                "--source",
                &file.to_string_lossy(),
                "--var",
                "precip",
                "--bbox=-13.5,6.9,-10.1,10.0",
                "--nodata=-9999",
                "--time-index",
                &i.to_string(),
            ],
        )?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_world_extent_gets_a_pyramid_that_xarray_reads_level_by_level() -> anyhow::Result<()> {
    // The whole CHIRPS grid (7200 × 2400 pixels) is far over a megapixel: the store carries
    // pyramid levels 1..5 next to the full-resolution arrays.
    let mock = MockUpstream::start().await?;
    chirps_mock(&mock, 3);
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            templates: vec![chirps_template(
                &mock,
                "  display: {colormap: greys, range: [0, 20]}\n",
            )],
            extents_yaml: Some(
                "extents:\n  - extent_id: world\n    name: World\n    bbox: [-180, -90, 180, 90]\n"
                    .into(),
            ),
            ..Options::default()
        },
    )
    .await?;
    let run = app
        .ingest(&json!({"dataset_id": "chirps_test", "start": "2024-01-01", "end": "2024-01-03"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    let url = app.url("/zarr/chirps_test_world");
    // Level 0 equals the source files...
    python(
        "check_zarr.py",
        &[
            "--url",
            &url,
            "--source",
            &chirps_cog(2).to_string_lossy(),
            "--var",
            "precip",
            "--bbox=-180,-90,180,90",
            "--nodata=-9999",
            "--time-index",
            "1",
        ],
    )?;
    // ...and every coarser level is the 2×2 mean of the one before.
    let out = python(
        "check_pyramid.py",
        &["--url", &url, "--var", "precip", "--levels", "5"],
    )?;
    assert!(out.contains("[3, 75, 225]"), "{out}");

    // A coverage of the whole world is too large to answer synchronously: 413, pointing to
    // the routes that can serve it; a thinned one is answered.
    let (status, err) = app
        .get_json("/ogcapi/collections/chirps_test_world/coverage")
        .await?;
    assert_eq!(status, 413, "{err}");
    let msg = err["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("/zarr/chirps_test_world") && msg.contains("scale-factor"),
        "{msg}"
    );
    let (status, cov) = app
        .get_json(
            "/ogcapi/collections/chirps_test_world/coverage?datetime=2024-01-02&scale-factor=8",
        )
        .await?;
    assert_eq!(status, 200, "{cov}");
    assert_eq!(cov["ranges"]["precip"]["shape"], json!([1, 300, 900]));
    // Map tiles are drawn from the pyramid level that fits their zoom.
    for (z, row, col, level) in [("1", "0", "0", "3"), ("3", "3", "3", "1")] {
        let out = python(
            "check_tile_levels.py",
            &[
                "--url",
                &app.url(""),
                "--id",
                "chirps_test_world",
                "--var",
                "precip",
                "--z",
                z,
                "--row",
                row,
                "--col",
                col,
                "--datetime",
                "2024-01-02",
                "--range",
                "0,20",
                "--levels",
                "5",
            ],
        )?;
        assert!(
            out.contains(&format!("\"level\": {level}")),
            "zoom {z}: {out}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_a_paced_provider_keep_their_distance() -> anyhow::Result<()> {
    let mock = MockUpstream::start().await?;
    chirps_mock(&mock, 4);
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            templates: vec![chirps_template(&mock, "")],
            extra_yaml: "providers:\n  chirps3_daily: {concurrency: 4, min_interval_ms: 150}\n"
                .into(),
            ..Options::default()
        },
    )
    .await?;
    let run = app
        .ingest(&json!({"dataset_id": "chirps_test", "start": "2024-01-01", "end": "2024-01-04"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    // HEADs and range reads of four days, four at a time, yet one request per 150 ms.
    let times = mock.all_hit_times();
    assert!(times.len() >= 8, "{} requests", times.len());
    // Pacing spaces the *starts* 150 ms apart; on a busy machine a request can reach the server
    // up to ~200 ms after its slot, so two neighbours may arrive together. Any four consecutive
    // requests still span three slots less that delay (without pacing, four start at once).
    let gaps: Vec<u128> = times
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_millis())
        .collect();
    assert!(
        times
            .windows(4)
            .all(|w| w[3].duration_since(w[0]).as_millis() >= 3 * 150 - 200),
        "requests closer than the pacing allows: gaps {gaps:?} ms"
    );
    let span = times[times.len() - 1].duration_since(times[0]).as_millis();
    assert!(
        span >= (times.len() as u128 - 1) * 120,
        "{} requests in {span} ms",
        times.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chirps_segments_run_on_two_workers_through_faults() -> anyhow::Result<()> {
    // 45 days with 30-day time chunks: two segments, for two distributed workers, while the
    // upstream is slow and fails some range requests.
    let mock = MockUpstream::start().await?;
    mock.honour_ranges();
    mock.set_latency(Duration::from_millis(20));
    for d in 1..=31u32 {
        mock.serve_file(&chirps_path(d), std::fs::read(chirps_cog(d))?);
    }
    for d in 1..=14u32 {
        let path =
            format!("{CHIRPS_ROOT}/daily/final/rnl/cogs/2024/chirps-v3.0.rnl.2024.02.{d:02}.cog");
        mock.serve_file(&path, std::fs::read(chirps_cog(d))?);
    }
    mock.fail_next(
        &chirps_path(5),
        vec![Fault::Status(503, None), Fault::Status(502, None)],
    );
    let app = chirps_app(&mock, Shape::Distributed { workers: 2 }).await?;
    let run = app
        .ingest(&json!({"dataset_id": "chirps_test", "start": "2024-01-01", "end": "2024-02-14"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    assert_eq!(run["progress"]["done"], 45);
    let (_, root) = app.get_json("/zarr/chirps_test_sle/zarr.json").await?;
    assert_eq!(
        root["consolidated_metadata"]["metadata"]["precip"]["shape"][0],
        45
    );
    python(
        "check_zarr.py",
        &[
            "--url",
            &app.url("/zarr/chirps_test_sle"),
            "--source",
            &chirps_cog(35 - 31).to_string_lossy(),
            "--var",
            "precip",
            "--bbox=-13.5,6.9,-10.1,10.0",
            "--nodata=-9999",
            "--time-index",
            "34",
        ],
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_template_reads_a_monthly_netcdf_of_daily_steps_once() -> anyhow::Result<()> {
    let mock = MockUpstream::start().await?;
    let path = "/era5/2025/07/t2m_daily.nc";
    mock.serve_file(path, std::fs::read(climate_tests::era5_sample())?);
    mock.fail_next(path, vec![Fault::Status(500, None)]);
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            templates: vec![format!(
                "- id: era5_http\n  name: ERA5 over HTTP (mock)\n  variable: t2m\n  period_type: daily\n  units: degC\n  ingestion:\n    provider: http_template\n    params: {{url: \"{}/era5/{{year}}/{{month}}/t2m_daily.nc\"}}\n  transforms: [kelvin_to_celsius]\n",
                mock.base
            )],
            ..Options::default()
        },
    )
    .await?;
    let run = app
        .ingest(&json!({"dataset_id": "era5_http", "start": "2025-07-03", "end": "2025-07-12"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    assert_eq!(
        mock.hits(path),
        2,
        "one 500, then the file, fetched once for ten days"
    );
    climate_tests::check_era5(
        &app,
        "era5_http_sle",
        "2025-07-03",
        "2025-07-12",
        "kelvin_to_celsius",
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_runs_an_external_program_and_reports_its_failure() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sample = repo_root().join("config/samples/worldpop_sle_2026_1km.tif");
    let good = dir.path().join("fetch_pop.sh");
    std::fs::write(
        &good,
        format!(
            "#!/bin/sh\n# Writes one GeoTIFF per requested year into --dir.\nwhile [ $# -gt 0 ]; do case $1 in --start) S=$2;; --end) E=$2;; --dir) D=$2;; --bbox) B=$2;; esac; shift 2; done\n[ -n \"$B\" ] || {{ echo 'no bbox' >&2; exit 2; }}\ny=$S; while [ $y -le $E ]; do cp {} \"$D/pop_$y.tif\"; y=$((y+1)); done\n",
            sample.display()
        ),
    )?;
    let bad = dir.path().join("broken.sh");
    std::fs::write(
        &bad,
        "#!/bin/sh\necho 'starting' >&2\necho 'boom: upstream credentials missing' >&2\nexit 3\n",
    )?;
    for f in [&good, &bad] {
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(f)
            .status()?;
    }
    let template = |id: &str, program: &std::path::Path| {
        format!(
            "- id: {id}\n  name: Population via a program\n  variable: pop_total\n  period_type: yearly\n  units: people\n  ingestion:\n    provider: command\n    params: {{program: \"{}\", pattern: \"pop_{{year}}.tif\"}}\n",
            program.display()
        )
    };
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            templates: vec![template("pop_cmd", &good), template("pop_broken", &bad)],
            ..Options::default()
        },
    )
    .await?;
    let run = app
        .ingest(&json!({"dataset_id": "pop_cmd", "start": "2025", "end": "2026"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    assert_eq!(
        run["dataset"]["extent"]["temporal"],
        json!({"start": "2025", "end": "2026"})
    );

    let run = app
        .ingest(&json!({"dataset_id": "pop_broken", "start": "2025", "end": "2026"}))
        .await?;
    assert_eq!(run["status"], "failed", "{run}");
    let msg = run["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("exit status: 3") && msg.contains("boom: upstream credentials missing"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn era5_land_precipitation_is_deaccumulated_to_hourly_amounts() -> anyhow::Result<()> {
    let source = climate_tests::era5_hourly_sample();
    assert!(
        source.exists(),
        "{} (the accumulated ERA5-Land sample)",
        source.display()
    );
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            templates: vec![format!(
                "- id: era5_tp\n  name: ERA5-Land precipitation, hourly (sample)\n  variable: tp\n  period_type: hourly\n  units: mm\n  ingestion:\n    provider: file\n    params: {{path: \"{}\", variable: tp}}\n  transforms: [deaccumulate, metres_to_mm]\n",
                source.display()
            )],
            ..Options::default()
        },
    )
    .await?;
    // Two complete UTC days: the hours ending 2024-01-01T01 … 2024-01-03T00.
    let run = app
        .ingest(&json!({"dataset_id": "era5_tp", "start": "2024-01-01T01", "end": "2024-01-03T00"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    let out = python(
        "check_deaccumulation.py",
        &[
            "--url",
            &app.url("/zarr/era5_tp_sle"),
            "--source",
            &source.to_string_lossy(),
        ],
    )?;
    let summary: serde_json::Value = serde_json::from_str(out.trim())?;
    assert_eq!(summary["days_checked"], 2, "{summary}");
    assert_eq!(summary["hours"], 48);

    // The first hour of the sample (00 UTC) closes the day before, which the source lacks.
    let run = app
        .ingest(&json!({"dataset_id": "era5_tp", "start": "2024-01-01T00", "end": "2024-01-01T05", "overwrite": true}))
        .await?;
    assert_eq!(run["status"], "failed", "{run}");
    let msg = run["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("needs the accumulation of the hour before (2023-12-31T23)"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_sources_aggregate_to_daily_means_and_maxima() -> anyhow::Result<()> {
    let source = climate_tests::era5_hourly_sample();
    let template = |id: &str, method: &str| {
        format!(
            "- id: {id}\n  name: ERA5-Land t2m, daily {method} (sample)\n  variable: t2m\n  period_type: daily\n  units: degC\n  ingestion:\n    provider: file\n    params: {{path: \"{}\", variable: t2m}}\n  aggregate: {{from: hourly, method: {method}}}\n  transforms: [kelvin_to_celsius]\n",
            source.display()
        )
    };
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            templates: vec![template("t2m_mean", "mean"), template("t2m_max", "max")],
            ..Options::default()
        },
    )
    .await?;
    // The sample holds 72 hours: three complete UTC days.
    for (id, method) in [("t2m_mean", "mean"), ("t2m_max", "max")] {
        let run = app
            .ingest(&json!({"dataset_id": id, "start": "2024-01-01", "end": "2024-01-03"}))
            .await?;
        assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
        python(
            "check_zarr.py",
            &[
                "--url",
                &app.url(&format!("/zarr/{id}_sle")),
                "--source",
                &source.to_string_lossy(),
                "--var",
                "t2m",
                "--start",
                "2024-01-01",
                "--end",
                "2024-01-03",
                "--bbox=-13.5,6.9,-10.1,10.0",
                "--transform",
                "kelvin_to_celsius",
                "--resample",
                method,
            ],
        )?;
    }
    // A day whose hours the source lacks is a gap, named as such.
    let run = app
        .ingest(&json!({"dataset_id": "t2m_mean", "start": "2024-01-02", "end": "2024-01-04", "overwrite": true}))
        .await?;
    assert_eq!(run["status"], "failed", "{run}");
    let msg = run["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("no source data for 2024-01-04"), "{msg}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cds_jobs_are_awaited_without_holding_a_worker() -> anyhow::Result<()> {
    let source = climate_tests::era5_hourly_sample();
    let mock = MockUpstream::start().await?;
    // The CDS job reports accepted/running for four polls (one per second) before succeeding.
    mock.enable_cds("test-key", 4, std::fs::read(&source)?);
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            templates: vec![format!(
                "- id: era5_cds\n  name: ERA5-Land 2 m temperature, hourly (CDS mock)\n  variable: t2m\n  period_type: hourly\n  units: degC\n  ingestion:\n    provider: era5_land_cds\n    params: {{variable: 2m_temperature, base_url: \"{}/api\", poll_seconds: 1}}\n  transforms: [kelvin_to_celsius]\n",
                mock.base
            )],
            // One worker slot: if waiting held it, the second ingestion below could not run.
            extra_yaml: "providers:\n  era5_land_cds:\n    api_key: test-key\n    base_delay_ms: 50\n".into(),
            ..Options::default()
        },
    )
    .await?;
    let (_, id) = app
        .start_ingestion(
            &json!({"dataset_id": "era5_cds", "start": "2024-01-01T00", "end": "2024-01-02T23"}),
        )
        .await?;

    // While CDS works, the run is suspended (queued, saying what it waits for) …
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, r) = app.get_json(&format!("/ingestions/{id}")).await?;
        if r["progress"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("waiting for CDS"))
        {
            assert_eq!(r["status"], "queued", "{r}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never suspended: {r}\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // … and the workers are free for other work, which finishes first.
    app.ingest_ok(&json!({"dataset_id": "sample_era5land_t2m_daily", "start": "2025-07-01", "end": "2025-07-02"})).await?;
    let (_, r) = app.get_json(&format!("/ingestions/{id}")).await?;
    assert_ne!(
        r["status"], "succeeded",
        "the CDS run should still be waiting: {r}"
    );

    let done = app.wait_for_run(&id, Duration::from_secs(60)).await?;
    assert_eq!(done["status"], "succeeded", "{done}\n{}", app.logs());
    assert_eq!(done["attempts"], 1, "waiting uses no attempt");
    assert_eq!(done["progress"]["done"], 48);
    let submitted = mock.cds_submissions();
    assert_eq!(submitted.len(), 1, "one month, one job: {submitted:?}");
    let inputs = &submitted[0]["inputs"];
    assert_eq!(inputs["variable"], json!(["2m_temperature"]));
    assert_eq!(
        inputs["area"],
        json!([10.0, -13.5, 6.9, -10.1]),
        "N, W, S, E"
    );
    assert_eq!(inputs["day"], json!(["01", "02"]));
    assert_eq!(inputs["data_format"], "netcdf");
    climate_tests::python(
        "check_zarr.py",
        &[
            "--url",
            &app.url("/zarr/era5_cds_sle"),
            "--source",
            &source.to_string_lossy(),
            "--var",
            "t2m",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-02",
            "--bbox=-13.5,6.9,-10.1,10.0",
            "--transform",
            "kelvin_to_celsius",
        ],
    )?;

    // A rebuild reads the cached download: no new job.
    app.ingest_ok(&json!({"dataset_id": "era5_cds", "start": "2024-01-01T00", "end": "2024-01-02T23", "overwrite": true})).await?;
    assert_eq!(mock.cds_submissions().len(), 1);

    // A rejected key fails the run clearly (a different scope, so nothing is cached).
    mock.set_cds_key("another-key");
    let bad = app
        .ingest(
            &json!({"dataset_id": "era5_cds", "start": "2024-01-03T00", "end": "2024-01-03T05"}),
        )
        .await?;
    assert_eq!(bad["status"], "failed", "{bad}");
    let msg = bad["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("era5_land_cds") && msg.contains("rejected the API key (401)"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_stops_runs_at_the_next_boundary_and_publishes_nothing() -> anyhow::Result<()> {
    // A slow upstream: 61 days (three segments with 30-day chunks and one segment per chunk)
    // take seconds, long enough to cancel mid-run.
    let mock = MockUpstream::start().await?;
    mock.honour_ranges();
    mock.set_latency(Duration::from_millis(60));
    for d in 1..=31u32 {
        mock.serve_file(&chirps_path(d), std::fs::read(chirps_cog(d))?);
    }
    for d in 1..=29u32 {
        let path =
            format!("{CHIRPS_ROOT}/daily/final/rnl/cogs/2024/chirps-v3.0.rnl.2024.02.{d:02}.cog");
        mock.serve_file(&path, std::fs::read(chirps_cog(d))?);
    }
    mock.serve_file(
        &format!("{CHIRPS_ROOT}/daily/final/rnl/cogs/2024/chirps-v3.0.rnl.2024.03.01.cog"),
        std::fs::read(chirps_cog(1))?,
    );
    let app = chirps_app(&mock, Shape::Standalone).await?;
    let body = json!({"dataset_id": "chirps_test", "start": "2024-01-01", "end": "2024-03-01"});
    let (status, _, run) = app.post_json("/ingestions", &body).await?;
    assert_eq!(status, 202, "{run}");
    let id = run["ingestion_id"].as_str().expect("id").to_owned();

    // Wait until segments are being written, then cancel.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, r) = app.get_json(&format!("/ingestions/{id}")).await?;
        if r["progress"]["message"] == "writing segments" {
            break;
        }
        assert!(
            r["status"] != "succeeded" && std::time::Instant::now() < deadline,
            "never got to the segments: {r}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = app.delete(&format!("/ingestions/{id}")).await?;
    assert_eq!(r.status(), 200);
    let cancelled: serde_json::Value = r.json().await?;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let r = app.delete(&format!("/ingestions/{id}")).await?;
    assert_eq!(r.status(), 409, "a finished run cannot be cancelled again");

    // The workers notice at their next boundary: nothing is published, and what was written is
    // removed.
    let store = app.dir.path().join("data/store/datasets/chirps_test_sle");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let files = climate_tests::file_sizes(&store).len();
        if files == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{files} objects of the cancelled run remain\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, r) = app.get_json(&format!("/ingestions/{id}")).await?;
    assert_eq!(r["status"], "cancelled");
    let (_, list) = app.get_json("/datasets").await?;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");

    // The dataset is free again: a new run of it goes through.
    mock.set_latency(Duration::ZERO);
    let again = app
        .ingest(&json!({"dataset_id": "chirps_test", "start": "2024-01-01", "end": "2024-01-05"}))
        .await?;
    assert_eq!(again["status"], "succeeded", "{again}\n{}", app.logs());
    Ok(())
}

/// Builds the DestinE-layout test store of `format` (2 or 3) under `dir`.
fn remote_zarr_store(dir: &std::path::Path, format: &str) -> anyhow::Result<std::path::PathBuf> {
    let out = dir.join(format!("v{format}/era5-land.zarr"));
    python(
        "make_remote_zarr.py",
        &["--out", &out.to_string_lossy(), "--format", format],
    )?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn era5_land_zarr_reads_v2_and_v3_stores_with_netrc_credentials() -> anyhow::Result<()> {
    let mock = MockUpstream::start().await?;
    let dir = tempfile::tempdir()?;
    for format in ["2", "3"] {
        let store = remote_zarr_store(dir.path(), format)?;
        mock.serve_dir(&format!("/era5/v{format}/era5-land.zarr"), &store)?;
    }
    mock.require_basic_auth("/era5/", "edh", "pat-0123456789");
    let netrc = dir.path().join("netrc");
    std::fs::write(
        &netrc,
        "machine example.org login someone password other\nmachine 127.0.0.1\n  login edh\n  password pat-0123456789\n",
    )?;
    let template = |id: &str, host: &str, version: &str| {
        format!(
            "- id: {id}\n  name: ERA5-Land 2 m temperature (EDH mock, Zarr v{version})\n  variable: t2m\n  period_type: hourly\n  units: K\n  ingestion:\n    provider: era5_land_zarr\n    params: {{base_url: \"{host}/era5/v{version}\", store: era5-land.zarr}}\n",
        )
    };
    let port = mock.base.rsplit(':').next().unwrap_or_default();
    let app = TestApp::start(
        Shape::Standalone,
        Options {
            templates: vec![
                template("edh_v2", &mock.base, "2"),
                template("edh_v3", &mock.base, "3"),
                // Same store through a host the netrc file has no entry for.
                template("edh_anonymous", &format!("http://localhost:{port}"), "3"),
            ],
            extents_yaml: Some(
                "extents:\n  - extent_id: sle\n    name: Sierra Leone\n    bbox: [-13.5, 6.9, -10.1, 10.0]\n  - extent_id: gha\n    name: Across the Greenwich meridian\n    bbox: [-3.0, 5.0, 1.0, 9.0]\n".into(),
            ),
            extra_yaml: format!(
                "providers:\n  era5_land_zarr:\n    netrc: \"{}\"\n    base_delay_ms: 20\n",
                netrc.display()
            ),
            ..Options::default()
        },
    )
    .await?;

    // v3 across the meridian: columns from both ends of the 0..360 grid, 24 hours.
    let run = app
        .ingest(&json!({"dataset_id": "edh_v3", "extent_id": "gha", "start": "2024-01-01T00", "end": "2024-01-01T23"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    let v3 = dir.path().join("v3/era5-land.zarr");
    python(
        "check_zarr.py",
        &[
            "--url",
            &app.url("/zarr/edh_v3_gha"),
            "--source",
            &v3.to_string_lossy(),
            "--var",
            "t2m",
            "--start",
            "2024-01-01T00",
            "--end",
            "2024-01-01T23",
            "--bbox=-3.0,5.0,1.0,9.0",
        ],
    )?;
    // Only the chunks intersecting (hours 0-23, rows of 5..9°N, columns 357..360 and 0..1°E):
    // time chunk 0, row chunks 0-2 (32 rows each), column chunks 13, 14 and 0 (256 each).
    let chunks: Vec<String> = mock
        .requested_paths()
        .into_iter()
        .filter(|p| p.starts_with("/era5/v3/era5-land.zarr/t2m/c/"))
        .collect();
    let mut expected = Vec::new();
    for y in 0..3 {
        for x in [0, 13, 14] {
            expected.push(format!("/era5/v3/era5-land.zarr/t2m/c/0/{y}/{x}"));
        }
    }
    expected.sort();
    assert_eq!(chunks, expected, "data chunks fetched");
    // Planning and writing both read the window; the chunks come from upstream once.
    for path in &expected {
        assert_eq!(mock.hits(path), 1, "{path} fetched once");
    }
    // A rebuild while the store has not grown reads every data chunk from the cache.
    let again = app
        .ingest(&json!({"dataset_id": "edh_v3", "extent_id": "gha", "start": "2024-01-01T00", "end": "2024-01-01T23", "overwrite": true}))
        .await?;
    assert_eq!(again["status"], "succeeded", "{again}\n{}", app.logs());
    for path in &expected {
        assert_eq!(
            mock.hits(path),
            1,
            "{path} served from the cache on a rebuild"
        );
    }

    // v2 (consolidated .zmetadata, dot-separated keys), the second day over Sierra Leone.
    let run = app
        .ingest(&json!({"dataset_id": "edh_v2", "start": "2024-01-02T00", "end": "2024-01-02T23"}))
        .await?;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", app.logs());
    assert!(mock.hits("/era5/v2/era5-land.zarr/.zmetadata") >= 1);
    assert_eq!(
        mock.hits("/era5/v2/era5-land.zarr/zarr.json"),
        mock.hits("/era5/v2/era5-land.zarr/.zmetadata"),
        "v3 is probed first, each time"
    );
    python(
        "check_zarr.py",
        &[
            "--url",
            &app.url("/zarr/edh_v2_sle"),
            "--source",
            &dir.path().join("v2/era5-land.zarr").to_string_lossy(),
            "--var",
            "t2m",
            "--start",
            "2024-01-02T00",
            "--end",
            "2024-01-02T23",
            "--bbox=-13.5,6.9,-10.1,10.0",
        ],
    )?;

    // Without credentials the upstream answers 401: the run fails naming provider, URL and
    // cause, and the token appears nowhere.
    let run = app
        .ingest(&json!({"dataset_id": "edh_anonymous", "start": "2024-01-01T00", "end": "2024-01-01T05"}))
        .await?;
    assert_eq!(run["status"], "failed", "{run}");
    let msg = run["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("era5_land_zarr")
            && msg.contains("localhost")
            && msg.contains("zarr.json")
            && msg.contains("401"),
        "{msg}"
    );
    let logs = app.full_logs();
    assert!(logs.contains("era5_land_zarr"), "the logs are read");
    assert!(
        !logs.contains("pat-0123456789"),
        "the token leaked into the logs"
    );

    // Hours the store does not hold yet are refused with the store's coverage.
    let run = app
        .ingest(&json!({"dataset_id": "edh_v3", "start": "2024-01-05T00", "end": "2024-01-05T05"}))
        .await?;
    assert_eq!(run["status"], "failed", "{run}");
    let msg = run["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("2024-01-02 23:00:00"), "{msg}");
    Ok(())
}
