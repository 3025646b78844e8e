# Blob helpers. Paths are "container/path/in/container" in the target's storage account.

#' Move files to and from Blob Storage
#'
#' Uploads stream from disk in blocks sent in parallel, each with its MD5 checked by the
#' service; the whole file's sha256 is stored with the blob and checked on every
#' download. An interrupted upload resumes: running it again sends only the blocks the
#' service does not hold yet. Downloads go to `<file>.part` and are renamed only when
#' complete and verified.
#'
#' @param target A target from [az_target()] or [local_azure()].
#' @param file Local file.
#' @param path Blob path, `"container/path/in/container"`.
#' @param overwrite Replace an existing blob (upload) or file (download)?
#' @return `blob_upload()` and `blob_download()` return a list describing the transfer
#'   (size, sha256, blocks sent), invisibly. `blob_list()` returns a data frame with
#'   columns `path`, `size` and `last_modified`. `blob_delete()` returns `path`,
#'   invisibly.
#' @examples
#' # Starts Azurite and the control-plane emulator (`make setup` installs Azurite).
#' \donttest{
#' if (nzchar(Sys.which("azurite-blob"))) {
#' target <- local_azure()
#' f <- tempfile(fileext = ".csv")
#' write.csv(mtcars, f)
#' blob_upload(target, f, "serverless/data/in/mtcars.csv")
#' blob_list(target, "serverless/data/")
#' blob_download(target, "serverless/data/in/mtcars.csv", tempfile(fileext = ".csv"))
#' blob_delete(target, "serverless/data/in/mtcars.csv")
#' }
#' }
#' @name blob
NULL

#' @rdname blob
#' @export
blob_upload <- function(target, file, path, overwrite = TRUE) {
  check_target(target)
  check_string(file)
  check_string(path)
  check_flag(overwrite)
  if (!file.exists(file) || dir.exists(file)) {
    serverless_abort("File {.file {file}} does not exist.", "input")
  }
  rust_check(rs_check_blob_path(path))
  out <- rust_wait(rs_blob_upload(target_storage(target), normalizePath(file), path, overwrite))
  invisible(out)
}

#' @rdname blob
#' @export
blob_download <- function(target, path, file, overwrite = FALSE) {
  check_target(target)
  check_string(path)
  check_string(file)
  check_flag(overwrite)
  rust_check(rs_check_blob_path(path))
  if (file.exists(file) && !overwrite) {
    serverless_abort(c("File {.file {file}} already exists.",
                       i = "Use {.code overwrite = TRUE} to replace it."), "input")
  }
  if (!dir.exists(dirname(file))) {
    serverless_abort("Directory {.file {dirname(file)}} does not exist.", "input")
  }
  file <- file.path(normalizePath(dirname(file)), basename(file))
  out <- rust_wait(rs_blob_download(target_storage(target), path, file))
  invisible(out)
}

#' @rdname blob
#' @param prefix `"container/prefix"`; `""` lists the target's container.
#' @export
blob_list <- function(target, prefix = "") {
  check_target(target)
  if (!is.character(prefix) || length(prefix) != 1 || is.na(prefix)) {
    serverless_abort("{.arg prefix} must be a single string.", "input")
  }
  check_utf8(prefix)
  parts <- split_prefix(prefix, target)
  rows <- rust_wait(rs_blob_list(target_storage(target), parts$container, parts$prefix))
  data.frame(
    path = vapply(rows, `[[`, "", "path"),
    size = vapply(rows, function(r) as.numeric(r$size), 0),
    last_modified = parse_time(vapply(rows, function(r) r$last_modified %||% NA_character_, "")),
    stringsAsFactors = FALSE
  )
}

#' @rdname blob
#' @export
blob_delete <- function(target, path) {
  check_target(target)
  check_string(path)
  rust_check(rs_check_blob_path(path))
  rust_wait(rs_blob_delete(target_storage(target), path))
  invisible(path)
}

split_prefix <- function(prefix, target, call = rlang::caller_env()) {
  prefix <- sub("^/", "", prefix)
  if (!nzchar(prefix)) {
    return(list(container = target$container, prefix = ""))
  }
  container <- sub("/.*$", "", prefix)
  rust_check(rs_check_blob_path(paste0(container, "/x")), call = call)
  rest <- if (grepl("/", prefix, fixed = TRUE)) sub("^[^/]*/", "", prefix) else ""
  list(container = container, prefix = rest)
}

parse_time <- function(x) {
  as.POSIXct(sub("Z$", "", x), format = "%Y-%m-%dT%H:%M:%OS", tz = "UTC")
}

`%||%` <- function(x, y) if (is.null(x)) y else x
