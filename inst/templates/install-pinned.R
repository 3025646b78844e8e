# Installs R packages at exact versions, in the order given, without resolving
# dependencies (the list is already the full, ordered closure).
# Usage: Rscript install-pinned.R <repository> <package>==<version> ...
args <- commandArgs(trailingOnly = TRUE)
repo <- sub("/+$", "", args[[1]])
lib <- .libPaths()[[1]]
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
  utils::install.packages(dest, lib = lib, repos = NULL, type = "source")
  got <- tryCatch(as.character(utils::packageVersion(pkg, lib.loc = lib)), error = function(e) "")
  if (!identical(got, version)) stop(sprintf("installing %s %s failed", pkg, version))
  unlink(dest)
}
