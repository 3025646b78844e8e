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
#' Formulas, terms and `predict_fun` keep what they use from the environment they were
#' made in: the variables and helper functions their expressions name (`deg` in
#' `poly(wt, deg)`, `k` in `I(disp / k)`, a value a `predict_fun` closes over) are
#' saved with the bundle; nothing else of that environment is. Functions from packages
#' that R does not attach by default (such as `ns()` after `library(splines)`) are kept
#' and their packages pinned. Models that predict through a list or an S4 generic
#' (ranger, `MASS::lda`, kernlab, glmnet) work without `predict_fun`: see
#' [predict_adapters].
#'
#' With `data` (a few example rows), the saved bundle is loaded in a fresh R process
#' that has only the packages its runtime image will hold and must predict the rows as
#' this session does; [deploy_model()] does this whenever it has rows (given, or taken
#' from the training data the model keeps). Models holding external pointers (lme4,
#' glmmTMB) are stored only after such a check.
#'
#' Model names are 3 to 63 lowercase letters, digits and single dashes, starting and
#' ending with a letter or digit (the rule of blob paths and Azure resource names).
#' Version ids are `<UTC timestamp>-<first 8 hex digits of the bundle's sha256>`.
#'
#' @param model A fitted model.
#' @param name Model name.
#' @param target A target from [az_target()] or [local_azure()].
#' @param predict_fun `function(model, newdata)` returning predictions, or `NULL` to
#'   use `predict()` (or the model's adapter). What it uses from its enclosing
#'   environment is saved with it; functions of packages it calls as `pkg::fun()` are
#'   found and their packages pinned.
#' @param ptype A zero-row data frame of the input columns, or `NULL` to capture it
#'   from the model where possible.
#' @param packages Extra packages the model needs at scoring time.
#' @param predict_args A named list of arguments passed to `predict()` (or to an
#'   adapter, see [predict_adapters]), e.g. `list(type = "response")` for a glm.
#' @param data A data frame of a few example rows (the model's input columns), for the
#'   fresh-session check described above, or `NULL`.
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
                        packages = NULL, predict_args = list(), data = NULL) {
  check_string(name)
  rust_check(rs_check_model_name(name))
  check_target(target)
  bundle <- model_bundle(model, predict_fun, ptype, packages, predict_args, data)
  out <- rust_wait(rs_store_model(target_storage(target), target$container, name, bundle$file, bundle$meta))
  new_model_version(out$manifest, reused = out$reused, bytes_sent = out$bytes_sent)
}

# The bundle of a model, serialized to a temporary file that lives as long as the
# caller's frame: the model and predict_fun with their environments packed, ptype,
# predict_args, and the packages it needs. With example rows (`data`, or rows the
# model keeps) and `preflight`, the bundle must predict in a fresh R with only the
# image's packages what this session predicts.
model_bundle <- function(model, predict_fun, ptype, packages, predict_args = list(), data = NULL,
                         require_predict = FALSE, preflight = FALSE, call = rlang::caller_env()) {
  if (!is.null(predict_fun) && !is.function(predict_fun)) {
    serverless_abort("{.arg predict_fun} must be a function(model, newdata) or NULL.", "input", call = call)
  }
  if (!is.list(predict_args) || is.data.frame(predict_args) ||
      (length(predict_args) && (is.null(names(predict_args)) || any(!nzchar(names(predict_args)))))) {
    serverless_abort("{.arg predict_args} must be a named list of arguments for {.fn predict}.", "input", call = call)
  }
  if (!is.null(data) && (!is.data.frame(data) || !nrow(data))) {
    serverless_abort("{.arg data} must be a data frame with a few example rows to score.", "input", call = call)
  }
  if (is.null(ptype)) {
    ptype <- model_ptype(model)
  } else if (!is.data.frame(ptype)) {
    serverless_abort("{.arg ptype} must be a data frame (zero rows is enough), not {.cls {class(ptype)[1]}}.",
                     "input", call = call)
  }
  if (!is.null(ptype)) {
    ptype <- ptype[0, , drop = FALSE]
    rownames(ptype) <- NULL # mtcars' row names leave a character attribute behind
  }
  rows <- if (!is.null(data)) utils::head(data, 20)
  if (!is.null(data)) check_rows_against_ptype(rows, ptype, "data", call = call)
  response <- tryCatch({
    f <- stats::formula(model)
    if (length(f) == 3) all.vars(f[[2]])
  }, error = function(e) NULL)
  packer <- new_env_packer(exclude = unique(c(names(ptype), names(data), response)))
  packed_model <- pack_model(model, packer)
  packed_fun <- if (!is.null(predict_fun)) pack_function(predict_fun, packer)
  pkgs <- model_packages(model, c(packages, adapter_packages(model), packer$packages), predict_fun = predict_fun,
                         require_predict = require_predict, call = call)
  bundle <- list(
    model = packed_model,
    predict_fun = packed_fun,
    ptype = ptype,
    predict_args = predict_args,
    packages = pkgs,
    r_version = r_version(),
    serverless_version = serverless_version()
  )
  file <- withr::local_tempfile(pattern = "serverless-bundle-", .local_envir = call)
  pointer <- write_bundle(bundle, file, call = call)
  checked <- FALSE
  if (is.null(rows) && (preflight || pointer)) rows <- model_example_rows(model, ptype)
  if (!is.null(rows)) {
    local <- list(model = model, predict_fun = predict_fun, ptype = ptype, predict_args = predict_args)
    preflight_bundle(file, local, rows, pkgs, user_rows = !is.null(data), call = call)
    checked <- TRUE
  }
  if (pointer && !checked) {
    serverless_abort(
      c("The model holds an external pointer, which is not saved: it works after loading only if its package rebuilds it.",
        i = "Give a few example rows as {.arg data}: the model is then loaded and checked in a fresh R first."),
      "input", call = call
    )
  }
  meta <- list(
    model_class = class(model),
    packages = as.list(pkgs),
    r_version = bundle$r_version,
    serverless_version = bundle$serverless_version,
    ptype = ptype_description(ptype),
    has_predict_fun = !is.null(predict_fun)
  )
  list(file = file, meta = meta, packages = pkgs, ptype = ptype)
}

# The pre-flight: `rows` predicted here with the model as it is in the session, and in
# a fresh R (the R of this session, by absolute path, not whatever `Rscript` is on
# PATH) that sees only the packages the runtime image will hold, from the saved
# bundle. Any failure or difference is an input error, before anything is uploaded.
preflight_bundle <- function(file, local, rows, pkgs, user_rows, call = rlang::caller_env()) {
  here <- tryCatch(predict_bundle(local, rows), error = function(e) e)
  if (inherits(here, "error")) {
    rows_from <- if (user_rows) "the example rows" else "rows of the model's training data"
    serverless_abort(c("Predicting {rows_from} in this session fails: {conditionMessage(here)}",
                       i = "Scoring calls {.fn predict} (or {.arg predict_fun}) the same way; fix it here first."),
                     "input", call = call)
  }
  lib <- withr::local_tempdir(pattern = "serverless-runtime-lib-")
  for (p in c(unlist(image_packages(pkgs), use.names = FALSE), "serveRless")) {
    file.symlink(find.package(p), file.path(lib, p))
  }
  rows_file <- withr::local_tempfile(fileext = ".rds")
  out_file <- withr::local_tempfile(fileext = ".rds")
  saveRDS(rows, rows_file)
  rscript <- file.path(R.home("bin"), "Rscript")
  res <- processx::run(
    rscript, c("--vanilla", "-e", "serveRless:::preflight_child(commandArgs(TRUE))", file, rows_file, out_file),
    # Not R CMD check's R_TESTS either: R's startup would source that file (a path
    # relative to the tests directory) in the child, which is not where it runs.
    env = c("current", R_LIBS = lib, R_LIBS_USER = lib, R_LIBS_SITE = lib, R_TESTS = ""),
    error_on_status = FALSE, timeout = 300
  )
  there <- if (file.exists(out_file)) readRDS(out_file) else list(error = paste(utils::tail(strsplit(res$stderr, "\n")[[1]], 3), collapse = " "))
  if (!is.null(there$error)) {
    serverless_abort(
      c("The model does not predict in a fresh R session with only the packages its image will hold: {there$error}",
        i = "If it needs a package that was not found, add it to {.arg packages}.",
        i = "If it uses objects of this session, make them arguments or list elements of the model."),
      "input", call = call
    )
  }
  same <- all.equal(here, there$pred, check.attributes = FALSE)
  if (!isTRUE(same)) {
    serverless_abort(
      c("The model predicts differently in a fresh R session than in this one: {paste(utils::head(same, 3), collapse = '; ')}",
        i = "The model or {.arg predict_fun} uses something of this session that is not saved with it (a global option, a variable found by name).",
        i = "Make it an argument, or pass what it needs in the model."),
      "input", call = call
    )
  }
  invisible(TRUE)
}

# The packages a model needs, loaded so predict() dispatches to their methods; an
# error naming the first one missing.
load_bundle_packages <- function(pkgs) {
  for (pkg in pkgs) {
    if (!requireNamespace(pkg, quietly = TRUE)) {
      stop(sprintf("package %s, which the model needs, is not installed in the runtime", pkg), call. = FALSE)
    }
  }
  invisible()
}

# In the fresh R of the pre-flight: what the scoring job does with a bundle.
preflight_child <- function(args) {
  result <- tryCatch({
    bundle <- readRDS(args[[1]])
    load_bundle_packages(names(bundle$packages))
    list(pred = predict_bundle(bundle, readRDS(args[[2]])))
  }, error = function(e) list(error = conditionMessage(e)))
  saveRDS(result, args[[3]])
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
      predict_args = bundle$predict_args %||% list(),
      metadata = manifest
    ),
    class = "serverless_bundle"
  )
}

# Serialize straight to disk (never a second copy in memory). Returns whether the
# bundle holds an external pointer: those are saved as NULL, which some packages rebuild
# (lme4, glmmTMB) and others do not, so the caller checks the bundle in a fresh R.
write_bundle <- function(bundle, file, call = rlang::caller_env()) {
  found <- FALSE
  hook <- function(x) {
    if (typeof(x) == "externalptr") found <<- TRUE
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
  found
}

# Formulas, terms and functions remember the environment they were made in: a
# function's frame, a test, the session. Saved whole it would drag everything in it
# along; dropped, the model loses what it really uses (`deg` in `poly(wt, deg)`, a
# helper function, a variable a predict_fun closes over). So each such environment
# becomes a small one, child of the global environment, holding only the names its
# expressions use, taken from where they were defined. Names from the packages a fresh
# R attaches are left to the search path; functions of other packages are kept (they
# save as a reference to their namespace) and their packages recorded. Data columns
# (`exclude`) are never taken from the environment.
new_env_packer <- function(exclude = character()) {
  state <- new.env(parent = emptyenv())
  state$from <- list()
  state$to <- list()
  state$packages <- character()
  state$exclude <- exclude
  state
}

# The packages Rscript attaches: what they define is found without saving it.
attached_by_default <- c("base", "methods", "datasets", "utils", "grDevices", "graphics", "stats")

is_package_env <- function(env) {
  is.null(env) || identical(env, emptyenv()) || identical(env, baseenv()) || isNamespace(env) ||
    startsWith(environmentName(env), "package:") || identical(env, .BaseNamespaceEnv)
}

# The model with its formulas' and terms' environments packed; lists and S4 slots are
# walked (without method dispatch: partykit defines `[[` for its trees), data frame
# columns and functions inside the model are not.
pack_model <- function(x, state, depth = 0L) {
  if (is.function(x) || is.environment(x) || depth > 6L) return(x)
  if (is.environment(attr(x, ".Environment", exact = TRUE))) x <- pack_formula(x, state)
  for (a in c("terms", "formula")) {
    v <- attr(x, a, exact = TRUE)
    if (!is.null(v)) attr(x, a) <- pack_model(v, state, depth + 1L)
  }
  if (isS4(x)) {
    for (s in methods::slotNames(x)) {
      v <- methods::slot(x, s)
      if (is.list(v) || !is.null(attributes(v))) methods::slot(x, s, check = FALSE) <- pack_model(v, state, depth + 1L)
    }
  } else if (is.list(x) && !is.data.frame(x)) {
    attrs <- attributes(x)
    y <- unclass(x)
    for (i in seq_along(y)) {
      el <- .subset2(y, i)
      if (!is.null(el) && !is.function(el)) y[[i]] <- pack_model(el, state, depth + 1L)
    }
    attributes(y) <- attrs
    x <- y
  }
  x
}

pack_formula <- function(x, state) {
  env <- attr(x, ".Environment", exact = TRUE)
  if (is_package_env(env)) return(x)
  used <- unique(c(all.names(x), all.names(attr(x, "predvars", exact = TRUE)),
                   all.names(attr(x, "variables", exact = TRUE))))
  attr(x, ".Environment") <- packed_env(env, used, state)
  x
}

pack_function <- function(f, state) {
  env <- environment(f)
  f <- utils::removeSource(f)
  if (is_package_env(env)) return(f)
  environment(f) <- packed_env(env, codetools::findGlobals(f, merge = TRUE), state)
  f
}

# The packed twin of `env` (one per environment, so shared ones stay shared), with
# `names` added.
packed_env <- function(env, names, state) {
  new <- NULL
  for (i in seq_along(state$from)) {
    if (identical(state$from[[i]], env)) new <- state$to[[i]]
  }
  if (is.null(new)) {
    new <- new.env(parent = globalenv())
    state$from <- c(state$from, list(env))
    state$to <- c(state$to, list(new))
  }
  for (name in sort(setdiff(names, c(state$exclude, "~", ".")))) {
    if (exists(name, envir = new, inherits = FALSE)) next
    found <- find_binding(name, env)
    if (is.null(found)) next
    if (!is.null(found$package)) {
      if (found$package %in% attached_by_default) next
      state$packages <- c(state$packages, found$package)
      assign(name, found$value, envir = new)
    } else {
      assign(name, NULL, envir = new) # a placeholder, so recursion through it ends
      value <- found$value
      if (is.function(value)) {
        value <- pack_function(value, state)
      } else if (is.environment(attr(value, ".Environment", exact = TRUE))) {
        value <- pack_formula(value, state)
      }
      assign(name, value, envir = new)
    }
  }
  new
}

# Where `name` is defined, seen from `env`: its value, and the package it comes from
# (NULL for the session's own objects).
find_binding <- function(name, env) {
  e <- env
  while (!identical(e, emptyenv())) {
    if (exists(name, envir = e, inherits = FALSE)) {
      value <- get(name, envir = e, inherits = FALSE)
      pkg <- NULL
      if (identical(e, baseenv()) || identical(e, .BaseNamespaceEnv)) {
        pkg <- "base"
      } else if (isNamespace(e)) {
        pkg <- getNamespaceName(e)
      } else if (startsWith(environmentName(e), "package:")) {
        pkg <- sub("^package:", "", environmentName(e))
      } else if (startsWith(environmentName(e), "imports:") || identical(parent.env(e), .BaseNamespaceEnv)) {
        # A namespace's imports: the function's own namespace says where it is from.
        fe <- if (is.function(value)) environment(value)
        pkg <- if (isNamespace(fe)) getNamespaceName(fe) else "base"
      }
      return(list(value = value, package = unname(pkg)))
    }
    e <- parent.env(e)
  }
  NULL
}

# The variables of a model's formula (right-hand side), or NULL.
model_formula_vars <- function(model) {
  vars <- character()
  terms <- tryCatch(stats::terms(model), error = function(e) NULL)
  if (is.null(terms) && is.list(model)) terms <- model$Terms # gbm
  if (inherits(terms, "formula")) vars <- all.vars(stats::delete.response(terms))
  f <- tryCatch(stats::formula(model), error = function(e) NULL)
  if (inherits(f, "formula")) {
    rhs <- if (length(f) == 3) f[[3]] else f[[2]]
    vars <- union(vars, all.vars(rhs)) # random effects' grouping variables (lme4, glmmTMB)
  }
  vars <- setdiff(vars, ".")
  env <- if (inherits(terms, "formula")) environment(terms) else if (inherits(f, "formula")) environment(f)
  if (!length(vars)) return(NULL)
  list(vars = vars, env = env)
}

# The data the model was trained on, as far as it keeps it: the frames it holds, or the
# data frame its call names (only a plain name is looked up, never evaluated). Only the
# formula's data columns: variables found in its environment (`k` in `I(disp / k)`)
# are not columns.
training_frame <- function(model) {
  fv <- model_formula_vars(model)
  if (is.null(fv)) return(NULL)
  candidates <- list()
  if (isS4(model) && methods::.hasSlot(model, "frame")) candidates <- c(candidates, list(model@frame))
  if (is.list(model)) candidates <- c(candidates, list(model$model, model$frame, model$data, model$trainingData))
  call <- tryCatch(stats::getCall(model), error = function(e) NULL)
  if (is.null(call) && isS4(model) && methods::.hasSlot(model, "call")) call <- model@call
  if (is.call(call) && is.name(call$data) && is.environment(fv$env)) {
    candidates <- c(candidates, list(get0(as.character(call$data), envir = fv$env)))
  }
  for (frame in candidates) {
    if (!is.data.frame(frame)) next
    cols <- intersect(fv$vars, names(frame))
    rest <- setdiff(fv$vars, cols)
    if (length(cols) && all(vapply(rest, function(v) !is.null(fv$env) && exists(v, envir = fv$env), logical(1)))) {
      return(as.data.frame(frame)[, cols, drop = FALSE])
    }
  }
  NULL
}

# The input prototype: the predictor columns, zero rows. NULL when unknown.
model_ptype <- function(model) {
  if (inherits(model, c("glmnet", "cv.glmnet"))) {
    vars <- glmnet_variables(model)
    cols <- stats::setNames(rep(list(numeric()), length(vars)), vars)
    return(as.data.frame(cols, optional = TRUE))
  }
  # `$` on an atomic vector is an error; such a "model" is refused later, classed.
  if (!is.list(model) && !isS4(model)) return(NULL)
  frame <- tryCatch(training_frame(model), error = function(e) NULL)
  if (!is.null(frame)) return(frame[0, , drop = FALSE])
  if (inherits(model, "randomForest") && !is.null(model$forest$xlevels)) {
    cols <- lapply(model$forest$xlevels, function(lv) {
      if (is.character(lv)) factor(character(), levels = lv) else numeric()
    })
    return(as.data.frame(cols, stringsAsFactors = FALSE, optional = TRUE))
  }
  NULL
}

# A few rows the model was trained on, to check it predicts in a fresh R; NULL if it
# keeps none.
model_example_rows <- function(model, ptype) {
  if (is.null(ptype) || !ncol(ptype)) return(NULL)
  frame <- tryCatch(training_frame(model), error = function(e) NULL)
  if (is.null(frame) || !all(names(ptype) %in% names(frame))) return(NULL)
  utils::head(frame[, names(ptype), drop = FALSE], 5)
}

# The ptype as plain data for the manifest and the deployment record: one entry per
# column, in order, with what rebuilds it (`ptype_from_description()`).
ptype_description <- function(ptype) {
  if (is.null(ptype)) {
    return(NULL)
  }
  unname(Map(function(name, col) {
    drop_nulls(list(name = name, class = class(col)[1],
                    levels = if (is.factor(col)) as.list(levels(col)),
                    tzone = if (inherits(col, "POSIXct")) attr(col, "tzone") %||% ""))
  }, names(ptype), ptype))
}

# The zero-row ptype back from its description; NULL when there is none or a column
# is of a class it cannot rebuild (a check against a guess would refuse good data).
ptype_from_description <- function(desc) {
  if (!is.list(desc) || !length(desc)) return(NULL)
  cols <- lapply(desc, function(d) {
    levels <- as.character(unlist(d$levels))
    switch(d$class %||% "",
      factor = factor(character(), levels = levels),
      ordered = factor(character(), levels = levels, ordered = TRUE),
      logical = logical(), integer = integer(), numeric = double(), character = character(),
      Date = as.Date(character()),
      POSIXct = as.POSIXct(character(), tz = d$tzone %||% ""),
      NULL)
  })
  if (any(vapply(cols, is.null, logical(1)))) return(NULL)
  names(cols) <- vapply(desc, function(d) d$name %||% "", "")
  as.data.frame(cols, stringsAsFactors = FALSE, optional = TRUE)
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
