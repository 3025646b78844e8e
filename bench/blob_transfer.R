# Blob transfer and model store benchmark, all peers against the same Azurite in one run:
#   1 GiB file: serveRless blob_upload()/blob_download() vs the Python azure-storage-blob
#     SDK (max_concurrency = 4) vs a single curl PUT / GET;
#   ~200 MB model: store_model()/load_model() vs saveRDS() + curl PUT, curl GET + readRDS().
# Prints throughput, ratios, and the R process's peak RSS during the 1 GiB upload.
library(serveRless)
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "record.R"))

mib <- 1024^2
python <- Sys.getenv("SERVERLESS_BENCH_PYTHON", "python3")
target <- local_azure()
acct <- target$storage_account
key <- serveRless:::azurite_key
dir <- tempfile("serverless-bench-")
dir.create(dir)
on.exit(unlink(dir, recursive = TRUE), add = TRUE)

peak_rss_mb <- function() {
  line <- grep("^VmHWM", readLines("/proc/self/status"), value = TRUE)
  as.numeric(gsub("[^0-9]", "", line)) / 1024
}
reset_peak_rss <- function() {
  # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0).
  try(writeLines("5", "/proc/self/clear_refs"), silent = TRUE)
}
elapsed <- function(expr) unname(system.time(expr)[["elapsed"]])
py <- function(...) {
  out <- system2(python, c(file.path("bench", "peer_python.py"), ...), stdout = TRUE)
  out[length(out)]
}
# Azurite serves HTTPS with the local Azure's CA: every peer trusts it.
ca_file <- tempfile(fileext = ".pem")
writeLines(target$secrets$ca_pem, ca_file)
Sys.setenv(REQUESTS_CA_BUNDLE = ca_file)
curl_time <- function(args) {
  as.numeric(system2("curl", c("-sS", "--cacert", ca_file, "-o", "/dev/null", "-w", "%{time_total}", args),
                     stdout = TRUE))
}
curl_get_time <- function(url, file) {
  as.numeric(system2("curl", c("-sS", "--cacert", ca_file, "-o", shQuote(file), "-w", "%{time_total}",
                               shQuote(url)), stdout = TRUE))
}
curl_put_time <- function(url, file) {
  curl_time(c("-X", "PUT", "-H", "x-ms-blob-type:BlockBlob", "-H", "x-ms-version:2025-11-05",
              "-T", shQuote(file), shQuote(url)))
}

cat("Making a 1 GiB file of random bytes...\n")
big <- file.path(dir, "big.bin")
system2("head", c("-c", 1024 * mib, "/dev/urandom"), stdout = big)
size_mb <- file.size(big) / 1e6

rows <- list()
add <- function(what, tool, seconds, mb) {
  rows[[length(rows) + 1]] <<- data.frame(what = what, tool = tool, seconds = round(seconds, 2),
                                           MB_per_s = round(mb / seconds, 1))
}

gc()
reset_peak_rss()
t <- elapsed(blob_upload(target, big, "serverless/bench/serverless.bin"))
upload_rss <- peak_rss_mb()
add("upload 1 GiB", "serveRless", t, size_mb)
add("upload 1 GiB", "python sdk (4)", as.numeric(py("upload", target$blob_endpoint, acct, key, "serverless", "bench/python.bin", big)), size_mb)
sas_url <- py("sas", target$blob_endpoint, acct, key, "serverless", "bench/curl.bin")
add("upload 1 GiB", "curl PUT", curl_put_time(sas_url, big), size_mb)

out <- file.path(dir, "out.bin")
t <- elapsed(blob_download(target, "serverless/bench/serverless.bin", out, overwrite = TRUE))
add("download 1 GiB", "serveRless", t, size_mb)
add("download 1 GiB", "python sdk (4)", as.numeric(py("download", target$blob_endpoint, acct, key, "serverless", "bench/python.bin", out)), size_mb)
add("download 1 GiB", "curl GET", curl_get_time(sas_url, out), size_mb)
unlink(out)

cat("Fitting a ~200 MB model...\n")
set.seed(1)
n <- 6e5
d <- data.frame(y = rnorm(n), a = rnorm(n), b = rnorm(n), c = rnorm(n), e = rnorm(n))
fit <- lm(y ~ a + b + c + e, data = d)
rm(d)
model_mb <- as.numeric(object.size(fit)) / 1e6
cat(sprintf("model object: %.0f MB in memory\n", model_mb))

t_store <- elapsed(v <- store_model(fit, "bench-model", target))
t_load <- elapsed(b <- load_model("bench-model", target))
stopifnot(identical(coef(b$model), coef(fit)))
add("store model", "serveRless store_model()", t_store, model_mb)
add("load model", "serveRless load_model()", t_load, model_mb)

rds <- file.path(dir, "model.rds")
model_url <- py("sas", target$blob_endpoint, acct, key, "serverless", "bench/model.rds")
t_save <- elapsed(saveRDS(fit, rds)) + curl_put_time(model_url, rds)
add("store model", "saveRDS + curl PUT", t_save, model_mb)
unlink(rds)
t_read <- curl_get_time(model_url, rds) + elapsed(m2 <- readRDS(rds))
stopifnot(identical(coef(m2), coef(fit)))
add("load model", "curl GET + readRDS", t_read, model_mb)

res <- do.call(rbind, rows)
best_peer <- tapply(ifelse(grepl("serveRless", res$tool), NA, res$MB_per_s), res$what, max, na.rm = TRUE)
ours <- res[grepl("serveRless", res$tool), ]
ours$best_peer_MB_per_s <- best_peer[ours$what]
ours$ratio <- round(ours$MB_per_s / ours$best_peer_MB_per_s, 2)

cat(sprintf("\nMachine: %d cores, %.0f GB RAM; %s; %s UTC\n", parallel::detectCores(),
            as.numeric(sub("[^0-9]*([0-9]+).*", "\\1", grep("MemTotal", readLines("/proc/meminfo"), value = TRUE))) / 1024^2,
            R.version.string, format(Sys.time(), tz = "UTC")))
cat(sprintf("stored bundle: %.0f MB compressed (sha256 %s)\n\n", v$size / 1e6, substr(v$sha256, 1, 12)))
print(res, row.names = FALSE)
cat("\nserveRless against the best peer (throughput ratio, > 1 is faster):\n")
print(ours[, c("what", "MB_per_s", "best_peer_MB_per_s", "ratio")], row.names = FALSE)
cat(sprintf("\nPeak RSS of the R process during the 1 GiB upload: %.0f MB (target < 256 MB)\n", upload_rss))

# For bench/RESULTS.md: each serveRless figure against each peer of the same run.
for (w in unique(ours$what)) {
  mine <- res[res$what == w & grepl("serveRless", res$tool), ]
  peers <- res[res$what == w & !grepl("serveRless", res$tool), ]
  for (i in seq_len(nrow(peers))) {
    if (grepl("model", w)) {
      bench_record("blob_transfer", sprintf("%s (%.0f MB lm object)", w, model_mb), mine$seconds,
                   "s", peers$tool[i], peers$seconds[i], "lower")
    } else {
      bench_record("blob_transfer", w, mine$MB_per_s, "MB/s", peers$tool[i], peers$MB_per_s[i], "higher",
                   "Azurite over HTTPS on the same machine")
    }
  }
}
bench_record("blob_transfer", "peak RSS of the R process during the 1 GiB upload", upload_rss, "MB",
             better = "lower", note = "target < 256 MB")
