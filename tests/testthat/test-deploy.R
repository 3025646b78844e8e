# deploy_model() on the local Azure: runtime images, shared identity, plans.

# Build logs stream to the console for users; the tests keep their output short.
deploy_model <- function(...) suppressMessages(serveRless::deploy_model(...))

# Each test gets its own local Azure, so its journal shows only its own calls.
deploy_target <- function(envir = parent.frame()) {
  local_azure(.local_envir = envir)
}

journal_calls <- function(target, pattern, method = NULL) {
  j <- local_azure_journal(target)
  hit <- grepl(pattern, j$path, ignore.case = TRUE)
  if (!is.null(method)) hit <- hit & j$method %in% method
  j[hit, , drop = FALSE]
}

writes <- function(journal) {
  journal[journal$method %in% c("PUT", "PATCH", "DELETE") |
            grepl("scheduleRun|listBuildSourceUploadUrl|/cancel$", journal$path), , drop = FALSE]
}

test_that("a runtime image is built once per spec and shared by models that need the same packages", {
  target <- deploy_target()
  fits <- fit_models()

  dep1 <- deploy_model(fits$lm, "mpg", target)
  expect_s3_class(dep1, "serverless_deployment")
  expect_true(dep1$built)
  expect_equal(nrow(journal_calls(target, "/scheduleRun$", "POST")), 1)
  expect_match(dep1$image, "/serverless-runtime:[0-9a-f]{16}$")
  expect_identical(get_deployment("mpg", target)$image, dep1$image)
  expect_identical(get_deployment("mpg", target)$model_version, dep1$model_version)

  # glm needs only stats, like lm: same spec, same image, no build.
  dep2 <- deploy_model(fits$glm, "transmission", target)
  expect_false(dep2$built)
  expect_identical(dep2$image, dep1$image)
  expect_equal(nrow(journal_calls(target, "/scheduleRun$", "POST")), 1)

  # A new version of an existing deployment: no build either.
  refit <- stats::lm(mpg ~ wt + hp + qsec, data = fits$data)
  dep3 <- deploy_model(refit, "mpg", target)
  expect_false(dep3$built)
  expect_false(identical(dep3$model_version, dep1$model_version))
  expect_identical(get_deployment("mpg", target)$model_version, dep3$model_version)
  expect_equal(nrow(journal_calls(target, "/scheduleRun$", "POST")), 1)

  # The identity and its two role assignments were created once, whatever the count.
  expect_equal(nrow(journal_calls(target, "userAssignedIdentities/[^/]+$", "PUT")), 1)
  expect_equal(nrow(journal_calls(target, "roleAssignments/[^/]+$", "PUT")), 2)
  expect_equal(nrow(journal_calls(target, "registries/[^/]+$", "PUT")), 1)
  expect_null(get_deployment("never-deployed", target))
})

test_that("a model needing another package gets its own image pinning that package", {
  skip_if_not_installed("randomForest")
  target <- deploy_target()
  fits <- fit_models()
  lm_dep <- deploy_model(fits$lm, "mpg", target)
  rf_dep <- deploy_model(fits$rf, "mpg-forest", target)
  expect_true(rf_dep$built)
  expect_false(identical(rf_dep$image, lm_dep$image))
  version <- utils::packageDescription("randomForest")$Version
  expect_match(rf_dep$dockerfile, paste0("\n    randomForest==", version, " \\\\\n"))
  expect_false(grepl("randomForest", lm_dep$dockerfile))
  expect_equal(nrow(journal_calls(target, "/scheduleRun$", "POST")), 2)
  pinned <- vapply(rf_dep$record$spec$packages, function(p) p$name, "")
  expect_true(all(c("randomForest", "cli", "rlang", "processx") %in% pinned))
  # Dependencies come before the packages that need them.
  expect_lt(match("ps", pinned), match("processx", pinned))
})

test_that("dry_run writes nothing and plans exactly what the real run does", {
  target <- deploy_target()
  fits <- fit_models()

  plan <- deploy_model(fits$lm, "mpg", target, dry_run = TRUE)
  expect_s3_class(plan, "serverless_plan")
  expect_equal(nrow(writes(local_azure_journal(target))), 0)
  expect_equal(nrow(blob_list(target, "serverless/")), 0)
  expect_setequal(plan$items$kind, c("model version", "identity", "registry", "role assignment",
                                     "image", "blob"))
  expect_true(all(plan$items$action == "create"))

  dep <- deploy_model(fits$lm, "mpg", target)
  expect_identical(dep$plan$items$action, plan$items$action)
  expect_identical(dep$plan$items$kind, plan$items$kind)

  # Now a new model version with the same spec: the plan says so, and nothing is written.
  before_journal <- local_azure_journal(target)
  before_blobs <- blob_list(target, "serverless/")
  refit <- stats::lm(mpg ~ wt + hp + qsec, data = fits$data)
  plan2 <- deploy_model(refit, "mpg", target, dry_run = TRUE)
  after <- local_azure_journal(target)
  expect_equal(nrow(writes(after[-seq_len(nrow(before_journal)), ])), 0)
  expect_identical(blob_list(target, "serverless/")$path, before_blobs$path)
  actions <- stats::setNames(plan2$items$action, plan2$items$kind)
  expect_equal(unname(actions[c("identity", "registry", "image")]), rep("unchanged", 3))
  expect_equal(unname(actions["model version"]), "create")
  expect_equal(unname(actions["blob"]), "update")

  dep2 <- deploy_model(refit, "mpg", target)
  expect_identical(dep2$plan$items$action, plan2$items$action)
  expect_false(dep2$built)
  expect_output(print(plan2), "unchanged")
  expect_output(print(dep2), dep2$model_version, fixed = TRUE)
})

test_that("no password, key or token is in any request the journal recorded for a deploy", {
  target <- deploy_target()
  deploy_model(fit_models()$lm, "mpg", target)
  j <- local_azure_journal(target)
  expect_gt(nrow(j), 5)
  bodies <- paste(j$body, collapse = "\n")
  secrets <- c(target$secrets$key, target$secrets$credential$secrets$client_secret)
  for (s in secrets[nzchar(secrets)]) expect_false(grepl(s, bodies, fixed = TRUE))
  expect_false(grepl("eyJ[A-Za-z0-9_-]{10,}\\.", bodies)) # no JWT
  expect_false(grepl("sig=[A-Za-z0-9%]{10,}", bodies))
  expect_false(grepl("\"(password|adminUserEnabled\": *true)", bodies))
  expect_false(grepl("listCredentials", paste(j$path, collapse = "\n")))
})

test_that("bad deploy input is refused before any network call, naming the value", {
  offline <- azurite_az_target(blob_endpoint = "http://127.0.0.1:9/devstoreaccount1")
  fit <- fit_models()$lm
  for (cpu in list(0.5, 5, "2", NA_real_)) {
    err <- expect_error(deploy_model(fit, "mpg", offline, cpu = cpu), class = "serverless_error_input")
    expect_match(conditionMessage(err), "cpu")
  }
  for (mem in list(0.4, 16.5, 1.55)) {
    err <- expect_error(deploy_model(fit, "mpg", offline, memory_gb = mem),
                        class = "serverless_error_input")
    expect_match(conditionMessage(err), format(mem), fixed = TRUE)
  }
  err <- expect_error(deploy_model(fit, "mpg", offline, packages = "notapackage123"),
                      class = "serverless_error_input")
  expect_match(conditionMessage(err), "notapackage123")
  orphan <- structure(list(coef = 1), class = "orphanmodel")
  err <- expect_error(deploy_model(orphan, "orphan", offline), class = "serverless_error_input")
  expect_match(conditionMessage(err), "orphanmodel")
  err <- expect_error(deploy_model(fit, "Bad_Name", offline), class = "serverless_error_input")
  expect_match(conditionMessage(err), "Bad_Name")
  expect_error(deploy_model(fit, "mpg", offline, runtime = list()), class = "serverless_error_input")
  expect_error(runtime_options(serverless_tarball = "/no/such/serveRless.tar.gz"),
               class = "serverless_error_input")
  err <- expect_error(azurite_az_target(blob_endpoint = "http://127.0.0.1:9/devstoreaccount1",
                                        registry = "has-dashes"),
                      class = "serverless_error_input")
  expect_match(conditionMessage(err), "has-dashes")
})

test_that("a taken registry name and a failing build are clear errors", {
  target <- deploy_target()
  fit <- fit_models()$lm
  taken <- target
  taken$registry <- "contoso"
  err <- expect_error(deploy_model(fit, "mpg", taken), class = "serverless_error_input")
  expect_match(conditionMessage(err), "contoso")
  expect_equal(nrow(journal_calls(target, "registries/[^/]+$", "PUT")), 0)

  # An image reference Docker refuses (upper case) fails the build; the error has its log.
  err <- expect_error(
    deploy_model(fit, "mpg", target, runtime = runtime_options(base_image = "Rocker/R-ver:4.2")),
    class = "serverless_error_azure"
  )
  expect_match(conditionMessage(err), "Rocker/R-ver", fixed = TRUE)
  expect_match(conditionMessage(err), "Run ID")
  expect_null(get_deployment("mpg", target))
})
