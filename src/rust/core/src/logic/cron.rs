//! A standard five-field cron line (`minute hour day-of-month month day-of-week`),
//! parsed into one set of values per field.
//!
//! Accepted: numbers, `*`, lists `a,b`, ranges `a-b`, steps `*/n` and `a-b/n`,
//! three-letter names (`jan`..`dec`, `sun`..`sat`, any case), day-of-week 7 for
//! Sunday, and the macros `@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`,
//! `@yearly`, `@annually`. Anything else is an input error that quotes the token:
//! cron dialects disagree on extensions (`L`, `W`, `#`, `?`, `5/15`), so guessing
//! would schedule runs the user did not ask for.

use crate::{Error, Result};

/// A set of small numbers (0..=63): bit `i` stands for value `i`.
pub(crate) type Bits = u64;

/// The five fields, in crontab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldKind {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

pub(crate) const FIELDS: [FieldKind; 5] = [
    FieldKind::Minute,
    FieldKind::Hour,
    FieldKind::DayOfMonth,
    FieldKind::Month,
    FieldKind::DayOfWeek,
];

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl FieldKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            FieldKind::Minute => "minute",
            FieldKind::Hour => "hour",
            FieldKind::DayOfMonth => "day-of-month",
            FieldKind::Month => "month",
            FieldKind::DayOfWeek => "day-of-week",
        }
    }

    /// Smallest and largest value a number may take (day-of-week allows 7 = Sunday).
    pub(crate) fn bounds(self) -> (u32, u32) {
        match self {
            FieldKind::Minute => (0, 59),
            FieldKind::Hour => (0, 23),
            FieldKind::DayOfMonth => (1, 31),
            FieldKind::Month => (1, 12),
            FieldKind::DayOfWeek => (0, 7),
        }
    }

    /// What `*` spans: day-of-week stops at 6 so that Sunday is counted once
    /// (`*/2` is Sunday, Tuesday, Thursday, Saturday either way).
    pub(crate) fn star_bounds(self) -> (u32, u32) {
        match self {
            FieldKind::DayOfWeek => (0, 6),
            other => other.bounds(),
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            FieldKind::Month => &MONTH_NAMES,
            FieldKind::DayOfWeek => &DAY_NAMES,
            _ => &[],
        }
    }

    /// The value of the first name (`jan` is 1, `sun` is 0).
    fn first_name_value(self) -> u32 {
        match self {
            FieldKind::Month => 1,
            _ => 0,
        }
    }

    /// Every value the field can match, as a set.
    pub(crate) fn full(self) -> Bits {
        let (lo, hi) = self.star_bounds();
        (lo..=hi).fold(0, |bits, v| bits | (1 << v))
    }
}

/// One parsed field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    /// The values it matches; day-of-week 7 is stored as 0.
    pub bits: Bits,
    /// The field starts with `*`. Cron combines day-of-month and day-of-week
    /// with AND when either starts with `*`, with OR otherwise.
    pub star: bool,
}

/// A parsed cron line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cron {
    /// In crontab order: minute, hour, day-of-month, month, day-of-week.
    pub fields: [Field; 5],
    /// The five fields as written (after expanding a macro), for messages.
    pub texts: [String; 5],
}

impl Cron {
    pub(crate) fn field(&self, kind: FieldKind) -> &Field {
        &self.fields[kind as usize]
    }

    pub(crate) fn text(&self, kind: FieldKind) -> &str {
        &self.texts[kind as usize]
    }
}

/// Parses `line`. Errors are `Input` errors that start with "cron `line`:".
pub(crate) fn parse(line: &str) -> Result<Cron> {
    let shown = line.trim();
    let fail = |why: String| Error::input(format!("cron `{shown}`: {why}"));
    let expanded = expand_macro(shown).map_err(fail)?;
    let texts: Vec<&str> = expanded.split_whitespace().collect();
    if texts.len() != 5 {
        let hint = match texts.len() {
            6 | 7 => " (a seconds or year field is not supported)",
            _ => "",
        };
        return Err(fail(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), found {}{hint}",
            texts.len()
        )));
    }
    let mut fields = [Field {
        bits: 0,
        star: false,
    }; 5];
    for ((kind, text), field) in FIELDS.into_iter().zip(&texts).zip(&mut fields) {
        *field = parse_field(kind, text)
            .map_err(|why| fail(format!("{} `{text}`: {why}", kind.name())))?;
    }
    let texts = [0, 1, 2, 3, 4].map(|i| texts[i].to_string());
    Ok(Cron { fields, texts })
}

/// The five-field form of a macro, or the line itself.
fn expand_macro(line: &str) -> std::result::Result<&str, String> {
    if !line.starts_with('@') {
        return Ok(line);
    }
    let expanded = match line.to_ascii_lowercase().as_str() {
        "@hourly" => "0 * * * *",
        "@daily" | "@midnight" => "0 0 * * *",
        "@weekly" => "0 0 * * 0",
        "@monthly" => "0 0 1 * *",
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@reboot" => return Err("`@reboot` is not a schedule".to_string()),
        _ => {
            return Err("unknown macro; use five fields or one of @hourly, @daily, \
                 @midnight, @weekly, @monthly, @yearly"
                .to_string())
        }
    };
    Ok(expanded)
}

/// Parses one field; the error says what is wrong with it (the caller names it).
fn parse_field(kind: FieldKind, text: &str) -> std::result::Result<Field, String> {
    let mut bits = 0;
    for item in text.split(',') {
        bits |= parse_item(kind, item)?;
    }
    Ok(Field {
        bits,
        star: text.starts_with('*'),
    })
}

fn parse_item(kind: FieldKind, item: &str) -> std::result::Result<Bits, String> {
    if item.is_empty() {
        return Err("empty list item".to_string());
    }
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(parse_step(kind, step)?)),
        None => (item, None),
    };
    let (lo, hi) = if range == "*" {
        kind.star_bounds()
    } else if let Some((a, b)) = range.split_once('-') {
        let (lo, hi) = (parse_value(kind, a)?, parse_value(kind, b)?);
        if lo > hi {
            return Err(format!(
                "range `{range}` runs backwards (write it as two ranges)"
            ));
        }
        (lo, hi)
    } else {
        let value = parse_value(kind, range)?;
        if step.is_some() {
            // Some crons read `5/15` as `5-max/15`, others reject it.
            let (_, max) = kind.star_bounds();
            return Err(format!(
                "`{item}`: a step needs a range or `*` (write `{range}-{max}/…`)"
            ));
        }
        (value, value)
    };
    let step = step.unwrap_or(1);
    check_step_divides(kind, item, lo, hi, step)?;
    let mut bits = 0;
    let mut v = lo;
    while v <= hi {
        // Day-of-week 7 is Sunday, like 0.
        let v_in_set = if kind == FieldKind::DayOfWeek && v == 7 {
            0
        } else {
            v
        };
        bits |= 1 << v_in_set;
        v += step;
    }
    Ok(bits)
}

/// Refuses a step over a whole minute or hour field that does not divide the
/// hour or day: cron restarts the count each hour (day), so `*/7` fires at :56 and
/// again at :00, which is not "every 7 minutes". Nobody writes that meaning it;
/// the written-out list (`0,7,…,56`) is accepted for those who do.
fn check_step_divides(
    kind: FieldKind,
    item: &str,
    lo: u32,
    hi: u32,
    step: u32,
) -> std::result::Result<(), String> {
    let cycle = match kind {
        FieldKind::Minute => 60,
        FieldKind::Hour => 24,
        _ => return Ok(()),
    };
    let (min, max) = kind.star_bounds();
    if lo == min && hi == max && cycle % step != 0 {
        let unit = if kind == FieldKind::Minute {
            "minutes"
        } else {
            "hours"
        };
        let per = if kind == FieldKind::Minute {
            "hour"
        } else {
            "day"
        };
        return Err(format!(
            "step `{item}` does not divide {cycle}: cron restarts the count every {per}, \
             so this is not every {step} {unit}; use a step that divides {cycle}, \
             or list the {unit} if that pattern is intended"
        ));
    }
    Ok(())
}

fn parse_step(kind: FieldKind, text: &str) -> std::result::Result<u32, String> {
    let (min, max) = kind.star_bounds();
    let span = max - min + 1;
    match parse_number(text) {
        Some(step) if (1..=span).contains(&step) => Ok(step),
        Some(_) => Err(format!("step `{text}` is out of range (1-{span})")),
        None => Err(format!("step `{text}` is not a number")),
    }
}

fn parse_value(kind: FieldKind, text: &str) -> std::result::Result<u32, String> {
    let (min, max) = kind.bounds();
    if let Some(value) = parse_number(text) {
        return if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(format!("value `{text}` is out of range ({min}-{max})"))
        };
    }
    if text.is_empty() {
        return Err("a range is missing a value".to_string());
    }
    let names = kind.names();
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(kind.first_name_value() + i as u32);
    }
    Err(match names {
        [] => format!("`{text}` is not a number"),
        [first, .., last] => format!("`{text}` is not a number or a name ({first}..{last})"),
        _ => format!("`{text}` is not a number"),
    })
}

/// Decimal digits only (no sign, no spaces); `None` for anything else. Numbers too
/// large for `u32` become `u32::MAX`, which every range check refuses.
fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0u32, |n, b| {
        n.saturating_mul(10).saturating_add(u32::from(b - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(values: &[u32]) -> Bits {
        values.iter().fold(0, |b, v| b | (1 << v))
    }

    fn bits(kind: FieldKind, text: &str) -> Bits {
        parse_field(kind, text).map(|f| f.bits).unwrap_or_else(|e| {
            panic!("{text}: {e}");
        })
    }

    #[test]
    fn fields_parse_to_sets() {
        use FieldKind::*;
        assert_eq!(bits(Minute, "*"), Minute.full());
        assert_eq!(bits(Minute, "*/15"), set(&[0, 15, 30, 45]));
        assert_eq!(bits(Minute, "5-59/20"), set(&[5, 25, 45]));
        assert_eq!(bits(Minute, "0-30/7"), set(&[0, 7, 14, 21, 28]));
        assert_eq!(bits(Hour, "8-17"), set(&(8..=17).collect::<Vec<_>>()));
        assert_eq!(bits(Hour, "1,3,5-6"), set(&[1, 3, 5, 6]));
        assert_eq!(bits(DayOfMonth, "*/10"), set(&[1, 11, 21, 31]));
        assert_eq!(bits(Month, "JAN-mar,Dec"), set(&[1, 2, 3, 12]));
        assert_eq!(bits(DayOfWeek, "mon-FRI"), set(&[1, 2, 3, 4, 5]));
        assert_eq!(bits(DayOfWeek, "7"), set(&[0]));
        assert_eq!(bits(DayOfWeek, "5-7"), set(&[0, 5, 6]));
        assert_eq!(bits(DayOfWeek, "0-7"), DayOfWeek.full());
        assert_eq!(bits(DayOfWeek, "*/2"), set(&[0, 2, 4, 6]));
        assert_eq!(bits(Minute, "07"), set(&[7]));
    }

    #[test]
    fn star_flag_is_the_first_character() {
        let cron = parse("0 0 */2 * 1-5").unwrap();
        assert!(cron.field(FieldKind::DayOfMonth).star);
        assert!(!cron.field(FieldKind::DayOfWeek).star);
    }

    #[test]
    fn macros_expand() {
        assert_eq!(parse("@daily").unwrap(), parse("0 0 * * *").unwrap());
        assert_eq!(parse("@HOURLY").unwrap(), parse("0 * * * *").unwrap());
        assert!(parse("@reboot").is_err());
        assert!(parse("@sometimes").is_err());
    }

    #[test]
    fn bad_items_say_what_is_wrong() {
        use FieldKind::*;
        let err = |kind, text| parse_field(kind, text).unwrap_err();
        assert!(err(Minute, "60").contains("out of range (0-59)"));
        assert!(err(Hour, "24").contains("out of range (0-23)"));
        assert!(err(DayOfMonth, "0").contains("out of range (1-31)"));
        assert!(err(Minute, "1,,2").contains("empty list item"));
        assert!(err(Minute, "").contains("empty list item"));
        assert!(err(Minute, "5-1").contains("backwards"));
        assert!(err(Minute, "*/0").contains("out of range"));
        assert!(err(Minute, "*/61").contains("out of range"));
        assert!(err(Minute, "*/x").contains("not a number"));
        assert!(err(Minute, "5/15").contains("5-59/"));
        assert!(err(Minute, "*/7").contains("does not divide 60"));
        assert!(err(Minute, "0-59/7").contains("does not divide 60"));
        assert!(err(Hour, "*/5").contains("does not divide 24"));
        assert!(err(Minute, "mon").contains("not a number"));
        assert!(err(DayOfWeek, "L").contains("not a number or a name (sun..sat)"));
        assert!(err(DayOfWeek, "1#2").contains("not a number"));
        assert!(err(Minute, "-5").contains("missing a value"));
        assert!(err(Minute, "99999999999999999999").contains("out of range"));
        assert!(err(Minute, "*/99999999999999999999").contains("out of range"));
        assert!(err(Minute, "٣").contains("not a number"));
    }
}
