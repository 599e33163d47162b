//! climate-compute against exactextract (the Python package, 0.3.0): every statistic for the 13
//! districts of Sierra Leone and for features built to be awkward (holes, a multipolygon, a
//! feature smaller than a cell, one partly outside the grid, one over no data, one missing the
//! grid), on a geographic grid with CHIRPS' 0.05° layout and on a projected (UTM 29N) grid,
//! agree within 1e-6 relative.

use std::collections::BTreeMap;
use std::path::Path;

use climate_compute::{MultiPolygon, Statistic, Summary, coverage};
use climate_domain::Crs;
use climate_domain::grid::{Axis, Grid};
use serde_json::{Value, json};

/// A north-up grid: `nx` × `ny` cells of `dx` × `dy` from its top-left corner.
struct Layout {
    crs: &'static str,
    xmin: f64,
    ymax: f64,
    dx: f64,
    dy: f64,
    nx: usize,
    ny: usize,
}

impl Layout {
    fn grid(&self) -> Grid {
        Grid {
            crs: Crs::new(self.crs).expect("a CRS"),
            x: Axis {
                first: self.xmin + self.dx / 2.0,
                step: self.dx,
                len: self.nx,
            },
            y: Axis {
                first: self.ymax - self.dy / 2.0,
                step: -self.dy,
                len: self.ny,
            },
        }
    }

    /// Deterministic values in steps of 0.5 (so that majorities and medians have ties to
    /// break), without data west of `nan_west` and in the box `nan_box` (in the grid's CRS).
    fn field(&self, nan_west: f64, nan_box: [f64; 4]) -> Vec<f32> {
        let mut v = Vec::with_capacity(self.nx * self.ny);
        for i in 0..self.ny {
            for j in 0..self.nx {
                let (x, y) = (
                    self.xmin + (j as f64 + 0.5) * self.dx,
                    self.ymax - (i as f64 + 0.5) * self.dy,
                );
                let [bx0, by0, bx1, by1] = nan_box;
                let no_data = x < nan_west || (x > bx0 && x < bx1 && y > by0 && y < by1);
                v.push(if no_data {
                    f32::NAN
                } else {
                    ((i * 7919 + j * 104_729) % 97) as f32 * 0.5 - 10.0
                });
            }
        }
        v
    }
}

fn polygon(rings: &[&[[f64; 2]]]) -> Value {
    json!({"type": "Polygon", "coordinates": rings})
}

fn rect(x0: f64, y0: f64, x1: f64, y1: f64) -> Vec<[f64; 2]> {
    vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
}

/// The districts and the awkward features, as one WGS84 FeatureCollection.
fn features() -> Value {
    let districts: Value = serde_json::from_str(
        &std::fs::read_to_string(
            climate_tests::fixtures_dir().join("sierra_leone_districts.geojson"),
        )
        .expect("the districts fixture"),
    )
    .expect("GeoJSON");
    let mut all: Vec<Value> = districts["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| json!({"type": "Feature", "id": f["id"], "geometry": f["geometry"]}))
        .collect();
    // Off the grid's lines: on a line, exactextract keeps slivers of rounding noise (1e-14 of
    // a cell) as cells, which moves its weighted median; we drop such noise.
    let outer = rect(-12.013, 8.007, -11.021, 8.993);
    let hole = rect(-11.712, 8.304, -11.296, 8.711);
    let awkward = [
        ("holes", polygon(&[&outer, &hole])),
        (
            "multi",
            json!({"type": "MultiPolygon", "coordinates": [
                [[[-12.51, 9.02], [-12.12, 9.07], [-12.33, 9.48], [-12.51, 9.02]]],
                [[[-10.92, 7.61], [-10.47, 7.58], [-10.71, 8.13], [-10.92, 7.61]]]
            ]}),
        ),
        (
            "sub_cell",
            polygon(&[&rect(-11.2213, 8.6104, -11.2041, 8.6177)]),
        ),
        (
            "partly_outside",
            polygon(&[&rect(-14.2, 8.512, -13.117, 9.287)]),
        ),
        ("no_data", polygon(&[&rect(-10.45, 9.55, -10.2, 9.8)])),
        ("outside", polygon(&[&rect(1.0, 1.0, 2.0, 2.0)])),
    ];
    for (id, geometry) in awkward {
        all.push(json!({"type": "Feature", "id": id, "geometry": geometry}));
    }
    json!({"type": "FeatureCollection", "features": all})
}

/// The features' shapes in `crs` (projected with PROJ when it is not WGS84).
fn shapes(collection: &Value, crs: &str) -> Vec<(String, MultiPolygon)> {
    collection["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| {
            let shape = MultiPolygon::from_geojson(&f["geometry"]).expect("valid geometry");
            let shape = if crs == "EPSG:4326" {
                shape
            } else {
                let mut points: Vec<(f64, f64)> = shape
                    .rings()
                    .flat_map(|(r, _)| r.points().iter().map(|p| (p[0], p[1])))
                    .collect();
                climate_geodata::reproject::from_wgs84(crs, &mut points).expect("PROJ");
                let mut projected = points.into_iter();
                shape
                    .map(|_| {
                        let (x, y) = projected.next().expect("one point each");
                        [x, y]
                    })
                    .expect("projected")
            };
            (f["id"].as_str().expect("an id").to_owned(), shape)
        })
        .collect()
}

fn compare(layout: &Layout, nan_west: f64, nan_box: [f64; 4]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let field = layout.field(nan_west, nan_box);
    let field_path = dir.path().join("field.f32");
    std::fs::write(
        &field_path,
        field
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .expect("write the field");
    let collection = features();
    let features_path = dir.path().join("features.geojson");
    std::fs::write(&features_path, collection.to_string()).expect("write the features");

    let reference = exactextract(layout, &field_path, &features_path);
    let grid = layout.grid();
    let mut checked = 0;
    for (id, shape) in shapes(&collection, layout.crs) {
        let summary = Summary::of(&field, layout.nx, (0, 0), &coverage(&shape, &grid));
        let theirs = &reference[&id];
        for stat in Statistic::ALL {
            let ours = summary.value(stat);
            let expected = theirs[stat.as_str()].as_f64();
            match (ours, expected) {
                (Some(a), Some(b)) => assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                    "{} {id} {stat}: ours {a}, exactextract {b}",
                    layout.crs
                ),
                // exactextract gives a feature over no data a count and a sum of 0; we give it
                // no value.
                (None, Some(b)) if matches!(stat, Statistic::Count | Statistic::Sum) => {
                    assert_eq!(b, 0.0, "{id} {stat}");
                }
                (None, None) => {}
                (a, b) => panic!("{} {id} {stat}: ours {a:?}, exactextract {b:?}", layout.crs),
            }
            checked += 1;
        }
        if id == "no_data" || id == "outside" {
            assert!(summary.is_empty(), "{id} has no value");
        } else {
            assert!(!summary.is_empty(), "{id} has values");
        }
    }
    assert_eq!(
        checked,
        19 * Statistic::ALL.len(),
        "13 districts and 6 awkward features"
    );
}

fn exactextract(layout: &Layout, field: &Path, features: &Path) -> BTreeMap<String, Value> {
    let mut args = vec![
        field.display().to_string(),
        layout.nx.to_string(),
        layout.ny.to_string(),
        layout.xmin.to_string(),
        layout.ymax.to_string(),
        layout.dx.to_string(),
        layout.dy.to_string(),
        features.display().to_string(),
    ];
    if layout.crs != "EPSG:4326" {
        args.extend(["--crs".to_owned(), layout.crs.to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = climate_tests::python("exactextract_zonal.py", &args).expect("exactextract runs");
    let rows: Vec<Value> = serde_json::from_str(&out).expect("JSON rows");
    rows.into_iter()
        .map(|r| (r["id"].as_str().expect("id").to_owned(), r))
        .collect()
}

#[test]
fn statistics_equal_exactextract_on_a_geographic_grid() {
    // CHIRPS' 0.05° layout over Sierra Leone; no data at sea west of 13.2°W and in a box in
    // the north-east.
    let layout = Layout {
        crs: "EPSG:4326",
        xmin: -13.5,
        ymax: 10.1,
        dx: 0.05,
        dy: 0.05,
        nx: 70,
        ny: 66,
    };
    compare(&layout, -13.2, [-10.5, 9.5, -10.1, 9.9]);
}

#[test]
fn statistics_equal_exactextract_on_a_projected_grid() {
    // UTM 29N, 5 km cells; the features are projected with PROJ here and with pyproj there.
    let layout = Layout {
        crs: "EPSG:32629",
        xmin: 0.0,
        ymax: 1_120_000.0,
        dx: 5_000.0,
        dy: 5_000.0,
        nx: 76,
        ny: 74,
    };
    let mut corners = vec![(-10.45, 9.55), (-10.2, 9.8)];
    climate_geodata::reproject::from_wgs84("EPSG:32629", &mut corners).expect("PROJ");
    let nan_box = [
        corners[0].0 - 10_000.0,
        corners[0].1 - 10_000.0,
        corners[1].0 + 10_000.0,
        corners[1].1 + 10_000.0,
    ];
    let mut west = vec![(-13.2, 8.5)];
    climate_geodata::reproject::from_wgs84("EPSG:32629", &mut west).expect("PROJ");
    compare(&layout, west[0].0, nan_box);
}
