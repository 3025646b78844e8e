# The local Azure: Azurite for Blob Storage, and the package's emulator of the control
# plane (identity, Resource Manager, Container Instances, ...) on background threads.

# Azurite's well-known development account (public, documented by Microsoft).
azurite_account <- "devstoreaccount1"
azurite_key <- paste0(
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/",
  "K1SZFPTOtr/KBHBeksoGMGw=="
)

#' Start a local Azure
#'
#' Starts Azurite, Microsoft's storage emulator, on a free loopback port, and the
#' package's emulator of the Azure control plane (Entra ID tokens, Resource Manager,
#' Container Instances that run as local processes, ...) over HTTPS with a self-signed
#' certificate the target trusts. Bearer tokens sent to Blob Storage are checked as
#' Azure Storage checks them (Azurite alone accepts any): a token the emulated tenant
#' did not issue, or for another audience, gets 401 `InvalidAuthenticationInfo`, and a
#' managed identity without a "Storage Blob Data" role on the account gets 403
#' `AuthorizationPermissionMismatch`. Creates the target's container and returns a target
#' whose credential is a service principal of the emulated tenant. Everything stops (and
#' a temporary `dir` is removed) when `.local_envir` ends: the calling function, the
#' test, or, at a script's top level, the R session. Azurite is stopped with SIGTERM,
#' so what it was told to store is saved in `dir`. If the R session is killed or
#' crashes instead, a watchdog stops Azurite and kills the scoring processes. A target
#' whose local Azure has stopped raises `serverless_error_input` at its next use.
#' As in ACI, a container whose processes together hold more memory than its group
#' allows (`memory_gb` of the deployment) is killed with exit code 137 ("OOMKilled"),
#' and its shard fails; the emulator measures resident memory five times a second
#' (Linux only), so a short spike between two measurements may pass.
#' A container runs this session's R (by its absolute path, so `R CMD check
#' --as-cran`'s stub `Rscript` on the `PATH` is never run) with a library of only
#' the packages its runtime image installed (R's own and serveRless's, and the
#' model's pinned packages): a model that needs a package its image lacks fails
#' locally as it would in Azure, even when this session has the package.
#' Azurite is found on the `PATH`, or through the environment variable
#' `SERVERLESS_AZURITE`; the project's `make setup` installs it.
#'
#' [local_azure_journal()] lists the control-plane calls made so far;
#' [local_azure_faults()] makes a share of them fail the ways Azure's do.
#'
#' @param dir Directory for Azurite's data. `NULL` (the default) uses a temporary
#'   directory that is removed afterwards.
#' @param container Blob container for models, data and run records.
#' @param .local_envir The environment whose end stops the local Azure.
#' @return A `serverless_target` of kind `"local"`.
#' @examples
#' # Starts Azurite and the control-plane emulator (`make setup` installs Azurite).
#' \donttest{
#' if (nzchar(Sys.which("azurite-blob"))) {
#' target <- local_azure()
#' target
#' }
#' }
#' @export
local_azure <- function(dir = NULL, container = "serverless", .local_envir = parent.frame()) {
  check_string(container)
  rust_check(rs_check_blob_path(paste0(container, "/x")))
  azurite <- find_azurite()
  if (!is.null(dir)) check_string(dir)
  # What is running, stopped in reverse order by one cleanup when `.local_envir` ends.
  running <- new.env(parent = emptyenv())
  secrets <- new.env(parent = emptyenv())
  when_ended(function() stop_local_azure(running, secrets), .local_envir)
  if (is.null(dir)) {
    dir <- tempfile("serverless-azurite-")
    running$temp_dir <- dir
  }
  dir.create(dir, recursive = TRUE, showWarnings = FALSE)
  emulator <- rust_result(rs_local_start(list(
    work_dir = file.path(dir, "control-plane"),
    taken_registry_names = taken_registry_names,
    # Locally a runtime image runs as this R, by absolute path, and sees the packages
    # of these libraries that its build installed.
    r_library_paths = as.list(.libPaths()),
    r_bin_dir = R.home("bin")
  )))
  running$emulator <- emulator$handle
  # Azurite serves HTTPS with a certificate from the emulator's CA, so Entra ID tokens
  # (the managed identities of scoring containers) work against it as in Azure.
  tls_dir <- file.path(dir, "tls")
  dir.create(tls_dir, showWarnings = FALSE, mode = "0700")
  cert <- file.path(tls_dir, "cert.pem")
  key <- file.path(tls_dir, "key.pem")
  writeLines(emulator$tls_cert, cert)
  file.create(key)
  Sys.chmod(key, "0600")
  writeLines(emulator$tls_key, key)
  # No processx cleanup: it would SIGKILL Azurite, losing what it has not yet saved.
  # The cleanup above stops it with SIGTERM (Azurite then saves and exits), and a
  # watchdog does the same if this R session dies first.
  proc <- processx::process$new(
    azurite,
    c("--blobHost", "127.0.0.1", "--blobPort", "0", "--location", dir,
      "--cert", cert, "--key", key, "--oauth", "basic",
      "--disableTelemetry", "--silent"),
    stdout = "|", stderr = "|", cleanup = FALSE, cleanup_tree = FALSE
  )
  running$azurite <- proc
  running$azurite_pid <- proc$get_pid()
  running$watchdog <- rust_result(rs_local_watchdog(running$azurite_pid))
  port <- wait_for_azurite(proc)
  # Azurite (--oauth basic) takes any bearer token; the storage gate in front of it
  # refuses those Azure Storage would refuse. Clients reach the gate through a loopback
  # TCP proxy, so local_azure_faults() can slow, cut or reset storage connections
  # mid-transfer.
  gate <- rust_result(rs_local_storage_gate(emulator$handle, as.integer(port)))
  proxy <- rust_result(rs_local_proxy_start(as.integer(gate)))
  running$proxy <- proxy$handle
  blob_endpoint <- sprintf("https://127.0.0.1:%d/%s", proxy$port, azurite_account)
  # The storage account exists in the emulated subscription, as it would in Azure.
  rust_result(rs_local_add_storage_account(emulator$handle, list(
    resource_group = local_resource_group, name = azurite_account, location = local_location,
    blob_endpoint = blob_endpoint
  )))
  secrets$key <- seal(azurite_key)
  secrets$ca_pem <- emulator$ca_pem
  secrets$local <- emulator$handle
  secrets$proxy <- proxy$handle
  secrets$storage_faults <- list()
  secrets$credential <- new_credential(
    "client_secret", tenant = emulator$tenant_id, client_id = emulator$client_id,
    client_secret = emulator$client_secret, source = "the local Azure's service principal"
  )
  target <- new_target(
    kind = "local",
    storage_account = azurite_account,
    blob_endpoint = blob_endpoint,
    container = container,
    subscription = emulator$subscription_id,
    resource_group = local_resource_group,
    location = local_location,
    arm_endpoint = emulator$https,
    authority_host = emulator$https,
    identity_endpoint = emulator$identity,
    dir = dir,
    process = proc,
    secrets = secrets
  )
  rust_wait(rs_ensure_container(target_storage(target), container))
  target
}

# Run `f` once when `envir` ends. At a script's top level (the global environment)
# that is the end of the R session, which withr cannot see: an exit finalizer runs it.
when_ended <- function(f, envir) {
  if (identical(envir, globalenv())) {
    holder <- new.env(parent = emptyenv())
    reg.finalizer(holder, function(e) f(), onexit = TRUE)
    at_session_end[[format(holder)]] <- holder
  } else {
    withr::defer(f(), envir = envir)
  }
  invisible()
}
at_session_end <- new.env(parent = emptyenv())

# The containers first (they use storage), then the proxy, then Azurite, stopped so it
# saves its data, then its watchdog; a temporary `dir` last. Runs once.
stop_local_azure <- function(running, secrets) {
  if (isTRUE(running$stopped)) {
    return(invisible())
  }
  running$stopped <- TRUE
  secrets$stopped <- TRUE
  if (!is.null(running$emulator)) rs_local_stop(running$emulator)
  if (!is.null(running$proxy)) rs_local_proxy_stop(running$proxy)
  if (!is.null(running$azurite)) {
    # At the end of a session processx may have finalized its handle first: then
    # the watchdog stops Azurite (SIGTERM, and waits for it).
    stopped <- tryCatch({
      stop_process(running$azurite)
      !isTRUE(tools::pskill(running$azurite_pid, 0L))
    }, error = function(e) FALSE)
    if (!is.null(running$watchdog)) {
      rs_local_watchdog_stop(running$watchdog, if (stopped) running$azurite_pid else -1L)
    }
  }
  if (!is.null(running$temp_dir)) unlink(running$temp_dir, recursive = TRUE)
  invisible()
}

local_resource_group <- "serverless-local"
local_location <- "westeurope"

# Registry names are global in Azure; these well-known ones are taken there, so the
# local Azure refuses them too.
taken_registry_names <- c("contoso", "myregistry", "registry", "acr", "docker")

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
    hit <- regmatches(seen, regexpr("listens on https?://127\\.0\\.0\\.1:[0-9]+", seen))
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

# SIGTERM first: Azurite then closes its servers and saves its metadata. SIGKILL only
# if it has not ended 10 s later.
stop_process <- function(proc) {
  if (proc$is_alive()) {
    proc$signal(tools::SIGTERM)
    proc$wait(10000)
    if (proc$is_alive()) proc$kill()
  }
  invisible()
}

#' Inspect and disturb the local Azure
#'
#' `local_azure_journal()` returns every control-plane call the local Azure has
#' answered (identity and Resource Manager), oldest first, so tests can assert what a
#' deployment did. Request bodies are shown with secrets replaced by `REDACTED`.
#'
#' `local_azure_faults()` makes a share of Resource Manager calls fail as Azure's do:
#' `throttle` answer 429 with `Retry-After`, `server_errors` answer 500 or 503,
#' `latency` seconds are added to every call, `resets` drop the connection. A fault
#' happens before the call has any effect. Blob Storage is reached through a loopback
#' TCP proxy that can break transfers the way networks do: `storage_latency` seconds
#' before each forwarded chunk, and on every `storage_every`-th connection a clean cut
#' (`storage_cut_after` bytes) or a reset (`storage_reset_after` bytes) in either
#' direction. `evict` is the share of Spot container groups
#' (`score_now(priority = "spot")`) evicted as soon as they start: their
#' processes are killed, the container ends with exit code 137 and a log line says it
#' was evicted. Call it with no arguments to switch every fault off.
#'
#' `local_azure_quota()` sets the Container Instances quota of every region: how many
#' container groups may exist and how many vCPUs regular-priority groups that have
#' not ended may request (ACI's defaults: 100 and 100). The usages API reports it
#' (which [score_now()] and [schedule_scoring()] read for their default
#' `max_parallel`), and a create over it is refused with a 409, as ACI refuses it.
#'
#' @param target A target from [local_azure()].
#' @param container_groups,cores The quota: container groups, and standard vCPUs.
#' @param throttle,server_errors,resets Shares of calls, between 0 and 1.
#' @param latency Seconds added to every call.
#' @param seed Seed of the fault dice, for reproducible tests.
#' @param storage_latency Seconds added before each chunk of storage traffic.
#' @param storage_cut_after,storage_reset_after Bytes after which a storage connection
#'   is closed (cut) or reset; `NULL` for never.
#' @param storage_every Which storage connections get the cut or reset: every n-th.
#' @param evict Share of Spot container groups evicted, between 0 and 1.
#' @return `local_azure_journal()`: a data frame with columns `time`, `method`, `path`,
#'   `query` (the query string, secrets redacted; `NA` if none), `api_version`, `status`
#'   and `body` (JSON text). `local_azure_faults()`, `local_azure_quota()`: `target`,
#'   invisibly.
#' @examples
#' # Starts Azurite and the control-plane emulator (`make setup` installs Azurite).
#' \donttest{
#' if (nzchar(Sys.which("azurite-blob"))) {
#' target <- local_azure()
#' local_azure_faults(target, throttle = 0.2)
#' local_azure_journal(target)
#' }
#' }
#' @export
local_azure_journal <- function(target) {
  handle <- local_handle(target)
  rows <- rust_result(rs_local_journal(handle))
  col <- function(f, type) vapply(rows, f, type)
  data.frame(
    time = parse_time(col(function(r) r$time, "")),
    method = col(function(r) r$method, ""),
    path = col(function(r) r$path, ""),
    query = col(function(r) r$query %||% NA_character_, ""),
    api_version = col(function(r) r$api_version %||% NA_character_, ""),
    status = col(function(r) as.integer(r$status), 0L),
    body = col(function(r) if (is.null(r$body)) NA_character_ else r$body, ""),
    stringsAsFactors = FALSE
  )
}

#' @rdname local_azure_journal
#' @export
local_azure_faults <- function(target, throttle = 0, server_errors = 0, latency = 0,
                               resets = 0, seed = 1, storage_latency = 0,
                               storage_cut_after = NULL, storage_reset_after = NULL,
                               storage_every = 1, evict = 0) {
  handle <- local_handle(target)
  for (arg in c("storage_cut_after", "storage_reset_after")) {
    value <- get(arg)
    if (!is.null(value) && (!is.numeric(value) || length(value) != 1 || is.na(value) || value < 0)) {
      serverless_abort("{.arg {arg}} must be a number of bytes, not {.val {format(value)}}.", "input")
    }
  }
  if (!is.numeric(storage_latency) || length(storage_latency) != 1 || is.na(storage_latency) ||
      storage_latency < 0 || storage_latency > 10) {
    serverless_abort("{.arg storage_latency} must be between 0 and 10 seconds, not {.val {format(storage_latency)}}.", "input")
  }
  check_whole(storage_every, 1, 1e6)
  faults <- list(delay_ms = round(storage_latency * 1000), cut_after = storage_cut_after,
                 reset_after = storage_reset_after, every = storage_every)
  target$secrets$storage_faults <- faults[!vapply(faults, is.null, logical(1))]
  rust_result(rs_local_proxy_faults(target$secrets$proxy, target$secrets$storage_faults))
  for (arg in c("throttle", "server_errors", "resets", "evict")) {
    value <- get(arg)
    if (!is.numeric(value) || length(value) != 1 || is.na(value) || value < 0 || value > 1) {
      serverless_abort("{.arg {arg}} must be a share between 0 and 1, not {.val {value}}.", "input")
    }
  }
  if (!is.numeric(latency) || length(latency) != 1 || is.na(latency) || latency < 0 || latency > 60) {
    serverless_abort("{.arg latency} must be between 0 and 60 seconds, not {.val {latency}}.", "input")
  }
  rust_result(rs_local_faults(handle, list(
    throttle = throttle, server_errors = server_errors, latency_ms = round(latency * 1000),
    resets = resets, seed = as.numeric(seed), evict = evict
  )))
  invisible(target)
}

#' @rdname local_azure_journal
#' @export
local_azure_quota <- function(target, container_groups = 100, cores = 100) {
  handle <- local_handle(target)
  check_whole(container_groups, 0, 1e6)
  check_number(cores, 0)
  rust_result(rs_local_aci_quota(handle, as.numeric(container_groups), as.numeric(cores)))
  invisible(target)
}

local_handle <- function(target, call = rlang::caller_env()) {
  check_target(target, call = call)
  if (!identical(target$kind, "local") || is.null(target$secrets$local)) {
    serverless_abort("{.arg target} must be a local Azure from {.fn local_azure}.", "input", call = call)
  }
  target$secrets$local
}

# Storage connections the proxy has seen and how many it cut or reset (for tests).
storage_fault_counts <- function(target) {
  rust_result(rs_local_proxy_faults(target$secrets$proxy, target$secrets$storage_faults))
}
