# What a local Azure leaves behind when the R session that started it ends: nothing
# running, and (with `dir =`) every blob it wrote. Sessions are real child R processes.

rscript <- function() file.path(R.home("bin"), "Rscript")

# A process that has ended, or is a zombie nobody reaps (PID 1 may not here).
process_gone <- function(h) {
  !ps::ps_is_running(h) ||
    identical(tryCatch(ps::ps_status(h), error = function(e) "zombie"), "zombie")
}

test_that("an R session killed (SIGKILL) mid-score_now() leaves no process after 10 s", {
  skip_on_os("windows")
  # The scoring container runs Rscript with this HOME: its profile says that it
  # started, then waits, so the run is in flight when the session is killed.
  home <- withr::local_tempdir()
  started <- file.path(home, "scoring-started")
  writeLines(sprintf("local({ file.create(%s); Sys.sleep(600) })", deparse(started)),
             file.path(home, ".Rprofile"))
  child <- callr::r_bg(function() {
    library(serveRless)
    target <- local_azure()
    dep <- suppressMessages(deploy_model(lm(mpg ~ wt, data = mtcars), "killed", target))
    cat("DEPLOYED\n")
    score_now(dep, newdata = mtcars[, "wt", drop = FALSE], shards = 2)
  }, env = c(callr::rcmd_safe_env(), HOME = home), stdout = "|", stderr = "|")
  withr::defer(if (child$is_alive()) child$kill())
  wait_for_line(child, "DEPLOYED", timeout = 120)
  deadline <- Sys.time() + 60
  while (!file.exists(started) && Sys.time() < deadline && child$is_alive()) Sys.sleep(0.1)
  expect_true(file.exists(started), info = paste(child$read_all_error_lines(), collapse = "\n"))
  # Everything the session started, and what those started: Azurite, the watchdogs,
  # the containers' processes.
  descendants <- ps::ps_children(ps::ps_handle(child$get_pid()), recursive = TRUE)
  names <- vapply(descendants, function(h) tryCatch(ps::ps_name(h), error = function(e) "?"), "")
  expect_true(any(grepl("node", names)), info = paste(names, collapse = ", "))
  expect_true(any(grepl("^R$|Rscript", names)), info = paste(names, collapse = ", "))
  child$kill() # SIGKILL: no R code runs, no finalizer, no on.exit
  deadline <- Sys.time() + 10
  while (!all(vapply(descendants, process_gone, TRUE)) && Sys.time() < deadline) Sys.sleep(0.1)
  left <- names[!vapply(descendants, process_gone, TRUE)]
  expect_equal(left, character())
})

test_that("a script using local_azure(dir =) at top level keeps its blobs for the next one", {
  skip_on_os("windows")
  dir <- withr::local_tempdir()
  writer <- withr::local_tempfile(fileext = ".R")
  reader <- withr::local_tempfile(fileext = ".R")
  writeLines(c(
    "library(serveRless)",
    sprintf("target <- local_azure(dir = %s)", deparse(dir)),
    "f <- tempfile(fileext = '.csv')",
    "writeLines(c('a,b', '1,2'), f)",
    # The last write is the script's last line: nothing waits after it.
    "for (i in 1:3) blob_upload(target, f, sprintf('serverless/kept/%d.csv', i))"
  ), writer)
  writeLines(c(
    "library(serveRless)",
    sprintf("target <- local_azure(dir = %s)", deparse(dir)),
    "cat(blob_list(target, 'serverless/kept/')$path, sep = '\\n')"
  ), reader)
  # R CMD check sets R_TESTS=startup.Rs, a path relative to tests/; a parallel test
  # worker runs in tests/testthat, where a child Rscript would fail to source it.
  env <- c("current", R_TESTS = "")
  wrote <- processx::run(rscript(), writer, error_on_status = FALSE, timeout = 120, env = env)
  expect_equal(wrote$status, 0L, info = wrote$stderr)
  read <- processx::run(rscript(), reader, error_on_status = FALSE, timeout = 120, env = env)
  expect_equal(read$status, 0L, info = read$stderr)
  expect_equal(strsplit(trimws(read$stdout), "\n")[[1]],
               sprintf("serverless/kept/%d.csv", 1:3))
})

test_that("a target whose local_azure() has ended fails at once, classed", {
  start_and_return <- function() local_azure()
  ended <- start_and_return()
  took <- system.time(
    err <- expect_error(blob_list(ended, "serverless/"), class = "serverless_error_input")
  )[["elapsed"]]
  expect_match(conditionMessage(err), "stopped")
  expect_lt(took, 2)
  expect_error(local_azure_journal(ended), class = "serverless_error_input")
})
