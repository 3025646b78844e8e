#' @section Options:
#' - `serveRless.retry_seconds`: how long Blob Storage calls keep retrying transient
#'   failures (refused connections, throttling, server errors) before they fail, in
#'   seconds. The default (`NULL`) is the Azure SDK's: about a minute. Lower it where
#'   a quick failure is worth more than riding out an outage, e.g. in tests.
#' - `serveRless.show_build_log`: `TRUE` prints an image build's log lines as they
#'   come, instead of a one-line status (the whole log is kept: [deploy_log()]).
#' @keywords internal
#' @useDynLib serveRless, .registration = TRUE
#' @importFrom rlang caller_env caller_arg
"_PACKAGE"
