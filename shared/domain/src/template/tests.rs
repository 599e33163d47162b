use super::*;

#[test]
fn aggregation_combines_fields_and_keeps_missing_cells_missing() {
    let nan = f32::NAN;
    let fields = vec![
        vec![1.0, 5.0, nan],
        vec![3.0, 2.0, 4.0],
        vec![2.0, 8.0, 1.0],
    ];
    let eq = |a: Vec<f32>, b: [f32; 3]| {
        a.iter()
            .zip(b)
            .all(|(x, y)| (x.is_nan() && y.is_nan()) || (x - y).abs() < 1e-6)
    };
    assert!(eq(AggregateMethod::Mean.combine(&fields), [2.0, 5.0, nan]));
    assert!(eq(AggregateMethod::Sum.combine(&fields), [6.0, 15.0, nan]));
    assert!(eq(AggregateMethod::Min.combine(&fields), [1.0, 2.0, nan]));
    assert!(eq(AggregateMethod::Max.combine(&fields), [3.0, 8.0, nan]));
}

#[test]
fn aggregation_needs_a_finer_source_and_no_deaccumulation() {
    let mut t = sample();
    t["aggregate"] = serde_json::json!({"from": "hourly", "method": "mean"});
    let ok: DatasetTemplate = serde_json::from_value(t.clone()).expect("parses");
    ok.validate().expect("daily from hourly");
    assert_eq!(ok.source_template().period_type, PeriodType::Hourly);
    assert!(ok.source_template().aggregate.is_none());
    t["aggregate"]["from"] = serde_json::json!("monthly");
    let coarse: DatasetTemplate = serde_json::from_value(t.clone()).expect("parses");
    assert_eq!(
        coarse.validate().expect_err("coarser").field,
        "aggregate.from"
    );
    t["period_type"] = serde_json::json!("monthly");
    t["aggregate"]["from"] = serde_json::json!("weekly");
    let weeks: DatasetTemplate = serde_json::from_value(t.clone()).expect("parses");
    assert_eq!(weeks.validate().expect_err("weeks").field, "aggregate.from");
    t["aggregate"]["method"] = serde_json::json!("median");
    assert!(serde_json::from_value::<DatasetTemplate>(t).is_err());
}

fn sample() -> serde_json::Value {
    serde_json::json!({
        "id": "sample_era5land_t2m_daily",
        "name": "2 m temperature, daily mean (ERA5-Land sample)",
        "variable": "t2m",
        "period_type": "daily",
        "units": "degC",
        "ingestion": {"provider": "file", "params": {"path": "samples/era5land_*.nc"}},
        "transforms": ["kelvin_to_celsius", {"scale_offset": {"scale": 2.0}}],
        "sync": {"kind": "temporal", "execution": "append"}
    })
}

#[test]
fn the_issue_example_parses_and_validates() {
    let t: DatasetTemplate = serde_json::from_value(sample()).expect("valid template");
    t.validate().expect("valid");
    assert_eq!(
        t.transforms,
        vec![
            Transform::KelvinToCelsius,
            Transform::ScaleOffset {
                scale: 2.0,
                offset: 0.0
            }
        ]
    );
}

#[test]
fn unknown_fields_and_transforms_are_rejected() {
    let mut v = sample();
    v["colour"] = "red".into();
    let e = serde_json::from_value::<DatasetTemplate>(v).expect_err("unknown field");
    assert!(e.to_string().contains("colour"), "{e}");

    let mut v = sample();
    v["transforms"] = serde_json::json!(["celsius"]);
    let e = serde_json::from_value::<DatasetTemplate>(v).expect_err("unknown transform");
    assert!(e.to_string().contains("unknown transform 'celsius'"), "{e}");
}

#[test]
fn validation_names_the_field() {
    let mut t: DatasetTemplate = serde_json::from_value(sample()).expect("valid");
    t.variable = "x".into();
    assert_eq!(t.validate().expect_err("coordinate name").field, "variable");
}

#[test]
fn deaccumulation_follows_the_worked_example() {
    // PROTOCOLS §6.2: A at 01..23 = 0, 0, 1, 1, …, 1, 4 and next 00:00 = 5 →
    // 0, 0, 1, 0, …, 0, 3, 1; the daily total is 5.
    let mut acc = vec![0.0_f32, 0.0];
    acc.extend(std::iter::repeat_n(1.0, 20));
    acc.extend([4.0, 5.0]);
    let mut hourly = Vec::new();
    for (i, a) in acc.iter().enumerate() {
        let mut v = [*a];
        let prev = (i > 0).then(|| [acc[i - 1]]);
        Transform::deaccumulate(&mut v, prev.as_ref().map(|p| &p[..]), true);
        hourly.push(v[0]);
    }
    assert_eq!(hourly[..3], [0.0, 0.0, 1.0]);
    assert_eq!(hourly[21..], [0.0, 3.0, 1.0]);
    assert!((hourly.iter().sum::<f32>() - 5.0).abs() < 1e-6);
    let mut v = [1.0_f32];
    Transform::deaccumulate(&mut v, Some(&[1.0000001]), true);
    assert_eq!(v[0], 0.0, "packing noise is clipped");
    let mut v = [1.0_f32];
    Transform::deaccumulate(&mut v, Some(&[2.0]), false);
    assert_eq!(v[0], -1.0, "signed quantities keep their sign");
}

#[test]
fn deaccumulate_must_come_first_on_hourly_data() {
    let mut v = sample();
    v["transforms"] = serde_json::json!(["metres_to_mm", "deaccumulate"]);
    let t: DatasetTemplate = serde_json::from_value(v).expect("parses");
    assert_eq!(t.validate().expect_err("order").field, "transforms[1]");
    let mut v = sample();
    v["transforms"] = serde_json::json!(["deaccumulate"]);
    let t: DatasetTemplate = serde_json::from_value(v).expect("parses");
    assert!(t.validate().expect_err("daily").message.contains("hourly"));
}

#[test]
fn transforms_keep_missing_values_missing() {
    let mut v = [273.15_f32, f32::NAN, -9999.0];
    Transform::KelvinToCelsius.apply(&mut v[..2]);
    Transform::MaskValues {
        values: vec![-9999.0],
    }
    .apply(&mut v);
    assert!(v[0].abs() < 1e-4 && v[1].is_nan() && v[2].is_nan());
}
