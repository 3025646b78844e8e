//! Parquet with the parquet crate's own column readers and writers (no Arrow arrays,
//! which would be a second copy of every batch and most of the build time): each
//! column decodes batch by batch straight into the table's vectors, and writes from
//! them in batches.
//!
//! Reading maps booleans to logical, integers to integer when every value fits R's
//! integer (else double), floating point (16, 32 or 64 bits) to double, strings
//! (`BYTE_ARRAY` annotated String, Enum or Json, dictionary-encoded or not) to
//! character, `DATE` to Date, and timestamps (`INT64` in milli-, micro- or
//! nanoseconds, legacy `INT96`) to date-times in microseconds (nanoseconds floored),
//! shown in the time zone Arrow's schema gives (see `arrow_schema`), else UTC. Arrow's
//! null type reads as an all-missing logical. Other types (nested, decimal, time of
//! day, plain binary) are an error naming the column.
//!
//! Writing maps Date to `DATE` and date-times to `TIMESTAMP(MICROS)` with
//! `isAdjustedToUTC`, so that the file records instants, and their zone to Arrow's
//! schema, so that Arrow readers show them as R does.
//!
//! Types and encodings: the Parquet format's `LogicalTypes.md` (apache/parquet-format).

use super::arrow_schema::{self, ArrowType};
use super::{check_shard, fits_integer, shard_range, Column, ColumnType, Nullable, Strings, Table};
use crate::{Error, Result};
use bytes::Bytes;
use parquet::basic::{
    Compression, ConvertedType, LogicalType, Repetition, TimeUnit, Type as PhysicalType, ZstdLevel,
};
use parquet::column::reader::{get_typed_column_reader, ColumnReader};
use parquet::data_type::{
    BoolType, ByteArray, ByteArrayType, DataType, DoubleType, FixedLenByteArrayType, FloatType,
    Int32Type, Int64Type, Int96Type,
};
use parquet::file::metadata::{KeyValue, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{ChunkReader, FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnDescriptor, ColumnPath, Type as SchemaType};
use std::io::Write;
use std::sync::Arc;

/// Rows per batch, reading and writing: big enough to amortise the per-batch work,
/// small enough that a batch's buffers are a small extra copy.
const BATCH_ROWS: usize = 64 * 1024;

/// Rows per row group written: lets readers split a file across threads or shards.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Read a whole Parquet file: a `std::fs::File`, or `bytes::Bytes` in memory.
pub fn read_parquet<R: ChunkReader + 'static>(input: R) -> Result<Table> {
    read_parquet_rows(input, 0, 1)
}

/// Read rows of shard `shard` (0-based) of `shards` (see [`shard_groups`] for which),
/// decoding only the row groups that hold them.
pub fn read_parquet_rows<R: ChunkReader + 'static>(
    input: R,
    shard: usize,
    shards: usize,
) -> Result<Table> {
    let mut chunks = ParquetChunks::open(input, shard, shards, usize::MAX)?;
    chunks
        .next_chunk()?
        .ok_or_else(|| Error::internal("a Parquet read gave no table"))
}

/// The rows of a Parquet file's shard in chunks of about `chunk_bytes` each (by the
/// footer's uncompressed sizes), so memory follows the chunk, not the file. Chunks
/// follow row groups; a row group bigger than a chunk is read in row ranges.
pub struct ParquetChunks<R: ChunkReader> {
    reader: SerializedFileReader<R>,
    kinds: Vec<Kind>,
    names: Vec<String>,
    max_defs: Vec<i16>,
    chunks: std::collections::VecDeque<Vec<GroupPart>>,
}

impl<R: ChunkReader + 'static> ParquetChunks<R> {
    pub fn open(input: R, shard: usize, shards: usize, chunk_bytes: usize) -> Result<Self> {
        check_shard(shard, shards)?;
        let reader = SerializedFileReader::new(input).map_err(read_error)?;
        let meta = reader.metadata();
        let file = meta.file_metadata();
        let zones = file
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|kv| kv.key == arrow_schema::KEY))
            .and_then(|kv| kv.value.as_deref())
            .map(arrow_schema::time_zones)
            .unwrap_or_default();
        let descriptors = file.schema_descr().columns();
        let kinds = descriptors
            .iter()
            .map(|c| Kind::of(c, &zones))
            .collect::<Result<Vec<_>>>()?;
        let names = descriptors.iter().map(|c| c.name().to_string()).collect();
        let max_defs = descriptors.iter().map(|c| c.max_def_level()).collect();
        let rows: i64 = meta.row_groups().iter().map(|g| g.num_rows()).sum();
        let bytes: i64 = meta.row_groups().iter().map(|g| g.total_byte_size()).sum();
        let row_bytes = (bytes.max(1) as u64 / rows.max(1) as u64).max(1);
        let chunk_rows = (chunk_bytes as u64 / row_bytes).clamp(1, usize::MAX as u64) as usize;
        let chunks = chunked(shard_groups(meta, shard, shards)?, chunk_rows);
        Ok(ParquetChunks {
            reader,
            kinds,
            names,
            max_defs,
            chunks,
        })
    }

    /// The next chunk; the first call always gives a table (perhaps without rows),
    /// later ones `None` after the shard's last row.
    pub fn next_chunk(&mut self) -> Result<Option<Table>> {
        let Some(parts) = self.chunks.pop_front() else {
            return Ok(None);
        };
        let rows = parts.iter().map(|p| p.take).sum();
        let mut columns: Vec<Acc> = self.kinds.iter().map(|k| k.acc(rows)).collect();
        for part in parts {
            let row_group = self.reader.get_row_group(part.group).map_err(read_error)?;
            for (j, (kind, column)) in self.kinds.iter().zip(&mut columns).enumerate() {
                let values = row_group.get_column_reader(j).map_err(read_error)?;
                let chunk = Chunk {
                    skip: part.skip,
                    take: part.take,
                    max_def: self.max_defs[j],
                    name: &self.names[j],
                };
                kind.read(values, &chunk, column)?;
            }
        }
        let columns = columns.into_iter().map(Acc::finish).collect();
        Table::new(self.names.clone(), columns).map(Some)
    }
}

/// `parts` cut into chunks of at most `rows` rows each (at least one chunk, perhaps
/// empty, so that a reader always gets the columns).
fn chunked(parts: Vec<GroupPart>, rows: usize) -> std::collections::VecDeque<Vec<GroupPart>> {
    let mut chunks = std::collections::VecDeque::new();
    let mut chunk = Vec::new();
    let mut in_chunk = 0;
    for part in parts {
        let (mut skip, mut left) = (part.skip, part.take);
        while left > 0 {
            let take = left.min(rows - in_chunk);
            chunk.push(GroupPart {
                group: part.group,
                skip,
                take,
            });
            (skip, left, in_chunk) = (skip + take, left - take, in_chunk + take);
            if in_chunk == rows {
                chunks.push_back(std::mem::take(&mut chunk));
                in_chunk = 0;
            }
        }
    }
    if !chunk.is_empty() || chunks.is_empty() {
        chunks.push_back(chunk);
    }
    chunks
}

/// Rows `skip..skip + take` of row group `group`.
struct GroupPart {
    group: usize,
    skip: usize,
    take: usize,
}

/// The row groups shard `shard` (0-based) of `shards` reads, and its rows in each;
/// the shards' rows are the file's, each once, in order. With at least as many row
/// groups as shards, a shard takes whole row groups (those whose first row falls in
/// its share of the rows), so no group is downloaded or decoded twice; with fewer,
/// the shards take equal row ranges (within one row) and share groups.
fn shard_groups(meta: &ParquetMetaData, shard: usize, shards: usize) -> Result<Vec<GroupPart>> {
    let sizes: Vec<usize> = meta
        .row_groups()
        .iter()
        .map(|g| usize::try_from(g.num_rows()).unwrap_or(0))
        .collect();
    let (lo, hi) = shard_range(sizes.iter().sum(), shard, shards)?;
    let whole_groups = sizes.len() >= shards;
    let mut parts = Vec::new();
    let mut at = 0;
    for (group, n) in sizes.iter().enumerate() {
        let (start, end) = if whole_groups {
            if (lo..hi).contains(&at) {
                (at, at + n)
            } else {
                (at, at)
            }
        } else {
            (lo.max(at), hi.min(at + n))
        };
        if start < end {
            parts.push(GroupPart {
                group,
                skip: start - at,
                take: end - start,
            });
        }
        at += n;
    }
    Ok(parts)
}

/// The byte ranges (`start..end` in the file) of the column chunks that shard
/// `shard` (0-based) of `shards` reads, merged where they touch, from the file's
/// footer (its Thrift-encoded `FileMetaData`): what a ranged download of the shard
/// must fetch, besides the footer.
pub fn parquet_shard_byte_ranges(
    footer: &[u8],
    shard: usize,
    shards: usize,
) -> Result<Vec<std::ops::Range<u64>>> {
    let meta = ParquetMetaDataReader::decode_metadata(footer).map_err(read_error)?;
    let mut ranges: Vec<std::ops::Range<u64>> = Vec::new();
    for part in shard_groups(&meta, shard, shards)? {
        for column in meta.row_group(part.group).columns() {
            let (start, len) = column.byte_range();
            ranges.push(start..start + len);
        }
    }
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<std::ops::Range<u64>> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    Ok(merged)
}

fn read_error(e: parquet::errors::ParquetError) -> Error {
    Error::input(format!("cannot read the Parquet data: {e}"))
}

fn write_error(e: impl std::fmt::Display) -> Error {
    Error::new(
        crate::ErrorKind::Io,
        format!("cannot write the Parquet output: {e}"),
    )
}

/// How a column's stored values become an R vector.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Logical,
    /// Arrow's null type: no values, every one missing.
    Null,
    /// `INT32` holding signed values, or unsigned ones of up to 16 bits.
    Int32,
    /// `INT32` holding unsigned 32-bit values.
    UInt32,
    Int64,
    UInt64,
    Float16,
    Float,
    Double,
    Text,
    Date,
    /// `INT64` in units of `1 / per_second` s, shown in this zone.
    Timestamp {
        per_second: i64,
        zone: String,
    },
    /// Legacy nanosecond timestamps, instants in UTC.
    Int96,
}

/// The rows of one column chunk to read.
struct Chunk<'a> {
    skip: usize,
    take: usize,
    max_def: i16,
    name: &'a str,
}

/// The time zone a timestamp column is shown in: its IANA name; UTC when it has none
/// (a wall-clock time, taken as UTC: scoring containers run in UTC) or a fixed offset
/// such as `+00:00`, which time zone databases (R's among them) do not name.
fn time_zone_name(tz: Option<&str>) -> String {
    match tz {
        Some(tz) if !tz.is_empty() && !tz.starts_with(['+', '-']) && tz != "Z" => tz.to_string(),
        _ => "UTC".to_string(),
    }
}

impl Kind {
    fn of(column: &ColumnDescriptor, zones: &[(String, String)]) -> Result<Kind> {
        let name = column.name();
        let top = column.path().parts().first().map_or(name, |s| s.as_str());
        if column.max_rep_level() > 0 || column.path().parts().len() > 1 {
            return Err(Error::input(format!(
                "column \"{top}\" is nested (a list, map or struct), which cannot be read: \
                 supported are booleans, integers, floating point numbers, strings, dates and \
                 timestamps"
            )));
        }
        let logical = column.logical_type_ref();
        let converted = column.converted_type();
        let unit = |u: &TimeUnit| match u {
            TimeUnit::MILLIS => 1_000,
            TimeUnit::MICROS => 1_000_000,
            TimeUnit::NANOS => 1_000_000_000,
        };
        let zone = || {
            time_zone_name(
                zones
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, z)| z.as_str()),
            )
        };
        use ConvertedType as C;
        let kind = match (column.physical_type(), logical) {
            (_, Some(LogicalType::Unknown)) => Some(Kind::Null),
            (PhysicalType::BOOLEAN, None) => Some(Kind::Logical),
            (PhysicalType::INT32, Some(LogicalType::Date)) => Some(Kind::Date),
            (PhysicalType::INT32, Some(LogicalType::Integer(t))) => {
                Some(match (t.bit_width, t.is_signed) {
                    (32, false) => Kind::UInt32,
                    _ => Kind::Int32,
                })
            }
            (PhysicalType::INT32, None) => match converted {
                C::NONE | C::INT_8 | C::INT_16 | C::INT_32 | C::UINT_8 | C::UINT_16 => {
                    Some(Kind::Int32)
                }
                C::UINT_32 => Some(Kind::UInt32),
                C::DATE => Some(Kind::Date),
                _ => None,
            },
            (PhysicalType::INT64, Some(LogicalType::Timestamp(t))) => Some(Kind::Timestamp {
                per_second: unit(&t.unit),
                zone: if t.is_adjusted_to_u_t_c {
                    zone()
                } else {
                    "UTC".to_string()
                },
            }),
            (PhysicalType::INT64, Some(LogicalType::Integer(t))) => Some(match t.is_signed {
                true => Kind::Int64,
                false => Kind::UInt64,
            }),
            (PhysicalType::INT64, None) => match converted {
                C::NONE | C::INT_64 => Some(Kind::Int64),
                C::UINT_64 => Some(Kind::UInt64),
                C::TIMESTAMP_MILLIS => Some(Kind::Timestamp {
                    per_second: 1_000,
                    zone: zone(),
                }),
                C::TIMESTAMP_MICROS => Some(Kind::Timestamp {
                    per_second: 1_000_000,
                    zone: zone(),
                }),
                _ => None,
            },
            (PhysicalType::INT96, None) => Some(Kind::Int96),
            (PhysicalType::FLOAT, None) => Some(Kind::Float),
            (PhysicalType::DOUBLE, None) => Some(Kind::Double),
            (PhysicalType::FIXED_LEN_BYTE_ARRAY, Some(LogicalType::Float16))
                if column.type_length() == 2 =>
            {
                Some(Kind::Float16)
            }
            (
                PhysicalType::BYTE_ARRAY,
                Some(LogicalType::String | LogicalType::Enum | LogicalType::Json),
            ) => Some(Kind::Text),
            (PhysicalType::BYTE_ARRAY, None) => match converted {
                C::UTF8 | C::ENUM | C::JSON => Some(Kind::Text),
                _ => None,
            },
            _ => None,
        };
        kind.ok_or_else(|| {
            let annotation = match (logical, converted) {
                (Some(l), _) => format!(" ({l:?})"),
                (None, C::NONE) => String::new(),
                (None, c) => format!(" ({c:?})"),
            };
            Error::input(format!(
                "column \"{name}\" has Parquet type {:?}{annotation}, which cannot be read: \
                 supported are booleans, integers, floating point numbers, strings, dates and \
                 timestamps",
                column.physical_type()
            ))
        })
    }

    /// An empty accumulator for `n` values of this kind.
    fn acc(&self, n: usize) -> Acc {
        match self {
            Kind::Logical | Kind::Null => Acc::Logical(Vec::with_capacity(n)),
            Kind::Int32 => Acc::Int32(Nullable::with_capacity(n)),
            Kind::UInt32 | Kind::Int64 | Kind::UInt64 => Acc::Int64(Nullable::with_capacity(n)),
            Kind::Float16 | Kind::Float | Kind::Double => Acc::Double(Nullable::with_capacity(n)),
            Kind::Text => Acc::Character(Strings::with_capacity(n, 0)),
            Kind::Date => Acc::Date(Nullable::with_capacity(n)),
            Kind::Timestamp { zone, .. } => Acc::DateTime(Nullable::with_capacity(n), zone.clone()),
            Kind::Int96 => Acc::DateTime(Nullable::with_capacity(n), "UTC".to_string()),
        }
    }

    /// Decode `chunk`'s rows of `values` into `acc`.
    fn read(&self, values: ColumnReader, chunk: &Chunk, acc: &mut Acc) -> Result<()> {
        match (self, acc) {
            (Kind::Logical, Acc::Logical(v)) => {
                read_each::<BoolType>(values, chunk, |x| v.push(x.copied()))
            }
            (Kind::Null, Acc::Logical(v)) => match values {
                // Arrow writes its null type as INT32; any physical type has no values.
                ColumnReader::Int32ColumnReader(_) => {
                    read_each::<Int32Type>(values, chunk, |_| v.push(None))
                }
                _ => {
                    v.resize(v.len() + chunk.take, None);
                    Ok(())
                }
            },
            (Kind::Int32, Acc::Int32(v)) => {
                read_each::<Int32Type>(values, chunk, |x| v.push(x.copied()))
            }
            (Kind::UInt32, Acc::Int64(v)) => {
                read_each::<Int32Type>(values, chunk, |x| v.push(x.map(|x| i64::from(*x as u32))))
            }
            (Kind::Int64, Acc::Int64(v)) => {
                read_each::<Int64Type>(values, chunk, |x| v.push(x.copied()))
            }
            (Kind::UInt64, acc) => {
                read_each::<Int64Type>(values, chunk, |x| acc.push_u64(x.map(|x| *x as u64)))
            }
            (Kind::Float16, Acc::Double(v)) => {
                read_each::<FixedLenByteArrayType>(values, chunk, |x| {
                    v.push(x.map(|x| match x.data() {
                        [lo, hi] => f16_to_f64(u16::from_le_bytes([*lo, *hi])),
                        _ => f64::NAN,
                    }))
                })
            }
            (Kind::Float, Acc::Double(v)) => {
                read_each::<FloatType>(values, chunk, |x| v.push(x.map(|x| f64::from(*x))))
            }
            (Kind::Double, Acc::Double(v)) => {
                read_each::<DoubleType>(values, chunk, |x| v.push(x.copied()))
            }
            (Kind::Text, Acc::Character(v)) => {
                read_values::<ByteArrayType>(values, chunk, |x| match x {
                    None => {
                        v.push(None);
                        Ok(())
                    }
                    Some(x) => match std::str::from_utf8(x.data()) {
                        Ok(s) => {
                            v.push(Some(s));
                            Ok(())
                        }
                        Err(_) => Err(Error::input(format!(
                            "column \"{}\" holds a string that is not valid UTF-8",
                            chunk.name
                        ))),
                    },
                })
            }
            (Kind::Date, Acc::Date(v)) => {
                read_each::<Int32Type>(values, chunk, |x| v.push(x.copied()))
            }
            (Kind::Timestamp { per_second, .. }, Acc::DateTime(v, _)) => {
                let per_second = *per_second;
                read_each::<Int64Type>(values, chunk, |x| {
                    v.push(x.map(|x| match per_second {
                        1_000 => x.saturating_mul(1000),
                        1_000_000 => *x,
                        _ => x.div_euclid(1000),
                    }))
                })
            }
            (Kind::Int96, Acc::DateTime(v, _)) => read_each::<Int96Type>(values, chunk, |x| {
                v.push(x.map(|x| x.to_nanos().div_euclid(1000)))
            }),
            (kind, _) => Err(Error::internal(format!(
                "column \"{}\": no accumulator for {kind:?}",
                chunk.name
            ))),
        }
    }
}

/// Call `f` on each of `chunk`'s rows of a column (`None` where missing), reading in
/// batches of `BATCH_ROWS`.
fn read_values<T: DataType>(
    values: ColumnReader,
    chunk: &Chunk,
    mut f: impl FnMut(Option<&T::T>) -> Result<()>,
) -> Result<()> {
    let mut reader = get_typed_column_reader::<T>(values);
    let truncated = || {
        Error::input(format!(
            "cannot read the Parquet data: column \"{}\" has fewer values than its row group",
            chunk.name
        ))
    };
    if chunk.skip > 0 && reader.skip_records(chunk.skip).map_err(read_error)? < chunk.skip {
        return Err(truncated());
    }
    let (mut defs, mut batch) = (Vec::new(), Vec::new());
    let mut left = chunk.take;
    while left > 0 {
        defs.clear();
        batch.clear();
        let levels = (chunk.max_def > 0).then_some(&mut defs);
        let (rows, _, _) = reader
            .read_records(left.min(BATCH_ROWS), levels, None, &mut batch)
            .map_err(read_error)?;
        if rows == 0 {
            return Err(truncated());
        }
        if chunk.max_def == 0 {
            batch.iter().try_for_each(|x| f(Some(x)))?;
        } else {
            let mut present = batch.iter();
            for &def in &defs[..rows] {
                f(if def == chunk.max_def {
                    present.next()
                } else {
                    None
                })?;
            }
        }
        left -= rows;
    }
    Ok(())
}

/// `read_values` with a step that cannot fail.
fn read_each<T: DataType>(
    values: ColumnReader,
    chunk: &Chunk,
    mut f: impl FnMut(Option<&T::T>),
) -> Result<()> {
    read_values::<T>(values, chunk, |x| {
        f(x);
        Ok(())
    })
}

/// A half-precision float's value (IEEE 754 binary16).
fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let fraction = f64::from(bits & 0x3ff);
    match exponent {
        0 => sign * fraction * 2f64.powi(-24),
        31 if fraction == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + fraction / 1024.0) * 2f64.powi(exponent - 15),
    }
}

/// One column's values while reading.
enum Acc {
    Logical(Vec<Option<bool>>),
    /// Integers of up to 32 bits; doubles at the end if one is `i32::MIN` (R's NA).
    Int32(Nullable<i32>),
    /// Wider integers; integer at the end only if all fit.
    Int64(Nullable<i64>),
    Double(Nullable<f64>),
    Character(Strings),
    Date(Nullable<i32>),
    /// Microseconds, and the time zone R shows them in.
    DateTime(Nullable<i64>, String),
}

impl Acc {
    /// An unsigned 64-bit value: beyond i64 it is no R integer, and the column
    /// becomes double from then on.
    fn push_u64(&mut self, x: Option<u64>) {
        if let (Acc::Int64(v), Some(x)) = (&*self, x) {
            if i64::try_from(x).is_err() {
                *self = Acc::Double(v.map(|x| x as f64));
            }
        }
        match self {
            Acc::Int64(v) => v.push(x.map(|x| x as i64)),
            Acc::Double(v) => v.push(x.map(|x| x as f64)),
            _ => {}
        }
    }

    fn finish(self) -> Column {
        match self {
            Acc::Logical(v) => Column::Logical(v),
            // Missing values hold 0, which fits.
            Acc::Int32(v) => {
                if v.values().contains(&i32::MIN) {
                    Column::Double(v.map(f64::from))
                } else {
                    Column::Integer(v)
                }
            }
            Acc::Int64(v) => {
                if v.values().iter().all(|x| fits_integer(*x)) {
                    Column::Integer(v.map(|x| x as i32))
                } else {
                    Column::Double(v.map(|x| x as f64))
                }
            }
            Acc::Double(v) => Column::Double(v),
            Acc::Character(v) => Column::Character(v),
            Acc::Date(v) => Column::Date(v),
            Acc::DateTime(v, tz) => Column::DateTime(v, tz),
        }
    }
}

/// Write `table` as Parquet, zstd-compressed, in row groups of `ROW_GROUP_ROWS`.
pub fn write_parquet<W: Write + Send>(table: &Table, out: W) -> Result<()> {
    let mut writer = ParquetWriter::new(out, table)?;
    writer.write(table)?;
    writer.finish()
}

/// A Parquet file written table by table (chunks of one table, with the first one's
/// columns), each in row groups of at most `ROW_GROUP_ROWS`.
pub struct ParquetWriter<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    names: Vec<String>,
    types: Vec<ColumnType>,
}

impl<W: Write + Send> ParquetWriter<W> {
    /// A writer of tables with the columns (names and types) of `first`.
    pub fn new(out: W, first: &Table) -> Result<Self> {
        let table = first;
        table.check()?;
        let mut fields = Vec::with_capacity(table.ncol());
        let mut arrow = Vec::with_capacity(table.ncol());
        for (name, column) in table.names.iter().zip(&table.columns) {
            let (physical, logical, arrow_type) = match column {
                Column::Logical(_) => (PhysicalType::BOOLEAN, None, ArrowType::Bool),
                Column::Integer(_) => (PhysicalType::INT32, None, ArrowType::Int32),
                Column::Double(_) => (PhysicalType::DOUBLE, None, ArrowType::Float64),
                Column::Character(_) => (
                    PhysicalType::BYTE_ARRAY,
                    Some(LogicalType::String),
                    ArrowType::Utf8,
                ),
                Column::Date(_) => (
                    PhysicalType::INT32,
                    Some(LogicalType::Date),
                    ArrowType::Date32,
                ),
                Column::DateTime(_, tz) => (
                    PhysicalType::INT64,
                    Some(LogicalType::timestamp(true, TimeUnit::MICROS)),
                    ArrowType::TimestampMicros(tz.clone()),
                ),
            };
            let field = SchemaType::primitive_type_builder(name, physical)
                .with_repetition(Repetition::OPTIONAL)
                .with_logical_type(logical)
                .build()
                .map_err(write_error)?;
            fields.push(Arc::new(field));
            arrow.push((name.as_str(), arrow_type));
        }
        let schema = SchemaType::group_type_builder("schema")
            .with_fields(fields)
            .build()
            .map_err(write_error)?;
        let level = ZstdLevel::try_new(1).map_err(write_error)?;
        let mut props = WriterProperties::builder().set_compression(Compression::ZSTD(level));
        // Doubles (predictions, measurements) rarely repeat: a dictionary would be built
        // and dropped for every row group.
        for (name, column) in table.names.iter().zip(&table.columns) {
            if matches!(column, Column::Double(_)) {
                props = props.set_column_dictionary_enabled(ColumnPath::from(name.as_str()), false);
            }
        }
        let props = props.build();
        let mut writer = SerializedFileWriter::new(out, Arc::new(schema), Arc::new(props))
            .map_err(write_error)?;
        writer.append_key_value_metadata(KeyValue::new(
            arrow_schema::KEY.to_string(),
            arrow_schema::encode(&arrow),
        ));
        Ok(ParquetWriter {
            writer,
            names: table.names.clone(),
            types: table.columns.iter().map(Column::column_type).collect(),
        })
    }

    /// Append the rows of `table`, whose columns must be the first table's; an
    /// integer column where the first had doubles, or a column with no values where
    /// it had another type, is converted.
    pub fn write(&mut self, table: &Table) -> Result<()> {
        table.check()?;
        if table.names != self.names {
            return Err(Error::input(format!(
                "a chunk's columns ({}) differ from the first chunk's ({})",
                table.names.join(", "),
                self.names.join(", ")
            )));
        }
        let mut converted = Vec::new();
        for ((name, column), want) in table.names.iter().zip(&table.columns).zip(&self.types) {
            converted.push(match (column, *want) {
                (c, t) if c.column_type() == t => None,
                (Column::Integer(v), ColumnType::Double) => Some(Column::Double(v.map(f64::from))),
                (Column::Logical(v), t) if v.iter().all(Option::is_none) => {
                    Some(Column::missing(t, v.len()))
                }
                (c, t) => {
                    return Err(Error::input(format!(
                        "column \"{name}\" is {} in this chunk but {} in the first",
                        c.column_type().name(),
                        t.name()
                    )))
                }
            });
        }
        let columns: Vec<&Column> = converted
            .iter()
            .zip(&table.columns)
            .map(|(c, orig)| c.as_ref().unwrap_or(orig))
            .collect();
        let writer = &mut self.writer;
        let nrow = table.nrow();
        let mut start = 0;
        while start < nrow {
            let end = (start + ROW_GROUP_ROWS).min(nrow);
            let mut group = writer.next_row_group().map_err(write_error)?;
            for column in &columns {
                let mut out = group.next_column().map_err(write_error)?.ok_or_else(|| {
                    Error::internal("Parquet writer: fewer columns than the schema")
                })?;
                let mut lo = start;
                while lo < end {
                    let hi = (lo + BATCH_ROWS).min(end);
                    match column {
                        Column::Logical(v) => {
                            write_batch::<BoolType, _>(&mut out, v[lo..hi].iter().copied())?
                        }
                        Column::Integer(v) | Column::Date(v) => {
                            write_batch::<Int32Type, _>(&mut out, v.iter_range(lo, hi))?
                        }
                        Column::Double(v) => {
                            write_batch::<DoubleType, _>(&mut out, v.iter_range(lo, hi))?
                        }
                        Column::DateTime(v, _) => {
                            write_batch::<Int64Type, _>(&mut out, v.iter_range(lo, hi))?
                        }
                        Column::Character(v) => {
                            // One copy of the batch's text; each value a slice of it.
                            let base = v.span(lo).map_or(0, |r| r.start);
                            let end = v.span(hi - 1).map_or(base, |r| r.end);
                            let text = Bytes::copy_from_slice(&v.text().as_bytes()[base..end]);
                            let values = (lo..hi).map(|i| match (v.is_missing(i), v.span(i)) {
                                (false, Some(r)) => {
                                    Some(ByteArray::from(text.slice(r.start - base..r.end - base)))
                                }
                                _ => None,
                            });
                            write_batch::<ByteArrayType, _>(&mut out, values)?
                        }
                    }
                    lo = hi;
                }
                out.close().map_err(write_error)?;
            }
            group.close().map_err(write_error)?;
            start = end;
        }
        Ok(())
    }

    /// Write the footer and close the file.
    pub fn finish(self) -> Result<()> {
        self.writer.close().map_err(write_error)?;
        Ok(())
    }
}

/// Write one batch of optional values to a column: the present ones, and a
/// definition level per row (1 present, 0 missing).
fn write_batch<T: DataType, I: Iterator<Item = Option<T::T>>>(
    out: &mut parquet::file::writer::SerializedColumnWriter<'_>,
    values: I,
) -> Result<()> {
    let (mut present, mut defs) = (Vec::new(), Vec::new());
    for x in values {
        defs.push(i16::from(x.is_some()));
        present.extend(x);
    }
    out.typed::<T>()
        .write_batch(&present, Some(&defs), None)
        .map_err(write_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::ColumnType;

    fn to_bytes(table: &Table) -> Bytes {
        let mut out = Vec::new();
        write_parquet(table, &mut out).unwrap();
        Bytes::from(out)
    }

    fn fixture(name: &str) -> Bytes {
        let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
        Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
    }

    fn sample(n: usize) -> Table {
        let lgl = (0..n).map(|i| (i % 5 != 0).then_some(i % 2 == 0)).collect();
        let int = (0..n)
            .map(|i| (i % 7 != 0).then_some(i as i32 - 1000))
            .collect();
        let dbl = (0..n)
            .map(|i| match i % 6 {
                0 => None,
                1 => Some(0.1),
                2 => Some(1.0 / 3.0),
                3 => Some(-0.0),
                4 => Some(1e-300),
                _ => Some(i as f64 * 1e15 + 0.5),
            })
            .collect();
        let chr = (0..n)
            .map(|i| match i % 4 {
                0 => None,
                1 => Some(String::new()),
                2 => Some(format!("row \"{i}\",\nüñí")),
                _ => Some("NA".to_string()),
            })
            .collect::<Strings>();
        let day = (0..n)
            .map(|i| (i % 3 != 0).then_some(i as i32 - 40_000))
            .collect();
        let at = (0..n)
            .map(|i| (i % 8 != 0).then_some((i as i64 - 5) * 3_600_000_123))
            .collect();
        Table::new(
            vec![
                "lgl".into(),
                "int".into(),
                "dbl".into(),
                "chr".into(),
                "day".into(),
                "at".into(),
            ],
            vec![
                Column::Logical(lgl),
                Column::Integer(int),
                Column::Double(dbl),
                Column::Character(chr),
                Column::Date(day),
                Column::DateTime(at, "Europe/Vienna".into()),
            ],
        )
        .unwrap()
    }

    fn same_bits(a: &Table, b: &Table) {
        assert_eq!(a, b);
        for (x, y) in a.columns.iter().zip(&b.columns) {
            if let (Column::Double(x), Column::Double(y)) = (x, y) {
                let bits = |v: &Nullable<f64>| -> Vec<Option<u64>> {
                    v.iter().map(|d| d.map(f64::to_bits)).collect()
                };
                assert_eq!(bits(x), bits(y));
            }
        }
    }

    #[test]
    fn roundtrip_with_missing_values_of_every_type() {
        for n in [0, 1, 10, 300_000] {
            let table = sample(n);
            let back = read_parquet(to_bytes(&table)).unwrap();
            same_bits(&back, &table);
        }
    }

    #[test]
    fn row_shards_cover_every_row_once() {
        let table = sample(300_001);
        let bytes = to_bytes(&table);
        for shards in 1..=7 {
            let parts: Vec<Table> = (0..shards)
                .map(|k| read_parquet_rows(bytes.clone(), k, shards).unwrap())
                .collect();
            let mut joined = Table::new(table.names.clone(), vec![]).unwrap_or_default();
            for (k, part) in parts.iter().enumerate() {
                if k == 0 {
                    joined = part.clone();
                    continue;
                }
                for (all, more) in joined.columns.iter_mut().zip(&part.columns) {
                    match (all, more) {
                        (Column::Logical(a), Column::Logical(b)) => a.extend_from_slice(b),
                        (Column::Integer(a), Column::Integer(b)) => a.append(b),
                        (Column::Double(a), Column::Double(b)) => a.append(b),
                        (Column::Character(a), Column::Character(b)) => a.append(b),
                        (Column::Date(a), Column::Date(b)) => a.append(b),
                        (Column::DateTime(a, _), Column::DateTime(b, _)) => a.append(b),
                        (a, b) => panic!("{:?} then {:?}", a.column_type(), b.column_type()),
                    }
                }
            }
            same_bits(&joined, &table);
        }
        assert!(read_parquet_rows(bytes, 1, 1).is_err());
    }

    #[test]
    fn empty_tables() {
        let none = Table::default();
        assert_eq!(read_parquet(to_bytes(&none)).unwrap(), none);
        let no_rows = sample(0);
        assert_eq!(read_parquet(to_bytes(&no_rows)).unwrap(), no_rows);
    }

    #[test]
    fn reads_what_pyarrow_writes() {
        // tools/parquet-fixtures.py: 4 rows in row groups of 3, dictionary-encoded.
        let t = read_parquet(fixture("pyarrow-types.parquet")).unwrap();
        let col = |name: &str| t.column(name).unwrap_or_else(|| panic!("{name}")).clone();
        let ints = |v: &[Option<i32>]| Column::Integer(v.iter().copied().collect());
        let dbls = |v: &[Option<f64>]| Column::Double(v.iter().copied().collect());
        let days = |v: &[Option<i32>]| Column::Date(v.iter().copied().collect());
        let micros = |v: &[Option<i64>], tz: &str| {
            Column::DateTime(v.iter().copied().collect(), tz.to_string())
        };
        let text = |v: &[Option<&str>]| Column::Character(v.iter().copied().collect());
        assert_eq!(col("small"), ints(&[Some(1), None, Some(-5), Some(7)]));
        assert_eq!(
            col("big"),
            dbls(&[Some(1.0), None, Some((1u64 << 40) as f64), Some(0.0)])
        );
        // R's NA is i32::MIN: a column holding it is double.
        assert_eq!(
            col("na_int"),
            dbls(&[Some(-2_147_483_648.0), None, Some(1.0), Some(2.0)])
        );
        assert_eq!(
            col("u64"),
            dbls(&[Some(u64::MAX as f64), Some(1.0), None, Some(2.0)])
        );
        assert_eq!(
            col("u32"),
            dbls(&[Some(4_294_967_295.0), Some(0.0), None, Some(1.0)])
        );
        assert_eq!(col("i8"), ints(&[Some(-128), None, Some(127), Some(0)]));
        assert_eq!(col("u16"), ints(&[Some(65_535), None, Some(0), Some(1)]));
        assert_eq!(col("large"), text(&[Some("x"), None, Some(""), Some("z")]));
        assert_eq!(col("dict"), text(&[Some("a"), None, Some("b"), Some("a")]));
        assert_eq!(
            col("text"),
            text(&[Some("row \"1\",\nüñí"), None, Some("NA"), Some("")])
        );
        assert_eq!(col("f16"), dbls(&[Some(0.5), None, Some(1.0), Some(-2.0)]));
        assert_eq!(col("f32"), dbls(&[Some(0.5), None, Some(1.0), None]));
        let Column::Double(f64s) = col("f64") else {
            panic!("f64")
        };
        assert_eq!(f64s.get(0), Some(0.1));
        assert!(f64s
            .get(2)
            .is_some_and(|x| x == 0.0 && x.is_sign_negative()));
        assert_eq!(
            col("flag"),
            Column::Logical(vec![Some(true), None, Some(false), Some(true)])
        );
        assert_eq!(col("nothing"), Column::Logical(vec![None; 4]));
        assert_eq!(col("d32"), days(&[Some(19_782), None, Some(-1), Some(0)]));
        assert_eq!(col("d64"), days(&[Some(19_782), Some(-1), None, Some(0)]));
        // Seconds are stored as milliseconds by pyarrow.
        assert_eq!(
            col("s"),
            micros(
                &[Some(1_709_214_307_000_000), None, Some(-1_000_000), Some(0)],
                "UTC"
            )
        );
        // A fixed offset is shown in UTC; a wall-clock time is taken as UTC.
        assert_eq!(
            col("ms_offset"),
            micros(&[Some(1_500_000), None, Some(-1000), Some(0)], "UTC")
        );
        assert_eq!(
            col("us_naive"),
            micros(&[Some(7), None, Some(-7), Some(0)], "UTC")
        );
        // Nanoseconds are floored to microseconds; the zone comes from Arrow's schema.
        assert_eq!(
            col("ns_vienna"),
            micros(&[Some(1), Some(-1), None, Some(0)], "Europe/Vienna")
        );
        use ColumnType::*;
        assert_eq!(t.columns[0].column_type(), Integer);
        // Shards across the row-group boundary.
        for shards in 1..=4 {
            let rows: usize = (0..shards)
                .map(|k| {
                    read_parquet_rows(fixture("pyarrow-types.parquet"), k, shards)
                        .unwrap()
                        .nrow()
                })
                .sum();
            assert_eq!(rows, 4);
        }
        // Two shards of two row groups (3 rows, then 1): one whole group each.
        let last = read_parquet_rows(fixture("pyarrow-types.parquet"), 1, 2).unwrap();
        assert_eq!(last.column("dict").unwrap(), &text(&[Some("a")]));
        // Four shards of two groups: equal row ranges, the first group shared.
        let third = read_parquet_rows(fixture("pyarrow-types.parquet"), 2, 4).unwrap();
        assert_eq!(third.column("dict").unwrap(), &text(&[Some("b")]));
    }

    #[test]
    fn reads_legacy_int96_timestamps() {
        let t = read_parquet(fixture("pyarrow-int96.parquet")).unwrap();
        assert_eq!(
            t.columns[0],
            Column::DateTime(
                [Some(1_709_214_307_123_456), None, Some(-1)]
                    .into_iter()
                    .collect(),
                "UTC".into()
            )
        );
    }

    #[test]
    fn dates_are_written_as_date32_and_instants_as_utc_microseconds() {
        let bytes = to_bytes(&sample(10));
        let reader = SerializedFileReader::new(bytes).unwrap();
        let file = reader.metadata().file_metadata();
        let schema = file.schema_descr();
        assert_eq!(
            schema.column(4).logical_type_ref(),
            Some(&LogicalType::Date)
        );
        // The Parquet logical type says the values are instants, so any reader
        // (pyarrow, R's arrow, Spark) gets the same moments; Arrow's schema gives the
        // zone to show them in.
        assert_eq!(
            schema.column(5).logical_type_ref(),
            Some(&LogicalType::timestamp(true, TimeUnit::MICROS))
        );
        let kv = file.key_value_metadata().unwrap();
        let arrow = kv.iter().find(|kv| kv.key == arrow_schema::KEY).unwrap();
        assert_eq!(
            arrow_schema::time_zones(arrow.value.as_deref().unwrap()),
            [("at".to_string(), "Europe/Vienna".to_string())]
        );
    }

    #[test]
    fn unsupported_types_name_the_column() {
        for (file, what) in [
            ("pyarrow-time.parquet", "has Parquet type INT32 (Time"),
            ("pyarrow-list.parquet", "is nested"),
            ("pyarrow-decimal.parquet", "(Decimal"),
            ("pyarrow-binary.parquet", "has Parquet type BYTE_ARRAY,"),
        ] {
            let err = read_parquet(fixture(file)).unwrap_err();
            assert_eq!(err.kind, crate::ErrorKind::Input, "{file}");
            assert!(
                err.message.starts_with("column \"when\" ") && err.message.contains(what),
                "{file}: {}",
                err.message
            );
        }
        let err = read_parquet(Bytes::from_static(b"not parquet at all")).unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::Input);
    }

    #[test]
    fn strings_that_are_not_utf8_are_an_input_error() {
        let field = SchemaType::primitive_type_builder("s", PhysicalType::BYTE_ARRAY)
            .with_repetition(Repetition::OPTIONAL)
            .with_logical_type(Some(LogicalType::String))
            .build()
            .unwrap();
        let schema = SchemaType::group_type_builder("schema")
            .with_fields(vec![Arc::new(field)])
            .build()
            .unwrap();
        let mut out = Vec::new();
        let props = Arc::new(WriterProperties::builder().build());
        let mut w = SerializedFileWriter::new(&mut out, Arc::new(schema), props).unwrap();
        let mut group = w.next_row_group().unwrap();
        let mut column = group.next_column().unwrap().unwrap();
        let bad = ByteArray::from(vec![b'o', b'k', 0xff]);
        column
            .typed::<ByteArrayType>()
            .write_batch(&[bad], Some(&[1]), None)
            .unwrap();
        column.close().unwrap();
        group.close().unwrap();
        w.close().unwrap();
        let err = read_parquet(Bytes::from(out)).unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::Input);
        assert!(err
            .message
            .contains("column \"s\" holds a string that is not valid UTF-8"));
    }

    #[test]
    fn half_floats() {
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0xc000), -2.0);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert_eq!(f16_to_f64(0x7bff), 65504.0);
        assert_eq!(f16_to_f64(0x7c00), f64::INFINITY);
        assert!(f16_to_f64(0x7e00).is_nan());
    }

    /// The CSV text of tables written one after the other under the first's header.
    fn csv_text(tables: &[Table]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::table::write_csv_header(&tables[0], &mut out).unwrap();
        for t in tables {
            crate::table::write_csv_rows(t, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn chunks_of_a_shard_are_its_rows_once_in_order() {
        // Five row groups of 200 rows, one per write.
        let part = sample(200);
        let mut out = Vec::new();
        let mut writer = ParquetWriter::new(&mut out, &part).unwrap();
        for _ in 0..5 {
            writer.write(&part).unwrap();
        }
        writer.finish().unwrap();
        let file = Bytes::from(out);
        // 3 shards take whole groups; 7 shards (more than groups) take row ranges.
        for shards in [1, 3, 7] {
            for shard in 0..shards {
                let whole = read_parquet_rows(file.clone(), shard, shards).unwrap();
                for chunk_bytes in [1, 3000, 20_000, usize::MAX] {
                    let mut chunks =
                        ParquetChunks::open(file.clone(), shard, shards, chunk_bytes).unwrap();
                    let mut got = Vec::new();
                    while let Some(t) = chunks.next_chunk().unwrap() {
                        got.push(t);
                    }
                    let rows: usize = got.iter().map(Table::nrow).sum();
                    assert_eq!(rows, whole.nrow(), "{shard}/{shards} at {chunk_bytes}");
                    assert_eq!(csv_text(&got), csv_text(std::slice::from_ref(&whole)));
                    if chunk_bytes == usize::MAX {
                        assert_eq!(got.len(), 1);
                    } else if chunk_bytes == 1 {
                        assert_eq!(got.len(), whole.nrow().max(1));
                    }
                }
            }
        }
    }

    #[test]
    fn the_writer_converts_integers_and_empty_columns_to_the_first_chunks_types() {
        let first = Table::new(
            vec!["x".into(), "y".into()],
            vec![
                Column::Double([Some(0.5)].into_iter().collect()),
                Column::Character([Some("a")].into_iter().collect()),
            ],
        )
        .unwrap();
        let second = Table::new(
            vec!["x".into(), "y".into()],
            vec![
                Column::Integer([Some(2), None].into_iter().collect()),
                Column::Logical(vec![None, None]),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        let mut writer = ParquetWriter::new(&mut out, &first).unwrap();
        writer.write(&first).unwrap();
        writer.write(&second).unwrap();
        writer.finish().unwrap();
        let back = read_parquet(Bytes::from(out)).unwrap();
        assert_eq!(
            back.columns[0],
            Column::Double([Some(0.5), Some(2.0), None].into_iter().collect())
        );
        assert_eq!(
            back.columns[1],
            Column::Character([Some("a"), None, None].into_iter().collect())
        );

        let mut writer = ParquetWriter::new(Vec::new(), &first).unwrap();
        let text = Table::new(
            vec!["x".into(), "y".into()],
            vec![
                Column::Character([Some("1")].into_iter().collect()),
                Column::Character([Some("a")].into_iter().collect()),
            ],
        )
        .unwrap();
        let e = writer.write(&text).unwrap_err().to_string();
        assert!(
            e.contains("column \"x\" is character in this chunk but double"),
            "{e}"
        );
        let renamed = Table::new(vec!["x".into()], vec![first.columns[0].clone()]).unwrap();
        assert!(writer.write(&renamed).is_err());
    }
}
