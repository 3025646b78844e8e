//! Parquet through Arrow arrays: each column decodes batch by batch into the
//! table's vectors, and writes from them in batches, so no second full copy exists.
//!
//! Reading maps booleans to logical, integers to integer when every value fits R's
//! integer (else double), floating point to double, strings (plain, large, view or
//! dictionary-encoded) to character, dates to Date and timestamps to date-times (in
//! microseconds; nanoseconds are floored). Other types are an error naming the column.
//! Writing maps Date to `date32` and date-times to `timestamp[us]` with their time
//! zone, so that the file records instants (Parquet's `isAdjustedToUTC`).

use super::{check_shard, fits_integer, shard_range, Column, Nullable, Strings, Table};
use crate::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Int8Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, BooleanArray, Date32Array, Float64Array, Int32Array,
    RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::ChunkReader;
use std::io::Write;
use std::sync::Arc;

/// Rows per Arrow batch, reading and writing: big enough to amortise the per-batch
/// work, small enough that a batch's arrays are a small extra copy.
const BATCH_ROWS: usize = 64 * 1024;

/// Rows per row group written: lets readers split a file across threads or shards.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Read a whole Parquet file: a `std::fs::File`, or `bytes::Bytes` in memory.
pub fn read_parquet<R: ChunkReader + 'static>(input: R) -> Result<Table> {
    read_parquet_rows(input, 0, 1)
}

/// Read rows of shard `shard` (0-based) of `shards`: contiguous row ranges of equal
/// size (within one row), decoding only the row groups that hold them.
pub fn read_parquet_rows<R: ChunkReader + 'static>(
    input: R,
    shard: usize,
    shards: usize,
) -> Result<Table> {
    check_shard(shard, shards)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(input).map_err(read_error)?;
    let schema = builder.schema().clone();
    let mut columns = schema
        .fields()
        .iter()
        .map(|f| Acc::for_field(f))
        .collect::<Result<Vec<_>>>()?;

    let meta = builder.metadata().clone();
    let sizes: Vec<usize> = meta
        .row_groups()
        .iter()
        .map(|g| usize::try_from(g.num_rows()).unwrap_or(0))
        .collect();
    let (lo, hi) = shard_range(sizes.iter().sum(), shard, shards)?;
    let (mut groups, mut skip, mut at) = (Vec::new(), 0, 0);
    for (i, n) in sizes.iter().enumerate() {
        if at + n > lo && at < hi {
            if groups.is_empty() {
                skip = lo - at;
            }
            groups.push(i);
        }
        at += n;
    }
    for column in &mut columns {
        column.reserve(hi - lo);
    }
    let reader = builder
        .with_row_groups(groups)
        .with_offset(skip)
        .with_limit(hi - lo)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(read_error)?;
    for batch in reader {
        let batch =
            batch.map_err(|e| Error::input(format!("cannot read the Parquet data: {e}")))?;
        for ((column, array), field) in columns.iter_mut().zip(batch.columns()).zip(schema.fields())
        {
            column.append(field.name(), array.as_ref())?;
        }
    }
    let names = schema.fields().iter().map(|f| f.name().clone()).collect();
    Table::new(names, columns.into_iter().map(Acc::finish).collect())
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
    /// Arrow's null type: every value missing.
    Null(usize),
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

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

impl Acc {
    fn for_field(field: &Field) -> Result<Acc> {
        use DataType::*;
        Ok(match field.data_type() {
            Boolean => Acc::Logical(Vec::new()),
            Null => Acc::Null(0),
            Int8 | Int16 | Int32 | UInt8 | UInt16 => Acc::Int32(Nullable::new()),
            Int64 | UInt32 | UInt64 => Acc::Int64(Nullable::new()),
            Float16 | Float32 | Float64 => Acc::Double(Nullable::new()),
            t if is_string(t) => Acc::Character(Strings::new()),
            Dictionary(_, values) if is_string(values) => Acc::Character(Strings::new()),
            Date32 | Date64 => Acc::Date(Nullable::new()),
            Timestamp(_, tz) => Acc::DateTime(Nullable::new(), time_zone_name(tz.as_deref())),
            other => {
                return Err(Error::input(format!(
                    "column \"{}\" has type {other}, which cannot be read: supported are \
                     booleans, integers, floating point numbers, strings, dates and timestamps",
                    field.name()
                )))
            }
        })
    }

    fn reserve(&mut self, n: usize) {
        match self {
            Acc::Logical(v) => v.reserve(n),
            Acc::Int32(v) => *v = Nullable::with_capacity(n),
            Acc::Int64(v) => *v = Nullable::with_capacity(n),
            Acc::Double(v) => *v = Nullable::with_capacity(n),
            Acc::Character(v) => *v = Strings::with_capacity(n, 0),
            Acc::Date(v) => *v = Nullable::with_capacity(n),
            Acc::DateTime(v, _) => *v = Nullable::with_capacity(n),
            Acc::Null(_) => {}
        }
    }

    fn append(&mut self, name: &str, array: &dyn Array) -> Result<()> {
        let unexpected = || {
            Error::internal(format!(
                "column \"{name}\": unexpected Arrow array of type {}",
                array.data_type()
            ))
        };
        match (self, array.data_type()) {
            (Acc::Logical(v), DataType::Boolean) => {
                v.extend(array.as_boolean_opt().ok_or_else(unexpected)?.iter())
            }
            (Acc::Null(n), DataType::Null) => *n += array.len(),
            (Acc::Int32(v), DataType::Int8) => extend::<Int8Type, _>(v, array, i32::from),
            (Acc::Int32(v), DataType::Int16) => extend::<Int16Type, _>(v, array, i32::from),
            (Acc::Int32(v), DataType::UInt8) => extend::<UInt8Type, _>(v, array, i32::from),
            (Acc::Int32(v), DataType::UInt16) => extend::<UInt16Type, _>(v, array, i32::from),
            (Acc::Int32(v), DataType::Int32) => extend::<Int32Type, _>(v, array, |x| x),
            (Acc::Int64(v), DataType::Int64) => extend::<Int64Type, _>(v, array, |x| x),
            (Acc::Int64(v), DataType::UInt32) => extend::<UInt32Type, _>(v, array, i64::from),
            // A value beyond i64 is no R integer: the column becomes double now.
            (acc @ Acc::Int64(_), DataType::UInt64) => {
                let values = array
                    .as_primitive_opt::<UInt64Type>()
                    .ok_or_else(unexpected)?;
                if values.iter().flatten().any(|x| i64::try_from(x).is_err()) {
                    acc.widen();
                    return acc.append(name, array);
                }
                if let Acc::Int64(v) = acc {
                    for x in values.iter() {
                        v.push(x.and_then(|x| i64::try_from(x).ok()));
                    }
                }
            }
            (Acc::Double(v), DataType::UInt64) => extend::<UInt64Type, _>(v, array, |x| x as f64),
            (Acc::Double(v), DataType::Float16) => {
                extend::<Float16Type, _>(v, array, |x| x.to_f64())
            }
            (Acc::Double(v), DataType::Float32) => extend::<Float32Type, _>(v, array, f64::from),
            (Acc::Double(v), DataType::Float64) => extend::<Float64Type, _>(v, array, |x| x),
            (Acc::Date(v), DataType::Date32) => extend::<Date32Type, _>(v, array, |x| x),
            // Milliseconds since the epoch, in whole days (floored, as R's as.Date).
            (Acc::Date(v), DataType::Date64) => extend::<Date64Type, _>(v, array, |x| {
                i32::try_from(x.div_euclid(86_400_000)).unwrap_or(i32::MAX)
            }),
            (Acc::DateTime(v, _), DataType::Timestamp(unit, _)) => match unit {
                TimeUnit::Second => {
                    extend::<TimestampSecondType, _>(v, array, |x| x.saturating_mul(1_000_000))
                }
                TimeUnit::Millisecond => {
                    extend::<TimestampMillisecondType, _>(v, array, |x| x.saturating_mul(1000))
                }
                TimeUnit::Microsecond => extend::<TimestampMicrosecondType, _>(v, array, |x| x),
                TimeUnit::Nanosecond => {
                    extend::<TimestampNanosecondType, _>(v, array, |x| x.div_euclid(1000))
                }
            },
            (Acc::Character(v), DataType::Dictionary(_, _)) => {
                let dict = array.as_any_dictionary_opt().ok_or_else(unexpected)?;
                let mut values = Vec::with_capacity(dict.values().len());
                if !for_each_str(dict.values().as_ref(), |s| values.push(s)) {
                    return Err(unexpected());
                }
                for (i, k) in dict.normalized_keys().iter().enumerate() {
                    v.push(match array.is_null(i) {
                        true => None,
                        false => values.get(*k).copied().flatten(),
                    });
                }
            }
            (Acc::Character(v), _) => {
                if !for_each_str(array, |s| v.push(s)) {
                    return Err(unexpected());
                }
            }
            _ => return Err(unexpected()),
        }
        Ok(())
    }

    /// Wide integers that cannot all be R integers: doubles from now on.
    fn widen(&mut self) {
        if let Acc::Int64(v) = self {
            *self = Acc::Double(v.map(|x| x as f64));
        }
    }

    fn finish(self) -> Column {
        match self {
            Acc::Logical(v) => Column::Logical(v),
            Acc::Null(n) => Column::Logical(vec![None; n]),
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

/// Append a primitive array's values, converted by `f`.
fn extend<T: ArrowPrimitiveType, U: Copy + Default>(
    out: &mut Nullable<U>,
    array: &dyn Array,
    f: impl Fn(T::Native) -> U,
) {
    if let Some(values) = array.as_primitive_opt::<T>() {
        for x in values.iter() {
            out.push(x.map(&f));
        }
    }
}

/// Call `f` on each value of a string array; false if `array` holds no strings.
fn for_each_str<'a>(array: &'a dyn Array, mut f: impl FnMut(Option<&'a str>)) -> bool {
    if let Some(a) = array.as_string_opt::<i32>() {
        a.iter().for_each(f);
    } else if let Some(a) = array.as_string_opt::<i64>() {
        a.iter().for_each(f);
    } else if let Some(a) = array.as_string_view_opt() {
        a.iter().for_each(&mut f);
    } else {
        return false;
    }
    true
}

/// Write `table` as Parquet, zstd-compressed, in row groups of `ROW_GROUP_ROWS`.
pub fn write_parquet<W: Write + Send>(table: &Table, out: W) -> Result<()> {
    table.check()?;
    let fields: Vec<Field> = table
        .names
        .iter()
        .zip(&table.columns)
        .map(|(name, column)| {
            let t = match column {
                Column::Logical(_) => DataType::Boolean,
                Column::Integer(_) => DataType::Int32,
                Column::Double(_) => DataType::Float64,
                Column::Character(_) => DataType::Utf8,
                Column::Date(_) => DataType::Date32,
                Column::DateTime(_, tz) => {
                    DataType::Timestamp(TimeUnit::Microsecond, Some(tz.as_str().into()))
                }
            };
            Field::new(name, t, true)
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let level = ZstdLevel::try_new(1).map_err(write_error)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut writer = ArrowWriter::try_new(out, schema.clone(), Some(props)).map_err(write_error)?;
    let nrow = table.nrow();
    let mut lo = 0;
    while lo < nrow {
        let hi = (lo + BATCH_ROWS).min(nrow);
        let arrays: Vec<ArrayRef> = table
            .columns
            .iter()
            .map(|column| -> ArrayRef {
                match column {
                    Column::Logical(v) => Arc::new(BooleanArray::from_iter(&v[lo..hi])),
                    Column::Integer(v) => Arc::new(Int32Array::from_iter(v.iter_range(lo, hi))),
                    Column::Double(v) => Arc::new(Float64Array::from_iter(v.iter_range(lo, hi))),
                    Column::Character(v) => {
                        Arc::new(StringArray::from_iter((lo..hi).map(|i| v.get(i))))
                    }
                    Column::Date(v) => Arc::new(Date32Array::from_iter(v.iter_range(lo, hi))),
                    Column::DateTime(v, tz) => Arc::new(
                        TimestampMicrosecondArray::from_iter(v.iter_range(lo, hi))
                            .with_timezone(tz.as_str()),
                    ),
                }
            })
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(write_error)?;
        writer.write(&batch).map_err(write_error)?;
        lo = hi;
    }
    writer.close().map_err(write_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::ColumnType;
    use arrow_array::{DictionaryArray, Int64Array, LargeStringArray, UInt64Array};
    use bytes::Bytes;

    fn to_bytes(table: &Table) -> Bytes {
        let mut out = Vec::new();
        write_parquet(table, &mut out).unwrap();
        Bytes::from(out)
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
            let mut joined: Vec<Option<i32>> = Vec::new();
            for part in &parts {
                let Column::Integer(v) = &part.columns[1] else {
                    panic!("int is {:?}", part.columns[1].column_type())
                };
                joined.extend(v.iter());
            }
            assert_eq!(
                Column::Integer(joined.into_iter().collect()),
                table.columns[1],
                "shards = {shards}"
            );
        }
        assert!(read_parquet_rows(bytes, 1, 1).is_err());
    }

    #[test]
    fn empty_tables() {
        let none = Table::default();
        assert_eq!(read_parquet(to_bytes(&none)).unwrap(), none);
    }

    fn write_batch(batch: RecordBatch) -> Bytes {
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        Bytes::from(out)
    }

    #[test]
    fn maps_arrow_types() {
        let keys = arrow_array::Int8Array::from(vec![Some(0), None, Some(1), Some(0)]);
        let dict =
            DictionaryArray::try_new(keys, Arc::new(StringArray::from(vec!["a", "b"]))).unwrap();
        let batch = RecordBatch::try_from_iter(vec![
            (
                "small",
                Arc::new(Int64Array::from(vec![Some(1), None, Some(-5), Some(7)])) as ArrayRef,
            ),
            (
                "big",
                Arc::new(Int64Array::from(vec![
                    Some(1),
                    None,
                    Some(1 << 40),
                    Some(0),
                ])),
            ),
            (
                "na_int",
                Arc::new(Int32Array::from(vec![
                    Some(i32::MIN),
                    None,
                    Some(1),
                    Some(2),
                ])),
            ),
            (
                "u64",
                Arc::new(UInt64Array::from(vec![
                    Some(u64::MAX),
                    Some(1),
                    None,
                    Some(2),
                ])),
            ),
            (
                "large",
                Arc::new(LargeStringArray::from(vec![
                    Some("x"),
                    None,
                    Some(""),
                    Some("z"),
                ])),
            ),
            ("dict", Arc::new(dict)),
            (
                "f32",
                Arc::new(arrow_array::Float32Array::from(vec![
                    Some(0.5),
                    None,
                    Some(1.0),
                    None,
                ])),
            ),
        ])
        .unwrap();
        let t = read_parquet(write_batch(batch)).unwrap();
        use ColumnType::*;
        let types: Vec<ColumnType> = t.columns.iter().map(Column::column_type).collect();
        assert_eq!(
            types,
            [Integer, Double, Double, Double, Character, Character, Double]
        );
        assert_eq!(
            t.columns[0],
            Column::Integer(vec![Some(1), None, Some(-5), Some(7)].into_iter().collect())
        );
        assert_eq!(
            t.columns[1],
            Column::Double(
                vec![Some(1.0), None, Some((1u64 << 40) as f64), Some(0.0)]
                    .into_iter()
                    .collect()
            )
        );
        assert_eq!(
            t.columns[3],
            Column::Double(
                vec![Some(u64::MAX as f64), Some(1.0), None, Some(2.0)]
                    .into_iter()
                    .collect()
            )
        );
        assert_eq!(
            t.columns[5],
            Column::Character(
                [Some("a"), None, Some("b"), Some("a")]
                    .into_iter()
                    .collect()
            )
        );
    }

    #[test]
    fn dates_and_timestamps_of_every_unit_read_as_dates_and_date_times() {
        use arrow_array::{
            Date64Array, TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
        };
        let batch = RecordBatch::try_from_iter(vec![
            (
                "d32",
                Arc::new(Date32Array::from(vec![Some(19_782), None, Some(-1)])) as ArrayRef,
            ),
            (
                "d64",
                Arc::new(Date64Array::from(vec![
                    Some(19_782 * 86_400_000),
                    Some(-1),
                    None,
                ])),
            ),
            (
                "s",
                Arc::new(
                    TimestampSecondArray::from(vec![Some(1_709_214_307), None, Some(-1)])
                        .with_timezone("UTC"),
                ),
            ),
            (
                "ms_offset",
                Arc::new(
                    TimestampMillisecondArray::from(vec![Some(1_500), None, Some(-1)])
                        .with_timezone("+00:00"),
                ),
            ),
            (
                "us_naive",
                Arc::new(TimestampMicrosecondArray::from(vec![
                    Some(7),
                    None,
                    Some(-7),
                ])),
            ),
            (
                "ns_vienna",
                Arc::new(
                    TimestampNanosecondArray::from(vec![Some(1_999), Some(-1), None])
                        .with_timezone("Europe/Vienna"),
                ),
            ),
        ])
        .unwrap();
        let t = read_parquet(write_batch(batch)).unwrap();
        let days = |v: &[Option<i32>]| Column::Date(v.iter().copied().collect());
        let micros = |v: &[Option<i64>], tz: &str| {
            Column::DateTime(v.iter().copied().collect(), tz.to_string())
        };
        assert_eq!(t.columns[0], days(&[Some(19_782), None, Some(-1)]));
        // -1 ms is the day before the epoch.
        assert_eq!(t.columns[1], days(&[Some(19_782), Some(-1), None]));
        assert_eq!(
            t.columns[2],
            micros(
                &[Some(1_709_214_307_000_000), None, Some(-1_000_000)],
                "UTC"
            )
        );
        assert_eq!(
            t.columns[3],
            micros(&[Some(1_500_000), None, Some(-1000)], "UTC")
        );
        assert_eq!(t.columns[4], micros(&[Some(7), None, Some(-7)], "UTC"));
        // Nanoseconds are floored to microseconds.
        assert_eq!(
            t.columns[5],
            micros(&[Some(1), Some(-1), None], "Europe/Vienna")
        );
    }

    #[test]
    fn dates_are_written_as_date32_and_instants_as_utc_microseconds() {
        let table = sample(10);
        let bytes = to_bytes(&table);
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        let schema = builder.schema();
        assert_eq!(schema.field(4).data_type(), &DataType::Date32);
        assert_eq!(
            schema.field(5).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("Europe/Vienna".into()))
        );
        // The Parquet logical type says the values are instants, so any reader
        // (pyarrow, R's arrow, Spark) gets the same moments.
        let parquet_schema = builder.parquet_schema();
        let logical = parquet_schema.column(5).logical_type_ref().cloned();
        assert!(
            matches!(
                &logical,
                Some(parquet::basic::LogicalType::Timestamp(t)) if t.is_adjusted_to_u_t_c
            ),
            "{logical:?}"
        );
    }

    #[test]
    fn unsupported_types_name_the_column() {
        let batch = RecordBatch::try_from_iter(vec![(
            "when",
            Arc::new(arrow_array::Time32SecondArray::from(vec![Some(1), None])) as ArrayRef,
        )])
        .unwrap();
        let err = read_parquet(write_batch(batch)).unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::Input);
        assert!(
            err.message.starts_with("column \"when\" has type Time32"),
            "{}",
            err.message
        );
        let err = read_parquet(Bytes::from_static(b"not parquet at all")).unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::Input);
    }
}
