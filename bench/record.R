# Sourced by every benchmark script: bench_record() appends one figure to the file
# named by SERVERLESS_BENCH_RESULTS (a TSV that bench/results.R turns into
# bench/RESULTS.md). Without that variable it does nothing, so each script still runs
# on its own.
#
# One row per (figure, peer): the benchmark, what was measured, serveRless's value,
# the peer measured in the same run and its value (NA when there is none), the unit,
# whether lower or higher is better, and a note.

bench_record <- function(benchmark, figure, ours, unit, peer = NA_character_,
                         peer_value = NA_real_, better = c("lower", "higher"), note = "") {
  better <- match.arg(better)
  file <- Sys.getenv("SERVERLESS_BENCH_RESULTS")
  if (!nzchar(file)) return(invisible(NULL))
  clean <- function(x) gsub("[\t\r\n]+", " ", as.character(x))
  num <- function(x) if (is.na(x)) "NA" else format(signif(as.numeric(x), 6), scientific = FALSE, trim = TRUE)
  line <- paste(clean(benchmark), clean(figure), num(ours), clean(peer), num(peer_value),
                clean(unit), better, clean(note), sep = "\t")
  cat(line, "\n", file = file, append = TRUE, sep = "")
  invisible(NULL)
}
