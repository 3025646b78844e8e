# Cheaper orchestration (issue 17): Logic App actions one run of an every-minute
# schedule costs, for a 2 s job, before and after its checks came from the shards'
# usual duration and backed off.
#
# "After" is counted twice: executed (the run's action records and their
# repetitions, on the local Azure) and by estimate_cost()'s counter on the same
# workflow, to show the counter counts what runs. "Before" is the same workflow with
# the Delay waiting a fixed poll_seconds (10 s), as every workflow did before; it is
# counted by the same counter. On the local Azure a 2 s job's group lives a few
# seconds; in Azure, creating a group and pulling an R image takes longer, so the
# counts are also given for group lifetimes of 30, 60 and 120 s (assumed, not
# measured: no Azure here).
#
# Usage: R_LIBS=.build/lib Rscript bench/orchestration.R
suppressMessages(library(serveRless))
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "record.R"))
target <- local_azure()
arm_get <- function(path) {
  serveRless:::rust_wait(serveRless:::rs_arm_get(serveRless:::target_arm(target), path, "2016-06-01"))
}

fit <- lm(mpg ~ wt + hp, data = mtcars)
two_seconds <- function(model, newdata) {
  Sys.sleep(2)
  stats::predict(model, newdata)
}
dep <- suppressMessages(deploy_model(fit, "orchestration", target, predict_fun = two_seconds))
f <- tempfile(fileext = ".csv")
utils::write.csv(mtcars[, c("wt", "hp")], f, row.names = FALSE)
blob_upload(target, f, "serverless/orch-in/cars.csv")

# Actions a run executed: each action record, or each of its repetitions inside a
# loop, that was not skipped (skipped actions are not billed); and the trigger. The
# Foreach is billed once (its iterations are its repetitions).
executed_actions <- function(sch, run_id) {
  base <- sprintf("%s/runs/%s/actions", sch$workflow_id, run_id)
  n <- 1
  for (a in arm_get(base)$value) {
    reps <- if (a$name != "For_each_shard") arm_get(sprintf("%s/%s/repetitions", base, a$name))$value
    states <- if (length(reps)) vapply(reps, function(r) r$properties$status, "") else a$properties$status
    n <- n + sum(states != "Skipped")
  }
  n
}
one_run <- function(sch) {
  run <- suppressMessages(trigger_now(sch))
  runs <- scoring_runs(sch, n = 1)
  list(id = runs$run_id[1], actions = executed_actions(sch, runs$run_id[1]))
}
# Actions one run of `workflow` costs when its shard's group lives `duration_s`, as
# estimate_cost() counts them (trigger included).
counted <- function(workflow, duration_s) {
  request <- list(cpu = 1, memory_gb = 1.5, duration_s = duration_s, shards = 1, workflow = workflow)
  prices <- unclass(serveRless:::builtin_prices("eastus"))
  x <- serveRless:::rust_check(serveRless:::rs_cost_estimate(request, prices))
  x$per_run$builtin_actions + x$per_run$standard_actions
}
# The same workflow as every schedule had before: a fixed wait of poll_seconds.
fixed_polling <- function(workflow, poll_seconds = 10L) {
  def <- workflow$properties$definition
  def$actions$For_each_shard$actions$Until_terminated$actions$Delay$inputs$interval$count <- poll_seconds
  def$parameters$pollWaitSeconds <- NULL
  workflow$properties$definition <- def
  workflow
}
# The runs measured are started by trigger_now() on a daily schedule, so no minute's
# Recurrence starts one in between (a run's actions do not depend on the cron line;
# a disabled workflow cannot be triggered).
schedule <- function(cron = "* * * * *", ...) {
  suppressMessages(schedule_scoring(dep, "serverless/orch-in/*.csv", "serverless/orch-out/",
                                    schedule = cron, name = "orchestration", ...))
}

# A new schedule: no run yet, the first check after poll_seconds.
sch <- schedule("0 3 * * *")
first <- one_run(sch)
# Scheduled again (as after a new model version): the first check now comes at the
# first run's shard's lifetime.
sch <- schedule("0 3 * * *")
settled <- one_run(sch)
lifetime <- sch$poll_waits[1]
wf <- sch$plan$workflow
cat(sprintf("first check after %d s (the first run's shard lived about that long)\n", lifetime))
cat(sprintf("executed actions a run: new schedule %d, settled %d\n", first$actions, settled$actions))
before <- counted(fixed_polling(wf), lifetime)
after <- counted(wf, lifetime)
cat(sprintf("counted at %d s: before %g, after %g\n", lifetime, before, after))
bench_record("orchestration",
             sprintf("Logic App actions per run, every-minute schedule of a 2 s job, local Azure (its group lived %d s)", lifetime),
             settled$actions, "actions", "fixed 10 s checks (before), counted", before,
             note = sprintf("executed (the run's action records); estimate_cost()'s counter: %g", after))
for (life in c(30, 60, 120)) {
  wf <- schedule(first_check = life, dry_run = TRUE)$workflow
  before <- counted(fixed_polling(wf), life)
  after <- counted(wf, life)
  new_schedule <- counted(schedule(first_check = 10, dry_run = TRUE)$workflow, life)
  cat(sprintf("group lives %d s: before %g, after %g (a new schedule, first check at 10 s: %g)\n",
              life, before, after, new_schedule))
  bench_record("orchestration",
               sprintf("Logic App actions per run, every-minute schedule, group lives %d s (assumed, as in Azure)", life),
               after, "actions", "fixed 10 s checks (before), counted", before,
               note = sprintf("counted; a new schedule (first check at 10 s) %g", new_schedule))
}
unschedule(sch)
