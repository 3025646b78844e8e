//! Cron lines to the `recurrence` of a Logic App's Recurrence trigger
//! (workflow definition language, api-version 2019-05-01).
//!
//! The conversion is exact or it is refused: a scoring schedule that runs at other
//! instants than the user wrote is worse than an error.
//!
//! What a Recurrence does, and what the conversion relies on:
//! - `timeZone` applies only with a `startTime` (the Recurrence reference, "Schedule
//!   and run recurring workflows with the Recurrence trigger"), so every Recurrence
//!   written here has one, local and in the past (`2000-01-01T..`).
//! - `frequency` Day or Week with a `schedule`: on each firing day it runs at every
//!   `hours` × `minutes` combination, in local time of `timeZone`. Both lists are
//!   always written: a missing one would be taken from `startTime`. Week runs on
//!   `weekDays`.
//! - `frequency` Month runs on `monthDays` (1-31; a month without that day skips
//!   it, as cron does) at the time of day of `startTime`: the reference gives
//!   `hours` and `minutes` to Day and Week only. So a monthly cron must name one
//!   hour and one minute.
//! - `frequency` Minute (or Hour) with `interval` n runs every n minutes (hours)
//!   counted from `startTime`. A start at minute r of a whole hour in the past
//!   (`2000-01-01T00:r:00`) gives r, r+n, … each hour when n divides 60; so Minute
//!   is used only for minute sets of that shape, and Hour only with interval 1.
//!   Hour steps (`0 */6 * * *`) become a Day schedule instead: counting hours from
//!   a start drifts by one across a daylight saving change, wall-clock hours do not.
//! - There is no month-of-year schedule, and day-of-month and day-of-week cannot be
//!   combined; cron lines that need either are refused.

use super::cron::{self, Bits, Cron, FieldKind};
pub use super::time_zone::{known_time_zones, windows_time_zone};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// How often a Recurrence counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frequency {
    Minute,
    Hour,
    Day,
    Week,
    Month,
}

/// A day of the week, as Logic Apps spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WeekDay {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl WeekDay {
    /// Monday first, as the schedule lists them.
    pub const ALL: [WeekDay; 7] = [
        WeekDay::Monday,
        WeekDay::Tuesday,
        WeekDay::Wednesday,
        WeekDay::Thursday,
        WeekDay::Friday,
        WeekDay::Saturday,
        WeekDay::Sunday,
    ];

    /// Cron's number for the day (Sunday is 0).
    pub fn cron_number(self) -> u32 {
        match self {
            WeekDay::Sunday => 0,
            other => other as u32 + 1,
        }
    }
}

/// The `schedule` of a Recurrence; empty lists are left out of the JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub week_days: Vec<WeekDay>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub month_days: Vec<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hours: Vec<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub minutes: Vec<u8>,
}

/// The `recurrence` object of a Recurrence trigger; serializes to its JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recurrence {
    pub frequency: Frequency,
    pub interval: u32,
    /// A Windows time zone name (`"W. Europe Standard Time"`).
    pub time_zone: String,
    /// Local time without offset (`"2000-01-01T00:00:00"`), read in `time_zone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
}

/// Which days a cron line runs on, once it is known to be expressible.
enum Days {
    Every,
    /// Cron numbers, Sunday = 0.
    Week(Bits),
    Month(Bits),
}

/// Converts a five-field cron line, read in `time_zone` (an IANA name), into a
/// Recurrence that fires at exactly the same instants, or refuses with an `Input`
/// error that names the field and says why.
pub fn cron_to_recurrence(cron: &str, time_zone: &str) -> Result<Recurrence> {
    let parsed = cron::parse(cron)?;
    let time_zone = windows_time_zone(time_zone)?.to_string();
    let refuse = |why: String| Error::input(format!("cron `{}`: {why}", cron.trim()));

    let month = parsed.field(FieldKind::Month);
    if month.bits != FieldKind::Month.full() {
        return Err(refuse(format!(
            "month `{}` is restricted; a Recurrence has no month-of-year schedule \
             (it runs in every month)",
            parsed.text(FieldKind::Month)
        )));
    }
    let days = days(&parsed).map_err(refuse)?;

    let minutes = parsed.field(FieldKind::Minute).bits;
    let hours = parsed.field(FieldKind::Hour).bits;
    if matches!(days, Days::Every) && hours == FieldKind::Hour.full() {
        if let Some((step, first)) = residue_class(minutes) {
            // Counting from a whole hour: r, r+n, … every hour, the cron's minutes.
            let frequency = if step == 60 {
                Frequency::Hour
            } else {
                Frequency::Minute
            };
            return Ok(Recurrence {
                frequency,
                interval: if step == 60 { 1 } else { step },
                time_zone,
                start_time: Some(format!("2000-01-01T00:{first:02}:00")),
                schedule: None,
            });
        }
    }
    let mut schedule = Schedule {
        hours: values(hours),
        minutes: values(minutes),
        ..Schedule::default()
    };
    let mut start_time = "2000-01-01T00:00:00".to_string();
    let frequency = match days {
        Days::Every => Frequency::Day,
        Days::Week(week_days) => {
            schedule.week_days = WeekDay::ALL
                .into_iter()
                .filter(|d| week_days & (1 << d.cron_number()) != 0)
                .collect();
            Frequency::Week
        }
        Days::Month(month_days) => {
            let (&[hour], &[minute]) = (schedule.hours.as_slice(), schedule.minutes.as_slice())
            else {
                return Err(refuse(format!(
                    "a monthly Recurrence runs at one time of day (its start time's: its \
                     schedule takes no hours or minutes), so hour `{}` and minute `{}` must \
                     each be one value; use one schedule per time of day",
                    parsed.text(FieldKind::Hour),
                    parsed.text(FieldKind::Minute)
                )));
            };
            start_time = format!("2000-01-01T{hour:02}:{minute:02}:00");
            schedule = Schedule {
                month_days: values(month_days),
                ..Schedule::default()
            };
            Frequency::Month
        }
    };
    Ok(Recurrence {
        frequency,
        interval: 1,
        time_zone,
        start_time: Some(start_time),
        schedule: Some(schedule),
    })
}

/// The days a cron line runs on, or why a Recurrence cannot say so.
///
/// Cron runs on a day when day-of-month AND day-of-week match if either field
/// starts with `*`, and when either matches otherwise. Crons disagree on whether
/// `*/2` counts as `*`, so a restricted field is only combined with a full one
/// written with `*`, where every cron agrees.
fn days(cron: &Cron) -> std::result::Result<Days, String> {
    let dom = cron.field(FieldKind::DayOfMonth);
    let dow = cron.field(FieldKind::DayOfWeek);
    let dom_full = dom.bits == FieldKind::DayOfMonth.full();
    let dow_full = dow.bits == FieldKind::DayOfWeek.full();
    let both = format!(
        "day-of-month `{}` and day-of-week `{}`",
        cron.text(FieldKind::DayOfMonth),
        cron.text(FieldKind::DayOfWeek)
    );
    let either = !dom.star && !dow.star;
    match (dom_full, dow_full) {
        (true, true) => Ok(Days::Every),
        (true, false) if dom.star => Ok(Days::Week(dow.bits)),
        (false, true) if dow.star => Ok(Days::Month(dom.bits)),
        (false, false) if either => Err(format!(
            "{both} both restricted (cron fires when either matches); a Recurrence \
             cannot express that"
        )),
        (false, false) => Err(format!(
            "{both} both restricted (crons disagree whether both or either must match \
             when one starts with `*`); a Recurrence cannot express that"
        )),
        _ if either => Err(format!(
            "{both} are both given (not `*`), so cron fires when either matches, that \
             is every day; write `*` for the field you do not mean to restrict"
        )),
        _ => Err(format!(
            "{both}: crons disagree whether both or either must match when one starts \
             with `*`; write `*` for the field you do not mean to restrict"
        )),
    }
}

/// `Some((n, r))` when the minutes are exactly r, r+n, r+2n, … for an n that
/// divides 60 (the smallest such n); n = 60 is a single minute.
fn residue_class(minutes: Bits) -> Option<(u32, u32)> {
    let first = minutes.trailing_zeros();
    [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60]
        .into_iter()
        .find(|&step| {
            let class = (first..60)
                .step_by(step as usize)
                .fold(0, |b, m| b | (1 << m));
            // `first` is the smallest minute, so a class must start there.
            first < step && class == minutes
        })
        .map(|step| (step, first))
}

/// The set's values in ascending order.
fn values(bits: Bits) -> Vec<u8> {
    (0..64u8).filter(|v| bits & (1 << v) != 0).collect()
}

#[cfg(test)]
#[path = "recurrence_tests.rs"]
mod tests;
