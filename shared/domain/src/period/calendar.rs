//! The linear period index per type: what makes counting and offsetting O(1) and correct
//! across month lengths and leap years.

use super::*;

/// Position of the period of type `kind` containing `t` on a linear scale
/// where consecutive periods differ by one. This is what makes counting and
/// offsetting O(1) and correct across month lengths and leap years.
pub(super) fn index_of_instant(kind: PeriodType, t: NaiveDateTime) -> i64 {
    let days = i64::from(t.date().num_days_from_ce());
    match kind {
        PeriodType::Hourly => days * 24 + i64::from(t.hour()),
        PeriodType::Daily => days,
        // Day 1 of the common era (0001-01-01, proleptic Gregorian) is a
        // Monday, so after shifting by one day every ISO week starts on a
        // multiple of 7.
        PeriodType::Weekly => (days - 1).div_euclid(7),
        PeriodType::Monthly => i64::from(t.year()) * 12 + i64::from(t.month0()),
        PeriodType::Yearly => i64::from(t.year()),
    }
}

/// Inverse of [`index_of_instant`]: the period at `index`, or `None` if it
/// is not representable by chrono.
pub(super) fn from_index(kind: PeriodType, index: i64) -> Option<Period> {
    let (date, hour) = match kind {
        PeriodType::Hourly => (
            date_from_ce(index.div_euclid(24))?,
            u32::try_from(index.rem_euclid(24)).ok()?,
        ),
        PeriodType::Daily => (date_from_ce(index)?, 0),
        PeriodType::Weekly => (date_from_ce(index.checked_mul(7)?.checked_add(1)?)?, 0),
        PeriodType::Monthly => {
            let year = i32::try_from(index.div_euclid(12)).ok()?;
            let month0 = u32::try_from(index.rem_euclid(12)).ok()?;
            (NaiveDate::from_ymd_opt(year, month0 + 1, 1)?, 0)
        }
        PeriodType::Yearly => (
            NaiveDate::from_ymd_opt(i32::try_from(index).ok()?, 1, 1)?,
            0,
        ),
    };
    Some(Period {
        kind,
        start: date.and_hms_opt(hour, 0, 0)?,
    })
}

/// The date `days` days into the common era (day 1 is 0001-01-01).
pub(super) fn date_from_ce(days: i64) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(i32::try_from(days).ok()?)
}
