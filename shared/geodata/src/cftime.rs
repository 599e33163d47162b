//! CF time coordinates: `UNIT since REFERENCE` units and the calendars this platform accepts.

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};

/// Why CF time metadata is not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CfTimeError {
    /// The units are not `UNIT since DATE`.
    #[error("time units '{0}' are not of the form 'UNIT since DATE'")]
    Form(String),
    /// The unit is not seconds, minutes, hours or days.
    #[error("unsupported time unit '{unit}' in '{units}'")]
    Unit {
        /// The unit given.
        unit: String,
        /// The whole units attribute.
        units: String,
    },
    /// The reference date does not parse.
    #[error("unsupported reference date '{reference}' in time units '{units}'")]
    Reference {
        /// The reference given.
        reference: String,
        /// The whole units attribute.
        units: String,
    },
    /// A calendar other than the standard (proleptic) Gregorian one.
    #[error(
        "calendar '{0}' is not supported (expected standard, gregorian or proleptic_gregorian)"
    )]
    Calendar(String),
}

/// A parsed CF time unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CfTimeUnits {
    /// Seconds per unit step.
    pub seconds_per_unit: f64,
    /// Reference instant (UTC).
    pub reference: NaiveDateTime,
}

impl CfTimeUnits {
    /// Parses `days since 2025-07-01`, `seconds since 1970-01-01 00:00:00`,
    /// `hours since 1900-01-01T00:00:00Z` and the like.
    ///
    /// # Errors
    /// A message naming the unsupported part.
    pub fn parse(units: &str) -> Result<Self, CfTimeError> {
        let (unit, reference) = units
            .split_once(" since ")
            .ok_or_else(|| CfTimeError::Form(units.to_owned()))?;
        let seconds_per_unit = match unit.trim().to_ascii_lowercase().as_str() {
            "seconds" | "second" | "secs" | "sec" | "s" => 1.0,
            "minutes" | "minute" | "mins" | "min" => 60.0,
            "hours" | "hour" | "hrs" | "hr" | "h" => 3600.0,
            "days" | "day" | "d" => 86400.0,
            other => {
                return Err(CfTimeError::Unit {
                    unit: other.to_owned(),
                    units: units.to_owned(),
                });
            }
        };
        let r = reference
            .trim()
            .trim_end_matches('Z')
            .trim_end_matches("UTC")
            .trim();
        let r = r.strip_suffix("+00:00").unwrap_or(r).trim();
        let parsed = [
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M",
            "%Y-%m-%dT%H:%M",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(r, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(r, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .ok_or_else(|| CfTimeError::Reference {
            reference: reference.to_owned(),
            units: units.to_owned(),
        })?;
        Ok(Self {
            seconds_per_unit,
            reference: parsed,
        })
    }

    /// Checks the calendar attribute.
    ///
    /// # Errors
    /// A message for calendars other than standard/gregorian/proleptic_gregorian.
    pub fn check_calendar(calendar: Option<&str>) -> Result<(), CfTimeError> {
        match calendar.map(str::to_ascii_lowercase).as_deref() {
            None | Some("standard" | "gregorian" | "proleptic_gregorian") => Ok(()),
            Some(other) => Err(CfTimeError::Calendar(other.to_owned())),
        }
    }

    /// The instant of a coordinate value, to the millisecond.
    pub fn instant(&self, value: f64) -> Option<NaiveDateTime> {
        if !value.is_finite() {
            return None;
        }
        let ms = (value * self.seconds_per_unit * 1000.0).round();
        if ms.abs() > 1e17 {
            return None;
        }
        self.reference
            .checked_add_signed(TimeDelta::milliseconds(ms as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_sample_units() {
        let u = CfTimeUnits::parse("days since 2025-07-01").expect("valid");
        assert_eq!(
            u.instant(2.0).map(|t| t.to_string()),
            Some("2025-07-03 00:00:00".to_owned())
        );
        let u = CfTimeUnits::parse("seconds since 1970-01-01").expect("valid");
        assert_eq!(
            u.instant(1_704_067_200.0).map(|t| t.to_string()),
            Some("2024-01-01 00:00:00".to_owned())
        );
        let u = CfTimeUnits::parse("hours since 1900-01-01T00:00:00Z").expect("valid");
        assert!((u.seconds_per_unit - 3600.0).abs() < f64::EPSILON);
    }

    #[test]
    fn rejects_what_it_cannot_decode() {
        assert!(CfTimeUnits::parse("months since 2000-01-01").is_err());
        assert!(CfTimeUnits::parse("days").is_err());
        assert!(CfTimeUnits::check_calendar(Some("noleap")).is_err());
        assert!(CfTimeUnits::check_calendar(Some("Gregorian")).is_ok());
    }
}
