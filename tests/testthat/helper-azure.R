# One local Azure (Azurite) for the whole test run, stopped at the end. Files run in
# parallel (DESCRIPTION's Config/testthat/parallel): each worker has its own, stopped
# when the worker's R ends, because a worker ends testthat's teardown_env() after its
# first file.
shared <- new.env(parent = emptyenv())

test_target <- function() {
  if (is.null(shared$target)) {
    scope <- if (identical(Sys.getenv("TESTTHAT_IS_PARALLEL"), "true")) {
      worker <- new.env(parent = emptyenv())
      reg.finalizer(shared, function(e) withr::deferred_run(worker), onexit = TRUE)
      worker
    } else {
      testthat::teardown_env()
    }
    shared$target <- local_azure(.local_envir = scope)
  }
  shared$target
}

# The same storage as `az_target()` sees it: what a user would write for a real account.
# Uses the Azurite development key, which is public.
azurite_az_target <- function(target = test_target(), ...) {
  args <- utils::modifyList(
    list(
      subscription = "00000000-0000-0000-0000-000000000000",
      resource_group = "rg-test", location = "westeurope",
      storage_account = "devstoreaccount1", blob_endpoint = target$blob_endpoint,
      storage_key = serveRless:::azurite_key
    ),
    list(...)
  )
  out <- do.call(az_target, args)
  out$secrets$ca_pem <- target$secrets$ca_pem # Azurite serves HTTPS with the local CA
  out
}

# A sparse file: large on paper, cheap to make.
sparse_file <- function(size, envir = parent.frame()) {
  path <- withr::local_tempfile(.local_envir = envir)
  con <- file(path, "wb")
  seek(con, size - 1, rw = "write")
  writeBin(as.raw(1), con)
  close(con)
  path
}

random_file <- function(size, envir = parent.frame()) {
  path <- withr::local_tempfile(.local_envir = envir)
  writeBin(as.raw(sample.int(256, size, replace = TRUE) - 1L), path)
  path
}

# Fit models in a function so their formula environments hold only local data.
fit_models <- function() {
  cars <- mtcars
  cars$am <- factor(cars$am)
  list(
    lm = stats::lm(mpg ~ wt + hp, data = cars),
    glm = stats::glm(am ~ wt + hp, data = cars, family = stats::binomial()),
    rf = if (requireNamespace("randomForest", quietly = TRUE)) {
      set.seed(1)
      randomForest::randomForest(mpg ~ wt + hp + am, data = cars, ntree = 50)
    },
    data = cars
  )
}

# Wait until a child process prints `line` (bounded).
wait_for_line <- function(proc, line, timeout = 30) {
  deadline <- Sys.time() + timeout
  seen <- character()
  while (Sys.time() < deadline) {
    proc$poll_io(100)
    seen <- c(seen, proc$read_output_lines())
    if (any(grepl(line, seen, fixed = TRUE))) return(invisible(seen))
    if (!proc$is_alive()) break
  }
  # A child still running past the deadline: what its threads are doing, taken now
  # (reading the rest of its stderr waits for its end).
  stacks <- if (proc$is_alive()) thread_stacks(proc$get_pid()) else character()
  stop("child never printed ", line, ": ",
       paste(c(seen, proc$read_all_error_lines(), stacks), collapse = "\n"))
}

# The call stacks of every thread of process `pid`, when gdb is installed (a failing
# wait is then explained by where the child was; issue 18's loaded runs).
thread_stacks <- function(pid) {
  gdb <- Sys.which("gdb")
  if (!nzchar(gdb)) return(character())
  out <- suppressWarnings(tryCatch(
    system2(gdb, c("-p", pid, "-batch", "-ex", shQuote("thread apply all bt")),
            stdout = TRUE, stderr = FALSE, timeout = 30),
    error = function(e) character()
  ))
  c("threads of the child (gdb):", grep("^(#|Thread)", out, value = TRUE))
}
