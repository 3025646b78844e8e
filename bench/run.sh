#!/usr/bin/env bash
# Runs every benchmark (not tests) and writes bench/RESULTS.md.
# Usage: bash bench/run.sh   (or: make bench, which installs the package first)
#
# Needs the package installed in .build/lib (make install), Azurite, and network
# access to PyPI once, for the Python peer's virtualenv. Each benchmark appends its
# figures to a TSV (SERVERLESS_BENCH_RESULTS; columns in bench/record.R) and logs to
# .build/bench/<name>.log; bench/results.R turns the rows into bench/RESULTS.md. A
# benchmark that fails is reported there and the others still run.
#
# SERVERLESS_BENCH_SKIP_INSTALL=1 skips the (slow) clean-install timing;
# SERVERLESS_BENCH_ONLY="score deploy" runs only the named benchmarks and replaces
# their rows in the last run's results.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=.build/bench
mkdir -p "$OUT"
export SERVERLESS_BENCH_RESULTS="$ROOT/$OUT/results.tsv"
if [ -n "${SERVERLESS_BENCH_ONLY:-}" ] && [ -f "$SERVERLESS_BENCH_RESULTS" ] && [ -f "$OUT/status.tsv" ]; then
  # A partial run replaces the named benchmarks' rows and keeps the others.
  for f in "$SERVERLESS_BENCH_RESULTS" "$OUT/status.tsv"; do
    awk -F'\t' -v only=" $SERVERLESS_BENCH_ONLY " 'index(only, " " $1 " ") == 0' "$f" > "$f.tmp" && mv "$f.tmp" "$f"
  done
else
  printf 'benchmark\tfigure\tours\tpeer\tpeer_value\tunit\tbetter\tnote\n' > "$SERVERLESS_BENCH_RESULTS"
  : > "$OUT/status.tsv"
  date -u +%Y-%m-%dT%H:%M:%SZ > "$OUT/started"
  cut -d' ' -f1-3 /proc/loadavg > "$OUT/loadavg"
fi

# The Python peer runs under R (system2), whose LD_LIBRARY_PATH puts the system's
# libraries first: a Python with its own libpython (pyenv) then fails to load its ssl
# module. So the virtualenv is made from the system Python, and checked under R.
VENV=.build/bench-venv
venv_works() {
  [ -x "$VENV/bin/python" ] && Rscript -e "quit(status = system2('$VENV/bin/python', c('-c', shQuote('import ssl, azure.storage.blob'))))" >/dev/null 2>&1
}
if ! venv_works; then
  rm -rf "$VENV"
  base=/usr/bin/python3
  [ -x "$base" ] || base=python3
  "$base" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "azure-storage-blob==12.*"
  venv_works || echo "bench: the Python peer's virtualenv cannot load ssl under R" >&2
fi
export SERVERLESS_BENCH_PYTHON="$ROOT/$VENV/bin/python"

# step NAME COMMAND...: runs one benchmark, logs it, records its exit status and time.
step() {
  local name=$1
  shift
  if [ -n "${SERVERLESS_BENCH_ONLY:-}" ] && [[ " $SERVERLESS_BENCH_ONLY " != *" $name "* ]]; then
    return 0
  fi
  echo "=== $name: $*"
  local t0=$SECONDS
  "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >> "$OUT/status.tsv"
  [ "$rc" -eq 0 ] || echo "=== $name FAILED (exit $rc): see $OUT/$name.log"
}

export R_LIBS="$ROOT/.build/lib"
# 1 GiB upload/download and a ~200 MB model: against the Python SDK, curl, saveRDS.
step blob_transfer Rscript bench/blob_transfer.R
# How long Ctrl-C takes during an upload.
step interrupt_latency Rscript bench/interrupt_latency.R
# deploy_model(): first deploy against a second model with the same runtime spec.
step deploy Rscript bench/deploy.R
# Three deploys (lm, glm, randomForest): Rust compiles and source vs binary installs.
step runtime_images Rscript bench/runtime_images.R
# score_now() of 1e6 rows against base R and data.table scripts; 4 shards against 1.
step score Rscript bench/score.R
# A 2 GB CSV and its Parquet in 1 GB containers, 1 and 4 shards: memory and bytes.
step scale Rscript bench/scale.R
# Logic App actions a run of an every-minute schedule costs, before and after issue 17.
step orchestration Rscript bench/orchestration.R
# CSV and Parquet read/write of a 1e6-row data frame, against base R and data.table.
step table_io Rscript bench/table_io.R
# 200 concurrent container-group creates against the control-plane emulator.
step aci_creates bash -c 'cd src/rust && cargo run --locked --release -q -p serverless-core --example aci_creates'
# A clean R CMD INSTALL (the Rust build is what users wait for).
if [ -z "${SERVERLESS_BENCH_SKIP_INSTALL:-}" ]; then
  step install bash bench/install_time.sh
fi

Rscript bench/results.R "$SERVERLESS_BENCH_RESULTS" "$OUT/status.tsv" bench/RESULTS.md
echo "=== wrote bench/RESULTS.md"
awk -F'\t' '$2 != 0 { bad = 1 } END { exit bad }' "$OUT/status.tsv"
