//! `climate-zonal-bench FIELD NX NY NT XMIN YMAX D FEATURES`: zonal means of every band of a
//! raw little-endian float32 cube (`NT` bands of `NY` × `NX`, row-major, north first, cells of
//! `D` degrees from the top-left corner (`XMIN`, `YMAX`)) for every feature of a GeoJSON
//! FeatureCollection, as the zonal-statistics process computes them: coverage once per
//! feature, then every band. Prints one JSON line: seconds spent (reading excluded), values
//! computed, a checksum of the means, and the peak resident memory.

use std::time::Instant;

use climate_compute::{MultiPolygon, Statistic, Summary, coverage};
use climate_domain::Crs;
use climate_domain::grid::{Axis, Grid};

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("argument {i}: see the usage at the top of main.rs"))
}

/// Peak resident set size of this process, in MiB (`VmHWM`).
fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (nx, ny, nt): (usize, usize, usize) = (arg(&args, 2), arg(&args, 3), arg(&args, 4));
    let (xmin, ymax, d): (f64, f64, f64) = (arg(&args, 5), arg(&args, 6), arg(&args, 7));
    let bytes = std::fs::read(&args[1]).expect("the field file");
    let field: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(
        field.len(),
        nx * ny * nt,
        "the field holds NT × NY × NX values"
    );
    let collection: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&args[8]).expect("features"))
            .expect("GeoJSON");
    let shapes: Vec<MultiPolygon> = collection["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| MultiPolygon::from_geojson(&f["geometry"]).expect("a polygon"))
        .collect();
    let grid = Grid {
        crs: Crs::WGS84,
        x: Axis {
            first: xmin + d / 2.0,
            step: d,
            len: nx,
        },
        y: Axis {
            first: ymax - d / 2.0,
            step: -d,
            len: ny,
        },
    };
    let started = Instant::now();
    let coverages: Vec<_> = shapes.iter().map(|s| coverage(s, &grid)).collect();
    let mut checksum = 0.0;
    let mut values = 0u64;
    for band in field.chunks_exact(nx * ny) {
        for c in &coverages {
            if let Some(m) = Summary::of(band, nx, (0, 0), c).value(Statistic::Mean) {
                checksum += m;
                values += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"seconds": seconds, "values": values, "checksum": checksum, "peak_mib": peak_mib()})
    );
}
