# Predicting with a bundle: the adapters for predict idioms, the conversion of inputs to
# the model's ptype, and the shape of the predictions. The scoring job, the deploy-time
# pre-flight and the session all go through predict_bundle(), so they cannot differ.

#' Models that predict without a `predict_fun`
#'
#' Most models score with `predict(model, newdata)`. Some common ones do not return
#' one value (or one row) per input from it, or need other arguments; for those,
#' serveRless has an *adapter*, used whenever no `predict_fun` is given. Arguments in
#' `predict_args` (of [store_model()] and [deploy_model()]) are passed on to
#' `predict()`.
#'
#' | model class | package | what is called | predictions |
#' |---|---|---|---|
#' | `ranger` | ranger | `predict(model, data = newdata)$predictions` | `.pred`, or `.pred_<class>` for a probability forest |
#' | `lda`, `qda` | MASS | `predict(model, newdata)$class`; with `predict_args = list(type = "prob")` its `$posterior` | `.pred`, or `.pred_<class>` |
#' | `glmnet`, `cv.glmnet` | glmnet | `predict(model, newx = as.matrix(newdata[, <its variables>]), s = )` | `.pred`; `s` from `predict_args` (for `cv.glmnet` by default `"lambda.1se"`, as glmnet does); a `glmnet` fit needs `s` |
#' | any S4 model (e.g. `ksvm`) | the class's package | the S4 `predict` generic of that package (e.g. kernlab's) | as returned |
#'
#' Packages a model needs at scoring time are found and pinned: those defining the
#' `predict` method of its class, the package of an S4 class, functions a formula or
#' `predict_fun` uses from attached packages (such as `ns()` after
#' `library(splines)`), and for `caret::train` models the packages of the method
#' (`modelInfo$library`).
#'
#' Whatever is called, the result becomes prediction columns: a vector or a factor is
#' `.pred`; a one-column matrix is `.pred`; a matrix or data frame with more columns is
#' `.pred_<column>` (made valid R names). A list (other than a data frame) is refused:
#' give a `predict_fun` that picks what to keep.
#'
#' To add an adapter, add an entry to `predict_adapters` in `R/predict.R`.
#'
#' @name predict_adapters
#' @aliases serverless_predict_adapters
#' @seealso [store_model()], [deploy_model()]
#' @examples
#' # ranger's predict() returns a list; the adapter keeps $predictions.
#' if (requireNamespace("ranger", quietly = TRUE)) {
#'   fit <- ranger::ranger(mpg ~ wt + hp, data = mtcars, num.trees = 20, seed = 1)
#'   bundle <- list(model = fit, predict_fun = NULL, ptype = mtcars[0, c("wt", "hp")])
#'   head(serveRless:::predict_bundle(bundle, mtcars[1:3, c("wt", "hp")]))
#' }
NULL

# One entry per idiom: `classes` it applies to, the `package` whose predict method it
# calls, and `predict(model, newdata, args)`. The first entry whose class matches wins.
predict_adapters <- list(
  list(
    classes = "ranger", package = "ranger",
    predict = function(model, newdata, args) {
      do.call(stats::predict, c(list(model, data = newdata), args))$predictions
    }
  ),
  list(
    classes = c("lda", "qda"), package = "MASS",
    predict = function(model, newdata, args) {
      prob <- identical(args$type, "prob")
      args$type <- NULL
      p <- do.call(stats::predict, c(list(model, newdata), args))
      if (prob) p$posterior else p$class
    }
  ),
  list(
    classes = c("cv.glmnet", "glmnet"), package = "glmnet",
    predict = function(model, newdata, args) {
      vars <- glmnet_variables(model)
      missing <- setdiff(vars, names(newdata))
      if (length(missing)) stop("missing column(s) ", paste(missing, collapse = ", "))
      args$s <- args$s %||% if (inherits(model, "cv.glmnet")) "lambda.1se"
      if (is.null(args$s)) {
        stop("a glmnet fit predicts one column per lambda: give predict_args = list(s = <lambda>)")
      }
      newx <- as.matrix(newdata[, vars, drop = FALSE])
      do.call(stats::predict, c(list(model, newx = newx), args))
    }
  )
)

# The predictors of a glmnet or cv.glmnet fit (multinomial fits keep one beta per class).
glmnet_variables <- function(model) {
  fit <- if (inherits(model, "cv.glmnet")) model$glmnet.fit else model
  rownames(if (is.list(fit$beta)) fit$beta[[1]] else fit$beta)
}

# The adapter for a model, or NULL for plain predict(). S4 models use the predict
# generic of their class's package: stats::predict() would not dispatch to it.
find_adapter <- function(model) {
  for (a in predict_adapters) {
    if (inherits(model, a$classes)) return(a)
  }
  if (isS4(model)) {
    pkg <- attr(class(model), "package")
    return(list(classes = class(model), package = pkg, predict = function(model, newdata, args) {
      generic <- s4_predict_generic(model)
      do.call(generic, c(list(model, newdata), args))
    }))
  }
  NULL
}

# The S4 `predict` generic that has a method for the model's class: from the class's
# package, where such packages define it (kernlab, lme4 uses S3), else the methods
# table of any loaded namespace.
s4_predict_generic <- function(model) {
  pkg <- attr(class(model), "package")
  if (!is.null(pkg) && requireNamespace(pkg, quietly = TRUE)) {
    f <- get0("predict", envir = asNamespace(pkg), inherits = FALSE)
    if (methods::is(f, "genericFunction")) return(f)
  }
  method <- methods::selectMethod("predict", class(model), optional = TRUE)
  if (!is.null(method)) return(method)
  stats::predict
}

# The packages an adapter needs beyond the model's own.
adapter_packages <- function(model) {
  a <- find_adapter(model)
  pkg <- if (!is.null(a)) a$package
  if (inherits(model, "train") && is.list(model$modelInfo)) {
    # caret fits with the packages of its method and needs them to predict.
    pkg <- c(pkg, as.character(model$modelInfo$library))
  }
  unique(pkg[!is.na(pkg) & nzchar(pkg)])
}

# Inputs converted to the ptype, then predicted (predict_fun, an adapter or
# predict()), as prediction columns with one row per input.
predict_bundle <- function(bundle, data) {
  newdata <- conform_to_ptype(data, bundle$ptype)
  args <- bundle$predict_args %||% list()
  pred <- if (!is.null(bundle$predict_fun)) {
    bundle$predict_fun(bundle$model, newdata)
  } else {
    adapter <- find_adapter(bundle$model)
    if (!is.null(adapter)) {
      adapter$predict(bundle$model, newdata, args)
    } else {
      do.call(stats::predict, c(list(bundle$model, newdata), args))
    }
  }
  prediction_columns(pred, nrow(data))
}

prediction_columns <- function(pred, n) {
  if (is.list(pred) && !is.data.frame(pred)) {
    stop("the prediction is a list (", paste(utils::head(names(pred) %||% "unnamed", 5), collapse = ", "),
         "), not a vector, matrix or data frame: give a predict_fun that returns the predictions")
  }
  if (is.array(pred) && length(dim(pred)) == 1) pred <- as.vector(pred) # e.g. mgcv
  if (is.matrix(pred) && ncol(pred) == 1) pred <- pred[, 1]
  if (is.data.frame(pred) || is.matrix(pred)) {
    cols <- colnames(pred) %||% as.character(seq_len(ncol(pred)))
    pred <- as.data.frame(pred, stringsAsFactors = FALSE)
    if (nrow(pred) != n) stop("the prediction has ", nrow(pred), " rows for ", n, " inputs")
    names(pred) <- make.names(paste0(".pred_", cols), unique = TRUE)
    rownames(pred) <- NULL
    return(pred)
  }
  if (length(pred) != n) stop("the prediction has ", length(pred), " values for ", n, " inputs")
  if (is.factor(pred)) pred <- as.character(pred)
  data.frame(.pred = unname(pred), stringsAsFactors = FALSE)
}

# Problems of `data` against the ptype, every one at once: missing columns, columns of
# the wrong type, factor levels the model never saw, text that is not a date. Empty
# when none.
ptype_problems <- function(data, ptype) {
  if (is.null(ptype)) return(character())
  problems <- character()
  missing <- setdiff(names(ptype), names(data))
  if (length(missing)) {
    problems <- c(problems, paste0("missing column", if (length(missing) > 1) "s", ": ",
                                   paste(missing, collapse = ", ")))
  }
  for (col in intersect(names(ptype), names(data))) {
    want <- ptype[[col]]
    have <- data[[col]]
    text <- is.character(have) || is.factor(have)
    ok <- if (is.factor(want) || is.character(want)) {
      text
    } else if (inherits(want, "Date") || inherits(want, "POSIXct")) {
      inherits(have, c("Date", "POSIXct")) || is.character(have)
    } else if (is.numeric(want)) {
      is.numeric(have) && !inherits(have, c("Date", "POSIXct"))
    } else if (is.logical(want)) {
      is.logical(have)
    } else {
      TRUE
    }
    if (!ok) {
      problems <- c(problems, sprintf("column %s is %s, the model needs %s", col, class(have)[1], class(want)[1]))
      next
    }
    if (is.factor(want)) {
      seen <- as.character(have)
      unseen <- unique(seen[!is.na(seen) & !seen %in% levels(want)])
      if (length(unseen)) {
        problems <- c(problems, sprintf(
          "column %s has level%s %s that the model never saw (its levels: %s)", col,
          if (length(unseen) > 1) "s" else "", paste0("\"", utils::head(unseen, 5), "\"", collapse = ", "),
          paste0("\"", utils::head(levels(want), 10), "\"", collapse = ", ")
        ))
      }
    } else if (inherits(want, c("Date", "POSIXct")) && is.character(have)) {
      parsed <- as_time_like(have, want)
      bad <- unique(have[!is.na(have) & is.na(parsed)])
      if (length(bad)) {
        problems <- c(problems, sprintf("column %s has %s that %s not %s", col,
                                        paste0("\"", utils::head(bad, 3), "\"", collapse = ", "),
                                        if (length(bad) > 1) "are" else "is",
                                        if (inherits(want, "Date")) "a date (YYYY-MM-DD)" else "a date-time (ISO 8601)"))
      }
    }
  }
  problems
}

# Rows given in the session (`data`, `newdata`) that do not fit the ptype: an input
# error listing every problem, before anything is uploaded.
check_rows_against_ptype <- function(rows, ptype, arg, call = rlang::caller_env()) {
  problems <- ptype_problems(rows, ptype)
  if (length(problems)) {
    serverless_abort(c("{.arg {arg}} does not match the model's inputs:", stats::setNames(problems, rep("x", length(problems)))),
                     "input", call = call)
  }
  invisible()
}

# Columns as the model was trained on them: factors with its levels, dates from text,
# integers from whole doubles (other doubles stay doubles), doubles from integers.
conform_to_ptype <- function(data, ptype) {
  if (is.null(ptype)) return(data)
  for (col in intersect(names(ptype), names(data))) {
    want <- ptype[[col]]
    have <- data[[col]]
    data[[col]] <- if (is.factor(want)) {
      factor(as.character(have), levels = levels(want), ordered = is.ordered(want))
    } else if (is.character(want)) {
      as.character(have)
    } else if (inherits(want, c("Date", "POSIXct"))) {
      as_time_like(have, want)
    } else if (is.integer(want) && is.double(have) && all(is.na(have) | have == round(have))) {
      as.integer(have)
    } else if (is.double(want) && is.integer(have)) {
      as.double(have)
    } else {
      have
    }
  }
  data
}

# Text (or a Date/POSIXct) as the class of `want`: ISO dates, ISO date-times in UTC.
as_time_like <- function(x, want) {
  if (inherits(want, "Date")) {
    if (inherits(x, "Date")) return(x)
    if (inherits(x, "POSIXct")) return(as.Date(x, tz = attr(x, "tzone") %||% "UTC"))
    return(as.Date(as.character(x), format = "%Y-%m-%d", optional = TRUE))
  }
  tz <- attr(want, "tzone") %||% "UTC"
  if (!nzchar(tz)) tz <- "UTC"
  if (inherits(x, "POSIXct")) return(x)
  if (inherits(x, "Date")) return(as.POSIXct(format(x), tz = tz))
  text <- sub("Z$", "", as.character(x))
  out <- as.POSIXct(text, tz = tz, format = "%Y-%m-%dT%H:%M:%OS")
  plain <- is.na(out) & !is.na(text)
  out[plain] <- as.POSIXct(text[plain], tz = tz, format = "%Y-%m-%d %H:%M:%OS")
  plain <- is.na(out) & !is.na(text)
  out[plain] <- as.POSIXct(text[plain], tz = tz, format = "%Y-%m-%d")
  out
}

# CSV column types from the ptype, so every shard reads a column the same way. Integer
# columns are read as doubles (decimals are not an error), dates as text.
ptype_hint <- function(ptype) {
  if (is.null(ptype) || !ncol(ptype)) return(NULL)
  type <- vapply(ptype, function(x) {
    if (is.factor(x) || is.character(x) || inherits(x, c("Date", "POSIXct"))) "character"
    else if (is.logical(x)) "logical"
    else if (is.numeric(x)) "double"
    else NA_character_
  }, "")
  type[!is.na(type)]
}
