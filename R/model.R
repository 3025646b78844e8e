# The model store: versioned bundles in Blob Storage.

#' Store, list and load model versions
#'
#' `store_model()` saves a *bundle* (the model, an optional `predict_fun`, the input
#' prototype `ptype`, the packages the model needs with their installed versions, the R
#' and serveRless versions) as a new version under `models/<name>/<version>/` in the
#' target's container. The bundle is serialized once, compressed, and streamed to Blob
#' Storage; its `manifest.json` (with sha256 and size) is written after it, so a version
#' is complete once listed. Storing a bundle identical to the newest version uploads
#' nothing and returns that version. Writes are conditional: two sessions storing at once
#' never overwrite each other.
#'
#' Formulas and terms in the model are saved without the environment they were created
#' in (it would carry the whole session along); use package functions in formulas.
#'
#' Model names are 3 to 63 lowercase letters, digits and single dashes, starting and
#' ending with a letter or digit (the rule of blob paths and Azure resource names).
#' Version ids are `<UTC timestamp>-<first 8 hex digits of the bundle's sha256>`.
#'
#' @param model A fitted model.
#' @param name Model name.
#' @param target A target from [az_target()] or [local_azure()].
#' @param predict_fun `function(model, newdata)` returning predictions, or `NULL` to
#'   use `predict()`. It must be self-contained (call functions as `pkg::fun()` and
#'   list their packages in `packages`): its enclosing environment is not saved.
#' @param ptype A zero-row data frame of the input columns, or `NULL` to capture it
#'   from the model where possible.
#' @param packages Extra packages the model needs at scoring time.
#' @return `store_model()`: a `serverless_model_version`. `model_versions()`: a data
#'   frame, oldest first. `load_model()`: a `serverless_bundle` with elements `model`,
#'   `predict_fun`, `ptype` and `metadata`.
#' @examples
#' # Starts Azurite and the control-plane emulator (`make setup` installs Azurite).
#' \donttest{
#' if (nzchar(Sys.which("azurite-blob"))) {
#' target <- local_azure()
#' fit <- lm(mpg ~ wt + hp, data = mtcars)
#' v <- store_model(fit, "mpg", target)
#' v
#' model_versions("mpg", target)
#' b <- load_model("mpg", target)
#' all.equal(predict(b$model, mtcars), predict(fit, mtcars))
#' }
#' }
#' @export
store_model <- function(model, name, target, predict_fun = NULL, ptype = NULL,
                        packages = NULL) {
  check_string(name)
  rust_check(rs_check_model_name(name))
  check_target(target)
  bundle <- model_bundle(model, predict_fun, ptype, packages)
  out <- rust_wait(rs_store_model(target_storage(target), target$container, name, bundle$file, bundle$meta))
  new_model_version(out$manifest, reused = out$reused, bytes_sent = out$bytes_sent)
}

# The bundle of a model, serialized to a temporary file that lives as long as the
# caller's frame: the model, predict_fun, ptype, and the packages it needs.
model_bundle <- function(model, predict_fun, ptype, packages, require_predict = FALSE,
                         call = rlang::caller_env()) {
  if (!is.null(predict_fun)) {
    if (!is.function(predict_fun)) {
      serverless_abort("{.arg predict_fun} must be a function(model, newdata) or NULL.", "input", call = call)
    }
    # It must be self-contained: the session it was written in is not saved with it.
    if (!isNamespace(environment(predict_fun))) environment(predict_fun) <- globalenv()
  }
  if (is.null(ptype)) {
    ptype <- model_ptype(model)
  } else if (!is.data.frame(ptype)) {
    serverless_abort("{.arg ptype} must be a data frame (zero rows is enough), not {.cls {class(ptype)[1]}}.",
                     "input", call = call)
  }
  if (!is.null(ptype)) ptype <- ptype[0, , drop = FALSE]
  pkgs <- model_packages(model, packages, predict_fun = predict_fun,
                         require_predict = require_predict, call = call)
  bundle <- list(
    model = drop_formula_envs(model),
    predict_fun = predict_fun,
    ptype = ptype,
    packages = pkgs,
    r_version = r_version(),
    serverless_version = serverless_version()
  )
  file <- withr::local_tempfile(pattern = "serverless-bundle-", .local_envir = call)
  write_bundle(bundle, file, call = call)
  meta <- list(
    model_class = class(model),
    packages = as.list(pkgs),
    r_version = bundle$r_version,
    serverless_version = bundle$serverless_version,
    ptype = ptype_description(ptype),
    has_predict_fun = !is.null(predict_fun)
  )
  list(file = file, meta = meta, packages = pkgs)
}

#' @rdname store_model
#' @export
model_versions <- function(name, target) {
  check_string(name)
  rust_check(rs_check_model_name(name))
  check_target(target)
  rows <- rust_wait(rs_model_versions(target_storage(target), target$container, name))
  versions_frame(rows)
}

#' @rdname store_model
#' @param version A version id, or `"latest"`.
#' @export
load_model <- function(name, target, version = "latest") {
  check_string(name)
  rust_check(rs_check_model_name(name))
  check_target(target)
  check_string(version)
  file <- withr::local_tempfile(pattern = "serverless-bundle-")
  manifest <- rust_wait(rs_load_model(target_storage(target), target$container, name, version, file))
  bundle <- tryCatch(
    readRDS(file),
    error = function(e) {
      serverless_abort("The bundle of model {.val {name}} version {.val {manifest$version}} cannot be read.",
                       "integrity", parent = e)
    }
  )
  structure(
    list(
      model = bundle$model,
      predict_fun = bundle$predict_fun,
      ptype = bundle$ptype,
      metadata = manifest
    ),
    class = "serverless_bundle"
  )
}

# Serialize straight to disk (never a second copy in memory). External pointers do not
# survive serialization, so a model holding one is refused: it would not work when
# loaded for scoring.
write_bundle <- function(bundle, file, call = rlang::caller_env()) {
  found <- NULL
  hook <- function(x) {
    if (typeof(x) == "externalptr" && is.null(found)) found <<- x
    NULL
  }
  con <- file(file, open = "wb")
  on.exit(close(con))
  tryCatch(
    serialize(bundle, con, xdr = FALSE, refhook = hook),
    error = function(e) {
      serverless_abort("The model cannot be serialized.", "input", parent = e, call = call)
    }
  )
  if (!is.null(found)) {
    serverless_abort(
      c("The model holds an external pointer, which cannot be saved and would not work when loaded.",
        i = "Models backed by C/C++ objects need their package's own serialization first (e.g. a raw vector).",
        i = "An external pointer can also come from the environment of a formula or function in the model; fit it where that environment holds no such objects."),
      "input", call = call
    )
  }
  invisible(file)
}

# Formulas and terms remember the environment they were created in: a function's
# frame, a test, the session. Saving it would drag all of that along (data, open
# connections) and it means nothing where the model is scored, so it becomes the
# global environment, as in a fresh session. Lists are walked; environments are not.
drop_formula_envs <- function(x, depth = 0L) {
  env <- attr(x, ".Environment", exact = TRUE)
  if (is.environment(env) && !identical(env, globalenv()) && !isNamespace(env)) {
    attr(x, ".Environment") <- globalenv()
  }
  if (is.list(x) && depth < 5L) {
    for (i in seq_along(x)) {
      if (!is.null(x[[i]])) x[[i]] <- drop_formula_envs(x[[i]], depth + 1L)
    }
  }
  terms <- attr(x, "terms", exact = TRUE)
  if (!is.null(terms) && depth < 5L) attr(x, "terms") <- drop_formula_envs(terms, depth + 1L)
  x
}

# The input prototype: the predictor columns, zero rows. NULL when unknown.
model_ptype <- function(model) {
  # `$` on an atomic vector is an error; such a "model" is refused later, classed.
  if (!is.list(model)) return(NULL)
  if (is.data.frame(model$model) && !is.null(model$terms)) {
    # lm, glm and friends keep their model frame.
    vars <- all.vars(stats::delete.response(model$terms))
    vars <- intersect(vars, names(model$model))
    return(model$model[0, vars, drop = FALSE])
  }
  if (inherits(model, "randomForest") && !is.null(model$forest$xlevels)) {
    cols <- lapply(model$forest$xlevels, function(lv) {
      if (is.character(lv)) factor(character(), levels = lv) else numeric()
    })
    return(as.data.frame(cols, stringsAsFactors = FALSE, optional = TRUE))
  }
  NULL
}

ptype_description <- function(ptype) {
  if (is.null(ptype)) {
    return(NULL)
  }
  lapply(ptype, function(col) {
    list(class = class(col)[1], levels = if (is.factor(col)) levels(col))
  })
}

# Packages the model needs: those defining predict methods for its classes (S3) or
# the classes themselves (S4), those `predict_fun` calls as `pkg::fun`, plus `extra`;
# each with its installed version. A package that is not installed is an input error,
# and, when `require_predict`, a model no installed package can predict with.
model_packages <- function(model, extra = NULL, predict_fun = NULL, require_predict = FALSE,
                           call = rlang::caller_env()) {
  if (!is.null(extra) && (!is.character(extra) || anyNA(extra))) {
    serverless_abort("{.arg packages} must be a character vector of package names.", "input", call = call)
  }
  if (!is.null(extra)) {
    check_utf8(extra, arg = "packages", call = call)
    # R's rule for package names (Writing R Extensions, 1.1.1).
    bad <- extra[!grepl("^[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]$", extra)]
    if (length(bad)) {
      serverless_abort(c("{.arg packages} holds {.val {bad}}, which {?is/are} not {?a package name/package names}.",
                         i = "Package names have letters, digits and dots, start with a letter and do not end with a dot."),
                       "input", call = call)
    }
  }
  pkgs <- character()
  has_method <- FALSE
  for (cls in class(model)) {
    method <- utils::getS3method("predict", cls, optional = TRUE)
    if (!is.null(method)) {
      has_method <- TRUE
      pkg <- environmentName(environment(method))
      if (nzchar(pkg) && !pkg %in% c("base", "stats", "R_GlobalEnv")) pkgs <- c(pkgs, pkg)
    }
  }
  s4_pkg <- attr(class(model), "package")
  if (isS4(model) && !is.null(s4_pkg)) {
    has_method <- TRUE
    if (!s4_pkg %in% c("base", "stats", "methods", ".GlobalEnv")) pkgs <- c(pkgs, s4_pkg)
  }
  if (require_predict && !has_method && is.null(predict_fun)) {
    serverless_abort(
      c("No installed package has a {.fn predict} method for a model of class {.cls {class(model)}}.",
        i = "Install the package that fitted it, or give {.arg predict_fun} (and its {.arg packages})."),
      "input", call = call
    )
  }
  if (!is.null(predict_fun)) pkgs <- c(pkgs, called_packages(body(predict_fun)))
  pkgs <- unique(c(pkgs, extra))
  pkgs <- setdiff(pkgs, c(base_packages, "serveRless"))
  missing <- pkgs[!vapply(pkgs, function(p) nzchar(system.file(package = p)), logical(1))]
  if (length(missing)) {
    serverless_abort(c("{.pkg {missing}} {?is/are} not installed.",
                       i = "Install what is missing, or drop it from {.arg packages}."),
                     "input", call = call)
  }
  vapply(pkgs, package_version_string, "")
}

# The packages a function body calls as `pkg::fun` or `pkg:::fun`.
called_packages <- function(expr) {
  # all.names() lists `::` followed by the package name, for every such call.
  nms <- all.names(expr)
  unique(nms[which(nms %in% c("::", ":::")) + 1L])
}

# The packages that ship with R itself and never need installing.
base_packages <- c("base", "compiler", "datasets", "graphics", "grDevices", "grid", "methods",
                   "parallel", "splines", "stats", "stats4", "tcltk", "tools", "utils")

# The version exactly as its DESCRIPTION says ("4.7-1.1", not "4.7.1.1").
package_version_string <- function(pkg) {
  utils::packageDescription(pkg, fields = "Version")
}

r_version <- function() paste(R.version$major, R.version$minor, sep = ".")

serverless_version <- function() as.character(utils::packageVersion("serveRless"))

new_model_version <- function(manifest, reused, bytes_sent) {
  structure(
    list(
      name = manifest$name,
      version = manifest$version,
      created = parse_time(manifest$created),
      sha256 = manifest$sha256,
      size = manifest$size,
      reused = reused,
      bytes_sent = bytes_sent,
      manifest = manifest
    ),
    class = "serverless_model_version"
  )
}

versions_frame <- function(rows) {
  col <- function(f, type) vapply(rows, f, type)
  data.frame(
    version = col(function(m) m$version, ""),
    created = parse_time(col(function(m) m$created, "")),
    size = col(function(m) as.numeric(m$size), 0),
    sha256 = col(function(m) m$sha256, ""),
    model_class = col(function(m) m$meta$model_class[[1]] %||% NA_character_, ""),
    r_version = col(function(m) m$meta$r_version %||% NA_character_, ""),
    stringsAsFactors = FALSE
  )
}
