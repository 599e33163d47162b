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

/// Position of the period of type `kind` containing `t` on a linear scale
/// where consecutive periods differ by one. This is what makes counting and
/// offsetting O(1) and correct across month lengths and leap years.
fn index_of_instant(kind: PeriodType, t: NaiveDateTime) -> i64 {
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
fn from_index(kind: PeriodType, index: i64) -> Option<Period> {
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
fn date_from_ce(days: i64) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(i32::try_from(days).ok()?)
}

/// The shape of a period string before any calendar validation, so that
/// syntax errors, impossible dates and out-of-range years can be told apart.
#[derive(Debug, Clone, Copy)]
enum Raw {
    /// `YYYY`
    Year(i32),
    /// `YYYY-MM`
    Month(i32, u32),
    /// `YYYY-Www` (ISO week-year and week)
    Week(i32, u32),
    /// `YYYY-MM-DD`
    Date(i32, u32, u32),
    /// `YYYY-MM-DDTHH`
    Hour(i32, u32, u32, u32),
    /// `YYYY-MM-DDTHH:MM[:SS[.f]][offset]`; seconds below a minute never
    /// matter because the finest period is an hour, so fractions are dropped.
    DateTime {
        year: i32,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
        /// Offset east of UTC in seconds.
        offset: i32,
    },
}

impl Raw {
    /// The year as written (ISO week-year for weeks).
    const fn year(self) -> i32 {
        match self {
            Raw::Year(year)
            | Raw::Month(year, _)
            | Raw::Week(year, _)
            | Raw::Date(year, _, _)
            | Raw::Hour(year, _, _, _)
            | Raw::DateTime { year, .. } => year,
        }
    }
}

/// Turns a lexed form into the period of type `kind` it denotes, checking
/// the calendar and the supported year range.
fn resolve(
    kind: PeriodType,
    raw: Raw,
    invalid: impl Fn() -> PeriodError,
) -> Result<Period, PeriodError> {
    if !(MIN_YEAR..=MAX_YEAR).contains(&raw.year()) {
        return Err(PeriodError::OutOfRange);
    }
    let date = |y: i32, m: u32, d: u32| NaiveDate::from_ymd_opt(y, m, d).ok_or_else(&invalid);
    let instant = match (kind, raw) {
        (PeriodType::Daily | PeriodType::Monthly | PeriodType::Yearly, Raw::Year(y)) => {
            date(y, 1, 1)?.and_time(NaiveTime::MIN)
        }
        (PeriodType::Daily | PeriodType::Monthly | PeriodType::Yearly, Raw::Month(y, m)) => {
            date(y, m, 1)?.and_time(NaiveTime::MIN)
        }
        (PeriodType::Weekly, Raw::Week(y, w)) => NaiveDate::from_isoywd_opt(y, w, Weekday::Mon)
            .ok_or_else(&invalid)?
            .and_time(NaiveTime::MIN),
        (_, Raw::Date(y, m, d)) => date(y, m, d)?.and_time(NaiveTime::MIN),
        (_, Raw::Hour(y, m, d, h)) => date(y, m, d)?.and_hms_opt(h, 0, 0).ok_or_else(&invalid)?,
        (
            _,
            Raw::DateTime {
                year,
                month,
                day,
                hour,
                minute,
                second,
                offset,
            },
        ) => {
            let local = date(year, month, day)?
                .and_hms_opt(hour, minute, second)
                .ok_or_else(&invalid)?;
            // Local time minus its offset east of UTC is UTC.
            local
                .checked_sub_signed(TimeDelta::seconds(i64::from(offset)))
                .ok_or(PeriodError::OutOfRange)?
        }
        // Coarser forms that do not pin down a single period of `kind`
        // (e.g. `2024-03` as a week or hour, `2024-W05` as a month).
        _ => return Err(invalid()),
    };
    let period = Period::containing(kind, instant);
    // The offset conversion can move the instant across a year boundary.
    if (MIN_YEAR..=MAX_YEAR).contains(&period.start.year()) {
        Ok(period)
    } else {
        Err(PeriodError::OutOfRange)
    }
}

/// Lexes the ISO-like forms accepted by [`Period::parse`]; `None` means the
/// text has none of those shapes.
fn lex_iso(input: &str) -> Option<Raw> {
    let mut c = Cursor::new(input);
    let year = c.year()?;
    if c.is_done() {
        return Some(Raw::Year(year));
    }
    c.expect(b'-')?;
    if c.eat(b'W') {
        let week = c.digits(2)?;
        c.finish()?;
        return Some(Raw::Week(year, week));
    }
    let month = c.digits(2)?;
    if c.is_done() {
        return Some(Raw::Month(year, month));
    }
    c.expect(b'-')?;
    let day = c.digits(2)?;
    if c.is_done() {
        return Some(Raw::Date(year, month, day));
    }
    if !(c.eat(b'T') || c.eat(b' ')) {
        return None;
    }
    let hour = c.digits(2)?;
    if c.is_done() {
        return Some(Raw::Hour(year, month, day, hour));
    }
    c.expect(b':')?;
    let minute = c.digits(2)?;
    let mut second = 0;
    if c.eat(b':') {
        second = c.digits(2)?;
        if c.eat(b'.') {
            c.fraction()?;
        }
    }
    let offset = match c.bump() {
        None | Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let hours = c.digits(2)?;
            c.eat(b':');
            let minutes = c.digits(2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = i32::try_from(hours * 3600 + minutes * 60).ok()?;
            if sign == b'-' { -seconds } else { seconds }
        }
        Some(_) => return None,
    };
    c.finish()?;
    Some(Raw::DateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        offset,
    })
}

/// Lexes the DHIS2 code shape for `kind`; `None` means the text is not of
/// that shape.
fn lex_dhis2(kind: PeriodType, code: &str) -> Option<Raw> {
    let mut c = Cursor::new(code);
    let year = c.year()?;
    let raw = match kind {
        PeriodType::Yearly => Raw::Year(year),
        PeriodType::Monthly => Raw::Month(year, c.digits(2)?),
        PeriodType::Daily => Raw::Date(year, c.digits(2)?, c.digits(2)?),
        PeriodType::Hourly => Raw::Hour(year, c.digits(2)?, c.digits(2)?, c.digits(2)?),
        PeriodType::Weekly => {
            c.expect(b'W')?;
            Raw::Week(year, c.unpadded_number(2)?)
        }
    };
    c.finish()?;
    Some(raw)
}

/// A byte cursor for the fixed-width numeric formats above. Working on bytes
/// is sound because every accepted character is ASCII; any other byte simply
/// fails to match.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    const fn new(input: &'a str) -> Self {
        Cursor {
            bytes: input.as_bytes(),
            pos: 0,
        }
    }

    const fn is_done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// `Some(())` if the whole input has been consumed.
    const fn finish(&self) -> Option<()> {
        if self.is_done() { Some(()) } else { None }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    /// Consumes `b` if it is next.
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        self.eat(b).then_some(())
    }

    /// Exactly `n` ASCII digits as a number (`n` is at most 4 here).
    fn digits(&mut self, n: usize) -> Option<u32> {
        let mut value = 0;
        for _ in 0..n {
            let b = self.peek().filter(u8::is_ascii_digit)?;
            value = value * 10 + u32::from(b - b'0');
            self.pos += 1;
        }
        Some(value)
    }

    /// A four-digit year; wider years are rejected rather than read as
    /// out-of-range so that `20240131` is not mistaken for a year.
    fn year(&mut self) -> Option<i32> {
        i32::try_from(self.digits(4)?).ok()
    }

    /// 1 to `max_len` digits without a leading zero, up to the end of input.
    fn unpadded_number(&mut self, max_len: usize) -> Option<u32> {
        let rest = &self.bytes[self.pos..];
        if rest.is_empty() || rest.len() > max_len || rest[0] == b'0' {
            return None;
        }
        self.digits(rest.len())
    }

    /// One or more digits of a fractional second, whose value is irrelevant.
    fn fraction(&mut self) -> Option<()> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        (self.pos > start).then_some(())
    }
}

/// An inclusive range of periods of one type, `start <= end`.
///
/// A range always holds at least one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeriodRange {
    start: Period,
    end: Period,
}

impl PeriodRange {
    /// The periods from `start` to `end`, both included.
    ///
    /// # Errors
    ///
    /// - [`PeriodError::Mixed`] if `start` and `end` have different types.
    /// - [`PeriodError::StartAfterEnd`] (with canonical strings) if `start`
    ///   is after `end`.
    pub fn new(start: Period, end: Period) -> Result<Self, PeriodError> {
        if start.kind != end.kind {
            return Err(PeriodError::Mixed(start.kind, end.kind));
        }
        if start.start > end.start {
            return Err(PeriodError::StartAfterEnd {
                start: start.canonical(),
                end: end.canonical(),
            });
        }
        Ok(PeriodRange { start, end })
    }

    /// The range holding only `p`.
    #[must_use]
    pub const fn single(p: Period) -> Self {
        PeriodRange { start: p, end: p }
    }

    /// The type of the periods in the range.
    #[must_use]
    pub const fn kind(&self) -> PeriodType {
        self.start.kind
    }

    /// The first period (inclusive).
    #[must_use]
    pub const fn start(&self) -> Period {
        self.start
    }

    /// The last period (inclusive).
    #[must_use]
    pub const fn end(&self) -> Period {
        self.end
    }

    /// Number of periods in the range, at least 1. O(1).
    #[must_use]
    pub fn len(&self) -> u64 {
        // Non-negative by construction, so `unsigned_abs` is exact.
        self.start.periods_until(&self.end).unsigned_abs() + 1
    }

    /// Always `false`: a range holds at least one period. Present because
    /// types with `len` are expected to have it.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Whether `p` is one of the range's periods (same type, within bounds).
    #[must_use]
    pub fn contains(&self, p: &Period) -> bool {
        p.kind == self.kind() && self.start <= *p && *p <= self.end
    }

    /// Whether every period of `other` is in this range (same type).
    #[must_use]
    pub fn contains_range(&self, other: &PeriodRange) -> bool {
        self.contains(&other.start) && self.contains(&other.end)
    }

    /// The periods of the range in order.
    #[must_use]
    pub fn iter(&self) -> PeriodIter {
        PeriodIter {
            kind: self.kind(),
            front: self.start.index(),
            back: self.end.index(),
            remaining: self.len(),
        }
    }

    /// Index of `p` within the range (0-based), or `None` if it is not
    /// contained. O(1).
    #[must_use]
    pub fn index_of(&self, p: &Period) -> Option<u64> {
        self.contains(p)
            .then(|| self.start.periods_until(p).unsigned_abs())
    }

    /// Splits into consecutive sub-ranges of at most `n` periods each,
    /// counted from the range's start; only the last may be shorter.
    ///
    /// `n == 0` is treated as 1 rather than panicking, since a chunk size
    /// often comes from configuration.
    #[must_use]
    pub fn chunks(&self, n: u64) -> Vec<PeriodRange> {
        self.split_at_boundaries(n, self.start.index())
    }

    /// Splits into consecutive sub-ranges that never cross a boundary of the
    /// grid of `n`-period blocks starting at `origin` (the blocks are
    /// `origin.offset(k * n) ..= origin.offset(k * n + n - 1)` for every
    /// integer `k`). This matches a storage layout whose time axis starts at
    /// `origin` with chunks of `n` periods, so each sub-range touches exactly
    /// one storage chunk. `origin` may lie inside, before or after the range.
    ///
    /// `n == 0` is treated as 1, as in [`PeriodRange::chunks`].
    ///
    /// # Errors
    ///
    /// [`PeriodError::Mixed`] if `origin` has a different type than the range.
    pub fn chunks_aligned(&self, origin: &Period, n: u64) -> Result<Vec<PeriodRange>, PeriodError> {
        if origin.kind != self.kind() {
            return Err(PeriodError::Mixed(self.kind(), origin.kind));
        }
        Ok(self.split_at_boundaries(n, origin.index()))
    }

    /// The overlap of the two ranges, or `None` if they are disjoint or of
    /// different types.
    #[must_use]
    pub fn intersect(&self, other: &PeriodRange) -> Option<PeriodRange> {
        if self.kind() != other.kind() {
            return None;
        }
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (start <= end).then_some(PeriodRange { start, end })
    }

    /// Splits at every index `origin + k * n`. Index arithmetic is done in
    /// `i128` so that huge `n` or distant origins cannot overflow.
    fn split_at_boundaries(&self, n: u64, origin: i64) -> Vec<PeriodRange> {
        let size = i128::from(n.max(1));
        let origin = i128::from(origin);
        let last = i128::from(self.end.index());
        let mut lo = i128::from(self.start.index());
        let mut out = Vec::new();
        while lo <= last {
            let block_end = origin + ((lo - origin).div_euclid(size) + 1) * size - 1;
            let hi = block_end.min(last);
            out.push(PeriodRange {
                start: self.period_at(lo),
                end: self.period_at(hi),
            });
            lo = hi + 1;
        }
        out
    }

    /// The period at linear index `index`, which must lie within the range.
    fn period_at(&self, index: i128) -> Period {
        i64::try_from(index)
            .ok()
            .and_then(|i| from_index(self.kind(), i))
            .expect("index lies between the range's own start and end")
    }
}

impl IntoIterator for PeriodRange {
    type Item = Period;
    type IntoIter = PeriodIter;

    fn into_iter(self) -> PeriodIter {
        self.iter()
    }
}

impl IntoIterator for &PeriodRange {
    type Item = Period;
    type IntoIter = PeriodIter;

    fn into_iter(self) -> PeriodIter {
        self.iter()
    }
}

/// Iterator over the periods of a [`PeriodRange`], from [`PeriodRange::iter`].
///
/// Each step is O(1), including `nth`, so skipping through long hourly
/// ranges is cheap.
#[derive(Debug, Clone)]
pub struct PeriodIter {
    kind: PeriodType,
    /// Index of the next period from the front.
    front: i64,
    /// Index of the next period from the back.
    back: i64,
    /// Periods not yet yielded; tracked separately so that `front`/`back`
    /// never need to cross each other.
    remaining: u64,
}

impl PeriodIter {
    /// The period at `index`; it always exists because it lies between two
    /// periods that do.
    fn at(&self, index: i64) -> Period {
        from_index(self.kind, index).expect("index lies within an existing range")
    }
}

impl Iterator for PeriodIter {
    type Item = Period;

    fn next(&mut self) -> Option<Period> {
        if self.remaining == 0 {
            return None;
        }
        let p = self.at(self.front);
        self.front += 1;
        self.remaining -= 1;
        Some(p)
    }

    fn nth(&mut self, n: usize) -> Option<Period> {
        let skip = u64::try_from(n).unwrap_or(u64::MAX);
        if skip >= self.remaining {
            self.remaining = 0;
            return None;
        }
        // `skip < remaining`, so the new front still lies within the range.
        self.front += i64::try_from(skip).expect("skip is below the range length");
        self.remaining -= skip;
        self.next()
    }

    fn last(mut self) -> Option<Period> {
        // O(1) instead of walking the whole range.
        self.next_back()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match usize::try_from(self.remaining) {
            Ok(n) => (n, Some(n)),
            Err(_) => (usize::MAX, None),
        }
    }
}

impl DoubleEndedIterator for PeriodIter {
    fn next_back(&mut self) -> Option<Period> {
        if self.remaining == 0 {
            return None;
        }
        let p = self.at(self.back);
        self.back -= 1;
        self.remaining -= 1;
        Some(p)
    }
}

impl FusedIterator for PeriodIter {}

#[cfg(test)]
mod tests {
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
            PeriodRange::new(p(Daily, "2024-02-01"), p(Daily, "2024-01-01"))
                .map_err(|e| e.to_string()),
            Err("start 2024-02-01 is after end 2024-01-01".to_owned())
        );
        assert_eq!(
            PeriodRange::new(p(Daily, "2024-01-01"), p(Monthly, "2024-02"))
                .map_err(|e| e.to_string()),
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
}
