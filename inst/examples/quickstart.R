# serveRless quickstart: the main job on the local Azure.
# Run it with `make demo` (which sets everything up first).
library(serveRless)

main <- function() {
  cat("== Start a local Azure (Azurite on loopback)\n")
  target <- local_azure()
  print(target)

  cat("\n== Fit a model and store it as a versioned bundle\n")
  fit <- lm(mpg ~ wt + hp, data = mtcars)
  v <- store_model(fit, "mpg", target)
  print(v)

  cat("\n== Store it again: identical bundle, nothing uploaded\n")
  print(store_model(fit, "mpg", target))

  cat("\n== Its versions\n")
  print(model_versions("mpg", target))

  cat("\n== Load it back and predict\n")
  b <- load_model("mpg", target)
  print(b)
  same <- identical(predict(b$model, mtcars), predict(fit, mtcars))
  print(head(data.frame(car = rownames(mtcars), mpg = mtcars$mpg,
                        .pred = predict(b$model, mtcars)), 5), row.names = FALSE)
  cat("\nPredictions identical to the original model:", same, "\n")

  cat("\n== Blob helpers\n")
  f <- tempfile(fileext = ".csv")
  utils::write.csv(mtcars, f, row.names = FALSE)
  blob_upload(target, f, "serverless/data/in/mtcars.csv")
  print(blob_list(target, "serverless/data/"))
  if (!same) stop("predictions differ")

  cat("\n== Deploy: the bundle, a base image (R + serveRless, built once) and a runtime image per package set\n")
  print(deploy_model(fit, "mpg", target, dry_run = TRUE))
  dep <- deploy_model(fit, "mpg", target)
  print(dep)

  cat("\n== A second model with the same packages: same image, nothing built\n")
  glm_fit <- glm(am ~ wt + hp, data = mtcars, family = binomial())
  dep2 <- deploy_model(glm_fit, "transmission", target)
  print(dep2)

  cat("\n== A random forest: its packages differ, so it gets its own runtime image\n")
  set.seed(1)
  rf_fit <- randomForest::randomForest(mpg ~ wt + hp + qsec, data = mtcars, ntree = 100)
  dep3 <- deploy_model(rf_fit, "mpg-forest", target)
  print(dep3)
  rf_run <- score_now(dep3, newdata = mtcars[, c("wt", "hp", "qsec")])
  rf_preds <- read_predictions(rf_run)
  print(head(rf_preds), row.names = FALSE)
  rf_same <- isTRUE(all.equal(rf_preds$.pred, unname(predict(rf_fit, mtcars))))
  cat("\nForest scored remotely, equal to predict():", rf_same, "\n")
  if (!rf_same) stop("forest predictions differ")

  cat("\n== Score a data frame on container instances\n")
  run <- score_now(dep, newdata = mtcars[, c("wt", "hp")])
  print(run)
  preds <- read_predictions(run)
  print(head(preds), row.names = FALSE)
  scored_same <- identical(preds$.pred, unname(predict(fit, mtcars)))
  cat("\nScored remotely, identical to predict():", scored_same, "\n")
  if (!scored_same) stop("scored predictions differ")

  cat("\n== Score CSV files in Blob Storage, two shards\n")
  g <- tempfile(fileext = ".csv")
  utils::write.csv(mtcars[1:16, ], g, row.names = FALSE)
  blob_upload(target, g, "serverless/data/in/mtcars-2.csv")
  run2 <- score_now(dep, input = "serverless/data/in/*.csv", output = "serverless/data/out/",
                    shards = 2)
  print(run2)
  cat("\nThe first shard's log:\n")
  cat(scoring_logs(run2)[[1]], "\n")

  cat("\n== Schedule scoring every minute (a Logic App), and run it once now\n")
  sch <- schedule_scoring(dep, input = "serverless/data/in/*.csv", output = "serverless/data/scheduled/",
                          schedule = "* * * * *", time_zone = "Europe/Vienna", shards = 2,
                          poll_seconds = 2)
  print(sch)
  now <- trigger_now(sch)
  print(now)

  cat("\n== Wait for a run the schedule starts by itself (at most two minutes)\n")
  deadline <- Sys.time() + 150
  repeat {
    runs <- scoring_runs(sch)
    if (sum(runs$status == "Succeeded") >= 2 || Sys.time() > deadline) break
    Sys.sleep(5)
  }
  print(runs[, c("run_id", "start", "status", "shards_ok", "rows", "duration_s", "est_cost")],
        row.names = FALSE)
  if (sum(runs$status == "Succeeded") < 2) stop("no scheduled run finished in time")
  print(scoring_logs(sch, run_id = runs$run_id[1]))

  cat("\n== What this schedule would cost in Azure (East US prices, measured run time)\n")
  prices <- fetch_prices("eastus", target)  # the local Azure's copy of the Retail Prices API
  print(estimate_cost(sch, prices = prices))
  cat("\n...and the same schedule daily at 03:00 instead of every minute:\n")
  print(estimate_cost(list(cpu = sch$cpu, memory_gb = sch$memory_gb, shards = sch$shards,
                           duration_s = 600, schedule = "0 3 * * *"), prices = prices))

  cat("\n== Tear down: remove everything tagged for the deployments\n")
  undeploy("mpg", target)
  undeploy("transmission", target)
  undeploy("mpg-forest", target)
  invisible(TRUE)
}

main()
cat("\nDone: the local Azure has been stopped.\n")
