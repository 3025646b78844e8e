//! Tables for scoring jobs: CSV and Parquet in and out, without R types.
//!
//! A [`Table`] holds columns in R's four atomic types, so the bindings allocate each
//! R vector once and fill it from one Rust vector. Missing values are `None`.
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
    Integer(Vec<Option<i32>>),
    Double(Vec<Option<f64>>),
    Character(Vec<Option<String>>),
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
    fn tables_are_checked() {
        let err = Table::new(
            vec!["a".into(), "b".into()],
            vec![Column::Integer(vec![Some(1)]), Column::Logical(vec![])],
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
