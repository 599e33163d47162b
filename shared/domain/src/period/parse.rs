//! Parsing the forms users type: ISO 8601 (lexed, then resolved against the calendar so that
//! syntax errors, impossible dates and out-of-range years are told apart) and DHIS2 codes.

use super::*;

/// The shape of a period string before any calendar validation, so that
/// syntax errors, impossible dates and out-of-range years can be told apart.
#[derive(Debug, Clone, Copy)]
pub(super) enum Raw {
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
pub(super) fn resolve(
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
pub(super) fn lex_iso(input: &str) -> Option<Raw> {
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
pub(super) fn lex_dhis2(kind: PeriodType, code: &str) -> Option<Raw> {
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
pub(super) struct Cursor<'a> {
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
