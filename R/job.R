# run_scoring_job(): the program inside every scoring container.

#' The scoring job that runs inside each container
#'
#' `run_scoring_job()` is the command of the runtime image: [score_now()] and
#' scheduled runs start containers that run it. It is exported so the image can
#' call it; you do not call it yourself.
#'
#' It reads its whole contract from environment variables:
#'
#' | variable | meaning |
#' |---|---|
#' | `SERVERLESS_RUN_ID` | the run's id |
#' | `SERVERLESS_DEPLOYMENT` | the deployment (model) name |
#' | `SERVERLESS_MODEL_VERSION`, `SERVERLESS_MODEL_SHA256` | the model version to load and its bundle's sha256 |
#' | `SERVERLESS_STORAGE_ACCOUNT`, `SERVERLESS_BLOB_ENDPOINT` | the storage account |
#' | `SERVERLESS_CONTAINER` | the container holding the models |
#' | `SERVERLESS_INPUTS` | this shard's input blobs (`container/path`), one per line |
#' | `SERVERLESS_INPUT_PATTERN` | instead of `SERVERLESS_INPUTS` (scheduled runs): a path or glob resolved when the job starts; the shard takes its round-robin share of the matches, or its row range of a single match |
#' | `SERVERLESS_ROWS` | `i/n` to score only the i-th of n row ranges of a single input, or empty |
#' | `SERVERLESS_OUTPUT` | the output prefix (`container/prefix/`) |
#' | `SERVERLESS_SHARD`, `SERVERLESS_SHARDS` | this shard's number and the count |
#' | `SERVERLESS_CHUNK_BYTES` | about how many bytes of a CSV or Parquet input are read, predicted and written at a time (default 32 MB) |
#' | `SERVERLESS_ATTEMPT` | which try of the shard this is (1, then 2, ... when `retries` re-run it) |
#' | `AZURE_CLIENT_ID` | the client id of the managed identity to authenticate as |
#' | `SERVERLESS_IMDS_ENDPOINT` | set by the local Azure only: where its instance metadata service is (on Azure, the job asks `http://169.254.169.254` for its identity's tokens, as ACI serves them) |
#' | `SERVERLESS_CA_PEM` | local Azure only: its CA certificate (public) |
#'
#' No key, SAS or token is ever passed in the environment. The job downloads the model
#' bundle and verifies its sha256, downloads each input (CSV, Parquet, RDS) or its
#' row range, and scores it: a CSV or Parquet input chunk by chunk (whole records of
#' about `SERVERLESS_CHUNK_BYTES`; Parquet by row groups), so the job's memory follows
#' the chunk, not the file; an RDS input whole. For each chunk it checks the columns
#' against the model's `ptype` (reporting every mismatch at once), predicts with
#' `predict_fun` or `predict()` and appends to the output file (the input columns plus
#' `.pred`, or `.pred_<name>` per column of a matrix prediction), which is uploaded
#' when whole. Then, last, it writes `_runs/<run id>/<shard>/_run.json` under the output prefix, so a reader
#' never takes a partial output for a finished one. It logs one line per step.
#'
#' Exit codes: 0 ok, 2 bad input (missing variables, unreadable inputs, columns that do
#' not match the ptype), 3 model or predict error, 4 storage error.
#'
#' @param env The environment variables to read (for tests).
#' @param exit If `FALSE`, return the exit code instead of quitting R.
#' @return The exit code, invisibly, when `exit = FALSE`.
#' @examples
#' # Inside a container: Rscript -e 'serveRless::run_scoring_job()'
#' # Without the variables it exits with code 2 (bad input):
#' run_scoring_job(env = character(), exit = FALSE)
#' @export
run_scoring_job <- function(env = Sys.getenv(), exit = TRUE) {
  # A plain named character vector (Sys.getenv() returns a classed one), read once.
  env <- stats::setNames(as.character(env), names(env))
  started <- Sys.time()
  record <- list(status = "failed", start = format_time(started))
  code <- tryCatch(
    {
      job <- job_contract(env)
      record[names(job$record)] <- job$record
      record <- score_shard(job, record)
      0L
    },
    serverless_job_exit = function(e) {
      job_log("error: %s", conditionMessage(e))
      record$error <<- conditionMessage(e)
      e$exit_code
    },
    error = function(e) {
      job_log("error: %s", conditionMessage(e))
      record$error <<- conditionMessage(e)
      4L
    }
  )
  record$exit_code <- code
  record$end <- format_time(Sys.time())
  if (code != 0L) record$status <- "failed"
  if (!is.null(record$target_ok)) {
    # The record is the last thing written: its presence with status "succeeded" means
    # every output is complete.
    tryCatch(write_run_record(job_target_from(env), record),
             error = function(e) job_log("could not write the run record: %s", conditionMessage(e)))
  }
  job_log("exit %d after %.1f s", code, as.numeric(difftime(Sys.time(), started, units = "secs")))
  if (exit) quit(save = "no", status = code)
  invisible(code)
}

job_exit <- function(code, message) {
  rlang::abort(message, class = "serverless_job_exit", exit_code = as.integer(code))
}

job_log <- function(fmt, ...) {
  cat(format(Sys.time(), "%Y-%m-%dT%H:%M:%OS3Z", tz = "UTC"), " ", sprintf(fmt, ...), "\n", sep = "")
}

format_time <- function(t) format(t, "%Y-%m-%dT%H:%M:%OS3Z", tz = "UTC")

job_contract <- function(env) {
  get <- function(name, required = TRUE) {
    v <- unname(env[name])
    if (length(v) != 1 || is.na(v) || (!nzchar(v) && required)) {
      if (required) job_exit(2L, sprintf("the environment variable %s is not set", name))
      return("")
    }
    v
  }
  job <- list(
    run_id = get("SERVERLESS_RUN_ID"),
    deployment = get("SERVERLESS_DEPLOYMENT"),
    version = get("SERVERLESS_MODEL_VERSION"),
    sha256 = get("SERVERLESS_MODEL_SHA256"),
    inputs = strsplit(get("SERVERLESS_INPUTS", required = FALSE), "\n", fixed = TRUE)[[1]],
    pattern = get("SERVERLESS_INPUT_PATTERN", required = FALSE),
    rows = get("SERVERLESS_ROWS", required = FALSE),
    output = sub("/*$", "/", get("SERVERLESS_OUTPUT")),
    shard = as.integer(get("SERVERLESS_SHARD")),
    shards = as.integer(get("SERVERLESS_SHARDS")),
    chunk_bytes = as.numeric(get("SERVERLESS_CHUNK_BYTES", required = FALSE))
  )
  if (is.na(job$chunk_bytes) || job$chunk_bytes < 1) job$chunk_bytes <- default_chunk_bytes
  if (!length(job$inputs) && !nzchar(job$pattern)) {
    job_exit(2L, "the environment variable SERVERLESS_INPUTS (or SERVERLESS_INPUT_PATTERN) is not set")
  }
  job$target <- job_target_from(env)
  job$record <- list(run_id = job$run_id, deployment = job$deployment, model_version = job$version,
                     model_sha256 = job$sha256, shard = job$shard, shards = job$shards,
                     inputs = as.list(job$inputs), output_prefix = job$output, target_ok = TRUE)
  job
}

# The target inside the container: the storage account, reached with the managed
# identity's tokens.
job_target_from <- function(env) {
  secrets <- new.env(parent = emptyenv())
  ca <- unname(env["SERVERLESS_CA_PEM"])
  if (length(ca) == 1 && !is.na(ca) && nzchar(ca)) secrets$ca_pem <- ca
  given <- function(x) if (length(x) == 1 && !is.na(x) && nzchar(x)) x
  # The container's identity, through the instance metadata service as ACI serves
  # it; the local Azure says where its IMDS is (on Azure: 169.254.169.254).
  secrets$credential <- new_credential(
    "imds",
    client_id = given(unname(env["AZURE_CLIENT_ID"])),
    endpoint = given(unname(env["SERVERLESS_IMDS_ENDPOINT"])),
    source = "the container's managed identity"
  )
  new_target(
    kind = "job",
    storage_account = unname(env["SERVERLESS_STORAGE_ACCOUNT"]),
    blob_endpoint = unname(env["SERVERLESS_BLOB_ENDPOINT"]),
    container = unname(env["SERVERLESS_CONTAINER"]),
    secrets = secrets
  )
}

score_shard <- function(job, record) {
  t0 <- Sys.time()
  bundle <- tryCatch(
    load_model(job$deployment, job$target, version = job$version),
    serverless_error_integrity = function(e) job_exit(3L, conditionMessage(e)),
    serverless_error_input = function(e) job_exit(3L, conditionMessage(e)),
    serverless_error = function(e) job_exit(4L, conditionMessage(e))
  )
  if (!identical(bundle$metadata$sha256, job$sha256)) {
    job_exit(3L, sprintf("model %s %s has sha256 %s, not the deployed %s", job$deployment,
                         job$version, bundle$metadata$sha256, job$sha256))
  }
  tryCatch(load_bundle_packages(names(bundle$metadata$meta$packages)),
           error = function(e) job_exit(3L, conditionMessage(e)))
  job_log("loaded model %s %s (sha256 %s) in %.2f s", job$deployment, job$version,
          substr(job$sha256, 1, 12), secs(t0))
  if (!length(job$inputs)) {
    job <- resolve_job_inputs(job)
    record$inputs <- as.list(job$inputs)
  }
  outputs <- character()
  rows <- 0
  for (input in job$inputs) {
    path <- output_path(job, input)
    rows <- rows + score_input(job, bundle, input, path)
    outputs <- c(outputs, path)
  }
  record$status <- "succeeded"
  record$outputs <- as.list(outputs)
  record$rows_in <- rows
  record$rows_out <- rows
  peak <- peak_memory_mb()
  if (!is.na(peak)) {
    record$peak_memory_mb <- peak
    job_log("peak memory: %.0f MB", peak)
  }
  record
}

# Score one input into its output: CSV and Parquet chunk by chunk (read, check,
# predict, write), so the job's memory follows the chunk, not the file; RDS whole.
# Returns the rows scored.
score_input <- function(job, bundle, input, path) {
  got <- download_input(job, input)
  on.exit(unlink(got$file))
  if (got$format == "rds") {
    data <- read_input_file(got, input)
    check_against_ptype(data, bundle$ptype, input)
    out <- cbind(data, predict_chunk(bundle, data))
    write_output(job$target, out, path)
    return(nrow(out))
  }
  unreadable <- function(e) job_exit(2L, sprintf("%s cannot be read: %s", input, conditionMessage(e)))
  chunks <- tryCatch(
    rust_check(rs_table_chunks(got$file, got$format, ptype_hint(bundle$ptype), got$part[1], got$part[2],
                               job$chunk_bytes)),
    error = unreadable
  )
  file <- tempfile(fileext = paste0(".", got$format))
  on.exit(unlink(file), add = TRUE)
  writer <- rust_check(rs_table_writer(file, got$format))
  rows <- 0
  count <- 0L
  t0 <- Sys.time()
  repeat {
    t <- Sys.time()
    columns <- tryCatch(rust_check(rs_table_next(chunks)), error = unreadable)
    if (is.null(columns)) break
    data <- as.data.frame(columns, stringsAsFactors = FALSE, optional = TRUE)
    rm(columns)
    count <- count + 1L
    if (count == 1L && nrow(data) == 0 && !nzchar(job$rows)) job_exit(2L, sprintf("%s has no rows", input))
    check_against_ptype(data, bundle$ptype, input)
    out <- cbind(data, predict_chunk(bundle, data))
    rm(data)
    rust_check(rs_table_write(writer, as.list(out), FALSE))
    rows <- rows + nrow(out)
    job_log("chunk %d of %s: %d rows read, predicted and written in %.2f s", count, input, nrow(out), secs(t))
    rm(out)
    # What the chunk left is freed before the next one is read, so memory holds one.
    gc(verbose = FALSE)
  }
  written <- rust_check(rs_table_write(writer, NULL, TRUE))
  job_log("scored %s: %.0f rows in %d chunk%s of about %.0f MB in %.2f s (%.1f MB of output)", input, rows,
          count, if (count == 1L) "" else "s", job$chunk_bytes / 1e6, secs(t0), written$bytes / 1e6)
  upload_output(job$target, file, path)
  rows
}

predict_chunk <- function(bundle, data) {
  t <- Sys.time()
  preds <- tryCatch(predict_bundle(bundle, data),
                    error = function(e) job_exit(3L, paste("predicting failed:", conditionMessage(e))))
  if (secs(t) > 1) job_log("predict: %d rows in %.2f s", nrow(data), secs(t))
  preds
}

# The job process's peak resident memory in MB (Linux's VmHWM), or NA elsewhere.
peak_memory_mb <- function() {
  status <- tryCatch(readLines("/proc/self/status", warn = FALSE), error = function(e) character())
  line <- grep("^VmHWM:", status, value = TRUE)
  if (!length(line)) return(NA_real_)
  as.numeric(gsub("[^0-9]", "", line)) / 1024
}

secs <- function(t) as.numeric(difftime(Sys.time(), t, units = "secs"))

# A scheduled run's inputs are a pattern resolved when it starts: this shard's share
# of the matching blobs (round robin), or its row range of a single blob.
resolve_job_inputs <- function(job) {
  files <- tryCatch(resolve_inputs(job$target, job$pattern),
                    serverless_error_input = function(e) job_exit(2L, conditionMessage(e)),
                    serverless_error = function(e) job_exit(4L, conditionMessage(e)))
  if (length(files) == 1) {
    job$inputs <- files
    job$rows <- if (job$shards > 1) sprintf("%d/%d", job$shard, job$shards) else ""
  } else {
    job$inputs <- files[seq_along(files) %% job$shards == job$shard %% job$shards]
  }
  job_log("inputs: %d of %d blob%s matching %s", length(job$inputs), length(files),
          if (length(files) == 1) "" else "s", job$pattern)
  job
}

input_format <- function(path) {
  ext <- tolower(sub("^.*\\.", "", path))
  switch(ext, csv = "csv", parquet = "parquet", rds = "rds", NA_character_)
}

# Download an input, or for a shard of one file only its rows: the local file, its
# format and which part of it to read.
download_input <- function(job, input) {
  format <- input_format(input)
  if (is.na(format)) job_exit(2L, sprintf("%s is not a CSV, Parquet or RDS file", input))
  file <- tempfile(fileext = paste0(".", format))
  part <- if (nzchar(job$rows)) as.integer(strsplit(job$rows, "/", fixed = TRUE)[[1]]) else c(1L, 1L)
  t <- Sys.time()
  if (format %in% c("csv", "parquet") && part[2] > 1) {
    # A shard of one file downloads only what it reads: a CSV's header and a byte
    # range cut at line ends; a Parquet file's footer and row groups.
    share <- tryCatch(
      rust_wait(rs_blob_download_share(target_storage(job$target), input, file, format, part[1], part[2])),
      serverless_error_input = function(e) job_exit(2L, conditionMessage(e)),
      serverless_error = function(e) job_exit(4L, conditionMessage(e))
    )
    job_log("download %s part %d of %d: bytes %.0f-%.0f of %.0f (%.0f bytes fetched) in %.2f s",
            input, part[1], part[2], share$start, share$end, share$size, share$bytes_downloaded, secs(t))
    if (share$size == 0) job_exit(2L, sprintf("%s is empty", input))
    # The CSV share holds only this shard's rows; the sparse Parquet file is read as
    # the shard of the whole.
    if (format == "csv") part <- c(1L, 1L)
  } else {
    tryCatch(blob_download(job$target, input, file),
             serverless_error = function(e) job_exit(4L, conditionMessage(e)))
    size <- file.info(file)$size
    job_log("download %s: %.1f MB in %.2f s", input, size / 1e6, secs(t))
    if (size == 0) job_exit(2L, sprintf("%s is empty", input))
  }
  list(file = file, format = format, part = part)
}

read_input_file <- function(got, input) {
  t <- Sys.time()
  data <- tryCatch(
    read_table_file(got$file, got$format, got$part[1], got$part[2]),
    error = function(e) job_exit(2L, sprintf("%s cannot be read: %s", input, conditionMessage(e)))
  )
  job_log("read %s: %d rows in %.2f s", input, nrow(data), secs(t))
  if (nrow(data) == 0 && identical(got$part, c(1L, 1L))) job_exit(2L, sprintf("%s has no rows", input))
  data
}

# A file as a data frame; `shard`/`shards` picks a contiguous range of its rows.
read_table_file <- function(file, format, shard = 1L, shards = 1L, hint = NULL) {
  if (format == "rds") {
    data <- readRDS(file)
    if (!is.data.frame(data)) stop("the RDS file holds a ", class(data)[1], ", not a data frame")
    n <- nrow(data)
    bounds <- floor(n * (c(shard - 1, shard)) / shards)
    return(data[seq_len(bounds[2] - bounds[1]) + bounds[1], , drop = FALSE])
  }
  cols <- rust_check(rs_read_table(file, format, hint, as.integer(shard), as.integer(shards)))
  as.data.frame(cols, stringsAsFactors = FALSE, optional = TRUE)
}

# Every mismatch at once: missing columns, columns of the wrong type, unseen factor
# levels, text that is not a date (bad input, exit 2).
check_against_ptype <- function(data, ptype, input) {
  problems <- ptype_problems(data, ptype)
  if (length(problems)) {
    job_exit(2L, sprintf("%s does not match the model's inputs: %s", input, paste(problems, collapse = "; ")))
  }
  invisible()
}

output_path <- function(job, input) {
  base <- basename(input)
  if (nzchar(job$rows) && job$shards > 1) {
    base <- sub("(\\.[^.]+)$", sprintf("-part-%d\\1", job$shard), base)
  }
  paste0(job$output, base)
}

write_output <- function(target, data, path) {
  format <- input_format(path)
  file <- tempfile(fileext = paste0(".", format))
  on.exit(unlink(file))
  t <- Sys.time()
  if (format == "rds") {
    saveRDS(data, file)
  } else {
    rust_check(rs_write_table(as.list(data), file, format))
  }
  job_log("write %s: %d rows in %.2f s", basename(path), nrow(data), secs(t))
  upload_output(target, file, path)
}

upload_output <- function(target, file, path) {
  t <- Sys.time()
  tryCatch(blob_upload(target, file, path),
           serverless_error = function(e) job_exit(4L, conditionMessage(e)))
  job_log("upload %s: %.1f MB in %.2f s", path, file.info(file)$size / 1e6, secs(t))
}

write_run_record <- function(target, record) {
  record$target_ok <- NULL
  path <- sprintf("%s_runs/%s/%d/_run.json", record$output_prefix %||% "", record$run_id, record$shard)
  write_json_blob(target, record, path)
}

read_table_blob <- function(target, path) {
  format <- input_format(path)
  file <- withr::local_tempfile(fileext = paste0(".", format))
  blob_download(target, path, file)
  read_table_file(file, format)
}

read_json_blob <- function(target, path) {
  file <- withr::local_tempfile(fileext = ".json")
  blob_download(target, path, file)
  rust_check(rs_json_parse(paste(readLines(file, warn = FALSE), collapse = "\n")))
}

write_json_blob <- function(target, x, path) {
  file <- withr::local_tempfile(fileext = ".json")
  writeLines(rust_check(rs_json_format(x)), file)
  blob_upload(target, file, path)
}
