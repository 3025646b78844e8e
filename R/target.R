# Targets: where models, data and resources go.

#' Describe an Azure deployment target
#'
#' A target names the subscription, resource group, region and storage account that
#' serveRless uses. Names are checked against Azure's rules here, before any call.
#' Storage is reached with an account key, a SAS token or an Entra ID bearer token.
#' Secrets are kept out of `print()`, `format()` and `str()`, and out of `saveRDS()`:
#' a target read back from a file (or a deployment, run or schedule that holds one)
#' raises `serverless_error_auth` when used; make it again in the new session.
#'
#' @param subscription Subscription id (a GUID).
#' @param resource_group Resource group name (1-90 letters, digits, `-_.()`).
#' @param location Azure region, e.g. `"westeurope"`.
#' @param storage_account Storage account name (3-24 lowercase letters and digits).
#' @param registry Container registry name (5-50 letters and digits), or `NULL`.
#' @param container Blob container for models, data and run records.
#' @param storage_key Storage account key, or `NULL`.
#' @param storage_sas SAS token for the container, or `NULL`.
#' @param storage_token Entra ID access token for `https://storage.azure.com`, or `NULL`.
#' @param blob_endpoint Blob endpoint; defaults to
#'   `https://<storage_account>.blob.core.windows.net`.
#' @param arm_endpoint,authority_host Resource Manager and Entra ID sign-in for a
#'   sovereign cloud, e.g. `"https://management.usgovcloudapi.net"` and
#'   `"https://login.microsoftonline.us"` (Azure Government), or
#'   `"https://management.chinacloudapi.cn"` and `"https://login.chinacloudapi.cn"`
#'   (Azure operated by 21Vianet); `NULL`: the public cloud's. Tokens for Resource
#'   Manager, the package's and the Logic Apps', are asked for that cloud's audience.
#'   Give `blob_endpoint` too (`https://<account>.blob.core.usgovcloudapi.net`).
#' @param credential How to sign in to Azure, from [az_credential()]. It is used for
#'   Resource Manager, and for Blob Storage when no `storage_*` secret is given. Created
#'   only when first needed.
#' @return A `serverless_target`.
#' @examples
#' target <- az_target(
#'   subscription = "00000000-0000-0000-0000-000000000000",
#'   resource_group = "rg-models", location = "westeurope",
#'   storage_account = "mymodels", storage_sas = "sv=2022-11-02&sp=racwl&sig=abc"
#' )
#' target
#' @export
az_target <- function(subscription, resource_group, location, storage_account,
                      registry = NULL, container = "serverless", storage_key = NULL,
                      storage_sas = NULL, storage_token = NULL, blob_endpoint = NULL,
                      arm_endpoint = NULL, authority_host = NULL,
                      credential = az_credential()) {
  check_string(subscription)
  check_string(resource_group)
  check_string(location)
  check_string(storage_account)
  check_string(container)
  if (!grepl("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", subscription)) {
    serverless_abort(c("{.arg subscription} must be a subscription id (a GUID), not {.val {subscription}}.",
                       i = "Find it with {.code az account show --query id}."), "input")
  }
  if (nchar(resource_group) > 90 || !grepl("^[-A-Za-z0-9_.()]+$", resource_group) ||
      endsWith(resource_group, ".")) {
    serverless_abort("{.arg resource_group} {.val {resource_group}} is invalid: use 1 to 90 letters, digits, {.code -_.()}, not ending in {.code .}.", "input")
  }
  if (!grepl("^[a-z][a-z0-9]{1,39}$", location)) {
    serverless_abort(c("{.arg location} {.val {location}} is not an Azure region name.",
                       i = "Use names like {.val westeurope}; list them with {.code az account list-locations -o table}."), "input")
  }
  if (!grepl("^[a-z0-9]{3,24}$", storage_account)) {
    serverless_abort("{.arg storage_account} {.val {storage_account}} is invalid: use 3 to 24 lowercase letters and digits.", "input")
  }
  if (!is.null(registry)) {
    check_string(registry)
    if (!grepl("^[A-Za-z0-9]{5,50}$", registry)) {
      serverless_abort("{.arg registry} {.val {registry}} is invalid: use 5 to 50 letters and digits.", "input")
    }
  }
  rust_check(rs_check_blob_path(paste0(container, "/x")))
  secrets <- new.env(parent = emptyenv())
  n_auth <- 0
  for (arg in c("storage_key", "storage_sas", "storage_token")) {
    value <- get(arg)
    if (!is.null(value)) {
      check_string(value, arg = arg)
      n_auth <- n_auth + 1
    }
  }
  # Checked here, before any call, and never repeated back: it is a secret.
  if (!is.null(storage_key) &&
      (!grepl("^[A-Za-z0-9+/]+={0,2}$", storage_key) || nchar(storage_key) %% 4 != 0)) {
    serverless_abort(c("{.arg storage_key} is not a storage account key: keys are base64 text.",
                       i = "Copy key1 or key2 from the storage account's Access keys in the Azure portal."),
                     "input")
  }
  if (!is.null(storage_sas) && !grepl("(^|&|\\?)sig=", storage_sas)) {
    serverless_abort(c("{.arg storage_sas} is not a SAS token: it has no {.code sig=} part.",
                       i = "Use the token part of a SAS URL (after {.code ?})."), "input")
  }
  # RFC 6750's b64token: a bearer token has no spaces or line breaks (a wrapped one, or
  # one pasted with its "Bearer " scheme, would fail only at the first request).
  if (!is.null(storage_token) && !grepl("^[A-Za-z0-9._~+/-]+=*$", storage_token)) {
    serverless_abort(c("{.arg storage_token} is not an access token: it has characters a bearer token cannot have (such as spaces or line breaks).",
                       i = "Give the token alone, without {.code Bearer }, e.g. from {.code az account get-access-token --resource https://storage.azure.com --query accessToken -o tsv}."),
                     "input")
  }
  if (n_auth > 1) {
    serverless_abort(c("Give at most one of {.arg storage_key}, {.arg storage_sas} or {.arg storage_token}.",
                       i = "With none, Blob Storage is reached with {.arg credential}."), "input")
  }
  # The default credential is resolved when first needed (`target_credential()`), so a
  # target with a storage secret never asks how to sign in until it calls Resource
  # Manager. (Not a promise: a saved target would carry the caller's frame with it.)
  if (missing(credential)) {
    secrets$default_credential <- TRUE
  } else {
    secrets$credential <- credential
  }
  secrets$key <- seal(storage_key)
  secrets$sas <- seal(if (!is.null(storage_sas)) sub("^[?]", "", storage_sas))
  secrets$token <- seal(storage_token)
  if (is.null(blob_endpoint)) {
    blob_endpoint <- sprintf("https://%s.blob.core.windows.net", storage_account)
  }
  for (arg in c("arm_endpoint", "authority_host")) {
    value <- get(arg)
    if (is.null(value)) next
    check_string(value, arg = arg)
    if (!grepl("^https://[^/?#@]+/?$", value)) {
      serverless_abort("{.arg {arg}} must be an https:// address without a path, not {.val {value}}.", "input")
    }
  }
  new_target(
    kind = "azure",
    subscription = subscription, resource_group = resource_group, location = location,
    storage_account = storage_account, blob_endpoint = blob_endpoint,
    arm_endpoint = if (!is.null(arm_endpoint)) sub("/$", "", arm_endpoint),
    authority_host = if (!is.null(authority_host)) sub("/$", "", authority_host),
    registry = registry, container = container, secrets = secrets
  )
}

# Resource Manager of Azure's public cloud: where a target without `arm_endpoint` goes.
public_arm_endpoint <- "https://management.azure.com"

new_target <- function(kind, storage_account, blob_endpoint, container, secrets, ...) {
  structure(
    list(
      kind = kind,
      storage_account = storage_account,
      blob_endpoint = blob_endpoint,
      container = container,
      ...,
      # An environment: str() and print() show `<environment>`, never its contents.
      secrets = secrets
    ),
    class = "serverless_target"
  )
}

# The storage description handed to Rust (the only place secrets leave `secrets`).
target_storage <- function(target, call = rlang::caller_env()) {
  check_live_target(target, call = call)
  s <- target$secrets
  out <- list(
    account = target$storage_account,
    endpoint = target$blob_endpoint,
    key = unseal(s$key, call = call),
    sas = unseal(s$sas, call = call),
    token = unseal(s$token, call = call),
    ca_pem = s$ca_pem,
    retry_seconds = retry_seconds()
  )
  if (is.null(s$key) && is.null(s$sas) && is.null(s$token)) {
    out$credential <- credential_spec(target_credential(target))
    out$endpoints <- target_endpoints(target)
  }
  out
}

target_credential <- function(target) {
  if (isTRUE(target$secrets$default_credential) && is.null(target$secrets$credential)) {
    target$secrets$credential <- az_credential()
  }
  cred <- get0("credential", envir = target$secrets, inherits = FALSE)
  if (!inherits(cred, "serverless_credential")) {
    serverless_abort("The target's {.arg credential} must come from {.fn az_credential}.", "input")
  }
  cred
}

target_endpoints <- function(target) {
  Filter(Negate(is.null), list(
    authority_host = target$authority_host,
    arm = target$arm_endpoint,
    ca_pem = target$secrets$ca_pem
  ))
}

# What Rust needs to call Resource Manager.
target_arm <- function(target, call = rlang::caller_env()) {
  check_live_target(target, call = call)
  list(endpoints = target_endpoints(target), credential = credential_spec(target_credential(target)))
}

# A local target whose local_azure() has ended (or that was restored from a file)
# reaches nothing: say so at once rather than retry a closed port.
check_live_target <- function(target, call = rlang::caller_env()) {
  if (identical(target$kind, "local") &&
      (isTRUE(target$secrets$stopped) || !rs_local_alive(target$secrets$local))) {
    serverless_abort(
      c("This local Azure has stopped: the scope of its {.fn local_azure} call ended, or it was restored from a file.",
        i = "Start a new one with {.fn local_azure}; give {.arg dir} to keep its data between sessions."),
      "input", call = call
    )
  }
  invisible(target)
}

target_auth_label <- function(target) {
  s <- target$secrets
  if (!is.null(s$key)) "account key" else if (!is.null(s$sas)) "SAS token"
  else if (!is.null(s$token)) "Entra ID token" else "credential"
}

# How long storage calls keep retrying transient failures: the option
# `serveRless.retry_seconds` (see ?serveRless), else the Azure SDK's default.
retry_seconds <- function() {
  x <- getOption("serveRless.retry_seconds")
  if (is.null(x)) return(NULL)
  check_seconds(x, 0, 24 * 3600, arg = "options(serveRless.retry_seconds)")
  as.numeric(x)
}
