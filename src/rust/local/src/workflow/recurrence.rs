//! Recurrence schedules (the `Recurrence` trigger and polling triggers): parsing,
//! Windows time zones with their daylight-saving rules, and the next fire time.

use serde_json::Value;
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset, Weekday};

use super::expr::parse_local_timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
}

impl Frequency {
    fn parse(s: &str) -> Option<Frequency> {
        Some(match s.to_ascii_lowercase().as_str() {
            "second" => Frequency::Second,
            "minute" => Frequency::Minute,
            "hour" => Frequency::Hour,
            "day" => Frequency::Day,
            "week" => Frequency::Week,
            "month" => Frequency::Month,
            _ => return None,
        })
    }

    /// Azure's largest interval for each frequency.
    fn max_interval(self) -> i64 {
        match self {
            Frequency::Second => 9_999_999,
            Frequency::Minute => 72_000,
            Frequency::Hour => 12_000,
            Frequency::Day => 500,
            Frequency::Week => 71,
            Frequency::Month => 16,
        }
    }
}

/// Daylight-saving rules of the supported zones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dst {
    None,
    /// EU: last Sunday of March 01:00 UTC to last Sunday of October 01:00 UTC.
    Eu,
    /// US and Canada: second Sunday of March 02:00 local standard time to first
    /// Sunday of November 02:00 local daylight time.
    Us,
}

/// A Windows time zone: its id, standard offset (minutes east of UTC) and DST rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone {
    pub name: &'static str,
    standard_minutes: i32,
    dst: Dst,
}

/// The Windows zone ids accepted in `timeZone` (Azure accepts more; these are the
/// ones whose rules are implemented here).
const ZONES: &[(&str, i32, Dst)] = &[
    ("UTC", 0, Dst::None),
    ("Greenwich Standard Time", 0, Dst::None),
    ("GMT Standard Time", 0, Dst::Eu),
    ("W. Europe Standard Time", 60, Dst::Eu),
    ("Central Europe Standard Time", 60, Dst::Eu),
    ("Central European Standard Time", 60, Dst::Eu),
    ("Romance Standard Time", 60, Dst::Eu),
    ("GTB Standard Time", 120, Dst::Eu),
    ("E. Europe Standard Time", 120, Dst::Eu),
    ("FLE Standard Time", 120, Dst::Eu),
    ("South Africa Standard Time", 120, Dst::None),
    ("Russian Standard Time", 180, Dst::None),
    ("Arabian Standard Time", 240, Dst::None),
    ("India Standard Time", 330, Dst::None),
    ("SE Asia Standard Time", 420, Dst::None),
    ("China Standard Time", 480, Dst::None),
    ("Singapore Standard Time", 480, Dst::None),
    ("Tokyo Standard Time", 540, Dst::None),
    ("Korea Standard Time", 540, Dst::None),
    ("Atlantic Standard Time", -240, Dst::Us),
    ("Eastern Standard Time", -300, Dst::Us),
    ("Central Standard Time", -360, Dst::Us),
    ("Canada Central Standard Time", -360, Dst::None),
    ("Mountain Standard Time", -420, Dst::Us),
    ("US Mountain Standard Time", -420, Dst::None),
    ("Pacific Standard Time", -480, Dst::Us),
    ("Alaskan Standard Time", -540, Dst::Us),
    ("Hawaiian Standard Time", -600, Dst::None),
];

impl TimeZone {
    pub const UTC: TimeZone = TimeZone {
        name: "UTC",
        standard_minutes: 0,
        dst: Dst::None,
    };

    pub fn by_name(name: &str) -> Option<TimeZone> {
        ZONES
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(name.trim()))
            .map(|&(name, standard_minutes, dst)| TimeZone {
                name,
                standard_minutes,
                dst,
            })
    }

    pub fn supported_names() -> Vec<&'static str> {
        ZONES.iter().map(|z| z.0).collect()
    }

    fn standard(&self) -> UtcOffset {
        UtcOffset::from_whole_seconds(self.standard_minutes * 60).unwrap_or(UtcOffset::UTC)
    }

    fn daylight(&self) -> UtcOffset {
        UtcOffset::from_whole_seconds((self.standard_minutes + 60) * 60).unwrap_or(UtcOffset::UTC)
    }

    /// The zone's offset at an instant.
    pub fn offset_at(&self, t: OffsetDateTime) -> UtcOffset {
        let t = t.to_offset(UtcOffset::UTC);
        let year = t.year();
        let in_dst = match self.dst {
            Dst::None => false,
            Dst::Eu => {
                let start = utc_at(last_sunday(year, Month::March), 1);
                let end = utc_at(last_sunday(year, Month::October), 1);
                t >= start && t < end
            }
            Dst::Us => {
                // 02:00 standard time; the end is 02:00 daylight = 01:00 standard.
                let std = Duration::minutes(i64::from(self.standard_minutes));
                let start = utc_at(nth_sunday(year, Month::March, 2), 2) - std;
                let end = utc_at(nth_sunday(year, Month::November, 1), 1) - std;
                t >= start && t < end
            }
        };
        if in_dst {
            self.daylight()
        } else {
            self.standard()
        }
    }

    /// A local wall-clock time in this zone as an instant. A time skipped by the
    /// spring-forward gap moves forward by the gap; a repeated time takes its first
    /// (daylight) occurrence.
    pub fn to_utc(self, local: PrimitiveDateTime) -> OffsetDateTime {
        for offset in [self.daylight(), self.standard()] {
            if self.dst == Dst::None && offset != self.standard() {
                continue;
            }
            let t = local.assume_offset(offset);
            if self.offset_at(t) == offset {
                return t.to_offset(UtcOffset::UTC);
            }
        }
        local
            .assume_offset(self.standard())
            .to_offset(UtcOffset::UTC)
    }

    pub fn to_local(self, t: OffsetDateTime) -> PrimitiveDateTime {
        let local = t.to_offset(self.offset_at(t));
        PrimitiveDateTime::new(local.date(), local.time())
    }
}

fn utc_at(date: Date, hour: u8) -> OffsetDateTime {
    PrimitiveDateTime::new(date, Time::from_hms(hour, 0, 0).unwrap_or(Time::MIDNIGHT)).assume_utc()
}

fn last_sunday(year: i32, month: Month) -> Date {
    let days = month.length(year);
    let mut d = Date::from_calendar_date(year, month, days).unwrap_or(Date::MIN);
    while d.weekday() != Weekday::Sunday {
        d = d.previous_day().unwrap_or(d);
    }
    d
}

fn nth_sunday(year: i32, month: Month, n: u8) -> Date {
    let mut d = Date::from_calendar_date(year, month, 1).unwrap_or(Date::MIN);
    while d.weekday() != Weekday::Sunday {
        d = d.next_day().unwrap_or(d);
    }
    d + Duration::weeks(i64::from(n.saturating_sub(1)))
}

/// The start of a recurrence: a wall-clock time in the zone, or an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Local(PrimitiveDateTime),
    Instant(OffsetDateTime),
}

/// A parsed `recurrence` object.
#[derive(Debug, Clone, PartialEq)]
pub struct Recurrence {
    pub frequency: Frequency,
    pub interval: i64,
    pub zone: TimeZone,
    start: Option<Start>,
    hours: Vec<u8>,
    minutes: Vec<u8>,
    week_days: Vec<Weekday>,
    month_days: Vec<u8>,
}

fn int_list(
    v: &Value,
    what: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Vec<u8>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) if !items.is_empty() => {
            let mut out = Vec::new();
            for i in items {
                match i.as_i64() {
                    Some(n) if range.contains(&n) => out.push(n as u8),
                    _ => {
                        return Err(format!(
                            "The recurrence schedule '{what}' value '{i}' is not valid: each must be an integer from {} to {}.",
                            range.start(),
                            range.end()
                        ))
                    }
                }
            }
            out.sort_unstable();
            out.dedup();
            Ok(out)
        }
        _ => Err(format!(
            "The recurrence schedule '{what}' must be a non-empty array of integers."
        )),
    }
}

impl Recurrence {
    /// Parses and checks a `recurrence` object as Azure does when a workflow is saved.
    pub fn parse(v: &Value) -> Result<Recurrence, String> {
        let Some(obj) = v.as_object() else {
            return Err("The trigger 'recurrence' must be an object.".into());
        };
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "frequency" | "interval" | "startTime" | "timeZone" | "schedule" | "endTime"
            ) {
                return Err(format!("The recurrence property '{key}' is not supported."));
            }
        }
        if obj.contains_key("endTime") {
            return Err("The recurrence 'endTime' is not supported by the local Azure.".into());
        }
        let frequency = match &v["frequency"] {
            Value::String(s) => Frequency::parse(s).ok_or_else(|| {
                format!("The recurrence frequency '{s}' is not valid. Use Second, Minute, Hour, Day, Week or Month.")
            })?,
            _ => return Err("The recurrence 'frequency' is required.".into()),
        };
        let interval = match &v["interval"] {
            Value::Number(n) => n.as_i64().unwrap_or(0),
            Value::Null => return Err("The recurrence 'interval' is required.".into()),
            other => other.as_str().and_then(|s| s.parse().ok()).unwrap_or(0),
        };
        if !(1..=frequency.max_interval()).contains(&interval) {
            return Err(format!(
                "The recurrence interval '{}' is not valid for frequency '{frequency:?}': it must be from 1 to {}.",
                v["interval"],
                frequency.max_interval()
            ));
        }
        let zone = match &v["timeZone"] {
            Value::Null => TimeZone::UTC,
            Value::String(s) => TimeZone::by_name(s).ok_or_else(|| {
                format!(
                    "The recurrence time zone '{s}' is not supported. Supported Windows time zone ids: {}.",
                    TimeZone::supported_names().join(", ")
                )
            })?,
            _ => return Err("The recurrence 'timeZone' must be a string.".into()),
        };
        let start = match &v["startTime"] {
            Value::Null => None,
            Value::String(s) => {
                let (local, offset) = parse_local_timestamp(s).ok_or_else(|| {
                    format!(
                        "The recurrence start time '{s}' is not a valid ISO 8601 date and time."
                    )
                })?;
                Some(match offset {
                    Some(o) => Start::Instant(local.assume_offset(o)),
                    None => Start::Local(local),
                })
            }
            _ => return Err("The recurrence 'startTime' must be a string.".into()),
        };
        let schedule = &v["schedule"];
        if !schedule.is_null() && !schedule.is_object() {
            return Err("The recurrence 'schedule' must be an object.".into());
        }
        if let Some(s) = schedule.as_object() {
            for key in s.keys() {
                if !matches!(key.as_str(), "hours" | "minutes" | "weekDays" | "monthDays") {
                    return Err(format!(
                        "The recurrence schedule property '{key}' is not supported."
                    ));
                }
            }
        }
        let hours = int_list(&schedule["hours"], "hours", 0..=23)?;
        let minutes = int_list(&schedule["minutes"], "minutes", 0..=59)?;
        let month_days = int_list(&schedule["monthDays"], "monthDays", 1..=31)?;
        let week_days = match &schedule["weekDays"] {
            Value::Null => Vec::new(),
            Value::Array(items) if !items.is_empty() => {
                let mut out = Vec::new();
                for i in items {
                    let day = match i.as_str().map(str::to_ascii_lowercase).as_deref() {
                        Some("monday") => Weekday::Monday,
                        Some("tuesday") => Weekday::Tuesday,
                        Some("wednesday") => Weekday::Wednesday,
                        Some("thursday") => Weekday::Thursday,
                        Some("friday") => Weekday::Friday,
                        Some("saturday") => Weekday::Saturday,
                        Some("sunday") => Weekday::Sunday,
                        _ => {
                            return Err(format!(
                                "The recurrence schedule weekDays value '{i}' is not a day name (Monday ... Sunday)."
                            ))
                        }
                    };
                    if !out.contains(&day) {
                        out.push(day);
                    }
                }
                out
            }
            _ => {
                return Err("The recurrence schedule 'weekDays' must be a non-empty array.".into())
            }
        };
        // The Recurrence reference ("Schedule and run recurring workflows", schedule
        // properties): hours and minutes apply only to Day and Week; a Month runs at
        // its startTime's time of day.
        let timed = matches!(frequency, Frequency::Day | Frequency::Week);
        if (!hours.is_empty() || !minutes.is_empty()) && !timed {
            return Err(format!(
                "The recurrence schedule 'hours' and 'minutes' are only valid when the frequency is Day or Week, not '{frequency:?}'."
            ));
        }
        if !week_days.is_empty() && frequency != Frequency::Week {
            return Err(
                "The recurrence schedule 'weekDays' is only valid when the frequency is Week."
                    .into(),
            );
        }
        if !month_days.is_empty() && frequency != Frequency::Month {
            return Err(
                "The recurrence schedule 'monthDays' is only valid when the frequency is Month."
                    .into(),
            );
        }
        // timeZone "applies only when you specify a start time" (same reference):
        // without one, the schedule's hours are UTC.
        let zone = if start.is_some() { zone } else { TimeZone::UTC };
        Ok(Recurrence {
            frequency,
            interval,
            zone,
            start,
            hours,
            minutes,
            week_days,
            month_days,
        })
    }

    fn has_schedule(&self) -> bool {
        !(self.hours.is_empty()
            && self.minutes.is_empty()
            && self.week_days.is_empty()
            && self.month_days.is_empty())
    }

    /// True when Azure fires at once on save: no start time and no schedule.
    pub fn fires_on_save(&self) -> bool {
        self.start.is_none() && !self.has_schedule()
    }

    /// The first occurrence strictly after `after`. `saved` anchors a recurrence
    /// without a start time: it counts from the save, truncated to the whole second
    /// (Second) or minute (the rest), so "every minute" fires on minute boundaries.
    pub fn next_after(
        &self,
        saved: OffsetDateTime,
        after: OffsetDateTime,
    ) -> Option<OffsetDateTime> {
        let anchor_utc = match self.start {
            Some(Start::Instant(t)) => t.to_offset(UtcOffset::UTC),
            Some(Start::Local(l)) => self.zone.to_utc(l),
            None => {
                let s = saved.to_offset(UtcOffset::UTC);
                let t = s.replace_nanosecond(0).unwrap_or(s);
                if self.frequency == Frequency::Second {
                    t
                } else {
                    t.replace_second(0).unwrap_or(t)
                }
            }
        };
        let step = match self.frequency {
            Frequency::Second => Some(Duration::seconds(self.interval)),
            Frequency::Minute => Some(Duration::minutes(self.interval)),
            Frequency::Hour => Some(Duration::hours(self.interval)),
            _ => None,
        };
        if let Some(step) = step {
            if after < anchor_utc {
                return Some(anchor_utc);
            }
            let elapsed = (after - anchor_utc).whole_seconds();
            let k = elapsed / step.whole_seconds().max(1) + 1;
            return anchor_utc.checked_add(step.checked_mul(i32::try_from(k).ok()?)?);
        }
        // Day, Week, Month: counted on the zone's calendar, so a daily 02:00 stays at
        // 02:00 local time across daylight-saving changes.
        let anchor = self.zone.to_local(anchor_utc);
        let hours: Vec<u8> = if self.hours.is_empty() {
            vec![anchor.hour()]
        } else {
            self.hours.clone()
        };
        let minutes: Vec<u8> = if self.minutes.is_empty() {
            vec![anchor.minute()]
        } else {
            self.minutes.clone()
        };
        let second = if self.has_schedule() {
            0
        } else {
            anchor.second()
        };
        let from = if after < anchor_utc {
            anchor_utc - Duration::seconds(1)
        } else {
            after
        };
        let mut day = self.zone.to_local(from).date();
        // Long enough for the largest intervals (16 months, 71 weeks, 500 days).
        for _ in 0..1200 {
            if self.day_qualifies(anchor.date(), day) {
                for &h in &hours {
                    for &m in &minutes {
                        let Ok(t) = Time::from_hms(h, m, second) else {
                            continue;
                        };
                        let at = self.zone.to_utc(PrimitiveDateTime::new(day, t));
                        if at > from && at >= anchor_utc {
                            return Some(at);
                        }
                    }
                }
            }
            day = day.next_day()?;
        }
        None
    }

    fn day_qualifies(&self, anchor: Date, day: Date) -> bool {
        if day < anchor {
            return false;
        }
        match self.frequency {
            Frequency::Day => (day - anchor).whole_days() % self.interval == 0,
            Frequency::Week => {
                let monday =
                    |d: Date| d - Duration::days(i64::from(d.weekday().number_days_from_monday()));
                let weeks = (monday(day) - monday(anchor)).whole_weeks();
                let days = if self.week_days.is_empty() {
                    vec![anchor.weekday()]
                } else {
                    self.week_days.clone()
                };
                weeks % self.interval == 0 && days.contains(&day.weekday())
            }
            Frequency::Month => {
                let months = (i64::from(day.year()) - i64::from(anchor.year())) * 12
                    + i64::from(u8::from(day.month()))
                    - i64::from(u8::from(anchor.month()));
                let days = if self.month_days.is_empty() {
                    vec![anchor.day()]
                } else {
                    self.month_days.clone()
                };
                months % self.interval == 0 && days.contains(&day.day())
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> OffsetDateTime {
        super::super::expr::parse_timestamp(s).unwrap()
    }

    fn next(r: &Value, saved: &str, after: &str) -> String {
        let r = Recurrence::parse(r).unwrap();
        crate::util::rfc3339(r.next_after(ts(saved), ts(after)).unwrap())
    }

    #[test]
    fn zones_and_dst() {
        let we = TimeZone::by_name("W. Europe Standard Time").unwrap();
        assert_eq!(we.offset_at(ts("2025-01-15T12:00:00Z")).whole_hours(), 1);
        assert_eq!(we.offset_at(ts("2025-07-15T12:00:00Z")).whole_hours(), 2);
        // EU switch: 2025-03-30 01:00 UTC.
        assert_eq!(we.offset_at(ts("2025-03-30T00:59:59Z")).whole_hours(), 1);
        assert_eq!(we.offset_at(ts("2025-03-30T01:00:00Z")).whole_hours(), 2);
        let gmt = TimeZone::by_name("gmt standard time").unwrap();
        assert_eq!(gmt.offset_at(ts("2025-10-26T00:59:00Z")).whole_hours(), 1);
        assert_eq!(gmt.offset_at(ts("2025-10-26T01:00:00Z")).whole_hours(), 0);
        // US switch: 2025-03-09 02:00 EST = 07:00 UTC; back 2025-11-02 02:00 EDT = 06:00 UTC.
        let east = TimeZone::by_name("Eastern Standard Time").unwrap();
        assert_eq!(east.offset_at(ts("2025-03-09T06:59:00Z")).whole_hours(), -5);
        assert_eq!(east.offset_at(ts("2025-03-09T07:00:00Z")).whole_hours(), -4);
        assert_eq!(east.offset_at(ts("2025-11-02T05:59:00Z")).whole_hours(), -4);
        assert_eq!(east.offset_at(ts("2025-11-02T06:00:00Z")).whole_hours(), -5);
        let pacific = TimeZone::by_name("Pacific Standard Time").unwrap();
        assert_eq!(
            pacific.offset_at(ts("2025-07-01T00:00:00Z")).whole_hours(),
            -7
        );
        let central = TimeZone::by_name("Central Standard Time").unwrap();
        assert_eq!(
            central.offset_at(ts("2025-01-01T00:00:00Z")).whole_hours(),
            -6
        );
        let tokyo = TimeZone::by_name("Tokyo Standard Time").unwrap();
        assert_eq!(tokyo.offset_at(ts("2025-07-01T00:00:00Z")).whole_hours(), 9);
        assert!(TimeZone::by_name("Mars Standard Time").is_none());
        // Local 02:30 on the US spring-forward day does not exist: it moves to 03:30 EDT.
        let (gap, _) = parse_local_timestamp("2025-03-09T02:30:00").unwrap();
        assert_eq!(
            crate::util::rfc3339(east.to_utc(gap)),
            "2025-03-09T07:30:00Z"
        );
        // Local 01:30 on the fall-back day happens twice: the first (EDT) is taken.
        let (twice, _) = parse_local_timestamp("2025-11-02T01:30:00").unwrap();
        assert_eq!(
            crate::util::rfc3339(east.to_utc(twice)),
            "2025-11-02T05:30:00Z"
        );
    }

    #[test]
    fn minute_recurrence_fires_on_boundaries() {
        let r = json!({"frequency": "Minute", "interval": 1});
        assert!(Recurrence::parse(&r).unwrap().fires_on_save());
        assert_eq!(
            next(&r, "2025-05-05T10:00:37.5Z", "2025-05-05T10:00:37.5Z"),
            "2025-05-05T10:01:00Z"
        );
        assert_eq!(
            next(&r, "2025-05-05T10:00:37Z", "2025-05-05T10:01:00Z"),
            "2025-05-05T10:02:00Z"
        );
        let r = json!({"frequency": "Second", "interval": 2});
        assert_eq!(
            next(&r, "2025-05-05T10:00:37.5Z", "2025-05-05T10:00:38Z"),
            "2025-05-05T10:00:39Z"
        );
        let r = json!({"frequency": "Hour", "interval": 3, "startTime": "2025-01-01T00:30:00Z"});
        assert_eq!(
            next(&r, "2025-05-05T10:00:00Z", "2025-05-05T10:00:00Z"),
            "2025-05-05T12:30:00Z"
        );
        // A future start is the first fire.
        assert_eq!(
            next(&r, "2024-05-05T10:00:00Z", "2024-05-05T10:00:00Z"),
            "2025-01-01T00:30:00Z"
        );
    }

    #[test]
    fn daily_schedule_in_a_zone_keeps_local_time() {
        let r = json!({"frequency": "Day", "interval": 1, "timeZone": "W. Europe Standard Time",
            "startTime": "2025-01-01T02:00:00", "schedule": {"hours": [2], "minutes": [0]}});
        assert!(!Recurrence::parse(&r).unwrap().fires_on_save());
        // Winter: 02:00 CET = 01:00 UTC; summer: 02:00 CEST = 00:00 UTC.
        assert_eq!(
            next(&r, "2025-01-10T00:00:00Z", "2025-01-10T00:00:00Z"),
            "2025-01-10T01:00:00Z"
        );
        assert_eq!(
            next(&r, "2025-01-10T00:00:00Z", "2025-07-10T03:00:00Z"),
            "2025-07-11T00:00:00Z"
        );
        let r = json!({"frequency": "Day", "interval": 2, "startTime": "2025-01-01T06:15:00Z"});
        assert_eq!(
            next(&r, "2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z"),
            "2025-01-03T06:15:00Z"
        );
    }

    #[test]
    fn weekly_and_monthly_schedules() {
        let r = json!({"frequency": "Week", "interval": 1, "timeZone": "Eastern Standard Time",
            "startTime": "2000-01-01T00:00:00",
            "schedule": {"weekDays": ["Monday", "Friday"], "hours": [9], "minutes": [30]}});
        // 2025-05-07 is a Wednesday; next is Friday 09:30 EDT = 13:30 UTC.
        assert_eq!(
            next(&r, "2025-05-07T12:00:00Z", "2025-05-07T12:00:00Z"),
            "2025-05-09T13:30:00Z"
        );
        // Monthly: on its days, at the time of day of its start.
        let r = json!({"frequency": "Month", "interval": 1, "timeZone": "Tokyo Standard Time",
            "startTime": "2000-01-01T09:00:00", "schedule": {"monthDays": [1, 15]}});
        assert_eq!(
            next(&r, "2025-05-07T12:00:00Z", "2025-05-07T12:00:00Z"),
            "2025-05-15T00:00:00Z"
        );
        assert_eq!(
            next(&r, "2025-05-07T12:00:00Z", "2025-05-15T00:00:00Z"),
            "2025-06-01T00:00:00Z"
        );
    }

    #[test]
    fn a_time_zone_without_a_start_time_is_not_applied() {
        // The reference: timeZone applies only with startTime; 09:30 is then UTC.
        let r = json!({"frequency": "Week", "interval": 1, "timeZone": "Eastern Standard Time",
            "schedule": {"weekDays": ["Monday", "Friday"], "hours": [9], "minutes": [30]}});
        assert_eq!(
            next(&r, "2025-05-07T12:00:00Z", "2025-05-07T12:00:00Z"),
            "2025-05-09T09:30:00Z"
        );
    }

    #[test]
    fn invalid_recurrences() {
        for (r, needle) in [
            (
                json!({"frequency": "Fortnight", "interval": 1}),
                "frequency",
            ),
            (json!({"frequency": "Day"}), "interval"),
            (json!({"frequency": "Month", "interval": 17}), "1 to 16"),
            (
                json!({"frequency": "Minute", "interval": 1, "schedule": {"hours": [1]}}),
                "only valid",
            ),
            (
                json!({"frequency": "Month", "interval": 1, "schedule": {"monthDays": [1], "hours": [3], "minutes": [0]}}),
                "Day or Week",
            ),
            (
                json!({"frequency": "Day", "interval": 1, "schedule": {"weekDays": ["Monday"]}}),
                "Week",
            ),
            (
                json!({"frequency": "Day", "interval": 1, "schedule": {"hours": [24]}}),
                "0 to 23",
            ),
            (
                json!({"frequency": "Day", "interval": 1, "timeZone": "Mars"}),
                "time zone",
            ),
            (
                json!({"frequency": "Day", "interval": 1, "startTime": "soon"}),
                "start time",
            ),
            (
                json!({"frequency": "Day", "interval": 1, "bogus": 1}),
                "bogus",
            ),
        ] {
            let e = Recurrence::parse(&r).unwrap_err();
            assert!(e.contains(needle), "{r}: {e}");
        }
    }
}
