# The local Azure: Azurite for Blob Storage (the control-plane emulator comes later).

# Azurite's well-known development account (public, documented by Microsoft).
azurite_account <- "devstoreaccount1"
azurite_key <- paste0(
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/",
  "K1SZFPTOtr/KBHBeksoGMGw=="
)

#' Start a local Azure
#'
#' Starts Azurite, Microsoft's storage emulator, on a free loopback port, creates the
#' target's container, and returns a target pointing at it. Azurite stops (and a
#' temporary `dir` is removed) when `.local_envir` ends: the calling function, the
#' test, or the R session. Azurite is found on the `PATH`, or through the environment
#' variable `SERVERLESS_AZURITE`; the project's `make setup` installs it.
#'
#' @param dir Directory for Azurite's data. `NULL` (the default) uses a temporary
#'   directory that is removed afterwards.
#' @param container Blob container for models, data and run records.
#' @param .local_envir The environment whose end stops the local Azure.
#' @return A `serverless_target` of kind `"local"`.
#' @examplesIf nzchar(Sys.which("azurite-blob"))
#' target <- local_azure()
#' target
#' @export
local_azure <- function(dir = NULL, container = "serverless", .local_envir = parent.frame()) {
  check_string(container)
  rust_check(rs_check_blob_path(paste0(container, "/x")))
  azurite <- find_azurite()
  if (is.null(dir)) {
    dir <- tempfile("serverless-azurite-")
    withr::defer(unlink(dir, recursive = TRUE), envir = .local_envir)
  } else {
    check_string(dir)
  }
  dir.create(dir, recursive = TRUE, showWarnings = FALSE)
  proc <- processx::process$new(
    azurite,
    c("--blobHost", "127.0.0.1", "--blobPort", "0", "--location", dir,
      "--disableTelemetry", "--silent"),
    stdout = "|", stderr = "|", cleanup = TRUE, cleanup_tree = TRUE
  )
  withr::defer(stop_process(proc), envir = .local_envir, priority = "last")
  port <- wait_for_azurite(proc)
  target <- new_target(
    kind = "local",
    storage_account = azurite_account,
    blob_endpoint = sprintf("http://127.0.0.1:%d/%s", port, azurite_account),
    container = container,
    dir = dir,
    process = proc,
    secrets = local({
      s <- new.env(parent = emptyenv())
      s$key <- azurite_key
      s
    })
  )
  rust_wait(rs_ensure_container(target_storage(target), container))
  target
}

find_azurite <- function(call = rlang::caller_env()) {
  path <- Sys.getenv("SERVERLESS_AZURITE")
  if (!nzchar(path)) path <- Sys.which("azurite-blob")
  if (!nzchar(path) || !file.exists(path)) {
    serverless_abort(
      c("Azurite (the Azure Storage emulator) is not installed.",
        i = "Run {.code make setup} in the serveRless sources, or {.code npm install -g azurite}.",
        i = "Or set {.envvar SERVERLESS_AZURITE} to the path of {.file azurite-blob}."),
      "setup", call = call
    )
  }
  unname(path)
}

# Azurite prints the address it listens on; read it (port 0 means "pick a free one").
wait_for_azurite <- function(proc, timeout = 30, call = rlang::caller_env()) {
  deadline <- Sys.time() + timeout
  seen <- character()
  while (Sys.time() < deadline) {
    proc$poll_io(200)
    lines <- proc$read_output_lines()
    seen <- c(seen, lines)
    hit <- regmatches(seen, regexpr("listens on http://127\\.0\\.0\\.1:[0-9]+", seen))
    if (length(hit)) {
      return(as.integer(sub(".*:", "", hit[[1]])))
    }
    if (!proc$is_alive()) break
  }
  err <- c(seen, tryCatch(proc$read_all_error_lines(), error = function(e) character()))
  stop_process(proc)
  serverless_abort(
    c("Azurite did not start.", i = "Its output: {cli_escape(paste(utils::tail(err, 5), collapse = ' | '))}"),
    "setup", call = call
  )
}

stop_process <- function(proc) {
  if (proc$is_alive()) {
    proc$interrupt()
    proc$wait(2000)
    if (proc$is_alive()) proc$kill()
  }
  invisible()
}
