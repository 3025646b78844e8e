#' @keywords internal
#' @useDynLib serveRless, .registration = TRUE
"_PACKAGE"
