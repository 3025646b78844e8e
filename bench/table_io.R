# Table I/O of scoring jobs: the Rust core against base R and data.table, on a
# 1,000,000-row data frame (6 doubles, 1 integer, 1 factor-like character column).
# Three iterations each; the median is reported. Needs bench and data.table.
library(serveRless)
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "record.R"))
stopifnot(requireNamespace("bench", quietly = TRUE), requireNamespace("data.table", quietly = TRUE))

n <- 1e6
set.seed(1)
df <- data.frame(
  x1 = rnorm(n), x2 = runif(n), x3 = rexp(n), x4 = rnorm(n, 1e4, 1e3),
  x5 = round(rnorm(n), 3), x6 = rnorm(n) * 1e-8,
  count = sample.int(1e5, n, replace = TRUE),
  group = sample(c("alpha", "beta", "gamma", "delta", "epsilon"), n, replace = TRUE),
  stringsAsFactors = FALSE
)
df$x1[sample.int(n, 1000)] <- NA
df$group[sample.int(n, 1000)] <- NA

dir <- tempfile("table-io-")
dir.create(dir)
on.exit(unlink(dir, recursive = TRUE))
csv <- file.path(dir, "data.csv")
parquet <- file.path(dir, "data.parquet")
ok <- function(res) serveRless:::rust_result(res)
invisible(ok(serveRless:::rs_write_table(df, csv, "csv")))
invisible(ok(serveRless:::rs_write_table(df, parquet, "parquet")))
cat(sprintf("CSV: %.0f MB, Parquet: %.0f MB, %d cores, data.table threads by default: %d\n",
            file.size(csv) / 1e6, file.size(parquet) / 1e6, parallel::detectCores(),
            data.table::getDTthreads()))

# Same values whichever reader: a sanity check, not a test.
back <- ok(serveRless:::rs_read_table(csv, "csv", NULL, 1L, 1L))
stopifnot(identical(back$x1, df$x1), identical(back$group, df$group),
          identical(back$count, df$count))
pq <- ok(serveRless:::rs_read_table(parquet, "parquet", NULL, 1L, 1L))
stopifnot(identical(pq, back))

hint <- c(x1 = "double", x2 = "double", x3 = "double", x4 = "double", x5 = "double",
          x6 = "double", count = "integer", group = "character")
time3 <- function(...) {
  res <- bench::mark(..., iterations = 3, check = FALSE, memory = FALSE, filter_gc = FALSE)
  data.frame(expression = names(list(...)), median_s = round(as.numeric(res$median), 3),
             min_s = round(as.numeric(res$min), 3))
}
threads <- max(1L, parallel::detectCores())

reads <- time3(
  "serveRless rs_read_table csv" = list2DF(ok(serveRless:::rs_read_table(csv, "csv", NULL, 1L, 1L))),
  "serveRless rs_read_table csv, hint" = list2DF(ok(serveRless:::rs_read_table(csv, "csv", hint, 1L, 1L))),
  "data.table::fread (default threads)" = data.table::fread(csv),
  "data.table::fread (all threads)" = data.table::fread(csv, nThread = threads),
  "utils::read.csv" = utils::read.csv(csv),
  "serveRless rs_read_table parquet" = list2DF(ok(serveRless:::rs_read_table(parquet, "parquet", NULL, 1L, 1L)))
)
out_csv <- file.path(dir, "out.csv")
out_parquet <- file.path(dir, "out.parquet")
writes <- time3(
  "serveRless rs_write_table csv" = ok(serveRless:::rs_write_table(df, out_csv, "csv")),
  "data.table::fwrite (default threads)" = data.table::fwrite(df, out_csv),
  "data.table::fwrite (all threads)" = data.table::fwrite(df, out_csv, nThread = threads),
  "utils::write.csv" = utils::write.csv(df, out_csv, row.names = FALSE),
  "serveRless rs_write_table parquet" = ok(serveRless:::rs_write_table(df, out_parquet, "parquet"))
)
cat("\nRead (seconds, 3 iterations)\n")
print(reads, row.names = FALSE)
cat("\nWrite (seconds, 3 iterations)\n")
print(writes, row.names = FALSE)

# For bench/RESULTS.md: medians, each serveRless figure against each peer.
med <- function(tab, expr) tab$median_s[tab$expression == expr]
rows_m <- format(n, big.mark = ",", scientific = FALSE)
rec <- function(figure, tab, ours, peers, note = "") {
  for (p in peers) bench_record("table_io", figure, med(tab, ours), "s", p, med(tab, p), "lower", note)
}
csv_read_peers <- c("data.table::fread (default threads)", "data.table::fread (all threads)", "utils::read.csv")
rec(sprintf("read %s-row CSV", rows_m), reads, "serveRless rs_read_table csv", csv_read_peers)
rec(sprintf("read %s-row CSV, column types given", rows_m), reads, "serveRless rs_read_table csv, hint",
    csv_read_peers[1:2])
rec(sprintf("read %s-row Parquet", rows_m), reads, "serveRless rs_read_table parquet", csv_read_peers[1],
    "peer reads the same data as CSV")
csv_write_peers <- c("data.table::fwrite (default threads)", "data.table::fwrite (all threads)", "utils::write.csv")
rec(sprintf("write %s-row CSV", rows_m), writes, "serveRless rs_write_table csv", csv_write_peers)
rec(sprintf("write %s-row Parquet", rows_m), writes, "serveRless rs_write_table parquet", csv_write_peers[1],
    "peer writes the same data as CSV")
