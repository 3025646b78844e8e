# Every model an R user commonly fits deploys and predicts remotely as it does locally
# (issue 16): real models from their packages, scored by real jobs on the local Azure.

score_quietly <- function(...) suppressMessages(score_now(...))
deploy_quietly <- function(...) suppressMessages(deploy_model(...))

# The remote predictions of `fit` for `newdata`, as one vector (or a data frame when
# there are several prediction columns).
remote_predictions <- function(fit, name, target, newdata, ...) {
  dep <- deploy_quietly(fit, name, target, ...)
  run <- score_quietly(dep, newdata = newdata)
  expect_equal(run$shards$state, "Succeeded")
  preds <- read_predictions(run)
  expect_identical(preds[names(newdata)], newdata, ignore_attr = TRUE) # row order kept
  cols <- preds[grep("^\\.pred", names(preds))]
  if (ncol(cols) == 1) cols[[1]] else cols
}

test_that("models of 20 packages and idioms predict remotely exactly as locally", {
  withr::local_timezone("UTC") # caret's dependencies ask for it (timedatectl warns without systemd)
  pkgs <- c("lme4", "glmmTMB", "partykit", "kernlab", "ranger", "MASS", "mgcv", "rpart", "nnet",
            "e1071", "survival", "caret", "earth", "gbm", "quantreg", "randomForest")
  for (p in pkgs) skip_if_not_installed(p)
  target <- local_azure()
  cars <- mtcars
  cars$am <- factor(cars$am)
  cars$cyl <- factor(cars$cyl)
  cars$gearf <- factor(cars$gear, ordered = TRUE)
  nd <- cars
  same <- function(label, fit, local, ..., newdata = nd) {
    remote <- remote_predictions(fit, label, target, newdata, ...)
    expect_equal(unname(remote), unname(local), ignore_attr = TRUE, label = label)
  }

  sl <- lme4::sleepstudy
  fit <- lme4::lmer(Reaction ~ Days + (1 | Subject), sl)
  same("lme4-lmer", fit, predict(fit, sl), newdata = sl)
  fit <- glmmTMB::glmmTMB(Reaction ~ Days + (1 | Subject), sl)
  same("glmmtmb", fit, predict(fit, sl), newdata = sl)
  fit <- partykit::ctree(mpg ~ wt + hp, cars)
  same("partykit-ctree", fit, predict(fit, nd))
  set.seed(1)
  fit <- kernlab::ksvm(mpg ~ wt + hp, data = cars)
  same("kernlab-ksvm", fit, kernlab::predict(fit, nd)[, 1], data = head(nd))
  fit <- ranger::ranger(mpg ~ wt + hp, cars, num.trees = 30, seed = 1)
  same("ranger", fit, predict(fit, nd)$predictions, data = head(nd))
  fit <- MASS::lda(am ~ wt + hp, cars)
  same("mass-lda", fit, as.character(predict(fit, nd)$class))
  same("mass-lda-prob", fit, as.data.frame(predict(fit, nd)$posterior), predict_args = list(type = "prob"))

  # Formulas fitted in a function, with library(splines), with a helper function.
  fit_poly <- function(d, deg) lm(mpg ~ poly(wt, deg), data = d)
  fit <- fit_poly(cars, 2)
  same("lm-poly-deg", fit, predict(fit, nd))
  fit_ratio <- function(d, k) lm(mpg ~ I(disp / k), data = d)
  fit <- fit_ratio(cars, 3)
  same("lm-ratio-k", fit, predict(fit, nd))
  withr::local_package("splines")
  fit <- lm(mpg ~ ns(wt, 3), cars)
  same("lm-splines-ns", fit, predict(fit, nd))
  helper <- function(x) log(x + 1)
  fit <- lm(mpg ~ helper(hp), cars)
  same("lm-helper", fit, predict(fit, nd))
  # A predict_fun closing over a variable named pi: its value, not base::pi.
  scaled <- function(pi) function(model, newdata) stats::predict(model, newdata) * pi
  fit <- lm(mpg ~ wt, cars)
  same("lm-closure-pi", fit, predict(fit, nd) * 5, predict_fun = scaled(5))
  # A predict_fun calling a helper of the session.
  back_transform <- function(x) exp(x)
  fit <- lm(log(mpg) ~ wt, cars)
  same("lm-helper-in-predict-fun", fit, exp(predict(fit, nd)),
       predict_fun = function(model, newdata) back_transform(stats::predict(model, newdata)))

  fit <- mgcv::gam(mpg ~ s(wt, k = 5) + hp, data = cars)
  same("mgcv-gam", fit, as.vector(predict(fit, nd)))
  fit <- rpart::rpart(mpg ~ wt + hp, cars)
  same("rpart", fit, predict(fit, nd))
  fit <- nnet::multinom(cyl ~ wt + hp, cars, trace = FALSE)
  same("nnet-multinom", fit, as.character(predict(fit, nd)))
  fit <- e1071::svm(mpg ~ wt + hp, cars)
  same("e1071-svm", fit, predict(fit, nd))
  fit <- MASS::polr(gearf ~ wt + hp, cars)
  same("mass-polr", fit, as.character(predict(fit, nd)))
  lung <- survival::lung[!is.na(survival::lung$age), ]
  fit <- survival::coxph(survival::Surv(time, status) ~ age + sex, lung)
  same("survival-coxph", fit, predict(fit, lung), newdata = lung)
  set.seed(1)
  fit <- caret::train(mpg ~ wt + hp, data = cars, method = "rf", ntree = 20,
                      trControl = caret::trainControl(method = "none"))
  same("caret-rf", fit, predict(fit, nd))
  fit <- earth::earth(mpg ~ wt + hp, cars)
  same("earth", fit, predict(fit, nd)[, 1])
  set.seed(1)
  fit <- gbm::gbm(mpg ~ wt + hp, data = cars, n.trees = 50, distribution = "gaussian", n.minobsinnode = 3)
  same("gbm", fit, predict(fit, nd, n.trees = 50), predict_args = list(n.trees = 50))
  fit <- quantreg::rq(mpg ~ wt + hp, data = cars)
  same("quantreg-rq", fit, predict(fit, nd))
  expect_length(container_groups(target), 0)
})

test_that("unseen factor levels and dates from CSV give the local answer or an input error", {
  target <- local_azure()
  cars <- mtcars
  cars$cyl <- factor(cars$cyl)
  cars$when <- as.Date("2024-01-01") + seq_len(nrow(cars))
  # Its hour in Vienna is a predictor, so the time zone must travel with the instants.
  cars$at <- as.POSIXct("2024-03-30 20:00:00", tz = "Europe/Vienna") + 3600 * (seq_len(nrow(cars)) %% 7)
  fit <- lm(mpg ~ wt + cyl + as.numeric(when) + as.numeric(format(at, "%H")), data = cars)
  dep <- deploy_quietly(fit, "dated", target)
  expect_s3_class(dep$ptype$when, "Date")
  expect_s3_class(dep$ptype$at, "POSIXct")
  expect_equal(levels(dep$ptype$cyl), c("4", "6", "8"))
  # A deployment read back checks newdata against the same ptype.
  again <- get_deployment("dated", target)
  expect_equal(again$ptype, dep$ptype)
  expect_identical(attr(again$ptype$at, "tzone"), "Europe/Vienna")

  # A date read from CSV text is a Date again: the local predictions, not NA.
  f <- withr::local_tempfile(fileext = ".csv")
  utils::write.csv(cars[, c("wt", "cyl", "when", "at")], f, row.names = FALSE)
  blob_upload(target, f, "serverless/dated/in.csv")
  run <- score_quietly(dep, input = "serverless/dated/in.csv", output = "serverless/dated/out/")
  expect_equal(run$shards$state, "Succeeded")
  expect_equal(read_predictions(run)$.pred, unname(predict(fit, cars)))

  # Parquet has date and timestamp types (written here as date32 and timestamp[us]
  # with the zone): they read as Date and POSIXct, and are written back as such.
  pq <- withr::local_tempfile(fileext = ".parquet")
  rust_check(rs_write_table(as.list(cars[, c("wt", "cyl", "when", "at")]), pq, "parquet"))
  blob_upload(target, pq, "serverless/dated/in.parquet")
  run <- score_quietly(again, input = "serverless/dated/in.parquet", output = "serverless/dated/pq/")
  out <- read_predictions(run)
  expect_equal(out$.pred, unname(predict(fit, cars)))
  expect_identical(out$when, cars$when)
  expect_equal(out$at, cars$at)
  expect_identical(attr(out$at, "tzone"), "Europe/Vienna")

  # A level the model never saw: refused before the upload, naming column and levels...
  odd <- cars[1:3, c("wt", "cyl", "when", "at")]
  odd$cyl <- factor(c("4", "5", "6"))
  before <- blob_list(target, "serverless/runs/")
  err <- expect_error(score_now(dep, newdata = odd), class = "serverless_error_input")
  expect_match(conditionMessage(err), "cyl.*\"5\".*never saw")
  err <- expect_error(score_now(again, newdata = odd), class = "serverless_error_input")
  expect_match(conditionMessage(err), "cyl.*\"5\".*never saw")
  expect_identical(blob_list(target, "serverless/runs/"), before)
  # ...and, from a file, a failed shard with exit code 2 (bad input), not NA with 0.
  utils::write.csv(odd, f, row.names = FALSE)
  blob_upload(target, f, "serverless/dated/odd.csv")
  err <- expect_error(score_quietly(dep, input = "serverless/dated/odd.csv", output = "serverless/dated/odd/"),
                      class = "serverless_error_job")
  expect_match(conditionMessage(err), "exit code 2 (bad input)", fixed = TRUE)
  expect_match(conditionMessage(err), "column cyl has level \"5\" that the model never saw")
})

test_that("the pre-flight refuses a list predict_fun and a missing package before any call", {
  skip_if_not_installed("randomForest")
  target <- local_azure()
  fit <- lm(mpg ~ wt, mtcars)
  listy <- function(model, newdata) list(fit = stats::predict(model, newdata))
  err <- expect_error(deploy_quietly(fit, "listy", target, predict_fun = listy),
                      class = "serverless_error_input")
  expect_match(conditionMessage(err), "is a list")

  # A model wrapped in a list: nothing says it needs randomForest, so a fresh R
  # with only the image's packages cannot predict with it.
  set.seed(1)
  wrapped <- structure(list(fit = randomForest::randomForest(mpg ~ wt + hp, mtcars, ntree = 10)),
                       class = "wrapped_forest")
  pf <- function(model, newdata) stats::predict(model$fit, newdata)
  err <- expect_error(deploy_quietly(wrapped, "wrapped", target, predict_fun = pf, data = head(mtcars)),
                      class = "serverless_error_input")
  expect_match(conditionMessage(err), "fresh R session")
  expect_equal(nrow(blob_list(target, "serverless/models/")), 0) # nothing was stored
  expect_length(container_groups(target), 0)
  dep <- deploy_quietly(wrapped, "wrapped", target, predict_fun = pf, data = head(mtcars),
                        packages = "randomForest")
  pinned <- vapply(dep$record$spec$packages, function(p) p$name, "")
  expect_true("randomForest" %in% pinned)
})

test_that("a model needing a package its image lacks fails locally as it would in Azure", {
  skip_if_not_installed("randomForest")
  target <- local_azure()
  set.seed(1)
  # The package is named only inside the model, where nothing can find it to pin, and
  # there are no example rows for a pre-flight: the deploy goes through.
  dynamic <- structure(list(fit = randomForest::randomForest(mpg ~ wt + hp, mtcars, ntree = 10),
                            pkg = "randomForest"),
                       class = "dynamic_forest")
  pf <- function(model, newdata) {
    loadNamespace(model$pkg)
    stats::predict(model$fit, newdata)
  }
  dep <- deploy_quietly(dynamic, "dynamic", target, predict_fun = pf)
  pinned <- vapply(dep$record$spec$packages, function(p) p$name, "")
  expect_false("randomForest" %in% pinned)
  # This session has randomForest, the image does not: its container cannot load it,
  # as R in the image in Azure could not (exit 3, the model's error).
  err <- expect_error(score_quietly(dep, newdata = mtcars[1:5, c("wt", "hp")]),
                      class = "serverless_error_job")
  expect_match(conditionMessage(err), "exit code 3", fixed = TRUE)
  expect_match(err$logs, "there is no package called .randomForest.")

  # caret predicts with its method's packages: they are in the spec, so it scores.
  withr::local_timezone("UTC") # caret's dependencies ask for it (timedatectl warns without systemd)
  skip_if_not_installed("caret")
  fit <- caret::train(mpg ~ wt + hp, data = mtcars, method = "rf", ntree = 10,
                      trControl = caret::trainControl(method = "none"))
  dep <- deploy_quietly(fit, "caret-rf", target)
  pinned <- vapply(dep$record$spec$packages, function(p) p$name, "")
  expect_true(all(c("caret", "randomForest") %in% pinned))
  run <- score_quietly(dep, newdata = mtcars[1:5, ])
  expect_equal(read_predictions(run)$.pred, unname(predict(fit, mtcars[1:5, ])))
})
