test_that("local_azure() gives a target for the control plane too", {
  target <- test_target()
  expect_match(target$subscription, "^[0-9a-f-]{36}$")
  expect_match(target$arm_endpoint, "^https://127\\.0\\.0\\.1:[0-9]+$")
  cred <- serveRless:::target_credential(target)
  expect_s3_class(cred, "serverless_credential")
  expect_equal(cred$type, "client_secret")
})

test_that("a client-secret credential gets tokens from the local Azure", {
  target <- test_target()
  info <- serveRless:::credential_token_info(target)
  expect_match(info$audience, "^https://management\\.azure\\.com")
  expect_equal(info$tenant, serveRless:::target_credential(target)$tenant)
  expect_gt(info$expires_on, as.numeric(Sys.time()))
  storage <- serveRless:::credential_token_info(target, scope = "https://storage.azure.com/.default")
  expect_match(storage$audience, "^https://storage\\.azure\\.com")
})

test_that("a device-code credential prints the sign-in prompt and gets a token", {
  target <- test_target()
  tenant <- serveRless:::target_credential(target)$tenant
  cred <- az_credential("device_code", tenant = tenant)
  expect_equal(cred$client_id, serveRless:::azure_cli_client_id)
  expect_message(info <- serveRless:::credential_token_info(target, cred), "code")
  expect_equal(info$tenant, tenant)
})

test_that("wrong credentials fail with an auth error that does not show the secret", {
  target <- test_target()
  good <- serveRless:::target_credential(target)
  wrong <- az_credential("client_secret", tenant = good$tenant, client_id = good$client_id,
                         client_secret = "wrong-secret-do-not-print")
  err <- expect_error(serveRless:::credential_token_info(target, wrong), class = "serverless_error_auth")
  expect_match(conditionMessage(err), "AADSTS7000215")
  expect_false(grepl("wrong-secret-do-not-print", conditionMessage(err), fixed = TRUE))
  other_tenant <- az_credential("client_secret", tenant = "11111111-1111-1111-1111-111111111111",
                                client_id = good$client_id, client_secret = "x-secret")
  expect_error(serveRless:::credential_token_info(target, other_tenant), class = "serverless_error_auth")
})

test_that("a container group runs R with its environment and its logs come back", {
  target <- test_target()
  out <- serveRless:::aci_run_group(
    target, "job-env-x",
    command = c(file.path(R.home("bin"), "Rscript"), "-e", "cat(Sys.getenv('X'), Sys.getenv('S'))"),
    env = list(X = "value-of-x-123"), secure_env = list(S = "secure-value-456")
  )
  expect_equal(out$state, "Terminated")
  expect_equal(out$exit_code, 0L)
  expect_match(out$logs, "value-of-x-123", fixed = TRUE)

  journal <- local_azure_journal(target)
  expect_s3_class(journal, "data.frame")
  puts <- journal[journal$method == "PUT" & grepl("containerGroups/job-env-x$", journal$path), ]
  expect_equal(nrow(puts), 1)
  expect_equal(puts$api_version, "2023-05-01")
  expect_equal(puts$query, "api-version=2023-05-01") # query strings are kept
  expect_equal(puts$status, 201L)
  expect_true(any(journal$method == "DELETE" & grepl("containerGroups/job-env-x$", journal$path)))
  expect_true(any(grepl("/oauth2/v2.0/token$", journal$path)))
  all_text <- paste(journal$body, collapse = "\n")
  expect_false(grepl("secure-value-456", all_text, fixed = TRUE))
  expect_false(grepl(serveRless:::unseal(serveRless:::target_credential(target)$secrets$client_secret), all_text, fixed = TRUE))
})

test_that("failing containers report their exit code", {
  target <- test_target()
  out <- serveRless:::aci_run_group(target, "job-fails",
                                    command = c("sh", "-c", "echo failing >&2; exit 4"))
  expect_equal(out$exit_code, 4L)
  expect_match(out$logs, "failing")
})

test_that("faults are survived: throttling and server errors are retried", {
  target <- test_target()
  n_before <- nrow(local_azure_journal(target))
  local_azure_faults(target, throttle = 0.3, server_errors = 0.1, seed = 3)
  withr::defer(local_azure_faults(target))
  out <- serveRless:::aci_run_group(target, "job-faults", command = c("sh", "-c", "echo ok"))
  expect_equal(out$exit_code, 0L)
  journal <- local_azure_journal(target)[-seq_len(n_before), ]
  expect_true(any(journal$status == 429L))
  expect_equal(sum(journal$method == "PUT" & grepl("job-faults$", journal$path) & journal$status == 201L), 1)
})

test_that("credential and control-plane input errors come before any call", {
  expect_error(az_credential("client_secret", tenant = "contoso.onmicrosoft.com"),
               "client_id", class = "serverless_error_input")
  expect_error(az_credential("nope"), "nope", class = "serverless_error_input")
  expect_error(az_credential("client_secret", tenant = "not a tenant!", client_id = "x", client_secret = "y"),
               class = "serverless_error_input")
  expect_error(az_credential("managed_identity", client_id = "not-a-guid"), "client_id",
               class = "serverless_error_input")
  target <- test_target()
  expect_error(local_azure_faults(target, throttle = 2), "throttle", class = "serverless_error_input")
  expect_error(local_azure_journal(azurite_az_target()), class = "serverless_error_input")
  expect_error(serveRless:::aci_run_group(target, "Bad_Name", command = "true"), "Bad_Name",
               class = "serverless_error_input")
})

test_that("credentials never show their secret", {
  cred <- az_credential("client_secret", tenant = "contoso.onmicrosoft.com",
                        client_id = "00000000-0000-0000-0000-000000000001",
                        client_secret = "TOP-SECRET-VALUE")
  shown <- paste(c(capture.output(print(cred)), format(cred), capture.output(str(cred))),
                 collapse = "\n")
  expect_false(grepl("TOP-SECRET-VALUE", shown, fixed = TRUE))
  expect_match(shown, "<hidden>", fixed = TRUE)
})

test_that("az_credential('auto') picks the first that applies and says which", {
  withr::local_envvar(
    AZURE_CLIENT_ID = "00000000-0000-0000-0000-0000000000aa",
    AZURE_TENANT_ID = "contoso.onmicrosoft.com",
    AZURE_CLIENT_SECRET = "env-secret-value",
    AZURE_FEDERATED_TOKEN_FILE = "", IDENTITY_ENDPOINT = "", MSI_ENDPOINT = ""
  )
  expect_message(cred <- az_credential(), "client_secret")
  expect_equal(cred$type, "client_secret")
  expect_equal(cred$client_id, "00000000-0000-0000-0000-0000000000aa")
  expect_false(grepl("env-secret-value", paste(format(cred), collapse = "\n"), fixed = TRUE))

  withr::local_envvar(AZURE_CLIENT_SECRET = "", AZURE_FEDERATED_TOKEN_FILE = "/var/run/token")
  expect_message(cred <- az_credential("auto"), "workload_identity")
  expect_equal(cred$type, "workload_identity")

  withr::local_envvar(AZURE_FEDERATED_TOKEN_FILE = "", IDENTITY_ENDPOINT = "http://127.0.0.1:1/msi")
  expect_message(cred <- az_credential("auto"), "managed_identity")
  expect_equal(cred$type, "managed_identity")
})
