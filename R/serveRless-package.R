#' @keywords internal
#' @useDynLib serveRless, .registration = TRUE
#' @importFrom rlang caller_env caller_arg
"_PACKAGE"
