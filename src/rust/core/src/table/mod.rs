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

mod csv;
mod parquet;

pub use self::csv::{read_csv, read_csv_rows, write_csv};
pub use self::parquet::{read_parquet, read_parquet_rows, write_parquet};

use crate::{Error, Result};

/// The type of a column, in R's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Logical,
    Integer,
    Double,
    Character,
}

impl ColumnType {
    /// R's name for the type (`typeof()`).
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Logical => "logical",
            ColumnType::Integer => "integer",
            ColumnType::Double => "double",
            ColumnType::Character => "character",
        }
    }

    /// The type R calls `name` (`"numeric"` is accepted for double).
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
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn column_type(&self) -> ColumnType {
        match self {
            Column::Logical(_) => ColumnType::Logical,
            Column::Integer(_) => ColumnType::Integer,
            Column::Double(_) => ColumnType::Double,
            Column::Character(_) => ColumnType::Character,
        }
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
    }
}
