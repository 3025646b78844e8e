# deploy_model() of a ~10 MB model on the local Azure: the first deploy (which builds
# the runtime image) against a second deploy of a different model with the same
# runtime spec (which must build nothing). Usage: R_LIBS=.build/lib Rscript bench/deploy.R
suppressMessages(library(serveRless))
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "record.R"))
target <- local_azure()

set.seed(1)
n <- 105000
d <- data.frame(y = rnorm(n), x1 = rnorm(n), x2 = rnorm(n), x3 = rnorm(n))
fit1 <- lm(y ~ x1 + x2 + x3, data = d)
fit2 <- lm(y ~ x1 + x2, data = d)
size <- function(m) length(serialize(m, NULL, xdr = FALSE))

measure <- function(label, fit, name) {
  before <- nrow(local_azure_journal(target))
  t <- system.time(dep <- suppressMessages(deploy_model(fit, name, target)))[["elapsed"]]
  j <- local_azure_journal(target)
  j <- j[seq_len(nrow(j)) > before, ]
  data.frame(
    deploy = label,
    model_mb = round(size(fit) / 1e6, 1),
    seconds = round(t, 2),
    built = dep$built,
    uploaded_mb = round(dep$bytes_sent / 1e6, 2),
    arm_calls = dep$arm_calls,
    journal_calls = nrow(j),
    schedule_runs = sum(grepl("/scheduleRun$", j$path)),
    stringsAsFactors = FALSE
  )
}

rows <- rbind(
  measure("first (builds the image)", fit1, "bench-a"),
  measure("second model, same spec", fit2, "bench-b")
)
cat(sprintf("deploy_model() on the local Azure, %s, %d cores\n",
            format(Sys.time(), "%Y-%m-%d %H:%M UTC", tz = "UTC"), parallel::detectCores()))
print(rows, row.names = FALSE)
cat(sprintf("second / first: %.2f of the time; target: no build, < 2 s, < 10 control-plane calls -> %s\n",
            rows$seconds[2] / rows$seconds[1],
            if (!rows$built[2] && rows$seconds[2] < 2 && rows$journal_calls[2] < 10) "met" else "MISSED"))

bench_record("deploy", sprintf("deploy_model(), first deploy (builds the runtime image; %.1f MB model)", rows$model_mb[1]),
             rows$seconds[1], "s", better = "lower",
             note = sprintf("%d control-plane calls", rows$journal_calls[1]))
bench_record("deploy", "deploy_model(), second model with the same runtime spec", rows$seconds[2], "s",
             "first deploy (same run)", rows$seconds[1], "lower",
             note = sprintf("built an image: %s; target < 2 s", rows$built[2]))
bench_record("deploy", "deploy_model(), second model: control-plane calls", rows$journal_calls[2], "calls",
             "first deploy (same run)", rows$journal_calls[1], "lower", note = "target < 10")
