//! Sync planning (SPEC §7): what a sync of a managed dataset would do, decided from its template's
//! sync kind and availability policy, its current coverage, an optional requested end and the
//! clock. Pure: `now` is an argument.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use crate::period::{Period, PeriodType};
use crate::template::{SyncExecution, SyncKind, SyncSpec};

/// When a provider publishes a period: the template's `sync.availability`.
///
/// Without any field, a period is available once it has ended. `lag_hours`/`lag_days` add a
/// delay after its end; `complete_month_after_day: D` publishes a whole month on day `D` of the
/// next month; `latest_year` / `latest_year_offset` fix the newest (yearly) release;
/// `allow_future` lets a sync reach periods after today (projections); `probe` asks the
/// provider which periods it has published (the planner is given its answer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Availability {
    /// Hours after a period's end before it is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_hours: Option<u32>,
    /// Days after a period's end before it is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_days: Option<u32>,
    /// A month's periods are published together on this day (1–28) of the next month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_month_after_day: Option<u32>,
    /// The newest release is the current year plus this offset (e.g. −1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_year_offset: Option<i32>,
    /// The newest release is this year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_year: Option<i32>,
    /// Periods after today may be published (projections).
    #[serde(default)]
    pub allow_future: bool,
    /// Ask the provider what it has published (e.g. which daily files exist) and never sync
    /// past its newest period.
    #[serde(default)]
    pub probe: bool,
}

impl Availability {
    /// Checks the combination of fields, naming the one that is wrong.
    ///
    /// # Errors
    /// `(field, message)`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.lag_hours.is_some() && self.lag_days.is_some() {
            return Err((
                "lag_days",
                "give either lag_hours or lag_days, not both".into(),
            ));
        }
        if let Some(d) = self.complete_month_after_day
            && !(1..=28).contains(&d)
        {
            return Err((
                "complete_month_after_day",
                format!("{d} is not a day every month has: use 1 to 28"),
            ));
        }
        if self.latest_year.is_some() && self.latest_year_offset.is_some() {
            return Err((
                "latest_year_offset",
                "give either latest_year or latest_year_offset, not both".into(),
            ));
        }
        Ok(())
    }

    /// Whether period `p` is published at `now` by the time rules (not by probing).
    pub fn is_available(&self, p: &Period, now: NaiveDateTime) -> bool {
        if let Some(y) = self.latest_release(now)
            && p.start().year() > y
        {
            return false;
        }
        if self.allow_future && (self.latest_year.is_some() || self.latest_year_offset.is_some()) {
            return true;
        }
        let lag = Duration::hours(i64::from(self.lag_hours.unwrap_or(0)))
            + Duration::days(i64::from(self.lag_days.unwrap_or(0)));
        let mut published = p.end() + lag;
        if let Some(day) = self.complete_month_after_day {
            // The month holding the period's last instant, published on `day` of the next.
            let last = p.end() - Duration::seconds(1);
            let next_month = Period::containing(PeriodType::Monthly, last).next().start();
            published = published.max(next_month + Duration::days(i64::from(day) - 1));
        }
        published <= now
    }

    /// The newest release year, when the policy fixes one.
    pub fn latest_release(&self, now: NaiveDateTime) -> Option<i32> {
        self.latest_year
            .or_else(|| self.latest_year_offset.map(|o| now.year() + o))
    }

    /// The newest period of `kind` at or before `target` that is published at `now`, looking
    /// back at most `limit` periods.
    pub fn latest_available(
        &self,
        target: Period,
        now: NaiveDateTime,
        limit: u32,
    ) -> Option<Period> {
        let mut p = target;
        for _ in 0..=limit {
            if self.is_available(&p, now) {
                return Some(p);
            }
            p = p.checked_offset(-1)?;
        }
        None
    }
}

/// What a sync does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncAction {
    /// Write only the new periods onto the current version.
    Append,
    /// Rebuild the dataset over its new range.
    Rematerialize,
    /// Nothing to do: the dataset is current.
    NoOp,
    /// The template never syncs.
    NotSyncable,
}

/// Where the target end came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetEndSource {
    /// The request's `end`.
    Request,
    /// The period containing today.
    DefaultToday,
    /// The request's `end`, moved back to the newest published period.
    RequestClampedByAvailability,
    /// Today, moved back to the newest published period.
    DefaultTodayClampedByAvailability,
    /// The newest release (release syncs).
    LatestRelease,
    /// Nothing newer than the current coverage is published.
    CurrentCoverage,
}

/// The plan of one sync (SPEC §7 SyncDetail), periods in canonical form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncDetail {
    /// Template id.
    pub source_dataset_id: String,
    /// `temporal`, `release` or `static`.
    pub sync_kind: SyncKind,
    /// What the sync does.
    pub action: SyncAction,
    /// Machine-readable reason (`new_periods`, `up_to_date`, `newer_release`, `static`,
    /// `nothing_published`).
    pub reason: String,
    /// Human-readable explanation.
    pub message: String,
    /// First period of the current version.
    pub current_start: String,
    /// Last period of the current version.
    pub current_end: String,
    /// Last period the dataset should cover after the sync.
    pub target_end: Option<String>,
    /// Where `target_end` came from.
    pub target_end_source: Option<TargetEndSource>,
    /// First period the sync writes.
    pub delta_start: Option<String>,
    /// Last period the sync writes.
    pub delta_end: Option<String>,
}

/// How far back the availability search looks (periods).
const LOOKBACK: u32 = 24 * 400;

/// Plans a sync of a dataset built from template `template_id` with `spec`, whose current
/// version covers `current`, towards `requested_end` (or today), at `now`. With a `probe`
/// policy, `published` is the newest period the provider has (`None`: nothing after the
/// current end); it is ignored otherwise.
pub fn plan(
    template_id: &str,
    spec: &SyncSpec,
    kind: PeriodType,
    current: (Period, Period),
    requested_end: Option<Period>,
    published: Option<Period>,
    now: NaiveDateTime,
) -> SyncDetail {
    let (cs, ce) = current;
    let policy = spec.availability.unwrap_or_default();
    let mut d = SyncDetail {
        source_dataset_id: template_id.to_owned(),
        sync_kind: spec.kind,
        action: SyncAction::NoOp,
        reason: String::new(),
        message: String::new(),
        current_start: cs.canonical(),
        current_end: ce.canonical(),
        target_end: None,
        target_end_source: None,
        delta_start: None,
        delta_end: None,
    };
    match spec.kind {
        SyncKind::Static => {
            d.action = SyncAction::NotSyncable;
            d.reason = "static".into();
            d.message = format!("template '{template_id}' is static: its data never changes");
        }
        SyncKind::Release => {
            let newest = policy
                .latest_release(now)
                .and_then(|y| NaiveDate::from_ymd_opt(y, 1, 1))
                .map(|d| Period::containing(kind, d.and_time(chrono::NaiveTime::MIN)));
            let (target, source) = match (requested_end, newest) {
                (Some(r), Some(n)) if r > n => (n, TargetEndSource::RequestClampedByAvailability),
                (Some(r), _) => (r, TargetEndSource::Request),
                (None, Some(n)) => (n, TargetEndSource::LatestRelease),
                (None, None) => (
                    policy
                        .latest_available(Period::containing(kind, now), now, LOOKBACK)
                        .unwrap_or(ce),
                    TargetEndSource::DefaultToday,
                ),
            };
            d.target_end = Some(target.canonical());
            d.target_end_source = Some(source);
            if target > ce {
                d.action = SyncAction::Rematerialize;
                d.reason = "newer_release".into();
                d.message = format!(
                    "release {} is newer than the current {}: the dataset is rebuilt with it",
                    target.canonical(),
                    ce.canonical()
                );
                d.delta_start = Some(target.canonical());
                d.delta_end = Some(target.canonical());
            } else {
                d.reason = "up_to_date".into();
                d.message = format!("{} is the newest release", ce.canonical());
            }
        }
        SyncKind::Temporal => {
            let today = Period::containing(kind, now);
            let (wanted, source) = match requested_end {
                Some(r) => (r, TargetEndSource::Request),
                None => (today, TargetEndSource::DefaultToday),
            };
            // Future periods only when the policy allows them.
            let capped = if policy.allow_future || wanted <= today {
                wanted
            } else {
                today
            };
            let mut latest = policy.latest_available(capped, now, LOOKBACK);
            if policy.probe {
                latest = latest.zip(published).map(|(l, p)| l.min(p));
            }
            let (target, source) = match latest {
                Some(l) if l == wanted => (l, source),
                Some(l) => (
                    l,
                    match source {
                        TargetEndSource::Request => TargetEndSource::RequestClampedByAvailability,
                        _ => TargetEndSource::DefaultTodayClampedByAvailability,
                    },
                ),
                None => (ce, TargetEndSource::CurrentCoverage),
            };
            if target <= ce {
                d.target_end = Some(ce.canonical());
                d.target_end_source = Some(if target == ce {
                    source
                } else {
                    TargetEndSource::CurrentCoverage
                });
                d.reason = "up_to_date".into();
                d.message = format!(
                    "the dataset already covers {} to {}; nothing newer is published",
                    cs.canonical(),
                    ce.canonical()
                );
                return d;
            }
            d.target_end = Some(target.canonical());
            d.target_end_source = Some(source);
            d.reason = "new_periods".into();
            match spec.execution.unwrap_or(SyncExecution::Append) {
                SyncExecution::Append => {
                    d.action = SyncAction::Append;
                    d.delta_start = Some(ce.next().canonical());
                    d.message = format!(
                        "{} to {} are published: they are appended after {}",
                        ce.next().canonical(),
                        target.canonical(),
                        ce.canonical()
                    );
                }
                SyncExecution::Rematerialize => {
                    d.action = SyncAction::Rematerialize;
                    d.delta_start = Some(cs.canonical());
                    d.message = format!(
                        "the dataset is rebuilt from {} to {}",
                        cs.canonical(),
                        target.canonical()
                    );
                }
            }
            d.delta_end = Some(target.canonical());
        }
    }
    d
}

/// When the scheduler emits syncs of a dataset: as soon as new periods are published, or at
/// the occurrences of a cron expression (5 fields, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every scheduler tick, whenever the plan finds new periods.
    AsAvailable,
    /// At these times.
    Cron(Cron),
}

impl Schedule {
    /// The name of [`Schedule::AsAvailable`] in templates and the API.
    pub const AS_AVAILABLE: &'static str = "as_available";

    /// Parses `as_available` or a cron expression.
    ///
    /// # Errors
    /// [`CronError`] naming the bad field.
    pub fn parse(s: &str) -> Result<Self, CronError> {
        if s.trim() == Self::AS_AVAILABLE {
            Ok(Self::AsAvailable)
        } else {
            Cron::parse(s).map(Self::Cron)
        }
    }
}

/// A 5-field cron expression (`minute hour day-of-month month day-of-week`, UTC): each field
/// `*`, a value, a range `a-b`, a step `*/n` or `a-b/n`, or a comma list of those; day of week
/// 0–7 with 0 and 7 both Sunday. As in Vixie cron, when both day fields are restricted a day
/// matching either is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_any: bool,
    weekdays_any: bool,
}

/// Why a schedule is not `as_available` or a cron expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Not five fields.
    #[error(
        "'{0}' is neither 'as_available' nor a 5-field cron expression (minute hour day month weekday, e.g. '0 6 * * *')"
    )]
    Shape(String),
    /// One field is malformed or out of range.
    #[error("cron {field} field '{text}': {why}")]
    Field {
        /// `minute`, `hour`, `day-of-month`, `month` or `day-of-week`.
        field: &'static str,
        /// The field as written.
        text: String,
        /// What is wrong with it.
        why: String,
    },
}

fn cron_field(text: &str, name: &'static str, lo: u32, hi: u32) -> Result<(u64, bool), CronError> {
    let bad = |why: &str| CronError::Field {
        field: name,
        text: text.to_owned(),
        why: why.to_owned(),
    };
    let mut bits = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, st)) => (
                r,
                st.parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("the step must be a positive number"))?,
            ),
            None => (item, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = a.parse::<u32>().map_err(|_| bad("not a number"))?;
            let b = b.parse::<u32>().map_err(|_| bad("not a number"))?;
            (a, b)
        } else {
            let v = range.parse::<u32>().map_err(|_| bad("not a number"))?;
            (v, if step > 1 { hi } else { v })
        };
        if a < lo || b > hi || a > b {
            return Err(bad(&format!("values must be within {lo}-{hi}")));
        }
        for v in (a..=b).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok((bits, text == "*"))
}

impl Cron {
    /// Parses a 5-field expression.
    ///
    /// # Errors
    /// [`CronError`] naming the bad field.
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        let f: Vec<&str> = expr.split_whitespace().collect();
        if f.len() != 5 {
            return Err(CronError::Shape(expr.to_owned()));
        }
        let (minutes, _) = cron_field(f[0], "minute", 0, 59)?;
        let (hours, _) = cron_field(f[1], "hour", 0, 23)?;
        let (days, days_any) = cron_field(f[2], "day-of-month", 1, 31)?;
        let (months, _) = cron_field(f[3], "month", 1, 12)?;
        let (mut weekdays, weekdays_any) = cron_field(f[4], "day-of-week", 0, 7)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f;
        }
        Ok(Self {
            minutes,
            hours: u32::try_from(hours).unwrap_or(u32::MAX),
            days: u32::try_from(days).unwrap_or(u32::MAX),
            months: u16::try_from(months).unwrap_or(u16::MAX),
            weekdays: u8::try_from(weekdays).unwrap_or(u8::MAX),
            days_any,
            weekdays_any,
        })
    }

    /// Whether minute `t` (seconds ignored) is an occurrence.
    pub fn matches(&self, t: NaiveDateTime) -> bool {
        use chrono::Timelike;
        let day = self.days & (1 << t.day()) != 0;
        let weekday = self.weekdays & (1 << t.weekday().num_days_from_sunday()) != 0;
        let day_ok = match (self.days_any, self.weekdays_any) {
            (false, false) => day || weekday,
            _ => day && weekday,
        };
        self.minutes & (1 << t.minute()) != 0
            && self.hours & (1 << t.hour()) != 0
            && self.months & (1 << t.month()) != 0
            && day_ok
    }

    /// The newest occurrence at or before `t`, looking back at most a year and a day.
    pub fn latest_at_or_before(&self, t: NaiveDateTime) -> Option<NaiveDateTime> {
        use chrono::Timelike;
        let mut m = t.with_second(0)?.with_nanosecond(0)?;
        for _ in 0..(366 * 24 * 60) {
            if self.matches(m) {
                return Some(m);
            }
            m -= Duration::minutes(1);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").expect("time")
    }
    fn p(kind: PeriodType, s: &str) -> Period {
        Period::parse(kind, s).expect("period")
    }
    fn spec(kind: SyncKind, availability: Availability) -> SyncSpec {
        SyncSpec {
            kind,
            execution: None,
            availability: Some(availability),
            schedule: None,
        }
    }

    #[test]
    fn daily_data_is_published_once_the_day_has_ended_plus_the_lag() {
        let d = PeriodType::Daily;
        let none = Availability::default();
        assert!(none.is_available(&p(d, "2026-11-20"), at("2026-11-21T00:00")));
        assert!(!none.is_available(&p(d, "2026-11-21"), at("2026-11-21T23:59")));
        let lag = Availability {
            lag_days: Some(2),
            ..Availability::default()
        };
        assert!(!lag.is_available(&p(d, "2026-11-20"), at("2026-11-22T23:00")));
        assert!(lag.is_available(&p(d, "2026-11-20"), at("2026-11-23T00:00")));
        let hours = Availability {
            lag_hours: Some(120),
            ..Availability::default()
        };
        let h = PeriodType::Hourly;
        // The hour 2026-11-16T00 ends at 01:00; five days later is 2026-11-21T01:00.
        assert!(hours.is_available(&p(h, "2026-11-16T00"), at("2026-11-21T01:00")));
        assert!(!hours.is_available(&p(h, "2026-11-16T01"), at("2026-11-21T01:00")));
    }

    #[test]
    fn complete_months_are_published_on_their_day_of_the_next_month() {
        let policy = Availability {
            complete_month_after_day: Some(5),
            ..Availability::default()
        };
        let d = PeriodType::Daily;
        // Every day of October appears on 5 November, none before.
        assert!(!policy.is_available(&p(d, "2026-10-01"), at("2026-11-04T23:59")));
        assert!(policy.is_available(&p(d, "2026-10-31"), at("2026-11-05T00:00")));
        assert!(!policy.is_available(&p(d, "2026-11-01"), at("2026-11-21T00:00")));
        let latest = policy.latest_available(p(d, "2026-11-21"), at("2026-11-21T12:00"), 400);
        assert_eq!(latest, Some(p(d, "2026-10-31")));
        let m = PeriodType::Monthly;
        assert!(policy.is_available(&p(m, "2026-10"), at("2026-11-05T00:00")));
    }

    #[test]
    fn a_temporal_sync_appends_the_published_periods_and_says_why_it_stopped() {
        let d = PeriodType::Daily;
        let policy = Availability {
            lag_days: Some(2),
            ..Availability::default()
        };
        let s = spec(SyncKind::Temporal, policy);
        let current = (p(d, "2026-11-01"), p(d, "2026-11-10"));
        let now = at("2026-11-21T12:00");
        let plan_default = plan("chirps", &s, d, current, None, None, now);
        assert_eq!(plan_default.action, SyncAction::Append);
        assert_eq!(plan_default.delta_start.as_deref(), Some("2026-11-11"));
        assert_eq!(plan_default.delta_end.as_deref(), Some("2026-11-18"));
        assert_eq!(
            plan_default.target_end_source,
            Some(TargetEndSource::DefaultTodayClampedByAvailability)
        );
        let requested = plan(
            "chirps",
            &s,
            d,
            current,
            Some(p(d, "2026-11-15")),
            None,
            now,
        );
        assert_eq!(requested.target_end_source, Some(TargetEndSource::Request));
        assert_eq!(requested.delta_end.as_deref(), Some("2026-11-15"));
        let too_far = plan(
            "chirps",
            &s,
            d,
            current,
            Some(p(d, "2026-12-31")),
            None,
            now,
        );
        assert_eq!(
            too_far.target_end_source,
            Some(TargetEndSource::RequestClampedByAvailability)
        );
        assert_eq!(too_far.delta_end.as_deref(), Some("2026-11-18"));
        let current_now = (p(d, "2026-11-01"), p(d, "2026-11-18"));
        let done = plan("chirps", &s, d, current_now, None, None, now);
        assert_eq!(done.action, SyncAction::NoOp);
        assert_eq!(done.reason, "up_to_date");
        assert_eq!(done.delta_start, None);
        let rebuild = SyncSpec {
            execution: Some(SyncExecution::Rematerialize),
            ..s
        };
        let r = plan("chirps", &rebuild, d, current, None, None, now);
        assert_eq!(r.action, SyncAction::Rematerialize);
        assert_eq!(r.delta_start.as_deref(), Some("2026-11-01"));
    }

    #[test]
    fn release_syncs_rebuild_when_a_newer_year_is_out_and_static_ones_never_run() {
        let y = PeriodType::Yearly;
        let s = spec(
            SyncKind::Release,
            Availability {
                latest_year_offset: Some(-1),
                ..Availability::default()
            },
        );
        let now = at("2026-11-21T00:00");
        let r = plan(
            "worldpop",
            &s,
            y,
            (p(y, "2024"), p(y, "2024")),
            None,
            None,
            now,
        );
        assert_eq!(r.action, SyncAction::Rematerialize);
        assert_eq!(r.target_end.as_deref(), Some("2025"));
        assert_eq!(r.target_end_source, Some(TargetEndSource::LatestRelease));
        let same = plan(
            "worldpop",
            &s,
            y,
            (p(y, "2025"), p(y, "2025")),
            None,
            None,
            now,
        );
        assert_eq!(same.action, SyncAction::NoOp);
        let fixed = spec(
            SyncKind::Release,
            Availability {
                latest_year: Some(2030),
                allow_future: true,
                ..Availability::default()
            },
        );
        let f = plan(
            "worldpop",
            &fixed,
            y,
            (p(y, "2026"), p(y, "2026")),
            None,
            None,
            now,
        );
        assert_eq!(f.target_end.as_deref(), Some("2030"));
        let st = plan(
            "samples",
            &SyncSpec::default(),
            y,
            (p(y, "2026"), p(y, "2026")),
            None,
            None,
            now,
        );
        assert_eq!(st.action, SyncAction::NotSyncable);
    }

    #[test]
    fn future_periods_need_allow_future() {
        let y = PeriodType::Yearly;
        let now = at("2026-11-21T00:00");
        let closed = spec(SyncKind::Temporal, Availability::default());
        let c = plan(
            "t",
            &closed,
            y,
            (p(y, "2020"), p(y, "2024")),
            Some(p(y, "2030")),
            None,
            now,
        );
        assert_eq!(c.delta_end.as_deref(), Some("2025"), "{c:?}");
        let open = spec(
            SyncKind::Temporal,
            Availability {
                allow_future: true,
                latest_year: Some(2030),
                ..Availability::default()
            },
        );
        let o = plan(
            "t",
            &open,
            y,
            (p(y, "2020"), p(y, "2024")),
            Some(p(y, "2030")),
            None,
            now,
        );
        assert_eq!(o.delta_end.as_deref(), Some("2030"));
        assert_eq!(o.target_end_source, Some(TargetEndSource::Request));
    }

    #[test]
    fn conflicting_policy_fields_are_refused_by_name() {
        let both = Availability {
            lag_hours: Some(1),
            lag_days: Some(1),
            ..Availability::default()
        };
        assert_eq!(both.validate().map_err(|e| e.0), Err("lag_days"));
        let day = Availability {
            complete_month_after_day: Some(31),
            ..Availability::default()
        };
        assert_eq!(
            day.validate().map_err(|e| e.0),
            Err("complete_month_after_day")
        );
    }

    #[test]
    fn cron_expressions_parse_and_find_the_latest_occurrence() {
        let daily = Cron::parse("0 6 * * *").expect("cron");
        assert_eq!(
            daily.latest_at_or_before(at("2026-11-21T05:59")),
            Some(at("2026-11-20T06:00"))
        );
        assert_eq!(
            daily.latest_at_or_before(at("2026-11-21T06:00")),
            Some(at("2026-11-21T06:00"))
        );
        let quarter = Cron::parse("*/15 * * * *").expect("cron");
        assert_eq!(
            quarter.latest_at_or_before(at("2026-11-21T10:44")),
            Some(at("2026-11-21T10:30"))
        );
        // Day of month OR Sunday (both restricted), at 00:00.
        let either = Cron::parse("0 0 1 * 7").expect("cron");
        assert_eq!(
            either.latest_at_or_before(at("2026-11-21T12:00")),
            Some(at("2026-11-15T00:00")),
            "the latest Sunday beats the 1st"
        );
        let monthly = Cron::parse("30 2 5 1-12/3 *").expect("cron");
        assert!(monthly.matches(at("2026-10-05T02:30")));
        assert!(!monthly.matches(at("2026-11-05T02:30")));
        for bad in [
            "",
            "0 6 * *",
            "61 * * * *",
            "* 24 * * *",
            "*/0 * * * *",
            "a * * * *",
        ] {
            assert!(Cron::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Cron::parse("0 25 * * *")
                .err()
                .is_some_and(|e| e.to_string().contains("hour"))
        );
        assert_eq!(Schedule::parse("as_available"), Ok(Schedule::AsAvailable));
    }

    #[test]
    fn a_probe_stops_the_sync_at_what_the_provider_has() {
        let d = PeriodType::Daily;
        let s = spec(
            SyncKind::Temporal,
            Availability {
                probe: true,
                ..Availability::default()
            },
        );
        let now = at("2026-11-21T12:00");
        let current = (p(d, "2024-01-01"), p(d, "2024-01-03"));
        let r = plan(
            "chirps",
            &s,
            d,
            current,
            None,
            Some(p(d, "2024-01-05")),
            now,
        );
        assert_eq!(r.action, SyncAction::Append);
        assert_eq!(r.delta_end.as_deref(), Some("2024-01-05"));
        assert_eq!(
            r.target_end_source,
            Some(TargetEndSource::DefaultTodayClampedByAvailability)
        );
        let none = plan("chirps", &s, d, current, None, None, now);
        assert_eq!(none.action, SyncAction::NoOp);
        assert_eq!(none.reason, "up_to_date");
    }
}
