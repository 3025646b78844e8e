#' Fit the fuel-economy model
#'
#' A regression tree of `mpg` on weight and horsepower.
#'
#' @param data A data frame with columns `mpg`, `wt` and `hp`.
#' @return An `rpart` fit.
#' @examples
#' fit <- fit_cars_model()
#' predict(fit, head(mtcars))
fit_cars_model <- function(data = datasets::mtcars) {
  rpart::rpart(mpg ~ wt + hp, data = data, control = rpart::rpart.control(minsplit = 5))
}

#' Deploy the fuel-economy model
#'
#' @param target Where to deploy: `serveRless::az_target()` or
#'   `serveRless::local_azure()`.
#' @param name The deployment's name.
#' @return A `serverless_deployment`.
#' @examples
#' \dontrun{
#' dep <- deploy_cars_model(serveRless::local_azure())
#' }
deploy_cars_model <- function(target, name = "cars") {
  serveRless::deploy_model(fit_cars_model(), name, target)
}
