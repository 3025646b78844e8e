# score_now() and run_scoring_job() end to end on the local Azure: real container
# processes running the real job against Azurite, as the deployment's identity.

score_quietly <- function(...) suppressMessages(score_now(...))
deploy_quietly <- function(...) suppressMessages(deploy_model(...))

test_that("score_now(newdata=) gives exactly the local predictions for five model kinds", {
  skip_if_not_installed("randomForest")
  skip_if_not_installed("ranger")
  skip_if_not_installed("glmnet")
  target <- local_azure()
  fits <- fit_models()
  cars <- fits$data
  newdata <- cars[, c("wt", "hp", "am")]

  check <- function(dep, local, newdata) {
    run <- score_quietly(dep, newdata = newdata)
    expect_s3_class(run, "serverless_run")
    expect_equal(run$shards$state, "Succeeded")
    preds <- read_predictions(run)
    expect_identical(preds[names(newdata)], newdata, ignore_attr = TRUE)
    expect_identical(preds$.pred, local)
    run
  }

  run <- check(deploy_quietly(fits$lm, "mpg-lm", target), unname(predict(fits$lm, newdata)), newdata)
  expect_equal(run$shards$rows, nrow(newdata))
  check(deploy_quietly(fits$glm, "am-glm", target),
        unname(predict(fits$glm, newdata, type = "link")), newdata)

  set.seed(2)
  rf_class <- randomForest::randomForest(am ~ wt + hp, data = cars, ntree = 30)
  check(deploy_quietly(rf_class, "am-forest", target),
        as.character(predict(rf_class, newdata)), newdata)

  rg <- ranger::ranger(mpg ~ wt + hp, data = cars, num.trees = 30, seed = 3)
  dep <- deploy_quietly(rg, "mpg-ranger", target, packages = "ranger",
                        predict_fun = function(model, newdata) stats::predict(model, data = newdata)$predictions)
  check(dep, predict(rg, data = newdata)$predictions, newdata)

  x <- as.matrix(cars[, c("wt", "hp", "qsec")])
  net <- glmnet::glmnet(x, cars$mpg)
  dep <- deploy_quietly(net, "mpg-glmnet", target, ptype = as.data.frame(x)[0, ],
                        predict_fun = function(model, newdata) {
                          stats::predict(model, newx = as.matrix(newdata), s = 0.1)[, 1]
                        })
  check(dep, unname(stats::predict(net, newx = x, s = 0.1)[, 1]), as.data.frame(x))

  expect_length(container_groups(target), 0)
})

test_that("a 4-shard run over 8 CSV files writes 8 outputs and 4 run records", {
  target <- local_azure()
  fits <- fit_models()
  dep <- deploy_quietly(fits$lm, "mpg", target)
  parts <- split(fits$data[, c("wt", "hp")], rep(1:8, length.out = nrow(fits$data)))
  for (i in seq_along(parts)) {
    f <- withr::local_tempfile(fileext = ".csv")
    utils::write.csv(parts[[i]], f, row.names = FALSE)
    blob_upload(target, f, sprintf("serverless/in/part-%d.csv", i))
  }
  run <- score_quietly(dep, input = "serverless/in/*.csv", output = "serverless/out/", shards = 4)
  expect_equal(run$shards$state, rep("Succeeded", 4))
  expect_equal(run$shards$inputs, rep(2L, 4))
  out <- blob_list(target, "serverless/out/")$path
  expect_setequal(out[!grepl("_runs/", out)], sprintf("serverless/out/part-%d.csv", 1:8))
  records <- out[grepl("_run.json$", out)]
  expect_length(records, 4)
  expect_true(all(vapply(run$records, function(r) r$status, "") == "succeeded"))
  preds <- read_predictions(run)
  expect_equal(nrow(preds), nrow(fits$data))
  expect_equal(sort(preds$.pred), sort(unname(predict(fits$lm, fits$data))), tolerance = 1e-12)
  expect_length(container_groups(target), 0)
  expect_output(print(run), "4/4 shards succeeded")
})

test_that("Parquet input works, and one big file is split by rows across shards", {
  target <- local_azure()
  fits <- fit_models()
  dep <- deploy_quietly(fits$lm, "mpg", target)
  big <- fits$data[rep(seq_len(nrow(fits$data)), 50), c("wt", "hp")]
  f <- withr::local_tempfile(fileext = ".parquet")
  rust_check <- getFromNamespace("rust_check", "serveRless")
  rust_check(serveRless:::rs_write_table(as.list(big), f, "parquet"))
  blob_upload(target, f, "serverless/pq/cars.parquet")
  run <- score_quietly(dep, input = "serverless/pq/cars.parquet", output = "serverless/pq-out/", shards = 2)
  expect_equal(run$shards$state, rep("Succeeded", 2))
  preds <- read_predictions(run)
  expect_equal(nrow(preds), nrow(big))
  expect_equal(preds$.pred, unname(predict(fits$lm, big)), tolerance = 1e-12)
  # Each shard fetched the footer and what it reads (one row group here: shared).
  logs <- unlist(strsplit(unlist(scoring_logs(run)), "\n"))
  expect_length(grep("part [12] of 2: .* bytes fetched", logs), 2)

  # Five row groups, two shards, 1 MB chunks: each shard reads its groups a few rows
  # at a time, and the outputs hold every row once, in order.
  many <- fits$data[rep(seq_len(nrow(fits$data)), length.out = 600000), c("wt", "hp")]
  many$wt <- many$wt + seq_len(nrow(many)) / 1e7
  rust_check(serveRless:::rs_write_table(as.list(many), f, "parquet"))
  blob_upload(target, f, "serverless/pq/many.parquet")
  run <- score_quietly(dep, input = "serverless/pq/many.parquet", output = "serverless/pq-many/",
                       shards = 2, chunk_mb = 1)
  expect_equal(run$shards$state, rep("Succeeded", 2))
  preds <- read_predictions(run)
  expect_equal(preds$wt, many$wt)
  expect_equal(preds$.pred, unname(predict(fits$lm, many)), tolerance = 1e-12)
  logs <- unlist(strsplit(unlist(scoring_logs(run)), "\n"))
  chunks <- as.integer(sub(".* in (\\d+) chunks? .*", "\\1", grep("^\\S+ scored ", logs, value = TRUE)))
  expect_length(chunks, 2)
  expect_true(all(chunks > 2), info = paste(chunks, collapse = " "))
  expect_error(score_now(dep, input = "serverless/pq/many.parquet", output = "serverless/x/", chunk_mb = 0),
               class = "serverless_error_input")
})

test_that("shards of one big CSV download only their byte ranges", {
  target <- local_azure()
  fits <- fit_models()
  dep <- deploy_quietly(fits$lm, "mpg", target)
  big <- fits$data[rep(seq_len(nrow(fits$data)), 400), c("wt", "hp")]
  big$wt <- big$wt + seq_len(nrow(big)) / 1e6 # every row its own
  f <- withr::local_tempfile(fileext = ".csv")
  utils::write.csv(big, f, row.names = FALSE)
  size <- file.size(f)
  blob_upload(target, f, "serverless/csv/cars.csv")
  run <- score_quietly(dep, input = "serverless/csv/cars.csv", output = "serverless/csv-out/", shards = 4)
  expect_equal(run$shards$state, rep("Succeeded", 4))
  preds <- read_predictions(run)
  expect_equal(preds$wt, big$wt, tolerance = 1e-12) # each row once, in order
  expect_equal(preds$.pred, unname(predict(fits$lm, big)), tolerance = 1e-12)
  logs <- unlist(scoring_logs(run))
  fetched <- as.numeric(sub(".*\\((\\d+) bytes fetched\\).*", "\\1",
                            grep("bytes fetched", unlist(strsplit(logs, "\n")), value = TRUE)))
  expect_length(fetched, 4)
  expect_true(all(fetched < size / 2), info = paste(fetched, collapse = " "))
  expect_lte(sum(fetched), 1.05 * size)
})

test_that("a ptype mismatch makes the shard exit 2, naming every bad column; no group is left", {
  target <- local_azure()
  fits <- fit_models()
  dep <- deploy_quietly(fits$lm, "mpg", target)
  bad <- data.frame(wt = c("heavy", "light"), qsec = 1:2)
  # As newdata it is refused before the upload, naming the same problems...
  early <- expect_error(score_quietly(dep, newdata = bad), class = "serverless_error_input")
  expect_match(conditionMessage(early), "missing column: hp")
  # ...as a blob, the job finds them.
  f <- withr::local_tempfile(fileext = ".rds")
  saveRDS(bad, f)
  blob_upload(target, f, "serverless/bad/in.rds")
  err <- expect_error(score_quietly(dep, input = "serverless/bad/in.rds", output = "serverless/bad/out/"),
                      class = "serverless_error_job")
  expect_equal(err$exit_code, 2L)
  expect_match(conditionMessage(err), "hp")
  expect_match(conditionMessage(err), "wt")
  expect_match(err$logs, "missing column: hp")
  expect_length(container_groups(target), 0)
  # Its run record says it failed: nothing claims success.
  expect_equal(err$run$records[[1]]$status, "failed")
  expect_equal(err$run$records[[1]]$exit_code, 2L)
})

test_that("a model whose predict fails exits 3", {
  target <- local_azure()
  fits <- fit_models()
  # It fails in the container only (the deploy-time pre-flight would catch it here).
  explodes <- function(model, newdata) {
    if (nzchar(Sys.getenv("SERVERLESS_RUN_ID"))) stop("model exploded")
    stats::predict(model, newdata)
  }
  dep <- deploy_quietly(fits$lm, "mpg", target, predict_fun = explodes)
  err <- expect_error(score_quietly(dep, newdata = fits$data[1:3, c("wt", "hp")]),
                      class = "serverless_error_job")
  expect_equal(err$exit_code, 3L)
  expect_match(err$logs, "model exploded")
})

test_that("a job over its container's memory is killed as in ACI: exit 137, shard failed", {
  target <- local_azure()
  fits <- fit_models()
  # 800 MB in a 0.5 GB container, in the container only (not in the pre-flight).
  hungry <- function(model, newdata) {
    if (nzchar(Sys.getenv("SERVERLESS_RUN_ID"))) big <- numeric(1e8)
    stats::predict(model, newdata)
  }
  dep <- deploy_quietly(fits$lm, "hungry", target, memory_gb = 0.5, predict_fun = hungry)
  err <- expect_error(score_quietly(dep, newdata = fits$data[1:3, c("wt", "hp")]),
                      class = "serverless_error_job")
  expect_equal(err$exit_code, 137L)
  expect_match(err$logs, "exceeded its memory (0.50 GB)", fixed = TRUE)
  expect_length(container_groups(target), 0)
  # The same model in a container with room scores.
  roomy <- deploy_quietly(fits$lm, "roomy", target, memory_gb = 2, predict_fun = hungry)
  run <- score_quietly(roomy, newdata = fits$data[1:3, c("wt", "hp")])
  expect_equal(read_predictions(run)$.pred, unname(predict(fits$lm, fits$data[1:3, ])))
})

test_that("an input bigger than the container's memory is scored in chunks, as predict() on the whole", {
  target <- local_azure()
  set.seed(17)
  n <- 2.7e6
  # About 580 MB of CSV: the model's columns, a factor among them, and a wide text
  # column the model does not use, carried into the output.
  notes <- sprintf("%s %03d", strrep("a note that the model does not read, ", 5), 1:100)
  data <- data.frame(x1 = round(rnorm(n), 6), x2 = round(runif(n), 6),
                     g = sample(c("a", "b", "c"), n, TRUE),
                     note = notes[sample.int(100, n, TRUE)], stringsAsFactors = FALSE)
  train <- data[1:5000, c("x1", "x2", "g")]
  train$g <- factor(train$g)
  train$y <- 2 * train$x1 - train$x2 + as.integer(train$g) + rnorm(5000, sd = 0.1)
  fit <- stats::lm(y ~ x1 + x2 + g, data = train)
  file <- withr::local_tempfile(fileext = ".csv")
  serveRless:::rust_check(serveRless:::rs_write_table(as.list(data), file, "csv"))
  size <- file.size(file)
  expect_gt(size, 0.5 * 2^30)
  blob_upload(target, file, "serverless/big/in/wide.csv")

  dep <- deploy_quietly(fit, "wide", target, memory_gb = 0.5)
  run <- score_quietly(dep, input = "serverless/big/in/wide.csv", output = "serverless/big/out/")
  expect_equal(run$shards$state, "Succeeded")
  logs <- scoring_logs(run)
  chunks <- as.integer(sub(".* in (\\d+) chunks? .*", "\\1", grep("scored .* chunk", strsplit(logs, "\n")[[1]], value = TRUE)))
  expect_gt(chunks, 10)
  peak <- as.numeric(sub(".*peak memory: (\\d+) MB.*", "\\1", grep("peak memory", strsplit(logs, "\n")[[1]], value = TRUE)))
  expect_lt(peak, 0.5 * 1024)

  out <- serveRless:::read_table_blob(target, "serverless/big/out/wide.csv")
  expect_equal(nrow(out), n)
  expect_equal(out$x1, data$x1)
  expect_equal(out$note, data$note)
  newdata <- data[c("x1", "x2", "g")]
  newdata$g <- factor(newdata$g, levels = levels(train$g))
  expect_equal(out$.pred, unname(predict(fit, newdata)), tolerance = 1e-12)
})

# Container groups that existed at once, at most, by the journal's PUTs and DELETEs.
groups_at_once <- function(target, since = 0) {
  j <- local_azure_journal(target)
  j <- j[seq_len(nrow(j)) > since, , drop = FALSE]
  g <- j[grepl("/containerGroups/[^/]+$", j$path) & j$method %in% c("PUT", "DELETE"), ]
  list(created = sum(g$method == "PUT"), max = max(cumsum(ifelse(g$method == "PUT", 1, -1))))
}

test_that("max_parallel queues shards: never more groups at once than asked", {
  target <- local_azure()
  fits <- fit_models()
  dep <- deploy_quietly(fits$lm, "queue", target)
  newdata <- fits$data[, c("wt", "hp")]
  run <- score_quietly(dep, newdata = newdata, shards = 4, max_parallel = 2)
  expect_equal(run$shards$state, rep("Succeeded", 4))
  expect_equal(read_predictions(run)$.pred, unname(predict(fits$lm, newdata)))
  expect_equal(groups_at_once(target), list(created = 4, max = 2))
  expect_length(container_groups(target), 0)

  # Without max_parallel the region's quota sets it when it has room for fewer than
  # 10 groups: here 3 vCPUs for groups of 1, read from the usages API before the run.
  local_azure_quota(target, cores = 3)
  since <- nrow(local_azure_journal(target))
  said <- character()
  run <- withCallingHandlers(score_now(dep, newdata = newdata, shards = 4), message = function(m) {
    said <<- c(said, conditionMessage(m))
    invokeRestart("muffleMessage")
  })
  expect_match(said, "At most 3 container groups at once: the Container Instances quota in .* has room for 3 more groups of 1 vCPU",
               all = FALSE)
  expect_equal(run$shards$state, rep("Succeeded", 4))
  expect_equal(read_predictions(run)$.pred, unname(predict(fits$lm, newdata)))
  expect_equal(groups_at_once(target, since), list(created = 4, max = 3))
  j <- local_azure_journal(target)
  expect_true(any(grepl("/providers/Microsoft.ContainerInstance/locations/[^/]+/usages$", j$path) & j$method == "GET"))
  # Asked for more than the quota has room for: the create over it is refused, as
  # ACI refuses it, the run fails to start with ACI's message, and the group it had
  # created is deleted.
  local_azure_quota(target, cores = 1)
  err <- expect_error(score_quietly(dep, newdata = newdata, shards = 2, max_parallel = 2),
                      class = "serverless_error_azure")
  expect_match(conditionMessage(err), "409 ContainerGroupQuotaReached.*'StandardCores'.*Limit: '1'")
  local_azure_quota(target)
  expect_length(container_groups(target), 0)

  # Without waiting, run_status() starts the queued shards as room frees up.
  target2 <- local_azure()
  dep2 <- deploy_quietly(fits$lm, "queue", target2)
  run <- score_quietly(dep2, newdata = newdata, shards = 3, max_parallel = 1, wait = FALSE)
  expect_equal(sort(run$shards$state), c("Pending", "Queued", "Queued"))
  deadline <- Sys.time() + 180
  while (!all(run$shards$state %in% c("Succeeded", "Failed")) && Sys.time() < deadline) {
    Sys.sleep(0.5)
    run <- suppressMessages(run_status(run))
  }
  expect_equal(run$shards$state, rep("Succeeded", 3))
  expect_equal(read_predictions(run)$.pred, unname(predict(fits$lm, newdata)))
  expect_equal(groups_at_once(target2), list(created = 3, max = 1))
  expect_length(container_groups(target2), 0)
})

# A top-level field of a container group body's properties (JSON text).
group_property <- function(body, field) {
  serveRless:::rust_check(serveRless:::rs_json_parse(body))$properties[[field]]
}

test_that("retries re-run a killed shard in a new group; model errors are not retried", {
  target <- local_azure()
  fits <- fit_models()
  newdata <- fits$data[1:5, c("wt", "hp")]
  # Killed (SIGKILL, exit 137) on its first try in a container, fine after.
  flaky <- function(model, newdata) {
    if (identical(Sys.getenv("SERVERLESS_ATTEMPT"), "1")) tools::pskill(Sys.getpid(), 9L)
    stats::predict(model, newdata)
  }
  dep <- deploy_quietly(fits$lm, "flaky", target, predict_fun = flaky)
  err <- expect_error(score_quietly(dep, newdata = newdata), class = "serverless_error_job")
  expect_equal(err$exit_code, 137L)
  run <- score_quietly(dep, newdata = newdata, retries = 2)
  expect_equal(run$shards$state, "Succeeded")
  expect_equal(run$shards$attempts, 2L)
  expect_equal(unlist(run$shards_state[[1]]$retried), 137)
  expect_match(paste(format(run), collapse = "\n"), "(try 2)", fixed = TRUE)
  expect_equal(read_predictions(run)$.pred, unname(predict(fits$lm, newdata)))
  j <- local_azure_journal(target)
  expect_true(any(grepl(sprintf("/containerGroups/flaky-%s-1r2$", run$run_id), j$path) & j$method == "PUT"))
  expect_length(container_groups(target), 0)

  explodes <- function(model, newdata) {
    if (nzchar(Sys.getenv("SERVERLESS_RUN_ID"))) stop("model exploded")
    stats::predict(model, newdata)
  }
  bad <- deploy_quietly(fits$lm, "explodes", target, predict_fun = explodes)
  err <- expect_error(score_quietly(bad, newdata = newdata, retries = 2), class = "serverless_error_job")
  expect_equal(err$exit_code, 3L)
  expect_equal(err$run$shards$attempts, 1L)
  expect_length(container_groups(target), 0)

  # Spot groups: an evicted shard fails like a killed one, and is retried or resumed.
  steady <- deploy_quietly(fits$lm, "steady", target)
  expect_error(score_now(steady, newdata = newdata, priority = "cheap"), class = "serverless_error_input")
  local_azure_faults(target, evict = 1)
  err <- expect_error(score_quietly(steady, newdata = newdata, priority = "spot"),
                      class = "serverless_error_job")
  expect_equal(err$exit_code, 137L)
  expect_equal(err$run$shards$attempts, 1L)
  expect_match(err$logs, "was evicted", fixed = TRUE)
  j <- local_azure_journal(target)
  puts <- j[grepl("/containerGroups/steady-", j$path) & j$method == "PUT", ]
  expect_equal(nrow(puts), 1)
  expect_true(all(vapply(puts$body, function(b) identical(group_property(b, "priority"), "Spot"), TRUE)))
  # Regular groups are never evicted; the evicted run resumes once eviction stops.
  run <- score_quietly(steady, newdata = newdata)
  expect_equal(run$shards$state, "Succeeded")
  local_azure_faults(target)
  resumed <- score_quietly(steady, resume = err$run)
  expect_equal(resumed$shards$state, "Succeeded")
  expect_equal(resumed$shards$attempts, 2L)
  expect_equal(read_predictions(resumed)$.pred, unname(predict(fits$lm, newdata)))
  expect_length(container_groups(target), 0)
})

test_that("score_now(resume =) re-runs only the shards without a succeeded record", {
  target <- local_azure()
  fits <- fit_models()
  # Shard 2 fails on its first try (a model error, which retries would not mend).
  picky <- function(model, newdata) {
    if (identical(Sys.getenv("SERVERLESS_SHARD"), "2") && identical(Sys.getenv("SERVERLESS_ATTEMPT"), "1")) {
      stop("not yet")
    }
    stats::predict(model, newdata)
  }
  dep <- deploy_quietly(fits$lm, "picky", target, predict_fun = picky)
  newdata <- fits$data[, c("wt", "hp")]
  err <- expect_error(score_quietly(dep, newdata = newdata, shards = 3), class = "serverless_error_job")
  failed <- err$run
  expect_equal(failed$shards$state, c("Succeeded", "Failed", "Succeeded"))
  created <- groups_at_once(target)$created
  run <- score_quietly(dep, resume = failed)
  expect_equal(run$run_id, failed$run_id)
  expect_equal(run$shards$state, rep("Succeeded", 3))
  expect_equal(run$shards$attempts, c(1L, 2L, 1L))
  expect_equal(groups_at_once(target)$created, created + 1) # only shard 2 ran again
  expect_equal(read_predictions(run)$.pred, unname(predict(fits$lm, newdata)))
  expect_message(score_now(dep, resume = run), "nothing to resume")
  expect_error(score_now(dep, newdata = newdata, resume = run), "resumed", class = "serverless_error_input")
  expect_error(score_now(dep, resume = "x"), "resume", class = "serverless_error_input")
  other <- deploy_quietly(fits$lm, "other", target)
  expect_error(score_now(other, resume = run), "picky", class = "serverless_error_input")
  expect_length(container_groups(target), 0)
})

test_that("bad scoring input is refused before any container starts", {
  target <- local_azure()
  fits <- fit_models()
  dep <- deploy_quietly(fits$lm, "mpg", target)
  before <- nrow(local_azure_journal(target))
  expect_error(score_now(dep, newdata = fits$data, shards = 0), "shards", class = "serverless_error_input")
  expect_error(score_now(dep, newdata = fits$data, cpu = 8), "cpu", class = "serverless_error_input")
  expect_error(score_now(dep, newdata = fits$data, memory_gb = 0.3), "memory_gb",
               class = "serverless_error_input")
  expect_error(score_now(dep), "newdata", class = "serverless_error_input")
  for (bad in list(0, 1.5, Inf, NA, "2", 51)) {
    expect_error(score_now(dep, newdata = fits$data, max_parallel = bad), "max_parallel",
                 class = "serverless_error_input")
  }
  for (bad in list(-1, 0.5, 11, NA, "1", Inf)) {
    expect_error(score_now(dep, newdata = fits$data, retries = bad), "retries",
                 class = "serverless_error_input")
  }
  expect_error(score_now(dep, newdata = fits$data[0, ]), "no rows", class = "serverless_error_input")
  expect_error(score_now("mpg", newdata = fits$data), class = "serverless_error_input")
  err <- expect_error(score_now(dep, input = "serverless/nothing/*.csv", output = "serverless/o/"),
                      class = "serverless_error_input")
  expect_match(conditionMessage(err), "serverless/nothing/*.csv", fixed = TRUE)
  for (i in 1:2) {
    f <- withr::local_tempfile(fileext = ".csv")
    utils::write.csv(fits$data[, c("wt", "hp")], f, row.names = FALSE)
    blob_upload(target, f, sprintf("serverless/two/p%d.csv", i))
  }
  err <- expect_error(score_now(dep, input = "serverless/two/", output = "serverless/o/", shards = 3),
                      class = "serverless_error_input")
  expect_match(conditionMessage(err), "3 shards for 2 input files")
  expect_equal(sum(grepl("containerGroups", local_azure_journal(target)$path[-seq_len(before)])), 0)

  blob_delete(target, "serverless/deployments/mpg.json")
  err <- expect_error(score_now(dep, newdata = fits$data), class = "serverless_error_input")
  expect_match(conditionMessage(err), "no longer exists")
})

test_that("run_scoring_job() without its environment exits 2 and says what is missing", {
  out <- utils::capture.output(code <- run_scoring_job(env = character(), exit = FALSE))
  expect_equal(code, 2L)
  expect_match(paste(out, collapse = "\n"), "SERVERLESS_RUN_ID")
})

test_that("a job killed mid-run leaves no run record claiming success, and no group", {
  skip_on_os("windows")
  target <- local_azure()
  fits <- fit_models()
  # A model that takes its time in a job, so the job is surely mid-run when killed
  # (and quick in deploy_model()'s pre-flight, which has no run id).
  dep <- deploy_quietly(fits$lm, "slow", target, predict_fun = function(model, newdata) {
    if (nzchar(Sys.getenv("SERVERLESS_RUN_ID"))) Sys.sleep(120)
    stats::predict(model, newdata)
  })
  run <- score_quietly(dep, newdata = fits$data[, c("wt", "hp")], wait = FALSE)
  expect_s3_class(run, "serverless_run")
  # The container is a child process of this R session (the emulator runs in it).
  find_job <- function() {
    for (p in ps::ps_children(ps::ps_handle(), recursive = TRUE)) {
      env <- tryCatch(ps::ps_environ(p), error = function(e) NULL)
      if (!is.null(env) && identical(as.character(env["SERVERLESS_RUN_ID"]), run$run_id)) return(p)
    }
    NULL
  }
  deadline <- Sys.time() + 60
  job <- NULL
  while (is.null(job) && Sys.time() < deadline) {
    Sys.sleep(0.5)
    job <- find_job()
  }
  expect_false(is.null(job))
  Sys.sleep(3) # past start-up: loading the model, reading the input
  ps::ps_kill(job)
  deadline <- Sys.time() + 60
  repeat {
    run <- suppressMessages(run_status(run))
    if (all(run$shards$state %in% c("Succeeded", "Failed")) || Sys.time() > deadline) break
    Sys.sleep(0.5)
  }
  expect_equal(run$shards$state, "Failed")
  records <- blob_list(target, paste0(run$output, "_runs/"))
  expect_equal(nrow(records), 0)
  expect_false(any(grepl("/output/newdata", blob_list(target, run$output)$path)))
  expect_length(container_groups(target), 0)
})
