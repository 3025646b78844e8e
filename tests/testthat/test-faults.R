# The real flows with faults switched on: Resource Manager answering 429/5xx or
# dropping connections, and Blob Storage behind a loopback TCP proxy that cuts or
# resets connections mid-transfer. Each flow completes or fails with a classed
# error; a re-run without faults completes, with nothing duplicated or corrupted.
# Bounded: fixed seeds, a handful of operations, every wait capped.

deploy_quietly <- function(...) suppressMessages(deploy_model(...))

# Runs `expr`; returns "ok" or the class of the serveRless error it raised. Anything
# else (an unclassed error) fails the test.
outcome <- function(expr) {
  tryCatch({
    force(expr)
    "ok"
  }, serverless_error = function(e) class(e)[1])
}

test_that("storage cut or reset mid-transfer: store_model() completes or fails cleanly, and a re-run leaves every version intact", {
  target <- local_azure()
  withr::defer(local_azure_faults(target))
  # A new model each round (identical bundles are not uploaded again): ~ 10 MB each.
  cars <- mtcars[rep(seq_len(nrow(mtcars)), 2000), ]
  make_big <- function(i) {
    set.seed(i)
    cars$mpg <- cars$mpg + stats::rnorm(nrow(cars))
    lm(mpg ~ ., data = cars)
  }
  outcomes <- character()
  fits <- list()
  faults <- list(
    list(storage_cut_after = 2e6, storage_every = 2),
    list(storage_reset_after = 3e6, storage_every = 3),
    list(storage_reset_after = 500e3, storage_every = 1),
    list(storage_latency = 0.002, storage_cut_after = 8e6, storage_every = 4)
  )
  for (i in seq_along(faults)) {
    big <- make_big(i)
    do.call(local_azure_faults, c(list(target), faults[[i]]))
    outcomes <- c(outcomes, outcome(suppressMessages(store_model(big, "big", target))))
    local_azure_faults(target)
    # Whatever happened, a re-run completes.
    v <- suppressMessages(store_model(big, "big", target))
    expect_s3_class(v, "serverless_model_version")
    fits[[v$version]] <- coef(big)
  }
  counts <- serveRless:::storage_fault_counts(target)
  expect_gt(counts$faulted, 4)
  expect_true(all(outcomes %in% c("ok", "serverless_error_azure", "serverless_error_io",
                                  "serverless_error_interrupted")), info = paste(outcomes, collapse = ","))
  expect_true(any(outcomes != "ok")) # the faults did bite
  # Every committed version loads and verifies its sha256 (load_model() checks it).
  versions <- model_versions("big", target)
  expect_gte(nrow(versions), 1)
  expect_true(all(names(fits) %in% versions$version))
  for (v in versions$version) {
    b <- load_model("big", target, version = v) # verifies the sha256
    if (v %in% names(fits)) expect_equal(coef(b$model), fits[[v]])
  }
  # Downloads through a cutting proxy: complete or a classed error, never a partial file.
  local_azure_faults(target, storage_cut_after = 1e6)
  dest <- withr::local_tempfile()
  res <- outcome(blob_download(target, sprintf("serverless/models/big/%s/bundle", versions$version[1]), dest))
  expect_true(res %in% c("ok", "serverless_error_azure", "serverless_error_io"))
  if (res != "ok") expect_false(file.exists(dest))
})

test_that("Resource Manager faults: deploy, score and schedule complete or fail cleanly; re-runs leave no duplicates", {
  target <- local_azure()
  withr::defer(local_azure_faults(target))
  fit <- lm(mpg ~ wt + hp, data = mtcars)
  local_azure_faults(target, throttle = 0.25, server_errors = 0.1, resets = 0.05, seed = 7)
  first <- outcome(dep <- deploy_quietly(fit, "mpg", target))
  local_azure_faults(target)
  dep <- deploy_quietly(fit, "mpg", target)
  expect_s3_class(dep, "serverless_deployment")
  local_azure_faults(target, throttle = 0.25, server_errors = 0.1, resets = 0.05, seed = 8)
  scored <- outcome(run <- suppressMessages(score_now(dep, newdata = mtcars[, c("wt", "hp")])))
  sched <- outcome(sch <- suppressMessages(
    schedule_scoring(dep, "serverless/in/*.csv", "serverless/out/", schedule = "0 3 * * *", poll_seconds = 1)))
  local_azure_faults(target)
  for (o in c(first, scored, sched)) {
    expect_true(o %in% c("ok", "serverless_error_azure", "serverless_error_job"), info = o)
  }
  run <- suppressMessages(score_now(dep, newdata = mtcars[, c("wt", "hp")]))
  expect_equal(read_predictions(run)$.pred, unname(predict(fit, mtcars)))
  sch <- suppressMessages(
    schedule_scoring(dep, "serverless/in/*.csv", "serverless/out/", schedule = "0 3 * * *", poll_seconds = 1))
  expect_s3_class(sch, "serverless_schedule")
  # No duplicates: one registry, one identity, one workflow, unique role assignments.
  list_names <- function(path, api) {
    out <- serveRless:::rust_wait(serveRless:::rs_arm_get(serveRless:::target_arm(target),
      sprintf("/subscriptions/%s/resourceGroups/%s/providers/%s", target$subscription, target$resource_group, path), api))
    vapply(out$value, function(x) x$name, "")
  }
  expect_length(list_names("Microsoft.ContainerRegistry/registries", "2025-04-01"), 1)
  expect_length(list_names("Microsoft.ManagedIdentity/userAssignedIdentities", "2023-01-31"), 1)
  expect_equal(list_names("Microsoft.Logic/workflows", "2019-05-01"), "mpg-schedule")
  ra <- serveRless:::rust_wait(serveRless:::rs_arm_get(serveRless:::target_arm(target),
    sprintf("/subscriptions/%s/providers/Microsoft.Authorization/roleAssignments", target$subscription), "2022-04-01"))
  keys <- vapply(ra$value, function(a) paste(a$properties$scope, a$properties$roleDefinitionId, a$properties$principalId), "")
  expect_equal(anyDuplicated(tolower(keys)), 0L)
  expect_length(container_groups(target), 0)
  suppressMessages(undeploy("mpg", target))
  expect_length(container_groups(target), 0)
})

test_that("two R processes deploying the same name at once: both versions survive, the record is consistent", {
  skip_if_not_installed("callr")
  target <- local_azure()
  fit <- lm(mpg ~ wt + hp, data = mtcars)
  deploy_quietly(fit, "race", target) # the image exists; the race is over the model and record
  az <- azurite_az_target(target)
  worker <- function(endpoint, key, ca, sub, arm, authority, identity, tenant, client, secret, seed) {
    library(serveRless)
    target <- az_target(subscription = sub, resource_group = "serverless-local", location = "westeurope",
                        storage_account = "devstoreaccount1", blob_endpoint = endpoint, storage_key = key,
                        credential = az_credential("client_secret", tenant = tenant, client_id = client,
                                                   client_secret = secret))
    target$secrets$ca_pem <- ca
    target$arm_endpoint <- arm
    target$authority_host <- authority
    target$container <- "serverless"
    set.seed(seed)
    d <- mtcars
    d$mpg <- d$mpg + stats::rnorm(nrow(d))
    dep <- suppressMessages(deploy_model(lm(mpg ~ wt + hp, data = d), "race", target))
    dep$model_version
  }
  cred <- serveRless:::target_credential(target)
  args <- function(seed) list(target$blob_endpoint, serveRless:::azurite_key, target$secrets$ca_pem,
                              target$subscription, target$arm_endpoint, target$authority_host,
                              target$identity_endpoint, cred$tenant, cred$client_id,
                              serveRless:::unseal(cred$secrets$client_secret), seed)
  a <- callr::r_bg(worker, args = args(1))
  b <- callr::r_bg(worker, args = args(2))
  a$wait(120000)
  b$wait(120000)
  va <- a$get_result()
  vb <- b$get_result()
  expect_false(identical(va, vb))
  versions <- model_versions("race", target)$version
  expect_true(all(c(va, vb) %in% versions))
  rec <- get_deployment("race", target)
  expect_true(rec$model_version %in% c(va, vb))
  b <- load_model("race", target, version = rec$model_version)
  expect_equal(b$metadata$sha256, rec$model_sha256)
  expect_length(container_groups(target), 0)
})
