use super::*;
use proptest::prelude::*;

fn dt(y: i32, m: u32, d: u32, h: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d)
        .and_then(|date| date.and_hms_opt(h, 0, 0))
        .expect("valid test datetime")
}

fn p(kind: PeriodType, s: &str) -> Period {
    Period::parse(kind, s).expect("valid test period")
}

fn err(kind: PeriodType, s: &str) -> String {
    Period::parse(kind, s)
        .expect_err("input should be rejected")
        .to_string()
}

fn canon(kind: PeriodType, s: &str) -> String {
    p(kind, s).canonical()
}

fn range(kind: PeriodType, a: &str, b: &str) -> PeriodRange {
    PeriodRange::new(p(kind, a), p(kind, b)).expect("valid test range")
}

fn canons(ranges: &[PeriodRange]) -> Vec<(String, String)> {
    ranges
        .iter()
        .map(|r| (r.start().canonical(), r.end().canonical()))
        .collect()
}

use PeriodType::{Daily, Hourly, Monthly, Weekly, Yearly};

#[test]
fn period_type_names() {
    for kind in PeriodType::ALL {
        assert_eq!(kind.as_str().parse::<PeriodType>(), Ok(kind));
        assert_eq!(kind.to_string(), kind.as_str());
        let json = serde_json::to_string(&kind).expect("serialize");
        assert_eq!(json, format!("\"{}\"", kind.as_str()));
        let back: PeriodType = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, kind);
    }
    assert_eq!("Daily".parse::<PeriodType>(), Ok(Daily));
    assert_eq!(
        "fortnightly"
            .parse::<PeriodType>()
            .map_err(|e| e.to_string()),
        Err(
            "unknown period type 'fortnightly': expected one of hourly, daily, weekly, \
                 monthly, yearly"
                .to_owned()
        )
    );
    assert_eq!(format!("{:>8}|", Daily), "   daily|");
    let chunks: Vec<u64> = PeriodType::ALL
        .iter()
        .map(|k| k.default_time_chunk())
        .collect();
    assert_eq!(chunks, [168, 30, 52, 12, 1]);
}

#[test]
fn canonical_round_trips() {
    let cases = [
        (Hourly, "2024-01-31T13", dt(2024, 1, 31, 13)),
        (Daily, "2024-01-31", dt(2024, 1, 31, 0)),
        (Weekly, "2024-W05", dt(2024, 1, 29, 0)),
        (Monthly, "2024-01", dt(2024, 1, 1, 0)),
        (Yearly, "2024", dt(2024, 1, 1, 0)),
    ];
    for (kind, text, start) in cases {
        let period = p(kind, text);
        assert_eq!(period.kind(), kind);
        assert_eq!(period.start(), start, "{kind} {text}");
        assert_eq!(period.canonical(), text);
        assert_eq!(period.to_string(), text);
        assert_eq!(
            serde_json::to_string(&period).expect("serialize"),
            format!("\"{text}\"")
        );
    }
    assert_eq!(canon(Daily, "  2024-01-31\n"), "2024-01-31");
    assert_eq!(canon(Yearly, "0001"), "0001");
    assert_eq!(canon(Yearly, "9999"), "9999");
}

#[test]
fn iso_datetimes_floor_to_utc_period() {
    assert_eq!(canon(Daily, "2024-01-31T23:30:00Z"), "2024-01-31");
    assert_eq!(canon(Daily, "2024-01-31T23:30:00z"), "2024-01-31");
    assert_eq!(canon(Daily, "2024-01-31T23:30:00+00:00"), "2024-01-31");
    assert_eq!(canon(Daily, "2024-01-31T23:30-01:00"), "2024-02-01");
    assert_eq!(canon(Daily, "2024-02-01T00:30+01:00"), "2024-01-31");
    assert_eq!(canon(Daily, "2024-02-01 00:30:00+0100"), "2024-01-31");
    assert_eq!(canon(Daily, "2024-01-31T13"), "2024-01-31");
    assert_eq!(
        canon(Hourly, "2024-01-31T13:45:10.123456Z"),
        "2024-01-31T13"
    );
    assert_eq!(canon(Hourly, "2024-01-31T13:45+05:30"), "2024-01-31T08");
    assert_eq!(canon(Hourly, "2024-01-31T00:15-00:30"), "2024-01-31T00");
    assert_eq!(canon(Hourly, "2024-03-01T00:00+01:00"), "2024-02-29T23");
    assert_eq!(canon(Weekly, "2024-02-04T23:59:59Z"), "2024-W05");
    assert_eq!(canon(Weekly, "2024-02-04T23:59:59-00:01"), "2024-W06");
    assert_eq!(canon(Monthly, "2024-03-01T00:00:00+01:00"), "2024-02");
    assert_eq!(canon(Monthly, "2024-02-29"), "2024-02");
    assert_eq!(canon(Yearly, "2025-01-01T00:30+01:00"), "2024");
    assert_eq!(canon(Yearly, "2024-07"), "2024");
}

#[test]
fn coarser_inputs_where_unambiguous() {
    assert_eq!(canon(Daily, "2024-03"), "2024-03-01");
    assert_eq!(canon(Daily, "2024"), "2024-01-01");
    assert_eq!(canon(Hourly, "2024-03-05"), "2024-03-05T00");
    assert_eq!(canon(Monthly, "2024"), "2024-01");
    assert_eq!(canon(Weekly, "2024-12-30"), "2025-W01");
    assert_eq!(canon(Weekly, "2024-02-01T10"), "2024-W05");

    for (kind, text) in [
        (Hourly, "2024-03"),
        (Hourly, "2024"),
        (Weekly, "2024-03"),
        (Weekly, "2024"),
        (Daily, "2024-W05"),
        (Monthly, "2024-W05"),
        (Yearly, "2024-W05"),
        (Weekly, "2024-W5"),
        (Weekly, "2024W05"),
        (Weekly, "2024-w05"),
        (Daily, "2024-1-31"),
        (Daily, "24-01-31"),
        (Daily, "20240131"),
        (Daily, "2024-01-31T"),
        (Daily, "2024-01-31T1"),
        (Daily, "2024-01-31T10:5"),
        (Daily, "2024-01-31T10:00:00."),
        (Daily, "2024-01-31T10:00:00+1"),
        (Daily, "2024-01-31T10:00:00+24:00"),
        (Daily, "2024-01-31T10:00:00+01:60"),
        (Daily, "2024-01-31T10:00:00 UTC"),
        (Daily, "2024-01-31Z"),
        (Daily, "2024-01-31T10Z"),
        (Daily, "2024-01-31T24:00"),
        (Daily, "2024-01-31T10:60"),
        (Daily, "2024-01-31T10:00:60"),
        (Daily, "２０２４-01-31"),
        (Daily, ""),
    ] {
        assert!(
            matches!(Period::parse(kind, text), Err(PeriodError::Invalid { .. })),
            "{kind} {text:?} should be invalid"
        );
    }
}

#[test]
fn weekly_iso_year_boundaries() {
    let week = |y, m, d| Period::containing(Weekly, dt(y, m, d, 12)).canonical();
    assert_eq!(week(2020, 12, 31), "2020-W53");
    assert_eq!(week(2021, 1, 1), "2020-W53");
    assert_eq!(week(2021, 1, 3), "2020-W53");
    assert_eq!(week(2021, 1, 4), "2021-W01");
    assert_eq!(week(2024, 12, 29), "2024-W52");
    assert_eq!(week(2024, 12, 30), "2025-W01");
    assert_eq!(week(2026, 1, 1), "2026-W01");
    assert_eq!(week(2027, 1, 1), "2026-W53");
    assert_eq!(week(1, 1, 1), "0001-W01");
    assert_eq!(week(9999, 12, 31), "9999-W52");

    assert_eq!(p(Weekly, "2026-W01").start(), dt(2025, 12, 29, 0));
    assert_eq!(p(Weekly, "2025-W01").start(), dt(2024, 12, 30, 0));
    assert_eq!(p(Weekly, "2020-W53").next().canonical(), "2021-W01");
    assert_eq!(p(Weekly, "2020-W53").end(), dt(2021, 1, 4, 0));
    assert_eq!(p(Weekly, "2021-W01").previous().canonical(), "2020-W53");
    assert_eq!(p(Weekly, "2024-W52").next().canonical(), "2025-W01");
    assert_eq!(
        p(Weekly, "2020-W01").periods_until(&p(Weekly, "2021-W01")),
        53
    );
    for text in ["2020-W53", "2026-W53", "0001-W01", "9999-W52"] {
        assert_eq!(canon(Weekly, text), text);
        assert_eq!(p(Weekly, text).start().weekday(), Weekday::Mon);
    }
    for text in ["2024-W54", "2021-W53", "2024-W53", "2024-W00", "2024-W99"] {
        assert!(
            matches!(
                Period::parse(Weekly, text),
                Err(PeriodError::Invalid { .. })
            ),
            "{text} should be invalid"
        );
    }
}

#[test]
fn calendar_arithmetic() {
    assert_eq!(p(Daily, "2024-02-28").next().canonical(), "2024-02-29");
    assert_eq!(p(Daily, "2024-02-29").next().canonical(), "2024-03-01");
    assert_eq!(p(Daily, "2023-02-28").next().canonical(), "2023-03-01");
    assert_eq!(p(Daily, "2024-03-01").previous().canonical(), "2024-02-29");
    assert_eq!(p(Daily, "2024-12-31").next().canonical(), "2025-01-01");
    assert_eq!(
        p(Hourly, "2024-02-29T23").next().canonical(),
        "2024-03-01T00"
    );
    assert_eq!(
        p(Hourly, "2024-01-01T00").previous().canonical(),
        "2023-12-31T23"
    );
    assert_eq!(p(Monthly, "2024-01").offset(1).canonical(), "2024-02");
    assert_eq!(p(Monthly, "2024-01").end(), dt(2024, 2, 1, 0));
    assert_eq!(p(Monthly, "2024-02").end(), dt(2024, 3, 1, 0));
    assert_eq!(p(Monthly, "2024-11").offset(3).canonical(), "2025-02");
    assert_eq!(p(Monthly, "2024-01").offset(-13).canonical(), "2022-12");
    assert_eq!(p(Yearly, "2024").end(), dt(2025, 1, 1, 0));
    assert_eq!(p(Yearly, "2024").offset(-24).canonical(), "2000");
    assert_eq!(p(Weekly, "2024-W05").offset(52).canonical(), "2025-W05");
    assert_eq!(p(Yearly, "9999").end(), dt(10000, 1, 1, 0));
    assert_eq!(p(Yearly, "9999").checked_offset(i64::MAX), None);
    assert_eq!(p(Daily, "2024-01-01").checked_offset(i64::MIN), None);
}

#[test]
fn periods_until_counts() {
    assert_eq!(
        p(Daily, "2024-01-01").periods_until(&p(Daily, "2024-01-03")),
        2
    );
    assert_eq!(
        p(Daily, "2024-01-03").periods_until(&p(Daily, "2024-01-01")),
        -2
    );
    assert_eq!(
        p(Daily, "2024-01-01").periods_until(&p(Daily, "2025-01-01")),
        366
    );
    assert_eq!(
        p(Monthly, "2023-11").periods_until(&p(Monthly, "2024-02")),
        3
    );
    assert_eq!(p(Yearly, "1990").periods_until(&p(Yearly, "2025")), 35);
    let days = NaiveDate::from_ymd_opt(2025, 1, 1)
        .expect("date")
        .signed_duration_since(NaiveDate::from_ymd_opt(1990, 1, 1).expect("date"))
        .num_days();
    let hours = p(Hourly, "1990-01-01T00").periods_until(&p(Hourly, "2025-01-01T00"));
    assert_eq!(hours, days * 24);
    // Other types are measured by the period of self's type containing
    // their start.
    assert_eq!(
        p(Daily, "2024-01-01").periods_until(&p(Monthly, "2024-02")),
        31
    );
}

#[test]
fn dhis2_codes() {
    let cases = [
        (Hourly, "2024-01-31T13", "2024013113"),
        (Daily, "2024-01-31", "20240131"),
        (Weekly, "2024-W05", "2024W5"),
        (Weekly, "2020-W53", "2020W53"),
        (Weekly, "2025-W01", "2025W1"),
        (Monthly, "2024-01", "202401"),
        (Yearly, "2024", "2024"),
    ];
    for (kind, text, code) in cases {
        let period = p(kind, text);
        assert_eq!(period.dhis2_code(), code);
        assert_eq!(Period::parse_dhis2(kind, code), Ok(period));
    }
    assert_eq!(
        Period::containing(Weekly, dt(2024, 12, 30, 0)).dhis2_code(),
        "2025W1"
    );

    for (kind, code) in [
        (Weekly, "2024W05"),
        (Weekly, "2024W0"),
        (Weekly, "2024W54"),
        (Weekly, "2024W"),
        (Weekly, "2024W123"),
        (Weekly, "2024-W5"),
        (Monthly, "2024-01"),
        (Monthly, "202413"),
        (Daily, "20240230"),
        (Daily, "2024013"),
        (Daily, " 20240131"),
        (Hourly, "2024013124"),
        (Yearly, "20240"),
    ] {
        assert!(
            matches!(
                Period::parse_dhis2(kind, code),
                Err(PeriodError::Invalid { .. })
            ),
            "{kind} {code:?} should be invalid"
        );
    }
    assert_eq!(
        Period::parse_dhis2(Weekly, "2024W05").map_err(|e| e.to_string()),
        Err(
            "'2024W05' is not a valid weekly period: expected a DHIS2 code YYYYWn \
                 without zero padding (e.g. 2024W5)"
                .to_owned()
        )
    );
    assert_eq!(
        Period::parse_dhis2(Yearly, "0000"),
        Err(PeriodError::OutOfRange)
    );
}

#[test]
fn error_messages() {
    assert_eq!(
        err(Daily, "2024-13-01"),
        "'2024-13-01' is not a valid daily period: expected YYYY-MM-DD, YYYY-MM, YYYY or \
             an ISO datetime"
    );
    assert_eq!(
        err(Daily, "2024-02-30"),
        "'2024-02-30' is not a valid daily period: expected YYYY-MM-DD, YYYY-MM, YYYY or \
             an ISO datetime"
    );
    assert_eq!(
        err(Monthly, "abc"),
        "'abc' is not a valid monthly period: expected YYYY-MM, YYYY or an ISO date/datetime"
    );
    assert_eq!(
        err(Weekly, "2024-W54"),
        "'2024-W54' is not a valid weekly period: expected YYYY-Www (e.g. 2024-W05) or an \
             ISO date/datetime"
    );
    assert_eq!(
        err(Hourly, "2024-01-31T25"),
        "'2024-01-31T25' is not a valid hourly period: expected YYYY-MM-DDTHH (e.g. \
             2024-01-31T13) or an ISO date/datetime"
    );
    assert_eq!(
        err(Yearly, "24"),
        "'24' is not a valid yearly period: expected YYYY or an ISO date/datetime"
    );
    assert_eq!(
        Period::parse(Daily, "2024-02-30"),
        Err(PeriodError::Invalid {
            input: "2024-02-30".to_owned(),
            kind: Daily,
            expected: "YYYY-MM-DD, YYYY-MM, YYYY or an ISO datetime",
        })
    );
    assert_eq!(
        err(Yearly, "0000"),
        "period is out of the supported range (years 1..=9999)"
    );
    for (kind, text) in [
        (Yearly, "0000"),
        (Daily, "0000-01-01"),
        (Weekly, "0000-W01"),
        (Daily, "9999-12-31T23:30-01:00"),
        (Hourly, "0001-01-01T00:30+01:00"),
    ] {
        assert_eq!(
            Period::parse(kind, text),
            Err(PeriodError::OutOfRange),
            "{text}"
        );
    }
    assert!(matches!(
        Period::parse(Yearly, "10000"),
        Err(PeriodError::Invalid { .. })
    ));
}

#[test]
fn range_construction_errors() {
    assert_eq!(
        PeriodRange::new(p(Daily, "2024-02-01"), p(Daily, "2024-01-01")),
        Err(PeriodError::StartAfterEnd {
            start: "2024-02-01".to_owned(),
            end: "2024-01-01".to_owned(),
        })
    );
    assert_eq!(
        PeriodRange::new(p(Daily, "2024-02-01"), p(Daily, "2024-01-01")).map_err(|e| e.to_string()),
        Err("start 2024-02-01 is after end 2024-01-01".to_owned())
    );
    assert_eq!(
        PeriodRange::new(p(Daily, "2024-01-01"), p(Monthly, "2024-02")).map_err(|e| e.to_string()),
        Err("periods of different types (daily and monthly) cannot form a range".to_owned())
    );
}

#[test]
fn range_operations() {
    let jan = range(Daily, "2024-01-01", "2024-01-31");
    assert_eq!(jan.kind(), Daily);
    assert_eq!(jan.len(), 31);
    assert!(!jan.is_empty());
    assert_eq!(jan.iter().count(), 31);
    assert_eq!(jan.iter().size_hint(), (31, Some(31)));
    assert_eq!(jan.iter().nth(30), Some(p(Daily, "2024-01-31")));
    assert_eq!(jan.iter().nth(31), None);
    assert_eq!(jan.iter().next_back(), Some(p(Daily, "2024-01-31")));
    assert_eq!(jan.into_iter().next_back(), Some(p(Daily, "2024-01-31")));
    let firsts: Vec<String> = (&jan).into_iter().take(2).map(|q| q.canonical()).collect();
    assert_eq!(firsts, ["2024-01-01", "2024-01-02"]);
    let mut both = jan.iter();
    assert_eq!(both.next(), Some(p(Daily, "2024-01-01")));
    assert_eq!(both.next_back(), Some(p(Daily, "2024-01-31")));
    assert_eq!(both.size_hint(), (29, Some(29)));

    assert!(jan.contains(&p(Daily, "2024-01-15")));
    assert!(!jan.contains(&p(Daily, "2024-02-01")));
    assert!(!jan.contains(&p(Monthly, "2024-01")));
    assert_eq!(jan.index_of(&p(Daily, "2024-01-01")), Some(0));
    assert_eq!(jan.index_of(&p(Daily, "2024-01-31")), Some(30));
    assert_eq!(jan.index_of(&p(Daily, "2023-12-31")), None);
    assert!(jan.contains_range(&range(Daily, "2024-01-10", "2024-01-31")));
    assert!(!jan.contains_range(&range(Daily, "2024-01-10", "2024-02-01")));

    let single = PeriodRange::single(p(Monthly, "2024-02"));
    assert_eq!(single.len(), 1);
    assert_eq!(single.start(), single.end());
    assert_eq!(single.iter().collect::<Vec<_>>(), [p(Monthly, "2024-02")]);

    assert_eq!(
        canons(&jan.chunks(10)),
        [
            ("2024-01-01".to_owned(), "2024-01-10".to_owned()),
            ("2024-01-11".to_owned(), "2024-01-20".to_owned()),
            ("2024-01-21".to_owned(), "2024-01-30".to_owned()),
            ("2024-01-31".to_owned(), "2024-01-31".to_owned()),
        ]
    );
    assert_eq!(jan.chunks(31), [jan]);
    assert_eq!(jan.chunks(u64::MAX), [jan]);
    assert_eq!(jan.chunks(0).len(), 31);

    // Storage chunks of 30 days starting 2023-12-25: blocks begin on
    // 2023-12-25 and 2024-01-24.
    let aligned = jan
        .chunks_aligned(&p(Daily, "2023-12-25"), 30)
        .expect("same kind");
    assert_eq!(
        canons(&aligned),
        [
            ("2024-01-01".to_owned(), "2024-01-23".to_owned()),
            ("2024-01-24".to_owned(), "2024-01-31".to_owned()),
        ]
    );
    let after = jan
        .chunks_aligned(&p(Daily, "2024-01-05"), 7)
        .expect("same kind");
    assert_eq!(after.first().map(PeriodRange::len), Some(4));
    assert_eq!(
        jan.chunks_aligned(&p(Monthly, "2024-01"), 7),
        Err(PeriodError::Mixed(Daily, Monthly))
    );

    let late = range(Daily, "2024-01-20", "2024-02-10");
    assert_eq!(
        jan.intersect(&late),
        Some(range(Daily, "2024-01-20", "2024-01-31"))
    );
    assert_eq!(late.intersect(&jan), jan.intersect(&late));
    assert_eq!(
        jan.intersect(&range(Daily, "2024-02-01", "2024-02-02")),
        None
    );
    assert_eq!(
        jan.intersect(&range(Daily, "2024-01-31", "2024-02-02")),
        Some(range(Daily, "2024-01-31", "2024-01-31"))
    );
    assert_eq!(
        jan.intersect(&PeriodRange::single(p(Monthly, "2024-01"))),
        None
    );

    let decades = range(Hourly, "1990-01-01T00", "2024-12-31T23");
    assert_eq!(decades.len(), 306_816);
    assert_eq!(decades.index_of(&p(Hourly, "2024-12-31T23")), Some(306_815));
}

fn kind_strategy() -> impl Strategy<Value = PeriodType> {
    prop::sample::select(PeriodType::ALL.to_vec())
}

/// Any whole second in years 1900..2100.
fn instant_strategy() -> impl Strategy<Value = NaiveDateTime> {
    let base = dt(1900, 1, 1, 0);
    let span = dt(2100, 1, 1, 0).signed_duration_since(base).num_seconds();
    (0..span).prop_map(move |s| base + TimeDelta::seconds(s))
}

fn period_strategy() -> impl Strategy<Value = Period> {
    (kind_strategy(), instant_strategy()).prop_map(|(kind, t)| Period::containing(kind, t))
}

proptest! {
    #[test]
    fn prop_canonical_round_trips(period in period_strategy()) {
        prop_assert_eq!(Period::parse(period.kind(), &period.canonical()), Ok(period));
    }

    #[test]
    fn prop_dhis2_round_trips(period in period_strategy()) {
        prop_assert_eq!(Period::parse_dhis2(period.kind(), &period.dhis2_code()), Ok(period));
    }

    #[test]
    fn prop_iso_input_floors(
        kind in kind_strategy(),
        t in instant_strategy(),
        offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59_i32),
    ) {
        let expected = Period::containing(kind, t);
        let z = t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        prop_assert_eq!(Period::parse(kind, &z), Ok(expected));
        let local = t + TimeDelta::minutes(i64::from(offset_minutes));
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let abs = offset_minutes.unsigned_abs();
        let text = format!(
            "{}{sign}{:02}:{:02}",
            local.format("%Y-%m-%dT%H:%M:%S"),
            abs / 60,
            abs % 60
        );
        prop_assert_eq!(Period::parse(kind, &text), Ok(expected), "{}", text);
    }

    #[test]
    fn prop_next_previous(period in period_strategy()) {
        prop_assert_eq!(period.next().previous(), period);
        prop_assert_eq!(period.previous().next(), period);
        prop_assert!(period.next() > period);
        prop_assert_eq!(period.end(), period.next().start());
    }

    #[test]
    fn prop_offset_inverse(period in period_strategy(), n in -2000_i64..2000) {
        let moved = period.offset(n);
        prop_assert_eq!(moved.kind(), period.kind());
        prop_assert_eq!(moved.offset(-n), period);
        prop_assert_eq!(period.periods_until(&moved), n);
        prop_assert_eq!(moved.periods_until(&period), -n);
    }

    #[test]
    fn prop_alignment_and_length(period in period_strategy()) {
        let start = period.start();
        let length = period.end().signed_duration_since(start);
        match period.kind() {
            PeriodType::Hourly => {
                prop_assert_eq!((start.minute(), start.second()), (0, 0));
                prop_assert_eq!(length, TimeDelta::hours(1));
            }
            PeriodType::Daily => {
                prop_assert_eq!(start.time(), NaiveTime::MIN);
                prop_assert_eq!(length, TimeDelta::days(1));
            }
            PeriodType::Weekly => {
                prop_assert_eq!(start.time(), NaiveTime::MIN);
                prop_assert_eq!(start.weekday(), Weekday::Mon);
                prop_assert_eq!(length, TimeDelta::days(7));
            }
            PeriodType::Monthly => {
                prop_assert_eq!(start.time(), NaiveTime::MIN);
                prop_assert_eq!(start.day(), 1);
                prop_assert!((28..=31).contains(&length.num_days()));
            }
            PeriodType::Yearly => {
                prop_assert_eq!(start.time(), NaiveTime::MIN);
                prop_assert_eq!(start.ordinal(), 1);
                prop_assert!((365..=366).contains(&length.num_days()));
            }
        }
    }

    #[test]
    fn prop_containing_bounds(period in period_strategy()) {
        let kind = period.kind();
        prop_assert_eq!(Period::containing(kind, period.start()), period);
        prop_assert_eq!(
            Period::containing(kind, period.end() - TimeDelta::seconds(1)),
            period
        );
        prop_assert_eq!(Period::containing(kind, period.end()), period.next());
    }

    #[test]
    fn prop_range_iter(start in period_strategy(), extra in 0_i64..400) {
        let r = PeriodRange::new(start, start.offset(extra)).expect("ordered");
        let items: Vec<Period> = r.iter().collect();
        prop_assert_eq!(r.len(), extra.unsigned_abs() + 1);
        prop_assert_eq!(u64::try_from(items.len()).ok(), Some(r.len()));
        prop_assert_eq!(items.first(), Some(&r.start()));
        prop_assert_eq!(items.last(), Some(&r.end()));
        for pair in items.windows(2) {
            prop_assert!(pair[0] < pair[1]);
            prop_assert_eq!(pair[0].next(), pair[1]);
        }
        for (i, item) in items.iter().enumerate() {
            prop_assert_eq!(r.index_of(item), u64::try_from(i).ok());
        }
        let mut reversed: Vec<Period> = r.iter().rev().collect();
        reversed.reverse();
        prop_assert_eq!(reversed, items);
    }

    #[test]
    fn prop_chunks_partition(start in period_strategy(), extra in 0_i64..400, n in 1_u64..60) {
        let r = PeriodRange::new(start, start.offset(extra)).expect("ordered");
        let chunks = r.chunks(n);
        prop_assert!(chunks.iter().all(|c| c.len() <= n));
        prop_assert!(chunks.iter().rev().skip(1).all(|c| c.len() == n));
        let joined: Vec<Period> = chunks.iter().flat_map(PeriodRange::iter).collect();
        prop_assert_eq!(joined, r.iter().collect::<Vec<_>>());
    }

    #[test]
    fn prop_chunks_aligned_partition(
        start in period_strategy(),
        extra in 0_i64..400,
        n in 1_u64..60,
        origin_shift in -500_i64..500,
    ) {
        let r = PeriodRange::new(start, start.offset(extra)).expect("ordered");
        let origin = start.offset(origin_shift);
        let chunks = r.chunks_aligned(&origin, n).expect("same kind");
        let block = |q: &Period| origin.periods_until(q).div_euclid(i64::try_from(n).expect("small"));
        for c in &chunks {
            prop_assert_eq!(block(&c.start()), block(&c.end()));
            prop_assert!(c.len() <= n);
        }
        for pair in chunks.windows(2) {
            prop_assert_eq!(block(&pair[0].end()) + 1, block(&pair[1].start()));
        }
        let joined: Vec<Period> = chunks.iter().flat_map(PeriodRange::iter).collect();
        prop_assert_eq!(joined, r.iter().collect::<Vec<_>>());
    }

    #[test]
    fn prop_intersect(
        a in period_strategy(),
        a_len in 0_i64..200,
        shift in -300_i64..300,
        b_len in 0_i64..200,
    ) {
        let b = a.offset(shift);
        let ra = PeriodRange::new(a, a.offset(a_len)).expect("ordered");
        let rb = PeriodRange::new(b, b.offset(b_len)).expect("ordered");
        let both = ra.intersect(&rb);
        prop_assert_eq!(both, rb.intersect(&ra));
        let expected: Vec<Period> = ra.iter().filter(|q| rb.contains(q)).collect();
        let got: Vec<Period> = both.iter().flat_map(PeriodRange::iter).collect();
        prop_assert_eq!(got, expected);
        if let Some(i) = both {
            prop_assert!(ra.contains_range(&i) && rb.contains_range(&i));
        }
    }
}
