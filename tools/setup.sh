#!/usr/bin/env bash
# Installs everything serveRless needs on a Debian/Ubuntu machine that has a Rust
# toolchain: R and the R packages it uses (from Debian), Azurite (from npm), the tools
# the benchmarks use, pandoc for the vignettes, and headless Chromium with its WebDriver
# for the RStudio addin's browser test. Safe to run again: it installs only what is missing.
set -euo pipefail

AZURITE_VERSION="${AZURITE_VERSION:-3.35.0}"
DEBS=(r-base-dev r-cran-cli r-cran-rlang r-cran-jsonlite r-cran-withr r-cran-processx
      r-cran-callr r-cran-testthat r-cran-randomforest r-cran-roxygen2 r-cran-knitr
      r-cran-rmarkdown r-cran-bench r-cran-ranger r-cran-glmnet r-cran-data.table
      r-cran-shiny r-cran-miniui r-cran-rstudioapi r-cran-curl r-cran-codetools pandoc
      chromium chromium-driver hyperfine time curl nodejs npm
      # zstd for Parquet, linked rather than compiled (tools/system-zstd.sh).
      libzstd-dev pkg-config
      # Models the test suite deploys (issue 16): what R users commonly fit.
      r-cran-lme4 r-cran-glmmtmb r-cran-partykit r-cran-kernlab r-cran-mass r-cran-mgcv
      r-cran-rpart r-cran-nnet r-cran-e1071 r-cran-survival r-cran-caret r-cran-earth
      r-cran-gbm r-cran-quantreg)

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for pkg in "${DEBS[@]}"; do
  # nodejs/npm may come from elsewhere (e.g. NodeSource): a working binary is enough.
  case "$pkg" in
    nodejs) command -v node >/dev/null && continue ;;
    npm) command -v npm >/dev/null && continue ;;
  esac
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v azurite-blob >/dev/null; then
  echo "setup: installing Azurite ${AZURITE_VERSION} from npm"
  sudo_if_needed npm install -g --no-audit --no-fund "azurite@${AZURITE_VERSION}" >/dev/null
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null; then
  echo "setup: serveRless needs a Rust toolchain (1.88 or newer): see https://rustup.rs" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null 2>&1 || true
echo "setup: ok ($(R --version | head -n 1); $(cargo --version); azurite $(azurite-blob --version))"
