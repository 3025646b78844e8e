# Credentials: how serveRless gets Entra ID tokens for ARM, Blob and ACR.

# The Azure CLI's public client id: works for device code sign-in without an app.
azure_cli_client_id <- "04b07795-8ddb-461a-bbee-02f9e1bf7b46"

#' Say how to sign in to Azure
#'
#' A credential describes how serveRless gets Entra ID tokens; one credential serves
#' Resource Manager, Blob Storage and the container registry. Tokens are fetched when
#' first needed, cached per scope and refreshed before they expire.
#'
#' * `"client_secret"`: a service principal (`tenant`, `client_id`, `client_secret`).
#' * `"device_code"`: interactive; prints a code and a URL, then waits for you to sign
#'   in (press Ctrl-C to cancel).
#' * `"managed_identity"`: the identity of the Azure resource R runs on (optionally a
#'   user-assigned one, by `client_id`).
#' * `"workload_identity"`: federated tokens (`AZURE_FEDERATED_TOKEN_FILE`), as in AKS
#'   and GitHub Actions.
#' * `"cli"`: the account you signed in to with `az login`.
#' * `"auto"`: the first that applies, in this order: a service principal in the
#'   environment (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_CLIENT_SECRET`), workload
#'   identity, managed identity (`IDENTITY_ENDPOINT` set), the Azure CLI (`az` on the
#'   `PATH`), else managed identity. It says which it chose.
#'
#' Secrets are never shown by `print()`, `format()` or `str()`, nor in error messages,
#' nor saved by `saveRDS()` (a credential read back from a file must be made again).
#'
#' @param type How to sign in; see Details.
#' @param tenant Tenant id (a GUID) or domain, e.g. `"contoso.onmicrosoft.com"`.
#' @param client_id Application (client) id.
#' @param client_secret Client secret (`"client_secret"` only).
#' @return A `serverless_credential`.
#' @examples
#' az_credential("client_secret", tenant = "contoso.onmicrosoft.com",
#'               client_id = "00000000-0000-0000-0000-000000000001",
#'               client_secret = "not-a-real-secret")
#' @export
az_credential <- function(type = c("auto", "cli", "client_secret", "managed_identity",
                                   "workload_identity", "device_code"),
                          tenant = NULL, client_id = NULL, client_secret = NULL) {
  if (!is.character(type) || length(type) < 1 || is.na(type[1])) {
    serverless_abort("{.arg type} must be one of {.val {eval(formals(az_credential)$type)}}.", "input")
  }
  type <- tryCatch(match.arg(type), error = function(e) {
    serverless_abort(c("{.arg type} {.val {type[1]}} is not a credential type.",
                       i = "Use one of {.val {eval(formals(az_credential)$type)}}."), "input",
                     call = rlang::caller_env(4))
  })
  for (arg in c("tenant", "client_id", "client_secret")) {
    value <- get(arg)
    if (!is.null(value)) check_string(value, arg = arg)
  }
  if (type == "auto") {
    return(auto_credential())
  }
  need <- switch(type,
    client_secret = c("tenant", "client_id", "client_secret"),
    device_code = character(),
    character()
  )
  missing <- need[vapply(need, function(a) is.null(get(a)), logical(1))]
  if (length(missing)) {
    serverless_abort(c("A {.val {type}} credential needs {.arg {missing}}.",
                       i = "Find them in the app registration of your service principal."), "input")
  }
  if (!is.null(tenant)) check_tenant(tenant)
  if (!is.null(client_id)) check_guid(client_id, "client_id")
  if (type == "device_code") {
    tenant <- tenant %||% "organizations"
    client_id <- client_id %||% azure_cli_client_id
  }
  if (type != "client_secret" && !is.null(client_secret)) {
    serverless_abort("{.arg client_secret} is only used by {.val client_secret} credentials.", "input")
  }
  new_credential(type, tenant = tenant, client_id = client_id, client_secret = client_secret)
}

new_credential <- function(type, tenant = NULL, client_id = NULL, client_secret = NULL,
                           source = NULL, endpoint = NULL) {
  secrets <- new.env(parent = emptyenv())
  secrets$client_secret <- seal(client_secret)
  structure(
    list(type = type, tenant = tenant, client_id = client_id, endpoint = endpoint,
         source = source, secrets = secrets),
    class = "serverless_credential"
  )
}

auto_credential <- function() {
  env <- function(x) {
    v <- Sys.getenv(x)
    if (nzchar(v)) v
  }
  pick <- function(type, source, ...) {
    cli::cli_inform(c(i = "Using the {.val {type}} credential ({source})."))
    cred <- az_credential(type, ...)
    cred$source <- source
    cred
  }
  if (!is.null(env("AZURE_CLIENT_ID")) && !is.null(env("AZURE_TENANT_ID")) &&
      !is.null(env("AZURE_CLIENT_SECRET"))) {
    return(pick("client_secret", "AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET",
                tenant = env("AZURE_TENANT_ID"), client_id = env("AZURE_CLIENT_ID"),
                client_secret = env("AZURE_CLIENT_SECRET")))
  }
  if (!is.null(env("AZURE_FEDERATED_TOKEN_FILE"))) {
    return(pick("workload_identity", "AZURE_FEDERATED_TOKEN_FILE",
                tenant = env("AZURE_TENANT_ID"), client_id = env("AZURE_CLIENT_ID")))
  }
  if (!is.null(env("IDENTITY_ENDPOINT")) || !is.null(env("MSI_ENDPOINT"))) {
    return(pick("managed_identity", "IDENTITY_ENDPOINT", client_id = env("AZURE_CLIENT_ID")))
  }
  if (nzchar(Sys.which("az"))) {
    return(pick("cli", "the Azure CLI is installed"))
  }
  pick("managed_identity", "no other credential found; the instance metadata service")
}

check_guid <- function(x, arg, call = rlang::caller_env()) {
  if (!grepl("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", x)) {
    serverless_abort("{.arg {arg}} must be a GUID, not {.val {x}}.", "input", call = call)
  }
}

check_tenant <- function(x, call = rlang::caller_env()) {
  ok <- grepl("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", x) ||
    x %in% c("organizations", "common") ||
    grepl("^[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+$", x)
  if (!ok) {
    serverless_abort("{.arg tenant} must be a tenant id (GUID) or domain, not {.val {x}}.",
                     "input", call = call)
  }
}

# The credential description handed to Rust (the only place its secret leaves `secrets`).
credential_spec <- function(cred) {
  Filter(Negate(is.null), list(
    type = cred$type, tenant = cred$tenant, client_id = cred$client_id,
    endpoint = cred$endpoint, client_secret = unseal(cred$secrets$client_secret)
  ))
}

# Secrets live on the Rust side (`rs_secret_seal()`): objects hold an external pointer,
# which saveRDS() writes as a null pointer. So no saved target, credential, deployment,
# run, schedule or error carries a secret, and a restored one says so when used.
seal <- function(x) {
  if (is.null(x)) NULL else rust_result(rs_secret_seal(x))
}

unseal <- function(x, call = rlang::caller_env()) {
  if (is.null(x)) {
    return(NULL)
  }
  value <- rs_secret_open(x)
  if (is.null(value)) {
    serverless_abort(
      c("This object's secrets were not saved with it: it was restored from a file ({.fn saveRDS}, a saved workspace) or made in another R session.",
        i = "Make the target again in this session with {.fn az_target} (and {.fn az_credential}) or {.fn local_azure}."),
      "auth", call = call
    )
  }
  value
}

#' @export
format.serverless_credential <- function(x, ...) {
  c(
    cli::style_bold(sprintf("<serverless_credential> %s", x$type)),
    if (!is.null(x$tenant)) sprintf("  tenant:    %s", x$tenant),
    if (!is.null(x$client_id)) sprintf("  client id: %s", x$client_id),
    if (!is.null(x$secrets$client_secret)) "  secret:    <hidden>",
    if (!is.null(x$source)) sprintf("  chosen:    %s", x$source)
  )
}

#' @export
print.serverless_credential <- function(x, ...) {
  cat(format(x), sep = "\n")
  invisible(x)
}
