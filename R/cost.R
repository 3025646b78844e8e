#' What scoring costs
#'
#' @description
#' `estimate_cost()` prices scoring before (or after) you run it:
#' - **Container Instances**, billed per second on the vCPUs and memory each
#'   container group requests, for as long as it runs: `cpu * duration_s * shards`
#'   vCPU-seconds and `memory_gb * duration_s * shards` GB-seconds a run.
#' - **Logic App** action executions of a schedule, counted from the workflow
#'   [schedule_scoring()] renders: the trigger, each shard's create, its status polls
#'   while it runs (one `Wait` and one `GET` each check, spaced as [schedule_scoring()]
#'   describes), its logs and its
#'   clean-up. The count follows a run in which every shard succeeds. A blob trigger
#'   also bills its checks, one a minute, whether or not a blob arrived.
#'
#' It compares the monthly cost with the nearest always-on VMs (the smallest that
#' have the vCPUs and memory of one container group) and gives the number of runs a
#' month at which the VM becomes cheaper.
#'
#' `fetch_prices()` reads a region's current prices from the public Azure Retail
#' Prices API (no sign-in needed). Without it, prices come from a dated table in the
#' package for `r paste(cost_builtin_regions, collapse = " and ")`.
#'
#' @param x What to price: a `serverless_deployment` (ad hoc [score_now()] runs), a
#'   `serverless_schedule`, a `serverless_run` (its measured shard durations), or a
#'   list with `cpu`, `memory_gb`, `duration_s` and `shards`, and optionally
#'   `schedule` (a cron line, to price it as a schedule with that trigger),
#'   `time_zone`, `trigger` (`"schedule"` or `"blob"`), `connector` (`"http"` or
#'   `"aci"`), `poll_seconds` and `first_check` (as in [schedule_scoring()]; a spec's
#'   `first_check` defaults to its duration, where a schedule's settles after its
#'   first runs).
#' @param runs_per_month Runs a month. A schedule's default is how often its cron
#'   line fires in a 730-hour month; otherwise 30 is assumed (daily).
#' @param duration_s Seconds each shard's container group runs. The default for a
#'   schedule is the median of its succeeded runs, for a run its measured durations;
#'   otherwise 60 s is assumed. Assumed values are marked in the printout.
#' @param region Azure region of the prices; defaults to `prices`' region, then to
#'   the target's location.
#' @param prices A `serverless_prices` from `fetch_prices()`; by default the built-in
#'   table for `region`.
#' @return `estimate_cost()`: a `serverless_cost`, a list with `per_run` and
#'   `per_month` (each with `aci_vcpu_seconds`, `aci_gb_seconds`, `builtin_actions`,
#'   `standard_actions`, their costs and `total`), `fixed_per_month` (trigger checks),
#'   `alternatives` (a data frame of VMs with `per_month` and `break_even_runs`),
#'   `inputs` and `prices`. `summary()` gives the breakdown as a data frame.
#'   `fetch_prices()`: a `serverless_prices`.
#' @examples
#' # A daily schedule with two shards of 10 minutes each, at East US prices:
#' estimate_cost(list(cpu = 1, memory_gb = 1.5, duration_s = 600, shards = 2,
#'                    schedule = "0 3 * * *"), region = "eastus")
#'
#' # Ad hoc scoring, 200 runs a month:
#' summary(estimate_cost(list(cpu = 2, memory_gb = 4, duration_s = 120, shards = 1),
#'                       runs_per_month = 200, region = "eastus"))
#'
#' \donttest{
#' # Prices from the Retail Prices API (here the local Azure's copy of it):
#' if (nzchar(Sys.which("azurite-blob"))) {
#' target <- local_azure()
#' prices <- fetch_prices("eastus", target)
#' prices
#' estimate_cost(list(cpu = 1, memory_gb = 1.5, duration_s = 60, shards = 1),
#'               prices = prices)
#' }
#' }
#' @export
estimate_cost <- function(x, runs_per_month = NULL, duration_s = NULL, region = NULL,
                          prices = NULL) {
  if (!is.null(runs_per_month)) check_number(runs_per_month, 0)
  if (!is.null(duration_s)) check_number(duration_s, 1)
  if (!is.null(prices) && !inherits(prices, "serverless_prices")) {
    serverless_abort(c("{.arg prices} must come from {.fn fetch_prices}.",
                       i = "Leave it out to use the built-in price table."), "input")
  }
  shape <- cost_shape(x, duration_s)
  assumed <- character()
  if (is.null(duration_s)) {
    duration_s <- shape$duration_s
    if (is.null(duration_s)) {
      duration_s <- 60
      assumed <- c(assumed, "duration_s")
    }
  }
  if (is.null(runs_per_month) && !shape$runs_from_schedule) {
    runs_per_month <- 30
    assumed <- c(assumed, "runs_per_month")
  }
  region <- region %||% prices$region %||% shape$region
  if (is.null(region)) {
    serverless_abort(c("Which region's prices? Give {.arg region} (such as {.val eastus}) or {.arg prices}."),
                     "input")
  }
  check_string(region)
  if (is.null(prices)) {
    prices <- builtin_prices(region)
  } else if (!identical(prices$region, region)) {
    serverless_abort("{.arg prices} are for {.val {prices$region}}, not {.val {region}}.", "input")
  }
  request <- list(cpu = shape$cpu, memory_gb = shape$memory_gb, duration_s = duration_s,
                  shards = shape$shards, runs_per_month = runs_per_month,
                  workflow = shape$workflow)
  est <- rust_check(rs_cost_estimate(request, unclass(prices)))
  alternatives <- est$alternatives
  structure(
    list(
      what = shape$what,
      inputs = list(cpu = shape$cpu, memory_gb = shape$memory_gb, duration_s = duration_s,
                    shards = shape$shards, runs_per_month = est$runs_per_month,
                    assumed = assumed, scheduled = !is.null(shape$workflow)),
      per_run = est$per_run,
      per_month = est$per_month,
      fixed_per_month = est$fixed_per_month,
      free_tier_saving = est$free_tier_saving,
      alternatives = data.frame(
        sku = vapply(alternatives, `[[`, "", "sku"),
        vcpus = vapply(alternatives, `[[`, 0, "vcpus"),
        memory_gb = vapply(alternatives, `[[`, 0, "memory_gb"),
        per_month = vapply(alternatives, `[[`, 0, "per_month"),
        break_even_runs = vapply(alternatives, function(a) a$break_even_runs %||% NA_real_, 0)
      ),
      prices = prices
    ),
    class = "serverless_cost"
  )
}

#' @rdname estimate_cost
#' @param target Where to ask: `NULL` for Azure's public price list
#'   (`https://prices.azure.com`), or a target from [local_azure()] for its copy.
#' @export
fetch_prices <- function(region, target = NULL) {
  check_string(region)
  if (!is.null(target)) check_target(target)
  local <- !is.null(target) && target$kind == "local"
  arm <- if (local) target_arm(target)$endpoints else list()
  endpoint <- if (local) arm$arm else "https://prices.azure.com"
  p <- rust_wait(rs_fetch_prices(arm, endpoint, region))
  structure(p, class = "serverless_prices")
}

builtin_prices <- function(region, call = rlang::caller_env()) {
  if (!region %in% cost_builtin_regions) {
    serverless_abort(c("The built-in price table has no region {.val {region}}.",
                       i = "It has {.val {cost_builtin_regions}}.",
                       i = "Use {.code prices = fetch_prices({encodeString(region, quote = '\"')})} for today's prices, or another {.arg region}."),
                     "input", call = call)
  }
  structure(rust_check(rs_builtin_prices(region)), class = "serverless_prices")
}

cost_builtin_regions <- c("eastus", "swedencentral")

# What one run looks like: sizes, shards, measured duration, and the workflow of a
# schedule (whose Recurrence gives the runs a month).
cost_shape <- function(x, duration_s = NULL) {
  if (inherits(x, "serverless_schedule")) {
    measured <- NULL
    runs <- scoring_runs(x)
    ok <- runs$duration_s[runs$status == "Succeeded" & !is.na(runs$duration_s)]
    if (length(ok)) measured <- stats::median(ok)
    return(list(what = sprintf("schedule %s", x$name), cpu = x$cpu, memory_gb = x$memory_gb,
                shards = x$shards, duration_s = measured, workflow = x$plan$workflow,
                runs_from_schedule = x$trigger == "schedule", region = x$target$location))
  }
  if (inherits(x, "serverless_run")) {
    d <- x$shards$duration_s
    d <- d[!is.na(d)]
    return(list(what = sprintf("run %s of %s", x$run_id, x$deployment), cpu = x$cpu,
                memory_gb = x$memory_gb, shards = nrow(x$shards),
                # Mean times shards is the sum of what the shards ran.
                duration_s = if (length(d) && mean(d) > 0) mean(d) else NULL,
                runs_from_schedule = FALSE, region = x$target$location))
  }
  if (inherits(x, "serverless_deployment")) {
    return(list(what = sprintf("deployment %s (ad hoc runs)", x$name), cpu = x$cpu,
                memory_gb = x$memory_gb, shards = 1, runs_from_schedule = FALSE,
                region = x$target$location))
  }
  if (is.list(x) && !is.object(x)) {
    return(cost_spec_shape(x, duration_s))
  }
  serverless_abort(c("Cannot price {.cls {class(x)[1]}}.",
                     i = "Give a deployment, a schedule, a run, or {.code list(cpu =, memory_gb =, duration_s =, shards =)}."),
                   "input")
}

cost_spec_shape <- function(x, duration_s = NULL) {
  known <- c("cpu", "memory_gb", "duration_s", "shards", "schedule", "time_zone", "trigger",
             "connector", "poll_seconds", "first_check")
  unknown <- setdiff(names(x), known)
  if (length(unknown) || is.null(names(x)) && length(x)) {
    serverless_abort(c("Unknown field{?s} in the spec: {.val {unknown}}.",
                       i = "A spec has {.field {known}}."), "input")
  }
  cpu <- x$cpu %||% 1
  memory_gb <- x$memory_gb %||% 1.5
  shards <- x$shards %||% 1
  check_number(cpu, 0.1, arg = "cpu")
  check_number(memory_gb, 0.1, arg = "memory_gb")
  check_whole(shards, 1, max_shards, arg = "shards")
  if (!is.null(x$duration_s)) check_number(x$duration_s, 1, arg = "duration_s")
  trigger <- x$trigger %||% if (is.null(x$schedule)) "none" else "schedule"
  check_choice(trigger, c("none", "schedule", "blob"), arg = "trigger")
  workflow <- NULL
  if (trigger != "none") {
    # A schedule's first check comes at its shards' usual duration once it has run
    # (see schedule_scoring()): the steady state is what a month costs.
    first_check <- x$first_check %||% ceiling(duration_s %||% x$duration_s %||% 60)
    workflow <- spec_workflow(x, trigger, cpu, memory_gb, shards, first_check)
  }
  what <- switch(trigger, none = "ad hoc runs",
                 schedule = sprintf("a schedule, cron \"%s\"", x$schedule),
                 blob = "a schedule triggered by new blobs")
  list(what = what,
       cpu = cpu, memory_gb = memory_gb, shards = shards, duration_s = x$duration_s,
       workflow = workflow, runs_from_schedule = trigger == "schedule", region = NULL)
}

# The workflow schedule_scoring() would write for this spec, rendered without any
# resource (placeholders for names and ids do not change what it executes).
spec_workflow <- function(x, trigger, cpu, memory_gb, shards, first_check) {
  if (trigger == "schedule") {
    if (is.null(x$schedule)) {
      serverless_abort("A spec with {.code trigger = \"schedule\"} needs {.field schedule}, a cron line.",
                       "input")
    }
    check_string(x$schedule, arg = "schedule")
    spec <- list(kind = "schedule", cron = x$schedule, time_zone = x$time_zone %||% "UTC")
  } else {
    spec <- list(kind = "blob", folder = "serverless/in/")
  }
  connector <- x$connector %||% "http"
  check_choice(connector, c("http", "aci"), arg = "connector")
  poll <- x$poll_seconds %||% 10
  check_whole(poll, 1, 3600, arg = "poll_seconds")
  check_whole(first_check, 1, 24 * 3600, arg = "first_check")
  sub <- "00000000-0000-0000-0000-000000000000"
  rust_check(rs_schedule_render(list(
    subscription = sub, resource_group = "estimate", location = "eastus",
    name = "estimate", deployment = "estimate", trigger = spec, connector = connector,
    shards = as.integer(shards), image = "estimate.azurecr.io/serverless-runtime:estimate",
    login_server = "estimate.azurecr.io",
    identity_id = sprintf("/subscriptions/%s/resourceGroups/estimate/providers/Microsoft.ManagedIdentity/userAssignedIdentities/estimate", sub),
    cpu = as.numeric(cpu), memory_gb = as.numeric(memory_gb), env = stats::setNames(list(), character()),
    storage_account = "estimate", arm_endpoint = public_arm_endpoint,
    blob_endpoint = "https://estimate.blob.core.windows.net",
    container = "serverless", poll_seconds = as.integer(poll), first_check_s = as.integer(first_check),
    timeout_s = 3600L, template = read_template("workflow.json.hbs"), dry_run = TRUE
  )))
}

money <- function(x, currency = "USD") {
  sym <- if (currency == "USD") "$" else paste0(currency, " ")
  one <- function(v) {
    digits <- if (abs(v) >= 100) 0 else if (abs(v) >= 1) 2 else if (abs(v) >= 0.01) 4 else 6
    formatC(v, format = "f", digits = digits, big.mark = ",")
  }
  paste0(sym, vapply(x, one, ""))
}

count_label <- function(x) {
  vapply(x, function(v) formatC(v, format = "f", digits = if (v < 100 && v != round(v)) 1 else 0,
                                big.mark = ","), "")
}

#' @export
summary.serverless_cost <- function(object, ...) {
  r <- object$per_run
  m <- object$per_month
  data.frame(
    item = c("ACI vCPU", "ACI memory", "Logic Apps built-in actions",
             "Logic Apps standard connector actions"),
    per_run = c(r$aci_vcpu_seconds, r$aci_gb_seconds, r$builtin_actions, r$standard_actions),
    per_month = c(m$aci_vcpu_seconds, m$aci_gb_seconds, m$builtin_actions, m$standard_actions),
    unit = c("vCPU-s", "GB-s", "actions", "actions"),
    cost_per_run = c(r$aci_vcpu_cost, r$aci_gb_cost,
                     r$builtin_actions * object$prices$logic_builtin_action,
                     r$standard_actions * object$prices$logic_standard_action),
    cost_per_month = c(m$aci_vcpu_cost, m$aci_gb_cost,
                       m$builtin_actions * object$prices$logic_builtin_action,
                       m$standard_actions * object$prices$logic_standard_action)
  )
}

#' @export
format.serverless_cost <- function(x, ...) {
  i <- x$inputs
  cur <- x$prices$currency
  mark <- function(field) if (field %in% i$assumed) " (assumed)" else ""
  s <- summary(x)
  s$row <- seq_len(nrow(s))
  s <- s[s$per_run > 0 | s$per_month > 0, ]
  row <- function(item, q, unit, run, month) {
    sprintf("  %-24s %14s %11s %11s", item, ifelse(is.na(q), "", paste(count_label(q), unit)),
            run, month)
  }
  lines <- c(
    cli::style_bold(sprintf("<serverless_cost> %s", x$what)),
    sprintf("  %g shard%s x %g vCPU, %g GB, %s s%s; %s runs a month%s",
            i$shards, if (i$shards == 1) "" else "s", i$cpu, i$memory_gb,
            count_label(i$duration_s), mark("duration_s"), count_label(i$runs_per_month),
            mark("runs_per_month")),
    cli::col_grey(sprintf("  %-24s %14s %11s %11s", "", "a run", "per run", "per month")),
    row(c("ACI vCPU", "ACI memory", "Logic App built-in", "Logic App connector")[s$row],
        s$per_run, s$unit,
        money(s$cost_per_run, cur), money(s$cost_per_month, cur)),
    if (x$fixed_per_month > 0) {
      row("  of which trigger checks", NA, "", "", money(x$fixed_per_month, cur))
    },
    cli::style_bold(row("total", NA, "", money(x$per_run$total, cur), money(x$per_month$total, cur)))
  )
  if (x$free_tier_saving > 0) {
    lines <- c(lines, cli::col_grey(sprintf(
      "  (the first %s built-in actions a month are free: at most %s less)",
      count_label(x$prices$logic_free_builtin_actions), money(x$free_tier_saving, cur))))
  }
  a <- x$alternatives
  if (nrow(a)) {
    lines <- c(lines, "  Always on instead:", sprintf(
      "    %-16s %g vCPU, %3g GB  %9s a month; cheaper above %s runs a month",
      a$sku, a$vcpus, a$memory_gb, money(a$per_month, cur),
      ifelse(is.na(a$break_even_runs), "no number of", vapply(a$break_even_runs, count_label, ""))))
  } else {
    lines <- c(lines, sprintf("  No VM prices for %s to compare with: try fetch_prices(%s).",
                              x$prices$region, encodeString(x$prices$region, quote = "\"")))
  }
  p <- x$prices
  c(lines, cli::col_grey(sprintf("  Prices: %s, %s, %s of %s%s", p$region, cur,
                                 if (p$source == "built-in") "built-in table" else p$source,
                                 p$as_of, if (length(p$notes)) paste0("; ", paste(p$notes, collapse = "; ")) else "")))
}

#' @export
print.serverless_cost <- function(x, ...) {
  cat(format(x), sep = "\n")
  invisible(x)
}

#' @export
format.serverless_prices <- function(x, ...) {
  cur <- x$currency
  c(
    cli::style_bold(sprintf("<serverless_prices> %s, %s (%s, %s)", x$region, cur,
                            if (x$source == "built-in") "built-in table" else x$source, x$as_of)),
    sprintf("  Container Instances: %s per vCPU-hour, %s per GB-hour",
            money(x$aci_vcpu_second * 3600, cur), money(x$aci_gb_second * 3600, cur)),
    sprintf("  Logic Apps:          %s per built-in action (first %s a month free), %s per standard connector action",
            money(x$logic_builtin_action, cur), count_label(x$logic_free_builtin_actions),
            money(x$logic_standard_action, cur)),
    if (length(x$vms)) sprintf("  VM %-16s  %s per hour", vapply(x$vms, `[[`, "", "sku"),
                               money(vapply(x$vms, `[[`, 0, "per_hour"), cur)),
    if (length(x$notes)) cli::col_grey(paste0("  Note: ", unlist(x$notes)))
  )
}

#' @export
print.serverless_prices <- function(x, ...) {
  cat(format(x), sep = "\n")
  invisible(x)
}
