# Conditions, and the boundary to the Rust core.
#
# Every Rust function returns `list(ok = TRUE, value =)` or `list(ok = FALSE, error =)`;
# long ones return a job handle that `rust_wait()` polls. Errors become classed
# conditions here and nowhere else: `serverless_error_<kind>` + `serverless_error`.

serverless_abort <- function(message, kind, ..., call = rlang::caller_env(),
                             parent = NULL, .envir = parent.frame()) {
  cli::cli_abort(
    message,
    class = c(paste0("serverless_error_", kind), "serverless_error"),
    ...,
    call = call,
    parent = parent,
    .envir = .envir
  )
}

# Text from outside (Rust, the service) is shown literally: cli must not read its
# braces as glue.
cli_escape <- function(x) {
  gsub("}", "}}", gsub("{", "{{", x, fixed = TRUE), fixed = TRUE)
}

# Extra condition classes for some kinds of core errors.
error_classes <- function(kind) {
  switch(kind,
    throttled = c("serverless_error_throttled", "serverless_error_azure"),
    integrity = "serverless_error_integrity",
    paste0("serverless_error_", kind)
  )
}

# Raise the error in a core result, or return its value.
rust_result <- function(res, call = rlang::caller_env()) {
  if (isTRUE(res$ok)) {
    return(res$value)
  }
  err <- res$error
  bullets <- cli_escape(err$message)
  if (!is.null(err$request_id)) {
    bullets <- c(bullets, i = paste0("Azure request id: ", cli_escape(err$request_id)))
  }
  cli::cli_abort(
    bullets,
    class = c(error_classes(err$kind), "serverless_error"),
    status = err$status,
    code = err$code,
    request_id = err$request_id,
    call = call
  )
}

# Wait for a Rust job, drawing a progress bar from this (the main) thread. Each poll
# returns within `poll_ms`, so Ctrl-C is seen promptly; it cancels the job.
rust_wait <- function(job, call = rlang::caller_env(), poll_ms = 100L) {
  # A binding that refused its arguments (e.g. text that is not UTF-8) returns its
  # error instead of a job.
  if (is.list(job)) {
    return(rust_result(job, call = call))
  }
  bar <- NULL
  status <- ""
  log_status <- NULL
  show_bar <- cli::is_dynamic_tty() && !isTRUE(getOption("knitr.in.progress"))
  on.exit(if (!is.null(log_status)) try(cli::cli_status_clear(id = log_status), silent = TRUE), add = TRUE)
  # Closed here, not by cli's auto-close: an interrupt may land inside cli's own code.
  on.exit(if (!is.null(bar)) try(cli::cli_progress_done(id = bar), silent = TRUE), add = TRUE)
  res <- tryCatch(
    {
      repeat {
        st <- job_poll(job, poll_ms)
        # R acts on a pending Ctrl-C only at its own check points, which a loop this
        # small reaches seconds apart; Sys.sleep() is one.
        Sys.sleep(0)
        if (!is.null(st$ok)) {
          return(rust_result(st, call = call)) # the poll itself failed
        }
        p <- st$progress
        for (notice in p$notices) cli::cli_inform(c("!" = cli_escape(notice)))
        for (step in p$steps) cli::cli_inform(c("i" = cli_escape(step)))
        if (length(p$log)) {
          # A remote log (an image build) is kept whole elsewhere (deploy_log()): here
          # it is a one-line status, and a condition a caller (the addin) can collect.
          lines <- unlist(p$log)
          rlang::signal("", class = "serverless_log_lines", lines = lines)
          if (isTRUE(getOption("serveRless.show_build_log"))) {
            cli::cli_verbatim(lines)
          } else if (cli::is_dynamic_tty()) {
            last <- substr(cli_escape(lines[length(lines)]), 1, max(20, cli::console_width() - 4))
            if (is.null(log_status)) {
              log_status <- cli::cli_status(last, .auto_close = FALSE)
            } else {
              cli::cli_status_update(id = log_status, msg = last)
            }
          }
        }
        # Where the work stands, for a caller that shows it its own way (the addin)
        # or waits for it (a test that interrupts an upload once a block has landed).
        if (p$total > 0) {
          rlang::signal("", class = "serverless_progress", status = p$status,
                        done = p$done, total = p$total)
        }
        # A bar only where it can redraw itself: in a log or a knitted document each
        # update would be one more static line.
        if (p$total > 0 && show_bar) {
          if (!is.null(bar) && !identical(p$status, status)) {
            try(cli::cli_progress_done(id = bar), silent = TRUE) # a new phase
            bar <- NULL
          }
          status <- p$status
          if (is.null(bar)) {
            bar <- cli::cli_progress_bar(
              type = "download", auto_terminate = FALSE, total = p$total,
              format = paste(
                "{status} {cli::pb_bar} {cli::pb_current_bytes}/{cli::pb_total_bytes}",
                "{cli::pb_rate_bytes} {cli::pb_eta}"
              ),
              clear = TRUE, .auto_close = FALSE, .envir = environment()
            )
          }
          cli::cli_progress_update(id = bar, set = p$done, total = p$total)
        }
        if (isTRUE(st$finished)) break
      }
      st$result
    },
    interrupt = function(e) {
      job_cancel(job)
      NULL
    }
  )
  if (is.null(res)) {
    serverless_abort(
      c("Interrupted: the operation was cancelled.",
        i = "Nothing partial was committed; running it again resumes where it stopped."),
      "interrupted",
      call = call
    )
  }
  rust_result(res, call = call)
}

# Checks on arguments, raised before any network call.
check_string <- function(x, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  if (!is.character(x) || length(x) != 1 || is.na(x) ||
      (validUTF8(x) && !nzchar(x))) {
    serverless_abort("{.arg {arg}} must be a single non-empty string, not {.cls {class(x)[1]}}.",
                     "input", call = call)
  }
  check_utf8(x, arg = arg, call = call)
}

# Text must be valid UTF-8 (latin1-marked text is converted); R's own string functions
# fail unclassed on stray bytes, so this comes first. The Rust boundary checks again.
check_utf8 <- function(x, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  # Latin-1 text converts; native text (UTF-8 locales) and UTF-8 text are checked as
  # they are. (enc2utf8() would "convert" stray bytes into escapes: not used on them.)
  latin1 <- !is.na(x) & Encoding(x) == "latin1"
  x[latin1] <- enc2utf8(x[latin1])
  bad <- !is.na(x) & (!validUTF8(x) | Encoding(x) == "bytes")
  if (any(bad)) {
    serverless_abort(
      c("{.arg {arg}} is not valid UTF-8 text.",
        i = "Convert it with {.fn enc2utf8} or {.fn iconv}, or remove the stray bytes."),
      "input", call = call
    )
  }
  invisible(x)
}

check_number <- function(x, min, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  if (!is.numeric(x) || length(x) != 1 || is.na(x) || x < min || !is.finite(x)) {
    serverless_abort("{.arg {arg}} must be a number of at least {min}, not {.val {format(x)}}.",
                     "input", call = call)
  }
}

check_whole <- function(x, min, max, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  if (!is.numeric(x) || length(x) != 1 || is.na(x) || x != round(x) || x < min || x > max) {
    serverless_abort("{.arg {arg}} must be a whole number from {min} to {max}, not {.val {format(x)}}.",
                     "input", call = call)
  }
}

# A number of seconds: finite, from `min` to `max` (Inf, NA and text refused).
check_seconds <- function(x, min, max, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  if (!is.numeric(x) || length(x) != 1 || is.na(x) || !is.finite(x) || x < min || x > max) {
    serverless_abort("{.arg {arg}} must be a number of seconds from {min} to {format(max, big.mark = ',')}, not {.val {format(x)}}.",
                     "input", call = call)
  }
}

# Upper bounds of run arguments: shards are container groups (ACI's default quota is
# 100 per region), a run may last 30 days.
max_shards <- 50
max_retries <- 10
max_timeout <- 30 * 24 * 3600

check_flag <- function(x, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  if (!is.logical(x) || length(x) != 1 || is.na(x)) {
    serverless_abort("{.arg {arg}} must be TRUE or FALSE, not {.cls {class(x)[1]}}.",
                     "input", call = call)
  }
  invisible(x)
}

check_target <- function(x, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  if (!inherits(x, "serverless_target")) {
    serverless_abort(
      c("{.arg {arg}} must be a target from {.fn az_target} or {.fn local_azure}, not {.cls {class(x)[1]}}."),
      "input", call = call
    )
  }
  invisible(x)
}

# Run a no-network core check and raise its error with the caller's call.
rust_check <- function(res, call = rlang::caller_env()) {
  invisible(rust_result(res, call = call))
}
