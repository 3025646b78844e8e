# score_now() on the local Azure: one million CSV rows (and the same as Parquet) scored
# with an lm model by the real job in a container process, against two hand-written
# scripts on local files: base R (read.csv -> predict -> write.csv) and data.table
# (fread -> predict -> fwrite). Then 4 shards against 1 on the same input.
# Usage: R_LIBS=.build/lib Rscript bench/score.R
suppressMessages(library(serveRless))
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "record.R"))
target <- local_azure()
rust_check <- getFromNamespace("rust_check", "serveRless")

set.seed(1)
n <- 1e6
data <- data.frame(x1 = rnorm(n), x2 = rnorm(n), x3 = runif(n), x4 = rnorm(n, 10), id = seq_len(n))
train <- data[sample.int(n, 1e4), ]
train$y <- 1 + 2 * train$x1 - train$x2 + 0.5 * train$x3 + rnorm(1e4)
fit <- lm(y ~ x1 + x2 + x3 + x4, data = train)
dep <- suppressMessages(deploy_model(fit, "bench-lm", target))

dir <- tempfile("bench-score-")
dir.create(dir)
csv <- file.path(dir, "big.csv")
parquet <- file.path(dir, "big.parquet")
data.table::fwrite(data, csv)
rust_check(serveRless:::rs_write_table(as.list(data), parquet, "parquet"))
blob_upload(target, csv, "serverless/bench-in/big.csv")
blob_upload(target, parquet, "serverless/bench-in/big.parquet")

# Phase times from the job's own log lines ("<phase> ...: ... in <s> s").
phases <- function(run) {
  log <- paste(scoring_logs(run), collapse = "\n")
  get <- function(phase) {
    m <- regmatches(log, gregexpr(paste0("Z ", phase, "[^\n]* in ([0-9.]+) s"), log))[[1]]
    sum(as.numeric(sub(".* in ([0-9.]+) s$", "\\1", m)))
  }
  vapply(c(download = "download", read = "read", predict = "predict", write = "write", upload = "upload"), get, 0)
}

job <- function(input, shards = 1) {
  t <- system.time(run <- suppressMessages(
    score_now(dep, input = input, output = "serverless/bench-out/", shards = shards)
  ))[["elapsed"]]
  c(phases(run), wall = t)
}

base_r <- function() {
  system.time({
    d <- utils::read.csv(csv)
    d$.pred <- predict(fit, d)
    utils::write.csv(d, file.path(dir, "base.csv"), row.names = FALSE)
  })[["elapsed"]]
}
dt <- function() {
  system.time({
    d <- data.table::fread(csv)
    d[, .pred := predict(fit, d)]
    data.table::fwrite(d, file.path(dir, "dt.csv"))
  })[["elapsed"]]
}

csv_job <- job("serverless/bench-in/big.csv")
pq_job <- job("serverless/bench-in/big.parquet")
t_base <- base_r()
t_dt <- dt()
csv_job4 <- job("serverless/bench-in/big.csv", shards = 4)

rpw <- function(p) sum(p[c("read", "predict", "write")])
cat(sprintf("score_now() of %s rows (%.0f MB CSV, %.0f MB Parquet) on the local Azure, %s, %d cores\n",
            format(n, big.mark = ","), file.size(csv) / 1e6, file.size(parquet) / 1e6,
            format(Sys.time(), "%Y-%m-%d %H:%M UTC", tz = "UTC"), parallel::detectCores()))
tab <- rbind(`job, CSV, 1 shard` = csv_job, `job, Parquet, 1 shard` = pq_job,
             `job, CSV, 4 shards (sums over shards)` = csv_job4)
print(round(tab, 2))
cat(sprintf("\nbase R script (read.csv -> predict -> write.csv): %.2f s\n", t_base))
cat(sprintf("data.table script (fread -> predict -> fwrite):   %.2f s\n", t_dt))
cat(sprintf("job read+predict+write, CSV:     %.2f s = %.1fx faster than base R, %.2fx the data.table time\n",
            rpw(csv_job), t_base / rpw(csv_job), rpw(csv_job) / t_dt))
cat(sprintf("job read+predict+write, Parquet: %.2f s = %.1fx faster than base R, %.2fx the data.table time\n",
            rpw(pq_job), t_base / rpw(pq_job), rpw(pq_job) / t_dt))
cat(sprintf("4 shards vs 1 (wall, incl. container start-up): %.2f s vs %.2f s\n",
            csv_job4[["wall"]], csv_job[["wall"]]))

rows_m <- format(n, big.mark = ",", scientific = FALSE)
for (fmt in c("CSV", "Parquet")) {
  p <- if (fmt == "CSV") csv_job else pq_job
  fig <- sprintf("scoring job read + predict + write, %s rows, %s in", rows_m, fmt)
  bench_record("score", fig, rpw(p), "s", "base R script (read.csv, predict, write.csv)", t_base, "lower",
               "phases from the job's log; peers read the CSV from local disk")
  bench_record("score", fig, rpw(p), "s", "data.table script (fread, predict, fwrite)", t_dt, "lower",
               "phases from the job's log; peers read the CSV from local disk")
}
bench_record("score", sprintf("score_now() wall, %s CSV rows, 1 shard", rows_m), csv_job[["wall"]], "s",
             better = "lower", note = "container start-up, download, score, upload, cleanup")
bench_record("score", sprintf("score_now() wall, %s CSV rows, 4 shards", rows_m), csv_job4[["wall"]], "s",
             "1 shard (same run)", csv_job[["wall"]], "lower",
             note = sprintf("%d cores", parallel::detectCores()))
