//! Time periods: the hourly, daily, weekly, monthly and yearly buckets that
//! datasets are aggregated into and that users ask for.
//!
//! A [`Period`] is one bucket of a [`PeriodType`], identified by the UTC
//! instant it starts at. This module parses the forms users type
//! ([`Period::parse`]), renders the canonical and DHIS2 codes
//! ([`Period::canonical`], [`Period::dhis2_code`]), does calendar-correct
//! arithmetic (ISO weeks, month lengths, leap years) and models inclusive
//! ranges of periods ([`PeriodRange`]).
//!
//! All arithmetic goes through a linear "period index" per type (hours, days,
//! weeks or months since the start of the common era), so counting and
//! offsetting are O(1) even for decades of hourly data.
//!
//! The module is pure: no I/O, no clock reads.

use std::cmp::Ordering;
use std::fmt;
use std::iter::FusedIterator;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Weekday};
use serde::{Deserialize, Serialize, Serializer};

mod calendar;
mod parse;
mod range;
use calendar::*;
use parse::*;
pub use range::*;
#[cfg(test)]
mod tests;

/// Smallest calendar year accepted when parsing.
const MIN_YEAR: i32 = 1;
/// Largest calendar year accepted when parsing; four-digit years keep the
/// canonical codes fixed-width and sortable.
const MAX_YEAR: i32 = 9999;

/// Message for `expect`s that can only fire when arithmetic leaves chrono's
/// representable range (roughly ±262,000 years), far beyond any real data.
const BEYOND_CHRONO: &str = "period arithmetic left chrono's supported date range";

/// The granularity of a [`Period`].
///
/// The derived ordering goes from finest (`Hourly`) to coarsest (`Yearly`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeriodType {
    /// One clock hour, `YYYY-MM-DDTHH`.
    Hourly,
    /// One calendar day, `YYYY-MM-DD`.
    Daily,
    /// One ISO 8601 week (Monday to Sunday), `YYYY-Www`.
    Weekly,
    /// One calendar month, `YYYY-MM`.
    Monthly,
    /// One calendar year, `YYYY`.
    Yearly,
}

impl PeriodType {
    /// Every period type, finest first.
    pub const ALL: [PeriodType; 5] = [
        PeriodType::Hourly,
        PeriodType::Daily,
        PeriodType::Weekly,
        PeriodType::Monthly,
        PeriodType::Yearly,
    ];

    /// The lowercase name used in configuration, URLs and serde
    /// (`"hourly"`, `"daily"`, `"weekly"`, `"monthly"`, `"yearly"`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            PeriodType::Hourly => "hourly",
            PeriodType::Daily => "daily",
            PeriodType::Weekly => "weekly",
            PeriodType::Monthly => "monthly",
            PeriodType::Yearly => "yearly",
        }
    }

    /// Default number of periods per storage chunk along the time axis:
    /// one week of hours, about a month of days, about a year of weeks, a
    /// year of months and a single year.
    #[must_use]
    pub const fn default_time_chunk(self) -> u64 {
        match self {
            PeriodType::Hourly => 168,
            PeriodType::Daily => 30,
            PeriodType::Weekly => 52,
            PeriodType::Monthly => 12,
            PeriodType::Yearly => 1,
        }
    }

    /// What [`Period::parse`] accepts, for error messages.
    const fn expected(self) -> &'static str {
        match self {
            PeriodType::Hourly => "YYYY-MM-DDTHH (e.g. 2024-01-31T13) or an ISO date/datetime",
            PeriodType::Daily => "YYYY-MM-DD, YYYY-MM, YYYY or an ISO datetime",
            PeriodType::Weekly => "YYYY-Www (e.g. 2024-W05) or an ISO date/datetime",
            PeriodType::Monthly => "YYYY-MM, YYYY or an ISO date/datetime",
            PeriodType::Yearly => "YYYY or an ISO date/datetime",
        }
    }

    /// What [`Period::parse_dhis2`] accepts, for error messages.
    const fn expected_dhis2(self) -> &'static str {
        match self {
            PeriodType::Hourly => "a code YYYYMMDDHH (e.g. 2024013113)",
            PeriodType::Daily => "a DHIS2 code YYYYMMDD (e.g. 20240131)",
            PeriodType::Weekly => "a DHIS2 code YYYYWn without zero padding (e.g. 2024W5)",
            PeriodType::Monthly => "a DHIS2 code YYYYMM (e.g. 202401)",
            PeriodType::Yearly => "a DHIS2 code YYYY (e.g. 2024)",
        }
    }
}

impl FromStr for PeriodType {
    type Err = PeriodError;

    /// Parses the lowercase name; ASCII case is ignored because these names
    /// are typed by people on command lines and in query strings.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| PeriodError::UnknownPeriodType(s.to_owned()))
    }
}

impl fmt::Display for PeriodType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so that width/alignment flags work in tables and logs.
        f.pad(self.as_str())
    }
}

/// Why a period, period type or range could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// The period type name is not one of the five known ones.
    #[error("unknown period type '{0}': expected one of hourly, daily, weekly, monthly, yearly")]
    UnknownPeriodType(String),
    /// The text is not a valid period of the requested type (bad syntax,
    /// impossible date such as `2024-02-30`, or a week the year lacks).
    #[error("'{input}' is not a valid {kind} period: expected {expected}")]
    Invalid {
        /// The text as given by the caller.
        input: String,
        /// The period type it was parsed as.
        kind: PeriodType,
        /// Human-readable description of the accepted forms.
        expected: &'static str,
    },
    /// A range's start lies after its end (both in canonical form).
    #[error("start {start} is after end {end}")]
    StartAfterEnd {
        /// Canonical form of the start period.
        start: String,
        /// Canonical form of the end period.
        end: String,
    },
    /// Two periods of different types were combined into one range.
    #[error("periods of different types ({0} and {1}) cannot form a range")]
    Mixed(PeriodType, PeriodType),
    /// The period lies outside years 1..=9999.
    #[error("period is out of the supported range (years 1..=9999)")]
    OutOfRange,
}

/// One period of a given type, identified by its start instant (UTC).
///
/// The start is always aligned to the type: the top of an hour, midnight, the
/// ISO Monday of a week, the first of a month or January 1st. Periods order by
/// start instant, then by type.
///
/// Serializes as its [canonical](Period::canonical) string. There is no
/// `Deserialize` impl because the string alone does not say which type it is
/// (`2024-01-31` is valid daily, weekly, monthly and yearly input, naming a
/// different period each time); use [`Period::parse`] with the known type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    kind: PeriodType,
    start: NaiveDateTime,
}

impl Period {
    /// Parses user input for a period of type `kind`.
    ///
    /// Surrounding whitespace is ignored. Accepted forms:
    ///
    /// - The canonical form of `kind`: hourly `YYYY-MM-DDTHH`, daily
    ///   `YYYY-MM-DD`, weekly `YYYY-Www` (ISO week, two-digit week, e.g.
    ///   `2024-W05`), monthly `YYYY-MM`, yearly `YYYY`.
    /// - ISO dates and datetimes, for every type: `YYYY-MM-DD`,
    ///   `YYYY-MM-DDTHH`, `YYYY-MM-DDTHH:MM` and `YYYY-MM-DDTHH:MM:SS[.fff]`,
    ///   the datetimes optionally suffixed with `Z` or a `±HH:MM` / `±HHMM`
    ///   offset (converted to UTC). A space may replace the `T`. The instant
    ///   is floored to the period containing it, so `2024-01-31T23:30-01:00`
    ///   is daily `2024-02-01`.
    /// - Coarser forms where their meaning is unambiguous: for daily, `YYYY-MM`
    ///   is the first day of that month and `YYYY` the first day of the year;
    ///   for monthly, `YYYY` is January; for yearly, `YYYY-MM` is that month's
    ///   year. Hourly accepts `YYYY-MM-DD` as hour 00 (as above) but not
    ///   `YYYY-MM` or `YYYY`.
    ///
    /// Week notation is only accepted for weekly periods, because a week can
    /// straddle a month or year boundary. `YYYY-Ww` (one-digit week) and
    /// `YYYYWww` (no dash) are rejected; see [`Period::parse_dhis2`] for the
    /// DHIS2 form.
    ///
    /// # Errors
    ///
    /// - [`PeriodError::Invalid`] if the text matches none of the forms above,
    ///   names an impossible date or time (`2024-13-01`, `2024-02-30`) or a
    ///   week the ISO year does not have (`2024-W54`, `2021-W53`).
    /// - [`PeriodError::OutOfRange`] if the year written, or the year of the
    ///   resulting period after UTC conversion, is outside 1..=9999.
    pub fn parse(kind: PeriodType, input: &str) -> Result<Period, PeriodError> {
        let invalid = || PeriodError::Invalid {
            input: input.to_owned(),
            kind,
            expected: kind.expected(),
        };
        let raw = lex_iso(input.trim()).ok_or_else(invalid)?;
        resolve(kind, raw, invalid)
    }

    /// Parses a code produced by [`Period::dhis2_code`] for a period of type
    /// `kind`: hourly `YYYYMMDDHH`, daily `YYYYMMDD`, weekly `YYYYWn` (week
    /// number without zero padding), monthly `YYYYMM`, yearly `YYYY`.
    ///
    /// Codes are identifiers, so nothing else is accepted: no whitespace, no
    /// zero-padded weeks, so that every period has exactly one code.
    ///
    /// # Errors
    ///
    /// - [`PeriodError::Invalid`] if `code` is not of that shape or names an
    ///   impossible date, hour or week.
    /// - [`PeriodError::OutOfRange`] if the year is outside 1..=9999.
    pub fn parse_dhis2(kind: PeriodType, code: &str) -> Result<Period, PeriodError> {
        let invalid = || PeriodError::Invalid {
            input: code.to_owned(),
            kind,
            expected: kind.expected_dhis2(),
        };
        let raw = lex_dhis2(kind, code).ok_or_else(invalid)?;
        resolve(kind, raw, invalid)
    }

    /// The period of type `kind` containing instant `t` (interpreted as UTC).
    ///
    /// # Panics
    ///
    /// Only for a weekly period whose Monday falls before chrono's earliest
    /// representable date (about 262,000 BCE).
    #[must_use]
    pub fn containing(kind: PeriodType, t: NaiveDateTime) -> Period {
        from_index(kind, index_of_instant(kind, t)).expect(BEYOND_CHRONO)
    }

    /// The type of this period.
    #[must_use]
    pub const fn kind(&self) -> PeriodType {
        self.kind
    }

    /// The first instant of the period (inclusive, UTC).
    #[must_use]
    pub const fn start(&self) -> NaiveDateTime {
        self.start
    }

    /// The first instant after the period (exclusive, UTC); equal to
    /// `self.next().start()`.
    ///
    /// # Panics
    ///
    /// If the next period is beyond chrono's representable range.
    #[must_use]
    pub fn end(&self) -> NaiveDateTime {
        self.next().start
    }

    /// The following period of the same type.
    ///
    /// # Panics
    ///
    /// If the result is beyond chrono's representable range.
    #[must_use]
    pub fn next(&self) -> Period {
        self.offset(1)
    }

    /// The preceding period of the same type.
    ///
    /// # Panics
    ///
    /// If the result is beyond chrono's representable range.
    #[must_use]
    pub fn previous(&self) -> Period {
        self.offset(-1)
    }

    /// Adds `n` periods (`n` may be negative).
    ///
    /// # Panics
    ///
    /// If the result is beyond chrono's representable range (about ±262,000
    /// years); parsed periods are within years 1..=9999, so this only happens
    /// with absurd offsets. Use [`Period::checked_offset`] to avoid it.
    #[must_use]
    pub fn offset(&self, n: i64) -> Period {
        self.checked_offset(n).expect(BEYOND_CHRONO)
    }

    /// Adds `n` periods, or returns `None` if the result would be beyond
    /// chrono's representable range.
    #[must_use]
    pub fn checked_offset(&self, n: i64) -> Option<Period> {
        from_index(self.kind, self.index().checked_add(n)?)
    }

    /// Number of whole periods from `self` to `other` (`other - self`): daily
    /// 2024-01-01 to 2024-01-03 is 2, the reverse is -2.
    ///
    /// Computed arithmetically in O(1). If `other` has a different type, it
    /// is measured by the period of `self`'s type containing its start.
    #[must_use]
    pub fn periods_until(&self, other: &Period) -> i64 {
        index_of_instant(self.kind, other.start) - self.index()
    }

    /// The canonical string: hourly `2024-01-31T13`, daily `2024-01-31`,
    /// weekly `2024-W05` (ISO week-year, so 2021-01-01 is `2020-W53` and
    /// 2024-12-30 is `2025-W01`), monthly `2024-01`, yearly `2024`.
    ///
    /// Same as the `Display` output; [`Period::parse`] round-trips it.
    #[must_use]
    pub fn canonical(&self) -> String {
        self.to_string()
    }

    /// The DHIS2 period code: daily `20240131`, weekly `2024W5` (ISO
    /// week-year, no zero padding), monthly `202401`, yearly `2024`.
    ///
    /// DHIS2 has no hourly periods; hourly periods use the non-standard
    /// `YYYYMMDDHH` (e.g. `2024013113`) so that every type has a code.
    /// [`Period::parse_dhis2`] is the inverse.
    #[must_use]
    pub fn dhis2_code(&self) -> String {
        let s = self.start;
        match self.kind {
            PeriodType::Hourly => format!(
                "{:04}{:02}{:02}{:02}",
                s.year(),
                s.month(),
                s.day(),
                s.hour()
            ),
            PeriodType::Daily => format!("{:04}{:02}{:02}", s.year(), s.month(), s.day()),
            PeriodType::Weekly => {
                let week = s.iso_week();
                format!("{:04}W{}", week.year(), week.week())
            }
            PeriodType::Monthly => format!("{:04}{:02}", s.year(), s.month()),
            PeriodType::Yearly => format!("{:04}", s.year()),
        }
    }

    /// Position of this period on its type's linear scale.
    fn index(&self) -> i64 {
        index_of_instant(self.kind, self.start)
    }
}

impl Ord for Period {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.start, self.kind).cmp(&(other.start, other.kind))
    }
}

impl PartialOrd for Period {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.start;
        match self.kind {
            PeriodType::Hourly => write!(
                f,
                "{:04}-{:02}-{:02}T{:02}",
                s.year(),
                s.month(),
                s.day(),
                s.hour()
            ),
            PeriodType::Daily => write!(f, "{:04}-{:02}-{:02}", s.year(), s.month(), s.day()),
            PeriodType::Weekly => {
                // The ISO week-year, not the calendar year: the week of
                // 2024-12-30 belongs to 2025.
                let week = s.iso_week();
                write!(f, "{:04}-W{:02}", week.year(), week.week())
            }
            PeriodType::Monthly => write!(f, "{:04}-{:02}", s.year(), s.month()),
            PeriodType::Yearly => write!(f, "{:04}", s.year()),
        }
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
