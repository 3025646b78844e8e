//! Tests of cron → Recurrence: exact JSON for a few lines, refusals, and a property
//! test that walks the year 2027 and compares the instants cron and the Recurrence
//! fire at. Both evaluators below are written from the semantics alone (cron's
//! rules; the Recurrence rules in the module docs), not from the converter.

use super::*;
use crate::logic::cron::Bits;
use crate::ErrorKind;
use proptest::prelude::*;
use time::{macros::format_description, Date, Month, PrimitiveDateTime, Time, Weekday};

// ---- evaluators -------------------------------------------------------------

/// A cron line as sets, the way cron evaluates it.
#[derive(Debug, Clone, Copy)]
struct Sets {
    minutes: Bits,
    hours: Bits,
    dom: Bits,
    months: Bits,
    /// Sunday = 0 (7 already folded in).
    dow: Bits,
    dom_star: bool,
    dow_star: bool,
}

impl Sets {
    fn parsed(line: &str) -> Sets {
        let c = cron::parse(line).unwrap();
        let f = |k| c.field(k);
        Sets {
            minutes: f(FieldKind::Minute).bits,
            hours: f(FieldKind::Hour).bits,
            dom: f(FieldKind::DayOfMonth).bits,
            months: f(FieldKind::Month).bits,
            dow: f(FieldKind::DayOfWeek).bits,
            dom_star: f(FieldKind::DayOfMonth).star,
            dow_star: f(FieldKind::DayOfWeek).star,
        }
    }
}

fn has(bits: Bits, v: u32) -> bool {
    bits & (1 << v) != 0
}

/// Minutes of `day` (0..1440) at which cron fires: Vixie cron's rules, where
/// day-of-month and day-of-week must both match if either field starts with `*`,
/// and either may match otherwise.
fn cron_day(s: &Sets, day: Date) -> Vec<u16> {
    let dom = has(s.dom, u32::from(day.day()));
    let dow = has(s.dow, u32::from(day.weekday().number_days_from_sunday()));
    let day_ok = if s.dom_star || s.dow_star {
        dom && dow
    } else {
        dom || dow
    };
    if !day_ok || !has(s.months, u32::from(u8::from(day.month()))) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for h in (0..24).filter(|&h| has(s.hours, h)) {
        for m in (0..60).filter(|&m| has(s.minutes, m)) {
            out.push((h * 60 + m) as u16);
        }
    }
    out
}

fn week_day(day: Date) -> WeekDay {
    match day.weekday() {
        Weekday::Monday => WeekDay::Monday,
        Weekday::Tuesday => WeekDay::Tuesday,
        Weekday::Wednesday => WeekDay::Wednesday,
        Weekday::Thursday => WeekDay::Thursday,
        Weekday::Friday => WeekDay::Friday,
        Weekday::Saturday => WeekDay::Saturday,
        Weekday::Sunday => WeekDay::Sunday,
    }
}

/// Minutes of `day` at which the Recurrence fires, by the rules in the module
/// docs. Shapes the converter never writes fail the test rather than guess.
fn recurrence_day(r: &Recurrence, day: Date) -> Vec<u16> {
    assert!(r.interval >= 1, "{r:?}");
    match r.frequency {
        Frequency::Minute | Frequency::Hour => {
            assert!(r.schedule.is_none(), "{r:?}");
            let unit = if r.frequency == Frequency::Minute {
                1
            } else {
                60
            };
            let step = i64::from(r.interval) * unit;
            let start = r.start_time.as_deref().expect("startTime");
            let start = PrimitiveDateTime::parse(
                start,
                format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
            )
            .unwrap();
            assert_eq!(start.second(), 0, "{r:?}");
            let offset = (PrimitiveDateTime::new(day, Time::MIDNIGHT) - start).whole_minutes();
            assert!(offset >= 0, "startTime after {day}");
            let first = (-offset).rem_euclid(step);
            (first..1440)
                .step_by(step as usize)
                .map(|m| m as u16)
                .collect()
        }
        Frequency::Day | Frequency::Week | Frequency::Month => {
            assert_eq!(r.interval, 1, "{r:?}");
            // timeZone applies only with a start time; a past one, at the day's start
            // (Day, Week) or at the monthly run's time of day (Month).
            let start = r.start_time.as_deref().expect("startTime");
            let start = PrimitiveDateTime::parse(
                start,
                format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
            )
            .unwrap();
            assert!(start.date() < day && start.second() == 0, "{r:?}");
            let mut s = r.schedule.clone().expect("schedule");
            if r.frequency == Frequency::Month {
                assert!(s.hours.is_empty() && s.minutes.is_empty(), "{r:?}");
                (s.hours, s.minutes) = (vec![start.hour()], vec![start.minute()]);
            } else {
                assert_eq!(start.time(), Time::MIDNIGHT, "{r:?}");
                assert!(!s.hours.is_empty() && !s.minutes.is_empty(), "{r:?}");
            }
            let fires = match r.frequency {
                Frequency::Day => {
                    assert!(s.week_days.is_empty() && s.month_days.is_empty(), "{r:?}");
                    true
                }
                Frequency::Week => {
                    assert!(s.month_days.is_empty() && !s.week_days.is_empty(), "{r:?}");
                    s.week_days.contains(&week_day(day))
                }
                _ => {
                    assert!(s.week_days.is_empty() && !s.month_days.is_empty(), "{r:?}");
                    assert!(s.month_days.iter().all(|d| (1..=31).contains(d)), "{r:?}");
                    s.month_days.contains(&day.day())
                }
            };
            if !fires {
                return Vec::new();
            }
            let mut out: Vec<u16> = Vec::new();
            for &h in &s.hours {
                assert!(h < 24, "{r:?}");
                for &m in &s.minutes {
                    assert!(m < 60, "{r:?}");
                    out.push(u16::from(h) * 60 + u16::from(m));
                }
            }
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

/// Compares the two over every day of 2027; the number of firings, or the first
/// day they differ.
fn same_instants_2027(sets: &Sets, r: &Recurrence) -> std::result::Result<usize, String> {
    let mut day = Date::from_calendar_date(2027, Month::January, 1).unwrap();
    let mut count = 0;
    while day.year() == 2027 {
        let (c, rec) = (cron_day(sets, day), recurrence_day(r, day));
        if c != rec {
            return Err(format!(
                "{day}: cron fires at minutes {c:?}, the Recurrence at {rec:?}"
            ));
        }
        count += c.len();
        day = day.next_day().unwrap();
    }
    Ok(count)
}

fn convert(line: &str) -> Recurrence {
    cron_to_recurrence(line, "UTC").unwrap_or_else(|e| panic!("{line}: {}", e.message))
}

fn json(line: &str, zone: &str) -> String {
    let r = cron_to_recurrence(line, zone).unwrap_or_else(|e| panic!("{line}: {}", e.message));
    serde_json::to_string(&r).unwrap()
}

/// Converts and checks the instants over 2027; returns the firing count.
fn check(line: &str) -> usize {
    let r = convert(line);
    same_instants_2027(&Sets::parsed(line), &r).unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn refusal(line: &str) -> String {
    match cron_to_recurrence(line, "UTC") {
        Ok(r) => panic!("{line} converted to {r:?}"),
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::Input, "{line}: {}", e.message);
            assert!(
                e.message.starts_with(&format!("cron `{}`: ", line.trim())),
                "{}",
                e.message
            );
            e.message
        }
    }
}

// ---- examples ---------------------------------------------------------------

#[test]
fn weekdays_in_vienna_serialize_exactly() {
    assert_eq!(
        json("0 3 * * 1-5", "Europe/Vienna"),
        r#"{"frequency":"Week","interval":1,"timeZone":"W. Europe Standard Time","startTime":"2000-01-01T00:00:00","schedule":{"weekDays":["Monday","Tuesday","Wednesday","Thursday","Friday"],"hours":[3],"minutes":[0]}}"#
    );
}

#[test]
fn minute_and_hour_frequencies_serialize_exactly() {
    assert_eq!(
        json("* * * * *", "UTC"),
        r#"{"frequency":"Minute","interval":1,"timeZone":"UTC","startTime":"2000-01-01T00:00:00"}"#
    );
    assert_eq!(
        json("*/5 * * * *", "UTC"),
        r#"{"frequency":"Minute","interval":5,"timeZone":"UTC","startTime":"2000-01-01T00:00:00"}"#
    );
    assert_eq!(
        json("*/15 * * * *", "America/New_York"),
        r#"{"frequency":"Minute","interval":15,"timeZone":"Eastern Standard Time","startTime":"2000-01-01T00:00:00"}"#
    );
    assert_eq!(
        json("0 * * * *", "UTC"),
        r#"{"frequency":"Hour","interval":1,"timeZone":"UTC","startTime":"2000-01-01T00:00:00"}"#
    );
    assert_eq!(
        json("45 * * * *", "Europe/London"),
        r#"{"frequency":"Hour","interval":1,"timeZone":"GMT Standard Time","startTime":"2000-01-01T00:45:00"}"#
    );
    // A residue class other than 0: every 20 minutes from :05.
    assert_eq!(
        json("5-59/20 * * * *", "UTC"),
        r#"{"frequency":"Minute","interval":20,"timeZone":"UTC","startTime":"2000-01-01T00:05:00"}"#
    );
}

#[test]
fn day_and_month_schedules_serialize_exactly() {
    assert_eq!(
        json("0 3 * * *", "Europe/Berlin"),
        r#"{"frequency":"Day","interval":1,"timeZone":"W. Europe Standard Time","startTime":"2000-01-01T00:00:00","schedule":{"hours":[3],"minutes":[0]}}"#
    );
    assert_eq!(
        json("30 */2 * * *", "UTC"),
        r#"{"frequency":"Day","interval":1,"timeZone":"UTC","startTime":"2000-01-01T00:00:00","schedule":{"hours":[0,2,4,6,8,10,12,14,16,18,20,22],"minutes":[30]}}"#
    );
    assert_eq!(
        json("0 0 1,15 * *", "Asia/Tokyo"),
        r#"{"frequency":"Month","interval":1,"timeZone":"Tokyo Standard Time","startTime":"2000-01-01T00:00:00","schedule":{"monthDays":[1,15]}}"#
    );
    assert_eq!(
        json("15,45 8-17 * * mon,wed", "UTC"),
        r#"{"frequency":"Week","interval":1,"timeZone":"UTC","startTime":"2000-01-01T00:00:00","schedule":{"weekDays":["Monday","Wednesday"],"hours":[8,9,10,11,12,13,14,15,16,17],"minutes":[15,45]}}"#
    );
}

#[test]
fn sunday_is_0_and_7() {
    let sunday = r#"{"frequency":"Week","interval":1,"timeZone":"UTC","startTime":"2000-01-01T00:00:00","schedule":{"weekDays":["Sunday"],"hours":[6],"minutes":[0]}}"#;
    assert_eq!(json("0 6 * * 0", "UTC"), sunday);
    assert_eq!(json("0 6 * * 7", "UTC"), sunday);
    assert_eq!(json("0 6 * * SUN", "UTC"), sunday);
    assert_eq!(check("0 6 * * 7"), 52);
}

#[test]
fn examples_fire_at_the_cron_instants() {
    let cases = [
        ("* * * * *", 525_600),
        ("*/5 * * * *", 105_120),
        ("0 * * * *", 8_760),
        ("30 */2 * * *", 4_380),
        ("0 3 * * *", 365),
        ("0 3 * * 1-5", 261),
        ("15,45 8-17 * * mon,wed", 2_080),
        ("0 0 1,15 * *", 24),
        ("0 6 * * 0", 52),
        ("0 0 31 * *", 7),
        ("0 12 29 * *", 11),
        ("0 0 */2 * *", 16 * 7 + 15 * 4 + 14),
        ("*/10 9-17 * * *", 54 * 365),
        ("0,7,14,21,28,35,42,49,56 * * * *", 9 * 24 * 365),
        ("0 0 * * */2", 52 * 4),
        ("0 0 1-31 * *", 365),
        ("0 0 * * 0-7", 365),
        ("0 0 1-31 * 0-6", 365),
        ("0 0 * 1-12 *", 365),
        ("0 0 * */1 *", 365),
        ("@daily", 365),
        ("@hourly", 8_760),
        ("@weekly", 52),
        ("@monthly", 12),
        ("  0   3  *  *  1-5  ", 261),
    ];
    for (line, count) in cases {
        assert_eq!(check(line), count, "{line}");
    }
}

#[test]
fn every_table_zone_converts() {
    for zone in known_time_zones() {
        let r = cron_to_recurrence("0 3 * * *", zone).unwrap();
        assert_eq!(r.time_zone, windows_time_zone(zone).unwrap());
    }
}

#[test]
fn json_round_trips() {
    for line in ["*/5 * * * *", "0 3 * * 1-5", "0 0 1,15 * *", "0 3 * * *"] {
        let r = convert(line);
        let back: Recurrence = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}

// ---- refusals ---------------------------------------------------------------

#[test]
fn restricted_month_is_refused() {
    let msg = refusal("0 0 * 1 *");
    assert!(msg.contains("month `1`"), "{msg}");
    assert!(msg.contains("no month-of-year schedule"), "{msg}");
    assert!(refusal("0 0 1 1 *").contains("month"));
    assert!(refusal("@yearly").contains("month `1`"));
    assert!(refusal("0 0 * jan-nov *").contains("month"));
}

#[test]
fn monthly_at_several_times_of_day_is_refused() {
    // A Month Recurrence's schedule takes no hours or minutes (the reference gives
    // them to Day and Week only): it runs at its start time's time of day.
    let msg = refusal("0 3,15 1 * *");
    assert!(msg.contains("hour `3,15` and minute `0`"), "{msg}");
    assert!(refusal("*/30 3 1 * *").contains("one time of day"));
    let r = convert("30 4 1,15 * *");
    assert_eq!(r.start_time.as_deref(), Some("2000-01-01T04:30:00"));
    assert_eq!(r.schedule.unwrap().hours, Vec::<u8>::new());
}

#[test]
fn day_of_month_with_day_of_week_is_refused() {
    let msg = refusal("0 3 1-7 * 1");
    assert!(
        msg.contains("day-of-month `1-7` and day-of-week `1` both restricted"),
        "{msg}"
    );
    assert!(msg.contains("cron fires when either matches"), "{msg}");
    assert!(msg.contains("a Recurrence cannot express that"), "{msg}");
    let msg = refusal("0 3 */2 * 1");
    assert!(msg.contains("crons disagree"), "{msg}");
    // Full but not written `*`: cron's OR makes it every day, surely not meant.
    let msg = refusal("0 3 1-31 * 1");
    assert!(msg.contains("every day"), "{msg}");
    assert!(msg.contains("write `*`"), "{msg}");
    assert!(refusal("0 3 1 * 0-7").contains("every day"));
    assert!(refusal("0 3 1-31 * */2").contains("crons disagree"));
}

#[test]
fn steps_that_do_not_divide_are_refused() {
    let msg = refusal("*/7 * * * *");
    assert!(msg.contains("minute `*/7`"), "{msg}");
    assert!(msg.contains("does not divide 60"), "{msg}");
    let msg = refusal("0 */5 * * *");
    assert!(msg.contains("hour `*/5`"), "{msg}");
    assert!(msg.contains("does not divide 24"), "{msg}");
    assert!(refusal("0-59/45 * * * *").contains("does not divide 60"));
    // A bounded range with any step is what it says.
    assert_eq!(check("0-30/7 * * * *"), 5 * 24 * 365);
}

#[test]
fn out_of_range_values_are_refused() {
    let msg = refusal("60 * * * *");
    assert!(msg.contains("minute `60`"), "{msg}");
    assert!(msg.contains("out of range (0-59)"), "{msg}");
    let msg = refusal("* 24 * * *");
    assert!(msg.contains("hour `24`"), "{msg}");
    assert!(msg.contains("out of range (0-23)"), "{msg}");
    assert!(refusal("0 0 32 * *").contains("day-of-month `32`"));
    assert!(refusal("0 0 0 * *").contains("day-of-month `0`"));
    assert!(refusal("0 0 * 13 *").contains("month `13`"));
    assert!(refusal("0 0 * * 8").contains("day-of-week `8`"));
    assert!(refusal("0 0 * * 1-8").contains("out of range (0-7)"));
    assert!(refusal("*/0 * * * *").contains("step `0` is out of range"));
}

#[test]
fn wrong_field_counts_are_refused() {
    for line in ["", "   ", "*", "* * * *", "0 0 * * * *", "0 0 0 * * * 2027"] {
        let msg = refusal(line);
        assert!(msg.contains("expected 5 fields"), "{msg}");
    }
    assert!(refusal("0 0 0 * * *").contains("seconds or year field"));
}

#[test]
fn garbage_is_refused() {
    let cases = [
        ("x * * * *", "minute `x`"),
        ("0 0 L * *", "day-of-month `L`"),
        ("0 0 ? * *", "day-of-month `?`"),
        ("0 0 * * 1#2", "day-of-week `1#2`"),
        ("0 0 * * mon-", "missing a value"),
        ("5/15 * * * *", "a step needs a range"),
        ("0 0 * * monday", "day-of-week `monday`"),
        ("0 0 * foo *", "month `foo`"),
        ("1,,2 * * * *", "empty list item"),
        ("1, * * * *", "empty list item"),
        (",1 * * * *", "empty list item"),
        ("5-1 * * * *", "backwards"),
        ("@reboot", "not a schedule"),
        ("0 0 * * ٣", "day-of-week `٣`"),
    ];
    for (line, part) in cases {
        let msg = refusal(line);
        assert!(msg.contains(part), "{line}: {msg}");
    }
}

#[test]
fn unknown_time_zone_is_refused() {
    let err = cron_to_recurrence("0 3 * * *", "Europe/Atlantis").unwrap_err();
    assert_eq!(err.kind, ErrorKind::Input);
    assert!(err.message.contains("`Europe/Atlantis`"), "{}", err.message);
}

// ---- property tests ---------------------------------------------------------

/// A number or a name as written in a generated cron field.
#[derive(Debug, Clone)]
enum Tok {
    Num(u32),
    Name(String, u32),
}

impl Tok {
    fn value(&self) -> u32 {
        match self {
            Tok::Num(v) | Tok::Name(_, v) => *v,
        }
    }
    fn text(&self) -> String {
        match self {
            Tok::Num(v) => v.to_string(),
            Tok::Name(s, _) => s.clone(),
        }
    }
}

#[derive(Debug, Clone)]
enum Item {
    Star,
    StarStep(u32),
    One(Tok),
    Range(Tok, Tok),
    RangeStep(Tok, Tok, u32),
    Garbage(&'static str),
}

impl Item {
    fn text(&self) -> String {
        match self {
            Item::Star => "*".to_string(),
            Item::StarStep(n) => format!("*/{n}"),
            Item::One(t) => t.text(),
            Item::Range(a, b) => format!("{}-{}", a.text(), b.text()),
            Item::RangeStep(a, b, n) => format!("{}-{}/{n}", a.text(), b.text()),
            Item::Garbage(g) => g.to_string(),
        }
    }
}

/// Tokens no field accepts.
const GARBAGE: [&str; 12] = [
    "?", "L", "5/15", "", "x", "1#2", "*/", "-", "1-", "**", "3-1-2", "mon-",
];

fn tok(kind: FieldKind) -> BoxedStrategy<Tok> {
    let (lo, hi) = kind.bounds();
    // One past either end now and then, to see those refused.
    let below = if lo > 0 { lo - 1 } else { hi + 2 };
    let outside = prop::sample::select(vec![below, hi + 1]);
    let num = prop_oneof![100 => lo..=hi, 1 => outside].prop_map(Tok::Num);
    let names: &'static [&'static str] = match kind {
        FieldKind::Month => &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
        FieldKind::DayOfWeek => &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
        _ => return num.boxed(),
    };
    let first = if kind == FieldKind::Month { 1 } else { 0 };
    let name = (0..names.len(), 0..3u8).prop_map(move |(i, case)| {
        let n = names[i];
        let text = match case {
            0 => n.to_string(),
            1 => n.to_ascii_uppercase(),
            _ => n[..1].to_ascii_uppercase() + &n[1..],
        };
        Tok::Name(text, first + i as u32)
    });
    prop_oneof![3 => num, 1 => name].boxed()
}

fn step(kind: FieldKind) -> BoxedStrategy<u32> {
    let (lo, hi) = kind.star_bounds();
    let span = hi - lo + 1;
    let common: BoxedStrategy<u32> = match kind {
        FieldKind::Minute => prop::sample::select(vec![1, 2, 5, 10, 15, 20, 30, 60, 7, 45]).boxed(),
        FieldKind::Hour => prop::sample::select(vec![1, 2, 3, 4, 6, 8, 12, 24, 5, 7]).boxed(),
        _ => (1..=span).boxed(),
    };
    prop_oneof![48 => common, 12 => 1..=span, 1 => Just(0u32), 1 => span + 1..=span + 3].boxed()
}

fn item(kind: FieldKind) -> BoxedStrategy<Item> {
    let range = (tok(kind), tok(kind), 0..32u8).prop_map(|(a, b, r)| {
        // Mostly in order; sometimes backwards, to see those refused.
        if r != 0 && a.value() > b.value() {
            (b, a)
        } else {
            (a, b)
        }
    });
    prop_oneof![
        2 => Just(Item::Star),
        3 => step(kind).prop_map(Item::StarStep),
        4 => tok(kind).prop_map(Item::One),
        2 => range.clone().prop_map(|(a, b)| Item::Range(a, b)),
        2 => (range, step(kind)).prop_map(|((a, b), n)| Item::RangeStep(a, b, n)),
    ]
    .boxed()
}

fn field(kind: FieldKind) -> BoxedStrategy<Vec<Item>> {
    let list = prop::collection::vec(item(kind), 1..=3);
    // Now and then a token no cron accepts, anywhere in the list.
    let garbage = (
        list.clone(),
        prop::sample::select(GARBAGE.to_vec()),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(mut items, g, at)| {
            items.insert(at.index(items.len() + 1), Item::Garbage(g));
            items
        });
    let star = Just(vec![Item::Star]);
    match kind {
        FieldKind::Minute | FieldKind::Hour => {
            prop_oneof![10 => star, 30 => list, 1 => garbage].boxed()
        }
        FieldKind::DayOfMonth => prop_oneof![50 => star, 20 => list, 1 => garbage].boxed(),
        FieldKind::Month => prop_oneof![
            80 => star,
            10 => Just(vec![Item::StarStep(1)]),
            15 => list,
            1 => garbage
        ]
        .boxed(),
        FieldKind::DayOfWeek => prop_oneof![40 => star, 30 => list, 1 => garbage].boxed(),
    }
}

/// What a generated field means, worked out from the generator's own items:
/// `None` when cron would reject it, else its set, whether it starts with `*`,
/// and whether it holds a whole-field minute or hour step that does not divide
/// the hour or day (refused on purpose).
fn reference(kind: FieldKind, items: &[Item]) -> Option<(Bits, bool, bool)> {
    let (min, max) = kind.bounds();
    let (star_lo, star_hi) = kind.star_bounds();
    let span = star_hi - star_lo + 1;
    let in_range = |t: &Tok| (min..=max).contains(&t.value());
    let (mut bits, mut refused) = (0, false);
    for item in items {
        let (lo, hi, n) = match item {
            Item::Star => (star_lo, star_hi, 1),
            Item::StarStep(n) => (star_lo, star_hi, *n),
            Item::One(t) => (t.value(), t.value(), 1),
            Item::Range(a, b) => (a.value(), b.value(), 1),
            Item::RangeStep(a, b, n) => (a.value(), b.value(), *n),
            Item::Garbage(_) => return None,
        };
        let toks_ok = match item {
            Item::One(t) => in_range(t),
            Item::Range(a, b) | Item::RangeStep(a, b, _) => in_range(a) && in_range(b),
            _ => true,
        };
        if !toks_ok || lo > hi || n == 0 || n > span {
            return None;
        }
        let whole = lo == star_lo && hi == star_hi;
        refused |= whole
            && match kind {
                FieldKind::Minute => 60 % n != 0,
                FieldKind::Hour => 24 % n != 0,
                _ => false,
            };
        for v in (lo..=hi).step_by(n as usize) {
            bits |= 1
                << (if v == 7 && kind == FieldKind::DayOfWeek {
                    0
                } else {
                    v
                });
        }
    }
    let star = matches!(items.first(), Some(Item::Star | Item::StarStep(_)));
    Some((bits, star, refused))
}

fn cron_line() -> impl Strategy<Value = Vec<Vec<Item>>> {
    (
        field(FieldKind::Minute),
        field(FieldKind::Hour),
        field(FieldKind::DayOfMonth),
        field(FieldKind::Month),
        field(FieldKind::DayOfWeek),
    )
        .prop_map(|(a, b, c, d, e)| vec![a, b, c, d, e])
}

fn render(fields: &[Vec<Item>]) -> String {
    fields
        .iter()
        .map(|items| items.iter().map(Item::text).collect::<Vec<_>>().join(","))
        .collect::<Vec<_>>()
        .join(" ")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Every accepted line fires at exactly the cron instants over 2027, every
    /// line the rules say is expressible is accepted, and the rest are refused.
    #[test]
    fn accepted_crons_fire_at_the_same_instants(
        fields in cron_line(),
        zone in prop::sample::select(known_time_zones().collect::<Vec<_>>()),
    ) {
        let line = render(&fields);
        let result = cron_to_recurrence(&line, zone);
        let refs: Option<Vec<_>> = cron::FIELDS
            .iter()
            .zip(&fields)
            .map(|(&k, items)| reference(k, items))
            .collect();
        let Some(refs) = refs else {
            // Not a valid cron line (or an empty field merged two fields away).
            let err = result.err();
            prop_assert!(err.as_ref().is_some_and(|e| e.kind == ErrorKind::Input), "{line}");
            return Ok(());
        };
        let sets = Sets {
            minutes: refs[0].0,
            hours: refs[1].0,
            dom: refs[2].0,
            months: refs[3].0,
            dow: refs[4].0,
            dom_star: refs[2].1,
            dow_star: refs[4].1,
        };
        let dom_full = sets.dom == FieldKind::DayOfMonth.full();
        let dow_full = sets.dow == FieldKind::DayOfWeek.full();
        // Week or Month days only next to a full field written with `*`.
        let days_ok = match (dom_full, dow_full) {
            (true, true) => true,
            (true, false) => sets.dom_star,
            (false, true) => sets.dow_star,
            (false, false) => false,
        };
        // A monthly Recurrence runs at one time of day (its start time's).
        let monthly = !dom_full && dow_full;
        let one_time = sets.minutes.count_ones() == 1 && sets.hours.count_ones() == 1;
        let expressible = !refs.iter().any(|r| r.2)
            && sets.months == FieldKind::Month.full()
            && days_ok
            && (!monthly || one_time);
        match result {
            Ok(r) => {
                prop_assert!(expressible, "{line} converted to {r:?}");
                prop_assert_eq!(r.time_zone.as_str(), windows_time_zone(zone).unwrap());
                if let Err(diff) = same_instants_2027(&sets, &r) {
                    prop_assert!(false, "{line} → {r:?}: {diff}");
                }
            }
            Err(e) => {
                prop_assert_eq!(e.kind, ErrorKind::Input);
                prop_assert!(!expressible, "{line} refused: {}", e.message);
            }
        }
    }

    /// Arbitrary text never panics, and errors are input errors.
    #[test]
    fn arbitrary_text_never_panics(line in "\\PC*") {
        if let Err(e) = cron_to_recurrence(&line, "UTC") {
            prop_assert_eq!(e.kind, ErrorKind::Input);
        }
    }

    /// Text from cron's own alphabet gets deeper into the parser.
    #[test]
    fn cron_alphabet_never_panics(line in "[0-9*/,a-zA-Z@#? \t-]{0,40}") {
        match cron_to_recurrence(&line, "Europe/Vienna") {
            Ok(r) => {
                let sets = Sets::parsed(&line);
                if let Err(diff) = same_instants_2027(&sets, &r) {
                    prop_assert!(false, "{line} → {r:?}: {diff}");
                }
            }
            Err(e) => prop_assert_eq!(e.kind, ErrorKind::Input),
        }
    }
}
