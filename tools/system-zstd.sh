#!/usr/bin/env sh
# Prints the linker flags of a system libzstd (Debian/Ubuntu libzstd-dev, Fedora
# libzstd-devel, Homebrew zstd) when pkg-config finds one recent enough, else nothing.
# With one, the zstd-sys crate links it (ZSTD_SYS_USE_PKG_CONFIG) instead of compiling
# zstd's C sources, about 20 s of a clean install on 2 cores; without one, it compiles
# its bundled copy. tools/config.R (R CMD INSTALL) and the Makefile (cargo test, clippy)
# ask this same question, so both builds share one zstd-sys build.
# 1.5.4 is the oldest tested (Debian bookworm's); zstd-sys's bindings are for 1.5.x.
command -v pkg-config >/dev/null 2>&1 || exit 0
pkg-config --exists 'libzstd >= 1.5.4' 2>/dev/null || exit 0
pkg-config --libs libzstd
