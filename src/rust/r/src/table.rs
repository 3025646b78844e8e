//! Tables between R and the core: a named list of atomic vectors <-> `Table`.
//! Each R vector is allocated once and filled straight from the core's vector.

use crate::convert;
use extendr_api::prelude::*;
use extendr_ffi::{
    cetype_t::CE_UTF8, R_BlankString, R_NaString, R_xlen_t, Rf_mkCharLenCE, SET_STRING_ELT, SEXP,
};
use serde_json::{json, Value};
use serverless_core::table::{self, Column, ColumnType, Nullable, Table};
use serverless_core::Error;

use std::fs::File;
use std::io::{BufWriter, Write};

#[derive(Clone, Copy)]
enum Format {
    Csv,
    Parquet,
}

fn format_of(name: &str) -> Result<Format, Error> {
    match name {
        "csv" => Ok(Format::Csv),
        "parquet" => Ok(Format::Parquet),
        other => Err(Error::input(format!(
            "unknown table format \"{other}\": expected \"csv\" or \"parquet\""
        ))),
    }
}

/// `NULL`, or a named character vector of R type names.
fn hint_of(hint: &Robj) -> Result<Vec<(String, ColumnType)>, Error> {
    if hint.is_null() {
        return Ok(Vec::new());
    }
    let bad = || Error::input("the type hint must be NULL or a named character vector");
    let names = match hint.get_attrib(names_symbol()) {
        Some(n) if hint.rtype() == Rtype::Strings && n.rtype() == Rtype::Strings => {
            convert::texts(&n, "a column name")?
        }
        _ => return Err(bad()),
    };
    let types = convert::texts(hint, "a column type")?;
    names
        .into_iter()
        .zip(types)
        .map(|(name, t)| {
            let (Some(name), Some(t)) = (name, t) else {
                return Err(bad());
            };
            let t =
                ColumnType::from_name(&t).map_err(|e| e.context(format!("column \"{name}\"")))?;
            Ok((name, t))
        })
        .collect()
}

/// Read rows of shard `shard` (1-based) of `shards` from a CSV or Parquet file.
pub fn read(path: &str, format: &str, hint: &Robj, shard: i32, shards: i32) -> Result<Robj, Error> {
    let format = format_of(format)?;
    let hint = hint_of(hint)?;
    if shards < 1 || shard < 1 || shard > shards {
        return Err(Error::input(format!(
            "shard must be between 1 and shards: shard = {shard}, shards = {shards}"
        )));
    }
    let (shard, shards) = (shard as usize - 1, shards as usize);
    let table = match format {
        // Mapped, not copied; unmapped before the R vectors are made.
        Format::Csv => table::read_csv_rows(&CsvInput::open(path)?, &hint, shard, shards),
        // Parquet reads only the column chunks it decodes.
        Format::Parquet => {
            let file = File::open(path).map_err(|e| Error::io(format!("cannot read {path}"), e))?;
            table::read_parquet_rows(file, shard, shards)
        }
    }
    .map_err(|e| e.context(path))?;
    table_to_r(table)
}

/// A shard of a CSV or Parquet file, read chunk by chunk (see `rs_table_chunks`).
pub enum Chunks {
    Csv(table::CsvChunks),
    Parquet(table::ParquetChunks<File>),
}

impl Chunks {
    pub fn open(
        path: &str,
        format: &str,
        hint: &Robj,
        shard: i32,
        shards: i32,
        chunk_bytes: f64,
    ) -> Result<Chunks, Error> {
        let format = format_of(format)?;
        let hint = hint_of(hint)?;
        if shards < 1 || shard < 1 || shard > shards {
            return Err(Error::input(format!(
                "shard must be between 1 and shards: shard = {shard}, shards = {shards}"
            )));
        }
        if chunk_bytes.is_nan() || chunk_bytes < 1.0 {
            return Err(Error::input("chunk_bytes must be a positive number"));
        }
        let chunk_bytes = chunk_bytes.min(usize::MAX as f64) as usize;
        let file = File::open(path).map_err(|e| Error::io(format!("cannot read {path}"), e))?;
        let (shard, shards) = (shard as usize - 1, shards as usize);
        match format {
            // Chunks of a CSV file are byte ranges of the whole file: its shards are
            // downloaded as files of their own.
            Format::Csv if shards > 1 => Err(Error::input(
                "a CSV file is read in chunks whole: download its shard first",
            )),
            Format::Csv => table::CsvChunks::open(file, &hint, chunk_bytes).map(Chunks::Csv),
            Format::Parquet => {
                table::ParquetChunks::open(file, shard, shards, chunk_bytes).map(Chunks::Parquet)
            }
        }
        .map_err(|e| e.context(path))
    }

    /// The next chunk as a named list, or NULL after the last.
    pub fn next_chunk(&mut self) -> Result<Robj, Error> {
        let table = match self {
            Chunks::Csv(c) => c.next_chunk()?,
            Chunks::Parquet(c) => c.next_chunk()?,
        };
        match table {
            Some(table) => table_to_r(table),
            None => Ok(Robj::from(())),
        }
    }
}

/// An output file written chunk by chunk into `<path>.partial`, renamed to `path`
/// when finished, so that no reader takes a partial file for a whole one.
pub struct TableWriter {
    path: String,
    partial: String,
    format: Format,
    out: Option<TableOut>,
    rows: usize,
}

enum TableOut {
    Csv(BufWriter<File>),
    Parquet(Box<table::ParquetWriter<BufWriter<File>>>),
}

impl TableWriter {
    pub fn create(path: &str, format: &str) -> Result<TableWriter, Error> {
        Ok(TableWriter {
            path: path.to_string(),
            partial: format!("{path}.partial"),
            format: format_of(format)?,
            out: None,
            rows: 0,
        })
    }

    /// Append a chunk; the first one fixes the columns.
    pub fn write(&mut self, columns: &Robj) -> Result<(), Error> {
        let table = table_from_r(columns)?;
        let io = |e| Error::io("cannot write the output", e);
        if self.out.is_none() {
            let file = BufWriter::with_capacity(1 << 20, File::create(&self.partial).map_err(io)?);
            self.out = Some(match self.format {
                Format::Csv => {
                    let mut file = file;
                    table::write_csv_header(&table, &mut file)?;
                    TableOut::Csv(file)
                }
                Format::Parquet => {
                    TableOut::Parquet(Box::new(table::ParquetWriter::new(file, &table)?))
                }
            });
        }
        match self.out.as_mut() {
            Some(TableOut::Csv(file)) => table::write_csv_rows(&table, file)?,
            Some(TableOut::Parquet(writer)) => writer.write(&table)?,
            None => return Err(Error::internal("the table writer has no file")),
        }
        self.rows += table.nrow();
        Ok(())
    }

    /// Close the file and move it into place: rows and bytes written.
    pub fn finish(&mut self) -> Result<Value, Error> {
        let io = |e| Error::io(format!("cannot write {}", self.path), e);
        match self.out.take() {
            Some(TableOut::Csv(mut file)) => file.flush().map_err(io)?,
            Some(TableOut::Parquet(writer)) => writer.finish()?,
            None => return Err(Error::input("no chunk was written")),
        }
        std::fs::rename(&self.partial, &self.path).map_err(io)?;
        let bytes = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        Ok(json!({"rows": self.rows, "bytes": bytes}))
    }
}

impl Drop for TableWriter {
    /// An unfinished output is removed.
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// A CSV file's bytes: memory-mapped (no copy, pages read ahead by the kernel), or
/// read whole where a map is not possible (empty files, pipes).
enum CsvInput {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl CsvInput {
    fn open(path: &str) -> Result<CsvInput, Error> {
        let io = |e| Error::io(format!("cannot read {path}"), e);
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.is_file() && meta.len() > 0 {
            // SAFETY: the map is only read, and only while this call runs. Another
            // process changing the file meanwhile could change what is read (as it
            // can for data.table::fread, which maps files too); scoring jobs read
            // their own downloaded copy.
            if let Ok(map) = unsafe { memmap2::MmapOptions::new().populate().map(&file) } {
                return Ok(CsvInput::Mapped(map));
            }
        }
        std::fs::read(path).map(CsvInput::Read).map_err(io)
    }
}

impl std::ops::Deref for CsvInput {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            CsvInput::Mapped(map) => map,
            CsvInput::Read(bytes) => bytes,
        }
    }
}

/// A named list, one R vector per column; each column is freed once converted.
fn table_to_r(table: Table) -> Result<Robj, Error> {
    let Table { names, columns } = table;
    let mut values = Vec::with_capacity(columns.len());
    for (name, column) in names.iter().zip(columns) {
        values.push(column_to_r(name, column)?);
    }
    List::from_names_and_values(&names, values)
        .map(Robj::from)
        .map_err(|e| Error::internal(format!("cannot build the table's list: {e}")))
}

fn column_to_r(name: &str, column: Column) -> Result<Robj, Error> {
    Ok(match column {
        Column::Logical(v) => Logicals::from_values(v.into_iter().map(Rbool::from)).into(),
        // Numbers are copied whole, then the missing ones set to NA.
        Column::Integer(v) => {
            let mut out: Robj = Integers::from_values(v.values().iter().copied()).into();
            if let Some(slots) = out.as_integer_slice_mut() {
                set_missing(slots, v.missing(), i32::MIN);
            }
            out
        }
        Column::Double(v) => doubles_to_r(v.values().iter().copied(), v.missing()),
        Column::Character(v) => strings_to_r(name, &v)?,
        // R's Date: days as doubles (what as.Date() makes).
        Column::Date(v) => {
            let mut out = doubles_to_r(v.values().iter().map(|d| f64::from(*d)), v.missing());
            out.set_class(["Date"]).map_err(r_error)?;
            out
        }
        // POSIXct: seconds as doubles, exact to the microsecond for about ±142 years
        // around 1970 (a double's 53 bits), as R itself keeps them.
        Column::DateTime(v, tz) => {
            let mut out = doubles_to_r(v.values().iter().map(|us| *us as f64 / 1e6), v.missing());
            out.set_class(["POSIXct", "POSIXt"]).map_err(r_error)?;
            out.set_attrib("tzone", tz.as_str()).map_err(r_error)?;
            out
        }
    })
}

/// A double vector of `values`, then the `missing` ones set to NA.
fn doubles_to_r(values: impl ExactSizeIterator<Item = f64>, missing: &[usize]) -> Robj {
    let mut out: Robj = Doubles::from_values(values).into();
    if let Some(slots) = out.as_real_slice_mut() {
        set_missing(slots, missing, <f64>::na());
    }
    out
}

fn r_error(e: extendr_api::Error) -> Error {
    Error::internal(format!("cannot set a date column's class: {e}"))
}

fn set_missing<T: Copy>(slots: &mut [T], missing: &[usize], na: T) {
    for &i in missing {
        if let Some(slot) = slots.get_mut(i) {
            *slot = na;
        }
    }
}

/// Slots in the table of recent R strings (a power of two).
const SLOTS: usize = 1 << 12;

/// A character vector. Scoring data repeats values (categories), so recent values
/// are remembered with their R strings: `mkCharLenCE` looks every value up in R's
/// global string table, which costs more than this small direct-mapped one.
fn strings_to_r(name: &str, v: &table::Strings) -> Result<Robj, Error> {
    // R raises an error (a longjmp through Rust) for these: refuse them first.
    let text = v.text();
    if text.contains('\0') || text.len() > i32::MAX as usize {
        let bad = v
            .iter()
            .position(|s| s.is_some_and(|s| s.contains('\0') || s.len() > i32::MAX as usize));
        if let Some(i) = bad {
            return Err(Error::input(format!(
                "column \"{name}\", row {}: R strings cannot hold NUL bytes or more \
                 than 2^31 - 1 bytes",
                i + 1
            )));
        }
    }
    let mut out = Strings::new(v.len());
    let mut recent: Vec<Option<(&str, SEXP)>> = vec![None; SLOTS];
    // SAFETY: this runs on R's thread (an extendr call). `out` is protected while it
    // lives, and each CHARSXP made here is stored in it before R allocates again, so
    // the ones remembered in `recent` stay alive. Lengths fit a C int (checked above).
    unsafe {
        let sexp = out.get_mut();
        for (i, s) in v.iter().enumerate() {
            let ch = match s {
                None => R_NaString,
                Some("") => R_BlankString,
                Some(s) => {
                    let slot = &mut recent[slot_of(s)];
                    match *slot {
                        Some((seen, ch)) if seen == s => ch,
                        _ => {
                            let ch = Rf_mkCharLenCE(s.as_ptr().cast(), s.len() as i32, CE_UTF8);
                            *slot = Some((s, ch));
                            ch
                        }
                    }
                }
            };
            SET_STRING_ELT(sexp, i as R_xlen_t, ch);
        }
    }
    Ok(out.into())
}

/// The slot for `s`: a hash of its length and first and last eight bytes.
fn slot_of(s: &str) -> usize {
    let b = s.as_bytes();
    let (head, tail) = match (b.first_chunk::<8>(), b.last_chunk::<8>()) {
        (Some(head), Some(tail)) => (u64::from_le_bytes(*head), u64::from_le_bytes(*tail)),
        _ => (b.iter().fold(0, |h, &x| h << 8 | u64::from(x)), 0),
    };
    let h = (head ^ tail.rotate_left(29) ^ b.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> (64 - SLOTS.trailing_zeros())) as usize
}

/// Write a named list of atomic vectors (factors as their labels) to `path`. The file
/// appears complete or not at all: it is written beside `path` and renamed.
pub fn write(columns: &Robj, path: &str, format: &str) -> Result<Value, Error> {
    let format = format_of(format)?;
    let table = table_from_r(columns)?;
    let partial = format!("{path}.partial");
    let written = write_file(&table, &partial, format);
    let done = written.and_then(|_| {
        std::fs::rename(&partial, path).map_err(|e| Error::io(format!("cannot write {path}"), e))
    });
    if let Err(e) = done {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(json!({"rows": table.nrow(), "columns": table.ncol(), "bytes": bytes}))
}

fn write_file(table: &Table, file: &str, format: Format) -> Result<(), Error> {
    let io = |e| Error::io(format!("cannot write {file}"), e);
    let mut out = BufWriter::with_capacity(1 << 20, File::create(file).map_err(io)?);
    match format {
        Format::Csv => table::write_csv(table, &mut out)?,
        Format::Parquet => table::write_parquet(table, &mut out)?,
    }
    out.flush().map_err(io)
}

fn table_from_r(columns: &Robj) -> Result<Table, Error> {
    let bad = || Error::input("the columns must be a named list of atomic vectors");
    let list = columns.as_list().ok_or_else(bad)?;
    let names: Vec<String> = match columns.get_attrib(names_symbol()) {
        Some(names) if names.rtype() == Rtype::Strings => convert::texts(&names, "a column name")?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect(),
        _ if list.is_empty() => Vec::new(),
        _ => return Err(bad()),
    };
    let mut out = Vec::with_capacity(names.len());
    for (name, value) in names.iter().zip(list.values()) {
        out.push(column_from_r(name, &value)?);
    }
    Table::new(names, out)
}

/// The values of a date column (doubles, or integers), `None` for NA and NaN; an
/// input error for a date class on any other vector.
fn numbers<'a>(
    name: &str,
    x: &'a Robj,
) -> Result<Box<dyn Iterator<Item = Option<f64>> + 'a>, Error> {
    if let Some(v) = x.as_real_slice() {
        Ok(Box::new(v.iter().map(|d| (!d.is_nan()).then_some(*d))))
    } else if let Some(v) = x.as_integer_slice() {
        Ok(Box::new(
            v.iter().map(|i| (!i.is_na()).then(|| f64::from(*i))),
        ))
    } else {
        Err(Error::input(format!(
            "column \"{name}\" has a date class but holds no numbers"
        )))
    }
}

fn column_from_r(name: &str, x: &Robj) -> Result<Column, Error> {
    // Factors first: they are integer vectors underneath. (extendr's own factor
    // iterator panics on NA codes, so the labels are looked up here.)
    if x.is_factor() {
        let codes = x.as_integer_slice().unwrap_or(&[]);
        let levels = match x.get_attrib(levels_symbol()) {
            Some(l) if l.rtype() == Rtype::Strings => {
                convert::texts(&l, &format!("a level of column \"{name}\""))?
            }
            _ => Vec::new(),
        };
        let label = |code: &i32| {
            let i = usize::try_from(code.checked_sub(1)?).ok()?;
            levels.get(i)?.as_deref()
        };
        return Ok(Column::Character(codes.iter().map(label).collect()));
    }
    // Dates and date-times before plain numbers: they are doubles (or integers)
    // underneath. Values that are not finite have no date and are written missing.
    if x.inherits("Date") {
        let days = numbers(name, x)?.map(|d| {
            d.filter(|d| d.is_finite())
                .and_then(|d| i32::try_from(d.floor() as i64).ok())
        });
        return Ok(Column::Date(days.collect()));
    }
    if x.inherits("POSIXct") {
        let tz = match x.get_attrib("tzone") {
            Some(tz) if tz.rtype() == Rtype::Strings => convert::texts(&tz, "a time zone")?
                .into_iter()
                .next()
                .flatten()
                .unwrap_or_default(),
            _ => String::new(),
        };
        // "" is the session's local time zone, which a reader elsewhere does not share:
        // the instants are written as they are, shown in UTC.
        let tz = if tz.is_empty() { "UTC".to_string() } else { tz };
        let micros = numbers(name, x)?.map(|s| {
            s.filter(|s| s.is_finite())
                .map(|s| (s * 1e6).round())
                .filter(|us| us.abs() < 9.2e18)
                .map(|us| us as i64)
        });
        return Ok(Column::DateTime(micros.collect(), tz));
    }
    if let Some(strings) = x.as_str_iter() {
        let mut v = table::Strings::with_capacity(strings.len(), 0);
        for (i, s) in strings.enumerate() {
            if s.is_na() {
                v.push(None);
                continue;
            }
            // extendr trusts R that strings are UTF-8; check rather than write bad text.
            if std::str::from_utf8(s.as_bytes()).is_err() {
                return Err(Error::input(format!(
                    "column \"{name}\", row {}: the text is not UTF-8 (use enc2utf8() first)",
                    i + 1
                )));
            }
            v.push(Some(s));
        }
        return Ok(Column::Character(v));
    }
    if let Some(v) = x.as_logical_slice() {
        return Ok(Column::Logical(
            v.iter()
                .map(|b| (!b.is_na()).then(|| b.is_true()))
                .collect(),
        ));
    }
    let positions = || Error::internal("missing values out of order");
    if let Some(v) = x.as_integer_slice() {
        let missing = (0..v.len()).filter(|&i| v[i].is_na()).collect();
        return Nullable::from_parts(v.to_vec(), missing)
            .map(Column::Integer)
            .ok_or_else(positions);
    }
    if let Some(v) = x.as_real_slice() {
        // R's NA is one NaN payload; other NaNs stay NaN. (`is_na` calls into R, so
        // only NaNs ask it.)
        let missing = (0..v.len())
            .filter(|&i| v[i].is_nan() && v[i].is_na())
            .collect();
        return Nullable::from_parts(v.to_vec(), missing)
            .map(Column::Double)
            .ok_or_else(positions);
    }
    let kind = match x.rtype() {
        Rtype::Null => "NULL",
        Rtype::List => "list",
        Rtype::Complexes => "complex vector",
        Rtype::Raw => "raw vector",
        _ => "R object of another kind",
    };
    Err(Error::input(format!(
        "column \"{name}\" is a {kind}: only logical, integer, double, character and \
         factor columns can be written"
    )))
}
