# schedule_scoring() and friends: scoring on a schedule or when data arrives, run by
# a Logic App.

#' Score on a schedule or when data arrives
#'
#' `schedule_scoring()` creates (or updates) a Logic App that scores with a
#' deployment on a cron schedule, or whenever a blob arrives in a folder. Each run
#' starts one container group per shard, waits for them, keeps their logs in Blob
#' Storage under `runs/<deployment>/<run id>/` in the target's container, and
#' deletes them, also when they fail or time out: no run leaves a billed group
#' behind. A run fails when any shard fails.
#'
#' The workflow is rendered from `workflow.json.hbs` (in the package's `templates`
#' folder) and written with a system-assigned identity that gets only the roles it
#' needs: Azure Container Instances Contributor on the resource group, Managed
#' Identity Operator on the scoring identity, and Storage Blob Data Contributor on
#' the storage account. No key, password or SAS is written into it.
#'
#' **Schedules.** `schedule` is a five-field cron line (minute hour day-of-month
#' month day-of-week) read in `time_zone` (an IANA name such as `"Europe/Vienna"`).
#' It becomes the workflow's `Recurrence` trigger; a cron line a Recurrence cannot
#' express exactly (for example a restricted month, or both day fields restricted)
#' is refused with a `serverless_error_input` naming the part, never approximated.
#' A monthly line (days of the month restricted) must name one hour and one minute:
#' a monthly Recurrence runs at one time of day, that of its start time.
#'
#' **Checks.** Each run polls each shard's container group, and every check is two
#' billed Logic App actions, so checks are spaced to cost little: the first comes
#' `first_check` seconds after the group is created (by default the median time a
#' shard of this deployment took in its recent scheduled runs, from its group's
#' creation to its end), then `poll_seconds` later, then twice that, and so on up to
#' one minute apart (or `poll_seconds`, if longer). A shard that takes as long as
#' usual is seen done at its first check; one that takes longer is seen at most a
#' minute late, which costs no compute (a stopped group is not billed).
#' `estimate_cost()` of a schedule counts these checks. `timeout` must leave at
#' most 5,000 checks per shard (an Until loop's limit).
#'
#' **Blob trigger.** `trigger = "blob"` scores each blob added to (or changed in)
#' the folder `input` (`container/folder/`), one run per blob. It uses the Blob
#' connector's polling trigger ("when a blob is added or modified") rather than an
#' Event Grid subscription: it needs no Event Grid resource or system topic on the
#' storage account, works with any account kind, and the workflow stays one resource
#' that `unschedule()` removes; the price is a poll every minute (one action
#' execution) and up to a minute of delay.
#'
#' **Inputs and outputs.** With a schedule, `input` is a path or glob
#' (`container/folder/*.csv`) resolved when the run starts: the files are split
#' between shards round robin, and a single file is split by rows. Each run writes
#' its predictions under `output/<run id>/`, so no run overwrites another's.
#'
#' The model version is the deployment's version when you schedule: after deploying
#' a new version, call `schedule_scoring()` again to update the workflow.
#'
#' @param dep A `serverless_deployment` from [deploy_model()].
#' @param input Blob path or glob of the data (`container/path`); with
#'   `trigger = "blob"`, the folder to watch (`container/folder/`). A URL of the
#'   target's storage account is accepted too.
#' @param output Where predictions go (`container/prefix/`).
#' @param schedule A five-field cron line, for `trigger = "schedule"`.
#' @param trigger `"schedule"` or `"blob"`.
#' @param time_zone The IANA time zone `schedule` is read in.
#' @param shards Container groups per run, 1 to 50.
#' @param chunk_mb How much of an input each job scores at a time: see [score_now()].
#' @param max_parallel Groups running at once (the workflow's Foreach concurrency); the
#'   other shards wait for a free one. `NULL`: as in [score_now()], 10 or fewer if the
#'   region's quota has less room when the schedule is made.
#' @param connector How the workflow calls Container Instances: `"http"` (Http
#'   actions with its managed identity) or `"aci"` (the managed ACI connector).
#' @param name The workflow's name; by default `<deployment>-<trigger>`.
#' @param cpu,memory_gb Each group's size; by default the deployment's.
#' @param poll_seconds Seconds between the first checks of a running group (see
#'   Checks).
#' @param first_check Seconds from creating a shard's group to its first check. `NULL`:
#'   the median shard duration of the deployment's newest scheduled runs (up to 10),
#'   or `poll_seconds` when it has none.
#' @param timeout Seconds a shard may run before it is stopped and deleted.
#' @param dry_run If `TRUE`, return the plan (a `serverless_plan` whose `workflow`
#'   element is the rendered workflow) and write nothing.
#' @return A `serverless_schedule` (or, with `dry_run`, a `serverless_plan`).
#' @seealso [trigger_now()], [scoring_runs()], [pause_schedule()], [unschedule()],
#'   [undeploy()].
#' @examples
#' \donttest{
#' if (nzchar(Sys.which("azurite-blob"))) {
#' target <- local_azure()
#' dep <- deploy_model(lm(mpg ~ wt + hp, data = mtcars), "mpg", target)
#' csv <- tempfile(fileext = ".csv")
#' utils::write.csv(mtcars, csv, row.names = FALSE)
#' blob_upload(target, csv, "data/in/cars.csv")
#' sch <- schedule_scoring(dep, input = "data/in/*.csv", output = "data/out/",
#'                         schedule = "0 3 * * 1-5", time_zone = "Europe/Vienna")
#' sch
#' run <- trigger_now(sch)
#' scoring_runs(sch)
#' unschedule(sch)
#' }
#' }
#' @export
schedule_scoring <- function(dep, input, output, schedule = NULL,
                             trigger = c("schedule", "blob"), time_zone = "UTC",
                             shards = 1, connector = c("http", "aci"), name = NULL,
                             cpu = NULL, memory_gb = NULL, poll_seconds = 10,
                             timeout = 3600, max_parallel = NULL, chunk_mb = NULL,
                             first_check = NULL, dry_run = FALSE) {
  check_deployment(dep)
  trigger <- check_choice(trigger, c("schedule", "blob"))
  connector <- check_choice(connector, c("http", "aci"))
  check_flag(dry_run)
  target <- dep$target
  check_arm_target(target)
  if (is.null(dep$image) || !nzchar(dep$image %||% "")) {
    serverless_abort(c("Deployment {.val {dep$name}} has no runtime image.",
                       i = "Deploy it with {.fn deploy_model}, which builds the image."), "input")
  }
  check_whole(shards, 1, max_shards)
  if (!is.null(max_parallel)) check_whole(max_parallel, 1, max_shards)
  check_whole(poll_seconds, 1, 3600)
  check_whole(timeout, poll_seconds, 24 * 3600)
  if (!is.null(first_check)) check_whole(first_check, 1, timeout)
  if (!is.null(chunk_mb)) check_whole(chunk_mb, 1, 4096)
  check_resources(cpu %||% dep$cpu, memory_gb %||% dep$memory_gb)
  input <- storage_path(input, target)
  check_not_local_file(input)
  output <- sub("/*$", "/", storage_path(output, target))
  check_string(time_zone)
  if (trigger == "schedule") {
    if (is.null(schedule)) {
      serverless_abort(c("{.arg schedule} is needed with {.code trigger = \"schedule\"}.",
                         i = "Give a cron line such as {.val 0 3 * * 1-5}, or use {.code trigger = \"blob\"}."),
                       "input")
    }
    check_string(schedule)
    rust_check(rs_check_blob_path(sub("[^/]*$", "x", input)))
    recurrence <- rust_check(rs_cron_recurrence(schedule, time_zone))
    trigger_spec <- list(kind = "schedule", cron = schedule, time_zone = time_zone)
  } else {
    if (!is.null(schedule)) {
      serverless_abort("{.arg schedule} is not used with {.code trigger = \"blob\"}: the blob's arrival starts a run.",
                       "input")
    }
    if (!grepl("/$", input) || grepl("[*?]", input)) {
      serverless_abort(c("With {.code trigger = \"blob\"}, {.arg input} is a folder ({.val container/folder/}), not {.val {input}}.",
                         i = "Each blob added there is scored on its own."), "input")
    }
    if (startsWith(output, input)) {
      serverless_abort(c("{.arg output} {.val {output}} is inside the watched folder {.val {input}}.",
                         i = "Every prediction written would start another run: use another folder."),
                       "input")
    }
    recurrence <- NULL
    trigger_spec <- list(kind = "blob", folder = input)
  }
  name <- name %||% paste0(dep$name, "-", trigger)
  check_string(name)

  make_request <- function(d) {
    env <- job_environment(d, target, run_id = "", shard = 0, shards = shards,
                           inputs = list(files = character(), rows = ""), output = output,
                           chunk_bytes = job_chunk_bytes(memory_gb %||% d$memory_gb, chunk_mb))
    env$SERVERLESS_RUN_ID <- env$SERVERLESS_SHARD <- env$SERVERLESS_SHARDS <- NULL
    env$SERVERLESS_INPUTS <- NULL
    if (trigger == "schedule") env$SERVERLESS_INPUT_PATTERN <- input
    list(
      subscription = target$subscription,
      resource_group = target$resource_group,
      location = target$location,
      name = name,
      deployment = d$name,
      trigger = trigger_spec,
      connector = connector,
      shards = as.integer(shards),
      max_parallel = if (!is.null(max_parallel)) as.integer(max_parallel),
      image = d$image,
      login_server = d$record$login_server %||% "",
      identity_id = d$record$identity_id %||% "",
      cpu = as.numeric(cpu %||% d$cpu),
      memory_gb = as.numeric(memory_gb %||% d$memory_gb),
      env = env,
      storage_account = target$storage_account,
      arm_endpoint = target$arm_endpoint %||% public_arm_endpoint,
      blob_endpoint = target$blob_endpoint,
      container = target$container,
      poll_seconds = as.integer(poll_seconds),
      first_check_s = if (!is.null(first_check)) as.integer(first_check),
      timeout_s = as.integer(timeout),
      template = read_template("workflow.json.hbs"),
      dry_run = dry_run
    )
  }
  # Every input error (cron, time zone, names, sizes) before any network call.
  rust_check(rs_schedule_render(make_request(dep)))
  live <- get_deployment(dep$name, target)
  if (is.null(live)) {
    serverless_abort(c("Deployment {.val {dep$name}} no longer exists.",
                       i = "Deploy the model again with {.fn deploy_model}."), "input")
  }
  if (!dry_run) {
    # Every run would fail writing (or finding nothing) in a missing container.
    check_containers(target, c(input, output))
  }
  # Read as for the real thing, so a dry run shows what would be written.
  if (is.null(first_check)) {
    usual <- usual_shard_seconds(target, live$name)
    if (!is.null(usual)) first_check <- min(max(1, ceiling(usual)), timeout)
  }
  if (is.null(max_parallel) && shards > 1) {
    max_parallel <- quota_parallel(target, list(cpu = cpu %||% live$cpu, spot = FALSE), shards)
  }
  request <- make_request(live)
  out <- rust_wait(rs_schedule_apply(target_arm(target), request))
  plan <- new_plan(out$plan$items, sprintf("schedule_scoring(%s)", name))
  plan$workflow <- out$workflow
  if (dry_run) {
    return(plan)
  }
  new_schedule(
    name = name, deployment = live$name, model_version = live$model_version,
    workflow_id = out$workflow_id, trigger = trigger, trigger_name = out$trigger_name,
    cron = schedule, time_zone = time_zone, recurrence = recurrence,
    input = input, output = output, shards = as.integer(shards), connector = connector,
    cpu = request$cpu, memory_gb = request$memory_gb,
    poll_waits = as.integer(unlist(out$workflow$properties$definition$parameters$pollWaitSeconds$defaultValue)),
    plan = plan, target = target
  )
}

new_schedule <- function(...) structure(list(...), class = "serverless_schedule")

#' Run, list, pause and remove schedules
#'
#' `trigger_now()` starts a run of a schedule at once (as its trigger would) and,
#' with `wait`, follows it to its end. `scoring_runs()` lists a schedule's runs,
#' newest first. `pause_schedule()` and `resume_schedule()` disable and enable its
#' trigger (runs in flight finish). `unschedule()` deletes the workflow with its role
#' assignments and connections. `undeploy()` removes everything tagged for a
#' deployment (schedules, container groups, connections) and its deployment record;
#' with `delete_models = TRUE` also every stored version of the model.
#'
#' @param sch A `serverless_schedule` from [schedule_scoring()].
#' @param wait Wait for the run to finish (a failed shard then raises
#'   `serverless_error_job`, as in [score_now()]).
#' @param timeout Seconds to wait.
#' @param n How many of the newest runs to list.
#' @return `trigger_now()`: a `serverless_run`. `scoring_runs()`: a data frame with one
#'   row per run: `run_id`, `trigger`, `start`, `end`, `status`, `shards_ok`,
#'   `shards_failed`, `exit_code` (the first failing shard's), `rows`, `duration_s`,
#'   `est_cost` (USD, Container Instances only) and `error`. The others return
#'   `sch` or what was removed, invisibly.
#' @examples
#' \donttest{
#' if (nzchar(Sys.which("azurite-blob"))) {
#' target <- local_azure()
#' dep <- deploy_model(lm(mpg ~ wt + hp, data = mtcars), "mpg", target)
#' csv <- tempfile(fileext = ".csv")
#' utils::write.csv(mtcars, csv, row.names = FALSE)
#' blob_upload(target, csv, "data/in/cars.csv")
#' sch <- schedule_scoring(dep, "data/in/*.csv", "data/out/", schedule = "0 3 * * *")
#' run <- trigger_now(sch)
#' head(read_predictions(run))
#' scoring_runs(sch)
#' scoring_logs(sch, run_id = run$run_id)
#' pause_schedule(sch)
#' resume_schedule(sch)
#' undeploy("mpg", target)
#' }
#' }
#' @name schedules
NULL

#' @rdname schedules
#' @export
trigger_now <- function(sch, wait = TRUE, timeout = 3600) {
  check_schedule(sch)
  check_flag(wait)
  check_seconds(timeout, 1, max_timeout)
  if (sch$trigger == "blob") {
    serverless_abort(c("Schedule {.val {sch$name}} runs when a blob arrives in {.val {sch$input}}.",
                       i = "Upload a blob there (e.g. with {.fn blob_upload}) to start a run."), "input")
  }
  run_id <- rust_wait(rs_schedule_call(target_arm(sch$target), sch$workflow_id, "trigger", sch$trigger_name))
  run <- new_schedule_run(sch, run_id)
  if (!wait) {
    return(run)
  }
  deadline <- Sys.time() + timeout
  repeat {
    run <- run_status(run)
    if (run_finished(run)) break
    if (Sys.time() > deadline) {
      serverless_abort("Run {.val {run_id}} of {.val {sch$name}} did not finish within {timeout} s.", "azure")
    }
    Sys.sleep(1)
  }
  finish_run(run)
}

#' @rdname schedules
#' @export
scoring_runs <- function(sch, n = 20) {
  check_schedule(sch)
  check_whole(n, 1, 250)
  runs <- rust_wait(rs_schedule_call(target_arm(sch$target), sch$workflow_id, "runs", as.character(n)))
  rows <- lapply(runs, function(r) {
    p <- r$properties
    summary <- if (!p$status %in% c("Running", "Waiting")) read_run_summary(sch, r$name)
    shards <- summary_shards(summary)
    records <- if (!is.null(summary)) run_records(sch$target, paste0(sch$output, r$name, "/"), r$name, shards$shard)
    failed <- shards[shards$state != "Succeeded", , drop = FALSE]
    data.frame(
      run_id = r$name,
      trigger = p$trigger$name %||% NA_character_,
      start = parse_time(p$startTime %||% NA_character_),
      end = parse_time(p$endTime %||% NA_character_),
      status = p$status,
      shards_ok = if (is.null(summary)) NA_integer_ else sum(shards$state == "Succeeded"),
      shards_failed = if (is.null(summary)) NA_integer_ else nrow(failed),
      exit_code = if (nrow(failed)) failed$exit_code[1] else NA_integer_,
      rows = if (length(records)) sum(vapply(records, function(x) as.numeric(x$rows_out %||% 0), 0)) else NA_real_,
      duration_s = NA_real_,
      est_cost = if (is.null(summary)) NA_real_ else aci_rough_cost(sum(shards$duration_s, na.rm = TRUE), sch$cpu, sch$memory_gb),
      error = p$error$message %||% NA_character_,
      stringsAsFactors = FALSE
    )
  })
  out <- if (length(rows)) do.call(rbind, rows) else empty_runs_frame()
  out$duration_s <- as.numeric(difftime(out$end, out$start, units = "secs"))
  out
}

#' @rdname schedules
#' @param run For `scoring_logs()`: a schedule (for a run's logs, see [score_now()]).
#' @param run_id A run of the schedule (see [scoring_runs()]); by default the newest.
#' @param ... Not used.
#' @export
scoring_logs.serverless_schedule <- function(run, run_id = NULL, ...) {
  sch <- run
  if (is.null(run_id)) {
    runs <- scoring_runs(sch, n = 1)
    if (!nrow(runs)) serverless_abort("Schedule {.val {sch$name}} has no runs yet.", "input")
    run_id <- runs$run_id[1]
  }
  check_string(run_id)
  shards <- summary_shards(read_run_summary(sch, run_id))
  if (!nrow(shards)) {
    serverless_abort("Run {.val {run_id}} of {.val {sch$name}} has no logs (yet).", "input")
  }
  logs <- vapply(shards$shard, function(i) read_run_log(sch$target, sch$deployment, run_id, i), "")
  new_logs(stats::setNames(logs, paste0("shard ", shards$shard)))
}

#' @rdname schedules
#' @export
pause_schedule <- function(sch) {
  check_schedule(sch)
  rust_wait(rs_schedule_call(target_arm(sch$target), sch$workflow_id, "disable", ""))
  cli::cli_inform(c(v = "Paused {.val {sch$name}}: its trigger is disabled."))
  invisible(sch)
}

#' @rdname schedules
#' @export
resume_schedule <- function(sch) {
  check_schedule(sch)
  rust_wait(rs_schedule_call(target_arm(sch$target), sch$workflow_id, "enable", ""))
  cli::cli_inform(c(v = "Resumed {.val {sch$name}}."))
  invisible(sch)
}

#' @rdname schedules
#' @export
unschedule <- function(sch) {
  check_schedule(sch)
  removed <- unlist(rust_wait(rs_schedule_call(target_arm(sch$target), sch$workflow_id, "delete", "")))
  cli::cli_inform(c(v = "Removed schedule {.val {sch$name}} ({length(removed)} resource{?s})."))
  invisible(removed)
}

#' @rdname schedules
#' @param name A deployment name.
#' @param target Where it is deployed: [az_target()] or [local_azure()].
#' @param delete_models Also delete every stored version of the model.
#' @export
undeploy <- function(name, target, delete_models = FALSE) {
  check_string(name)
  rust_check(rs_check_model_name(name))
  check_target(target)
  check_arm_target(target)
  check_flag(delete_models)
  removed <- unlist(rust_wait(rs_undeploy(target_arm(target), target$subscription,
                                          target$resource_group, name)))
  record <- sprintf("%s/deployments/%s.json", target$container, name)
  blobs <- blob_list(target, sprintf("%s/deployments/", target$container))$path
  if (record %in% blobs) {
    blob_delete(target, record)
    removed <- c(removed, record)
  }
  if (delete_models) {
    models <- blob_list(target, sprintf("%s/models/%s/", target$container, name))$path
    for (path in models) blob_delete(target, path)
    removed <- c(removed, models)
  }
  cli::cli_inform(c(v = "Undeployed {.val {name}}: removed {length(removed)} resource{?s} and blob{?s}."))
  invisible(removed)
}

# A run started by a schedule, as a serverless_run that run_status() refreshes from
# the Logic Apps runs API and the run's summary in Blob.
new_schedule_run <- function(sch, run_id) {
  structure(
    list(
      run_id = run_id,
      deployment = sch$deployment,
      model_version = sch$model_version,
      output = paste0(sch$output, run_id, "/"),
      inputs = NULL,
      shards = data.frame(shard = integer(), state = character(), exit_code = integer(),
                          inputs = integer(), rows = numeric(), duration_s = numeric()),
      shards_state = list(),
      status = "Running",
      error = NULL,
      cpu = sch$cpu,
      memory_gb = sch$memory_gb,
      keep = FALSE,
      records = NULL,
      schedule = sch$name,
      workflow_id = sch$workflow_id,
      target = sch$target
    ),
    class = "serverless_run"
  )
}

refresh_schedule_run <- function(run) {
  wf <- rust_wait(rs_schedule_call(target_arm(run$target), run$workflow_id, "run", run$run_id))
  run$status <- wf$properties$status
  run$error <- wf$properties$error$message
  if (run$status %in% c("Running", "Waiting")) {
    return(run)
  }
  summary <- read_run_summary(list(target = run$target, deployment = run$deployment), run$run_id)
  shards <- summary_shards(summary)
  run$shards_state <- lapply(seq_len(nrow(shards)), function(i) {
    list(index = shards$shard[i], state = shards$state[i], exit_code = shards$exit_code[i],
         logs = read_run_log(run$target, run$deployment, run$run_id, shards$shard[i]))
  })
  run$shards <- data.frame(shard = shards$shard, state = shards$state, exit_code = shards$exit_code,
                           inputs = NA_integer_, rows = NA_real_, duration_s = shards$duration_s,
                           stringsAsFactors = FALSE)
  if (!nrow(shards)) {
    # The run ended before any shard was recorded (e.g. its summary could not be written).
    run$shards <- data.frame(shard = 1L, state = "Failed", exit_code = NA_integer_, inputs = NA_integer_,
                             rows = NA_real_, duration_s = NA_real_)
    run$shards_state <- list(list(index = 1L, state = "Failed", logs = run$error %||% ""))
  }
  run
}

runs_prefix <- function(target, deployment, run_id) {
  sprintf("%s/runs/%s/%s", target$container, deployment, run_id)
}

read_run_summary <- function(sch, run_id) {
  path <- paste0(runs_prefix(sch$target, sch$deployment, run_id), "/summary.json")
  tryCatch(read_json_blob(sch$target, path), serverless_error = function(e) NULL)
}

read_run_log <- function(target, deployment, run_id, shard) {
  path <- sprintf("%s/shard-%d.log", runs_prefix(target, deployment, run_id), as.integer(shard))
  file <- withr::local_tempfile(fileext = ".log")
  ok <- tryCatch({
    blob_download(target, path, file)
    TRUE
  }, serverless_error = function(e) FALSE)
  if (!ok) return(NA_character_)
  paste(readLines(file, warn = FALSE, encoding = "UTF-8"), collapse = "\n")
}

# The summary's shards as a data frame, in shard order. `duration_s` is the
# container's run; `lifetime_s` runs from the group's creation (older summaries
# lack it) to the container's end.
summary_shards <- function(summary) {
  s <- summary$shards %||% list()
  num <- function(x) if (is.null(x)) NA_real_ else as.numeric(x)
  time <- function(x, field) parse_time(x[[field]] %||% NA_character_)
  since <- function(field) {
    vapply(s, function(x) as.numeric(difftime(time(x, "finished"), time(x, field), units = "secs")), 0)
  }
  out <- data.frame(
    shard = vapply(s, function(x) as.integer(num(x$shard)), 0L),
    state = vapply(s, function(x) x$state %||% "Unknown", ""),
    exit_code = vapply(s, function(x) as.integer(num(x$exit_code)), 0L),
    duration_s = since("started"),
    lifetime_s = since("created"),
    stringsAsFactors = FALSE
  )
  out[order(out$shard), , drop = FALSE]
}

# Seconds a succeeded shard of `deployment` usually takes from its group's creation
# to its end: the median over the newest `runs` scheduled runs' summaries, or NULL.
usual_shard_seconds <- function(target, deployment, runs = 10) {
  listing <- tryCatch(blob_list(target, runs_prefix(target, deployment, "")),
                      serverless_error = function(e) NULL)
  if (is.null(listing)) return(NULL)
  summaries <- listing[grepl("/summary[.]json$", listing$path), , drop = FALSE]
  if (!nrow(summaries)) return(NULL)
  summaries <- utils::head(summaries[order(summaries$last_modified, decreasing = TRUE), , drop = FALSE], runs)
  seconds <- unlist(lapply(summaries$path, function(path) {
    summary <- tryCatch(read_json_blob(target, path), serverless_error = function(e) NULL)
    shards <- summary_shards(summary)
    shards <- shards[shards$state == "Succeeded", , drop = FALSE]
    ifelse(is.na(shards$lifetime_s), shards$duration_s, shards$lifetime_s)
  }))
  seconds <- seconds[is.finite(seconds) & seconds > 0]
  if (length(seconds)) stats::median(seconds)
}

run_records <- function(target, output, run_id, shards) {
  lapply(shards, function(i) {
    path <- sprintf("%s_runs/%s/%d/_run.json", output, run_id, as.integer(i))
    tryCatch(read_json_blob(target, path), serverless_error = function(e) NULL)
  })
}

empty_runs_frame <- function() {
  data.frame(run_id = character(), trigger = character(), start = parse_time(character()),
             end = parse_time(character()), status = character(), shards_ok = integer(),
             shards_failed = integer(), exit_code = integer(), rows = numeric(),
             duration_s = numeric(), est_cost = numeric(), error = character(),
             stringsAsFactors = FALSE)
}

# Blob paths may be given as URLs of the target's account; any other account is an
# error (the workflow and the job only reach the target's).
storage_path <- function(x, target, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  check_string(x, arg = arg, call = call)
  if (!grepl("^https?://", x)) {
    return(x)
  }
  base <- sub("/*$", "/", target$blob_endpoint)
  if (startsWith(x, base)) {
    return(substring(x, nchar(base) + 1))
  }
  host <- sub("^https?://([^/]+).*$", "\\1", x)
  account <- sub("\\..*$", "", host)
  if (grepl("\\.blob\\.core\\.windows\\.net$", host) && identical(account, target$storage_account)) {
    return(sub("^https?://[^/]+/", "", x))
  }
  serverless_abort(
    c("{.arg {arg}} {.val {x}} is in storage account {.val {account}}, not the target's {.val {target$storage_account}}.",
      i = "Copy the data into {.val {target$storage_account}}, or use a target for that account."),
    "input", call = call
  )
}

check_schedule <- function(x, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  if (!inherits(x, "serverless_schedule")) {
    serverless_abort("{.arg {arg}} must be a schedule from {.fn schedule_scoring}, not {.cls {class(x)[1]}}.",
                     "input", call = call)
  }
}

check_choice <- function(x, choices, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  if (identical(x, choices)) {
    return(choices[1])
  }
  if (!is.character(x) || length(x) != 1 || is.na(x) || !x %in% choices) {
    serverless_abort("{.arg {arg}} must be one of {.or {.val {choices}}}, not {.val {format(x)}}.",
                     "input", call = call)
  }
  x
}

# The next times a Recurrence fires, in its (IANA) time zone, by checking each minute
# of the coming weeks against it.
next_runs <- function(recurrence, time_zone, n = 3, from = Sys.time()) {
  start <- as.POSIXct(ceiling(as.numeric(from) / 60) * 60, origin = "1970-01-01", tz = "UTC")
  minutes <- seq(start, by = 60, length.out = 60 * 24 * 62)
  lt <- as.POSIXlt(minutes, tz = time_zone)
  s <- recurrence$schedule
  if (recurrence$frequency %in% c("Minute", "Hour")) {
    first <- as.integer(substr(recurrence$startTime, 15, 16))
    step <- if (recurrence$frequency == "Hour") 60L else as.integer(recurrence$interval)
    keep <- (lt$min - first) %% step == 0
  } else {
    # A Month runs at its start time's time of day; Day and Week at their schedule's.
    at <- if (recurrence$frequency == "Month") {
      list(hours = as.integer(substr(recurrence$startTime, 12, 13)),
           minutes = as.integer(substr(recurrence$startTime, 15, 16)))
    } else {
      s
    }
    keep <- lt$min %in% unlist(at$minutes) & lt$hour %in% unlist(at$hours)
    if (length(s$weekDays)) {
      days <- c(Sunday = 0, Monday = 1, Tuesday = 2, Wednesday = 3, Thursday = 4, Friday = 5, Saturday = 6)
      keep <- keep & lt$wday %in% days[unlist(s$weekDays)]
    }
    if (length(s$monthDays)) keep <- keep & lt$mday %in% unlist(s$monthDays)
  }
  utils::head(minutes[keep], n)
}
