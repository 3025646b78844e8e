# Scoring on Azure Container Instances. score_now() builds on aci_run_group().

# Run one container group to completion through Resource Manager: create it (in the
# target's resource group, tagged), wait, collect each container's logs and exit code,
# delete it. Returns a data frame, one row per container.
aci_run_group <- function(target, name, command, env = list(), secure_env = list(),
                          image = "serverless-runtime:local", cpu = 1, memory_gb = 1.5,
                          tags = list(), timeout = 600, call = rlang::caller_env()) {
  check_target(target, call = call)
  check_string(name, call = call)
  if (!is.character(command) || !length(command) || anyNA(command)) {
    serverless_abort("{.arg command} must be a character vector (the program and its arguments).",
                     "input", call = call)
  }
  if (is.null(target$subscription)) {
    serverless_abort("{.arg target} has no subscription: use {.fn az_target} or {.fn local_azure}.",
                     "input", call = call)
  }
  named_strings <- function(x, arg) {
    if (!length(x)) return(structure(list(), names = character()))
    if (is.null(names(x)) || any(!nzchar(names(x)))) {
      serverless_abort("{.arg {arg}} must be a named list of strings.", "input", call = call)
    }
    lapply(x, as.character)
  }
  spec <- list(
    subscription = target$subscription,
    resource_group = target$resource_group,
    name = name,
    location = target$location,
    containers = list(list(
      name = "job", image = image, command = as.list(command), cpu = cpu, memory_gb = memory_gb,
      env = named_strings(env, "env"), secure_env = named_strings(secure_env, "secure_env")
    )),
    tags = named_strings(tags, "tags")
  )
  rows <- rust_wait(rs_aci_run(target_arm(target), spec, as.numeric(timeout)), call = call)
  data.frame(
    container = vapply(rows, function(r) r$name, ""),
    state = vapply(rows, function(r) r$state, ""),
    exit_code = vapply(rows, function(r) as.integer(r$exit_code %||% NA_integer_), 0L),
    logs = vapply(rows, function(r) r$logs, ""),
    stringsAsFactors = FALSE
  )
}

# Token details for a credential against the target's endpoints (never the token).
credential_token_info <- function(target, credential = target_credential(target),
                                  scope = "https://management.azure.com/.default") {
  config <- list(endpoints = target_endpoints(target), credential = credential_spec(credential))
  rust_wait(rs_token_info(config, scope))
}

#' Score data now, on Azure Container Instances
#'
#' `score_now()` runs the deployment's model over data in Blob Storage (or a data
#' frame you give) in one container group per shard. Each group runs
#' [run_scoring_job()] in the deployment's runtime image, as the deployment's managed
#' identity, and stops when done (you pay per second). With `wait = TRUE` it shows
#' progress, collects each shard's logs and exit code, deletes the groups (unless
#' `keep = TRUE`) and returns the finished run; with `wait = FALSE` it returns at once
#' and [run_status()] refreshes the run.
#'
#' Inputs: `input` is `"container/prefix/pattern"` with an optional glob in the last
#' part (`"data/in/*.csv"`), or a prefix ending in `/`. CSV, Parquet and RDS files are
#' read. Columns are converted to the model's `ptype` before predicting: factor levels
#' are checked, and dates in CSV are ISO 8601 text (`2024-02-29`,
#' `2024-02-29T13:45:07Z`). Parquet's `date32`/`date64` columns read as `Date` and its
#' timestamps as `POSIXct` in their time zone (UTC when they have none), and Parquet
#' outputs write them back as `date32` and `timestamp[us]`. Shards split the files
#' between them; a single file is split by rows. A single CSV is split by bytes, cut
#' at line ends, so each shard downloads only its rows (and the header): such a file
#' must not have line breaks inside quoted fields (it then fails to parse). A single
#' Parquet file is split by row groups when it has at least one per shard (each shard
#' downloads only its row groups and the footer), else by rows. Outputs:
#' one file per input (the input columns plus `.pred`) under `output`, and one run
#' record per shard, `_runs/<run id>/<shard>/_run.json`, written last.
#'
#' @param dep A deployment from [deploy_model()] or [get_deployment()].
#' @param newdata A data frame to score; it is uploaded to the run's own input path and
#'   its predictions come back with [read_predictions()].
#' @param input,output Blob paths (`"container/prefix"`) to read from and write to.
#'   `output` defaults to the run's own path when `newdata` is given.
#' @param shards Number of container groups.
#' @param wait Wait for the run to finish.
#' @param cpu,memory_gb Per group; default: the deployment's.
#' @param keep Keep the container groups after they finish (for debugging; they are
#'   not billed once stopped, but count against quotas).
#' @param timeout Seconds to wait before the run is stopped and its groups deleted.
#' @param max_parallel Container groups running at once; the other shards queue and
#'   start as groups finish (with `wait = FALSE`, as [run_status()] finds room).
#'   `NULL`: 10, or fewer when the region's Container Instances quota (its container
#'   groups and standard vCPUs not in use, read before the run) has room for fewer
#'   groups of this size; a message then says so.
#' @param retries How many times a shard is run again, in a new group, when it fails
#'   in a way a second try may mend: killed (exit 137, also out of memory), a storage
#'   error (exit 4), or a group that failed to start. Bad input (2) and model errors
#'   (3) are not retried. Outputs are per input file, so a retry overwrites, never
#'   duplicates, what a failed try wrote. The job sees its try as
#'   `SERVERLESS_ATTEMPT`; `run$shards$attempts` counts them.
#' @param chunk_mb How much of a CSV or Parquet input each job reads, predicts and
#'   writes at a time, in MB of the file. `NULL`: a 16th of the container's memory
#'   (4 to 256 MB), so that inputs bigger than the memory are scored.
#' @param priority `"regular"`, or `"spot"` for ACI Spot container groups: much
#'   cheaper, but Azure may evict them when it needs the capacity back. An evicted
#'   shard fails like a killed one (exit 137), so `retries` runs it again. Spot groups
#'   exist in some regions only; the local Azure evicts them with
#'   `local_azure_faults(evict =)`.
#' @param resume A finished run of this deployment: its shards without a succeeded run
#'   record run again, in the same run (inputs, outputs, id), and tries are counted on
#'   from the last. Give no `newdata`, `input` or `output` with it.
#' @return A `serverless_run`. A failed shard raises `serverless_error_job` (with its
#'   exit code and log tail) once the run has finished; other shards' outputs stay.
#' @examples
#' \donttest{
#' if (nzchar(Sys.which("azurite-blob"))) {
#' target <- local_azure()
#' dep <- deploy_model(lm(mpg ~ wt + hp, data = mtcars), "mpg", target)
#' run <- score_now(dep, newdata = mtcars)
#' run
#' head(read_predictions(run))
#' }
#' }
#' @export
score_now <- function(dep, newdata = NULL, input = NULL, output = NULL, shards = 1,
                      wait = TRUE, cpu = NULL, memory_gb = NULL, keep = FALSE, timeout = 3600,
                      max_parallel = NULL, retries = 0, resume = NULL, chunk_mb = NULL,
                      priority = c("regular", "spot")) {
  check_deployment(dep)
  check_flag(wait)
  check_flag(keep)
  check_whole(shards, 1, max_shards)
  if (!is.null(max_parallel)) check_whole(max_parallel, 1, max_shards)
  check_whole(retries, 0, max_retries)
  check_seconds(timeout, 1, max_timeout)
  if (!is.null(chunk_mb)) check_whole(chunk_mb, 1, 4096)
  priority <- check_choice(priority, c("regular", "spot"))
  if (!is.null(resume)) {
    return(resume_run(dep, resume, newdata, input, output, wait, keep, timeout, max_parallel, retries))
  }
  check_resources(cpu %||% dep$cpu, memory_gb %||% dep$memory_gb)
  if (is.null(newdata) == is.null(input)) {
    serverless_abort("Give either {.arg newdata} (a data frame) or {.arg input} (a blob path), not both or neither.",
                     "input")
  }
  if (!is.null(newdata) && !is.data.frame(newdata)) {
    serverless_abort("{.arg newdata} must be a data frame, not {.cls {class(newdata)[1]}}.", "input")
  }
  if (!is.null(newdata) && nrow(newdata) == 0) {
    serverless_abort("{.arg newdata} has no rows.", "input")
  }
  # What the job would refuse (exit 2), refused before the upload.
  if (!is.null(newdata)) check_rows_against_ptype(newdata, dep$ptype, "newdata")
  if (!is.null(input)) {
    check_string(input)
    check_not_local_file(input)
  }
  if (!is.null(output)) check_string(output)
  if (is.null(output) && is.null(newdata)) {
    serverless_abort("{.arg output} is needed with {.arg input}: where should the predictions go?", "input")
  }
  target <- dep$target
  run_id <- new_run_id()
  run_prefix <- sprintf("%s/runs/%s/%s", target$container, dep$name, run_id)
  if (!is.null(newdata)) {
    file <- withr::local_tempfile(fileext = ".rds")
    saveRDS(newdata, file)
    input <- paste0(run_prefix, "/input/newdata.rds")
    blob_upload(target, file, input)
    output <- output %||% paste0(run_prefix, "/output/")
  }
  output <- sub("/*$", "/", output)
  rust_check(rs_check_blob_path(paste0(output, "x")))
  files <- resolve_inputs(target, input)
  check_containers(target, output)
  plan <- shard_inputs(files, shards)

  live <- get_deployment(dep$name, target)
  if (is.null(live)) {
    serverless_abort(c("Deployment {.val {dep$name}} no longer exists.",
                       i = "Deploy the model again with {.fn deploy_model}."), "input")
  }
  request <- list(
    subscription = target$subscription,
    resource_group = target$resource_group,
    location = target$location,
    deployment = dep$name,
    run_id = run_id,
    image = live$image,
    login_server = live$record$login_server,
    identity_id = live$record$identity_id,
    cpu = as.numeric(cpu %||% live$cpu),
    memory_gb = as.numeric(memory_gb %||% live$memory_gb),
    shards = lapply(seq_along(plan), function(i) {
      list(index = i, env = job_environment(live, target, run_id, i, length(plan), plan[[i]], output,
                                            job_chunk_bytes(memory_gb %||% live$memory_gb, chunk_mb)))
    }),
    retries = as.integer(retries),
    spot = identical(priority, "spot")
  )
  request$max_parallel <- as.integer(max_parallel %||% quota_parallel(target, request, length(plan)))
  shards_state <- rust_wait(rs_score_run(target_arm(target), request, wait, keep, as.numeric(timeout)))
  run <- new_run(run_id, live, target, shards_state, output = output, inputs = plan,
                 request = request, keep = keep)
  if (wait) run <- finish_run(run)
  run
}

# The default max_parallel: 10, fewer when the region's quota has room for fewer
# groups of this size (the message says why, when it limits this run).
quota_parallel <- function(target, request, shards) {
  if (shards <= 1) return(1L) # one group at a time whatever the quota: no call
  room <- rust_wait(rs_score_default_parallel(target_arm(target), target$subscription, target$location,
                                              as.numeric(request$cpu), isTRUE(request$spot)))
  if (!is.null(room$reason) && shards > room$max_parallel) {
    cli::cli_inform(c(i = "At most {room$max_parallel} container group{?s} at once: {room$reason}."))
  }
  room$max_parallel
}

# score_now(resume = run): the shards of a finished run without a succeeded run
# record run again, in the same run (same inputs, outputs and id), counting tries on.
resume_run <- function(dep, run, newdata, input, output, wait, keep, timeout, max_parallel, retries,
                       call = rlang::caller_env()) {
  check_run(run, arg = "resume", call = call)
  if (!is.null(run$schedule) || is.null(run$request)) {
    serverless_abort("{.arg resume} must be a run of {.fn score_now}, not of a schedule.", "input", call = call)
  }
  if (!identical(run$deployment, dep$name)) {
    serverless_abort("Run {.val {run$run_id}} scored deployment {.val {run$deployment}}, not {.val {dep$name}}.",
                     "input", call = call)
  }
  if (!is.null(newdata) || !is.null(input) || !is.null(output)) {
    serverless_abort("A resumed run scores its own inputs again: give no {.arg newdata}, {.arg input} or {.arg output}.",
                     "input", call = call)
  }
  if (!run_finished(run)) run <- run_status(run)
  if (!run_finished(run)) {
    serverless_abort(c("Run {.val {run$run_id}} is still running.",
                       i = "Wait for it ({.fn run_status}), then resume it."), "input", call = call)
  }
  run <- finish_run(run, raise = FALSE)
  done <- vapply(run$records, function(r) identical(r$status, "succeeded"), TRUE)
  if (all(done)) {
    cli::cli_inform("Every shard of run {.val {run$run_id}} has succeeded: nothing to resume.")
    return(run)
  }
  request <- run$request
  request$retries <- as.integer(retries)
  tries <- run$shards$attempts
  request$shards <- lapply(which(!done), function(i) {
    shard <- run$request$shards[[i]]
    shard$first_attempt <- as.integer(tries[i] + 1L)
    shard
  })
  cli::cli_inform("Resuming run {.val {run$run_id}}: shard{?s} {which(!done)} of {length(done)}.")
  request$max_parallel <- as.integer(max_parallel %||% quota_parallel(run$target, request, length(request$shards)))
  states <- rust_wait(rs_score_run(target_arm(run$target), request, wait, keep, as.numeric(timeout)),
                      call = call)
  run$shards_state[!done] <- states
  run$request$shards[!done] <- request$shards
  run$shards <- shards_frame(run$shards_state, run$inputs)
  run$keep <- keep
  run$records <- NULL
  if (wait) run <- finish_run(run)
  run
}

#' @rdname score_now
#' @param run A `serverless_run`.
#' @export
run_status <- function(run) {
  check_run(run)
  if (run_finished(run)) {
    return(run)
  }
  if (!is.null(run$schedule)) {
    run <- refresh_schedule_run(run)
    if (run_finished(run)) run <- finish_run(run, raise = FALSE)
    return(run)
  }
  shards <- rust_wait(rs_score_status(target_arm(run$target), run$request, run$shards_state, run$keep))
  run$shards_state <- shards
  run$shards <- shards_frame(shards, run$inputs)
  if (run_finished(run)) run <- finish_run(run, raise = FALSE)
  run
}

#' @rdname score_now
#' @export
read_predictions <- function(run) {
  check_run(run)
  if (!run_finished(run)) {
    serverless_abort("Run {.val {run$run_id}} has not finished: call {.fn run_status} first.", "input")
  }
  outputs <- unlist(lapply(run$records, function(r) unlist(r$outputs)))
  if (!length(outputs)) {
    serverless_abort("Run {.val {run$run_id}} wrote no outputs.", "input")
  }
  parts <- lapply(outputs, function(path) read_table_blob(run$target, path))
  out <- do.call(rbind, parts)
  rownames(out) <- NULL
  out
}

# The internal view of a run: finished when every shard has succeeded or failed.
run_finished <- function(run) {
  if (!is.null(run$schedule)) {
    return(!run$status %in% c("Running", "Waiting"))
  }
  all(run$shards$state %in% c("Succeeded", "Failed"))
}

# Reads the run records, and raises serverless_error_job for a failed shard.
finish_run <- function(run, raise = TRUE) {
  run$records <- lapply(seq_len(nrow(run$shards)), function(i) {
    path <- sprintf("%s_runs/%s/%d/_run.json", run$output, run$run_id, i)
    tryCatch(read_json_blob(run$target, path), serverless_error = function(e) NULL)
  })
  rows <- vapply(run$records, function(r) as.numeric(r$rows_out %||% NA), 0)
  run$shards$rows <- rows
  failed <- which(run$shards$state == "Failed")
  if (raise && length(failed)) {
    i <- failed[1]
    logs <- run$shards_state[[i]]$logs %||% ""
    tail <- utils::tail(strsplit(logs, "\n", fixed = TRUE)[[1]], 15)
    code <- run$shards$exit_code[i]
    cli::cli_abort(
      c("Shard {i} of run {.val {run$run_id}} failed with exit code {code} ({exit_code_meaning(code)}).",
        i = "{length(failed)} of {nrow(run$shards)} shard{?s} failed; the others' outputs are kept.",
        i = "Last lines of its log:",
        cli_escape(tail)),
      class = c("serverless_error_job", "serverless_error"),
      exit_code = code, logs = logs, run = run
    )
  }
  run
}

exit_code_meaning <- function(code) {
  switch(as.character(code),
         "0" = "ok", "2" = "bad input", "3" = "model or predict error", "4" = "storage error",
         "unexpected")
}

new_run_id <- function() {
  tolower(paste0(format(Sys.time(), "%Y%m%dt%H%M%S", tz = "UTC"), "-",
                 paste(sample(c(0:9, letters[1:6]), 6, replace = TRUE), collapse = "")))
}

check_deployment <- function(x, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  if (!inherits(x, "serverless_deployment") || is.null(x$target)) {
    serverless_abort("{.arg {arg}} must be a deployment from {.fn deploy_model} or {.fn get_deployment}.",
                     "input", call = call)
  }
}

# A blob path that names a file on this machine is almost always a mix-up.
check_not_local_file <- function(x, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  if (file.exists(path.expand(x)) && !dir.exists(path.expand(x))) {
    serverless_abort(
      c("{.arg {arg}} {.val {x}} is a file on this machine; {.arg {arg}} is a blob path ({.val container/folder/file.csv}).",
        i = "Upload it first with {.fn blob_upload}, or read it and give it as {.arg newdata}."),
      "input", call = call
    )
  }
  invisible(x)
}

# The containers of these blob paths must exist (one small listing each).
check_containers <- function(target, paths, call = rlang::caller_env()) {
  for (container in unique(sub("/.*$", "", sub("^/+", "", paths)))) {
    rust_wait(rs_check_container(target_storage(target, call = call), container), call = call)
  }
  invisible()
}

check_run <- function(x, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  if (!inherits(x, "serverless_run")) {
    serverless_abort("{.arg {arg}} must be a run from {.fn score_now}.", "input", call = call)
  }
}

# "container/prefix/*.csv" -> the blob paths it matches, sorted.
resolve_inputs <- function(target, input, call = rlang::caller_env()) {
  rust_check(rs_check_blob_path(if (grepl("/$", input)) paste0(input, "x") else input), call = call)
  dir <- sub("[^/]*$", "", input)
  pattern <- sub("^.*/", "", input)
  listed <- blob_list(target, dir)
  names <- listed$path
  if (nzchar(pattern)) {
    names <- names[grepl(utils::glob2rx(pattern), basename(names)) & dirname(names) == sub("/$", "", dir)]
  }
  names <- names[grepl("\\.(csv|parquet|rds)$", names, ignore.case = TRUE)]
  if (!length(names)) {
    serverless_abort(c("No CSV, Parquet or RDS blob matches {.val {input}}.",
                       i = "List what is there with {.code blob_list(target, \"{dir}\")}."),
                     "input", call = call)
  }
  sort(names)
}

# Files split between shards (round robin); a single file is split by rows.
shard_inputs <- function(files, shards, call = rlang::caller_env()) {
  if (length(files) == 1) {
    return(lapply(seq_len(shards), function(i) list(files = files, rows = sprintf("%d/%d", i, shards))))
  }
  if (shards > length(files)) {
    serverless_abort(
      c("{shards} shards for {length(files)} input files: each shard needs at least one file.",
        i = "Use at most {length(files)} shards, or one big file (split by rows)."),
      "input", call = call
    )
  }
  groups <- split(files, rep_len(seq_len(shards), length(files)))
  lapply(groups, function(f) list(files = unname(f), rows = ""))
}

# The job's contract: everything run_scoring_job() needs, as plain environment
# variables. No key, SAS or token: the container gets tokens from its identity.
job_environment <- function(dep, target, run_id, shard, shards, inputs, output, chunk_bytes) {
  env <- list(
    SERVERLESS_RUN_ID = run_id,
    SERVERLESS_DEPLOYMENT = dep$name,
    SERVERLESS_MODEL_VERSION = dep$model_version,
    SERVERLESS_MODEL_SHA256 = dep$model_sha256,
    SERVERLESS_STORAGE_ACCOUNT = target$storage_account,
    SERVERLESS_BLOB_ENDPOINT = target$blob_endpoint,
    SERVERLESS_CONTAINER = target$container,
    SERVERLESS_INPUTS = paste(inputs$files, collapse = "\n"),
    SERVERLESS_ROWS = inputs$rows,
    SERVERLESS_OUTPUT = output,
    SERVERLESS_SHARD = as.character(shard),
    SERVERLESS_SHARDS = as.character(shards),
    SERVERLESS_CHUNK_BYTES = sprintf("%.0f", chunk_bytes),
    AZURE_CLIENT_ID = dep$record$identity_client_id
  )
  # The local Azure's CA (public, not a secret) so the job trusts its HTTPS endpoints.
  if (identical(target$kind, "local")) env$SERVERLESS_CA_PEM <- target$secrets$ca_pem
  env
}

# How much of an input a job reads, predicts and writes at a time, in bytes: a 16th
# of the container's memory (R holds a chunk several times over while predicting it:
# the data frame, the model matrix, the output), from 4 MB to 256 MB; or the user's.
job_chunk_bytes <- function(memory_gb, chunk_mb = NULL) {
  if (!is.null(chunk_mb)) return(chunk_mb * 1e6)
  min(max(memory_gb * 2^30 / 16, 4e6), 256e6)
}

# What a job reads at a time when its environment does not say.
default_chunk_bytes <- 32e6

new_run <- function(run_id, dep, target, shards_state, output, inputs, request, keep) {
  structure(
    list(
      run_id = run_id,
      deployment = dep$name,
      model_version = dep$model_version,
      output = output,
      inputs = inputs,
      shards = shards_frame(shards_state, inputs),
      shards_state = shards_state,
      # What run_status() needs to start queued shards and retries (no secrets: the
      # job's environment names its identity, it holds no key).
      request = request,
      cpu = request$cpu,
      memory_gb = request$memory_gb,
      keep = keep,
      records = NULL,
      target = target
    ),
    class = "serverless_run"
  )
}

shards_frame <- function(states, inputs) {
  time <- function(s, f) parse_time(s[[f]] %||% NA_character_)
  started <- do.call(c, lapply(states, time, "started"))
  finished <- do.call(c, lapply(states, time, "finished"))
  data.frame(
    shard = vapply(states, function(s) as.integer(s$index), 0L),
    state = vapply(states, function(s) s$state, ""),
    exit_code = vapply(states, function(s) as.integer(s$exit_code %||% NA_integer_), 0L),
    attempts = vapply(states, function(s) as.integer(max(1L, s$attempt %||% 1L)), 0L),
    inputs = vapply(inputs, function(i) length(i$files), 0L),
    rows = NA_real_,
    duration_s = as.numeric(difftime(finished, started, units = "secs")),
    stringsAsFactors = FALSE
  )
}

#' @rdname score_now
#' @param ... Passed to methods.
#' @export
scoring_logs <- function(run, ...) {
  UseMethod("scoring_logs")
}

#' @export
scoring_logs.serverless_run <- function(run, ...) {
  logs <- vapply(run$shards_state, function(s) s$logs %||% NA_character_, "")
  new_logs(stats::setNames(logs, paste0("shard ", run$shards$shard)))
}

# The container groups of the target's resource group, from Resource Manager: what
# is (still) there, e.g. to check that no run left one behind.
container_groups <- function(target) {
  path <- sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerInstance/containerGroups",
                  target$subscription, target$resource_group)
  out <- rust_wait(rs_arm_get(target_arm(target), path, "2023-05-01"))
  vapply(out$value, function(g) g$name, "")
}
