//! Temporal aggregation to the DHIS2 period types: a series of fields of a finer period type
//! is grouped into daily, weekly (ISO week-year), monthly, quarterly or yearly periods and each
//! group combined cell by cell with mean, sum, min or max. A period counts only when every
//! source period in it is present; incomplete ones (usually at the edges of the requested
//! interval) are dropped and listed.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate, NaiveDateTime};
use climate_domain::{Period, PeriodType};

/// A DHIS2 period type results are aggregated to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetPeriodType {
    /// Calendar days.
    Daily,
    /// ISO 8601 weeks (Monday to Sunday, numbered in their ISO week-year).
    Weekly,
    /// Calendar months.
    Monthly,
    /// Calendar quarters.
    Quarterly,
    /// Calendar years.
    Yearly,
}

impl TargetPeriodType {
    /// Every type.
    pub const ALL: [Self; 5] = [
        Self::Daily,
        Self::Weekly,
        Self::Monthly,
        Self::Quarterly,
        Self::Yearly,
    ];

    /// The name in requests and results.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::Quarterly => "quarterly",
            Self::Yearly => "yearly",
        }
    }

    /// The target period containing `t`.
    pub fn containing(self, t: NaiveDateTime) -> TargetPeriod {
        let d = t.date();
        let start = match self {
            Self::Daily => d,
            Self::Weekly => {
                d - chrono::Duration::days(i64::from(d.weekday().num_days_from_monday()))
            }
            Self::Monthly => d.with_day(1).unwrap_or(d),
            Self::Quarterly => {
                NaiveDate::from_ymd_opt(d.year(), (d.month0() / 3) * 3 + 1, 1).unwrap_or(d)
            }
            Self::Yearly => NaiveDate::from_ymd_opt(d.year(), 1, 1).unwrap_or(d),
        };
        TargetPeriod { kind: self, start }
    }

    /// Whether every period of `source` lies within one period of this type, so that the
    /// fields can be grouped (weeks do not nest in months, quarters or years).
    pub fn nests(self, source: PeriodType) -> bool {
        match source {
            PeriodType::Hourly => true,
            PeriodType::Daily => true,
            PeriodType::Weekly => self == Self::Weekly,
            PeriodType::Monthly => matches!(self, Self::Monthly | Self::Quarterly | Self::Yearly),
            PeriodType::Yearly => self == Self::Yearly,
        }
    }
}

impl fmt::Display for TargetPeriodType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A period type name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown period_type '{0}': expected daily, weekly, monthly, quarterly or yearly")]
pub struct UnknownPeriodType(pub String);

impl FromStr for TargetPeriodType {
    type Err = UnknownPeriodType;
    fn from_str(s: &str) -> Result<Self, UnknownPeriodType> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownPeriodType(s.to_owned()))
    }
}

/// One period of a [`TargetPeriodType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetPeriod {
    /// Its type.
    pub kind: TargetPeriodType,
    /// Its first day.
    pub start: NaiveDate,
}

impl TargetPeriod {
    /// The first day after it.
    pub fn end(&self) -> NaiveDate {
        let s = self.start;
        let months = |n: u32| s.checked_add_months(chrono::Months::new(n)).unwrap_or(s);
        match self.kind {
            TargetPeriodType::Daily => s + chrono::Duration::days(1),
            TargetPeriodType::Weekly => s + chrono::Duration::days(7),
            TargetPeriodType::Monthly => months(1),
            TargetPeriodType::Quarterly => months(3),
            TargetPeriodType::Yearly => months(12),
        }
    }

    /// The ISO form: `2025-07-03`, `2025-W27`, `2025-07`, `2025-Q3`, `2025`.
    pub fn iso(&self) -> String {
        let s = self.start;
        match self.kind {
            TargetPeriodType::Daily => s.format("%Y-%m-%d").to_string(),
            TargetPeriodType::Weekly => {
                let w = s.iso_week();
                format!("{:04}-W{:02}", w.year(), w.week())
            }
            TargetPeriodType::Monthly => s.format("%Y-%m").to_string(),
            TargetPeriodType::Quarterly => format!("{:04}-Q{}", s.year(), s.month0() / 3 + 1),
            TargetPeriodType::Yearly => format!("{:04}", s.year()),
        }
    }

    /// The DHIS2 period identifier: `20250703`, `2025W27`, `202507`, `2025Q3`, `2025`.
    pub fn dhis2(&self) -> String {
        let s = self.start;
        match self.kind {
            TargetPeriodType::Daily => s.format("%Y%m%d").to_string(),
            TargetPeriodType::Weekly => {
                let w = s.iso_week();
                format!("{:04}W{}", w.year(), w.week())
            }
            TargetPeriodType::Monthly => s.format("%Y%m").to_string(),
            TargetPeriodType::Quarterly => format!("{:04}Q{}", s.year(), s.month0() / 3 + 1),
            TargetPeriodType::Yearly => format!("{:04}", s.year()),
        }
    }

    /// How many periods of `source` it holds.
    pub fn source_periods(&self, source: PeriodType) -> usize {
        let end = self.end().and_time(chrono::NaiveTime::MIN);
        let mut p = Period::containing(source, self.start.and_time(chrono::NaiveTime::MIN));
        let mut n = 0;
        while p.start() < end {
            n += 1;
            p = p.next();
        }
        n
    }
}

/// How a group of fields is combined, cell by cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemporalMethod {
    /// The mean of the cell's values with data.
    Mean,
    /// The sum of the cell's values with data.
    Sum,
    /// The least value.
    Min,
    /// The greatest value.
    Max,
}

impl TemporalMethod {
    /// The name in requests.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Sum => "sum",
            Self::Min => "min",
            Self::Max => "max",
        }
    }
}

/// A method name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown temporal_method '{0}': expected mean, sum, min or max")]
pub struct UnknownMethod(pub String);

impl FromStr for TemporalMethod {
    type Err = UnknownMethod;
    fn from_str(s: &str) -> Result<Self, UnknownMethod> {
        [Self::Mean, Self::Sum, Self::Min, Self::Max]
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownMethod(s.to_owned()))
    }
}

/// The source periods grouped into target periods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    /// Complete target periods with the indices (into the source list) of their fields.
    pub complete: Vec<(TargetPeriod, Vec<usize>)>,
    /// Target periods missing some of their source periods.
    pub dropped: Vec<TargetPeriod>,
}

/// Why a series cannot be grouped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{from} periods do not nest in {to} periods: choose a period_type they fit into")]
pub struct NotNested {
    /// The source period type.
    pub from: &'static str,
    /// The target period type.
    pub to: &'static str,
}

/// Groups `periods` (of one type, ascending, without repeats) into periods of `target`.
///
/// # Errors
/// [`NotNested`] when the source periods do not nest in the target ones.
pub fn group(periods: &[Period], target: TargetPeriodType) -> Result<Grouping, NotNested> {
    let mut out = Grouping {
        complete: Vec::new(),
        dropped: Vec::new(),
    };
    let Some(first) = periods.first() else {
        return Ok(out);
    };
    let source = first.kind();
    if !target.nests(source) {
        return Err(NotNested {
            from: source.as_str(),
            to: target.as_str(),
        });
    }
    let mut i = 0;
    while i < periods.len() {
        let key = target.containing(periods[i].start());
        let mut members = Vec::new();
        while i < periods.len() && target.containing(periods[i].start()) == key {
            members.push(i);
            i += 1;
        }
        if members.len() == key.source_periods(source) {
            out.complete.push((key, members));
        } else {
            out.dropped.push(key);
        }
    }
    Ok(out)
}

/// Combines `fields` (all of one length) cell by cell with `method`. A cell without data in
/// every field stays without data (NaN); otherwise the values with data are combined (a sum
/// is of the values present: a period only counts when all its fields are present, so a gap
/// here is a cell the source itself leaves without data in some fields).
pub fn combine(fields: &[&[f32]], method: TemporalMethod) -> Vec<f32> {
    let len = fields.first().map_or(0, |f| f.len());
    (0..len)
        .map(|k| {
            let values = fields.iter().map(|f| f[k]).filter(|v| !v.is_nan());
            let (mut n, mut acc) = (0u32, None::<f64>);
            for v in values {
                let v = f64::from(v);
                n += 1;
                acc = Some(match (acc, method) {
                    (None, _) => v,
                    (Some(a), TemporalMethod::Mean | TemporalMethod::Sum) => a + v,
                    (Some(a), TemporalMethod::Min) => a.min(v),
                    (Some(a), TemporalMethod::Max) => a.max(v),
                });
            }
            match (acc, method) {
                (None, _) => f32::NAN,
                (Some(a), TemporalMethod::Mean) => (a / f64::from(n)) as f32,
                (Some(a), _) => a as f32,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(from: &str, n: i64) -> Vec<Period> {
        let first = Period::parse(PeriodType::Daily, from).expect("a day");
        (0..n).map(|i| first.offset(i)).collect()
    }

    fn at(date: &str) -> NaiveDateTime {
        NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .expect("date")
            .and_time(chrono::NaiveTime::MIN)
    }

    #[test]
    fn identifiers_around_the_turn_of_a_year() {
        // 2026-12-28 is the Monday of ISO week 53 of 2026; 2027-01-04 starts week 1 of 2027.
        let cases = [
            ("2026-12-28", "2026-W53", "2026W53"),
            ("2027-01-01", "2026-W53", "2026W53"),
            ("2027-01-03", "2026-W53", "2026W53"),
            ("2027-01-04", "2027-W01", "2027W1"),
        ];
        for (day, iso, dhis2) in cases {
            let w = TargetPeriodType::Weekly.containing(at(day));
            assert_eq!(
                (w.iso().as_str(), w.dhis2().as_str()),
                (iso, dhis2),
                "{day}"
            );
        }
        let d = at("2027-01-01");
        let id = |k: TargetPeriodType| {
            let p = k.containing(d);
            (p.iso(), p.dhis2())
        };
        assert_eq!(
            id(TargetPeriodType::Daily),
            ("2027-01-01".into(), "20270101".into())
        );
        assert_eq!(
            id(TargetPeriodType::Monthly),
            ("2027-01".into(), "202701".into())
        );
        assert_eq!(
            id(TargetPeriodType::Quarterly),
            ("2027-Q1".into(), "2027Q1".into())
        );
        assert_eq!(id(TargetPeriodType::Yearly), ("2027".into(), "2027".into()));
        let q3 = TargetPeriodType::Quarterly.containing(at("2025-08-15"));
        assert_eq!((q3.iso(), q3.dhis2()), ("2025-Q3".into(), "2025Q3".into()));
        assert_eq!(
            q3.end(),
            NaiveDate::from_ymd_opt(2025, 10, 1).expect("date")
        );
    }

    #[test]
    fn incomplete_edge_periods_are_dropped_and_listed() {
        // 2025-01-30 … 2025-03-02: January and March are incomplete, February is whole.
        let g = group(&days("2025-01-30", 32), TargetPeriodType::Monthly).expect("days nest");
        assert_eq!(g.complete.len(), 1);
        assert_eq!(g.complete[0].0.iso(), "2025-02");
        assert_eq!(g.complete[0].1, (2..30).collect::<Vec<_>>());
        let dropped: Vec<String> = g.dropped.iter().map(TargetPeriod::iso).collect();
        assert_eq!(dropped, vec!["2025-01", "2025-03"]);
        // A missing day inside a week drops that week.
        let mut week = days("2025-06-30", 14);
        week.remove(3);
        let g = group(&week, TargetPeriodType::Weekly).expect("days nest");
        assert_eq!(
            g.complete.iter().map(|c| c.0.iso()).collect::<Vec<_>>(),
            vec!["2025-W28"]
        );
        assert_eq!(
            g.dropped.iter().map(TargetPeriod::iso).collect::<Vec<_>>(),
            vec!["2025-W27"]
        );
    }

    #[test]
    fn hours_make_days_and_weeks_do_not_make_months() {
        let first = Period::parse(PeriodType::Hourly, "2025-07-03T00").expect("an hour");
        let hours: Vec<Period> = (0..48).map(|i| first.offset(i)).collect();
        let g = group(&hours, TargetPeriodType::Daily).expect("hours nest");
        assert_eq!(g.complete.len(), 2);
        assert_eq!(
            TargetPeriodType::Daily
                .containing(at("2025-07-03"))
                .source_periods(PeriodType::Hourly),
            24
        );
        let weeks = [Period::parse(PeriodType::Weekly, "2025-W27").expect("a week")];
        let err = group(&weeks, TargetPeriodType::Monthly).expect_err("weeks straddle months");
        assert!(err.to_string().contains("do not nest"), "{err}");
    }

    #[test]
    fn fields_combine_cell_by_cell_skipping_cells_without_data() {
        let a = [1.0, f32::NAN, 5.0, f32::NAN];
        let b = [3.0, 2.0, -1.0, f32::NAN];
        let fields: [&[f32]; 2] = [&a, &b];
        assert_eq!(combine(&fields, TemporalMethod::Mean)[..3], [2.0, 2.0, 2.0]);
        assert_eq!(combine(&fields, TemporalMethod::Sum)[..3], [4.0, 2.0, 4.0]);
        assert_eq!(combine(&fields, TemporalMethod::Min)[..3], [1.0, 2.0, -1.0]);
        assert_eq!(combine(&fields, TemporalMethod::Max)[..3], [3.0, 2.0, 5.0]);
        assert!(
            combine(&fields, TemporalMethod::Sum)[3].is_nan(),
            "no data stays no data"
        );
    }
}
