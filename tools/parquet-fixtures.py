# Writes the Parquet files that core/src/table/parquet.rs's tests read: files made by
# another writer (pyarrow, as pandas and most Python pipelines make them), so that the
# reader is tested on what users bring, not only on its own output.
#
#   pip install pyarrow && python3 tools/parquet-fixtures.py
#
# The files are committed (src/rust/core/tests/data/); rerun this only to change them.
import datetime
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq

out = os.path.join(os.path.dirname(__file__), "..", "src", "rust", "core", "tests", "data")
os.makedirs(out, exist_ok=True)


def col(values, type):
    return pa.array(values, type=type)


types = pa.table({
    "small": col([1, None, -5, 7], pa.int64()),
    "big": col([1, None, 1 << 40, 0], pa.int64()),
    "na_int": col([-(1 << 31), None, 1, 2], pa.int32()),
    "u64": col([(1 << 64) - 1, 1, None, 2], pa.uint64()),
    "u32": col([(1 << 32) - 1, 0, None, 1], pa.uint32()),
    "i8": col([-128, None, 127, 0], pa.int8()),
    "u16": col([65535, None, 0, 1], pa.uint16()),
    "large": col(["x", None, "", "z"], pa.large_string()),
    "dict": pa.array(["a", None, "b", "a"]).dictionary_encode(),
    "text": col(["row \"1\",\nüñí", None, "NA", ""], pa.string()),
    "f16": pa.array([0.5, None, 1.0, -2.0], pa.float32()).cast(pa.float16()),
    "f32": col([0.5, None, 1.0, None], pa.float32()),
    "f64": col([0.1, None, -0.0, 1e-300], pa.float64()),
    "flag": col([True, None, False, True], pa.bool_()),
    "nothing": pa.nulls(4),
    "d32": col([19782, None, -1, 0], pa.date32()),
    "d64": col([19782 * 86_400_000, -86_400_000, None, 0], pa.date64()),
    "s": col([1_709_214_307, None, -1, 0], pa.timestamp("s", tz="UTC")),
    "ms_offset": col([1_500, None, -1, 0], pa.timestamp("ms", tz="+00:00")),
    "us_naive": col([7, None, -7, 0], pa.timestamp("us")),
    "ns_vienna": col([1_999, -1, None, 0], pa.timestamp("ns", tz="Europe/Vienna")),
})
pq.write_table(types, os.path.join(out, "pyarrow-types.parquet"), row_group_size=3)

# Spark and older pandas write timestamps as INT96 (nanoseconds of a Julian day).
int96 = pa.table({"at": col([1_709_214_307_123_456_789, None, -1], pa.timestamp("ns"))})
pq.write_table(int96, os.path.join(out, "pyarrow-int96.parquet"),
               use_deprecated_int96_timestamps=True)

# Types that scoring cannot take: each must be refused with the column's name.
for name, array in {
    "time": col([1, None], pa.time32("s")),
    "list": col([[1, 2], None], pa.list_(pa.int32())),
    "decimal": col([1, None], pa.decimal128(10, 2)),
    "binary": col([b"\x00\xff", None], pa.binary()),
}.items():
    pq.write_table(pa.table({"when": array}), os.path.join(out, f"pyarrow-{name}.parquet"))

print("wrote", sorted(f for f in os.listdir(out) if f.startswith("pyarrow-")), file=sys.stderr)
