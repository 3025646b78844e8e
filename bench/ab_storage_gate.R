# A/B of blob transfers on the local Azure, before and after its storage gate (the
# HTTPS hop in front of Azurite that checks bearer tokens as Azure Storage does): runs
# in the R library given, so two builds can be compared alternately on the same
# machine, e.g.
#   for i in 1 2 3; do for lib in /tmp/before-lib .build/lib; do
#     R_LIBS=$lib Rscript bench/ab_storage_gate.R; done; done
# Prints the upload and download rates (MB/s) of a 512 MiB file, 3 runs each.
suppressMessages(library(serveRless))
set.seed(1)
size <- 512 * 1024^2
file <- tempfile()
con <- file(file, "wb")
for (i in seq_len(size / 2^24)) writeBin(as.raw(sample.int(256, 2^24, TRUE) - 1L), con)
close(con)
target <- local_azure()
rate <- function(expr) size / 1e6 / unname(system.time(expr)[["elapsed"]])
up <- down <- numeric()
for (i in 1:3) {
  path <- sprintf("serverless/ab/%d.bin", i)
  up[i] <- rate(suppressMessages(blob_upload(target, file, path)))
  dest <- tempfile()
  down[i] <- rate(suppressMessages(blob_download(target, path, dest)))
  unlink(dest)
}
unlink(file)
cat(format(packageVersion("serveRless")), .libPaths()[1], "\n")
cat("upload MB/s", sprintf("%.0f", up), "\ndownload MB/s", sprintf("%.0f", down), "\n")
