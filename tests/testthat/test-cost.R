# estimate_cost() against cases worked out by hand (East US built-in prices:
# ACI $0.0405 per vCPU-hour and $0.00445 per GB-hour, Logic Apps $0.000025 per
# built-in and $0.000125 per standard connector action, a 730-hour month), and
# fetch_prices() against the local Azure's Retail Prices API.

vcpu_s <- 0.0405 / 3600
gb_s <- 0.00445 / 3600

test_that("ad hoc runs: container seconds only, and the VM break-even", {
  x <- estimate_cost(list(cpu = 1, memory_gb = 1.5, duration_s = 600, shards = 2),
                     runs_per_month = 30, region = "eastus")
  expect_s3_class(x, "serverless_cost")
  # 1 * 600 * 2 = 1200 vCPU-s and 1.5 * 600 * 2 = 1800 GB-s a run.
  expect_equal(x$per_run$aci_vcpu_seconds, 1200)
  expect_equal(x$per_run$aci_gb_seconds, 1800)
  expect_equal(x$per_run$aci_vcpu_cost, 0.0135)
  expect_equal(x$per_run$aci_gb_cost, 0.002225)
  expect_equal(x$per_run$logic_cost, 0)
  expect_equal(x$per_run$total, 0.015725)
  expect_equal(x$per_month$total, 0.015725 * 30)
  # The cheapest VMs with 1 vCPU and 1.5 GB: B1ms ($0.0207/h), then B2s ($0.0416/h).
  expect_equal(x$alternatives$sku, c("Standard_B1ms", "Standard_B2s"))
  expect_equal(x$alternatives$per_month, c(0.0207, 0.0416) * 730)
  expect_equal(x$alternatives$break_even_runs[1], 0.0207 * 730 / 0.015725)
  expect_equal(summary(x)$cost_per_month[1:2], c(0.0135, 0.002225) * 30)
})

test_that("a daily 2-shard schedule counts the workflow's actions, polls included", {
  x <- estimate_cost(list(cpu = 1, memory_gb = 1.5, duration_s = 600, shards = 2,
                          schedule = "0 3 * * *", time_zone = "Europe/Vienna"),
                     region = "eastus")
  # A schedule that has run checks first at its usual duration (the spec's 600 s):
  # per shard Create_group, Until + 1 check x (Delay + Get_group), Get_logs,
  # Write_logs, Record_shard, If_shard_failed, Delete_group = 1 + 3 + 5 = 9.
  # Two shards, 5 top-level actions (2 variables, Foreach, Write_summary, If) and
  # the Recurrence firing: 18 + 5 + 1 = 24 built-in actions a run. (Checking every
  # 10 s, as before issue 17, was 60 checks a shard: 260 actions.)
  expect_equal(x$per_run$builtin_actions, 24)
  expect_equal(x$per_run$standard_actions, 0)
  expect_equal(x$per_run$logic_cost, 24 * 0.000025)
  expect_equal(x$per_run$total, 1200 * vcpu_s + 1800 * gb_s + 24 * 0.000025)
  # Daily: 730 / 24 runs a month, from the cron line.
  expect_equal(x$inputs$runs_per_month, 730 / 24)
  expect_equal(x$per_month$builtin_actions, 24 * 730 / 24)
  expect_equal(x$per_month$total, x$per_run$total * 730 / 24)
  expect_equal(x$inputs$assumed, character())
  # A new schedule (first check after poll_seconds) backs off: waits of 10, 10, 20,
  # 30, 40, 50, 60 s, then a minute each. A 600 s run is seen at the 14th check
  # (220 s after 7, then 7 more): per shard 1 + (1 + 2 * 14) + 5 = 35.
  fresh <- estimate_cost(list(cpu = 1, memory_gb = 1.5, duration_s = 600, shards = 2,
                              schedule = "0 3 * * *", first_check = 10), region = "eastus")
  expect_equal(fresh$per_run$builtin_actions, 2 * 35 + 6)
  # A 60 s run is seen at the 4th (10 + 10 + 20 + 30 = 70 s).
  short <- estimate_cost(list(cpu = 1, memory_gb = 1.5, duration_s = 60, shards = 2,
                              schedule = "0 3 * * *", first_check = 10), region = "eastus")
  expect_equal(short$per_run$builtin_actions, 2 * (1 + 1 + 2 * 4 + 5) + 6)
  # poll_seconds = 30: waits of 30, 30, 60, then a minute: 600 s at the 11th check.
  slow <- estimate_cost(list(cpu = 1, memory_gb = 1.5, duration_s = 600, shards = 2,
                             schedule = "0 3 * * *", poll_seconds = 30, first_check = 30),
                        region = "eastus")
  expect_equal(slow$per_run$builtin_actions, 2 * (1 + 1 + 11 * 2 + 5) + 6)
  # The estimate's duration (here an argument) sets the spec's first check.
  settled <- estimate_cost(list(cpu = 1, memory_gb = 1.5, shards = 2, schedule = "0 3 * * *"),
                           duration_s = 300, region = "eastus")
  expect_equal(settled$per_run$builtin_actions, 24)
  expect_error(estimate_cost(list(cpu = 1, schedule = "0 3 * * *", first_check = 0), region = "eastus"),
               class = "serverless_error_input")
})

test_that("a blob trigger with the aci connector bills its checks every month", {
  # No duration given: 60 s is assumed, and the printout says so.
  x <- estimate_cost(list(cpu = 1, memory_gb = 1.5, shards = 2, trigger = "blob", connector = "aci"),
                     runs_per_month = 10, region = "eastus")
  # Per shard, one check at the 60 s: built-in Until + 1 Delay, Write_logs,
  # Record_shard, If = 5; standard Create_group, 1 Get_group, Get_logs, Delete_group
  # = 4. Plus 5 built-in at the top.
  expect_equal(x$per_run$builtin_actions, 15)
  expect_equal(x$per_run$standard_actions, 8)
  # One check a minute: 730 * 60 standard actions whether or not a blob arrives.
  expect_equal(x$fixed_per_month, 43800 * 0.000125)
  expect_equal(x$per_month$standard_actions, 43800 + 8 * 10)
  expect_equal(x$per_month$total,
               5.475 + 10 * (120 * vcpu_s + 180 * gb_s + 15 * 0.000025 + 8 * 0.000125))
  expect_equal(x$alternatives$break_even_runs[1], (0.0207 * 730 - 5.475) / x$per_run$total)
  out <- format(x)
  expect_match(out, "of which trigger checks +\\$5\\.48", all = FALSE)
  expect_match(out, "60 s \\(assumed\\)", all = FALSE)
})

test_that("the printout is short, complete and readable", {
  x <- estimate_cost(list(cpu = 1, memory_gb = 1.5, duration_s = 600, shards = 2,
                          schedule = "0 3 * * *"), region = "eastus")
  out <- cli::ansi_strip(format(x))
  expect_lte(length(out), 14)
  expect_match(out[1], "<serverless_cost>")
  expect_match(out, "total +\\$0\\.0163 +\\$0\\.4966", all = FALSE) # 0.016325 a run, x 730 / 24
  expect_match(out, "Standard_B1ms.*\\$15\\.11 a month; cheaper above 926 runs a month", all = FALSE) # 15.111 / 0.016325
  expect_match(out, "Prices: eastus, USD, built-in table of 2026-01", all = FALSE)
  expect_false(any(grepl("NA", out)))
  sweden <- cli::ansi_strip(format(estimate_cost(list(cpu = 1, duration_s = 60), region = "swedencentral")))
  expect_match(sweden, "No VM prices for swedencentral", all = FALSE)
  expect_match(cli::ansi_strip(format(builtin_prices("eastus"))), "\\$0\\.0405 per vCPU-hour", all = FALSE)
})

test_that("bad input is refused before any network call", {
  spec <- list(cpu = 1, memory_gb = 1.5, duration_s = 60, shards = 1)
  expect_error(estimate_cost(c(spec, mem = 2), region = "eastus"), "mem", class = "serverless_error_input")
  expect_error(estimate_cost(spec), "region", class = "serverless_error_input")
  expect_error(estimate_cost(spec, region = "westeurope"), "fetch_prices", class = "serverless_error_input")
  expect_error(estimate_cost(spec, duration_s = -1, region = "eastus"), "duration_s",
               class = "serverless_error_input")
  expect_error(estimate_cost(spec, runs_per_month = NA, region = "eastus"), "runs_per_month",
               class = "serverless_error_input")
  expect_error(estimate_cost(list(cpu = 1, shards = 0), region = "eastus"), "shards",
               class = "serverless_error_input")
  expect_error(estimate_cost(list(schedule = "61 * * * *"), region = "eastus"), "61",
               class = "serverless_error_input")
  expect_error(estimate_cost(list(trigger = "schedule"), region = "eastus"), "cron",
               class = "serverless_error_input")
  expect_error(estimate_cost(spec, prices = list(region = "eastus")), "fetch_prices",
               class = "serverless_error_input")
  expect_error(estimate_cost(spec, region = "eastus", prices = builtin_prices("swedencentral")),
               "swedencentral", class = "serverless_error_input")
  expect_error(estimate_cost(mtcars, region = "eastus"), "Cannot price", class = "serverless_error_input")
  expect_error(estimate_cost(1, region = "eastus"), "Cannot price", class = "serverless_error_input")
  expect_error(fetch_prices("West Europe"), "region", class = "serverless_error_input")
})

test_that("fetch_prices() reads the Retail Prices API, and real runs are priced as measured", {
  target <- local_azure()
  p <- fetch_prices("eastus", target)
  expect_s3_class(p, "serverless_prices")
  builtin <- builtin_prices("eastus")
  for (f in c("aci_vcpu_second", "aci_gb_second", "logic_builtin_action", "logic_standard_action",
              "logic_free_builtin_actions")) {
    expect_equal(p[[f]], builtin[[f]], label = f)
  }
  expect_equal(vapply(p$vms, `[[`, 0, "per_hour"), vapply(builtin$vms, `[[`, 0, "per_hour"))
  expect_match(p$source, "/api/retail/prices$")
  expect_error(fetch_prices("westeurope", target), "westeurope", class = "serverless_error")

  fit <- lm(mpg ~ wt + hp, data = mtcars)
  dep <- suppressMessages(deploy_model(fit, "cost-lm", target))
  # The local Azure is in westeurope, which the built-in table does not have.
  expect_error(estimate_cost(dep), "fetch_prices", class = "serverless_error_input")
  x <- estimate_cost(dep, prices = p)
  expect_equal(x$inputs$assumed, c("duration_s", "runs_per_month"))
  expect_equal(x$per_run$aci_vcpu_seconds, dep$cpu * 60)

  run <- suppressMessages(score_now(dep, newdata = mtcars, shards = 2))
  r <- estimate_cost(run, region = "eastus", runs_per_month = 100)
  secs <- sum(run$shards$duration_s)
  expect_equal(r$per_run$aci_vcpu_seconds, run$cpu * secs)
  expect_equal(r$per_run$aci_gb_seconds, run$memory_gb * secs)
  expect_equal(r$per_month$total, 100 * r$per_run$total)
})
