# A/B of the figures a build change can move (zstd compression, Parquet, transfers
# through the local proxy): runs in the R library given, so two builds can be
# compared alternately on the same machine, e.g.
#   for i in 1 2 3; do for lib in /tmp/before-lib .build/lib; do
#     R_LIBS=$lib Rscript bench/ab_compression.R; done; done
# Prints Parquet write times (5 runs, 1,000,000 rows x 4 columns) and store_model()
# times of an lm (3 runs; the first warms up).
suppressMessages(library(serveRless))
set.seed(1)
n <- 1e6
df <- data.frame(a = rnorm(n), b = sample.int(1000, n, TRUE), c = sample(letters, n, TRUE),
                 d = runif(n))
f <- tempfile(fileext = ".parquet")
pq <- replicate(5, system.time(
  serveRless:::rust_result(serveRless:::rs_write_table(as.list(df), f, "parquet"))
)[["elapsed"]])
x <- rnorm(2e6)
fit <- lm(x ~ 1, data = data.frame(x = x))
target <- local_azure()
st <- replicate(3, system.time(suppressMessages(store_model(fit, "abbench", target)))[["elapsed"]])
cat(format(packageVersion("serveRless")), .libPaths()[1], "\n")
cat("parquet write", sprintf("%.3f", pq), "\nstore_model", sprintf("%.3f", st), "\n")
