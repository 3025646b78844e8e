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
  utils::write.csv(mtcars, f)
  blob_upload(target, f, "serverless/data/in/mtcars.csv")
  print(blob_list(target, "serverless/data/"))
  if (!same) stop("predictions differ")
  invisible(TRUE)
}

main()
cat("\nDone: the local Azure has been stopped.\n")
