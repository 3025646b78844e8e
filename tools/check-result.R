# Fail when R CMD check reported an ERROR or a WARNING; list the NOTEs (each is
# explained in .ci/run). Usage: Rscript tools/check-result.R <pkg>.Rcheck
dir <- commandArgs(TRUE)[1]
log <- readLines(file.path(dir, "00check.log"))
status <- grep("^Status:", log, value = TRUE)
cat("R CMD check", status, "\n")
notes <- grep("\\.\\.\\. NOTE$", log, value = TRUE)
if (length(notes)) cat("NOTEs:", sub("^\\* checking ", "", notes), sep = "\n  ")
# The testthat tally, as a plain closing line.
rout <- list.files(file.path(dir, "tests"), pattern = "^testthat\\.Rout", full.names = TRUE)
tally <- grep("\\[ FAIL [0-9]+ .* PASS [0-9]+ \\]", unlist(lapply(rout, readLines)), value = TRUE)
if (length(tally)) {
  n <- function(what) as.integer(sub(paste0(".*", what, " ([0-9]+).*"), "\\1", tally[length(tally)]))
  cat(sprintf("testthat: %d passed, %d failed, %d skipped\n", n("PASS"), n("FAIL"), n("SKIP")))
}
bad <- grep("\\.\\.\\. (ERROR|WARNING)$", log, value = TRUE)
if (length(bad) || !length(status) || grepl("ERROR|WARNING", status)) {
  cat("\nR CMD check found problems:\n", bad, sep = "\n")
  tests <- list.files(dir, pattern = "testthat\\.Rout\\.fail$", recursive = TRUE, full.names = TRUE)
  for (f in tests) cat(utils::tail(readLines(f), 60), sep = "\n")
  quit(status = 1)
}
