//! Tables for scoring jobs: CSV and Parquet in and out, without R types.
//!
//! A [`Table`] holds columns in R's four atomic types, so the bindings allocate each
//! R vector once and fill it from one Rust vector. Missing values are `None`.
//! Numbers take the 4 or 8 bytes R gives them, with the positions of missing values
//! kept apart ([`Nullable`]); character columns keep their text end to end in one
//! buffer ([`Strings`]): a million values cost a few allocations, not a million.
//!
//! Integers follow R: `i32::MIN` is R's `NA_integer_`, so it is never a value here;
//! readers turn columns that need it (or anything wider than 32 bits) into doubles.
//!
//! Two more kinds carry R's date classes, so Parquet's date and timestamp columns read
//! as `Date` and `POSIXct` and are written back as such: days since 1970-01-01, and
//! microseconds since 1970-01-01 UTC (Parquet's own units) with a time zone name. CSV
//! has no types: it writes them as ISO 8601 text and reads them as text, which the
//! scoring job converts to the model's ptype.

mod arrow_schema;
mod csv;
mod parquet;

pub use self::csv::{
    read_csv, read_csv_rows, write_csv, write_csv_header, write_csv_rows, CsvChunks,
};
pub use self::parquet::{
    parquet_shard_byte_ranges, read_parquet, read_parquet_rows, write_parquet, ParquetChunks,
    ParquetWriter,
};

use crate::{Error, Result};

/// The type of a column, in R's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Logical,
    Integer,
    Double,
    Character,
    Date,
    DateTime,
}

impl ColumnType {
    /// R's name for the type (`typeof()`).
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Logical => "logical",
            ColumnType::Integer => "integer",
            ColumnType::Double => "double",
            ColumnType::Character => "character",
            ColumnType::Date => "Date",
            ColumnType::DateTime => "POSIXct",
        }
    }

    /// The type R calls `name` (`"numeric"` is accepted for double). Hints are for
    /// CSV, which holds dates as text, so the date classes are not among them.
    pub fn from_name(name: &str) -> Result<ColumnType> {
        match name {
            "logical" => Ok(ColumnType::Logical),
            "integer" => Ok(ColumnType::Integer),
            "double" | "numeric" => Ok(ColumnType::Double),
            "character" => Ok(ColumnType::Character),
            other => Err(Error::input(format!(
                "unknown column type \"{other}\": expected logical, integer, double or character"
            ))),
        }
    }
}

/// One column; `None` is a missing value.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Logical(Vec<Option<bool>>),
    Integer(Nullable<i32>),
    Double(Nullable<f64>),
    Character(Strings),
    /// Days since 1970-01-01.
    Date(Nullable<i32>),
    /// Microseconds since 1970-01-01 00:00 UTC, and the time zone to show them in
    /// (an IANA name such as `"UTC"` or `"Europe/Vienna"`).
    DateTime(Nullable<i64>, String),
}

/// Values, some missing: all values end to end (a missing one holds `T::default()`)
/// and the positions of the missing ones, ascending. Build with `push` or
/// `collect()` from `Option<T>`s; read with `get` or `iter`, or `values` and
/// `missing` to copy them wholesale.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Nullable<T> {
    values: Vec<T>,
    missing: Vec<usize>,
}

impl<T: Copy + Default> Nullable<T> {
    pub fn new() -> Self {
        Nullable {
            values: Vec::new(),
            missing: Vec::new(),
        }
    }

    pub fn with_capacity(n: usize) -> Self {
        Nullable {
            values: Vec::with_capacity(n),
            missing: Vec::new(),
        }
    }

    /// From all values and the ascending positions of the missing ones; `None` if
    /// a position is out of order or out of range.
    pub fn from_parts(mut values: Vec<T>, missing: Vec<usize>) -> Option<Self> {
        let ascending = missing.windows(2).all(|w| w[0] < w[1]);
        if !ascending || missing.last().is_some_and(|&m| m >= values.len()) {
            return None;
        }
        for &m in &missing {
            values[m] = T::default();
        }
        Some(Nullable { values, missing })
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn push(&mut self, value: Option<T>) {
        match value {
            Some(v) => self.values.push(v),
            None => {
                self.missing.push(self.values.len());
                self.values.push(T::default());
            }
        }
    }

    /// Add `n` missing values.
    pub fn push_missing(&mut self, n: usize) {
        let len = self.values.len();
        self.missing.extend(len..len + n);
        self.values.resize(len + n, T::default());
    }

    /// Add all of `other`'s values.
    pub fn append(&mut self, other: &Nullable<T>) {
        let base = self.values.len();
        self.values.extend_from_slice(&other.values);
        self.missing.extend(other.missing.iter().map(|m| m + base));
    }

    /// The same values through `f`, missing ones still missing.
    pub fn map<U: Copy + Default>(&self, f: impl Fn(T) -> U) -> Nullable<U> {
        let mut values: Vec<U> = self.values.iter().map(|v| f(*v)).collect();
        for &m in &self.missing {
            values[m] = U::default();
        }
        Nullable {
            values,
            missing: self.missing.clone(),
        }
    }

    /// Value `i`: `None` when missing or out of range.
    pub fn get(&self, i: usize) -> Option<T> {
        let v = *self.values.get(i)?;
        self.missing.binary_search(&i).is_err().then_some(v)
    }

    /// All values, with `T::default()` where missing.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// The positions of the missing values, ascending.
    pub fn missing(&self) -> &[usize] {
        &self.missing
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Option<T>> + '_ {
        self.iter_range(0, self.len())
    }

    /// Values `lo..hi` (clamped to the length).
    pub fn iter_range(
        &self,
        lo: usize,
        hi: usize,
    ) -> impl ExactSizeIterator<Item = Option<T>> + '_ {
        let hi = hi.min(self.len());
        let lo = lo.min(hi);
        let mut next = self.missing.partition_point(|&m| m < lo);
        (lo..hi).map(move |i| {
            if self.missing.get(next) == Some(&i) {
                next += 1;
                None
            } else {
                Some(self.values[i])
            }
        })
    }
}

impl<T: Copy + Default> FromIterator<Option<T>> for Nullable<T> {
    fn from_iter<I: IntoIterator<Item = Option<T>>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut out = Nullable::with_capacity(iter.size_hint().0);
        for value in iter {
            out.push(value);
        }
        out
    }
}

/// Optional strings stored end to end. Build with `push` or `collect()` from
/// `Option<&str>`s; read with `get` or `iter`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Strings {
    text: String,
    /// Where each value ends in `text`; it starts where the one before ends.
    ends: Vec<usize>,
    /// Missing values hold no text.
    missing: Vec<bool>,
}

impl Strings {
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `values` values of `bytes` bytes in all.
    pub fn with_capacity(values: usize, bytes: usize) -> Self {
        Strings {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(values),
            missing: Vec::with_capacity(values),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of text in all the values.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    pub fn push(&mut self, value: Option<&str>) {
        if let Some(s) = value {
            self.text.push_str(s);
        }
        self.ends.push(self.text.len());
        self.missing.push(value.is_none());
    }

    /// Add `n` missing values.
    pub fn push_missing(&mut self, n: usize) {
        self.ends.resize(self.ends.len() + n, self.text.len());
        self.missing.resize(self.missing.len() + n, true);
    }

    /// Add all of `other`'s values.
    pub fn append(&mut self, other: &Strings) {
        let base = self.text.len();
        self.text.push_str(&other.text);
        self.ends.extend(other.ends.iter().map(|end| end + base));
        self.missing.extend_from_slice(&other.missing);
    }

    /// All the values' text, end to end.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Value `i`: `None` when missing or out of range.
    pub fn get(&self, i: usize) -> Option<&str> {
        if *self.missing.get(i)? {
            return None;
        }
        let start = i.checked_sub(1).map_or(0, |j| self.ends[j]);
        self.text.get(start..self.ends[i])
    }

    /// Where value `i`'s text lies in `text()` (empty for a missing value); `None`
    /// out of range.
    pub fn span(&self, i: usize) -> Option<std::ops::Range<usize>> {
        let end = *self.ends.get(i)?;
        Some(i.checked_sub(1).map_or(0, |j| self.ends[j])..end)
    }

    pub fn is_missing(&self, i: usize) -> bool {
        self.missing.get(i).copied().unwrap_or(true)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Option<&str>> + '_ {
        let mut start = 0;
        self.ends
            .iter()
            .zip(&self.missing)
            .map(move |(&end, &missing)| {
                let value = self.text.get(start..end).filter(|_| !missing);
                start = end;
                value
            })
    }
}

impl<S: AsRef<str>> FromIterator<Option<S>> for Strings {
    fn from_iter<I: IntoIterator<Item = Option<S>>>(iter: I) -> Self {
        let mut out = Strings::new();
        for value in iter {
            out.push(value.as_ref().map(AsRef::as_ref));
        }
        out
    }
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Logical(v) => v.len(),
            Column::Integer(v) => v.len(),
            Column::Double(v) => v.len(),
            Column::Character(v) => v.len(),
            Column::Date(v) => v.len(),
            Column::DateTime(v, _) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A column of `n` missing values of type `t` (date-times shown in UTC).
    pub fn missing(t: ColumnType, n: usize) -> Column {
        fn nulls<T: Copy + Default>(n: usize) -> Nullable<T> {
            let mut v = Nullable::new();
            v.push_missing(n);
            v
        }
        match t {
            ColumnType::Logical => Column::Logical(vec![None; n]),
            ColumnType::Integer => Column::Integer(nulls(n)),
            ColumnType::Double => Column::Double(nulls(n)),
            ColumnType::Character => {
                let mut v = Strings::new();
                v.push_missing(n);
                Column::Character(v)
            }
            ColumnType::Date => Column::Date(nulls(n)),
            ColumnType::DateTime => Column::DateTime(nulls(n), "UTC".to_string()),
        }
    }

    pub fn column_type(&self) -> ColumnType {
        match self {
            Column::Logical(_) => ColumnType::Logical,
            Column::Integer(_) => ColumnType::Integer,
            Column::Double(_) => ColumnType::Double,
            Column::Character(_) => ColumnType::Character,
            Column::Date(_) => ColumnType::Date,
            Column::DateTime(..) => ColumnType::DateTime,
        }
    }
}

/// The civil date (year, month, day) of `days` since 1970-01-01, in the proleptic
/// Gregorian calendar (H. Hinnant's `civil_from_days`), for any `i32` day.
pub fn civil_from_days(days: i32) -> (i64, u32, u32) {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `days` as ISO 8601 text, `YYYY-MM-DD` (years outside 0..=9999 with a sign, as
/// ISO's expanded form).
pub fn format_date(days: i32, out: &mut Vec<u8>) {
    let (y, m, d) = civil_from_days(days);
    push_year(y, out);
    push_two(b'-', m, out);
    push_two(b'-', d, out);
}

/// `micros` since the epoch as ISO 8601 UTC text, `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`
/// (fractional digits only when there are any, trailing zeros dropped).
pub fn format_datetime(micros: i64, out: &mut Vec<u8>) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400) as u32;
    // i64 microseconds span about 292,000 years, within i32 days.
    let (y, m, d) = civil_from_days(days as i32);
    push_year(y, out);
    push_two(b'-', m, out);
    push_two(b'-', d, out);
    push_two(b'T', tod / 3600, out);
    push_two(b':', tod / 60 % 60, out);
    push_two(b':', tod % 60, out);
    if frac > 0 {
        let zeros = (0..6)
            .take_while(|k| frac.is_multiple_of(10u32.pow(k + 1)))
            .count() as u32;
        out.push(b'.');
        push_digits(frac / 10u32.pow(zeros), 6 - zeros, out);
    }
    out.push(b'Z');
}

// Written by hand, without allocating: these run once per value written.
fn push_year(y: i64, out: &mut Vec<u8>) {
    match y {
        0..=9999 => push_digits(y as u32, 4, out),
        _ if y < 0 => out.extend_from_slice(format!("-{:04}", -y).as_bytes()),
        _ => out.extend_from_slice(format!("+{y}").as_bytes()),
    }
}

/// `sep`, then `v` in two digits.
fn push_two(sep: u8, v: u32, out: &mut Vec<u8>) {
    out.push(sep);
    push_digits(v, 2, out);
}

/// The last `n` decimal digits of `v`, zero-padded.
fn push_digits(v: u32, n: u32, out: &mut Vec<u8>) {
    for k in (0..n).rev() {
        out.push(b'0' + (v / 10u32.pow(k) % 10) as u8);
    }
}

/// Named columns of equal length.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub names: Vec<String>,
    pub columns: Vec<Column>,
}

impl Table {
    /// A table, checked: one name per column, all columns as long as the first.
    pub fn new(names: Vec<String>, columns: Vec<Column>) -> Result<Table> {
        let table = Table { names, columns };
        table.check()?;
        Ok(table)
    }

    pub fn nrow(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    pub fn ncol(&self) -> usize {
        self.columns.len()
    }

    /// The first column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        let i = self.names.iter().position(|n| n == name)?;
        self.columns.get(i)
    }

    /// The fields are public, so writers check again before trusting the shape.
    pub(crate) fn check(&self) -> Result<()> {
        if self.names.len() != self.columns.len() {
            return Err(Error::input(format!(
                "a table needs one name per column: {} names for {} columns",
                self.names.len(),
                self.columns.len()
            )));
        }
        let nrow = self.nrow();
        for (name, column) in self.names.iter().zip(&self.columns) {
            if column.len() != nrow {
                return Err(Error::input(format!(
                    "column \"{name}\" has {} rows, the first column {nrow}",
                    column.len()
                )));
            }
        }
        Ok(())
    }
}

/// The hinted type of column `name`, if any.
fn hinted(hint: &[(String, ColumnType)], name: &str) -> Option<ColumnType> {
    hint.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
}

/// True when `v` is an R integer (R reserves `i32::MIN` for NA).
fn fits_integer(v: i64) -> bool {
    v > i64::from(i32::MIN) && v <= i64::from(i32::MAX)
}

/// Worker threads for parsing and formatting: one per core.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Rows `[lo, hi)` of shard `shard` (0-based) of `shards`: contiguous ranges whose
/// sizes differ by at most one, together covering `0..total` exactly once.
fn shard_range(total: usize, shard: usize, shards: usize) -> Result<(usize, usize)> {
    check_shard(shard, shards)?;
    Ok((
        split_point(total, shard, shards),
        split_point(total, shard + 1, shards),
    ))
}

/// `total * k / parts` without overflow.
fn split_point(total: usize, k: usize, parts: usize) -> usize {
    (total as u128 * k as u128 / parts as u128) as usize
}

fn check_shard(shard: usize, shards: usize) -> Result<()> {
    if shards == 0 || shard >= shards {
        return Err(Error::input(format!(
            "shard {shard} does not exist: shards are numbered from 0 to shards - 1 \
             (shards = {shards})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ranges_cover_every_row_once() {
        for total in [0, 1, 5, 100, 101] {
            for shards in 1..=7 {
                let mut next = 0;
                for shard in 0..shards {
                    let (lo, hi) = shard_range(total, shard, shards).unwrap();
                    assert_eq!(lo, next);
                    assert!(hi - lo <= total / shards + 1);
                    next = hi;
                }
                assert_eq!(next, total);
            }
        }
        assert!(shard_range(10, 3, 3).is_err());
        assert!(shard_range(10, 0, 0).is_err());
    }

    #[test]
    fn nullables_keep_values_and_missing() {
        let mut v: Nullable<i32> = [Some(1), None, Some(3)].into_iter().collect();
        v.push_missing(2);
        v.append(&[Some(7), None].into_iter().collect());
        let back: Vec<Option<i32>> = v.iter().collect();
        assert_eq!(back, [Some(1), None, Some(3), None, None, Some(7), None]);
        assert_eq!(v.missing(), [1, 3, 4, 6]);
        assert_eq!(v.values(), [1, 0, 3, 0, 0, 7, 0]);
        assert_eq!(v.get(2), Some(3));
        assert_eq!(v.get(3), None);
        assert_eq!(v.get(99), None);
        let part: Vec<Option<i32>> = v.iter_range(3, 6).collect();
        assert_eq!(part, [None, None, Some(7)]);
        assert_eq!(v.map(f64::from).get(5), Some(7.0));
        assert_eq!(
            Nullable::from_parts(vec![1, 9, 3], vec![1]),
            Some([Some(1), None, Some(3)].into_iter().collect())
        );
        assert_eq!(Nullable::from_parts(vec![1, 2], vec![2]), None);
        assert_eq!(Nullable::from_parts(vec![1, 2], vec![1, 0]), None);
    }

    #[test]
    fn strings_keep_values_and_missing() {
        let mut s: Strings = [Some("a"), None, Some(""), Some("ü")].into_iter().collect();
        s.push_missing(2);
        s.append(&[Some("z")].into_iter().collect());
        let back: Vec<Option<&str>> = s.iter().collect();
        assert_eq!(
            back,
            [Some("a"), None, Some(""), Some("ü"), None, None, Some("z")]
        );
        assert_eq!(s.len(), 7);
        assert_eq!(s.get(3), Some("ü"));
        assert_eq!(s.get(1), None);
        assert_eq!(s.get(7), None);
        assert_eq!(s.text_len(), 4);
    }

    #[test]
    fn tables_are_checked() {
        let err = Table::new(
            vec!["a".into(), "b".into()],
            vec![
                Column::Integer([Some(1)].into_iter().collect()),
                Column::Logical(vec![]),
            ],
        )
        .unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::Input);
        assert!(
            err.message.contains("column \"b\" has 0 rows"),
            "{}",
            err.message
        );
        assert!(Table::new(vec!["a".into()], vec![]).is_err());
        assert_eq!(
            ColumnType::from_name("numeric").unwrap(),
            ColumnType::Double
        );
        assert!(ColumnType::from_name("factor").is_err());
        assert!(ColumnType::from_name("Date").is_err());
    }

    fn date(days: i32) -> String {
        let mut out = Vec::new();
        format_date(days, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn datetime(micros: i64) -> String {
        let mut out = Vec::new();
        format_datetime(micros, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn dates_format_as_iso_8601() {
        // Values as R prints them: as.numeric(as.Date("2024-02-29")) is 19782.
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(19_782), "2024-02-29");
        assert_eq!(date(-1), "1969-12-31");
        assert_eq!(date(-719_468), "0000-03-01");
        assert_eq!(date(2_932_896), "9999-12-31");
        assert_eq!(date(2_932_897), "+10000-01-01");
        assert_eq!(date(-719_529), "-0001-12-31");
        // Every day of 400 years (a full Gregorian cycle) follows the one before.
        let mut prev = civil_from_days(-1);
        for d in 0..146_097 {
            let next = civil_from_days(d);
            let (y, m, day) = prev;
            let expected = if day < days_in(y, m) {
                (y, m, day + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            assert_eq!(next, expected, "day {d}");
            prev = next;
        }
    }

    fn days_in(y: i64, m: u32) -> u32 {
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        match m {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    #[test]
    fn date_times_format_as_iso_8601_utc() {
        assert_eq!(datetime(0), "1970-01-01T00:00:00Z");
        // as.numeric(as.POSIXct("2024-02-29 13:45:07.25", tz = "UTC")) is 1709214307.25
        assert_eq!(datetime(1_709_214_307_250_000), "2024-02-29T13:45:07.25Z");
        assert_eq!(datetime(1), "1970-01-01T00:00:00.000001Z");
        assert_eq!(datetime(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(datetime(-86_400_000_000), "1969-12-31T00:00:00Z");
    }
}
