# Installs R packages at exact versions, in the order given, without resolving
# dependencies (the list is already the full, ordered closure).
# Usage: Rscript install-pinned.R <repository> <package>==<version> ...
#
# From a Posit Package Manager `__linux__/<distribution>` URL the downloads are Linux
# binaries, which install in seconds; P3M serves them only to a user agent that names
# R's version and platform (what R itself sends, set here for Rscript). A repository
# without a binary of a version serves its source, which is then compiled.
args <- commandArgs(trailingOnly = TRUE)
repo <- sub("/+$", "", args[[1]])
lib <- .libPaths()[[1]]
options(HTTPUserAgent = sprintf("R/%s R (%s)", getRversion(),
                                paste(getRversion(), R.version$platform, R.version$arch, R.version$os)))
is_binary <- function(tarball) {
  files <- utils::untar(tarball, list = TRUE)
  desc <- grep("^[^/]+/DESCRIPTION$", files, value = TRUE)[1]
  if (is.na(desc)) return(FALSE)
  dir <- tempfile()
  utils::untar(tarball, files = desc, exdir = dir)
  built <- read.dcf(file.path(dir, desc), fields = "Built")[1, 1]
  unlink(dir, recursive = TRUE)
  !is.na(built)
}
for (pin in args[-1]) {
  parts <- strsplit(pin, "==", fixed = TRUE)[[1]]
  pkg <- parts[[1]]
  version <- parts[[2]]
  have <- tryCatch(as.character(utils::packageVersion(pkg)), error = function(e) "")
  if (identical(have, version)) next
  file <- sprintf("%s_%s.tar.gz", pkg, version)
  urls <- c(sprintf("%s/src/contrib/%s", repo, file),
            sprintf("%s/src/contrib/Archive/%s/%s", repo, pkg, file))
  dest <- file.path(tempdir(), file)
  ok <- FALSE
  for (url in urls) {
    ok <- tryCatch(utils::download.file(url, dest, quiet = TRUE) == 0, error = function(e) FALSE)
    if (ok) break
  }
  if (!ok) stop(sprintf("package '%s' %s is not available from %s", pkg, version, repo))
  kind <- if (is_binary(dest)) "binary" else "source"
  message(sprintf("serveRless: installing %s %s (%s)", pkg, version, kind))
  utils::install.packages(dest, lib = lib, repos = NULL, type = "source")
  got <- tryCatch(as.character(utils::packageVersion(pkg, lib.loc = lib)), error = function(e) "")
  if (!identical(got, version)) stop(sprintf("installing %s %s failed", pkg, version))
  unlink(dest)
}
