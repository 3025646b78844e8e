# Scoring that scales (issue 17): a 2 GB CSV (about 25 million rows) and the same
# rows as Parquet, scored with an lm on the local Azure in containers of 1 GB, with 1
# shard and with 4. Per shard: the job process's peak resident memory (its VmHWM, as
# the job logs it) and the bytes it downloaded; per run the wall time. Targets: peak
# memory under the container's at 1 shard, and the bytes downloaded by 4 shards at
# most 1.05 x the file. The peer is the job before issue 17, which read its whole
# input into R and downloaded the whole file in every shard: its figures are
# computed (the file's size, 4 x the file's size), not run, since that job is gone.
# (The Logic App actions a run of a schedule costs are bench/orchestration.R's.)
#
# Usage: R_LIBS=.build/lib Rscript bench/scale.R [GB]   (GB of CSV, default 2)
suppressMessages(library(serveRless))
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "record.R"))
gb <- as.numeric(commandArgs(TRUE)[1])
if (is.na(gb)) gb <- 2
memory_gb <- 1
target <- local_azure()
rust_check <- getFromNamespace("rust_check", "serveRless")

# About 85 bytes a row of CSV (doubles in full take about 19 characters).
set.seed(1)
n <- round(gb * 1e9 / 85)
data <- data.frame(x1 = rnorm(n), x2 = rnorm(n), x3 = runif(n), x4 = rnorm(n, 10), id = seq_len(n))
train <- data[sample.int(n, 1e4), ]
train$y <- 1 + 2 * train$x1 - train$x2 + 0.5 * train$x3 + rnorm(1e4)
fit <- lm(y ~ x1 + x2 + x3 + x4, data = train)
dep <- suppressMessages(deploy_model(fit, "scale-lm", target, memory_gb = memory_gb))

dir <- tempfile("bench-scale-")
dir.create(dir)
files <- c(csv = file.path(dir, "big.csv"), parquet = file.path(dir, "big.parquet"))
rust_check(serveRless:::rs_write_table(as.list(data), files[["csv"]], "csv"))
rust_check(serveRless:::rs_write_table(as.list(data), files[["parquet"]], "parquet"))
rm(data, train)
invisible(gc())
sizes <- stats::setNames(file.size(files), names(files))
for (f in names(files)) blob_upload(target, files[[f]], paste0("serverless/scale-in/big.", f))
unlink(dir, recursive = TRUE)
cat(sprintf("%s rows: CSV %.0f MB, Parquet %.0f MB\n", format(n, big.mark = ","), sizes[["csv"]] / 1e6,
            sizes[["parquet"]] / 1e6))

# Per shard, from the job's log: peak memory (MB) and bytes downloaded.
shard_figures <- function(run) {
  logs <- scoring_logs(run)
  rows <- lapply(logs, function(log) {
    lines <- strsplit(log, "\n", fixed = TRUE)[[1]]
    peak <- as.numeric(sub(".*peak memory: ([0-9.]+) MB.*", "\\1", grep("peak memory:", lines, value = TRUE)))
    ranged <- grep("bytes fetched", lines, value = TRUE)
    bytes <- if (length(ranged)) {
      as.numeric(sub(".*\\(([0-9]+) bytes fetched\\).*", "\\1", ranged))
    } else {
      1e6 * as.numeric(sub(".*: ([0-9.]+) MB in .*", "\\1", grep(" download .*MB in", lines, value = TRUE)))
    }
    c(peak_mb = peak[1], bytes = sum(bytes))
  })
  do.call(rbind, rows)
}

results <- list()
for (format in names(files)) {
  for (shards in c(1, 4)) {
    input <- paste0("serverless/scale-in/big.", format)
    output <- sprintf("serverless/scale-out/%s-%d/", format, shards)
    t <- system.time(run <- suppressMessages(
      score_now(dep, input = input, output = output, shards = shards, max_parallel = 4, timeout = 7200)
    ))[["elapsed"]]
    f <- shard_figures(run)
    size <- sizes[[format]]
    cat(sprintf("%-7s %d shard%s: %6.1f s; peak memory per shard %s MB (limit %.0f MB); %.0f MB downloaded (%.3f x the file)\n",
                format, shards, if (shards == 1) " " else "s", t, paste(round(f[, "peak_mb"]), collapse = ", "),
                memory_gb * 1024, sum(f[, "bytes"]) / 1e6, sum(f[, "bytes"]) / size))
    what <- sprintf("%s of %.1f GB, %d shard%s", format, size / 1e9, shards, if (shards == 1) "" else "s")
    bench_record("scale", paste(what, "wall time"), t, "s")
    bench_record("scale", paste(what, "peak job memory, largest shard"), max(f[, "peak_mb"]), "MB",
                 "the container's memory", memory_gb * 1024,
                 note = "VmHWM of the job process; the whole-file job needed more than the file")
    bench_record("scale", paste(what, "bytes downloaded, all shards"), sum(f[, "bytes"]) / 1e6, "MB",
                 "whole file per shard (the job before issue 17)", shards * size / 1e6,
                 note = sprintf("%.3f x the file", sum(f[, "bytes"]) / size))
    results[[what]] <- f
    for (path in unlist(lapply(run$records, function(r) r$outputs))) blob_delete(target, path)
  }
}

