test_that("lm, glm and randomForest models round-trip with identical predictions", {
  skip_if_not_installed("randomForest")
  target <- test_target()
  fits <- fit_models()
  for (kind in c("lm", "glm", "rf")) {
    name <- paste0("roundtrip-", kind)
    v <- store_model(fits[[kind]], name, target)
    expect_s3_class(v, "serverless_model_version")
    expect_match(v$version, sprintf("^[0-9]{8}T[0-9]{9}Z-%s$", substr(v$sha256, 1, 8)))
    b <- load_model(name, target)
    expect_s3_class(b, "serverless_bundle")
    expect_identical(predict(b$model, fits$data), predict(fits[[kind]], fits$data))
    expect_equal(b$metadata$sha256, v$sha256)
  }
  rf <- load_model("roundtrip-rf", target)
  expect_named(rf$metadata$meta$packages, "randomForest")
  expect_equal(rf$metadata$meta$packages$randomForest,
               utils::packageDescription("randomForest")$Version)
  expect_setequal(names(rf$ptype), c("wt", "hp", "am"))
  expect_s3_class(rf$ptype$am, "factor")
  expect_equal(nrow(rf$ptype), 0)
})

test_that("the bundle keeps predict_fun, ptype and versions of R and serveRless", {
  target <- test_target()
  fit <- fit_models()$glm
  pf <- function(model, newdata) stats::predict(model, newdata, type = "response")
  pt <- data.frame(wt = numeric(), hp = numeric())
  store_model(fit, "with-extras", target, predict_fun = pf, ptype = pt)
  b <- load_model("with-extras", target)
  expect_equal(b$predict_fun(b$model, mtcars), pf(fit, mtcars))
  expect_identical(b$ptype, pt)
  expect_equal(b$metadata$meta$r_version, paste(R.version$major, R.version$minor, sep = "."))
  expect_equal(b$metadata$meta$serverless_version, as.character(packageVersion("serveRless")))
  expect_output(print(b), "with-extras")
})

test_that("storing an identical bundle uploads nothing and reuses the version", {
  target <- test_target()
  fits <- fit_models()
  fit <- fits$lm
  v1 <- store_model(fit, "dedupe", target)
  before <- blob_list(target, "serverless/models/dedupe/")
  v2 <- store_model(fit, "dedupe", target)
  expect_true(v2$reused)
  expect_equal(v2$bytes_sent, 0)
  expect_equal(v2$version, v1$version)
  expect_equal(nrow(model_versions("dedupe", target)), 1)
  expect_identical(blob_list(target, "serverless/models/dedupe/"), before)
  expect_output(print(v2), "nothing uploaded")

  v3 <- store_model(stats::lm(mpg ~ wt + hp + qsec, data = fits$data), "dedupe", target)
  expect_false(v3$reused)
  versions <- model_versions("dedupe", target)
  expect_equal(versions$version, c(v1$version, v3$version))
  expect_equal(load_model("dedupe", target)$metadata$version, v3$version)
  expect_equal(load_model("dedupe", target, version = v1$version)$metadata$version, v1$version)
})

test_that("two processes storing different models under one name both keep their version", {
  target <- test_target()
  store_one <- function(endpoint, key, ca, formula) {
    library(serveRless)
    target <- az_target("00000000-0000-0000-0000-000000000000", "rg", "westeurope",
                        "devstoreaccount1", blob_endpoint = endpoint, storage_key = key)
    target$secrets$ca_pem <- ca # the local Azure's CA
    fit <- lm(stats::as.formula(formula), data = mtcars)
    store_model(fit, "concurrent", target)$version
  }
  args <- list(target$blob_endpoint, serveRless:::azurite_key, target$secrets$ca_pem)
  a <- callr::r_bg(store_one, c(args, "mpg ~ wt"))
  b <- callr::r_bg(store_one, c(args, "mpg ~ hp"))
  a$wait(60000)
  b$wait(60000)
  va <- a$get_result()
  vb <- b$get_result()
  expect_false(va == vb)
  versions <- model_versions("concurrent", target)
  expect_setequal(versions$version, c(va, vb))
  for (v in versions$version) {
    expect_s3_class(load_model("concurrent", target, version = v)$model, "lm")
  }
})

test_that("a corrupt bundle is detected on load", {
  target <- test_target()
  v <- store_model(fit_models()$lm, "corrupt", target)
  garbage <- random_file(1000)
  blob_upload(target, garbage, sprintf("serverless/models/corrupt/%s/bundle", v$version))
  err <- expect_error(load_model("corrupt", target), class = "serverless_error_integrity")
  expect_match(conditionMessage(err), v$sha256, fixed = TRUE)
})

test_that("bad model input fails with a classed error before any network call", {
  offline <- azurite_az_target(blob_endpoint = "http://127.0.0.1:9/devstoreaccount1")
  fit <- fit_models()$lm
  for (name in c("Mpg", "ab", "-mpg", "mpg_model", "m--pg", strrep("a", 64), "bad%name")) {
    err <- expect_error(store_model(fit, name, offline), class = "serverless_error_input")
    expect_match(conditionMessage(err), name, fixed = TRUE)
  }
  expect_error(store_model(fit, NA_character_, offline), class = "serverless_error_input")
  expect_error(model_versions("Bad", offline), class = "serverless_error_input")
  expect_error(load_model("Bad", offline), class = "serverless_error_input")

  with_pointer <- list(coef = 1, handle = methods::new("externalptr"))
  err <- expect_error(store_model(with_pointer, "pointer", offline), class = "serverless_error_input")
  expect_match(conditionMessage(err), "external pointer")

  expect_error(store_model(fit, "mpg", offline, predict_fun = "predict"),
               class = "serverless_error_input")
  expect_error(store_model(fit, "mpg", offline, ptype = list(a = 1)), "data frame",
               class = "serverless_error_input")
  err <- expect_error(store_model(fit, "mpg", offline, packages = "notapackage123"),
                      class = "serverless_error_input")
  expect_match(conditionMessage(err), "notapackage123")
})

test_that("unknown models and versions are input errors that say what to do", {
  target <- test_target()
  expect_error(load_model("never-stored", target), "no stored versions",
               class = "serverless_error_input")
  store_model(fit_models()$lm, "known", target)
  err <- expect_error(load_model("known", target, version = "20000101T000000000Z-00000000"),
                      class = "serverless_error_input")
  expect_match(conditionMessage(err), "model_versions", fixed = TRUE)
  expect_equal(nrow(model_versions("never-stored", target)), 0)
})
