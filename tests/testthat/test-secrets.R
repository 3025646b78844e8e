# Secrets never leak: not in print/format/str, condition messages, the control-plane
# journal, rendered workflows, plans, container environments or logs in Blob.

secret_values <- function(target) {
  cred <- serveRless:::target_credential(target)
  c(serveRless:::azurite_key, serveRless:::unseal(cred$secrets$client_secret))
}

# What saveRDS() writes (uncompressed) holds none of the secrets.
expect_no_saved_secret <- function(x, secrets, what) {
  bytes <- serialize(x, NULL)
  for (s in secrets[nzchar(secrets)]) {
    expect_length(grepRaw(s, bytes, fixed = TRUE), 0)
  }
  expect_false(length(grepRaw("eyJ[A-Za-z0-9_-]{10,}", bytes)) > 0, info = paste(what, "saves a JWT"))
}

# A string holds none of the secrets, nor anything shaped like a token or SAS signature.
expect_no_secret <- function(text, secrets, what) {
  text <- paste(text, collapse = "\n")
  for (s in secrets[nzchar(secrets)]) {
    expect_false(grepl(s, text, fixed = TRUE), info = paste(what, "shows a secret"))
  }
  expect_false(grepl("eyJ[A-Za-z0-9_-]{10,}\\.[A-Za-z0-9_-]{10,}", text), info = paste(what, "shows a JWT"))
  expect_false(grepl("[?&]sig=[A-Za-z0-9%+/=]{10,}", text), info = paste(what, "shows a SAS signature"))
}

test_that("objects built from real-looking secrets show none of them, nor do their errors", {
  # Built from pieces: a saved error's backtrace holds this test's code, which must
  # not count as a saved secret.
  key <- paste0("bXktc3RvcmFnZS1h", "Y2NvdW50LWtleS0x", "MjM0NTY3ODkwMTIz", "NDU2Nzg5MA==")
  sig <- paste0("Ab3dEf6hIj", "9kLm2nOp5q", "Rs8tUv1wXy", "4zAb7cD0eF")
  sas <- paste0("sv=2022-11-02&ss=b&srt=co&sp=rl&se=2099-01-01T00:00:00Z&sig=", sig, "%3D")
  client_secret <- paste0("Q~8xY2zA4b", "C6dE8fG0hI", "2jK4lM6nO8", "pQ0rS2tU4v")
  token <- paste0("eyJ", "hbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9", ".", "eyJ",
                  "hdWQiOiJodHRwczovL3N0b3JhZ2UuYXp1cmUuY29tIn0", ".", "c2lnbmF0dXJlLXNpZ25hdHVyZQ")
  secrets <- c(key, sas, client_secret, token, sig)
  closed <- "https://127.0.0.1:9/acct"
  # Nothing listens there: fail after a few seconds of retries, not the SDK's minute.
  withr::local_options(serveRless.retry_seconds = 2)
  cred <- az_credential("client_secret", tenant = "11111111-2222-3333-4444-555555555555",
                        client_id = "66666666-7777-8888-9999-000000000000", client_secret = client_secret)
  targets <- list(
    az_target("00000000-0000-0000-0000-000000000000", "rg", "westeurope", "acct",
              blob_endpoint = closed, storage_key = key, credential = cred),
    az_target("00000000-0000-0000-0000-000000000000", "rg", "westeurope", "acct",
              blob_endpoint = closed, storage_sas = sas),
    az_target("00000000-0000-0000-0000-000000000000", "rg", "westeurope", "acct",
              blob_endpoint = closed, storage_token = token)
  )
  shown <- c(capture.output(print(cred)), format(cred), capture.output(str(cred)),
             capture.output(print(summary(cred))))
  expect_no_secret(shown, secrets, "the credential")
  for (t in targets) {
    shown <- c(capture.output(print(t)), format(t), capture.output(str(t)),
               capture.output(print(summary(t))))
    expect_no_secret(shown, secrets, "a target")
    # An error from a call that fails (nothing listens) does not carry the secret.
    err <- tryCatch(blob_list(t, "serverless/"), error = function(e) e)
    expect_s3_class(err, "serverless_error")
    expect_no_secret(c(conditionMessage(err), capture.output(print(err))), secrets, "an error")
    # saveRDS() (here: the bytes it writes uncompressed) holds none of them, and a
    # restored target says it needs its secrets again, before any call.
    expect_no_saved_secret(t, secrets, "a target")
    expect_no_saved_secret(err, secrets, "an error")
    restored <- unserialize(serialize(t, NULL))
    expect_error(blob_list(restored, "serverless/"), class = "serverless_error_auth", regexp = "restored")
  }
  expect_no_saved_secret(cred, secrets, "a credential")
  restored <- unserialize(serialize(targets[[1]], NULL))
  expect_error(serveRless:::target_arm(restored), class = "serverless_error_auth", regexp = "restored")
  # Bad secrets are refused without repeating them.
  err <- expect_error(az_target("00000000-0000-0000-0000-000000000000", "rg", "westeurope", "acct",
                                blob_endpoint = closed, storage_key = "not base64 !!secretvalue!!"),
                      class = "serverless_error_input")
  expect_false(grepl("secretvalue", conditionMessage(err), fixed = TRUE))
})

test_that("the journal, plans, rendered workflows, container environments and logs hold no secret", {
  target <- local_azure()
  secrets <- secret_values(target)
  expect_true(all(nchar(secrets) > 10))
  fit <- lm(mpg ~ wt + hp, data = mtcars)
  plan <- suppressMessages(deploy_model(fit, "mpg", target, dry_run = TRUE))
  expect_no_secret(c(capture.output(print(plan)), capture.output(print(summary(plan)))), secrets, "a deploy plan")
  dep <- suppressMessages(deploy_model(fit, "mpg", target))
  expect_no_secret(c(capture.output(print(dep)), capture.output(print(summary(dep))),
                     capture.output(str(unclass(dep)[c("name", "image", "record")]))),
                   secrets, "a deployment")
  run <- suppressMessages(score_now(dep, newdata = mtcars[, c("wt", "hp")]))
  expect_no_secret(c(capture.output(print(run)), capture.output(print(summary(run))), scoring_logs(run)),
                   secrets, "a run and its logs")
  f <- withr::local_tempfile(fileext = ".csv")
  utils::write.csv(mtcars[, c("wt", "hp")], f, row.names = FALSE)
  blob_upload(target, f, "serverless/in/cars.csv")
  wf_plan <- suppressMessages(schedule_scoring(dep, "serverless/in/*.csv", "serverless/out/",
                                               schedule = "0 3 * * *", poll_seconds = 1, dry_run = TRUE))
  workflow_json <- serveRless:::rs_json_format(wf_plan$workflow)$value
  expect_no_secret(c(capture.output(print(wf_plan)), workflow_json), secrets, "the rendered workflow")
  expect_false(grepl("secureValue|password|AccountKey|clientSecret", workflow_json))
  sch <- suppressMessages(schedule_scoring(dep, "serverless/in/*.csv", "serverless/out/",
                                           schedule = "0 3 * * *", poll_seconds = 1))
  srun <- trigger_now(sch)
  expect_no_secret(c(capture.output(print(sch)), capture.output(print(summary(sch))),
                     capture.output(print(srun)), scoring_logs(sch),
                     capture.output(print(estimate_cost(sch, region = "eastus")))),
                   secrets, "a schedule, its run and logs in Blob")

  j <- local_azure_journal(target)
  expect_gt(nrow(j), 20)
  expect_no_secret(c(j$path, j$body), secrets, "the journal")
  # Containers' plain environment (as sent to ARM, by score_now() and by the workflow):
  # no key, SAS, token or password; only the identity's client id.
  groups <- j$body[j$method == "PUT" & grepl("containerGroups/", j$path) & !is.na(j$body)]
  expect_gte(length(groups), 2)
  for (g in groups) {
    env <- serveRless:::rs_json_parse(g)$value$properties$containers[[1]]$properties$environmentVariables
    names <- vapply(env, function(e) e$name, "")
    expect_true("AZURE_CLIENT_ID" %in% names)
    expect_false(any(grepl("KEY|SECRET|SAS|TOKEN|PASSWORD", names)))
    expect_no_secret(vapply(env, function(e) as.character(e$value %||% ""), ""), secrets, "a container's env")
  }
  expect_false(any(grepl("listCredentials|listKeys", j$path)))
  # The one secret file the local Azure writes (Azurite's TLS key) is private.
  key_file <- file.path(target$dir, "tls", "key.pem")
  expect_true(file.exists(key_file))
  expect_equal(as.character(file.mode(key_file)), "600")
  # Saved with saveRDS(), none of them carries a secret; a restored local target says
  # it has stopped instead of retrying a closed port.
  # A failed job (bad input in a blob: as newdata it would be refused before upload).
  bad <- withr::local_tempfile(fileext = ".rds")
  saveRDS(data.frame(wt = c("heavy", "light"), qsec = 1:2), bad)
  blob_upload(target, bad, "serverless/secrets/bad.rds")
  job_error <- tryCatch(suppressMessages(score_now(dep, input = "serverless/secrets/bad.rds",
                                                   output = "serverless/secrets/out/")),
                        serverless_error_job = identity)
  expect_s3_class(job_error, "serverless_error_job")
  saved <- list(target = target, deployment = dep, run = run, schedule = sch,
                schedule_run = srun, job_error = job_error)
  for (what in names(saved)) expect_no_saved_secret(saved[[what]], secrets, what)
  restored <- unserialize(serialize(dep, NULL))
  expect_error(score_now(restored, newdata = mtcars[, c("wt", "hp")]),
               class = "serverless_error_input", regexp = "restored")
  suppressMessages(undeploy("mpg", target))
})
