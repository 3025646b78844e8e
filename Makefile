# serveRless: one place for the commands in README.md.
#
#   make demo   set up everything, run the main job on the local Azure
#   make test   set up everything, run every test (cargo + R CMD check of the tarball)
#   make bench  run every benchmark in bench/ and write bench/RESULTS.md (not a test)
#
# One cargo target directory is shared by every step, so each test run builds the
# Rust code once (cargo test and R CMD INSTALL/check reuse the same dependency builds).

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
BUILD := $(CURDIR)/.build
export SERVERLESS_CARGO_TARGET_DIR := $(BUILD)/cargo-target
export CARGO_TARGET_DIR := $(SERVERLESS_CARGO_TARGET_DIR)
LIB := $(BUILD)/lib
VERSION := $(shell sed -n 's/^Version: //p' DESCRIPTION)
TARBALL := serveRless_$(VERSION).tar.gz
# Recursively expanded: asked after `setup` has installed libzstd-dev (tools/config.R
# asks the same, so cargo test and R CMD INSTALL share one zstd-sys build).
CARGO = $(if $(shell sh tools/system-zstd.sh),ZSTD_SYS_USE_PKG_CONFIG=1 )cargo --locked
MANIFEST := --manifest-path src/rust/Cargo.toml

.PHONY: setup install demo test rust-test rust-lint wrappers check userpkg document bench clean

setup:
	bash tools/setup.sh

install: setup
	mkdir -p $(LIB)
	R CMD INSTALL --no-multiarch -l $(LIB) . > $(BUILD)/install.log 2>&1 || (tail -n 40 $(BUILD)/install.log; exit 1)

demo: install
	R_LIBS=$(LIB) Rscript inst/examples/quickstart.R

rust-lint:
	cargo fmt --all $(MANIFEST) -- --check
	$(CARGO) clippy --release --workspace $(MANIFEST) -- -D warnings

rust-test: setup
	$(CARGO) test --release --workspace $(MANIFEST)

# The committed R/extendr-wrappers.R must match what the compiled code generates
# (checked against the package R CMD check installed, so nothing is built again).
wrappers: check
	R_LIBS=$(BUILD)/check/serveRless.Rcheck Rscript tools/make-wrappers.R $(BUILD)/extendr-wrappers.R
	@diff -u R/extendr-wrappers.R $(BUILD)/extendr-wrappers.R || \
	  (echo "R/extendr-wrappers.R is stale: run 'make document' and commit it"; exit 1)
	@echo "R/extendr-wrappers.R is up to date"

# R CMD build knits every vignette; check runs their code again but does not knit
# them a second time (--no-build-vignettes).
check: setup
	rm -rf $(BUILD)/check && mkdir -p $(BUILD)/check
	cd $(BUILD)/check && R CMD build $(CURDIR) && \
	  _R_CHECK_FORCE_SUGGESTS_=true R CMD check --no-manual --no-build-vignettes $(TARBALL)
	Rscript tools/check-result.R $(BUILD)/check/serveRless.Rcheck

# A user's package whose testthat suite uses local_azure() (tools/userpkg) passes
# R CMD check --as-cran, with serveRless as the check above installed it. CRAN's
# package index is not reachable here, so the incoming checks that need it are off;
# one NOTE stays: "unable to verify current time" (--as-cran asks a time server).
userpkg: check
	rm -rf $(BUILD)/userpkg && mkdir -p $(BUILD)/userpkg
	cd $(BUILD)/userpkg && R CMD build --no-manual $(CURDIR)/tools/userpkg && \
	  R_LIBS=$(BUILD)/check/serveRless.Rcheck _R_CHECK_CRAN_INCOMING_REMOTE_=false \
	  R CMD check --as-cran --no-manual carscore_0.0.1.tar.gz
	Rscript tools/check-result.R $(BUILD)/userpkg/carscore.Rcheck

test: setup rust-lint rust-test check wrappers userpkg
	@Rscript tools/check-result.R $(BUILD)/check/serveRless.Rcheck | tail -n 1

# Regenerate wrappers, NAMESPACE and man/ after changing Rust exports or roxygen docs.
document: install
	R_LIBS=$(LIB) Rscript tools/make-wrappers.R
	Rscript -e 'roxygen2::roxygenise(load_code = roxygen2::load_source)'

bench: install
	bash bench/run.sh

clean:
	rm -rf $(BUILD) src/Makevars src/*.o src/*.so
