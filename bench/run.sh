#!/usr/bin/env bash
# Run the benchmarks (not tests). Usage: bash bench/run.sh   (or: make bench)
# Needs the package installed in .build/lib (make install) and network access to PyPI
# once, for the Python peer's virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.build/bench-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "azure-storage-blob==12.*"
fi
export SERVERLESS_BENCH_PYTHON="$PWD/$VENV/bin/python"
R_LIBS=.build/lib Rscript bench/blob_transfer.R
R_LIBS=.build/lib Rscript bench/interrupt_latency.R
R_LIBS=.build/lib Rscript bench/deploy.R
R_LIBS=.build/lib Rscript bench/score.R
# CSV and Parquet read/write of a 1e6-row data frame, against base R and data.table.
R_LIBS=.build/lib Rscript bench/table_io.R

# 200 concurrent container-group creates against the control-plane emulator.
( cd src/rust && cargo run --locked --release -q -p serverless-core --example aci_creates )
