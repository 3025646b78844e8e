# What a serveRless user writes: the deployment, scored on the local Azure, predicts
# what the model predicts here.
test_that("the deployed model scores on the local Azure as it predicts here", {
  target <- serveRless::local_azure()
  dep <- suppressMessages(deploy_cars_model(target))
  run <- suppressMessages(serveRless::score_now(dep, newdata = datasets::mtcars, shards = 2))
  expect_equal(run$shards$state, c("Succeeded", "Succeeded"))
  scored <- serveRless::read_predictions(run)
  expect_equal(nrow(scored), nrow(datasets::mtcars))
  expect_equal(scored$.pred, unname(predict(fit_cars_model(), scored)))
})
