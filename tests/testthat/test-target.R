test_that("local_azure() gives a working target and stops Azurite with its scope", {
  pid <- NULL
  local({
    target <- local_azure()
    expect_s3_class(target, "serverless_target")
    expect_equal(target$kind, "local")
    expect_match(target$blob_endpoint, "^https://127\\.0\\.0\\.1:[0-9]+/devstoreaccount1$")
    expect_true(target$process$is_alive())
    pid <<- target$process
    expect_equal(nrow(blob_list(target)), 0)
  })
  expect_false(pid$is_alive())
})

test_that("local_azure() without Azurite names the setup command", {
  withr::local_envvar(SERVERLESS_AZURITE = "/nonexistent/azurite-blob", PATH = "/nonexistent")
  err <- expect_error(local_azure(), class = "serverless_error_setup")
  expect_match(conditionMessage(err), "make setup", fixed = TRUE)
})

test_that("az_target() checks Azure's naming rules before any call", {
  ok <- list(subscription = "00000000-0000-0000-0000-000000000000", resource_group = "rg",
             location = "westeurope", storage_account = "acct123", storage_key = "a2V5")
  bad <- list(
    subscription = "not-a-guid",
    resource_group = "bad/rg",
    location = "West Europe",
    storage_account = "Has_Upper",
    storage_account = "ab",
    registry = "r-1",
    container = "Bad_Container",
    arm_endpoint = "http://management.usgovcloudapi.net",
    authority_host = "https://login.microsoftonline.us/tenant"
  )
  for (i in seq_along(bad)) {
    args <- utils::modifyList(ok, bad[i])
    err <- expect_error(do.call(az_target, args), class = "serverless_error_input")
    expect_match(conditionMessage(err), bad[[i]], fixed = TRUE)
  }
  expect_error(do.call(az_target, utils::modifyList(ok, list(storage_sas = "sp=r&sig=x"))),
               "at most one", class = "serverless_error_input")
  # A token with a line break (as base64 wrapping makes) or its "Bearer " scheme is
  # refused here; it used to fail only at the first request, as an Azure error.
  no_key <- ok[names(ok) != "storage_key"]
  for (token in c("eyJhbGciOi.eyJhdWQiOi\n.c2ln", "Bearer eyJhbGciOi.eyJhdWQiOi.c2ln", "")) {
    err <- expect_error(do.call(az_target, c(no_key, storage_token = token)),
                        class = "serverless_error_input")
    expect_no_match(conditionMessage(err), "eyJ", fixed = TRUE)
  }
  expect_s3_class(do.call(az_target, c(no_key, storage_token = "eyJhbGciOi.eyJhdWQiOi.c2ln-_")),
                  "serverless_target")

  # A sovereign cloud: its Resource Manager and sign-in hosts reach Rust's endpoints.
  gov <- do.call(az_target, utils::modifyList(ok, list(
    arm_endpoint = "https://management.usgovcloudapi.net/",
    authority_host = "https://login.microsoftonline.us",
    blob_endpoint = "https://acct123.blob.core.usgovcloudapi.net"
  )))
  expect_equal(serveRless:::target_endpoints(gov),
               list(authority_host = "https://login.microsoftonline.us",
                    arm = "https://management.usgovcloudapi.net"))
  expect_null(serveRless:::target_endpoints(do.call(az_target, ok))$arm)
})

test_that("targets never show secrets in print, format or str", {
  key <- "c2VjcmV0LWtleS1kby1ub3Qtc2hvdw=="
  sas <- "sv=2022-11-02&sp=racwl&se=2099-01-01T00:00:00Z&sig=SUPERSECRETSIG"
  token <- "eyJhbGciOiJSUzI1NiJ9.SECRETTOKEN.sig"
  targets <- list(
    azurite_az_target(storage_key = key),
    azurite_az_target(storage_key = NULL, storage_sas = sas),
    azurite_az_target(storage_key = NULL, storage_token = token),
    test_target()
  )
  local_secret <- serveRless:::unseal(serveRless:::target_credential(test_target())$secrets$client_secret)
  expect_true(nchar(local_secret) > 10)
  for (t in targets) {
    shown <- paste(c(capture.output(print(t)), format(t), capture.output(str(t))), collapse = "\n")
    for (secret in c(key, "SUPERSECRETSIG", "SECRETTOKEN", serveRless:::azurite_key, local_secret)) {
      expect_false(grepl(secret, shown, fixed = TRUE))
    }
  }
})
