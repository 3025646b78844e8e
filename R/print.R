# Print methods. None of them shows a secret.

#' @export
format.serverless_target <- function(x, ...) {
  lines <- c(
    cli::style_bold(sprintf("<serverless_target> %s", if (x$kind == "local") "local Azure" else "Azure")),
    if (x$kind == "azure") c(
      sprintf("  subscription:   %s", x$subscription),
      sprintf("  resource group: %s (%s)", x$resource_group, x$location),
      if (!is.null(x$registry)) sprintf("  registry:       %s", x$registry)
    ),
    sprintf("  storage:        %s (%s)", x$blob_endpoint, target_auth_label(x)),
    sprintf("  container:      %s", x$container)
  )
  if (x$kind == "local") {
    lines <- c(lines, sprintf("  data dir:       %s", x$dir))
  }
  lines
}

#' @export
print.serverless_target <- function(x, ...) {
  cat(format(x), sep = "\n")
  invisible(x)
}

#' @export
format.serverless_model_version <- function(x, ...) {
  c(
    cli::style_bold(sprintf("<serverless_model_version> %s %s", x$name, x$version)),
    sprintf("  created: %s", format(x$created, "%Y-%m-%d %H:%M:%S UTC")),
    sprintf("  size:    %s, sha256 %s", format_bytes(x$size), substr(x$sha256, 1, 16)),
    if (isTRUE(x$reused)) "  unchanged: identical to the newest version, nothing uploaded"
    else sprintf("  uploaded: %s", format_bytes(x$bytes_sent))
  )
}

#' @export
print.serverless_model_version <- function(x, ...) {
  cat(format(x), sep = "\n")
  invisible(x)
}

#' @export
format.serverless_bundle <- function(x, ...) {
  m <- x$metadata
  pkgs <- unlist(m$meta$packages)
  c(
    cli::style_bold(sprintf("<serverless_bundle> %s %s", m$name, m$version)),
    sprintf("  model:   <%s>", paste(class(x$model), collapse = "/")),
    sprintf("  inputs:  %s", if (is.null(x$ptype)) "unknown (no ptype)"
            else paste(names(x$ptype), collapse = ", ")),
    sprintf("  predict: %s", if (is.null(x$predict_fun)) "predict()" else "predict_fun"),
    sprintf("  needs:   R %s%s", m$meta$r_version,
            if (length(pkgs)) paste0(", ", paste0(names(pkgs), " ", pkgs, collapse = ", ")) else "")
  )
}

#' @export
print.serverless_bundle <- function(x, ...) {
  cat(format(x), sep = "\n")
  invisible(x)
}

format_bytes <- function(n) {
  n <- as.numeric(n)
  units <- c("B", "kB", "MB", "GB", "TB")
  i <- if (n > 0) min(floor(log(n, 1000)), length(units) - 1) else 0
  if (i == 0) sprintf("%d B", as.integer(n)) else sprintf("%.1f %s", n / 1000^i, units[i + 1])
}

#' @export
format.serverless_deployment <- function(x, ...) {
  built <- function(flag, build, unchanged) {
    if (isTRUE(flag)) {
      sprintf("built (ACR Tasks run %s, %.0f s, %s log lines: deploy_log())", build$run_id %||% "?",
              build$seconds %||% NA, format(length(build$log)))
    } else if (isFALSE(flag)) {
      unchanged
    }
  }
  image <- built(x$built, x$build, "unchanged (runtime spec already built)")
  base <- built(x$base_built, x$base_build, "unchanged (R and serveRless already built)")
  c(
    cli::style_bold(sprintf("<serverless_deployment> %s", x$name)),
    sprintf("  model:    version %s (sha256 %s)", x$model_version, substr(x$model_sha256, 1, 16)),
    sprintf("  image:    %s", x$image),
    if (!is.null(image)) sprintf("            %s", image),
    if (nzchar(x$base_image %||% "")) sprintf("  base:     %s", x$base_image),
    if (!is.null(base)) sprintf("            %s", base),
    sprintf("  registry: %s", x$registry),
    sprintf("  runs on:  %s cpu, %s GB, as identity %s", format(x$cpu), format(x$memory_gb),
            basename(x$identity)),
    sprintf("  updated:  %s", format(x$updated, "%Y-%m-%d %H:%M:%S UTC"))
  )
}

#' @export
print.serverless_deployment <- function(x, ...) {
  cat(format(x), sep = "\n")
  invisible(x)
}

#' @export
format.serverless_plan <- function(x, ...) {
  items <- x$items
  counts <- table(factor(items$action, levels = c("create", "update", "delete", "unchanged")))
  header <- cli::style_bold(sprintf("<serverless_plan> %s: %s", x$what,
                                    paste(counts, names(counts), collapse = ", ")))
  marks <- c(create = "+", update = "~", delete = "-", unchanged = "=")
  colour <- list(create = cli::col_green, update = cli::col_yellow, delete = cli::col_red,
                 unchanged = cli::col_grey)
  lines <- sprintf("  %s %-9s %-15s %s", marks[items$action], items$action, items$kind, items$id)
  c(header, vapply(seq_along(lines), function(i) colour[[items$action[i]]](lines[i]), ""))
}

#' @export
print.serverless_plan <- function(x, ...) {
  cat(format(x), sep = "\n")
  invisible(x)
}

#' @export
format.serverless_run <- function(x, ...) {
  s <- x$shards
  secs <- sum(s$duration_s, na.rm = TRUE)
  cost <- aci_rough_cost(secs, x$cpu, x$memory_gb)
  c(
    cli::style_bold(sprintf("<serverless_run> %s of %s (model %s)", x$run_id, x$deployment, x$model_version)),
    if (!is.null(x$schedule)) sprintf("  schedule: %s, status %s%s", x$schedule, x$status,
                                      if (!is.null(x$error)) paste0(": ", x$error) else ""),
    sprintf("  output: %s", x$output),
    sprintf("  shard %-2d %-9s exit %-3s %7s rows %7.1f s%s%s", s$shard, s$state,
            ifelse(is.na(s$exit_code), "-", s$exit_code),
            ifelse(is.na(s$rows), "-", format(s$rows, big.mark = ",")),
            s$duration_s,
            ifelse(is.na(s$inputs), "", sprintf("  %d input%s", s$inputs, ifelse(s$inputs == 1, "", "s"))),
            if (is.null(s$attempts)) "" else ifelse(s$attempts > 1, sprintf(" (try %d)", s$attempts), "")),
    sprintf("  %d/%d shards succeeded; %.1f container-seconds, about $%.5f (ACI East US, %s cpu, %s GB)",
            sum(s$state == "Succeeded"), nrow(s), secs, cost, format(x$cpu), format(x$memory_gb))
  )
}

#' @export
print.serverless_run <- function(x, ...) {
  cat(format(x), sep = "\n")
  invisible(x)
}

# What a run's containers cost at the built-in East US prices (estimate_cost() for more).
aci_rough_cost <- function(secs, cpu, memory_gb) {
  p <- builtin_prices("eastus")
  secs * (cpu * p$aci_vcpu_second + memory_gb * p$aci_gb_second)
}

#' @export
format.serverless_schedule <- function(x, ...) {
  when <- if (x$trigger == "schedule") {
    nxt <- next_runs(x$recurrence, x$time_zone)
    c(sprintf("  trigger:  cron \"%s\" in %s (Recurrence: %s, %s)", x$cron, x$time_zone,
              x$recurrence$frequency, x$recurrence$timeZone),
      sprintf("  next:     %s", paste(format(nxt, "%Y-%m-%d %H:%M %Z", tz = x$time_zone), collapse = ", ")))
  } else {
    sprintf("  trigger:  each blob added to %s (polled every minute)", x$input)
  }
  c(
    cli::style_bold(sprintf("<serverless_schedule> %s: deployment %s (model %s)", x$name, x$deployment, x$model_version)),
    when,
    sprintf("  each run: %d container group%s (%s CPU, %s GB) scoring %s -> %s",
            x$shards, if (x$shards == 1) "" else "s", format(x$cpu), format(x$memory_gb),
            if (x$trigger == "schedule") x$input else "the new blob", x$output),
    sprintf("            logs and summary in %s/runs/%s/<run id>/; groups deleted after each run",
            x$target$container, x$deployment),
    if (length(x$poll_waits)) {
      sprintf("  checks:   first %d s after a group is created, then after %s s",
              x$poll_waits[1], paste(c(x$poll_waits[-1], "..."), collapse = ", "))
    },
    sprintf("  workflow: %s (%s connector)", x$workflow_id, x$connector)
  )
}

#' @export
print.serverless_schedule <- function(x, ...) {
  cat(format(x), sep = "\n")
  invisible(x)
}

# Logs of a run's shards: a named character vector that prints readably.
new_logs <- function(x) structure(x, class = c("serverless_logs", "character"))

#' @export
print.serverless_logs <- function(x, ...) {
  for (i in seq_along(x)) {
    cat(cli::rule(left = names(x)[i]), "\n", sep = "")
    cat(if (is.na(x[[i]])) "(no logs)" else unclass(x)[[i]], "\n", sep = "")
  }
  invisible(x)
}

# summary(): the object as a one-row (or per-item) data frame, for tables and tests.
# Like print, none shows a secret.

#' @export
summary.serverless_target <- function(object, ...) {
  data.frame(kind = object$kind, subscription = object$subscription %||% NA_character_,
             resource_group = object$resource_group %||% NA_character_,
             location = object$location %||% NA_character_,
             storage = object$blob_endpoint, container = object$container,
             auth = target_auth_label(object))
}

#' @export
summary.serverless_credential <- function(object, ...) {
  data.frame(type = object$type, tenant = object$tenant %||% NA_character_,
             client_id = object$client_id %||% NA_character_,
             secret = if (is.null(object$secrets$client_secret)) "none" else "<hidden>")
}

#' @export
summary.serverless_deployment <- function(object, ...) {
  data.frame(name = object$name, model_version = object$model_version, image = object$image,
             cpu = object$cpu, memory_gb = object$memory_gb, updated = object$updated)
}

#' @export
summary.serverless_plan <- function(object, ...) {
  items <- object$items
  counts <- table(kind = items$kind,
                  action = factor(items$action, levels = c("create", "update", "delete", "unchanged")))
  out <- as.data.frame.matrix(counts)
  cbind(kind = rownames(out), out, row.names = NULL)
}

#' @export
summary.serverless_run <- function(object, ...) {
  s <- object$shards
  s$cost <- aci_rough_cost(s$duration_s, object$cpu, object$memory_gb)
  s
}

#' @export
summary.serverless_schedule <- function(object, ...) {
  next_run <- if (object$trigger == "schedule") next_runs(object$recurrence, object$time_zone, n = 1)
              else as.POSIXct(NA)
  data.frame(name = object$name, deployment = object$deployment, trigger = object$trigger,
             cron = object$cron %||% NA_character_, time_zone = object$time_zone,
             next_run = next_run, shards = object$shards, connector = object$connector,
             input = object$input, output = object$output)
}
