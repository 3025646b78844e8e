# How long Ctrl-C takes to return control during a long upload: a child R process
# uploads a 1 GiB file, the parent sends SIGINT one second in and times the
# `serverless_error_interrupted` condition. Three runs.
library(serveRless)
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "record.R"))
target <- local_azure()
big <- tempfile()
con <- file(big, "wb")
invisible(seek(con, 1024^3 - 1, rw = "write"))
writeBin(as.raw(1), con)
close(con)
latency <- rep(NA_real_, 3)
for (i in 1:3) {
  child <- callr::r_bg(function(endpoint, key, ca, file, path) {
    library(serveRless)
    target <- az_target("00000000-0000-0000-0000-000000000000", "rg", "westeurope",
                        "devstoreaccount1", blob_endpoint = endpoint, storage_key = key)
    target$secrets$ca_pem <- ca # the local Azure's CA
    cat("START\n")
    res <- tryCatch(blob_upload(target, file, path), error = function(e) e)
    cat("CLASS", class(res)[1], "\n")
  }, args = list(target$blob_endpoint, serveRless:::azurite_key, target$secrets$ca_pem, big, paste0("serverless/bench/intr-", i)),
  stdout = "|", stderr = "|")
  deadline <- Sys.time() + 30
  repeat {
    child$poll_io(100)
    if (any(grepl("START", child$read_output_lines())) || Sys.time() > deadline) break
  }
  Sys.sleep(1)
  t0 <- Sys.time()
  invisible(child$interrupt())
  repeat {
    child$poll_io(20)
    l <- child$read_output_lines()
    if (any(grepl("CLASS", l)) || Sys.time() > deadline + 30) break
  }
  cls <- sub("CLASS ", "", l[grepl("CLASS", l)][1])
  secs <- as.numeric(Sys.time() - t0, units = "secs")
  cat(sprintf("run %d: interrupt -> %s after %.2f s\n", i, cls, secs))
  if (identical(trimws(cls), "serverless_error_interrupted")) latency[i] <- secs
  invisible(child$kill())
}
unlink(big)
bench_record("interrupt_latency", "Ctrl-C during a 1 GiB upload -> serverless_error_interrupted (median of 3)",
             stats::median(latency), "s", better = "lower",
             note = sprintf("runs: %s s; design target about 1 s", paste(sprintf("%.2f", latency), collapse = ", ")))
