//! Any input to the period parser: no panic; an accepted period's canonical form and DHIS2
//! code parse back to the same period, and a range of two accepted periods is valid iff ordered.
#![no_main]

use climate_domain::{Period, PeriodRange, PeriodType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let (a, b) = input.split_once('|').unwrap_or((input, input));
    for kind in PeriodType::ALL {
        let Ok(p) = Period::parse(kind, a) else {
            continue;
        };
        let canonical = p.canonical();
        assert_eq!(
            Period::parse(kind, &canonical).ok(),
            Some(p),
            "canonical {canonical}"
        );
        let code = p.dhis2_code();
        assert_eq!(
            Period::parse_dhis2(kind, &code).ok(),
            Some(p),
            "DHIS2 {code}"
        );
        if let Ok(q) = Period::parse(kind, b) {
            assert_eq!(PeriodRange::new(p, q).is_ok(), p <= q, "{p:?} .. {q:?}");
        }
    }
});
