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

values <- c(
  "@CARGO@" = cargo,
  "@TARGET_DIR@" = target_dir,
  "@PROFILE_DIR@" = if (debug) "debug" else "release",
  "@CARGO_PROFILE@" = if (debug) "" else "--release",
  # A private target dir is build debris once the library is linked.
  "@CLEAN_CMD@" = if (nzchar(shared)) "@true" else "rm -Rf $(CURDIR)/rust/target"
)
lines <- readLines("src/Makevars.in")
for (key in names(values)) lines <- gsub(key, values[[key]], lines, fixed = TRUE)
writeLines(lines, "src/Makevars")
