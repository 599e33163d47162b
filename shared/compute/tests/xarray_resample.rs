//! Temporal aggregation against xarray: daily fields grouped into ISO weeks, months, quarters
//! and years and combined with mean, sum, min and max equal xarray's `resample` (skipna; sums
//! with `min_count=1`) for every complete period, across a year boundary and a February.

use std::collections::BTreeMap;

use climate_compute::{TargetPeriodType, TemporalMethod, combine, group};
use climate_domain::{Period, PeriodType};

const NT: usize = 160;
const NY: usize = 3;
const NX: usize = 4;
const START: &str = "2024-11-25";

/// Deterministic daily fields; one cell never has data, another has gaps.
fn cube() -> Vec<f32> {
    let mut v = Vec::with_capacity(NT * NY * NX);
    for t in 0..NT {
        for k in 0..NY * NX {
            v.push(match k {
                0 => f32::NAN,
                1 if t % 5 == 0 => f32::NAN,
                _ => ((t * 31 + k * 17) % 23) as f32 * 0.75 - 4.0,
            });
        }
    }
    v
}

#[test]
fn aggregates_equal_xarray_resample_for_every_complete_period() {
    let data = cube();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cube.f32");
    std::fs::write(
        &path,
        data.iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .expect("write");
    let out = climate_tests::python(
        "xarray_resample.py",
        &[
            &path.display().to_string(),
            &NT.to_string(),
            &NY.to_string(),
            &NX.to_string(),
            START,
        ],
    )
    .expect("xarray runs");
    let reference: BTreeMap<String, Vec<Option<f64>>> = serde_json::from_str(&out).expect("JSON");

    let first = Period::parse(PeriodType::Daily, START).expect("a day");
    let days: Vec<Period> = (0..NT as i64).map(|i| first.offset(i)).collect();
    let field = |t: usize| &data[t * NY * NX..(t + 1) * NY * NX];
    let mut compared = 0;
    for (target, name) in [
        (TargetPeriodType::Weekly, "weekly"),
        (TargetPeriodType::Monthly, "monthly"),
        (TargetPeriodType::Quarterly, "quarterly"),
        (TargetPeriodType::Yearly, "yearly"),
    ] {
        let grouping = group(&days, target).expect("days nest in every target");
        for (method, mname) in [
            (TemporalMethod::Mean, "mean"),
            (TemporalMethod::Sum, "sum"),
            (TemporalMethod::Min, "min"),
            (TemporalMethod::Max, "max"),
        ] {
            for (period, members) in &grouping.complete {
                let fields: Vec<&[f32]> = members.iter().map(|&t| field(t)).collect();
                let ours = combine(&fields, method);
                let key = format!("{name}|{mname}|{}", period.start);
                let theirs = reference
                    .get(&key)
                    .unwrap_or_else(|| panic!("xarray has {key}"));
                for (k, (a, b)) in ours.iter().zip(theirs).enumerate() {
                    match b {
                        None => assert!(a.is_nan(), "{key} cell {k}: ours {a}, xarray no data"),
                        Some(b) => assert!(
                            (f64::from(*a) - b).abs() <= 1e-5 * b.abs().max(1.0),
                            "{key} cell {k}: ours {a}, xarray {b}"
                        ),
                    }
                }
                compared += 1;
            }
        }
        // The edges: the first week starts on a Monday (complete), the last month and quarter
        // are cut by the end of the series (dropped), 2024 and 2025 are both partial years.
        match target {
            TargetPeriodType::Weekly => assert!(grouping.dropped.len() <= 1),
            TargetPeriodType::Yearly => assert_eq!(grouping.complete.len(), 0),
            _ => assert!(!grouping.dropped.is_empty()),
        }
    }
    assert!(compared > 80, "compared {compared} period aggregates");
}
