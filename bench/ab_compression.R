# A/B of the figures a build change can move (zstd compression, Parquet, transfers
# through the local proxy): runs in the R library given, so two builds can be
# compared alternately on the same machine, e.g.
#   for i in 1 2 3; do for lib in /tmp/before-lib .build/lib; do
#     R_LIBS=$lib Rscript bench/ab_compression.R; done; done
# Prints Parquet and CSV write and read times (5 runs each, 1,000,000 rows x 5 columns,
# with missing values) and store_model() times of an lm (3 runs; the first warms up).
# SERVERLESS_AB_STORE_RUNS=N times store_model() only, N runs: its single runs spread
# widely (0.38-0.63 s on one build), so an A/B of it needs many.
suppressMessages(library(serveRless))
store_runs <- as.integer(Sys.getenv("SERVERLESS_AB_STORE_RUNS", "0"))
store_model_times <- function(runs) {
  x <- rnorm(2e6)
  fit <- lm(x ~ 1, data = data.frame(x = x))
  target <- local_azure()
  replicate(runs, system.time(suppressMessages(store_model(fit, "abbench", target)))[["elapsed"]])
}
if (store_runs > 0) {
  st <- store_model_times(store_runs)
  cat(format(packageVersion("serveRless")), .libPaths()[1], "\n")
  cat("store_model", sprintf("%.3f", st), "\n")
  quit(save = "no")
}
set.seed(1)
n <- 1e6
df <- data.frame(a = rnorm(n), b = sample.int(1000, n, TRUE), c = sample(letters, n, TRUE),
                 d = runif(n), e = as.Date("2024-01-01") + sample.int(1000, n, TRUE))
df$a[sample.int(n, n / 10)] <- NA
df$c[sample.int(n, n / 10)] <- NA
f <- tempfile(fileext = ".parquet")
pq <- replicate(5, system.time(
  serveRless:::rust_result(serveRless:::rs_write_table(as.list(df), f, "parquet"))
)[["elapsed"]])
pq_read <- replicate(5, system.time(
  serveRless:::rust_check(serveRless:::rs_read_table(f, "parquet", NULL, 1L, 1L))
)[["elapsed"]])
f_csv <- tempfile(fileext = ".csv")
csv <- replicate(5, system.time(
  serveRless:::rust_result(serveRless:::rs_write_table(as.list(df), f_csv, "csv"))
)[["elapsed"]])
csv_read <- replicate(5, system.time(
  serveRless:::rust_check(serveRless:::rs_read_table(f_csv, "csv", NULL, 1L, 1L))
)[["elapsed"]])
st <- store_model_times(3)
cat(format(packageVersion("serveRless")), .libPaths()[1], "\n")
cat("parquet write", sprintf("%.3f", pq), "\nparquet read", sprintf("%.3f", pq_read),
    "\ncsv write", sprintf("%.3f", csv), "\ncsv read", sprintf("%.3f", csv_read),
    "\nstore_model", sprintf("%.3f", st), "\n")
