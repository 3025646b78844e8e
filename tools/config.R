# Fill src/Makevars from src/Makevars.in.
#
# SERVERLESS_CARGO_TARGET_DIR: a shared cargo target directory (absolute path), so the
#   test run builds the Rust code once for `cargo test` and every R CMD INSTALL/check.
# DEBUG: set to build without optimisation.

find_tool <- function(tool) {
  path <- Sys.which(tool)
  if (!nzchar(path)) {
    home <- file.path(Sys.getenv("CARGO_HOME", file.path(Sys.getenv("HOME"), ".cargo")), "bin", tool)
    if (file.exists(home)) path <- home
  }
  if (!nzchar(path)) {
    stop("serveRless needs Rust's `", tool, "` (1.88 or newer). Install it from ",
         "https://rustup.rs, then install this package again.", call. = FALSE)
  }
  unname(path)
}

cargo <- find_tool("cargo")
rustc <- find_tool("rustc")
message("using ", system2(rustc, "--version", stdout = TRUE))
message("using ", system2(cargo, "--version", stdout = TRUE))

shared <- Sys.getenv("SERVERLESS_CARGO_TARGET_DIR")
target_dir <- if (nzchar(shared)) normalizePath(shared, mustWork = FALSE) else "$(CURDIR)/rust/target"
debug <- nzchar(Sys.getenv("DEBUG"))

# A system libzstd, when there is one, saves compiling zstd's C sources (see
# tools/system-zstd.sh, which the Makefile asks too).
zstd_libs <- suppressWarnings(system2("sh", "tools/system-zstd.sh", stdout = TRUE))
zstd_libs <- trimws(paste(zstd_libs, collapse = " "))
if (nzchar(zstd_libs)) message("linking the system libzstd (", zstd_libs, ")")

values <- c(
  "@CARGO@" = cargo,
  "@TARGET_DIR@" = target_dir,
  "@PROFILE_DIR@" = if (debug) "debug" else "release",
  "@CARGO_PROFILE@" = if (debug) "" else "--release",
  "@ZSTD_ENV@" = if (nzchar(zstd_libs)) "ZSTD_SYS_USE_PKG_CONFIG=1 " else "",
  "@ZSTD_LIBS@" = zstd_libs,
  # A private target dir is build debris once the library is linked.
  "@CLEAN_CMD@" = if (nzchar(shared)) "@true" else "rm -Rf $(CURDIR)/rust/target"
)
lines <- readLines("src/Makevars.in")
for (key in names(values)) lines <- gsub(key, values[[key]], lines, fixed = TRUE)
writeLines(lines, "src/Makevars")

# Keep serveRless's own source as a tarball in the installed package
# (inst/serveRless-source/): deploy_model() puts it in the base image's build context,
# so images build from exactly the code installed here, without a package repository.
# Deterministic (sorted names, fixed times and owners, gzip without a name or time):
# the same source gives the same bytes, so the base image's tag stays the same.
keep_source <- function() {
  if (identical(tolower(Sys.getenv("SERVERLESS_KEEP_SOURCE")), "false")) return(invisible())
  out_dir <- file.path("inst", "serveRless-source")
  unlink(out_dir, recursive = TRUE)
  version <- read.dcf("DESCRIPTION", fields = "Version")[1, 1]
  files <- list.files(".", recursive = TRUE, all.files = TRUE, no.. = TRUE)
  ignore <- if (file.exists(".Rbuildignore")) readLines(".Rbuildignore", warn = FALSE) else character()
  ignore <- c(ignore[nzchar(ignore)],
              # Not needed to install, or build debris.
              "^tests/", "^vignettes/", "^inst/doc/", "^inst/serveRless-source/", "^src/rust/target/",
              "^\\.build/", "^bench/", "\\.o$", "\\.so$", "^src/Makevars$", "(^|/)\\.git(/|$)",
              "\\.Rcheck/", "\\.tar\\.gz$")
  # A pattern matching a directory (R CMD build's rule) drops everything in it.
  paths_of <- function(f) {
    parts <- strsplit(f, "/", fixed = TRUE)[[1]]
    vapply(seq_along(parts), function(i) paste(parts[seq_len(i)], collapse = "/"), "")
  }
  ignored <- function(f) {
    any(vapply(ignore, function(p) any(grepl(p, c(paths_of(f), paste0(f, "/")), perl = TRUE,
                                             ignore.case = TRUE)), logical(1)))
  }
  keep <- !vapply(files, ignored, logical(1))
  files <- sort(files[keep], method = "radix")
  tar <- Sys.which("tar")
  gnu <- nzchar(tar) && any(grepl("GNU tar", suppressWarnings(system2(tar, "--version", stdout = TRUE))))
  if (!gnu) {
    message("serveRless: GNU tar not found; deploy_model() will need runtime_options(serverless_tarball =)")
    return(invisible())
  }
  dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)
  list_file <- tempfile()
  writeLines(files, list_file)
  tarball <- file.path(out_dir, sprintf("serveRless_%s.tar.gz", version))
  cmd <- sprintf(paste("%s --create --no-recursion --files-from=%s --sort=none --mtime=@0 --owner=0",
                       "--group=0 --numeric-owner --mode=u+rw,go+r,go-w --transform='s,^,serveRless/,'",
                       "| gzip -n -9 > %s"),
                 shQuote(tar), shQuote(list_file), shQuote(tarball))
  if (system(cmd) != 0) stop("cannot write ", tarball, call. = FALSE)
  sha <- digest_sha256(tarball)
  writeLines(sprintf("%s  %s", sha, basename(tarball)), file.path(out_dir, "SHA256"))
  message("kept the source as ", tarball, " (", format(file.size(tarball), big.mark = ","), " bytes)")
}

digest_sha256 <- function(path) {
  tool <- Sys.which("sha256sum")
  if (!nzchar(tool)) stop("sha256sum is needed to install serveRless", call. = FALSE)
  strsplit(system2(tool, shQuote(path), stdout = TRUE), " ")[[1]][1]
}

keep_source()
