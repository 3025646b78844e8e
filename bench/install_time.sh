#!/usr/bin/env bash
# Times what a user waits for on install: `R CMD INSTALL` of the package tarball with
# an empty cargo target directory, so the Makevars build every crate from scratch
# (SERVERLESS_CARGO_TARGET_DIR and CARGO_TARGET_DIR unset: src/Makevars then builds in
# the unpacked package's src/rust/target). The crate sources come from the local cargo
# registry cache; nothing is downloaded if it already holds them.
#
# Reference row: the same package with src/ removed (its R code, man pages and
# templates only, a pure-R package built from the same tree), installed the same way.
# Uses /usr/bin/time -v for wall time and the largest process's peak RSS.
# Appends rows to $SERVERLESS_BENCH_RESULTS (see bench/record.R) when it is set.
# Usage: bash bench/install_time.sh  (CARGO_BUILD_JOBS limits cargo's parallel jobs)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d "${TMPDIR:-/tmp}/serverless-install-bench-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
VERSION=$(sed -n 's/^Version: //p' DESCRIPTION)

if [ ! -x /usr/bin/time ]; then
  echo "install_time: needs GNU time (/usr/bin/time; Debian package 'time')" >&2
  exit 1
fi

# 1. The package tarball, as a user gets it.
mkdir -p "$WORK/build"
( cd "$WORK/build" && R CMD build --no-build-vignettes "$ROOT" > "$WORK/build.log" 2>&1 ) ||
  { tail -n 30 "$WORK/build.log"; exit 1; }
TARBALL="$WORK/build/serveRless_${VERSION}.tar.gz"

# 2. A pure-R reference built from the same tree: no src/, no configure/cleanup, no
#    useDynLib.
mkdir -p "$WORK/pure/serveRless" "$WORK/pure/build"
tar -xzf "$TARBALL" -C "$WORK/pure"
rm -rf "$WORK/pure/serveRless/src" "$WORK/pure/serveRless/configure" "$WORK/pure/serveRless/cleanup" \
  "$WORK/pure/serveRless/tools"
sed -i '/^useDynLib/d' "$WORK/pure/serveRless/NAMESPACE"
( cd "$WORK/pure/build" && R CMD build --no-build-vignettes "$WORK/pure/serveRless" > "$WORK/pure-build.log" 2>&1 ) ||
  { tail -n 30 "$WORK/pure-build.log"; exit 1; }
PURE="$WORK/pure/build/serveRless_${VERSION}.tar.gz"

# Prints "<wall seconds> <max RSS MB>" of one timed install into a fresh library.
timed_install() {
  local tarball=$1 name=$2
  local lib="$WORK/lib-$name"
  mkdir -p "$lib"
  if ! env -u SERVERLESS_CARGO_TARGET_DIR -u CARGO_TARGET_DIR \
      /usr/bin/time -v -o "$WORK/time-$name.txt" \
      R CMD INSTALL --no-multiarch -l "$lib" "$tarball" > "$WORK/install-$name.log" 2>&1; then
    tail -n 40 "$WORK/install-$name.log" >&2
    return 1
  fi
  awk -F': ' '
    /Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; wall = s }
    /Maximum resident set size/ { rss = $2 / 1024 }
    END { printf "%.1f %.0f\n", wall, rss }' "$WORK/time-$name.txt"
}

echo "install_time: $(basename "$TARBALL") $(du -k "$TARBALL" | cut -f1) kB, pure-R reference $(du -k "$PURE" | cut -f1) kB"
echo "install_time: R CMD INSTALL with an empty cargo target dir (cargo jobs: ${CARGO_BUILD_JOBS:-all cores})..."
out=$(timed_install "$TARBALL" rust)
read -r rust_wall rust_rss <<< "$out"
crates=$(grep -c '^ *Compiling ' "$WORK/install-rust.log" || true)
echo "install_time: ${rust_wall} s wall, ${rust_rss} MB max RSS, ${crates} crates compiled"
grep -E '^(using|   Compiling serverless)' "$WORK/install-rust.log" | head -n 5 || true
echo "install_time: pure-R reference..."
out=$(timed_install "$PURE" pure)
read -r pure_wall pure_rss <<< "$out"
echo "install_time: ${pure_wall} s wall, ${pure_rss} MB max RSS"

if [ -n "${SERVERLESS_BENCH_RESULTS:-}" ]; then
  kb=$(du -k "$TARBALL" | cut -f1)
  pkb=$(du -k "$PURE" | cut -f1)
  jobs="cargo jobs: ${CARGO_BUILD_JOBS:-all cores}"
  peer="pure-R build of the same package (src/ removed, ${pkb} kB tarball)"
  printf 'install\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "clean R CMD INSTALL of the ${kb} kB tarball (empty cargo target dir): wall" "$rust_wall" \
    "$peer" "$pure_wall" "s" "lower" "$jobs; $crates crates compiled" >> "$SERVERLESS_BENCH_RESULTS"
  printf 'install\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "clean R CMD INSTALL: peak RSS of the largest process" "$rust_rss" \
    "$peer" "$pure_rss" "MB" "lower" "$jobs; /usr/bin/time -v" >> "$SERVERLESS_BENCH_RESULTS"
fi
