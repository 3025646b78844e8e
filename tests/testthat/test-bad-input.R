# The bad-input catalogue: each case is refused with serverless_error_input (or
# serverless_error_setup), its message names the offending value and says what to do.
# Targets point at closed ports, so a case that reached the network would fail with
# another class: none of these can be caught only by a network call.

offline_target <- function() {
  t <- azurite_az_target(blob_endpoint = "https://127.0.0.1:9/devstoreaccount1")
  t$arm_endpoint <- "https://127.0.0.1:9"
  t$authority_host <- "https://127.0.0.1:9"
  t
}

fake_deployment <- function(target, image = "r.azurecr.io/serverless-runtime:1") {
  structure(
    list(name = "mpg", model_version = "v1", model_sha256 = strrep("a", 64), image = image,
         cpu = 1, memory_gb = 1.5, target = target,
         record = list(login_server = "r.azurecr.io", identity_id = "/subscriptions/s/id",
                       identity_client_id = "c")),
    class = "serverless_deployment"
  )
}

test_that("the bad-input catalogue: classed, naming the value, saying what to do", {
  off <- offline_target()
  fit <- lm(mpg ~ wt + hp, data = mtcars)
  dep <- fake_deployment(off)
  csv <- withr::local_tempfile(fileext = ".csv")
  writeLines("wt,hp\n1,2", csv)
  guid <- "11111111-2222-3333-4444-555555555555"
  orphan <- structure(list(coef = 1), class = "orphanmodel")
  in_csv <- "data/in/*.csv"
  out_dir <- "data/out/"
  cases <- list(
    # names and paths
    list(quote(store_model(fit, "Bad_Name", off)), "Bad_Name", "lowercase"),
    list(quote(store_model(fit, "ab", off)), "ab", "3 to"),
    list(quote(blob_upload(off, "/no/such/file.csv", "serverless/x.csv")), "/no/such/file.csv", "exist"),
    list(quote(blob_upload(off, csv, "Bad_Container/x.csv")), "Bad_Container", "lowercase"),
    list(quote(blob_download(off, "serverless/x.csv", csv)), basename(csv), "overwrite"),
    list(quote(blob_download(off, "serverless/x.csv", "/no/such/dir/f.csv")), "/no/such/dir", "exist"),
    list(quote(blob_list(off, 1)), "prefix", "string"),
    list(quote(undeploy("Bad_Name", off)), "Bad_Name", "lowercase"),
    # targets and credentials
    list(quote(az_target(guid, "rg", "westeurope", "Bad-Account")), "Bad-Account", "lowercase letters and digits"),
    list(quote(az_target(guid, "rg", "westeurope", "acct123", registry = "r-1")), "r-1", "letters and digits"),
    list(quote(az_target(guid, "rg", "westeurope", "acct123", container = "Bad_Container")), "Bad_Container", "lowercase"),
    list(quote(az_target(guid, "rg", "westeurope", "acct123", storage_key = "not base64!")), "storage_key", "Copy key1"),
    list(quote(az_target(guid, "rg", "westeurope", "acct123", storage_sas = "sv=2022-11-02&sp=r")), "storage_sas", "SAS URL"),
    list(quote(az_target(guid, "rg", "westeurope", "acct123", storage_key = "a2V5", storage_sas = "sig=x")),
         "storage_key", "With none"),
    list(quote(az_credential("nope")), "nope", "client_secret"),
    list(quote(az_credential("client_secret", tenant = "not a tenant!", client_id = "x", client_secret = "y")),
         "not a tenant!", "GUID"),
    list(quote(az_credential("client_secret", tenant = guid)), "client_id", "needs"),
    # models
    list(quote(store_model(fit, "mpg", off, predict_fun = 1)), "predict_fun", "function\\(model, newdata\\)"),
    list(quote(store_model(fit, "mpg", off, ptype = 1)), "numeric", "zero rows is enough"),
    list(quote(store_model(fit, "mpg", off, packages = "notapkg123")), "notapkg123", "install"),
    list(quote(deploy_model(orphan, "orphan", off)), "orphanmodel", "predict_fun"),
    # a string where the model should be (a slip of the addin user's hand, say)
    list(quote(deploy_model("fit", "mpg", off)), "character", "predict_fun"),
    # sizes
    list(quote(deploy_model(fit, "mpg", off, cpu = 5)), "5", "at most 4|between|from"),
    list(quote(deploy_model(fit, "mpg", off, cpu = 0.5)), "0.5", "between 1 and 4"),
    list(quote(deploy_model(fit, "mpg", off, memory_gb = 16.5)), "16.5", "0.5 to 16 GB"),
    list(quote(deploy_model(fit, "mpg", off, memory_gb = 1.55)), "1.55", "0.1|steps|multiple"),
    list(quote(runtime_options(serverless_tarball = "/no/such/serveRless.tar.gz")), "/no/such/serveRless.tar.gz", "R CMD build"),
    # scoring
    list(quote(score_now(dep, newdata = mtcars, shards = 0)), "0", "from 1 to 50"),
    list(quote(score_now(dep, newdata = 1)), "numeric", "data frame"),
    list(quote(score_now(dep, newdata = mtcars[0, ])), "newdata", "no rows"),
    list(quote(score_now(dep)), "newdata", "either"),
    list(quote(score_now(dep, input = "data/in/x.csv")), "output", "where should the predictions go"),
    list(quote(score_now(dep, newdata = mtcars, cpu = 8)), "8", "at most 4|between|from"),
    list(quote(score_now(list(), newdata = mtcars)), "dep", "deploy_model"),
    list(quote(read_predictions(list())), "run", "score_now"),
    # schedules: crons, time zones, accounts, shards, triggers
    list(quote(schedule_scoring(dep, in_csv, out_dir, schedule = "61 * * * *")), "61", "0-59|0 to 59|between"),
    list(quote(schedule_scoring(dep, in_csv, out_dir, schedule = "0 3 * *")), "0 3 * *", "five|5 fields"),
    list(quote(schedule_scoring(dep, in_csv, out_dir, schedule = "0 3 1 * 1")), "day-of-month", "cannot express|write `\\*`"),
    list(quote(schedule_scoring(dep, in_csv, out_dir, schedule = "0 3 * 6 *")), "month", "every month"),
    list(quote(schedule_scoring(dep, in_csv, out_dir, schedule = "0 3 * * *", time_zone = "Mars/Olympus")),
         "Mars/Olympus", "IANA|Europe/|known"),
    list(quote(schedule_scoring(dep, "https://otheraccount.blob.core.windows.net/data/in/*.csv", out_dir,
                                schedule = "0 3 * * *")), "otheraccount", "Copy the data"),
    list(quote(schedule_scoring(dep, in_csv, out_dir, schedule = "0 3 * * *", shards = 0)), "0", "from 1 to 50"),
    list(quote(schedule_scoring(dep, in_csv, out_dir, schedule = "0 3 * * *", shards = 51)), "51", "from 1 to 50"),
    list(quote(schedule_scoring(dep, in_csv, out_dir, schedule = "0 3 * * *", max_parallel = 0)), "max_parallel", "from 1 to 50"),
    list(quote(schedule_scoring(dep, in_csv, out_dir, schedule = "0 3 * * *", max_parallel = Inf)), "max_parallel", "from 1 to 50"),
    list(quote(schedule_scoring(dep, in_csv, out_dir)), "schedule", "cron line"),
    list(quote(schedule_scoring(dep, in_csv, out_dir, trigger = "blob")), in_csv, "Each blob added there"),
    list(quote(schedule_scoring(dep, "data/in/", "data/in/out/", trigger = "blob")), "data/in/out/", "another folder"),
    list(quote(schedule_scoring(dep, "data/in/", out_dir, trigger = "blob", schedule = "0 3 * * *")), "schedule",
         "blob's arrival"),
    list(quote(schedule_scoring(dep, in_csv, out_dir, schedule = "0 3 * * *", connector = "ftp")), "ftp", "http"),
    list(quote(schedule_scoring(dep, in_csv, out_dir, schedule = "0 3 * * *", name = "Bad_Name")), "Bad_Name", "lowercase"),
    list(quote(schedule_scoring(fake_deployment(off, image = ""), in_csv, out_dir, schedule = "0 3 * * *")),
         "mpg", "deploy_model"),
    # a first check never, or after the timeout
    list(quote(schedule_scoring(dep, in_csv, out_dir, schedule = "0 3 * * *", first_check = 0)),
         "first_check", "from 1 to 3600"),
    list(quote(schedule_scoring(dep, in_csv, out_dir, schedule = "0 3 * * *", timeout = 600, first_check = 601)),
         "first_check", "from 1 to 600"),
    list(quote(schedule_scoring(dep, in_csv, out_dir, schedule = "0 3 * * *", first_check = "soon")),
         "first_check", "from 1 to 3600"),
    list(quote(trigger_now(list())), "sch", "schedule_scoring"),
    # paths a URL would resolve elsewhere, numbers R would pass on, a local file for a blob
    list(quote(blob_upload(off, csv, "serverless/../other/x.csv")), "serverless/../other/x.csv", "segment"),
    list(quote(blob_upload(off, csv, "serverless/./x.csv")), "serverless/./x.csv", "segment"),
    list(quote(blob_download(off, "serverless/a//x.csv", tempfile())), "serverless/a//x.csv", "empty segment"),
    list(quote(score_now(dep, newdata = mtcars, timeout = Inf)), "Inf", "seconds from 1"),
    list(quote(score_now(dep, newdata = mtcars, timeout = 1e20)), "1e+20", "seconds from 1"),
    list(quote(score_now(dep, newdata = mtcars, timeout = NA)), "NA", "seconds from 1"),
    list(quote(score_now(dep, newdata = mtcars, timeout = "1 hour")), "1 hour", "seconds from 1"),
    list(quote(score_now(dep, newdata = mtcars, timeout = -5)), "-5", "seconds from 1"),
    list(quote(score_now(dep, newdata = mtcars, shards = Inf)), "Inf", "from 1 to 50"),
    list(quote(score_now(dep, input = csv, output = out_dir)), basename(csv), "blob_upload"),
    list(quote(trigger_now(structure(list(trigger = "schedule"), class = "serverless_schedule"), timeout = Inf)),
         "Inf", "seconds from 1"),
    list(quote(store_model(fit, "mpg", off, packages = "")), "packages", "Package names"),
    list(quote(store_model(fit, "mpg", off, packages = "stats/")), "stats/", "Package names"),
    list(quote(runtime_options(build_timeout = 1e9)), "1e+09", "300 to 28,800"),
    # local Azure faults
    list(quote(local_azure_faults(test_target(), throttle = 2)), "throttle", "between 0 and 1"),
    list(quote(local_azure_faults(test_target(), storage_cut_after = -1)), "storage_cut_after", "number of bytes")
  )
  expect_gte(length(cases), 40)
  for (case in cases) {
    label <- paste(deparse(case[[1]], width.cutoff = 200L), collapse = " ")
    err <- tryCatch(eval(case[[1]]), error = function(e) e)
    expect_true(inherits(err, "serverless_error_input"), info = paste(label, "->", class(err)[1], conditionMessage(err)))
    msg <- cli::ansi_strip(conditionMessage(err))
    expect_true(grepl(case[[2]], msg, fixed = TRUE), info = paste(label, "does not name", case[[2]], ":", msg))
    expect_true(grepl(case[[3]], msg), info = paste(label, "says nothing like", case[[3]], ":", msg))
  }
})

test_that("bad secrets and missing things: classed, naming the value, saying what to do", {
  target <- test_target()
  f <- withr::local_tempfile(fileext = ".csv")
  writeLines("a\n1", f)
  closed <- "http://127.0.0.1:9/devstoreaccount1"
  expired <- azurite_az_target(storage_key = NULL, blob_endpoint = closed,
    storage_sas = "sv=2022-11-02&sr=c&sp=racwl&se=2001-01-01T00:00:00Z&sig=abc")
  read_only <- azurite_az_target(storage_key = NULL, blob_endpoint = closed,
    storage_sas = "sv=2022-11-02&sr=c&sp=rl&se=2099-01-01T00:00:00Z&sig=abc")
  dep <- fake_deployment(target)
  cases <- list(
    # caught before any call: the SAS itself says it cannot do this
    list(quote(blob_upload(expired, f, "serverless/x.csv")), "serverless_error_auth", "2001-01-01T00:00:00Z", "create a new one"),
    list(quote(blob_upload(read_only, f, "serverless/x.csv")), "serverless_error_auth", "sp=rl", "create a token with it"),
    list(quote(blob_delete(read_only, "serverless/x.csv")), "serverless_error_auth", "delete", "create a token with it"),
    # found missing by the service
    list(quote(blob_download(target, "serverless/no/such.csv", f, overwrite = TRUE)), "serverless_error_azure",
         "serverless/no/such.csv", "blob_list"),
    list(quote(load_model("nosuchmodel", target)), "serverless_error_input", "nosuchmodel", "store_model"),
    list(quote(score_now(dep, input = "serverless/none/*.csv", output = "serverless/o/")), "serverless_error_input",
         "serverless/none/*.csv", "blob_list"),
    list(quote(store_model(lm(mpg ~ wt, mtcars), "mpg", azurite_az_target(container = "no-such-container"))),
         "serverless_error_azure", "no-such-container", "create it")
  )
  for (case in cases) {
    label <- paste(deparse(case[[1]], width.cutoff = 200L), collapse = " ")
    err <- tryCatch(eval(case[[1]]), error = function(e) e)
    expect_true(inherits(err, case[[2]]), info = paste(label, "->", class(err)[1], conditionMessage(err)))
    msg <- cli::ansi_strip(conditionMessage(err))
    expect_true(grepl(case[[3]], msg, fixed = TRUE), info = paste(label, "does not name", case[[3]], ":", msg))
    expect_true(grepl(case[[4]], msg), info = paste(label, "says nothing like", case[[4]], ":", msg))
    expect_false(grepl("sig=abc", msg, fixed = TRUE))
  }
})

test_that("text that is not UTF-8 is an input error wherever it goes in, never a crash", {
  # In a child R: on a build without the check, some of these crash R (a cron line
  # with a stray byte segfaulted in the Rust core), which must fail this test only.
  classes <- callr::r(function() {
    library(serveRless)
    bad <- "0 3 * * \xff"
    off <- az_target("00000000-0000-0000-0000-000000000000", "rg", "westeurope", "acct123",
                     blob_endpoint = "https://127.0.0.1:9/acct123", storage_key = "a2V5")
    csv <- tempfile(fileext = ".csv")
    writeLines("a\n1", csv)
    fit <- lm(mpg ~ wt, data = mtcars)
    cases <- list(
      cron_cost = quote(estimate_cost(list(cpu = 1, memory_gb = 1.5, duration_s = 60, shards = 1,
                                           schedule = bad))),
      cron_recurrence = quote(serveRless:::rust_check(serveRless:::rs_cron_recurrence(bad, "UTC"))),
      resource_group = quote(az_target("00000000-0000-0000-0000-000000000000", "rg\xff", "westeurope",
                                       "acct123", storage_key = "a2V5")),
      blob_path = quote(blob_upload(off, csv, "serverless/x\xff.csv")),
      blob_prefix = quote(blob_list(off, "serverless/\xff")),
      model_name = quote(store_model(fit, "mpg\xff", off)),
      packages = quote(store_model(fit, "mpg", off, packages = "stat\xffs")),
      json = quote(serveRless:::rust_result(serveRless:::rs_json_format(list(a = "x\xff")))),
      list_name = quote(serveRless:::rust_result(serveRless:::rs_json_format(
        stats::setNames(list(1), "n\xff"))))
    )
    vapply(cases, function(case) {
      err <- tryCatch(eval(case), error = function(e) e)
      paste(class(err)[1], if (inherits(err, "condition")) grepl("UTF-8", conditionMessage(err)))
    }, "")
  })
  expect_equal(unname(classes), rep("serverless_error_input TRUE", length(classes)),
               label = paste(names(classes), classes, collapse = "; "))
})
