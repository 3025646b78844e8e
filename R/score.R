# Scoring on Azure Container Instances. score_now() builds on aci_run_group().

# Run one container group to completion through Resource Manager: create it (in the
# target's resource group, tagged), wait, collect each container's logs and exit code,
# delete it. Returns a data frame, one row per container.
aci_run_group <- function(target, name, command, env = list(), secure_env = list(),
                          image = "serverless-runtime:local", cpu = 1, memory_gb = 1.5,
                          tags = list(), timeout = 600, call = rlang::caller_env()) {
  check_target(target, call = call)
  check_string(name, call = call)
  if (!is.character(command) || !length(command) || anyNA(command)) {
    serverless_abort("{.arg command} must be a character vector (the program and its arguments).",
                     "input", call = call)
  }
  if (is.null(target$subscription)) {
    serverless_abort("{.arg target} has no subscription: use {.fn az_target} or {.fn local_azure}.",
                     "input", call = call)
  }
  named_strings <- function(x, arg) {
    if (!length(x)) return(structure(list(), names = character()))
    if (is.null(names(x)) || any(!nzchar(names(x)))) {
      serverless_abort("{.arg {arg}} must be a named list of strings.", "input", call = call)
    }
    lapply(x, as.character)
  }
  spec <- list(
    subscription = target$subscription,
    resource_group = target$resource_group,
    name = name,
    location = target$location,
    containers = list(list(
      name = "job", image = image, command = as.list(command), cpu = cpu, memory_gb = memory_gb,
      env = named_strings(env, "env"), secure_env = named_strings(secure_env, "secure_env")
    )),
    tags = named_strings(tags, "tags")
  )
  rows <- rust_wait(rs_aci_run(target_arm(target), spec, as.numeric(timeout)), call = call)
  data.frame(
    container = vapply(rows, function(r) r$name, ""),
    state = vapply(rows, function(r) r$state, ""),
    exit_code = vapply(rows, function(r) as.integer(r$exit_code %||% NA_integer_), 0L),
    logs = vapply(rows, function(r) r$logs, ""),
    stringsAsFactors = FALSE
  )
}

# Token details for a credential against the target's endpoints (never the token).
credential_token_info <- function(target, credential = target_credential(target),
                                  scope = "https://management.azure.com/.default") {
  config <- list(endpoints = target_endpoints(target), credential = credential_spec(credential))
  rust_wait(rs_token_info(config, scope))
}
