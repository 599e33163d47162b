use super::*;
use serde_json::json;

fn axis(first: f64, step: f64, len: usize) -> Axis {
    Axis { first, step, len }
}

#[test]
fn fill_value_attributes_are_read_as_numbers_or_xarray_base64() {
    assert_eq!(attribute_number(&json!(-9999)), Some(-9999.0));
    // What xarray writes for a float32 variable's NetCDF default fill in a v3 store.
    assert_eq!(
        attribute_number(&json!("AAAAAAAAnkc=")),
        Some(9.969_209_968_386_869e36)
    );
    assert_eq!(
        attribute_number(&json!("AAAgQQ==")),
        Some(10.0),
        "float32 bytes"
    );
    assert_eq!(attribute_number(&json!("NaN")), None);
    assert_eq!(attribute_number(&json!(null)), None);
}

#[test]
fn a_global_0_360_axis_is_rolled_onto_minus_180_180() {
    let source = axis(0.0, 0.1, 3600);
    let m = LonMap::new(&source).expect("global");
    assert_eq!(m.shift, 1800);
    assert!((m.axis.first + 180.0).abs() < 1e-9, "{:?}", m.axis);
    assert!((m.axis.centre(3599) - 179.9).abs() < 1e-9);
    // Ghana-like box across Greenwich: columns from the end and the start of the source.
    let cols = m.axis.clip(-3.25, 1.2).expect("inside");
    let ranges = m.source_ranges(cols.clone());
    assert_eq!(ranges, vec![3568..3600, 0..13]);
    assert_eq!(
        ranges.iter().map(ExactSizeIterator::len).sum::<usize>(),
        cols.len()
    );
    // Sierra Leone: one range near the end.
    let sle = m.axis.clip(-13.5, -10.1).expect("inside");
    assert_eq!(m.source_ranges(sle), vec![3465..3500]);
}

#[test]
fn regional_axes_are_shifted_or_kept_and_straddling_ones_refused() {
    let east = axis(346.5, 0.1, 35);
    let m = LonMap::new(&east).expect("east of 180");
    assert!((m.axis.first + 13.5).abs() < 1e-9);
    assert_eq!(m.source_ranges(0..35), vec![0..35]);
    let west = axis(-13.5, 0.1, 35);
    assert_eq!(LonMap::new(&west).expect("kept").axis, west);
    let pacific = axis(170.0, 0.5, 41);
    assert!(LonMap::new(&pacific).is_err());
}
