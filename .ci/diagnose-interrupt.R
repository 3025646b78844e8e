# Diagnostic for the third test of tests/testthat/test-interrupt.R (Ctrl-C in
# score_now() while its groups start), which hung in both `make test` runs under
# .ci/under-load on 2026-12-07 (no CLASS line 30 s after the interrupt, or no GROUPS
# line 60 s after CLASS) and never when run alone. The same child script with a
# timestamp at each step; on a hang, a gdb backtrace of every thread of the child.
# Usage: Rscript .ci/diagnose-interrupt.R <library with serveRless installed from a tarball>
lib <- commandArgs(TRUE)[1]
.libPaths(c(lib, .libPaths()))
dir <- tempfile("diagnose")
dir.create(dir)
child <- callr::r_bg(function(dir, lib) {
  .libPaths(c(lib, .libPaths()))
  library(serveRless)
  ts <- function(...) cat(format(Sys.time(), "%H:%M:%OS3"), ..., "\n")
  target <- local_azure(dir = dir)
  dep <- suppressMessages(deploy_model(lm(mpg ~ wt, data = mtcars), "intr", target))
  groups <- function() {
    path <- sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerInstance/containerGroups",
                    target$subscription, target$resource_group)
    serveRless:::rust_wait(serveRless:::rs_arm_get(serveRless:::target_arm(target), path, "2023-05-01"))$value
  }
  local_azure_faults(target, latency = 0.3)
  ts("START")
  res <- tryCatch(score_now(dep, newdata = mtcars[, "wt", drop = FALSE], shards = 6),
                  error = function(e) e, interrupt = function(e) e)
  ts("CLASS", class(res)[1])
  local_azure_faults(target)
  ts("RESET")
  deadline <- Sys.time() + 30
  repeat {
    n <- length(groups())
    ts("groups", n)
    if (n == 0 || Sys.time() > deadline) break
    Sys.sleep(0.2)
  }
  ts("GROUPS", length(groups()))
}, args = list(dir, lib), stdout = "|", stderr = "|")
seen <- character()
wait_for <- function(line, timeout) {
  deadline <- Sys.time() + timeout
  while (Sys.time() < deadline) {
    child$poll_io(100)
    seen <<- c(seen, child$read_output_lines())
    if (any(grepl(line, seen, fixed = TRUE))) return(TRUE)
    if (!child$is_alive()) break
  }
  FALSE
}
if (!wait_for("START", 120)) stop("no START: ", paste(child$read_all_error_lines(), collapse = "\n"))
started <- function() length(list.files(file.path(dir, "control-plane"), "\\.log$", recursive = TRUE)) > 0
deadline <- Sys.time() + 60
while (!started() && Sys.time() < deadline && child$is_alive()) Sys.sleep(0.05)
cat("interrupt at", format(Sys.time(), "%H:%M:%OS3"), "\n")
child$interrupt()
ok <- wait_for("GROUPS", 150)
cat(if (ok) "OK" else "HANG", "\n")
cat(seen, sep = "\n")
if (!ok && child$is_alive()) {
  cat(child$read_all_error_lines(), sep = "\n")
  system(sprintf("gdb -p %d -batch -ex 'thread apply all bt' 2>/dev/null | grep -E '^#|^Thread'",
                 child$get_pid()))
}
# The child ends its local Azure itself (Azurite saves into `dir`) before the temp dir goes.
child$wait(30000)
if (child$is_alive()) child$kill()
