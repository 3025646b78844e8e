# schedule_scoring() end to end on the local Azure: the emulator runs the rendered
# Logic App for real (Recurrence timers, the blob polling trigger, Http actions to
# ARM and Blob with the workflow's identity), which starts real scoring processes.

deploy_quietly <- function(...) suppressMessages(deploy_model(...))
quietly <- function(expr) suppressMessages(expr)

upload_csv <- function(target, data, path) {
  f <- withr::local_tempfile(fileext = ".csv")
  utils::write.csv(data, f, row.names = FALSE)
  blob_upload(target, f, path)
}

# Waits (bounded) until `cond()` is TRUE; returns whether it became so.
wait_for <- function(cond, seconds, every = 1) {
  deadline <- Sys.time() + seconds
  while (Sys.time() < deadline) {
    if (isTRUE(cond())) return(TRUE)
    Sys.sleep(every)
  }
  isTRUE(cond())
}

journal_frame <- function(target) local_azure_journal(target)

# The schedule trigger's histories (one per evaluation: Skipped, Succeeded, Failed),
# newest first, as the Logic Apps API lists them.
trigger_histories <- function(sch) {
  path <- sprintf("%s/triggers/%s/histories", sch$workflow_id, sch$trigger_name)
  out <- serveRless:::rust_wait(serveRless:::rs_arm_get(serveRless:::target_arm(sch$target),
                                                        path, "2019-05-01"))
  vapply(out$value, function(x) x$properties$status, "")
}
arm_writes <- function(target) {
  j <- journal_frame(target)
  sum(j$method %in% c("PUT", "POST", "PATCH", "DELETE") & !grepl("oauth2|/token", j$path))
}

arm_list <- function(target, type, api) {
  path <- sprintf("/subscriptions/%s/resourceGroups/%s/providers/%s",
                  target$subscription, target$resource_group, type)
  out <- serveRless:::rust_wait(serveRless:::rs_arm_get(serveRless:::target_arm(target), path, api))
  vapply(out$value, function(x) x$name, "")
}

tagged <- function(target, deployment) {
  path <- sprintf("/subscriptions/%s/resourceGroups/%s/resources?$filter=tagName eq 'serverless-deployment' and tagValue eq '%s'",
                  target$subscription, target$resource_group, deployment)
  out <- serveRless:::rust_wait(serveRless:::rs_arm_get(serveRless:::target_arm(target),
                                                        utils::URLencode(path), "2021-04-01"))
  vapply(out$value, function(x) x$id, "")
}

test_that("next runs follow the Recurrence: a monthly one at its start time's time of day", {
  monthly <- list(frequency = "Month", interval = 1, startTime = "2000-01-01T04:30:00",
                  schedule = list(monthDays = list(1, 15)))
  from <- as.POSIXct("2025-05-07 12:00", tz = "UTC")
  expect_equal(format(serveRless:::next_runs(monthly, "UTC", n = 2, from = from), tz = "UTC"),
               c("2025-05-15 04:30:00", "2025-06-01 04:30:00"))
  daily <- list(frequency = "Day", interval = 1, startTime = "2000-01-01T00:00:00",
                schedule = list(hours = list(3), minutes = list(0)))
  expect_equal(format(serveRless:::next_runs(daily, "Europe/Vienna", n = 1, from = from), tz = "UTC"),
               "2025-05-08 01:00:00") # 03:00 CEST
})

test_that("bad schedule input is refused before any network call, naming the value", {
  offline <- azurite_az_target(blob_endpoint = "https://127.0.0.1:9/devstoreaccount1")
  offline$arm_endpoint <- "https://127.0.0.1:9"
  dep <- structure(
    list(name = "mpg", model_version = "v1", model_sha256 = strrep("a", 64), image = "r.azurecr.io/x:1",
         cpu = 1, memory_gb = 1.5, target = offline,
         record = list(login_server = "r.azurecr.io", identity_id = "/subscriptions/s/id",
                       identity_client_id = "c")),
    class = "serverless_deployment"
  )
  refuse <- function(pattern, ...) {
    err <- expect_error(schedule_scoring(dep, ...), class = "serverless_error_input")
    expect_match(conditionMessage(err), pattern, fixed = TRUE)
  }
  refuse("61", "data/in/*.csv", "data/out/", schedule = "61 * * * *")
  refuse("day-of-month", "data/in/*.csv", "data/out/", schedule = "0 3 1 * 1")
  refuse("month", "data/in/*.csv", "data/out/", schedule = "0 3 * 6 *")
  # A monthly Recurrence runs at one time of day (its startTime's).
  refuse("one time of day", "data/in/*.csv", "data/out/", schedule = "0 3,15 1 * *")
  refuse("Mars/Olympus", "data/in/*.csv", "data/out/", schedule = "0 3 * * *", time_zone = "Mars/Olympus")
  refuse("otheraccount", "https://otheraccount.blob.core.windows.net/data/in/*.csv", "data/out/",
         schedule = "0 3 * * *")
  refuse("0", "data/in/*.csv", "data/out/", schedule = "0 3 * * *", shards = 0)
  refuse("51", "data/in/*.csv", "data/out/", schedule = "0 3 * * *", shards = 51)
  refuse("2.5", "data/in/*.csv", "data/out/", schedule = "0 3 * * *", shards = 2.5)
  refuse("schedule", "data/in/*.csv", "data/out/")
  refuse("data/in/*.csv", "data/in/*.csv", "data/out/", trigger = "blob")
  refuse("data/in/out/", "data/in/", "data/in/out/", trigger = "blob")
  refuse("not used", "data/in/", "data/out/", trigger = "blob", schedule = "0 3 * * *")
  refuse("ftp", "data/in/*.csv", "data/out/", schedule = "0 3 * * *", connector = "ftp")
  refuse("Bad_Name", "data/in/*.csv", "data/out/", schedule = "0 3 * * *", name = "Bad_Name")
  refuse("cpu", "data/in/*.csv", "data/out/", schedule = "0 3 * * *", cpu = 8)
  unbuilt <- dep
  unbuilt$image <- ""
  err <- expect_error(schedule_scoring(unbuilt, "data/in/*.csv", "data/out/", schedule = "0 3 * * *"),
                      class = "serverless_error_input")
  expect_match(conditionMessage(err), "no runtime image")
  expect_error(trigger_now(list()), class = "serverless_error_input")
})

test_that("a schedule runs on its own, can be paused and resumed, and a failing run is reported", {
  target <- local_azure()
  fit <- lm(mpg ~ wt + hp, data = mtcars)
  # Scoring takes at least 2 s, so the shards' usual lifetime, which a later schedule's
  # first check learns, can never be the 1 s a new schedule starts from.
  slow_predict <- local(function(model, newdata) {
    Sys.sleep(2)
    stats::predict(model, newdata)
  }, envir = new.env(parent = baseenv()))
  dep <- deploy_quietly(fit, "mpg", target, predict_fun = slow_predict)
  cars <- mtcars[, c("wt", "hp")]
  upload_csv(target, cars[1:20, ], "serverless/in/a.csv")
  upload_csv(target, cars[21:32, ], "serverless/in/b.csv")

  # A dry run plans and renders, and writes nothing.
  writes_before <- arm_writes(target)
  plan <- quietly(schedule_scoring(dep, "serverless/in/*.csv", "serverless/out/",
                                   schedule = "* * * * *", shards = 2, poll_seconds = 1, dry_run = TRUE))
  expect_s3_class(plan, "serverless_plan")
  expect_setequal(plan$items$action, "create")
  expect_equal(plan$workflow$properties$definition$triggers$Recurrence$recurrence$frequency, "Minute")
  expect_equal(arm_writes(target), writes_before)
  # Checks back off to a minute apart, so a day-long timeout polled from every second
  # fits an Until loop's 5,000 iterations: 1 + 1 + 2 + ... + 60 = 1,831 s in 61
  # checks, 1,410 a minute apart to 86,400 s, and one more.
  long <- quietly(schedule_scoring(dep, "serverless/in/*.csv", "serverless/out/",
                                   schedule = "* * * * *", poll_seconds = 1, timeout = 86400, dry_run = TRUE))
  until <- long$workflow$properties$definition$actions$For_each_shard$actions$Until_terminated
  expect_equal(until$limit$count, 1472)

  sch <- quietly(schedule_scoring(dep, "serverless/in/*.csv", "serverless/out/",
                                  schedule = "* * * * *", shards = 2, poll_seconds = 1))
  expect_s3_class(sch, "serverless_schedule")
  expect_match(paste(format(sch), collapse = "\n"), "next:")
  # No run of mpg yet: the first check comes after poll_seconds, then they back off.
  expect_equal(sch$poll_waits, c(1L, 1:60))
  expect_match(paste(format(sch), collapse = "\n"), "checks:   first 1 s after a group is created, then after 1, 2, 3")

  # Within two minutes the Recurrence trigger (never fired by hand here) starts a
  # run that succeeds, and its predictions are local predict()'s.
  done <- function() {
    runs <- scoring_runs(sch)
    runs[runs$status == "Succeeded", , drop = FALSE]
  }
  expect_true(wait_for(function() nrow(done()) >= 1, 120, every = 2))
  j <- journal_frame(target)
  expect_false(any(grepl("/triggers/[^/]+/run$", j$path) & j$method == "POST"))
  runs <- done()
  expect_equal(runs$trigger[1], "Recurrence")
  expect_equal(runs$shards_ok[1], 2L)
  expect_equal(runs$rows[1], 32)
  run_id <- runs$run_id[1]
  outs <- blob_list(target, sprintf("serverless/out/%s/", run_id))$path
  outs <- outs[!grepl("/_runs/", outs)]
  expect_setequal(basename(outs), c("a.csv", "b.csv"))
  preds <- do.call(rbind, lapply(sort(outs), function(p) serveRless:::read_table_blob(target, p)))
  expect_equal(preds$.pred, unname(predict(fit, cars)), tolerance = 1e-12)
  logs <- scoring_logs(sch, run_id = run_id)
  expect_length(logs, 2)
  expect_match(logs[[1]], "exit 0")
  expect_length(container_groups(target), 0)

  # Paused: the trigger is not even evaluated at the minute it would have fired (no
  # run, no trigger history). Resumed: runs start again. Waiting past that minute is
  # what shows it; a late timer could only make this pass wrongly, never fail.
  expect_true(wait_for(function() all(scoring_runs(sch)$status != "Running"), 60))
  quietly(pause_schedule(sch))
  n_paused <- nrow(scoring_runs(sch))
  h_paused <- length(trigger_histories(sch))
  expect_true(h_paused >= n_paused)
  past_next_minute <- ceiling(as.numeric(Sys.time()) / 60) * 60 + 5
  Sys.sleep(max(0, past_next_minute - as.numeric(Sys.time())))
  expect_equal(nrow(scoring_runs(sch)), n_paused)
  expect_equal(length(trigger_histories(sch)), h_paused)
  resumed_at <- Sys.time()
  quietly(resume_schedule(sch))
  expect_true(wait_for(function() nrow(scoring_runs(sch)) > n_paused, 75, every = 2))
  expect_true(all(scoring_runs(sch)$start[seq_len(nrow(scoring_runs(sch)) - n_paused)] > resumed_at))
  quietly(pause_schedule(sch))
  # The run just started ends, so its summary is there for what follows.
  expect_true(wait_for(function() all(scoring_runs(sch)$status != "Running"), 60))

  # A run whose job fails (the input lacks a column the model needs): Failed, with
  # the exit code and the job's log; its groups are deleted.
  upload_csv(target, data.frame(wt = 1:3), "serverless/bad/x.csv")
  bad <- quietly(schedule_scoring(dep, "serverless/bad/*.csv", "serverless/bad-out/",
                                  schedule = "0 3 * * *", name = "mpg-bad", poll_seconds = 1))
  # mpg has run now: this schedule's first check comes when mpg's shards usually
  # end, the median over its scheduled runs' summaries of a group's creation (the
  # workflow records it) to its container's end.
  lifetimes <- unlist(lapply(scoring_runs(sch)$run_id, function(id) {
    shards <- serveRless:::read_run_summary(sch, id)$shards
    vapply(shards, function(x) {
      if (!identical(x$state, "Succeeded")) return(NA_real_)
      as.numeric(difftime(serveRless:::parse_time(x$finished), serveRless:::parse_time(x$created), units = "secs"))
    }, 0)
  }))
  lifetimes <- lifetimes[!is.na(lifetimes)]
  expect_true(length(lifetimes) >= 2)
  expect_true(all(lifetimes > 0 & lifetimes < 60))
  expect_equal(bad$poll_waits, c(as.integer(ceiling(stats::median(lifetimes))), 1:60))
  expect_true(all(lifetimes > 2)) # the job sleeps 2 s
  expect_true(bad$poll_waits[1] >= 3)
  bad_waits <- bad$plan$workflow$properties$definition$parameters$pollWaitSeconds$defaultValue
  expect_equal(as.integer(unlist(bad_waits)), bad$poll_waits)
  err <- expect_error(trigger_now(bad), class = "serverless_error_job")
  expect_equal(err$exit_code, 2L)
  expect_match(conditionMessage(err), "hp")
  runs <- scoring_runs(bad)
  expect_equal(runs$status, "Failed")
  expect_equal(runs$exit_code, 2L)
  expect_equal(runs$shards_failed, 1L)
  expect_match(runs$error, "1 of 1 shards failed")
  expect_match(scoring_logs(bad)[[1]], "hp")
  expect_length(container_groups(target), 0)

  # A name another deployment's schedule has is refused.
  dep2 <- deploy_quietly(glm(am ~ wt, data = mtcars, family = binomial), "am-glm", target)
  err <- expect_error(schedule_scoring(dep2, "serverless/in/*.csv", "serverless/o2/",
                                       schedule = "0 3 * * *", name = "mpg-bad"),
                      class = "serverless_error_input")
  expect_match(conditionMessage(err), "mpg")

  # unschedule() and undeploy() leave nothing tagged.
  quietly(unschedule(bad))
  expect_false("mpg-bad" %in% arm_list(target, "Microsoft.Logic/workflows", "2019-05-01"))
  removed <- quietly(undeploy("mpg", target))
  expect_true(any(grepl("mpg-schedule$", removed)))
  expect_length(tagged(target, "mpg"), 0)
  expect_length(arm_list(target, "Microsoft.Logic/workflows", "2019-05-01"), 0)
  expect_null(get_deployment("mpg", target))
  expect_true(length(model_versions("mpg", target)$version) >= 1) # models kept by default
  j <- journal_frame(target)
  deleted <- j$path[j$method == "DELETE"]
  expect_true(any(grepl("workflows/mpg-schedule$", deleted)))
  expect_true(sum(grepl("roleAssignments", deleted)) >= 6) # 3 per schedule
  expect_length(container_groups(target), 0)
})

test_that("a blob trigger scores a blob uploaded after scheduling, with the aci connector", {
  target <- local_azure()
  fit <- lm(mpg ~ wt + hp, data = mtcars)
  dep <- deploy_quietly(fit, "mpg", target)
  sch <- quietly(schedule_scoring(dep, "serverless/drop/", "serverless/scored/", trigger = "blob",
                                  connector = "aci", poll_seconds = 1))
  expect_match(paste(format(sch), collapse = "\n"), "each blob added to serverless/drop/")
  expect_error(trigger_now(sch), class = "serverless_error_input")
  # The trigger's first poll takes stock of what is there (a Skipped history); then
  # the blob arrives.
  expect_true(wait_for(function() length(trigger_histories(sch)) >= 1, 60, every = 0.5))
  expect_equal(trigger_histories(sch), "Skipped")
  upload_csv(target, mtcars[1:5, c("wt", "hp")], "serverless/drop/new.csv")
  expect_true(wait_for(function() any(scoring_runs(sch)$status == "Succeeded"), 120, every = 2))
  runs <- scoring_runs(sch)
  expect_equal(nrow(runs), 1)
  expect_equal(runs$trigger, "When_a_blob_is_added")
  expect_equal(sum(trigger_histories(sch) == "Succeeded"), 1)
  out <- serveRless:::read_table_blob(target, sprintf("serverless/scored/%s/new.csv", runs$run_id))
  expect_equal(out$.pred, unname(predict(fit, mtcars[1:5, ])), tolerance = 1e-12)
  j <- journal_frame(target)
  conn_puts <- grepl("Microsoft.Web/connections/", j$path) & j$method == "PUT"
  expect_true(any(grepl("Microsoft.Web/connections/mpg-blob-aci$", j$path) & conn_puts))
  # The version whose connections take azureblob's managedIdentityAuth parameter set.
  expect_setequal(j$api_version[conn_puts], "2018-07-01-preview")
  expect_true(all(j$status[conn_puts] %in% c(200, 201)))
  quietly(undeploy("mpg", target, delete_models = TRUE))
  expect_length(tagged(target, "mpg"), 0)
  expect_length(model_versions("mpg", target)$version, 0)
  expect_length(container_groups(target), 0)
})

test_that("unschedule() during a run stops it and deletes its groups; a missing container is refused first", {
  target <- local_azure()
  dep <- deploy_quietly(lm(mpg ~ wt, data = mtcars), "mpg", target)
  upload_csv(target, mtcars[, "wt", drop = FALSE], "serverless/in/a.csv")

  # An output container that does not exist: refused, naming it, before anything is
  # created (every run would fail writing there).
  writes <- arm_writes(target)
  err <- expect_error(quietly(schedule_scoring(dep, "serverless/in/*.csv", "nosuchcontainer/out/",
                                               schedule = "0 3 * * *")),
                      class = "serverless_error")
  expect_match(conditionMessage(err), "nosuchcontainer")
  expect_equal(arm_writes(target), writes)

  # A run in flight: its container (Rscript with this HOME) says it started, then
  # waits. unschedule() cancels the run and deletes its groups.
  home <- withr::local_tempdir()
  started <- file.path(home, "scoring-started")
  writeLines(sprintf("local({ file.create(%s); Sys.sleep(600) })", deparse(started)),
             file.path(home, ".Rprofile"))
  withr::local_envvar(HOME = home)
  sch <- quietly(schedule_scoring(dep, "serverless/in/*.csv", "serverless/out/",
                                  schedule = "0 3 * * *", poll_seconds = 1))
  run <- trigger_now(sch, wait = FALSE)
  expect_true(wait_for(function() file.exists(started), 60, every = 0.2))
  expect_gte(length(container_groups(target)), 1)
  quietly(unschedule(sch))
  expect_length(container_groups(target), 0)
  expect_false("mpg-schedule" %in% arm_list(target, "Microsoft.Logic/workflows", "2019-05-01"))
})
